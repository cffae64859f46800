//! Ingest of raw objects: claim each in the ledger, stream and parse it, de-identify, upsert the
//! silver tables, record the outcome. Files of one tenant that arrive together are a group: each is
//! claimed, parsed, quarantined or rejected on its own, and the group's rows are committed together,
//! one commit per table (a group commit), so that many small files rewrite each file group once.
//! A bad file is quarantined, a bad resource is rejected alone, a redelivered object does nothing,
//! and a failure leaves the objects claimable again.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Seek, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryFutureExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::OnceCell;

use crate::bulk_export::{BulkManifests, Companion};
use crate::deid::{PseudonymCache, Pseudonymizer, redact_key};
use crate::error::{CoreError, Result};
use crate::fhir::{self, FileError, Item, Parsed, Position, ReadLimits, Record, RefTarget};
use crate::hudi::{Delete, HudiTable, Retention, StagedRows, bucket_of};
use crate::objects;
use crate::ports::{
    Claim, Ledger, LedgerStatus, Message, Notifier, ObjectRef, Outcome, ResourceCounts, ScaleOut,
    Topic,
};
use crate::rows::RowWriter;
use crate::scale_out::Span;
use crate::silver::{BatchBuilder, SILVER_BUCKETS, SilverTable, codings_column};
use crate::tenant::TenantId;
use crate::time::{now_micros, parse_fhir_datetime};

/// Tunables, from environment variables in the binaries.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a PROCESSING claim holds before another worker may take the object over.
    pub lease: Duration,
    pub limits: ReadLimits,
    /// Told how far a long file has been read.
    pub progress: Option<Progress>,
    /// How long table services keep file slices and instants (run after every commit).
    pub retention: Retention,
    /// How many files, and bytes, one group commit takes at most.
    pub group: GroupLimits,
    /// The size a silver file group may reach before its tenant's partition is laid out in more
    /// file groups (a `replacecommit` by the table services).
    pub file_group_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(900),
            limits: ReadLimits::default(),
            progress: None,
            retention: Retention::default(),
            group: GroupLimits::default(),
            file_group_bytes: 128 << 20,
        }
    }
}

/// The size of one group commit. Bigger groups rewrite each file group less often; the staged rows
/// of a group wait on local disk, and a failed commit sends the whole group back to be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    pub max_files: usize,
    pub max_bytes: u64,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            max_files: 100,
            max_bytes: 1 << 30,
        }
    }
}

impl GroupLimits {
    /// Splits `files` (with their sizes), in order, into groups within the limits; a file over the
    /// byte limit is a group of its own.
    pub fn split<T>(&self, files: Vec<(T, u64)>) -> Vec<Vec<T>> {
        let mut groups: Vec<Vec<T>> = Vec::new();
        let mut bytes = 0u64;
        for (file, size) in files {
            let full = groups.last().is_none_or(|group| {
                group.len() >= self.max_files.max(1)
                    || (bytes > 0 && bytes.saturating_add(size) > self.max_bytes)
            });
            if full {
                groups.push(Vec::new());
                bytes = 0;
            }
            bytes = bytes.saturating_add(size);
            groups.last_mut().expect("pushed above").push(file);
        }
        groups
    }
}

/// Receives (ledger id, bytes read, object size) each time another `every_bytes` of a file are read.
#[derive(Clone)]
pub struct Progress {
    pub every_bytes: u64,
    pub report: Arc<ProgressFn>,
}

/// (ledger id, bytes read, object size).
pub type ProgressFn = dyn Fn(&str, u64, u64) + Send + Sync;

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
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
    scale_out: Option<ScaleOutRoute>,
    key_checked: OnceCell<()>,
}

/// Objects bigger than `above_bytes` go to `job` instead of being processed here.
#[derive(Clone)]
pub struct ScaleOutRoute {
    pub above_bytes: u64,
    pub job: Arc<dyn ScaleOut>,
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
    /// A file of a Bulk export folder that holds no resources to load (its manifest, log or error
    /// files): recorded, not alerted.
    Skipped,
    Failed,
    /// Already COMPLETED, QUARANTINED or SKIPPED: redelivery, nothing done.
    AlreadyDone,
    /// Another worker holds the claim.
    Busy,
    /// Too big for this worker: the scale-out job was started for it.
    HandedOff,
    /// Deleted (or replaced under versioning) before it could be read: nothing to load.
    Gone,
}

impl FileResult {
    /// The name used in logs and answers (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Quarantined => "quarantined",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::AlreadyDone => "already_done",
            Self::Busy => "busy",
            Self::HandedOff => "handed_off",
            Self::Gone => "gone",
        }
    }
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
            scale_out: None,
            key_checked: OnceCell::new(),
        }
    }

    /// Hands objects bigger than `route.above_bytes` to the scale-out job.
    pub fn with_scale_out(mut self, route: ScaleOutRoute) -> Self {
        self.scale_out = Some(route);
        self
    }

    /// Records the key fingerprint on first write; refuses a lake written with another key.
    pub async fn check_key(&self) -> Result<()> {
        self.key_checked
            .get_or_try_init(|| async {
                let path = Path::from(KEY_FINGERPRINT_PATH);
                let ours = self.pseudonymizer.fingerprint();
                let record = json!({"algorithm": "HMAC-SHA256", "fingerprint": ours}).to_string();
                if objects::create(self.lake.as_ref(), &path, record.into()).await? {
                    return Ok(());
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

    /// Processes one object of `source` (a raw bucket, or a local folder) for `tenant`: a group of
    /// one (see [`Services::ingest_group`]).
    pub async fn ingest_object(
        &self,
        source: &Arc<dyn ObjectStore>,
        bucket: &str,
        key: &Path,
        tenant: &TenantId,
    ) -> Result<FileReport> {
        let mut reports = self
            .ingest_group(source, bucket, std::slice::from_ref(key), tenant)
            .await?;
        Ok(reports.pop().expect("one report per key"))
    }

    /// Processes objects of one tenant that arrived together, in the order given, as one group:
    /// each file is claimed, parsed, quarantined or failed on its own and keeps its own ledger
    /// item, counts and rejects; the rows of the files that parsed are committed together, one
    /// commit per silver table. One bad file never fails the group; a failed commit fails every
    /// file of it (each is retried), and none is half-visible. Returns a report per key, in order.
    /// Never panics on bad input; errors that are not about one file (ledger or lake unreachable,
    /// key mismatch) are returned, after the files already claimed have been finished.
    pub async fn ingest_group(
        &self,
        source: &Arc<dyn ObjectStore>,
        bucket: &str,
        keys: &[Path],
        tenant: &TenantId,
    ) -> Result<Vec<FileReport>> {
        self.check_key().await?;
        let mut files = Vec::new();
        let mut claim_error = None;
        for key in keys {
            match self.claim(source, bucket, key, tenant, false).await {
                Ok(file) => files.push(file),
                Err(e) => {
                    claim_error = Some(e);
                    break;
                }
            }
        }
        self.process_group(&mut files, tenant).await;
        let (reports, finish_error) = self.finish_group(files).await;
        match claim_error.or(finish_error) {
            Some(e) => Err(e),
            None => Ok(reports),
        }
    }

    /// Records the outcome of every file of a group (see [`Services::finish`]), logging one line
    /// per file; the first error is returned beside the reports of the files that were recorded.
    pub(crate) async fn finish_group(
        &self,
        files: Vec<GroupFile>,
    ) -> (Vec<FileReport>, Option<CoreError>) {
        let mut reports = Vec::with_capacity(files.len());
        let mut finish_error = None;
        for file in files {
            match self.finish(file).await {
                Ok(report) => {
                    // One log line per file, whatever its outcome: ledger id, never the key (PHI).
                    tracing::info!(
                        ledger_id = %report.ledger_id,
                        tenant_id = %report.tenant_id,
                        result = report.result.as_str(),
                        bytes = report.bytes,
                        resources = report.outcome.counts.values().sum::<u64>(),
                        rejected = report.outcome.rejected,
                        deleted = report.outcome.deleted,
                        "file processed"
                    );
                    reports.push(report);
                }
                Err(e) => {
                    finish_error.get_or_insert(e);
                }
            }
        }
        (reports, finish_error)
    }

    /// Reads the object's metadata and claims it in the ledger.
    pub(crate) async fn claim(
        &self,
        source: &Arc<dyn ObjectStore>,
        bucket: &str,
        key: &Path,
        tenant: &TenantId,
        take_over: bool,
    ) -> Result<GroupFile> {
        let meta = match source.head(key).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => {
                return Ok(GroupFile::gone(source, key, bucket, tenant));
            }
            Err(e) => return Err(e.into()),
        };
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
        let now = now_micros();
        let mut claim = self
            .ledger
            .claim(&object, tenant.as_str(), now, self.settings.lease)
            .await?;
        // The scale-out job takes over what the ingest path handed it; the item keeps naming the
        // run it was handed to.
        let mut handed_off_to = None;
        if take_over
            && let Claim::Done(entry) = &claim
            && entry.status == LedgerStatus::HandedOff
        {
            handed_off_to = entry.handed_off_to.clone();
            claim = self
                .ledger
                .take_over(&ledger_id, now, self.settings.lease)
                .await?;
        }
        let state = match claim {
            Claim::Claimed { attempt } => FileState::Claimed { attempt },
            Claim::Done(entry) => FileState::Ended {
                attempt: None,
                result: FileResult::AlreadyDone,
                outcome: entry.into(),
            },
            Claim::Busy(_) => FileState::Ended {
                attempt: None,
                result: FileResult::Busy,
                outcome: Outcome::default(),
            },
        };
        Ok(GroupFile {
            claimed: Claimed {
                store: source.clone(),
                key: key.clone(),
                pinned: pinned(meta.e_tag.as_deref()),
            },
            tenant: tenant.clone(),
            object,
            ledger_id,
            now,
            delete_ordering: meta.last_modified.timestamp_micros(),
            handed_off_to,
            state,
        })
    }

    /// Hands off, parses (quarantining bad files) and commits the claimed files of a group.
    async fn process_group(&self, files: &mut [GroupFile], tenant: &TenantId) {
        let Some(erased) = self.prepare(files, tenant).await else {
            return;
        };
        for file in files.iter_mut() {
            let FileState::Claimed { attempt } = file.state else {
                continue;
            };
            let ended = |(result, outcome)| FileState::Ended {
                attempt: Some(attempt),
                result,
                outcome,
            };
            file.state = match &self.scale_out {
                Some(route) if file.object.size > route.above_bytes => {
                    ended(self.hand_off(route, tenant, &file.ledger_id).await)
                }
                _ => match self.parse(file, &erased).await {
                    Ok(load) => FileState::Parsed { attempt, load },
                    Err(ended_early) => ended(ended_early),
                },
            };
        }
        self.commit_parsed(files, tenant).await;
    }

    /// Reads what a group's files are loaded with: the tenant's erased patients, and each claimed
    /// file's delete ordering (its Bulk manifest). `None` when the erased patients cannot be read
    /// (every file failed); a manifest that cannot be read fails its file only.
    pub(crate) async fn prepare(
        &self,
        files: &mut [GroupFile],
        tenant: &TenantId,
    ) -> Option<Arc<BTreeSet<String>>> {
        // Read once per group; an erasure that lands while the group parses is enforced by the
        // tombstone of the patient's key, and by a repeated erasure for rows with new ids.
        let erased = match crate::erase::erased_patients(self.lake.as_ref(), tenant).await {
            Ok(erased) => Arc::new(erased),
            Err(e) => {
                for file in files.iter_mut() {
                    file.fail(format!("reading the erased patients failed: {e}"));
                }
                return None;
            }
        };
        let mut manifests = BulkManifests::default();
        for file in files.iter_mut() {
            if let FileState::Claimed { .. } = file.state
                && Companion::may_be_read_ahead(&file.object.key, file.object.size)
            {
                let claimed = &file.claimed;
                let read = claimed
                    .store
                    .get_opts(&claimed.key, claimed.pinned.clone())
                    .map_err(CoreError::from)
                    .and_then(|found| found.bytes().map_err(CoreError::from))
                    .await;
                match read {
                    Ok(bytes) => {
                        if let Some(companion) = Companion::of_bytes(&file.object.key, &bytes) {
                            file.end_skipped(companion, ResourceCounts::new());
                        }
                    }
                    Err(e) => file.fail(format!("reading the file failed: {e}")),
                }
            }
            if let FileState::Claimed { .. } = file.state {
                match manifests
                    .transaction_time(&file.claimed.store, &file.claimed.key)
                    .await
                {
                    // An export's time is the uploader's word: never later than now.
                    Ok(Some(at)) => file.delete_ordering = at.min(file.now),
                    Ok(None) => {}
                    Err(e) => file.fail(format!(
                        "reading the Bulk manifest beside the file failed: {e}"
                    )),
                }
            }
        }
        Some(erased)
    }

    /// Stores the rejects of the group's parsed files and commits their rows together; every
    /// parsed file ends completed, or failed with the commit.
    pub(crate) async fn commit_parsed(&self, files: &mut [GroupFile], tenant: &TenantId) {
        let mut parsed: Vec<&mut GroupFile> = files
            .iter_mut()
            .filter(|f| matches!(f.state, FileState::Parsed { .. }))
            .collect();
        for file in parsed.iter_mut() {
            let FileState::Parsed { load, .. } = &mut file.state else {
                continue;
            };
            if Companion::is_error_file(&load.counts, load.rejects.count, load.deleted) {
                let counts = std::mem::take(&mut load.counts);
                file.end_skipped(Companion::ErrorFile, counts);
                continue;
            }
            if load.rejects.count > 0
                && let Err(e) = self
                    .upload_rejects(tenant, &file.ledger_id, &mut load.rejects)
                    .await
            {
                file.fail(format!("storing the rejected resources failed: {e}"));
            }
        }
        parsed.retain(|f| matches!(f.state, FileState::Parsed { .. }));
        if parsed.is_empty() {
            return;
        }
        let committed = self.commit_group(&mut parsed).await;
        for file in parsed {
            let FileState::Parsed { attempt, load } = &mut file.state else {
                continue;
            };
            let attempt = *attempt;
            file.state = match &committed {
                Ok(silver_instants) => FileState::Ended {
                    attempt: Some(attempt),
                    result: FileResult::Completed,
                    outcome: Outcome {
                        counts: std::mem::take(&mut load.counts),
                        deleted: load.deleted,
                        future_last_updated: load.future_last_updated,
                        erased: load.erased,
                        rejected: load.rejects.count,
                        silver_instants: silver_instants.clone(),
                        ..Outcome::default()
                    },
                },
                Err(e) => FileState::Ended {
                    attempt: Some(attempt),
                    result: FileResult::Failed,
                    outcome: Outcome {
                        error: Some(e.to_string()),
                        ..Outcome::default()
                    },
                },
            };
        }
    }

    /// Parses one claimed file; a file that cannot be loaded ends here (quarantined or failed).
    async fn parse(
        &self,
        file: &GroupFile,
        erased: &Arc<BTreeSet<String>>,
    ) -> Result<ParsedFile, (FileResult, Outcome)> {
        let context = LoadContext {
            tenant: file.tenant.clone(),
            ledger_id: file.ledger_id.clone(),
            now: file.now,
            delete_ordering: file.delete_ordering,
            pseudonymizer: self.pseudonymizer.clone(),
            erased: erased.clone(),
        };
        let failed = |error: String| {
            (
                FileResult::Failed,
                Outcome {
                    error: Some(error),
                    ..Outcome::default()
                },
            )
        };
        let parsed = parse_object(
            file.claimed.store.clone(),
            file.claimed.key.clone(),
            file.claimed.pinned.clone(),
            Span::Whole,
            self.settings.limits.clone(),
            context,
            self.settings.progress.clone(),
        )
        .await;
        match parsed {
            Ok(load) => Ok(ParsedFile {
                counts: load.counts,
                deleted: load.deleted,
                future_last_updated: load.future_last_updated,
                erased: load.erased,
                staged: load.staged,
                rejects: load.rejects,
            }),
            Err(FileError::Invalid(reason)) => match self.quarantine(file, &reason).await {
                Ok(()) => Err((
                    FileResult::Quarantined,
                    Outcome {
                        error: Some(reason),
                        ..Outcome::default()
                    },
                )),
                Err(e) => Err(failed(format!("quarantine failed: {e}"))),
            },
            Err(FileError::Unreadable(reason)) => Err(failed(reason)),
        }
    }

    /// Commits the staged rows of every file of the group, one commit per silver table, then runs
    /// the table services on the partitions it touched. Returns `table@instant` per commit.
    async fn commit_group(&self, files: &mut [&mut GroupFile]) -> Result<Vec<String>> {
        let mut silver_instants = Vec::new();
        // Referenced tables first, so a reader never sees a condition before its patient.
        for table in [
            SilverTable::Organization,
            SilverTable::Patient,
            SilverTable::Encounter,
            SilverTable::Condition,
        ] {
            let mut group: Vec<StagedRows> = files
                .iter_mut()
                .filter_map(|file| match &mut file.state {
                    FileState::Parsed { load, .. } => load.staged.remove(&table),
                    _ => None,
                })
                .collect();
            if group.is_empty() {
                continue;
            }
            let hudi = HudiTable::open_with_tombstones(self.lake.clone(), table.def())
                .await?
                .with_file_sizing(self.settings.file_group_bytes);
            let outcome = hudi.commit_group(&mut group).await?;
            if let Some(instant) = outcome.instant {
                silver_instants.push(format!("{}@{}", table.name(), instant));
            }
            // The commit stands whatever happens next: a services failure is the next run's work.
            if let Err(e) = hudi
                .run_services(
                    &outcome.partitions,
                    outcome.sequence,
                    &self.settings.retention,
                )
                .await
            {
                tracing::warn!(table = table.name(), error = %e, "table services failed; the next commit retries them");
            }
        }
        Ok(silver_instants)
    }

    /// Records a file's outcome in the ledger and alerts on quarantined and failed files.
    async fn finish(&self, file: GroupFile) -> Result<FileReport> {
        let (attempt, result, mut outcome) = match file.state {
            FileState::Ended {
                attempt,
                result,
                outcome,
            } => (attempt, result, outcome),
            // Every claimed file ends in `process_group`; this is only reached if it did not.
            FileState::Claimed { attempt } | FileState::Parsed { attempt, .. } => (
                Some(attempt),
                FileResult::Failed,
                Outcome {
                    error: Some("the file was not processed".into()),
                    ..Outcome::default()
                },
            ),
        };
        let ledger_id = file.ledger_id;
        if outcome.handed_off_to.is_none() {
            outcome.handed_off_to = file.handed_off_to;
        }
        outcome.error = outcome
            .error
            .map(|text| redact_key(&text, &file.object.key, &ledger_id));
        let report = |result, outcome| FileReport {
            ledger_id: ledger_id.clone(),
            key: file.object.key.clone(),
            tenant_id: file.tenant.to_string(),
            result,
            outcome,
            bytes: file.object.size,
        };
        // Redelivered or busy: nothing was claimed, nothing to record.
        let Some(attempt) = attempt else {
            return Ok(report(result, outcome));
        };
        let status = match result {
            FileResult::Completed => LedgerStatus::Completed,
            FileResult::Quarantined => LedgerStatus::Quarantined,
            FileResult::Skipped => LedgerStatus::Skipped,
            FileResult::HandedOff => LedgerStatus::HandedOff,
            _ => LedgerStatus::Failed,
        };
        let needs_alert = matches!(result, FileResult::Quarantined | FileResult::Failed);
        let recorded = self
            .ledger
            .finish(&ledger_id, attempt, status, &outcome, now_micros())
            .await;
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                // Our lease expired and another worker took the object over: its outcome stands.
                tracing::warn!(ledger_id = %ledger_id, "claim lost before the outcome was recorded");
                return Ok(report(FileResult::Busy, outcome));
            }
            Err(e) => {
                // The outcome may be recorded though the answer was lost; a retry would then find
                // the item final and stay silent, so alert now: at least once.
                if needs_alert {
                    self.alert(&report(result, outcome)).await;
                }
                return Err(e);
            }
        }
        if needs_alert {
            self.alert(&report(result, outcome.clone())).await;
        }
        Ok(report(result, outcome))
    }

    /// Starts the scale-out job for an object too big for this worker.
    async fn hand_off(
        &self,
        route: &ScaleOutRoute,
        tenant: &TenantId,
        ledger_id: &str,
    ) -> (FileResult, Outcome) {
        match route.job.start(tenant.as_str(), ledger_id).await {
            Ok(run_id) => (
                FileResult::HandedOff,
                Outcome {
                    handed_off_to: Some(run_id),
                    ..Outcome::default()
                },
            ),
            Err(e) => (
                FileResult::Failed,
                Outcome {
                    error: Some(format!("the scale-out job could not be started: {e}")),
                    ..Outcome::default()
                },
            ),
        }
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

    /// Uploads the file's rejects to `rejects/<tenant>/<ledger id>.ndjson`, streamed from disk.
    async fn upload_rejects(
        &self,
        tenant: &TenantId,
        ledger_id: &str,
        rejects: &mut RejectLog,
    ) -> Result<()> {
        let file = rejects.seal()?;
        let path = Path::from("rejects")
            .join(tenant.as_str())
            .join(format!("{ledger_id}.ndjson"));
        objects::upload_file(self.quarantine.as_ref(), &path, file).await
    }

    /// Copies the file to `files/<tenant>/<ledger id>/` with a `reason.json` beside it. It reads the
    /// object by the path it was claimed under: rebuilding the path from the key's text would
    /// percent-encode characters (non-ASCII, `#`, `%`...) and name another object.
    pub(crate) async fn quarantine(&self, file: &GroupFile, reason: &str) -> Result<()> {
        let (claimed, object, ledger_id) = (&file.claimed, &file.object, file.ledger_id.as_str());
        let dir = Path::from("files")
            .join(file.tenant.as_str())
            .join(ledger_id);
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
        let mut stream = claimed
            .store
            .get_opts(&claimed.key, claimed.pinned.clone())
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

/// Rows built per (table, bucket) before they are staged: a file's rows go to disk in batches of
/// this many, so memory does not grow with the file (at most 16 builders are filling at once).
const BATCH_ROWS: usize = 2048;

/// What a file is loaded for: tenant, lineage and the key.
pub(crate) struct LoadContext {
    pub(crate) tenant: TenantId,
    pub(crate) ledger_id: String,
    pub(crate) now: i64,
    /// The ordering of the file's deletes: its export's `transactionTime` when a Bulk manifest
    /// beside it names it, else its upload time.
    pub(crate) delete_ordering: i64,
    pub(crate) pseudonymizer: Pseudonymizer,
    /// Pseudonyms of the tenant's erased patients: their rows are not loaded.
    pub(crate) erased: Arc<BTreeSet<String>>,
}

/// The rejected resources of one file, as JSON lines in a local temporary file (they can be as
/// many as the resources).
pub(crate) struct RejectLog {
    file: Option<std::io::BufWriter<std::fs::File>>,
    pub(crate) count: u64,
}

impl RejectLog {
    pub(crate) fn new() -> Self {
        Self {
            file: None,
            count: 0,
        }
    }

    pub(crate) fn add(
        &mut self,
        ledger_id: &str,
        position: Position,
        reason: &str,
        raw: Option<&str>,
    ) -> Result<()> {
        let resource =
            raw.map(|r| serde_json::from_str::<serde_json::Value>(r).unwrap_or_else(|_| r.into()));
        self.add_value(
            ledger_id,
            position,
            reason,
            resource.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Adds a reject whose resource is already JSON (`null` when there is none).
    pub(crate) fn add_value(
        &mut self,
        ledger_id: &str,
        position: Position,
        reason: &str,
        resource: serde_json::Value,
    ) -> Result<()> {
        let writer = match &mut self.file {
            Some(writer) => writer,
            None => self
                .file
                .insert(std::io::BufWriter::new(tempfile::tempfile()?)),
        };
        let line = json!({
            "source_file_id": ledger_id,
            "position": position.to_string(),
            "reason": reason,
            "resource": resource,
        });
        serde_json::to_writer(&mut *writer, &line)?;
        writer.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    /// The log rewound for reading.
    pub(crate) fn seal(&mut self) -> Result<std::fs::File> {
        let writer = self
            .file
            .take()
            .ok_or_else(|| CoreError::Config("no rejects to upload".into()))?;
        let mut file = writer
            .into_inner()
            .map_err(|e| CoreError::Io(e.into_error()))?;
        file.seek(std::io::SeekFrom::Start(0))?;
        Ok(file)
    }
}

/// What a parsed file brings to its group: counts, staged rows per table, rejects.
pub(crate) struct ParsedFile {
    pub(crate) counts: ResourceCounts,
    pub(crate) deleted: u64,
    pub(crate) future_last_updated: u64,
    pub(crate) erased: u64,
    pub(crate) staged: HashMap<SilverTable, StagedRows>,
    pub(crate) rejects: RejectLog,
}

/// The state of one file's load while it streams: counts, `urn:uuid` map, rows being built and
/// staged, resources waiting for a reference further down the file, rejects.
pub(crate) struct FileLoad {
    context: LoadContext,
    pub(crate) counts: ResourceCounts,
    pub(crate) deleted: u64,
    /// Resources whose `meta.lastUpdated` was later than the ingest time.
    pub(crate) future_last_updated: u64,
    /// Resources of erased patients, not loaded.
    pub(crate) erased: u64,
    /// The lines and resources of a scale-out worker's span of an NDJSON file.
    pub(crate) lines: fhir::LineCounts,
    /// `urn:uuid` of each Bundle entry → (resource type, id).
    uuids: HashMap<String, (String, String)>,
    /// Rows being built per (table, bucket), so that each staged batch is one bucket's.
    builders: HashMap<(SilverTable, u32), BatchBuilder>,
    pub(crate) staged: HashMap<SilverTable, StagedRows>,
    /// Resources whose `urn:uuid` reference points further down the Bundle.
    pending: Vec<(Record, Position)>,
    pub(crate) rejects: RejectLog,
    /// The first local staging failure: the file fails (and is retried), it is not quarantined.
    error: Option<CoreError>,
    references: std::cell::RefCell<PseudonymCache>,
}

impl FileLoad {
    fn new(context: LoadContext) -> Self {
        Self {
            context,
            counts: ResourceCounts::new(),
            deleted: 0,
            future_last_updated: 0,
            erased: 0,
            lines: fhir::LineCounts::default(),
            uuids: HashMap::new(),
            builders: HashMap::new(),
            staged: HashMap::new(),
            pending: Vec::new(),
            rejects: RejectLog::new(),
            error: None,
            references: Default::default(),
        }
    }

    fn take(&mut self, item: Item<'_>) {
        if self.error.is_some() {
            return;
        }
        let result = match item {
            Item::Resource {
                raw,
                full_url,
                position,
            } => match fhir::parse_resource(raw, full_url) {
                Ok(Parsed::Kept(record)) => {
                    let kind = record.resource_type();
                    *self.counts.entry(kind.to_owned()).or_default() += 1;
                    if let Some(uuid) = full_url.and_then(|u| u.strip_prefix("urn:uuid:")) {
                        self.uuids.insert(
                            uuid.to_owned(),
                            (kind.to_owned(), record.common().id.clone()),
                        );
                    }
                    self.add(record, position, false)
                }
                Ok(Parsed::Skipped(kind)) => {
                    *self.counts.entry(kind).or_default() += 1;
                    Ok(())
                }
                Err(reason) => self.reject(position, &reason, Some(raw)),
            },
            Item::Delete {
                url,
                modified,
                position,
            } => self.delete(url, modified, position),
            Item::Rejected {
                reason,
                raw,
                position,
            } => self.reject(position, &reason, raw),
        };
        if let Err(e) = result {
            self.error = Some(e);
        }
    }

    fn reject(&mut self, position: Position, reason: &str, raw: Option<&str>) -> Result<()> {
        // An erased patient stays erased in the reject logs too: their own resource, or one whose
        // subject they are, is counted as erased rather than kept as raw FHIR.
        if raw.is_some_and(|raw| self.names_erased_patient(raw)) {
            self.erased += 1;
            return Ok(());
        }
        self.rejects
            .add(&self.context.ledger_id, position, reason, raw)
    }

    /// Whether a raw (rejected) resource is an erased patient, or names one as its subject.
    fn names_erased_patient(&self, raw: &str) -> bool {
        if self.context.erased.is_empty() {
            return false;
        }
        let Ok(resource) = serde_json::from_str::<serde_json::Value>(raw) else {
            return false;
        };
        let patient_id = match resource["resourceType"].as_str() {
            Some("Patient") => resource["id"].as_str(),
            _ => ["subject", "patient"]
                .iter()
                .find_map(|field| resource[field]["reference"].as_str())
                .and_then(|reference| reference.strip_prefix("Patient/")),
        };
        patient_id.is_some_and(|id| {
            let key = self
                .context
                .pseudonymizer
                .pseudonym(&self.context.tenant, "Patient", id);
            self.context.erased.contains(&key)
        })
    }

    /// A DELETE entry. Its ordering is the time of the deletion when the entry has one (a history
    /// Bundle's `response.lastModified`, never later than now: a resource re-created after it in
    /// the same history survives), else the file's delete ordering.
    fn delete(&mut self, url: &str, modified: Option<&str>, position: Position) -> Result<()> {
        let Some((kind, id)) = url.split_once('/') else {
            return self.reject(
                position,
                &format!("DELETE url {url:?} is not Type/id"),
                None,
            );
        };
        // Deletes of resource types silver does not hold are nothing to do.
        let Some(table) = SilverTable::from_resource_type(kind) else {
            return Ok(());
        };
        if !fhir::is_valid_id(id) {
            return self.reject(
                position,
                &format!("DELETE url {url:?} has no valid id"),
                None,
            );
        }
        let key = self
            .context
            .pseudonymizer
            .pseudonym(&self.context.tenant, kind, id);
        let tenant = self.context.tenant.to_string();
        let ordering = modified
            .and_then(|at| parse_fhir_datetime(at).ok())
            .map_or(self.context.delete_ordering, |at| at.min(self.context.now));
        self.staged_rows(table)
            .delete(&tenant, Delete { key, ordering });
        self.deleted += 1;
        Ok(())
    }

    fn staged_rows(&mut self, table: SilverTable) -> &mut StagedRows {
        self.staged
            .entry(table)
            .or_insert_with(|| StagedRows::new(&table.def()))
    }

    /// Builds the record's row, or keeps it for later while `last_chance` is false and one of its
    /// `urn:uuid` references has not been seen yet.
    fn add(&mut self, record: Record, position: Position, last_chance: bool) -> Result<()> {
        let resolver = Resolver {
            tenant: &self.context.tenant,
            pseudonymizer: &self.context.pseudonymizer,
            uuids: &self.uuids,
            references: &self.references,
            last_chance,
        };
        let references = match resolve_references(&resolver, &record) {
            Ok(references) => references,
            Err(RowError::Pending) => {
                self.pending.push((record, position));
                return Ok(());
            }
            Err(RowError::Invalid(reason)) => return self.reject(position, &reason, None),
        };
        let table = SilverTable::from_resource_type(record.resource_type())
            .expect("kept records have a table");
        let key = resolver.key_of(record.resource_type(), &record.common().id);
        // An erased patient stays erased: their own row, and rows whose subject they are.
        let patient = match record {
            Record::Patient(_) => Some(&key),
            Record::Encounter(_) | Record::Condition(_) => references[0].as_ref(),
            Record::Organization(_) => None,
        };
        if patient.is_some_and(|p| self.context.erased.contains(p)) {
            self.erased += 1;
            return Ok(());
        }
        let bucket = (table, bucket_of(&key, SILVER_BUCKETS));
        // The version's ordering: `meta.lastUpdated`, but never later than now (a clock ahead or a
        // forged date would otherwise beat every later version and delete); counted when cut.
        let now = self.context.now;
        let ordering = match record.common().last_updated {
            Some(at) if at > now => {
                self.future_last_updated += 1;
                now
            }
            Some(at) => at,
            None => now,
        };
        let builder = self
            .builders
            .entry(bucket)
            .or_insert_with(|| BatchBuilder::new(table.schema()));
        write_row(
            &mut builder.row(),
            &key,
            &record,
            &references,
            &self.context,
            ordering,
        );
        if builder.len() >= BATCH_ROWS {
            self.flush(bucket)?;
        }
        Ok(())
    }

    fn flush(&mut self, bucket: (SilverTable, u32)) -> Result<()> {
        let Some(builder) = self.builders.get_mut(&bucket) else {
            return Ok(());
        };
        if builder.is_empty() {
            return Ok(());
        }
        let batch = builder.finish()?;
        let tenant = self.context.tenant.to_string();
        self.staged_rows(bucket.0).push(&tenant, &batch)
    }

    /// Resolves what waited for the end of the file and stages the last rows.
    fn finish(mut self) -> Result<Self> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        for (record, position) in std::mem::take(&mut self.pending) {
            self.add(record, position, true)?;
        }
        let buckets: Vec<_> = self.builders.keys().copied().collect();
        for bucket in buckets {
            self.flush(bucket)?;
        }
        Ok(self)
    }
}

/// One file of a group, from its claim to its outcome.
pub(crate) struct GroupFile {
    pub(crate) claimed: Claimed,
    pub(crate) tenant: TenantId,
    pub(crate) object: ObjectRef,
    pub(crate) ledger_id: String,
    /// The ingest time: lineage, and the ordering of rows without `meta.lastUpdated`.
    pub(crate) now: i64,
    /// The ordering of the file's deletes (see [`LoadContext::delete_ordering`]).
    pub(crate) delete_ordering: i64,
    /// The scale-out run the ingest path handed the file to, when a scale-out run took it over.
    pub(crate) handed_off_to: Option<String>,
    pub(crate) state: FileState,
}

pub(crate) enum FileState {
    /// Claimed as `attempt`, not processed yet.
    Claimed { attempt: u32 },
    /// Parsed: its rows are staged, waiting for the group commit.
    Parsed { attempt: u32, load: ParsedFile },
    /// Done: `attempt` is `None` when nothing was claimed (redelivered, or held by another worker).
    Ended {
        attempt: Option<u32>,
        result: FileResult,
        outcome: Outcome,
    },
}

impl GroupFile {
    /// An object that no longer exists: it ends here, nothing claimed.
    fn gone(store: &Arc<dyn ObjectStore>, key: &Path, bucket: &str, tenant: &TenantId) -> Self {
        let object = ObjectRef {
            bucket: bucket.to_owned(),
            key: key.to_string(),
            etag: String::new(),
            size: 0,
        };
        Self {
            claimed: Claimed {
                store: store.clone(),
                key: key.clone(),
                pinned: GetOptions::default(),
            },
            tenant: tenant.clone(),
            ledger_id: object.ledger_id(),
            object,
            now: now_micros(),
            delete_ordering: 0,
            handed_off_to: None,
            state: FileState::Ended {
                attempt: None,
                result: FileResult::Gone,
                outcome: Outcome::default(),
            },
        }
    }

    pub(crate) fn fail(&mut self, error: String) {
        self.end(FileResult::Failed, error);
    }

    pub(crate) fn end_quarantined(&mut self, reason: String) {
        self.end(FileResult::Quarantined, reason);
    }

    /// Ends a file of a Bulk export folder that holds nothing to load, with what it held.
    pub(crate) fn end_skipped(&mut self, companion: Companion, counts: ResourceCounts) {
        self.end_with(
            FileResult::Skipped,
            Outcome {
                counts,
                error: Some(companion.reason().to_owned()),
                ..Outcome::default()
            },
        );
    }

    /// Ends a claimed file with `result` and why.
    fn end(&mut self, result: FileResult, error: String) {
        self.end_with(
            result,
            Outcome {
                error: Some(error),
                ..Outcome::default()
            },
        );
    }

    /// Ends a claimed file with `result` and `outcome` (a file that ended already keeps its end).
    fn end_with(&mut self, result: FileResult, outcome: Outcome) {
        let attempt = match self.state {
            FileState::Claimed { attempt } | FileState::Parsed { attempt, .. } => attempt,
            FileState::Ended { .. } => return,
        };
        self.state = FileState::Ended {
            attempt: Some(attempt),
            result,
            outcome,
        };
    }
}

/// The object a worker claimed: where it is, and how to read exactly the claimed version.
pub(crate) struct Claimed {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) key: Path,
    pub(crate) pinned: GetOptions,
}

/// Read options that fetch exactly the version that was claimed (when the store gives an ETag): an
/// upload that replaces it in between has its own event and ledger item, and must not be read, and
/// recorded, under this one's.
fn pinned(etag: Option<&str>) -> GetOptions {
    GetOptions {
        if_match: etag.map(str::to_owned),
        ..GetOptions::default()
    }
}

/// Streams the object (or the span of it a scale-out worker was given) through the FHIR reader on
/// a blocking thread (parsing is CPU work), building and staging silver rows as it goes.
pub(crate) async fn parse_object(
    source: Arc<dyn ObjectStore>,
    key: Path,
    mut pinned: GetOptions,
    span: Span,
    limits: ReadLimits,
    context: LoadContext,
    progress: Option<Progress>,
) -> Result<FileLoad, FileError> {
    let unreadable = |e: object_store::Error| {
        match e {
        object_store::Error::Precondition { .. } => FileError::Unreadable(
            "the object was replaced after it was claimed; the new version is processed as its own upload"
                .into(),
        ),
        e => FileError::Unreadable(e.to_string()),
    }
    };
    pinned.range = span.range();
    let result = source.get_opts(&key, pinned).await.map_err(unreadable)?;
    let size = result.meta.size;
    let name = key.filename().unwrap_or_default().to_owned();
    let input: Box<dyn Read + Send> = match result.payload {
        // A local file is read directly (no async hop per chunk), from the range asked for: the
        // payload is the whole file.
        GetResultPayload::File(mut file, _) => {
            file.seek(io::SeekFrom::Start(result.range.start))
                .map_err(|e| FileError::Unreadable(e.to_string()))?;
            Box::new(file.take(result.range.end - result.range.start))
        }
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
    let input = span.bound(input);
    let input: Box<dyn Read + Send> = match progress {
        Some(report) => Box::new(ProgressReader {
            inner: input,
            read: 0,
            next: report.every_bytes,
            size,
            ledger_id: context.ledger_id.clone(),
            report,
        }),
        None => input,
    };
    tokio::task::spawn_blocking(move || {
        let mut load = FileLoad::new(context);
        match span {
            Span::Whole => {
                fhir::read_file(input, &name, &limits, &mut |item| load.take(item))?;
            }
            Span::Lines { start, .. } => {
                let first = start == 0;
                load.lines =
                    fhir::read_ndjson_run(input, first, &limits, &mut |item| load.take(item))?;
            }
        }
        load.finish()
            .map_err(|e| FileError::Unreadable(format!("staging rows on local disk failed: {e}")))
    })
    .await
    .map_err(|e| FileError::Unreadable(format!("parser task failed: {e}")))?
}

/// Counts the object's bytes as the parser reads them and reports every `every_bytes`.
struct ProgressReader {
    inner: Box<dyn Read + Send>,
    read: u64,
    next: u64,
    size: u64,
    ledger_id: String,
    report: Progress,
}

impl Read for ProgressReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read >= self.next {
            (self.report.report)(&self.ledger_id, self.read, self.size);
            self.next = self.read + self.report.every_bytes.max(1);
        }
        Ok(n)
    }
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
    references: &'a std::cell::RefCell<PseudonymCache>,
    /// At the end of the file an unknown `urn:uuid` is an error, before it may still come.
    last_chance: bool,
}

enum RowError {
    Pending,
    Invalid(String),
}

impl Resolver<'_> {
    /// The pseudonym of a resource's own id: unique per row, so not worth caching.
    fn key_of(&self, kind: &str, id: &str) -> String {
        self.pseudonymizer.pseudonym(self.tenant, kind, id)
    }

    /// The pseudonym a reference points at: references repeat, so they go through the cache.
    fn referenced_key(&self, kind: &str, id: &str) -> String {
        self.references
            .borrow_mut()
            .pseudonym(self.pseudonymizer, self.tenant, kind, id)
    }

    fn resolve(&self, target: &RefTarget, field: &str) -> Result<String, RowError> {
        match target {
            RefTarget::Literal { kind, id } => Ok(self.referenced_key(kind, id)),
            RefTarget::Uuid(uuid) => match self.uuids.get(uuid) {
                Some((kind, id)) => Ok(self.referenced_key(kind, id)),
                None if self.last_chance => Err(RowError::Invalid(format!(
                    "{field}: urn:uuid reference to a resource that is not in this Bundle"
                ))),
                None => Err(RowError::Pending),
            },
            // Always the key of the search itself, whatever else the file holds, so that the key does
            // not depend on file order; it equals the `identifier_key` of the organization it names.
            RefTarget::Conditional { kind, query } => Ok(self.conditional_key(kind, query)),
        }
    }

    fn conditional_key(&self, kind: &str, query: &str) -> String {
        let canonical = query.replace("%7C", "|").replace("%7c", "|");
        self.referenced_key(kind, &format!("?{canonical}"))
    }
}

/// The references of one record, resolved to pseudonymous keys, in the order its row holds them.
type ResolvedRefs = [Option<String>; 3];

/// Resolves a record's references: the only step of a row that can fail (or wait for a `urn:uuid`
/// further down the Bundle), so it runs before anything is appended.
fn resolve_references(resolver: &Resolver<'_>, record: &Record) -> Result<ResolvedRefs, RowError> {
    let resolve = |target: &Option<RefTarget>, field: &str| {
        target
            .as_ref()
            .map(|t| resolver.resolve(t, field))
            .transpose()
    };
    Ok(match record {
        Record::Encounter(e) => [
            resolve(&e.patient, "subject")?,
            resolve(&e.hospital, "serviceProvider")?,
            resolve(&e.part_of, "partOf")?,
        ],
        Record::Condition(c) => [
            resolve(&c.patient, "subject")?,
            resolve(&c.encounter, "encounter")?,
            None,
        ],
        Record::Organization(o) => [
            o.identifier
                .as_ref()
                .map(|i| resolver.conditional_key("Organization", &format!("identifier={i}"))),
            None,
            None,
        ],
        Record::Patient(_) => [None, None, None],
    })
}

/// Appends one silver row, in the table's schema order, borrowing every value.
/// `ordering` is the version's precombine value; lineage (tenant, ledger id, ingest time) comes
/// from the file's context.
fn write_row(
    row: &mut RowWriter<'_>,
    key: &str,
    record: &Record,
    references: &ResolvedRefs,
    context: &LoadContext,
    ordering: i64,
) {
    row.str(Some(key)).str(Some(context.tenant.as_str()));
    let [first_ref, second_ref, third_ref] = references.each_ref().map(Option::as_deref);
    match record {
        Record::Patient(p) => {
            row.str(p.gender.as_deref())
                .i32(p.birth_year)
                .bool(p.deceased)
                .ts(p.deceased_at)
                .str(p.postal_prefix.as_deref())
                .str(p.state.as_deref())
                .str(p.country.as_deref())
                .str(p.marital_status.as_deref());
        }
        Record::Encounter(e) => {
            row.str(first_ref)
                .str(e.status.as_deref())
                .str(e.class_code.as_deref())
                .str(e.type_code.as_deref())
                .str(e.type_display.as_deref())
                .str(e.reason_code.as_deref())
                .ts(e.period_start)
                .ts(e.period_end)
                .str(second_ref)
                .str(e.hospital_name.as_deref())
                .str(e.discharge_disposition.as_deref());
        }
        Record::Condition(c) => {
            row.str(first_ref)
                .str(second_ref)
                .str(c.code_system.as_deref())
                .str(c.code.as_deref())
                .str(c.code_display.as_deref())
                .str(c.clinical_status.as_deref())
                .str(c.verification_status.as_deref())
                .str(c.category.as_deref())
                .ts(c.onset_at)
                .ts(c.abatement_at)
                .ts(c.recorded_at);
        }
        Record::Organization(o) => {
            row.str(first_ref)
                .str(o.name.as_deref())
                .str(o.type_code.as_deref())
                .bool(o.active)
                .str(o.city.as_deref())
                .str(o.state.as_deref());
        }
    }
    let common = record.common();
    row.ts(Some(ordering))
        .str(common.version_id.as_deref())
        .str(Some(&context.ledger_id))
        .ts(Some(context.now));
    // The columns added since the first release (`SilverTable::added_columns`), after lineage.
    match record {
        Record::Encounter(e) => {
            row.str(e.class_system.as_deref())
                .str(third_ref)
                .str(e.discharge_disposition_system.as_deref());
        }
        Record::Condition(c) => {
            row.str(codings_column(&c.codings).as_deref());
        }
        Record::Patient(_) | Record::Organization(_) => {}
    }
    row.end();
}
