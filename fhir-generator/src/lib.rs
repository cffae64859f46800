//! Synthetic FHIR R4 data for the MetricCare lakehouse, with its ground truth.
//!
//! [`generate`] writes N patients spread over T tenants (deterministic for a
//! seed) as Bulk-FHIR NDJSON or Synthea-style transaction Bundles, optionally
//! gzipped and optionally "dirty" (duplicates, broken records, an
//! incremental export with newer/stale versions and deletes), and
//! `DIR/ground-truth.json`: the silver row counts and CMS metrics a correct
//! pipeline must produce, computed from the generator's own model of the
//! final state (see [`metrics`] for the exact definitions).
//!
//! Layout (per tenant `DIR/<tenant>/`):
//! - ndjson: `export-1/{Organization,Patient,Encounter,Condition}.ndjson[.gz]`;
//!   dirty adds `export-2/<Type>.ndjson[.gz]` and
//!   `export-2/deleted/Bundle.ndjson[.gz]`.
//! - bundle: `export-1/organizations.json[.gz]` (batch),
//!   `export-1/patients-000001.json[.gz]`, ... (transaction, K patients each);
//!   dirty adds `export-2/organizations.json`, `export-2/updates-NNNNNN.json`
//!   (PUT entries) and `export-2/deletes.json` (DELETE entries).

#[macro_use]
mod json;
mod decor;
pub mod metrics;
pub mod model;
mod output;
mod rng;
mod synth;
pub mod time;
pub mod truth;
pub mod vocab;

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

pub use truth::{
    DirtyStats, GroundTruth, HaiByCode, HospitalInfo, HospitalMonth, MortalityYear, Reject,
    ResourceCounts, TenantTruth,
};

use json::Ctx;
use metrics::MetricsAccumulator;
use output::{TenantWriter, annotate};
use rng::{Rng, mix};
use vocab::STATES;

/// Name of the ground-truth file in the output directory.
pub const GROUND_TRUTH_FILE: &str = "ground-truth.json";
/// Upper bound for `Config::tenants`.
pub const MAX_TENANTS: usize = 10_000;

/// Output format.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Synthea-style transaction Bundles (`urn:uuid:` references).
    Bundle,
    /// Bulk-FHIR NDJSON, one file per resource type.
    #[default]
    Ndjson,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Bundle => "bundle",
            Format::Ndjson => "ndjson",
        }
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Total patients, split evenly over the tenants (the first tenants get
    /// one more when it does not divide).
    pub patients: usize,
    pub tenants: usize,
    pub seed: u64,
    pub format: Format,
    pub gzip: bool,
    pub dirty: bool,
    /// Patients per transaction Bundle (bundle format only).
    pub patients_per_bundle: usize,
    /// Each tenant's clock for the ground truth, minutes east of UTC, by tenant index (cycled;
    /// empty: UTC). Gold agrees when each tenant's profile names a zone with that fixed offset
    /// (`Etc/GMT+5` is 300 minutes west).
    pub tenant_clocks: Vec<i32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            patients: 1000,
            tenants: 3,
            seed: 42,
            format: Format::Ndjson,
            gzip: false,
            dirty: false,
            patients_per_bundle: 50,
            tenant_clocks: Vec::new(),
        }
    }
}

/// What [`generate`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Data files written (ground-truth.json not included).
    pub files: usize,
    /// Resource records written, including duplicates, export-2 versions and
    /// broken records (DELETE entries not included).
    pub resources: u64,
    /// Bytes on disk of the data files (compressed size with gzip).
    pub bytes: u64,
    pub ground_truth: GroundTruth,
}

/// Tenant ids: `tenant-01`, `tenant-02`, ... (at least two digits).
pub fn tenant_ids(tenants: usize) -> Vec<String> {
    (1..=tenants).map(|i| format!("tenant-{i:02}")).collect()
}

/// How many patients each tenant gets.
pub fn patients_per_tenant(patients: usize, tenants: usize) -> Vec<usize> {
    if tenants == 0 {
        return Vec::new();
    }
    (0..tenants)
        .map(|i| patients / tenants + usize::from(i < patients % tenants))
        .collect()
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Checks the configuration (errors are `InvalidInput`).
pub fn validate(config: &Config) -> io::Result<()> {
    if config.tenants == 0 || config.tenants > MAX_TENANTS {
        return Err(invalid(format!(
            "tenants must be between 1 and {MAX_TENANTS} (got {})",
            config.tenants
        )));
    }
    if config.patients_per_bundle == 0 {
        return Err(invalid("patients per bundle must be at least 1".into()));
    }
    Ok(())
}

/// Creates `out` if needed; it must be empty so that no stale files of an
/// earlier run get loaded with the new ones (error kind `AlreadyExists`).
fn prepare_output(out: &Path) -> io::Result<()> {
    if out.exists() {
        if !out.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a directory", out.display()),
            ));
        }
        let mut entries = fs::read_dir(out).map_err(|e| annotate(e, out))?;
        if entries.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "output directory {} is not empty; use a new or empty directory",
                    out.display()
                ),
            ));
        }
    }
    fs::create_dir_all(out).map_err(|e| annotate(e, out))
}

struct TenantResult {
    truth: TenantTruth,
    files: usize,
    resources: u64,
    bytes: u64,
}

fn run_tenant(
    config: &Config,
    index: usize,
    tenant: &str,
    patients: usize,
    out: &Path,
) -> io::Result<TenantResult> {
    let mut rng = Rng::new(mix(config.seed, (index as u64) << 1));
    let mut drng = Rng::new(mix(config.seed, ((index as u64) << 1) | 1));
    let state = &STATES[index % STATES.len()];
    let hospitals = synth::hospitals(&mut rng, state);
    let ctx = Ctx {
        state,
        hospitals: &hospitals,
    };
    let mut w = TenantWriter::new(out, tenant, config.format, config.gzip)?;
    w.organizations(&hospitals)?;

    let mut dirty = DirtyStats::default();
    let mut rejects = Vec::new();
    let mut counts = ResourceCounts {
        organization: hospitals.len() as u64,
        ..ResourceCounts::default()
    };
    let clock_min = if config.tenant_clocks.is_empty() {
        0
    } else {
        config.tenant_clocks[index % config.tenant_clocks.len()]
    };
    let mut acc = MetricsAccumulator::new().on_clock(clock_min);
    if config.dirty {
        w.organization_copy(&hospitals[0])?;
        dirty.exact_duplicates += 1;
    }
    let k = config.patients_per_bundle.max(1);
    let junk_at = patients / 2;
    let mut pending_duplicates = Vec::new();
    for i in 0..patients {
        if i % k == 0 {
            w.begin_chunk()?;
            // Duplicates go into a later chunk (another Bundle file).
            for d in pending_duplicates.drain(..) {
                w.patient_record(&d, &ctx)?;
            }
        }
        let base = synth::patient(&mut rng, hospitals.len());
        if config.dirty {
            let plan = synth::plan_dirty(&mut drng, &base, &mut dirty);
            for item in &plan.items {
                w.export2(item, &plan.final_rec, &ctx)?;
            }
            w.patient_record(&base, &ctx)?;
            add_counts(&mut counts, &plan.final_rec);
            acc.add_patient(&plan.final_rec);
            if plan.duplicate {
                pending_duplicates.push(base.clone());
            }
            if i == junk_at {
                let j = synth::junk(&mut drng, Some(&base), hospitals.len());
                rejects.extend(w.junk(&j, &ctx)?);
            }
        } else {
            w.patient_record(&base, &ctx)?;
            add_counts(&mut counts, &base);
            acc.add_patient(&base);
        }
    }
    if !pending_duplicates.is_empty() {
        w.begin_chunk()?;
        for d in pending_duplicates.drain(..) {
            w.patient_record(&d, &ctx)?;
        }
    }
    if config.dirty && patients == 0 {
        w.begin_chunk()?;
        let j = synth::junk(&mut drng, None, hospitals.len());
        rejects.extend(w.junk(&j, &ctx)?);
    }
    w.end_chunk()?;
    let resources = w.resources;
    let (files, bytes) = w.finish()?;

    let (hospital_monthly, hai_by_code, mortality_yearly) = acc.finish(&hospitals);
    let truth = TenantTruth {
        tenant: tenant.to_string(),
        utc_offset_minutes: clock_min,
        hospitals: hospitals
            .iter()
            .map(|h| HospitalInfo {
                id: h.id.to_string(),
                identifier: h.identifier.to_string(),
                name: h.name.clone(),
            })
            .collect(),
        resources: counts,
        rejected: rejects.len() as u64,
        rejects,
        dirty,
        hospital_monthly,
        hai_by_code,
        mortality_yearly,
    };
    Ok(TenantResult {
        truth,
        files,
        resources,
        bytes,
    })
}

fn add_counts(c: &mut ResourceCounts, rec: &model::PatientRecord) {
    c.patient += 1;
    c.encounter += rec.encounters.len() as u64;
    c.condition += rec.conditions.len() as u64;
}

/// Writes the data set and `ground-truth.json` into `out` (created if
/// missing; must be empty). Tenants are generated in parallel; the output is
/// byte-identical for the same config.
pub fn generate(config: &Config, out: &Path) -> io::Result<Summary> {
    validate(config)?;
    prepare_output(out)?;
    let tenants = tenant_ids(config.tenants);
    let counts = patients_per_tenant(config.patients, config.tenants);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, tenants.len());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<io::Result<TenantResult>>>> =
        Mutex::new((0..tenants.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    if failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= tenants.len() {
                        break;
                    }
                    let r = run_tenant(config, i, &tenants[i], counts[i], out);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut summary_files = 0;
    let mut resources = 0;
    let mut bytes = 0;
    let mut truths = Vec::with_capacity(tenants.len());
    for r in results {
        match r {
            Some(Ok(t)) => {
                summary_files += t.files;
                resources += t.resources;
                bytes += t.bytes;
                truths.push(t.truth);
            }
            Some(Err(e)) => return Err(e),
            None => return Err(io::Error::other("generation stopped after an error")),
        }
    }
    let ground_truth = GroundTruth {
        generator: format!("fhir-generator {}", env!("CARGO_PKG_VERSION")),
        seed: config.seed,
        patients: config.patients,
        format: config.format,
        gzip: config.gzip,
        dirty: config.dirty,
        patients_per_bundle: config.patients_per_bundle,
        tenants: truths,
    };
    let mut text = serde_json::to_vec_pretty(&ground_truth).map_err(io::Error::other)?;
    text.push(b'\n');
    let path = out.join(GROUND_TRUTH_FILE);
    fs::write(&path, text).map_err(|e| annotate(e, &path))?;
    Ok(Summary {
        files: summary_files,
        resources,
        bytes,
        ground_truth,
    })
}

/// Reads `DIR/ground-truth.json`.
pub fn read_ground_truth(dir: &Path) -> io::Result<GroundTruth> {
    let path = dir.join(GROUND_TRUTH_FILE);
    let text = fs::read(&path).map_err(|e| annotate(e, &path))?;
    serde_json::from_slice(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_match_pattern() {
        let ids = tenant_ids(120);
        assert_eq!(ids[0], "tenant-01");
        assert_eq!(ids[9], "tenant-10");
        assert_eq!(ids[119], "tenant-120");
        for id in ids {
            let b = id.as_bytes();
            assert!(b.len() <= 63);
            assert!(b[0].is_ascii_lowercase() || b[0].is_ascii_digit());
            assert!(
                b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            );
        }
    }

    #[test]
    fn split_is_even() {
        assert_eq!(patients_per_tenant(10, 3), vec![4, 3, 3]);
        assert_eq!(patients_per_tenant(2, 3), vec![1, 1, 0]);
        assert_eq!(patients_per_tenant(9, 3).iter().sum::<usize>(), 9);
    }

    #[test]
    fn validation() {
        assert!(validate(&Config::default()).is_ok());
        let bad = Config {
            tenants: 0,
            ..Config::default()
        };
        assert_eq!(
            validate(&bad).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let bad = Config {
            patients_per_bundle: 0,
            ..Config::default()
        };
        assert_eq!(
            validate(&bad).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
