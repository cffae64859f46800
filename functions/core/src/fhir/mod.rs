//! FHIR R4 input: streaming file reader, the resource model, and the parse of one resource into a
//! record that still carries source ids (pseudonymised later, once the whole file's `urn:uuid`
//! references are known).

pub mod model;
pub mod reader;

use std::borrow::Cow;

pub use reader::{
    FileError, Item, LineCounts, Position, ReadLimits, is_splittable_ndjson, read_file,
    read_ndjson_run, resource_type_of,
};

use crate::deid::postal_prefix;
use crate::time::{parse_fhir_datetime, parse_fhir_year};

/// A reference as the source wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefTarget {
    /// `Type/id` (relative, absolute URL or with `/_history/n`).
    Literal { kind: &'static str, id: String },
    /// `urn:uuid:<uuid>`: a Bundle entry's `fullUrl`, resolved when the file is complete.
    Uuid(String),
    /// `Type?search`: a conditional reference (Synthea uses `Organization?identifier=sys|value`).
    Conditional { kind: &'static str, query: String },
}

/// FHIR's id rule: `[A-Za-z0-9\-\.]{1,64}`. It also rules out path traversal and separators.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && id != "."
        && id != ".."
}

/// Parses a reference that must point at a resource of type `expected`.
pub fn parse_reference(reference: &str, expected: &'static str) -> Result<RefTarget, String> {
    if let Some(uuid) = reference.strip_prefix("urn:uuid:") {
        return if uuid.is_empty() {
            Err(format!(
                "empty urn:uuid reference where {expected} expected"
            ))
        } else {
            Ok(RefTarget::Uuid(uuid.to_owned()))
        };
    }
    if let Some((kind, query)) = reference.split_once('?') {
        return if kind == expected && !query.is_empty() {
            Ok(RefTarget::Conditional {
                kind: expected,
                query: query.to_owned(),
            })
        } else {
            Err(format!(
                "conditional reference {reference:?} where {expected} expected"
            ))
        };
    }
    // The substring search only when an underscore is there at all (ids never have one): a
    // reference is parsed two or three times per resource.
    let history =
        memchr::memchr(b'_', reference.as_bytes()).and_then(|_| reference.find("/_history/"));
    let path = match history {
        Some(at) => &reference[..at],
        None => reference,
    };
    let mut segments = path.rsplit('/');
    let (id, kind) = (
        segments.next().unwrap_or_default(),
        segments.next().unwrap_or_default(),
    );
    if kind != expected {
        return Err(format!(
            "reference {reference:?} does not point to a {expected}"
        ));
    }
    if !is_valid_id(id) {
        return Err(format!("reference {reference:?} has no valid id"));
    }
    Ok(RefTarget::Literal {
        kind: expected,
        id: id.to_owned(),
    })
}

/// One coding of a CodeableConcept: its code and, when the source names one, its system.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CodingValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub code: String,
}

/// The lineage-free content of a source resource, before pseudonymisation.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Patient(PatientRecord),
    Encounter(EncounterRecord),
    Condition(ConditionRecord),
    Organization(OrganizationRecord),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Common {
    pub id: String,
    /// `meta.lastUpdated` (µs UTC), the precombine value; ingest time when absent.
    pub last_updated: Option<i64>,
    pub version_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PatientRecord {
    pub common: Common,
    pub gender: Option<String>,
    pub birth_year: Option<i32>,
    pub deceased: Option<bool>,
    pub deceased_at: Option<i64>,
    pub postal_prefix: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
    pub marital_status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct EncounterRecord {
    pub common: Common,
    pub patient: Option<RefTarget>,
    pub status: Option<String>,
    pub class_code: Option<String>,
    pub class_system: Option<String>,
    pub type_code: Option<String>,
    pub type_display: Option<String>,
    pub reason_code: Option<String>,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    pub hospital: Option<RefTarget>,
    pub hospital_name: Option<String>,
    pub discharge_disposition: Option<String>,
    /// The code system of `discharge_disposition` (HL7 discharge-disposition, NUBC, a local one).
    pub discharge_disposition_system: Option<String>,
    /// `partOf`: the encounter this one belongs to (its top-level stay, or a step towards it).
    pub part_of: Option<RefTarget>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConditionRecord {
    pub common: Common,
    pub patient: Option<RefTarget>,
    pub encounter: Option<RefTarget>,
    pub code_system: Option<String>,
    pub code: Option<String>,
    pub code_display: Option<String>,
    /// Every coding of `code` that has a code, in the resource's order: gold matches any of them.
    pub codings: Vec<CodingValue>,
    pub clinical_status: Option<String>,
    pub verification_status: Option<String>,
    pub category: Option<String>,
    pub onset_at: Option<i64>,
    pub abatement_at: Option<i64>,
    pub recorded_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct OrganizationRecord {
    pub common: Common,
    /// `system|value` of the first identifier: what conditional references name.
    pub identifier: Option<String>,
    pub name: Option<String>,
    pub type_code: Option<String>,
    pub active: Option<bool>,
    pub city: Option<String>,
    pub state: Option<String>,
}

impl Record {
    pub fn common(&self) -> &Common {
        match self {
            Record::Patient(r) => &r.common,
            Record::Encounter(r) => &r.common,
            Record::Condition(r) => &r.common,
            Record::Organization(r) => &r.common,
        }
    }

    pub fn resource_type(&self) -> &'static str {
        match self {
            Record::Patient(_) => "Patient",
            Record::Encounter(_) => "Encounter",
            Record::Condition(_) => "Condition",
            Record::Organization(_) => "Organization",
        }
    }
}

/// What one resource of a file turned out to be.
// Returned by value and moved straight into the file's record list: boxing the large variant would
// add an allocation per resource on the hot path for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Kept(Record),
    /// A resource type silver does not hold: counted, then skipped.
    Skipped(String),
}

/// Parses one resource's JSON text. `full_url` supplies the id of a Bundle entry without one.
/// The error is the reject reason.
pub fn parse_resource(raw: &str, full_url: Option<&str>) -> Result<Parsed, String> {
    let kind = resource_type_of(raw)?;
    let bad_field = |e: serde_json::Error| match e.classify() {
        serde_json::error::Category::Data => format!("{kind} has an invalid field: {e}"),
        _ => format!("not valid JSON: {e}"),
    };
    let record = match kind.as_ref() {
        "Patient" => Record::Patient(patient(
            serde_json::from_str(raw).map_err(bad_field)?,
            full_url,
        )?),
        "Encounter" => Record::Encounter(encounter(
            serde_json::from_str(raw).map_err(bad_field)?,
            full_url,
        )?),
        "Condition" => Record::Condition(condition(
            serde_json::from_str(raw).map_err(bad_field)?,
            full_url,
        )?),
        "Organization" => Record::Organization(organization(
            serde_json::from_str(raw).map_err(bad_field)?,
            full_url,
        )?),
        // The reader reads Bundles through (nested ones too) and never hands one on as a resource.
        "Bundle" => return Err("a Bundle where a single resource was expected".into()),
        other => {
            // FHIR type names are ASCII letters starting upper-case (`patient` is not one).
            let is_type_name = other.starts_with(|c: char| c.is_ascii_uppercase())
                && other.bytes().all(|b| b.is_ascii_alphabetic())
                && other.len() <= 64;
            if !is_type_name {
                return Err("resourceType is not a FHIR resource type name".into());
            }
            return Ok(Parsed::Skipped(other.to_owned()));
        }
    };
    Ok(Parsed::Kept(record))
}

fn common(
    kind: &str,
    id: Option<Cow<'_, str>>,
    meta: model::Meta<'_>,
    full_url: Option<&str>,
) -> Result<Common, String> {
    let id = match (id, full_url.and_then(|u| u.strip_prefix("urn:uuid:"))) {
        (Some(id), _) => id.into_owned(),
        (None, Some(uuid)) => uuid.to_owned(),
        (None, None) => return Err(format!("{kind} has no id")),
    };
    if !is_valid_id(&id) {
        return Err(format!("{kind} id is not a valid FHIR id"));
    }
    let last_updated = date_field(kind, "meta.lastUpdated", meta.last_updated.as_deref())?;
    Ok(Common {
        id,
        last_updated,
        version_id: owned(meta.version_id),
    })
}

fn date_field(kind: &str, name: &str, value: Option<&str>) -> Result<Option<i64>, String> {
    value
        .map(|text| parse_fhir_datetime(text).map_err(|e| format!("{kind}.{name}: {e}")))
        .transpose()
}

fn owned(value: Option<Cow<'_, str>>) -> Option<String> {
    value.map(Cow::into_owned)
}

fn reference(
    kind: &str,
    name: &str,
    value: Option<model::Reference<'_>>,
    expected: &'static str,
) -> Result<Option<RefTarget>, String> {
    match value.and_then(|r| r.reference) {
        Some(text) => parse_reference(&text, expected)
            .map(Some)
            .map_err(|e| format!("{kind}.{name}: {e}")),
        None => Ok(None),
    }
}

fn first_code(concept: Option<&model::CodeableConcept<'_>>) -> Option<String> {
    concept?.preferred()?.code.as_deref().map(str::to_owned)
}

fn patient(p: model::Patient<'_>, full_url: Option<&str>) -> Result<PatientRecord, String> {
    let common = common("Patient", p.id, p.meta, full_url)?;
    let birth_year = p
        .birth_date
        .as_deref()
        .map(|d| parse_fhir_year(d).map_err(|e| format!("Patient.birthDate: {e}")))
        .transpose()?;
    let deceased_at = date_field(
        "Patient",
        "deceasedDateTime",
        p.deceased_date_time.as_deref(),
    )?;
    let deceased = match (p.deceased_boolean, deceased_at) {
        (_, Some(_)) => Some(true),
        (flag, None) => flag,
    };
    // The home address: the first one (FHIR orders by preference in practice).
    let address = p.address.into_iter().next().unwrap_or_default();
    Ok(PatientRecord {
        common,
        gender: owned(p.gender),
        birth_year,
        deceased,
        deceased_at,
        postal_prefix: address
            .postal_code
            .as_deref()
            .map(postal_prefix)
            .filter(|s| !s.is_empty()),
        state: owned(address.state),
        country: owned(address.country),
        marital_status: first_code(p.marital_status.as_ref()),
    })
}

fn encounter(e: model::Encounter<'_>, full_url: Option<&str>) -> Result<EncounterRecord, String> {
    let common = common("Encounter", e.id, e.meta, full_url)?;
    let patient = reference("Encounter", "subject", e.subject, "Patient")?;
    if patient.is_none() {
        return Err("Encounter has no subject".into());
    }
    let period = e.period.unwrap_or_default();
    let period_start = date_field("Encounter", "period.start", period.start.as_deref())?;
    let period_end = date_field("Encounter", "period.end", period.end.as_deref())?;
    let service_provider = e.service_provider.unwrap_or_default();
    let hospital_name = owned(service_provider.display.clone());
    let hospital = reference(
        "Encounter",
        "serviceProvider",
        Some(model::Reference {
            reference: service_provider.reference,
            display: None,
        }),
        "Organization",
    )?;
    let part_of = reference("Encounter", "partOf", e.part_of, "Encounter")?;
    let kind = e.kind.first();
    let kind_coding = kind.and_then(model::CodeableConcept::preferred);
    let class = e.class.unwrap_or_default();
    let disposition = e
        .hospitalization
        .as_ref()
        .and_then(|h| h.discharge_disposition.as_ref())
        .and_then(model::CodeableConcept::preferred);
    Ok(EncounterRecord {
        common,
        patient,
        status: owned(e.status),
        class_code: owned(class.code),
        class_system: owned(class.system),
        type_code: kind_coding.and_then(|c| c.code.as_deref().map(str::to_owned)),
        type_display: kind_coding
            .and_then(|c| c.display.as_deref())
            .or(kind.and_then(|k| k.text.as_deref()))
            .map(str::to_owned),
        reason_code: first_code(e.reason_code.first()),
        period_start,
        period_end,
        hospital,
        hospital_name,
        discharge_disposition: disposition.and_then(|c| c.code.as_deref().map(str::to_owned)),
        discharge_disposition_system: disposition
            .and_then(|c| c.system.as_deref().map(str::to_owned)),
        part_of,
    })
}

fn condition(c: model::Condition<'_>, full_url: Option<&str>) -> Result<ConditionRecord, String> {
    let common = common("Condition", c.id, c.meta, full_url)?;
    let patient = reference("Condition", "subject", c.subject, "Patient")?;
    if patient.is_none() {
        return Err("Condition has no subject".into());
    }
    let encounter = reference("Condition", "encounter", c.encounter, "Encounter")?;
    let coding = c.code.as_ref().and_then(model::CodeableConcept::preferred);
    Ok(ConditionRecord {
        common,
        patient,
        encounter,
        code_system: coding.and_then(|c| c.system.as_deref().map(str::to_owned)),
        code: coding.and_then(|c| c.code.as_deref().map(str::to_owned)),
        code_display: coding
            .and_then(|c| c.display.as_deref())
            .or(c.code.as_ref().and_then(|k| k.text.as_deref()))
            .map(str::to_owned),
        codings: c
            .code
            .iter()
            .flat_map(|concept| &concept.coding)
            .filter_map(|coding| {
                Some(CodingValue {
                    system: coding.system.as_deref().map(str::to_owned),
                    code: coding.code.as_deref()?.to_owned(),
                })
            })
            .collect(),
        clinical_status: first_code(c.clinical_status.as_ref()),
        verification_status: first_code(c.verification_status.as_ref()),
        category: first_code(c.category.first()),
        // onset[x]: the dateTime, else the start of the period (DESIGN, "HAI").
        onset_at: match c.onset_date_time.as_deref() {
            Some(onset) => date_field("Condition", "onsetDateTime", Some(onset))?,
            None => date_field(
                "Condition",
                "onsetPeriod.start",
                c.onset_period.as_ref().and_then(|p| p.start.as_deref()),
            )?,
        },
        abatement_at: date_field(
            "Condition",
            "abatementDateTime",
            c.abatement_date_time.as_deref(),
        )?,
        recorded_at: date_field("Condition", "recordedDate", c.recorded_date.as_deref())?,
    })
}

fn organization(
    o: model::Organization<'_>,
    full_url: Option<&str>,
) -> Result<OrganizationRecord, String> {
    let common = common("Organization", o.id, o.meta, full_url)?;
    let address = o.address.into_iter().next().unwrap_or_default();
    let identifier = o.identifier.iter().find_map(|i| {
        Some(format!(
            "{}|{}",
            i.system.as_deref().unwrap_or_default(),
            i.value.as_deref()?
        ))
    });
    Ok(OrganizationRecord {
        common,
        identifier,
        name: owned(o.name),
        type_code: first_code(o.kind.first()),
        active: o.active,
        city: owned(address.city),
        state: owned(address.state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_reference_shape() {
        let literal = |k: &'static str, i: &str| RefTarget::Literal {
            kind: k,
            id: i.into(),
        };
        assert_eq!(
            parse_reference("Patient/123", "Patient").unwrap(),
            literal("Patient", "123")
        );
        assert_eq!(
            parse_reference("http://x.org/fhir/Patient/a-1", "Patient").unwrap(),
            literal("Patient", "a-1")
        );
        assert_eq!(
            parse_reference("Patient/9/_history/2", "Patient").unwrap(),
            literal("Patient", "9")
        );
        assert_eq!(
            parse_reference("urn:uuid:abc", "Patient").unwrap(),
            RefTarget::Uuid("abc".into())
        );
        assert_eq!(
            parse_reference("Organization?identifier=s|v", "Organization").unwrap(),
            RefTarget::Conditional {
                kind: "Organization",
                query: "identifier=s|v".into()
            }
        );
    }

    #[test]
    fn rejects_wrong_or_empty_references() {
        for bad in [
            "Patient/",
            "Observation/xyz",
            "Patient/../etc",
            "urn:uuid:",
            "nonsense",
            "Encounter?x=1",
        ] {
            assert!(parse_reference(bad, "Patient").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_synthea_patient_keeps_only_limited_data_set_fields() {
        let raw = r#"{"resourceType":"Patient","id":"p1","meta":{"lastUpdated":"2024-01-02T03:04:05.678+02:00","profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
            "extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[{"url":"text","valueString":"White"}]}],
            "identifier":[{"system":"http://hospital.smarthealthit.org","value":"MRN-1"}],
            "name":[{"use":"official","family":"Doe","given":["Jane"]}],"telecom":[{"system":"phone","value":"555-1234"}],
            "gender":"female","birthDate":"1980-06-15","deceasedDateTime":"2024-03-01T10:00:00-05:00",
            "address":[{"line":["1 Main St"],"city":"Boston","state":"MA","postalCode":"02139","country":"US"}],
            "maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M"}]},
            "futureField":{"anything":[1,2,3]}}"#;
        let Parsed::Kept(Record::Patient(p)) = parse_resource(raw, None).unwrap() else {
            panic!("not a patient")
        };
        assert_eq!(p.common.id, "p1");
        assert_eq!(p.birth_year, Some(1980));
        assert_eq!(p.deceased, Some(true));
        assert_eq!(p.postal_prefix.as_deref(), Some("021"));
        let text = format!("{p:?}");
        for phi in ["Doe", "Jane", "555-1234", "1 Main St", "Boston", "MRN-1"] {
            assert!(!text.contains(phi), "{phi} survived parsing");
        }
    }

    #[test]
    fn a_condition_keeps_every_coding_and_takes_its_onset_from_a_period() {
        // MIMIC-IV on FHIR codes diagnoses in its own ICD code systems; a hospital may add its own
        let raw = r#"{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p"},
            "code":{"coding":[{"system":"http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-diagnosis-icd10","code":"A419","display":"Sepsis"},
                              {"code":"LOCAL-7"},{"system":"http://snomed.info/sct","code":"91302008"},{"display":"no code"}],
                    "text":"sepsis"},
            "onsetPeriod":{"start":"2180-07-23T12:35:00-04:00","end":"2180-07-30"}}"#;
        let Parsed::Kept(Record::Condition(c)) = parse_resource(raw, None).unwrap() else {
            panic!("not a condition")
        };
        // The preferred coding is SNOMED CT; every coding with a code is kept, in order
        assert_eq!(c.code.as_deref(), Some("91302008"));
        let codings: Vec<(Option<&str>, &str)> = c
            .codings
            .iter()
            .map(|c| (c.system.as_deref(), c.code.as_str()))
            .collect();
        assert_eq!(
            codings,
            [
                (
                    Some("http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-diagnosis-icd10"),
                    "A419"
                ),
                (None, "LOCAL-7"),
                (Some("http://snomed.info/sct"), "91302008"),
            ]
        );
        assert_eq!(
            c.onset_at,
            Some(parse_fhir_datetime("2180-07-23T16:35:00Z").unwrap())
        );
    }

    #[test]
    fn a_bundle_entry_without_id_takes_its_full_url() {
        let raw = r#"{"resourceType":"Encounter","subject":{"reference":"urn:uuid:p"},"class":{"code":"IMP"}}"#;
        let Parsed::Kept(record) = parse_resource(raw, Some("urn:uuid:e-1")).unwrap() else {
            panic!()
        };
        assert_eq!(record.common().id, "e-1");
    }

    #[test]
    fn invalid_resources_get_reasons() {
        let cases = [
            (r#"{"resourceType":"Patient"}"#, "no id"),
            (
                r#"{"resourceType":"Patient","id":"../x"}"#,
                "not a valid FHIR id",
            ),
            (
                r#"{"resourceType":"Patient","id":"a","gender":5}"#,
                "invalid field",
            ),
            (
                r#"{"resourceType":"Encounter","id":"e","subject":{"reference":"Patient/1"},"period":{"start":"2023-02-30T10:00:00Z"}}"#,
                "impossible date",
            ),
            (
                r#"{"resourceType":"Condition","id":"c","subject":{"reference":"Observation/x"}}"#,
                "does not point to a Patient",
            ),
            (r#"{"resourceType":"Encounter","id":"e"}"#, "no subject"),
            (r#"{"id":"e"}"#, "no resourceType"),
        ];
        for (raw, reason) in cases {
            let error = parse_resource(raw, None).unwrap_err();
            assert!(error.contains(reason), "{raw}: {error}");
        }
    }

    #[test]
    fn other_resource_types_are_skipped() {
        let raw = r#"{"resourceType":"Observation","id":"o","code":{"text":5}}"#;
        assert_eq!(
            parse_resource(raw, None).unwrap(),
            Parsed::Skipped("Observation".into())
        );
    }
}
