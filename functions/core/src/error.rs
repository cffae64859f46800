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

    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),

    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl CoreError {
    /// Whether making the same call again cannot help: bad input, configuration, a refused key or
    /// profile, a bug. The others come from storage, the ledger, the notifier, the scale-out job or
    /// local I/O, which fail transiently too.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Storage(_)
            | Self::Ledger(_)
            | Self::Notifier(_)
            | Self::ScaleOut(_)
            | Self::Io(_) => false,
            Self::Parquet(_)
            | Self::Arrow(_)
            | Self::InvalidTenant(_)
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
