//! The ingest function: S3 ObjectCreated events (through SQS, or directly) in; each object claimed
//! in the DynamoDB ledger, streamed from the raw bucket, written to the silver tables of the lake
//! bucket, tagged with its outcome; partitions of a new tenant registered in Glue; objects too big
//! for a Lambda handed to the Glue job; one `silver.committed` event to EventBridge after new commits.
//! What it answers Lambda (per SQS message, or for a plain S3 event) is [`crate::batch_answer`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_s3::types::{Tag, Tagging};
use metriccare_core::deid::{Pseudonymizer, parse_key, redact_key};
use metriccare_core::erase;
use metriccare_core::gold::GoldTable;
use metriccare_core::ingest::{FileReport, FileResult, ScaleOutRoute, Services};
use metriccare_core::ports::{Message, ObjectRef, Topic};
use metriccare_core::silver::SilverTable;
use metriccare_core::tenant::TenantId;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use serde_json::{Value, json};

use crate::batch_answer::{self, Delivery, Handled};
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

/// A created object of a notification, in a tenant folder of the raw bucket.
struct Upload {
    /// Which notification of the invocation it came in.
    notification: usize,
    record: S3Record,
    key: Path,
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
            config.settings.clone(),
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

    /// The raw bucket as a store, and its name (the scale-out job reads and claims from it).
    pub fn raw(&self) -> (&Arc<dyn ObjectStore>, &str) {
        (&self.raw, &self.raw_bucket)
    }

    /// Registers the tenant's partitions in the catalog, as after a Lambda's commit.
    pub async fn register_tenant(&self, tenant: &TenantId) -> Result<()> {
        self.catalog.register_tenant(tenant).await
    }

    /// Handles one invocation. An SQS batch always answers with its `batchItemFailures`; a plain S3
    /// event fails as a whole (and is retried by Lambda) when any of its objects must be retried.
    /// The created objects of the whole invocation are grouped by tenant: each tenant's files are
    /// one group commit (within the group limits), each file keeping its own ledger item.
    pub async fn handle(&self, event: Value) -> Result<Value> {
        let trigger = parse_trigger(&event).map_err(|e| AwsError::Event(e.to_string()))?;
        let (delivery, notifications) = match trigger {
            Trigger::Sqs(messages) => {
                let (ids, notifications): (Vec<String>, Vec<_>) = messages
                    .into_iter()
                    .map(|m| (m.message_id, m.notification))
                    .unzip();
                (Delivery::Sqs(ids), notifications)
            }
            Trigger::S3(notification) => (Delivery::S3, vec![Ok(notification)]),
        };
        let mut handled: Vec<Handled> = notifications.iter().map(|_| Handled::default()).collect();
        let mut by_tenant: BTreeMap<TenantId, Vec<(Upload, u64)>> = BTreeMap::new();
        let mut erasures: Vec<(TenantId, Upload)> = Vec::new();
        for (index, notification) in notifications.into_iter().enumerate() {
            let records = match notification {
                Ok(Notification::Test) => {
                    tracing::info!("s3:TestEvent ignored");
                    continue;
                }
                Ok(Notification::Records(records)) => records,
                Err(reason) => {
                    // Not an S3 notification: retrying cannot help; the DLQ keeps it.
                    tracing::error!(message_id = ?delivery.message_id(index), reason = %reason, "unreadable SQS message");
                    handled[index].retry.push(reason);
                    continue;
                }
            };
            for record in records {
                if !record.is_object_created() {
                    tracing::info!(event_name = %record.event_name, "not an ObjectCreated event: ignored");
                    continue;
                }
                if let Some((tenant, key)) = self.check(&record).await {
                    let size = record.size.unwrap_or_default();
                    let is_erasure = erase::is_request(&key);
                    let upload = Upload {
                        notification: index,
                        record,
                        key,
                    };
                    if is_erasure {
                        erasures.push((tenant, upload));
                    } else {
                        by_tenant.entry(tenant).or_default().push((upload, size));
                    }
                }
            }
        }
        // Erasures first: the exports of the same batch then load without the patient.
        for (tenant, request) in erasures {
            let answer = &mut handled[request.notification];
            match self.erase_requested(&tenant, &request).await {
                Ok(()) => {
                    answer.committed.insert(tenant.to_string());
                }
                Err(e) => {
                    let error =
                        redact_key(&e.to_string(), &request.record.key, "<erasure request>");
                    tracing::error!(error = %error, permanent = e.is_permanent(), tenant_id = %tenant, "erasure failed; it will be retried");
                    answer.retry.push(error);
                }
            }
        }
        for (tenant, uploads) in by_tenant {
            for group in self.services.settings.group.split(uploads) {
                self.ingest_group(&tenant, group, &mut handled).await;
            }
        }
        let committed: BTreeSet<String> = handled
            .iter()
            .flat_map(|h| h.committed.iter().cloned())
            .collect();
        self.announce(&committed).await;
        let answer = batch_answer::answer(delivery, handled)?;
        Ok(serde_json::to_value(answer).map_err(metriccare_core::CoreError::from)?)
    }

    /// Checks a created object's place: `Some` (its tenant and key) when it is a raw object of a
    /// tenant folder; `None` when it can never be processed (another bucket, a key outside any
    /// tenant folder), and retrying would not help; an alert says so.
    async fn check(&self, record: &S3Record) -> Option<(TenantId, Path)> {
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
            return None;
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
                return None;
            }
        };
        match TenantId::of_raw_key(&key) {
            Ok(tenant) => Some((tenant, key)),
            Err(_) => {
                // Not the error's text: it quotes the key or the folder name.
                let why = "it is not inside a folder named after a valid tenant id";
                self.ignore(&object, why).await;
                None
            }
        }
    }

    /// Carries out an erasure request (`<tenant>/_erasure/<name>.json`, `{"patient_id": ...}`):
    /// silver, slices and rejects lose the patient; gold follows on the `silver.committed` event.
    /// The receipt (no PHI) is kept in the lake; the request object is tagged `completed`. Safe to
    /// repeat: a redelivered request erases nothing more.
    async fn erase_requested(&self, tenant: &TenantId, request: &Upload) -> Result<()> {
        let body = self.raw.get(&request.key).await?.bytes().await?;
        let patient_id = erase::parse_request(&body)?;
        let receipt = erase::erase(&self.services, tenant, &patient_id, None).await?;
        tracing::info!(tenant_id = %tenant, receipt = %receipt.receipt, "erasure request carried out");
        self.tag(&request.record, "completed").await;
        Ok(())
    }

    /// Ingests one tenant's group and answers for each of its objects in its notification.
    async fn ingest_group(&self, tenant: &TenantId, group: Vec<Upload>, handled: &mut [Handled]) {
        let keys: Vec<Path> = group.iter().map(|u| u.key.clone()).collect();
        match self
            .services
            .ingest_group(&self.raw, &self.raw_bucket, &keys, tenant)
            .await
        {
            Ok(reports) => {
                for (upload, report) in group.iter().zip(reports) {
                    let answer = &mut handled[upload.notification];
                    if let Err(e) = self.after_ingest(&upload.record, tenant, &report).await {
                        answer.retry.push(e.to_string());
                    }
                    self.answer(report, answer);
                }
            }
            Err(e) => {
                // Storage errors quote keys, which may name patients.
                let error = group.iter().fold(e.to_string(), |text, upload| {
                    redact_key(&text, &upload.record.key, "<raw object>")
                });
                tracing::error!(error = %error, permanent = e.is_permanent(), tenant_id = %tenant, files = group.len(), "a group could not be processed; its objects will be retried");
                for upload in &group {
                    handled[upload.notification].retry.push(error.clone());
                }
            }
        }
    }

    /// Registers the tenant's partitions and tags the raw object with its outcome.
    async fn after_ingest(
        &self,
        record: &S3Record,
        tenant: &TenantId,
        report: &FileReport,
    ) -> Result<()> {
        if matches!(
            report.result,
            FileResult::Completed | FileResult::AlreadyDone
        ) {
            // Also for redeliveries: a registration that failed before is retried with the file.
            self.catalog.register_tenant(tenant).await?;
        }
        let status = match report.result {
            FileResult::Completed => Some("completed"),
            FileResult::Quarantined => Some("quarantined"),
            FileResult::Skipped => Some("skipped"),
            FileResult::HandedOff => Some("handed-off"),
            _ => None,
        };
        if let Some(status) = status {
            self.tag(record, status).await;
        }
        Ok(())
    }

    /// Records one object's outcome in its notification's answer.
    fn answer(&self, report: FileReport, handled: &mut Handled) {
        match report.result {
            FileResult::Completed
            | FileResult::AlreadyDone
            | FileResult::Quarantined
            | FileResult::Skipped
            | FileResult::HandedOff => {}
            FileResult::Gone => {
                // Deleted (or overwritten under versioning) before we got to it: nothing to load.
                tracing::warn!(tenant_id = %report.tenant_id, "object no longer exists: ignored");
                return;
            }
            FileResult::Failed => handled.retry.push(format!(
                "{}: {}",
                report.ledger_id,
                report.outcome.error.as_deref().unwrap_or("failed")
            )),
            FileResult::Busy => handled
                .retry
                .push(format!("{}: held by another worker", report.ledger_id)),
        }
        if report.result == FileResult::Completed && !report.outcome.silver_instants.is_empty() {
            handled.committed.insert(report.tenant_id.clone());
        }
        handled.files.push(FileSummary::from(&report));
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
