//! `metriccare`: the lakehouse on one machine, no AWS. A directory is the lake, SQLite the ledger,
//! a JSON-lines file the notification topic. See `metriccare --help`.

/// Writes a line to stdout, like `println!`, except that a reader that went away
/// (`metriccare status | head`) is no panic: the rest of the output is dropped and the command
/// finishes, with its own exit status.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if !$crate::STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed)
            && let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*)
        {
            $crate::stdout_failed(e);
        }
    }};
}

/// Set once the reader of stdout has gone away.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

mod html;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures::StreamExt;
use metriccare_core::CoreError;
use metriccare_core::gold::{GoldTable, read_gold_tables};
use metriccare_core::ingest::Progress;
use metriccare_core::profile::TenantProfile;
use metriccare_core::tenant::TenantId;
use metriccare_local::lake::expand_paths;
use metriccare_local::{LocalConfig, LocalLake};

use report::{RunSummary, print_hospitals, print_ledger, print_services, print_silver};

/// Exit statuses, documented in `--help` and the README.
mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const REJECTED: u8 = 3;
    pub const QUARANTINED: u8 = 4;
}

const EXIT_CODES: &str = "Exit status: 0 everything loaded; 1 the command could not run (bad lake, \
configuration, an input that cannot be read, I/O); 2 bad usage (an unknown option, a bad tenant id); 3 files loaded but some resources were rejected (see \
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
Tenant profiles (time zone, inpatient classes, infection codes): <lake>/config/tenants/<tenant>.json, \
checked with `metriccare profile check FILE` (docs/tenant-profile.md).\n\n\
Environment: METRICCARE_LAKE (default ./lake), METRICCARE_PSEUDONYM_KEY (hex or text, >= 32 bytes; \
without it a random key is created in <lake>/_metriccare/secret/), METRICCARE_LEASE_SECONDS (claim \
lease, default 900), METRICCARE_HAI_VALUE_SET (a JSON file of HAI codes, SNOMED CT and ICD-10-CM, \
default the built-in set), METRICCARE_JOBS (watch: files of different tenants at once, default the CPU cores), \
METRICCARE_GROUP_FILES (files of one tenant per group commit, default 100), \
METRICCARE_FILE_GROUP_MB (the size a tenant's file groups reach before its partition gets more, \
default 128), \
METRICCARE_RETAIN_COMMITS and METRICCARE_RETAIN_HOURS (cleaning keeps the slices the newest N commits \
need and those replaced less than H hours ago, default 10 and 24), METRICCARE_ACTIVE_INSTANTS \
(instants kept in each table's .hoodie/, default 30), METRICCARE_LOG (log filter for the JSON logs on \
stderr, default warn).",
    after_help = EXIT_CODES
)]
struct Cli {
    /// The lake directory (created if missing).
    #[arg(long, global = true, env = metriccare_core::tunables::LAKE_VARIABLE, default_value = "./lake")]
    lake: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a synthetic data set into <lake>/raw, ingest it, refresh gold, print the metrics
    /// per hospital and write the HTML report.
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
        #[arg(long, value_parser = parse_tenant)]
        tenant: TenantId,
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
        /// Files processed at once, each of a different tenant (a tenant's files load one after
        /// the other, in key order). Default: the number of CPU cores.
        #[arg(long, env = "METRICCARE_JOBS")]
        jobs: Option<usize>,
    },
    /// Recompute the gold measures (crude, in the style of CMS and NHSN) of every tenant whose
    /// silver or profile changed since the last refresh, and announce each changed tenant
    /// (notifications.jsonl and the console). Nothing changed: nothing written, no message.
    Gold,
    /// Run SQL over the latest snapshots of silver_patient, silver_encounter, silver_condition,
    /// silver_organization, gold_hospital_monthly, gold_hai_by_code, gold_mortality_yearly and
    /// gold_stay_detail (one row per stay: which stays make each rate).
    Query {
        /// The SQL statement (DataFusion dialect), e.g. "SELECT * FROM gold_mortality_yearly".
        sql: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Write the analysts' report (one self-contained HTML file) from the gold tables.
    Report {
        /// Where to write it (default <lake>/report.html).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Erase one patient of a tenant: the patient, their encounters and conditions leave silver
    /// (every file slice on disk) and the reject logs, gold is recomputed, and a later file
    /// carrying them loads without them. Prints the receipt (JSON, no PHI), also kept in
    /// <lake>/_metriccare/erasures/. A second erase of the same patient changes nothing.
    Erase {
        /// The tenant (^[a-z0-9][a-z0-9-]{0,62}$).
        #[arg(long, value_parser = parse_tenant)]
        tenant: TenantId,
        /// The patient's resource id in the export (Patient.id); never written anywhere.
        #[arg(long)]
        patient: String,
    },
    /// Tenant profiles (<lake>/config/tenants/<tenant>.json): the facility's time zone, its
    /// inpatient encounter classes and its infection codes. See docs/tenant-profile.md.
    Profile {
        #[command(subcommand)]
        action: ProfileAction,
    },
    /// List the ledger (every raw object version, its status, counts and error), then what the
    /// table services (cleaning, archival) have removed from each table.
    Status {
        /// Print JSON lines instead of a table (the ledger items; with --services, the services).
        #[arg(long)]
        json: bool,
        /// Only the table services: per table, the totals and the last run.
        #[arg(long)]
        services: bool,
    },
}

#[derive(Subcommand)]
enum ProfileAction {
    /// Validate a profile file and print how gold will read the tenant with it; exit status 1,
    /// naming the key that is wrong, when it would be refused. Writes nothing.
    Check {
        /// The profile file (JSON).
        file: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    Table,
    Csv,
    Json,
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

/// When stdout cannot be written: a reader that closed the pipe asked for no more, so the rest of
/// the output is dropped and the command goes on; any other failure (a full disk) ends it.
fn stdout_failed(e: std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
        return;
    }
    eprintln!("metriccare: error: writing the output failed: {e}");
    std::process::exit(exit::ERROR.into());
}

fn fail(message: &str) -> ExitCode {
    eprintln!("metriccare: error: {message}");
    ExitCode::from(exit::ERROR)
}

fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env(metriccare_core::tunables::LOG_VARIABLE)
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
            // The input first: a path that is not there changes nothing in the lake.
            let files = expand_paths(&paths)?;
            let lake = open_lake(&cli.lake)?;
            let total = files.len();
            let mut summary = RunSummary::default();
            // Files that arrive together are committed together: one commit per table per group.
            for group in lake.file_groups(files)? {
                for report in lake.ingest_files(&group, &tenant).await? {
                    summary.add(summary.files + 1, total, &report);
                }
            }
            summary.print();
            out!("lake requests: {}", lake.requests.requests());
            Ok(exit_code(&summary))
        }
        Command::Watch {
            once,
            interval,
            settle,
            jobs,
        } => {
            let jobs = jobs
                .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
                .unwrap_or(1)
                .max(1);
            watch(&cli.lake, once, interval, settle, jobs).await
        }
        Command::Gold => {
            let lake = open_lake(&cli.lake)?;
            let refused = gold(&lake).await?;
            Ok(if refused { exit::ERROR } else { exit::OK })
        }
        Command::Profile {
            action: ProfileAction::Check { file },
        } => {
            let bytes = std::fs::read(&file).map_err(|source| CoreError::Input {
                path: file.display().to_string(),
                source,
            })?;
            let defaults = LocalConfig::from_env()?;
            let defaults = TenantProfile::default_with(defaults.hai_value_set);
            let profile = TenantProfile::parse(&bytes, &defaults)?;
            let classes: Vec<String> = profile
                .inpatient_classes
                .iter()
                .map(|c| format!("{}|{}", c.system, c.code))
                .collect();
            out!("profile {}: valid", file.display());
            out!("time zone: {}", profile.time_zone);
            out!("inpatient classes: {}", classes.join(", "));
            out!(
                "HAI codes: {} ({})",
                profile.hai.codes.len(),
                if profile.hai == defaults.hai {
                    "the built-in set"
                } else {
                    "the profile's"
                }
            );
            Ok(exit::OK)
        }
        Command::Query { sql, format } => {
            let lake = open_lake_to_read(&cli.lake)?;
            let batches = metriccare_query::run(&lake.services.lake, &sql).await?;
            let format = match format {
                OutputFormat::Table => metriccare_query::Format::Table,
                OutputFormat::Csv => metriccare_query::Format::Csv,
                OutputFormat::Json => metriccare_query::Format::Json,
            };
            out!("{}", metriccare_query::render(&batches, format)?.trim_end());
            Ok(exit::OK)
        }
        Command::Report { out } => {
            let lake = open_lake_to_read(&cli.lake)?;
            let path = write_report(&lake, out).await?;
            out!("report: {}", path.display());
            Ok(exit::OK)
        }
        Command::Erase { tenant, patient } => {
            let lake = open_lake(&cli.lake)?;
            let receipt = lake.erase(&tenant, &patient).await?;
            out!("{}", serde_json::to_string_pretty(&receipt)?);
            Ok(exit::OK)
        }
        Command::Status { json, services } => {
            let lake = open_lake_to_read(&cli.lake)?;
            if !services {
                print_ledger(&lake.services.ledger.list().await?, json);
            }
            if services || !json {
                print_services(&lake, json).await?;
            }
            Ok(exit::OK)
        }
    }
}

/// A tenant id argument: a bad one is bad usage (exit status 2), caught before anything runs.
fn parse_tenant(value: &str) -> Result<TenantId, String> {
    TenantId::parse(value).map_err(|e| e.to_string())
}

/// Opens the lake for a command that only reads it (query, status, report): such a command
/// pseudonymises nothing, so it never creates the lake's local key (a lake written with
/// METRICCARE_PSEUDONYM_KEY, read without it, keeps having no key file).
fn open_lake_to_read(dir: &std::path::Path) -> metriccare_core::Result<LocalLake> {
    let config = LocalConfig {
        read_only: true,
        ..LocalConfig::from_env()?
    };
    LocalLake::open_with(dir, config)
}

/// Opens the lake configured from the environment, with progress lines for long files on stderr.
fn open_lake(dir: &std::path::Path) -> metriccare_core::Result<LocalLake> {
    let mut config = LocalConfig::from_env()?;
    config.settings.progress = Some(Progress {
        every_bytes: 64 << 20,
        report: std::sync::Arc::new(|ledger_id, read, size| {
            eprintln!(
                "    {ledger_id}: {:.0} of {:.0} MB read",
                read as f64 / 1e6,
                size as f64 / 1e6
            );
        }),
    });
    LocalLake::open_with(dir, config)
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
    let lake = open_lake(dir)?;
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
        out!(
            "generated {} files, {} resources ({:.1} MB) for {} tenants in {:.2} s into {}",
            generated.files,
            generated.resources,
            generated.bytes as f64 / 1e6,
            tenants,
            started.elapsed().as_secs_f64(),
            raw_dir.display()
        );
    } else {
        out!(
            "{} already holds raw files: ingesting what is there",
            raw_dir.display()
        );
    }
    let objects = lake.list_raw().await?;
    let total = objects.len();
    let mut summary = RunSummary::default();
    for (tenant, objects) in by_tenant_folder(objects) {
        let tenant = TenantId::parse(&tenant)?;
        for group in lake.raw_groups(objects) {
            for report in lake.ingest_raw_group(&tenant, &group).await? {
                summary.add(summary.files + 1, total, &report);
            }
        }
    }
    summary.print();
    print_silver(&lake).await?;
    gold(&lake).await?;
    let report = write_report(&lake, None).await?;
    out!("\nreport: {}", report.display());
    Ok(exit_code(&summary))
}

/// Refreshes gold and prints what changed, with the headline metrics per hospital.
/// Refreshes gold and prints what it did; whether a tenant's profile was refused (its gold left
/// as it was).
async fn gold(lake: &LocalLake) -> metriccare_core::Result<bool> {
    let report = lake.refresh_gold().await?;
    for (tenant, error) in &report.profile_errors {
        eprintln!("metriccare: error: tenant {tenant}: {error}; its gold is left as it was");
    }
    let refused = !report.profile_errors.is_empty();
    if report.busy {
        out!("\ngold: another refresh is running on this lake; nothing done");
        return Ok(refused);
    }
    if report.changed_tenants.is_empty() {
        out!(
            "\ngold: no silver or profile change since the last refresh; nothing written, no message"
        );
        return Ok(refused);
    }
    out!(
        "\ngold: {} tenant(s) with new silver or a changed profile, {} refreshed ({})",
        report.changed_tenants.len(),
        report.refreshed.len(),
        if report.gold_instants.is_empty() {
            "no change in the metrics".to_owned()
        } else {
            report.gold_instants.join(", ")
        }
    );
    for tenant in &report.refreshed {
        eprintln!("notified: gold.refreshed for {}", tenant.tenant_id);
    }
    print_hospitals(&read_gold_tables(&lake.services.lake, &GoldTable::SUMS).await?);
    Ok(refused)
}

async fn write_report(lake: &LocalLake, out: Option<PathBuf>) -> metriccare_core::Result<PathBuf> {
    let gold = read_gold_tables(&lake.services.lake, &GoldTable::SUMS).await?;
    let generated = metriccare_core::time::rfc3339(metriccare_core::time::now_micros());
    let path = out.unwrap_or_else(|| lake.dir.join("report.html"));
    std::fs::write(&path, html::report(&gold, &generated))?;
    Ok(path)
}

async fn watch(
    dir: &std::path::Path,
    once: bool,
    interval: u64,
    settle: u64,
    jobs: usize,
) -> metriccare_core::Result<u8> {
    let lake = std::sync::Arc::new(open_lake(dir)?);
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
        for object in &ready {
            seen.insert((object.location.clone(), object.e_tag.clone()));
        }
        let total = ready.len();
        // One queue per tenant folder, in key order: files of different tenants load in parallel
        // (they touch different partitions, so their commits never conflict), a tenant's files in
        // sequence (an incremental export after the one before it), each pass's files of a tenant
        // as group commits.
        let queues = by_tenant_folder(ready);
        let (sender, mut results) = tokio::sync::mpsc::unbounded_channel();
        let shared = lake.clone();
        // Set by the first error about the lake (not about one file): no further file is started.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut queues = futures::stream::iter(queues.into_iter().map(move |(tenant, queue)| {
            let (lake, sender, stop) = (shared.clone(), sender.clone(), stop.clone());
            tokio::spawn(async move {
                let Ok(tenant) = TenantId::parse(&tenant) else {
                    // Not a tenant folder: every file in it is reported and left alone.
                    for object in queue {
                        let error = metriccare_core::CoreError::InvalidTenant(tenant.clone());
                        if sender.send((object.location, Err(error))).is_err() {
                            return;
                        }
                    }
                    return;
                };
                // Erasure requests (`<tenant>/_erasure/…`) first, so the exports of the same pass
                // already load without the patient.
                let (requests, exports): (Vec<_>, Vec<_>) = queue
                    .into_iter()
                    .partition(|o| metriccare_core::erase::is_request(&o.location));
                for request in requests {
                    match lake.erase_requested(&request.location).await {
                        Ok(receipt) => eprintln!(
                            "erasure request {}: receipt {}",
                            request.location, receipt.receipt
                        ),
                        Err(e) => eprintln!("erasure request {} failed: {e}", request.location),
                    }
                }
                for group in lake.raw_groups(exports) {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    let results: Vec<_> = match lake.ingest_raw_group(&tenant, &group).await {
                        // One report per key, in order.
                        Ok(reports) => group
                            .iter()
                            .cloned()
                            .zip(reports.into_iter().map(Ok))
                            .collect(),
                        Err(e) => {
                            if !skippable(&e) {
                                stop.store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                            let key = group.first().cloned().unwrap_or_default();
                            vec![(key, Err(e))]
                        }
                    };
                    for result in results {
                        if sender.send(result).is_err() {
                            return;
                        }
                    }
                }
            })
        }))
        .buffer_unordered(jobs);
        // Owns the stream (and with it the last sender): when every queue is done, `results` ends.
        let drive = async move {
            while let Some(joined) = queues.next().await {
                if let Err(e) = joined {
                    return Err(metriccare_core::CoreError::Task(format!(
                        "an ingest task: {e}"
                    )));
                }
            }
            Ok(())
        };
        let collect = async {
            let mut index = 0;
            while let Some((key, result)) = results.recv().await {
                index += 1;
                match result {
                    Ok(report) => summary.add(index, total, &report),
                    // A file outside a valid tenant folder is reported and left alone.
                    Err(e) if skippable(&e) => eprintln!("skipped {key}: {e}"),
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        let (driven, collected) = tokio::join!(drive, collect);
        driven?;
        collected?;
        if once {
            summary.print();
            return Ok(exit_code(&summary));
        }
        tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
    }
}

/// Raw objects by their tenant folder (the first part of the key), each folder's in key order.
fn by_tenant_folder(
    objects: Vec<object_store::ObjectMeta>,
) -> std::collections::BTreeMap<String, Vec<object_store::ObjectMeta>> {
    let mut folders: std::collections::BTreeMap<String, Vec<object_store::ObjectMeta>> =
        std::collections::BTreeMap::new();
    for object in objects {
        let tenant = object
            .location
            .parts()
            .next()
            .map(|p| p.as_ref().to_owned())
            .unwrap_or_default();
        folders.entry(tenant).or_default().push(object);
    }
    folders
}

/// Errors about one raw key's place (not a tenant folder) rather than the lake: skip the file.
fn skippable(error: &metriccare_core::CoreError) -> bool {
    matches!(
        error,
        metriccare_core::CoreError::InvalidTenant(_)
            | metriccare_core::CoreError::NotInTenantFolder(_)
    )
}

fn now_seconds() -> i64 {
    metriccare_core::time::now_micros() / 1_000_000
}
