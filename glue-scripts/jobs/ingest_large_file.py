"""Glue job: one raw file too big for the ingest Lambda, handed off with StartJobRun.

The Lambda passes --tenant_id and --ledger_id, then records the ledger item HANDED_OFF to this run
(the run waits for that). The object's key comes from the ledger item, never from arguments, which
anyone allowed to list job runs can read (a key may name a patient). The run takes the item over
(HANDED_OFF → PROCESSING; an item another run took over first is left to it), splits an uncompressed NDJSON file into line-aligned byte spans across the
executors (a Bundle or gzip file streams on one), commits the file on the driver through the Rust
group commit, finishes the ledger item and refreshes gold. A re-run (Glue's retry, an operator's)
takes over an item a dead run left FAILED or with an expired lease; an item already final is left
alone. The job's other arguments are the ingest Lambda's variables as `--METRICCARE_*` defaults.
"""

import sys
import time

from metriccare_glue.spark import DEFAULT_SPLIT_BYTES, environment_from_arguments, ingest_group, log_event

# How long a run waits for the Lambda to record the hand-off (it starts the run first).
HAND_OFF_WAIT_SECONDS = 300


def wait_for_hand_off(lake, ledger_id: str, wait_seconds: float, poll_seconds: float = 5.0) -> dict | None:
    """The ledger item once the ingest Lambda has let go of it (handed off, or final, or failed, or
    held by a claim whose lease expired); None when another scale-out run holds it (a backfill, or a
    re-run, took it over first)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        entry = lake.ledger_entry(ledger_id)
        if entry is not None:
            if entry["status"] != "PROCESSING" or entry["lease_until"] < time.time() * 1_000_000:
                return entry
            if entry["handed_off_to"] is not None:
                return None
        if time.monotonic() >= deadline:
            raise TimeoutError(f"ledger item {ledger_id} was not handed off within {wait_seconds} s")
        time.sleep(poll_seconds)


def run(spark, lake, tenant: str, ledger_id: str, split_bytes: int = DEFAULT_SPLIT_BYTES,
        wait_seconds: float = HAND_OFF_WAIT_SECONDS) -> dict:
    """Silver and gold for the handed-off file; its report (`result`: completed, quarantined, failed,
    already_done, busy)."""
    entry = wait_for_hand_off(lake, ledger_id, wait_seconds)
    if entry is None:
        log_event("file.held_by_another_run", ledger_id=ledger_id, tenant_id=tenant)
        return {"ledger_id": ledger_id, "tenant_id": tenant, "result": "busy"}
    if entry["tenant_id"] != tenant:
        raise ValueError(f"ledger item {ledger_id} belongs to another tenant than --tenant_id")
    # Also for an item already final: its claim is then a no-op that registers the tenant's catalog
    # partitions again, in case the run that finished it could not.
    [report] = ingest_group(spark, lake, tenant, [entry["object"]["key"]], split_bytes)
    if report["result"] == "completed":
        gold = lake.refresh_gold()
        log_event("gold.refreshed", tenant_id=tenant, busy=gold.get("busy"))
    return report


def main() -> None:
    import os

    import metriccare
    from awsglue.utils import getResolvedOptions
    from pyspark.sql import SparkSession

    args = getResolvedOptions(sys.argv, ["tenant_id", "ledger_id"])
    os.environ.update(environment_from_arguments(sys.argv))
    spark = SparkSession.builder.getOrCreate()
    # Spark logs input paths at INFO; object keys may name patients.
    spark.sparkContext.setLogLevel("WARN")
    report = run(spark, metriccare.Lake.aws(), args["tenant_id"], args["ledger_id"])
    if report["result"] not in ("completed", "quarantined", "already_done", "busy"):
        # A failed run reaches the alerts topic through the Glue job state rule.
        raise SystemExit(f"ledger item {args['ledger_id']}: {report['result']}")


if __name__ == "__main__":
    main()
