"""Pseudonyms, keys and de-identified values, checked against independent computations."""

import hashlib
import hmac

import pytest

from metriccare_glue.deid import KeyTooShort, Pseudonymizer, parse_key, postal_prefix
from metriccare_glue.fhir import Kept, ndjson_line_items
from metriccare_glue.silver import LoadContext, Resolver, item_outputs
from metriccare_glue.tables import SILVER

KEY = bytes(range(32))


def expected_pseudonym(key: bytes, *parts: str) -> str:
    """HMAC-SHA256 over each part prefixed by its UTF-8 length (4 bytes, big-endian), first 16 bytes."""
    message = b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


@pytest.mark.parametrize("tenant, kind, source_id", [
    ("tenant-01", "Patient", "12345"),
    ("clinic-1", "Encounter", "e9c1f7a2-0b1d-4c55-9a53-111111111111"),
    ("t", "Organization", "?identifier=https://github.com/synthetichealth/synthea|fc81c907"),
    ("t", "Patient", "ünïcödé-id"),  # lengths are bytes, not characters
])
def test_pseudonyms_are_hmac_sha256_of_length_prefixed_parts(tenant, kind, source_id):
    assert Pseudonymizer(KEY).pseudonym(tenant, kind, source_id) == expected_pseudonym(KEY, tenant, kind, source_id)


def test_tenant_type_key_and_part_boundaries_all_change_the_pseudonym():
    base = Pseudonymizer(KEY).pseudonym("t1", "Patient", "x")
    assert base != Pseudonymizer(KEY).pseudonym("t2", "Patient", "x")
    assert base != Pseudonymizer(KEY).pseudonym("t1", "Encounter", "x")
    assert base != Pseudonymizer(bytes(range(1, 33))).pseudonym("t1", "Patient", "x")
    assert Pseudonymizer(KEY).pseudonym("ab", "c", "d") != Pseudonymizer(KEY).pseudonym("a", "bc", "d")


def test_a_conditional_reference_is_the_identifier_key_of_the_organization_it_names():
    tenant, pseudonymizer = "clinic-1", Pseudonymizer(KEY)
    resolver = Resolver(LoadContext(tenant, 0, pseudonymizer), {})
    org_items, _ = ndjson_line_items(
        1, b'{"resourceType":"Organization","id":"o","identifier":[{"system":"urn:h","value":"H|1"}]}', True)
    organization = dict(zip(SILVER["organization"].column_names, item_outputs(org_items[0], resolver, 0, "l")[1].row))
    enc_items, _ = ndjson_line_items(
        2, b'{"resourceType":"Encounter","id":"e","subject":{"reference":"Patient/p"},'
           b'"serviceProvider":{"reference":"Organization?identifier=urn:h%7cH|1"}}', True)
    assert isinstance(enc_items[0], Kept)
    encounter = dict(zip(SILVER["encounter"].column_names, item_outputs(enc_items[0], resolver, 0, "l")[1].row))
    identifier_key = expected_pseudonym(KEY, tenant, "Organization", "?identifier=urn:h|H|1")
    assert organization["identifier_key"] == encounter["hospital_key"] == identifier_key
    assert organization["organization_key"] == expected_pseudonym(KEY, tenant, "Organization", "o")
    assert encounter["patient_key"] == expected_pseudonym(KEY, tenant, "Patient", "p")


def test_keys_are_hex_of_32_bytes_or_more_else_text_of_32_bytes_or_more():
    assert parse_key(f"  {KEY.hex().upper()}\n", "k") == KEY
    text = "a passphrase of at least 32 bytes!"
    assert parse_key(text, "k") == text.encode()
    short_hex = "ab" * 20  # 20 bytes decoded, but 40 bytes as text
    assert parse_key(short_hex, "k") == short_hex.encode()
    with pytest.raises(KeyTooShort, match="at least 32 bytes"):
        parse_key("ab" * 10, "--pseudonym_key_parameter")
    with pytest.raises(KeyTooShort):
        Pseudonymizer(b"short")


def test_the_key_never_appears_in_its_representation():
    assert KEY.hex() not in repr(Pseudonymizer(KEY)) and "fingerprint" in repr(Pseudonymizer(KEY))


def test_postal_codes_keep_three_characters():
    assert postal_prefix(" 02139-1234") == "021"
    assert postal_prefix("7") == "7"
    assert postal_prefix("  ") == ""
