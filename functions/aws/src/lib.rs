//! MetricCare on AWS: the adapters of the core's ports (S3 through `object_store`, the DynamoDB
//! ledger, the SNS notifier, Glue for the catalog and the scale-out job) and the two Lambda
//! handlers. The Lambda binaries are thin `main`s around [`IngestFunction`] and [`GoldFunction`].

pub mod batch_answer;
pub mod clients;
pub mod config;
pub mod error;
pub mod events;
pub mod glue;
pub mod gold_function;
pub mod ingest_function;
pub mod ledger;
pub mod sns;

pub use error::{AwsError, Result};
pub use gold_function::GoldFunction;
pub use ingest_function::IngestFunction;

/// Structured JSON logs on stderr (CloudWatch keeps one event per line). `METRICCARE_LOG` filters
/// (default `info`: one line per file with its ledger id, tenant and outcome; never a key or PHI).
pub fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env(metriccare_core::tunables::LOG_VARIABLE)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_current_span(false)
        .init();
}

/// The error a handler returns to Lambda, logged once with whether retrying can help: Lambda
/// retries a failed asynchronous invocation (twice, then the dead-letter topic) either way, and an
/// alarm on `permanent=true` finds the ones no retry will fix (configuration, a refused key, an
/// unreadable event).
pub fn invocation_error(error: AwsError) -> Box<dyn std::error::Error + Send + Sync> {
    tracing::error!(error = %error, permanent = error.is_permanent(), "the invocation failed");
    Box::new(error)
}

/// Ends a function that cannot start, with one JSON line that names the problem (a missing or
/// invalid variable, an unreachable parameter) for the Lambda console's init error.
pub fn fail_start(error: &AwsError) -> ! {
    tracing::error!(error = %error, "the function cannot start");
    std::process::exit(1)
}
