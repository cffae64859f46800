//! Faults at every step: the N-th call to the storage or ledger ports fails (an error, a timeout
//! whose call took effect, or the process stopping there) for every N of a full ingest and of a full
//! gold refresh. After a retry by a healthy process, silver, gold, the ledger and the quarantine
//! equal a clean run's; before it, readers see only whole commits.

use std::collections::BTreeMap;
use std::path::Path as FsPath;

use metriccare_core::gold::{self, GoldRows, LOCK_PATH};
use metriccare_core::silver::SilverTable;
use metriccare_local::LocalLake;
use metriccare_tests::faults::{Fault, FaultPlan, faulty_process};
use metriccare_tests::{TestLake, fixtures, silver_rows};
use serde_json::{Map, Value};

/// A full ingest's input: both formats and every outcome (loaded, rows rejected, file
/// quarantined) for two tenants, small enough to fail each of its calls in turn.
fn drop_input(lake: &TestLake) {
    let fixture = |path: &str| std::fs::read(fixtures().join(path)).unwrap();
    for table in ["Patient", "Encounter", "Condition"] {
        let mut content = fixture(&format!("bulk/{table}.ndjson"));
        // One resource of each file is rejected (its id is not a FHIR id).
        content.extend(format!("\n{{\"resourceType\":\"{table}\",\"id\":\"bad id!\"}}\n").bytes());
        lake.drop_raw(&format!("t1/export-1/{table}.ndjson"), &content);
    }
    let bundle = fixture("synthea/Jana_Kertzmann_transaction.json");
    lake.drop_raw("t1/export-2/Jana.json", &bundle);
    lake.drop_raw("t1/export-2/notes.json", b"not json at all");
    let edge_cases = fixture("edge-cases/edge-cases.ndjson");
    lake.drop_raw("t2/export-1/edge-cases.ndjson", &edge_cases);
}

/// What `watch --once` does: every raw object in key order, each failure left to the ledger.
async fn ingest_everything(lake: &LocalLake) {
    let Ok(objects) = lake.list_raw().await else {
        return;
    };
    for object in objects {
        let _ = lake.ingest_raw(&object.location).await;
    }
}

/// Everything a run leaves that must not depend on faults: silver rows, each object's final ledger
/// status, and the quarantine's files. Ledger ids (which hash the object's ETag, new in every
/// copy of the input) are replaced by object keys; times of the run (ingest time, the
/// `last_updated` of resources without one, quarantine time) and ETags are left out.
#[derive(Debug, PartialEq)]
struct Outcome {
    silver: BTreeMap<&'static str, Vec<Map<String, Value>>>,
    ledger: BTreeMap<String, String>,
    quarantine: BTreeMap<String, String>,
}

async fn outcome(lake: &LocalLake) -> Outcome {
    let entries = lake.services.ledger.list().await.unwrap();
    let keys: BTreeMap<String, String> = entries
        .iter()
        .map(|e| (e.id.clone(), e.object.key.clone()))
        .collect();
    let by_key = |text: &str| {
        keys.iter()
            .fold(text.to_owned(), |text, (id, key)| text.replace(id, key))
    };
    let mut silver = BTreeMap::new();
    for table in SilverTable::ALL {
        let mut rows = silver_rows(&lake.services, table).await;
        for row in &mut rows {
            row.remove("ingested_at");
            row.remove("last_updated");
            let source = row["source_file_id"].as_str().unwrap_or_default();
            row.insert("source_file_id".into(), Value::from(by_key(source)));
        }
        silver.insert(table.name(), rows);
    }
    let ledger = entries
        .iter()
        .map(|e| (e.object.key.clone(), e.status.as_str().to_owned()))
        .collect();
    let mut quarantine = BTreeMap::new();
    for file in files_under(&lake.dir.join("quarantine")) {
        let relative = file.strip_prefix(&lake.dir).unwrap().to_string_lossy();
        let bytes = std::fs::read(&file).unwrap();
        let text = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(mut reason)) => {
                reason.remove("etag");
                reason.remove("quarantined_at");
                Value::Object(reason).to_string()
            }
            _ => String::from_utf8_lossy(&bytes).into_owned(),
        };
        quarantine.insert(by_key(&relative), by_key(&text));
    }
    Outcome {
        silver,
        ledger,
        quarantine,
    }
}

fn files_under(dir: &FsPath) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Rows a reader sees after the fault, before any retry: each must be the clean run's row for its
/// key (whole commits only, nothing half-written).
fn assert_only_whole_commits(seen: &Outcome, clean: &Outcome, case: &str) {
    for (table, rows) in &seen.silver {
        let clean_rows = &clean.silver[table];
        for row in rows {
            let mut row = row.clone();
            // Which file delivered a row may differ until the retry (a later file's upsert).
            row.remove("source_file_id");
            assert!(
                clean_rows.iter().any(|clean| {
                    let mut clean = clean.clone();
                    clean.remove("source_file_id");
                    clean == row
                }),
                "{case}: {table} shows a row no clean run has: {row:?}"
            );
        }
    }
}

async fn every_fault_in_a_full_ingest(fault: Fault) {
    // GIVEN the clean run's outcome and how many port calls it makes
    let clean_lake = TestLake::new();
    drop_input(&clean_lake);
    let counting = FaultPlan::counting();
    ingest_everything(&faulty_process(clean_lake.path(), &counting)).await;
    let clean = outcome(&clean_lake.lake).await;
    assert_eq!(clean.ledger.len(), 6);
    assert!(clean.ledger.values().any(|s| s == "QUARANTINED"));
    assert!(clean.quarantine.keys().any(|path| path.contains("rejects")));
    let calls = counting.calls();
    println!("{fault:?}: failing each of the {calls} port calls of a full ingest in turn");
    for at in 1..=calls {
        // WHEN the at-th call fails
        let lake = TestLake::new();
        drop_input(&lake);
        let plan = FaultPlan::failing(fault, at);
        ingest_everything(&faulty_process(lake.path(), &plan)).await;
        let case = format!(
            "{fault:?} at call {at} of {calls} ({:?})",
            plan.failed_call()
        );
        assert!(plan.failed_call().is_some(), "{case}: the fault happened");
        // THEN readers see whole commits only
        assert_only_whole_commits(&outcome(&lake.lake).await, &clean, &case);
        // AND after a healthy process retries, everything equals the clean run
        ingest_everything(&lake.another_process()).await;
        assert_same(&outcome(&lake.lake).await, &clean, &case);
    }
}

/// Names the first difference instead of printing two whole lakes.
fn assert_same(got: &Outcome, clean: &Outcome, case: &str) {
    assert_eq!(got.ledger, clean.ledger, "{case}: ledger");
    assert_eq!(got.quarantine, clean.quarantine, "{case}: quarantine");
    for (table, rows) in &clean.silver {
        let got_rows = &got.silver[table];
        assert_eq!(got_rows.len(), rows.len(), "{case}: {table} row count");
        for (got_row, row) in got_rows.iter().zip(rows) {
            assert_eq!(got_row, row, "{case}: {table}");
        }
    }
}

#[tokio::test]
async fn an_error_at_any_call_of_an_ingest_loses_and_doubles_nothing() {
    every_fault_in_a_full_ingest(Fault::Error).await;
}

#[tokio::test]
async fn a_timeout_at_any_call_of_an_ingest_loses_and_doubles_nothing() {
    every_fault_in_a_full_ingest(Fault::Timeout).await;
}

#[tokio::test]
async fn a_stop_at_any_call_of_an_ingest_loses_and_doubles_nothing() {
    every_fault_in_a_full_ingest(Fault::Stop).await;
}

/// Copies a lake directory (a fresh lake with the same silver for each fault).
fn copy_lake(from: &FsPath, to: &FsPath) {
    for file in files_under(from) {
        let target = to.join(file.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
    }
}

async fn gold_of(lake: &LocalLake) -> BTreeMap<String, GoldRows> {
    gold::read_gold(&lake.services.lake).await.unwrap()
}

fn announced_tenants(lake: &LocalLake) -> Vec<String> {
    let text = std::fs::read_to_string(lake.dir.join("notifications.jsonl")).unwrap_or_default();
    let mut tenants: Vec<String> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|m| m["event"] == "gold.refreshed")
        .map(|m| m["tenant_id"].as_str().unwrap().to_owned())
        .collect();
    tenants.sort();
    tenants.dedup();
    tenants
}

async fn every_fault_in_a_gold_refresh(fault: Fault) {
    // GIVEN loaded silver, and the clean refresh's gold and port calls
    let loaded = TestLake::new();
    drop_input(&loaded);
    ingest_everything(&loaded.lake).await;
    let clean_lake = TestLake::new();
    copy_lake(loaded.path(), clean_lake.path());
    let counting = FaultPlan::counting();
    faulty_process(clean_lake.path(), &counting)
        .refresh_gold()
        .await
        .unwrap();
    let clean = gold_of(&clean_lake.lake).await;
    assert_eq!(clean.len(), 2, "both tenants have gold");
    let calls = counting.calls();
    println!("{fault:?}: failing each of the {calls} port calls of a gold refresh in turn");
    for at in 1..=calls {
        // WHEN the at-th call of a refresh fails
        let lake = TestLake::new();
        copy_lake(loaded.path(), lake.path());
        let plan = FaultPlan::failing(fault, at);
        let result = faulty_process(lake.path(), &plan).refresh_gold().await;
        let case = format!(
            "{fault:?} at call {at} of {calls} ({:?})",
            plan.failed_call()
        );
        // THEN each gold table of each tenant is either not there yet or whole
        for (tenant, rows) in gold_of(&lake.lake).await {
            let whole = &clean[&tenant];
            let tables_ok = (rows.hospital_monthly.is_empty()
                || rows.hospital_monthly == whole.hospital_monthly)
                && (rows.hai_by_code.is_empty() || rows.hai_by_code == whole.hai_by_code)
                && (rows.mortality_yearly.is_empty()
                    || rows.mortality_yearly == whole.mortality_yearly);
            assert!(tables_ok, "{case}: {tenant} half-refreshed: {rows:?}");
        }
        // AND the next refresh once the failed one's lock has expired (a lock it could not
        // release, or did not know it took, holds for its lease) completes the work: gold equals
        // the clean run's and every tenant is announced
        if lake.path().join(LOCK_PATH).exists() {
            std::fs::write(lake.path().join(LOCK_PATH), r#"{"expires_at":0}"#).unwrap();
        }
        let retry = lake.another_process().refresh_gold().await;
        assert!(
            retry.as_ref().is_ok_and(|r| !r.busy),
            "{case}: retry {retry:?} after {result:?}"
        );
        assert_eq!(gold_of(&lake.lake).await, clean, "{case}");
        assert_eq!(announced_tenants(&lake.lake), ["t1", "t2"], "{case}");
    }
}

#[tokio::test]
async fn an_error_at_any_call_of_a_gold_refresh_is_completed_by_the_next() {
    every_fault_in_a_gold_refresh(Fault::Error).await;
}

#[tokio::test]
async fn a_timeout_at_any_call_of_a_gold_refresh_is_completed_by_the_next() {
    every_fault_in_a_gold_refresh(Fault::Timeout).await;
}

#[tokio::test]
async fn a_stop_at_any_call_of_a_gold_refresh_is_completed_by_the_next() {
    every_fault_in_a_gold_refresh(Fault::Stop).await;
}
