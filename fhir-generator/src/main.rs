//! `fhir-generator`: writes synthetic FHIR R4 data plus its ground truth.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use fhir_generator::{Config, Format, generate};

/// Synthetic FHIR R4 data (Synthea-like) for N patients over T tenants,
/// deterministic for a seed, plus DIR/ground-truth.json with the expected
/// silver row counts and CMS metrics (ALOS, 30-day mortality, 30-day
/// readmissions, HAI rates).
#[derive(Parser, Debug)]
#[command(name = "fhir-generator", version, about, long_about)]
struct Args {
    /// Output directory; created if missing, must be empty. Receives
    /// <tenant>/export-1/... (and export-2/... with --dirty) plus
    /// ground-truth.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Total number of patients, split evenly over the tenants.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    patients: usize,

    /// Number of tenants (tenant-01, tenant-02, ...), each with 2-4 hospitals.
    #[arg(long, value_name = "T", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=fhir_generator::MAX_TENANTS as i64))]
    tenants: u32,

    /// Random seed; the same arguments always produce byte-identical output.
    #[arg(long, value_name = "S", default_value_t = 42)]
    seed: u64,

    /// Output format: `ndjson` = Bulk-FHIR NDJSON, one file per resource type
    /// with `Patient/<id>` references; `bundle` = Synthea-style transaction
    /// Bundles with `urn:uuid:` references.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Ndjson)]
    format: Format,

    /// Gzip every data file (`.ndjson.gz` / `.json.gz`).
    #[arg(long)]
    gzip: bool,

    /// Add dirt a loader must handle: exact duplicates, broken records to
    /// reject (no id, impossible date, malformed reference, a non-JSON line)
    /// and an incremental export-2 with newer versions, stale versions and
    /// deletes.
    #[arg(long)]
    dirty: bool,

    /// Patients per transaction Bundle file (bundle format only).
    #[arg(long, value_name = "K", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..))]
    patients_per_bundle: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = Config {
        patients: args.patients,
        tenants: args.tenants as usize,
        seed: args.seed,
        format: args.format,
        gzip: args.gzip,
        dirty: args.dirty,
        patients_per_bundle: args.patients_per_bundle as usize,
        tenant_clocks: Vec::new(),
    };
    let started = Instant::now();
    match generate(&config, &args.out) {
        Ok(s) => {
            let secs = started.elapsed().as_secs_f64();
            let mb = s.bytes as f64 / 1e6;
            eprintln!(
                "fhir-generator: {} files, {} resources, {} bytes ({mb:.1} MB) in {secs:.2} s ({:.0} MB/s) -> {}",
                s.files,
                s.resources,
                s.bytes,
                mb / secs.max(1e-9),
                args.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fhir-generator: error: {e}");
            match e.kind() {
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::AlreadyExists => {
                    ExitCode::from(2)
                }
                _ => ExitCode::from(1),
            }
        }
    }
}
