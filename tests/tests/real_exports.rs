//! Exports nobody here wrote: the HL7 FHIR R4 official examples (`tests/fixtures/hl7-r4-examples`,
//! CC0), and a Bulk export in the shape of MIMIC-IV on FHIR (`tests/fixtures/mimic-iv-shaped`: the
//! real hospital's shapes and code systems, invented values). Every file loads; silver holds exactly
//! the distinct resources the files carry, counted here independently of the reader; gold's stays
//! are the top-level inpatient encounters, and no stay of an encounter that names its hospital (or
//! is part of one that does) is reported under "unknown".

use std::collections::{BTreeMap, BTreeSet};

use metriccare_core::gold::metrics::HospitalMonth;
use metriccare_core::gold::{GoldRows, read_gold};
use metriccare_core::ingest::FileResult;
use metriccare_core::silver::SilverTable;
use metriccare_core::silver::parse_codings_column;
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

const MIMIC: &str = "mimic";

/// The Bulk export files of a folder, each line a resource, as `(resourceType, resource)`.
fn ndjson_resources(dir: &std::path::Path) -> (Vec<std::path::PathBuf>, Vec<Value>) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    files.sort();
    let resources = files
        .iter()
        .flat_map(|file| {
            std::fs::read_to_string(file)
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str::<Value>(line).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    (files, resources)
}

#[tokio::test]
async fn a_mimic_shaped_export_needs_its_profile_and_then_counts_every_admission_at_its_hospital() {
    // GIVEN the folder as a hospital exports it, and what it holds, counted from its JSON
    let (files, resources) = ndjson_resources(&fixtures().join("mimic-iv-shaped"));
    let profile_text = std::fs::read(fixtures().join("tenant-profiles/mimic-iv.json")).unwrap();
    let profile: Value = serde_json::from_slice(&profile_text).unwrap();
    let of_kind = |kind: &'static str| resources.iter().filter(move |r| r["resourceType"] == kind);
    let inpatient = |class: &Value| {
        profile["inpatient_classes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["system"] == class["system"] && c["code"] == class["code"])
    };
    let admissions: Vec<&Value> = of_kind("Encounter")
        .filter(|e| e["partOf"].is_null() && inpatient(&e["class"]))
        .collect();
    // (By hand: six admissions, one an observation admission the profile leaves out; the ICU and
    // ED encounters are parts of admissions or, for one ED visit, outpatient.)
    assert_eq!(admissions.len(), 5);

    // WHEN the whole folder is ingested for one tenant and gold is refreshed without a profile
    let lake = TestLake::new();
    for file in &files {
        let report = lake.ingest(file, MIMIC).await;
        assert_eq!(
            (report.result, report.outcome.rejected),
            (FileResult::Completed, 0),
            "{file:?}: {report:?}"
        );
    }
    let stays = |gold: &BTreeMap<String, GoldRows>| {
        gold.get(MIMIC).map_or(0, |g| {
            g.hospital_monthly.iter().map(|r| r.stays).sum::<i64>()
        })
    };
    lake.lake.refresh_gold().await.unwrap();
    // THEN no admission is a stay: their classes are MIMIC's own codes, not v3 ActCode IMP, and
    // the ICU encounters (v3 ActCode ACUTE) are parts of admissions, never stays
    assert_eq!(
        stays(&read_gold(&lake.lake.services.lake).await.unwrap()),
        0
    );

    // AND every silver table holds exactly the distinct resources of the files
    for (table, kind) in [
        (SilverTable::Patient, "Patient"),
        (SilverTable::Encounter, "Encounter"),
        (SilverTable::Condition, "Condition"),
        (SilverTable::Organization, "Organization"),
    ] {
        let ids: BTreeSet<&str> = of_kind(kind).map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(lake.rows(table).await.len(), ids.len(), "{kind}");
    }
    // AND each condition keeps all of its codings in MIMIC's ICD code systems
    let conditions = lake.rows(SilverTable::Condition).await;
    for source in of_kind("Condition") {
        let key = pseudonym(MIMIC, "Condition", source["id"].as_str().unwrap());
        let row = conditions
            .iter()
            .find(|r| r["condition_key"] == key.as_str())
            .unwrap();
        let kept: Vec<(Option<String>, String)> =
            parse_codings_column(row["code_codings"].as_str().unwrap())
                .unwrap()
                .into_iter()
                .map(|c| (c.system, c.code))
                .collect();
        let written: Vec<(Option<String>, String)> = source["code"]["coding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["system"].as_str().map(str::to_owned),
                    c["code"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(kept, written);
    }

    // WHEN the tenant's profile is added and gold refreshed again
    let profiles = lake.path().join("config/tenants");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(profiles.join(format!("{MIMIC}.json")), &profile_text).unwrap();
    lake.lake.refresh_gold().await.unwrap();
    let gold = read_gold(&lake.lake.services.lake).await.unwrap();
    // THEN the stays are the top-level admissions of the profile's classes
    assert_eq!(stays(&gold), admissions.len() as i64);
    // AND all of them are at the one hospital, by its name: the ICU encounters without a
    // serviceProvider add no "unknown" hospital
    let hospital = of_kind("Organization").next().unwrap();
    let hospital_id = pseudonym(MIMIC, "Organization", hospital["id"].as_str().unwrap());
    let monthly = &gold[MIMIC].hospital_monthly;
    for row in monthly {
        assert_eq!(
            (row.hospital_id.as_str(), row.hospital_name.as_str()),
            (hospital_id.as_str(), hospital["name"].as_str().unwrap())
        );
    }
    // AND the measures are those of the files, on Boston's clock (by hand): LOS 1 + 2 + 4 + 8 + 1;
    // the patient readmitted 19 days after a discharge; the patient whose death date is the day
    // of discharge; no infection, because MIMIC's diagnoses carry no onset or recorded date, so
    // none can be placed on day 3 or later of its stay
    let total = |f: fn(&HospitalMonth) -> i64| monthly.iter().map(f).sum::<i64>();
    assert_eq!(total(|r| r.patient_days), 16);
    assert_eq!(total(|r| r.readmissions_30d), 1);
    assert_eq!(total(|r| r.deaths_30d), 1);
    assert_eq!(total(|r| r.hai_count), 0);
}
