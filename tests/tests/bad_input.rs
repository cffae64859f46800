//! Bad files are quarantined with a reason, bad resources rejected alone; nothing else is touched.

use metriccare_core::ingest::FileResult;
use metriccare_core::ports::LedgerStatus;
use metriccare_core::silver::SilverTable;
use metriccare_tests::{TestLake, fixtures, gzip};

#[tokio::test]
async fn every_kind_of_bad_file_is_quarantined_and_the_others_still_load() {
    let lake = TestLake::new();
    let truncated_bundle = {
        let text =
            std::fs::read(fixtures().join("synthea/Jana_Kertzmann_transaction.json")).unwrap();
        text[..text.len() / 2].to_vec()
    };
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(
            "{\"resourceType\":\"Patient\"}"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    let gzip_truncated = {
        let full = gzip(&std::fs::read(fixtures().join("bulk/Patient.ndjson")).unwrap());
        full[..full.len() - 12].to_vec()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.json", Vec::new(), "empty"),
        ("blank.ndjson", b"  \n\n".to_vec(), "empty"),
        (
            "notes.txt",
            b"patient list, confidential".to_vec(),
            "not JSON",
        ),
        (
            "array.json",
            b"[{\"resourceType\":\"Patient\",\"id\":\"a\"}]".to_vec(),
            "JSON array",
        ),
        ("truncated.json", truncated_bundle, "truncated"),
        ("utf16.json", utf16, "UTF-16"),
        (
            "fake.json.gz",
            b"{\"resourceType\":\"Patient\",\"id\":\"x\"}".to_vec(),
            "not gzip",
        ),
        ("cut.ndjson.gz", gzip_truncated, "corrupt"),
        (
            "no-fhir.ndjson",
            b"{\"hello\":1}\n{\"world\":2}\n".to_vec(),
            "no line of the file is a FHIR resource",
        ),
        (
            "message.json",
            b"{\"resourceType\":\"Bundle\",\"type\":\"message\",\"entry\":[]}".to_vec(),
            "not accepted",
        ),
        (
            "object-without-type.json",
            b"{\n\"id\": \"x\"\n}".to_vec(),
            "no resourceType",
        ),
    ];
    let good = fixtures().join("bulk/Patient.ndjson");
    let mut names = Vec::new();
    for (name, bytes, _) in &cases {
        names.push(lake.write_input(name, bytes));
    }
    // One run: the bad files and a good one after them.
    for (path, (name, _, reason)) in names.iter().zip(&cases) {
        let report = lake.ingest(path, "t1").await;
        assert_eq!(report.result, FileResult::Quarantined, "{name}: {report:?}");
        let error = report.outcome.error.clone().unwrap_or_default();
        assert!(
            error.contains(reason),
            "{name}: reason {error:?} should mention {reason:?}"
        );
        // The file is copied to quarantine with a readable reason beside it.
        let dir = lake
            .lake
            .dir
            .join("quarantine/files/t1")
            .join(&report.ledger_id);
        assert_eq!(
            std::fs::read(dir.join(name)).unwrap(),
            std::fs::read(path).unwrap(),
            "{name}"
        );
        let reason_file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("reason.json")).unwrap()).unwrap();
        assert_eq!(reason_file["reason"], error.as_str());
        let entry = lake
            .lake
            .services
            .ledger
            .get(&report.ledger_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(entry.status, LedgerStatus::Quarantined);
    }
    assert!(
        lake.rows(SilverTable::Patient).await.is_empty(),
        "nothing from a quarantined file reaches silver"
    );
    let report = lake.ingest(&good, "t1").await;
    assert_eq!(report.result, FileResult::Completed);
    assert_eq!(lake.rows(SilverTable::Patient).await.len(), 2);
    // Each quarantine raised one alert.
    let alerts = std::fs::read_to_string(lake.lake.dir.join("notifications.jsonl")).unwrap();
    assert_eq!(
        alerts
            .lines()
            .filter(|l| l.contains("file.quarantined"))
            .count(),
        cases.len()
    );
    // A redelivered quarantined file stays quarantined without a second copy or alert.
    let again = lake.ingest(&names[0], "t1").await;
    assert_eq!(again.result, FileResult::AlreadyDone);
}

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
        report.outcome.rejected, 3,
        "missing target, nested Bundle, entry without resource"
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
