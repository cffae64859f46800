//! The claim-to-finish flow of a group: claim each file, hand off or parse it, commit the group's
//! rows one commit per silver table, and record every file's outcome.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::TryFutureExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::group::{Claimed, FileState, GroupFile, pinned};
use super::load::{LoadContext, ParsedFile};
use super::readers::parse_object;
use super::{FileReport, FileResult, ScaleOutRoute, Services};
use crate::bulk_export::{BulkManifests, Companion};
use crate::deid::redact_key;
use crate::error::{CoreError, Result};
use crate::fhir::FileError;
use crate::hudi::{HudiTable, StagedRows};
use crate::ports::{Claim, LedgerStatus, ObjectRef, Outcome, ResourceCounts};
use crate::scale_out::Span;
use crate::silver::SilverTable;
use crate::tenant::TenantId;
use crate::time::now_micros;

impl Services {
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
}
