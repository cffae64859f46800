//! The ports the core talks through. Object storage is the `object_store` crate itself
//! (`LocalFileSystem`, `InMemory`, `AmazonS3`); the ledger, the notifier and the scale-out job are
//! the traits below, with SQLite / JSON-lines adapters for the embedded default (which has no
//! scale-out job) and DynamoDB / SNS / Glue adapters for AWS.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Result;

/// One version of one raw object: the ledger's unit of idempotency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The bucket (on AWS) or the raw root (locally) the key is relative to.
    pub bucket: String,
    pub key: String,
    /// ETag or version id: a changed file is a new ledger item.
    pub etag: String,
    pub size: u64,
}

impl ObjectRef {
    /// The ledger id: a hash of bucket, key and ETag. Lineage columns carry this id, never the key
    /// (uploaders name files after patients).
    pub fn ledger_id(&self) -> String {
        let mut hash = Sha256::new();
        for part in [&self.bucket, &self.key, &self.etag] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        hex::encode(&hash.finalize()[..12])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LedgerStatus {
    Processing,
    Completed,
    Quarantined,
    /// A file of a Bulk export folder with no resources to load (manifest, log, error file).
    Skipped,
    Failed,
    /// Too big for this worker: a scale-out job (the Glue job on AWS) was started for it and
    /// records the final outcome itself.
    HandedOff,
}

impl LedgerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "PROCESSING",
            Self::Completed => "COMPLETED",
            Self::Quarantined => "QUARANTINED",
            Self::Skipped => "SKIPPED",
            Self::Failed => "FAILED",
            Self::HandedOff => "HANDED_OFF",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "PROCESSING" => Self::Processing,
            "COMPLETED" => Self::Completed,
            "QUARANTINED" => Self::Quarantined,
            "SKIPPED" => Self::Skipped,
            "FAILED" => Self::Failed,
            "HANDED_OFF" => Self::HandedOff,
            _ => return None,
        })
    }

    /// Final states are never processed again for the same object version (a handed-off object
    /// belongs to its scale-out job).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Quarantined | Self::Skipped | Self::HandedOff
        )
    }
}

impl fmt::Display for LedgerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Resources per type in a file (kept, or counted and skipped for types silver does not hold).
pub type ResourceCounts = BTreeMap<String, u64>;

/// A ledger item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub id: String,
    pub object: ObjectRef,
    pub tenant_id: String,
    pub status: LedgerStatus,
    pub attempts: u32,
    /// Until when (µs) the current PROCESSING claim holds; an expired claim may be taken over.
    pub lease_until: i64,
    pub counts: ResourceCounts,
    pub deleted: u64,
    pub rejected: u64,
    /// Resources whose `meta.lastUpdated` was later than the ingest time: ordered at the ingest time.
    #[serde(default)]
    pub future_last_updated: u64,
    /// Resources of erased patients, not loaded.
    #[serde(default)]
    pub erased: u64,
    pub silver_instants: Vec<String>,
    pub error: Option<String>,
    /// The scale-out job run that took a HANDED_OFF object over.
    pub handed_off_to: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The final outcome of processing one object.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub counts: ResourceCounts,
    /// Bundle entries with `request.method = DELETE` applied.
    pub deleted: u64,
    pub rejected: u64,
    /// Resources whose `meta.lastUpdated` was later than the ingest time: not trusted as an ordering
    /// beyond it (a clock ahead, or a forged date, would otherwise win over every later delete).
    #[serde(default)]
    pub future_last_updated: u64,
    /// Resources of erased patients (the patient, their encounters and conditions): not loaded.
    #[serde(default)]
    pub erased: u64,
    pub silver_instants: Vec<String>,
    pub error: Option<String>,
    /// The scale-out job run that took the object over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_off_to: Option<String>,
}

impl From<LedgerEntry> for Outcome {
    fn from(entry: LedgerEntry) -> Self {
        Self {
            counts: entry.counts,
            deleted: entry.deleted,
            rejected: entry.rejected,
            future_last_updated: entry.future_last_updated,
            erased: entry.erased,
            silver_instants: entry.silver_instants,
            error: entry.error,
            handed_off_to: entry.handed_off_to,
        }
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This worker owns the object now (`attempt` counts from 1).
    Claimed { attempt: u32 },
    /// Already COMPLETED, QUARANTINED, SKIPPED or HANDED_OFF: nothing to do.
    Done(LedgerEntry),
    /// Another worker holds an unexpired lease.
    Busy(LedgerEntry),
}

impl Claim {
    /// The answer when the conditional claim did not take: `current` says whether the object is
    /// done for good or still held by another worker.
    pub fn refused_by(current: LedgerEntry) -> Self {
        if current.status.is_final() {
            Self::Done(current)
        } else {
            Self::Busy(current)
        }
    }
}

#[async_trait]
pub trait Ledger: Send + Sync {
    /// Claims an object with a conditional write: succeeds when the item is absent, FAILED, or
    /// PROCESSING with an expired lease.
    async fn claim(
        &self,
        object: &ObjectRef,
        tenant_id: &str,
        now: i64,
        lease: Duration,
    ) -> Result<Claim>;

    /// Records the final status of an object claimed as `attempt`. Returns `false`, changing
    /// nothing, when the claim was lost meanwhile (its lease expired and another worker took over).
    async fn finish(
        &self,
        id: &str,
        attempt: u32,
        status: LedgerStatus,
        outcome: &Outcome,
        now: i64,
    ) -> Result<bool>;

    /// Claims a HANDED_OFF item for the scale-out job run `run_id` (PROCESSING, the next attempt,
    /// `handed_off_to` kept). Any other status refuses it, changing nothing: an item the job already
    /// finished is done, and one it failed or left with an expired lease is claimed again with
    /// [`Ledger::claim`].
    async fn take_over(&self, id: &str, now: i64, lease: Duration) -> Result<Claim>;

    async fn get(&self, id: &str) -> Result<Option<LedgerEntry>>;

    /// Every item, newest first.
    async fn list(&self) -> Result<Vec<LedgerEntry>>;
}

/// Where objects too big for this worker go: a job that runs the same pipeline with more memory
/// and time (the Glue job on AWS). `start` returns the job run id recorded in the ledger. The job
/// learns the object from the ledger item: its key may name a patient, and job arguments are
/// visible to whoever can list job runs.
#[async_trait]
pub trait ScaleOut: Send + Sync {
    async fn start(&self, tenant_id: &str, ledger_id: &str) -> Result<String>;
}

/// Where a message goes: analysts' refresh notices, or operators' alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    Notifications,
    Alerts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub topic: Topic,
    /// Machine-readable event name (`gold.refreshed`, `file.quarantined`, ...).
    pub event: String,
    pub tenant_id: Option<String>,
    pub subject: String,
    /// Readable body for e-mail subscribers: no PHI, small counts suppressed.
    pub text: String,
    /// Structured body for machine subscribers.
    pub data: serde_json::Value,
}

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn publish(&self, message: &Message) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_ids_change_with_any_part_and_hide_the_key() {
        let base = ObjectRef {
            bucket: "raw".into(),
            key: "t/jane-doe.json".into(),
            etag: "e1".into(),
            size: 1,
        };
        let id = base.ledger_id();
        assert_eq!(id.len(), 24);
        assert!(!id.contains("jane"));
        assert_ne!(
            id,
            ObjectRef {
                etag: "e2".into(),
                ..base.clone()
            }
            .ledger_id()
        );
        assert_ne!(
            id,
            ObjectRef {
                key: "t/other.json".into(),
                ..base.clone()
            }
            .ledger_id()
        );
        assert_eq!(id, ObjectRef { size: 99, ..base }.ledger_id());
    }
}
