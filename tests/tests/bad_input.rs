//! Bad resources are rejected alone with their reasons; a bad file with an awkward name is
//! quarantined whole. The corpus of hostile files is in `hostile_inputs.rs`.

use metriccare_core::ingest::FileResult;
use metriccare_core::silver::SilverTable;
use metriccare_tests::TestLake;

#[tokio::test]
async fn bad_resources_are_rejected_alone_with_their_reasons() {
    let lake = TestLake::new();
    let ndjson = [
        r#"{"resourceType":"Patient","id":"ok-1","gender":"male"}"#,
        r#"{"resourceType":"Patient", broken"#,
        r#"{"resourceType":"Patient","gender":"female"}"#,
        r#"{"resourceType":"Encounter","id":"e1","subject":{"reference":"Patient/ok-1"},"period":{"start":"2023-02-30T10:00:00Z"}}"#,
        r#"{"resourceType":"Condition","id":"c1","subject":{"reference":"Observation/xyz"}}"#,
        r#"{"resourceType":"Condition","id":"c2","subject":{"reference":"Patient/"}}"#,
        r#"{"resourceType":"Patient","id":"../../etc","gender":"male"}"#,
        r#"{"resourceType":"Patient","id":"ok-2","birthDate":"1990-13-01"}"#,
        r#"{"resourceType":"Patient","id":"ok-3","birthDate":"1990-12-01"}"#,
    ]
    .join("\n");
    let report = lake
        .ingest(&lake.write_input("mixed.ndjson", ndjson.as_bytes()), "t1")
        .await;
    assert_eq!(report.result, FileResult::Completed, "{report:?}");
    assert_eq!(report.outcome.rejected, 7);
    let patients = lake.rows(SilverTable::Patient).await;
    assert_eq!(patients.len(), 2, "ok-1 and ok-3 load");
    let rejects = std::fs::read_to_string(
        lake.lake
            .dir
            .join("quarantine/rejects/t1")
            .join(format!("{}.ndjson", report.ledger_id)),
    )
    .unwrap();
    let reasons: Vec<String> = rejects
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for expected in [
        "not valid JSON",
        "no id",
        "impossible date",
        "does not point to a Patient",
        "has no valid id",
        "not a valid FHIR id",
        "Patient.birthDate",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no reject mentions {expected:?}: {reasons:?}"
        );
    }
}

#[tokio::test]
async fn a_bundle_reference_to_a_missing_entry_rejects_only_that_resource() {
    let lake = TestLake::new();
    let bundle = r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","gender":"female"},"request":{"method":"POST","url":"Patient"}},
        {"fullUrl":"urn:uuid:e1","resource":{"resourceType":"Encounter","status":"finished","subject":{"reference":"urn:uuid:p1"}}},
        {"fullUrl":"urn:uuid:e2","resource":{"resourceType":"Encounter","status":"finished","subject":{"reference":"urn:uuid:nobody"}}},
        {"fullUrl":"urn:uuid:b","resource":{"resourceType":"Bundle","type":"collection"}},
        {"request":{"method":"POST","url":"Patient"}}
    ]}"#;
    let report = lake
        .ingest(&lake.write_input("b.json", bundle.as_bytes()), "t1")
        .await;
    assert_eq!(report.result, FileResult::Completed, "{report:?}");
    assert_eq!(
        report.outcome.rejected, 2,
        "missing target, entry without resource (the empty nested Bundle is read through)"
    );
    assert_eq!(lake.rows(SilverTable::Patient).await.len(), 1);
    assert_eq!(lake.rows(SilverTable::Encounter).await.len(), 1);
}

#[tokio::test]
async fn a_bad_file_whose_name_needs_escaping_is_quarantined_whole() {
    // GIVEN a broken file in the raw zone whose name has non-ASCII letters, a space and a '#'
    let lake = TestLake::new();
    let content = b"patient list, not FHIR".to_vec();
    lake.drop_raw("t1/J\u{fc}rgen M\u{fc}ller #1.json", &content);
    let raw = lake.lake.list_raw().await.unwrap();
    assert_eq!(raw.len(), 1);
    // WHEN it is processed as an upload event would process it
    let report = lake.lake.ingest_raw(&raw[0].location).await.unwrap();
    // THEN it is quarantined (not FAILED because the copy looked for another name), whole
    assert_eq!(report.result, FileResult::Quarantined, "{report:?}");
    let dir = lake
        .lake
        .dir
        .join("quarantine/files/t1")
        .join(&report.ledger_id);
    let copies: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "reason.json"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(std::fs::read(&copies[0]).unwrap(), content);
}

#[tokio::test]
async fn a_resource_type_silver_does_not_hold_is_counted_and_skipped() {
    // GIVEN an export with an Observation beside a Patient
    let lake = TestLake::new();
    let ndjson = [
        r#"{"resourceType":"Observation","id":"o1","status":"final"}"#,
        r#"{"resourceType":"Patient","id":"p1","gender":"male"}"#,
    ]
    .join("\n");
    // WHEN it is ingested
    let report = lake
        .ingest(&lake.write_input("mixed.ndjson", ndjson.as_bytes()), "t1")
        .await;
    // THEN both are counted, the Observation is neither loaded nor rejected
    assert_eq!(report.result, FileResult::Completed);
    let counts: Vec<(&str, u64)> = report
        .outcome
        .counts
        .iter()
        .map(|(kind, n)| (kind.as_str(), *n))
        .collect();
    assert_eq!(counts, [("Observation", 1), ("Patient", 1)]);
    assert_eq!(report.outcome.rejected, 0);
    assert_eq!(lake.rows(SilverTable::Patient).await.len(), 1);
}
