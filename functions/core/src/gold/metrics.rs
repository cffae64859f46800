//! The CMS quality metrics, exactly as `docs/metrics.md` (and DESIGN.md) define them, computed from
//! one tenant's silver rows. Pure functions: no I/O, so every edge case is a unit test.
//!
//! `fhir-generator` evaluates the same definitions on its own in-memory model to write the ground
//! truth. The two implementations are kept apart on purpose: a test that compares gold with the
//! ground truth only means something if the expected numbers do not come from this code.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::fast_hash::FastMap;
use crate::fhir::CodingValue;
use crate::profile::TenantProfile;

/// The hospital-acquired infection value set: codes (system and code) and their displays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HaiValueSet {
    pub codes: Vec<HaiCode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HaiCode {
    pub system: String,
    pub code: String,
    pub display: String,
}

/// ICD-10-CM: its codes are written with a dot (`A41.9`) or without (`A419`); both match.
const ICD_10_CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";

/// A value set file: each code's `system`, or one `system` for all of them (the older format).
#[derive(Deserialize)]
struct ValueSetFile {
    system: Option<String>,
    codes: Vec<ValueSetFileCode>,
}

#[derive(Deserialize)]
struct ValueSetFileCode {
    system: Option<String>,
    code: String,
    display: Option<String>,
}

impl HaiValueSet {
    /// The value set shipped with MetricCare (`functions/core/hai-value-set.json`).
    pub fn builtin() -> Self {
        Self::from_json(include_str!("../../hai-value-set.json"))
            .expect("the shipped value set is valid")
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let invalid = |message: String| CoreError::Config(format!("HAI value set: {message}"));
        let file: ValueSetFile = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if file.codes.is_empty() {
            return Err(invalid("no codes".into()));
        }
        let codes = file
            .codes
            .into_iter()
            .enumerate()
            .map(|(index, c)| {
                let system = c.system.or_else(|| file.system.clone()).ok_or_else(|| {
                    invalid(format!(
                        "codes[{index}] has no system (and the set has none)"
                    ))
                })?;
                Ok(HaiCode {
                    display: c.display.unwrap_or_else(|| c.code.clone()),
                    system,
                    code: c.code,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { codes })
    }

    /// Whether a coding (system and code) is listed.
    pub fn lists(&self, system: Option<&str>, code: &str) -> bool {
        self.position(system, code).is_some()
    }

    /// Where in `codes` the code a coding matches (system and code) is listed, if it is.
    fn position(&self, system: Option<&str>, code: &str) -> Option<usize> {
        let system = system?;
        let same = |listed: &str| {
            if system == ICD_10_CM {
                listed
                    .bytes()
                    .filter(|b| *b != b'.')
                    .eq(code.bytes().filter(|b| *b != b'.'))
            } else {
                listed == code
            }
        };
        self.codes
            .iter()
            .position(|c| c.system == system && same(&c.code))
    }
}

/// What gold needs of a patient: the death date, when there is one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientFacts {
    pub deceased_at: Option<i64>,
}

/// An encounter as gold reads it, borrowed from the silver columns (no copy per row).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncounterFacts<'a> {
    pub encounter_key: &'a str,
    pub patient_key: &'a str,
    pub status: Option<&'a str>,
    pub class_code: Option<&'a str>,
    pub class_system: Option<&'a str>,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    pub hospital_key: Option<&'a str>,
    pub hospital_name: Option<&'a str>,
    /// The encounter this one is part of: an encounter with one is never a stay; its conditions
    /// count for the stay at the top of its chain.
    pub part_of_key: Option<&'a str>,
    pub discharge_disposition: Option<&'a str>,
    pub discharge_disposition_system: Option<&'a str>,
}

impl<'a> EncounterFacts<'a> {
    /// The encounter this one is part of. A `partOf` naming the encounter itself (the HL7 R4
    /// example `f203` has one) is no parent: "part of itself" says nothing.
    fn parent(&self) -> Option<&'a str> {
        self.part_of_key
            .filter(|parent| *parent != self.encounter_key)
    }

    /// Whether [`compute`] reads this encounter with `profile`: a stay, or part of another (a
    /// condition recorded in it may count for the stay at the top of its chain). The others (a
    /// tenant's outpatient visits, most of its encounters) need not be kept.
    pub fn counts(&self, profile: &TenantProfile) -> bool {
        self.parent().is_some() || stay_period(self, profile).is_some()
    }
}

/// A condition as the infection measure reads it (see [`ConditionFacts::infection`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConditionFacts {
    pub encounter_key: Option<String>,
    /// `entered-in-error` and `refuted` conditions are not infections.
    pub verification_status: Option<String>,
    /// Every coding of the condition's code: it is an HAI when any of them is in the value set.
    pub codings: Vec<CodingValue>,
    pub onset_at: Option<i64>,
    pub recorded_at: Option<i64>,
}

impl ConditionFacts {
    /// The condition as a possible infection, if it can be one: not refuted nor entered in error,
    /// recorded in an encounter, with a coding in `value_set` and a time. A tenant holds hundreds
    /// of thousands of these while gold runs, so they are reduced to this much.
    pub fn infection(&self, value_set: &HaiValueSet) -> Option<Infection> {
        if self
            .verification_status
            .as_deref()
            .is_some_and(|status| NOT_AN_INFECTION.contains(&status))
        {
            return None;
        }
        Some(Infection {
            encounter_key: self.encounter_key.as_deref()?.into(),
            // Counted under the first of its codings that is listed.
            listed: self
                .codings
                .iter()
                .find_map(|coding| value_set.position(coding.system.as_deref(), &coding.code))?
                as u32,
            onset_at: self.onset_at.or(self.recorded_at)?,
        })
    }
}

/// A condition that is an infection if its onset falls inside a stay ([`ConditionFacts::infection`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Infection {
    pub encounter_key: Box<str>,
    /// Its code's position in the value set.
    pub listed: u32,
    /// The onset, else the recorded time.
    pub onset_at: i64,
}

/// One tenant's silver content, reduced to what the metrics read; patients, encounters and
/// organizations borrowed from the silver columns they were read from. Keys are unique within a
/// tenant (they are silver's record keys, de-duplicated by the table's merge).
#[derive(Debug, Clone, Default)]
pub struct TenantSilver<'a> {
    /// Patients with a death date (the others have nothing gold reads).
    pub patients: FastMap<&'a str, PatientFacts>,
    pub encounters: Vec<EncounterFacts<'a>>,
    /// The conditions that may be infections under the tenant's value set.
    pub infections: Vec<Infection>,
    /// Organization name by `organization_key` and by `identifier_key`.
    pub hospital_names: FastMap<&'a str, &'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HospitalMonth {
    pub hospital_id: String,
    pub hospital_name: String,
    pub month: String,
    pub stays: i64,
    /// 30-day deaths of the episodes counted here (at their first hospital, in the month of their
    /// first discharge).
    pub deaths_30d: i64,
    /// Episodes whose first stay is this hospital's and was discharged this month: the mortality
    /// denominator.
    pub mortality_episodes: i64,
    pub mortality_rate: f64,
    /// Index episodes whose last stay is this hospital's and was discharged this month.
    pub index_stays: i64,
    pub readmissions_30d: i64,
    pub readmission_rate: f64,
    pub patient_days: i64,
    pub alos: f64,
    pub hai_count: i64,
    pub hai_stays: i64,
    pub hai_per_1000_patient_days: f64,
    /// Index episodes whose 30-day readmission window had not ended at the refresh.
    pub open_window_index: i64,
    /// Mortality episodes whose 30-day window had not ended at the refresh.
    pub open_window_mortality: i64,
    pub measure_version: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HaiByCode {
    pub month: String,
    pub system: String,
    pub code: String,
    pub display: String,
    pub count: i64,
    pub measure_version: i32,
}

/// 30-day mortality per year of the episodes' first discharge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MortalityYear {
    pub year: i32,
    pub episodes: i64,
    pub deaths: i64,
    pub rate: f64,
    pub measure_version: i32,
}

/// The measure definitions gold computes (DESIGN, "Gold (measures, version 2)"), on every row.
pub const MEASURE_VERSION: i32 = 2;

/// One stay and what gold counted for it: every number of the other gold tables (but the infections
/// by code) is a sum over these rows, so an analyst can see which stays make a rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StayDetail {
    pub stay_key: String,
    /// The stay that opens this stay's episode (its own key when it is the first).
    pub episode_key: String,
    pub patient_key: String,
    /// The hospital (its name is in `hospital_monthly`).
    pub hospital_id: String,
    /// `YYYY-MM` of the discharge.
    pub month: String,
    /// Local admission and discharge dates, days since 1970-01-01.
    pub admission_date: i32,
    pub discharge_date: i32,
    pub los: i64,
    /// On the first stay of an episode (null on the others): the episode's 30-day death, and
    /// whether its window had not ended at the refresh.
    pub died_30d: Option<bool>,
    pub mortality_window_open: Option<bool>,
    /// On the last stay of an episode (null on the others): whether the episode is an index
    /// episode, else why not (`died`, `discharged_expired`, `left_against_medical_advice`).
    pub index_episode: Option<bool>,
    pub exclusion_reason: Option<String>,
    /// On the last stay of an index episode: readmitted within 30 days, by which stay, and whether
    /// the window had not ended at the refresh.
    pub readmitted: Option<bool>,
    pub readmission_stay_key: Option<String>,
    pub readmission_window_open: Option<bool>,
    pub hai_count: i64,
    pub measure_version: i32,
}

/// A tenant's gold content, sorted deterministically.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GoldRows {
    pub hospital_monthly: Vec<HospitalMonth>,
    pub hai_by_code: Vec<HaiByCode>,
    pub mortality_yearly: Vec<MortalityYear>,
    /// Sorted by stay key.
    pub stay_detail: Vec<StayDetail>,
}

/// Counts summed over hospital-months (a hospital's, or a whole tenant's), with the rates they give.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub stays: i64,
    pub deaths_30d: i64,
    pub mortality_episodes: i64,
    pub index_stays: i64,
    pub readmissions_30d: i64,
    pub patient_days: i64,
    pub hai_count: i64,
    pub hai_stays: i64,
    pub open_window_index: i64,
    pub open_window_mortality: i64,
}

impl Totals {
    pub fn add(&mut self, row: &HospitalMonth) {
        self.stays += row.stays;
        self.deaths_30d += row.deaths_30d;
        self.mortality_episodes += row.mortality_episodes;
        self.index_stays += row.index_stays;
        self.readmissions_30d += row.readmissions_30d;
        self.patient_days += row.patient_days;
        self.hai_count += row.hai_count;
        self.hai_stays += row.hai_stays;
        self.open_window_index += row.open_window_index;
        self.open_window_mortality += row.open_window_mortality;
    }

    pub fn mortality_rate(&self) -> f64 {
        ratio(self.deaths_30d, self.mortality_episodes)
    }

    pub fn readmission_rate(&self) -> f64 {
        ratio(self.readmissions_30d, self.index_stays)
    }

    pub fn alos(&self) -> f64 {
        ratio(self.patient_days, self.stays)
    }

    pub fn hai_per_1000_patient_days(&self) -> f64 {
        ratio(self.hai_count * 1000, self.patient_days)
    }
}

/// The headline figures of a tenant, summed over all hospitals and months, with their rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    #[serde(flatten)]
    pub totals: Totals,
    pub mortality_rate: f64,
    pub readmission_rate: f64,
    pub alos: f64,
    pub hai_per_1000_patient_days: f64,
}

/// One hospital's figures over all months.
#[derive(Debug, Clone, PartialEq)]
pub struct HospitalTotals {
    pub hospital_id: String,
    pub hospital_name: String,
    pub totals: Totals,
}

impl GoldRows {
    /// Whether the sums (every table but the stay detail) equal `other`'s.
    pub fn same_sums(&self, other: &GoldRows) -> bool {
        self.hospital_monthly == other.hospital_monthly
            && self.hai_by_code == other.hai_by_code
            && self.mortality_yearly == other.mortality_yearly
    }

    pub fn headline(&self) -> Headline {
        let mut t = Totals::default();
        self.hospital_monthly.iter().for_each(|row| t.add(row));
        Headline {
            totals: t,
            mortality_rate: t.mortality_rate(),
            readmission_rate: t.readmission_rate(),
            alos: t.alos(),
            hai_per_1000_patient_days: t.hai_per_1000_patient_days(),
        }
    }

    /// Per hospital over all months, sorted by name.
    pub fn per_hospital(&self) -> Vec<HospitalTotals> {
        let mut by_id: BTreeMap<&str, HospitalTotals> = BTreeMap::new();
        for row in &self.hospital_monthly {
            by_id
                .entry(&row.hospital_id)
                .or_insert_with(|| HospitalTotals {
                    hospital_id: row.hospital_id.clone(),
                    hospital_name: row.hospital_name.clone(),
                    totals: Totals::default(),
                })
                .totals
                .add(row);
        }
        let mut list: Vec<HospitalTotals> = by_id.into_values().collect();
        list.sort_by(|a, b| {
            (&a.hospital_name, &a.hospital_id).cmp(&(&b.hospital_name, &b.hospital_id))
        });
        list
    }
}

pub fn ratio(numerator: i64, denominator: i64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

const FINISHED: [&str; 2] = ["finished", "completed"];

/// Conditions that are not infections whatever their code (`verificationStatus`).
const NOT_AN_INFECTION: [&str; 2] = ["entered-in-error", "refuted"];

/// NHSN's repeat infection timeframe: the onset day is day 1 of 14; another infection of the same
/// code for the same patient with its onset within them is the same infection.
const REPEAT_INFECTION_DAYS: i64 = 14;

/// Discharge dispositions that end a stay outside the readmission index, with the reason
/// `stay_detail` gives: the patient died, or left against medical advice. HL7's codes and the NUBC
/// patient discharge status codes (Synthea's and US claims'); a disposition recorded without a
/// system matches on its code.
const DISPOSITIONS_NOT_INDEX: [(&str, &[&str], &str); 6] = [
    (HL7_DISPOSITION, &["exp"], "discharged_expired"),
    (HL7_DISPOSITION, &["aadvice"], "left_against_medical_advice"),
    (NUBC, &["20", "40", "41", "42"], "discharged_expired"),
    (NUBC, &["07"], "left_against_medical_advice"),
    (NUBC_THO, &["20", "40", "41", "42"], "discharged_expired"),
    (NUBC_THO, &["07"], "left_against_medical_advice"),
];
const HL7_DISPOSITION: &str = "http://terminology.hl7.org/CodeSystem/discharge-disposition";
const NUBC: &str = "http://www.nubc.org/patient-discharge";
const NUBC_THO: &str = "https://www.nubc.org/CodeSystem/PatDischargeStatus";

/// Why a stay's discharge disposition keeps its episode out of the readmission index: the
/// patient died, or left against medical advice.
fn index_exclusion(encounter: &EncounterFacts<'_>) -> Option<&'static str> {
    let code = encounter.discharge_disposition?;
    let system = encounter.discharge_disposition_system;
    DISPOSITIONS_NOT_INDEX
        .iter()
        .find(|(listed, codes, _)| system.is_none_or(|s| s == *listed) && codes.contains(&code))
        .map(|(_, _, reason)| *reason)
}

const DAY_MICROS: i64 = 86_400_000_000;

/// The day of an instant at exactly midnight UTC: a FHIR date without a time (silver keeps
/// `2024-03-05` as its first instant, UTC) is that date wherever the facility is, not the evening
/// before in the Americas.
fn date_only_day(micros: i64) -> Option<i64> {
    (micros.rem_euclid(DAY_MICROS) == 0).then(|| micros.div_euclid(DAY_MICROS))
}

/// The calendar day (days since 1970-01-01) of an instant on the facility's clock (a date without
/// a time: [`date_only_day`]).
fn local_day(micros: i64, zone: chrono_tz::Tz) -> i64 {
    if let Some(day) = date_only_day(micros) {
        return day;
    }
    chrono::DateTime::from_timestamp_micros(micros).map_or_else(
        || micros.div_euclid(DAY_MICROS),
        |at| {
            let date = at.with_timezone(&zone).date_naive();
            i64::from(date.num_days_from_ce()) - 719_163
        },
    )
}

/// The facility's calendar: [`local_day`], with the zone's offset from UTC remembered per hour
/// (a million stays ask for two million days). An hour that starts and ends at the same offset has
/// it throughout (no zone changes its offset twice within an hour); an hour with a change is worked
/// out instant by instant.
struct Calendar {
    zone: chrono_tz::Tz,
    offsets: FastMap<i64, Option<i64>>,
}

impl Calendar {
    const HOUR: i64 = 3_600_000_000;

    fn new(zone: chrono_tz::Tz) -> Self {
        Self {
            zone,
            offsets: FastMap::default(),
        }
    }

    fn day(&mut self, micros: i64) -> i64 {
        if let Some(day) = date_only_day(micros) {
            return day;
        }
        let hour = micros.div_euclid(Self::HOUR);
        let zone = self.zone;
        // Instants chrono cannot place (hundreds of millennia away) have no offset: worked out
        // by `local_day` as it does for them.
        let offset = *self.offsets.entry(hour).or_insert_with(|| {
            let start = utc_offset(zone, hour.checked_mul(Self::HOUR)?)?;
            let last = hour
                .checked_add(1)?
                .checked_mul(Self::HOUR)?
                .checked_sub(1)?;
            let end = utc_offset(zone, last)?;
            (start == end).then_some(start)
        });
        match offset.and_then(|offset| micros.checked_add(offset)) {
            Some(local) => local.div_euclid(DAY_MICROS),
            None => local_day(micros, zone),
        }
    }
}

/// The zone's offset from UTC at an instant, in µs.
fn utc_offset(zone: chrono_tz::Tz, micros: i64) -> Option<i64> {
    use chrono::Offset;
    let at = chrono::DateTime::from_timestamp_micros(micros)?;
    Some(i64::from(at.with_timezone(&zone).offset().fix().local_minus_utc()) * 1_000_000)
}

/// The period of an encounter that is an inpatient stay as `profile` reads the tenant: at the top
/// of its chain, of an inpatient class, finished, with both ends, not ending before it starts.
fn stay_period(encounter: &EncounterFacts<'_>, profile: &TenantProfile) -> Option<(i64, i64)> {
    if encounter.parent().is_some() {
        return None;
    }
    let status = encounter.status?;
    let (start, end) = (encounter.period_start?, encounter.period_end?);
    let inpatient = profile.is_inpatient(encounter.class_system, encounter.class_code)
        && FINISHED.contains(&status)
        && end >= start;
    inpatient.then_some((start, end))
}

/// An inpatient stay with its local admission and discharge days, its discharge month, and its
/// patient and hospital as small numbers: every grouping below is on numbers, not on text keys.
struct Stay<'a> {
    encounter: &'a EncounterFacts<'a>,
    start: i64,
    end: i64,
    admission_day: i64,
    discharge_day: i64,
    month: i32,
    patient: u32,
    hospital: u32,
}

/// Numbers for text keys, in the order they are first seen.
#[derive(Default)]
struct Numbering<'a> {
    numbers: FastMap<&'a str, u32>,
    keys: Vec<&'a str>,
}

impl<'a> Numbering<'a> {
    fn number(&mut self, key: &'a str) -> u32 {
        let keys = &mut self.keys;
        *self.numbers.entry(key).or_insert_with(|| {
            keys.push(key);
            u32::try_from(keys.len() - 1).expect("fewer than 2^32 keys in a tenant")
        })
    }
}

/// The hospital of stays whose encounter names none.
const UNKNOWN_HOSPITAL: &str = "unknown";

/// A tenant's inpatient stays, in silver's order (reading the encounters and their keys in the
/// order they lie in memory), and the hospitals they name, numbered.
fn stays<'a>(
    silver: &'a TenantSilver<'a>,
    profile: &TenantProfile,
    calendar: &mut Calendar,
) -> (Vec<Stay<'a>>, Vec<&'a str>) {
    let mut patients = Numbering::default();
    let mut hospitals = Numbering::default();
    let stays = silver
        .encounters
        .iter()
        .filter_map(|encounter| {
            let (start, end) = stay_period(encounter, profile)?;
            let discharge_day = calendar.day(end);
            Some(Stay {
                encounter,
                start,
                end,
                admission_day: calendar.day(start),
                discharge_day,
                month: month_index(discharge_day),
                patient: patients.number(encounter.patient_key),
                hospital: hospitals.number(encounter.hospital_key.unwrap_or(UNKNOWN_HOSPITAL)),
            })
        })
        .collect();
    (stays, hospitals.keys)
}

#[derive(Default)]
struct Cell<'a> {
    hospital_name: Option<&'a str>,
    totals: Totals,
}

/// A calendar month as one number (year × 12 + month − 1): cells are keyed by it, not by text.
fn month_index(day: i64) -> i32 {
    let date = NaiveDate::from_num_days_from_ce_opt(day as i32 + 719_163).unwrap_or_default();
    date.year() * 12 + date.month0() as i32
}

/// `YYYY-MM` of a [`month_index`].
fn month_label(index: i32) -> String {
    format!(
        "{:04}-{:02}",
        index.div_euclid(12),
        index.rem_euclid(12) + 1
    )
}

/// Longest `partOf` chain followed to its top (an admission, a ward, a bed: real chains are short);
/// a longer one, or a cycle, has no top.
const MAX_PART_OF_DEPTH: usize = 16;

/// Each encounter that is part of another → the encounter at the top of its chain (one without
/// `partOf`), when the chain reaches one within [`MAX_PART_OF_DEPTH`] steps.
fn top_level_encounters<'a>(encounters: &[EncounterFacts<'a>]) -> FastMap<&'a str, &'a str> {
    let parent: FastMap<&str, &str> = encounters
        .iter()
        .filter_map(|e| Some((e.encounter_key, e.parent()?)))
        .collect();
    parent
        .keys()
        .filter_map(|&start| {
            let mut current = start;
            for _ in 0..=MAX_PART_OF_DEPTH {
                match parent.get(current) {
                    Some(&next) => current = next,
                    None => return Some((start, current)),
                }
            }
            None
        })
        .collect()
}

/// An infection in its stay's window: (patient, listed code, onset day, stay), numbers all.
type Onset = (u32, u32, i64, u32);

/// Each possible infection whose onset is in its stay's window (from day 3 of the stay to its
/// discharge day), as an [`Onset`]. A condition recorded in an encounter inside an admission (an
/// ICU stay) counts for the admission.
fn onsets(silver: &TenantSilver<'_>, stays: &[Stay<'_>], calendar: &mut Calendar) -> Vec<Onset> {
    if silver.infections.is_empty() {
        return Vec::new();
    }
    let top_level = top_level_encounters(&silver.encounters);
    let stay_numbers: FastMap<&str, u32> = (0u32..)
        .zip(stays)
        .map(|(number, s)| (s.encounter.encounter_key, number))
        .collect();
    let mut onsets = Vec::new();
    for infection in &silver.infections {
        let encounter = &*infection.encounter_key;
        let encounter = top_level.get(encounter).copied().unwrap_or(encounter);
        let Some(&number) = stay_numbers.get(encounter) else {
            continue;
        };
        let day = calendar.day(infection.onset_at);
        let s = &stays[number as usize];
        if s.admission_day + 2 <= day && day <= s.discharge_day {
            onsets.push((s.patient, infection.listed, day, number));
        }
    }
    onsets
}

/// The infections counted, as (stay, listed code): per patient and listed code, one whose onset
/// falls within the repeat infection timeframe of a counted one is the same infection.
fn count_hais(mut onsets: Vec<Onset>) -> Vec<(u32, u32)> {
    onsets.sort_unstable();
    let mut counted = Vec::new();
    let mut group = None;
    let mut window_end = i64::MIN;
    for (patient, listed, day, stay) in onsets {
        if group != Some((patient, listed)) {
            group = Some((patient, listed));
            window_end = i64::MIN;
        }
        if day >= window_end {
            counted.push((stay, listed));
            window_end = day + REPEAT_INFECTION_DAYS;
        }
    }
    counted
}

/// Stays chained by transfer: a run of the stays ordered by patient and admission, and the stay
/// discharged last (the episode's readmission is judged on it).
struct Episode {
    members: std::ops::Range<usize>,
    last: usize,
}

/// Stays chained by transfer (DESIGN, "Episode"): a patient's stays in admission order, where a
/// stay at another hospital admitted no later than the calendar day after the previous discharge
/// continues the previous stay's episode. Returns the stays' order (by patient, then admission)
/// that the episodes' members index, and the episodes, each patient's together.
fn episodes(stays: &[Stay<'_>]) -> (Vec<usize>, Vec<Episode>) {
    // Sorted as numbers, beside each other in memory; the key (behind a pointer) breaks ties only.
    let mut sorted: Vec<(u32, i64, i64, usize)> = (0..stays.len())
        .map(|index| {
            let s = &stays[index];
            (s.patient, s.start, s.end, index)
        })
        .collect();
    let key = |index: usize| stays[index].encounter.encounter_key;
    sorted.sort_unstable_by(|a, b| {
        (a.0, a.1, a.2)
            .cmp(&(b.0, b.1, b.2))
            .then_with(|| key(a.3).cmp(key(b.3)))
    });
    let order: Vec<usize> = sorted.into_iter().map(|(_, _, _, index)| index).collect();
    let mut episodes: Vec<Episode> = Vec::new();
    for (position, &index) in order.iter().enumerate() {
        let next = &stays[index];
        // "The previous discharge" is the episode's latest: a stay inside a longer one (a short
        // transfer record) does not end the episode.
        match episodes.last_mut() {
            Some(episode)
                if stays[episode.last].patient == next.patient
                    && next.hospital != stays[episode.last].hospital
                    && next.admission_day <= stays[episode.last].discharge_day + 1 =>
            {
                episode.members.end = position + 1;
                if next.end > stays[episode.last].end {
                    episode.last = index;
                }
            }
            _ => episodes.push(Episode {
                members: position..position + 1,
                last: index,
            }),
        }
    }
    (order, episodes)
}

/// The totals of the stay's hospital in its month, created with the hospital's name: the
/// organization's, else the smallest `serviceProvider` display (so that the name does not depend on
/// the order of the rows).
fn cell_for<'a, 'c>(
    cells: &'c mut FastMap<(u32, i32), Cell<'a>>,
    organization_names: &[Option<&'a str>],
    s: &Stay<'a>,
) -> &'c mut Totals {
    let cell = cells.entry((s.hospital, s.month)).or_default();
    let name = organization_names[s.hospital as usize].or(s.encounter.hospital_name);
    if let Some(name) = name
        && cell.hospital_name.is_none_or(|current| name < current)
    {
        cell.hospital_name = Some(name);
    }
    &mut cell.totals
}

/// The positions of `keys` in key order. The first eight bytes of each key, as one number, decide
/// almost every comparison (keys are hex pseudonyms) without following a pointer to the text.
fn key_order(keys: &[&str]) -> Vec<usize> {
    let prefix = |key: &str| {
        let mut bytes = [0_u8; 8];
        let len = key.len().min(8);
        bytes[..len].copy_from_slice(&key.as_bytes()[..len]);
        u64::from_be_bytes(bytes)
    };
    let mut order: Vec<(u64, usize)> = (0..keys.len()).map(|i| (prefix(keys[i]), i)).collect();
    order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| keys[a.1].cmp(keys[b.1])));
    order.into_iter().map(|(_, index)| index).collect()
}

/// Puts `items` in `order` in place: position `i` gets the item that was at `order[i]` (`order` is
/// a permutation). Each cycle of the permutation is followed once, one swap per item moved.
fn permute<T>(items: &mut [T], mut order: Vec<usize>) {
    const PLACED: usize = usize::MAX;
    for start in 0..items.len() {
        let mut at = start;
        while order[at] != PLACED {
            let from = std::mem::replace(&mut order[at], PLACED);
            if from == start {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

/// Computes a tenant's gold rows from its silver rows, read as its profile says, with the 30-day
/// windows that had not ended at `as_of` (µs since the epoch, UTC) flagged as open.
pub fn compute(silver: &TenantSilver<'_>, profile: &TenantProfile, as_of: i64) -> GoldRows {
    let mut calendar = Calendar::new(profile.time_zone);
    let (stays, hospitals) = stays(silver, profile, &mut calendar);
    let counted_hais = count_hais(onsets(silver, &stays, &mut calendar));
    let mut hai_counts = vec![0_i64; stays.len()];
    for &(stay, _) in &counted_hais {
        hai_counts[stay as usize] += 1;
    }

    let as_of_day = calendar.day(as_of);
    let mut death_day = |patient: &str| {
        silver
            .patients
            .get(patient)
            .and_then(|p| p.deceased_at)
            .map(|t| calendar.day(t))
    };
    // One detail row per stay; every number of the other tables is summed from these rows.
    let mut month_labels: FastMap<i32, String> = FastMap::default();
    let mut details: Vec<StayDetail> = stays
        .iter()
        .zip(&hai_counts)
        .map(|(s, &hai_count)| StayDetail {
            stay_key: s.encounter.encounter_key.to_owned(),
            episode_key: String::new(),
            patient_key: s.encounter.patient_key.to_owned(),
            hospital_id: hospitals[s.hospital as usize].to_owned(),
            month: month_labels
                .entry(s.month)
                .or_insert_with(|| month_label(s.month))
                .clone(),
            admission_date: s.admission_day as i32,
            discharge_date: s.discharge_day as i32,
            los: (s.discharge_day - s.admission_day).max(1),
            died_30d: None,
            mortality_window_open: None,
            index_episode: None,
            exclusion_reason: None,
            readmitted: None,
            readmission_stay_key: None,
            readmission_window_open: None,
            hai_count,
            measure_version: MEASURE_VERSION,
        })
        .collect();
    // Mortality on each episode's first stay, readmission on its last; a readmission is the first
    // episode of the same patient admitted within 30 days of the last discharge.
    let (order, episodes) = episodes(&stays);
    let first_of = |episode: &Episode| order[episode.members.start];
    let same_patient = |a: &Episode, b: &Episode| stays[a.last].patient == stays[b.last].patient;
    for patient_episodes in episodes.chunk_by(same_patient) {
        for episode in patient_episodes {
            let (first, last) = (&stays[first_of(episode)], &stays[episode.last]);
            let death = death_day(first.encounter.patient_key);
            for &index in &order[episode.members.clone()] {
                details[index].episode_key = first.encounter.encounter_key.to_owned();
            }
            let opening = &mut details[first_of(episode)];
            opening.died_30d = Some(
                death.is_some_and(|d| first.admission_day <= d && d <= first.admission_day + 30),
            );
            opening.mortality_window_open = Some(as_of_day <= first.admission_day + 30);
            let exclusion = if death.is_some_and(|d| d <= last.discharge_day) {
                Some("died")
            } else {
                index_exclusion(last.encounter)
            };
            let readmission = exclusion
                .is_none()
                .then(|| {
                    patient_episodes
                        .iter()
                        .map(|other| &stays[first_of(other)])
                        .filter(|next| {
                            next.start > last.end && next.admission_day <= last.discharge_day + 30
                        })
                        .min_by_key(|next| (next.start, next.encounter.encounter_key))
                })
                .flatten();
            let closing = &mut details[episode.last];
            closing.index_episode = Some(exclusion.is_none());
            closing.exclusion_reason = exclusion.map(str::to_owned);
            closing.readmitted = exclusion.is_none().then_some(readmission.is_some());
            closing.readmission_stay_key =
                readmission.map(|next| next.encounter.encounter_key.to_owned());
            closing.readmission_window_open = exclusion
                .is_none()
                .then_some(as_of_day <= last.discharge_day + 30);
        }
    }

    // The sums: per hospital and month, per year, per infection code.
    let organization_names: Vec<Option<&str>> = hospitals
        .iter()
        .map(|id| silver.hospital_names.get(id).copied())
        .collect();
    let mut cells: FastMap<(u32, i32), Cell<'_>> = FastMap::default();
    let mut yearly: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for (s, detail) in stays.iter().zip(&details) {
        let t = cell_for(&mut cells, &organization_names, s);
        t.stays += 1;
        t.patient_days += detail.los;
        t.hai_count += detail.hai_count;
        t.hai_stays += i64::from(detail.hai_count > 0);
        if let Some(died) = detail.died_30d {
            t.mortality_episodes += 1;
            t.deaths_30d += i64::from(died);
            t.open_window_mortality += i64::from(detail.mortality_window_open == Some(true));
            let y = yearly.entry(s.month.div_euclid(12)).or_default();
            y.0 += 1;
            y.1 += i64::from(died);
        }
        if let Some(index) = detail.index_episode {
            t.index_stays += i64::from(index);
            t.readmissions_30d += i64::from(detail.readmitted == Some(true));
            t.open_window_index += i64::from(detail.readmission_window_open == Some(true));
        }
    }
    let mut hai_rows: BTreeMap<(i32, &str, &str), (&str, i64)> = BTreeMap::new();
    for &(stay, listed) in &counted_hais {
        let listed = &profile.hai.codes[listed as usize];
        let row = hai_rows
            .entry((
                stays[stay as usize].month,
                listed.system.as_str(),
                listed.code.as_str(),
            ))
            .or_insert_with(|| (listed.display.as_str(), 0));
        row.1 += 1;
    }

    // In stay key order: the stays' positions are sorted, then the rows moved in place (a second
    // vector of a million rows would be a sixth of the refresh's peak).
    let keys: Vec<&str> = stays.iter().map(|s| s.encounter.encounter_key).collect();
    permute(&mut details, key_order(&keys));

    let mut hospital_monthly: Vec<HospitalMonth> = cells
        .into_iter()
        .map(|((hospital, month), c)| {
            let hospital_id = hospitals[hospital as usize];
            HospitalMonth {
                hospital_name: c.hospital_name.unwrap_or(hospital_id).to_owned(),
                hospital_id: hospital_id.to_owned(),
                month: month_label(month),
                stays: c.totals.stays,
                deaths_30d: c.totals.deaths_30d,
                mortality_episodes: c.totals.mortality_episodes,
                mortality_rate: c.totals.mortality_rate(),
                index_stays: c.totals.index_stays,
                readmissions_30d: c.totals.readmissions_30d,
                readmission_rate: c.totals.readmission_rate(),
                patient_days: c.totals.patient_days,
                alos: c.totals.alos(),
                hai_count: c.totals.hai_count,
                hai_stays: c.totals.hai_stays,
                hai_per_1000_patient_days: c.totals.hai_per_1000_patient_days(),
                open_window_index: c.totals.open_window_index,
                open_window_mortality: c.totals.open_window_mortality,
                measure_version: MEASURE_VERSION,
            }
        })
        .collect();
    hospital_monthly.sort_by(|a, b| {
        (&a.hospital_name, &a.hospital_id, &a.month).cmp(&(
            &b.hospital_name,
            &b.hospital_id,
            &b.month,
        ))
    });
    GoldRows {
        hospital_monthly,
        hai_by_code: hai_rows
            .into_iter()
            .map(|((month, system, code), (display, count))| HaiByCode {
                month: month_label(month),
                system: system.to_owned(),
                code: code.to_owned(),
                display: display.to_owned(),
                count,
                measure_version: MEASURE_VERSION,
            })
            .collect(),
        mortality_yearly: yearly
            .into_iter()
            .map(|(year, (episodes, deaths))| MortalityYear {
                year,
                episodes,
                deaths,
                rate: ratio(deaths, episodes),
                measure_version: MEASURE_VERSION,
            })
            .collect(),
        stay_detail: details,
    }
}

#[cfg(test)]
mod tests {
    //! Every number below is worked out by hand from the definitions in `docs/metrics.md`.

    use super::*;
    use crate::time::parse_fhir_datetime;

    /// No profile file: UTC, the default classes and the built-in HAI set.
    fn utc_profile() -> TenantProfile {
        TenantProfile::default_with(HaiValueSet::builtin())
    }

    /// Gold as of 2026: every 30-day window of the test data has ended.
    fn compute_later(silver: &TenantSilver, profile: &TenantProfile) -> GoldRows {
        compute(silver, profile, at("2026-01-01T00:00:00Z").unwrap())
    }

    fn at(text: &str) -> Option<i64> {
        Some(parse_fhir_datetime(text).unwrap())
    }

    fn stay<'a>(key: &'a str, patient: &'a str, start: &str, end: &str) -> EncounterFacts<'a> {
        EncounterFacts {
            encounter_key: key,
            patient_key: patient,
            status: Some("finished"),
            class_code: Some("IMP"),
            class_system: Some(crate::profile::ACT_CODE),
            period_start: at(start),
            period_end: at(end),
            hospital_key: Some("h1"),
            hospital_name: Some("General"),
            ..EncounterFacts::default()
        }
    }

    fn coding(system: &str, code: &str) -> CodingValue {
        CodingValue {
            system: Some(system.into()),
            code: code.into(),
        }
    }

    fn hai(
        encounter: &str,
        code: &str,
        onset: Option<&str>,
        recorded: Option<&str>,
    ) -> ConditionFacts {
        ConditionFacts {
            encounter_key: Some(encounter.into()),
            codings: vec![coding("http://snomed.info/sct", code)],
            onset_at: onset.and_then(at),
            recorded_at: recorded.and_then(at),
            ..ConditionFacts::default()
        }
    }

    fn silver<'a>(
        encounters: Vec<EncounterFacts<'a>>,
        deaths: &[(&'a str, &str)],
        conditions: Vec<ConditionFacts>,
    ) -> TenantSilver<'a> {
        let value_set = HaiValueSet::builtin();
        let mut silver = TenantSilver {
            encounters,
            infections: conditions
                .iter()
                .filter_map(|c| c.infection(&value_set))
                .collect(),
            ..TenantSilver::default()
        };
        for e in &silver.encounters {
            silver.patients.entry(e.patient_key).or_default();
        }
        for (patient, death) in deaths {
            silver.patients.insert(
                *patient,
                PatientFacts {
                    deceased_at: at(death),
                },
            );
        }
        silver
    }

    fn month<'a>(rows: &'a GoldRows, month: &str) -> &'a HospitalMonth {
        rows.hospital_monthly
            .iter()
            .find(|r| r.month == month)
            .expect("month present")
    }

    #[test]
    fn only_finished_inpatient_stays_with_both_dates_count_and_los_is_at_least_one() {
        let mut ambulatory = stay("amb", "p", "2024-01-05T10:00:00Z", "2024-01-05T11:00:00Z");
        ambulatory.class_code = Some("AMB");
        let mut open = stay("open", "p", "2024-01-06T10:00:00Z", "2024-01-06T11:00:00Z");
        open.period_end = None;
        let mut cancelled = stay("cx", "p", "2024-01-07T10:00:00Z", "2024-01-08T11:00:00Z");
        cancelled.status = Some("cancelled");
        let backwards = stay("back", "p", "2024-01-09T10:00:00Z", "2024-01-08T10:00:00Z");
        let mut acute = stay("acute", "q", "2024-01-10T08:00:00Z", "2024-01-13T08:00:00Z");
        acute.class_code = Some("ACUTE");
        acute.status = Some("completed");
        let same_day = stay("same", "r", "2024-01-20T08:00:00Z", "2024-01-20T18:00:00Z");
        let rows = compute_later(
            &silver(
                vec![ambulatory, open, cancelled, backwards, acute, same_day],
                &[],
                vec![],
            ),
            &utc_profile(),
        );
        let jan = month(&rows, "2024-01");
        // Two stays: 3 days (ACUTE, completed) and a same-day stay counted as 1 day.
        assert_eq!((jan.stays, jan.patient_days), (2, 4));
        assert_eq!(jan.alos, 2.0);
    }

    #[test]
    fn thirty_day_mortality_counts_deaths_from_admission_to_admission_plus_30() {
        let rows = compute_later(
            &silver(
                vec![
                    stay(
                        "a",
                        "dies-day-30",
                        "2024-03-01T10:00:00Z",
                        "2024-03-05T10:00:00Z",
                    ),
                    stay(
                        "b",
                        "dies-day-31",
                        "2024-03-01T10:00:00Z",
                        "2024-03-05T10:00:00Z",
                    ),
                    stay(
                        "c",
                        "dies-in-stay",
                        "2024-03-01T10:00:00Z",
                        "2024-03-03T10:00:00Z",
                    ),
                    stay(
                        "d",
                        "deceased-no-date",
                        "2024-03-01T10:00:00Z",
                        "2024-03-02T10:00:00Z",
                    ),
                ],
                &[
                    ("dies-day-30", "2024-03-31T23:00:00Z"),
                    ("dies-day-31", "2024-04-01T01:00:00Z"),
                    ("dies-in-stay", "2024-03-03T09:00:00Z"),
                ],
                vec![],
            ),
            &utc_profile(),
        );
        let march = month(&rows, "2024-03");
        assert_eq!((march.stays, march.deaths_30d), (4, 2));
        assert_eq!(march.mortality_rate, 0.5);
        // Dead at discharge (death on the discharge day) is not an index stay; the others are.
        assert_eq!(march.index_stays, 3);
        assert_eq!(
            rows.mortality_yearly,
            vec![MortalityYear {
                year: 2024,
                episodes: 4,
                deaths: 2,
                rate: 0.5,
                measure_version: MEASURE_VERSION,
            }]
        );
    }

    #[test]
    fn readmission_within_thirty_days_of_discharge_each_index_stay_judged_alone() {
        let rows = compute_later(
            &silver(
                vec![
                    // A chain: 1 → 2 after 30 days (counted), 2 → 3 after 10 days (counted), 3 alone.
                    stay(
                        "c1",
                        "chain",
                        "2024-05-01T10:00:00Z",
                        "2024-05-03T10:00:00Z",
                    ),
                    stay(
                        "c2",
                        "chain",
                        "2024-06-02T10:00:00Z",
                        "2024-06-04T10:00:00Z",
                    ),
                    stay(
                        "c3",
                        "chain",
                        "2024-06-14T10:00:00Z",
                        "2024-06-15T10:00:00Z",
                    ),
                    // Day 31 after discharge: not a readmission.
                    stay("l1", "late", "2024-05-01T10:00:00Z", "2024-05-03T10:00:00Z"),
                    stay("l2", "late", "2024-06-03T10:00:00Z", "2024-06-04T10:00:00Z"),
                    // Admitted the same day, but before the discharge time: not "after this discharge".
                    stay(
                        "o1",
                        "overlap",
                        "2024-05-10T08:00:00Z",
                        "2024-05-12T12:00:00Z",
                    ),
                    stay(
                        "o2",
                        "overlap",
                        "2024-05-12T09:00:00Z",
                        "2024-05-13T09:00:00Z",
                    ),
                ],
                &[],
                vec![],
            ),
            &utc_profile(),
        );
        // May discharges: c1 (readmitted by c2 on day +30), l1 (l2 on day +31: not), o1 (o2 starts
        // before o1 ends: not), o2 (nothing after it).
        let may = month(&rows, "2024-05");
        assert_eq!(
            (may.stays, may.index_stays, may.readmissions_30d),
            (4, 4, 1)
        );
        // June discharges: c2 (readmitted by c3 ten days later), c3 and l2 (nothing after them).
        let june = month(&rows, "2024-06");
        assert_eq!(
            (june.stays, june.index_stays, june.readmissions_30d),
            (3, 3, 1)
        );
    }

    #[test]
    fn hais_count_from_admission_plus_two_to_discharge_and_are_reported_by_code() {
        let rows = compute_later(
            &silver(
                vec![stay(
                    "s",
                    "p",
                    "2024-07-01T22:00:00Z",
                    "2024-07-10T10:00:00Z",
                )],
                &[],
                vec![
                    hai("s", "91302008", Some("2024-07-02T12:00:00Z"), None), // day +1: present on admission
                    hai("s", "91302008", Some("2024-07-03T00:30:00Z"), None), // day +2: counted
                    hai("s", "233604007", None, Some("2024-07-10T08:00:00Z")), // recordedDate, discharge day
                    hai("s", "233604007", Some("2024-07-11T08:00:00Z"), None), // after discharge
                    hai("s", "44054006", Some("2024-07-05T08:00:00Z"), None), // not in the value set
                    ConditionFacts {
                        codings: vec![coding("http://hl7.org/fhir/sid/icd-10-cm", "91302008")],
                        ..hai("s", "91302008", Some("2024-07-05T08:00:00Z"), None)
                    },
                ],
            ),
            &utc_profile(),
        );
        let july = month(&rows, "2024-07");
        // LOS 9 days, 2 HAIs on one stay: 2 * 1000 / 9.
        assert_eq!(
            (july.hai_count, july.hai_stays, july.patient_days),
            (2, 1, 9)
        );
        assert!((july.hai_per_1000_patient_days - 2000.0 / 9.0).abs() < 1e-12);
        let codes: Vec<(&str, i64)> = rows
            .hai_by_code
            .iter()
            .map(|r| (r.code.as_str(), r.count))
            .collect();
        assert_eq!(codes, vec![("233604007", 1), ("91302008", 1)]);
        assert_eq!(rows.hai_by_code[1].display, "Sepsis (disorder)");
    }

    #[test]
    fn an_infection_is_matched_on_any_coding_and_reported_under_the_first_that_matches() {
        // GIVEN a pneumonia coded first as a non-infection SNOMED CT concept, then with a local
        // code, then in ICD-10-CM; and a condition without any coding
        let pneumonia = ConditionFacts {
            codings: vec![
                coding("http://snomed.info/sct", "44054006"),
                CodingValue {
                    system: None,
                    code: "PNEU".into(),
                },
                coding("http://hl7.org/fhir/sid/icd-10-cm", "J18.9"),
            ],
            ..hai("s", "", Some("2024-07-05T08:00:00Z"), None)
        };
        let uncoded = ConditionFacts {
            codings: vec![],
            ..hai("s", "", Some("2024-07-05T08:00:00Z"), None)
        };
        // WHEN gold is computed with the built-in value set
        let rows = compute_later(
            &silver(
                vec![stay(
                    "s",
                    "p",
                    "2024-07-01T22:00:00Z",
                    "2024-07-10T10:00:00Z",
                )],
                &[],
                vec![pneumonia, uncoded],
            ),
            &utc_profile(),
        );
        // THEN the pneumonia counts once, under its ICD-10-CM code; the uncoded one not at all
        assert_eq!(month(&rows, "2024-07").hai_count, 1);
        let codes: Vec<(&str, &str)> = rows
            .hai_by_code
            .iter()
            .map(|r| (r.code.as_str(), r.display.as_str()))
            .collect();
        assert_eq!(codes, [("J18.9", "Pneumonia, unspecified organism")]);
    }

    #[test]
    fn refuted_and_entered_in_error_conditions_and_repeats_within_fourteen_days_are_not_counted() {
        // GIVEN two stays of one patient, 10 days apart, and a stay of another patient
        let first = stay("s1", "p", "2024-07-01T10:00:00Z", "2024-07-10T10:00:00Z");
        let second = stay("s2", "p", "2024-07-20T10:00:00Z", "2024-07-30T10:00:00Z");
        let other = stay("o", "q", "2024-07-01T10:00:00Z", "2024-07-10T10:00:00Z");
        let with_status = |status: &str, condition: ConditionFacts| ConditionFacts {
            verification_status: Some(status.into()),
            ..condition
        };
        let conditions = vec![
            // A refuted and an entered-in-error sepsis on day 3: not infections
            with_status(
                "refuted",
                hai("s1", "91302008", Some("2024-07-03T12:00:00Z"), None),
            ),
            with_status(
                "entered-in-error",
                hai("s1", "91302008", Some("2024-07-03T12:00:00Z"), None),
            ),
            // Sepsis on 4 July (counted, window to 17 July), again on 9 July (the same infection)
            with_status(
                "confirmed",
                hai("s1", "91302008", Some("2024-07-04T12:00:00Z"), None),
            ),
            hai("s1", "91302008", Some("2024-07-09T12:00:00Z"), None),
            // A pneumonia on 9 July: another code, counted
            hai("s1", "233604007", Some("2024-07-09T12:00:00Z"), None),
            // Sepsis on 17 July would be day 14 of the window; the next stay's on 22 July is
            // outside it: a new infection, counted
            hai("s2", "91302008", Some("2024-07-22T12:00:00Z"), None),
            // The other patient's sepsis on 4 July: their own, counted
            hai("o", "91302008", Some("2024-07-04T12:00:00Z"), None),
        ];
        // WHEN gold is computed
        let rows = compute_later(
            &silver(vec![first, second, other], &[], conditions),
            &utc_profile(),
        );
        // THEN four infections on three stays
        let july = month(&rows, "2024-07");
        assert_eq!((july.hai_count, july.hai_stays), (4, 3));
    }

    #[test]
    fn a_repeat_in_the_next_stay_is_the_same_infection() {
        // A sepsis on 8 July in a first stay, again on 15 July on day 4 of a readmission
        let rows = compute_later(
            &silver(
                vec![
                    stay("s1", "p", "2024-07-01T10:00:00Z", "2024-07-10T10:00:00Z"),
                    stay("s2", "p", "2024-07-12T10:00:00Z", "2024-07-25T10:00:00Z"),
                ],
                &[],
                vec![
                    hai("s1", "91302008", Some("2024-07-08T12:00:00Z"), None),
                    hai("s2", "91302008", Some("2024-07-15T12:00:00Z"), None),
                ],
            ),
            &utc_profile(),
        );
        assert_eq!(month(&rows, "2024-07").hai_count, 1);
    }

    #[test]
    fn the_fourteenth_day_of_the_repeat_window_is_a_repeat_and_the_fifteenth_is_not() {
        let stays = vec![stay(
            "s",
            "p",
            "2024-07-01T10:00:00Z",
            "2024-08-30T10:00:00Z",
        )];
        let sepsis = |day: &'static str| hai("s", "91302008", Some(day), None);
        // Onset 3 July: day 1 of its window; 16 July is day 14, 17 July day 15
        let rows = compute_later(
            &silver(
                stays,
                &[],
                vec![
                    sepsis("2024-07-03T12:00:00Z"),
                    sepsis("2024-07-16T12:00:00Z"),
                    sepsis("2024-07-17T12:00:00Z"),
                ],
            ),
            &utc_profile(),
        );
        assert_eq!(month(&rows, "2024-08").hai_count, 2);
    }

    #[test]
    fn a_stay_ending_in_death_or_against_medical_advice_is_no_index_stay() {
        // GIVEN four stays of four patients, each followed by a readmission 10 days later; the
        // first discharged home, the second expired (HL7) with no death date on the patient, the
        // third left against medical advice (NUBC 07), the fourth `aadvice` with no system
        let disposition = |key: &'static str,
                           patient: &'static str,
                           system: Option<&'static str>,
                           code: &'static str| EncounterFacts {
            discharge_disposition: Some(code),
            discharge_disposition_system: system,
            ..stay(key, patient, "2024-05-01T10:00:00Z", "2024-05-05T10:00:00Z")
        };
        let readmission = |key: &'static str, patient: &'static str| {
            stay(key, patient, "2024-05-15T10:00:00Z", "2024-05-18T10:00:00Z")
        };
        let hl7 = Some("http://terminology.hl7.org/CodeSystem/discharge-disposition");
        let encounters = vec![
            disposition("a", "p1", hl7, "home"),
            disposition("b", "p2", hl7, "exp"),
            disposition(
                "c",
                "p3",
                Some("http://www.nubc.org/patient-discharge"),
                "07",
            ),
            disposition("d", "p4", None, "aadvice"),
            // a local system's `07` is not NUBC's
            disposition("e", "p5", Some("http://hospital.example/disposition"), "07"),
            readmission("a2", "p1"),
            readmission("b2", "p2"),
            readmission("c2", "p3"),
            readmission("d2", "p4"),
            readmission("e2", "p5"),
        ];
        // WHEN gold is computed
        let rows = compute_later(&silver(encounters, &[], vec![]), &utc_profile());
        // THEN only the home discharge and the local code are index stays, both readmitted; the
        // readmissions are index stays, not readmitted
        let may = month(&rows, "2024-05");
        assert_eq!(
            (may.stays, may.index_stays, may.readmissions_30d),
            (10, 7, 2)
        );
    }

    /// A stay of `patient` at `hospital`.
    fn stay_at<'a>(
        key: &'a str,
        patient: &'a str,
        hospital: &'a str,
        start: &str,
        end: &str,
    ) -> EncounterFacts<'a> {
        EncounterFacts {
            hospital_key: Some(hospital),
            hospital_name: Some(hospital),
            ..stay(key, patient, start, end)
        }
    }

    /// (hospital, stays, mortality episodes, deaths, index episodes, readmissions) per row.
    fn episode_counts(rows: &GoldRows) -> Vec<(&str, i64, i64, i64, i64, i64)> {
        rows.hospital_monthly
            .iter()
            .map(|r| {
                (
                    r.hospital_id.as_str(),
                    r.stays,
                    r.mortality_episodes,
                    r.deaths_30d,
                    r.index_stays,
                    r.readmissions_30d,
                )
            })
            .collect()
    }

    #[test]
    fn a_transfer_chain_is_one_episode_for_mortality_and_readmission() {
        // GIVEN a patient moved from h1 to h2 on the day of discharge, on to h3 the day after,
        // then back at h1 13 days later; and a patient who died after a transfer from h1 to h2
        let encounters = vec![
            stay_at(
                "a",
                "p",
                "h1",
                "2024-03-01T10:00:00Z",
                "2024-03-05T09:00:00Z",
            ),
            stay_at(
                "b",
                "p",
                "h2",
                "2024-03-05T14:00:00Z",
                "2024-03-08T10:00:00Z",
            ),
            stay_at(
                "c",
                "p",
                "h3",
                "2024-03-09T20:00:00Z",
                "2024-03-12T10:00:00Z",
            ),
            stay_at(
                "d",
                "p",
                "h1",
                "2024-03-25T10:00:00Z",
                "2024-03-27T10:00:00Z",
            ),
            stay_at(
                "x",
                "q",
                "h1",
                "2024-03-01T10:00:00Z",
                "2024-03-03T10:00:00Z",
            ),
            stay_at(
                "y",
                "q",
                "h2",
                "2024-03-03T12:00:00Z",
                "2024-03-10T10:00:00Z",
            ),
        ];
        // WHEN gold is computed
        let rows = compute_later(
            &silver(encounters, &[("q", "2024-03-20T10:00:00Z")], vec![]),
            &utc_profile(),
        );
        // THEN every stay counts where it was; p's chain a-b-c is one episode: its mortality at h1,
        // its readmission (by d) at h3; d is an episode of its own; q's death (10 days after the
        // last discharge) counts once, at h1, and q's episode is an index episode of h2
        assert_eq!(
            episode_counts(&rows),
            [
                ("h1", 3, 3, 1, 1, 0),
                ("h2", 2, 0, 0, 1, 0),
                ("h3", 1, 0, 0, 1, 1),
            ]
        );
        assert_eq!(
            (
                rows.mortality_yearly[0].episodes,
                rows.mortality_yearly[0].deaths
            ),
            (3, 1)
        );
    }

    #[test]
    fn a_short_stay_inside_a_longer_one_does_not_end_its_episode() {
        // GIVEN a stay at h1 on 1-10 June with a 2-3 June record at h2 inside it, a death on 8
        // June, and a stay at h1 from 6 June (while the first one still runs)
        let encounters = vec![
            stay_at(
                "a",
                "p",
                "h1",
                "2024-06-01T10:00:00Z",
                "2024-06-10T10:00:00Z",
            ),
            stay_at(
                "b",
                "p",
                "h2",
                "2024-06-02T10:00:00Z",
                "2024-06-03T10:00:00Z",
            ),
            stay_at(
                "c",
                "q",
                "h1",
                "2024-06-01T10:00:00Z",
                "2024-06-10T10:00:00Z",
            ),
            stay_at(
                "d",
                "q",
                "h2",
                "2024-06-02T10:00:00Z",
                "2024-06-03T10:00:00Z",
            ),
            stay_at(
                "e",
                "q",
                "h1",
                "2024-06-06T10:00:00Z",
                "2024-06-07T10:00:00Z",
            ),
        ];
        let rows = compute_later(
            &silver(encounters, &[("p", "2024-06-08T10:00:00Z")], vec![]),
            &utc_profile(),
        );
        // THEN p's episode ends with a on 10 June: dead by then, so no index episode; q's episode
        // a-like (c, d) is judged on c, and e, inside c at the same hospital, readmits nothing
        let by_key: BTreeMap<&str, &StayDetail> = rows
            .stay_detail
            .iter()
            .map(|d| (d.stay_key.as_str(), d))
            .collect();
        assert_eq!(by_key["a"].index_episode, Some(false));
        assert_eq!(by_key["a"].exclusion_reason.as_deref(), Some("died"));
        assert_eq!(by_key["b"].index_episode, None);
        assert_eq!(by_key["c"].readmitted, Some(false));
        assert_eq!(by_key["d"].index_episode, None);
    }

    #[test]
    fn only_another_hospital_by_the_next_calendar_day_is_a_transfer() {
        // GIVEN a return to the same hospital the same day, and a move to another hospital two
        // days after a discharge
        let encounters = vec![
            stay_at(
                "a",
                "p",
                "h1",
                "2024-05-01T10:00:00Z",
                "2024-05-03T09:00:00Z",
            ),
            stay_at(
                "b",
                "p",
                "h1",
                "2024-05-03T18:00:00Z",
                "2024-05-06T10:00:00Z",
            ),
            stay_at(
                "c",
                "p",
                "h2",
                "2024-05-08T10:00:00Z",
                "2024-05-09T10:00:00Z",
            ),
        ];
        // WHEN gold is computed
        let rows = compute_later(&silver(encounters, &[], vec![]), &utc_profile());
        // THEN three episodes: a readmitted by b, b by c
        assert_eq!(
            episode_counts(&rows),
            [("h1", 2, 2, 0, 2, 2), ("h2", 1, 1, 0, 1, 0)]
        );
    }

    #[test]
    fn windows_that_had_not_ended_at_the_refresh_are_counted_as_open() {
        // GIVEN a stay admitted 1 March, discharged 5 March: its mortality window ends with 31
        // March, its readmission window with 4 April
        let data = silver(
            vec![stay(
                "s",
                "p",
                "2024-03-01T10:00:00Z",
                "2024-03-05T10:00:00Z",
            )],
            &[],
            vec![],
        );
        let open_at = |as_of: &'static str| {
            let rows = compute(&data, &utc_profile(), at(as_of).unwrap());
            let r = &rows.hospital_monthly[0];
            (r.open_window_mortality, r.open_window_index)
        };
        // THEN both are open on 20 March, the readmission window alone on 1-4 April, none after
        assert_eq!(open_at("2024-03-20T12:00:00Z"), (1, 1));
        assert_eq!(open_at("2024-03-31T23:00:00Z"), (1, 1));
        assert_eq!(open_at("2024-04-01T01:00:00Z"), (0, 1));
        assert_eq!(open_at("2024-04-04T23:00:00Z"), (0, 1));
        assert_eq!(open_at("2024-04-05T00:30:00Z"), (0, 0));
    }

    #[test]
    fn dates_are_utc_calendar_dates_and_a_stay_belongs_to_its_discharge_month() {
        let rows = compute_later(
            &silver(
                vec![
                    // Local 31 January evening is 1 February in UTC.
                    stay(
                        "tz",
                        "p",
                        "2024-01-29T10:00:00-05:00",
                        "2024-01-31T23:30:00-05:00",
                    ),
                    // Crosses the month boundary: reported in February.
                    stay("cross", "q", "2024-01-30T10:00:00Z", "2024-02-02T10:00:00Z"),
                ],
                &[],
                vec![],
            ),
            &utc_profile(),
        );
        assert_eq!(rows.hospital_monthly.len(), 1);
        let feb = month(&rows, "2024-02");
        // tz: 29 Jan → 1 Feb UTC = 3 days; cross: 30 Jan → 2 Feb = 3 days.
        assert_eq!((feb.stays, feb.patient_days), (2, 6));
    }

    #[test]
    fn encounters_part_of_an_admission_are_never_stays_and_their_infections_count_for_it() {
        // GIVEN an admission of 10 days, an ICU encounter inside it (no hospital of its own), a
        // bed inside the ICU, and two encounters that are part of each other (a cycle)
        let admission = stay("adm", "p", "2024-03-01T10:00:00Z", "2024-03-11T10:00:00Z");
        let part = |key: &'static str, parent: &'static str| EncounterFacts {
            hospital_key: None,
            hospital_name: None,
            part_of_key: Some(parent),
            ..stay(key, "p", "2024-03-03T10:00:00Z", "2024-03-05T10:00:00Z")
        };
        let encounters = vec![
            admission,
            part("icu", "adm"),
            part("bed", "icu"),
            part("loop-a", "loop-b"),
            part("loop-b", "loop-a"),
            // Part of itself: no parent, so a stay of its own (with no hospital).
            part("self", "self"),
        ];
        // AND a pneumonia recorded in the bed encounter on day 4, a sepsis in the ICU on day 3,
        // and one in the cycle
        let conditions = vec![
            hai("bed", "233604007", Some("2024-03-04T10:00:00Z"), None),
            hai("icu", "91302008", Some("2024-03-03T10:00:00Z"), None),
            hai("loop-a", "91302008", Some("2024-03-04T10:00:00Z"), None),
        ];
        // WHEN gold is computed
        let rows = compute_later(&silver(encounters, &[], conditions), &utc_profile());
        // THEN the admission is a stay, of its hospital, and both infections of its parts count
        // for it; the cycle has no top and counts nowhere; the encounter part of itself is a stay
        // of its own (of hospital "unknown": it names none)
        let hospitals: Vec<_> = rows
            .hospital_monthly
            .iter()
            .map(|r| (r.hospital_id.as_str(), r.stays, r.patient_days, r.hai_count))
            .collect();
        assert_eq!(hospitals, [("h1", 1, 10, 2), ("unknown", 1, 2, 0)]);
    }

    #[test]
    fn a_profile_sets_the_facilitys_clock_its_inpatient_classes_and_its_infection_codes() {
        // GIVEN a stay discharged at 23:30 in New York on 31 January (1 February in UTC and in
        // Tokyo), coded with a local class, and an ICD-10-CM sepsis written without its dot
        let local_class = "http://hospital.example/fhir/encounter-class";
        let mut evening = stay(
            "e",
            "p",
            "2024-01-29T10:00:00-05:00",
            "2024-01-31T23:30:00-05:00",
        );
        evening.class_system = Some(local_class);
        evening.class_code = Some("INPATIENT");
        let sepsis = ConditionFacts {
            codings: vec![coding("http://hl7.org/fhir/sid/icd-10-cm", "A419")],
            ..hai("e", "", Some("2024-01-31T12:00:00-05:00"), None)
        };
        let data = silver(vec![evening], &[], vec![sepsis]);
        let profile = |zone: &'static str| {
            let text = format!(
                r#"{{"time_zone": "{zone}", "inpatient_classes": [{{"system": "{local_class}", "code": "INPATIENT"}}]}}"#
            );
            TenantProfile::parse(text.as_bytes(), &utc_profile()).unwrap()
        };
        // WHEN gold is computed without a profile, then on New York's and on Tokyo's clock
        let without = compute_later(&data, &utc_profile());
        let west = compute_later(&data, &profile("America/New_York"));
        let east = compute_later(&data, &profile("Asia/Tokyo"));
        // THEN without a profile the local class is no stay
        assert!(without.hospital_monthly.is_empty());
        // AND in New York the stay is January's: 29 → 31 January, 2 days, the sepsis on day 3
        let january = month(&west, "2024-01");
        assert_eq!((january.stays, january.patient_days), (1, 2));
        // (reported under the value set's code: `A419` and `A41.9` are one row)
        assert_eq!(
            (january.hai_count, west.hai_by_code[0].code.as_str()),
            (1, "A41.9")
        );
        assert_eq!(west.hai_by_code[0].display, "Sepsis, unspecified organism");
        // AND in Tokyo it is February's: 30 January → 1 February, and the sepsis (1 February
        // 02:00 there) still inside it
        let february = month(&east, "2024-02");
        assert_eq!((february.stays, february.patient_days), (1, 2));
        assert_eq!(february.hai_count, 1);
    }

    #[test]
    fn the_calendar_gives_the_day_on_the_facilitys_clock_across_offset_changes() {
        // New York changes by an hour at 02:00 local, Lord Howe by half an hour at 02:00 local
        // (15:00 or 15:30 UTC); Tehran (+03:30) went back from 24:00 to 23:00 at 19:30 UTC on
        // 21 September 2021, so half an hour's instants fall on the day before on the new offset.
        // Every 7 minutes around those changes, and around a midnight.
        for zone in [
            "America/New_York",
            "Australia/Lord_Howe",
            "Asia/Tehran",
            "UTC",
        ] {
            let zone: chrono_tz::Tz = zone.parse().unwrap();
            let mut calendar = Calendar::new(zone);
            for around in [
                "2024-03-10T07:00:00Z",
                "2024-11-03T06:00:00Z",
                "2024-04-06T15:00:00Z",
                "2024-10-05T15:30:00Z",
                "2021-09-21T19:30:00Z",
                "2024-06-01T00:00:00Z",
            ] {
                let middle = at(around).unwrap();
                for step in -200..200 {
                    let instant = middle + step * 7 * 60_000_000 + step.rem_euclid(3);
                    assert_eq!(
                        calendar.day(instant),
                        local_day(instant, zone),
                        "{zone} at {instant}"
                    );
                }
            }
            // Before 1970, and instants no calendar can place.
            let before = at("1969-12-31T23:30:00Z").unwrap();
            for instant in [
                before,
                -1,
                1,
                i64::MIN,
                i64::MIN + 1,
                i64::MAX - 1,
                i64::MAX,
            ] {
                assert_eq!(
                    calendar.day(instant),
                    local_day(instant, zone),
                    "{zone} at {instant}"
                );
            }
        }
    }

    #[test]
    fn permute_puts_each_item_where_the_order_says() {
        // GIVEN every permutation of five items (cycles of every length, fixed points)
        let mut order: Vec<usize> = (0..5).collect();
        let mut count = 0;
        loop {
            // WHEN the items are permuted in place
            let mut items: Vec<String> = (0..5).map(|i| format!("item {i}")).collect();
            permute(&mut items, order.clone());
            // THEN position i holds the item that was at order[i]
            let expected: Vec<String> = order.iter().map(|i| format!("item {i}")).collect();
            assert_eq!(items, expected, "order {order:?}");
            count += 1;
            // The next permutation in lexicographic order.
            let Some(pivot) = (0..4).rev().find(|&i| order[i] < order[i + 1]) else {
                break;
            };
            let swap = (pivot + 1..5)
                .rev()
                .find(|&j| order[j] > order[pivot])
                .unwrap();
            order.swap(pivot, swap);
            order[pivot + 1..].reverse();
        }
        assert_eq!(count, 120);
    }

    #[test]
    fn key_order_is_text_order_whatever_the_first_eight_bytes() {
        let keys = [
            "b",
            "abcdefgh2",
            "abcdefgh10",
            "",
            "abcdefgh",
            "abc",
            "ab\u{0}",
            "ab",
            "zz",
            "abcdefgh1",
        ];
        let mut expected: Vec<usize> = (0..keys.len()).collect();
        expected.sort_by_key(|&i| keys[i]);
        assert_eq!(key_order(&keys), expected);
    }

    #[test]
    fn a_date_without_a_time_is_that_date_on_any_clock() {
        // GIVEN a stay whose admission and discharge are dates only (midnight UTC in silver)
        let dates_only = stay("d", "p", "2024-03-05", "2024-03-08");
        let new_york =
            TenantProfile::parse(br#"{"time_zone": "America/New_York"}"#, &utc_profile()).unwrap();
        // WHEN gold is computed on New York's clock
        let rows = compute_later(&silver(vec![dates_only], &[], vec![]), &new_york);
        // THEN it is 5 to 8 March there too (not the evenings of 4 and 7 March): 3 days
        let march = month(&rows, "2024-03");
        assert_eq!((march.stays, march.patient_days), (1, 3));
        assert_eq!(
            local_day(at("2024-03-05").unwrap(), new_york.time_zone),
            19_787
        );
        // AND a time on that date keeps its local date (00:30 UTC is the evening before there)
        assert_eq!(
            local_day(at("2024-03-05T00:30:00Z").unwrap(), new_york.time_zone),
            19_786
        );
    }
}
