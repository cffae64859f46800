//! Crashes between the steps of a commit, concurrent writers, and redelivery.

use metriccare_core::ingest::FileResult;
use metriccare_core::silver::SilverTable;
use metriccare_tests::faults::{Fault, FaultPlan, faulty_process};
use metriccare_tests::{TestLake, fixtures, read_fixture, tenant_id};

/// Ingests a fixture of tenant t1 in a process whose first write ending in `suffix` fails: the
/// ingest stops there, leaving what a process stopped at that write would leave.
async fn crash_while_ingesting(lake: &TestLake, suffix: &str, fixture: &str) {
    let plan = FaultPlan::failing_write(Fault::Error, 1, suffix);
    let process = faulty_process(lake.path(), &plan);
    let report = process
        .ingest_file(&fixtures().join(fixture), &tenant_id("t1"))
        .await
        .unwrap();
    assert_eq!(report.result, FileResult::Failed);
    assert!(plan.failed_call().is_some(), "the write {suffix} happened");
    let entry = process
        .services
        .ledger
        .get(&report.ledger_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.status.as_str(), "FAILED");
}

/// The first commit of a table stops after its base files (and seal), before its sequence claim.
const BEFORE_COMMIT_POINT: &str = "00000000000000000001.json";
/// The commit stops after its sequence claim, before `.commit`.
const AFTER_COMMIT_POINT: &str = ".commit";

#[tokio::test]
async fn a_crash_before_the_commit_point_leaves_nothing_visible_and_the_retry_completes() {
    // GIVEN a writer that stops after writing base files, before claiming its commit sequence
    let lake = TestLake::new();
    // WHEN it ingests a file
    crash_while_ingesting(&lake, BEFORE_COMMIT_POINT, "bulk/Patient.ndjson").await;
    // THEN its base files exist but no reader sees them
    let partition = lake.lake.dir.join("silver/patient/tenant_id=t1");
    assert!(std::fs::read_dir(&partition).unwrap().any(|f| {
        f.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".parquet")
    }));
    assert!(lake.rows(SilverTable::Patient).await.is_empty());
    // AND the next run completes the work, every row once
    let report = lake
        .ingest(&fixtures().join("bulk/Patient.ndjson"), "t1")
        .await;
    assert_eq!(report.result, FileResult::Completed);
    assert_eq!(lake.rows(SilverTable::Patient).await.len(), 2);
}

#[tokio::test]
async fn a_crash_after_the_commit_point_is_completed_by_the_next_writer() {
    // GIVEN a writer that claimed its commit sequence but stopped before writing `.commit`
    let lake = TestLake::new();
    crash_while_ingesting(&lake, AFTER_COMMIT_POINT, "bulk/Patient.ndjson").await;
    assert!(
        lake.rows(SilverTable::Patient).await.is_empty(),
        "not visible before completion"
    );
    // WHEN another file is written to the same table
    let other = lake.write_input(
        "more.ndjson",
        br#"{"resourceType":"Patient","id":"pat-9","gender":"other"}"#,
    );
    assert_eq!(
        lake.ingest(&other, "t1").await.result,
        FileResult::Completed
    );
    // THEN the stopped commit was completed first, and nothing is lost or doubled
    let rows = lake.rows(SilverTable::Patient).await;
    assert_eq!(rows.len(), 3);
    // AND the failed file, retried, changes nothing more
    assert_eq!(
        lake.ingest(&fixtures().join("bulk/Patient.ndjson"), "t1")
            .await
            .result,
        FileResult::Completed
    );
    assert_eq!(lake.rows(SilverTable::Patient).await.len(), 3);
}

/// The commit-sequence entries of a silver table (`<number>.json`; the folder also holds a hint).
fn sequence_entries(lake: &TestLake, table: &str) -> usize {
    std::fs::read_dir(lake.lake.dir.join("_metriccare/commits/silver").join(table))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count()
}

/// Starts an ingest of `file` for tenant t1 by another process's services on the same lake.
fn ingest_in_another_process(
    lake: &TestLake,
    file: std::path::PathBuf,
) -> tokio::task::JoinHandle<FileResult> {
    let process = lake.another_process();
    tokio::spawn(async move {
        let report = process.ingest_file(&file, &tenant_id("t1")).await.unwrap();
        report.result
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ingests_into_one_partition_keep_every_row() {
    // GIVEN eight files of different patients of one tenant, and eight processes
    let lake = TestLake::new();
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let lines: Vec<String> = (0..25)
            .map(|i| {
                format!(r#"{{"resourceType":"Patient","id":"w{writer}-p{i}","gender":"female"}}"#)
            })
            .collect();
        let file = lake.write_input(&format!("w{writer}.ndjson"), lines.join("\n").as_bytes());
        // WHEN they all ingest at once
        tasks.push(ingest_in_another_process(&lake, file));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), FileResult::Completed);
    }
    // THEN every row of every writer is there, once
    let rows = lake.rows(SilverTable::Patient).await;
    assert_eq!(rows.len(), 200);
    assert_eq!(sequence_entries(&lake, "patient"), 8, "one commit per file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_file_delivered_many_times_at_once_is_processed_once() {
    let lake = TestLake::new();
    let file = fixtures().join("bulk/Encounter.ndjson");
    let mut tasks = Vec::new();
    for _ in 0..6 {
        tasks.push(ingest_in_another_process(&lake, file.clone()));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == FileResult::Completed)
            .count(),
        1,
        "{results:?}"
    );
    assert!(results.iter().all(|r| matches!(
        r,
        FileResult::Completed | FileResult::Busy | FileResult::AlreadyDone
    )));
    assert_eq!(lake.rows(SilverTable::Encounter).await.len(), 2);
    assert_eq!(sequence_entries(&lake, "encounter"), 1);
}

#[tokio::test]
async fn the_raw_zone_is_processed_like_upload_events_and_redelivery_does_nothing() {
    let lake = TestLake::new();
    let key = lake.drop_raw(
        "clinic-7/2024/06/Patient.ndjson",
        &read_fixture("bulk/Patient.ndjson"),
    );
    let first = lake.lake.ingest_raw(&key).await.unwrap();
    assert_eq!(
        (first.result, first.tenant_id.as_str()),
        (FileResult::Completed, "clinic-7")
    );
    let instant = lake.latest_instant(SilverTable::Patient).await;
    let again = lake.lake.ingest_raw(&key).await.unwrap();
    assert_eq!(again.result, FileResult::AlreadyDone);
    assert_eq!(
        lake.latest_instant(SilverTable::Patient).await,
        instant,
        "no new commit"
    );
    // A changed file (new content, so a new ETag) is a new version and is processed.
    lake.drop_raw(
        "clinic-7/2024/06/Patient.ndjson",
        br#"{"resourceType":"Patient","id":"pat-3"}"#,
    );
    assert_eq!(
        lake.lake.ingest_raw(&key).await.unwrap().result,
        FileResult::Completed
    );
    assert_eq!(lake.rows(SilverTable::Patient).await.len(), 3);
    // A file outside a valid tenant folder is refused before any work.
    let stray = lake.drop_raw("Bad_Tenant/x.ndjson", b"{}");
    assert!(lake.lake.ingest_raw(&stray).await.is_err());
}

#[tokio::test]
async fn a_lake_written_with_another_key_refuses_to_write() {
    let lake = TestLake::new();
    lake.ingest(&fixtures().join("bulk/Patient.ndjson"), "t1")
        .await;
    let config = metriccare_local::LocalConfig {
        key: Some(vec![9u8; 32]),
        ..metriccare_local::LocalConfig::default()
    };
    let other = metriccare_local::LocalLake::open_with(lake.path(), config).unwrap();
    let error = other
        .ingest_file(&fixtures().join("bulk/Encounter.ndjson"), &tenant_id("t1"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("pseudonymisation key mismatch"),
        "{error}"
    );
    assert!(lake.rows(SilverTable::Encounter).await.is_empty());
}

#[tokio::test]
async fn an_abandoned_write_is_removed_once_it_is_older_than_the_stale_limit() {
    // GIVEN a writer that stopped after its base files and its seal, before claiming a sequence
    // number, two hours ago
    let lake = TestLake::new();
    crash_while_ingesting(&lake, BEFORE_COMMIT_POINT, "bulk/Patient.ndjson").await;
    let hoodie = lake.lake.dir.join("silver/patient/.hoodie");
    let sealed = lake.lake.dir.join("_metriccare/sealed/silver/patient");
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    let mut abandoned = Vec::new();
    let files = std::fs::read_dir(&hoodie)
        .unwrap()
        .chain(std::fs::read_dir(&sealed).unwrap());
    for entry in files {
        let path = entry.unwrap().path();
        if path.starts_with(&sealed) {
            let file = std::fs::File::options().append(true).open(&path).unwrap();
            file.set_modified(two_hours_ago).unwrap();
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".commit.requested") || name.ends_with(".inflight") {
            let file = std::fs::File::options().append(true).open(&path).unwrap();
            file.set_modified(two_hours_ago).unwrap();
            abandoned.push(name.split('.').next().unwrap().to_owned());
        }
    }
    assert_eq!(abandoned.len(), 2);
    let partition = lake.lake.dir.join("silver/patient/tenant_id=t1");
    let orphans = |instant: &str| {
        std::fs::read_dir(&partition)
            .unwrap()
            .filter(|f| {
                f.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(instant)
            })
            .count()
    };
    assert!(orphans(&abandoned[0]) > 0);
    // WHEN another writer commits to the table
    let other = lake.write_input("p.ndjson", br#"{"resourceType":"Patient","id":"z"}"#);
    assert_eq!(
        lake.ingest(&other, "t1").await.result,
        FileResult::Completed
    );
    // THEN the abandoned instant's files and timeline entries are gone
    assert_eq!(orphans(&abandoned[0]), 0);
    assert!(!hoodie.join(format!("{}.inflight", abandoned[0])).exists());
    assert!(
        lake.lake
            .dir
            .join("_metriccare/sealed/silver/patient")
            .join(&abandoned[0])
            .exists()
    );
    assert_eq!(lake.rows(SilverTable::Patient).await.len(), 1);
}
