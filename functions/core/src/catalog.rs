//! Every table of the lake under the name analysts use (`silver_<table>`, `gold_<table>`, as in
//! Athena), and its latest snapshot read by that name: the one list `metriccare query` and the
//! Python module's `read_table` share.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use object_store::ObjectStore;

use crate::error::{CoreError, Result};
use crate::gold::GoldTable;
use crate::hudi::{HudiTable, TableDef};
use crate::silver::SilverTable;

/// Every table by name, with its definition.
pub fn tables() -> Vec<(String, TableDef)> {
    let silver = SilverTable::ALL.map(|t| (format!("silver_{}", t.name()), t.def()));
    let gold = GoldTable::ALL.map(|t| (format!("gold_{}", t.name()), t.def()));
    silver.into_iter().chain(gold).collect()
}

/// The latest committed snapshot of the table called `name` (what Athena's Hudi reader shows),
/// with its schema (meta fields first). An empty table gives no batches.
pub async fn read_latest(
    lake: &Arc<dyn ObjectStore>,
    name: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let Some((_, def)) = tables().into_iter().find(|(n, _)| n == name) else {
        let known: Vec<String> = tables().into_iter().map(|(n, _)| n).collect();
        return Err(CoreError::NoSuchTable {
            name: name.to_owned(),
            known: known.join(", "),
        });
    };
    let hudi = HudiTable::open(lake.clone(), def.clone()).await?;
    let batches = hudi
        .snapshot(None)
        .await?
        .read(lake.as_ref(), None, None)
        .await?;
    Ok((def.file_schema(), batches))
}
