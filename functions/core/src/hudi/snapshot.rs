//! The latest committed state of a table: its timeline and, per file group, the newest base file
//! whose instant is completed. Uncommitted files (a writer still running, or one that crashed) are
//! never part of a snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::TableDef;
use super::instant::{Action, Instant, State};
use crate::error::Result;

/// One base file: the newest version of a file group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSlice {
    pub partition: String,
    pub file_id: String,
    pub instant: String,
    pub path: Path,
    pub size: u64,
}

/// A table's timeline: which instants completed and which are pending (requested or inflight).
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub completed: BTreeSet<String>,
    /// The completed instants that are `replacecommit`s (file groups re-sized): they name the file
    /// groups they replaced.
    pub replacecommits: BTreeSet<String>,
    /// Pending instants with the time their newest timeline file was written (µs).
    pub pending: BTreeMap<String, i64>,
}

impl Timeline {
    pub async fn load(store: &dyn ObjectStore, def: &TableDef) -> Result<Self> {
        let listing = store
            .list_with_delimiter(Some(&def.base.clone().join(".hoodie")))
            .await?;
        let mut timeline = Timeline::default();
        for object in listing.objects {
            let Some(name) = object.location.filename() else {
                continue;
            };
            let Some(instant) = Instant::parse(name) else {
                continue;
            };
            let time = instant.time.to_owned();
            match (instant.state, instant.action) {
                (State::Completed, Action::Commit) => {
                    timeline.completed.insert(time);
                }
                (State::Completed, Action::ReplaceCommit) => {
                    timeline.completed.insert(time.clone());
                    timeline.replacecommits.insert(time);
                }
                (State::Requested | State::Inflight, _) => {
                    let written = object.last_modified.timestamp_micros();
                    let entry = timeline.pending.entry(time).or_insert(written);
                    *entry = (*entry).max(written);
                }
            }
        }
        let completed = timeline.completed.clone();
        timeline
            .pending
            .retain(|instant, _| !completed.contains(instant));
        Ok(timeline)
    }

    /// The newest instant of any state: a new instant must be later than this.
    pub fn newest_instant(&self) -> Option<&str> {
        let completed = self.completed.last().map(String::as_str);
        let pending = self.pending.keys().next_back().map(String::as_str);
        completed.max(pending)
    }

    /// The action of a completed instant.
    pub(crate) fn action(&self, instant: &str) -> Action {
        if self.replacecommits.contains(instant) {
            Action::ReplaceCommit
        } else {
            Action::Commit
        }
    }

    /// Whether files written at `instant` are committed. As in Hudi, an instant older than the first
    /// active completed instant has been archived: it completed (archival never passes a pending
    /// instant, and the files of failed writes are removed before it moves on).
    pub fn is_committed(&self, instant: &str) -> bool {
        if self.completed.contains(instant) {
            return true;
        }
        self.completed
            .first()
            .is_some_and(|first| instant < first.as_str())
            && !self.pending.contains_key(instant)
    }
}

/// The committed state of a table.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub timeline: Timeline,
    /// The table's schema, which every batch read is given (see [`super::conform`]).
    pub schema: SchemaRef,
    /// Latest committed slice per (partition, file id) of every live file group (not replaced).
    pub slices: BTreeMap<(String, String), FileSlice>,
}

/// The file groups the completed `replacecommit`s of the timeline replaced: (partition, file id)
/// → the replacing instant. Readers exclude them, as Hudi's do.
pub async fn replaced_file_groups(
    store: &dyn ObjectStore,
    def: &TableDef,
    timeline: &Timeline,
) -> Result<BTreeMap<(String, String), String>> {
    let mut replaced = BTreeMap::new();
    for instant in &timeline.replacecommits {
        let path = def.instant_path(Instant::completed(instant, Action::ReplaceCommit));
        let bytes = match store.get(&path).await {
            Ok(found) => found.bytes().await?,
            // Archived meanwhile: its replaced file groups were cleaned before.
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let metadata: serde_json::Value = serde_json::from_slice(&bytes)?;
        let by_partition = metadata["partitionToReplaceFileIds"].as_object();
        for (partition, ids) in by_partition.into_iter().flatten() {
            for id in ids
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|id| id.as_str())
            {
                replaced.insert((partition.clone(), id.to_owned()), instant.clone());
            }
        }
    }
    Ok(replaced)
}

impl Snapshot {
    /// Loads the snapshot of the given partitions (all partitions when `None`).
    pub async fn load(
        store: &dyn ObjectStore,
        def: &TableDef,
        partitions: Option<&[String]>,
    ) -> Result<Self> {
        let timeline = Timeline::load(store, def).await?;
        let replaced = replaced_file_groups(store, def, &timeline).await?;
        let partitions = match partitions {
            Some(list) => list.to_vec(),
            None => list_partitions(store, def).await?,
        };
        let mut slices = BTreeMap::new();
        for partition in partitions {
            let listing = store
                .list_with_delimiter(Some(&def.partition_dir(&partition)))
                .await?;
            for object in listing.objects {
                let Some(name) = object.location.filename() else {
                    continue;
                };
                let Some((file_id, instant)) = parse_base_file_name(name) else {
                    continue;
                };
                if !timeline.is_committed(instant)
                    || replaced.contains_key(&(partition.clone(), file_id.to_owned()))
                {
                    continue;
                }
                let slice = FileSlice {
                    partition: partition.clone(),
                    file_id: file_id.to_owned(),
                    instant: instant.to_owned(),
                    path: object.location.clone(),
                    size: object.size,
                };
                let key = (partition.clone(), file_id.to_owned());
                match slices.get(&key) {
                    Some(current) if current_is_newer(current, &slice) => {}
                    _ => {
                        slices.insert(key, slice);
                    }
                }
            }
        }
        Ok(Self {
            timeline,
            schema: def.file_schema(),
            slices,
        })
    }

    pub fn latest_instant(&self) -> Option<&str> {
        self.timeline.completed.last().map(String::as_str)
    }

    /// The bucket count a partition is laid out in: that of its live file groups (all share one
    /// after a re-size), else the table's initial count.
    pub fn layout(&self, def: &TableDef, partition: &str) -> u32 {
        self.slices
            .range((partition.to_owned(), String::new())..)
            .take_while(|((p, _), _)| p == partition)
            .find_map(|((_, id), _)| super::layout_of(def, partition, id).map(|(layout, _)| layout))
            .unwrap_or(def.buckets)
    }

    /// The live slices of one partition, in file id order.
    pub fn partition_slices<'a>(
        &'a self,
        partition: &'a str,
    ) -> impl Iterator<Item = &'a FileSlice> {
        self.slices
            .range((partition.to_owned(), String::new())..)
            .take_while(move |((p, _), _)| p == partition)
            .map(|(_, slice)| slice)
    }

    /// Reads every record of the snapshot (or of one partition): all columns, or only `columns`.
    pub async fn read(
        &self,
        store: &dyn ObjectStore,
        partition: Option<&str>,
        columns: Option<&[&str]>,
    ) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        self.read_each(store, partition, columns, |batch| {
            batches.push(batch);
            Ok(())
        })
        .await?;
        Ok(batches)
    }

    /// [`Self::read`] a batch at a time: `visit` sees each batch as it is decoded, so only what
    /// it keeps stays in memory (a reader that needs a few rows of a large table).
    pub async fn read_each(
        &self,
        store: &dyn ObjectStore,
        partition: Option<&str>,
        columns: Option<&[&str]>,
        mut visit: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        for slice in self.slices.values() {
            if partition.is_some_and(|p| p != slice.partition) {
                continue;
            }
            let bytes = store.get(&slice.path).await?.bytes().await?;
            crate::blocking::in_place(|| {
                decode_base_file(bytes, columns, &self.schema)?.try_for_each(|batch| visit(batch?))
            })?;
        }
        Ok(())
    }
}

fn current_is_newer(current: &FileSlice, candidate: &FileSlice) -> bool {
    current.instant >= candidate.instant
}

/// Partition folders of a table (`tenant_id=...`), from a listing of its base folder.
pub async fn list_partitions(store: &dyn ObjectStore, def: &TableDef) -> Result<Vec<String>> {
    let listing = store.list_with_delimiter(Some(&def.base)).await?;
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_owned))
        .filter(|name| !name.starts_with('.'))
        .collect())
}

/// `<fileId>_<writeToken>_<instant>.parquet` → (file id, instant).
pub fn parse_base_file_name(name: &str) -> Option<(&str, &str)> {
    let stem = name.strip_suffix(".parquet")?;
    let mut parts = stem.split('_');
    let (file_id, _token, instant) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && instant.len() == 17).then_some((file_id, instant))
}

/// Reads a base file in the table's `schema`: all columns, or only `columns` (Parquet skips the
/// others' pages unread). A column added to the table after the file was written reads as null.
pub async fn read_base_file(
    store: &dyn ObjectStore,
    path: &Path,
    columns: Option<&[&str]>,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let bytes = store.get(path).await?.bytes().await?;
    crate::blocking::in_place(|| decode_base_file(bytes, columns, schema)?.collect())
}

/// Decodes a base file's bytes (see [`read_base_file`]) a batch at a time.
fn decode_base_file(
    bytes: bytes::Bytes,
    columns: Option<&[&str]>,
    schema: &SchemaRef,
) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?.with_batch_size(64 * 1024);
    let mut target = schema.clone();
    if let Some(columns) = columns {
        let wanted = columns
            .iter()
            .map(|name| schema.index_of(name))
            .collect::<Result<Vec<_>, _>>()?;
        target = Arc::new(schema.project(&wanted)?);
        let in_file: Vec<usize> = columns
            .iter()
            .filter_map(|name| builder.schema().index_of(name).ok())
            .collect();
        let projection = ProjectionMask::roots(builder.parquet_schema(), in_file);
        builder = builder.with_projection(projection);
    }
    Ok(builder
        .build()?
        .map(move |batch| super::conform(batch?, &target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_file_names() {
        assert_eq!(
            parse_base_file_name("00000001-ab-0_0-0-0_20240101000000000.parquet"),
            Some(("00000001-ab-0", "20240101000000000"))
        );
        assert_eq!(parse_base_file_name("x.parquet"), None);
        assert_eq!(parse_base_file_name(".hoodie_partition_metadata"), None);
    }
}
