"""The job steps over a lake directory, with the Hudi datasource replaced by a recorder (there is
no Hudi jar here): which rows each commit gets, in which order, and what the steps leave in the
lake's control files. The Hudi writes themselves are covered by the options and protocol tests."""

import json

import pytest

from conftest import KEY, REPOSITORY
from metriccare_glue.deid import Pseudonymizer
from metriccare_glue.gold import HaiValueSet, builtin_value_set
from metriccare_glue.lake import GOLD_LOCK_PATH, GOLD_STATE_PATH, LocalLakeStore, acquire_gold_lock
from metriccare_glue.pipeline import SILVER_COMMIT_ORDER, refresh_gold, write_silver
from metriccare_glue.silver import LoadContext, RawFile, load_silver, rows_to_dataframe, spark_schema
from metriccare_glue.tables import GOLD, SILVER
from parity import spark_rows

TENANT = "clinic-1"
NOW = 1_900_000_000_000_000


class RecordingTables:
    """Stands in for `HudiTables`: partitions read from a dict of DataFrames, commits recorded."""

    def __init__(self, spark, store, stored: dict):
        self.spark = spark
        self.store = store
        self.stored = stored
        self.commits = []

    def read_partition(self, spec, tenant):
        return self.stored.get(spec.base, self.spark.createDataFrame([], spark_schema(spec)))

    def commit(self, frame, spec, operation, tenant):
        rows = spark_rows(frame, spec)
        if not rows:
            return None
        self.commits.append((spec.base, operation, rows))
        return f"2030010100000000{len(self.commits)}"


def _write(tmp_path, name: str, *resources) -> RawFile:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))
    return RawFile(0, str(path), False, "ledger-1")


def test_silver_commits_referenced_tables_first_and_deletes_only_what_is_not_newer(spark, tmp_path):
    file = _write(tmp_path, "f.ndjson",
                  {"resourceType": "Patient", "id": "p", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"}},
                  {"resourceType": "Encounter", "id": "e", "subject": {"reference": "Patient/p"}},
                  {"resourceType": "Organization", "id": "o"},
                  {"resourceType": "Bundle", "type": "transaction", "entry": [
                      {"request": {"method": "DELETE", "url": "Condition/old"}},
                      {"request": {"method": "DELETE", "url": "Condition/future"}},
                      {"request": {"method": "DELETE", "url": "Condition/absent"}}]})
    pseudonymizer = Pseudonymizer(KEY)
    load = load_silver(spark, [file], LoadContext(TENANT, NOW, pseudonymizer))
    spec = SILVER["condition"]

    def stored_condition(source_id: str, last_updated: int) -> tuple:
        row = dict.fromkeys(spec.column_names)
        row.update(condition_key=pseudonymizer.pseudonym(TENANT, "Condition", source_id), tenant_id=TENANT,
                   patient_key="p", last_updated=last_updated, source_file_id="l0", ingested_at=1)
        return tuple(row.values())

    stored = rows_to_dataframe(spark, spec, spark.sparkContext.parallelize(
        [stored_condition("old", NOW - 1), stored_condition("future", NOW + 1), stored_condition("kept", 1)]))
    tables = RecordingTables(spark, LocalLakeStore(str(tmp_path / "lake")), {spec.base: stored})
    instants = write_silver(tables, load, TENANT)

    assert [(base, op) for base, op, _ in tables.commits] == [
        ("silver/organization", "upsert"), ("silver/patient", "upsert"), ("silver/encounter", "upsert"),
        ("silver/condition", "delete")]
    assert [i.split("@")[0] for i in instants] == ["organization", "patient", "encounter", "condition"]
    assert list(SILVER_COMMIT_ORDER) == ["organization", "patient", "encounter", "condition"]
    deleted = tables.commits[-1][2]
    assert [r["condition_key"] for r in deleted] == [pseudonymizer.pseudonym(TENANT, "Condition", "old")]


@pytest.fixture
def edge_silver(spark):
    """Silver of the repository's edge-case fixture, as the Spark pipeline builds it."""
    path = REPOSITORY / "tests" / "fixtures" / "edge-cases" / "edge-cases.ndjson"
    load = load_silver(spark, [RawFile(0, str(path), False, "ledger-1")], LoadContext(TENANT, NOW, Pseudonymizer(KEY)))
    return {t: rows_to_dataframe(spark, spec, load.operations.filter(
        lambda o, t=t: o.table == t and o.row is not None).map(lambda o: o.row)) for t, spec in SILVER.items()}


def test_gold_is_replaced_and_announced_once_and_left_alone_when_unchanged(spark, tmp_path, edge_silver):
    store = LocalLakeStore(str(tmp_path / "lake"))
    stored = {SILVER[t].base: frame for t, frame in edge_silver.items()}
    stale = dict.fromkeys(GOLD["mortality_yearly"].column_names)
    stale.update(row_key="1999", tenant_id=TENANT, year=1999, stays=1, deaths=0, rate=0.0, refreshed_at=1)
    stored[GOLD["mortality_yearly"].base] = rows_to_dataframe(
        spark, GOLD["mortality_yearly"], spark.sparkContext.parallelize([tuple(stale.values())]))
    tables = RecordingTables(spark, store, stored)

    instants = refresh_gold(tables, TENANT, builtin_value_set())
    assert [(base, op) for base, op, _ in tables.commits] == [
        ("gold/hai_by_code", "upsert"), ("gold/mortality_yearly", "upsert"), ("gold/mortality_yearly", "delete"),
        ("gold/hospital_monthly", "upsert")]
    assert len(instants) == 4
    assert [r["row_key"] for r in tables.commits[2][2]] == ["1999"], "the row the recompute no longer has"
    assert json.loads(store.get(GOLD_STATE_PATH))["unannounced"] == [TENANT]
    assert store.get(GOLD_LOCK_PATH) is None, "the lock is released"

    # Gold now holds the recompute: a second refresh writes and announces nothing.
    for base, op, rows in tables.commits:
        if op == "upsert":
            spec = next(s for s in GOLD.values() if s.base == base)
            stored[base] = rows_to_dataframe(spark, spec, spark.sparkContext.parallelize(
                [tuple(r[c] for c in spec.column_names) for r in rows]))
    store.put(GOLD_STATE_PATH, b'{"silver_sequences": {}, "unannounced": []}')
    again = RecordingTables(spark, store, stored)
    assert refresh_gold(again, TENANT, builtin_value_set()) == [] and again.commits == []
    assert json.loads(store.get(GOLD_STATE_PATH))["unannounced"] == []


def test_gold_waits_for_a_refresh_that_holds_the_lock(spark, tmp_path, monkeypatch, edge_silver):
    store = LocalLakeStore(str(tmp_path / "lake"))
    assert acquire_gold_lock(store, NOW)  # a refresh that never ends
    monkeypatch.setattr("metriccare_glue.pipeline.GOLD_LOCK_WAIT_SECONDS", 0)
    tables = RecordingTables(spark, store, {SILVER[t].base: f for t, f in edge_silver.items()})
    with pytest.raises(Exception, match="lock stayed held"):
        refresh_gold(tables, TENANT, builtin_value_set())
    assert tables.commits == []


def test_the_packaged_value_set_is_the_one_the_rust_gold_embeds():
    shipped = (REPOSITORY / "functions" / "core" / "hai-value-set.json").read_text()
    assert builtin_value_set() == HaiValueSet.from_json(shipped)
