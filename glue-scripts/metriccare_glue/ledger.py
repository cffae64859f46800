"""Request bodies for the AWS calls the jobs make, built as plain data so that they can be tested
without AWS: the ledger item's finish (`functions/aws/src/ledger.rs`), the ledger id
(`ObjectRef::ledger_id`), the raw object's status tag and a tenant's catalog partitions
(`functions/aws/src/glue.rs`)."""

import hashlib
from collections.abc import Callable

HANDED_OFF, COMPLETED, FAILED = "HANDED_OFF", "COMPLETED", "FAILED"
STATUS_TAG = "metriccare-status"
MAX_TAGS = 10


def ledger_id(bucket: str, key: str, etag: str) -> str:
    """The ledger id of one raw object version: SHA-256 of bucket, key and ETag (each prefixed by
    its length, 8 bytes big-endian), first 12 bytes in hex. Rows carry it instead of the key."""
    digest = hashlib.sha256()
    for part in (bucket, key, etag):
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:24]


# What a job run does with the ledger item it was started for.
RUN, WAIT, SKIP = "run", "wait", "skip"
# Glue job run states of a run that may still finish its item.
ACTIVE_RUN_STATES = frozenset({"STARTING", "RUNNING", "STOPPING", "WAITING"})


def hand_off_decision(item: dict | None, run_id: str, run_is_active: Callable[[str], bool]) -> str:
    """RUN when the item (DynamoDB attribute values) is HANDED_OFF to this run, or to a run that
    ended without finishing it (it failed, timed out or was stopped: this is Glue's retry or an
    operator's re-run). WAIT while it is still PROCESSING: the Lambda starts the run before it can
    record the run's id, so a fast run may read the item first. SKIP otherwise: HANDED_OFF to
    another run still active (a retried hand-off started a second job), or finished already (a
    redelivered or retried run)."""
    status = item.get("status", {}).get("S") if item else None
    if status == "PROCESSING":
        return WAIT
    if status != HANDED_OFF:
        return SKIP
    holder = item.get("handed_off_to", {}).get("S")
    return RUN if holder == run_id or not holder or not run_is_active(holder) else SKIP


def finish_request(table: str, item_id: str, status: str, *, counts: dict, deleted: int, rejected: int,
                   silver_instants: list, error: str | None, now: int) -> dict:
    """The conditional UpdateItem that records a handed-off object's outcome (µs timestamps). The
    condition `status = HANDED_OFF` makes the finish happen once: a second run's finish fails the
    condition and changes nothing. `handed_off_to` stays: it names the run that did the work."""
    assignments = ["status", "counts", "deleted", "rejected", "silver_instants", "lease_until", "updated_at"]
    values = {
        ":status": {"S": status},
        ":handed_off": {"S": HANDED_OFF},
        ":counts": {"M": {kind: {"N": str(n)} for kind, n in sorted(counts.items())}},
        ":deleted": {"N": str(deleted)},
        ":rejected": {"N": str(rejected)},
        ":silver_instants": {"L": [{"S": i} for i in silver_instants]},
        ":lease_until": {"N": "0"},
        ":updated_at": {"N": str(now)},
    }
    removals = []
    if error is None:
        removals.append("#error")  # absent text is removed rather than stored empty
    else:
        assignments.append("error")
        values[":error"] = {"S": error}
    expression = "SET " + ", ".join(f"#{a} = :{a}" for a in assignments)
    if removals:
        expression += " REMOVE " + ", ".join(removals)
    return {
        "TableName": table,
        "Key": {"ledger_id": {"S": item_id}},
        "UpdateExpression": expression,
        "ConditionExpression": "#status = :handed_off",
        # status, size and error are DynamoDB reserved words: every name goes through a placeholder.
        "ExpressionAttributeNames": {f"#{a}": a for a in [*assignments, "error"]},
        "ExpressionAttributeValues": values,
    }


def status_tags(current: list, status: str) -> list | None:
    """The raw object's tag set with `metriccare-status` set to `status` (other tags kept); None
    when the object already has the ten tags S3 allows and ours is not among them."""
    others = [t for t in current if t["Key"] != STATUS_TAG]
    if len(others) >= MAX_TAGS:
        return None
    return [*others, {"Key": STATUS_TAG, "Value": status}]


def partition_input(table_descriptor: dict, tenant: str) -> dict:
    """The catalog partition `tenant_id=<tenant>` of a table: its storage descriptor with the
    partition's location (Athena cannot discover Hudi partitions by itself)."""
    descriptor = dict(table_descriptor)
    descriptor["Location"] = f"{descriptor['Location'].rstrip('/')}/tenant_id={tenant}"
    return {"Values": [tenant], "StorageDescriptor": descriptor}
