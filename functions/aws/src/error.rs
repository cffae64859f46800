//! The AWS layer's error type. SDK errors become these variants here, at the adapter, and reach
//! the core only as the core's own `CoreError` variants.

use std::error::Error as StdError;

use aws_sdk_s3::error::DisplayErrorContext;
use metriccare_core::CoreError;
use thiserror::Error;

pub type Result<T, E = AwsError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum AwsError {
    /// Missing or invalid configuration: the function stops at start.
    #[error("configuration: {variable} {problem}")]
    Config {
        variable: &'static str,
        problem: String,
    },

    /// An AWS call failed; `message` holds the whole error chain (code, message, request id).
    #[error("{service} {operation}: {message}")]
    Sdk {
        service: &'static str,
        operation: &'static str,
        message: String,
    },

    /// The invocation's payload is not an event this function handles.
    #[error("{0}")]
    Event(String),

    /// Some objects of a plain S3 event must be processed again: the invocation fails so that
    /// Lambda retries it (objects already done are not processed twice).
    #[error("objects to retry: {0}")]
    Retry(String),

    #[error(transparent)]
    Core(#[from] CoreError),

    #[error("object storage: {0}")]
    Storage(#[from] object_store::Error),
}

impl AwsError {
    pub fn config(variable: &'static str, problem: impl Into<String>) -> Self {
        Self::Config {
            variable,
            problem: problem.into(),
        }
    }

    /// Wraps any SDK error with the service and operation it came from.
    pub fn sdk(
        service: &'static str,
        operation: &'static str,
        error: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self::Sdk {
            service,
            operation,
            message: DisplayErrorContext(&error).to_string(),
        }
    }
}
