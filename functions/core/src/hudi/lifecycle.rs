//! Table services: cleaning and archival, so that a table stays small and its commits stay cheap
//! after years of daily drops. They run inline after each commit (the writer's caller decides), on
//! the partitions the commit touched, without an operator.
//!
//! - **Cleaning** deletes, per file group, the base files no snapshot in the retention window needs:
//!   a slice is kept while it is the latest, while it was the latest as of one of the newest
//!   `retain_commits` completed instants, or while it was replaced less than `retain_hours` ago.
//!   Base files of writes that never completed (no timeline entry, older than the stale limit) go too.
//! - **Archival** removes completed instants beyond the newest `active_instants` from `.hoodie/`.
//!   Hudi (and this writer's snapshot, [`super::snapshot::Timeline::is_committed`]) takes a base file
//!   older than the first active instant as committed, so archival never passes a pending instant:
//!   its files would then look committed.
//! - **Control files** follow: the seal of an archived instant is deleted with it, and commit-sequence
//!   entries below the newest [`SEQUENCES_KEPT`] are deleted (a gold refresh that fell further behind
//!   recomputes every tenant; see [`super::HudiTable::changes_since`]).
//!
//! Nothing here lists a folder whose size grows with history: a partition folder holds the retained
//! slices, `.hoodie/` the active instants, and the sequence entries to delete are known by number.
//!
//! What a run did is kept in `_metriccare/services/<table path>.json` (totals and the last run), for
//! `metriccare status`.

use std::collections::BTreeMap;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::instant::Instant;
use super::snapshot::{Timeline, parse_base_file_name, replaced_file_groups};
use super::writer::STALE_PENDING_MICROS;
use super::{HudiTable, TableDef, layout_of};
use crate::error::Result;
use crate::objects;
use crate::time::{now_micros, parse_hudi_instant};

/// Commit-sequence entries kept below the latest: a gold refresh that is at most this many commits
/// of one table behind reads only what changed.
pub const SEQUENCES_KEPT: u64 = 200;

/// How long file slices and instants are kept (DESIGN, "Table lifecycle").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Slices needed by a snapshot as of any of the newest this many completed commits are kept.
    pub retain_commits: usize,
    /// Slices replaced less than this many hours ago are kept (queries that started before).
    pub retain_hours: u64,
    /// Completed instants kept in `.hoodie/`; older ones are archived.
    pub active_instants: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            retain_commits: 10,
            retain_hours: 24,
            active_instants: 30,
        }
    }
}

/// What a services run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicesReport {
    /// Base files of replaced slices deleted by cleaning.
    pub cleaned_files: u64,
    pub cleaned_bytes: u64,
    /// Base files of writes that never completed.
    pub failed_write_files: u64,
    /// Instants moved out of the active timeline.
    pub archived_instants: u64,
    /// Seals and commit-sequence entries deleted.
    pub control_files: u64,
    /// Partitions laid out in more buckets (`replacecommit`s, see [`super::sizing`]).
    #[serde(default)]
    pub resized_partitions: u64,
}

impl ServicesReport {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    fn add(&mut self, other: &Self) {
        self.cleaned_files += other.cleaned_files;
        self.cleaned_bytes += other.cleaned_bytes;
        self.failed_write_files += other.failed_write_files;
        self.archived_instants += other.archived_instants;
        self.control_files += other.control_files;
        self.resized_partitions += other.resized_partitions;
    }
}

/// The services record of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicesState {
    pub table: String,
    /// When services last removed something (µs).
    pub last_run_at: i64,
    pub last_run: ServicesReport,
    pub totals: ServicesReport,
    /// Commit-sequence entries up to this number have been deleted.
    pub sequence_floor: u64,
}

/// Where the services record of the table at `base` lives.
pub fn services_state_path(base: &Path) -> Path {
    base.parts()
        .fold(Path::from("_metriccare").join("services"), |dir, part| {
            dir.join(part)
        })
        .join("state.json")
}

/// A partition's live file groups as its cleaning found them.
struct LiveFileGroups {
    /// Bytes of the newest committed slice of each file group not replaced.
    bytes: u64,
    /// The layout (bucket count) their ids belong to; `None` for an empty partition.
    layout: Option<u32>,
}

impl LiveFileGroups {
    /// Whether the file groups average more than `target` bytes in a layout that can still grow
    /// ([`HudiTable::resize_partition`] checks again against a snapshot).
    fn outgrows(&self, def: &TableDef, target: u64) -> bool {
        self.layout
            .is_some_and(|layout| super::sizing::outgrows(def, self.bytes, layout, target))
    }
}

/// One base file found in a partition folder.
struct BaseFile {
    instant: String,
    path: Path,
    size: u64,
}

impl HudiTable {
    /// Cleans the given partitions, archives the timeline and trims the control files. Safe to run
    /// beside writers and other runs: it deletes only what no snapshot in the window needs, and a
    /// file deleted twice is no error.
    ///
    /// `claimed` is the commit sequence number the caller's commit just claimed, if any: the
    /// trimming of sequence entries counts back from it instead of searching for the latest (a
    /// later claim by another writer only leaves an entry more for the next run).
    pub async fn run_services(
        &self,
        partitions: &[String],
        claimed: Option<u64>,
        retention: &Retention,
    ) -> Result<ServicesReport> {
        let now = now_micros();
        let mut report = ServicesReport::default();
        let timeline = Timeline::load(self.store().as_ref(), self.def()).await?;
        let replaced = replaced_file_groups(self.store().as_ref(), self.def(), &timeline).await?;
        if let Some(tombstones) = self.tombstones() {
            // The tombstone table keeps its own record (`_metriccare/services/_metriccare/...`).
            Box::pin(tombstones.table().run_services(partitions, None, retention)).await?;
        }
        let mut oversized = Vec::new();
        for partition in partitions {
            let live = self
                .clean_partition(partition, &timeline, &replaced, retention, now, &mut report)
                .await?;
            if let Some(target) = self.file_group_bytes
                && live.outgrows(self.def(), target)
            {
                oversized.push(partition);
            }
        }
        self.archive(&timeline, &replaced, retention, &mut report)
            .await?;
        // Decided from the cleaning's listing: a partition that fits costs no further request.
        if let Some(target) = self.file_group_bytes {
            for partition in oversized {
                if self.resize_partition(partition, target).await?.is_some() {
                    report.resized_partitions += 1;
                }
            }
        }
        let path = services_state_path(&self.def().base);
        let mut state: ServicesState = match objects::read(self.store().as_ref(), &path).await? {
            Some(text) => serde_json::from_slice(&text).unwrap_or_default(),
            None => ServicesState::default(),
        };
        let latest = match claimed {
            Some(sequence) => sequence,
            None => self.latest_sequence().await?,
        };
        let floor = latest.saturating_sub(SEQUENCES_KEPT);
        if floor > state.sequence_floor {
            let stale: Vec<Path> = (state.sequence_floor + 1..=floor)
                .map(|sequence| self.sequence_path(sequence))
                .collect();
            report.control_files += self.delete_all(stale).await?;
            state.sequence_floor = floor;
        } else if report.is_empty() {
            return Ok(report);
        }
        state.table = self.def().name.clone();
        state.last_run_at = now;
        state.last_run = report;
        state.totals.add(&report);
        self.store()
            .put(&path, PutPayload::from(serde_json::to_vec_pretty(&state)?))
            .await?;
        if !report.is_empty() {
            tracing::info!(
                table = %self.def().name,
                cleaned_files = report.cleaned_files,
                cleaned_bytes = report.cleaned_bytes,
                failed_write_files = report.failed_write_files,
                archived_instants = report.archived_instants,
                control_files = report.control_files,
                "table services"
            );
        }
        Ok(report)
    }

    async fn clean_partition(
        &self,
        partition: &str,
        timeline: &Timeline,
        replaced: &BTreeMap<(String, String), String>,
        retention: &Retention,
        now: i64,
        report: &mut ServicesReport,
    ) -> Result<LiveFileGroups> {
        let listing = self
            .store()
            .list_with_delimiter(Some(&self.def().partition_dir(partition)))
            .await?;
        let mut groups: BTreeMap<String, Vec<BaseFile>> = BTreeMap::new();
        let mut doomed = Vec::new();
        for object in listing.objects {
            let Some((file_id, instant)) =
                object.location.filename().and_then(parse_base_file_name)
            else {
                continue;
            };
            let file = BaseFile {
                instant: instant.to_owned(),
                path: object.location.clone(),
                size: object.size,
            };
            if timeline.is_committed(instant) {
                groups.entry(file_id.to_owned()).or_default().push(file);
            } else if !timeline.pending.contains_key(instant)
                && parse_hudi_instant(instant).is_some_and(|t| now - t > STALE_PENDING_MICROS)
            {
                // No timeline entry and older than any write can take: a failed write's file.
                report.failed_write_files += 1;
                doomed.push(file.path);
            }
        }
        // A snapshot as of this instant (or a later one) must still be readable.
        let oldest_kept_commit = timeline
            .completed
            .iter()
            .rev()
            .nth(retention.retain_commits.max(1) - 1)
            .or(timeline.completed.first())
            .cloned()
            .unwrap_or_default();
        let replaced_before = now - retention.retain_hours as i64 * 3_600 * 1_000_000;
        let mut live = LiveFileGroups {
            bytes: 0,
            layout: None,
        };
        for (file_id, slices) in &groups {
            if !replaced.contains_key(&(partition.to_owned(), file_id.clone())) {
                let newest = slices.iter().max_by(|a, b| a.instant.cmp(&b.instant));
                live.bytes += newest.map_or(0, |slice| slice.size);
                live.layout = live.layout.or_else(|| {
                    layout_of(self.def(), partition, file_id).map(|(layout, _)| layout)
                });
            }
        }
        for (file_id, mut slices) in groups {
            slices.sort_by(|a, b| a.instant.cmp(&b.instant));
            // What ended each slice: the next slice, or for the last slice of a replaced file
            // group the `replacecommit` that replaced the group.
            let group_replaced_at = replaced.get(&(partition.to_owned(), file_id));
            let ends = slices
                .iter()
                .skip(1)
                .map(|next| Some(next.instant.as_str()))
                .chain([group_replaced_at.map(String::as_str)]);
            for (slice, ended_at) in slices.iter().zip(ends) {
                let Some(ended_at) = ended_at else {
                    continue;
                };
                let needed_by_window = ended_at > oldest_kept_commit.as_str();
                // Instants can run ahead of the clock (a commit is at least 1 ms after the one
                // before): with no hours to keep, none counts as recent.
                let ended_recently = retention.retain_hours > 0
                    && parse_hudi_instant(ended_at).is_none_or(|t| t > replaced_before);
                if !needed_by_window && !ended_recently {
                    report.cleaned_files += 1;
                    report.cleaned_bytes += slice.size;
                    doomed.push(slice.path.clone());
                }
            }
        }
        self.delete_all(doomed).await?;
        Ok(live)
    }

    /// Moves completed instants beyond the newest `active_instants` (and older than every pending
    /// instant) out of `.hoodie/`. The `.commit` goes last: an instant interrupted half-way is
    /// still complete, never pending (a pending instant's files would be rolled back).
    async fn archive(
        &self,
        timeline: &Timeline,
        replaced: &BTreeMap<(String, String), String>,
        retention: &Retention,
        report: &mut ServicesReport,
    ) -> Result<()> {
        let completed: Vec<&String> = timeline.completed.iter().collect();
        let keep = retention.active_instants.max(1);
        if completed.len() <= keep {
            return Ok(());
        }
        let mut cut = completed[completed.len() - keep].clone();
        if let Some(oldest_pending) = timeline.pending.keys().next() {
            cut = cut.min(oldest_pending.clone());
        }
        // A `replacecommit` stays while files of the file groups it replaced remain: without it,
        // readers would take those groups for live ones.
        if let Some(blocking) = self.replacecommit_with_files(replaced, &cut).await? {
            cut = cut.min(blocking);
        }
        let cut = cut.as_str();
        let archived: Vec<&String> = completed
            .into_iter()
            .take_while(|instant| instant.as_str() < cut)
            .collect();
        if archived.is_empty() {
            return Ok(());
        }
        let mut first = Vec::new();
        for instant in &archived {
            let action = timeline.action(instant);
            first.push(self.def().instant_path(Instant::requested(instant, action)));
            first.push(self.def().instant_path(Instant::inflight(instant, action)));
            first.push(self.seal_path(instant));
        }
        report.control_files += self.delete_all(first).await?;
        // Oldest first, one at a time: a reader listing `.hoodie/` meanwhile sees the active
        // timeline shortened from its start, never with a gap (an instant inside a gap would look
        // like a failed write, its files neither committed nor before the first instant).
        for instant in &archived {
            let action = timeline.action(instant);
            let completed = self.def().instant_path(Instant::completed(instant, action));
            self.delete_all(vec![completed]).await?;
        }
        report.archived_instants += archived.len() as u64;
        Ok(())
    }

    /// The oldest `replacecommit` before `cut` some of whose replaced file groups still have files.
    async fn replacecommit_with_files(
        &self,
        replaced: &BTreeMap<(String, String), String>,
        cut: &str,
    ) -> Result<Option<String>> {
        let mut by_partition: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
        for ((partition, file_id), instant) in replaced {
            if instant.as_str() < cut {
                by_partition
                    .entry(partition)
                    .or_default()
                    .push((file_id, instant));
            }
        }
        let mut oldest: Option<String> = None;
        for (partition, groups) in by_partition {
            let listing = self
                .store()
                .list_with_delimiter(Some(&self.def().partition_dir(partition)))
                .await?;
            let present: std::collections::BTreeSet<&str> = listing
                .objects
                .iter()
                .filter_map(|o| parse_base_file_name(o.location.filename()?).map(|(id, _)| id))
                .collect();
            for (file_id, instant) in groups {
                if present.contains(file_id) && oldest.as_deref().is_none_or(|o| instant < o) {
                    oldest = Some(instant.to_owned());
                }
            }
        }
        Ok(oldest)
    }

    /// Deletes every path (in bulk where the store can: one request per 1,000 keys on S3); a path
    /// already gone is no error. Returns how many were there.
    async fn delete_all(&self, paths: Vec<Path>) -> Result<u64> {
        if paths.is_empty() {
            return Ok(0);
        }
        let locations = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut results = self.store().delete_stream(locations);
        let mut deleted = 0;
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(deleted)
    }
}

/// The services record of a table, if services ever removed anything from it.
pub async fn read_services_state(
    store: &dyn ObjectStore,
    base: &Path,
) -> Result<Option<ServicesState>> {
    Ok(objects::read(store, &services_state_path(base))
        .await?
        .and_then(|text| serde_json::from_slice(&text).ok()))
}
