//! The ground-truth document (`DIR/ground-truth.json`).

use serde::{Deserialize, Serialize};

use crate::Format;

/// Everything a loader + metrics pipeline is expected to produce from the
/// generated files.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GroundTruth {
    /// `fhir-generator <version>`.
    pub generator: String,
    pub seed: u64,
    /// Total patients over all tenants.
    pub patients: usize,
    pub format: Format,
    pub gzip: bool,
    pub dirty: bool,
    pub patients_per_bundle: usize,
    /// One entry per tenant, in tenant order.
    pub tenants: Vec<TenantTruth>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TenantTruth {
    /// Tenant id, e.g. `tenant-01` (also the directory name).
    pub tenant: String,
    /// The clock the metrics are computed on, minutes east of UTC (0: UTC; a tenant profile with
    /// a zone of that fixed offset gives the same gold).
    #[serde(default)]
    pub utc_offset_minutes: i32,
    pub hospitals: Vec<HospitalInfo>,
    /// Distinct rows expected in silver after loading export-1 and export-2
    /// (duplicates collapsed, newest `meta.lastUpdated` wins, deletes
    /// applied, broken records rejected).
    pub resources: ResourceCounts,
    /// Number of broken records a loader must reject (`rejects.len()`).
    pub rejected: u64,
    pub rejects: Vec<Reject>,
    pub dirty: DirtyStats,
    /// Sorted by hospital_name, hospital_identifier, month.
    pub hospital_monthly: Vec<HospitalMonth>,
    /// Sorted by month, code.
    pub hai_by_code: Vec<HaiByCode>,
    /// Sorted by year.
    pub mortality_yearly: Vec<MortalityYear>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HospitalInfo {
    /// Organization.id.
    pub id: String,
    /// Organization.identifier value (system `https://github.com/synthetichealth/synthea`).
    pub identifier: String,
    pub name: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceCounts {
    pub organization: u64,
    pub patient: u64,
    pub encounter: u64,
    pub condition: u64,
}

/// A broken record and the kind of rejection a loader should report.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Path relative to the output directory, `/`-separated.
    pub file: String,
    pub resource_type: String,
    /// `None` when the record has no id (or is not JSON).
    pub id: Option<String>,
    /// One of `missing-id`, `invalid-datetime`, `invalid-reference`,
    /// `invalid-json`.
    pub reason: String,
}

/// What the dirty mode injected (all zero without `--dirty`).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirtyStats {
    /// Extra byte-identical copies of resources (same id, same content).
    pub exact_duplicates: u64,
    /// export-2 versions with a later `meta.lastUpdated` (they win).
    pub newer_versions: u64,
    /// export-2 versions with an earlier `meta.lastUpdated` (they lose).
    pub stale_versions: u64,
    /// Conditions deleted in export-2.
    pub deleted: u64,
    /// Of which coded in the HAI value set.
    pub deleted_hai: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct HospitalMonth {
    pub hospital_name: String,
    /// Organization.id of the hospital.
    pub hospital_identifier: String,
    /// `YYYY-MM` of the discharge (UTC date of period.end).
    pub month: String,
    pub stays: u64,
    /// 30-day deaths of the episodes whose first stay is this hospital's and
    /// was discharged this month; `mortality_episodes` counts those episodes.
    pub deaths_30d: u64,
    pub mortality_episodes: u64,
    pub mortality_rate: f64,
    /// Index episodes whose last stay is this hospital's and was discharged
    /// this month.
    pub index_stays: u64,
    pub readmissions_30d: u64,
    pub readmission_rate: f64,
    pub patient_days: u64,
    pub alos: f64,
    pub hai_count: u64,
    pub hai_stays: u64,
    pub hai_per_1000_patient_days: f64,
    pub open_window_index: u64,
    pub open_window_mortality: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HaiByCode {
    pub month: String,
    /// The code system of `code` (SNOMED CT: the generator's first coding).
    pub system: String,
    pub code: String,
    pub display: String,
    pub count: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MortalityYear {
    /// Year of the episodes' first discharge.
    pub year: i32,
    pub episodes: u64,
    pub deaths: u64,
    pub rate: f64,
}
