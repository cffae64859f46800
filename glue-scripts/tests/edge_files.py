"""Hand-written raw files that exercise the reader's and loader's rules one by one: formats, encodings,
truncation, gzip members, serde's strictness, reference forms, `urn:uuid` resolution order (pending
resources), DELETE entries, ordering and ties within and across files. The expected outcome of each
is not written here: the tests hold the Spark pipeline to whatever the Rust pipeline does with them."""

import gzip
import json
from pathlib import Path


def _lines(*lines) -> bytes:
    return b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines)


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"))


RESOURCES = _lines(
    "",  # blank lines before the first resource
    "   ",
    _json({"resourceType": "Organization", "id": "org-1", "meta": {"lastUpdated": "2024-01-01T00:00:00Z", "versionId": "3"},
           "identifier": [{"value": "no-system"}, {"system": "urn:hosp", "value": "H-1"}], "active": True,
           "name": "General Hospital", "type": [{"coding": [{"system": "x", "code": "prov"}]}],
           "address": [{"line": ["1 Main"], "city": "Springfield", "state": "IL"}]}),
    _json({"resourceType": "Organization", "id": "org-2", "identifier": [{"system": "urn:hosp"},
           {"system": "urn:hosp", "value": "H-2"}], "name": "Second", "active": False}),
    _json({"resourceType": "Patient", "id": "p-1", "meta": {"lastUpdated": "2024-03-04T10:15:30.123456789+02:00"},
           "gender": "female", "birthDate": "1980-06", "deceasedDateTime": "2024-05-01T23:30:00-05:00",
           "address": [{"postalCode": " 02139-1234", "state": "MA", "country": "US"}, {"postalCode": "99999"}],
           "maritalStatus": {"coding": [{"system": "other", "code": "M"},
                                        {"system": "http://snomed.info/sct", "code": "87915002"}]}}),
    _json({"resourceType": "Patient", "id": "p-2", "gender": "male", "birthDate": "2000-01-01T00:30:00+01:00",
           "deceasedBoolean": False, "address": [{"postalCode": "  "}]}),
    _json({"resourceType": "Patient", "id": "p-3", "meta": {"lastUpdated": "2016-12-31T23:59:60Z"},
           "deceasedBoolean": True, "name": [{"family": "Doe"}]}),
    _json({"resourceType": "Patient", "id": "p-future", "meta": {"lastUpdated": "2099-01-01T00:00:00Z"}}),
    _json({"resourceType": "Encounter", "id": "e-1", "meta": {"lastUpdated": "2024-04-01T00:00:00Z"},
           "status": "finished", "class": {"code": "ACUTE"},
           "type": [{"coding": [{"system": "other", "code": "x", "display": "X"},
                                {"system": "http://snomed.info/sct", "code": "183452005", "display": ""}],
                     "text": "Emergency"}],
           "reasonCode": [{"coding": [{"code": "r1"}]}],
           "subject": {"reference": "http://example.org/fhir/Patient/p-1/_history/2", "display": "Jane Doe"},
           "period": {"start": "2024-04-01T08:00:00+05:30", "end": "2024-04-05"},
           "serviceProvider": {"reference": "Organization?identifier=urn:hosp%7CH-1", "display": "General (display)"},
           "hospitalization": {"dischargeDisposition": {"coding": [{"code": "01"}]}}}),
    _json({"resourceType": "Encounter", "id": "e-2", "status": "completed", "class": None,
           "type": [{"text": "Only text"}], "subject": {"reference": "Patient/p-2"}, "period": {"start": "2024"},
           "serviceProvider": {"reference": "Organization/org-2"}}),
    _json({"resourceType": "Encounter", "id": "e-no-subject", "subject": {"display": "Jane Doe"}}),
    _json({"resourceType": "Encounter", "id": "e-bad-provider", "subject": {"reference": "Patient/p-1"},
           "serviceProvider": {"reference": "Patient/p-1"}}),
    _json({"resourceType": "Condition", "id": "c-1", "subject": {"reference": "Patient/p-1"},
           "encounter": {"reference": "Encounter/e-1"},
           "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91302008"}], "text": "Sepsis text"},
           "clinicalStatus": {"coding": [{"code": "active"}]}, "verificationStatus": {"coding": [{"code": "confirmed"}]},
           "category": [{"coding": [{"code": "encounter-diagnosis"}]}], "onsetDateTime": "2024-04-03",
           "abatementDateTime": "2024-04-10T00:00:00Z", "recordedDate": "2024-04-03T12:00:00-03:00"}),
    _json({"resourceType": "Condition", "id": "c-bad-subject", "subject": {"reference": "Observation/o1"}}),
    _json({"resourceType": "Condition", "id": "c-uuid", "subject": {"reference": "urn:uuid:nowhere"}}),
    _json({"resourceType": "Observation", "id": "o-1", "status": "final"}),
    '{"resourceType":"Observation", broken',
    '{"resourceType":"Patient", broken',
    '{"resourceType":"Pa tient","id":"x"}',
    '{"resourceType":"Patient","id":"dup","gender":"male","gender":"female"}',
    '{"resourceType":"Patient","id":"dup-unknown","foo":1,"foo":2}',
    '{"resourceType":"Patient","id":"null-address","address":null}',
    '{"resourceType":"Patient","id":"null-meta","meta":null}',
    '{"resourceType":"Patient","id":"nan","extension":[NaN]}',
    '{"resourceType":"Patient","id":"a b"}',
    '{"resourceType":"Patient","gender":"female"}',
    "[1,2]",
    '{"id":"no-type"}',
    b'{"resourceType":"Patient","id":"cr",\r"gender":"other"}\r',
    '{"resourceType":"Patient","id":"p-tie","gender":"female"}',
    '{"resourceType":"Patient","id":"p-tie","gender":"male"}',
    _json({"resourceType": "Patient", "id": "p-order", "meta": {"lastUpdated": "2024-02-01T00:00:00Z"}, "gender": "newer"}),
    _json({"resourceType": "Patient", "id": "p-order", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"}, "gender": "older"}),
    '{"resourceType":"Patient","id":"bad-date","birthDate":"2023-02-30"}',
    '{"resourceType":"Patient","id":"gender-number","gender":5}',
    _json({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:u-enc", "resource": {"resourceType": "Encounter", "subject": {"reference": "urn:uuid:u-pat"},
                                                   "status": "finished", "class": {"code": "IMP"}}},
        {"fullUrl": "urn:uuid:u-pat", "resource": {"resourceType": "Patient", "id": "p-line-bundle"}},
        {"request": {"method": "delete", "url": "Patient/p-3"}},
        {"request": {"method": "DELETE"}},
        {"request": {"method": "DELETE", "url": "Observation/o-1"}},
        {"request": {"method": "DELETE", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": "Patient/a/b"}},
        {"fullUrl": "urn:uuid:x"},
        {"resource": {"resourceType": "Bundle", "type": "collection"}},
        {"resource": "text"},
    ]}),
    _json({"resourceType": "Bundle", "type": "document", "entry": [{"resource": {"resourceType": "Patient", "id": "never"}}]}),
    # The entry comes before the unacceptable type: the Rust reader has streamed it already.
    '{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"entry-before-error"}}],"type":"message"}',
)

BUNDLE = json.dumps({
    "resourceType": "Bundle", "id": "b1", "type": "transaction", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
    "entry": [
        # Refers to entries further down: kept pending until the end of the Bundle.
        {"fullUrl": "urn:uuid:c-forward", "resource": {
            "resourceType": "Condition", "subject": {"reference": "urn:uuid:pat-b"},
            "encounter": {"reference": "urn:uuid:enc-b"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "233604007", "display": "Pneumonia"}]},
            "onsetDateTime": "2024-06-04T10:00:00Z"}},
        {"fullUrl": "urn:uuid:pat-b", "resource": {
            "resourceType": "Patient", "id": "p-b", "meta": {"lastUpdated": "2024-06-01T00:00:00Z"},
            "gender": "female", "deceasedDateTime": "2024-06-20"}},
        {"fullUrl": "urn:uuid:enc-b", "resource": {
            "resourceType": "Encounter", "id": "e-b", "status": "finished", "class": {"code": "IMP"},
            "subject": {"reference": "urn:uuid:pat-b"},
            "period": {"start": "2024-06-01T10:00:00Z", "end": "2024-06-08T10:00:00Z"},
            "serviceProvider": {"reference": "Organization?identifier=urn:hosp|H-2"}}},
        {"fullUrl": "urn:uuid:dup", "resource": {"resourceType": "Patient", "id": "first-dup"}},
        # `dup` is declared above (and again below): resolved now, to the first.
        {"resource": {"resourceType": "Encounter", "id": "e-ref-dup", "status": "finished", "class": {"code": "IMP"},
                      "subject": {"reference": "urn:uuid:dup"},
                      "period": {"start": "2024-07-01T00:00:00Z", "end": "2024-07-02T00:00:00Z"}}},
        # `later-dup` is declared twice below: pending, resolved to the last declaration.
        {"resource": {"resourceType": "Encounter", "id": "e-pending-dup", "status": "finished",
                      "subject": {"reference": "urn:uuid:later-dup"}}},
        # One reference resolvable now, one pending: every reference resolves at the end.
        {"resource": {"resourceType": "Encounter", "id": "e-mixed", "subject": {"reference": "urn:uuid:dup"},
                      "serviceProvider": {"reference": "urn:uuid:org-later"}}},
        # A uuid of an Organization where a Patient is expected: the key is the Organization's.
        {"resource": {"resourceType": "Encounter", "id": "e-org-subject", "subject": {"reference": "urn:uuid:org-u"}}},
        {"fullUrl": "urn:uuid:later-dup", "resource": {"resourceType": "Patient", "id": "later-one"}},
        {"fullUrl": "urn:uuid:dup", "resource": {"resourceType": "Patient", "id": "second-dup"}},
        {"fullUrl": "urn:uuid:later-dup", "resource": {"resourceType": "Patient", "id": "later-two"}},
        {"resource": {"resourceType": "Encounter", "id": "e-missing", "subject": {"reference": "urn:uuid:not-here"}}},
        {"fullUrl": "urn:uuid:org-u", "resource": {"resourceType": "Organization", "id": "org-u", "name": "U"}},
        {"request": {"method": "DELETE", "url": "Condition/c-1"}},
        {"fullUrl": "urn:uuid:org-later", "resource": {"resourceType": "Organization", "id": "org-later"}},
    ]}, indent=2).encode()

LATER = _lines(
    _json({"resourceType": "Patient", "id": "p-1", "meta": {"lastUpdated": "2020-01-01T00:00:00Z"}, "gender": "stale"}),
    _json({"resourceType": "Patient", "id": "p-2", "meta": {"lastUpdated": "2020-01-01T00:00:00Z"}, "gender": "stale"}),
    _json({"resourceType": "Organization", "id": "org-2", "meta": {"lastUpdated": "2030-01-01T00:00:00Z"},
           "name": "Second, renamed"}),
    _json({"resourceType": "Patient", "id": "p-line-bundle", "gender": "later file"}),
    _json({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "Encounter/e-2"}},
        {"request": {"method": "DELETE", "url": "Patient/p-order"}},
        {"request": {"method": "DELETE", "url": "Patient/p-future"}},
    ]}),
)


# A UTF-8 byte order mark before NDJSON: skipped by the reader's design. The Rust reader skips it in
# a gzip file but quarantines the same file uncompressed (its format sniffer decides on the first
# two bytes it is handed, before a three-byte mark can be recognised).
BYTE_ORDER_MARK = b"\xef\xbb\xbf" + _lines('{"resourceType":"Patient","id":"bom-1"}', '{"resourceType":"Patient","id":"bom-2"}')


def write_edge_files(folder: Path) -> list:
    """Writes the files in load order and returns their paths."""
    files = {
        "01-resources.ndjson": RESOURCES,
        "02-bundle.json": BUNDLE,
        "03-single-patient.json": json.dumps({"resourceType": "Patient", "id": "single", "gender": "unknown",
                                              "meta": {"lastUpdated": "2024-08-01T00:00:00Z"}}, indent=2).encode(),
        "04-one-line.ndjson": _lines('{"resourceType":"Organization","id":"org-one-line","name":"One"}'),
        "05-bad-first-line.ndjson": _lines('{"resourceType":"Patient", broken', '{"resourceType":"Patient","id":"ok"}'),
        "06-truncated.ndjson": _lines('{"resourceType":"Patient","id":"t1"}') + b'{"resourceType":"Patient","id":"t2","gender":"fem',
        "07-bad-last-line.ndjson": _lines('{"resourceType":"Patient","id":"l1"}') + b'{"id":"l2"}',
        "08-empty.ndjson": b"",
        "09-array.json": b'[{"resourceType":"Patient","id":"x"}]',
        "10-utf16.json": b"\xff\xfe" + '{"resourceType":"Patient","id":"w"}'.encode("utf-16-le"),
        "11-not-gzip.ndjson.gz": _lines('{"resourceType":"Patient","id":"g0"}', '{"resourceType":"Patient","id":"g00"}'),
        "12-gzip-content.ndjson": gzip.compress(_lines('{"resourceType":"Patient","id":"g1"}',
                                                       '{"resourceType":"Patient","id":"g2"}')),
        "13-two-members.ndjson.gz": gzip.compress(_lines('{"resourceType":"Patient","id":"m1"}'))
        + gzip.compress(_lines('{"resourceType":"Patient","id":"m2"}')),
        "14-no-resource-lines.ndjson": _lines('{"a":1}', '{"b":2}'),
        "15-bundle-message.json": b'{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"Patient","id":"msg"}}]}',
        "16-invalid-utf8.ndjson": _lines('{"resourceType":"Patient","id":"u1"}',
                                         b'{"resourceType":"Patient","id":"u2","gender":"\xff"}'),
        "17-later.ndjson": LATER,
        "18-recreate.ndjson": _lines(_json({"resourceType": "Patient", "id": "p-order",
                                            "meta": {"lastUpdated": "2023-01-01T00:00:00Z"}, "gender": "recreated"})),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]
