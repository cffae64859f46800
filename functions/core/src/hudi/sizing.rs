//! File sizing: every tenant partition starts in the table's initial layout (its bucket count);
//! when its live file groups average more than the target size, table services lay it out in
//! twice as many buckets (or more, until the average fits), so that a growing tenant gets more, not
//! bigger, file groups and a commit rewrites a bounded amount of data.
//!
//! A re-size is one Hudi `replacecommit`: every old file group's rows are written, routed by the
//! bucket hash of the new layout, into new file groups (ids of the new layout, see
//! [`super::layout_file_id`]), and the completed instant names the old file groups in
//! `partitionToReplaceFileIds`. Readers (Hudi's, `hudi-rs`, this writer's snapshot) switch from the
//! old file groups to the new ones at that one instant: no record is seen twice or missed. The
//! replaced file groups' files stay for the retention window, then cleaning deletes them; archival
//! never moves the `replacecommit` out of `.hoodie/` before.
//!
//! It goes through the same protocol as a commit (reserve, inflight, files, seal, sequence claim,
//! completed instant), claiming every old and new file group: a concurrent commit to the partition
//! makes one of the two start again, and a writer whose rows were staged in the old layout re-stages
//! them in the new one (see `staging.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow_select::take::take_record_batch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;

use super::columns::string_column;
use super::instant::{Action, Instant};
use super::merge::base_file_properties;
use super::snapshot::FileSlice;
use super::tiers::INSERT_TIERS;
use super::writer::{
    ClaimedPlan, HudiTable, PlannedFile, inflight_text, local_copy, plan_commit_text, write_token,
};
use super::{MAX_LAYOUT_DOUBLINGS, TableDef, bucket_of, layout_file_id, tier_file_id};
use crate::error::{CoreError, Result};

/// Whether a partition of `total` bytes in `layout` buckets averages more than `target` bytes per
/// file group, in a layout that can still grow (the table services' cheap check and the re-size's
/// own decide alike).
pub(super) fn outgrows(def: &TableDef, total: u64, layout: u32, target: u64) -> bool {
    layout < def.buckets << MAX_LAYOUT_DOUBLINGS && total / u64::from(layout) > target.max(1)
}

impl HudiTable {
    /// Re-sizes the partition if its live file groups average more than `target_bytes`. Returns
    /// the `replacecommit` instant, or `None` when the partition fits (or a concurrent commit to it
    /// came first: the next run tries again).
    pub async fn resize_partition(
        &self,
        partition: &str,
        target_bytes: u64,
    ) -> Result<Option<String>> {
        let base_sequence = self.recover().await?;
        let snapshot = self.snapshot(Some(&[partition.to_owned()])).await?;
        let slices: Vec<FileSlice> = snapshot.partition_slices(partition).cloned().collect();
        let layout = snapshot.layout(self.def(), partition);
        let total: u64 = slices.iter().map(|s| s.size).sum();
        let mut resized = layout;
        while outgrows(self.def(), total, resized, target_bytes) {
            resized *= 2;
        }
        if resized == layout {
            return Ok(None);
        }
        let instant = self
            .reserve_instant(&snapshot.timeline, Action::ReplaceCommit)
            .await?;
        let plan = match self
            .write_layout(partition, &slices, resized, &instant)
            .await
        {
            Ok(plan) => plan,
            Err(e) => {
                self.roll_back(&instant).await?;
                return Err(e);
            }
        };
        if !self.seal(&instant).await? {
            tracing::warn!(table = %self.def().name, %instant, "re-size outlived the stale limit");
            return Ok(None);
        }
        // Every file group of the old layout (each tier of each bucket), with rows or not: a
        // concurrent commit creating an old-layout group must conflict with the re-size, and no
        // old group may stay live.
        let old_ids: Vec<String> = (0..layout)
            .flat_map(|bucket| {
                (0..=INSERT_TIERS)
                    .map(move |tier| tier_file_id(self.def(), partition, bucket, layout, tier))
            })
            .collect();
        let touched: BTreeSet<(String, String)> = old_ids
            .iter()
            .chain(plan.iter().map(|f| &f.file_id))
            .map(|id| (partition.to_owned(), id.clone()))
            .collect();
        let replaced = BTreeMap::from([(partition.to_owned(), old_ids)]);
        let claim = ClaimedPlan {
            instant: &instant,
            action: Action::ReplaceCommit.name(),
            written: touched.iter().cloned().collect(),
            commit: plan_commit_text(self.def(), &plan, Some(&replaced))?,
            token: String::new(),
        };
        match self.claim_sequence(base_sequence, &claim, &touched).await? {
            Some(_) => {
                let path = self
                    .def()
                    .instant_path(Instant::completed(&instant, Action::ReplaceCommit));
                self.put(&path, claim.commit).await?;
                tracing::info!(table = %self.def().name, %partition, from = layout, to = resized, %instant, "partition re-sized");
                Ok(Some(instant))
            }
            None => {
                self.roll_back(&instant).await?;
                Ok(None)
            }
        }
    }

    /// Writes the rows of `slices` into the file groups of the new layout; returns the new files.
    async fn write_layout(
        &self,
        partition: &str,
        slices: &[FileSlice],
        layout: u32,
        instant: &str,
    ) -> Result<Vec<PlannedFile>> {
        let def = self.def();
        let token = write_token();
        let planned: Vec<PlannedFile> = (0..layout)
            .map(|bucket| {
                let file_id = layout_file_id(def, partition, bucket, layout);
                PlannedFile {
                    partition: partition.to_owned(),
                    file_name: format!("{file_id}_{token}_{instant}.parquet"),
                    file_id,
                    stats: serde_json::Value::Null,
                }
            })
            .collect();
        let inflight: Vec<&PlannedFile> = planned.iter().collect();
        self.put(
            &def.instant_path(Instant::inflight(instant, Action::ReplaceCommit)),
            inflight_text(&inflight),
        )
        .await?;
        let dir = def.partition_dir(partition);
        let mut written = Vec::new();
        // The old layout divides the new one: each old bucket's rows (all its tiers) go to the new
        // buckets congruent to its own, so each old file group is read once and the new ones
        // written whole, into the base tier.
        let mut old_buckets: BTreeMap<&str, Vec<&FileSlice>> = BTreeMap::new();
        for slice in slices {
            old_buckets
                .entry(slice.file_id.get(..8).unwrap_or(&slice.file_id))
                .or_default()
                .push(slice);
        }
        for bucket_slices in old_buckets.values() {
            let mut files = Vec::new();
            for slice in bucket_slices {
                files.push(local_copy(self.store().as_ref(), &slice.path).await?);
            }
            let children =
                crate::blocking::in_place(|| split_bucket(def, files, layout, &planned))?;
            for (bucket, (file, rows)) in children {
                let target = &planned[bucket as usize];
                let size = crate::objects::upload_file(
                    self.store().as_ref(),
                    &dir.clone().join(target.file_name.as_str()),
                    file,
                )
                .await?;
                let stats = json!({
                    "fileId": target.file_id,
                    "path": format!("{partition}/{}", target.file_name),
                    "prevCommit": "null",
                    "numWrites": rows,
                    "numDeletes": 0,
                    "numUpdateWrites": 0,
                    "numInserts": rows,
                    "totalWriteBytes": size,
                    "totalWriteErrors": 0,
                    "partitionPath": partition,
                    "fileSizeInBytes": size,
                });
                written.push(PlannedFile {
                    partition: partition.to_owned(),
                    file_id: target.file_id.clone(),
                    file_name: target.file_name.clone(),
                    stats,
                });
            }
        }
        self.ensure_partition_metadata(&dir, instant).await?;
        Ok(written)
    }
}

/// Streams one old bucket's base files' rows into new base files per bucket of `layout`, each row's
/// `_hoodie_file_name` naming its new file (the other meta columns, its commit time and sequence
/// number, are kept as they were). Returns per bucket the written file and its row count.
fn split_bucket(
    def: &super::TableDef,
    files: Vec<std::fs::File>,
    layout: u32,
    planned: &[PlannedFile],
) -> Result<BTreeMap<u32, (std::fs::File, u64)>> {
    let mut writers: BTreeMap<u32, (ArrowWriter<std::io::BufWriter<std::fs::File>>, u64)> =
        BTreeMap::new();
    for file in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
            .with_batch_size(8192)
            .build()?;
        let schema = def.file_schema();
        for batch in reader {
            let batch = super::conform(batch?, &schema)?;
            let keys = string_column(&batch, &def.record_key)?;
            let mut rows: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
            for row in 0..batch.num_rows() {
                rows.entry(bucket_of(keys.value(row), layout))
                    .or_default()
                    .push(row as u32);
            }
            for (bucket, indices) in rows {
                let part = take_record_batch(&batch, &UInt32Array::from(indices))?;
                let part = with_file_name(&part, &planned[bucket as usize].file_name)?;
                let (writer, count) = match writers.entry(bucket) {
                    std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                    std::collections::btree_map::Entry::Vacant(entry) => {
                        let out = std::io::BufWriter::new(tempfile::tempfile()?);
                        let writer = ArrowWriter::try_new(
                            out,
                            part.schema(),
                            Some(base_file_properties(def)?),
                        )?;
                        entry.insert((writer, 0))
                    }
                };
                writer.write(&part)?;
                *count += part.num_rows() as u64;
            }
        }
    }
    let mut files = BTreeMap::new();
    for (bucket, (writer, count)) in writers {
        let mut out = writer.into_inner()?;
        out.flush()?;
        let file = out
            .into_inner()
            .map_err(|e| CoreError::Io(e.into_error()))?;
        files.insert(bucket, (file, count));
    }
    Ok(files)
}

/// The batch with `_hoodie_file_name` set to `name` on every row.
fn with_file_name(batch: &RecordBatch, name: &str) -> Result<RecordBatch> {
    let index = batch.schema().index_of("_hoodie_file_name")?;
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[index] = Arc::new(StringArray::from(vec![name; batch.num_rows()]));
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}
