//! The gold Lambda: configuration and clients are built once, then each event goes to
//! [`GoldFunction::handle`]. Missing or invalid configuration stops it before the first event.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use metriccare_aws::config::Env;
use metriccare_aws::{GoldFunction, fail_start, init_logging, invocation_error};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging();
    let config = Env::process().gold().unwrap_or_else(|e| fail_start(&e));
    let function = GoldFunction::from_config(config)
        .await
        .unwrap_or_else(|e| fail_start(&e));
    let function = &function;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        function
            .handle(event.payload)
            .await
            .map_err(invocation_error)
    }))
    .await
}
