"""Glue job: every raw file under one tenant's prefix of the raw bucket → silver → gold.

For rebuilding or catching up a tenant (a silver table rebuilt, a bulk history loaded straight into
the raw bucket). Files load in key order, as `metriccare ingest` loads a folder, into one commit per
table; rows carry each file's ledger id as lineage. The ledger is not touched: a backfill re-derives
silver from raw files whatever their ledger state, and Hudi's ordering makes reloading a file
harmless. An invalid file is skipped (logged by ledger id) and fails the run at the end, after the
valid ones are committed.

Arguments: --tenant_id and --prefix (or, in a run of the backfill workflow, its run properties
tenant_id and prefix), --raw_bucket, and the job defaults of ingest_large_file. Argument parsing
and I/O only: the logic is in the metriccare_glue package (glue-scripts/README.md).
"""

import sys

import boto3
from awsglue.utils import getResolvedOptions
from pyspark.sql import SparkSession

from metriccare_glue.fhir import InvalidFile
from metriccare_glue.lake import check_key_fingerprint
from metriccare_glue.ledger import ledger_id
from metriccare_glue.pipeline import (commit_tenant, head_and_last_byte, log_event, now_micros,
                                     pseudonymizer_from_parameter)
from metriccare_glue.s3_store import S3LakeStore
from metriccare_glue.silver import LoadContext, load_silver, plan_raw_file

ARGUMENTS = ["JOB_RUN_ID", "raw_bucket", "lake_bucket", "lock_table", "pseudonym_key_parameter",
             "silver_database", "gold_database", "aws_region"]
TENANT_ARGUMENTS = ["tenant_id", "prefix"]


def tenant_and_prefix(aws) -> tuple[str, str]:
    """From --tenant_id/--prefix, else from the workflow run that started the job."""
    if all(f"--{name}" in sys.argv for name in TENANT_ARGUMENTS):
        given = getResolvedOptions(sys.argv, TENANT_ARGUMENTS)
    else:
        workflow = getResolvedOptions(sys.argv, ["WORKFLOW_NAME", "WORKFLOW_RUN_ID"])
        given = aws.client("glue").get_workflow_run_properties(
            Name=workflow["WORKFLOW_NAME"], RunId=workflow["WORKFLOW_RUN_ID"])["RunProperties"]
    tenant, prefix = given["tenant_id"], given["prefix"]
    if not prefix.startswith(f"{tenant}/"):
        raise ValueError("the prefix must lie inside the tenant's folder of the raw bucket")
    return tenant, prefix


def raw_objects(s3, bucket: str, prefix: str) -> list:
    """The objects under the prefix in key order, without folder markers and hidden files (as the
    CLI walks a folder)."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.extend(o for o in page.get("Contents", [])
                     if not o["Key"].endswith("/") and not o["Key"].rsplit("/", 1)[-1].startswith("."))
    return sorted(found, key=lambda o: o["Key"])


def main() -> None:
    args = getResolvedOptions(sys.argv, ARGUMENTS)
    aws = boto3.Session(region_name=args["aws_region"])
    s3 = aws.client("s3")
    tenant, prefix = tenant_and_prefix(aws)
    pseudonymizer = pseudonymizer_from_parameter(aws.client("ssm"), args["pseudonym_key_parameter"])
    store = S3LakeStore(s3, args["lake_bucket"])
    check_key_fingerprint(store, pseudonymizer)

    bucket = args["raw_bucket"]
    files, skipped = [], []
    for index, obj in enumerate(raw_objects(s3, bucket, prefix)):
        key, size, source_id = obj["Key"], obj["Size"], ledger_id(bucket, obj["Key"], obj["ETag"])
        head, last_byte = head_and_last_byte(s3, bucket, key, size)
        try:
            uploaded_at = int(obj["LastModified"].timestamp() * 1_000_000)
            files.append(plan_raw_file(index, f"s3://{bucket}/{key}", key.endswith(".gz"), source_id, size, head,
                                       last_byte, uploaded_at))
        except (InvalidFile, ValueError) as e:
            skipped.append(source_id)
            log_event("file.skipped", ledger_id=source_id, tenant_id=tenant, reason=str(e))
    log_event("backfill.planned", tenant_id=tenant, files=len(files), skipped=len(skipped))

    spark = SparkSession.builder.getOrCreate()
    # Spark logs input paths at INFO, and object keys can name patients.
    spark.sparkContext.setLogLevel("WARN")
    load = load_silver(spark, files, LoadContext(tenant, now_micros(), pseudonymizer))
    by_index = {f.index: f.ledger_id for f in files}
    for index, reason in sorted(load.invalid.items()):
        skipped.append(by_index[index])
        log_event("file.skipped", ledger_id=by_index[index], tenant_id=tenant, reason=reason)
    instants = commit_tenant(spark, store, aws.client("glue"), args, load, tenant)
    summaries = load.summaries.values()
    log_event("backfill.completed", tenant_id=tenant, files=len(load.summaries), silver_instants=instants,
              resources=sum(sum(s.counts.values()) for s in summaries),
              rejected=sum(s.rejected for s in summaries), deleted=sum(s.deleted for s in summaries))
    if skipped:
        raise RuntimeError(f"{len(skipped)} invalid file(s) skipped, ledger ids: {', '.join(skipped)}")


if __name__ == "__main__":
    main()
