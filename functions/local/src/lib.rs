//! The embedded default's adapters: a SQLite ledger and a JSON-lines notifier. No AWS, no server.

pub mod counting;
mod jsonl;
pub mod lake;
mod sqlite;

pub use jsonl::JsonLinesNotifier;
pub use lake::{LocalConfig, LocalLake};
pub use sqlite::SqliteLedger;
