//! The metric definitions, evaluated on the in-memory model (the final state
//! of a patient: newest versions applied, deleted Conditions removed).
//!
//! All dates are calendar dates of the timestamps on the tenant's clock
//! (`clock_min` minutes east of UTC; 0 without a profile), a timestamp at
//! exactly midnight UTC being a date.
//! - Inpatient stay: class IMP/ACUTE/NONAC, status finished, start and end
//!   present, end >= start. Reported in the month of its discharge date.
//! - LOS = max(1, discharge date - admission date); patient_days = sum LOS.
//! - 30-day death: the patient's deceasedDateTime date lies in
//!   [admission date, admission date + 30].
//! - Index stay: no death date <= discharge date, and not discharged expired
//!   (NUBC 20) or against medical advice (NUBC 07). Readmitted: another stay
//!   of the same patient starts strictly after this discharge (timestamps) and
//!   its admission date <= discharge date + 30.
//! - HAI: HAI-coded Condition, verificationStatus confirmed, linked to the
//!   stay, whose onset date (onsetDateTime, else recordedDate) lies in
//!   [admission + 2, discharge]; of one patient's HAIs with the same code, one
//!   whose onset date is fewer than 14 days after a counted one's is a repeat
//!   of it and not counted (NHSN: the counted one's date is day 1 of 14).

use std::collections::BTreeMap;

use crate::model::{EncStatus, Encounter, Hospital, PatientRecord, Verification};
use crate::time::civil_from_days;
use crate::truth::{HaiByCode, HospitalMonth, MortalityYear};
use crate::vocab::{AGAINST_ADVICE, CODES, EXPIRED, SNOMED};

/// Whether an encounter counts as an inpatient stay.
pub fn is_stay(e: &Encounter) -> bool {
    e.class.is_inpatient()
        && e.status == EncStatus::Finished
        && e.end.is_some_and(|end| end.utc >= e.start.utc)
}

/// The evaluation of one stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StayOutcome {
    /// Index into the record's encounters.
    pub encounter: usize,
    pub hospital: usize,
    pub start: i64,
    pub end: i64,
    pub admission_day: i64,
    pub discharge_day: i64,
    pub los: u64,
    /// Codes (indices into `vocab::CODES`) of the HAIs counted on this stay.
    pub hai_codes: Vec<usize>,
}

/// The evaluation of one episode: stays chained by transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpisodeOutcome {
    /// Indices into the stay outcomes, in admission order.
    pub stays: Vec<usize>,
    /// The stay discharged last (its readmission is judged on it).
    pub last: usize,
    pub death_30d: bool,
    pub index: bool,
    pub readmitted: bool,
    /// The mortality window (first admission + 30) had not ended at the as-of day.
    pub mortality_open: bool,
    /// An index episode whose readmission window (last discharge + 30) had not ended.
    pub readmission_open: bool,
}

/// Evaluates every stay of one patient, in admission order, on a clock
/// `clock_min` minutes east of UTC.
pub fn stay_outcomes(rec: &PatientRecord, clock_min: i32) -> Vec<StayOutcome> {
    let mut stays: Vec<usize> = (0..rec.encounters.len())
        .filter(|&i| is_stay(&rec.encounters[i]))
        .collect();
    stays.sort_by_key(|&i| {
        let e = &rec.encounters[i];
        (e.start.utc, e.end.map(|t| t.utc), i)
    });
    let mut out = Vec::with_capacity(stays.len());
    for &i in &stays {
        let e = &rec.encounters[i];
        let Some(end) = e.end else { continue };
        let adm = e.start.day_on(clock_min);
        let dis = end.day_on(clock_min);
        out.push(StayOutcome {
            encounter: i,
            hospital: e.hospital,
            start: e.start.utc,
            end: end.utc,
            admission_day: adm,
            discharge_day: dis,
            los: (dis - adm).max(1) as u64,
            hai_codes: Vec::new(),
        });
    }
    // Every HAI in its stay's window, then NHSN's repeat rule per code over
    // the patient's whole history, earliest first.
    let mut in_window: Vec<(usize, i64, usize)> = Vec::new(); // (code, day, outcome)
    for (k, s) in out.iter().enumerate() {
        for c in &rec.conditions {
            if c.encounter != Some(s.encounter)
                || !c.is_hai()
                || c.verification != Verification::Confirmed
            {
                continue;
            }
            let Some(day) = c.onset.or(c.recorded).map(|t| t.day_on(clock_min)) else {
                continue;
            };
            if s.admission_day + 2 <= day && day <= s.discharge_day {
                in_window.push((c.code, day, k));
            }
        }
    }
    in_window.sort();
    let mut last_counted: BTreeMap<usize, i64> = BTreeMap::new();
    for (code, day, k) in in_window {
        let repeat = last_counted
            .get(&code)
            .is_some_and(|&first| day - first < 14);
        if !repeat {
            last_counted.insert(code, day);
            out[k].hai_codes.push(code);
        }
    }
    out
}

/// Groups one patient's stays (from [`stay_outcomes`], in admission order)
/// into episodes and evaluates mortality and readmission per episode, with
/// the windows still open at `as_of_day`.
pub fn episode_outcomes(
    rec: &PatientRecord,
    stays: &[StayOutcome],
    clock_min: i32,
    as_of_day: i64,
) -> Vec<EpisodeOutcome> {
    // (members in admission order, the member discharged last: ties keep
    // the earlier). A stay is a transfer from the latest discharge so far.
    let mut groups: Vec<(Vec<usize>, usize)> = Vec::new();
    for (k, s) in stays.iter().enumerate() {
        let transfer = groups.last().is_some_and(|(_, closing)| {
            let prev = &stays[*closing];
            s.hospital != prev.hospital && s.admission_day <= prev.discharge_day + 1
        });
        match groups.last_mut() {
            Some((members, closing)) if transfer => {
                members.push(k);
                if s.end > stays[*closing].end {
                    *closing = k;
                }
            }
            _ => groups.push((vec![k], k)),
        }
    }
    let death_day = rec
        .patient
        .deceased
        .date_time()
        .map(|t| t.day_on(clock_min));
    let firsts: Vec<&StayOutcome> = groups.iter().map(|(g, _)| &stays[g[0]]).collect();
    groups
        .iter()
        .map(|(g, closing)| {
            let first = &stays[g[0]];
            let last = &stays[*closing];
            let disposition = rec.encounters[last.encounter].disposition;
            let index = death_day.is_none_or(|d| d > last.discharge_day)
                && disposition != EXPIRED
                && disposition != AGAINST_ADVICE;
            EpisodeOutcome {
                stays: g.clone(),
                last: *closing,
                death_30d: death_day
                    .is_some_and(|d| first.admission_day <= d && d <= first.admission_day + 30),
                index,
                readmitted: index
                    && firsts
                        .iter()
                        .any(|n| n.start > last.end && n.admission_day <= last.discharge_day + 30),
                mortality_open: as_of_day <= first.admission_day + 30,
                readmission_open: index && as_of_day <= last.discharge_day + 30,
            }
        })
        .collect()
}

#[derive(Default, Clone, Copy, Debug)]
struct Cell {
    stays: u64,
    deaths_30d: u64,
    mortality_episodes: u64,
    index_stays: u64,
    readmissions_30d: u64,
    patient_days: u64,
    hai_count: u64,
    hai_stays: u64,
    open_window_index: u64,
    open_window_mortality: u64,
}

/// The day the ground truth is taken as of: the day after the last 30-day
/// window of the generated data ends, so no window is open (a gold refresh
/// run any time later agrees).
pub const ALL_WINDOWS_ENDED_DAY: i64 = crate::synth::DATA_END + 32;

/// Sums stays per (hospital, discharge month), HAIs per (month, code),
/// mortality per first stay's hospital and discharge month and year, and
/// readmission per last stay's hospital and discharge month.
#[derive(Debug, Clone)]
pub struct MetricsAccumulator {
    as_of_day: i64,
    /// The tenant's clock, minutes east of UTC.
    clock_min: i32,
    /// Key: (hospital index, (year, month)).
    cells: BTreeMap<(usize, (i32, u32)), Cell>,
    /// Key: ((year, month), code index).
    hai: BTreeMap<((i32, u32), usize), u64>,
    /// Key: year -> (episodes, deaths_30d).
    yearly: BTreeMap<i32, (u64, u64)>,
}

impl Default for MetricsAccumulator {
    fn default() -> Self {
        Self::as_of(ALL_WINDOWS_ENDED_DAY)
    }
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

fn year_month(day: i64) -> (i32, u32) {
    let (y, m, _) = civil_from_days(day);
    (y, m)
}

impl MetricsAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// An accumulator whose open windows are those not ended at `as_of_day`.
    pub fn as_of(as_of_day: i64) -> Self {
        Self {
            as_of_day,
            clock_min: 0,
            cells: BTreeMap::new(),
            hai: BTreeMap::new(),
            yearly: BTreeMap::new(),
        }
    }

    /// The same accumulator on a clock `clock_min` minutes east of UTC.
    pub fn on_clock(self, clock_min: i32) -> Self {
        Self { clock_min, ..self }
    }

    pub fn add_patient(&mut self, rec: &PatientRecord) {
        let stays = stay_outcomes(rec, self.clock_min);
        for s in &stays {
            let ym = year_month(s.discharge_day);
            let cell = self.cells.entry((s.hospital, ym)).or_default();
            cell.stays += 1;
            cell.patient_days += s.los;
            cell.hai_count += s.hai_codes.len() as u64;
            cell.hai_stays += u64::from(!s.hai_codes.is_empty());
            for &code in &s.hai_codes {
                *self.hai.entry((ym, code)).or_default() += 1;
            }
        }
        for ep in episode_outcomes(rec, &stays, self.clock_min, self.as_of_day) {
            let first = &stays[ep.stays[0]];
            let last = &stays[ep.last];
            let ym = year_month(first.discharge_day);
            let cell = self.cells.entry((first.hospital, ym)).or_default();
            cell.mortality_episodes += 1;
            cell.deaths_30d += u64::from(ep.death_30d);
            cell.open_window_mortality += u64::from(ep.mortality_open);
            let year = self.yearly.entry(ym.0).or_default();
            year.0 += 1;
            year.1 += u64::from(ep.death_30d);
            let cell = self
                .cells
                .entry((last.hospital, year_month(last.discharge_day)))
                .or_default();
            cell.index_stays += u64::from(ep.index);
            cell.readmissions_30d += u64::from(ep.readmitted);
            cell.open_window_index += u64::from(ep.readmission_open);
        }
    }

    /// Produces the sorted report rows. `hospitals` is indexed by
    /// `Encounter::hospital`.
    pub fn finish(
        &self,
        hospitals: &[Hospital],
    ) -> (Vec<HospitalMonth>, Vec<HaiByCode>, Vec<MortalityYear>) {
        let label = |(y, m): (i32, u32)| format!("{y:04}-{m:02}");
        let mut monthly: Vec<HospitalMonth> = self
            .cells
            .iter()
            .map(|(&(h, ym), c)| {
                let (name, ident) = hospitals
                    .get(h)
                    .map(|h| (h.name.clone(), h.id.to_string()))
                    .unwrap_or_default();
                HospitalMonth {
                    hospital_name: name,
                    hospital_identifier: ident,
                    month: label(ym),
                    stays: c.stays,
                    deaths_30d: c.deaths_30d,
                    mortality_episodes: c.mortality_episodes,
                    mortality_rate: ratio(c.deaths_30d, c.mortality_episodes),
                    index_stays: c.index_stays,
                    readmissions_30d: c.readmissions_30d,
                    readmission_rate: ratio(c.readmissions_30d, c.index_stays),
                    patient_days: c.patient_days,
                    alos: ratio(c.patient_days, c.stays),
                    hai_count: c.hai_count,
                    hai_stays: c.hai_stays,
                    hai_per_1000_patient_days: ratio(c.hai_count * 1000, c.patient_days),
                    open_window_index: c.open_window_index,
                    open_window_mortality: c.open_window_mortality,
                }
            })
            .collect();
        monthly.sort_by(|a, b| {
            (&a.hospital_name, &a.hospital_identifier, &a.month).cmp(&(
                &b.hospital_name,
                &b.hospital_identifier,
                &b.month,
            ))
        });
        let mut hai: Vec<HaiByCode> = self
            .hai
            .iter()
            .map(|(&(ym, code), &count)| HaiByCode {
                month: label(ym),
                system: SNOMED.to_string(),
                code: CODES[code].code.to_string(),
                display: CODES[code].display.to_string(),
                count,
            })
            .collect();
        hai.sort_by(|a, b| (&a.month, &a.code).cmp(&(&b.month, &b.code)));
        let yearly = self
            .yearly
            .iter()
            .map(|(&year, &(episodes, deaths))| MortalityYear {
                year,
                episodes,
                deaths,
                rate: ratio(deaths, episodes),
            })
            .collect();
        (monthly, hai, yearly)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Condition, Deceased, EncClass, Id, Meta, Patient};
    use crate::time::{Ts, days_from_civil};
    use crate::vocab::{AGAINST_ADVICE, DIABETES, PNEUMONIA, SEPSIS, URINARY_TRACT};

    const META: Meta = Meta {
        version: 1,
        last_updated_ms: 0,
    };

    fn utc(y: i32, m: u32, d: u32, h: u32) -> Ts {
        Ts::local(y, m, d, h, 0, 0, 0)
    }

    fn patient(n: u128, deceased: Deceased) -> Patient {
        Patient {
            id: Id(n),
            birth_date: days_from_civil(1950, 1, 1),
            deceased,
            meta: META,
        }
    }

    fn stay(n: u128, hospital: usize, start: Ts, end: Ts) -> Encounter {
        Encounter {
            id: Id(n),
            class: EncClass::Imp,
            status: EncStatus::Finished,
            start,
            end: Some(end),
            hospital,
            kind: 0,
            disposition: 0,
            meta: META,
        }
    }

    fn cond(
        n: u128,
        code: usize,
        enc: usize,
        onset: Option<Ts>,
        recorded: Option<Ts>,
    ) -> Condition {
        Condition {
            id: Id(n),
            code,
            verification: Verification::Confirmed,
            encounter: Some(enc),
            onset,
            recorded,
            abatement: None,
            meta: META,
        }
    }

    fn hospitals() -> Vec<Hospital> {
        ["Alpha Hospital", "Beta Hospital"]
            .iter()
            .enumerate()
            .map(|(i, name)| Hospital {
                id: Id(1000 + i as u128),
                identifier: Id(2000 + i as u128),
                name: name.to_string(),
                street: String::new(),
                city: "Boston",
                state: "MA",
                postal_code: String::new(),
                phone: String::new(),
                meta: META,
            })
            .collect()
    }

    #[test]
    fn stay_definition() {
        let mut e = stay(1, 0, utc(2023, 1, 1, 10), utc(2023, 1, 3, 10));
        assert!(is_stay(&e));
        e.class = EncClass::Acute;
        assert!(is_stay(&e));
        e.class = EncClass::Nonac;
        assert!(is_stay(&e));
        e.class = EncClass::Emer;
        assert!(!is_stay(&e));
        e.class = EncClass::Imp;
        e.status = EncStatus::Cancelled;
        assert!(!is_stay(&e));
        e.status = EncStatus::InProgress;
        assert!(!is_stay(&e));
        e.status = EncStatus::Finished;
        e.end = None;
        assert!(!is_stay(&e));
        e.end = Some(utc(2022, 12, 31, 10));
        assert!(!is_stay(&e));
    }

    /// The episodes of a record, with every window ended.
    fn episodes(rec: &PatientRecord) -> Vec<EpisodeOutcome> {
        episode_outcomes(rec, &stay_outcomes(rec, 0), 0, ALL_WINDOWS_ENDED_DAY)
    }

    /// Patient A: same-day stay (LOS 1), a 3-day stay, death exactly 30 days
    /// after the second admission. Patient B: death 31 days after admission.
    /// Patient C: readmitted at discharge + 30 (counts) then + 31 (does not).
    #[test]
    fn los_death_and_readmission_boundaries() {
        // A
        let a = PatientRecord {
            patient: patient(1, Deceased::At(utc(2023, 4, 1, 12))),
            encounters: vec![
                stay(11, 0, utc(2023, 1, 10, 8), utc(2023, 1, 10, 18)), // LOS max(1,0)=1
                stay(12, 0, utc(2023, 3, 2, 8), utc(2023, 3, 5, 9)),    // LOS 3, adm+30 = 04-01
            ],
            conditions: vec![],
        };
        assert_eq!(
            stay_outcomes(&a, 0)
                .iter()
                .map(|s| s.los)
                .collect::<Vec<_>>(),
            vec![1, 3]
        );
        let out = episodes(&a);
        assert_eq!(
            out.iter().map(|s| s.death_30d).collect::<Vec<_>>(),
            vec![false, true]
        );
        // Both discharged alive (death after discharge) -> both index.
        assert!(out.iter().all(|s| s.index));
        // 03-02 is 51 days after 01-10: no readmission.
        assert!(out.iter().all(|s| !s.readmitted));

        // B: death at admission + 31 -> not counted; death at discharge day ->
        // not an index stay.
        let b = PatientRecord {
            patient: patient(2, Deceased::At(utc(2023, 4, 2, 1))),
            encounters: vec![stay(21, 1, utc(2023, 3, 2, 8), utc(2023, 3, 4, 9))],
            conditions: vec![],
        };
        let out = episodes(&b);
        assert!(!out[0].death_30d);
        assert!(out[0].index);
        let b_in_stay = PatientRecord {
            patient: patient(3, Deceased::At(utc(2023, 3, 4, 9))),
            ..b.clone()
        };
        let out = episodes(&b_in_stay);
        assert!(out[0].death_30d);
        assert!(!out[0].index);
        // deceasedBoolean: deceased, never a 30-day death, still index.
        let unknown = PatientRecord {
            patient: patient(4, Deceased::Unknown),
            ..b.clone()
        };
        let out = episodes(&unknown);
        assert!(!out[0].death_30d && out[0].index);

        // C: discharge 2023-05-01; next admission 05-31 (= +30, counted);
        // discharge 06-02; next admission 07-03 (= +31, not counted).
        let c = PatientRecord {
            patient: patient(5, Deceased::Alive),
            encounters: vec![
                stay(31, 0, utc(2023, 4, 28, 8), utc(2023, 5, 1, 23)),
                stay(32, 0, utc(2023, 5, 31, 0), utc(2023, 6, 2, 10)),
                stay(33, 1, utc(2023, 7, 3, 0), utc(2023, 7, 6, 10)),
            ],
            conditions: vec![],
        };
        let out = episodes(&c);
        assert_eq!(
            out.iter().map(|s| s.readmitted).collect::<Vec<_>>(),
            vec![true, false, false]
        );

        // Same-day readmission counts only if it starts after the discharge.
        let d = PatientRecord {
            patient: patient(6, Deceased::Alive),
            encounters: vec![
                stay(41, 0, utc(2023, 8, 1, 8), utc(2023, 8, 3, 12)),
                stay(42, 0, utc(2023, 8, 3, 11), utc(2023, 8, 5, 12)), // overlaps: not after
            ],
            conditions: vec![],
        };
        let out = episodes(&d);
        assert!(!out[0].readmitted);
        let e = PatientRecord {
            encounters: vec![
                stay(41, 0, utc(2023, 8, 1, 8), utc(2023, 8, 3, 12)),
                stay(42, 0, utc(2023, 8, 3, 13), utc(2023, 8, 5, 12)),
            ],
            ..d
        };
        assert!(episodes(&e)[0].readmitted);
    }

    #[test]
    fn transfer_chains_are_episodes_and_open_windows_are_flagged() {
        // Hospital 0 on 1-5 June, hospital 1 from the discharge day to
        // 8 June, hospital 0 again on 9-10 June (the next day: a transfer
        // back), then hospital 0 on 20-22 June (a readmission); died on
        // 25 June.
        let rec = PatientRecord {
            patient: patient(7, Deceased::At(utc(2023, 6, 25, 12))),
            encounters: vec![
                stay(70, 0, utc(2023, 6, 1, 8), utc(2023, 6, 5, 9)),
                stay(71, 1, utc(2023, 6, 5, 15), utc(2023, 6, 8, 10)),
                stay(72, 0, utc(2023, 6, 9, 20), utc(2023, 6, 10, 10)),
                stay(73, 0, utc(2023, 6, 20, 8), utc(2023, 6, 22, 10)),
            ],
            conditions: vec![],
        };
        let out = episodes(&rec);
        assert_eq!(
            out.iter().map(|e| e.stays.len()).collect::<Vec<_>>(),
            vec![3, 1]
        );
        // Both episodes' deaths fall in their windows; the chain was
        // readmitted by the 20 June stay; the last episode is index (the
        // death is after its discharge), not readmitted.
        assert!(out.iter().all(|e| e.death_30d));
        assert_eq!(
            out.iter()
                .map(|e| (e.index, e.readmitted))
                .collect::<Vec<_>>(),
            vec![(true, true), (true, false)]
        );
        // As of 2 July: the chain's mortality window (1 June + 30, through
        // 1 July) has ended, its readmission window (10 June + 30) has not;
        // the second episode's are both open.
        let stays = stay_outcomes(&rec, 0);
        let open = episode_outcomes(&rec, &stays, 0, crate::time::days_from_civil(2023, 7, 2));
        assert_eq!(
            open.iter()
                .map(|e| (e.mortality_open, e.readmission_open))
                .collect::<Vec<_>>(),
            vec![(false, true), (true, true)]
        );
    }

    #[test]
    fn refuted_hais_repeats_and_discharges_against_advice() {
        // Two stays of one patient: 1-10 March (left against medical
        // advice) and 20-30 March.
        let mut first = stay(30, 0, utc(2023, 3, 1, 9), utc(2023, 3, 10, 9));
        first.disposition = AGAINST_ADVICE;
        let second = stay(31, 0, utc(2023, 3, 20, 9), utc(2023, 3, 30, 9));
        let refuted = |mut c: Condition, v: Verification| {
            c.verification = v;
            c
        };
        let rec = PatientRecord {
            patient: patient(3, Deceased::Alive),
            encounters: vec![first, second],
            conditions: vec![
                // 3 March: refuted, entered in error: no infections
                refuted(
                    cond(300, SEPSIS, 0, Some(utc(2023, 3, 3, 9)), None),
                    Verification::Refuted,
                ),
                refuted(
                    cond(301, SEPSIS, 0, Some(utc(2023, 3, 3, 9)), None),
                    Verification::EnteredInError,
                ),
                // 4 March counted (day 1 of 14); 17 March is day 14: a
                // repeat; 22 March (second stay) is a new one
                cond(302, SEPSIS, 0, Some(utc(2023, 3, 4, 9)), None),
                cond(303, SEPSIS, 1, Some(utc(2023, 3, 22, 9)), None),
                cond(304, SEPSIS, 0, Some(utc(2023, 3, 9, 9)), None),
                // a pneumonia on 9 March: another code, counted
                cond(305, PNEUMONIA, 0, Some(utc(2023, 3, 9, 9)), None),
            ],
        };
        let out = stay_outcomes(&rec, 0);
        let mut first_codes = out[0].hai_codes.clone();
        first_codes.sort_unstable();
        assert_eq!(first_codes, vec![SEPSIS, PNEUMONIA]);
        assert_eq!(out[1].hai_codes, vec![SEPSIS]);
        // Left against advice: no index stay, so not readmitted by the second
        let episodes = episodes(&rec);
        assert_eq!((episodes[0].index, episodes[0].readmitted), (false, false));
        assert!(episodes[1].index);
    }

    #[test]
    fn hai_window_and_timezones() {
        // Admission 2023-01-10 22:00-05:00 = 2023-01-11T03:00Z: the UTC
        // admission date is 01-11 although the local date is 01-10.
        let start = Ts::local(2023, 1, 10, 22, 0, 0, -300);
        let end = Ts::local(2023, 1, 16, 10, 0, 0, -300); // UTC 01-16
        assert_eq!(start.utc_day(), days_from_civil(2023, 1, 11));
        let rec = PatientRecord {
            patient: patient(1, Deceased::Alive),
            encounters: vec![stay(10, 0, start, end)],
            conditions: vec![
                // local 01-12 (adm+2 locally) but UTC 01-12 = adm+1: not counted
                cond(
                    100,
                    SEPSIS,
                    0,
                    Some(Ts::local(2023, 1, 12, 12, 0, 0, -300)),
                    None,
                ),
                // 01-12 23:30-05:00 = 01-13T04:30Z = adm+2: counted
                cond(
                    101,
                    PNEUMONIA,
                    0,
                    Some(Ts::local(2023, 1, 12, 23, 30, 0, -300)),
                    None,
                ),
                // 01-13 01:00+02:00 = 01-12T23:00Z = adm+1: not counted
                cond(
                    102,
                    SEPSIS,
                    0,
                    Some(Ts::local(2023, 1, 13, 1, 0, 0, 120)),
                    None,
                ),
                // only recordedDate, adm+3: counted
                cond(103, SEPSIS, 0, None, Some(utc(2023, 1, 14, 9))),
                // onset wins over recordedDate: onset adm+0, recorded in window -> not counted
                cond(
                    104,
                    SEPSIS,
                    0,
                    Some(utc(2023, 1, 11, 9)),
                    Some(utc(2023, 1, 14, 9)),
                ),
                // discharge day: counted (another HAI code: a sepsis would
                // repeat 103's); day after discharge: not
                cond(105, URINARY_TRACT, 0, Some(utc(2023, 1, 16, 23)), None),
                cond(106, URINARY_TRACT, 0, Some(utc(2023, 1, 17, 0)), None),
                // not an HAI code
                cond(107, DIABETES, 0, Some(utc(2023, 1, 14, 9)), None),
            ],
        };
        let out = stay_outcomes(&rec, 0);
        assert_eq!(out[0].admission_day, days_from_civil(2023, 1, 11));
        assert_eq!(out[0].los, 5);
        let mut codes = out[0].hai_codes.clone();
        codes.sort_unstable();
        assert_eq!(codes, vec![SEPSIS, PNEUMONIA, URINARY_TRACT]);

        // A stay whose end is 2023-01-31T23:30-02:00 is discharged on
        // 2023-02-01 UTC and reported in February.
        let feb = PatientRecord {
            patient: patient(2, Deceased::Alive),
            encounters: vec![stay(
                20,
                1,
                utc(2023, 1, 25, 10),
                Ts::local(2023, 1, 31, 23, 30, 0, -120),
            )],
            conditions: vec![],
        };
        let mut acc = MetricsAccumulator::new();
        acc.add_patient(&rec);
        acc.add_patient(&feb);
        let (monthly, hai, yearly) = acc.finish(&hospitals());
        assert_eq!(monthly.len(), 2);
        assert_eq!(monthly[0].hospital_name, "Alpha Hospital");
        assert_eq!(monthly[0].month, "2023-01");
        assert_eq!(monthly[0].hai_count, 3);
        assert_eq!(monthly[0].hai_stays, 1);
        assert_eq!(monthly[0].patient_days, 5);
        assert!((monthly[0].hai_per_1000_patient_days - 600.0).abs() < 1e-9);
        assert_eq!(monthly[1].hospital_name, "Beta Hospital");
        assert_eq!(monthly[1].month, "2023-02");
        assert_eq!(monthly[1].patient_days, 7);
        assert_eq!(hai.len(), 3);
        assert_eq!((hai[0].code.as_str(), hai[0].count), ("233604007", 1));
        assert_eq!((hai[1].code.as_str(), hai[1].count), ("68566005", 1));
        assert_eq!((hai[2].code.as_str(), hai[2].count), ("91302008", 1));
        assert_eq!(yearly.len(), 1);
        assert_eq!(
            (yearly[0].year, yearly[0].episodes, yearly[0].deaths),
            (2023, 2, 0)
        );
    }

    #[test]
    fn monthly_rates_by_hand() {
        // Hospital 0, all discharged in 2024-03:
        //  P1: stay 03-01..03-04 (LOS 3), dies 03-20 (adm+19: 30d death, index).
        //  P2: stay 02-28..03-02 (LOS 3, leap year), readmitted 03-10..03-10
        //      (same day, LOS 1), alive.
        // stays 3, deaths 1, index 3, readmissions 1, patient_days 7.
        let p1 = PatientRecord {
            patient: patient(1, Deceased::At(utc(2024, 3, 20, 5))),
            encounters: vec![stay(1, 0, utc(2024, 3, 1, 5), utc(2024, 3, 4, 5))],
            conditions: vec![],
        };
        let p2 = PatientRecord {
            patient: patient(2, Deceased::Alive),
            encounters: vec![
                stay(2, 0, utc(2024, 2, 28, 5), utc(2024, 3, 2, 5)),
                stay(3, 0, utc(2024, 3, 10, 5), utc(2024, 3, 10, 9)),
            ],
            conditions: vec![],
        };
        let mut acc = MetricsAccumulator::new();
        acc.add_patient(&p1);
        acc.add_patient(&p2);
        let (monthly, hai, yearly) = acc.finish(&hospitals());
        assert_eq!(monthly.len(), 1);
        let m = &monthly[0];
        assert_eq!(m.month, "2024-03");
        assert_eq!(m.hospital_identifier, Id(1000).to_string());
        assert_eq!(
            (m.stays, m.deaths_30d, m.index_stays, m.readmissions_30d),
            (3, 1, 3, 1)
        );
        assert_eq!(m.patient_days, 7);
        assert!((m.alos - 7.0 / 3.0).abs() < 1e-12);
        assert!((m.mortality_rate - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.readmission_rate - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.hai_per_1000_patient_days, 0.0);
        assert!(hai.is_empty());
        assert_eq!((yearly[0].episodes, yearly[0].deaths), (3, 1));
    }
}
