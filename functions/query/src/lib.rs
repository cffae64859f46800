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

/// The stack of the thread that plans and runs a statement. DataFusion's parser, planner and
/// optimizers recurse once per nested expression, and they are built with little optimisation (see
/// the release profile in Cargo.toml), so a filter of 500 OR terms overflowed the main thread's
/// 8 MB and aborted the CLI (at full optimisation, 5,000 did). This is address space reserved, not
/// memory used: pages are committed only as deep as the recursion goes.
const STATEMENT_STACK_BYTES: usize = 256 << 20;

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
    let sql = sql.to_owned();
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("metriccare-sql".to_owned())
        .stack_size(STATEMENT_STACK_BYTES)
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|e| CoreError::Query(format!("cannot start the SQL runtime: {e}")))
                .and_then(|runtime| {
                    runtime.block_on(async {
                        let frame = context.sql(&sql).await.map_err(query_error)?;
                        frame.collect().await.map_err(query_error)
                    })
                });
            // Only a dropped caller is not waiting for the answer, and then nobody needs it.
            let _ = answer.send(result);
        })?;
    answered
        .await
        .map_err(|_| CoreError::Query("the statement's thread ended without an answer".into()))?
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

#[cfg(test)]
mod tests {
    use arrow_array::Int64Array;
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn a_filter_of_a_thousand_or_terms_is_answered_not_a_stack_overflow() {
        // GIVEN a statement whose filter nests 1,000 OR terms (a code list pasted into a query);
        // on the caller's stack DataFusion's recursive planning aborted the process
        let terms: Vec<String> = (0..1000).map(|i| format!("x = {i}")).collect();
        let sql = format!(
            "SELECT count(*) AS n FROM (VALUES (1), (2), (5000)) AS t(x) WHERE {}",
            terms.join(" OR ")
        );
        let lake: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        // WHEN it runs
        let batches = run(&lake, &sql).await.expect("the statement runs");
        // THEN it answers: two of the three rows match
        let counts = batches[0].column(0).as_any().downcast_ref::<Int64Array>();
        assert_eq!(counts.map(|c| c.value(0)), Some(2));
    }
}
