//! The parts of FHIR R4 resources that silver keeps, as borrowed serde structs.
//!
//! Only the fields MetricCare needs are declared; everything else in a resource (extensions,
//! narratives, names, telecom, US Core profiles, fields from newer versions) is skipped by serde
//! without being materialised. One struct per resource type so that a field name meaning different
//! things in different types (`name` is a string on Organization, a list on Patient) never clashes.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta<'a> {
    #[serde(borrow)]
    pub last_updated: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub version_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Coding<'a> {
    #[serde(borrow)]
    pub system: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub display: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CodeableConcept<'a> {
    #[serde(borrow, default)]
    pub coding: Vec<Coding<'a>>,
    #[serde(borrow)]
    pub text: Option<Cow<'a, str>>,
}

pub const SNOMED: &str = "http://snomed.info/sct";

impl<'a> CodeableConcept<'a> {
    /// The coding an analyst wants: SNOMED CT when present, else the first one.
    pub fn preferred(&self) -> Option<&Coding<'a>> {
        self.coding
            .iter()
            .find(|c| c.system.as_deref() == Some(SNOMED))
            .or_else(|| self.coding.first())
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Reference<'a> {
    #[serde(borrow)]
    pub reference: Option<Cow<'a, str>>,
    /// Used only for `Encounter.serviceProvider` (a hospital name); a subject's display is a
    /// patient's name and never leaves the parser.
    #[serde(borrow)]
    pub display: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Period<'a> {
    #[serde(borrow)]
    pub start: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub end: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address<'a> {
    #[serde(borrow)]
    pub city: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub state: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub postal_code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub country: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Identifier<'a> {
    #[serde(borrow)]
    pub system: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub value: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Patient<'a> {
    /// Declared so that a second `resourceType` is a duplicate field, not silently ignored.
    #[serde(default)]
    pub resource_type: Option<IgnoredAny>,
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub meta: Meta<'a>,
    #[serde(borrow)]
    pub gender: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub birth_date: Option<Cow<'a, str>>,
    pub deceased_boolean: Option<bool>,
    #[serde(borrow)]
    pub deceased_date_time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub address: Vec<Address<'a>>,
    #[serde(borrow)]
    pub marital_status: Option<CodeableConcept<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Hospitalization<'a> {
    #[serde(borrow, rename = "dischargeDisposition")]
    pub discharge_disposition: Option<CodeableConcept<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Encounter<'a> {
    /// Declared so that a second `resourceType` is a duplicate field, not silently ignored.
    #[serde(default)]
    pub resource_type: Option<IgnoredAny>,
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub meta: Meta<'a>,
    #[serde(borrow)]
    pub status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub class: Option<Coding<'a>>,
    #[serde(borrow, default, rename = "type")]
    pub kind: Vec<CodeableConcept<'a>>,
    #[serde(borrow)]
    pub subject: Option<Reference<'a>>,
    #[serde(borrow)]
    pub period: Option<Period<'a>>,
    #[serde(borrow)]
    pub service_provider: Option<Reference<'a>>,
    #[serde(borrow)]
    pub hospitalization: Option<Hospitalization<'a>>,
    #[serde(borrow, default)]
    pub reason_code: Vec<CodeableConcept<'a>>,
    /// The encounter this one is part of (an ICU or ward stay inside a hospital admission).
    #[serde(borrow)]
    pub part_of: Option<Reference<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition<'a> {
    /// Declared so that a second `resourceType` is a duplicate field, not silently ignored.
    #[serde(default)]
    pub resource_type: Option<IgnoredAny>,
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub meta: Meta<'a>,
    #[serde(borrow)]
    pub clinical_status: Option<CodeableConcept<'a>>,
    #[serde(borrow)]
    pub verification_status: Option<CodeableConcept<'a>>,
    #[serde(borrow, default)]
    pub category: Vec<CodeableConcept<'a>>,
    #[serde(borrow)]
    pub code: Option<CodeableConcept<'a>>,
    #[serde(borrow)]
    pub subject: Option<Reference<'a>>,
    #[serde(borrow)]
    pub encounter: Option<Reference<'a>>,
    #[serde(borrow)]
    pub onset_date_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub onset_period: Option<Period<'a>>,
    #[serde(borrow)]
    pub abatement_date_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub recorded_date: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization<'a> {
    /// Declared so that a second `resourceType` is a duplicate field, not silently ignored.
    #[serde(default)]
    pub resource_type: Option<IgnoredAny>,
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub meta: Meta<'a>,
    #[serde(borrow, default)]
    pub identifier: Vec<Identifier<'a>>,
    pub active: Option<bool>,
    #[serde(borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    pub kind: Vec<CodeableConcept<'a>>,
    #[serde(borrow, default)]
    pub address: Vec<Address<'a>>,
}
