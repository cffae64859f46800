//! Decoration that does not matter to the metrics (names, addresses,
//! telecom, ...), derived deterministically from the resource id so it need
//! not be stored in the model.

use crate::model::{Hospital, Id};
use crate::rng::{Rng, mix};
use crate::vocab::{
    FAMILY, FEMALE_GIVEN, LANGUAGE_WEIGHTS, MALE_GIVEN, MARITAL, RACE_WEIGHTS, STREET_SUFFIXES,
    STREETS, State,
};

fn rng_for(id: Id, salt: u64) -> Rng {
    Rng::new(mix((id.0 as u64) ^ salt, (id.0 >> 64) as u64))
}

pub struct PatientDecor {
    pub male: bool,
    pub given: &'static str,
    pub given_n: u32,
    pub middle: Option<&'static str>,
    pub family: &'static str,
    pub family_n: u32,
    pub prefix: &'static str,
    pub maiden_given: &'static str,
    pub maiden_family: &'static str,
    pub race: usize,
    pub hispanic: bool,
    pub marital: usize,
    pub language: usize,
    pub phone: (u32, u32),
    pub ssn: (u32, u32),
    pub street_no: u32,
    pub street: &'static str,
    pub street_suffix: &'static str,
    pub unit: Option<u32>,
    pub city: &'static str,
    pub birth_city: &'static str,
    pub zip: u32,
    pub lat: i64,
    pub lon: i64,
    pub multiple_birth: bool,
}

impl PatientDecor {
    pub fn new(id: Id, state: &'static State) -> Self {
        let mut r = rng_for(id, 0x0050_4154_4945_4e54);
        let male = r.chance(0.49);
        let given_list = if male { MALE_GIVEN } else { FEMALE_GIVEN };
        let marital = r.index(MARITAL.len());
        let prefix = match (male, marital) {
            (true, _) => "Mr.",
            (false, 0 | 3) => "Mrs.",
            (false, _) => "Ms.",
        };
        PatientDecor {
            male,
            given: r.pick(given_list),
            given_n: r.range(1, 999) as u32,
            middle: r.chance(0.4).then(|| r.pick(given_list)),
            family: r.pick(FAMILY),
            family_n: r.range(1, 999) as u32,
            prefix,
            maiden_given: r.pick(FEMALE_GIVEN),
            maiden_family: r.pick(FAMILY),
            race: r.weighted(RACE_WEIGHTS),
            hispanic: r.chance(0.15),
            marital,
            language: r.weighted(LANGUAGE_WEIGHTS),
            phone: (r.range(200, 999) as u32, r.range(0, 9999) as u32),
            ssn: (r.range(10, 99) as u32, r.range(1000, 9999) as u32),
            street_no: r.range(1, 9999) as u32,
            street: r.pick(STREETS),
            street_suffix: r.pick(STREET_SUFFIXES),
            unit: r.chance(0.2).then(|| r.range(1, 99) as u32),
            city: r.pick(state.cities),
            birth_city: r.pick(state.cities),
            zip: r.range(0, 999) as u32,
            lat: state.lat + r.range(-600_000, 600_000),
            lon: state.lon + r.range(-900_000, 900_000),
            multiple_birth: r.chance(0.02),
        }
    }
}

/// The practitioner attached to an encounter (one of a few per hospital).
pub struct Practitioner {
    pub id: Id,
    pub npi: u64,
    pub given: &'static str,
    pub family: &'static str,
}

impl Practitioner {
    pub fn for_encounter(encounter: Id, hospital: &Hospital) -> Self {
        let k = rng_for(encounter, 0x5052_4143).below(6);
        let mut r = rng_for(hospital.id, 0x4e50_4900 + k);
        let id = r.id();
        let male = r.chance(0.5);
        Practitioner {
            id,
            npi: 9_999_900_000 + r.below(100_000),
            given: r.pick(if male { MALE_GIVEN } else { FEMALE_GIVEN }),
            family: r.pick(FAMILY),
        }
    }
}

/// Whether a Condition carries an extra ICD-10-CM coding after the SNOMED
/// one (about a quarter of them).
pub fn condition_has_icd10(id: Id) -> bool {
    rng_for(id, 0x0049_4344_3130).below(4) == 0
}

/// Whether a Condition's code starts with a broader SNOMED CT coding
/// ("Infectious disease", not in the HAI value set) before its own: its
/// own is then the second SNOMED coding (about one in eight).
pub fn condition_has_broader_coding(id: Id) -> bool {
    rng_for(id, 0x4252_4f41_4452).below(8) == 0
}
