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

    #[error("configuration: {0}")]
    Config(String),

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

    /// Another writer committed to the same file groups first; the caller retries on fresh state.
    #[error("hudi table {table}: commit conflict at sequence {sequence}")]
    CommitConflict { table: String, sequence: u64 },

    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),

    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}
