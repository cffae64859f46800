//! Ingest of raw objects: claim each in the ledger, stream and parse it, de-identify, upsert the
//! silver tables, record the outcome. Files of one tenant that arrive together are a group: each is
//! claimed, parsed, quarantined or rejected on its own, and the group's rows are committed together,
//! one commit per table (a group commit), so that many small files rewrite each file group once.
//! A bad file is quarantined, a bad resource is rejected alone, a redelivered object does nothing,
//! and a failure leaves the objects claimable again.

mod flow;
mod group;
mod load;
mod quarantine;
mod readers;

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::OnceCell;

use crate::deid::Pseudonymizer;
use crate::error::{CoreError, Result};
use crate::fhir::ReadLimits;
use crate::hudi::{HudiTable, Retention};
use crate::objects;
use crate::ports::{Ledger, Notifier, Outcome, ScaleOut};
use crate::silver::SilverTable;

pub(crate) use group::{FileState, GroupFile};
pub(crate) use load::{FileLoad, LoadContext, ParsedFile};
pub(crate) use quarantine::RejectLog;
pub(crate) use readers::parse_object;

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
}
