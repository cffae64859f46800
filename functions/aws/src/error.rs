//! The AWS layer's error type. SDK errors become these variants here, at the adapter, and reach
//! the core only as the core's own `CoreError` variants.

use std::error::Error as StdError;

use aws_sdk_s3::error::DisplayErrorContext;
use metriccare_core::CoreError;
use thiserror::Error;

pub type Result<T, E = AwsError> = std::result::Result<T, E>;

/// Error codes in an SDK error's chain that no retry changes: a policy that does not allow the
/// call, a resource that does not exist under that name, a malformed request.
const PERMANENT_SDK_CODES: [&str; 6] = [
    "AccessDenied",
    "UnauthorizedOperation",
    "ResourceNotFoundException",
    "NoSuchBucket",
    "ValidationException",
    "EntityNotFoundException",
];

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
    /// function does not handle, an SDK or storage error that says the call is not allowed or its
    /// resource does not exist, or a permanent core error. Others (throttling, a timeout) may be
    /// transient.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Config { .. } | Self::Event(_) => true,
            // The codes AWS returns for a wrong policy, name or request, which no retry changes.
            Self::Sdk { message, .. } => PERMANENT_SDK_CODES
                .iter()
                .any(|code| message.contains(code)),
            Self::Storage(
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
            ) => true,
            Self::Retry(_) | Self::Storage(_) => false,
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
            AwsError::Sdk {
                service: "DynamoDB",
                operation: "UpdateItem",
                message: "service error: ResourceNotFoundException: Requested resource not found"
                    .into(),
            },
            AwsError::Sdk {
                service: "SSM",
                operation: "GetParameter",
                message: "service error: AccessDeniedException: not authorized".into(),
            },
        ];
        let transient = [
            AwsError::Sdk {
                service: "S3",
                operation: "PutObjectTagging",
                message: "service error: SlowDown: Please reduce your request rate".into(),
            },
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
