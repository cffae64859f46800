//! Copy-on-write merge of one file group, streamed: memory does not grow with the file group.
//!
//! The rows are never held whole. Three passes over local files:
//! 1. the staged incoming rows of every file of the group are read once, in file order, for their
//!    keys and orderings only, to find the winning operation per key (the one map that grows with
//!    the input: 48 bytes per incoming key of this bucket, see [`super::key_map`]);
//! 2. the committed base file is read for its key and ordering columns only, deciding per row
//!    whether it is kept, replaced or deleted — after this pass the counts are known, and an
//!    unchanged file group is left alone without writing anything;
//! 3. the kept committed rows, then the winning incoming rows, are streamed batch by batch into the
//!    Parquet writer, which holds at most one row group.
//!
//! A commit of a few rows must not cost a decode and re-encode of the whole file group, or a tenant
//! that grows by small files pays more for each one (the table lifecycle's soak). So committed row
//! groups whose rows are all kept are copied into the new file as they are (their encoded column
//! chunks spliced, not decoded), and only the row groups that lose a row, the incoming rows and the
//! small row groups they absorb are encoded: [`plan_row_groups`] merges row groups like a binary
//! counter, so a file keeps a few row groups per size class and each row is re-encoded a handful of
//! times in its life, not once per commit.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array};
use arrow_select::filter::filter_record_batch;
use arrow_select::take::take_record_batch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::{ArrowSchemaConverter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::TableDef;
use super::columns::{string_column, timestamp_column};
use super::key_map::KeyMap;
use super::staging::{Delete, StagedRows};
use crate::error::Result;

/// Rows per batch read back from a base file.
const READ_BATCH_ROWS: usize = 8192;

/// Rows per Parquet row group; the writer buffers one row group's encoded pages.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// One file group to merge.
pub(super) struct FileGroupMerge<'a> {
    pub def: &'a TableDef,
    /// The staged rows of each file of the group, in the order the files count.
    pub group: &'a [StagedRows],
    pub partition: &'a str,
    pub bucket: u32,
    /// A local copy of the committed base file, if the file group has one.
    pub existing: Option<&'a File>,
    /// Local copies of lower insert tiers whose rows move into this file group (see
    /// [`super::tiers`]): encoded into the new file, less what the incoming rows replace.
    pub carried: &'a [&'a File],
    /// Which incoming keys this file group takes (the others belong to other tiers).
    pub accepts: &'a dyn Fn(&str) -> bool,
    /// The staged rows are the partition's whole new content (gold's recompute).
    pub replace: bool,
    /// Deleted keys of this file group with their delete's ordering: an upsert ordered at or
    /// before its key's tombstone is ignored.
    pub tombstones: &'a HashMap<Box<str>, i64>,
    pub instant: &'a str,
    pub file_id: &'a str,
    pub file_name: &'a str,
}

/// What merging one file group did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Merged {
    /// Rows in the new base file; meaningless when nothing changed.
    pub rows: u64,
    pub changed: bool,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub ignored: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    /// The `row`-th row of the `batch`-th staged batch of the group's `file`-th file.
    Upsert {
        file: u32,
        batch: u32,
        row: u32,
    },
    Delete,
}

struct Winner {
    ordering: i64,
    op: Op,
    /// A committed row has this key: writing the upsert is an update, not an insert.
    replaces_committed: bool,
}

impl Winner {
    fn new(ordering: i64, op: Op) -> Self {
        Self {
            ordering,
            op,
            replaces_committed: false,
        }
    }
}

impl FileGroupMerge<'_> {
    /// Merges and, when anything changed, writes the new base file to `out`.
    pub fn run(&self, out: impl Write + Send) -> Result<Merged> {
        let mut merged = Merged::default();
        let mut winners = self.incoming_winners(&mut merged)?;
        let existing = match self.existing {
            Some(file) => {
                // With the offset index: copied column chunks keep theirs.
                let options =
                    ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
                let metadata = ArrowReaderMetadata::load(file, options)?;
                let keep = self.decide_existing(file, &metadata, &mut winners, &mut merged)?;
                Some((file, metadata, keep))
            }
            None => None,
        };
        let mut carried = Vec::new();
        for file in self.carried {
            let metadata = ArrowReaderMetadata::load(*file, ArrowReaderOptions::new())?;
            let keep = self.decide_existing(file, &metadata, &mut winners, &mut merged)?;
            carried.push((file, metadata, keep));
        }
        for winner in winners.values() {
            match winner.op {
                Op::Upsert { .. } if winner.replaces_committed => merged.updated += 1,
                Op::Upsert { .. } => merged.inserted += 1,
                Op::Delete => {}
            }
        }
        // Moving a tier's rows is a change even when no incoming row wins.
        merged.changed =
            merged.inserted + merged.updated + merged.deleted > 0 || !self.carried.is_empty();
        if !merged.changed {
            return Ok(merged);
        }
        let mut writer = ArrowWriter::try_new(
            out,
            self.def.file_schema(),
            Some(base_file_properties(self.def)?),
        )?;
        // Row groups to encode go through the Arrow writer with the incoming rows; those to copy
        // are appended after, through the Parquet writer underneath.
        let mut carried_rows = 0;
        for (file, metadata, keep) in &carried {
            let all: Vec<usize> = (0..metadata.metadata().num_row_groups()).collect();
            carried_rows += self.write_kept(file, metadata, keep, &all, &mut writer)?;
        }
        merged.rows += carried_rows;
        let mut copy = Vec::new();
        if let Some((file, metadata, keep)) = &existing {
            let encoded = merged.inserted + merged.updated + carried_rows;
            let plan = plan_row_groups(self.def, metadata, keep, encoded);
            merged.rows += self.write_kept(file, metadata, keep, &plan.encode, &mut writer)?;
            copy = plan.copy;
        }
        merged.rows += self.write_incoming(&winners, &mut writer)?;
        let (mut file_writer, _) = writer.into_serialized_writer()?;
        if let Some((file, metadata, _)) = &existing {
            merged.rows += copy_row_groups(file, metadata, &copy, &mut file_writer)?;
        }
        file_writer.close()?;
        Ok(merged)
    }

    /// The newest incoming operation per key, file by file: ties go to the later row, and a file's
    /// deletes are weighed after its upserts, so a delete beats an upsert of equal ordering.
    fn incoming_winners(&self, merged: &mut Merged) -> Result<KeyMap<Winner>> {
        let mut winners: KeyMap<Winner> = KeyMap::default();
        for (file, staged) in self.group.iter().enumerate() {
            for (batch_index, batch) in staged.bucket_batches(self.partition, self.bucket)? {
                let batch = batch?;
                let keys = string_column(&batch, &self.def.record_key)?;
                let ordering = timestamp_column(&batch, &self.def.precombine)?;
                for row in 0..batch.num_rows() {
                    let (key, order) = (keys.value(row), ordering.value(row));
                    if !(self.accepts)(key) {
                        continue;
                    }
                    if self
                        .tombstones
                        .get(key)
                        .is_some_and(|deleted| *deleted >= order)
                    {
                        merged.ignored += 1;
                        continue;
                    }
                    let op = Op::Upsert {
                        file: file as u32,
                        batch: batch_index as u32,
                        row: row as u32,
                    };
                    match winners.get_mut(key) {
                        Some(current) => {
                            merged.ignored += 1;
                            if order >= current.ordering {
                                *current = Winner::new(order, op);
                            }
                        }
                        None => {
                            winners.insert(key, Winner::new(order, op));
                        }
                    }
                }
            }
            for Delete { key, ordering } in staged.bucket_deletes(self.partition, self.bucket) {
                if !(self.accepts)(key) {
                    continue;
                }
                match winners.get_mut(key.as_str()) {
                    Some(current) if current.ordering > *ordering => merged.ignored += 1,
                    Some(current) => *current = Winner::new(*ordering, Op::Delete),
                    None => {
                        winners.insert(key.as_str(), Winner::new(*ordering, Op::Delete));
                    }
                }
            }
        }
        Ok(winners)
    }

    /// Decides each committed row from its key and ordering alone. Returns whether each row is
    /// kept; a winner that loses to the committed row is dropped, and one that replaces it is
    /// marked. What remains in `winners` as an upsert is written by the incoming pass.
    fn decide_existing(
        &self,
        file: &File,
        metadata: &ArrowReaderMetadata,
        winners: &mut KeyMap<Winner>,
        merged: &mut Merged,
    ) -> Result<Vec<bool>> {
        let builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file.try_clone()?, metadata.clone());
        // The file's own column positions: a file older than a column added since has fewer.
        let schema = builder.schema().clone();
        let projection = ProjectionMask::roots(
            builder.parquet_schema(),
            [
                schema.index_of(&self.def.record_key)?,
                schema.index_of(&self.def.precombine)?,
            ],
        );
        let reader = builder
            .with_projection(projection)
            .with_batch_size(READ_BATCH_ROWS)
            .build()?;
        let mut keep = Vec::new();
        for batch in reader {
            let batch = batch?;
            let keys = string_column(&batch, &self.def.record_key)?;
            let ordering = timestamp_column(&batch, &self.def.precombine)?;
            for row in 0..batch.num_rows() {
                let key = keys.value(row);
                let kept = match winners.get_mut(key) {
                    // In a replaced partition the staged rows are the new content, whatever their
                    // precombine values (a recompute is never "older" than what it replaces).
                    Some(winner) if !self.replace && winner.ordering < ordering.value(row) => {
                        merged.ignored += 1;
                        winners.remove(key);
                        true
                    }
                    Some(winner) if matches!(winner.op, Op::Upsert { .. }) => {
                        winner.replaces_committed = true;
                        false
                    }
                    Some(_) => {
                        merged.deleted += 1;
                        winners.remove(key);
                        false
                    }
                    // A replaced partition keeps only what was staged.
                    None if self.replace => {
                        merged.deleted += 1;
                        false
                    }
                    None => true,
                };
                keep.push(kept);
            }
        }
        Ok(keep)
    }

    /// Streams the kept committed rows of the row groups to encode, as they are (meta columns
    /// included).
    fn write_kept<W: Write + Send>(
        &self,
        file: &File,
        metadata: &ArrowReaderMetadata,
        keep: &[bool],
        row_groups: &[usize],
        writer: &mut ArrowWriter<W>,
    ) -> Result<u64> {
        if row_groups.is_empty() {
            return Ok(0);
        }
        let starts = row_group_starts(metadata.metadata());
        let keep: Vec<bool> = row_groups
            .iter()
            .flat_map(|&i| keep[starts[i]..starts[i + 1]].iter().copied())
            .collect();
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file.try_clone()?, metadata.clone())
                .with_row_groups(row_groups.to_vec())
                .with_batch_size(READ_BATCH_ROWS)
                .build()?;
        let (mut offset, mut written) = (0usize, 0u64);
        let schema = self.def.file_schema();
        for batch in reader {
            let batch = super::conform(batch?, &schema)?;
            let mask = &keep[offset..offset + batch.num_rows()];
            offset += batch.num_rows();
            let kept = if mask.iter().all(|k| *k) {
                batch
            } else {
                filter_record_batch(&batch, &BooleanArray::from(mask.to_vec()))?
            };
            written += kept.num_rows() as u64;
            writer.write(&kept)?;
        }
        Ok(written)
    }

    /// Streams the winning incoming rows in input order, with the Hudi meta columns in front.
    fn write_incoming<W: Write + Send>(
        &self,
        winners: &KeyMap<Winner>,
        writer: &mut ArrowWriter<W>,
    ) -> Result<u64> {
        let mut written = 0u64;
        for (file, staged) in self.group.iter().enumerate() {
            for (batch_index, batch) in staged.bucket_batches(self.partition, self.bucket)? {
                let batch = batch?;
                let keys = string_column(&batch, &self.def.record_key)?;
                let rows: Vec<u32> = (0..batch.num_rows() as u32)
                    .filter(|row| {
                        winners.get(keys.value(*row as usize)).is_some_and(|w| {
                            w.op == Op::Upsert {
                                file: file as u32,
                                batch: batch_index as u32,
                                row: *row,
                            }
                        })
                    })
                    .collect();
                if rows.is_empty() {
                    continue;
                }
                let data = take_record_batch(&batch, &UInt32Array::from(rows))?;
                writer.write(&self.with_meta_columns(&data, written)?)?;
                written += data.num_rows() as u64;
            }
        }
        Ok(written)
    }

    /// Incoming rows with the five Hudi meta columns in front; `first` numbers the sequence ids.
    fn with_meta_columns(&self, data: &RecordBatch, first: u64) -> Result<RecordBatch> {
        let keys = string_column(data, &self.def.record_key)?;
        let n = data.num_rows();
        let bucket = &self.file_id[..8];
        let repeat = |value: &str| Arc::new(StringArray::from(vec![value; n])) as ArrayRef;
        // Written straight into the array's buffer: a `format!` per row allocated a String each.
        let mut seqno = StringBuilder::with_capacity(n, n * (self.instant.len() + 16));
        for i in first..first + n as u64 {
            write!(seqno, "{}_{bucket}_{i}", self.instant).expect("writes to memory");
            seqno.append_value("");
        }
        let mut columns: Vec<ArrayRef> = vec![
            repeat(self.instant),
            Arc::new(seqno.finish()),
            Arc::new(keys.clone()),
            repeat(self.partition),
            repeat(self.file_name),
        ];
        columns.extend(data.columns().iter().cloned());
        Ok(RecordBatch::try_new(self.def.file_schema(), columns)?)
    }
}

/// Which committed row groups are encoded again and which are copied as they are.
#[derive(Debug, Default, PartialEq, Eq)]
struct RowGroupPlan {
    /// Row groups that lose a row, and the small ones merged with them and the incoming rows.
    encode: Vec<usize>,
    copy: Vec<usize>,
}

/// Decides the row groups of a merge. A row group that loses a row is encoded again; so is every
/// row group whose rows all stay but that is no larger than what is being encoded so far (the
/// incoming rows first), smallest first, while the new row group fits [`ROW_GROUP_ROWS`]: like
/// carries in a binary counter, row groups of similar size merge, so a file holds a few row groups
/// per size class and a commit of a few rows encodes few rows on average. The rest are copied. A
/// file whose Parquet columns are not the table's is encoded whole (its column chunks would not
/// fit: the writer refuses a chunk of another type).
fn plan_row_groups(
    def: &TableDef,
    metadata: &ArrowReaderMetadata,
    keep: &[bool],
    incoming: u64,
) -> RowGroupPlan {
    let row_groups = metadata.metadata().num_row_groups();
    let columns = metadata.metadata().file_metadata().schema_descr().columns();
    let same_columns = ArrowSchemaConverter::new()
        .convert(&def.file_schema())
        .is_ok_and(|ours| ours.columns() == columns);
    if !same_columns {
        return RowGroupPlan {
            encode: (0..row_groups).collect(),
            copy: Vec::new(),
        };
    }
    let starts = row_group_starts(metadata.metadata());
    let mut plan = RowGroupPlan::default();
    let mut encoded = incoming;
    let mut whole = Vec::new();
    for group in 0..row_groups {
        let rows = &keep[starts[group]..starts[group + 1]];
        let kept = rows.iter().filter(|k| **k).count() as u64;
        if kept == rows.len() as u64 {
            whole.push((kept, group));
        } else {
            plan.encode.push(group);
            encoded += kept;
        }
    }
    whole.sort_unstable();
    // Weighed against the last, partial row group of what is encoded (the writer cuts full ones
    // of ROW_GROUP_ROWS): a big commit must not leave a small remainder behind every time.
    let full = ROW_GROUP_ROWS as u64;
    for (rows, group) in whole {
        let tail = encoded % full;
        if rows <= tail.max(1) && tail + rows <= full {
            plan.encode.push(group);
            encoded += rows;
        } else {
            plan.copy.push(group);
        }
    }
    plan.encode.sort_unstable();
    plan.copy.sort_unstable();
    plan
}

/// The first row of each row group, and the row count at the end.
fn row_group_starts(metadata: &ParquetMetaData) -> Vec<usize> {
    let mut starts = vec![0usize];
    for group in metadata.row_groups() {
        starts.push(starts.last().copied().unwrap_or(0) + group.num_rows() as usize);
    }
    starts
}

/// Appends the given row groups of `file` to `writer` without decoding them: each column chunk's
/// bytes are spliced, with its statistics and offset index. Returns the rows copied.
fn copy_row_groups<W: Write + Send>(
    file: &File,
    metadata: &ArrowReaderMetadata,
    row_groups: &[usize],
    writer: &mut SerializedFileWriter<W>,
) -> Result<u64> {
    let metadata = metadata.metadata();
    let mut copied = 0u64;
    for &group in row_groups {
        let row_group = metadata.row_group(group);
        let mut out = writer.next_row_group()?;
        for (column, chunk) in row_group.columns().iter().enumerate() {
            let offset_index = metadata
                .offset_index()
                .and_then(|groups| groups.get(group)?.get(column).cloned());
            out.append_column(
                file,
                ColumnCloseResult {
                    bytes_written: chunk.compressed_size() as u64,
                    rows_written: row_group.num_rows() as u64,
                    metadata: chunk.clone(),
                    bloom_filter: None,
                    column_index: None,
                    offset_index,
                },
            )?;
        }
        out.close()?;
        copied += row_group.num_rows() as u64;
    }
    Ok(copied)
}

/// A base file without rows: the new slice of an insert tier whose rows moved up.
pub(super) fn empty_base_file(def: &TableDef) -> Result<File> {
    let mut out = std::io::BufWriter::new(tempfile::tempfile()?);
    ArrowWriter::try_new(
        &mut out,
        def.file_schema(),
        Some(base_file_properties(def)?),
    )?
    .close()?;
    out.into_inner()
        .map_err(|e| crate::error::CoreError::Io(e.into_error()))
}

/// Writes `batches` (rows of a base file, meta columns included) as the base file at `path`,
/// replacing it: an erasure's rewrite of a slice without a patient's rows.
pub async fn rewrite_base_file(
    store: &dyn ObjectStore,
    def: &TableDef,
    path: &Path,
    batches: &[RecordBatch],
) -> Result<()> {
    let schema = batches
        .first()
        .map_or_else(|| def.file_schema(), RecordBatch::schema);
    let buffer = crate::blocking::in_place(|| -> Result<Vec<u8>> {
        let mut buffer = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut buffer, schema, Some(base_file_properties(def)?))?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.close()?;
        Ok(buffer)
    })?;
    store.put(path, PutPayload::from(buffer)).await?;
    Ok(())
}

/// How base files are written. zstd level 1: most of the size win of zstd at a fraction of the CPU
/// of higher levels. The key and sequence-id columns (unique, or nearly: pseudonyms) skip the
/// dictionary Parquet would try first and abandon, and statistics are kept per column chunk, not
/// per page: both showed in profiles, and no reader of these tables uses page statistics.
pub(super) fn base_file_properties(def: &TableDef) -> Result<WriterProperties> {
    let schema = def.file_schema();
    let high_cardinality = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|name| {
            ["_hoodie_commit_seqno", "_hoodie_record_key"].contains(name) || name.ends_with("_key")
        });
    let builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Chunk);
    Ok(high_cardinality
        .fold(builder, |builder, column| {
            builder.set_column_dictionary_enabled(ColumnPath::from(column), false)
        })
        .build())
}

#[cfg(test)]
mod tests {
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn def() -> TableDef {
        TableDef {
            name: "t".to_owned(),
            base: Path::from("t"),
            record_key: "key".to_owned(),
            partition_field: "p".to_owned(),
            precombine: "ts".to_owned(),
            buckets: 1,
            data_schema: Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, false)])),
        }
    }

    /// A base file of `rows` rows (cut into row groups of [`ROW_GROUP_ROWS`]), its metadata.
    fn base_file(def: &TableDef, rows: usize) -> ArrowReaderMetadata {
        let mut file = tempfile::tempfile().unwrap();
        let schema = def.file_schema();
        let column = Arc::new(StringArray::from(vec!["x"; rows])) as ArrayRef;
        let batch = RecordBatch::try_new(schema.clone(), vec![column; 6]).unwrap();
        let props = base_file_properties(def).unwrap();
        let mut writer = ArrowWriter::try_new(&mut file, schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).unwrap()
    }

    #[test]
    fn small_row_groups_are_copied_while_bigger_than_the_encoded_tail_and_then_merge() {
        let def = def();
        // GIVEN a file of a full row group and a 1-row remainder, every row kept
        let metadata = base_file(&def, ROW_GROUP_ROWS + 1);
        let keep = vec![true; ROW_GROUP_ROWS + 1];
        // WHEN a big commit's rows end in a remainder of 1 row, the 1-row group merges into it
        let big = plan_row_groups(&def, &metadata, &keep, ROW_GROUP_ROWS as u64 + 1);
        assert_eq!(
            big,
            RowGroupPlan {
                encode: vec![1],
                copy: vec![0]
            }
        );
        // AND a commit of 1 row merges it too; the full row group is always copied
        let small = plan_row_groups(&def, &metadata, &keep, 1);
        assert_eq!(
            small,
            RowGroupPlan {
                encode: vec![1],
                copy: vec![0]
            }
        );
        // AND a row group that loses a row is encoded whatever its size
        let mut lose_one = keep.clone();
        lose_one[0] = false;
        let changed = plan_row_groups(&def, &metadata, &lose_one, 0);
        assert_eq!(changed.encode, vec![0, 1]);
    }
}
