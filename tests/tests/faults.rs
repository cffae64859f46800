//! Faults at every step: the N-th call to the storage or ledger ports fails (an error, a timeout
//! whose call took effect, or the process stopping there) for every N of a full ingest and of a full
//! gold refresh. After a retry by a healthy process, silver, gold, the ledger and the quarantine
//! equal a clean run's; before it, readers see only whole commits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path as FsPath;

use metriccare_core::gold::{self, GoldRows, LOCK_PATH};
use metriccare_core::hudi::Retention;
use metriccare_core::ingest::Settings;
use metriccare_core::silver::SilverTable;
use metriccare_local::LocalLake;
use metriccare_tests::faults::{Fault, FaultPlan, faulty_process, faulty_process_with};
use metriccare_tests::{
    TestLake, files_under, pseudonym, read_fixture, record_keys_on_disk, silver_rows, tenant_id,
};
use serde_json::{Map, Value};

/// A full ingest's input: both formats and every outcome (loaded, rows rejected, file
/// quarantined) for two tenants, small enough to fail each of its calls in turn.
fn drop_input(lake: &TestLake) {
    drop_first_export(lake);
    drop_second_export(lake);
}

/// Tenant t1's first export: NDJSON with one rejected resource per file.
fn drop_first_export(lake: &TestLake) {
    for table in ["Patient", "Encounter", "Condition"] {
        let mut content = read_fixture(&format!("bulk/{table}.ndjson"));
        // One resource of each file is rejected (its id is not a FHIR id).
        content.extend(format!("\n{{\"resourceType\":\"{table}\",\"id\":\"bad id!\"}}\n").bytes());
        lake.drop_raw(&format!("t1/export-1/{table}.ndjson"), &content);
    }
}

/// More for t1 (a Bundle, a file to quarantine) and a first export of t2.
fn drop_second_export(lake: &TestLake) {
    let bundle = read_fixture("synthea/Jana_Kertzmann_transaction.json");
    lake.drop_raw("t1/export-2/Jana.json", &bundle);
    lake.drop_raw("t1/export-2/notes.json", b"not json at all");
    let edge_cases = read_fixture("edge-cases/edge-cases.ndjson");
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
/// status, the quarantine's files, and the quarantine alerts (at least one per file). Ledger ids
/// (which hash the object's ETag, new in every copy of the input) are replaced by object keys;
/// times of the run (ingest time, the `last_updated` given to resources without one, quarantine
/// time) and ETags are left out.
#[derive(Debug, PartialEq)]
struct Outcome {
    silver: BTreeMap<&'static str, Vec<Map<String, Value>>>,
    ledger: BTreeMap<String, String>,
    quarantine: BTreeMap<String, String>,
    quarantine_alerts: BTreeSet<String>,
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
            let ingested_at = row.remove("ingested_at");
            if row.get("last_updated") == ingested_at.as_ref() {
                row.remove("last_updated");
            }
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
    let notifications =
        std::fs::read_to_string(lake.dir.join("notifications.jsonl")).unwrap_or_default();
    let quarantine_alerts = notifications
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|m| m["event"] == "file.quarantined")
        .map(|m| by_key(m["data"]["ledger_id"].as_str().unwrap()))
        .collect();
    Outcome {
        silver,
        ledger,
        quarantine,
        quarantine_alerts,
    }
}

/// Rows a reader sees after the fault, before any retry: per table, each file's rows are all of
/// that file's rows in the clean run, or none (whole commits only, nothing half-written).
fn assert_only_whole_commits(seen: &Outcome, clean: &Outcome, case: &str) {
    assert_whole_commits_of(seen, &[clean], case);
}

/// Per table, each file's rows are all of that file's rows in one of the `states` a reader may
/// see, or none.
fn assert_whole_commits_of(seen: &Outcome, states: &[&Outcome], case: &str) {
    let by_file = |rows: &[Map<String, Value>]| {
        let mut files: BTreeMap<String, Vec<Map<String, Value>>> = BTreeMap::new();
        for row in rows {
            let file = row["source_file_id"].as_str().unwrap().to_owned();
            files.entry(file).or_default().push(row.clone());
        }
        files
    };
    for (table, rows) in &seen.silver {
        let allowed: Vec<_> = states.iter().map(|s| by_file(&s.silver[table])).collect();
        for (file, rows) in by_file(rows) {
            assert!(
                allowed.iter().any(|files| files.get(&file) == Some(&rows)),
                "{case}: {table} shows part of {file}, or rows no clean run has"
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
        // AND after a healthy process retries, everything equals the clean run, each quarantine
        // alerted at least once
        ingest_everything(&lake.another_process()).await;
        assert_same(&outcome(&lake.lake).await, &clean, &case);
    }
}

/// Names the first difference instead of printing two whole lakes.
fn assert_same(got: &Outcome, clean: &Outcome, case: &str) {
    assert_eq!(got.ledger, clean.ledger, "{case}: ledger");
    assert_eq!(got.quarantine, clean.quarantine, "{case}: quarantine");
    assert_eq!(
        got.quarantine_alerts, clean.quarantine_alerts,
        "{case}: quarantine alerts"
    );
    for (table, rows) in &clean.silver {
        let got_rows = &got.silver[table];
        assert_eq!(got_rows.len(), rows.len(), "{case}: {table} row count");
        for (got_row, row) in got_rows.iter().zip(rows) {
            assert_eq!(got_row, row, "{case}: {table}");
        }
    }
}

/// Table services that act on every commit: one commit's slices, two active instants.
fn eager_services() -> Settings {
    Settings {
        retention: Retention {
            retain_commits: 1,
            retain_hours: 0,
            active_instants: 2,
        },
        ..Settings::default()
    }
}

/// What `watch --once` does with group commits: each tenant's files as one group, in key order.
async fn ingest_in_groups(lake: &LocalLake) {
    let Ok(objects) = lake.list_raw().await else {
        return;
    };
    let mut by_tenant: BTreeMap<String, Vec<object_store::path::Path>> = BTreeMap::new();
    for object in objects {
        let tenant = object.location.parts().next().unwrap().as_ref().to_owned();
        by_tenant.entry(tenant).or_default().push(object.location);
    }
    for (tenant, keys) in by_tenant {
        let _ = lake.ingest_raw_group(&tenant_id(&tenant), &keys).await;
    }
}

/// A lake with history: t1's first export and t2's file loaded one commit each, with eager
/// services, so that the next group commit's cleaning and archival have slices and instants to
/// remove.
async fn lake_with_history() -> TestLake {
    let lake = TestLake::with_settings(eager_services());
    drop_first_export(&lake);
    ingest_everything(&lake.lake).await;
    let edge_cases = read_fixture("edge-cases/edge-cases.ndjson");
    lake.drop_raw("t2/export-0/edge-cases.ndjson", &edge_cases);
    ingest_everything(&lake.lake).await;
    // A copy of a raw file is a new object version (the local ETag names the inode): the history's
    // files leave the raw zone, so that only the new files load over it.
    std::fs::remove_dir_all(lake.path().join("raw")).unwrap();
    std::fs::create_dir(lake.path().join("raw")).unwrap();
    lake
}

/// A group commit over a lake with history, to fail at every call: the history, what the group
/// loads over it, the table-service settings, and what its clean run must do (so that the faults
/// hit it).
struct GroupOverHistory {
    history: TestLake,
    drop_group: fn(&TestLake),
    services: Settings,
    clean_run_does: &'static [CallCheck],
}

/// What a clean run must do, and how to recognise a port call that does it.
type CallCheck = (&'static str, fn(&str) -> bool);

/// The services' group commit: table services clean, archive, and re-size every partition they
/// touch (file groups of a byte: the most buckets; a size in between would make the call count
/// depend on how well each run's timestamps compress).
async fn group_commit_with_table_services() -> GroupOverHistory {
    GroupOverHistory {
        history: lake_with_history().await,
        drop_group: drop_second_export,
        services: Settings {
            file_group_bytes: 1,
            ..eager_services()
        },
        clean_run_does: &[
            ("cleans slices", |call| {
                call.starts_with("lake delete") && call.ends_with(".parquet")
            }),
            ("archives instants", |call| {
                call.starts_with("lake delete") && call.ends_with(".commit")
            }),
            ("re-sizes a partition", |call| {
                call.starts_with("lake put") && call.ends_with(".replacecommit")
            }),
        ],
    }
}

/// `count` patients numbered from `first`, as NDJSON; `gender` tells versions apart.
fn patients(first: usize, count: usize, gender: &str) -> Vec<u8> {
    (first..first + count)
        .map(|n| {
            format!(
                "{{\"resourceType\":\"Patient\",\"id\":\"carry-{n}\",\"gender\":\"{gender}\",\"birthDate\":\"1950-01-01\"}}\n"
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// 160 patients of t1 in one commit: about 40 per bucket, all in insert tier 1 (which holds 64
/// rows in a young table).
async fn lake_with_full_first_tiers() -> TestLake {
    let lake = TestLake::with_settings(eager_services());
    lake.drop_raw("t1/export-0/Patient.ndjson", &patients(0, 160, "female"));
    ingest_in_groups(&lake.lake).await;
    std::fs::remove_dir_all(lake.path().join("raw")).unwrap();
    std::fs::create_dir(lake.path().join("raw")).unwrap();
    lake
}

/// 20 of the patients again (updated where they are) and 120 new ones: tier 1 overflows and
/// carries into tier 2 with the new keys, in every bucket.
fn drop_updates_and_inserts_that_carry(lake: &TestLake) {
    lake.drop_raw("t1/export-1/Patient.ndjson", &patients(150, 20, "male"));
    lake.drop_raw(
        "t1/export-1/Patient-2.ndjson",
        &patients(170, 120, "female"),
    );
}

/// A group commit whose inserts carry insert tier 1 into tier 2, leaving tier 1 an empty slice.
async fn group_commit_that_carries() -> GroupOverHistory {
    GroupOverHistory {
        history: lake_with_full_first_tiers().await,
        drop_group: drop_updates_and_inserts_that_carry,
        services: eager_services(),
        clean_run_does: &[
            ("writes insert tier 2", |call| {
                call.starts_with("lake put") && call.contains("-2_") && call.ends_with(".parquet")
            }),
            ("cleans slices", |call| {
                call.starts_with("lake delete") && call.ends_with(".parquet")
            }),
        ],
    }
}

async fn every_fault_in_a_group_commit(fault: Fault, scenario: GroupOverHistory) {
    // GIVEN a lake with history, and the clean run of a group commit per tenant over it
    let GroupOverHistory {
        history,
        drop_group,
        services,
        clean_run_does,
    } = scenario;
    let before = outcome(&history.lake).await;
    let clean_lake = TestLake::new();
    copy_lake(history.path(), clean_lake.path());
    drop_group(&clean_lake);
    let counting = FaultPlan::counting();
    ingest_in_groups(&faulty_process_with(
        clean_lake.path(),
        &counting,
        services.clone(),
    ))
    .await;
    let clean = outcome(&clean_lake.lake).await;
    let log = counting.log();
    for (what, call_does) in clean_run_does {
        assert!(log.iter().any(|c| call_does(c)), "the clean run {what}");
    }
    let calls = counting.calls();
    println!("{fault:?}: failing each of the {calls} port calls of group commits in turn");
    for at in 1..=calls {
        // WHEN the at-th call fails
        let lake = TestLake::new();
        copy_lake(history.path(), lake.path());
        drop_group(&lake);
        let plan = FaultPlan::failing(fault, at);
        ingest_in_groups(&faulty_process_with(lake.path(), &plan, services.clone())).await;
        let case = format!(
            "{fault:?} at call {at} of {calls} ({:?})",
            plan.failed_call()
        );
        assert!(plan.failed_call().is_some(), "{case}: the fault happened");
        // THEN readers see whole commits only (each file as before the group or as after it), and
        // no record committed before and kept by the group is missing: cleaning, archival and
        // carries never take a slice a reader needs
        let seen = outcome(&lake.lake).await;
        assert_whole_commits_of(&seen, &[&before, &clean], &case);
        for (table, rows) in &before.silver {
            let key_of = |row: &Map<String, Value>| row.values().next().map(Value::to_string);
            let kept: BTreeSet<_> = clean.silver[table].iter().filter_map(key_of).collect();
            let seen_keys: BTreeSet<_> = seen.silver[table].iter().filter_map(key_of).collect();
            for key in rows.iter().filter_map(key_of).filter(|k| kept.contains(k)) {
                assert!(
                    seen_keys.contains(&key),
                    "{case}: {table} lost {key} committed before"
                );
            }
        }
        // AND after a healthy process retries, everything equals the clean run
        let retry = faulty_process_with(lake.path(), &FaultPlan::counting(), services.clone());
        ingest_in_groups(&retry).await;
        assert_same(&outcome(&lake.lake).await, &clean, &case);
    }
}

#[tokio::test]
async fn an_error_at_any_call_of_a_group_commit_with_table_services_loses_nothing() {
    every_fault_in_a_group_commit(Fault::Error, group_commit_with_table_services().await).await;
}

#[tokio::test]
async fn a_timeout_at_any_call_of_a_group_commit_with_table_services_loses_nothing() {
    every_fault_in_a_group_commit(Fault::Timeout, group_commit_with_table_services().await).await;
}

#[tokio::test]
async fn a_stop_at_any_call_of_a_group_commit_with_table_services_loses_nothing() {
    every_fault_in_a_group_commit(Fault::Stop, group_commit_with_table_services().await).await;
}

#[tokio::test]
async fn an_error_at_any_call_of_a_group_commit_that_carries_a_tier_loses_nothing() {
    every_fault_in_a_group_commit(Fault::Error, group_commit_that_carries().await).await;
}

#[tokio::test]
async fn a_timeout_at_any_call_of_a_group_commit_that_carries_a_tier_loses_nothing() {
    every_fault_in_a_group_commit(Fault::Timeout, group_commit_that_carries().await).await;
}

#[tokio::test]
async fn a_stop_at_any_call_of_a_group_commit_that_carries_a_tier_loses_nothing() {
    every_fault_in_a_group_commit(Fault::Stop, group_commit_that_carries().await).await;
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

/// The tenants announced by `gold.refreshed` messages after the first `skip` notifications.
fn announced_tenants(lake: &LocalLake, skip: usize) -> Vec<String> {
    let text = std::fs::read_to_string(lake.dir.join("notifications.jsonl")).unwrap_or_default();
    let mut tenants: Vec<String> = text
        .lines()
        .skip(skip)
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|m| m["event"] == "gold.refreshed")
        .map(|m| m["tenant_id"].as_str().unwrap().to_owned())
        .collect();
    tenants.sort();
    tenants.dedup();
    tenants
}

fn notification_count(lake: &LocalLake) -> usize {
    std::fs::read_to_string(lake.dir.join("notifications.jsonl"))
        .map_or(0, |text| text.lines().count())
}

/// Each gold table of a tenant after a failed refresh: as before it, or as the clean refresh
/// leaves it, never in between.
fn assert_before_or_after(seen: &GoldRows, before: &GoldRows, after: &GoldRows, case: &str) {
    let either = |t: fn(&GoldRows) -> &dyn std::fmt::Debug| {
        let seen = format!("{:?}", t(seen));
        seen == format!("{:?}", t(before)) || seen == format!("{:?}", t(after))
    };
    assert!(
        either(|g| &g.hospital_monthly),
        "{case}: hospital_monthly half-refreshed"
    );
    assert!(
        either(|g| &g.hai_by_code),
        "{case}: hai_by_code half-refreshed"
    );
    assert!(
        either(|g| &g.mortality_yearly),
        "{case}: mortality_yearly half-refreshed"
    );
}

async fn every_fault_in_a_gold_refresh(fault: Fault) {
    // GIVEN gold for t1's first export, then more silver for t1 and a first export of t2
    let loaded = TestLake::new();
    drop_first_export(&loaded);
    ingest_everything(&loaded.lake).await;
    loaded.lake.refresh_gold().await.unwrap();
    let before = gold_of(&loaded.lake).await;
    assert_eq!(before.keys().collect::<Vec<_>>(), ["t1"]);
    drop_second_export(&loaded);
    ingest_everything(&loaded.lake).await;
    let announced_before = notification_count(&loaded.lake);
    // AND the clean refresh's gold and port calls
    let clean_lake = TestLake::new();
    copy_lake(loaded.path(), clean_lake.path());
    let counting = FaultPlan::counting();
    faulty_process(clean_lake.path(), &counting)
        .refresh_gold()
        .await
        .unwrap();
    let clean = gold_of(&clean_lake.lake).await;
    assert_eq!(clean.len(), 2, "both tenants have gold");
    assert_ne!(clean["t1"], before["t1"], "t1's gold changes");
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
        assert!(plan.failed_call().is_some(), "{case}: the fault happened");
        // THEN each gold table of each tenant is as before the refresh or as after it
        let seen = gold_of(&lake.lake).await;
        for (tenant, after) in &clean {
            let none = GoldRows::default();
            let seen = seen.get(tenant).unwrap_or(&none);
            assert_before_or_after(seen, before.get(tenant).unwrap_or(&none), after, &case);
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
        assert_eq!(
            announced_tenants(&lake.lake, announced_before),
            ["t1", "t2"],
            "{case}"
        );
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

/// A lake where patient `pat-1` has rows in the latest and in older slices of every table, and a
/// rejected condition naming them in a reject log.
async fn lake_to_erase() -> TestLake {
    let lake = TestLake::new();
    drop_first_export(&lake);
    let rejected = r#"{"resourceType":"Condition","id":"c-bad","subject":{"reference":"Patient/pat-1"},"onsetDateTime":"2024-13-45"}"#;
    lake.drop_raw("t1/export-1/more.ndjson", rejected.as_bytes());
    ingest_everything(&lake.lake).await;
    // A newer version of each patient: the first version stays on disk in an older slice.
    let newer = read_fixture("bulk/Patient.ndjson");
    let newer = String::from_utf8(newer)
        .unwrap()
        .replace("2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z");
    lake.drop_raw("t1/export-2/Patient.ndjson", newer.as_bytes());
    ingest_everything(&lake.lake).await;
    lake
}

/// What an erasure leaves that must not depend on faults: the silver rows, every record key in
/// any slice on disk, and the reject logs.
async fn erasure_outcome(lake: &TestLake) -> (Outcome, BTreeSet<String>) {
    (
        outcome(&lake.lake).await,
        record_keys_on_disk(lake, "silver").await,
    )
}

async fn every_fault_in_an_erasure(fault: Fault) {
    // GIVEN a lake holding pat-1, and what a clean erasure leaves
    let base = lake_to_erase().await;
    let clean_lake = TestLake::new();
    copy_lake(base.path(), clean_lake.path());
    let counting = FaultPlan::counting();
    let clean_process = faulty_process(clean_lake.path(), &counting);
    let receipt = clean_process
        .erase(&tenant_id("t1"), "pat-1")
        .await
        .unwrap();
    assert_eq!(receipt.rows_removed["patient"], 1);
    assert!(!receipt.slices_rewritten.is_empty());
    assert_eq!(receipt.reject_lines_removed, 1);
    let (clean, clean_keys) = erasure_outcome(&clean_lake).await;
    let erased = pseudonym("t1", "Patient", "pat-1");
    assert!(!clean_keys.contains(&erased));
    let calls = counting.calls();
    println!("{fault:?}: failing each of the {calls} port calls of an erasure in turn");
    for at in 1..=calls {
        // WHEN the at-th call of an erasure fails, and the erasure is run again
        let lake = TestLake::new();
        copy_lake(base.path(), lake.path());
        let plan = FaultPlan::failing(fault, at);
        let _ = faulty_process(lake.path(), &plan)
            .erase(&tenant_id("t1"), "pat-1")
            .await;
        let case = format!(
            "{fault:?} at call {at} of {calls} ({:?})",
            plan.failed_call()
        );
        assert!(plan.failed_call().is_some(), "{case}: the fault happened");
        lake.another_process()
            .erase(&tenant_id("t1"), "pat-1")
            .await
            .unwrap_or_else(|e| panic!("{case}: the retried erasure failed: {e}"));
        // THEN everything is removed, as by a clean erasure
        let (got, keys) = erasure_outcome(&lake).await;
        assert_eq!(keys, clean_keys, "{case}: keys on disk");
        assert_same(&got, &clean, &case);
    }
}

#[tokio::test]
async fn an_erasure_retried_after_an_error_at_any_call_removes_everything() {
    every_fault_in_an_erasure(Fault::Error).await;
}

#[tokio::test]
async fn an_erasure_retried_after_a_timeout_at_any_call_removes_everything() {
    every_fault_in_an_erasure(Fault::Timeout).await;
}

#[tokio::test]
async fn an_erasure_retried_after_a_stop_at_any_call_removes_everything() {
    every_fault_in_an_erasure(Fault::Stop).await;
}
