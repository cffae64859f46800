//! The table lifecycle: group commits, cleaning, archival and bounded control files. After many
//! commits a table holds its retained slices and active instants only, and still every row.

use std::collections::BTreeSet;
use std::path::{Path as FsPath, PathBuf};

use metriccare_core::hudi::{Retention, SEQUENCES_KEPT, bucket_of, read_services_state};
use metriccare_core::ingest::{FileResult, GroupLimits, Settings};
use metriccare_core::silver::{SILVER_BUCKETS, SilverTable};
use metriccare_tests::faults::{FaultPlan, faulty_process};
use metriccare_tests::{TestLake, files_under, pseudonym, tenant_id};
use serde_json::{Map, Value};

const RETENTION: Retention = Retention {
    retain_commits: 2,
    retain_hours: 0,
    active_instants: 5,
};

fn lake_with(retention: Retention) -> TestLake {
    TestLake::with_settings(Settings {
        retention,
        group: GroupLimits::default(),
        ..Settings::default()
    })
}

fn patient(id: &str, last_updated: &str, gender: &str) -> String {
    format!(
        r#"{{"resourceType":"Patient","id":"{id}","meta":{{"lastUpdated":"{last_updated}"}},"gender":"{gender}","birthDate":"1980-01-01"}}"#
    )
}

fn ndjson(lines: &[String]) -> Vec<u8> {
    (lines.join("\n") + "\n").into_bytes()
}

/// Patient ids whose pseudonymous key falls in bucket 0 of tenant t1.
fn ids_in_bucket_zero(count: usize) -> Vec<String> {
    (0..)
        .map(|n| format!("b0-{n}"))
        .filter(|id| bucket_of(&pseudonym("t1", "Patient", id), SILVER_BUCKETS) == 0)
        .take(count)
        .collect()
}

fn count_files(dir: &FsPath, suffix: &str) -> usize {
    files_under(dir)
        .iter()
        .filter(|f| f.to_string_lossy().ends_with(suffix))
        .count()
}

/// The number of row groups in the newest base file of the file group whose id starts with
/// `file_id_prefix` (`<file id>_<write token>_<instant>.parquet`).
fn row_groups_of_newest_slice(partition: &FsPath, file_id_prefix: &str) -> usize {
    let newest = files_under(partition)
        .into_iter()
        .filter(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(file_id_prefix) && name.ends_with(".parquet")
        })
        .max_by_key(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .rsplit('_')
                .next()
                .unwrap()
                .to_owned()
        })
        .expect("a base file");
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(newest).unwrap())
            .unwrap();
    parquet::file::reader::FileReader::metadata(&reader).num_row_groups()
}

/// Silver rows without what depends on the run rather than the data (lineage, ingest time).
async fn data_rows(lake: &TestLake, table: SilverTable) -> Vec<Map<String, Value>> {
    let mut rows = lake.rows(table).await;
    for row in &mut rows {
        row.remove("source_file_id");
        row.remove("ingested_at");
    }
    rows.sort_by_key(|row| row[table.record_key()].to_string());
    rows
}

#[tokio::test]
async fn years_of_single_file_commits_keep_the_table_small_and_every_row() {
    // GIVEN a first file with patients in every bucket
    let lake = lake_with(RETENTION);
    let first: Vec<String> = (0..40)
        .map(|n| patient(&format!("p{n}"), "2024-01-01T00:00:00Z", "female"))
        .collect();
    let file = lake.write_input("first.ndjson", &ndjson(&first));
    assert_eq!(lake.ingest(&file, "t1").await.result, FileResult::Completed);
    // WHEN 30 more files arrive one by one, each its own commit, all in bucket 0 (the other
    // buckets' slices fall behind the active timeline), one updating a first-file patient
    let mut expected: BTreeSet<String> = (0..40)
        .map(|n| pseudonym("t1", "Patient", &format!("p{n}")))
        .collect();
    for (n, id) in ids_in_bucket_zero(30).iter().enumerate() {
        let mut lines = vec![patient(id, "2024-02-01T00:00:00Z", "male")];
        if n == 10 {
            lines.push(patient("p7", "2024-03-01T00:00:00Z", "other"));
        }
        let file = lake.write_input(&format!("day-{n:03}.ndjson"), &ndjson(&lines));
        assert_eq!(lake.ingest(&file, "t1").await.result, FileResult::Completed);
        expected.insert(pseudonym("t1", "Patient", id));
    }
    // THEN every patient is there once, the update included
    let rows = lake.rows(SilverTable::Patient).await;
    let keys: BTreeSet<String> = rows
        .iter()
        .map(|r| r["patient_key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rows.len(), 70);
    assert_eq!(keys, expected);
    let p7 = pseudonym("t1", "Patient", "p7");
    let updated = rows
        .iter()
        .find(|r| r["patient_key"] == p7.as_str())
        .unwrap();
    assert_eq!(updated["gender"], "other");
    // AND the active timeline holds the newest 5 instants (3 files each) and the properties
    let table = lake.path().join("silver/patient");
    let hoodie: Vec<PathBuf> = std::fs::read_dir(table.join(".hoodie"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(count_files(&table.join(".hoodie"), ".commit"), 5);
    assert!(
        hoodie.len() <= 3 * 5 + 1,
        "{} files in .hoodie",
        hoodie.len()
    );
    // AND each bucket keeps its latest slice and those the last 2 commits need
    let partition = table.join("tenant_id=t1");
    let base_files = count_files(&partition, ".parquet");
    assert!(
        base_files <= SILVER_BUCKETS as usize + 2,
        "{base_files} base files"
    );
    // AND the bucket that took every commit was not re-encoded whole each time: its row groups
    // whose rows all stayed were copied, and small ones merged, so a few remain
    let row_groups = row_groups_of_newest_slice(&partition, "00000000");
    assert!((2..=6).contains(&row_groups), "{row_groups} row groups");
    // AND the control files are bounded: a seal per active instant, the sequence's kept window
    let control = lake.path().join("_metriccare");
    assert!(count_files(&control.join("sealed/silver/patient"), "") <= 5);
    assert!(
        count_files(&control.join("commits/silver/patient"), ".json")
            <= SEQUENCES_KEPT as usize + 1
    );
    // AND what the services did is recorded for `metriccare status`
    let state = read_services_state(
        lake.lake.services.lake.as_ref(),
        &SilverTable::Patient.def().base,
    )
    .await
    .unwrap()
    .expect("services ran");
    assert_eq!(state.totals.archived_instants, 31 - 5);
    assert!(state.totals.cleaned_files >= 28, "{:?}", state.totals);
    assert!(state.totals.cleaned_bytes > 0);
}

#[tokio::test]
async fn the_commit_sequence_stays_bounded_and_gold_behind_it_recomputes_every_tenant() {
    // GIVEN a lake whose gold refreshed once
    let lake = lake_with(RETENTION);
    let file = lake.write_input(
        "p.ndjson",
        &ndjson(&[patient("p0", "2024-01-01T00:00:00Z", "female")]),
    );
    lake.ingest(&file, "t1").await;
    lake.lake.refresh_gold().await.unwrap();
    // WHEN more commits than the kept sequence window land for two tenants
    for n in 0..=SEQUENCES_KEPT {
        let tenant = if n % 2 == 0 { "t1" } else { "t2" };
        let line = patient(&format!("q{n}"), "2024-01-01T00:00:00Z", "male");
        let file = lake.write_input(&format!("q{n}.ndjson"), &ndjson(&[line]));
        lake.ingest(&file, tenant).await;
    }
    // THEN the sequence keeps its window only
    let commits = lake.path().join("_metriccare/commits/silver/patient");
    assert!(count_files(&commits, ".json") <= SEQUENCES_KEPT as usize + 1);
    let hudi = lake
        .lake
        .services
        .silver_table(SilverTable::Patient)
        .await
        .unwrap();
    assert_eq!(hudi.latest_sequence().await.unwrap(), SEQUENCES_KEPT + 2);
    // AND the refresh that fell behind it recomputes both tenants
    let report = lake.lake.refresh_gold().await.unwrap();
    assert_eq!(
        report.changed_tenants,
        vec!["t1".to_owned(), "t2".to_owned()]
    );
}

#[tokio::test]
async fn a_group_commit_equals_its_files_committed_one_by_one() {
    // GIVEN three files: first versions, newer versions with a stale one, and a Bundle that
    // deletes one patient and adds another
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "1.ndjson",
            ndjson(
                &(0..10)
                    .map(|n| patient(&format!("p{n}"), "2024-01-01T00:00:00Z", "female"))
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "2.ndjson",
            ndjson(
                &(5..15)
                    .map(|n| patient(&format!("p{n}"), "2024-02-01T00:00:00Z", "male"))
                    .chain([patient("p1", "2023-01-01T00:00:00Z", "unknown")])
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            "3.json",
            format!(
                r#"{{"resourceType":"Bundle","type":"transaction","entry":[
                    {{"request":{{"method":"DELETE","url":"Patient/p3"}}}},
                    {{"resource":{},"request":{{"method":"PUT","url":"Patient/p16"}}}}]}}"#,
                patient("p16", "2024-03-01T00:00:00Z", "other")
            )
            .into_bytes(),
        ),
    ];
    let grouped = TestLake::new();
    let one_by_one = TestLake::new();
    let paths = |lake: &TestLake| -> Vec<PathBuf> {
        files
            .iter()
            .map(|(name, content)| lake.write_input(name, content))
            .collect()
    };
    // WHEN one lake takes them as one group, the other one by one
    let reports = grouped
        .lake
        .ingest_files(&paths(&grouped), &tenant_id("t1"))
        .await
        .unwrap();
    assert!(reports.iter().all(|r| r.result == FileResult::Completed));
    for path in paths(&one_by_one) {
        one_by_one.ingest(&path, "t1").await;
    }
    // THEN both hold the same rows
    let rows = data_rows(&grouped, SilverTable::Patient).await;
    assert_eq!(rows, data_rows(&one_by_one, SilverTable::Patient).await);
    assert_eq!(rows.len(), 15 - 1 + 1);
    // AND the group made one commit, which every file's ledger item names
    let instants: BTreeSet<&Vec<String>> =
        reports.iter().map(|r| &r.outcome.silver_instants).collect();
    assert_eq!(instants.len(), 1);
    let patient_dir = grouped.path().join("silver/patient/.hoodie");
    assert_eq!(count_files(&patient_dir, ".commit"), 1);
    assert_eq!(
        count_files(&one_by_one.path().join("silver/patient/.hoodie"), ".commit"),
        3
    );
}

#[tokio::test]
async fn one_bad_file_never_fails_its_group() {
    // GIVEN a group with a file that is not JSON between two good ones
    let lake = TestLake::new();
    let files = vec![
        lake.write_input(
            "a.ndjson",
            &ndjson(&[patient("a", "2024-01-01T00:00:00Z", "female")]),
        ),
        lake.write_input("broken.json", b"not json at all"),
        lake.write_input(
            "b.ndjson",
            &ndjson(&[patient("b", "2024-01-01T00:00:00Z", "male")]),
        ),
    ];
    // WHEN the group is ingested
    let reports = lake
        .lake
        .ingest_files(&files, &tenant_id("t1"))
        .await
        .unwrap();
    // THEN the bad file alone is quarantined, and both good files are loaded
    let results: Vec<FileResult> = reports.iter().map(|r| r.result).collect();
    assert_eq!(
        results,
        vec![
            FileResult::Completed,
            FileResult::Quarantined,
            FileResult::Completed
        ]
    );
    assert_eq!(lake.rows(SilverTable::Patient).await.len(), 2);
    let quarantined = &reports[1].ledger_id;
    assert!(
        lake.path()
            .join("quarantine/files/t1")
            .join(quarantined)
            .join("reason.json")
            .exists()
    );
}

/// A transaction Bundle deleting the given patients.
fn delete_bundle(ids: &[&str]) -> Vec<u8> {
    let entries: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"request":{{"method":"DELETE","url":"Patient/{id}"}}}}"#))
        .collect();
    format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes()
}

async fn patient_keys(lake: &TestLake) -> BTreeSet<String> {
    lake.rows(SilverTable::Patient)
        .await
        .iter()
        .map(|r| r["patient_key"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_older_version_arriving_after_a_delete_stays_deleted() {
    // GIVEN a patient, then a delete of it (ordered at its upload time, now)
    let lake = TestLake::new();
    let first = lake.write_input(
        "1.ndjson",
        &ndjson(&[patient("p1", "2024-01-01T00:00:00Z", "female")]),
    );
    lake.ingest(&first, "t1").await;
    let delete = lake.write_input("2.json", &delete_bundle(&["p1"]));
    assert_eq!(lake.ingest(&delete, "t1").await.outcome.deleted, 1);
    assert!(patient_keys(&lake).await.is_empty());
    // WHEN an older version arrives after the delete (a re-sent export, SQS out of order)
    let late = lake.write_input(
        "3.ndjson",
        &ndjson(&[patient("p1", "2024-01-15T00:00:00Z", "male")]),
    );
    assert_eq!(lake.ingest(&late, "t1").await.result, FileResult::Completed);
    // THEN the patient stays deleted: its tombstone outranks the version
    assert!(patient_keys(&lake).await.is_empty());
    assert!(
        lake.path()
            .join("_metriccare/tombstones/silver/patient/tenant_id=t1")
            .exists()
    );
}

#[tokio::test]
async fn a_delete_delivered_before_the_older_insert_it_beats_wins() {
    // GIVEN an empty lake that receives the delete first
    let lake = TestLake::new();
    let delete = lake.write_input("delete.json", &delete_bundle(&["p1"]));
    lake.ingest(&delete, "t1").await;
    // WHEN the insert it was meant to remove arrives afterwards, and a patient it does not name
    let insert = lake.write_input(
        "insert.ndjson",
        &ndjson(&[
            patient("p1", "2024-01-01T00:00:00Z", "female"),
            patient("p2", "2024-01-01T00:00:00Z", "male"),
        ]),
    );
    lake.ingest(&insert, "t1").await;
    // THEN only the other patient is there
    let keys = patient_keys(&lake).await;
    assert_eq!(keys, BTreeSet::from([pseudonym("t1", "Patient", "p2")]));
}

/// An insert of p1's old version, paused just before its commit takes its place in the commit
/// order (it has read the tombstones already), while `delete` — a file deleting p1, ordered later —
/// is committed; then the insert goes on. Returns the patients left.
async fn insert_racing_a_delete(delete: &[u8]) -> BTreeSet<String> {
    let lake = TestLake::new();
    let insert = lake.write_input(
        "insert.ndjson",
        &ndjson(&[patient("p1", "2024-01-01T00:00:00Z", "female")]),
    );
    let plan =
        FaultPlan::pausing_write("_metriccare/commits/silver/patient/00000000000000000001.json");
    let process = faulty_process(lake.path(), &plan);
    let inserting = tokio::spawn(async move {
        let report = process
            .ingest_file(&insert, &tenant_id("t1"))
            .await
            .unwrap();
        report.result
    });
    plan.paused().await;
    let delete = lake.write_input("delete.json", delete);
    assert_eq!(
        lake.ingest(&delete, "t1").await.result,
        FileResult::Completed
    );
    plan.resume();
    assert_eq!(inserting.await.unwrap(), FileResult::Completed);
    patient_keys(&lake).await
}

#[tokio::test]
async fn a_delete_that_finds_nothing_still_beats_the_older_insert_racing_it() {
    // GIVEN an insert of p1 racing a delete of p1 that commits first and finds nothing (the
    // table is still empty)
    // WHEN the insert goes on
    let left = insert_racing_a_delete(&delete_bundle(&["p1"])).await;
    // THEN it conflicts with the delete's place in the commit order and loses to it
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_delete_that_finds_nothing_beats_the_racing_insert_when_its_group_writes_elsewhere() {
    // GIVEN the same race, but the delete's file also upserts p2, in another file group: its
    // commit writes p2's file group only
    let p1_bucket = bucket_of(&pseudonym("t1", "Patient", "p1"), SILVER_BUCKETS);
    let p2 = (0..)
        .map(|n| format!("q{n}"))
        .find(|id| bucket_of(&pseudonym("t1", "Patient", id), SILVER_BUCKETS) != p1_bucket)
        .unwrap();
    let mixed = format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[{{"request":{{"method":"DELETE","url":"Patient/p1"}}}},{{"resource":{},"request":{{"method":"PUT","url":"Patient/{p2}"}}}}]}}"#,
        patient(&p2, "2024-01-01T00:00:00Z", "male")
    );
    // WHEN the insert goes on
    let left = insert_racing_a_delete(mixed.as_bytes()).await;
    // THEN p1 stays deleted: the commit named the file group the delete looked at too
    assert_eq!(left, BTreeSet::from([pseudonym("t1", "Patient", &p2)]));
}

#[tokio::test]
async fn a_last_updated_in_the_future_is_counted_and_does_not_beat_a_later_delete() {
    // GIVEN a version whose lastUpdated is years ahead of the ingest time
    let lake = TestLake::new();
    let ahead = lake.write_input(
        "ahead.ndjson",
        &ndjson(&[patient("p1", "2099-01-01T00:00:00Z", "female")]),
    );
    let report = lake.ingest(&ahead, "t1").await;
    // THEN it is counted, and ordered at the ingest time
    assert_eq!(report.outcome.future_last_updated, 1);
    let rows = lake.rows(SilverTable::Patient).await;
    assert_eq!(rows[0]["last_updated"], rows[0]["ingested_at"]);
    let entry = lake
        .lake
        .services
        .ledger
        .get(&report.ledger_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.future_last_updated, 1);
    // AND a delete uploaded later removes it
    let delete = lake.write_input("delete.json", &delete_bundle(&["p1"]));
    lake.ingest(&delete, "t1").await;
    assert!(patient_keys(&lake).await.is_empty());
}

#[tokio::test]
async fn a_bulk_deleted_file_is_ordered_at_its_manifests_transaction_time() {
    // GIVEN two patients, one updated after the export's transactionTime, one before
    let lake = TestLake::new();
    let stored = lake.write_input(
        "stored.ndjson",
        &ndjson(&[
            patient("after", "2024-07-01T00:00:00Z", "female"),
            patient("before", "2024-05-01T00:00:00Z", "male"),
        ]),
    );
    lake.ingest(&stored, "t1").await;
    // WHEN a Bulk export's `deleted` file names both, its manifest beside it
    let manifest = r#"{"transactionTime":"2024-06-01T00:00:00Z","request":"https://ehr.example/$export",
        "requiresAccessToken":true,"output":[],
        "deleted":[{"type":"Bundle","url":"https://ehr.example/files/del-1.ndjson"}],"error":[]}"#;
    lake.write_input("export/manifest.json", manifest.as_bytes());
    let deleted = lake.write_input("export/del-1.ndjson", &delete_bundle(&["after", "before"]));
    lake.ingest(&deleted, "t1").await;
    // THEN the delete removes only the version ordered before the transactionTime (ordered at the
    // upload time, now, it would remove both)
    assert_eq!(
        patient_keys(&lake).await,
        BTreeSet::from([pseudonym("t1", "Patient", "after")])
    );
}

/// Record keys of the latest snapshot, with how often each appears.
async fn key_counts(lake: &TestLake) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for row in lake.rows(SilverTable::Patient).await {
        *counts
            .entry(row["patient_key"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn a_growing_tenant_gets_more_file_groups_and_readers_see_every_row_once() {
    // GIVEN file groups sized to a few kilobytes, and one commit a day of 60 new patients
    let lake = TestLake::with_settings(Settings {
        retention: RETENTION,
        file_group_bytes: 6_000,
        ..Settings::default()
    });
    let mut expected = BTreeSet::new();
    for day in 0..6 {
        let lines: Vec<String> = (0..60)
            .map(|n| patient(&format!("d{day}-p{n}"), "2024-01-01T00:00:00Z", "female"))
            .collect();
        expected.extend((0..60).map(|n| pseudonym("t1", "Patient", &format!("d{day}-p{n}"))));
        let file = lake.write_input(&format!("day-{day}.ndjson"), &ndjson(&lines));
        assert_eq!(lake.ingest(&file, "t1").await.result, FileResult::Completed);
        // THEN after every commit, and every re-size, each patient is there exactly once
        let counts = key_counts(&lake).await;
        assert!(
            counts.values().all(|n| *n == 1),
            "day {day}: a record seen twice"
        );
        assert_eq!(
            counts.keys().cloned().collect::<BTreeSet<_>>(),
            expected,
            "day {day}"
        );
    }
    // AND the partition was laid out in more file groups by replacecommits
    let state = read_services_state(
        lake.lake.services.lake.as_ref(),
        &SilverTable::Patient.def().base,
    )
    .await
    .unwrap()
    .unwrap();
    assert!(state.totals.resized_partitions >= 1, "{:?}", state.totals);
    let hudi = lake
        .lake
        .services
        .silver_table(SilverTable::Patient)
        .await
        .unwrap();
    let snapshot = hudi.snapshot(None).await.unwrap();
    let layout = snapshot.layout(hudi.def(), "tenant_id=t1");
    assert!(layout > SILVER_BUCKETS, "layout {layout}");
    assert!(snapshot.partition_slices("tenant_id=t1").count() > SILVER_BUCKETS as usize);
    // WHEN rows staged in the initial layout update and delete patients of the re-sized partition
    let update = lake.write_input(
        "update.ndjson",
        &ndjson(&[patient("d0-p1", "2024-06-01T00:00:00Z", "other")]),
    );
    lake.ingest(&update, "t1").await;
    let delete = lake.write_input("delete.json", &delete_bundle(&["d0-p2"]));
    lake.ingest(&delete, "t1").await;
    // THEN they land in the new file groups: one version each, the deleted one gone
    let rows = lake.rows(SilverTable::Patient).await;
    assert_eq!(rows.len(), 6 * 60 - 1);
    let updated = pseudonym("t1", "Patient", "d0-p1");
    let versions: Vec<_> = rows
        .iter()
        .filter(|r| r["patient_key"] == updated.as_str())
        .collect();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["gender"], "other");
    assert!(key_counts(&lake).await.values().all(|n| *n == 1));
}

#[tokio::test]
async fn a_gold_refresh_behind_archived_instants_leaves_the_timeline_whole() {
    // GIVEN a refreshed lake, then more commits than the active timeline keeps (but fewer than the
    // commit sequence keeps): the refresh will read entries of archived instants
    let lake = lake_with(RETENTION);
    let first = lake.write_input(
        "0.ndjson",
        &ndjson(&[patient("p0", "2024-01-01T00:00:00Z", "female")]),
    );
    lake.ingest(&first, "t1").await;
    lake.lake.refresh_gold().await.unwrap();
    for n in 1..=12 {
        let line = patient(&format!("p{n}"), "2024-01-01T00:00:00Z", "male");
        let file = lake.write_input(&format!("{n}.ndjson"), &ndjson(&[line]));
        lake.ingest(&file, "t1").await;
    }
    // WHEN gold refreshes
    let report = lake.lake.refresh_gold().await.unwrap();
    assert_eq!(report.changed_tenants, vec!["t1".to_owned()]);
    // THEN no archived instant came back, and every row is still there
    let hoodie = lake.path().join("silver/patient/.hoodie");
    assert_eq!(count_files(&hoodie, ".commit"), 5);
    assert_eq!(lake.rows(SilverTable::Patient).await.len(), 13);
}
