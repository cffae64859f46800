//! What the CLI prints: a progress line per file, run totals, the ledger and the silver tables.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use metriccare_core::gold::GoldTable;
use metriccare_core::hudi::read_services_state;
use metriccare_core::ingest::{FileReport, FileResult};
use metriccare_core::ports::LedgerEntry;
use metriccare_core::silver::SilverTable;
use metriccare_core::time::rfc3339;
use metriccare_local::LocalLake;

#[derive(Default)]
pub struct RunSummary {
    pub files: usize,
    pub completed: usize,
    pub already_done: usize,
    pub busy: usize,
    pub gone: usize,
    pub handed_off: usize,
    pub quarantined: usize,
    pub skipped: usize,
    pub failed: usize,
    pub rejected: u64,
    pub deleted: u64,
    pub future_last_updated: u64,
    pub erased: u64,
    pub bytes: u64,
    pub resources: BTreeMap<String, u64>,
    pub instants: Vec<String>,
}

impl RunSummary {
    /// Counts one file and prints its progress line to stderr.
    pub fn add(&mut self, index: usize, total: usize, report: &FileReport) {
        self.files += 1;
        self.bytes += report.bytes;
        match report.result {
            FileResult::Completed => self.completed += 1,
            FileResult::AlreadyDone => self.already_done += 1,
            FileResult::Busy => self.busy += 1,
            FileResult::Gone => self.gone += 1,
            FileResult::HandedOff => self.handed_off += 1,
            FileResult::Quarantined => self.quarantined += 1,
            FileResult::Skipped => self.skipped += 1,
            FileResult::Failed => self.failed += 1,
        }
        if report.result == FileResult::Completed {
            self.rejected += report.outcome.rejected;
            self.deleted += report.outcome.deleted;
            self.future_last_updated += report.outcome.future_last_updated;
            self.erased += report.outcome.erased;
            for (kind, count) in &report.outcome.counts {
                *self.resources.entry(kind.clone()).or_default() += count;
            }
            // The files of a group share their commits: count each once.
            for instant in &report.outcome.silver_instants {
                if !self.instants.contains(instant) {
                    self.instants.push(instant.clone());
                }
            }
        }
        let detail = match report.result {
            FileResult::Completed => {
                let resources: u64 = report.outcome.counts.values().sum();
                format!(
                    "{resources} resources, {} rejected",
                    report.outcome.rejected
                )
            }
            FileResult::AlreadyDone => "already processed (same version)".to_owned(),
            FileResult::Busy => "being processed by another worker".to_owned(),
            FileResult::Gone => "deleted before it could be read: nothing to load".to_owned(),
            FileResult::HandedOff => format!(
                "handed to the scale-out job (run {})",
                report.outcome.handed_off_to.as_deref().unwrap_or("?")
            ),
            FileResult::Quarantined | FileResult::Skipped | FileResult::Failed => {
                report.outcome.error.clone().unwrap_or_default()
            }
        };
        eprintln!(
            "[{index}/{total}] {:<11} {} {} ({:.1} kB): {detail}",
            format!("{:?}", report.result).to_lowercase(),
            report.tenant_id,
            report.key,
            report.bytes as f64 / 1e3
        );
    }

    pub fn print(&self) {
        out!(
            "files: {} ({} loaded, {} already processed, {} busy, {} handed off, {} quarantined, {} skipped, {} failed{}), {:.1} MB",
            self.files,
            self.completed,
            self.already_done,
            self.busy,
            self.handed_off,
            self.quarantined,
            self.skipped,
            self.failed,
            if self.gone > 0 {
                format!(", {} deleted before they were read", self.gone)
            } else {
                String::new()
            },
            self.bytes as f64 / 1e6
        );
        let resources: Vec<String> = self
            .resources
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out!(
            "resources: {}",
            if resources.is_empty() {
                "none".to_owned()
            } else {
                resources.join(", ")
            }
        );
        out!(
            "rejected resources: {}, deletes applied: {}, lastUpdated after the ingest time (ordered at it): {}, of erased patients (not loaded): {}",
            self.rejected,
            self.deleted,
            self.future_last_updated,
            self.erased
        );
        if let Some(last) = self.instants.last() {
            out!("silver commits: {} (latest {last})", self.instants.len());
        }
    }
}

pub fn print_ledger(entries: &[LedgerEntry], json: bool) {
    if json {
        for entry in entries {
            out!("{}", serde_json::to_string(entry).unwrap_or_default());
        }
        return;
    }
    out!(
        "{:<24} {:<12} {:<14} {:>9} {:>8} {:>8} {:<24} key / error",
        "ledger id",
        "status",
        "tenant",
        "resources",
        "rejected",
        "attempts",
        "updated"
    );
    for e in entries {
        let resources: u64 = e.counts.values().sum();
        let note = e
            .error
            .as_deref()
            .map(|err| format!(" — {err}"))
            .unwrap_or_default();
        out!(
            "{:<24} {:<12} {:<14} {:>9} {:>8} {:>8} {:<24} {}{note}",
            e.id,
            e.status.as_str(),
            e.tenant_id,
            resources,
            e.rejected,
            e.attempts,
            rfc3339(e.updated_at),
            e.object.key
        );
    }
    out!("{} ledger items", entries.len());
}

/// What the table services (cleaning, archival) have done to each table: a line per table with the
/// totals and the last run, or JSON lines.
pub async fn print_services(lake: &LocalLake, json: bool) -> metriccare_core::Result<()> {
    let store = lake.services.lake.as_ref();
    let tables = SilverTable::ALL
        .iter()
        .map(|t| t.def().base)
        .chain(GoldTable::ALL.iter().map(|t| t.def().base));
    if !json {
        out!(
            "\ntable services (cleaning keeps {} commits and {} h of replaced slices; {} instants stay active)",
            lake.services.settings.retention.retain_commits,
            lake.services.settings.retention.retain_hours,
            lake.services.settings.retention.active_instants
        );
        out!(
            "{:<24} {:>10} {:>12} {:>10} {:>10} {:>10} {:>8}  last run",
            "table",
            "files",
            "MB freed",
            "failed",
            "archived",
            "control",
            "resized"
        );
    }
    for base in tables {
        let Some(state) = read_services_state(store, &base).await? else {
            if !json {
                out!("{:<24} nothing removed yet", base.to_string());
            }
            continue;
        };
        if json {
            out!(
                "{}",
                serde_json::json!({"table": base.to_string(), "services": state})
            );
            continue;
        }
        let totals = &state.totals;
        out!(
            "{:<24} {:>10} {:>12.1} {:>10} {:>10} {:>10} {:>8}  {} (removed {} files, archived {} instants)",
            base.to_string(),
            totals.cleaned_files,
            totals.cleaned_bytes as f64 / 1e6,
            totals.failed_write_files,
            totals.archived_instants,
            totals.control_files,
            totals.resized_partitions,
            rfc3339(state.last_run_at),
            state.last_run.cleaned_files + state.last_run.failed_write_files,
            state.last_run.archived_instants,
        );
    }
    Ok(())
}

/// Rows per silver table and tenant, read back from the committed snapshots.
pub async fn print_silver(lake: &LocalLake) -> metriccare_core::Result<()> {
    out!("\nsilver (latest committed snapshot)");
    out!(
        "{:<14} {:<14} {:>8}  latest instant",
        "table",
        "tenant",
        "rows"
    );
    for table in SilverTable::ALL {
        let hudi = lake.services.silver_table(table).await?;
        let snapshot = hudi.snapshot(None).await?;
        let mut rows: BTreeMap<String, usize> = BTreeMap::new();
        for batch in snapshot
            .read(lake.services.lake.as_ref(), None, None)
            .await?
        {
            let Some(tenants) = batch
                .column_by_name("tenant_id")
                .and_then(|c| c.as_string_opt::<i32>())
            else {
                continue;
            };
            for tenant in tenants.iter().flatten() {
                *rows.entry(tenant.to_owned()).or_default() += 1;
            }
        }
        let instant = snapshot.latest_instant().unwrap_or("-");
        for (tenant, count) in rows {
            out!(
                "{:<14} {:<14} {:>8}  {instant}",
                table.name(),
                tenant,
                count
            );
        }
    }
    out!("tables: {}", lake.dir.join("silver").display());
    Ok(())
}

/// The headline metrics per tenant and hospital, summed over all months.
pub fn print_hospitals(gold: &BTreeMap<String, metriccare_core::gold::GoldRows>) {
    out!(
        "\n{:<12} {:<34} {:>6} {:>10} {:>12} {:>6} {:>10}",
        "tenant",
        "hospital",
        "stays",
        "mortality",
        "readmission",
        "ALOS",
        "HAI/1000d"
    );
    for (tenant, rows) in gold {
        for hospital in rows.per_hospital() {
            let t = &hospital.totals;
            out!(
                "{:<12} {:<34} {:>6} {:>9.1}% {:>11.1}% {:>6.2} {:>10.2}",
                tenant,
                hospital.hospital_name,
                t.stays,
                100.0 * t.mortality_rate(),
                100.0 * t.readmission_rate(),
                t.alos(),
                t.hai_per_1000_patient_days()
            );
        }
    }
}
