//! Erasure: one patient leaves silver (every slice on disk), the reject logs and gold; the receipt
//! holds no PHI; the patient stays erased; a second erasure changes nothing.

use std::collections::BTreeSet;

use metriccare_core::ingest::FileResult;
use metriccare_core::silver::SilverTable;
use metriccare_local::lake::RAW_DIR;
use metriccare_tests::{
    TestLake, files_under, pseudonym, record_keys_on_disk, stage_every_task, tenant_id,
};

fn patient(id: &str, last_updated: &str) -> String {
    format!(
        r#"{{"resourceType":"Patient","id":"{id}","meta":{{"lastUpdated":"{last_updated}"}},"gender":"female","birthDate":"1970-03-04"}}"#
    )
}

fn encounter(id: &str, patient: &str) -> String {
    format!(
        r#"{{"resourceType":"Encounter","id":"{id}","meta":{{"lastUpdated":"2024-01-01T00:00:00Z"}},"status":"finished","class":{{"code":"IMP"}},"subject":{{"reference":"Patient/{patient}"}},"period":{{"start":"2024-01-01T08:00:00Z","end":"2024-01-04T08:00:00Z"}}}}"#
    )
}

fn condition(id: &str, patient: &str, encounter: &str, onset: &str) -> String {
    format!(
        r#"{{"resourceType":"Condition","id":"{id}","meta":{{"lastUpdated":"2024-01-01T00:00:00Z"}},"code":{{"coding":[{{"system":"http://snomed.info/sct","code":"91302008"}}]}},"subject":{{"reference":"Patient/{patient}"}},"encounter":{{"reference":"Encounter/{encounter}"}},"onsetDateTime":"{onset}"}}"#
    )
}

fn ndjson(lines: &[String]) -> Vec<u8> {
    (lines.join("\n") + "\n").into_bytes()
}

/// Every record key in any slice on disk of a table's tenant partition.
async fn keys_on_disk(lake: &TestLake, table: SilverTable) -> BTreeSet<String> {
    record_keys_on_disk(lake, &format!("silver/{}/tenant_id=t1", table.name())).await
}

#[tokio::test]
async fn an_erased_patient_leaves_every_slice_the_rejects_and_gold_and_stays_erased() {
    // GIVEN two patients, p1 with two stays and conditions, updated by a second file (so an older
    // slice still holds p1), and a rejected condition of p1 (its raw resource in the reject log)
    let lake = TestLake::new();
    let first = lake.write_input(
        "1.ndjson",
        &ndjson(&[
            patient("p1", "2024-01-01T00:00:00Z"),
            patient("p2", "2024-01-01T00:00:00Z"),
            encounter("e1", "p1"),
            encounter("e2", "p1"),
            encounter("e3", "p2"),
            condition("c1", "p1", "e1", "2024-01-03T00:00:00Z"),
            condition("c2", "p2", "e3", "2024-01-03T00:00:00Z"),
            condition("bad", "p1", "e2", "2024-13-45"),
        ]),
    );
    let second = lake.write_input(
        "2.ndjson",
        &ndjson(&[patient("p1", "2024-02-01T00:00:00Z")]),
    );
    let first_report = lake.ingest(&first, "t1").await;
    assert_eq!(first_report.outcome.rejected, 1);
    let second_report = lake.ingest(&second, "t1").await;
    lake.lake.refresh_gold().await.unwrap();
    let p1 = pseudonym("t1", "Patient", "p1");
    let p1_keys = [
        p1.clone(),
        pseudonym("t1", "Encounter", "e1"),
        pseudonym("t1", "Encounter", "e2"),
        pseudonym("t1", "Condition", "c1"),
    ];
    assert!(
        keys_on_disk(&lake, SilverTable::Patient)
            .await
            .contains(&p1)
    );

    // WHEN p1 is erased
    let receipt = lake.lake.erase(&tenant_id("t1"), "p1").await.unwrap();

    // THEN the receipt says what went, without PHI (not even the source id)
    assert_eq!(receipt.patient_key, p1);
    assert!(!receipt.already_erased);
    assert_eq!(receipt.rows_removed["patient"], 1);
    assert_eq!(receipt.rows_removed["encounter"], 2);
    assert_eq!(receipt.rows_removed["condition"], 1);
    assert!(!receipt.slices_rewritten.is_empty(), "older slices held p1");
    assert_eq!(receipt.reject_lines_removed, 1);
    let mut sources = vec![
        first_report.ledger_id.clone(),
        second_report.ledger_id.clone(),
    ];
    sources.sort();
    assert_eq!(receipt.raw_ledger_ids, sources);
    assert!(
        !receipt.gold_instants.is_empty(),
        "gold recomputed without p1's stays"
    );
    let text = serde_json::to_string(&receipt).unwrap();
    assert!(!text.contains("\"p1\"") && !text.contains("Patient/p1"));
    assert!(lake.path().join(&receipt.receipt).exists());
    // AND no slice on disk, of any table, holds a key of p1; p2 is untouched
    for table in [
        SilverTable::Patient,
        SilverTable::Encounter,
        SilverTable::Condition,
    ] {
        let on_disk = keys_on_disk(&lake, table).await;
        assert!(
            p1_keys.iter().all(|k| !on_disk.contains(k)),
            "{table:?} still holds p1"
        );
    }
    let patients: Vec<_> = lake.rows(SilverTable::Patient).await;
    assert_eq!(patients.len(), 1);
    assert_eq!(
        patients[0]["patient_key"],
        pseudonym("t1", "Patient", "p2").as_str()
    );
    assert_eq!(lake.rows(SilverTable::Encounter).await.len(), 1);
    // AND the reject log no longer holds the rejected condition of p1
    for file in files_under(&lake.path().join("quarantine/rejects")) {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(!text.contains("Patient/p1"));
    }
    // AND gold counts p2's stay only
    let gold = metriccare_core::gold::read_gold(&lake.lake.services.lake)
        .await
        .unwrap();
    let stays: i64 = gold["t1"].hospital_monthly.iter().map(|r| r.stays).sum();
    assert_eq!(stays, 1);

    // WHEN a later file carries p1 again, with a new stay and a condition that will be rejected
    let later = lake.write_input(
        "3.ndjson",
        &ndjson(&[
            patient("p1", "2025-01-01T00:00:00Z"),
            encounter("e9", "p1"),
            condition("bad2", "p1", "e9", "2025-13-45"),
            encounter("e4", "p2"),
            condition("bad3", "p2", "e4", "2025-13-45"),
        ]),
    );
    let report = lake.ingest(&later, "t1").await;
    // THEN it loads without them, counted; p1's rejected condition is not kept either, p2's is
    assert_eq!(report.result, FileResult::Completed);
    assert_eq!(report.outcome.erased, 3);
    assert_eq!(report.outcome.rejected, 1);
    assert_eq!(lake.rows(SilverTable::Patient).await.len(), 1);
    assert_eq!(lake.rows(SilverTable::Encounter).await.len(), 2);
    let logs = files_under(&lake.path().join("quarantine/rejects/t1"));
    let rejected: String = logs
        .iter()
        .map(|log| std::fs::read_to_string(log).unwrap())
        .collect();
    assert!(rejected.contains("bad3") && !rejected.contains("bad2"));

    // WHEN p1 is erased a second time
    let again = lake.lake.erase(&tenant_id("t1"), "p1").await.unwrap();
    // THEN nothing changes, and it has its own receipt
    assert!(again.already_erased);
    assert!(again.silver_instants.is_empty());
    assert!(again.slices_rewritten.is_empty());
    assert_ne!(again.receipt, receipt.receipt);
}

#[tokio::test]
async fn an_erasure_during_a_scale_out_run_removes_its_staged_parts_and_the_retry_loads_without_the_patient()
 {
    // GIVEN a scale-out run that claimed a file of two patients and staged its spans
    let lake = TestLake::new();
    let key = lake.drop_raw(
        "t1/big.ndjson",
        &ndjson(&[
            patient("p1", "2024-01-01T00:00:00Z"),
            patient("p2", "2024-01-01T00:00:00Z"),
            encounter("e1", "p1"),
            condition("c1", "p1", "e1", "2024-01-03T00:00:00Z"),
        ]),
    );
    let services = &lake.lake.services;
    let (raw, tenant) = (&lake.lake.raw, tenant_id("t1"));
    let run = services
        .claim_scale_out(raw, RAW_DIR, std::slice::from_ref(&key), &tenant, 64)
        .await
        .unwrap();
    assert!(run.tasks().len() > 2);
    stage_every_task(services, raw, &run).await;
    let staged = files_under(&lake.path().join("quarantine/staging"));
    assert_eq!(staged.len(), run.tasks().len());

    // WHEN p1 is erased before the run commits, and the run then commits
    let receipt = lake.lake.erase(&tenant, "p1").await.unwrap();
    let reports = services.commit_scale_out(run).await.unwrap();

    // THEN the staged parts went with the erasure, the run's file failed, nothing of it is visible
    assert_eq!(receipt.staged_parts_removed, staged.len() as u64);
    assert!(files_under(&lake.path().join("quarantine/staging")).is_empty());
    assert_eq!(reports[0].result, FileResult::Failed, "{reports:?}");
    assert!(lake.rows(SilverTable::Patient).await.is_empty());
    // AND its retry loads the file without p1 (counted)
    let retry = services
        .claim_scale_out(raw, RAW_DIR, &[key], &tenant, 64)
        .await
        .unwrap();
    stage_every_task(services, raw, &retry).await;
    let retried = services.commit_scale_out(retry).await.unwrap();
    assert_eq!(retried[0].result, FileResult::Completed, "{retried:?}");
    assert_eq!(retried[0].outcome.erased, 3);
    let patients = lake.rows(SilverTable::Patient).await;
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0]["patient_key"], pseudonym("t1", "Patient", "p2"));
}

#[tokio::test]
async fn an_erasure_removes_the_quarantined_copies_that_hold_the_patient_and_keeps_the_others() {
    // GIVEN two files quarantined whole (cut short: not JSON): one with p1's resources, spaced
    // as a pretty-printer would, one of p2 only
    let lake = TestLake::new();
    let of_p1 = lake.write_input(
        "p1.json",
        b"{\"resourceType\": \"Bundle\", \"type\": \"collection\", \"entry\": [{\"resource\": \
          {\"resourceType\": \"Patient\",\n  \"id\" :  \"p1\", \"gender\": \"female\"",
    );
    let of_p2 = lake.write_input(
        "p2.json",
        b"{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"resource\":\
          {\"resourceType\":\"Encounter\",\"id\":\"e7\",\"subject\":{\"reference\":\"Patient/p2\"}",
    );
    let quarantined_p1 = lake.ingest(&of_p1, "t1").await;
    let quarantined_p2 = lake.ingest(&of_p2, "t1").await;
    assert_eq!(quarantined_p1.result, FileResult::Quarantined);
    assert_eq!(quarantined_p2.result, FileResult::Quarantined);
    let copies =
        |ledger_id: &str| files_under(&lake.path().join("quarantine/files/t1").join(ledger_id));
    assert_eq!(
        copies(&quarantined_p1.ledger_id).len(),
        2,
        "the copy and its reason"
    );

    // WHEN p1 is erased
    let receipt = lake.lake.erase(&tenant_id("t1"), "p1").await.unwrap();

    // THEN p1's copy is gone, its reason kept, and the receipt names the raw object to remove
    assert_eq!(receipt.quarantined_copies_removed, 1);
    let left: Vec<String> = copies(&quarantined_p1.ledger_id)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["reason.json"]);
    assert!(receipt.raw_ledger_ids.contains(&quarantined_p1.ledger_id));
    // AND p2's copy is untouched
    assert_eq!(copies(&quarantined_p2.ledger_id).len(), 2);
    assert!(!receipt.raw_ledger_ids.contains(&quarantined_p2.ledger_id));
}
