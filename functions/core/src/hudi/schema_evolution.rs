//! Columns added to a table after some of its files were written (Hudi's "schema evolution on
//! write" for copy-on-write tables: adding a nullable column). The newest commit's Avro schema is
//! the table's; a base file written before keeps the columns it had until a commit rewrites it.
//! Readers match columns by name and read a missing one as null (the Apache Hudi reader and
//! Athena's do); so does everything here that reads a base file, through [`conform`]: a batch of
//! an older file enters the current schema, so merges, snapshots, gold and erasure see one schema.

use arrow_array::{RecordBatch, RecordBatchOptions, new_null_array};
use arrow_schema::SchemaRef;

use crate::error::{CoreError, Result};

/// `batch` in `schema`: columns matched by name; a column the batch lacks is all null (it was added
/// to the table after the batch's file was written). A missing column that may not be null, or a
/// column whose type changed, is an error: only nullable additions are evolutions.
pub fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let rows = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
            Some(column) => Err(CoreError::Table {
                table: String::new(),
                message: format!(
                    "column {} is {} in a base file but {} in the table",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                ),
            }),
            None if field.is_nullable() => Ok(new_null_array(field.data_type(), rows)),
            None => Err(CoreError::Table {
                table: String::new(),
                message: format!("a base file has no column {}", field.name()),
            }),
        })
        .collect::<Result<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Array, Int32Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn a_batch_of_an_older_file_gets_the_added_columns_as_nulls() {
        // GIVEN a batch written before column `added` existed, with its columns in another order
        let old = Arc::new(Schema::new(vec![
            Field::new("b", DataType::Int32, true),
            Field::new("key", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            old,
            vec![
                Arc::new(Int32Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec!["k1", "k2"])),
            ],
        )
        .unwrap();
        let table = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("added", DataType::Utf8, true),
            Field::new("b", DataType::Int32, true),
        ]));
        // WHEN it is conformed to the table's schema
        let conformed = conform(batch, &table).unwrap();
        // THEN it has the table's columns, in its order, the added one null
        assert_eq!(conformed.schema(), table);
        assert_eq!(conformed.column(1).null_count(), 2);
        assert_eq!(conformed.num_rows(), 2);
        // AND a column that may not be null cannot be made up
        let strict = Arc::new(Schema::new(vec![Field::new(
            "other",
            DataType::Utf8,
            false,
        )]));
        assert!(conform(conformed.clone(), &strict).is_err());
        // AND a type change is no evolution
        let retyped = Arc::new(Schema::new(vec![Field::new("b", DataType::Utf8, true)]));
        assert!(conform(conformed, &retyped).is_err());
    }
}
