"""The silver tables read back with the Apache Hudi reader (`hudi` on PyPI): exact rows after a first
load, after an upsert with newer (and stale) versions, after re-ingesting the same files, after a
delete, for a whole generated data set, and with an unfinished commit on disk."""
import datetime as dt
import json
import os
import shutil
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import TABLES, pseudonym

UTC = dt.timezone.utc


def ts(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def rows(table, key):
    """Rows sorted by record key, with the ingest time left out (checked separately)."""
    out = []
    for row in sorted(table.to_pylist(), key=lambda r: r[key]):
        row.pop("ingested_at")
        out.append(row)
    return out


PATIENT_V1 = [
    {"resourceType": "Patient", "id": "p1", "meta": {"lastUpdated": "2024-01-01T00:00:00Z", "versionId": "1"},
     "name": [{"family": "Mokoena", "given": ["Thandi"]}], "telecom": [{"system": "phone", "value": "082 555 0101"}],
     "gender": "female", "birthDate": "1980-05-05",
     "address": [{"line": ["7 Kloof Street"], "city": "Cape Town", "state": "WC", "postalCode": "8001", "country": "ZA"}]},
    {"resourceType": "Patient", "id": "p2", "meta": {"lastUpdated": "2024-01-01T00:00:00Z", "versionId": "1"},
     "gender": "male", "birthDate": "1955"},
]
ENCOUNTERS = [
    {"resourceType": "Encounter", "id": "e1", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"}, "status": "finished",
     "class": {"code": "IMP"}, "subject": {"reference": "Patient/p1"},
     "period": {"start": "2023-12-01T08:00:00+02:00", "end": "2023-12-05T23:30:00-05:00"},
     "serviceProvider": {"reference": "Organization/o1", "display": "Tygerberg"}},
]
CONDITIONS = [
    {"resourceType": "Condition", "id": "c1", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
     "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91302008", "display": "Sepsis (disorder)"}]},
     "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"},
     "onsetDateTime": "2023-12-03T10:00:00Z"},
    {"resourceType": "Condition", "id": "c2", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
     "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertensive disorder"}]},
     "subject": {"reference": "Patient/p2"}, "recordedDate": "2023-11-01"},
]


def expected_patient(source_id, p, ledger_id, **changes):
    row = {
        "_hoodie_record_key": pseudonym("t1", "Patient", source_id),
        "_hoodie_partition_path": "tenant_id=t1",
        "patient_key": pseudonym("t1", "Patient", source_id),
        "tenant_id": "t1",
        "gender": p["gender"],
        "birth_year": int(p["birthDate"][:4]),
        "deceased": None,
        "deceased_at": None,
        "postal_prefix": "800" if source_id == "p1" else None,
        "state": "WC" if source_id == "p1" else None,
        "country": "ZA" if source_id == "p1" else None,
        "marital_status": None,
        "last_updated": ts(p["meta"]["lastUpdated"]),
        "version_id": p["meta"]["versionId"],
        "source_file_id": ledger_id,
    }
    row.update(changes)
    return row


def patient_rows(lake):
    table = lake.read("patient")
    selected = [r for r in rows(table, "patient_key")]
    for r in selected:
        for meta in ("_hoodie_commit_time", "_hoodie_commit_seqno", "_hoodie_file_name"):
            assert r.pop(meta)
    return selected


def test_first_load_upsert_and_reingest_read_back_exactly(lake, write):
    # GIVEN a first export of one tenant
    v1 = [write("v1/Patient.ndjson", PATIENT_V1), write("v1/Encounter.ndjson", ENCOUNTERS),
          write("v1/Condition.ndjson", CONDITIONS)]
    # WHEN it is ingested
    lake.ingest("t1", *v1)
    ledger_v1 = {e["object"]["key"].rsplit("/", 1)[-1]: e["id"] for e in lake.ledger()}
    # THEN the Hudi reader sees exactly the de-identified rows
    first = patient_rows(lake)
    assert first == [
        expected_patient(sid, p, ledger_v1["Patient.ndjson"])
        for sid, p in sorted((("p1", PATIENT_V1[0]), ("p2", PATIENT_V1[1])), key=lambda x: pseudonym("t1", "Patient", x[0]))
    ]
    encounter = rows(lake.read("encounter"), "encounter_key")
    assert len(encounter) == 1
    e = encounter[0]
    assert e["encounter_key"] == pseudonym("t1", "Encounter", "e1")
    assert e["patient_key"] == pseudonym("t1", "Patient", "p1")
    assert e["hospital_key"] == pseudonym("t1", "Organization", "o1")
    assert (e["period_start"], e["period_end"]) == (ts("2023-12-01T06:00:00Z"), ts("2023-12-06T04:30:00Z"))
    assert (e["class_code"], e["status"], e["hospital_name"]) == ("IMP", "finished", "Tygerberg")
    conditions = {c["condition_key"]: c for c in rows(lake.read("condition"), "condition_key")}
    c1 = conditions[pseudonym("t1", "Condition", "c1")]
    assert (c1["code"], c1["encounter_key"], c1["onset_at"]) == ("91302008", e["encounter_key"], ts("2023-12-03T10:00:00Z"))
    c2 = conditions[pseudonym("t1", "Condition", "c2")]
    assert (c2["encounter_key"], c2["recorded_at"], c2["onset_at"]) == (None, ts("2023-11-01T00:00:00Z"), None)

    # WHEN a second export brings a newer p1 (now deceased) and a stale p2
    newer_p1 = {**PATIENT_V1[0], "meta": {"lastUpdated": "2024-02-01T00:00:00Z", "versionId": "2"},
                "deceasedDateTime": "2024-01-20T01:00:00+02:00"}
    stale_p2 = {**PATIENT_V1[1], "meta": {"lastUpdated": "2023-06-01T00:00:00Z", "versionId": "0"}, "gender": "female"}
    v2 = write("v2/Patient.ndjson", [newer_p1, stale_p2])
    lake.ingest("t1", v2)
    ledger_v2 = next(e["id"] for e in lake.ledger() if "v2/" in e["object"]["key"])
    # THEN the newest version wins and the stale one never overwrites
    after = {r["patient_key"]: r for r in patient_rows(lake)}
    p1 = after[pseudonym("t1", "Patient", "p1")]
    assert p1 == expected_patient("p1", newer_p1, ledger_v2, deceased=True, deceased_at=ts("2024-01-19T23:00:00Z"))
    p2 = after[pseudonym("t1", "Patient", "p2")]
    assert p2 == expected_patient("p2", PATIENT_V1[1], ledger_v1["Patient.ndjson"])

    # WHEN every file is delivered again
    before_commits = {t: lake.commits(t) for t in TABLES}
    before_rows = {t: rows(lake.read(t), lake.read(t).column_names[5]) for t in ["patient", "encounter", "condition"]}
    done = lake.ingest("t1", *v1, v2)
    # THEN nothing is processed, written or changed
    assert "already processed" in done.stderr
    assert {t: lake.commits(t) for t in TABLES} == before_commits
    assert {t: rows(lake.read(t), lake.read(t).column_names[5]) for t in before_rows} == before_rows


def test_a_delete_entry_removes_the_record_in_a_new_commit(lake, write):
    lake.ingest("t1", write("Condition.ndjson", CONDITIONS))
    deleted = {"resourceType": "Bundle", "type": "transaction",
               "entry": [{"request": {"method": "DELETE", "url": "Condition/c1"}}]}
    lake.ingest("t1", write("deleted/Bundle.ndjson", [deleted]))
    keys = [r["condition_key"] for r in lake.read("condition").to_pylist()]
    assert keys == [pseudonym("t1", "Condition", "c2")]
    assert len(lake.commits("condition")) == 2


def generate(out, *args) -> dict:
    """Runs fhir-generator into `out`; returns its ground truth."""
    subprocess.run([os.environ["FHIR_GENERATOR_BIN"], "--out", str(out), *args], check=True, capture_output=True)
    return json.loads((out / "ground-truth.json").read_text())


def assert_silver_matches_truth(lake, truth: dict) -> None:
    """Every record once, and each tenant's silver row counts equal to the generator's."""
    for table in TABLES:
        data = lake.read(table)
        keys = data.column(5).to_pylist()
        assert len(keys) == len(set(keys)), f"{table}: a record key appears twice"
        for tenant in truth["tenants"]:
            count = sum(1 for t in data.column("tenant_id").to_pylist() if t == tenant["tenant"])
            assert count == tenant["resources"][table], (table, tenant["tenant"])


def test_a_generated_dirty_data_set_reads_back_with_the_ground_truth_counts(lake, tmp_path):
    out = tmp_path / "generated"
    truth = generate(out, "--patients", "80", "--tenants", "2", "--seed", "11", "--format", "bundle", "--dirty")
    for tenant in truth["tenants"]:
        # Exit status 3: files loaded, some resources rejected (the dirty records).
        lake.ingest(tenant["tenant"], out / tenant["tenant"], expect=3)
    assert_silver_matches_truth(lake, truth)


def test_watch_with_parallel_jobs_loads_each_tenants_exports_in_order(lake, tmp_path):
    # GIVEN three tenants' dirty exports dropped into the raw zone: export-2 holds newer versions,
    # stale versions and deletes, so it must load after export-1 of the same tenant
    out = tmp_path / "generated"
    truth = generate(out, "--patients", "90", "--tenants", "3", "--seed", "5", "--format", "bundle",
                     "--patients-per-bundle", "10", "--dirty")
    raw = lake.root / "raw"
    raw.parent.mkdir(parents=True)
    shutil.copytree(out, raw, ignore=shutil.ignore_patterns("ground-truth.json"))
    # WHEN one watch pass loads them three files at a time (one per tenant)
    lake.run("watch", "--once", "--jobs", "3", expect=3)
    # THEN every tenant's silver equals the generator's ground truth, each record once
    assert_silver_matches_truth(lake, truth)
    ledger = lake.ledger()
    assert len(ledger) == sum(1 for f in raw.rglob("*") if f.is_file())
    assert all(item["status"] == "COMPLETED" for item in ledger), ledger


def test_files_of_an_unfinished_commit_are_invisible_to_the_reader(lake, write):
    # GIVEN a loaded table
    lake.ingest("t1", write("Patient.ndjson", PATIENT_V1))
    before = rows(lake.read("patient"), "patient_key")
    # WHEN a writer stopped after writing a new base file and its requested/inflight instant (what
    # MetricCare leaves when it stops before the commit point), with a rewritten row in it
    table = lake.root / "silver" / "patient"
    base = next((table / "tenant_id=t1").glob("*.parquet"))
    file_id, _token, instant = base.stem.split("_")
    pending = str(int(instant) + 5000)
    data = pq.read_table(base).to_pylist()
    for row in data:
        row["gender"] = "unknown"
    pq.write_table(pa.Table.from_pylist(data, schema=pq.read_schema(base)),
                   base.with_name(f"{file_id}_9-9-0_{pending}.parquet"))
    (table / ".hoodie" / f"{pending}.commit.requested").write_text("")
    (table / ".hoodie" / f"{pending}.inflight").write_text("{}")
    # THEN the reader still sees exactly the committed rows
    assert rows(lake.read("patient"), "patient_key") == before


def test_after_cleaning_and_archival_the_reader_sees_every_row_once(lake, write, tmp_path):
    """Many small drops, each its own commit, with table services keeping 1 commit's slices and 3
    active instants: the Apache Hudi reader reads exactly the rows of the same files loaded as one
    group commit into a second lake, though most instants have left `.hoodie/` and most slices are
    gone."""
    lake.env.update({"METRICCARE_RETAIN_COMMITS": "1", "METRICCARE_RETAIN_HOURS": "0",
                     "METRICCARE_ACTIVE_INSTANTS": "3", "METRICCARE_GROUP_FILES": "1"})
    files = [write("first.ndjson", [dict(p, id=f"p{n}") for n in range(20) for p in PATIENT_V1[:1]])]
    for day in range(12):
        updated = dict(PATIENT_V1[1], id=f"p{day}", gender="other",
                       meta={"lastUpdated": f"2024-02-{day + 1:02d}T00:00:00Z", "versionId": "2"})
        new = dict(PATIENT_V1[1], id=f"day{day}")
        files.append(write(f"day-{day:02d}.ndjson", [updated, new]))
    for path in files:
        lake.ingest("t1", path)
    grouped = type(lake)(tmp_path / "grouped")
    grouped.ingest("t1", *files)

    def data(table):
        return sorted(({k: v for k, v in r.items() if not k.startswith("_hoodie") and k not in
                        ("ingested_at", "source_file_id")} for r in table.to_pylist()),
                      key=lambda r: r["patient_key"])

    got = data(lake.read("patient"))
    assert len(got) == 20 + 12
    assert got == data(grouped.read("patient"))
    assert sum(1 for r in got if r["gender"] == "other") == 12
    assert len(lake.commits("patient")) == 3
    assert len(grouped.commits("patient")) == 1
    partition = lake.root / "silver" / "patient" / "tenant_id=t1"
    assert len(list(partition.glob("*.parquet"))) <= 4 + 1
    status = lake.run("status", "--services", "--json").stdout.splitlines()
    services = {json.loads(line)["table"]: json.loads(line)["services"] for line in status}
    assert services["silver/patient"]["totals"]["archived_instants"] == 13 - 3
    assert services["silver/patient"]["totals"]["cleaned_files"] > 0


def test_an_erased_patient_is_gone_for_the_apache_hudi_reader(lake, write):
    """`metriccare erase` removes a patient and their encounter and conditions from what the Apache
    Hudi reader reads, prints a receipt without the source id, and a later file does not bring them
    back."""
    first = write("first.ndjson", PATIENT_V1 + ENCOUNTERS + CONDITIONS)
    updated = write("updated.ndjson", [dict(PATIENT_V1[0], meta={"lastUpdated": "2024-02-01T00:00:00Z",
                                                                   "versionId": "2"})])
    lake.ingest("t1", first)
    lake.ingest("t1", updated)
    done = lake.run("erase", "--tenant", "t1", "--patient", "p1")
    receipt = json.loads(done.stdout)
    assert receipt["patient_key"] == pseudonym("t1", "Patient", "p1")
    assert receipt["rows_removed"] == {"patient": 1, "encounter": 1, "condition": 1}
    assert "p1" not in done.stdout.replace(receipt["patient_key"], "")
    p1_keys = {pseudonym("t1", "Patient", "p1"), pseudonym("t1", "Encounter", "e1"),
               pseudonym("t1", "Condition", "c1")}
    for table in ("patient", "encounter", "condition"):
        keys = {r["_hoodie_record_key"] for r in lake.read(table).to_pylist()}
        assert not keys & p1_keys, table
    assert [r["patient_key"] for r in lake.read("patient").to_pylist()] == [pseudonym("t1", "Patient", "p2")]
    for path in (lake.root / "silver").rglob("*.parquet"):
        keys = set(pq.read_table(path, columns=["_hoodie_record_key"]).column(0).to_pylist())
        assert not keys & p1_keys, path
    again = write("again.ndjson", [dict(PATIENT_V1[0], meta={"lastUpdated": "2025-01-01T00:00:00Z"})])
    lake.ingest("t1", again)
    assert len(lake.read("patient")) == 1


def test_a_resized_partition_reads_every_row_once_with_the_apache_hudi_reader(lake, write, tmp_path):
    """File groups sized to a few kilobytes: the tenant's partition is laid out in more file groups
    by `replacecommit`s, and the Apache Hudi reader (which excludes replaced file groups from
    `partitionToReplaceFileIds`) reads every patient exactly once, before and after the replaced
    file groups are cleaned."""
    lake.env.update({"METRICCARE_FILE_GROUP_MB": "0.006", "METRICCARE_GROUP_FILES": "1"})
    expected = set()
    for day in range(5):
        ids = [f"d{day}-p{n}" for n in range(60)]
        expected |= {pseudonym("t1", "Patient", i) for i in ids}
        lake.ingest("t1", write(f"day-{day}.ndjson", [dict(PATIENT_V1[1], id=i) for i in ids]))
        keys = [r["_hoodie_record_key"] for r in lake.read("patient").to_pylist()]
        assert len(keys) == len(set(keys)), f"day {day}: a record read twice"
        assert set(keys) == expected, f"day {day}"
    hoodie = lake.root / "silver" / "patient" / ".hoodie"
    assert list(hoodie.glob("*.replacecommit")), "the partition was re-sized"
    metadata = json.loads(sorted(hoodie.glob("*.replacecommit"))[-1].read_text())
    assert metadata["partitionToReplaceFileIds"]["tenant_id=t1"]
    live = {r["_hoodie_file_name"].split("_")[0] for r in lake.read("patient").to_pylist()}
    assert len(live) > 4


def test_insert_tiers_carry_and_leave_empty_slices_every_row_read_once(lake, write):
    """One small file a day, each its own commit: new patients go to a bucket's small insert tiers,
    which carry into the next tier as they fill and are left with an empty slice; the Apache Hudi
    reader reads every patient exactly once after each day, empty slices included."""
    lake.env.update({"METRICCARE_GROUP_FILES": "1"})
    expected = set()
    for day in range(8):
        ids = [f"t{day}-p{n}" for n in range(60)]
        expected |= {pseudonym("t1", "Patient", i) for i in ids}
        lake.ingest("t1", write(f"day-{day}.ndjson", [dict(PATIENT_V1[1], id=i) for i in ids]))
        keys = [r["_hoodie_record_key"] for r in lake.read("patient").to_pylist()]
        assert len(keys) == len(set(keys)), f"day {day}: a record read twice"
        assert set(keys) == expected, f"day {day}"
    partition = lake.root / "silver" / "patient" / "tenant_id=t1"
    empty = [f for f in partition.glob("*.parquet") if pq.ParquetFile(f).metadata.num_rows == 0]
    assert empty, "a tier carried into the next and was left empty"
    tiers = {f.name.split("_")[0].rsplit("-", 1)[1] for f in partition.glob("*.parquet")}
    assert {"1", "2"} <= tiers


def test_base_files_written_before_a_column_existed_read_with_it_null(lake, write):
    # GIVEN a tenant's patients whose base files were written before marital_status existed (the
    # column dropped from every file, as an older writer left them; the newest commit's schema has
    # it)
    patients = [{"resourceType": "Patient", "id": f"p{n}", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
                 "gender": "female", "maritalStatus": {"coding": [{"code": "S"}]}} for n in range(40)]
    lake.ingest("t1", write("v1.ndjson", patients))
    base_files = list((lake.root / "silver" / "patient" / "tenant_id=t1").glob("*.parquet"))
    assert base_files
    for path in base_files:
        older = pq.read_table(path)
        assert "marital_status" in older.column_names
        pq.write_table(older.drop_columns(["marital_status"]), path)
    # THEN the Apache Hudi reader reads every row, the column null
    before = lake.read("patient").to_pylist()
    assert len(before) == 40
    assert {r["marital_status"] for r in before} == {None}
    # WHEN a newer version of one patient is committed over the older files
    update = [{**patients[7], "meta": {"lastUpdated": "2024-02-01T00:00:00Z"},
               "maritalStatus": {"coding": [{"code": "M"}]}}]
    lake.ingest("t1", write("v2.ndjson", update))
    # THEN every row is read once, the update with the column, the others still null
    after = {r["patient_key"]: r["marital_status"] for r in lake.read("patient").to_pylist()}
    assert len(after) == 40
    assert after.pop(pseudonym("t1", "Patient", "p7")) == "M"
    assert set(after.values()) == {None}
    # AND the CLI's own readers (SQL, gold) read the mixed files too
    out = lake.run("query", "--format", "json",
                   "SELECT count(*) AS n FROM silver_patient WHERE marital_status IS NULL")
    assert json.loads(out.stdout.splitlines()[0]) == {"n": 39}
    lake.run("gold")
