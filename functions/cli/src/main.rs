//! `metriccare`: the lakehouse on one machine, no AWS. A directory is the lake, SQLite the ledger,
//! a JSON-lines file the notification topic. See `metriccare --help`.

mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use metriccare_core::tenant::TenantId;
use metriccare_local::LocalLake;
use metriccare_local::lake::expand_paths;

use report::{RunSummary, print_ledger, print_silver};

/// Exit statuses, documented in `--help` and the README.
mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const REJECTED: u8 = 3;
    pub const QUARANTINED: u8 = 4;
}

const EXIT_CODES: &str = "Exit status: 0 everything loaded; 1 the command could not run (bad lake, \
configuration or I/O); 2 bad usage; 3 files loaded but some resources were rejected (see \
<lake>/quarantine/rejects/); 4 at least one file was quarantined or failed (see \
<lake>/quarantine/files/ and `metriccare status`).";

#[derive(Parser)]
#[command(
    name = "metriccare",
    version,
    about = "MetricCare: FHIR R4 exports in, de-identified Apache Hudi silver tables out, on one machine",
    long_about = "MetricCare turns FHIR R4 exports (Bundle JSON or Bulk NDJSON, optionally gzipped) into \
de-identified Apache Hudi copy-on-write tables (patient, encounter, condition, organization), \
partitioned by tenant. This CLI runs the embedded default: the lake is a directory, the ledger a \
SQLite file in it, notifications a JSON-lines file. No AWS, no network.\n\n\
Environment: METRICCARE_LAKE (default ./lake), METRICCARE_PSEUDONYM_KEY (hex or text, >= 32 bytes; \
without it a random key is created in <lake>/_metriccare/secret/), METRICCARE_LEASE_SECONDS (claim \
lease, default 900), METRICCARE_LOG (log filter for the JSON logs on stderr, default warn).",
    after_help = EXIT_CODES
)]
struct Cli {
    /// The lake directory (created if missing).
    #[arg(long, global = true, env = "METRICCARE_LAKE", default_value = "./lake")]
    lake: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a synthetic data set into <lake>/raw, ingest it and print what was loaded.
    #[command(after_help = EXIT_CODES)]
    Demo {
        /// Patients in all, spread over the tenants.
        #[arg(long, default_value_t = 600)]
        patients: usize,
        /// Number of tenants (tenant-01, tenant-02, ...).
        #[arg(long, default_value_t = 3)]
        tenants: usize,
        /// Generator seed: the same seed gives the same data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Add duplicates, newer and stale versions, deletes and broken records.
        #[arg(long)]
        dirty: bool,
    },
    /// Load files or folders (Bundle JSON, NDJSON, .gz) for one tenant. Folders are walked in
    /// sorted order; files are read in place, never modified.
    #[command(after_help = EXIT_CODES)]
    Ingest {
        /// Tenant the files belong to (^[a-z0-9][a-z0-9-]{0,62}$): their rows go to its partition only.
        #[arg(long)]
        tenant: String,
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Process every file dropped under <lake>/raw/<tenant>/..., as an S3 upload event would.
    #[command(after_help = EXIT_CODES)]
    Watch {
        /// Process what is there now, then exit.
        #[arg(long)]
        once: bool,
        /// Seconds between scans.
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// Seconds a file must be unchanged before it is processed (it may still be copying).
        #[arg(long, default_value_t = 2)]
        settle: u64,
    },
    /// List the ledger: every raw object version, its status, counts and error.
    Status {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("metriccare: error: {message}");
    ExitCode::from(exit::ERROR)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("METRICCARE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> metriccare_core::Result<u8> {
    match cli.command {
        Command::Demo {
            patients,
            tenants,
            seed,
            dirty,
        } => demo(&cli.lake, patients, tenants, seed, dirty).await,
        Command::Ingest { tenant, paths } => {
            let tenant = TenantId::parse(&tenant)?;
            let lake = LocalLake::open(&cli.lake)?;
            let files = expand_paths(&paths)?;
            let mut summary = RunSummary::default();
            for (index, file) in files.iter().enumerate() {
                let report = lake.ingest_file(file, &tenant).await?;
                summary.add(index + 1, files.len(), &report);
            }
            summary.print();
            Ok(exit_code(&summary))
        }
        Command::Watch {
            once,
            interval,
            settle,
        } => watch(&cli.lake, once, interval, settle).await,
        Command::Status { json } => {
            let lake = LocalLake::open(&cli.lake)?;
            print_ledger(&lake.services.ledger.list().await?, json);
            Ok(exit::OK)
        }
    }
}

fn exit_code(summary: &RunSummary) -> u8 {
    if summary.quarantined + summary.failed > 0 {
        exit::QUARANTINED
    } else if summary.rejected > 0 {
        exit::REJECTED
    } else {
        exit::OK
    }
}

async fn demo(
    dir: &std::path::Path,
    patients: usize,
    tenants: usize,
    seed: u64,
    dirty: bool,
) -> metriccare_core::Result<u8> {
    let lake = LocalLake::open(dir)?;
    let raw_dir = lake.dir.join(metriccare_local::lake::RAW_DIR);
    let raw_is_empty = std::fs::read_dir(&raw_dir)?.next().is_none();
    if raw_is_empty {
        let config = fhir_generator::Config {
            patients,
            tenants,
            seed,
            dirty,
            ..fhir_generator::Config::default()
        };
        let started = Instant::now();
        let generated = fhir_generator::generate(&config, &raw_dir)?;
        // The ground truth is not a raw file: keep it beside the raw zone, not in it.
        std::fs::rename(
            raw_dir.join(fhir_generator::GROUND_TRUTH_FILE),
            lake.dir.join(fhir_generator::GROUND_TRUTH_FILE),
        )?;
        println!(
            "generated {} files, {} resources ({:.1} MB) for {} tenants in {:.2} s into {}",
            generated.files,
            generated.resources,
            generated.bytes as f64 / 1e6,
            tenants,
            started.elapsed().as_secs_f64(),
            raw_dir.display()
        );
    } else {
        println!(
            "{} already holds raw files: ingesting what is there",
            raw_dir.display()
        );
    }
    let objects = lake.list_raw().await?;
    let mut summary = RunSummary::default();
    for (index, object) in objects.iter().enumerate() {
        let report = lake.ingest_raw(&object.location).await?;
        summary.add(index + 1, objects.len(), &report);
    }
    summary.print();
    print_silver(&lake).await?;
    Ok(exit_code(&summary))
}

async fn watch(
    dir: &std::path::Path,
    once: bool,
    interval: u64,
    settle: u64,
) -> metriccare_core::Result<u8> {
    let lake = LocalLake::open(dir)?;
    let mut seen = std::collections::HashSet::new();
    let mut summary = RunSummary::default();
    if !once {
        eprintln!(
            "watching {} (Ctrl-C to stop)",
            lake.dir.join(metriccare_local::lake::RAW_DIR).display()
        );
    }
    loop {
        let now = now_seconds();
        let objects = lake.list_raw().await?;
        let ready: Vec<_> = objects
            .into_iter()
            .filter(|o| once || now - o.last_modified.timestamp() >= settle as i64)
            .filter(|o| !seen.contains(&(o.location.clone(), o.e_tag.clone())))
            .collect();
        for (index, object) in ready.iter().enumerate() {
            seen.insert((object.location.clone(), object.e_tag.clone()));
            match lake.ingest_raw(&object.location).await {
                Ok(report) => summary.add(index + 1, ready.len(), &report),
                // A file outside a valid tenant folder is reported and left alone.
                Err(e @ metriccare_core::CoreError::InvalidTenant(_))
                | Err(e @ metriccare_core::CoreError::Config(_)) => {
                    eprintln!("skipped {}: {e}", object.location);
                }
                Err(e) => return Err(e),
            }
        }
        if once {
            summary.print();
            return Ok(exit_code(&summary));
        }
        tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
    }
}

fn now_seconds() -> i64 {
    metriccare_core::time::now_micros() / 1_000_000
}
