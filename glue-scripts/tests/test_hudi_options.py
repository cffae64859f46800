"""The Hudi options and table files the jobs write agree with what the Rust writer wrote."""

import json

import pyarrow.parquet as pq
import pytest

from metriccare_glue.hudi_options import (COMMIT_MARKER_KEY, COMMIT_MARKER_PREFIX, hoodie_properties_text,
                                          incompatibilities, parse_properties, write_options)
from metriccare_glue.lake import bucket_of, file_id, parse_base_file_name
from metriccare_glue.tables import GOLD, SILVER, avro_schema

TABLES = {**SILVER, **GOLD}

# Each datasource write option and the hoodie.properties entry it must equal.
OPTION_OF_PROPERTY = {
    "hoodie.table.name": "hoodie.table.name",
    "hoodie.table.type": "hoodie.datasource.write.table.type",
    "hoodie.table.version": "hoodie.table.version",
    "hoodie.table.recordkey.fields": "hoodie.datasource.write.recordkey.field",
    "hoodie.table.partition.fields": "hoodie.datasource.write.partitionpath.field",
    "hoodie.table.precombine.field": "hoodie.datasource.write.precombine.field",
    "hoodie.table.keygenerator.class": "hoodie.datasource.write.keygenerator.class",
    "hoodie.datasource.write.hive_style_partitioning": "hoodie.datasource.write.hive_style_partitioning",
    "hoodie.table.base.file.format": "hoodie.table.base.file.format",
    "hoodie.populate.meta.fields": "hoodie.populate.meta.fields",
    "hoodie.index.type": "hoodie.index.type",
    "hoodie.bucket.index.num.buckets": "hoodie.bucket.index.num.buckets",
    "hoodie.bucket.index.hash.field": "hoodie.bucket.index.hash.field",
}


def _options(spec, operation="upsert"):
    return write_options(spec, operation, lock_table="locks", region="eu-west-1", run_marker="run-1")


@pytest.mark.parametrize("table", TABLES)
def test_write_options_equal_the_rust_tables_properties(rust_lake, table):
    spec = TABLES[table]
    written = parse_properties((rust_lake.root / spec.base / ".hoodie" / "hoodie.properties").read_text())
    options = _options(spec)
    assert {p: options[o] for p, o in OPTION_OF_PROPERTY.items()} == {p: written[p] for p in OPTION_OF_PROPERTY}
    assert written["hoodie.table.version"] == "6" and written["hoodie.table.type"] == "COPY_ON_WRITE"


@pytest.mark.parametrize("table", TABLES)
def test_a_table_the_job_creates_has_the_rust_properties_byte_for_byte(rust_lake, table):
    spec = TABLES[table]
    assert hoodie_properties_text(spec) == (rust_lake.root / spec.base / ".hoodie" / "hoodie.properties").read_text()
    assert incompatibilities(spec, hoodie_properties_text(spec)) == []


def test_a_table_with_other_settings_is_refused():
    spec = SILVER["patient"]
    changed = hoodie_properties_text(spec).replace("num.buckets=4", "num.buckets=8").replace(
        "precombine.field=last_updated", "precombine.field=ingested_at")
    assert incompatibilities(spec, changed) == ["hoodie.table.precombine.field", "hoodie.bucket.index.num.buckets"]


@pytest.mark.parametrize("table", TABLES)
def test_commit_schemas_equal_the_rust_commits(rust_lake, table):
    spec = TABLES[table]
    commits = sorted((rust_lake.root / spec.base / ".hoodie").glob("*.commit"))
    assert commits
    for commit in commits:
        assert json.loads(commit.read_text())["extraMetadata"]["schema"] == avro_schema(spec)


def test_concurrency_ordering_and_timeline_options():
    options = {table: _options(spec) for table, spec in TABLES.items()}
    lock_keys = {o["hoodie.write.lock.dynamodb.partition_key"] for o in options.values()}
    assert len(lock_keys) == len(TABLES), "one lock item per table"
    for table, o in options.items():
        assert o["hoodie.write.concurrency.mode"] == "optimistic_concurrency_control"
        assert o["hoodie.cleaner.policy.failed.writes"] == "LAZY"
        assert o["hoodie.write.lock.dynamodb.table"] == "locks"
        assert o["hoodie.write.lock.dynamodb.region"] == "eu-west-1"
        assert o["hoodie.datasource.write.payload.class"].endswith("DefaultHoodieRecordPayload")
        assert o["hoodie.payload.ordering.field"] == TABLES[table].precombine
        assert (o["hoodie.metadata.enable"], o["hoodie.clean.automatic"], o["hoodie.archive.automatic"]) == \
            ("false", "false", "false")
        # Hudi copies options that start with the prefix into the commit's extraMetadata.
        assert COMMIT_MARKER_KEY.startswith(o["hoodie.datasource.write.commitmeta.key.prefix"]) and \
            o[COMMIT_MARKER_KEY] == "run-1"
        assert [k for k in o if k.startswith(COMMIT_MARKER_PREFIX)] == [COMMIT_MARKER_KEY]
    assert _options(SILVER["patient"], "delete")["hoodie.datasource.write.operation"] == "delete"


@pytest.mark.parametrize("table", TABLES)
def test_file_groups_are_where_hudis_bucket_index_looks(rust_lake, table):
    """Every Rust base file sits in the file group `file_id` derives, and holds only keys whose
    bucket (Java's List.hashCode rule, as Hudi's bucket index computes it) is that file group's."""
    spec = TABLES[table]
    files = [p for p in (rust_lake.root / spec.base).glob("tenant_id=*/*.parquet")]
    assert files
    for path in files:
        fid, _ = parse_base_file_name(path.name)
        bucket = int(fid[:8])
        assert fid == file_id(spec.name, path.parent.name, bucket)
        keys = pq.read_table(path, columns=[spec.record_key]).column(0).to_pylist()
        assert all(bucket_of(key, spec.buckets) == bucket for key in keys)


def test_bucket_of_is_javas_list_hash_code():
    # Java: List.of("abc").hashCode() == 31 + "abc".hashCode() == 31 + 96354; a long key overflows
    # int arithmetic and must wrap as Java does.
    assert bucket_of("abc", 1_000_000) == 31 + (ord("a") * 31 * 31 + ord("b") * 31 + ord("c"))
    java_hash = 0
    for c in "f" * 40:
        java_hash = (java_hash * 31 + ord(c)) % 2**32
    assert bucket_of("f" * 40, 8) == ((31 + java_hash) % 2**32 & 0x7FFFFFFF) % 8
