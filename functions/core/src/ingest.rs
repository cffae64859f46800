//! Ingest of one raw object: claim it in the ledger, stream and parse it, de-identify, upsert the
//! silver tables, record the outcome. A bad file is quarantined, a bad resource is rejected alone,
//! a redelivered object does nothing, and a failure leaves the object claimable again.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    GetResultPayload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::OnceCell;

use crate::deid::Pseudonymizer;
use crate::error::{CoreError, Result};
use crate::fhir::{self, FileError, Item, Parsed, Position, ReadLimits, Record, RefTarget};
use crate::hudi::{Delete, HudiTable, PartitionWrite};
use crate::ports::{
    Claim, Ledger, LedgerStatus, Message, Notifier, ObjectRef, Outcome, ResourceCounts, Topic,
};
use crate::silver::{BatchBuilder, SilverTable, Value};
use crate::tenant::TenantId;
use crate::time::{hudi_instant, now_micros};

/// Tunables, from environment variables in the binaries.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a PROCESSING claim holds before another worker may take the object over.
    pub lease: Duration,
    pub limits: ReadLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(900),
            limits: ReadLimits::default(),
        }
    }
}

/// Everything the pipeline needs, built once per process (a Lambda's `main`, the CLI).
pub struct Services {
    /// The lake: `silver/`, `gold/`, `_metriccare/`.
    pub lake: Arc<dyn ObjectStore>,
    /// Quarantined files (`files/`) and rejected resources (`rejects/`). Holds PHI like raw.
    pub quarantine: Arc<dyn ObjectStore>,
    pub ledger: Arc<dyn Ledger>,
    pub notifier: Arc<dyn Notifier>,
    pub pseudonymizer: Pseudonymizer,
    pub settings: Settings,
    key_checked: OnceCell<()>,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReport {
    pub ledger_id: String,
    pub key: String,
    pub tenant_id: String,
    pub result: FileResult,
    pub outcome: Outcome,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileResult {
    Completed,
    Quarantined,
    Failed,
    /// Already COMPLETED or QUARANTINED: redelivery, nothing done.
    AlreadyDone,
    /// Another worker holds the claim.
    Busy,
}

/// Where the lake records the pseudonymisation key's fingerprint.
pub const KEY_FINGERPRINT_PATH: &str = "_metriccare/pseudonym-key.json";

impl Services {
    pub fn new(
        lake: Arc<dyn ObjectStore>,
        quarantine: Arc<dyn ObjectStore>,
        ledger: Arc<dyn Ledger>,
        notifier: Arc<dyn Notifier>,
        pseudonymizer: Pseudonymizer,
        settings: Settings,
    ) -> Self {
        Self {
            lake,
            quarantine,
            ledger,
            notifier,
            pseudonymizer,
            settings,
            key_checked: OnceCell::new(),
        }
    }

    /// Records the key fingerprint on first write; refuses a lake written with another key.
    pub async fn check_key(&self) -> Result<()> {
        self.key_checked
            .get_or_try_init(|| async {
                let path = Path::from(KEY_FINGERPRINT_PATH);
                let ours = self.pseudonymizer.fingerprint();
                let record = json!({"algorithm": "HMAC-SHA256", "fingerprint": ours}).to_string();
                let create = PutOptions::from(PutMode::Create);
                match self.lake.put_opts(&path, record.into(), create).await {
                    Ok(_) => return Ok(()),
                    Err(object_store::Error::AlreadyExists { .. }) => {}
                    Err(e) => return Err(CoreError::from(e)),
                }
                let stored: serde_json::Value =
                    serde_json::from_slice(&self.lake.get(&path).await?.bytes().await?)?;
                let expected = stored["fingerprint"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if expected == ours {
                    Ok(())
                } else {
                    Err(CoreError::KeyMismatch {
                        lake: path.to_string(),
                        expected,
                        actual: ours,
                    })
                }
            })
            .await
            .map(|_| ())
    }

    pub async fn silver_table(&self, table: SilverTable) -> Result<HudiTable> {
        HudiTable::open(self.lake.clone(), table.def()).await
    }

    /// Processes one object of `source` (a raw bucket, or a local folder) for `tenant`.
    /// `bucket` names the source in the ledger key. Never panics on bad input; errors that are not
    /// about the file (ledger or lake unreachable, key mismatch) are returned.
    pub async fn ingest_object(
        &self,
        source: &Arc<dyn ObjectStore>,
        bucket: &str,
        key: &Path,
        tenant: &TenantId,
    ) -> Result<FileReport> {
        self.check_key().await?;
        let meta = source.head(key).await?;
        let object = ObjectRef {
            bucket: bucket.to_owned(),
            key: key.to_string(),
            etag: meta
                .e_tag
                .clone()
                .or(meta.version.clone())
                .unwrap_or_else(|| {
                    format!("{}-{}", meta.size, meta.last_modified.timestamp_micros())
                }),
            size: meta.size,
        };
        let ledger_id = object.ledger_id();
        let report = |result, outcome| FileReport {
            ledger_id: ledger_id.clone(),
            key: object.key.clone(),
            tenant_id: tenant.to_string(),
            result,
            outcome,
            bytes: object.size,
        };
        let now = now_micros();
        match self
            .ledger
            .claim(&object, tenant.as_str(), now, self.settings.lease)
            .await?
        {
            Claim::Claimed { .. } => {}
            Claim::Done(entry) => {
                let outcome = Outcome {
                    counts: entry.counts,
                    deleted: entry.deleted,
                    rejected: entry.rejected,
                    silver_instants: entry.silver_instants,
                    error: entry.error,
                };
                return Ok(report(FileResult::AlreadyDone, outcome));
            }
            Claim::Busy(_) => return Ok(report(FileResult::Busy, Outcome::default())),
        }

        let parsed = parse_object(source.clone(), key.clone(), self.settings.limits.clone()).await;
        let (result, outcome) = match parsed {
            Ok(parse) => match self.load(parse, tenant, &ledger_id, now).await {
                Ok(outcome) => (FileResult::Completed, outcome),
                Err(e) => (
                    FileResult::Failed,
                    Outcome {
                        error: Some(e.to_string()),
                        ..Outcome::default()
                    },
                ),
            },
            Err(FileError::Invalid(reason)) => {
                match self
                    .quarantine(source, &object, tenant, &ledger_id, &reason)
                    .await
                {
                    Ok(()) => (
                        FileResult::Quarantined,
                        Outcome {
                            error: Some(reason),
                            ..Outcome::default()
                        },
                    ),
                    Err(e) => (
                        FileResult::Failed,
                        Outcome {
                            error: Some(format!("quarantine failed: {e}")),
                            ..Outcome::default()
                        },
                    ),
                }
            }
            Err(FileError::Unreadable(reason)) => (
                FileResult::Failed,
                Outcome {
                    error: Some(reason),
                    ..Outcome::default()
                },
            ),
        };
        let status = match result {
            FileResult::Completed => LedgerStatus::Completed,
            FileResult::Quarantined => LedgerStatus::Quarantined,
            _ => LedgerStatus::Failed,
        };
        self.ledger
            .finish(&ledger_id, status, &outcome, now_micros())
            .await?;
        tracing::info!(
            ledger_id = %ledger_id,
            tenant_id = %tenant,
            status = %status,
            bytes = object.size,
            rejected = outcome.rejected,
            deleted = outcome.deleted,
            resources = outcome.counts.values().sum::<u64>(),
            "file processed"
        );
        if result != FileResult::Completed {
            self.alert(&report(result, outcome.clone())).await;
        }
        Ok(report(result, outcome))
    }

    /// Quarantined and failed files reach the alerts topic; a notifier failure is logged, never
    /// allowed to change the file's outcome.
    async fn alert(&self, report: &FileReport) {
        let event = match report.result {
            FileResult::Quarantined => "file.quarantined",
            _ => "file.failed",
        };
        let message = Message {
            topic: Topic::Alerts,
            event: event.to_owned(),
            tenant_id: Some(report.tenant_id.clone()),
            subject: format!(
                "MetricCare: a file of tenant {} was {}",
                report.tenant_id,
                match report.result {
                    FileResult::Quarantined => "quarantined",
                    _ => "not processed",
                }
            ),
            text: format!(
                "Ledger id {} ({} bytes): {}",
                report.ledger_id,
                report.bytes,
                report.outcome.error.as_deref().unwrap_or("unknown error")
            ),
            data: json!({"ledger_id": report.ledger_id, "tenant_id": report.tenant_id, "error": report.outcome.error}),
        };
        if let Err(e) = self.notifier.publish(&message).await {
            tracing::error!(error = %e, ledger_id = %report.ledger_id, "alert could not be published");
        }
    }

    /// Pseudonymises the parsed file and upserts every silver table it touches.
    async fn load(
        &self,
        parse: FileParse,
        tenant: &TenantId,
        ledger_id: &str,
        now: i64,
    ) -> Result<Outcome> {
        let FileParse {
            records,
            deletes,
            mut rejects,
            counts,
            uuids,
            identifiers,
        } = parse;
        let resolver = Resolver {
            tenant,
            pseudonymizer: &self.pseudonymizer,
            uuids: &uuids,
            identifiers: &identifiers,
        };
        let mut builders: HashMap<SilverTable, BatchBuilder> = HashMap::new();
        for (record, position) in records {
            let table = SilverTable::from_resource_type(record.resource_type())
                .unwrap_or(SilverTable::Patient);
            match silver_row(&resolver, &record, ledger_id, now) {
                Ok(values) => builders
                    .entry(table)
                    .or_insert_with(|| BatchBuilder::new(table.schema()))
                    .push(values),
                Err(reason) => rejects.push(Reject {
                    position,
                    reason,
                    resource: None,
                }),
            }
        }
        let mut deletes_by_table: HashMap<SilverTable, Vec<Delete>> = HashMap::new();
        for (table, id) in &deletes {
            let key = self
                .pseudonymizer
                .pseudonym(tenant, table.resource_type(), id);
            deletes_by_table
                .entry(*table)
                .or_default()
                .push(Delete { key, ordering: now });
        }
        if !rejects.is_empty() {
            self.write_rejects(tenant, ledger_id, &rejects).await?;
        }
        let mut silver_instants = Vec::new();
        // Referenced tables first, so a reader never sees a condition before its patient.
        for table in [
            SilverTable::Organization,
            SilverTable::Patient,
            SilverTable::Encounter,
            SilverTable::Condition,
        ] {
            let upserts = match builders.get_mut(&table) {
                Some(builder) => vec![builder.finish()?],
                None => Vec::new(),
            };
            let table_deletes = deletes_by_table.remove(&table).unwrap_or_default();
            if upserts.is_empty() && table_deletes.is_empty() {
                continue;
            }
            let write = PartitionWrite {
                partition_value: tenant.to_string(),
                upserts,
                deletes: table_deletes,
            };
            let outcome = self.silver_table(table).await?.commit(&[write]).await?;
            if let Some(instant) = outcome.instant {
                silver_instants.push(format!("{}@{}", table.name(), instant));
            }
        }
        Ok(Outcome {
            counts,
            deleted: deletes.len() as u64,
            rejected: rejects.len() as u64,
            silver_instants,
            error: None,
        })
    }

    async fn write_rejects(
        &self,
        tenant: &TenantId,
        ledger_id: &str,
        rejects: &[Reject],
    ) -> Result<()> {
        let mut text = String::new();
        for reject in rejects {
            let line = json!({
                "source_file_id": ledger_id,
                "position": reject.position.to_string(),
                "reason": reject.reason,
                "resource": reject.resource.as_deref().and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok()),
            });
            text.push_str(&line.to_string());
            text.push('\n');
        }
        let path = Path::from("rejects")
            .join(tenant.as_str())
            .join(format!("{ledger_id}.ndjson"));
        self.quarantine.put(&path, text.into()).await?;
        Ok(())
    }

    /// Copies the file to `files/<tenant>/<ledger id>/` with a `reason.json` beside it.
    async fn quarantine(
        &self,
        source: &Arc<dyn ObjectStore>,
        object: &ObjectRef,
        tenant: &TenantId,
        ledger_id: &str,
        reason: &str,
    ) -> Result<()> {
        let dir = Path::from("files").join(tenant.as_str()).join(ledger_id);
        let name = object
            .key
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("object");
        let upload = self
            .quarantine
            .put_multipart(&dir.clone().join(name))
            .await?;
        let mut writer = WriteMultipart::new(upload);
        let mut stream = source
            .get(&Path::from(object.key.as_str()))
            .await?
            .into_stream();
        while let Some(chunk) = stream.next().await {
            writer.write(&chunk?);
        }
        writer.finish().await?;
        let record = json!({
            "ledger_id": ledger_id,
            "bucket": object.bucket,
            "key": object.key,
            "etag": object.etag,
            "reason": reason,
            "quarantined_at": crate::time::rfc3339(now_micros()),
        });
        self.quarantine
            .put(
                &dir.clone().join("reason.json"),
                PutPayload::from(record.to_string()),
            )
            .await?;
        Ok(())
    }
}

/// A resource that could not be loaded, with the reason a person can act on.
#[derive(Debug, Clone)]
struct Reject {
    position: Position,
    reason: String,
    /// The source resource (PHI: written only to the quarantine store).
    resource: Option<String>,
}

/// Everything read from one file, before pseudonymisation.
#[derive(Default)]
struct FileParse {
    records: Vec<(Record, Position)>,
    deletes: Vec<(SilverTable, String)>,
    rejects: Vec<Reject>,
    counts: ResourceCounts,
    /// `urn:uuid` of each Bundle entry → (resource type, id).
    uuids: HashMap<String, (String, String)>,
    /// (resource type, `system|value`) → id, for conditional references.
    identifiers: HashMap<(String, String), String>,
}

impl FileParse {
    fn take(&mut self, item: Item<'_>) {
        match item {
            Item::Resource {
                raw,
                full_url,
                position,
            } => match fhir::parse_resource(raw, full_url) {
                Ok(Parsed::Kept(record)) => {
                    let kind = record.resource_type();
                    let common = record.common();
                    *self.counts.entry(kind.to_owned()).or_default() += 1;
                    if let Some(uuid) = full_url.and_then(|u| u.strip_prefix("urn:uuid:")) {
                        self.uuids
                            .insert(uuid.to_owned(), (kind.to_owned(), common.id.clone()));
                    }
                    for identifier in &common.identifiers {
                        self.identifiers
                            .insert((kind.to_owned(), identifier.clone()), common.id.clone());
                    }
                    self.records.push((record, position));
                }
                Ok(Parsed::Skipped(kind)) => *self.counts.entry(kind).or_default() += 1,
                Err(reason) => self.rejects.push(Reject {
                    position,
                    reason,
                    resource: Some(raw.to_owned()),
                }),
            },
            Item::Delete { url, position } => {
                let target = url.split_once('/').and_then(|(kind, id)| {
                    let table = SilverTable::from_resource_type(kind)?;
                    fhir::is_valid_id(id).then(|| (table, id.to_owned()))
                });
                match target {
                    Some(target) => self.deletes.push(target),
                    None if url
                        .split_once('/')
                        .is_some_and(|(k, _)| SilverTable::from_resource_type(k).is_none()) => {}
                    None => self.rejects.push(Reject {
                        position,
                        reason: format!("DELETE url {url:?} is not Type/id"),
                        resource: None,
                    }),
                }
            }
            Item::Rejected {
                reason,
                raw,
                position,
            } => {
                self.rejects.push(Reject {
                    position,
                    reason,
                    resource: raw.map(str::to_owned),
                });
            }
        }
    }
}

/// Streams the object through the FHIR reader on a blocking thread (parsing is CPU work).
async fn parse_object(
    source: Arc<dyn ObjectStore>,
    key: Path,
    limits: ReadLimits,
) -> Result<FileParse, FileError> {
    let unreadable = |e: object_store::Error| FileError::Unreadable(e.to_string());
    let result = source.get(&key).await.map_err(unreadable)?;
    let name = key.filename().unwrap_or_default().to_owned();
    let input: Box<dyn Read + Send> = match result.payload {
        // A local file is read directly: no async hop per chunk.
        GetResultPayload::File(file, _) => Box::new(file),
        GetResultPayload::Stream(stream) => {
            let (sender, receiver) = tokio::sync::mpsc::channel(8);
            tokio::spawn(async move {
                let mut stream = stream;
                while let Some(chunk) = stream.next().await {
                    if sender.send(chunk).await.is_err() {
                        break;
                    }
                }
            });
            Box::new(ChannelReader {
                receiver,
                current: Bytes::new(),
            })
        }
    };
    tokio::task::spawn_blocking(move || {
        let mut parse = FileParse::default();
        fhir::read_file(input, &name, &limits, &mut |item| parse.take(item))?;
        Ok(parse)
    })
    .await
    .map_err(|e| FileError::Unreadable(format!("parser task failed: {e}")))?
}

/// A blocking `Read` over the chunks an async task fetches, so a streamed S3 body is parsed
/// without ever being held whole.
struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<object_store::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Turns source references into pseudonymous keys, within one file's context.
struct Resolver<'a> {
    tenant: &'a TenantId,
    pseudonymizer: &'a Pseudonymizer,
    uuids: &'a HashMap<String, (String, String)>,
    identifiers: &'a HashMap<(String, String), String>,
}

impl Resolver<'_> {
    fn key_of(&self, kind: &str, id: &str) -> String {
        self.pseudonymizer.pseudonym(self.tenant, kind, id)
    }

    fn resolve(&self, target: &RefTarget, field: &str) -> Result<String, String> {
        match target {
            RefTarget::Literal { kind, id } => Ok(self.key_of(kind, id)),
            RefTarget::Uuid(uuid) => match self.uuids.get(uuid) {
                Some((kind, id)) => Ok(self.key_of(kind, id)),
                None => Err(format!(
                    "{field}: urn:uuid reference to a resource that is not in this Bundle"
                )),
            },
            RefTarget::Conditional { kind, query } => {
                let identifier = query
                    .strip_prefix("identifier=")
                    .map(|v| v.replace("%7C", "|").replace("%7c", "|"));
                match identifier.and_then(|i| self.identifiers.get(&(kind.clone(), i))) {
                    Some(id) => Ok(self.key_of(kind, id)),
                    // Not in this file: the key of the search itself, which equals the
                    // `identifier_key` of the organization it names (see docs/silver-schema.md).
                    None => Ok(self.conditional_key(kind, query)),
                }
            }
        }
    }

    fn conditional_key(&self, kind: &str, query: &str) -> String {
        let canonical = query.replace("%7C", "|").replace("%7c", "|");
        self.key_of(kind, &format!("?{canonical}"))
    }
}

fn ts(value: Option<i64>) -> Value {
    Value::Ts(value)
}

fn text(value: &Option<String>) -> Value {
    Value::Str(value.clone())
}

/// One silver row, in the table's schema order. Fails when a reference cannot be resolved.
fn silver_row(
    resolver: &Resolver<'_>,
    record: &Record,
    ledger_id: &str,
    now: i64,
) -> Result<Vec<Value>, String> {
    let common = record.common();
    let kind = record.resource_type();
    let mut row = vec![
        Value::Str(Some(resolver.key_of(kind, &common.id))),
        Value::Str(Some(resolver.tenant.to_string())),
    ];
    let optional_ref = |target: &Option<RefTarget>, field: &str| -> Result<Value, String> {
        Ok(Value::Str(
            target
                .as_ref()
                .map(|t| resolver.resolve(t, field))
                .transpose()?,
        ))
    };
    match record {
        Record::Patient(p) => row.extend([
            text(&p.gender),
            Value::I32(p.birth_year),
            Value::Bool(p.deceased),
            ts(p.deceased_at),
            text(&p.postal_prefix),
            text(&p.state),
            text(&p.country),
            text(&p.marital_status),
        ]),
        Record::Encounter(e) => row.extend([
            optional_ref(&e.patient, "subject")?,
            text(&e.status),
            text(&e.class_code),
            text(&e.type_code),
            text(&e.type_display),
            text(&e.reason_code),
            ts(e.period_start),
            ts(e.period_end),
            optional_ref(&e.hospital, "serviceProvider")?,
            text(&e.hospital_name),
            text(&e.discharge_disposition),
        ]),
        Record::Condition(c) => row.extend([
            optional_ref(&c.patient, "subject")?,
            optional_ref(&c.encounter, "encounter")?,
            text(&c.code_system),
            text(&c.code),
            text(&c.code_display),
            text(&c.clinical_status),
            text(&c.verification_status),
            text(&c.category),
            ts(c.onset_at),
            ts(c.abatement_at),
            ts(c.recorded_at),
        ]),
        Record::Organization(o) => row.extend([
            Value::Str(
                common
                    .identifiers
                    .first()
                    .map(|i| resolver.conditional_key(kind, &format!("identifier={i}"))),
            ),
            text(&o.name),
            text(&o.type_code),
            Value::Bool(o.active),
            text(&o.city),
            text(&o.state),
        ]),
    }
    row.extend([
        ts(Some(common.last_updated.unwrap_or(now))),
        text(&common.version_id),
        Value::Str(Some(ledger_id.to_owned())),
        ts(Some(now)),
    ]);
    Ok(row)
}

/// The instant text of a time, re-exported for callers that label runs.
pub fn run_instant(now: i64) -> String {
    hudi_instant(now)
}
