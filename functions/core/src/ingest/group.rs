//! One file of a group: the object that was claimed, and where the file stands until its outcome.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{GetOptions, ObjectStore};

use super::FileResult;
use super::load::ParsedFile;
use crate::bulk_export::Companion;
use crate::ports::{ObjectRef, Outcome, ResourceCounts};
use crate::tenant::TenantId;
use crate::time::now_micros;

/// One file of a group, from its claim to its outcome.
pub(crate) struct GroupFile {
    pub(crate) claimed: Claimed,
    pub(crate) tenant: TenantId,
    pub(crate) object: ObjectRef,
    pub(crate) ledger_id: String,
    /// The ingest time: lineage, and the ordering of rows without `meta.lastUpdated`.
    pub(crate) now: i64,
    /// The ordering of the file's deletes (see
    /// [`LoadContext::delete_ordering`](super::LoadContext::delete_ordering)).
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
    pub(super) fn gone(
        store: &Arc<dyn ObjectStore>,
        key: &Path,
        bucket: &str,
        tenant: &TenantId,
    ) -> Self {
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
pub(super) fn pinned(etag: Option<&str>) -> GetOptions {
    GetOptions {
        if_match: etag.map(str::to_owned),
        ..GetOptions::default()
    }
}
