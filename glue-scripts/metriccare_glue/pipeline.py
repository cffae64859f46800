"""The steps both Glue jobs run, over the I/O their entry scripts hand in (a Spark session, a
`LakeStore`, a boto3 Glue client): commit silver through the Hudi datasource inside the lake's
commit protocol, recompute a tenant's gold, register new tenant partitions in the catalog.

Kept out of the entry scripts because both jobs run them, and out of the pure modules because they
perform I/O; nothing here imports an AWS or Glue library.
"""

import json
import os
import time
import uuid
from typing import NamedTuple

from .deid import Pseudonymizer, parse_key
from .gold import HaiValueSet, builtin_value_set, gold_frames, gold_unchanged, stale_rows
from .hudi_options import COMMIT_MARKER_KEY, write_options
from .lake import (LakeError, LakeStore, acquire_gold_lock, bucket_of, concurrent_overwrites, ensure_table,
                   find_marked_commit, latest_sequence, mark_unannounced, record_commit, release_gold_lock,
                   seed_missing_file_groups)
from .ledger import partition_input
from .silver import HEAD_BYTES, SilverLoad, deletable_rows, deletes_frame, spark_schema, upserts_frame
from .tables import GOLD, PARTITION_FIELD, SILVER, TableSpec

# Referenced tables first, so that a reader never sees a condition before its patient.
SILVER_COMMIT_ORDER = ("organization", "patient", "encounter", "condition")
GOLD_COMMIT_ORDER = ("hai_by_code", "mortality_yearly", "hospital_monthly")
# The gold Lambda holds the refresh lock for at most its 15-minute lease.
GOLD_LOCK_WAIT_SECONDS = 20 * 60


def now_micros() -> int:
    return time.time_ns() // 1000


def log_event(event: str, **fields) -> None:
    """One JSON line per step: ledger ids, tenants, counts and instants, never an object key or
    anything read from a resource."""
    print(json.dumps({"event": event, **fields}, sort_keys=True), flush=True)


def pseudonymizer_from_parameter(ssm, name: str) -> Pseudonymizer:
    """The pseudonymisation key from its SSM SecureString, read as the ingest Lambda reads it."""
    value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    return Pseudonymizer(parse_key(value, "--pseudonym_key_parameter"))


def head_and_last_byte(s3, bucket: str, key: str, size: int, **conditions) -> tuple[bytes, bytes]:
    """What `plan_raw_file` needs of a raw object: its first bytes and its last byte."""
    if not size:
        return b"", b""

    def read(byte_range: str) -> bytes:
        return s3.get_object(Bucket=bucket, Key=key, Range=byte_range, **conditions)["Body"].read()

    return read(f"bytes=0-{HEAD_BYTES - 1}"), read("bytes=-1")


class HudiTables:
    """Reads and commits the lake's Hudi tables with the Spark datasource."""

    def __init__(self, spark, store: LakeStore, lake_uri: str, *, lock_table: str, region: str, run_id: str):
        self.spark = spark
        self.store = store
        self.lake_uri = lake_uri
        self.lock_table = lock_table
        self.region = region
        self.run_id = run_id
        # Hudi's `<task>-<stage>-<attempt>` shape: unique to this run's seeding writes.
        self.write_token = f"{os.getpid() % 100_000}-{now_micros() % 1_000_000}-0"

    def read_partition(self, spec: TableSpec, tenant: str):
        """The latest snapshot of one tenant's partition (empty when the table does not exist yet)."""
        from pyspark.sql import functions as F

        if self.store.get(f"{spec.base}/.hoodie/hoodie.properties") is None:
            return self.spark.createDataFrame([], spark_schema(spec))
        return (self.spark.read.format("hudi").load(f"{self.lake_uri}/{spec.base}")
                .where(F.col(PARTITION_FIELD) == tenant).select(*spec.column_names))

    def commit(self, frame, spec: TableSpec, operation: str, tenant: str) -> str | None:
        """Writes one `upsert` or `delete` of one tenant's rows as a Hudi commit and records it in
        the lake's commit sequence; returns the instant (None when there was nothing to write).
        Fails when a Lambda commit raced this one on the same file groups (see lake.py)."""
        keys = frame.select(spec.record_key).rdd.map(lambda r, n=spec.buckets: bucket_of(r[0], n)).distinct().collect()
        if not keys:
            return None
        ensure_table(self.store, spec)
        seed_missing_file_groups(self.store, spec, tenant, set(keys), now_micros(), self.write_token)
        since = latest_sequence(self.store, spec)
        marker = f"{self.run_id}/{spec.base}/{operation}/{uuid.uuid4()}"
        options = write_options(spec, operation, lock_table=self.lock_table, region=self.region, run_marker=marker)
        frame.write.format("hudi").options(**options).mode("append").save(f"{self.lake_uri}/{spec.base}")
        found = find_marked_commit(self.store, spec, COMMIT_MARKER_KEY, marker)
        if found is None:
            raise LakeError(f"{spec.base}: the {operation} commit is not on the timeline")
        instant, commit = found
        sequence = record_commit(self.store, spec, instant, commit)
        overwritten = concurrent_overwrites(self.store, spec, since, sequence, instant, commit)
        if overwritten:
            raise LakeError(f"{spec.base}: commits {', '.join(overwritten)} of another writer and this job's "
                            f"commit {instant} merged the same file groups concurrently; ingest the files whose "
                            "ledger silver_instants name them again")
        log_event("hudi.committed", table=spec.base, operation=operation, instant=instant, sequence=sequence)
        return instant


def write_silver(tables: HudiTables, load: SilverLoad, tenant: str) -> list:
    """Commits a run's surviving operations, table by table; returns `table@instant` of each commit
    (the ledger's `silver_instants`)."""
    instants = []
    for table in SILVER_COMMIT_ORDER:
        spec = SILVER[table]
        writes = [(upserts_frame(tables.spark, load, table), "upsert")]
        deletes = deletes_frame(tables.spark, load, table)
        if not deletes.isEmpty():
            writes.append((deletable_rows(deletes, tables.read_partition(spec, tenant), table), "delete"))
        for frame, operation in writes:
            instant = tables.commit(frame, spec, operation, tenant)
            if instant is not None:
                instants.append(f"{table}@{instant}")
    return instants


def refresh_gold(tables: HudiTables, tenant: str, value_set: HaiValueSet) -> list:
    """Recomputes one tenant's gold from its silver snapshot and, when the numbers changed, replaces
    its gold rows (upsert the recompute, delete rows it no longer has) under the gold refresh lock.
    The tenant is recorded as unannounced first, so the next gold Lambda run sends its
    `gold.refreshed` message (this job has no notification topic). Returns `table@instant`s."""
    deadline = time.monotonic() + GOLD_LOCK_WAIT_SECONDS
    while not (lock := acquire_gold_lock(tables.store, now_micros())):
        if time.monotonic() > deadline:
            raise LakeError("the gold refresh lock stayed held; silver is committed, gold follows at the next refresh")
        time.sleep(15)
    try:
        silver = {t: tables.read_partition(spec, tenant) for t, spec in SILVER.items()}
        fresh = gold_frames(tables.spark, silver, value_set, now_micros())
        current = {t: tables.read_partition(GOLD[t], tenant) for t in GOLD}
        if gold_unchanged(fresh, current):
            log_event("gold.unchanged", tenant_id=tenant)
            return []
        mark_unannounced(tables.store, [tenant])
        instants = []
        for table in GOLD_COMMIT_ORDER:
            for frame, operation in ((fresh[table], "upsert"), (stale_rows(fresh[table], current[table]), "delete")):
                instant = tables.commit(frame, GOLD[table], operation, tenant)
                if instant is not None:
                    instants.append(f"{table}@{instant}")
        return instants
    finally:
        release_gold_lock(tables.store, lock)


def refresh_tenant_gold(tables: HudiTables, tenant: str) -> None:
    """Gold for the tenant now. A failure does not fail the run: the silver commits are in the
    commit sequence, so the gold Lambda recomputes the tenant at its next run."""
    try:
        log_event("gold.refreshed", tenant_id=tenant, instants=refresh_gold(tables, tenant, builtin_value_set()))
    except Exception as e:
        log_event("gold.deferred", tenant_id=tenant, error=f"{type(e).__name__}: {e}")


class Catalog(NamedTuple):
    """The Glue databases whose tables get a partition per tenant (Athena cannot discover Hudi
    partitions), and a boto3 Glue client."""

    client: object
    silver_database: str
    gold_database: str

    def register_tenant(self, tenant: str) -> None:
        """Makes sure `tenant_id=<tenant>` is a partition of every silver and gold table (an existing
        partition is success)."""
        for database, names in ((self.silver_database, SILVER), (self.gold_database, GOLD)):
            for name in names:
                descriptor = self.client.get_table(DatabaseName=database, Name=name)["Table"]["StorageDescriptor"]
                answer = self.client.batch_create_partition(
                    DatabaseName=database, TableName=name, PartitionInputList=[partition_input(descriptor, tenant)])
                for error in answer.get("Errors", []):
                    if error["ErrorDetail"]["ErrorCode"] != "AlreadyExistsException":
                        raise LakeError(f"{database}.{name} tenant_id={tenant}: {error['ErrorDetail']['ErrorCode']}")


def commit_tenant(spark, store: LakeStore, glue, args: dict, load: SilverLoad, tenant: str) -> list:
    """What both jobs do with a parsed load: commit it to silver, then (if anything was committed)
    register the tenant's catalog partitions and refresh its gold. Returns the silver instants."""
    tables = HudiTables(spark, store, f"s3://{args['lake_bucket']}", lock_table=args["lock_table"],
                        region=args["aws_region"], run_id=args["JOB_RUN_ID"])
    instants = write_silver(tables, load, tenant)
    if instants:
        Catalog(glue, args["silver_database"], args["gold_database"]).register_tenant(tenant)
        refresh_tenant_gold(tables, tenant)
    return instants
