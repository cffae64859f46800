//! MetricCare's domain core: FHIR R4 in, de-identified Apache Hudi silver tables out.
//!
//! The core knows four ports and nothing of AWS or SQLite: object storage (the `object_store`
//! crate), the [`ports::Ledger`], the [`ports::Notifier`] and the [`ports::ScaleOut`] job that
//! takes files too big for a Lambda. Adapters live in their own crates.

mod blocking;
pub mod bulk_export;
pub mod catalog;
pub mod deid;
pub mod erase;
pub mod error;
pub mod fast_hash;
pub mod fhir;
pub mod gold;
pub mod hudi;
pub mod ingest;
pub mod objects;
pub mod ports;
pub mod profile;
pub mod rows;
pub mod scale_out;
pub mod silver;
pub mod tenant;
pub mod time;
pub mod tunables;

pub use error::{CoreError, Result};
