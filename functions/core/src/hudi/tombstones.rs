//! Tombstones: a delete stays a delete. Each deleted key keeps its delete's ordering in a small
//! Hudi table beside the data table (`_metriccare/tombstones/<table path>/`, same partitions and
//! buckets, written by the same writer), and the merge ignores an incoming version ordered at or
//! before its key's tombstone. Without it, an older version arriving after the delete (SQS does not
//! keep upload order; an export re-sent) would bring the record back.
//!
//! A group's deletes are recorded before the data commit: a data commit that then fails leaves a
//! tombstone whose delete is applied by the retry, never a delete without its tombstone. The data
//! writer reads the tombstones of the file groups it merges at every attempt, so a tombstone
//! committed by a concurrent writer is seen once the conflict on the data file group sends the
//! writer back to fresh state.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::Schema;
use object_store::ObjectStore;
use object_store::path::Path;

use super::TableDef;
use super::columns::{string_column, timestamp_column};
use super::snapshot::read_base_file;
use super::staging::StagedRows;
use super::writer::{CommitOutcome, HudiTable};
use crate::error::Result;
use crate::rows::{Kind, field};

/// The ordering column of a tombstone.
pub const DELETED_AT: &str = "deleted_at";

/// Tombstones of the partitions a commit touches: partition → key → delete ordering.
pub type TombstoneMap = HashMap<String, HashMap<Box<str>, i64>>;

impl TableDef {
    /// The tombstone table of this table: key, partition field and the delete's ordering.
    pub fn tombstones(&self) -> TableDef {
        let base = self
            .base
            .parts()
            .fold(Path::from("_metriccare").join("tombstones"), |dir, part| {
                dir.join(part)
            });
        TableDef {
            name: format!("{}_tombstones", self.name),
            base,
            record_key: self.record_key.clone(),
            partition_field: self.partition_field.clone(),
            precombine: DELETED_AT.to_owned(),
            buckets: self.buckets,
            data_schema: Arc::new(Schema::new(vec![
                field(&self.record_key, Kind::Str, false),
                field(&self.partition_field, Kind::Str, false),
                field(DELETED_AT, Kind::Ts, false),
            ])),
        }
    }
}

/// The tombstone table of one data table.
pub struct Tombstones {
    table: HudiTable,
}

impl Tombstones {
    pub async fn open(store: Arc<dyn ObjectStore>, of: &TableDef) -> Result<Self> {
        Ok(Self {
            table: HudiTable::open(store, of.tombstones()).await?,
        })
    }

    pub fn table(&self) -> &HudiTable {
        &self.table
    }

    /// Records every delete of the group as a tombstone, in one commit (none when the group deletes
    /// nothing; a tombstone already there with a later ordering stays).
    pub async fn record(&self, group: &[StagedRows]) -> Result<CommitOutcome> {
        let def = self.table.def();
        let mut staged = StagedRows::new(def);
        let prefix = format!("{}=", def.partition_field);
        for rows in group {
            let mut by_partition: HashMap<&str, (Vec<&str>, Vec<i64>)> = HashMap::new();
            for (partition, delete) in rows.deletes() {
                let (keys, orderings) = by_partition.entry(partition).or_default();
                keys.push(&delete.key);
                orderings.push(delete.ordering);
            }
            for (partition, (keys, orderings)) in by_partition {
                let value = partition.strip_prefix(&prefix).unwrap_or(partition);
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from(keys.clone())),
                    Arc::new(StringArray::from(vec![value; keys.len()])),
                    Arc::new(TimestampMicrosecondArray::from(orderings).with_timezone("UTC")),
                ];
                let batch = RecordBatch::try_new(def.data_schema.clone(), columns)?;
                staged.push(value, &batch)?;
            }
        }
        self.table.commit_staged(&mut staged).await
    }

    /// The committed tombstones of the given partitions (deletes are few: all of a partition's
    /// are read, whatever the data table's layout).
    pub async fn load(&self, partitions: &[String]) -> Result<TombstoneMap> {
        let def = self.table.def();
        let snapshot = self.table.snapshot(Some(partitions)).await?;
        let mut map = TombstoneMap::new();
        for slice in snapshot.slices.values() {
            let columns = [def.record_key.as_str(), DELETED_AT];
            let batches = read_base_file(
                self.table.store().as_ref(),
                &slice.path,
                Some(&columns),
                &snapshot.schema,
            )
            .await?;
            let keys = map.entry(slice.partition.clone()).or_default();
            for batch in &batches {
                let key = string_column(batch, &def.record_key)?;
                let ordering = timestamp_column(batch, DELETED_AT)?;
                for row in 0..batch.num_rows() {
                    keys.insert(key.value(row).into(), ordering.value(row));
                }
            }
        }
        Ok(map)
    }
}
