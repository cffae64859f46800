//! Parses what the generator wrote (like a loader would) and checks it
//! against the ground truth: silver counts, rejects and every metric.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use fhir_generator::metrics::MetricsAccumulator;
use fhir_generator::model::{
    Condition, Deceased, EncClass, EncStatus, Encounter, Hospital, Id, Meta, Patient,
    PatientRecord, Verification,
};
use fhir_generator::time::{parse_date, parse_datetime, parse_instant_ms};
use fhir_generator::vocab::{DISCHARGE_DISPOSITIONS, ENCOUNTER_TYPES, SNOMED, code_index};
use fhir_generator::{Config, Format, GroundTruth, Summary, generate, read_ground_truth};
use serde_json::Value;

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn read_maybe_gz(path: &Path) -> Vec<u8> {
    let raw = fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        raw
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Rec {
    Org {
        identifier: String,
        name: String,
    },
    Pat(Patient),
    Enc {
        enc: Encounter,
        patient: String,
        org: String,
    },
    Cond {
        cond: Condition,
        patient: String,
        encounter: Option<String>,
    },
}

#[derive(Default)]
struct Loaded {
    /// (type, id) -> (lastUpdated ms, record)
    rows: BTreeMap<(String, String), (i64, Rec)>,
    rejects: Vec<(String, String)>,
    /// Records seen (lines / bundle entries with a resource, incl. broken).
    records: u64,
    org_by_identifier: HashMap<String, String>,
    deletes: u64,
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = match p.parse::<usize>() {
            Ok(i) => cur.get(i)?,
            Err(_) => cur.get(*p)?,
        };
    }
    cur.as_str()
}

impl Loaded {
    /// Resolves a reference to (type, id).
    fn resolve(
        &self,
        r: &str,
        urns: &HashMap<String, (String, String)>,
    ) -> Option<(String, String)> {
        if r.starts_with("urn:uuid:") {
            return urns.get(r).cloned();
        }
        if let Some(q) = r.strip_prefix("Organization?identifier=") {
            let (_, value) = q.split_once('|')?;
            let id = self.org_by_identifier.get(value)?;
            return Some(("Organization".into(), id.clone()));
        }
        let (ty, id) = r.split_once('/')?;
        Id::parse(id)?;
        Some((ty.to_string(), id.to_string()))
    }

    fn reject(&mut self, file: &str, reason: &str) {
        self.rejects.push((file.to_string(), reason.to_string()));
    }

    fn delete(&mut self, url: &str) {
        let (ty, id) = url.split_once('/').unwrap();
        assert_eq!(ty, "Condition");
        assert!(
            self.rows
                .remove(&(ty.to_string(), id.to_string()))
                .is_some(),
            "delete of unknown {url}"
        );
        self.deletes += 1;
    }

    fn resource(&mut self, file: &str, v: &Value, urns: &HashMap<String, (String, String)>) {
        let ty = s(v, &["resourceType"]).unwrap().to_string();
        if ty == "Bundle" {
            for e in v["entry"].as_array().unwrap() {
                assert_eq!(s(e, &["request", "method"]), Some("DELETE"));
                self.delete(s(e, &["request", "url"]).unwrap());
            }
            return;
        }
        self.records += 1;
        let Some(id) = s(v, &["id"]) else {
            return self.reject(file, "missing-id");
        };
        let id = id.to_string();
        assert!(Id::parse(&id).is_some(), "id {id}");
        let lu = parse_instant_ms(s(v, &["meta", "lastUpdated"]).unwrap()).unwrap();
        let version: u32 = s(v, &["meta", "versionId"]).unwrap().parse().unwrap();
        let meta = Meta {
            version,
            last_updated_ms: lu,
        };
        let rec = match ty.as_str() {
            "Organization" => {
                let identifier = s(v, &["identifier", "0", "value"]).unwrap().to_string();
                assert_ne!(identifier, id);
                self.org_by_identifier
                    .insert(identifier.clone(), id.clone());
                Rec::Org {
                    identifier,
                    name: s(v, &["name"]).unwrap().to_string(),
                }
            }
            "Patient" => {
                let deceased = match (s(v, &["deceasedDateTime"]), v.get("deceasedBoolean")) {
                    (Some(t), _) => Deceased::At(parse_datetime(t).unwrap()),
                    (None, Some(Value::Bool(true))) => Deceased::Unknown,
                    _ => Deceased::Alive,
                };
                let birth_date = parse_date(s(v, &["birthDate"]).unwrap()).unwrap();
                assert!(s(v, &["name", "0", "family"]).is_some());
                Rec::Pat(Patient {
                    id: Id::parse(&id).unwrap(),
                    birth_date,
                    deceased,
                    meta,
                })
            }
            "Encounter" => {
                let start = s(v, &["period", "start"]).and_then(parse_datetime);
                let end = s(v, &["period", "end"]).map(parse_datetime);
                let (Some(start), false) = (start, matches!(end, Some(None))) else {
                    return self.reject(file, "invalid-datetime");
                };
                let patient = self
                    .resolve(s(v, &["subject", "reference"]).unwrap(), urns)
                    .unwrap();
                assert_eq!(patient.0, "Patient");
                let org = self
                    .resolve(s(v, &["serviceProvider", "reference"]).unwrap(), urns)
                    .unwrap();
                assert_eq!(org.0, "Organization");
                let kind = ENCOUNTER_TYPES
                    .iter()
                    .position(|t| Some(t.0) == s(v, &["type", "0", "coding", "0", "code"]))
                    .unwrap();
                let disposition = s(
                    v,
                    &[
                        "hospitalization",
                        "dischargeDisposition",
                        "coding",
                        "0",
                        "code",
                    ],
                )
                .map_or(usize::MAX, |c| {
                    DISCHARGE_DISPOSITIONS
                        .iter()
                        .position(|d| d.0 == c)
                        .unwrap()
                });
                let enc = Encounter {
                    id: Id::parse(&id).unwrap(),
                    class: EncClass::from_code(s(v, &["class", "code"]).unwrap()).unwrap(),
                    status: EncStatus::from_code(s(v, &["status"]).unwrap()).unwrap(),
                    start,
                    end: end.flatten(),
                    hospital: usize::MAX,
                    kind,
                    disposition,
                    meta,
                };
                Rec::Enc {
                    enc,
                    patient: patient.1,
                    org: org.1,
                }
            }
            "Condition" => {
                let subject = s(v, &["subject", "reference"]).and_then(|r| self.resolve(r, urns));
                let Some(("Patient", patient)) =
                    subject.as_ref().map(|(t, i)| (t.as_str(), i.clone()))
                else {
                    return self.reject(file, "invalid-reference");
                };
                let encounter =
                    s(v, &["encounter", "reference"]).map(|r| self.resolve(r, urns).unwrap().1);
                let codings = v["code"]["coding"].as_array().unwrap();
                // The condition's own SNOMED CT coding (a broader one may come first).
                let code = codings
                    .iter()
                    .filter(|c| c["system"] == SNOMED)
                    .find_map(|c| code_index(c["code"].as_str().unwrap()))
                    .unwrap();
                let verification = match v["verificationStatus"]["coding"][0]["code"].as_str() {
                    Some("confirmed") => Verification::Confirmed,
                    Some("refuted") => Verification::Refuted,
                    Some("entered-in-error") => Verification::EnteredInError,
                    other => panic!("unexpected verificationStatus {other:?}"),
                };
                let cond = Condition {
                    id: Id::parse(&id).unwrap(),
                    code,
                    verification,
                    encounter: None,
                    onset: s(v, &["onsetDateTime"]).map(|t| parse_datetime(t).unwrap()),
                    recorded: s(v, &["recordedDate"]).map(|t| parse_datetime(t).unwrap()),
                    abatement: s(v, &["abatementDateTime"]).map(|t| parse_datetime(t).unwrap()),
                    meta,
                };
                Rec::Cond {
                    cond,
                    patient,
                    encounter,
                }
            }
            other => panic!("unexpected resourceType {other}"),
        };
        let key = (ty, id);
        match self.rows.get(&key) {
            Some((old_lu, old)) if *old_lu > lu => {}
            Some((old_lu, old)) if *old_lu == lu => {
                assert_eq!(old, &rec, "same lastUpdated, different content: {key:?}")
            }
            _ => {
                self.rows.insert(key, (lu, rec));
            }
        }
    }

    fn load_tenant(root: &Path, tenant: &str) -> Loaded {
        let mut l = Loaded::default();
        for path in files_under(&root.join(tenant)) {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let bytes = read_maybe_gz(&path);
            let text = String::from_utf8(bytes).unwrap();
            if rel.contains(".ndjson") {
                for line in text.lines() {
                    assert!(!line.is_empty());
                    match serde_json::from_str::<Value>(line) {
                        Ok(v) => l.resource(&rel, &v, &HashMap::new()),
                        Err(_) => {
                            l.records += 1;
                            l.reject(&rel, "invalid-json");
                        }
                    }
                }
            } else {
                assert!(text.lines().count() > 5, "{rel} must be pretty-printed");
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["resourceType"], "Bundle");
                let entries = v["entry"].as_array().unwrap();
                let mut urns = HashMap::new();
                for e in entries {
                    if let (Some(full), Some(id), Some(ty)) = (
                        s(e, &["fullUrl"]),
                        s(e, &["resource", "id"]),
                        s(e, &["resource", "resourceType"]),
                    ) {
                        assert_eq!(full, format!("urn:uuid:{id}"));
                        assert!(
                            urns.insert(full.to_string(), (ty.to_string(), id.to_string()))
                                .is_none(),
                            "duplicate fullUrl in {rel}"
                        );
                    }
                }
                for e in entries {
                    match s(e, &["request", "method"]) {
                        Some("DELETE") => l.delete(s(e, &["request", "url"]).unwrap()),
                        Some("POST" | "PUT") => l.resource(&rel, &e["resource"], &urns),
                        other => panic!("bad method {other:?} in {rel}"),
                    }
                }
            }
        }
        l
    }
}

/// Loads every tenant, checks counts/rejects against the ground truth and
/// recomputes all metrics from the parsed data.
fn check_against_truth(dir: &Path, summary: &Summary) {
    // The file is exactly the serialized summary; reading it back works
    // (floats may differ by an ULP: serde_json parses without
    // float_roundtrip, so compare text here and integers below).
    let mut text = serde_json::to_vec_pretty(&summary.ground_truth).unwrap();
    text.push(b'\n');
    assert_eq!(fs::read(dir.join("ground-truth.json")).unwrap(), text);
    let back = read_ground_truth(dir).unwrap();
    assert_eq!(back.tenants.len(), summary.ground_truth.tenants.len());
    for (a, b) in back.tenants.iter().zip(&summary.ground_truth.tenants) {
        assert_eq!(
            (&a.resources, &a.rejects, &a.hai_by_code),
            (&b.resources, &b.rejects, &b.hai_by_code)
        );
        for (x, y) in a.hospital_monthly.iter().zip(&b.hospital_monthly) {
            assert_eq!(
                (x.stays, x.patient_days, x.hai_count),
                (y.stays, y.patient_days, y.hai_count)
            );
            assert!(
                (x.alos - y.alos).abs() < 1e-9
                    && (x.mortality_rate - y.mortality_rate).abs() < 1e-9
            );
        }
    }
    let gt = &summary.ground_truth;
    let mut records = 0;
    for t in &gt.tenants {
        let l = Loaded::load_tenant(dir, &t.tenant);
        records += l.records;
        let count = |ty: &str| l.rows.keys().filter(|k| k.0 == ty).count() as u64;
        assert_eq!(
            count("Organization"),
            t.resources.organization,
            "{}",
            t.tenant
        );
        assert_eq!(count("Patient"), t.resources.patient, "{}", t.tenant);
        assert_eq!(count("Encounter"), t.resources.encounter, "{}", t.tenant);
        assert_eq!(count("Condition"), t.resources.condition, "{}", t.tenant);
        assert_eq!(l.deletes, t.dirty.deleted);
        let mut got = l.rejects.clone();
        got.sort();
        let mut want: Vec<(String, String)> = t
            .rejects
            .iter()
            .map(|r| (r.file.clone(), r.reason.clone()))
            .collect();
        want.sort();
        assert_eq!(got, want, "{}", t.tenant);
        assert_eq!(t.rejected as usize, t.rejects.len());

        // Rebuild the model from silver and recompute the metrics.
        let hospitals: Vec<Hospital> = t
            .hospitals
            .iter()
            .map(|h| Hospital {
                id: Id::parse(&h.id).unwrap(),
                identifier: Id::parse(&h.identifier).unwrap(),
                name: h.name.clone(),
                street: String::new(),
                city: "",
                state: "",
                postal_code: String::new(),
                phone: String::new(),
                meta: Meta {
                    version: 1,
                    last_updated_ms: 0,
                },
            })
            .collect();
        for (k, (_, r)) in &l.rows {
            if let Rec::Org { identifier, name } = r {
                let h = t.hospitals.iter().find(|h| h.id == k.1).unwrap();
                assert_eq!((&h.identifier, &h.name), (identifier, name));
            }
        }
        let mut patients: BTreeMap<String, PatientRecord> = BTreeMap::new();
        for (_, r) in l.rows.values() {
            if let Rec::Pat(p) = r {
                patients.insert(
                    p.id.to_string(),
                    PatientRecord {
                        patient: p.clone(),
                        encounters: vec![],
                        conditions: vec![],
                    },
                );
            }
        }
        let mut enc_index: HashMap<String, usize> = HashMap::new();
        for (k, (_, r)) in &l.rows {
            if let Rec::Enc { enc, patient, org } = r {
                let mut enc = enc.clone();
                enc.hospital = t.hospitals.iter().position(|h| &h.id == org).unwrap();
                let p = patients
                    .get_mut(patient)
                    .expect("encounter of a missing patient");
                enc_index.insert(k.1.clone(), p.encounters.len());
                p.encounters.push(enc);
            }
        }
        for (_, r) in l.rows.values() {
            if let Rec::Cond {
                cond,
                patient,
                encounter,
            } = r
            {
                let mut cond = cond.clone();
                cond.encounter = encounter.as_ref().map(|e| enc_index[e]);
                patients
                    .get_mut(patient)
                    .expect("condition of a missing patient")
                    .conditions
                    .push(cond);
            }
        }
        let mut acc = MetricsAccumulator::new();
        for p in patients.values() {
            acc.add_patient(p);
        }
        let (monthly, hai, yearly) = acc.finish(&hospitals);
        assert_eq!(monthly, t.hospital_monthly, "{}", t.tenant);
        assert_eq!(hai, t.hai_by_code, "{}", t.tenant);
        assert_eq!(yearly, t.mortality_yearly, "{}", t.tenant);
    }
    assert_eq!(records, summary.resources);
    let files: Vec<PathBuf> = files_under(dir)
        .into_iter()
        .filter(|p| !p.ends_with("ground-truth.json"))
        .collect();
    assert_eq!(files.len(), summary.files);
    assert_eq!(
        files
            .iter()
            .map(|f| fs::metadata(f).unwrap().len())
            .sum::<u64>(),
        summary.bytes
    );
}

fn gen_into(config: &Config) -> (tempfile::TempDir, Summary) {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(config, dir.path()).unwrap();
    (dir, summary)
}

fn small(format: Format, dirty: bool) -> Config {
    Config {
        patients: 400,
        tenants: 3,
        seed: 7,
        format,
        gzip: false,
        dirty,
        patients_per_bundle: 25,
        tenant_clocks: Vec::new(),
    }
}

fn totals(gt: &GroundTruth) -> (u64, u64, u64, u64, u64) {
    let rows = gt.tenants.iter().flat_map(|t| &t.hospital_monthly);
    rows.fold((0, 0, 0, 0, 0), |a, r| {
        (
            a.0 + r.stays,
            a.1 + r.deaths_30d,
            a.2 + r.readmissions_30d,
            a.3 + r.hai_count,
            a.4 + r.index_stays,
        )
    })
}

#[test]
fn ndjson_clean_matches_truth() {
    let (dir, summary) = gen_into(&small(Format::Ndjson, false));
    check_against_truth(dir.path(), &summary);
    let gt = &summary.ground_truth;
    assert!(
        gt.tenants
            .iter()
            .all(|t| t.rejected == 0 && t.dirty == Default::default())
    );
    assert!(!dir.path().join("tenant-01/export-2").exists());
    let (stays, deaths, readm, hai, _) = totals(gt);
    assert!(
        stays > 200 && deaths > 0 && readm > 0 && hai > 0,
        "{stays} {deaths} {readm} {hai}"
    );
    assert_eq!(
        gt.tenants.iter().map(|t| t.resources.patient).sum::<u64>(),
        400
    );
}

#[test]
fn ndjson_dirty_matches_truth() {
    let (dir, summary) = gen_into(&small(Format::Ndjson, true));
    check_against_truth(dir.path(), &summary);
    for t in &summary.ground_truth.tenants {
        assert_eq!(t.rejected, 5);
        assert!(
            dir.path()
                .join(&t.tenant)
                .join("export-2/deleted/Bundle.ndjson")
                .exists()
        );
    }
    let d = summary
        .ground_truth
        .tenants
        .iter()
        .fold((0, 0, 0, 0), |a, t| {
            (
                a.0 + t.dirty.exact_duplicates,
                a.1 + t.dirty.newer_versions,
                a.2 + t.dirty.stale_versions,
                a.3 + t.dirty.deleted_hai,
            )
        });
    assert!(d.0 > 0 && d.1 > 0 && d.2 > 0 && d.3 > 0, "{d:?}");
    // The non-JSON line sits in the middle of Patient.ndjson.
    let text = fs::read_to_string(dir.path().join("tenant-02/export-1/Patient.ndjson")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let pos = lines
        .iter()
        .position(|l| serde_json::from_str::<Value>(l).is_err())
        .unwrap();
    assert!(pos > 10 && pos < lines.len() - 10);
    assert!(text.contains(r#"{"resourceType":"Patient", broken"#));
}

#[test]
fn bundle_clean_and_dirty_match_truth() {
    for dirty in [false, true] {
        let (dir, summary) = gen_into(&small(Format::Bundle, dirty));
        check_against_truth(dir.path(), &summary);
        let e1 = dir.path().join("tenant-01/export-1");
        assert!(e1.join("organizations.json").exists());
        assert!(e1.join("patients-000001.json").exists());
        let text = fs::read_to_string(e1.join("patients-000001.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "transaction");
        let entry = &v["entry"][0];
        assert_eq!(entry["request"]["method"], "POST");
        assert_eq!(entry["request"]["url"], "Patient");
        assert!(text.contains(r#""reference":"urn:uuid:"#));
        assert!(text.contains(r#""serviceProvider":{"reference":"Organization?identifier=https://github.com/synthetichealth/synthea|"#));
        let orgs: Value =
            serde_json::from_str(&fs::read_to_string(e1.join("organizations.json")).unwrap())
                .unwrap();
        assert_eq!(orgs["type"], "batch");
        assert_eq!(orgs["entry"][0]["request"]["method"], "PUT");
        if dirty {
            for t in &summary.ground_truth.tenants {
                assert_eq!(t.rejected, 4);
            }
            let del: Value = serde_json::from_str(
                &fs::read_to_string(dir.path().join("tenant-01/export-2/deletes.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(del["type"], "transaction");
            assert_eq!(del["entry"][0]["request"]["method"], "DELETE");
        }
    }
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn deterministic_for_a_seed() {
    for format in [Format::Ndjson, Format::Bundle] {
        let config = Config {
            patients: 150,
            tenants: 4,
            seed: 99,
            format,
            gzip: true,
            dirty: true,
            patients_per_bundle: 20,
            tenant_clocks: Vec::new(),
        };
        let (a, sa) = gen_into(&config);
        let (b, sb) = gen_into(&config);
        assert_eq!(sa, sb);
        assert_eq!(tree(a.path()), tree(b.path()));
        let (c, _) = gen_into(&Config {
            seed: 100,
            ..config.clone()
        });
        let (ta, tc) = (tree(a.path()), tree(c.path()));
        assert_ne!(ta, tc);
        assert_ne!(
            fs::read(a.path().join("ground-truth.json")).unwrap(),
            fs::read(c.path().join("ground-truth.json")).unwrap()
        );
    }
}

#[test]
fn gzip_decompresses_to_plain_output() {
    for format in [Format::Ndjson, Format::Bundle] {
        let plain_cfg = Config {
            patients: 120,
            tenants: 2,
            seed: 5,
            format,
            gzip: false,
            dirty: true,
            patients_per_bundle: 30,
            tenant_clocks: Vec::new(),
        };
        let (plain, sp) = gen_into(&plain_cfg);
        let (gz, sg) = gen_into(&Config {
            gzip: true,
            ..plain_cfg
        });
        check_against_truth(gz.path(), &sg);
        let pt = tree(plain.path());
        let gt = tree(gz.path());
        assert_eq!(pt.len(), gt.len());
        for ((pn, pb), (gn, _)) in pt.iter().zip(&gt) {
            if pn == "ground-truth.json" {
                continue;
            }
            assert_eq!(format!("{pn}.gz"), *gn);
            assert_eq!(&read_maybe_gz(&gz.path().join(gn)), pb, "{gn}");
        }
        let mut truth = sg.ground_truth.clone();
        truth.gzip = false;
        for t in &mut truth.tenants {
            for r in &mut t.rejects {
                r.file = r.file.strip_suffix(".gz").unwrap().to_string();
            }
        }
        assert_eq!(truth, sp.ground_truth);
    }
}

#[test]
fn tiny_and_uneven_inputs() {
    for (patients, tenants) in [(0, 1), (1, 3), (7, 2)] {
        for format in [Format::Ndjson, Format::Bundle] {
            let config = Config {
                patients,
                tenants,
                seed: 1,
                format,
                gzip: false,
                dirty: true,
                patients_per_bundle: 1,
                tenant_clocks: Vec::new(),
            };
            let (dir, summary) = gen_into(&config);
            check_against_truth(dir.path(), &summary);
            assert_eq!(summary.ground_truth.tenants.len(), tenants);
        }
    }
}

#[test]
fn refuses_bad_config_and_non_empty_dir() {
    let dir = tempfile::tempdir().unwrap();
    let err = generate(
        &Config {
            tenants: 0,
            ..Config::default()
        },
        dir.path(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    fs::write(dir.path().join("x"), "x").unwrap();
    let err = generate(
        &Config {
            patients: 1,
            ..Config::default()
        },
        dir.path(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
}

#[test]
fn cli_exit_codes() {
    let exe = env!("CARGO_BIN_EXE_fhir-generator");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = |args: &[&str]| std::process::Command::new(exe).args(args).output().unwrap();
    let ok = run(&[
        "--out",
        out.to_str().unwrap(),
        "--patients",
        "10",
        "--tenants",
        "2",
        "--format",
        "bundle",
    ]);
    assert_eq!(ok.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(
        stderr.contains("files") && stderr.contains("resources") && stderr.lines().count() == 1,
        "{stderr}"
    );
    // Same directory again: not empty.
    let again = run(&["--out", out.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    for bad in [
        vec!["--out", "x", "--tenants", "0"],
        vec!["--out", "x", "--format", "xml"],
        vec!["--out", "x", "--patients", "-3"],
        vec!["--out", "x", "--patients-per-bundle", "0"],
        vec!["--patients", "3"],
    ] {
        assert_eq!(run(&bad).status.code(), Some(2), "{bad:?}");
    }
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--out",
        "--patients",
        "--tenants",
        "--seed",
        "--format",
        "--gzip",
        "--dirty",
        "--patients-per-bundle",
    ] {
        assert!(help.contains(flag), "{flag}");
    }
    let blocked = dir.path().join("file");
    fs::write(&blocked, "x").unwrap();
    let io_err = run(&[
        "--out",
        blocked.join("sub").to_str().unwrap(),
        "--patients",
        "1",
    ]);
    assert_eq!(io_err.status.code(), Some(1));
}
