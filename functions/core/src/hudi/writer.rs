//! Upserts and deletes into a Hudi copy-on-write table, safe against crashes and concurrent writers.
//!
//! One commit:
//! 1. load the committed snapshot of the touched partitions;
//! 2. reserve a unique instant by creating `.hoodie/<instant>.commit.requested` with a
//!    create-if-absent put (two writers never share an instant, so never a file name);
//! 3. write `.hoodie/<instant>.inflight` listing the files about to be written (what a rollback
//!    deletes), then the new base files — invisible to readers until the instant completes;
//! 4. claim the next commit sequence number by creating `_metriccare/commits/<table>/<seq>.json`
//!    (create-if-absent: the linearisation point, the same idea as a Delta log entry). It holds the
//!    whole commit metadata;
//! 5. write `.hoodie/<instant>.commit`: now readers see the commit, whole.
//!
//! If step 4 finds the sequence taken, another writer committed since step 1. When its file groups
//! and ours are disjoint (different tenants, different buckets) ours are still based on the latest
//! state and we take the next number; otherwise we delete our files and start again from a fresh
//! snapshot, so no writer ever loses another's rows. A writer that dies after step 4 is completed
//! by the next one (the sequence file has the commit metadata); one that dies before it leaves only
//! invisible files, which the next writer removes once the instant is older than the stale limit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::instant::{Action, Instant};
use super::merge::{FileGroupMerge, Merged, empty_base_file};
use super::snapshot::{FileSlice, Snapshot, Timeline};
use super::staging::StagedRows;
use super::tiers::{BucketPlan, INSERT_TIERS, TierFile};
use super::tombstones::{TombstoneMap, Tombstones};
use super::{TableDef, avro_schema, tier_file_id};
use crate::blocking;
use crate::error::{CoreError, Result};
use crate::objects;
use crate::time::{hudi_instant, now_micros, parse_hudi_instant};

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOutcome {
    /// `None` when nothing changed (every incoming row stale or identical deletes): no commit.
    pub instant: Option<String>,
    pub sequence: Option<u64>,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Incoming rows older than the stored version (or superseded within the batch).
    pub ignored: u64,
    pub partitions: Vec<String>,
}

/// Sequence-file content: everything needed to complete the commit if its writer dies.
#[derive(Debug, Serialize, Deserialize)]
struct SequenceEntry {
    sequence: u64,
    instant: String,
    file_groups: Vec<(String, String)>,
    commit: Value,
    /// The instant's action; absent for a `commit` (entries keep the shape they always had).
    #[serde(default = "commit_action", skip_serializing_if = "is_commit_action")]
    action: String,
    /// Set on a no-op entry only: its instant was rolled back and may be reserved again, so the
    /// claimant recognises its own entry by this random token ([`claim_token`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    token: String,
}

impl SequenceEntry {
    fn is_noop(&self) -> bool {
        self.action == NOOP_ACTION
    }
}

/// A sequence entry without an instant: a group of deletes that found nothing to remove takes its
/// place in the commit order over the file groups it looked at, so a concurrent writer that
/// read the tombstones before this group recorded its own conflicts and starts again (without it,
/// an older insert racing the delete could land after it and bring the record back).
const NOOP_ACTION: &str = "noop";

fn commit_action() -> String {
    Action::Commit.name().to_owned()
}

fn is_commit_action(action: &str) -> bool {
    action == Action::Commit.name()
}

/// A commit about to claim its sequence number: what the entry records.
pub(super) struct ClaimedPlan<'a> {
    pub instant: &'a str,
    pub action: &'static str,
    /// (partition, file id) of every file group it writes or replaces.
    pub written: Vec<(String, String)>,
    /// The completed instant's metadata (its `.commit` or `.replacecommit` file).
    pub commit: String,
    /// See [`SequenceEntry::token`]; empty for a commit or replacecommit.
    pub token: String,
}

/// How old an abandoned pending instant must be before another writer removes its files. Longer
/// than any legitimate write (a Lambda runs 15 minutes at most).
pub(super) const STALE_PENDING_MICROS: i64 = 30 * 60 * 1_000_000;

/// The file in the sequence folder naming the latest claimed number (a hint, see
/// [`HudiTable::latest_sequence`]). Not a `<number>.json`, so no reader takes it for an entry.
const SEQUENCE_HINT: &str = "latest-hint";

const MAX_ATTEMPTS: usize = 20;

pub struct HudiTable {
    store: Arc<dyn ObjectStore>,
    def: TableDef,
    /// `_metriccare/commits/<table base>`: the commit sequence, outside the table folder.
    sequence_dir: Path,
    /// `_metriccare/sealed/<table base>`: one marker per instant that is committing or rolled back.
    sealed_dir: Path,
    /// Where deleted keys keep their delete's ordering, for tables whose deletes must stay deletes.
    tombstones: Option<Box<Tombstones>>,
    /// The size a file group may reach before table services re-size its partition.
    pub(super) file_group_bytes: Option<u64>,
}

impl HudiTable {
    /// Opens the table, creating `hoodie.properties` if the table does not exist yet. An existing
    /// table whose key, partition, precombine or bucket settings differ is refused.
    pub async fn open(store: Arc<dyn ObjectStore>, def: TableDef) -> Result<Self> {
        let properties_path = def.hoodie_path("hoodie.properties");
        let wanted = def.properties();
        match objects::read(store.as_ref(), &properties_path).await? {
            Some(existing) => def.check_properties(&String::from_utf8_lossy(&existing))?,
            // Another writer creating it meanwhile wrote the same properties.
            None => {
                objects::create(store.as_ref(), &properties_path, wanted.into()).await?;
            }
        }
        let control_dir = |kind: &str| {
            def.base
                .parts()
                .fold(Path::from("_metriccare").join(kind), |dir, part| {
                    dir.join(part)
                })
        };
        Ok(Self {
            sequence_dir: control_dir("commits"),
            sealed_dir: control_dir("sealed"),
            store,
            def,
            tombstones: None,
            file_group_bytes: None,
        })
    }

    /// Lets table services re-size a partition whose file groups average more than `bytes`
    /// (see [`super::sizing`]).
    pub fn with_file_sizing(mut self, bytes: u64) -> Self {
        self.file_group_bytes = Some(bytes);
        self
    }

    /// Opens the table with its tombstones (see [`super::tombstones`]): deletes are recorded
    /// there, and an upsert ordered at or before its key's tombstone is ignored.
    pub async fn open_with_tombstones(store: Arc<dyn ObjectStore>, def: TableDef) -> Result<Self> {
        let tombstones = Tombstones::open(store.clone(), &def).await?;
        let mut table = Self::open(store, def).await?;
        table.tombstones = Some(Box::new(tombstones));
        Ok(table)
    }

    pub fn tombstones(&self) -> Option<&Tombstones> {
        self.tombstones.as_deref()
    }

    pub fn def(&self) -> &TableDef {
        &self.def
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The committed snapshot (all partitions when `partitions` is `None`).
    pub async fn snapshot(&self, partitions: Option<&[String]>) -> Result<Snapshot> {
        Snapshot::load(self.store.as_ref(), &self.def, partitions).await
    }

    /// The latest commit sequence number and the partitions committed after `sequence`: the
    /// timeline in commit order, for incremental consumers (gold). The partitions are `None` when
    /// entries after `sequence` have been archived (a consumer that fell further behind than the
    /// kept window): every partition may have changed.
    pub async fn changes_since(&self, sequence: u64) -> Result<(u64, Option<BTreeSet<String>>)> {
        let latest = self.latest_sequence().await?;
        let mut partitions = BTreeSet::new();
        for number in sequence + 1..=latest {
            // Read, not completed: an entry may name an instant archival has removed.
            match self.read_sequence(number).await {
                // A no-op entry changed no snapshot.
                Ok(entry) if entry.is_noop() => {}
                Ok(entry) => partitions.extend(
                    entry
                        .file_groups
                        .into_iter()
                        .map(|(partition, _)| partition),
                ),
                Err(CoreError::Storage(object_store::Error::NotFound { .. })) => {
                    return Ok((latest, None));
                }
                Err(e) => return Err(e),
            }
        }
        Ok((latest, Some(partitions)))
    }

    /// Applies staged rows and deletes as one atomic commit (see [`HudiTable::commit_group`]).
    pub async fn commit_staged(&self, staged: &mut StagedRows) -> Result<CommitOutcome> {
        self.commit_group(std::slice::from_mut(staged)).await
    }

    /// Applies the staged rows and deletes of several files as one atomic commit: a group commit.
    /// The files count in the order given, each one's upserts before its deletes, as if committed
    /// one after the other, but every touched file group is rewritten once. Retries on conflicts
    /// with concurrent writers; the staged rows stay on disk until the caller drops them.
    pub async fn commit_group(&self, group: &mut [StagedRows]) -> Result<CommitOutcome> {
        blocking::in_place(|| group.iter_mut().try_for_each(StagedRows::seal))?;
        let mut partitions: Vec<String> =
            touched_buckets(group).into_iter().map(|(p, _)| p).collect();
        partitions.dedup();
        if partitions.is_empty() {
            return Ok(CommitOutcome::default());
        }
        if let Some(tombstones) = &self.tombstones {
            // Boxed: the tombstone table commits through this same method.
            Box::pin(tombstones.record(group)).await?;
        }
        for _ in 0..MAX_ATTEMPTS {
            let base_sequence = self.recover().await?;
            let snapshot = self.snapshot(Some(&partitions)).await?;
            // Each partition in the layout it has now (a re-size may have landed since staging).
            let mut layouts = BTreeMap::new();
            for partition in &partitions {
                let layout = snapshot.layout(&self.def, partition);
                // Re-reads and rewrites the partition's staged streams when its layout changed.
                blocking::in_place(|| {
                    group
                        .iter_mut()
                        .try_for_each(|staged| staged.relayout(partition, layout))
                })?;
                layouts.insert(partition.clone(), layout);
            }
            let group: &[StagedRows] = group;
            let touched_buckets = touched_buckets(group);
            // Every file group this batch could change or reads to find its keys (each tier of
            // each touched bucket), written or not: a commit that lands in one of them after our
            // snapshot invalidates our merge even where we decided to change nothing (a delete of
            // a key that another writer was inserting, or moving to another tier).
            let touched: BTreeSet<(String, String)> = touched_buckets
                .iter()
                .flat_map(|(partition, bucket)| {
                    (0..=INSERT_TIERS).map(|tier| {
                        let id =
                            tier_file_id(&self.def, partition, *bucket, layouts[partition], tier);
                        (partition.clone(), id)
                    })
                })
                .collect();
            let tombstoned = match &self.tombstones {
                Some(tombstones) => tombstones.load(&partitions).await?,
                None => TombstoneMap::new(),
            };
            let instant = self
                .reserve_instant(&snapshot.timeline, Action::Commit)
                .await?;
            let attempt = self
                .write_files(
                    group,
                    &touched_buckets,
                    &layouts,
                    &snapshot,
                    &tombstoned,
                    &instant,
                )
                .await;
            let (plan, outcome) = match attempt {
                Ok(done) => done,
                Err(e) => {
                    self.roll_back(&instant).await?;
                    return Err(e);
                }
            };
            // A group with deletes names in its sequence entry every file group it looked at, not
            // only those it wrote: where a delete found nothing (yet), an upsert of that key that
            // read the tombstones before this group recorded its own must conflict with it.
            let has_deletes = group.iter().any(|staged| staged.deletes().next().is_some());
            if plan.is_empty() {
                let ordered = if has_deletes {
                    let claim = ClaimedPlan {
                        instant: &instant,
                        action: NOOP_ACTION,
                        written: touched.iter().cloned().collect(),
                        commit: "null".to_owned(),
                        token: claim_token(),
                    };
                    // Claimed while the instant is still reserved; rolled back either way.
                    let claimed = self.claim_sequence(base_sequence, &claim, &touched).await?;
                    self.roll_back(&instant).await?;
                    claimed.is_some()
                } else {
                    self.roll_back(&instant).await?;
                    !self.changed_since(base_sequence, &touched).await?
                };
                if !ordered {
                    continue;
                }
                return Ok(CommitOutcome {
                    partitions,
                    ..outcome
                });
            }
            if !self.seal(&instant).await? {
                // A cleaner took this instant for abandoned (we were slower than the stale limit)
                // and removed its files: start again.
                tracing::warn!(table = %self.def.name, %instant, "write outlived the stale limit, retrying");
                continue;
            }
            let claim = ClaimedPlan {
                instant: &instant,
                action: Action::Commit.name(),
                written: if has_deletes {
                    touched.iter().cloned().collect()
                } else {
                    plan.iter()
                        .map(|f| (f.partition.clone(), f.file_id.clone()))
                        .collect()
                },
                commit: plan_commit_text(&self.def, &plan, None)?,
                token: String::new(),
            };
            match self.claim_sequence(base_sequence, &claim, &touched).await? {
                Some(sequence) => {
                    self.put(
                        &self
                            .def
                            .instant_path(Instant::completed(&instant, Action::Commit)),
                        claim.commit,
                    )
                    .await?;
                    return Ok(CommitOutcome {
                        instant: Some(instant),
                        sequence: Some(sequence),
                        partitions,
                        ..outcome
                    });
                }
                None => {
                    self.roll_back(&instant).await?;
                }
            }
        }
        Err(CoreError::Contention {
            table: self.def.name.clone(),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Completes a commit whose writer died after claiming its sequence number, removes the files
    /// of writers that died before, and returns the latest sequence number.
    pub(super) async fn recover(&self) -> Result<u64> {
        let latest = self.latest_sequence().await?;
        if latest > 0 {
            self.complete_sequence(latest).await?;
        }
        let timeline = Timeline::load(self.store.as_ref(), &self.def).await?;
        let now = now_micros();
        for (instant, written) in &timeline.pending {
            if now - written <= STALE_PENDING_MICROS {
                continue;
            }
            // Sealing decides between a slow owner and this cleaner: whoever seals first wins. An
            // owner that sealed long ago and never claimed a sequence number died in between (the
            // two are one write apart; a claimed instant was completed above).
            let abandoned = self.seal(instant).await?
                || now - self.sealed_at(instant).await? > STALE_PENDING_MICROS;
            if abandoned {
                tracing::warn!(table = %self.def.name, %instant, "rolling back an abandoned write");
                self.roll_back(instant).await?;
            }
        }
        Ok(latest)
    }

    /// Creates the instant's seal (create-if-absent). The owner seals before claiming a sequence
    /// number, a cleaner before removing an abandoned instant; `false` means the other was first.
    pub(super) async fn seal(&self, instant: &str) -> Result<bool> {
        objects::create(
            self.store.as_ref(),
            &self.seal_path(instant),
            PutPayload::new(),
        )
        .await
    }

    pub(super) fn seal_path(&self, instant: &str) -> Path {
        self.sealed_dir.clone().join(instant)
    }

    /// When the instant was sealed (µs).
    async fn sealed_at(&self, instant: &str) -> Result<i64> {
        let meta = self.store.head(&self.seal_path(instant)).await?;
        Ok(meta.last_modified.timestamp_micros())
    }

    /// Whether a commit after `base` touched any of the given file groups.
    async fn changed_since(&self, base: u64, groups: &BTreeSet<(String, String)>) -> Result<bool> {
        let latest = self.latest_sequence().await?;
        for sequence in base + 1..=latest {
            let entry = self.complete_sequence(sequence).await?;
            if entry.file_groups.iter().any(|g| groups.contains(g)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The number of the table's latest commit (0 before the first). Found without listing the
    /// sequence folder (whose size would grow with history): from the hint the last committer left,
    /// the first free number above it is searched for, doubling the step, then halving it. Numbers
    /// from the archival floor up are contiguous (each is claimed by a create-if-absent after the one
    /// before), so the search is exact. A lake without a hint (or one the archival floor passed) is
    /// listed once.
    pub async fn latest_sequence(&self) -> Result<u64> {
        let hint = objects::read(self.store.as_ref(), &self.sequence_hint_path())
            .await?
            .and_then(|text| std::str::from_utf8(&text).ok()?.trim().parse::<u64>().ok());
        let known = match hint {
            Some(0) => 0,
            Some(hint) if self.sequence_exists(hint).await? => hint,
            _ => return self.latest_sequence_listed().await,
        };
        let (mut present, mut step) = (known, 1u64);
        while self.sequence_exists(present + step).await? {
            present += step;
            step *= 2;
        }
        let mut absent = present + step;
        while absent - present > 1 {
            let middle = present + (absent - present) / 2;
            if self.sequence_exists(middle).await? {
                present = middle;
            } else {
                absent = middle;
            }
        }
        Ok(present)
    }

    async fn latest_sequence_listed(&self) -> Result<u64> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.sequence_dir))
            .await?;
        Ok(listing
            .objects
            .iter()
            .filter_map(|o| parse_sequence_file_name(o.location.filename()?))
            .max()
            .unwrap_or(0))
    }

    async fn sequence_exists(&self, sequence: u64) -> Result<bool> {
        match self.store.head(&self.sequence_path(sequence)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn sequence_hint_path(&self) -> Path {
        self.sequence_dir.clone().join(SEQUENCE_HINT)
    }

    /// Leaves the hint for the next writer's [`HudiTable::latest_sequence`]. Only a shortcut: a hint
    /// that is missing, or behind because two committers wrote theirs out of order, costs a few
    /// more requests, never a wrong answer, so a failure to write it fails nothing.
    async fn leave_sequence_hint(&self, sequence: u64) {
        let path = self.sequence_hint_path();
        if let Err(e) = self.store.put(&path, sequence.to_string().into()).await {
            tracing::warn!(table = %self.def.name, error = %e, "could not update the commit sequence hint");
        }
    }

    pub(super) fn sequence_path(&self, sequence: u64) -> Path {
        self.sequence_dir
            .clone()
            .join(format!("{sequence:020}.json"))
    }

    async fn read_sequence(&self, sequence: u64) -> Result<SequenceEntry> {
        let bytes = self
            .store
            .get(&self.sequence_path(sequence))
            .await?
            .bytes()
            .await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Makes sure the `.commit` of a claimed sequence number exists (idempotent: same bytes).
    async fn complete_sequence(&self, sequence: u64) -> Result<SequenceEntry> {
        let entry = self.read_sequence(sequence).await?;
        if entry.is_noop() {
            return Ok(entry);
        }
        let Some(action) = Action::from_name(&entry.action) else {
            // A newer writer's action: it has no timeline file this writer knows to complete.
            tracing::warn!(table = %self.def.name, sequence, action = %entry.action, "sequence entry with an unknown action left as it is");
            return Ok(entry);
        };
        let commit_path = self
            .def
            .instant_path(Instant::completed(&entry.instant, action));
        if self.exists(&commit_path).await? {
            return Ok(entry);
        }
        // No completed file: either its writer stopped after the claim (its requested file is
        // still there), or archival removed the instant (requested file first, completed last),
        // which must not come back: it would cut the active timeline in two.
        let requested = self
            .def
            .instant_path(Instant::requested(&entry.instant, action));
        if self.exists(&requested).await? {
            tracing::warn!(table = %self.def.name, instant = %entry.instant, "completing a commit whose writer stopped");
            self.put(&commit_path, entry.commit.to_string()).await?;
        }
        Ok(entry)
    }

    /// Claims the first free sequence number after `base` whose earlier claimants touched none of
    /// the file groups of `touched`. `None`: a conflicting commit landed first; start again.
    pub(super) async fn claim_sequence(
        &self,
        base: u64,
        plan: &ClaimedPlan<'_>,
        touched: &BTreeSet<(String, String)>,
    ) -> Result<Option<u64>> {
        let instant = plan.instant;
        let entry_for = |sequence: u64| -> Result<Bytes> {
            let entry = SequenceEntry {
                sequence,
                instant: instant.to_owned(),
                file_groups: plan.written.clone(),
                commit: serde_json::from_str(&plan.commit)?,
                action: plan.action.to_owned(),
                token: plan.token.clone(),
            };
            Ok(Bytes::from(serde_json::to_vec(&entry)?))
        };
        let mut sequence = base + 1;
        loop {
            let payload = PutPayload::from(entry_for(sequence)?);
            let path = self.sequence_path(sequence);
            if objects::create(self.store.as_ref(), &path, payload).await? {
                self.leave_sequence_hint(sequence).await;
                return Ok(Some(sequence));
            }
            let other = self.complete_sequence(sequence).await?;
            // A retried create whose first attempt did land finds our own entry.
            if other.instant == instant && other.action == plan.action && other.token == plan.token
            {
                return Ok(Some(sequence));
            }
            if other.file_groups.iter().any(|g| touched.contains(g)) {
                tracing::info!(table = %self.def.name, sequence, "commit conflict, retrying on fresh state");
                return Ok(None);
            }
            sequence += 1;
        }
    }

    /// Reserves an instant later than every instant on the timeline and unique among writers.
    pub(super) async fn reserve_instant(
        &self,
        timeline: &Timeline,
        action: Action,
    ) -> Result<String> {
        let newest = timeline
            .newest_instant()
            .and_then(parse_hudi_instant)
            .unwrap_or(0);
        let mut micros = now_micros().max(newest + 1000);
        loop {
            let instant = hudi_instant(micros);
            // An instant is unique whatever its action: create ours, then look for the other
            // action's. Of two writers that created both, each sees the other's and gives the
            // instant up, so no two ever share one.
            let path = self.def.instant_path(Instant::requested(&instant, action));
            if objects::create(self.store.as_ref(), &path, PutPayload::new()).await? {
                let other = self
                    .def
                    .instant_path(Instant::requested(&instant, action.other()));
                if !self.exists(&other).await? {
                    return Ok(instant);
                }
                self.delete_if_present(&path).await?;
            }
            micros += 1000;
        }
    }

    /// Deletes an uncommitted instant's base files and timeline files.
    pub(super) async fn roll_back(&self, instant: &str) -> Result<()> {
        for action in Action::ALL {
            let inflight = self.def.instant_path(Instant::inflight(instant, action));
            match self.store.get(&inflight).await {
                Ok(found) => {
                    let planned: Value =
                        serde_json::from_slice(&found.bytes().await?).unwrap_or_default();
                    for (partition, file) in planned_paths(&planned) {
                        let path = self.def.partition_dir(&partition).join(file.as_str());
                        self.delete_if_present(&path).await?;
                    }
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            self.delete_if_present(&inflight).await?;
            self.delete_if_present(&self.def.instant_path(Instant::requested(instant, action)))
                .await?;
        }
        Ok(())
    }

    async fn exists(&self, path: &Path) -> Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_if_present(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn put(&self, path: &Path, text: String) -> Result<()> {
        self.store.put(path, PutPayload::from(text)).await?;
        Ok(())
    }

    /// Merges every touched bucket with its committed tiers and writes the new base files, one
    /// bucket at a time (see [`super::tiers`] for which tiers a bucket's rows go to).
    async fn write_files(
        &self,
        group: &[StagedRows],
        touched: &[(String, u32)],
        layouts: &BTreeMap<String, u32>,
        snapshot: &Snapshot,
        tombstoned: &TombstoneMap,
        instant: &str,
    ) -> Result<(Vec<PlannedFile>, CommitOutcome)> {
        let none = HashMap::new();
        let token = write_token();
        // Which tiers a bucket writes is known only once its files are read: the inflight names
        // every tier of every touched bucket, so that a rollback finds whatever was written.
        let planned: Vec<PlannedFile> = touched
            .iter()
            .flat_map(|(partition, bucket)| {
                (0..=INSERT_TIERS).map(|tier| {
                    let layout = layouts[partition];
                    let file_id = tier_file_id(&self.def, partition, *bucket, layout, tier);
                    PlannedFile {
                        partition: partition.clone(),
                        file_name: format!("{file_id}_{token}_{instant}.parquet"),
                        file_id,
                        stats: Value::Null,
                    }
                })
            })
            .collect();
        self.put(
            &self
                .def
                .instant_path(Instant::inflight(instant, Action::Commit)),
            inflight_text(&planned.iter().collect::<Vec<_>>()),
        )
        .await?;

        let mut outcome = CommitOutcome::default();
        let mut written = Vec::new();
        for (bucket_files, (partition, bucket)) in
            planned.chunks(INSERT_TIERS as usize + 1).zip(touched)
        {
            let slice_of = |tier: u32| {
                let id = &bucket_files[tier as usize].file_id;
                snapshot.slices.get(&(partition.clone(), id.clone()))
            };
            let mut copies = Vec::new();
            for tier in 0..=INSERT_TIERS {
                if let Some(slice) = slice_of(tier) {
                    copies.push((tier, local_copy(self.store.as_ref(), &slice.path).await?));
                }
            }
            let replace = group.iter().any(|staged| staged.replaces(partition));
            // Reads the committed files' footers and every staged key of the bucket.
            let (committed, plan) = blocking::in_place(|| -> Result<_> {
                let committed = copies
                    .iter()
                    .map(|(tier, file)| TierFile::open(*tier, file))
                    .collect::<Result<Vec<_>>>()?;
                let plan = if replace {
                    BucketPlan::replace(&committed)
                } else {
                    BucketPlan::upsert(&self.def, group, partition, *bucket, &committed)?
                };
                Ok((committed, plan))
            })?;
            let file_of = |tier: u32| committed.iter().find(|t| t.tier == tier).map(|t| t.file);
            for merge in &plan.merges {
                let target = &bucket_files[merge.tier as usize];
                let carried: Vec<&std::fs::File> =
                    merge.carried.iter().filter_map(|t| file_of(*t)).collect();
                let mut out = std::io::BufWriter::new(tempfile::tempfile()?);
                let merged = blocking::in_place(|| {
                    FileGroupMerge {
                        def: &self.def,
                        group,
                        partition,
                        bucket: *bucket,
                        existing: file_of(merge.tier),
                        carried: &carried,
                        accepts: &|key| plan.accepts(merge, key),
                        replace,
                        tombstones: tombstoned.get(partition).unwrap_or(&none),
                        instant,
                        file_id: &target.file_id,
                        file_name: &target.file_name,
                    }
                    .run(&mut out)
                })?;
                outcome.ignored += merged.ignored;
                if !merged.changed {
                    continue;
                }
                outcome.inserted += merged.inserted;
                outcome.updated += merged.updated;
                outcome.deleted += merged.deleted;
                let file = out
                    .into_inner()
                    .map_err(|e| CoreError::Io(e.into_error()))?;
                written.push(
                    self.upload_slice(target, slice_of(merge.tier), file, &merged, instant)
                        .await?,
                );
                // The carried tiers' rows now live in `target`: each is left empty.
                for tier in &merge.carried {
                    let emptied = &bucket_files[*tier as usize];
                    let file = empty_base_file(&self.def)?;
                    let nothing = Merged::default();
                    written.push(
                        self.upload_slice(emptied, slice_of(*tier), file, &nothing, instant)
                            .await?,
                    );
                }
            }
        }
        Ok((written, outcome))
    }

    /// Uploads one new slice of a file group and returns it with its Hudi write stats.
    async fn upload_slice(
        &self,
        target: &PlannedFile,
        previous: Option<&FileSlice>,
        file: std::fs::File,
        merged: &Merged,
        instant: &str,
    ) -> Result<PlannedFile> {
        let dir = self.def.partition_dir(&target.partition);
        let size = objects::upload_file(
            self.store.as_ref(),
            &dir.clone().join(target.file_name.as_str()),
            file,
        )
        .await?;
        self.ensure_partition_metadata(&dir, instant).await?;
        let stats = json!({
            "fileId": target.file_id,
            "path": format!("{}/{}", target.partition, target.file_name),
            "prevCommit": previous.map_or("null".to_owned(), |s| s.instant.clone()),
            "numWrites": merged.rows,
            "numDeletes": merged.deleted,
            "numUpdateWrites": merged.updated,
            "numInserts": merged.inserted,
            "totalWriteBytes": size,
            "totalWriteErrors": 0,
            "partitionPath": target.partition,
            "fileSizeInBytes": size,
        });
        Ok(PlannedFile {
            stats,
            ..target.clone()
        })
    }

    pub(super) async fn ensure_partition_metadata(&self, dir: &Path, instant: &str) -> Result<()> {
        let path = dir.clone().join(".hoodie_partition_metadata");
        let text = format!("#partition metadata\ncommitTime={instant}\npartitionDepth=1\n");
        // Written once per partition; an existing one says the same.
        objects::create(self.store.as_ref(), &path, text.into()).await?;
        Ok(())
    }
}

/// `<20-digit sequence>.json` → the sequence number.
pub(super) fn parse_sequence_file_name(name: &str) -> Option<u64> {
    name.strip_suffix(".json")?.parse::<u64>().ok()
}

/// Every (partition, bucket) some file of the group writes to or deletes from, in order.
fn touched_buckets(group: &[StagedRows]) -> Vec<(String, u32)> {
    let mut touched: Vec<(String, u32)> = group.iter().flat_map(StagedRows::touched).collect();
    touched.sort();
    touched.dedup();
    touched
}

#[derive(Debug, Clone)]
pub(super) struct PlannedFile {
    pub partition: String,
    pub file_id: String,
    pub file_name: String,
    pub stats: Value,
}

/// The committed base file as a local file the merge can read in batches: a local lake's file
/// itself, an object store's streamed to a temporary file (never held in memory).
pub(super) async fn local_copy(store: &dyn ObjectStore, path: &Path) -> Result<std::fs::File> {
    match store.get(path).await?.payload {
        GetResultPayload::File(file, _) => Ok(file),
        GetResultPayload::Stream(mut stream) => {
            // Written through Tokio's file, whose writes run on the blocking pool.
            let mut copy = tokio::io::BufWriter::with_capacity(
                1 << 20,
                tokio::fs::File::from_std(tempfile::tempfile()?),
            );
            while let Some(chunk) = stream.next().await {
                copy.write_all(&chunk?).await?;
            }
            copy.flush().await?;
            Ok(copy.into_inner().into_std().await)
        }
    }
}

/// A write token unique to this process and attempt (Hudi's `<task>-<stage>-<attempt>` shape).
pub(super) fn write_token() -> String {
    let nanos = now_micros().rem_euclid(1_000_000);
    format!("{}-{}-0", std::process::id() % 100_000, nanos)
}

/// A token no other claim shares: the per-process random keys of the standard library's hasher,
/// with the clock mixed in (no random-number crate for one value).
fn claim_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_i64(now_micros());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

pub(super) fn inflight_text(plan: &[&PlannedFile]) -> String {
    let mut by_partition: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for file in plan {
        by_partition
            .entry(&file.partition)
            .or_default()
            .push(json!({
                "fileId": file.file_id,
                "path": format!("{}/{}", file.partition, file.file_name),
                "partitionPath": file.partition,
            }));
    }
    json!({"partitionToWriteStats": by_partition, "compacted": false, "extraMetadata": {}, "operationType": "UPSERT"})
        .to_string()
}

/// (partition, file name) of every file an inflight instant planned to write.
fn planned_paths(inflight: &Value) -> Vec<(String, String)> {
    inflight["partitionToWriteStats"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|s| {
            let (partition, file) = s["path"].as_str()?.split_once('/')?;
            Some((partition.to_owned(), file.to_owned()))
        })
        .collect()
}

/// A completed instant's metadata: the write stats of its files and, for a `replacecommit`, the
/// file groups it replaces (`partitionToReplaceFileIds`, what Hudi readers exclude).
pub(super) fn plan_commit_text(
    def: &TableDef,
    plan: &[PlannedFile],
    replaced: Option<&BTreeMap<String, Vec<String>>>,
) -> Result<String> {
    let mut by_partition: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for file in plan {
        by_partition
            .entry(&file.partition)
            .or_default()
            .push(&file.stats);
    }
    let schema = avro_schema(&def.name, &def.data_schema)?;
    Ok(match replaced {
        None => json!({
            "partitionToWriteStats": by_partition,
            "compacted": false,
            "extraMetadata": {"schema": schema},
            "operationType": "UPSERT",
        }),
        Some(replaced) => json!({
            "partitionToWriteStats": by_partition,
            "partitionToReplaceFileIds": replaced,
            "compacted": false,
            "extraMetadata": {"schema": schema},
            "operationType": "INSERT_OVERWRITE",
        }),
    }
    .to_string())
}
