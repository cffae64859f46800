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
    /// Whether the same invocation cannot succeed if made again: configuration, an event this
    /// function does not handle, or a permanent core error. SDK and storage errors may be
    /// transient (throttling, a timeout) and are retried.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Config { .. } | Self::Event(_) => true,
            Self::Sdk { .. } | Self::Retry(_) | Self::Storage(_) => false,
            Self::Core(core) => core.is_permanent(),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_no_retry_can_fix_are_permanent() {
        let permanent = [
            AwsError::config("METRICCARE_LAKE_BUCKET", "is not set"),
            AwsError::Event("not an S3 notification".into()),
            AwsError::Core(CoreError::KeyMismatch {
                lake: "lake".into(),
                expected: "a".into(),
                actual: "b".into(),
            }),
            AwsError::Core(CoreError::Invariant("a reject log sealed twice")),
        ];
        let transient = [
            AwsError::Sdk {
                service: "DynamoDB",
                operation: "UpdateItem",
                message: "ThrottlingException".into(),
            },
            AwsError::Retry("b: held by another worker".into()),
            AwsError::Core(CoreError::Ledger("timeout".into())),
            AwsError::Core(CoreError::Io(std::io::Error::other("disk full"))),
        ];
        for error in &permanent {
            assert!(error.is_permanent(), "{error}");
        }
        for error in &transient {
            assert!(!error.is_permanent(), "{error}");
        }
    }
}
