//! The generator's in-memory model. It holds only what the metrics and the
//! JSON writers need; names, addresses and other decoration are derived from
//! the resource id when written (see `decor`).

use crate::time::Ts;
use crate::vocab::{CODES, ENCOUNTER_TYPES};

/// A UUID-shaped identifier (written as 36 lowercase hex characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub u128);

impl Id {
    /// Forces the version-4 / RFC 4122 variant bits onto random bits.
    pub fn from_random(raw: u128) -> Id {
        let v = (raw & !(0xF_u128 << 76)) | (0x4_u128 << 76);
        Id((v & !(0x3_u128 << 62)) | (0x2_u128 << 62))
    }

    /// Writes the canonical 8-4-4-4-12 lowercase form.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 36];
        let mut pos = 0;
        for i in 0..32 {
            if matches!(i, 8 | 12 | 16 | 20) {
                buf[pos] = b'-';
                pos += 1;
            }
            buf[pos] = HEX[((self.0 >> (124 - 4 * i)) & 0xF) as usize];
            pos += 1;
        }
        out.extend_from_slice(&buf);
    }

    /// Parses the canonical hyphenated form (any case).
    pub fn parse(s: &str) -> Option<Id> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return None;
        }
        let mut v: u128 = 0;
        for (i, &c) in b.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return None;
                }
                continue;
            }
            let d = (c as char).to_digit(16)?;
            v = (v << 4) | u128::from(d);
        }
        Some(Id(v))
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut v = Vec::with_capacity(36);
        self.write_to(&mut v);
        f.write_str(std::str::from_utf8(&v).map_err(|_| std::fmt::Error)?)
    }
}

/// `meta.versionId` and `meta.lastUpdated` (Unix milliseconds, UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub version: u32,
    pub last_updated_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deceased {
    Alive,
    /// `deceasedDateTime`.
    At(Ts),
    /// `deceasedBoolean: true` without a date.
    Unknown,
}

impl Deceased {
    pub fn date_time(&self) -> Option<Ts> {
        match self {
            Deceased::At(t) => Some(*t),
            _ => None,
        }
    }
}

/// Encounter.class codes (v3 ActCode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncClass {
    Imp,
    Acute,
    Nonac,
    Emer,
    Amb,
}

impl EncClass {
    pub fn code(self) -> &'static str {
        match self {
            EncClass::Imp => "IMP",
            EncClass::Acute => "ACUTE",
            EncClass::Nonac => "NONAC",
            EncClass::Emer => "EMER",
            EncClass::Amb => "AMB",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            EncClass::Imp => "inpatient encounter",
            EncClass::Acute => "inpatient acute",
            EncClass::Nonac => "inpatient non-acute",
            EncClass::Emer => "emergency",
            EncClass::Amb => "ambulatory",
        }
    }

    pub fn from_code(code: &str) -> Option<EncClass> {
        Some(match code {
            "IMP" => EncClass::Imp,
            "ACUTE" => EncClass::Acute,
            "NONAC" => EncClass::Nonac,
            "EMER" => EncClass::Emer,
            "AMB" => EncClass::Amb,
            _ => return None,
        })
    }

    /// The inpatient classes of the metric definitions.
    pub fn is_inpatient(self) -> bool {
        matches!(self, EncClass::Imp | EncClass::Acute | EncClass::Nonac)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncStatus {
    Finished,
    InProgress,
    Cancelled,
}

impl EncStatus {
    pub fn code(self) -> &'static str {
        match self {
            EncStatus::Finished => "finished",
            EncStatus::InProgress => "in-progress",
            EncStatus::Cancelled => "cancelled",
        }
    }

    /// `completed` (R5 spelling) maps to `Finished`.
    pub fn from_code(code: &str) -> Option<EncStatus> {
        Some(match code {
            "finished" | "completed" => EncStatus::Finished,
            "in-progress" => EncStatus::InProgress,
            "cancelled" => EncStatus::Cancelled,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patient {
    pub id: Id,
    /// Day number of birthDate.
    pub birth_date: i64,
    pub deceased: Deceased,
    pub meta: Meta,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encounter {
    pub id: Id,
    pub class: EncClass,
    pub status: EncStatus,
    pub start: Ts,
    pub end: Option<Ts>,
    /// Index into the tenant's hospitals (serviceProvider).
    pub hospital: usize,
    /// Index into `vocab::ENCOUNTER_TYPES`.
    pub kind: usize,
    /// Index into `vocab::DISCHARGE_DISPOSITIONS` (inpatient only).
    pub disposition: usize,
    pub meta: Meta,
}

impl Encounter {
    pub fn type_code(&self) -> &'static str {
        ENCOUNTER_TYPES[self.kind].0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub id: Id,
    /// Index into `vocab::CODES`.
    pub code: usize,
    pub verification: Verification,
    /// Index into the owning record's `encounters`.
    pub encounter: Option<usize>,
    pub onset: Option<Ts>,
    pub recorded: Option<Ts>,
    pub abatement: Option<Ts>,
    pub meta: Meta,
}

impl Condition {
    /// An HAI-coded condition (refuted or not).
    pub fn is_hai(&self) -> bool {
        CODES[self.code].hai
    }
}

/// `Condition.verificationStatus`: a refuted or entered-in-error infection is no infection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    Confirmed,
    Refuted,
    EnteredInError,
}

impl Verification {
    pub fn code(self) -> &'static str {
        match self {
            Verification::Confirmed => "confirmed",
            Verification::Refuted => "refuted",
            Verification::EnteredInError => "entered-in-error",
        }
    }
}

/// One patient with everything that references it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatientRecord {
    pub patient: Patient,
    pub encounters: Vec<Encounter>,
    pub conditions: Vec<Condition>,
}

/// A hospital (Organization).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hospital {
    pub id: Id,
    /// Synthea identifier value (distinct from `id`).
    pub identifier: Id,
    pub name: String,
    pub street: String,
    pub city: &'static str,
    pub state: &'static str,
    pub postal_code: String,
    pub phone: String,
    pub meta: Meta,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trip_and_shape() {
        let id = Id::from_random(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        let s = id.to_string();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(Id::parse(&s), Some(id));
        assert_eq!(Id::parse("not-an-id"), None);
    }
}
