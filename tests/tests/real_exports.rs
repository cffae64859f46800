//! Exports nobody here wrote: the HL7 FHIR R4 official examples (`tests/fixtures/hl7-r4-examples`,
//! CC0). Every file loads; silver holds exactly the distinct resources the files carry, counted
//! here independently of the reader; gold's stays are the top-level inpatient encounters, and no
//! stay of an encounter that names its hospital is reported under "unknown".

use std::collections::{BTreeMap, BTreeSet};

use metriccare_core::gold::read_gold;
use metriccare_core::ingest::FileResult;
use metriccare_core::silver::SilverTable;
use metriccare_tests::{TestLake, fixtures, pseudonym};
use serde_json::Value;

const TENANT: &str = "hl7";

/// What the example files hold, counted by walking their JSON.
#[derive(Default)]
struct Expected {
    /// Distinct ids per silver type (a Bundle entry without an id takes its `urn:uuid` fullUrl).
    ids: BTreeMap<String, BTreeSet<String>>,
    /// `Type/id` of the DELETE entries.
    deleted: BTreeSet<String>,
    /// Encounters, by id.
    encounters: BTreeMap<String, Value>,
}

impl Expected {
    fn walk(&mut self, resource: &Value, full_url: Option<&str>) {
        let kind = resource["resourceType"].as_str().unwrap_or_default();
        if kind == "Bundle" {
            for entry in resource["entry"].as_array().into_iter().flatten() {
                let request = &entry["request"];
                if request["method"] == "DELETE"
                    && let Some(url) = request["url"].as_str()
                {
                    self.deleted.insert(url.to_owned());
                }
                if entry["resource"].is_object() {
                    self.walk(&entry["resource"], entry["fullUrl"].as_str());
                }
            }
            return;
        }
        if !["Patient", "Encounter", "Condition", "Organization"].contains(&kind) {
            return;
        }
        let id = resource["id"]
            .as_str()
            .or_else(|| full_url.and_then(|u| u.strip_prefix("urn:uuid:")))
            .expect("every example resource has an id")
            .to_owned();
        if kind == "Encounter" {
            self.encounters.insert(id.clone(), resource.clone());
        }
        self.ids.entry(kind.to_owned()).or_default().insert(id);
    }

    /// Rows per silver table: the distinct resources less the deleted ones.
    fn rows(&self, kind: &str) -> usize {
        self.ids[kind]
            .iter()
            .filter(|id| !self.deleted.contains(&format!("{kind}/{id}")))
            .count()
    }

    /// The encounters that are stays (DESIGN, "Gold"): top-level (no `partOf`, or one naming
    /// itself), class v3 ActCode IMP/ACUTE/NONAC, finished or completed, with start and end.
    fn stays(&self) -> Vec<(&String, &Value)> {
        self.encounters
            .iter()
            .filter(|(id, e)| {
                let parent = e["partOf"]["reference"].as_str();
                let top_level = parent.is_none_or(|p| p == format!("Encounter/{id}"));
                let class = &e["class"];
                top_level
                    && class["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
                    && ["IMP", "ACUTE", "NONAC"].contains(&class["code"].as_str().unwrap_or(""))
                    && ["finished", "completed"].contains(&e["status"].as_str().unwrap_or(""))
                    && e["period"]["start"].is_string()
                    && e["period"]["end"].is_string()
            })
            .collect()
    }
}

#[tokio::test]
async fn the_hl7_r4_examples_load_whole_into_silver_and_their_stays_into_gold() {
    // GIVEN the examples and what they hold
    let dir = fixtures().join("hl7-r4-examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut expected = Expected::default();
    for file in &files {
        let json: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        expected.walk(&json, None);
    }
    // WHEN every file is ingested for one tenant
    let lake = TestLake::new();
    let mut rejects = Vec::new();
    for file in &files {
        let report = lake.ingest(file, TENANT).await;
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(report.result, FileResult::Completed, "{name}: {report:?}");
        if report.outcome.rejected > 0 {
            rejects.push(name);
        }
    }
    // THEN nothing is refused but the transaction example's conditional delete
    // (`DELETE Patient?identifier=123456`: a search this lake cannot run, reported, not applied)
    assert_eq!(rejects, ["Bundle-bundle-transaction.json"]);
    // AND every silver table holds exactly the distinct resources the files carry
    for (table, kind) in [
        (SilverTable::Patient, "Patient"),
        (SilverTable::Encounter, "Encounter"),
        (SilverTable::Condition, "Condition"),
        (SilverTable::Organization, "Organization"),
    ] {
        assert_eq!(lake.rows(table).await.len(), expected.rows(kind), "{kind}");
    }
    // AND gold's stays are the top-level inpatient encounters, each under its hospital when it
    // names one
    lake.lake.refresh_gold().await.unwrap();
    let gold = read_gold(&lake.lake.services.lake).await.unwrap();
    let monthly = &gold[TENANT].hospital_monthly;
    let stays = expected.stays();
    assert_eq!(
        monthly.iter().map(|r| r.stays).sum::<i64>(),
        stays.len() as i64,
        "{monthly:?}"
    );
    // (By hand: `doc-example`, of no hospital, and `f203` at Organization/2, whose `partOf` names
    // itself; the others are ambulatory, home health, or still in progress.)
    assert_eq!(stays.len(), 2);
    for (_, encounter) in stays {
        if let Some(reference) = encounter["serviceProvider"]["reference"].as_str() {
            let id = reference.rsplit('/').next().unwrap();
            let hospital = pseudonym(TENANT, "Organization", id);
            assert!(
                monthly.iter().any(|r| r.hospital_id == hospital),
                "the stay at {reference} is under its hospital: {monthly:?}"
            );
        }
    }
}
