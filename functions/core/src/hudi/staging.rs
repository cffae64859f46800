//! Incoming rows of one commit, staged on local disk by (partition, bucket) as Arrow IPC streams.
//!
//! Staging keeps memory bounded whatever the input size: rows arrive in small batches while a file
//! is parsed and are appended to the stream of their bucket at once; the commit then streams one
//! bucket at a time through the merge (see `merge.rs`), a batch at a time.
//!
//! Rows are staged in the table's initial layout; a commit that finds a partition re-sized (more
//! buckets, see `sizing.rs`) re-stages that partition's rows into its layout first.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};

use arrow_array::{RecordBatch, UInt32Array};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::SchemaRef;

use super::columns::string_column;
use super::{TableDef, bucket_of};
use crate::error::Result;

/// Removal of a record; `ordering` competes with the precombine value like an upsert's would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub key: String,
    pub ordering: i64,
}

/// Where one bucket's rows are staged.
struct BucketStream {
    writer: Option<StreamWriter<BufWriter<File>>>,
    path: std::path::PathBuf,
    rows: u64,
}

/// Rows and deletes for one commit of one table.
pub struct StagedRows {
    schema: SchemaRef,
    record_key: String,
    partition_field: String,
    buckets: u32,
    /// Partitions staged in another layout than the initial one.
    layouts: BTreeMap<String, u32>,
    dir: Option<tempfile::TempDir>,
    /// Names the next stream's file (streams are removed when re-staged).
    next_stream: usize,
    streams: BTreeMap<(String, u32), BucketStream>,
    deletes: BTreeMap<(String, u32), Vec<Delete>>,
    /// Partitions whose whole content the staged rows replace.
    replaced: std::collections::BTreeSet<String>,
}

impl StagedRows {
    pub fn new(def: &TableDef) -> Self {
        Self {
            schema: def.data_schema.clone(),
            record_key: def.record_key.clone(),
            partition_field: def.partition_field.clone(),
            buckets: def.buckets,
            layouts: BTreeMap::new(),
            dir: None,
            next_stream: 0,
            streams: BTreeMap::new(),
            deletes: BTreeMap::new(),
            replaced: std::collections::BTreeSet::new(),
        }
    }

    fn partition(&self, partition_value: &str) -> String {
        format!("{}={partition_value}", self.partition_field)
    }

    /// The bucket count the partition's rows are staged in.
    pub fn layout(&self, partition: &str) -> u32 {
        self.layouts.get(partition).copied().unwrap_or(self.buckets)
    }

    /// Stages a batch (table data schema) of one partition, split by bucket.
    pub fn push(&mut self, partition_value: &str, batch: &RecordBatch) -> Result<()> {
        let partition = self.partition(partition_value);
        self.push_to(&partition, batch)
    }

    fn push_to(&mut self, partition: &str, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let partition = partition.to_owned();
        let layout = self.layout(&partition);
        let keys = string_column(batch, &self.record_key)?;
        let mut rows_by_bucket: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for row in 0..batch.num_rows() {
            rows_by_bucket
                .entry(bucket_of(keys.value(row), layout))
                .or_default()
                .push(row as u32);
        }
        for (bucket, rows) in rows_by_bucket {
            // Ingest builds its batches per bucket already: nothing to split, nothing to copy.
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                arrow_select::take::take_record_batch(batch, &UInt32Array::from(rows))?
            };
            let stream = self.stream(&partition, bucket)?;
            stream.rows += part.num_rows() as u64;
            if let Some(writer) = stream.writer.as_mut() {
                writer.write(&part)?;
            }
        }
        Ok(())
    }

    /// Makes the staged rows of this partition its whole new content: every record not staged is
    /// removed (a full recompute, as gold does per tenant).
    pub fn replace_partition(&mut self, partition_value: &str) {
        let partition = self.partition(partition_value);
        self.replaced.insert(partition);
    }

    pub fn delete(&mut self, partition_value: &str, delete: Delete) {
        let partition = self.partition(partition_value);
        self.delete_in(partition, delete);
    }

    fn delete_in(&mut self, partition: String, delete: Delete) {
        let bucket = bucket_of(&delete.key, self.layout(&partition));
        self.deletes
            .entry((partition, bucket))
            .or_default()
            .push(delete);
    }

    /// Re-stages a partition's rows and deletes in `layout` buckets (the partition was re-sized
    /// since they were staged). A key's rows all lie in one bucket of either layout and keep their
    /// order, so the merge's "later row wins" is unchanged. Seals the staging again.
    pub fn relayout(&mut self, partition: &str, layout: u32) -> Result<()> {
        if self.layout(partition) == layout {
            return Ok(());
        }
        self.seal()?;
        let keys: Vec<(String, u32)> = self
            .streams
            .keys()
            .filter(|(p, _)| p == partition)
            .cloned()
            .collect();
        let old_streams: Vec<BucketStream> = keys
            .iter()
            .filter_map(|key| self.streams.remove(key))
            .collect();
        let delete_keys: Vec<(String, u32)> = self
            .deletes
            .keys()
            .filter(|(p, _)| p == partition)
            .cloned()
            .collect();
        let old_deletes: Vec<Delete> = delete_keys
            .iter()
            .filter_map(|key| self.deletes.remove(key))
            .flatten()
            .collect();
        self.layouts.insert(partition.to_owned(), layout);
        for stream in old_streams {
            let reader = StreamReader::try_new(BufReader::new(File::open(&stream.path)?), None)?;
            for batch in reader {
                self.push_to(partition, &batch?)?;
            }
            std::fs::remove_file(&stream.path)?;
        }
        for delete in old_deletes {
            self.delete_in(partition.to_owned(), delete);
        }
        self.seal()
    }

    fn stream(&mut self, partition: &str, bucket: u32) -> Result<&mut BucketStream> {
        let key = (partition.to_owned(), bucket);
        if !self.streams.contains_key(&key) {
            let dir = match &self.dir {
                Some(dir) => dir,
                None => self.dir.insert(
                    tempfile::Builder::new()
                        .prefix("metriccare-stage-")
                        .tempdir()?,
                ),
            };
            let path = dir
                .path()
                .join(format!("{}-{bucket}.arrows", self.next_stream));
            self.next_stream += 1;
            let writer = StreamWriter::try_new(BufWriter::new(File::create(&path)?), &self.schema)?;
            self.streams.insert(
                key.clone(),
                BucketStream {
                    writer: Some(writer),
                    path,
                    rows: 0,
                },
            );
        }
        Ok(self.streams.get_mut(&key).expect("inserted above"))
    }

    pub fn is_empty(&self) -> bool {
        self.streams.values().all(|s| s.rows == 0)
            && self.deletes.is_empty()
            && self.replaced.is_empty()
    }

    /// Every (partition, bucket) with staged rows or deletes, in order.
    pub fn touched(&self) -> Vec<(String, u32)> {
        let replaced = self
            .replaced
            .iter()
            .flat_map(|p| (0..self.layout(p)).map(move |b| (p.clone(), b)));
        let mut keys: Vec<_> = self
            .streams
            .keys()
            .chain(self.deletes.keys())
            .cloned()
            .chain(replaced)
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    pub fn partitions(&self) -> Vec<String> {
        let mut partitions: Vec<String> = self.touched().into_iter().map(|(p, _)| p).collect();
        partitions.dedup();
        partitions
    }

    /// Closes the staging streams; call once before reading buckets back.
    pub fn seal(&mut self) -> Result<()> {
        for stream in self.streams.values_mut() {
            if let Some(mut writer) = stream.writer.take() {
                writer.finish()?;
            }
        }
        Ok(())
    }

    pub fn replaces(&self, partition: &str) -> bool {
        self.replaced.contains(partition)
    }

    /// The staged batches of one bucket in arrival order, numbered, read back one at a time.
    pub fn bucket_batches(
        &self,
        partition: &str,
        bucket: u32,
    ) -> Result<impl Iterator<Item = (usize, Result<RecordBatch>)> + use<>> {
        let reader = match self.streams.get(&(partition.to_owned(), bucket)) {
            Some(stream) => Some(StreamReader::try_new(
                BufReader::new(File::open(&stream.path)?),
                None,
            )?),
            None => None,
        };
        Ok(reader
            .into_iter()
            .flatten()
            .map(|batch| batch.map_err(Into::into))
            .enumerate())
    }

    /// Every staged delete, with its partition (`<field>=<value>`).
    pub fn deletes(&self) -> impl Iterator<Item = (&str, &Delete)> {
        self.deletes.iter().flat_map(|((partition, _), deletes)| {
            deletes.iter().map(move |d| (partition.as_str(), d))
        })
    }

    /// The staged deletes of one bucket.
    pub fn bucket_deletes(&self, partition: &str, bucket: u32) -> &[Delete] {
        self.deletes
            .get(&(partition.to_owned(), bucket))
            .map_or(&[], Vec::as_slice)
    }
}
