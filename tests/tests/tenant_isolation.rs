//! A file under one tenant's prefix writes only into that tenant's partitions, whatever its content
//! claims: the same source ids as another tenant, that tenant's name in tags, identifiers, full
//! URLs and a `tenant_id` field, references into that tenant.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};

use metriccare_core::ingest::FileResult;
use metriccare_core::silver::SilverTable;
use metriccare_tests::{TestLake, files_under, pseudonym, read_fixture};

/// Every file under a directory with its bytes.
fn files_with_content(dir: &FsPath) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

/// The victim's partition folders of every silver and gold table.
fn victim_partitions(lake: &TestLake) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut found = BTreeMap::new();
    for layer in ["silver", "gold"] {
        for table in std::fs::read_dir(lake.path().join(layer))
            .into_iter()
            .flatten()
        {
            found.extend(files_with_content(
                &table.unwrap().path().join("tenant_id=victim"),
            ));
        }
    }
    found
}

#[tokio::test]
async fn content_claiming_another_tenant_stays_in_the_uploaders_partition() {
    // GIVEN a lake where tenant `victim` has loaded its export and gold
    let lake = TestLake::new();
    for table in ["Organization", "Patient", "Encounter", "Condition"] {
        let content = read_fixture(&format!("bulk/{table}.ndjson"));
        let key = lake.drop_raw(&format!("victim/export/{table}.ndjson"), &content);
        let report = lake.lake.ingest_raw(&key).await.unwrap();
        assert_eq!(report.result, FileResult::Completed);
    }
    lake.lake.refresh_gold().await.unwrap();
    let victim_before = victim_partitions(&lake);
    assert!(
        victim_before
            .keys()
            .any(|p| p.starts_with(lake.path().join("gold")))
    );
    let victim_rows = lake.rows(SilverTable::Patient).await;

    // WHEN tenant `attacker` uploads resources with the victim's source ids, claiming the victim
    // in every field a loader might trust
    let claims = r#""meta":{"tag":[{"system":"tenant","code":"victim"}],"source":"https://victim.example/fhir"},"tenant_id":"victim""#;
    let content = [
        format!(
            r#"{{"resourceType":"Patient","id":"pat-1",{claims},"identifier":[{{"system":"urn:tenant:victim","value":"victim"}}],"gender":"other"}}"#
        ),
        format!(
            r#"{{"resourceType":"Encounter","id":"enc-1",{claims},"status":"finished","class":{{"code":"IMP"}},"subject":{{"reference":"https://victim.example/fhir/Patient/pat-1"}},"serviceProvider":{{"reference":"Organization/org-1"}},"period":{{"start":"2024-01-01T00:00:00Z","end":"2024-01-09T00:00:00Z"}}}}"#
        ),
        format!(
            r#"{{"resourceType":"Bundle","type":"collection","entry":[{{"fullUrl":"https://victim.example/fhir/Condition/cond-1","resource":{{"resourceType":"Condition","id":"cond-1",{claims},"subject":{{"reference":"Patient/pat-1"}}}}}}]}}"#
        ),
    ]
    .join("\n");
    let key = lake.drop_raw("attacker/export/claims.ndjson", content.as_bytes());
    let report = lake.lake.ingest_raw(&key).await.unwrap();
    assert_eq!(report.result, FileResult::Completed, "{report:?}");
    lake.lake.refresh_gold().await.unwrap();

    // THEN not one byte of the victim's partitions changed, and its rows are as they were
    assert_eq!(victim_partitions(&lake), victim_before);
    let patients = lake.rows(SilverTable::Patient).await;
    let victim_now: Vec<_> = patients
        .iter()
        .filter(|r| r["tenant_id"] == "victim")
        .cloned()
        .collect();
    assert_eq!(victim_now.len(), victim_rows.len());
    // AND the attacker's rows are the attacker's, under the attacker's pseudonyms
    let attacker: Vec<_> = patients
        .iter()
        .filter(|r| r["tenant_id"] == "attacker")
        .collect();
    assert_eq!(attacker.len(), 1);
    assert_eq!(
        attacker[0]["patient_key"],
        pseudonym("attacker", "Patient", "pat-1").as_str()
    );
    assert_ne!(
        attacker[0]["patient_key"],
        pseudonym("victim", "Patient", "pat-1").as_str()
    );
    for table in [SilverTable::Encounter, SilverTable::Condition] {
        let rows = lake.rows(table).await;
        let tenants: Vec<_> = rows.iter().map(|r| r["tenant_id"].clone()).collect();
        assert_eq!(
            tenants.iter().filter(|t| *t == "attacker").count(),
            1,
            "{table:?}"
        );
    }
}
