//! The AWS path against a real AWS emulator (moto server, started by `scripts/test.sh`): the
//! DynamoDB ledger, S3 conditional writes, and both functions end to end — S3 notifications read
//! from the SQS queue they really arrive on, silver and gold in the lake bucket, ledger items, tags,
//! Glue partitions, the EventBridge event and the SNS messages on their SQS subscriptions.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use metriccare_aws::ingest_function::STATUS_TAG;
use metriccare_aws::ledger::DynamoDbLedger;
use metriccare_core::gold::read_gold;
use metriccare_core::ingest::FileResult;
use metriccare_core::ports::{Claim, Ledger, LedgerStatus, ObjectRef, Outcome};
use metriccare_core::silver::SilverTable;
use metriccare_core::tenant::TenantId;
use metriccare_tests::aws::{Deployment, sns_delivery, sqs_event};
use metriccare_tests::{assert_matches_truth, silver_rows, stage_every_task};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions};
use serde_json::{Value, json};

fn generated(
    seed: u64,
    patients: usize,
    tenants: usize,
) -> (tempfile::TempDir, fhir_generator::GroundTruth) {
    let dir = tempfile::tempdir().unwrap();
    let config = fhir_generator::Config {
        patients,
        tenants,
        seed,
        format: fhir_generator::Format::Ndjson,
        gzip: false,
        dirty: false,
        patients_per_bundle: 10,
        tenant_clocks: Vec::new(),
    };
    let truth = fhir_generator::generate(&config, dir.path())
        .unwrap()
        .ground_truth;
    std::fs::remove_file(dir.path().join(fhir_generator::GROUND_TRUTH_FILE)).unwrap();
    (dir, truth)
}

/// A plain S3 event for keys of the raw bucket (keys encoded as S3 encodes them).
fn s3_event(bucket: &str, keys: &[&str]) -> Value {
    json!({"Records": keys.iter().map(|key| json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key.replace(' ', "+")}}
    })).collect::<Vec<_>>()})
}

fn results(answer: &Value) -> Vec<String> {
    answer["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["result"].as_str().unwrap().to_owned())
        .collect()
}

/// Silver rows per (table, tenant).
async fn silver_counts(
    services: &metriccare_core::ingest::Services,
) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for table in SilverTable::ALL {
        for row in silver_rows(services, table).await {
            let tenant = row["tenant_id"].as_str().unwrap().to_owned();
            *counts.entry((table.name().to_owned(), tenant)).or_default() += 1;
        }
    }
    counts
}

#[tokio::test]
async fn the_dynamodb_ledger_claims_conditionally_and_fences_finish() {
    // GIVEN the ledger table of a deployment
    let deployment = Deployment::create().await;
    let ledger = DynamoDbLedger::new(deployment.dynamodb.clone(), &deployment.ledger_table);
    let object = ObjectRef {
        bucket: "raw".into(),
        key: "t1/a.ndjson".into(),
        etag: "e1".into(),
        size: 10,
    };
    let id = object.ledger_id();
    let lease = Duration::from_secs(60);
    let lease_us = lease.as_micros() as i64;

    // WHEN two workers claim the same object, THEN only the first gets it
    assert_eq!(
        ledger.claim(&object, "t1", 0, lease).await.unwrap(),
        Claim::Claimed { attempt: 1 }
    );
    assert!(matches!(
        ledger.claim(&object, "t1", 1, lease).await.unwrap(),
        Claim::Busy(_)
    ));

    // WHEN the lease expires, THEN another worker takes over and the first one's finish is refused
    assert_eq!(
        ledger
            .claim(&object, "t1", lease_us + 1, lease)
            .await
            .unwrap(),
        Claim::Claimed { attempt: 2 }
    );
    let outcome = Outcome {
        counts: BTreeMap::from([("Patient".to_owned(), 3)]),
        rejected: 1,
        silver_instants: vec!["patient@20260101000000000".into()],
        ..Outcome::default()
    };
    assert!(
        !ledger
            .finish(&id, 1, LedgerStatus::Completed, &outcome, 5)
            .await
            .unwrap()
    );
    assert!(
        ledger
            .finish(&id, 2, LedgerStatus::Completed, &outcome, 6)
            .await
            .unwrap()
    );

    // THEN a completed object is done for good, with its outcome recorded
    let Claim::Done(entry) = ledger
        .claim(&object, "t1", 10 * lease_us, lease)
        .await
        .unwrap()
    else {
        panic!("a completed object must not be claimed again")
    };
    assert_eq!(
        (entry.status, entry.attempts, entry.rejected),
        (LedgerStatus::Completed, 2, 1)
    );
    assert_eq!(entry.counts["Patient"], 3);
    assert_eq!(entry.silver_instants, outcome.silver_instants);
    assert_eq!(ledger.list().await.unwrap(), vec![entry]);

    // AND a FAILED object can be claimed again at once
    let other = ObjectRef {
        etag: "e2".into(),
        ..object
    };
    ledger.claim(&other, "t1", 0, lease).await.unwrap();
    let failed = Outcome {
        error: Some("boom".into()),
        ..Outcome::default()
    };
    assert!(
        ledger
            .finish(&other.ledger_id(), 1, LedgerStatus::Failed, &failed, 1)
            .await
            .unwrap()
    );
    assert_eq!(
        ledger.claim(&other, "t1", 2, lease).await.unwrap(),
        Claim::Claimed { attempt: 2 }
    );
    assert_eq!(
        ledger.get(&other.ledger_id()).await.unwrap().unwrap().error,
        None
    );
}

#[tokio::test]
async fn the_lake_bucket_refuses_a_second_create_of_one_object() {
    let deployment = Deployment::create().await;
    let lake = deployment.lake();
    let path = Path::from("_metriccare/commits/silver/patient/00000000000000000001.json");
    let create = || PutOptions::from(PutMode::Create);
    lake.put_opts(&path, "first".into(), create())
        .await
        .unwrap();
    let second = lake.put_opts(&path, "second".into(), create()).await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "{second:?}"
    );
    assert_eq!(
        lake.get(&path).await.unwrap().bytes().await.unwrap(),
        "first"
    );
}

#[tokio::test]
async fn end_to_end_from_s3_notifications_to_gold_and_sns_and_redelivery_changes_nothing() {
    // GIVEN a deployment and a generated data set uploaded to the raw bucket, plus a copy of one
    // file under a key with spaces and non-ASCII letters, a file that is not FHIR, and a Bulk
    // export log beside the generated files
    let deployment = Deployment::create().await;
    let (dir, truth) = generated(11, 24, 2);
    let keys = deployment.upload_dir(dir.path()).await;
    let unusual_key = "tenant-01/export 1/Jürgen Müller (copy).ndjson";
    let copied = std::fs::read(dir.path().join("tenant-01/export-1/Patient.ndjson")).unwrap();
    deployment.upload(unusual_key, copied).await;
    let broken_key = "tenant-02/broken.ndjson";
    deployment
        .upload(broken_key, b"this is not FHIR\n".to_vec())
        .await;
    let log_key = "tenant-01/export-1/log.ndjson";
    let log =
        b"{\"exportId\":\"x\",\"eventId\":\"kickoff\",\"timestamp\":\"2024-03-01T00:00:00Z\"}\n";
    deployment.upload(log_key, log.to_vec()).await;

    // WHEN the notifications S3 sent to the queue are delivered to the ingest function in batches
    let notifications = deployment
        .receive(&deployment.raw_events_queue, keys.len() + 4)
        .await;
    assert_eq!(
        notifications.len(),
        keys.len() + 4,
        "the s3:TestEvent and one per object"
    );
    let ingest = deployment.ingest_function(deployment.ingest_config()).await;
    let mut answers = Vec::new();
    for batch in notifications.chunks(10) {
        answers.push(ingest.handle(sqs_event(batch)).await.unwrap());
    }

    // THEN no message failed, and every object has its outcome
    for answer in &answers {
        assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    }
    let mut outcomes: Vec<String> = answers.iter().flat_map(results).collect();
    outcomes.sort();
    let mut expected = vec!["completed".to_owned(); keys.len() + 1];
    expected.extend(["quarantined".to_owned(), "skipped".to_owned()]);
    expected.sort();
    assert_eq!(outcomes, expected);

    // AND the ledger has one final item per object
    let ledger = ingest.services().ledger.list().await.unwrap();
    let statuses: BTreeMap<String, LedgerStatus> = ledger
        .iter()
        .map(|e| (e.object.key.clone(), e.status))
        .collect();
    assert_eq!(statuses.len(), keys.len() + 3);
    assert_eq!(statuses[broken_key], LedgerStatus::Quarantined);
    assert_eq!(statuses[log_key], LedgerStatus::Skipped);
    assert_eq!(statuses[unusual_key], LedgerStatus::Completed);
    assert!(
        ledger
            .iter()
            .all(|e| e.attempts == 1 && e.object.bucket == deployment.raw_bucket)
    );

    // AND silver holds exactly the expected rows (the copy changed nothing)
    let counts = silver_counts(ingest.services()).await;
    for tenant in &truth.tenants {
        let expected = &tenant.resources;
        for (table, count) in [
            ("patient", expected.patient),
            ("encounter", expected.encounter),
            ("condition", expected.condition),
            ("organization", expected.organization),
        ] {
            assert_eq!(
                counts
                    .get(&(table.to_owned(), tenant.tenant.clone()))
                    .copied()
                    .unwrap_or(0) as u64,
                count,
                "{table} of {}",
                tenant.tenant
            );
        }
    }

    // AND the raw objects are tagged with their outcome
    assert_eq!(deployment.raw_tags(&keys[0]).await[STATUS_TAG], "completed");
    assert_eq!(
        deployment.raw_tags(unusual_key).await[STATUS_TAG],
        "completed"
    );
    assert_eq!(
        deployment.raw_tags(broken_key).await[STATUS_TAG],
        "quarantined"
    );
    assert_eq!(deployment.raw_tags(log_key).await[STATUS_TAG], "skipped");

    // AND the bad file is in the quarantine bucket with its reason, and the alerts topic said so
    let broken_id = ledger
        .iter()
        .find(|e| e.object.key == broken_key)
        .unwrap()
        .id
        .clone();
    let reason = deployment
        .s3
        .get_object()
        .bucket(&deployment.quarantine_bucket)
        .key(format!("files/tenant-02/{broken_id}/reason.json"))
        .send()
        .await
        .expect("reason.json in the quarantine bucket");
    assert!(reason.content_length.unwrap_or_default() > 0);
    let alerts = deployment.receive(&deployment.alerts_queue, 1).await;
    let (envelope, alert) = sns_delivery(&alerts[0]);
    assert_eq!(
        envelope["MessageAttributes"]["event"]["Value"],
        "file.quarantined"
    );
    assert_eq!(alert["tenant_id"], "tenant-02");
    assert!(
        !envelope.to_string().contains("broken.ndjson"),
        "no key in alerts: {envelope}"
    );
    assert!(
        deployment.drain(&deployment.alerts_queue).await.is_empty(),
        "the skipped export log is not alerted"
    );

    // AND both tenants' partitions are in the Glue catalog, silver and gold
    for (database, table) in [
        (&deployment.silver_database, "patient"),
        (&deployment.gold_database, "hospital_monthly"),
    ] {
        let partitions = deployment
            .glue
            .get_partitions()
            .database_name(database)
            .table_name(table)
            .send()
            .await
            .unwrap()
            .partitions
            .unwrap_or_default();
        let mut values: Vec<String> = partitions
            .iter()
            .flat_map(|p| p.values().to_vec())
            .collect();
        values.sort();
        assert_eq!(values, ["tenant-01", "tenant-02"], "{database}.{table}");
        let location = partitions[0]
            .storage_descriptor()
            .unwrap()
            .location()
            .unwrap();
        assert!(
            location.starts_with(&format!("s3://{}/", deployment.lake_bucket))
                && location.contains("/tenant_id="),
            "{location}"
        );
    }

    // AND the ingest function told the gold function that silver changed
    let announced = deployment.receive(&deployment.silver_events_queue, 1).await;
    let event: Value = serde_json::from_str(announced[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(event["detail-type"], "silver.committed");
    assert!(
        event["detail"]["tenant_ids"]
            .as_array()
            .unwrap()
            .contains(&json!("tenant-01"))
    );

    // WHEN the gold function runs on its schedule
    let gold = deployment.gold_function();
    let scheduled = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    let refreshed = gold.handle(scheduled.clone()).await.unwrap();

    // THEN gold equals the generator's ground truth, and one message per tenant was published
    assert_eq!(
        refreshed["refreshed_tenants"],
        json!(["tenant-01", "tenant-02"])
    );
    assert_matches_truth(&read_gold(&deployment.lake()).await.unwrap(), &truth, "aws");
    let messages = deployment.receive(&deployment.notifications_queue, 2).await;
    let mut tenants = BTreeSet::new();
    for message in &messages {
        let (envelope, body) = sns_delivery(message);
        assert_eq!(
            envelope["MessageAttributes"]["event"]["Value"],
            "gold.refreshed"
        );
        let tenant = envelope["MessageAttributes"]["tenant_id"]["Value"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(body["event"], "gold.refreshed");
        assert_eq!(body["tenant_id"], tenant.as_str());
        assert!(
            body["data"]["headline"]["stays"].as_u64().unwrap() > 0,
            "{body}"
        );
        tenants.insert(tenant);
    }
    assert_eq!(
        tenants,
        BTreeSet::from(["tenant-01".to_owned(), "tenant-02".to_owned()])
    );

    // WHEN every event is delivered again, to a fresh instance of each function
    let before = deployment.lake_objects().await;
    let again = deployment.ingest_function(deployment.ingest_config()).await;
    for batch in notifications.chunks(10) {
        let answer = again.handle(sqs_event(batch)).await.unwrap();
        assert_eq!(answer["batchItemFailures"], json!([]));
        assert!(
            results(&answer).iter().all(|r| r == "already_done"),
            "{answer}"
        );
    }
    let quiet = deployment.gold_function().handle(scheduled).await.unwrap();

    // THEN nothing changed: no lake object, no gold commit, no message
    assert_eq!(deployment.lake_objects().await, before);
    assert_eq!(quiet["changed_tenants"], json!([]));
    assert!(
        deployment
            .drain(&deployment.notifications_queue)
            .await
            .is_empty()
    );
    assert!(
        deployment
            .drain(&deployment.silver_events_queue)
            .await
            .is_empty()
    );
    assert_eq!(again.services().ledger.list().await.unwrap(), ledger);
}

/// How many function instances run at once in the concurrency tests.
const INSTANCES: usize = 6;

/// Completed commits of a silver table in the lake bucket.
async fn commits(services: &metriccare_core::ingest::Services, table: SilverTable) -> usize {
    let prefix = Path::from(format!("silver/{}/.hoodie", table.name()));
    let listing = services
        .lake
        .list_with_delimiter(Some(&prefix))
        .await
        .unwrap();
    listing
        .objects
        .iter()
        .filter(|o| o.location.as_ref().ends_with(".commit"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_ingests_into_one_tenant_and_table_at_once_keep_every_row_and_commit() {
    // GIVEN six different Patient files of one tenant (six seeds)
    let deployment = Deployment::create().await;
    let mut keys = Vec::new();
    let mut expected = 0;
    for writer in 0..INSTANCES as u64 {
        let (dir, truth) = generated(21 + writer, 20, 1);
        let body = std::fs::read(dir.path().join("tenant-01/export-1/Patient.ndjson")).unwrap();
        let key = format!("tenant-01/writer-{writer}/Patient.ndjson");
        deployment.upload(&key, body).await;
        expected += truth.tenants[0].resources.patient;
        keys.push(key);
    }

    // WHEN six function instances (six Lambdas) each ingest one of them at the same time
    let functions = futures::future::join_all(
        keys.iter()
            .map(|_| deployment.ingest_function(deployment.ingest_config())),
    )
    .await;
    let answers = futures::future::join_all(
        functions
            .iter()
            .zip(&keys)
            .map(|(function, key)| function.handle(s3_event(&deployment.raw_bucket, &[key]))),
    )
    .await;

    // THEN every one completed, every row of every file is in silver once, every commit is kept
    for answer in answers {
        assert_eq!(results(&answer.unwrap()), ["completed"]);
    }
    let services = functions[0].services();
    let patients = silver_rows(services, SilverTable::Patient).await;
    assert_eq!(patients.len() as u64, expected);
    let distinct: BTreeSet<_> = patients.iter().map(|r| r["patient_key"].as_str()).collect();
    assert_eq!(distinct.len(), patients.len());
    assert_eq!(commits(services, SilverTable::Patient).await, INSTANCES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_upload_delivered_to_many_instances_at_once_is_loaded_once() {
    // GIVEN one uploaded file and its S3 notification
    let deployment = Deployment::create().await;
    let (dir, truth) = generated(31, 20, 1);
    let body = std::fs::read(dir.path().join("tenant-01/export-1/Patient.ndjson")).unwrap();
    deployment
        .upload("tenant-01/once/Patient.ndjson", body)
        .await;
    let notifications = deployment.receive(&deployment.raw_events_queue, 2).await;
    let upload: Vec<_> = notifications
        .into_iter()
        .filter(|m| {
            m.body
                .as_deref()
                .unwrap_or_default()
                .contains("Patient.ndjson")
        })
        .collect();
    assert_eq!(upload.len(), 1);

    // WHEN the same message reaches six function instances at the same time
    let functions = futures::future::join_all(
        (0..INSTANCES).map(|_| deployment.ingest_function(deployment.ingest_config())),
    )
    .await;
    let answers = futures::future::join_all(
        functions
            .iter()
            .map(|function| function.handle(sqs_event(&upload))),
    )
    .await;

    // THEN one instance loaded it; each other found it held (its message is retried) or done
    let mut outcomes: Vec<String> = Vec::new();
    for answer in answers {
        let answer = answer.unwrap();
        let result = results(&answer).pop().unwrap();
        let retried = answer["batchItemFailures"].as_array().unwrap().len();
        assert_eq!(retried, usize::from(result == "busy"), "{answer}");
        outcomes.push(result);
    }
    assert_eq!(
        outcomes.iter().filter(|r| *r == "completed").count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|r| ["completed", "busy", "already_done"].contains(&r.as_str())),
        "{outcomes:?}"
    );
    // AND silver holds its rows once, from one commit, and the retried messages change nothing
    let services = functions[0].services();
    let expected = truth.tenants[0].resources.patient as usize;
    assert_eq!(
        silver_rows(services, SilverTable::Patient).await.len(),
        expected
    );
    assert_eq!(commits(services, SilverTable::Patient).await, 1);
    let again = functions[1].handle(sqs_event(&upload)).await.unwrap();
    assert_eq!(results(&again), ["already_done"]);
    assert_eq!(commits(services, SilverTable::Patient).await, 1);
    let ledger = services.ledger.list().await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].status, LedgerStatus::Completed);
}

#[tokio::test]
async fn an_object_too_big_for_a_lambda_is_handed_to_the_glue_job_once() {
    // GIVEN an ingest function whose size limit is below the uploaded file's size
    let deployment = Deployment::create().await;
    let key = "tenant-01/export-1/Jane Doe.ndjson";
    let body = metriccare_tests::read_fixture("bulk/Patient.ndjson");
    let size = body.len() as u64;
    deployment.upload(key, body).await;
    let mut config = deployment.ingest_config();
    config.max_object_bytes = size - 1;
    let ingest = deployment.ingest_function(config).await;

    // WHEN its event arrives, twice
    let first = ingest
        .handle(s3_event(&deployment.raw_bucket, &[key]))
        .await
        .unwrap();
    let second = ingest
        .handle(s3_event(&deployment.raw_bucket, &[key]))
        .await
        .unwrap();

    // THEN one Glue job run was started with the ledger id (never the key), and the ledger says so
    assert_eq!(results(&first), ["handed_off"]);
    assert_eq!(results(&second), ["already_done"]);
    let runs = deployment
        .glue
        .get_job_runs()
        .job_name(&deployment.glue_job_name)
        .send()
        .await
        .unwrap()
        .job_runs
        .unwrap_or_default();
    assert_eq!(runs.len(), 1);
    let arguments = runs[0].arguments().unwrap();
    assert!(
        arguments.values().all(|v| !v.contains("Jane")),
        "{arguments:?}"
    );
    assert_eq!(arguments["--tenant_id"], "tenant-01");
    let entry = &ingest.services().ledger.list().await.unwrap()[0];
    assert_eq!(entry.status, LedgerStatus::HandedOff);
    assert_eq!(entry.handed_off_to.as_deref(), runs[0].id());
    assert_eq!(arguments["--ledger_id"], entry.id);
    assert_eq!(deployment.raw_tags(key).await[STATUS_TAG], "handed-off");
    // AND nothing was written to silver
    assert!(
        silver_rows(ingest.services(), SilverTable::Patient)
            .await
            .is_empty()
    );

    // WHEN the job takes the file over, splits it into spans of a third, stages each and commits
    let services = ingest.services();
    let (raw, raw_bucket) = ingest.raw();
    let tenant = TenantId::parse("tenant-01").unwrap();
    let keys = [Path::parse(key).unwrap()];
    let split = size / 3 + 1;
    let group = services
        .claim_scale_out(raw, raw_bucket, &keys, &tenant, split)
        .await
        .unwrap();
    assert_eq!(group.tasks().len(), 3);
    stage_every_task(services, raw, &group).await;
    let reports = services.commit_scale_out(group).await.unwrap();
    // THEN the file is completed on its second attempt, with every patient the file holds, and a
    // second run of the job finds it done
    assert_eq!(reports[0].result, FileResult::Completed, "{reports:?}");
    let entry = services.ledger.get(&entry.id).await.unwrap().unwrap();
    assert_eq!((entry.status, entry.attempts), (LedgerStatus::Completed, 2));
    assert_eq!(entry.handed_off_to.as_deref(), runs[0].id());
    let patients = silver_rows(services, SilverTable::Patient).await;
    assert_eq!(patients.len() as u64, entry.counts["Patient"]);
    let again = services
        .claim_scale_out(raw, raw_bucket, &keys, &tenant, split)
        .await
        .unwrap();
    assert!(again.tasks().is_empty());
}

#[tokio::test]
async fn a_message_that_cannot_be_done_now_fails_alone_in_its_batch() {
    // GIVEN two uploaded files, one of which another worker holds a live claim on
    let deployment = Deployment::create().await;
    let body = metriccare_tests::read_fixture("bulk/Patient.ndjson");
    deployment
        .upload("tenant-01/free.ndjson", body.clone())
        .await;
    deployment.upload("tenant-01/held.ndjson", body).await;
    let ingest = deployment.ingest_function(deployment.ingest_config()).await;
    let notifications = deployment.receive(&deployment.raw_events_queue, 3).await;
    let held = notifications
        .iter()
        .find(|m| {
            m.body
                .as_deref()
                .unwrap_or_default()
                .contains("held.ndjson")
        })
        .unwrap();
    let head = deployment
        .s3
        .head_object()
        .bucket(&deployment.raw_bucket)
        .key("tenant-01/held.ndjson")
        .send()
        .await
        .unwrap();
    let object = ObjectRef {
        bucket: deployment.raw_bucket.clone(),
        key: "tenant-01/held.ndjson".into(),
        etag: head.e_tag.unwrap(),
        size: head.content_length.unwrap() as u64,
    };
    let now = metriccare_core::time::now_micros();
    let claim = ingest
        .services()
        .ledger
        .claim(&object, "tenant-01", now, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(claim, Claim::Claimed { attempt: 1 });

    // WHEN the batch arrives with them, the s3:TestEvent and a message that is not an S3 event
    let mut event = sqs_event(&notifications);
    event["Records"].as_array_mut().unwrap().push(json!({
        "messageId": "garbage", "eventSource": "aws:sqs", "body": "{\"hello\": 1}"
    }));
    let answer = ingest.handle(event).await.unwrap();

    // THEN only the held file's message and the garbage fail; the free file is loaded
    let mut failed: Vec<String> = answer["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect();
    failed.sort();
    let mut expected = vec![held.message_id.clone().unwrap(), "garbage".to_owned()];
    expected.sort();
    assert_eq!(failed, expected);
    let mut outcomes = results(&answer);
    outcomes.sort();
    assert_eq!(outcomes, ["busy", "completed"]);
}

#[tokio::test]
async fn keys_that_name_patients_reach_no_answer_alert_or_ledger_error() {
    // GIVEN a file outside any tenant folder and a broken file, both named after a patient
    let deployment = Deployment::create().await;
    let outside = "Jane Doe/visit.ndjson";
    let broken = "tenant-01/Jane Doe 1970-01-01.ndjson";
    deployment.upload(outside, b"{}\n".to_vec()).await;
    deployment
        .upload(broken, b"not json at all\n".to_vec())
        .await;
    let ingest = deployment.ingest_function(deployment.ingest_config()).await;

    // WHEN their events arrive
    let answer = ingest
        .handle(s3_event(&deployment.raw_bucket, &[outside, broken]))
        .await
        .unwrap();

    // THEN the outside file is ignored, the broken one quarantined, and the name is nowhere
    assert_eq!(results(&answer), ["quarantined"]);
    let alerts = deployment.receive(&deployment.alerts_queue, 2).await;
    let events: BTreeSet<String> = alerts
        .iter()
        .map(|m| {
            sns_delivery(m).0["MessageAttributes"]["event"]["Value"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        events,
        BTreeSet::from(["file.ignored".to_owned(), "file.quarantined".to_owned()])
    );
    let ledger = ingest.services().ledger.list().await.unwrap();
    let errors: Vec<_> = ledger
        .iter()
        .map(|e| e.error.clone().unwrap_or_default())
        .collect();
    for text in [
        answer.to_string(),
        format!("{alerts:?}"),
        format!("{errors:?}"),
    ] {
        assert!(!text.contains("Jane") && !text.contains("Doe"), "{text}");
    }
}

fn patient_line(id: &str, last_updated: &str) -> String {
    format!(
        r#"{{"resourceType":"Patient","id":"{id}","meta":{{"lastUpdated":"{last_updated}"}},"gender":"female"}}"#
    )
}

#[tokio::test]
async fn deliveries_out_of_order_give_the_in_order_silver_and_an_erasure_request_is_carried_out() {
    // GIVEN a patient's two versions and then its delete, uploaded in that order, and a second
    // patient; in order, the first patient ends deleted
    let deployment = Deployment::create().await;
    let first = [
        patient_line("p1", "2024-01-01T00:00:00Z"),
        patient_line("p2", "2024-01-01T00:00:00Z"),
    ]
    .join("\n");
    deployment
        .upload("tenant-01/1-v1.ndjson", first.into_bytes())
        .await;
    deployment
        .upload(
            "tenant-01/2-v2.ndjson",
            patient_line("p1", "2024-02-01T00:00:00Z").into_bytes(),
        )
        .await;
    let delete = r#"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/p1"}}]}"#;
    deployment
        .upload("tenant-01/3-delete.json", delete.as_bytes().to_vec())
        .await;
    let ingest = deployment.ingest_function(deployment.ingest_config()).await;
    let notifications = deployment.receive(&deployment.raw_events_queue, 4).await;
    // WHEN SQS delivers them one by one, in reverse order: the delete before the versions it beats
    for message in notifications.iter().rev() {
        let answer = ingest
            .handle(sqs_event(std::slice::from_ref(message)))
            .await
            .unwrap();
        assert_eq!(answer["batchItemFailures"], json!([]));
    }
    // THEN silver equals the in-order result: the first patient stays deleted
    let patients: Vec<String> = silver_rows(ingest.services(), SilverTable::Patient)
        .await
        .iter()
        .map(|r| r["patient_key"].as_str().unwrap().to_owned())
        .collect();
    let p2 = metriccare_tests::pseudonym("tenant-01", "Patient", "p2");
    assert_eq!(patients, vec![p2.clone()]);

    // WHEN an erasure request for the second patient is uploaded through the same bucket
    let request = "tenant-01/_erasure/request-1.json";
    deployment
        .upload(request, br#"{"patient_id": "p2"}"#.to_vec())
        .await;
    let messages = deployment.receive(&deployment.raw_events_queue, 1).await;
    let answer = ingest.handle(sqs_event(&messages)).await.unwrap();
    // THEN it is carried out: no patient left, a receipt without the id, the request tagged
    assert_eq!(answer["batchItemFailures"], json!([]));
    assert!(
        silver_rows(ingest.services(), SilverTable::Patient)
            .await
            .is_empty()
    );
    let objects = deployment.lake_objects().await;
    let receipt_key = objects
        .keys()
        .find(|key| key.starts_with("_metriccare/erasures/tenant-01/"))
        .expect("a receipt in the lake");
    let receipt = deployment
        .lake()
        .get(&Path::from(receipt_key.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let receipt = String::from_utf8(receipt.to_vec()).unwrap();
    assert!(receipt.contains(&p2) && !receipt.contains("\"p2\""));
    assert_eq!(deployment.raw_tags(request).await[STATUS_TAG], "completed");
}
