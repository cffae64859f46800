//! The silver tables: their schemas (documented in `docs/silver-schema.md`) and the conversion of
//! de-identified records into Arrow batches for the Hudi writer.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Int32Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use object_store::path::Path;

use crate::error::Result;
use crate::hudi::TableDef;

/// Bucket count of every silver table (fixed at creation: it decides which file group holds a key).
pub const SILVER_BUCKETS: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SilverTable {
    Patient,
    Encounter,
    Condition,
    Organization,
}

impl SilverTable {
    pub const ALL: [SilverTable; 4] = [
        Self::Patient,
        Self::Encounter,
        Self::Condition,
        Self::Organization,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::Encounter => "encounter",
            Self::Condition => "condition",
            Self::Organization => "organization",
        }
    }

    pub fn record_key(self) -> &'static str {
        match self {
            Self::Patient => "patient_key",
            Self::Encounter => "encounter_key",
            Self::Condition => "condition_key",
            Self::Organization => "organization_key",
        }
    }

    /// The FHIR resource type this table holds.
    pub fn resource_type(self) -> &'static str {
        match self {
            Self::Patient => "Patient",
            Self::Encounter => "Encounter",
            Self::Condition => "Condition",
            Self::Organization => "Organization",
        }
    }

    pub fn from_resource_type(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.resource_type() == kind)
    }

    pub fn def(self) -> TableDef {
        TableDef {
            name: self.name().to_owned(),
            base: Path::from("silver").join(self.name()),
            record_key: self.record_key().to_owned(),
            partition_field: "tenant_id".to_owned(),
            precombine: "last_updated".to_owned(),
            buckets: SILVER_BUCKETS,
            data_schema: self.schema(),
        }
    }

    pub fn schema(self) -> SchemaRef {
        use Kind::*;
        let specific: &[(&str, Kind, bool)] = match self {
            Self::Patient => &[
                ("gender", Str, true),
                ("birth_year", I32, true),
                ("deceased", Bool, true),
                ("deceased_at", Ts, true),
                ("postal_prefix", Str, true),
                ("state", Str, true),
                ("country", Str, true),
                ("marital_status", Str, true),
            ],
            Self::Encounter => &[
                ("patient_key", Str, false),
                ("status", Str, true),
                ("class_code", Str, true),
                ("type_code", Str, true),
                ("type_display", Str, true),
                ("reason_code", Str, true),
                ("period_start", Ts, true),
                ("period_end", Ts, true),
                ("hospital_key", Str, true),
                ("hospital_name", Str, true),
                ("discharge_disposition", Str, true),
            ],
            Self::Condition => &[
                ("patient_key", Str, false),
                ("encounter_key", Str, true),
                ("code_system", Str, true),
                ("code", Str, true),
                ("code_display", Str, true),
                ("clinical_status", Str, true),
                ("verification_status", Str, true),
                ("category", Str, true),
                ("onset_at", Ts, true),
                ("abatement_at", Ts, true),
                ("recorded_at", Ts, true),
            ],
            Self::Organization => &[
                ("identifier_key", Str, true),
                ("name", Str, true),
                ("type_code", Str, true),
                ("active", Bool, true),
                ("city", Str, true),
                ("state", Str, true),
            ],
        };
        let mut fields = vec![
            field(self.record_key(), Str, false),
            field("tenant_id", Str, false),
        ];
        fields.extend(
            specific
                .iter()
                .map(|(name, kind, nullable)| field(name, *kind, *nullable)),
        );
        fields.extend([
            field("last_updated", Ts, false),
            field("version_id", Str, true),
            field("source_file_id", Str, false),
            field("ingested_at", Ts, false),
        ]);
        Arc::new(Schema::new(fields))
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    I32,
    Bool,
    Ts,
}

fn field(name: &str, kind: Kind, nullable: bool) -> Field {
    let data_type = match kind {
        Kind::Str => DataType::Utf8,
        Kind::I32 => DataType::Int32,
        Kind::Bool => DataType::Boolean,
        Kind::Ts => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
    };
    Field::new(name, data_type, nullable)
}

/// One value of a silver row, in schema order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Option<String>),
    I32(Option<i32>),
    Bool(Option<bool>),
    Ts(Option<i64>),
}

/// Accumulates rows of one table and turns them into a RecordBatch.
pub struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    rows: usize,
}

enum ColumnBuilder {
    Str(StringBuilder),
    I32(Int32Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
}

impl BatchBuilder {
    pub fn new(schema: SchemaRef) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => ColumnBuilder::Str(StringBuilder::new()),
                DataType::Int32 => ColumnBuilder::I32(Int32Builder::new()),
                DataType::Boolean => ColumnBuilder::Bool(BooleanBuilder::new()),
                _ => ColumnBuilder::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            })
            .collect();
        Self {
            schema,
            columns,
            rows: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one row; `values` must follow the schema (checked in debug builds).
    pub fn push(&mut self, values: Vec<Value>) {
        debug_assert_eq!(
            values.len(),
            self.columns.len(),
            "row width differs from the schema"
        );
        for (column, value) in self.columns.iter_mut().zip(values) {
            match (column, value) {
                (ColumnBuilder::Str(b), Value::Str(v)) => b.append_option(v),
                (ColumnBuilder::I32(b), Value::I32(v)) => b.append_option(v),
                (ColumnBuilder::Bool(b), Value::Bool(v)) => b.append_option(v),
                (ColumnBuilder::Ts(b), Value::Ts(v)) => b.append_option(v),
                _ => unreachable!("silver row value does not match its column type"),
            }
        }
        self.rows += 1;
    }

    pub fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    ColumnBuilder::Str(b) => Arc::new(b.finish()),
                    ColumnBuilder::I32(b) => Arc::new(b.finish()),
                    ColumnBuilder::Bool(b) => Arc::new(b.finish()),
                    ColumnBuilder::Ts(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_starts_with_its_key_and_tenant_and_ends_with_lineage() {
        for table in SilverTable::ALL {
            let schema = table.schema();
            assert_eq!(schema.field(0).name(), table.record_key());
            assert_eq!(schema.field(1).name(), "tenant_id");
            let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert!(names.ends_with(&[
                "last_updated",
                "version_id",
                "source_file_id",
                "ingested_at"
            ]));
            assert!(crate::hudi::avro_schema(table.name(), &schema).is_ok());
        }
    }

    #[test]
    fn builds_a_batch_from_rows() {
        let schema = SilverTable::Organization.schema();
        let mut builder = BatchBuilder::new(schema.clone());
        let mut row = vec![Value::Str(Some("k".into())), Value::Str(Some("t".into()))];
        row.extend([
            Value::Str(None),
            Value::Str(Some("General".into())),
            Value::Str(None),
            Value::Bool(Some(true)),
            Value::Str(None),
            Value::Str(None),
            Value::Ts(Some(1)),
            Value::Str(None),
            Value::Str(Some("src".into())),
            Value::Ts(Some(2)),
        ]);
        builder.push(row);
        let batch = builder.finish().unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema(), schema);
    }
}
