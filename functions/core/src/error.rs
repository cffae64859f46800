//! The core's error type. Adapters map their SDK errors into these variants, so the core never sees
//! an AWS or SQLite type.

use thiserror::Error;

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum CoreError {
    #[error("object storage: {0}")]
    Storage(#[from] object_store::Error),

    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),

    #[error("ledger: {0}")]
    Ledger(String),

    #[error("notifier: {0}")]
    Notifier(String),

    #[error("scale-out job: {0}")]
    ScaleOut(String),

    #[error("invalid tenant id {0:?}: must match ^[a-z0-9][a-z0-9-]{{0,62}}$")]
    InvalidTenant(String),

    #[error("raw key {0} is not inside a tenant folder (<tenant>/<any path>/<file>)")]
    NotInTenantFolder(String),

    /// A setting (an environment variable, the key, the HAI value set) that cannot be used.
    #[error("configuration: {0}")]
    Config(String),

    /// A SQL query over the lake failed (`metriccare query`).
    #[error("query: {0}")]
    Query(String),

    /// A table name no catalog holds.
    #[error("no table {name:?}; the tables are {known}")]
    NoSuchTable { name: String, known: String },

    /// An erasure request object that is not `{"patient_id": "<Patient.id>"}`.
    #[error("erasure request: {0}")]
    ErasureRequest(String),

    /// A part the scale-out path staged cannot be read back as written.
    #[error("staged part: {0}")]
    StagedPart(String),

    /// A task the work was spread over panicked or was cancelled.
    #[error("task failed: {0}")]
    Task(String),

    /// Something this code guarantees did not hold: a bug, reported instead of a panic.
    #[error("internal error: {0}")]
    Invariant(&'static str),

    /// A tenant profile (`config/tenants/<tenant>.json`) that cannot be used; names the key.
    #[error("tenant profile: {0}")]
    Profile(String),

    /// A file or folder named on the command line cannot be read.
    #[error("input {path}: {source}")]
    Input {
        path: String,
        source: std::io::Error,
    },

    /// The lake was written with another pseudonymisation key: writing with this one would count
    /// the same patient twice under two pseudonyms.
    #[error(
        "pseudonymisation key mismatch: the lake at {lake} was written with key fingerprint {expected}, \
         this run uses {actual}; refusing to write (set METRICCARE_PSEUDONYM_KEY to the lake's key)"
    )]
    KeyMismatch {
        lake: String,
        expected: String,
        actual: String,
    },

    #[error("hudi table {table}: {message}")]
    Table { table: String, message: String },

    /// Concurrent writers kept committing to the same file groups first, every attempt.
    #[error("hudi table {table}: gave up after {attempts} conflicting concurrent commits")]
    Contention { table: String, attempts: usize },

    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),

    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl CoreError {
    /// Whether making the same call again cannot help: bad input, configuration, a refused key or
    /// profile, storage that refuses these credentials, a bug. Anything that may be transient
    /// (storage, the ledger, the notifier, the scale-out job, local I/O, contention, and Parquet or
    /// Arrow errors, which can wrap I/O) is not.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Storage(
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
            ) => true,
            Self::Storage(_)
            | Self::Ledger(_)
            | Self::Notifier(_)
            | Self::ScaleOut(_)
            | Self::Io(_)
            | Self::Contention { .. }
            | Self::Parquet(_)
            | Self::Arrow(_) => false,
            Self::InvalidTenant(_)
            | Self::NotInTenantFolder(_)
            | Self::Config(_)
            | Self::Query(_)
            | Self::NoSuchTable { .. }
            | Self::ErasureRequest(_)
            | Self::StagedPart(_)
            | Self::Task(_)
            | Self::Invariant(_)
            | Self::Profile(_)
            | Self::Input { .. }
            | Self::KeyMismatch { .. }
            | Self::Table { .. }
            | Self::Json(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_no_retry_fixes_is_permanent() {
        let permanent = [
            CoreError::Config("METRICCARE_LEASE_SECONDS=\"0\"".into()),
            CoreError::ErasureRequest("its patient_id is not a FHIR id".into()),
            CoreError::Table {
                table: "patient".into(),
                message: "existing table has hoodie.table.type=\"MERGE_ON_READ\"".into(),
            },
            CoreError::Storage(object_store::Error::PermissionDenied {
                path: "silver".into(),
                source: "AccessDenied".into(),
            }),
            CoreError::Invariant("a reject log sealed twice"),
        ];
        let transient = [
            CoreError::Contention {
                table: "patient".into(),
                attempts: 20,
            },
            CoreError::Storage(object_store::Error::NotFound {
                path: "silver/patient/.hoodie/x.commit".into(),
                source: "gone".into(),
            }),
            CoreError::Ledger("ProvisionedThroughputExceeded".into()),
            CoreError::Io(std::io::Error::other("no space left on device")),
            CoreError::Parquet(parquet::errors::ParquetError::General("eof".into())),
        ];
        for error in &permanent {
            assert!(error.is_permanent(), "{error}");
        }
        for error in &transient {
            assert!(!error.is_permanent(), "{error}");
        }
    }
}
