//! A corpus of hostile files, each with its asserted outcome: loaded (with its rejected resources
//! and their reasons) or quarantined whole with a reason. Each case is its own tenant's upload; after
//! each one, every other tenant's silver rows and every other file's ledger item are unchanged,
//! and nothing panics.

use std::collections::BTreeMap;

use metriccare_core::fhir::reader::ReadLimits;
use metriccare_core::ingest::{FileReport, FileResult, Settings};
use metriccare_core::ports::LedgerStatus;
use metriccare_core::silver::SilverTable;
use metriccare_tests::{TestLake, gzip, read_fixture};
use serde_json::{Map, Value};

/// What must become of a file.
enum Expect {
    /// It loads `rows` silver rows (all tables) and rejects one resource per reason, each reason
    /// containing the given text, in file order.
    Loads {
        rows: usize,
        rejects: &'static [&'static str],
    },
    /// It is quarantined whole, its reason containing the text.
    Quarantined(&'static str),
}

use Expect::{Loads, Quarantined};

struct Case {
    /// The file's name in the upload (its extension matters: `.gz`).
    file: &'static str,
    content: Vec<u8>,
    expect: Expect,
}

fn case(file: &'static str, content: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        file,
        content: content.into(),
        expect,
    }
}

/// A good Patient line with the given id.
fn patient(id: &str) -> String {
    format!(
        r#"{{"resourceType":"Patient","id":"{id}","gender":"female","birthDate":"1970-01-01"}}"#
    )
}

fn lines(lines: &[&str]) -> Vec<u8> {
    lines.join("\n").into_bytes()
}

/// A transaction Bundle of the given entry resources (JSON texts).
fn bundle(resources: &[&str]) -> Vec<u8> {
    let entries: Vec<String> = resources
        .iter()
        .map(|r| format!(r#"{{"resource":{r}}}"#))
        .collect();
    format!(
        r#"{{"resourceType":"Bundle","type":"collection","entry":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes()
}

fn encounter_starting(start: &str) -> String {
    format!(
        r#"{{"resourceType":"Encounter","id":"e1","status":"finished","class":{{"code":"IMP"}},"subject":{{"reference":"Patient/p1"}},"period":{{"start":"{start}","end":"2024-03-05T10:00:00Z"}}}}"#
    )
}

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let bom: [u8; 2] = if big_endian {
        [0xfe, 0xff]
    } else {
        [0xff, 0xfe]
    };
    let units = text.encode_utf16().flat_map(move |u| {
        if big_endian {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        }
    });
    bom.into_iter().chain(units).collect()
}

/// JSON nested `depth` levels deep inside a Patient.
fn deeply_nested_patient(depth: usize) -> String {
    format!(
        r#"{{"resourceType":"Patient","id":"deep","extension":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// Limits of the corpus lake: the defaults, with gzip limits small enough to trip in a test.
fn corpus_limits() -> ReadLimits {
    ReadLimits {
        max_decompressed_bytes: 16 << 20,
        ratio_grace_bytes: 1 << 20,
        ..ReadLimits::default()
    }
}

fn corpus() -> Vec<Case> {
    let max_line = ReadLimits::default().max_line_bytes;
    let ndjson = read_fixture("bulk/Patient.ndjson");
    let transaction = read_fixture("synthea/Jana_Kertzmann_transaction.json");
    let jana_rows = 3; // Patient, Encounter, Condition
    let with_bom = |content: &[u8]| [&[0xef, 0xbb, 0xbf][..], content].concat();
    let mut truncated_line = lines(&[&patient("p1"), &patient("p2")]);
    truncated_line.truncate(truncated_line.len() - 10);
    let mut not_utf8_line = lines(&[&patient("p1"), &patient("p2")]);
    let at = not_utf8_line.len() - 5;
    not_utf8_line[at] = 0xff;
    let mut not_utf8_bundle = bundle(&[&patient("p1"), &patient("p2")]);
    let at = not_utf8_bundle
        .windows(6)
        .position(|w| w == b"female")
        .unwrap();
    not_utf8_bundle[at] = 0xff;
    let huge_line = format!(
        r#"{{"resourceType":"Patient","id":"huge","text":"{}"}}"#,
        "x".repeat(max_line * 3)
    );
    let huge_string = format!(
        r#"{{"resourceType":"Patient","id":"p-long-name","name":[{{"family":"{}"}}]}}"#,
        "y".repeat(8 << 20)
    );
    let long_id = format!(r#"{{"resourceType":"Patient","id":"{}"}}"#, "a".repeat(65));
    let many_names = format!(
        r#"{{"resourceType":"Patient","id":"p-many","name":[{}]}}"#,
        vec![r#"{"family":"Doe"}"#; 100_000].join(",")
    );
    let gzip_bomb = gzip(&[patient("p1").as_bytes(), &vec![b' '; 8 << 20]].concat());
    // Expands to more than the corpus lake's 16 MiB at an ordinary ratio (distinct lines).
    let too_big = gzip(
        &(0..250_000)
            .map(|i| format!("{}\n", patient(&format!("p{i}"))))
            .collect::<String>()
            .into_bytes(),
    );
    let mut gzip_cut = gzip(&ndjson);
    gzip_cut.truncate(gzip_cut.len() - 12);
    let mut gzip_trailing = gzip(&ndjson);
    gzip_trailing.extend_from_slice(b"garbage after the gzip member");
    let two_members = [
        gzip(&lines(&[&patient("p1")])),
        gzip(b"\n"),
        gzip(patient("p2").as_bytes()),
    ]
    .concat();

    vec![
        // Not a FHIR file at all.
        case("empty.json", "", Quarantined("empty")),
        case("blank.ndjson", "  \n\n\t\n", Quarantined("empty")),
        case("notes.txt", "patient list, confidential", Quarantined("not JSON")),
        case("string.json", r#""just a string""#, Quarantined("not JSON")),
        case("number.json", "42", Quarantined("not JSON")),
        case("array.json", format!("[{}]", patient("a")), Quarantined("JSON array")),
        case("nested-arrays.json", "[".repeat(100_000), Quarantined("JSON array")),
        case("hello.ndjson", "{\"hello\":1}\n{\"world\":2}\n", Quarantined("no line of the file is a FHIR resource")),
        case("object-without-type.json", "{\n\"id\": \"x\"\n}", Quarantined("no resourceType")),
        case("binary.ndjson", vec![0u8, 1, 2, 3, 0xff, 0xfe, 0, 0], Quarantined("not JSON")),
        // Truncated.
        case("truncated.json", transaction[..transaction.len() / 2].to_vec(), Quarantined("truncated")),
        case("truncated-line.ndjson", truncated_line, Quarantined("truncated")),
        case("open-brace.json", "{", Quarantined("truncated")),
        // Encodings.
        case("utf16le.json", utf16(&patient("p1"), false), Quarantined("UTF-16")),
        case("utf16be.ndjson", utf16(&patient("p1"), true), Quarantined("UTF-16")),
        case("bom.ndjson", with_bom(&ndjson), Loads { rows: 2, rejects: &[] }),
        case("bom-bundle.json", with_bom(&transaction), Loads { rows: jana_rows, rejects: &[] }),
        case("bom.ndjson.gz", gzip(&with_bom(&ndjson)), Loads { rows: 2, rejects: &[] }),
        case("not-utf8-line.ndjson", not_utf8_line, Loads { rows: 1, rejects: &["UTF-8"] }),
        case("not-utf8.json", not_utf8_bundle, Quarantined("invalid unicode")),
        case("crlf.ndjson", lines(&[&patient("p1"), &patient("p2")]).iter().flat_map(|b| if *b == b'\n' { vec![b'\r', b'\n'] } else { vec![*b] }).collect::<Vec<u8>>(), Loads { rows: 2, rejects: &[] }),
        case("nul-escape.ndjson", lines(&[r#"{"resourceType":"Patient","id":"p1","name":[{"family":"A\u0000B"}]}"#, &patient("p2")]), Loads { rows: 2, rejects: &[] }),
        case("lone-surrogate-dropped.ndjson", lines(&[r#"{"resourceType":"Patient","id":"p1","name":[{"family":"\ud800"}]}"#, &patient("p2")]), Loads { rows: 2, rejects: &[] }),
        case("lone-surrogate-kept.ndjson", lines(&[r#"{"resourceType":"Patient","id":"p1","gender":"\ud800"}"#, &patient("p2")]), Loads { rows: 1, rejects: &["hex escape"] }),
        // Size.
        case("huge-line.ndjson", lines(&[&patient("p1"), &huge_line, &patient("p2")]), Loads { rows: 2, rejects: &["longer than"] }),
        case("huge-string.ndjson", lines(&[&huge_string, &patient("p2")]), Loads { rows: 2, rejects: &[] }),
        case("many-names.ndjson", lines(&[&many_names, &patient("p2")]), Loads { rows: 2, rejects: &[] }),
        case("deep.ndjson", lines(&[&deeply_nested_patient(100_000), &patient("p2")]), Loads { rows: 2, rejects: &[] }),
        case("deep-bundle.json", bundle(&[&deeply_nested_patient(100_000), &patient("p2")]), Loads { rows: 2, rejects: &[] }),
        case("deep-object.ndjson", lines(&[&format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000)), &patient("p2")]), Loads { rows: 1, rejects: &["no resourceType"] }),
        // Gzip.
        case("fake.json.gz", patient("x"), Quarantined("not gzip")),
        case("cut.ndjson.gz", gzip_cut, Quarantined("corrupt")),
        case("trailing.ndjson.gz", gzip_trailing, Quarantined("corrupt")),
        case("bomb.ndjson.gz", gzip_bomb, Quarantined("decompression-bomb")),
        case("too-big.ndjson.gz", too_big, Quarantined("decompression-bomb")),
        case("two-members.ndjson.gz", two_members, Loads { rows: 2, rejects: &[] }),
        case("bundle.json.gz", gzip(&transaction), Loads { rows: jana_rows, rejects: &[] }),
        case("empty.ndjson.gz", gzip(b""), Quarantined("empty")),
        // Duplicate keys, wrong types, numbers.
        case("duplicate-id.ndjson", lines(&[r#"{"resourceType":"Patient","id":"a","id":"b"}"#, &patient("p2")]), Loads { rows: 1, rejects: &["duplicate field"] }),
        case("duplicate-type.ndjson", lines(&[r#"{"resourceType":"Patient","resourceType":"Encounter","id":"a"}"#, &patient("p2")]), Loads { rows: 1, rejects: &["duplicate field `resourceType`"] }),
        case("numeric-id.ndjson", lines(&[r#"{"resourceType":"Patient","id":12}"#, &patient("p2")]), Loads { rows: 1, rejects: &["invalid type"] }),
        case("huge-number.ndjson", lines(&[r#"{"resourceType":"Patient","id":"p1","multipleBirthInteger":123456789012345678901234567890}"#, &patient("p2")]), Loads { rows: 2, rejects: &[] }),
        case("number-overflow.ndjson", lines(&[r#"{"resourceType":"Patient","id":"p1","multipleBirthInteger":1e400}"#, &patient("p2")]), Loads { rows: 2, rejects: &[] }),
        case("deceased-number.ndjson", lines(&[r#"{"resourceType":"Patient","id":"p1","deceasedBoolean":1e400}"#, &patient("p2")]), Loads { rows: 1, rejects: &["number out of range"] }),
        case("string-gender.ndjson", lines(&[r#"{"resourceType":"Patient","id":"p1","gender":["female"]}"#, &patient("p2")]), Loads { rows: 1, rejects: &["invalid type"] }),
        // Dates.
        case("date-zone.ndjson", encounter_starting("2024-03-01T10:00:00+05:30"), Loads { rows: 1, rejects: &[] }),
        // A time without an offset is read as UTC (FHIR requires one; real exports omit it).
        case("date-no-zone.ndjson", encounter_starting("2024-03-01T10:00:00"), Loads { rows: 1, rejects: &[] }),
        case("date-only.ndjson", encounter_starting("2024-03-01"), Loads { rows: 1, rejects: &[] }),
        case("date-impossible.ndjson", encounter_starting("2023-02-30T10:00:00Z"), Loads { rows: 0, rejects: &["impossible date"] }),
        case("date-garbage.ndjson", encounter_starting("yesterday"), Loads { rows: 0, rejects: &["Encounter.period"] }),
        case("date-hour-25.ndjson", encounter_starting("2024-03-01T25:00:00Z"), Loads { rows: 0, rejects: &["Encounter.period"] }),
        case("birthdate-impossible.ndjson", lines(&[r#"{"resourceType":"Patient","id":"p1","birthDate":"1990-02-29"}"#, &patient("p2")]), Loads { rows: 1, rejects: &["Patient.birthDate"] }),
        // resourceType.
        case("no-type.ndjson", lines(&[r#"{"id":"p1","gender":"male"}"#, &patient("p2")]), Loads { rows: 1, rejects: &["resourceType"] }),
        case("lowercase-type.ndjson", lines(&[r#"{"resourceType":"patient","id":"p1"}"#, &patient("p2")]), Loads { rows: 1, rejects: &["resourceType"] }),
        case("numeric-type.ndjson", lines(&[r#"{"resourceType":7,"id":"p1"}"#, &patient("p2")]), Loads { rows: 1, rejects: &["expected a string"] }),
        case("observation.ndjson", lines(&[r#"{"resourceType":"Observation","id":"o1","status":"final"}"#, &patient("p2")]), Loads { rows: 1, rejects: &[] }),
        // Bundles.
        // Every R4 Bundle type is read; Bundles inside Bundles are read through.
        case("bundle-in-bundle.json", bundle(&[&patient("p1"), &String::from_utf8(bundle(&[&patient("p2")])).unwrap()]), Loads { rows: 2, rejects: &[] }),
        case("bundle-in-bundle-in-bundle.json", bundle(&[&String::from_utf8(bundle(&[&String::from_utf8(bundle(&[&patient("p1")])).unwrap()])).unwrap(), &patient("p2")]), Loads { rows: 2, rejects: &[] }),
        case("bundle-of-other-types-in-bundle.json", bundle(&[&patient("p1"), &String::from_utf8(bundle(&[r#"{"resourceType":"Observation","id":"o1","status":"final"}"#])).unwrap()]), Loads { rows: 1, rejects: &[] }),
        case("sorted-keys-bundle-in-bundle.json", bundle(&[r#"{"entry":[{"resource":{"id":"p1","resourceType":"Patient"}}],"resourceType":"Bundle","type":"collection"}"#]), Loads { rows: 1, rejects: &[] }),
        case("untyped-bundle-in-bundle.json", bundle(&[r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"p1"}}]}"#]), Loads { rows: 1, rejects: &[] }),
        case("bundles-nested-too-deep.json", (0..6).fold(patient("p1"), |inner, _| String::from_utf8(bundle(&[&inner])).unwrap()), Loads { rows: 0, rejects: &["nested more than 4"] }),
        case("bad-bundle-in-bundle.json", bundle(&[&patient("p1"), r#"{"resourceType":"Bundle","type":"bogus","entry":[]}"#]), Loads { rows: 1, rejects: &["nested Bundle"] }),
        case("message-bundle.json", br#"{"resourceType":"Bundle","type":"message","entry":[
            {"fullUrl":"urn:uuid:m1","resource":{"resourceType":"MessageHeader","eventCoding":{"code":"admin-notify"},"source":{"endpoint":"x"}}},
            {"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","gender":"female"}}]}"#.to_vec(), Loads { rows: 1, rejects: &[] }),
        case("document-bundle.json", br#"{"resourceType":"Bundle","type":"document","identifier":{"value":"d1"},"timestamp":"2024-03-05T10:00:00Z","entry":[
            {"fullUrl":"urn:uuid:c1","resource":{"resourceType":"Composition","status":"final","subject":{"reference":"urn:uuid:p1"}}},
            {"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","gender":"female"}},
            {"fullUrl":"urn:uuid:e1","resource":{"resourceType":"Encounter","status":"finished","class":{"code":"IMP"},"subject":{"reference":"urn:uuid:p1"}}}]}"#.to_vec(), Loads { rows: 2, rejects: &[] }),
        case("history-bundle.json", br#"{"resourceType":"Bundle","type":"history","entry":[
            {"resource":{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","lastUpdated":"2024-03-02T00:00:00Z"},"gender":"male"},"request":{"method":"PUT","url":"Patient/p1"},"response":{"status":"200"}},
            {"resource":{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2024-03-01T00:00:00Z"},"gender":"female"},"request":{"method":"POST","url":"Patient"},"response":{"status":"201"}},
            {"request":{"method":"DELETE","url":"Patient/p2"},"response":{"status":"204"}},
            {"request":{"method":"GET","url":"Patient/p3"},"response":{"status":"410"}}]}"#.to_vec(), Loads { rows: 1, rejects: &[] }),
        case("transaction-response.json", br#"{"resourceType":"Bundle","type":"transaction-response","entry":[
            {"response":{"status":"201 Created","location":"Patient/p1/_history/1"}},
            {"response":{"status":"200 OK"},"resource":{"resourceType":"Patient","id":"p2","gender":"female"}}]}"#.to_vec(), Loads { rows: 1, rejects: &[] }),
        case("batch-response-without-resources.json", br#"{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"204"}}]}"#.to_vec(), Loads { rows: 0, rejects: &[] }),
        case("transaction-with-reads.json", br#"{"resourceType":"Bundle","type":"transaction","entry":[
            {"resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"PUT","url":"Patient/p1"}},
            {"request":{"method":"GET","url":"Patient?name=peter"}},
            {"request":{"method":"HEAD","url":"Patient/p2"}}]}"#.to_vec(), Loads { rows: 1, rejects: &[] }),
        case("unknown-bundle-type.json", r#"{"resourceType":"Bundle","type":"bogus","entry":[]}"#, Quarantined("not accepted")),
        case("bundle-entry-not-array.json", r#"{"resourceType":"Bundle","type":"collection","entry":{"resource":{}}}"#, Quarantined("entry")),
        case("bundle-no-entries.json", r#"{"resourceType":"Bundle","type":"collection"}"#, Loads { rows: 0, rejects: &[] }),
        case("bundle-missing-target.json", br#"{"resourceType":"Bundle","type":"transaction","entry":[
            {"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","gender":"female"}},
            {"fullUrl":"urn:uuid:e2","resource":{"resourceType":"Encounter","status":"finished","subject":{"reference":"urn:uuid:nobody"}}}]}"#.to_vec(), Loads { rows: 1, rejects: &["urn:uuid"] }),
        case("ndjson-line-is-bundle.ndjson", lines(&[&String::from_utf8(bundle(&[&patient("p1")])).unwrap(), &patient("p2")]), Loads { rows: 2, rejects: &[] }),
        // References and ids.
        case("reference-to-missing.ndjson", encounter_starting("2024-03-01T10:00:00Z"), Loads { rows: 1, rejects: &[] }),
        case("reference-traversal.ndjson", lines(&[r#"{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/../../t2/x"}}"#, &patient("p2")]), Loads { rows: 1, rejects: &["reference"] }),
        case("id-traversal.ndjson", lines(&[&patient("../../other-tenant/p1"), &patient("p2")]), Loads { rows: 1, rejects: &["not a valid FHIR id"] }),
        case("id-too-long.ndjson", lines(&[&long_id, &patient("p2")]), Loads { rows: 1, rejects: &["not a valid FHIR id"] }),
        case("wrong-reference-type.ndjson", lines(&[r#"{"resourceType":"Condition","id":"c1","subject":{"reference":"Observation/xyz"}}"#, &patient("p2")]), Loads { rows: 1, rejects: &["does not point to a Patient"] }),
        // Names.
        case("J\u{fc}rgen M\u{fc}ller #1 (copy).ndjson", ndjson.clone(), Loads { rows: 2, rejects: &[] }),
        case("\u{1F3E5} \u{6570}\u{636E} .ndjson", ndjson.clone(), Loads { rows: 2, rejects: &[] }),
    ]
}

/// Each tenant's silver rows (all tables), to show that a case touched only its own tenant.
async fn rows_by_tenant(lake: &TestLake) -> BTreeMap<String, Vec<Map<String, Value>>> {
    let mut by_tenant: BTreeMap<String, Vec<Map<String, Value>>> = BTreeMap::new();
    for table in SilverTable::ALL {
        for row in lake.rows(table).await {
            let tenant = row["tenant_id"].as_str().unwrap().to_owned();
            by_tenant.entry(tenant).or_default().push(row);
        }
    }
    by_tenant
}

/// Every ledger item: id → (tenant, status).
async fn ledger_items(lake: &TestLake) -> BTreeMap<String, (String, String)> {
    let entries = lake.lake.services.ledger.list().await.unwrap();
    entries
        .into_iter()
        .map(|e| (e.id, (e.tenant_id, e.status.as_str().to_owned())))
        .collect()
}

fn reject_reasons(lake: &TestLake, tenant: &str, report: &FileReport) -> Vec<String> {
    let path = lake
        .lake
        .dir
        .join("quarantine/rejects")
        .join(tenant)
        .join(format!("{}.ndjson", report.ledger_id));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["reason"].to_string())
        .collect()
}

/// Checks one case's outcome; returns what is wrong, if anything.
async fn check(lake: &TestLake, tenant: &str, case: &Case, report: &FileReport) -> Vec<String> {
    let mut wrong = Vec::new();
    let entry = lake.lake.services.ledger.get(&report.ledger_id).await;
    let status = entry.ok().flatten().map(|e| e.status);
    match case.expect {
        Quarantined(reason) => {
            let error = report.outcome.error.clone().unwrap_or_default();
            if report.result != FileResult::Quarantined || !error.contains(reason) {
                wrong.push(format!(
                    "quarantined for {reason:?} expected, got {:?} {error:?} ({} rejects)",
                    report.result, report.outcome.rejected
                ));
            }
            if status != Some(LedgerStatus::Quarantined) {
                wrong.push(format!("ledger says {status:?}"));
            }
            let copy = lake
                .lake
                .dir
                .join("quarantine/files")
                .join(tenant)
                .join(&report.ledger_id)
                .join(case.file);
            if std::fs::read(&copy).ok().as_ref() != Some(&case.content) {
                wrong.push("the quarantined copy is not the file".into());
            }
            let reason_file = copy.with_file_name("reason.json");
            let written: Value = std::fs::read(reason_file)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or_default();
            if written["reason"] != error.as_str() {
                wrong.push(format!("reason.json says {}", written["reason"]));
            }
        }
        Loads { rows, rejects } => {
            let reasons = reject_reasons(lake, tenant, report);
            let loaded: usize = rows_by_tenant(lake).await.get(tenant).map_or(0, Vec::len);
            let reasons_match = reasons.len() == rejects.len()
                && reasons
                    .iter()
                    .zip(rejects)
                    .all(|(got, want)| got.contains(want));
            if report.result != FileResult::Completed || loaded != rows || !reasons_match {
                wrong.push(format!(
                    "{rows} rows and rejects {rejects:?} expected, got {:?} {:?}: {loaded} rows, rejects {reasons:?}",
                    report.result, report.outcome.error
                ));
            }
            if status != Some(LedgerStatus::Completed) {
                wrong.push(format!("ledger says {status:?}"));
            }
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_file_ends_in_a_clear_outcome_and_touches_nothing_else() {
    // GIVEN a lake where another tenant's data is already loaded
    let lake = TestLake::with_settings(Settings {
        limits: corpus_limits(),
        ..Settings::default()
    });
    for table in ["Patient", "Encounter", "Condition"] {
        let key = format!("bystander/export/{table}.ndjson");
        let key = lake.drop_raw(&key, &read_fixture(&format!("bulk/{table}.ndjson")));
        let report = lake.lake.ingest_raw(&key).await.unwrap();
        assert_eq!(report.result, FileResult::Completed);
    }
    let cases = corpus();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        // WHEN each file is uploaded under a tenant of its own
        let tenant = format!("case-{i:02}");
        let before = rows_by_tenant(&lake).await;
        let ledger_before = ledger_items(&lake).await;
        let key = lake.drop_raw(&format!("{tenant}/upload/{}", case.file), &case.content);
        let process = lake.another_process();
        let run = tokio::spawn(async move { process.ingest_raw(&key).await });
        let report = match run.await {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => {
                failures.push(format!("{}: ingest error {e}", case.file));
                continue;
            }
            Err(panic) => {
                failures.push(format!("{}: PANIC {panic}", case.file));
                continue;
            }
        };
        // THEN it ends as expected
        for wrong in check(&lake, &tenant, case, &report).await {
            failures.push(format!("{}: {wrong}", case.file));
        }
        // AND every other tenant's rows are as they were
        let mut after = rows_by_tenant(&lake).await;
        after.remove(&tenant);
        if after != before {
            failures.push(format!("{}: changed another tenant's rows", case.file));
        }
        let mut ledger_after = ledger_items(&lake).await;
        ledger_after.retain(|_, (item_tenant, _)| *item_tenant != tenant);
        if ledger_after != ledger_before {
            failures.push(format!("{}: changed another file's ledger item", case.file));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // AND each quarantined file raised one alert
    let alerts = std::fs::read_to_string(lake.lake.dir.join("notifications.jsonl")).unwrap();
    let quarantined = cases
        .iter()
        .filter(|c| matches!(c.expect, Quarantined(_)))
        .count();
    let alerted = alerts.lines().filter(|l| l.contains("file.quarantined"));
    assert_eq!(alerted.count(), quarantined);
    // AND a redelivered quarantined file stays quarantined, without a second copy or alert
    let first = lake.lake.list_raw().await.unwrap();
    let empty = first
        .iter()
        .find(|o| o.location.as_ref().ends_with("/empty.json"))
        .unwrap();
    let again = lake.lake.ingest_raw(&empty.location).await.unwrap();
    assert_eq!(again.result, FileResult::AlreadyDone);
}
