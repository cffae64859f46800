"""The Lambda binaries themselves, run by `cargo lambda watch` and invoked with `cargo lambda invoke`,
against the AWS emulator that scripts/test.sh starts (METRICCARE_TEST_AWS_ENDPOINT): S3 notifications
read from the queue they arrive on go to the ingest function, a scheduled event to the gold function,
and the Apache Hudi reader reads silver and gold back from the lake bucket."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pyarrow as pa
import pytest
from hudi import HudiTableBuilder

from conftest import KEY, TABLES, pseudonym

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
PHI_KEY = "tenant-01/uploads/Jane Doe 1970-01-01.ndjson"


def endpoint():
    value = os.environ.get("METRICCARE_TEST_AWS_ENDPOINT")
    if not value:
        pytest.fail("METRICCARE_TEST_AWS_ENDPOINT is not set: run ./scripts/test.sh, which starts moto")
    return value


def client(service):
    return boto3.client(service, endpoint_url=endpoint(), region_name=REGION, **CREDENTIALS)


def cargo_lambda():
    return [str(Path(sys.executable).parent / "cargo-lambda"), "lambda"]


@pytest.fixture(scope="module")
def deployment():
    """Buckets, ledger table, topics with SQS subscriptions, Glue catalog and job, key parameter."""
    name = f"py{uuid.uuid4().hex[:10]}"
    s3, sqs, sns, glue = client("s3"), client("sqs"), client("sns"), client("glue")
    d = {"name": name, "raw": f"{name}-raw", "lake": f"{name}-lake", "quarantine": f"{name}-quarantine"}
    for bucket in (d["raw"], d["lake"], d["quarantine"]):
        s3.create_bucket(Bucket=bucket)
    d["ledger"] = f"{name}_ledger"
    client("dynamodb").create_table(
        TableName=d["ledger"], BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "ledger_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "ledger_id", "KeyType": "HASH"}],
    )

    def queue(suffix):
        url = sqs.create_queue(QueueName=f"{name}-{suffix}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    for topic in ("notifications", "alerts"):
        arn = sns.create_topic(Name=f"{name}-{topic}")["TopicArn"]
        url, queue_arn = queue(topic)
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
        d[f"{topic}_topic"], d[f"{topic}_queue"] = arn, url
    d["raw_events"], raw_events_arn = queue("raw-events")
    s3.put_bucket_notification_configuration(
        Bucket=d["raw"],
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": raw_events_arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    d["silver_db"], d["gold_db"] = f"{name}_silver", f"{name}_gold"
    for database, tables in ((d["silver_db"], TABLES), (d["gold_db"], ["hospital_monthly", "hai_by_code", "mortality_yearly", "stay_detail"])):
        glue.create_database(DatabaseInput={"Name": database})
        layer = "silver" if database == d["silver_db"] else "gold"
        for table in tables:
            glue.create_table(DatabaseName=database, TableInput={
                "Name": table,
                "PartitionKeys": [{"Name": "tenant_id", "Type": "string"}],
                "StorageDescriptor": {
                    "Location": f"s3://{d['lake']}/{layer}/{table}",
                    "InputFormat": "org.apache.hudi.hadoop.HoodieParquetInputFormat",
                },
            })
    d["glue_job"] = f"{name}_scale_out"
    glue.create_job(Name=d["glue_job"], Role="arn:aws:iam::123456789012:role/glue",
                    Command={"Name": "glueetl", "ScriptLocation": "s3://scripts/ingest.py"})
    d["key_parameter"] = f"/{name}/pseudonym-key"
    client("ssm").put_parameter(Name=d["key_parameter"], Value=KEY.hex(), Type="SecureString")
    return d


def function_environment(d):
    return {
        "AWS_ENDPOINT_URL": endpoint(),
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "METRICCARE_RAW_BUCKET": d["raw"],
        "METRICCARE_LAKE_BUCKET": d["lake"],
        "METRICCARE_QUARANTINE_BUCKET": d["quarantine"],
        "METRICCARE_LEDGER_TABLE": d["ledger"],
        "METRICCARE_NOTIFICATIONS_TOPIC_ARN": d["notifications_topic"],
        "METRICCARE_ALERTS_TOPIC_ARN": d["alerts_topic"],
        "METRICCARE_PSEUDONYM_KEY_PARAMETER": d["key_parameter"],
        "METRICCARE_GLUE_JOB_NAME": d["glue_job"],
        "METRICCARE_SILVER_DATABASE": d["silver_db"],
        "METRICCARE_GOLD_DATABASE": d["gold_db"],
        "METRICCARE_S3_FORCE_PATH_STYLE": "true",
        "METRICCARE_LOG": "info",
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lambdas(deployment, tmp_path_factory):
    """`cargo lambda watch` serving both functions; yields an invoke(function, event) helper."""
    work = tmp_path_factory.mktemp("lambda")
    env_file = work / "functions.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in function_environment(deployment).items()))
    port = free_port()
    log = open(work / "watch.log", "w+")
    watch = subprocess.Popen(
        [*cargo_lambda(), "watch", "--ignore-changes", "--quiet", "--invoke-address", "127.0.0.1",
         "--invoke-port", str(port), "--env-file", str(env_file), "--timeout", "600"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.time() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if watch.poll() is not None or time.time() > deadline:
                log.seek(0)
                pytest.fail(f"cargo lambda watch did not start:\n{log.read()}")
            time.sleep(0.5)

    def invoke(function, event):
        data = work / f"{function}-{uuid.uuid4().hex[:6]}.json"
        data.write_text(json.dumps(event) if not isinstance(event, Path) else event.read_text())
        done = subprocess.run(
            [*cargo_lambda(), "invoke", function, "--data-file", str(data), "--invoke-address", "127.0.0.1",
             "--invoke-port", str(port), "--output-format", "json"],
            cwd=ROOT, capture_output=True, text=True, timeout=900,
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        return json.loads(done.stdout)

    invoke.log = lambda: (log.flush(), (work / "watch.log").read_text())[1]
    yield invoke
    os.killpg(watch.pid, signal.SIGTERM)
    watch.wait(timeout=30)
    log.close()


def receive(queue_url, count, timeout=60):
    sqs, messages, deadline = client("sqs"), [], time.time() + timeout
    while len(messages) < count and time.time() < deadline:
        for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            messages.append(m)
    return messages


def sqs_event(messages):
    return {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                         "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:raw-events", "awsRegion": REGION}
                        for m in messages]}


def read_s3_table(d, layer, table):
    options = {**CREDENTIALS, "aws_region": REGION, "aws_endpoint_url": endpoint(), "aws_allow_http": "true"}
    hudi_table = HudiTableBuilder.from_base_uri(f"s3://{d['lake']}/{layer}/{table}").with_storage_options(options).build()
    batches = hudi_table.read()
    return pa.Table.from_batches(batches) if batches else pa.table({})


def test_the_lambda_binaries_turn_s3_events_into_hudi_tables_on_s3(deployment, lambdas, tmp_path):
    # GIVEN a generated data set in the raw bucket, one file under a key that names a patient
    out = tmp_path / "generated"
    subprocess.run([os.environ["FHIR_GENERATOR_BIN"], "--patients", "16", "--tenants", "2", "--seed", "5",
                    "--format", "ndjson", "--out", str(out)], check=True, capture_output=True)
    truth = json.loads((out / "ground-truth.json").read_text())
    (out / "ground-truth.json").unlink()
    s3 = client("s3")
    files = sorted(p for p in out.rglob("*") if p.is_file())
    for path in files:
        s3.put_object(Bucket=deployment["raw"], Key=str(path.relative_to(out)), Body=path.read_bytes())
    s3.put_object(Bucket=deployment["raw"], Key=PHI_KEY, Body=(out / "tenant-01/export-1/Patient.ndjson").read_bytes())

    # WHEN the S3 notifications are invoked on the ingest binary as SQS batches, then the gold binary
    notifications = receive(deployment["raw_events"], len(files) + 2)
    assert len(notifications) == len(files) + 2
    answers = [lambdas("metriccare-ingest", sqs_event(notifications[i:i + 10])) for i in range(0, len(notifications), 10)]
    gold = lambdas("metriccare-gold", ROOT / "tests/fixtures/events/scheduled.json")

    # THEN every object loaded, no message failed, and the answer names no key
    assert all(a["batchItemFailures"] == [] for a in answers), answers
    results = [f["result"] for a in answers for f in a["files"]]
    assert results == ["completed"] * (len(files) + 1)
    assert "Jane Doe" not in json.dumps(answers)
    assert gold["refreshed_tenants"] == ["tenant-01", "tenant-02"]

    # AND the Apache Hudi reader reads exactly the expected rows from the lake bucket
    for tenant in truth["tenants"]:
        for table in TABLES:
            rows = read_s3_table(deployment, "silver", table).to_pylist()
            mine = [r for r in rows if r["tenant_id"] == tenant["tenant"]]
            assert len(mine) == tenant["resources"][table], (table, tenant["tenant"])
    patient = json.loads((out / "tenant-01/export-1/Patient.ndjson").read_text().splitlines()[0])
    keys = {r["patient_key"] for r in read_s3_table(deployment, "silver", "patient").to_pylist()}
    assert pseudonym("tenant-01", "Patient", patient["id"]) in keys
    monthly = read_s3_table(deployment, "gold", "hospital_monthly").to_pylist()
    for tenant in truth["tenants"]:
        expected = sum(row["stays"] for row in tenant["hospital_monthly"])
        assert sum(r["stays"] for r in monthly if r["tenant_id"] == tenant["tenant"]) == expected

    # AND one gold.refreshed message per tenant reached the notifications subscription
    messages = receive(deployment["notifications_queue"], 2)
    envelopes = [json.loads(m["Body"]) for m in messages]
    assert sorted(e["MessageAttributes"]["tenant_id"]["Value"] for e in envelopes) == ["tenant-01", "tenant-02"]
    assert all(json.loads(e["Message"])["event"] == "gold.refreshed" for e in envelopes)

    # AND the functions logged structured JSON, one line per file, and never the patient's name
    log = lambdas.log()
    outcomes = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"file processed"' in line]
    assert len(outcomes) == len(files) + 1
    assert "Jane Doe" not in log

    # WHEN the same events are invoked again, THEN nothing is processed twice and gold stays quiet
    again = [lambdas("metriccare-ingest", sqs_event(notifications[i:i + 10])) for i in range(0, len(notifications), 10)]
    assert [f["result"] for a in again for f in a["files"]] == ["already_done"] * (len(files) + 1)
    assert lambdas("metriccare-gold", ROOT / "tests/fixtures/events/scheduled.json")["changed_tenants"] == []
    assert receive(deployment["notifications_queue"], 1, timeout=3) == []


@pytest.mark.parametrize("binary, missing", [
    ("metriccare-ingest", "METRICCARE_LEDGER_TABLE"),
    ("metriccare-gold", "METRICCARE_NOTIFICATIONS_TOPIC_ARN"),
])
def test_a_function_without_its_configuration_stops_at_start_naming_the_variable(deployment, binary, missing):
    env = {k: v for k, v in {**os.environ, **function_environment(deployment)}.items() if k != missing}
    path = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / binary
    done = subprocess.run([str(path)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    line = json.loads(done.stderr.strip().splitlines()[-1])
    assert missing in line["fields"]["error"], line
