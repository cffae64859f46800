//! Hand-written FHIR JSON. Every resource is appended to a byte buffer with
//! `emit!`; no intermediate `serde_json::Value`.

use crate::decor::{PatientDecor, Practitioner, condition_has_broader_coding, condition_has_icd10};
use crate::model::{Condition, Deceased, EncStatus, Encounter, Hospital, Id, Patient};
use crate::time::{Ts, write_date, write_instant_ms};
use crate::vocab::{
    CODES, DISCHARGE_DISPOSITIONS, ENCOUNTER_TYPES, ETHNICITIES, ICD10, LANGUAGES, MARITAL, RACES,
    SNOMED, SYNTHEA_SYSTEM, State,
};

/// Something that can be appended to the output buffer.
pub trait Emit {
    fn emit(&self, b: &mut Vec<u8>);
}

impl Emit for str {
    fn emit(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(self.as_bytes());
    }
}

impl Emit for [u8] {
    fn emit(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(self);
    }
}

impl Emit for String {
    fn emit(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(self.as_bytes());
    }
}

impl<T: Emit + ?Sized> Emit for &T {
    fn emit(&self, b: &mut Vec<u8>) {
        (**self).emit(b);
    }
}

impl Emit for Id {
    fn emit(&self, b: &mut Vec<u8>) {
        self.write_to(b);
    }
}

impl Emit for Ts {
    fn emit(&self, b: &mut Vec<u8>) {
        self.write_to(b);
    }
}

fn push_u64(b: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    b.extend_from_slice(&tmp[i..]);
}

impl Emit for u64 {
    fn emit(&self, b: &mut Vec<u8>) {
        push_u64(b, *self);
    }
}

impl Emit for u32 {
    fn emit(&self, b: &mut Vec<u8>) {
        push_u64(b, u64::from(*self));
    }
}

/// A day number written as `YYYY-MM-DD`.
pub struct Date(pub i64);

impl Emit for Date {
    fn emit(&self, b: &mut Vec<u8>) {
        write_date(b, self.0);
    }
}

/// Unix milliseconds written as an instant with milliseconds and `Z`.
pub struct Instant(pub i64);

impl Emit for Instant {
    fn emit(&self, b: &mut Vec<u8>) {
        write_instant_ms(b, self.0);
    }
}

/// Micro-units written as a decimal with six fraction digits.
pub struct Micro(pub i64);

impl Emit for Micro {
    fn emit(&self, b: &mut Vec<u8>) {
        if self.0 < 0 {
            b.push(b'-');
        }
        let a = self.0.unsigned_abs();
        push_u64(b, a / 1_000_000);
        b.push(b'.');
        Pad(a % 1_000_000, 6).emit(b);
    }
}

/// Zero-padded integer.
pub struct Pad(pub u64, pub usize);

impl Emit for Pad {
    fn emit(&self, b: &mut Vec<u8>) {
        let mut tmp = Vec::with_capacity(20);
        push_u64(&mut tmp, self.0);
        for _ in tmp.len()..self.1 {
            b.push(b'0');
        }
        b.extend_from_slice(&tmp);
    }
}

/// Appends every argument to the buffer in order.
macro_rules! emit {
    ($b:expr; $($x:expr),+ $(,)?) => {{
        let b: &mut Vec<u8> = $b;
        $( $crate::json::Emit::emit(&$x, b); )+
    }};
}

/// How references are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refs {
    /// Bulk NDJSON: `Patient/<id>`, `Organization/<id>`.
    Bulk,
    /// Inside a Synthea-style transaction Bundle: `urn:uuid:<id>` for
    /// Patient/Encounter, conditional references for Organization and
    /// Practitioner.
    BundleInternal,
    /// Bundle entries referring to resources of earlier files (export-2
    /// updates): `Patient/<id>`, conditional Organization references.
    BundleExternal,
}

impl Refs {
    fn local(self, b: &mut Vec<u8>, kind: &str, id: Id) {
        match self {
            Refs::BundleInternal => emit!(b; "urn:uuid:", id),
            Refs::Bulk | Refs::BundleExternal => emit!(b; kind, "/", id),
        }
    }
}

/// Tenant-wide context for writing.
pub struct Ctx<'a> {
    pub state: &'static State,
    pub hospitals: &'a [Hospital],
}

const US_CORE: &str = "http://hl7.org/fhir/us/core/StructureDefinition/";

fn meta(b: &mut Vec<u8>, version: u32, last_updated_ms: i64, profile: &str) {
    emit!(b; r#""meta":{"versionId":""#, version, r#"","lastUpdated":""#, Instant(last_updated_ms),
        r#"","profile":[""#, US_CORE, profile, r#""]}"#);
}

fn coding(b: &mut Vec<u8>, system: &str, code: &str, display: &str) {
    emit!(b; r#"{"system":""#, system, r#"","code":""#, code, r#"","display":""#, display, r#""}"#);
}

fn concept(b: &mut Vec<u8>, system: &str, code: &str, display: &str) {
    b.extend_from_slice(br#"{"coding":["#);
    coding(b, system, code, display);
    emit!(b; r#"],"text":""#, display, r#""}"#);
}

pub fn organization(b: &mut Vec<u8>, h: &Hospital) {
    emit!(b; r#"{"resourceType":"Organization","id":""#, h.id, r#"","#);
    meta(
        b,
        h.meta.version,
        h.meta.last_updated_ms,
        "us-core-organization",
    );
    emit!(b; r#","identifier":[{"system":""#, SYNTHEA_SYSTEM, r#"","value":""#, h.identifier,
        r#""}],"active":true,"type":["#);
    concept(
        b,
        "http://terminology.hl7.org/CodeSystem/organization-type",
        "prov",
        "Healthcare Provider",
    );
    emit!(b; r#"],"name":""#, h.name, r#"","telecom":[{"system":"phone","value":""#, h.phone,
        r#""}],"address":[{"line":[""#, h.street, r#""],"city":""#, h.city, r#"","state":""#, h.state,
        r#"","postalCode":""#, h.postal_code, r#"","country":"US"}]}"#);
}

/// `Mr. James123 Smith45`.
pub fn display_name(b: &mut Vec<u8>, d: &PatientDecor) {
    emit!(b; d.prefix, " ", d.given, d.given_n, " ", d.family, d.family_n);
}

pub fn patient(b: &mut Vec<u8>, p: &Patient, d: &PatientDecor, state: &State) {
    emit!(b; r#"{"resourceType":"Patient","id":""#, p.id, r#"","#);
    meta(b, p.meta.version, p.meta.last_updated_ms, "us-core-patient");
    emit!(b; r#","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Generated by <a href=\"https://github.com/synthetichealth/synthea\">Synthea</a>. "#);
    display_name(b, d);
    emit!(b; r#"</div>"},"extension":[{"url":""#, US_CORE, r#"us-core-race","extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":""#,
        RACES[d.race].0, r#"","display":""#, RACES[d.race].1, r#""}},{"url":"text","valueString":""#,
        RACES[d.race].1, r#""}]},"#);
    let eth = ETHNICITIES[usize::from(d.hispanic)];
    emit!(b; r#"{"url":""#, US_CORE, r#"us-core-ethnicity","extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":""#,
        eth.0, r#"","display":""#, eth.1, r#""}},{"url":"text","valueString":""#, eth.1, r#""}]},"#);
    emit!(b; r#"{"url":"http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName","valueString":""#,
        d.maiden_given, " ", d.maiden_family, r#""},{"url":""#, US_CORE, r#"us-core-birthsex","valueCode":""#,
        if d.male { "M" } else { "F" },
        r#""},{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthPlace","valueAddress":{"city":""#,
        d.birth_city, r#"","state":""#, state.name, r#"","country":"US"}}],"#);
    emit!(b; r#""identifier":[{"system":""#, SYNTHEA_SYSTEM, r#"","value":""#, p.id,
        r#""},{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR","display":"Medical Record Number"}],"text":"Medical Record Number"},"system":"http://hospital.smarthealthit.org","value":""#,
        p.id, r#""},{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"SS","display":"Social Security Number"}],"text":"Social Security Number"},"system":"http://hl7.org/fhir/sid/us-ssn","value":"999-"#,
        Pad(u64::from(d.ssn.0), 2), "-", Pad(u64::from(d.ssn.1), 4), r#""}],"#);
    emit!(b; r#""name":[{"use":"official","family":""#, d.family, d.family_n, r#"","given":[""#, d.given, d.given_n);
    if let Some(m) = d.middle {
        emit!(b; r#"",""#, m);
    }
    emit!(b; r#""],"prefix":[""#, d.prefix, r#""]}"#);
    if d.marital == 0 && !d.male {
        emit!(b; r#",{"use":"maiden","family":""#, d.maiden_family, r#"","given":[""#, d.given, d.given_n, r#""],"prefix":["Ms."]}"#);
    }
    emit!(b; r#"],"telecom":[{"system":"phone","value":"555-"#, Pad(u64::from(d.phone.0), 3), "-",
        Pad(u64::from(d.phone.1), 4), r#"","use":"home"},{"system":"email","value":""#);
    for c in d
        .given
        .bytes()
        .chain(std::iter::once(b'.'))
        .chain(d.family.bytes())
    {
        if c.is_ascii_alphabetic() || c == b'.' {
            b.push(c.to_ascii_lowercase());
        }
    }
    emit!(b; d.family_n, r#"@example.com"}],"gender":""#, if d.male { "male" } else { "female" },
        r#"","birthDate":""#, Date(p.birth_date), r#"""#);
    match p.deceased {
        Deceased::Alive => {}
        Deceased::At(t) => emit!(b; r#","deceasedDateTime":""#, t, r#"""#),
        Deceased::Unknown => emit!(b; r#","deceasedBoolean":true"#),
    }
    emit!(b; r#","address":[{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/geolocation","extension":[{"url":"latitude","valueDecimal":"#,
        Micro(d.lat), r#"},{"url":"longitude","valueDecimal":"#, Micro(d.lon), r#"}]}],"line":[""#,
        d.street_no, " ", d.street, " ", d.street_suffix);
    if let Some(u) = d.unit {
        emit!(b; " Unit ", u);
    }
    emit!(b; r#""],"city":""#, d.city, r#"","state":""#, state.code, r#"","postalCode":""#,
        state.zip_prefix, Pad(u64::from(d.zip), 3), r#"","country":"US"}],"maritalStatus":"#);
    let (mc, md) = MARITAL[d.marital];
    concept(
        b,
        "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
        mc,
        md,
    );
    emit!(b; r#","multipleBirthBoolean":"#, if d.multiple_birth { "true" } else { "false" },
        r#","communication":[{"language":"#);
    let (lc, ld) = LANGUAGES[d.language];
    concept(b, "urn:ietf:bcp:47", lc, ld);
    b.extend_from_slice(b"}]}");
}

fn service_provider(b: &mut Vec<u8>, h: &Hospital, refs: Refs) {
    match refs {
        Refs::Bulk => emit!(b; r#""serviceProvider":{"reference":"Organization/"#, h.id),
        Refs::BundleInternal | Refs::BundleExternal => emit!(b;
            r#""serviceProvider":{"reference":"Organization?identifier="#, SYNTHEA_SYSTEM, "|", h.identifier),
    }
    emit!(b; r#"","display":""#, h.name, r#""}"#);
}

fn period(b: &mut Vec<u8>, start: Ts, end: Option<Ts>) {
    emit!(b; r#""period":{"start":""#, start);
    if let Some(end) = end {
        emit!(b; r#"","end":""#, end);
    }
    b.extend_from_slice(br#""}"#);
}

pub fn encounter(
    b: &mut Vec<u8>,
    e: &Encounter,
    patient: Id,
    d: &PatientDecor,
    h: &Hospital,
    refs: Refs,
) {
    emit!(b; r#"{"resourceType":"Encounter","id":""#, e.id, r#"","#);
    meta(
        b,
        e.meta.version,
        e.meta.last_updated_ms,
        "us-core-encounter",
    );
    emit!(b; r#","identifier":[{"use":"official","system":""#, SYNTHEA_SYSTEM, r#"","value":""#, e.id,
        r#""}],"status":""#, e.status.code(),
        r#"","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":""#,
        e.class.code(), r#""},"type":["#);
    let (tc, td) = ENCOUNTER_TYPES[e.kind];
    concept(b, SNOMED, tc, td);
    b.extend_from_slice(br#"],"subject":{"reference":""#);
    refs.local(b, "Patient", patient);
    b.extend_from_slice(br#"","display":""#);
    display_name(b, d);
    b.extend_from_slice(br#""},"participant":[{"type":["#);
    concept(
        b,
        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
        "PPRF",
        "primary performer",
    );
    b.extend_from_slice(b"],");
    period(b, e.start, e.end);
    let pr = Practitioner::for_encounter(e.id, h);
    match refs {
        Refs::Bulk => emit!(b; r#","individual":{"reference":"Practitioner/"#, pr.id),
        _ => {
            emit!(b; r#","individual":{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|"#, pr.npi)
        }
    }
    emit!(b; r#"","display":"Dr. "#, pr.given, " ", pr.family, r#""}}],"#);
    period(b, e.start, e.end);
    if e.class.is_inpatient() && e.status == EncStatus::Finished {
        let (dc, dd) = DISCHARGE_DISPOSITIONS[e.disposition];
        b.extend_from_slice(br#","hospitalization":{"dischargeDisposition":"#);
        concept(b, "http://www.nubc.org/patient-discharge", dc, dd);
        b.push(b'}');
    }
    b.push(b',');
    service_provider(b, h, refs);
    b.push(b'}');
}

/// The broader SNOMED CT concept some Conditions carry before their own
/// code (not in the HAI value set: a condition is an HAI by its own code).
const BROADER_CODE: &str = "40733004";
const BROADER_DISPLAY: &str = "Infectious disease (disorder)";

pub fn condition(b: &mut Vec<u8>, c: &Condition, patient: Id, encounter: Option<Id>, refs: Refs) {
    emit!(b; r#"{"resourceType":"Condition","id":""#, c.id, r#"","#);
    meta(
        b,
        c.meta.version,
        c.meta.last_updated_ms,
        "us-core-condition-encounter-diagnosis",
    );
    emit!(b; r#","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":""#,
        if c.abatement.is_some() { "resolved" } else { "active" },
        r#""}]},"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":""#,
        c.verification.code(),
        r#""}]},"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"encounter-diagnosis","display":"Encounter Diagnosis"}]}],"code":{"coding":["#);
    let code = &CODES[c.code];
    if condition_has_broader_coding(c.id) {
        coding(b, SNOMED, BROADER_CODE, BROADER_DISPLAY);
        b.push(b',');
    }
    coding(b, SNOMED, code.code, code.display);
    if condition_has_icd10(c.id) {
        b.push(b',');
        coding(b, ICD10, code.icd10, code.icd10_display);
    }
    emit!(b; r#"],"text":""#, code.display, r#""},"subject":{"reference":""#);
    refs.local(b, "Patient", patient);
    b.extend_from_slice(br#""}"#);
    if let Some(enc) = encounter {
        b.extend_from_slice(br#","encounter":{"reference":""#);
        refs.local(b, "Encounter", enc);
        b.extend_from_slice(br#""}"#);
    }
    if let Some(t) = c.onset {
        emit!(b; r#","onsetDateTime":""#, t, r#"""#);
    }
    if let Some(t) = c.abatement {
        emit!(b; r#","abatementDateTime":""#, t, r#"""#);
    }
    if let Some(t) = c.recorded {
        emit!(b; r#","recordedDate":""#, t, r#"""#);
    }
    b.push(b'}');
}

/// Broken: a Patient without `id`.
pub fn junk_patient_without_id(b: &mut Vec<u8>, last_updated_ms: i64) {
    emit!(b; r#"{"resourceType":"Patient","meta":{"versionId":"1","lastUpdated":""#, Instant(last_updated_ms),
        r#""},"name":[{"use":"official","family":"Doe","given":["Jane"]}],"gender":"female","birthDate":"1970-01-01"}"#);
}

/// Broken: an inpatient Encounter whose period.start is `2023-02-30`.
pub fn junk_encounter_bad_date(
    b: &mut Vec<u8>,
    id: Id,
    last_updated_ms: i64,
    patient: Id,
    h: &Hospital,
    refs: Refs,
) {
    emit!(b; r#"{"resourceType":"Encounter","id":""#, id, r#"","meta":{"versionId":"1","lastUpdated":""#,
        Instant(last_updated_ms), r#""},"status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},"type":["#);
    concept(b, SNOMED, ENCOUNTER_TYPES[0].0, ENCOUNTER_TYPES[0].1);
    b.extend_from_slice(br#"],"subject":{"reference":""#);
    refs.local(b, "Patient", patient);
    b.extend_from_slice(
        br#""},"period":{"start":"2023-02-30T10:00:00Z","end":"2023-03-04T10:00:00Z"},"#,
    );
    service_provider(b, h, refs);
    b.push(b'}');
}

/// Broken: an HAI Condition whose subject reference is malformed.
pub fn junk_condition_bad_subject(
    b: &mut Vec<u8>,
    id: Id,
    last_updated_ms: i64,
    subject: &str,
    encounter: Option<Id>,
    onset: Ts,
    refs: Refs,
) {
    emit!(b; r#"{"resourceType":"Condition","id":""#, id, r#"","meta":{"versionId":"1","lastUpdated":""#,
        Instant(last_updated_ms), r#""},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"code":"#);
    concept(b, SNOMED, CODES[0].code, CODES[0].display);
    emit!(b; r#","subject":{"reference":""#, subject, r#""}"#);
    if let Some(enc) = encounter {
        b.extend_from_slice(br#","encounter":{"reference":""#);
        refs.local(b, "Encounter", enc);
        b.extend_from_slice(br#""}"#);
    }
    emit!(b; r#","onsetDateTime":""#, onset, r#""}"#);
}

/// Broken: a line that is not JSON.
pub const NOT_JSON: &str = r#"{"resourceType":"Patient", broken"#;
