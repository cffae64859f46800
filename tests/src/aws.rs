//! A MetricCare deployment inside a running AWS emulator (moto server; `scripts/test.sh` starts it
//! and exports its address as `METRICCARE_TEST_AWS_ENDPOINT`). Each [`Deployment`] has its own
//! uniquely named buckets, ledger table, topics, queues, event bus, Glue databases and job, so tests
//! run in parallel against one server. The functions under test use the real SDK clients.

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_glue::types::{
    Column, DatabaseInput, JobCommand, SerDeInfo, StorageDescriptor, TableInput,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_sqs::types::{Message, QueueAttributeName};
use aws_sdk_ssm::types::ParameterType;
use metriccare_aws::clients::{bucket_store, sdk_config_loader};
use metriccare_aws::config::{Common, DEFAULT_LEASE, GoldConfig, IngestConfig};
use metriccare_aws::ledger::KEY_ATTRIBUTE;
use metriccare_aws::{GoldFunction, IngestFunction};
use metriccare_core::gold::GoldTable;
use metriccare_core::hudi::Retention;
use metriccare_core::ingest::Settings;
use metriccare_core::silver::SilverTable;
use object_store::ObjectStore;
use serde_json::{Value, json};

use crate::TEST_KEY;

pub const ENDPOINT_VARIABLE: &str = "METRICCARE_TEST_AWS_ENDPOINT";
const REGION: &str = "us-east-1";

/// The emulator's address; a clear failure when the test command did not start one.
pub fn endpoint() -> String {
    std::env::var(ENDPOINT_VARIABLE).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_VARIABLE} is not set: these tests need a moto server. Run ./scripts/test.sh, \
             which starts one, or start `moto_server -p PORT` and set {ENDPOINT_VARIABLE}=http://127.0.0.1:PORT"
        )
    })
}

/// SDK configuration for the emulator: fixed region and dummy credentials.
pub async fn sdk() -> SdkConfig {
    sdk_config_loader()
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

/// One isolated deployment.
pub struct Deployment {
    pub sdk: SdkConfig,
    pub name: String,
    pub raw_bucket: String,
    pub lake_bucket: String,
    pub quarantine_bucket: String,
    pub ledger_table: String,
    pub notifications_topic_arn: String,
    pub alerts_topic_arn: String,
    pub key_parameter: String,
    pub glue_job_name: String,
    pub silver_database: String,
    pub gold_database: String,
    pub event_bus: String,
    /// The raw bucket's S3 notifications (the production wiring: S3 → SQS → ingest).
    pub raw_events_queue: String,
    /// Subscribed to the notifications topic / the alerts topic.
    pub notifications_queue: String,
    pub alerts_queue: String,
    /// Target of the rule that matches the ingest function's `silver.committed` events.
    pub silver_events_queue: String,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub glue: aws_sdk_glue::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

static DEPLOYMENTS: AtomicUsize = AtomicUsize::new(0);

impl Deployment {
    /// Creates every resource the two functions use.
    pub async fn create() -> Self {
        let sdk = sdk().await;
        let name = format!(
            "mc{}-{}",
            std::process::id(),
            DEPLOYMENTS.fetch_add(1, Ordering::SeqCst)
        );
        let s3 = metriccare_aws::clients::s3_client(&sdk, true);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let sns = aws_sdk_sns::Client::new(&sdk);
        let glue = aws_sdk_glue::Client::new(&sdk);
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let events = aws_sdk_eventbridge::Client::new(&sdk);

        let bucket = |zone: &str| format!("{name}-{zone}");
        let (raw_bucket, lake_bucket, quarantine_bucket) =
            (bucket("raw"), bucket("lake"), bucket("quarantine"));
        for bucket in [&raw_bucket, &lake_bucket, &quarantine_bucket] {
            s3.create_bucket()
                .bucket(bucket)
                .send()
                .await
                .expect("create bucket");
        }

        let ledger_table = format!("{name}_ledger");
        dynamodb
            .create_table()
            .table_name(&ledger_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(KEY_ATTRIBUTE)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(KEY_ATTRIBUTE)
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("create ledger table");

        let queue = |suffix: &str| {
            let sqs = sqs.clone();
            let queue_name = format!("{name}-{suffix}");
            async move {
                let url = sqs
                    .create_queue()
                    .queue_name(queue_name)
                    .send()
                    .await
                    .expect("create queue")
                    .queue_url
                    .unwrap();
                let arn = sqs
                    .get_queue_attributes()
                    .queue_url(&url)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .send()
                    .await
                    .expect("queue arn")
                    .attributes
                    .unwrap()[&QueueAttributeName::QueueArn]
                    .clone();
                (url, arn)
            }
        };
        let topic_with_queue = |suffix: &'static str| {
            let sns = sns.clone();
            let topic_name = format!("{name}-{suffix}");
            let queue = queue(suffix);
            async move {
                let arn = sns
                    .create_topic()
                    .name(topic_name)
                    .send()
                    .await
                    .expect("create topic")
                    .topic_arn
                    .unwrap();
                let (queue_url, queue_arn) = queue.await;
                sns.subscribe()
                    .topic_arn(&arn)
                    .protocol("sqs")
                    .endpoint(queue_arn)
                    .send()
                    .await
                    .expect("subscribe queue");
                (arn, queue_url)
            }
        };
        let (notifications_topic_arn, notifications_queue) =
            topic_with_queue("notifications").await;
        let (alerts_topic_arn, alerts_queue) = topic_with_queue("alerts").await;

        let (raw_events_queue, raw_events_arn) = queue("raw-events").await;
        s3.put_bucket_notification_configuration()
            .bucket(&raw_bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .queue_arn(raw_events_arn)
                            .events(Event::from("s3:ObjectCreated:*"))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("route raw-bucket notifications to SQS");

        let event_bus = format!("{name}-bus");
        events
            .create_event_bus()
            .name(&event_bus)
            .send()
            .await
            .expect("create event bus");
        let (silver_events_queue, silver_events_arn) = queue("silver-events").await;
        let rule = format!("{name}-silver-committed");
        events
            .put_rule()
            .name(&rule)
            .event_bus_name(&event_bus)
            .event_pattern(
                json!({"source": [metriccare_aws::ingest_function::EVENT_SOURCE]}).to_string(),
            )
            .send()
            .await
            .expect("put rule");
        events
            .put_targets()
            .rule(&rule)
            .event_bus_name(&event_bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(silver_events_arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("put targets");

        let silver_database = format!("{name}_silver").replace('-', "_");
        let gold_database = format!("{name}_gold").replace('-', "_");
        let tables = SilverTable::ALL
            .iter()
            .map(|t| (silver_database.clone(), t.def()))
            .chain(
                GoldTable::ALL
                    .iter()
                    .map(|t| (gold_database.clone(), t.def())),
            );
        for database in [&silver_database, &gold_database] {
            glue.create_database()
                .database_input(DatabaseInput::builder().name(database).build().unwrap())
                .send()
                .await
                .expect("create Glue database");
        }
        for (database, def) in tables {
            let descriptor = StorageDescriptor::builder()
                .location(format!("s3://{lake_bucket}/{}", def.base))
                .input_format("org.apache.hudi.hadoop.HoodieParquetInputFormat")
                .output_format("org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat")
                .serde_info(
                    SerDeInfo::builder()
                        .serialization_library(
                            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                        )
                        .build(),
                )
                .build();
            glue.create_table()
                .database_name(&database)
                .table_input(
                    TableInput::builder()
                        .name(&def.name)
                        .storage_descriptor(descriptor)
                        .partition_keys(
                            Column::builder()
                                .name("tenant_id")
                                .r#type("string")
                                .build()
                                .unwrap(),
                        )
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .expect("create Glue table");
        }
        let glue_job_name = format!("{name}_scale_out");
        glue.create_job()
            .name(&glue_job_name)
            .role("arn:aws:iam::123456789012:role/glue")
            .command(
                JobCommand::builder()
                    .name("glueetl")
                    .script_location("s3://scripts/ingest.py")
                    .build(),
            )
            .send()
            .await
            .expect("create Glue job");

        let key_parameter = format!("/{name}/pseudonym-key");
        aws_sdk_ssm::Client::new(&sdk)
            .put_parameter()
            .name(&key_parameter)
            .value(hex::encode(TEST_KEY))
            .r#type(ParameterType::SecureString)
            .send()
            .await
            .expect("put key parameter");

        Self {
            sdk,
            name,
            raw_bucket,
            lake_bucket,
            quarantine_bucket,
            ledger_table,
            notifications_topic_arn,
            alerts_topic_arn,
            key_parameter,
            glue_job_name,
            silver_database,
            gold_database,
            event_bus,
            raw_events_queue,
            notifications_queue,
            alerts_queue,
            silver_events_queue,
            s3,
            sqs,
            glue,
            dynamodb,
        }
    }

    fn common(&self) -> Common {
        Common {
            lake_bucket: self.lake_bucket.clone(),
            force_path_style: true,
        }
    }

    pub fn ingest_config(&self) -> IngestConfig {
        IngestConfig {
            common: self.common(),
            raw_bucket: self.raw_bucket.clone(),
            quarantine_bucket: self.quarantine_bucket.clone(),
            ledger_table: self.ledger_table.clone(),
            alerts_topic_arn: self.alerts_topic_arn.clone(),
            pseudonym_key_parameter: self.key_parameter.clone(),
            glue_job_name: self.glue_job_name.clone(),
            max_object_bytes: metriccare_aws::config::DEFAULT_MAX_OBJECT_BYTES,
            silver_database: self.silver_database.clone(),
            gold_database: self.gold_database.clone(),
            event_bus: self.event_bus.clone(),
            settings: Settings {
                lease: DEFAULT_LEASE,
                ..Settings::default()
            },
        }
    }

    pub fn gold_config(&self) -> GoldConfig {
        GoldConfig {
            common: self.common(),
            notifications_topic_arn: self.notifications_topic_arn.clone(),
            retention: Retention::default(),
        }
    }

    /// The environment the Lambda binaries read, for running them as processes.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        use metriccare_aws::config as c;
        vec![
            (c::RAW_BUCKET, self.raw_bucket.clone()),
            (c::LAKE_BUCKET, self.lake_bucket.clone()),
            (c::QUARANTINE_BUCKET, self.quarantine_bucket.clone()),
            (c::LEDGER_TABLE, self.ledger_table.clone()),
            (
                c::NOTIFICATIONS_TOPIC_ARN,
                self.notifications_topic_arn.clone(),
            ),
            (c::ALERTS_TOPIC_ARN, self.alerts_topic_arn.clone()),
            (c::PSEUDONYM_KEY_PARAMETER, self.key_parameter.clone()),
            (c::GLUE_JOB_NAME, self.glue_job_name.clone()),
            (c::SILVER_DATABASE, self.silver_database.clone()),
            (c::GOLD_DATABASE, self.gold_database.clone()),
            (c::EVENT_BUS, self.event_bus.clone()),
            (c::S3_FORCE_PATH_STYLE, "true".to_owned()),
        ]
    }

    pub async fn ingest_function(&self, config: IngestConfig) -> IngestFunction {
        IngestFunction::with_sdk(&self.sdk, config)
            .await
            .expect("ingest function starts")
    }

    pub fn gold_function(&self) -> GoldFunction {
        GoldFunction::with_sdk(&self.sdk, self.gold_config()).expect("gold function starts")
    }

    /// The lake bucket as an object store.
    pub fn lake(&self) -> Arc<dyn ObjectStore> {
        bucket_store(&self.sdk, &self.lake_bucket, Duration::from_secs(60)).expect("lake store")
    }

    pub async fn upload(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.raw_bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .expect("upload raw object");
    }

    /// Uploads every file under `dir` with its relative path as the key; returns the keys.
    pub async fn upload_dir(&self, dir: &FsPath) -> Vec<String> {
        let mut keys = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(folder) = stack.pop() {
            for entry in std::fs::read_dir(&folder).expect("read dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let key = path
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    self.upload(&key, std::fs::read(&path).unwrap()).await;
                    keys.push(key);
                }
            }
        }
        keys.sort();
        keys
    }

    /// Receives messages from `queue` until `count` have arrived (or a minute has passed).
    pub async fn receive(&self, queue: &str, count: usize) -> Vec<Message> {
        self.receive_within(queue, count, Duration::from_secs(60))
            .await
    }

    /// Whatever arrives on `queue` within three seconds: for asserting that nothing does.
    pub async fn drain(&self, queue: &str) -> Vec<Message> {
        self.receive_within(queue, usize::MAX, Duration::from_secs(3))
            .await
    }

    async fn receive_within(&self, queue: &str, count: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut received = Vec::new();
        while received.len() < count && Instant::now() < deadline {
            let output = self
                .sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive messages");
            for message in output.messages.unwrap_or_default() {
                self.sqs
                    .delete_message()
                    .queue_url(queue)
                    .receipt_handle(message.receipt_handle.clone().unwrap())
                    .send()
                    .await
                    .expect("delete message");
                received.push(message);
            }
        }
        received
    }

    /// Every object of the lake bucket with its ETag: a fingerprint of the lake's state.
    pub async fn lake_objects(&self) -> HashMap<String, String> {
        let mut objects = HashMap::new();
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(&self.lake_bucket)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list lake");
            for object in page.contents() {
                objects.insert(
                    object.key().unwrap().to_owned(),
                    object.e_tag().unwrap_or_default().to_owned(),
                );
            }
            token = page.next_continuation_token;
            if token.is_none() {
                break;
            }
        }
        objects
    }

    /// The tags of a raw object.
    pub async fn raw_tags(&self, key: &str) -> HashMap<String, String> {
        self.s3
            .get_object_tagging()
            .bucket(&self.raw_bucket)
            .key(key)
            .send()
            .await
            .expect("get tags")
            .tag_set
            .into_iter()
            .map(|tag| (tag.key, tag.value))
            .collect()
    }
}

/// The SQS event Lambda would deliver for these messages.
pub fn sqs_event(messages: &[Message]) -> Value {
    json!({"Records": messages.iter().map(|m| json!({
        "messageId": m.message_id.clone().unwrap(),
        "receiptHandle": m.receipt_handle.clone().unwrap_or_default(),
        "body": m.body.clone().unwrap_or_default(),
        "attributes": {},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:raw-events",
        "awsRegion": REGION,
    })).collect::<Vec<_>>()})
}

/// The JSON an SQS subscription receives from SNS (the envelope) and the message inside it.
pub fn sns_delivery(message: &Message) -> (Value, Value) {
    let envelope: Value =
        serde_json::from_str(message.body.as_deref().unwrap()).expect("SNS envelope");
    let inner = serde_json::from_str(envelope["Message"].as_str().unwrap())
        .unwrap_or_else(|_| envelope["Message"].clone());
    (envelope, inner)
}
