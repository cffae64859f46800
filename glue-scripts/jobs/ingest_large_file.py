"""Glue job: one raw file too large for the ingest Lambda, handed off with StartJobRun.

The Lambda passes --tenant_id --ledger_id and then records the ledger item HANDED_OFF to this run (the
run waits for that; it also takes over an item whose run ended without finishing it: Glue's retry,
or an operator's re-run); the object's bucket, key and ETag come from that item, never from arguments,
which anyone allowed to list job runs can read (a key may name a patient); the job's default arguments name the lake, the ledger, the Hudi lock table, the key
parameter, the catalog databases and the region. The job de-identifies the file into silver, recomputes
the tenant's gold, and finishes the ledger item (HANDED_OFF → COMPLETED or FAILED, once). A run that
finds the item already finished does nothing. Argument parsing and I/O only: the logic is in the
metriccare_glue package (glue-scripts/README.md).
"""

import sys
import time

import boto3
from awsglue.utils import getResolvedOptions
from pyspark.sql import SparkSession

from metriccare_glue.deid import redact_key
from metriccare_glue.fhir import InvalidFile
from metriccare_glue.lake import check_key_fingerprint
from metriccare_glue.ledger import (ACTIVE_RUN_STATES, COMPLETED, FAILED, RUN, WAIT, finish_request, hand_off_decision,
                                    status_tags)
from metriccare_glue.pipeline import (commit_tenant, head_and_last_byte, log_event, now_micros,
                                     pseudonymizer_from_parameter)
from metriccare_glue.s3_store import S3LakeStore
from metriccare_glue.silver import LoadContext, load_silver, plan_raw_file

# How long a run waits for the Lambda to record the hand-off (it starts the run first).
HAND_OFF_WAIT_SECONDS = 300
ARGUMENTS = ["JOB_NAME", "JOB_RUN_ID", "tenant_id", "ledger_id", "lake_bucket",
             "ledger_table", "lock_table", "pseudonym_key_parameter", "silver_database", "gold_database",
             "aws_region"]


def ingest(args: dict, aws, spark) -> dict:
    """Silver and gold for the handed-off file; the ledger outcome's fields."""
    s3 = aws.client("s3")
    pseudonymizer = pseudonymizer_from_parameter(aws.client("ssm"), args["pseudonym_key_parameter"])
    store = S3LakeStore(s3, args["lake_bucket"])
    check_key_fingerprint(store, pseudonymizer)

    bucket, key, etag = args["raw_bucket"], args["raw_key"], args["raw_etag"]
    # If-Match: the version the Lambda handed off, not a newer upload under the same key.
    object_head = s3.head_object(Bucket=bucket, Key=key, IfMatch=etag)
    size = object_head["ContentLength"]
    uploaded_at = int(object_head["LastModified"].timestamp() * 1_000_000)
    head, last_byte = head_and_last_byte(s3, bucket, key, size, IfMatch=etag)
    raw_file = plan_raw_file(0, f"s3://{bucket}/{key}", key.endswith(".gz"), args["ledger_id"], size, head, last_byte,
                             uploaded_at)
    log_event("file.planned", ledger_id=args["ledger_id"], tenant_id=args["tenant_id"], bytes=size,
              by_lines=raw_file.by_lines)

    tenant = args["tenant_id"]
    load = load_silver(spark, [raw_file], LoadContext(tenant, now_micros(), pseudonymizer))
    if load.invalid:
        raise InvalidFile(load.invalid[0])
    summary = load.summaries[0]
    instants = commit_tenant(spark, store, aws.client("glue"), args, load, tenant)
    return {"counts": summary.counts, "deleted": summary.deleted, "rejected": summary.rejected,
            "silver_instants": instants}


def tag_completed(s3, args: dict) -> None:
    """Marks the raw object `metriccare-status=completed` for the raw bucket's lifecycle rules; a tag
    that cannot be written is logged (the ledger is the record of truth)."""
    bucket, key = args["raw_bucket"], args["raw_key"]
    try:
        tags = status_tags(s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"], "completed")
        if tags is not None:
            s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": tags})
    except Exception as e:
        log_event("file.untagged", ledger_id=args["ledger_id"], error=redact_key(str(e), key, args["ledger_id"]))


def main() -> None:
    args = getResolvedOptions(sys.argv, ARGUMENTS)
    aws = boto3.Session(region_name=args["aws_region"])
    dynamodb = aws.client("dynamodb")
    ledger_key = {"ledger_id": {"S": args["ledger_id"]}}
    glue = aws.client("glue")

    def run_is_active(run_id: str) -> bool:
        try:
            state = glue.get_job_run(JobName=args["JOB_NAME"], RunId=run_id)["JobRun"]["JobRunState"]
        except glue.exceptions.EntityNotFoundException:
            return False
        return state in ACTIVE_RUN_STATES

    deadline = time.monotonic() + HAND_OFF_WAIT_SECONDS
    while True:
        item = dynamodb.get_item(TableName=args["ledger_table"], Key=ledger_key, ConsistentRead=True).get("Item")
        decision = hand_off_decision(item, args["JOB_RUN_ID"], run_is_active)
        if decision != WAIT or time.monotonic() > deadline:
            break
        time.sleep(5)
    if decision != RUN:
        # Still PROCESSING at the deadline: the Lambda stopped before recording the hand-off; its
        # lease expires and the retried message hands the file off again, to a new run.
        log_event("file.skipped", ledger_id=args["ledger_id"], reason=f"the ledger item is not HANDED_OFF to this run ({decision})")
        return
    args = {**args, "raw_bucket": item["bucket"]["S"], "raw_key": item["object_key"]["S"], "raw_etag": item["etag"]["S"]}

    def finish(status: str, **outcome) -> None:
        request = finish_request(args["ledger_table"], args["ledger_id"], status, now=now_micros(), **outcome)
        try:
            dynamodb.update_item(**request)
        except dynamodb.exceptions.ConditionalCheckFailedException:
            log_event("ledger.already_finished", ledger_id=args["ledger_id"])

    spark = SparkSession.builder.getOrCreate()
    # Spark logs input paths at INFO, and object keys can name patients.
    spark.sparkContext.setLogLevel("WARN")
    try:
        outcome = ingest(args, aws, spark)
    except Exception as e:
        error = redact_key(f"{type(e).__name__}: {e}", args["raw_key"], args["ledger_id"])
        finish(FAILED, counts={}, deleted=0, rejected=0, silver_instants=[], error=error)
        log_event("file.failed", ledger_id=args["ledger_id"], tenant_id=args["tenant_id"], error=error)
        # A failed run reaches the alerts topic through the EventBridge rule on Glue job state.
        raise RuntimeError(f"ledger {args['ledger_id']}: {error}") from None
    finish(COMPLETED, error=None, **outcome)
    tag_completed(aws.client("s3"), args)
    log_event("file.completed", ledger_id=args["ledger_id"], tenant_id=args["tenant_id"],
              resources=sum(outcome["counts"].values()), rejected=outcome["rejected"], deleted=outcome["deleted"],
              silver_instants=outcome["silver_instants"])


if __name__ == "__main__":
    main()
