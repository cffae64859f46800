"""The AWS requests the jobs make, against moto's in-process S3 and DynamoDB (the real request
syntax and condition semantics), and the ledger id against the Rust ledger."""

import boto3
import pytest
from moto import mock_aws

from metriccare_glue.deid import redact_key
from metriccare_glue.ledger import (COMPLETED, FAILED, HANDED_OFF, RUN, SKIP, STATUS_TAG, WAIT, finish_request,
                                    hand_off_decision, ledger_id, partition_input, status_tags)
from metriccare_glue.s3_store import S3LakeStore

TABLE = "ledger"
ITEM = "0f1e2d3c4b5a69788796a5b4"


def test_ledger_ids_are_the_rust_ledgers(rust_lake):
    entries = list(rust_lake.ledger().values())
    assert entries
    for entry in entries:
        source = entry["object"]
        assert ledger_id(source["bucket"], source["key"], source["etag"]) == entry["id"]


@pytest.fixture
def aws(monkeypatch):
    """moto's in-process AWS, with credentials that can never reach a real account."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(variable, "testing")
    with mock_aws():
        yield


@pytest.fixture
def dynamodb(aws):
    client = boto3.client("dynamodb")
    client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "ledger_id", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "ledger_id", "AttributeType": "S"}])
    # What the ingest Lambda leaves behind when it hands a file off.
    client.put_item(TableName=TABLE, Item={
        "ledger_id": {"S": ITEM}, "status": {"S": HANDED_OFF}, "attempts": {"N": "1"}, "lease_until": {"N": "9"},
        "bucket": {"S": "raw"}, "object_key": {"S": "clinic-1/Jane Doe.ndjson"}, "etag": {"S": '"e"'},
        "size": {"N": "2000000000"}, "tenant_id": {"S": "clinic-1"}, "handed_off_to": {"S": "jr_1"},
        "created_at": {"N": "1"}, "updated_at": {"N": "1"}})
    return client


def _item(client) -> dict:
    return client.get_item(TableName=TABLE, Key={"ledger_id": {"S": ITEM}}, ConsistentRead=True)["Item"]


def test_a_handed_off_item_is_finished_once(dynamodb):
    assert hand_off_decision(_item(dynamodb), "jr_1", ACTIVE) == RUN
    request = finish_request(TABLE, ITEM, COMPLETED, counts={"Patient": 3, "Observation": 2}, deleted=1, rejected=4,
                             silver_instants=["patient@20240101000000000"], error=None, now=1_700_000_000_000_001)
    dynamodb.update_item(**request)
    item = _item(dynamodb)
    assert item["status"] == {"S": COMPLETED} and hand_off_decision(item, "jr_1", ACTIVE) == SKIP
    assert item["counts"] == {"M": {"Observation": {"N": "2"}, "Patient": {"N": "3"}}}
    assert (item["deleted"], item["rejected"], item["lease_until"]) == ({"N": "1"}, {"N": "4"}, {"N": "0"})
    assert item["silver_instants"] == {"L": [{"S": "patient@20240101000000000"}]}
    assert item["updated_at"] == {"N": "1700000000000001"}
    assert item["handed_off_to"] == {"S": "jr_1"} and "error" not in item
    # A second run (a retry, a redelivery) finds the item finished: its finish changes nothing.
    again = finish_request(TABLE, ITEM, FAILED, counts={}, deleted=0, rejected=0, silver_instants=[], error="late",
                           now=1_800_000_000_000_000)
    with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException):
        dynamodb.update_item(**again)
    assert _item(dynamodb) == item


def test_a_failure_records_its_redacted_reason(dynamodb):
    key = "clinic-1/Jane Doe.ndjson"
    error = redact_key(f"GET s3://raw/{key} and http://s3/raw/clinic-1/Jane%20Doe.ndjson failed", key, ITEM)
    dynamodb.update_item(**finish_request(TABLE, ITEM, FAILED, counts={}, deleted=0, rejected=0, silver_instants=[],
                                          error=error, now=5))
    item = _item(dynamodb)
    assert item["status"] == {"S": FAILED}
    assert item["error"] == {"S": f"GET s3://raw/{ITEM} and http://s3/raw/{ITEM} failed"}
    assert "Jane" not in str(item["error"])


def ACTIVE(run_id: str) -> bool:
    return True


def test_a_run_works_only_on_an_item_handed_off_to_it_and_waits_for_the_hand_off():
    handed = {"status": {"S": HANDED_OFF}, "handed_off_to": {"S": "jr_1"}}
    assert hand_off_decision(handed, "jr_1", ACTIVE) == RUN
    # A retried hand-off started jr_2 while jr_1 still runs: jr_2 leaves the file to jr_1.
    assert hand_off_decision(handed, "jr_2", ACTIVE) == SKIP
    # jr_1 ended without finishing the item (failed, timed out, stopped): Glue's retry takes over.
    assert hand_off_decision(handed, "jr_2", lambda run: run != "jr_1") == RUN
    # The Lambda has not recorded the hand-off yet.
    assert hand_off_decision({"status": {"S": "PROCESSING"}}, "jr_1", ACTIVE) == WAIT
    assert hand_off_decision(None, "jr_1", ACTIVE) == SKIP
    for status in (COMPLETED, FAILED, "QUARANTINED"):
        assert hand_off_decision({"status": {"S": status}, "handed_off_to": {"S": "jr_1"}}, "jr_1", ACTIVE) == SKIP


def test_the_status_tag_joins_the_objects_other_tags():
    others = [{"Key": f"k{i}", "Value": "v"} for i in range(3)]
    assert status_tags([*others, {"Key": STATUS_TAG, "Value": "handed-off"}], "completed") == \
        [*others, {"Key": STATUS_TAG, "Value": "completed"}]
    full = [{"Key": f"k{i}", "Value": "v"} for i in range(10)]
    assert status_tags(full, "completed") is None
    assert status_tags([*full[:9], {"Key": STATUS_TAG, "Value": "x"}], "completed")[-1]["Value"] == "completed"


def test_a_tenant_partition_is_the_tables_location_plus_its_folder():
    descriptor = {"Location": "s3://lake/silver/patient/", "InputFormat": "org.apache.hudi.hadoop.HoodieParquetInputFormat"}
    partition = partition_input(descriptor, "clinic-1")
    assert partition == {"Values": ["clinic-1"], "StorageDescriptor": {
        "Location": "s3://lake/silver/patient/tenant_id=clinic-1", "InputFormat": descriptor["InputFormat"]}}
    assert descriptor["Location"] == "s3://lake/silver/patient/", "the table's descriptor is not changed"


def test_the_s3_store_creates_only_absent_objects(aws):
    client = boto3.client("s3")
    client.create_bucket(Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    store = S3LakeStore(client, "lake")
    assert store.create("_metriccare/commits/silver/patient/00000000000000000001.json", b"first")
    assert not store.create("_metriccare/commits/silver/patient/00000000000000000001.json", b"second")
    assert store.get("_metriccare/commits/silver/patient/00000000000000000001.json") == b"first"
    assert store.get("absent") is None
    store.put("silver/patient/.hoodie/hoodie.properties", b"p")
    store.put("silver/patient/.hoodie/archived/x", b"deeper")
    assert store.list("silver/patient/.hoodie") == ["silver/patient/.hoodie/hoodie.properties"]
    store.delete("silver/patient/.hoodie/hoodie.properties")
    store.delete("silver/patient/.hoodie/hoodie.properties")
    assert store.list("silver/patient/.hoodie") == []

