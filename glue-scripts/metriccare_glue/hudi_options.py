"""Hudi 0.15 Spark datasource options for the lake's tables, and the `hoodie.properties` the Rust
writer creates (`functions/core/src/hudi/mod.rs`), so that Spark and the Lambdas write one table
the same way.

Why each group of options:

- *Table identity* (name, COPY_ON_WRITE, version 6, record key, `tenant_id` partition with
  hive-style paths, precombine field, SimpleKeyGenerator, PARQUET, meta fields): Hudi refuses to
  write when these differ from `hoodie.properties`, and every reader depends on them.
- *Bucket index* (SIMPLE engine, same bucket count, hash field = record key): Hudi and the Rust
  writer both place a key in bucket `(List.of(key).hashCode() & MAX_INT) % buckets` and find a
  bucket's file group by the 8-digit prefix of its file id, so a key lives in one file group
  whichever writer wrote it.
- *DefaultHoodieRecordPayload* with the precombine field as ordering: against the stored record the
  newer version wins and an older one never overwrites it (ties go to the incoming record), as in
  the Rust merge. The default payload would overwrite regardless of ordering.
- *No metadata table, no automatic clean or archive*: the Rust writer and reader keep neither a
  metadata table nor an archived timeline: they take every `.commit` in `.hoodie/` as the timeline
  and the newest committed file per file group as the snapshot. Archiving would hide committed
  files from them; a metadata table would go stale at the next Lambda commit; the cleaner of a
  LAZY multi-writer setup would roll back a Lambda's in-flight instant, which has no Hudi heartbeat.
- *Optimistic concurrency control with a DynamoDB lock* (one lock item per table, LAZY failed-write
  cleaning as OCC requires): concurrent Glue runs never lose each other's rows. The Lambdas do not
  take this lock; they serialise through `_metriccare/commits/` (see `lake.py`).
- *A commit marker* (`_metriccare_run` in `extraMetadata`): lets the job find its own commit on the
  timeline to record it in the Rust commit sequence.
"""

import zlib

from .tables import PARTITION_FIELD, TableSpec

KEY_GENERATOR = "org.apache.hudi.keygen.SimpleKeyGenerator"
ORDERED_PAYLOAD = "org.apache.hudi.common.model.DefaultHoodieRecordPayload"
DYNAMODB_LOCK_PROVIDER = "org.apache.hudi.aws.transaction.lock.DynamoDBBasedLockProvider"
COMMIT_MARKER_PREFIX = "_metriccare"
COMMIT_MARKER_KEY = "_metriccare_run"
TABLE_VERSION = "6"


def table_properties(spec: TableSpec) -> list:
    """(key, value) of `hoodie.properties`, in the Rust writer's order. The checksum is Hudi's:
    CRC32 of `"<database>.<table>"`, with no database here."""
    return [
        ("hoodie.table.name", spec.name),
        ("hoodie.table.type", "COPY_ON_WRITE"),
        ("hoodie.table.version", TABLE_VERSION),
        ("hoodie.timeline.layout.version", "1"),
        ("hoodie.table.recordkey.fields", spec.record_key),
        ("hoodie.table.partition.fields", PARTITION_FIELD),
        ("hoodie.table.precombine.field", spec.precombine),
        ("hoodie.table.keygenerator.class", KEY_GENERATOR),
        ("hoodie.datasource.write.hive_style_partitioning", "true"),
        ("hoodie.table.base.file.format", "PARQUET"),
        ("hoodie.populate.meta.fields", "true"),
        ("hoodie.archivelog.folder", "archived"),
        ("hoodie.index.type", "BUCKET"),
        ("hoodie.bucket.index.num.buckets", str(spec.buckets)),
        ("hoodie.bucket.index.hash.field", spec.record_key),
        ("hoodie.table.checksum", str(zlib.crc32(f".{spec.name}".encode()))),
    ]


def hoodie_properties_text(spec: TableSpec) -> str:
    """`hoodie.properties` byte for byte as the Rust writer creates it (a table the job creates
    first must look the same to the Lambdas, which refuse a table whose settings differ)."""
    return "#Properties saved by MetricCare\n" + "".join(f"{k}={v}\n" for k, v in table_properties(spec))


# Properties the Rust writer checks when it opens an existing table (`check_compatible`).
CHECKED_PROPERTIES = ("hoodie.table.name", "hoodie.table.type", "hoodie.table.version",
                      "hoodie.table.recordkey.fields", "hoodie.table.partition.fields",
                      "hoodie.table.precombine.field", "hoodie.bucket.index.num.buckets")


def parse_properties(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def incompatibilities(spec: TableSpec, existing_text: str) -> list:
    """The checked properties whose value in an existing `hoodie.properties` differs from this
    table's definition (empty: the table is the one this code writes)."""
    existing = parse_properties(existing_text)
    wanted = dict(table_properties(spec))
    return [key for key in CHECKED_PROPERTIES if existing.get(key) != wanted[key]]


def write_options(spec: TableSpec, operation: str, *, lock_table: str, region: str, run_marker: str) -> dict:
    """Datasource options for one write (`upsert` or `delete`) to one table."""
    return {
        # Table identity: the values of hoodie.properties.
        "hoodie.table.name": spec.name,
        "hoodie.datasource.write.table.name": spec.name,
        "hoodie.datasource.write.table.type": "COPY_ON_WRITE",
        "hoodie.table.version": TABLE_VERSION,
        "hoodie.datasource.write.recordkey.field": spec.record_key,
        "hoodie.datasource.write.partitionpath.field": PARTITION_FIELD,
        "hoodie.datasource.write.hive_style_partitioning": "true",
        "hoodie.datasource.write.precombine.field": spec.precombine,
        "hoodie.datasource.write.keygenerator.class": KEY_GENERATOR,
        "hoodie.table.base.file.format": "PARQUET",
        "hoodie.populate.meta.fields": "true",
        # Bucket index: the Rust writer's placement of keys in file groups.
        "hoodie.index.type": "BUCKET",
        "hoodie.index.bucket.engine": "SIMPLE",
        "hoodie.bucket.index.num.buckets": str(spec.buckets),
        "hoodie.bucket.index.hash.field": spec.record_key,
        # Newest version wins against the stored record, as in the Rust merge.
        "hoodie.datasource.write.operation": operation,
        "hoodie.datasource.write.payload.class": ORDERED_PAYLOAD,
        "hoodie.payload.ordering.field": spec.precombine,
        # Nothing the Rust reader and writer do not keep.
        "hoodie.metadata.enable": "false",
        "hoodie.clean.automatic": "false",
        "hoodie.archive.automatic": "false",
        "hoodie.datasource.hive_sync.enable": "false",
        # The Rust writer's codec (zstd), so that files do not change size by writer.
        "hoodie.parquet.compression.codec": "zstd",
        # Concurrent Glue runs.
        "hoodie.write.concurrency.mode": "optimistic_concurrency_control",
        "hoodie.cleaner.policy.failed.writes": "LAZY",
        "hoodie.write.lock.provider": DYNAMODB_LOCK_PROVIDER,
        "hoodie.write.lock.dynamodb.table": lock_table,
        "hoodie.write.lock.dynamodb.partition_key": spec.base,
        "hoodie.write.lock.dynamodb.region": region,
        # The job finds its own commit by this entry of extraMetadata.
        "hoodie.datasource.write.commitmeta.key.prefix": COMMIT_MARKER_PREFIX,
        COMMIT_MARKER_KEY: run_marker,
    }
