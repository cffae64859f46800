//! Typed access to a batch's columns by name, for the writer's stages (staging, merge, tiers,
//! tombstones): a missing or mistyped column is a table error naming it.

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{PrimitiveArray, RecordBatch, StringArray};

use crate::error::{CoreError, Result};

pub(super) fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| CoreError::Table {
            table: name.to_owned(),
            message: format!("missing string column {name}"),
        })
}

pub(super) fn timestamp_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a PrimitiveArray<TimestampMicrosecondType>> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or_else(|| CoreError::Table {
            table: name.to_owned(),
            message: format!("missing timestamp column {name}"),
        })
}
