"""The reader's and parser's rules in isolation: dates, references, formats, `urn:uuid` resolution
order and DELETE entries (the parity tests hold the whole to the Rust pipeline)."""

import gzip
import json
from datetime import datetime, timedelta, timezone

import pytest

from metriccare_glue.deid import Pseudonymizer
from metriccare_glue.fhir import (Delete, InvalidFile, Kept, Rejected, Rejection, Skipped, file_items,
                                  ndjson_line_items, parse_reference, sniff_format)
from metriccare_glue.fhir_time import FhirValueError, hudi_instant, parse_fhir_datetime, parse_fhir_year
from metriccare_glue.silver import (LoadContext, Operation, Resolver, item_outputs, surviving_operation,
                                    uuid_declaration, uuid_index)
from metriccare_glue.tables import SILVER

KEY = bytes(range(32))
TENANT = "clinic-1"


def micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


@pytest.mark.parametrize("text, moment", [
    ("2021", datetime(2021, 1, 1, tzinfo=timezone.utc)),
    ("2021-03", datetime(2021, 3, 1, tzinfo=timezone.utc)),
    ("2021-03-04", datetime(2021, 3, 4, tzinfo=timezone.utc)),
    ("2021-03-04T10:15:30Z", datetime(2021, 3, 4, 10, 15, 30, tzinfo=timezone.utc)),
    ("2021-03-04T10:15:30.123456789+02:00", datetime(2021, 3, 4, 10, 15, 30, 123456, tzinfo=timezone(timedelta(hours=2)))),
    ("2024-01-31T23:30:00-05:00", datetime(2024, 2, 1, 4, 30, tzinfo=timezone.utc)),
    ("1969-12-31T23:59:59.5", datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=timezone.utc)),
    ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=timezone.utc)),
])
def test_fhir_datetimes_are_utc_microseconds(text, moment):
    assert parse_fhir_datetime(text) == micros(moment)
    assert hudi_instant(micros(moment)) == moment.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S%f")[:17]


@pytest.mark.parametrize("text", ["", "2023-02-30", "2023-13-01", "20230101", "2023-01-01T25:00:00Z",
                                  "2023-01-01T10:00", "2023-01-01T10:00:00+5", "2023-01-01 10:00:00Z", "abcd",
                                  "2023-01-01T10:00:00.Z", "2023-01-01T10:00:00+15:00", "2023-1-01"])
def test_impossible_or_malformed_datetimes_are_refused(text):
    with pytest.raises(FhirValueError):
        parse_fhir_datetime(text)


def test_the_birth_year_is_the_utc_year():
    assert parse_fhir_year("1980-06") == 1980
    assert parse_fhir_year("2000-01-01T00:30:00+01:00") == 1999


def test_every_reference_shape():
    assert parse_reference("Patient/123", "Patient") == ("literal", "Patient", "123")
    assert parse_reference("http://x.org/fhir/Patient/a-1", "Patient") == ("literal", "Patient", "a-1")
    assert parse_reference("Patient/9/_history/2", "Patient") == ("literal", "Patient", "9")
    assert parse_reference("urn:uuid:abc", "Patient") == ("uuid", "", "abc")
    assert parse_reference("Organization?identifier=s|v", "Organization") == ("conditional", "Organization",
                                                                               "identifier=s|v")
    for bad in ["Patient/", "Observation/xyz", "Patient/../etc", "urn:uuid:", "nonsense", "Encounter?x=1"]:
        with pytest.raises(Rejection):
            parse_reference(bad, "Patient")


@pytest.mark.parametrize("head, decided", [
    (b'{"resourceType":"Patient","id":"a"}\n{"resourceType":"Patient","id":"b"}\n', "ndjson"),
    (b'{"resourceType":"Patient","id":"a"}\n', "json"),
    (b'{\n  "resourceType": "Bundle"\n}', "json"),
    (b'  \n\n{"resourceType":"Patient","id":"a"}\n{"id":"b"}', "ndjson"),
    (b'{"resourceType":"Patient", broken\n{"resourceType":"Patient","id":"b"}', "json"),
])
def test_ndjson_is_a_complete_first_line_with_more_after_it(head, decided):
    assert sniff_format(head) == decided


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"), (b"  [1]", "array"), (b"\xff\xfe{", "UTF-16"), (b"<xml/>", "does not start with"),
])
def test_what_is_not_fhir_json_is_invalid(content, reason):
    with pytest.raises(InvalidFile, match=reason):
        list(file_items(content, named_gz=False))


def test_gzip_is_sniffed_and_every_member_read():
    lines = [b'{"resourceType":"Patient","id":"a"}\n', b'{"resourceType":"Patient","id":"b"}\n']
    data = gzip.compress(lines[0]) + gzip.compress(lines[1])
    assert [i.record.id for i in file_items(data, named_gz=False)] == ["a", "b"]
    with pytest.raises(InvalidFile, match="not gzip"):
        list(file_items(b"".join(lines), named_gz=True))
    with pytest.raises(InvalidFile, match="corrupt"):
        list(file_items(data[:-10], named_gz=True))


def test_a_last_line_cut_off_is_a_truncated_file_but_a_bad_complete_line_is_a_reject():
    with pytest.raises(InvalidFile, match="truncated"):
        ndjson_line_items(2, b'{"resourceType":"Patient","id":"b', complete=False)
    items, seen = ndjson_line_items(2, b'{"id":"b"}', complete=False)
    assert [type(i) for i in items] == [Rejected] and not seen


def test_an_unkept_type_is_counted_even_when_its_json_is_broken_past_the_type():
    # The Rust reader reads the type off the line's prefix without parsing the rest.
    assert [type(i) for i in ndjson_line_items(1, b'{"resourceType":"Observation", broken', True)[0]] == [Skipped]
    assert [type(i) for i in ndjson_line_items(1, b'{"resourceType":"Patient", broken', True)[0]] == [Rejected]


def _bundle(*entries) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}).encode()


def _outputs(data: bytes) -> list:
    items = list(file_items(data, named_gz=False))
    uuids = uuid_index(filter(None, map(uuid_declaration, items)))
    resolver = Resolver(LoadContext(TENANT, 7, Pseudonymizer(KEY)), uuids)
    return [o for item in items for o in item_outputs(item, resolver, 0, "ledger")]


def _key(kind: str, source_id: str) -> str:
    return Pseudonymizer(KEY).pseudonym(TENANT, kind, source_id)


def _patient_entry(uuid: str, source_id: str) -> dict:
    return {"fullUrl": f"urn:uuid:{uuid}", "resource": {"resourceType": "Patient", "id": source_id}}


def _encounter_entry(source_id: str, **uuids: str) -> dict:
    references = {field: {"reference": f"urn:uuid:{uuid}"} for field, uuid in uuids.items()}
    return {"resource": {"resourceType": "Encounter", "id": source_id, **references}}


def test_urn_uuid_references_resolve_to_the_declaration_in_force_else_the_last_one():
    patient, encounter = _patient_entry, _encounter_entry
    outputs = _outputs(_bundle(
        patient("d", "first"),
        encounter("now", subject="d"),                          # declared above: the first
        encounter("pending", subject="later"),                  # declared below, twice: the last
        encounter("mixed", subject="d", serviceProvider="org"),  # one pending: all resolve at the end
        patient("later", "one"), patient("d", "second"), patient("later", "two"),
        {"fullUrl": "urn:uuid:org", "resource": {"resourceType": "Organization", "id": "org-1"}},
        encounter("missing", subject="nowhere"),
    ))
    rows = {o.key: o for o in outputs if isinstance(o, Operation) and o.table == "encounter"}

    def column(encounter_id: str, name: str):
        return dict(zip(SILVER["encounter"].column_names, rows[_key("Encounter", encounter_id)].row))[name]

    assert column("now", "patient_key") == _key("Patient", "first")
    assert column("pending", "patient_key") == _key("Patient", "two")
    assert column("mixed", "patient_key") == _key("Patient", "second")
    assert column("mixed", "hospital_key") == _key("Organization", "org-1")
    assert _key("Encounter", "missing") not in rows
    # A pending row comes after every immediate row of its file.
    assert rows[_key("Encounter", "pending")].sequence > rows[_key("Encounter", "now")].sequence
    assert not rows[_key("Encounter", "now")].sequence[2] and rows[_key("Encounter", "mixed")].sequence[2]


def test_delete_entries():
    outputs = _outputs(_bundle(
        {"request": {"method": "delete", "url": "Patient/p1"}},
        {"request": {"method": "DELETE"}},
        {"request": {"method": "DELETE", "url": "Observation/o1"}},
        {"request": {"method": "DELETE", "url": "Patient/a/b"}},
        {"request": {"method": "PUT", "url": "Patient/p2"}, "resource": {"resourceType": "Patient", "id": "p2"}},
    ))
    deletes = [o for o in outputs if isinstance(o, Operation) and o.row is None]
    assert [(d.table, d.key, d.order) for d in deletes] == [("patient", _key("Patient", "p1"), 7)]
    assert sum(1 for o in outputs if type(o).__name__ == "RejectedRow") == 2
    assert [type(i) for i in file_items(_bundle({"request": {"method": "DELETE", "url": "Patient/x"}}), False)] == [Delete]


def test_the_newest_version_survives_ties_go_later_and_a_delete_keeps_a_tombstone():
    def op(order, sequence, row=("r",)):
        return Operation("patient", "k", order, sequence, row)

    newer, older = op(20, (0, 0, False, (1, 0))), op(10, (0, 0, False, (2, 0)))
    assert surviving_operation([older, newer]) is newer
    tie_first, tie_second = op(10, (0, 0, False, (1, 0)), ("a",)), op(10, (0, 0, False, (2, 0)), ("b",))
    assert surviving_operation([tie_second, tie_first]) is tie_second
    delete = op(10, (0, 1, False, (3, 0)), None)
    assert surviving_operation([tie_first, delete]) is delete, "a delete beats an upsert of equal ordering"
    assert surviving_operation([newer, delete]) is newer, "an older delete loses"
    older_after = op(1, (1, 0, False, (1, 0)))
    assert surviving_operation([tie_first, delete, older_after]) is delete, "an older version stays deleted"
    recreated = op(11, (1, 0, False, (1, 0)))
    assert surviving_operation([tie_first, delete, recreated]) is recreated, "a newer version re-creates"


def test_only_kept_resources_declare_uuids():
    items = list(file_items(_bundle(
        {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient", "id": "p"}},
        {"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Practitioner", "id": "x"}},
    ), False))
    assert [type(i) for i in items] == [Kept, Skipped]
    assert [d.uuid for d in filter(None, map(uuid_declaration, items))] == ["a"]


def test_a_decompression_bomb_is_an_invalid_file():
    # 70 MiB from about 70 KiB: past the 64 MiB grace, far beyond the 200x ratio.
    bomb = gzip.compress(b"{" + b" " * (70 << 20), compresslevel=9)
    with pytest.raises(InvalidFile, match="decompression-bomb"):
        list(file_items(bomb, named_gz=True))
