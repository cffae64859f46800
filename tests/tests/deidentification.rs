//! No name, phone, e-mail, address line, identifier value or original id reaches silver, and the
//! same source id gets different pseudonyms in different tenants.

use metriccare_core::silver::SilverTable;
use metriccare_tests::{TestLake, fixtures, pseudonym};
use serde_json::Value;

/// Every string a source file holds under a PHI-bearing key, and every resource id.
fn phi_strings(value: &Value, key: &str, out: &mut Vec<String>) {
    // `div` is the narrative; everything under `subject` or `individual` (references and the
    // person's display name) and every `reference` carries a person's name or a source id.
    // Of an address, the street lines and the full postal code (the city may also be a hospital's).
    const PHI_KEYS: [&str; 10] = [
        "name",
        "telecom",
        "line",
        "postalCode",
        "identifier",
        "div",
        "id",
        "subject",
        "individual",
        "reference",
    ];
    match value {
        Value::Object(map) => {
            let organization = map.get("resourceType") == Some(&Value::from("Organization"));
            for (k, v) in map {
                // An organization's name and address, and a hospital's name on serviceProvider or
                // location, are not PHI; an organization's id is still pseudonymised.
                if (organization && matches!(k.as_str(), "name" | "address" | "telecom"))
                    || matches!(k.as_str(), "serviceProvider" | "location")
                {
                    continue;
                }
                phi_strings(
                    v,
                    if PHI_KEYS.contains(&k.as_str()) {
                        k
                    } else {
                        key
                    },
                    out,
                );
            }
        }
        Value::Array(items) => items.iter().for_each(|v| phi_strings(v, key, out)),
        Value::String(s) if PHI_KEYS.contains(&key) && s.len() >= 4 && !s.starts_with("http") => {
            out.push(s.clone());
        }
        _ => {}
    }
}

#[tokio::test]
async fn no_phi_and_no_source_id_reaches_silver() {
    let lake = TestLake::new();
    let mut phi = Vec::new();
    for file in [
        "synthea/hospitalInformation1700000000000.json",
        "synthea/Jana_Kertzmann_transaction.json",
    ] {
        let path = fixtures().join(file);
        lake.ingest(&path, "t1").await;
        phi_strings(
            &serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap(),
            "",
            &mut phi,
        );
    }
    for file in ["Organization", "Patient", "Encounter", "Condition"] {
        let path = fixtures().join(format!("bulk/{file}.ndjson"));
        lake.ingest(&path, "t1").await;
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            phi_strings(&serde_json::from_str(line).unwrap(), "", &mut phi);
        }
    }
    for expected in [
        "Kertzmann",
        "555-417-3394",
        "744 Hermiston Crossing Suite 11",
        "999-71-4415",
        "adaeze@example.org",
        "pat-1",
        "MRN-0001",
    ] {
        assert!(
            phi.iter().any(|p| p.contains(expected)),
            "the PHI collector misses {expected}"
        );
    }
    let mut silver_text = String::new();
    for table in SilverTable::ALL {
        for row in lake.rows(table).await {
            silver_text.push_str(&Value::Object(row).to_string());
        }
    }
    assert!(!silver_text.is_empty());
    for value in &phi {
        assert!(
            !silver_text.contains(value.as_str()),
            "{value:?} reached silver"
        );
    }
    // The base files themselves, decompressed by the reader above, are what was checked; the
    // ledger and logs hold ids and counts only.
}

#[tokio::test]
async fn the_same_source_id_has_unrelated_pseudonyms_in_two_tenants() {
    let lake = TestLake::new();
    let file = fixtures().join("bulk/Patient.ndjson");
    lake.ingest(&file, "tenant-a").await;
    lake.ingest(&file, "tenant-b").await;
    let rows = lake.rows(SilverTable::Patient).await;
    assert_eq!(rows.len(), 4);
    let a = pseudonym("tenant-a", "Patient", "pat-1");
    let b = pseudonym("tenant-b", "Patient", "pat-1");
    assert_ne!(a, b);
    for (key, tenant) in [(a, "tenant-a"), (b, "tenant-b")] {
        let row = rows
            .iter()
            .find(|r| r["patient_key"] == key.as_str())
            .expect("pseudonymised row");
        assert_eq!(
            row["tenant_id"], tenant,
            "a file of one tenant writes only its own partition"
        );
    }
}
