//! Both input formats, gzip, and the shapes real exports have (Synthea transaction Bundles with
//! `urn:uuid:` and conditional references, Bulk NDJSON with `Type/id` references).

use std::collections::BTreeMap;

use metriccare_core::ingest::FileResult;
use metriccare_core::ports::LedgerStatus;
use metriccare_core::silver::SilverTable;
use metriccare_tests::{TestLake, fixtures, gzip, pseudonym, read_fixture, tenant_id};
use serde_json::{Map, Value};

const SYNTHEA_PATIENT: &str = "8c95253e-8ee8-9b4b-d9c5-a9e4b3b1b0f4";
const SYNTHEA_ORG_IDENTIFIER: &str =
    "https://github.com/synthetichealth/synthea|5103c940-0c08-392f-95cd-446e0cea042a";

fn only(rows: &[Map<String, Value>]) -> &Map<String, Value> {
    assert_eq!(rows.len(), 1, "expected exactly one row, got {rows:?}");
    &rows[0]
}

#[tokio::test]
async fn a_synthea_export_loads_with_every_reference_resolved() {
    // GIVEN Synthea's hospital file and a patient transaction Bundle
    let lake = TestLake::new();
    let dir = fixtures().join("synthea");
    // WHEN both are ingested for tenant t1
    let hospitals = lake
        .ingest(&dir.join("hospitalInformation1700000000000.json"), "t1")
        .await;
    let patient_file = lake
        .ingest(&dir.join("Jana_Kertzmann_transaction.json"), "t1")
        .await;
    // THEN every resource loads, the Observation is counted and skipped
    assert_eq!(
        (hospitals.result, patient_file.result),
        (FileResult::Completed, FileResult::Completed)
    );
    assert_eq!(patient_file.outcome.rejected, 0);
    assert_eq!(patient_file.outcome.counts.get("Observation"), Some(&1));

    let patients = lake.rows(SilverTable::Patient).await;
    let patient = only(&patients);
    let patient_key = pseudonym("t1", "Patient", SYNTHEA_PATIENT);
    assert_eq!(patient["patient_key"], patient_key.as_str());
    assert_eq!(patient["tenant_id"], "t1");
    assert_eq!(patient["gender"], "female");
    assert_eq!(patient["birth_year"], 1951);
    assert_eq!(patient["deceased"], true);
    // 22:15 at -05:00 is the next UTC day.
    assert_eq!(patient["deceased_at"], "2020-03-11T03:15:00.000Z");
    assert_eq!(patient["postal_prefix"], "021");
    assert_eq!(patient["marital_status"], "W");
    assert_eq!(patient["source_file_id"], patient_file.ledger_id.as_str());

    let encounters = lake.rows(SilverTable::Encounter).await;
    let encounter = only(&encounters);
    assert_eq!(encounter["patient_key"], patient_key.as_str());
    assert_eq!(encounter["class_code"], "IMP");
    assert_eq!(encounter["period_start"], "2020-02-29T02:40:00.000Z");
    assert_eq!(encounter["period_end"], "2020-03-04T04:30:00.000Z");
    assert_eq!(encounter["hospital_name"], "MOUNT AUBURN HOSPITAL");
    assert_eq!(encounter["discharge_disposition"], "01");
    assert_eq!(encounter["reason_code"], "233604007");
    // The conditional serviceProvider points at the organization loaded from the other file.
    let organizations = lake.rows(SilverTable::Organization).await;
    let organization = only(&organizations);
    assert_eq!(encounter["hospital_key"], organization["identifier_key"]);
    assert_eq!(
        organization["identifier_key"],
        pseudonym(
            "t1",
            "Organization",
            &format!("?identifier={SYNTHEA_ORG_IDENTIFIER}")
        )
        .as_str()
    );
    assert_eq!(organization["name"], "MOUNT AUBURN HOSPITAL");

    let conditions = lake.rows(SilverTable::Condition).await;
    let condition = only(&conditions);
    // SNOMED CT is preferred over the ICD-10 coding listed first.
    assert_eq!(condition["code"], "233604007");
    assert_eq!(condition["code_system"], "http://snomed.info/sct");
    assert_eq!(condition["encounter_key"], encounter["encounter_key"]);
    assert_eq!(condition["patient_key"], patient_key.as_str());
    assert_eq!(condition["onset_at"], "2020-03-01T07:00:00.000Z");
}

#[tokio::test]
async fn bulk_ndjson_links_the_tables_by_pseudonymous_key() {
    let lake = TestLake::new();
    for file in ["Organization", "Patient", "Encounter", "Condition"] {
        let report = lake
            .ingest(
                &fixtures().join("bulk").join(format!("{file}.ndjson")),
                "za-clinic",
            )
            .await;
        assert_eq!(report.result, FileResult::Completed, "{file}: {report:?}");
    }
    let patients = lake.rows(SilverTable::Patient).await;
    assert_eq!(patients.len(), 2);
    let by_key = |key: String| {
        patients
            .iter()
            .find(|p| p["patient_key"] == key.as_str())
            .cloned()
            .unwrap()
    };
    let kiran = by_key(pseudonym("za-clinic", "Patient", "pat-2"));
    assert_eq!(
        (kiran["birth_year"].clone(), kiran["deceased"].clone()),
        (Value::from(1948), Value::from(true))
    );
    assert_eq!(kiran["deceased_at"], Value::Null);
    let encounters = lake.rows(SilverTable::Encounter).await;
    let enc1 = encounters
        .iter()
        .find(|e| e["encounter_key"] == pseudonym("za-clinic", "Encounter", "enc-1").as_str())
        .unwrap();
    assert_eq!(
        enc1["hospital_key"],
        pseudonym("za-clinic", "Organization", "org-1").as_str()
    );
    assert_eq!(enc1["period_start"], "2023-12-30T20:00:00.000Z");
    let conditions = lake.rows(SilverTable::Condition).await;
    assert_eq!(conditions.len(), 2);
    assert!(
        conditions
            .iter()
            .any(|c| c["encounter_key"] == enc1["encounter_key"] && c["code"] == "91302008")
    );
}

/// Rows without the lineage columns, which differ between two loads of the same content (and
/// `last_updated`, which is the ingest time for Synthea resources without `meta.lastUpdated`).
fn content(rows: Vec<Map<String, Value>>) -> Vec<Map<String, Value>> {
    rows.into_iter()
        .map(|mut row| {
            row.remove("source_file_id");
            row.remove("ingested_at");
            row.remove("last_updated");
            row
        })
        .collect()
}

#[tokio::test]
async fn gzip_minified_and_pretty_inputs_give_the_same_rows() {
    let bundle = read_fixture("synthea/Jana_Kertzmann_transaction.json");
    let value: Value = serde_json::from_slice(&bundle).unwrap();
    let minified = serde_json::to_vec(&value).unwrap();

    let plain = TestLake::new();
    plain
        .ingest(
            &fixtures().join("synthea/Jana_Kertzmann_transaction.json"),
            "t1",
        )
        .await;
    let variants = [
        ("bundle.json.gz", gzip(&bundle)),
        ("minified.json", minified.clone()),
        ("min.json.gz", gzip(&minified)),
    ];
    for (name, bytes) in variants {
        let other = TestLake::new();
        let report = other.ingest(&other.write_input(name, &bytes), "t1").await;
        assert_eq!(report.result, FileResult::Completed, "{name}: {report:?}");
        for table in SilverTable::ALL {
            assert_eq!(
                content(other.rows(table).await),
                content(plain.rows(table).await),
                "{name} {table:?}"
            );
        }
    }

    // NDJSON, gzipped, with a UTF-8 byte order mark and CRLF line ends.
    let mut ndjson = b"\xef\xbb\xbf".to_vec();
    ndjson.extend(
        read_fixture("bulk/Patient.ndjson")
            .split(|b| *b == b'\n')
            .flat_map(|l| [l, b"\r\n"].concat()),
    );
    let a = TestLake::new();
    a.ingest(&fixtures().join("bulk/Patient.ndjson"), "t1")
        .await;
    let b = TestLake::new();
    let report = b
        .ingest(&b.write_input("Patient.ndjson.gz", &gzip(&ndjson)), "t1")
        .await;
    assert_eq!(report.result, FileResult::Completed, "{report:?}");
    assert_eq!(
        content(b.rows(SilverTable::Patient).await),
        content(a.rows(SilverTable::Patient).await)
    );
}

#[tokio::test]
async fn the_generator_output_loads_to_exactly_its_ground_truth_counts() {
    for format in [
        fhir_generator::Format::Ndjson,
        fhir_generator::Format::Bundle,
    ] {
        let lake = TestLake::new();
        let out = lake.path().join("generated");
        let config = fhir_generator::Config {
            patients: 60,
            tenants: 2,
            seed: 7,
            format,
            dirty: true,
            gzip: matches!(format, fhir_generator::Format::Ndjson),
            patients_per_bundle: 10,
            tenant_clocks: Vec::new(),
        };
        let truth = fhir_generator::generate(&config, &out)
            .unwrap()
            .ground_truth;
        for tenant in &truth.tenants {
            let files = metriccare_local::lake::expand_paths(&[out.join(&tenant.tenant)]).unwrap();
            let mut rejected = 0;
            for file in files {
                let report = lake.ingest(&file, &tenant.tenant).await;
                assert_eq!(
                    report.result,
                    FileResult::Completed,
                    "{}: {report:?}",
                    file.display()
                );
                rejected += report.outcome.rejected;
            }
            assert_eq!(rejected, tenant.rejected, "{format:?} {}", tenant.tenant);
        }
        for tenant in &truth.tenants {
            let count = |rows: &Vec<Map<String, Value>>| {
                rows.iter()
                    .filter(|r| r["tenant_id"] == tenant.tenant.as_str())
                    .count() as u64
            };
            assert_eq!(
                count(&lake.rows(SilverTable::Patient).await),
                tenant.resources.patient,
                "{format:?}"
            );
            assert_eq!(
                count(&lake.rows(SilverTable::Encounter).await),
                tenant.resources.encounter,
                "{format:?}"
            );
            assert_eq!(
                count(&lake.rows(SilverTable::Condition).await),
                tenant.resources.condition,
                "{format:?}"
            );
            assert_eq!(
                count(&lake.rows(SilverTable::Organization).await),
                tenant.resources.organization,
                "{format:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_long_file_reports_its_progress() {
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let seen: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let sink = seen.clone();
    let mut config = metriccare_local::LocalConfig {
        key: Some(metriccare_tests::TEST_KEY.to_vec()),
        ..Default::default()
    };
    config.settings.progress = Some(metriccare_core::ingest::Progress {
        every_bytes: 300_000,
        report: Arc::new(move |_, read, size| sink.lock().unwrap().push((read, size))),
    });
    let lake = metriccare_local::LocalLake::open_with(dir.path(), config).unwrap();
    let lines: Vec<String> = (0..60_000)
        .map(|i| format!(r#"{{"resourceType":"Patient","id":"p{i}"}}"#))
        .collect();
    let file = dir.path().join("many.ndjson");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let size = std::fs::metadata(&file).unwrap().len();
    let report = lake
        .ingest_file(&file, &metriccare_tests::tenant_id("t1"))
        .await
        .unwrap();
    assert_eq!(report.result, FileResult::Completed);
    let seen = seen.lock().unwrap();
    // Reads come in buffer-sized chunks, so reports are at least every 300 kB plus one buffer.
    assert!(
        seen.len() >= (size / 600_000) as usize && seen.len() >= 3,
        "{} reports for {size} bytes",
        seen.len()
    );
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0)
            && seen
                .iter()
                .all(|&(read, total)| read <= total && total == size)
    );
}

#[tokio::test]
async fn a_history_bundle_loads_each_resource_at_its_newest_version_and_deletes_what_it_deleted() {
    // GIVEN patients p1 and p2 loaded from a first file
    let lake = TestLake::new();
    let first = lake.write_input(
        "first.ndjson",
        br#"{"resourceType":"Patient","id":"p1","meta":{"lastUpdated":"2024-01-01T00:00:00Z"},"gender":"unknown"}
{"resourceType":"Patient","id":"p2","meta":{"lastUpdated":"2024-01-01T00:00:00Z"},"gender":"female"}
"#,
    );
    assert_eq!(
        lake.ingest(&first, "t1").await.result,
        FileResult::Completed
    );
    // WHEN a history Bundle (newest version first, as servers return it) brings two versions of
    // p1, p2's deletion, p3 created, deleted and created again, and an entry without a resource
    let history = lake.write_input(
        "history.json",
        br#"{"resourceType":"Bundle","type":"history","entry":[
  {"resource":{"resourceType":"Patient","id":"p1","meta":{"versionId":"3","lastUpdated":"2024-03-02T00:00:00Z"},"gender":"male"},"request":{"method":"PUT","url":"Patient/p1"}},
  {"request":{"method":"DELETE","url":"Patient/p2"},"response":{"status":"204"}},
  {"resource":{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","lastUpdated":"2024-03-01T00:00:00Z"},"gender":"female"},"request":{"method":"PUT","url":"Patient/p1"}},
  {"resource":{"resourceType":"Patient","id":"p3","meta":{"versionId":"3","lastUpdated":"2024-03-05T00:00:00Z"},"gender":"other"},"request":{"method":"PUT","url":"Patient/p3"}},
  {"request":{"method":"DELETE","url":"Patient/p3"},"response":{"status":"204","lastModified":"2024-03-04T00:00:00Z"}},
  {"resource":{"resourceType":"Patient","id":"p3","meta":{"versionId":"1","lastUpdated":"2024-03-03T00:00:00Z"},"gender":"male"},"request":{"method":"POST","url":"Patient"}},
  {"response":{"status":"410"}}]}"#,
    );
    let report = lake.ingest(&history, "t1").await;
    // THEN p1 is at its newest version, p2 is gone, p3 is at the version created after its
    // deletion (the deletion is ordered at its `response.lastModified`), nothing was rejected
    assert_eq!(report.result, FileResult::Completed);
    assert_eq!((report.outcome.rejected, report.outcome.deleted), (0, 2));
    assert_eq!(report.outcome.counts.get("Patient"), Some(&4));
    let patients = lake.rows(SilverTable::Patient).await;
    let genders: BTreeMap<&str, &str> = patients
        .iter()
        .map(|p| {
            (
                p["patient_key"].as_str().unwrap(),
                p["gender"].as_str().unwrap(),
            )
        })
        .collect();
    let p1 = pseudonym("t1", "Patient", "p1");
    let p3 = pseudonym("t1", "Patient", "p3");
    assert_eq!(
        genders,
        BTreeMap::from([(p1.as_str(), "male"), (p3.as_str(), "other")])
    );
}

#[tokio::test]
async fn bundles_inside_bundles_are_read_through_and_their_other_types_counted() {
    // GIVEN a collection of two documents (each a Bundle: a Composition, the patient, the stay
    // referenced by urn:uuid) and a Bundle of Observations
    let document = |n: u32| {
        format!(
            r#"{{"resource":{{"resourceType":"Bundle","type":"document","entry":[
  {{"fullUrl":"urn:uuid:c{n}","resource":{{"resourceType":"Composition","status":"final","subject":{{"reference":"urn:uuid:p{n}"}}}}}},
  {{"fullUrl":"urn:uuid:p{n}","resource":{{"resourceType":"Patient","gender":"female"}}}},
  {{"fullUrl":"urn:uuid:e{n}","resource":{{"resourceType":"Encounter","status":"finished","class":{{"code":"IMP"}},"subject":{{"reference":"urn:uuid:p{n}"}}}}}}]}}}}"#
        )
    };
    let observations = r#"{"resource":{"resourceType":"Bundle","type":"searchset","entry":[
  {"resource":{"resourceType":"Observation","id":"o1","status":"final"}},
  {"resource":{"resourceType":"Observation","id":"o2","status":"final"}}]}}"#;
    let collection = format!(
        r#"{{"resourceType":"Bundle","type":"collection","entry":[{},{},{observations}]}}"#,
        document(1),
        document(2)
    );
    let lake = TestLake::new();
    let file = lake.write_input("documents.json", collection.as_bytes());
    // WHEN it is ingested
    let report = lake.ingest(&file, "t1").await;
    // THEN both patients and their stays load, linked, and the other types are counted
    assert_eq!(report.result, FileResult::Completed);
    assert_eq!(report.outcome.rejected, 0);
    let counts = &report.outcome.counts;
    assert_eq!(
        [
            "Patient",
            "Encounter",
            "Composition",
            "Observation",
            "Bundle"
        ]
        .map(|kind| counts.get(kind).copied()),
        [Some(2), Some(2), Some(2), Some(2), None]
    );
    let encounters = lake.rows(SilverTable::Encounter).await;
    let mut linked: Vec<_> = encounters
        .iter()
        .map(|e| e["patient_key"].as_str().unwrap().to_owned())
        .collect();
    linked.sort();
    let mut expected = vec![
        pseudonym("t1", "Patient", "p1"),
        pseudonym("t1", "Patient", "p2"),
    ];
    expected.sort();
    assert_eq!(linked, expected);
}

#[tokio::test]
async fn a_bulk_export_folder_loads_as_it_is_its_manifest_log_and_error_files_skipped() {
    // GIVEN a Bulk export folder as a server writes it: resource files, a manifest naming them, an
    // error file of OperationOutcomes, and the client's export log
    let lake = TestLake::new();
    let manifest = br#"{"transactionTime":"2024-03-01T00:00:00Z","request":"https://h/$export","requiresAccessToken":true,
 "output":[{"type":"Patient","url":"https://h/files/Patient.ndjson"}],
 "error":[{"type":"OperationOutcome","url":"https://h/files/OperationOutcome.ndjson"}]}"#;
    let outcome = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"Condition export failed"}]}"#;
    let log = br#"{"exportId":"x1","timestamp":"2024-03-01T00:00:00Z","eventId":"kickoff","eventDetail":{"exportUrl":"https://h/$export"}}
{"exportId":"x1","timestamp":"2024-03-01T00:05:00Z","eventId":"export_complete","eventDetail":{"files":2}}
"#;
    let keys = [
        lake.drop_raw("t1/export/manifest.json", manifest),
        lake.drop_raw("t1/export/log.ndjson", log),
        lake.drop_raw(
            "t1/export/OperationOutcome.ndjson",
            format!("{outcome}\n{outcome}\n").as_bytes(),
        ),
        lake.drop_raw(
            "t1/export/Patient.ndjson",
            &read_fixture("bulk/Patient.ndjson"),
        ),
    ];
    // WHEN the folder is ingested as one group
    let reports = lake
        .lake
        .ingest_raw_group(&tenant_id("t1"), &keys)
        .await
        .unwrap();
    // THEN the resource file loads and the other three are skipped, each saying what it is
    let results: Vec<_> = reports
        .iter()
        .map(|r| (r.key.rsplit('/').next().unwrap().to_owned(), r.result))
        .collect();
    assert_eq!(
        results,
        [
            ("manifest.json".to_owned(), FileResult::Skipped),
            ("log.ndjson".to_owned(), FileResult::Skipped),
            ("OperationOutcome.ndjson".to_owned(), FileResult::Skipped),
            ("Patient.ndjson".to_owned(), FileResult::Completed),
        ]
    );
    let reasons: Vec<_> = reports[..3]
        .iter()
        .map(|r| r.outcome.error.clone().unwrap())
        .collect();
    assert!(reasons[0].contains("manifest"), "{reasons:?}");
    assert!(reasons[1].contains("log"), "{reasons:?}");
    assert!(reasons[2].contains("error file"), "{reasons:?}");
    assert_eq!(reports[2].outcome.counts.get("OperationOutcome"), Some(&2));
    assert_eq!(lake.rows(SilverTable::Patient).await.len(), 2);
    // AND the ledger records them as SKIPPED, a redelivery does nothing, and nothing was
    // quarantined or alerted
    for report in &reports[..3] {
        let entry = lake.lake.services.ledger.get(&report.ledger_id).await;
        assert_eq!(entry.unwrap().unwrap().status, LedgerStatus::Skipped);
    }
    let again = lake.lake.ingest_raw(&keys[0]).await.unwrap();
    assert_eq!(again.result, FileResult::AlreadyDone);
    assert!(!lake.path().join("quarantine/files").exists());
    let notifications =
        std::fs::read_to_string(lake.path().join("notifications.jsonl")).unwrap_or_default();
    assert!(
        !notifications.contains("file.quarantined"),
        "{notifications}"
    );
}

#[tokio::test]
async fn a_file_named_like_a_manifest_or_log_that_is_not_one_is_read_as_resources() {
    // GIVEN a Bundle named manifest.json and a log.ndjson of patients
    let lake = TestLake::new();
    let bundle = br#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"p9"}}]}"#;
    let keys = [
        lake.drop_raw("t1/x/manifest.json", bundle),
        lake.drop_raw("t1/x/log.ndjson", &read_fixture("bulk/Patient.ndjson")),
        lake.drop_raw(
            "t1/x/notes/log.ndjson",
            b"{\"note\":\"not an export event\"}\n",
        ),
    ];
    // WHEN they are ingested
    let reports = lake
        .lake
        .ingest_raw_group(&tenant_id("t1"), &keys)
        .await
        .unwrap();
    // THEN the resources load, and a log-named file of neither is quarantined as before
    let results: Vec<_> = reports.iter().map(|r| r.result).collect();
    assert_eq!(
        results,
        [
            FileResult::Completed,
            FileResult::Completed,
            FileResult::Quarantined
        ]
    );
    assert_eq!(lake.rows(SilverTable::Patient).await.len(), 3);
}

#[tokio::test]
async fn an_icu_encounter_part_of_an_admission_is_kept_in_silver_and_rolled_up_in_gold() {
    // GIVEN a hospital admission, an ICU encounter inside it
    // (`partOf` by urn:uuid, no serviceProvider, as MIMIC-IV on FHIR writes them) and a sepsis
    // diagnosed in the ICU on the third day
    let bundle = br#"{"resourceType":"Bundle","type":"transaction","entry":[
  {"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","id":"p1","gender":"male"}},
  {"fullUrl":"urn:uuid:adm","resource":{"resourceType":"Encounter","id":"adm","status":"finished",
    "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},
    "subject":{"reference":"urn:uuid:p1"},"serviceProvider":{"reference":"Organization/h1"},
    "period":{"start":"2024-03-01T10:00:00Z","end":"2024-03-08T10:00:00Z"}}},
  {"fullUrl":"urn:uuid:icu","resource":{"resourceType":"Encounter","id":"icu","status":"finished",
    "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"ACUTE"},
    "subject":{"reference":"urn:uuid:p1"},"partOf":{"reference":"urn:uuid:adm"},
    "period":{"start":"2024-03-02T10:00:00Z","end":"2024-03-05T10:00:00Z"}}},
  {"fullUrl":"urn:uuid:c1","resource":{"resourceType":"Condition","id":"c1",
    "code":{"coding":[{"system":"http://snomed.info/sct","code":"91302008"}]},
    "subject":{"reference":"urn:uuid:p1"},"encounter":{"reference":"urn:uuid:icu"},
    "onsetDateTime":"2024-03-03T12:00:00Z"}}]}"#;
    let lake = TestLake::new();
    let report = lake
        .ingest(&lake.write_input("mimic.json", bundle), "t1")
        .await;
    assert_eq!(
        (report.result, report.outcome.rejected),
        (FileResult::Completed, 0)
    );
    // THEN silver keeps the hierarchy and the class's code system
    let encounters = lake.rows(SilverTable::Encounter).await;
    let icu_key = pseudonym("t1", "Encounter", "icu");
    let icu = encounters
        .iter()
        .find(|e| e["encounter_key"] == icu_key.as_str())
        .unwrap();
    assert_eq!(
        icu["part_of_key"],
        pseudonym("t1", "Encounter", "adm").as_str()
    );
    assert_eq!(
        icu["class_system"],
        "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    );
    // AND gold has one stay, the admission's, at its hospital, with the ICU's infection
    lake.lake.refresh_gold().await.unwrap();
    let gold = metriccare_core::gold::read_gold(&lake.lake.services.lake)
        .await
        .unwrap();
    let monthly = &gold["t1"].hospital_monthly;
    assert_eq!(monthly.len(), 1, "{monthly:?}");
    assert_eq!(
        monthly[0].hospital_id,
        pseudonym("t1", "Organization", "h1")
    );
    assert_eq!(
        (
            monthly[0].stays,
            monthly[0].patient_days,
            monthly[0].hai_count
        ),
        (1, 7, 1)
    );
}
