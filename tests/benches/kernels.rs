//! Criterion benchmarks of the hot kernels, on inputs made by `fhir-generator`:
//! - `read_parse/*`: the streaming reader plus the parse of every resource into a record (no
//!   de-identification, no Arrow) — the JSON cost alone;
//! - `pseudonym`: one HMAC-SHA256 pseudonym;
//! - `ingest/*`: a whole file into a new local lake (claim, parse, de-identify, Arrow, staging,
//!   merge, zstd Parquet, Hudi commit, ledger) — what `metriccare ingest` does;
//! - `gold/refresh`: the gold recompute of one tenant's silver.
//!
//! `cargo bench -p metriccare-tests --bench kernels` measures (size: METRICCARE_BENCH_PATIENTS,
//! default 400 patients); `cargo test --benches` runs each once, for correctness only.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fhir_generator::{Config, Format};
use metriccare_core::fhir::{self, Item, Parsed, ReadLimits};
use metriccare_core::ingest::FileResult;
use metriccare_tests::{TestLake, tenant_id, test_pseudonymizer};

const TENANT: &str = "tenant-01";

/// A generated data set of one tenant and its data files, largest first.
struct Inputs {
    _dir: tempfile::TempDir,
    files: Vec<PathBuf>,
}

impl Inputs {
    fn generate(format: Format, patients: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            patients,
            tenants: 1,
            format,
            patients_per_bundle: patients,
            ..Config::default()
        };
        fhir_generator::generate(&config, dir.path()).expect("generate");
        let export = dir.path().join(TENANT).join("export-1");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&export)
            .expect("export folder")
            .map(|entry| entry.expect("entry").path())
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(size(f)));
        Self { _dir: dir, files }
    }

    fn largest(&self) -> &Path {
        &self.files[0]
    }
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).expect("input exists").len()
}

fn patients() -> usize {
    std::env::var("METRICCARE_BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Reads and parses every resource of `bytes`; returns how many were kept.
fn read_and_parse(bytes: &[u8], name: &str) -> usize {
    let mut kept = 0;
    fhir::read_file(bytes, name, &ReadLimits::default(), &mut |item| {
        if let Item::Resource { raw, full_url, .. } = item
            && let Ok(Parsed::Kept(record)) = fhir::parse_resource(raw, full_url)
        {
            black_box(record);
            kept += 1;
        }
    })
    .expect("readable input");
    kept
}

fn read_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_parse");
    for (format, name) in [(Format::Ndjson, "ndjson"), (Format::Bundle, "bundle")] {
        let inputs = Inputs::generate(format, patients());
        let file = inputs.largest();
        let bytes = std::fs::read(file).expect("read input");
        let file_name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(
            read_and_parse(&bytes, file_name) > 0,
            "{name}: nothing parsed"
        );
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| b.iter(|| read_and_parse(&bytes, file_name)));
    }
    group.finish();
}

fn pseudonym(c: &mut Criterion) {
    let pseudonymizer = test_pseudonymizer();
    let tenant = tenant_id(TENANT);
    c.bench_function("pseudonym", |b| {
        b.iter(|| pseudonymizer.pseudonym(&tenant, "Patient", black_box("3f2a8b1c-0d4e")))
    });
}

fn ingest(c: &mut Criterion) {
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    let runtime = runtime();
    for (format, name) in [(Format::Ndjson, "ndjson"), (Format::Bundle, "bundle")] {
        let inputs = Inputs::generate(format, patients());
        let file = inputs.largest().to_owned();
        group.throughput(Throughput::Bytes(size(&file)));
        group.bench_function(name, |b| {
            b.iter_batched(
                TestLake::new,
                |lake| {
                    let report = runtime.block_on(lake.ingest(&file, TENANT));
                    assert_eq!(report.result, FileResult::Completed, "{name}");
                    lake
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn gold(c: &mut Criterion) {
    let runtime = runtime();
    let inputs = Inputs::generate(Format::Ndjson, patients());
    let mut group = c.benchmark_group("gold");
    group.sample_size(10);
    group.bench_function("refresh", |b| {
        b.iter_batched(
            || {
                let lake = TestLake::new();
                for file in &inputs.files {
                    runtime.block_on(lake.ingest(file, TENANT));
                }
                lake
            },
            |lake| {
                let report = runtime
                    .block_on(lake.lake.refresh_gold())
                    .expect("gold refresh");
                assert!(!report.refreshed.is_empty(), "gold refreshed nothing");
                lake
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(kernels, read_parse, pseudonym, ingest, gold);
criterion_main!(kernels);
