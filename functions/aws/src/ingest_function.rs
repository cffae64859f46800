//! The ingest function: S3 ObjectCreated events (through SQS, or directly) in; each object claimed
//! in the DynamoDB ledger, streamed from the raw bucket, written to the silver tables of the lake
//! bucket, tagged with its outcome; partitions of a new tenant registered in Glue; objects too big
//! for a Lambda handed to the Glue job; one `silver.committed` event to EventBridge after new commits.
//!
//! An SQS batch answers per message (`batchItemFailures`): a message fails only when one of its
//! objects failed or is held by another worker, so it comes back after the visibility timeout
//! (and lands in the DLQ after the queue's maxReceiveCount).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_s3::types::{Tag, Tagging};
use metriccare_core::deid::{Pseudonymizer, parse_key, redact_key};
use metriccare_core::gold::GoldTable;
use metriccare_core::ingest::{FileReport, FileResult, ScaleOutRoute, Services, Settings};
use metriccare_core::ports::{Message, ObjectRef, Topic};
use metriccare_core::silver::SilverTable;
use metriccare_core::tenant::TenantId;
use object_store::ObjectStore;
use object_store::path::Path;
use serde::Serialize;
use serde_json::{Value, json};

use crate::clients::{bucket_store, s3_client, sdk_config};
use crate::config::{IngestConfig, PSEUDONYM_KEY_PARAMETER};
use crate::error::{AwsError, Result};
use crate::events::{Notification, S3Record, Trigger, parse_trigger};
use crate::glue::{CatalogTables, GlueCatalog, GlueJob};
use crate::ledger::DynamoDbLedger;
use crate::sns::SnsNotifier;

/// The S3 tag that tells lifecycle rules how a raw object ended.
pub const STATUS_TAG: &str = "metriccare-status";
/// The EventBridge source and detail type the gold function's rule matches.
pub const EVENT_SOURCE: &str = "metriccare.ingest";
pub const SILVER_COMMITTED: &str = "silver.committed";

/// S3 allows ten tags per object; a full set is left alone rather than losing an uploader's tag.
const MAX_TAGS: usize = 10;
/// Requests that stream a raw object may take as long as the Lambda itself.
const RAW_REQUEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const LAKE_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub struct IngestFunction {
    services: Services,
    raw_bucket: String,
    raw: Arc<dyn ObjectStore>,
    s3: aws_sdk_s3::Client,
    catalog: GlueCatalog,
    events: aws_sdk_eventbridge::Client,
    event_bus: String,
}

/// One object's outcome in the function's answer and log: never the key (uploaders name files
/// after patients), only the ledger id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSummary {
    pub ledger_id: String,
    pub tenant_id: String,
    pub result: FileResult,
    pub bytes: u64,
    pub resources: u64,
    pub rejected: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&FileReport> for FileSummary {
    fn from(report: &FileReport) -> Self {
        Self {
            ledger_id: report.ledger_id.clone(),
            tenant_id: report.tenant_id.clone(),
            result: report.result,
            bytes: report.bytes,
            resources: report.outcome.counts.values().sum(),
            rejected: report.outcome.rejected,
            error: report.outcome.error.clone(),
        }
    }
}

/// What one notification (one SQS message, or a plain S3 event) came to.
#[derive(Debug, Default)]
struct Handled {
    files: Vec<FileSummary>,
    /// Tenants with new silver commits.
    committed: BTreeSet<String>,
    /// Why the notification must be delivered again (empty: done).
    retry: Vec<String>,
}

impl IngestFunction {
    /// Builds every client once, reads the pseudonymisation key from SSM, and checks it against
    /// the key fingerprint the lake records.
    pub async fn from_config(config: IngestConfig) -> Result<Self> {
        let sdk = sdk_config().await;
        Self::with_sdk(&sdk, config).await
    }

    pub async fn with_sdk(sdk: &SdkConfig, config: IngestConfig) -> Result<Self> {
        let key = pseudonym_key(sdk, &config.pseudonym_key_parameter).await?;
        let glue = aws_sdk_glue::Client::new(sdk);
        let notifier = SnsNotifier::new(aws_sdk_sns::Client::new(sdk))
            .with_topic(Topic::Alerts, &config.alerts_topic_arn);
        let services = Services::new(
            bucket_store(sdk, &config.common.lake_bucket, LAKE_REQUEST_TIMEOUT)?,
            bucket_store(sdk, &config.quarantine_bucket, LAKE_REQUEST_TIMEOUT)?,
            Arc::new(DynamoDbLedger::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &config.ledger_table,
            )),
            Arc::new(notifier),
            Pseudonymizer::new(&key)?,
            Settings {
                lease: config.lease,
                ..Settings::default()
            },
        )
        .with_scale_out(ScaleOutRoute {
            above_bytes: config.max_object_bytes,
            job: Arc::new(GlueJob::new(glue.clone(), &config.glue_job_name)),
        });
        let catalog = GlueCatalog::new(
            glue,
            vec![
                CatalogTables {
                    database: config.silver_database.clone(),
                    tables: SilverTable::ALL
                        .iter()
                        .map(|t| t.name().to_owned())
                        .collect(),
                },
                CatalogTables {
                    database: config.gold_database.clone(),
                    tables: GoldTable::ALL.iter().map(|t| t.name().to_owned()).collect(),
                },
            ],
        );
        Ok(Self {
            services,
            raw: bucket_store(sdk, &config.raw_bucket, RAW_REQUEST_TIMEOUT)?,
            raw_bucket: config.raw_bucket,
            s3: s3_client(sdk, config.common.force_path_style),
            catalog,
            events: aws_sdk_eventbridge::Client::new(sdk),
            event_bus: config.event_bus,
        })
    }

    /// The core services this function runs (the ledger, the lake, the notifier).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Handles one invocation. An SQS batch always answers with its `batchItemFailures`; a plain S3
    /// event fails as a whole (and is retried by Lambda) when any of its objects must be retried.
    pub async fn handle(&self, event: Value) -> Result<Value> {
        let trigger = parse_trigger(&event).map_err(|e| AwsError::Event(e.to_string()))?;
        match trigger {
            Trigger::Sqs(messages) => {
                let mut failures = Vec::new();
                let mut files = Vec::new();
                let mut committed = BTreeSet::new();
                for message in messages {
                    let handled = match message.notification {
                        Ok(notification) => self.handle_notification(notification).await,
                        Err(reason) => {
                            // Not an S3 notification: retrying cannot help; the DLQ keeps it.
                            tracing::error!(message_id = %message.message_id, reason = %reason, "unreadable SQS message");
                            Handled {
                                retry: vec![reason],
                                ..Handled::default()
                            }
                        }
                    };
                    if !handled.retry.is_empty() {
                        failures.push(json!({"itemIdentifier": message.message_id}));
                    }
                    files.extend(handled.files);
                    committed.extend(handled.committed);
                }
                self.announce(&committed).await;
                Ok(json!({"batchItemFailures": failures, "files": files}))
            }
            Trigger::S3(notification) => {
                let handled = self.handle_notification(notification).await;
                self.announce(&handled.committed).await;
                if handled.retry.is_empty() {
                    Ok(json!({"files": handled.files}))
                } else {
                    Err(AwsError::Retry(handled.retry.join("; ")))
                }
            }
        }
    }

    async fn handle_notification(&self, notification: Notification) -> Handled {
        let mut handled = Handled::default();
        let records = match notification {
            Notification::Test => {
                tracing::info!("s3:TestEvent ignored");
                return handled;
            }
            Notification::Records(records) => records,
        };
        for record in records {
            if !record.is_object_created() {
                tracing::info!(event_name = %record.event_name, "not an ObjectCreated event: ignored");
                continue;
            }
            match self.handle_object(&record).await {
                Ok(Some(report)) => {
                    let summary = FileSummary::from(&report);
                    match report.result {
                        FileResult::Completed
                        | FileResult::AlreadyDone
                        | FileResult::Quarantined
                        | FileResult::HandedOff => {}
                        FileResult::Failed => handled.retry.push(format!(
                            "{}: {}",
                            report.ledger_id,
                            report.outcome.error.as_deref().unwrap_or("failed")
                        )),
                        FileResult::Busy => handled
                            .retry
                            .push(format!("{}: held by another worker", report.ledger_id)),
                    }
                    if report.result == FileResult::Completed
                        && !report.outcome.silver_instants.is_empty()
                    {
                        handled.committed.insert(report.tenant_id.clone());
                    }
                    handled.files.push(summary);
                }
                Ok(None) => {}
                Err(e) => {
                    // Storage errors quote the key, which may name a patient.
                    let error = redact_key(&e.to_string(), &record.key, "<raw object>");
                    tracing::error!(error = %error, "object could not be processed; it will be retried");
                    handled.retry.push(error);
                }
            }
        }
        handled
    }

    /// Processes one created object. `Ok(None)`: the object can never be processed (another
    /// bucket, a key outside any tenant folder) and retrying would not help; an alert says so.
    async fn handle_object(&self, record: &S3Record) -> Result<Option<FileReport>> {
        let object = ObjectRef {
            bucket: record.bucket.clone(),
            key: record.key.clone(),
            etag: record.etag.clone().unwrap_or_default(),
            size: record.size.unwrap_or_default(),
        };
        if record.bucket != self.raw_bucket {
            self.ignore(
                &object,
                &format!("it is in bucket {}, not the raw bucket", record.bucket),
            )
            .await;
            return Ok(None);
        }
        // Parsing drops a leading or trailing '/': such a key would then name another object.
        let key = match Path::parse(&record.key) {
            Ok(key) if key.as_ref() == record.key => key,
            _ => {
                self.ignore(
                    &object,
                    "its key has an empty, '.' or '..' segment, a leading or trailing '/' or a control character",
                )
                .await;
                return Ok(None);
            }
        };
        let tenant = match TenantId::of_raw_key(&key) {
            Ok(tenant) => tenant,
            Err(_) => {
                // Not the error's text: it quotes the key or the folder name.
                let why = "it is not inside a folder named after a valid tenant id";
                self.ignore(&object, why).await;
                return Ok(None);
            }
        };
        let report = match self
            .services
            .ingest_object(&self.raw, &self.raw_bucket, &key, &tenant)
            .await
        {
            Ok(report) => report,
            Err(metriccare_core::CoreError::Storage(object_store::Error::NotFound { .. })) => {
                // Deleted (or overwritten under versioning) before we got to it: nothing to load.
                tracing::warn!(tenant_id = %tenant, "object no longer exists: ignored");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if matches!(
            report.result,
            FileResult::Completed | FileResult::AlreadyDone
        ) {
            // Also for redeliveries: a registration that failed before is retried with the file.
            self.catalog.register_tenant(&tenant).await?;
        }
        let status = match report.result {
            FileResult::Completed => Some("completed"),
            FileResult::Quarantined => Some("quarantined"),
            FileResult::HandedOff => Some("handed-off"),
            _ => None,
        };
        if let Some(status) = status {
            self.tag(record, status).await;
        }
        Ok(Some(report))
    }

    /// Tags the raw object with its outcome, keeping the uploader's tags. The ledger is the record
    /// of truth; a tag that cannot be written is logged, never a reason to process again.
    async fn tag(&self, record: &S3Record, status: &str) {
        let result = async {
            let current = self
                .s3
                .get_object_tagging()
                .bucket(&record.bucket)
                .key(&record.key)
                .set_version_id(record.version_id.clone())
                .send()
                .await
                .map_err(|e| AwsError::sdk("S3", "GetObjectTagging", e))?;
            let mut tags: Vec<Tag> = current
                .tag_set
                .into_iter()
                .filter(|tag| tag.key != STATUS_TAG)
                .collect();
            if tags.len() >= MAX_TAGS {
                tracing::warn!("raw object already has {MAX_TAGS} tags: status tag not added");
                return Ok(());
            }
            let ours = Tag::builder().key(STATUS_TAG).value(status).build();
            tags.push(ours.map_err(|e| AwsError::sdk("S3", "PutObjectTagging", e))?);
            let tagging = Tagging::builder()
                .set_tag_set(Some(tags))
                .build()
                .map_err(|e| AwsError::sdk("S3", "PutObjectTagging", e))?;
            self.s3
                .put_object_tagging()
                .bucket(&record.bucket)
                .key(&record.key)
                .set_version_id(record.version_id.clone())
                .tagging(tagging)
                .send()
                .await
                .map_err(|e| AwsError::sdk("S3", "PutObjectTagging", e))?;
            Ok::<_, AwsError>(())
        }
        .await;
        if let Err(e) = result {
            let error = redact_key(&e.to_string(), &record.key, "<raw object>");
            tracing::warn!(error = %error, "raw object could not be tagged with its status");
        }
    }

    /// An object that can never be processed: logged and alerted by ledger id, never by key.
    async fn ignore(&self, object: &ObjectRef, why: &str) {
        let ledger_id = object.ledger_id();
        tracing::error!(ledger_id = %ledger_id, reason = %why, "object ignored");
        let message = Message {
            topic: Topic::Alerts,
            event: "file.ignored".into(),
            tenant_id: None,
            subject: "MetricCare: a raw object was ignored".into(),
            text: format!(
                "An object (ledger id {ledger_id}) was not processed because {why}. Raw files must be \
                 uploaded to the raw bucket as <tenant>/<any path>/<file>, where <tenant> matches \
                 ^[a-z0-9][a-z0-9-]{{0,62}}$."
            ),
            data: json!({"ledger_id": ledger_id, "reason": why}),
        };
        if let Err(e) = self.services.notifier.publish(&message).await {
            tracing::error!(error = %e, "alert could not be published");
        }
    }

    /// Tells the gold function that silver changed. The schedule refreshes gold anyway, so a failed
    /// announcement delays gold, it does not lose anything: logged, not retried.
    async fn announce(&self, tenants: &BTreeSet<String>) {
        if tenants.is_empty() {
            return;
        }
        let detail = json!({"tenant_ids": tenants}).to_string();
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.event_bus)
            .source(EVENT_SOURCE)
            .detail_type(SILVER_COMMITTED)
            .detail(detail)
            .build();
        match self.events.put_events().entries(entry).send().await {
            Ok(output) if output.failed_entry_count() == 0 => {
                tracing::info!(tenants = tenants.len(), "silver.committed announced");
            }
            Ok(output) => tracing::warn!(
                failed = output.failed_entry_count(),
                "silver.committed was not accepted by EventBridge; gold waits for its schedule"
            ),
            Err(e) => tracing::warn!(
                error = %AwsError::sdk("EventBridge", "PutEvents", e),
                "silver.committed could not be sent; gold waits for its schedule"
            ),
        }
    }
}

/// The pseudonymisation key from SSM Parameter Store (a SecureString, decrypted).
async fn pseudonym_key(sdk: &SdkConfig, parameter: &str) -> Result<Vec<u8>> {
    let output = aws_sdk_ssm::Client::new(sdk)
        .get_parameter()
        .name(parameter)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| AwsError::sdk("SSM", "GetParameter", e))?;
    let value = output.parameter.and_then(|p| p.value).ok_or_else(|| {
        AwsError::config(PSEUDONYM_KEY_PARAMETER, "names a parameter with no value")
    })?;
    Ok(parse_key(&value, PSEUDONYM_KEY_PARAMETER)?)
}
