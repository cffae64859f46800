"""Glue job: every raw file under one tenant's prefix of the raw bucket → silver → gold.

For catching up a tenant (a bulk history loaded straight into the raw bucket, files whose events were
lost). Files go through the ledger as the ingest Lambda's do: each is claimed (a file already
completed or quarantined is skipped, one another worker holds is left to it), read on the executors
(NDJSON split into byte spans), and committed on the driver in groups of --METRICCARE_GROUP_FILES
(100) files, one commit per silver table per group; each file keeps its own ledger item, rejects and
quarantine. Then gold. The run fails at the end when any file failed or was held by another worker
(a re-run of the backfill picks them up).

Arguments: --tenant_id and --prefix (or, in a run of the backfill workflow, its run properties
tenant_id and prefix), and the ingest Lambda's variables as `--METRICCARE_*` defaults.
"""

import os
import sys

from metriccare_glue.spark import (DEFAULT_GROUP_FILES, DEFAULT_SPLIT_BYTES, chunks, environment_from_arguments,
                                   ingest_group, log_event)

TENANT_ARGUMENTS = ["tenant_id", "prefix"]


def run(spark, lake, tenant: str, prefix: str, split_bytes: int = DEFAULT_SPLIT_BYTES,
        group_files: int = DEFAULT_GROUP_FILES) -> list:
    """Every file under the prefix through silver, then gold; a report (dict) per file."""
    if not prefix.strip("/").startswith(f"{tenant}/") and prefix.strip("/") != tenant:
        raise ValueError("the prefix must lie inside the tenant's folder of the raw bucket")
    keys = [key for key, _ in lake.list_raw(prefix.strip("/"))]
    log_event("backfill.listed", tenant_id=tenant, files=len(keys))
    reports = []
    for group in chunks(keys, group_files):
        reports.extend(ingest_group(spark, lake, tenant, group, split_bytes))
    gold = lake.refresh_gold()
    log_event("gold.refreshed", tenant_id=tenant, busy=gold.get("busy"))
    return reports


def tenant_and_prefix(argv: list) -> tuple[str, str]:
    """From --tenant_id/--prefix, else from the workflow run that started the job."""
    from awsglue.utils import getResolvedOptions

    if all(f"--{name}" in argv for name in TENANT_ARGUMENTS):
        given = getResolvedOptions(argv, TENANT_ARGUMENTS)
    else:
        import boto3

        workflow = getResolvedOptions(argv, ["WORKFLOW_NAME", "WORKFLOW_RUN_ID"])
        given = boto3.client("glue").get_workflow_run_properties(
            Name=workflow["WORKFLOW_NAME"], RunId=workflow["WORKFLOW_RUN_ID"])["RunProperties"]
    return given["tenant_id"], given["prefix"]


def main() -> None:
    import metriccare
    from pyspark.sql import SparkSession

    os.environ.update(environment_from_arguments(sys.argv))
    tenant, prefix = tenant_and_prefix(sys.argv)
    spark = SparkSession.builder.getOrCreate()
    # Spark logs input paths at INFO; object keys may name patients.
    spark.sparkContext.setLogLevel("WARN")
    group_files = int(os.environ.get("METRICCARE_GROUP_FILES", DEFAULT_GROUP_FILES))
    reports = run(spark, metriccare.Lake.aws(), tenant, prefix, group_files=group_files)
    # A busy file is held by another worker (a Lambda, a dead run until its lease expires): not done
    # by this run, and nothing else retries a backfilled file, so the run says so.
    undone = [f"{r['ledger_id']} ({r['result']})" for r in reports if r["result"] in ("failed", "busy")]
    if undone:
        raise SystemExit(f"{len(undone)} of {len(reports)} files were not processed (re-run the backfill "
                         f"once they are free): {', '.join(undone)}")


if __name__ == "__main__":
    main()
