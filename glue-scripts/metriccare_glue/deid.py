"""De-identification on the way into silver, as `functions/core/src/deid.rs` does it: keyed
HMAC-SHA256 pseudonyms (tenant mixed in), the key's public fingerprint, postal-code prefixes, and the
redaction of object keys (which can name patients) from error texts."""

import hashlib
import hmac
import re
from urllib.parse import quote

MIN_KEY_BYTES = 32
# 128 bits: collisions are impossible in practice and join keys stay 32 hex characters.
PSEUDONYM_BYTES = 16
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


class KeyTooShort(ValueError):
    """The pseudonymisation key is unusable (too short)."""


def parse_key(text: str, source: str) -> bytes:
    """A key given as hex (at least 32 bytes once decoded), or as any text of at least 32 bytes.

    `source` names where the key came from (an SSM parameter) for the error; the key itself is
    never part of a message.
    """
    trimmed = text.strip()
    key = bytes.fromhex(trimmed) if _HEX.fullmatch(trimmed) else b""
    if len(key) < MIN_KEY_BYTES:
        key = text.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise KeyTooShort(f"{source} must hold at least {MIN_KEY_BYTES} bytes")
    return key


class Pseudonymizer:
    """Pseudonyms of `(tenant, resource type, id)`; the same id in two tenants gets unrelated keys."""

    def __init__(self, key: bytes):
        if len(key) < MIN_KEY_BYTES:
            raise KeyTooShort(f"the pseudonymisation key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:
        # Never print the key.
        return f"Pseudonymizer(fingerprint={self.fingerprint()})"

    def pseudonym(self, tenant: str, resource_type: str, source_id: str) -> str:
        """First 32 hex characters of HMAC-SHA256(key, len‖tenant‖len‖type‖len‖id), each length
        4 bytes big-endian, so that ("ab", "c") and ("a", "bc") can never collide."""
        message = b"".join(len(part).to_bytes(4, "big") + part
                           for part in (p.encode("utf-8") for p in (tenant, resource_type, source_id)))
        return hmac.new(self._key, message, hashlib.sha256).digest()[:PSEUDONYM_BYTES].hex()

    def conditional_key(self, tenant: str, resource_type: str, query: str) -> str:
        """The pseudonym of a conditional reference `Type?query`: always the search itself (`%7C`
        read as `|`), so that it does not depend on file order and equals the `identifier_key` of
        the organization carrying that identifier."""
        canonical = query.replace("%7C", "|").replace("%7c", "|")
        return self.pseudonym(tenant, resource_type, f"?{canonical}")

    def fingerprint(self) -> str:
        """A public fingerprint of the key (not the key): recorded in the lake, compared on every write."""
        return hmac.new(self._key, b"metriccare key fingerprint v1", hashlib.sha256).digest()[:8].hex()


def postal_prefix(postal_code: str) -> str:
    """The first three characters of a postal code (HIPAA limited data set / POPIA)."""
    return postal_code.strip()[:3]


def redact_key(text: str, object_key: str, replacement: str) -> str:
    """Replaces an object key, as given or percent-encoded in a request URL, before an error text
    reaches the ledger, a log line or an alert."""
    if not object_key:
        return text
    encoded = quote(object_key, safe="-._~/")
    return text.replace(object_key, replacement).replace(encoded, replacement)
