//! SQL over the lake: every silver and gold table registered under `silver_<table>` and
//! `gold_<table>` as its latest committed Hudi snapshot (what Athena's Hudi reader shows), queried
//! with DataFusion. Only the CLI links this crate; the Lambda binaries never carry DataFusion.

use std::sync::Arc;

use arrow_array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use metriccare_core::catalog;
use metriccare_core::{CoreError, Result};
use object_store::ObjectStore;

fn query_error(e: datafusion::error::DataFusionError) -> CoreError {
    CoreError::Query(e.to_string())
}

/// Runs one SQL statement against the lake's latest snapshots. Only the tables the statement
/// names are read.
pub async fn run(lake: &Arc<dyn ObjectStore>, sql: &str) -> Result<Vec<RecordBatch>> {
    let context = SessionContext::new();
    let lowered = sql.to_lowercase();
    for (name, _) in catalog::tables() {
        if !lowered.contains(&name) {
            continue;
        }
        let (schema, batches) = catalog::read_latest(lake, &name).await?;
        let table = MemTable::try_new(schema, vec![batches]).map_err(query_error)?;
        context
            .register_table(name.as_str(), Arc::new(table))
            .map_err(query_error)?;
    }
    let frame = context.sql(sql).await.map_err(query_error)?;
    frame.collect().await.map_err(query_error)
}

/// How query results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Renders results as an aligned table, CSV with a header, or JSON lines.
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String> {
    let arrow = |e: datafusion::arrow::error::ArrowError| CoreError::Query(format!("output: {e}"));
    match format {
        Format::Table => Ok(
            datafusion::arrow::util::pretty::pretty_format_batches(batches)
                .map_err(arrow)?
                .to_string(),
        ),
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for batch in batches {
                    writer.write(batch).map_err(arrow)?;
                }
            }
            String::from_utf8(out).map_err(|e| CoreError::Query(format!("output: {e}")))
        }
        Format::Json => {
            let mut out = Vec::new();
            {
                let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                writer.write_batches(&refs).map_err(arrow)?;
                writer.finish().map_err(arrow)?;
            }
            String::from_utf8(out).map_err(|e| CoreError::Query(format!("output: {e}")))
        }
    }
}
