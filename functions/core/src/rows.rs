//! Typed rows of the lake's tables and their conversion into Arrow batches: one builder, driven by
//! the schema, for silver and gold alike.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, SchemaRef, TimeUnit};

use crate::error::Result;

/// Column types of the lake's tables (each has an exact Avro mapping, see `hudi::avro_schema`).
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Str,
    I32,
    I64,
    F64,
    Bool,
    Ts,
    /// A calendar date (days since 1970-01-01).
    Date,
}

pub fn field(name: &str, kind: Kind, nullable: bool) -> Field {
    let data_type = match kind {
        Kind::Str => DataType::Utf8,
        Kind::I32 => DataType::Int32,
        Kind::I64 => DataType::Int64,
        Kind::F64 => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::Ts => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
        Kind::Date => DataType::Date32,
    };
    Field::new(name, data_type, nullable)
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
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
    Date(Date32Builder),
}

impl BatchBuilder {
    pub fn new(schema: SchemaRef) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => ColumnBuilder::Str(StringBuilder::new()),
                DataType::Int32 => ColumnBuilder::I32(Int32Builder::new()),
                DataType::Int64 => ColumnBuilder::I64(Int64Builder::new()),
                DataType::Float64 => ColumnBuilder::F64(Float64Builder::new()),
                DataType::Boolean => ColumnBuilder::Bool(BooleanBuilder::new()),
                DataType::Date32 => ColumnBuilder::Date(Date32Builder::new()),
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

    /// Appends one row column by column, straight from borrowed values: a row of values (and an
    /// owned string per text value) showed in the profiles of the ingest and of gold.
    pub fn row(&mut self) -> RowWriter<'_> {
        RowWriter {
            builder: self,
            column: 0,
        }
    }

    pub fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    ColumnBuilder::Str(b) => Arc::new(b.finish()),
                    ColumnBuilder::I32(b) => Arc::new(b.finish()),
                    ColumnBuilder::I64(b) => Arc::new(b.finish()),
                    ColumnBuilder::F64(b) => Arc::new(b.finish()),
                    ColumnBuilder::Bool(b) => Arc::new(b.finish()),
                    ColumnBuilder::Ts(b) => Arc::new(b.finish()),
                    ColumnBuilder::Date(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

/// One row being appended, in schema order; [`RowWriter::end`] counts it. A type that does not
/// match the column is a bug in the caller's column order, caught by the first test that builds
/// such a row.
pub struct RowWriter<'b> {
    builder: &'b mut BatchBuilder,
    column: usize,
}

impl RowWriter<'_> {
    fn next(&mut self) -> &mut ColumnBuilder {
        let column = &mut self.builder.columns[self.column];
        self.column += 1;
        column
    }

    pub fn str(&mut self, value: Option<&str>) -> &mut Self {
        match self.next() {
            ColumnBuilder::Str(b) => b.append_option(value),
            _ => unreachable!("a text value for a column that is not text"),
        }
        self
    }

    pub fn i32(&mut self, value: Option<i32>) -> &mut Self {
        match self.next() {
            ColumnBuilder::I32(b) => b.append_option(value),
            _ => unreachable!("an i32 value for a column that is not Int32"),
        }
        self
    }

    pub fn i64(&mut self, value: Option<i64>) -> &mut Self {
        match self.next() {
            ColumnBuilder::I64(b) => b.append_option(value),
            _ => unreachable!("an i64 value for a column that is not Int64"),
        }
        self
    }

    pub fn f64(&mut self, value: Option<f64>) -> &mut Self {
        match self.next() {
            ColumnBuilder::F64(b) => b.append_option(value),
            _ => unreachable!("an f64 value for a column that is not Float64"),
        }
        self
    }

    pub fn date(&mut self, value: Option<i32>) -> &mut Self {
        match self.next() {
            ColumnBuilder::Date(b) => b.append_option(value),
            _ => unreachable!("a date value for a column that is not Date32"),
        }
        self
    }

    pub fn bool(&mut self, value: Option<bool>) -> &mut Self {
        match self.next() {
            ColumnBuilder::Bool(b) => b.append_option(value),
            _ => unreachable!("a boolean value for a column that is not Boolean"),
        }
        self
    }

    pub fn ts(&mut self, value: Option<i64>) -> &mut Self {
        match self.next() {
            ColumnBuilder::Ts(b) => b.append_option(value),
            _ => unreachable!("a timestamp value for a column that is not a timestamp"),
        }
        self
    }

    pub fn end(&mut self) {
        assert_eq!(
            self.column,
            self.builder.columns.len(),
            "row width differs from the schema"
        );
        self.builder.rows += 1;
    }
}
