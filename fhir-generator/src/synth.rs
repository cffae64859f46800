//! Builds the model: hospitals, patients with their encounters and
//! conditions (the export-1 state), the dirty plan (export-2 versions,
//! deletes, duplicates) and the broken records.

use crate::model::{
    Condition, Deceased, EncClass, EncStatus, Encounter, Hospital, Id, Meta, Patient,
    PatientRecord, Verification,
};
use crate::rng::Rng;
use crate::time::{SECS_PER_DAY, Ts, days_from_civil};
use crate::truth::DirtyStats;
use crate::vocab::{
    AMBULATORY_TYPES, BRONCHITIS, CHRONIC, DISPOSITION_WEIGHTS, EMERGENCY_TYPES, EXPIRED,
    HAI_COUNT, HOSPITAL_PREFIXES, HOSPITAL_SUFFIXES, INPATIENT_TYPES, OUTPATIENT_ACUTE, PRINCIPAL,
    STREET_SUFFIXES, STREETS, State,
};

/// First and last day (inclusive) of clinical data.
pub const DATA_START: i64 = days_from_civil(2021, 1, 1);
pub const DATA_END: i64 = days_from_civil(2025, 12, 31);
/// Last second of clinical data (UTC).
pub const END_TS: i64 = (DATA_END + 1) * SECS_PER_DAY - 1;
const DAY: i64 = SECS_PER_DAY;
const HOUR: i64 = 3600;
const DAY_MS: i64 = SECS_PER_DAY * 1000;
/// export-1 resources are last updated on 2026-01-02 (within 6 hours).
const EXPORT1_MS: i64 = days_from_civil(2026, 1, 2) * DAY_MS;
/// export-2 newer versions on 2026-02-02.
const EXPORT2_MS: i64 = days_from_civil(2026, 2, 2) * DAY_MS;
const SIX_HOURS_MS: u64 = 6 * 3600 * 1000;

/// UTC offsets (minutes) used when writing timestamps.
const OFFSETS: &[i16] = &[
    -300, -300, -300, -240, -240, -360, -360, -420, -480, -600, 0, 0, 60, 120, 330, 540,
];

fn offset(r: &mut Rng) -> i16 {
    r.pick(OFFSETS)
}

/// A random second of the given UTC day, displayed with `off`.
fn at_day(r: &mut Rng, day: i64, off: i16) -> Ts {
    Ts::new(day * DAY + r.below(DAY as u64) as i64, off)
}

fn meta1(r: &mut Rng) -> Meta {
    Meta {
        version: 1,
        last_updated_ms: EXPORT1_MS + r.below(SIX_HOURS_MS) as i64,
    }
}

fn meta_newer(r: &mut Rng, version: u32) -> Meta {
    Meta {
        version,
        last_updated_ms: EXPORT2_MS + r.below(SIX_HOURS_MS) as i64,
    }
}

/// Same version number, `lastUpdated` 1-45 days before the export-1 version.
fn meta_stale(r: &mut Rng, current: Meta) -> Meta {
    Meta {
        version: current.version,
        last_updated_ms: current.last_updated_ms
            - r.range(1, 45) * DAY_MS
            - r.below(DAY_MS as u64) as i64,
    }
}

/// 2-4 hospitals with distinct names.
pub fn hospitals(r: &mut Rng, state: &'static State) -> Vec<Hospital> {
    let n = r.range(2, 4) as usize;
    let mut prefixes: Vec<usize> = (0..HOSPITAL_PREFIXES.len()).collect();
    (0..n)
        .map(|i| {
            let j = i + r.index(prefixes.len() - i);
            prefixes.swap(i, j);
            let name = format!(
                "{} {}",
                HOSPITAL_PREFIXES[prefixes[i]],
                r.pick(HOSPITAL_SUFFIXES)
            );
            Hospital {
                id: r.id(),
                identifier: r.id(),
                name,
                street: format!(
                    "{} {} {}",
                    r.range(1, 2999),
                    r.pick(STREETS),
                    r.pick(STREET_SUFFIXES)
                ),
                city: r.pick(state.cities),
                state: state.code,
                postal_code: format!("{}{:03}", state.zip_prefix, r.below(1000)),
                phone: format!("555-{:03}-{:04}", r.range(200, 999), r.below(10_000)),
                meta: meta1(r),
            }
        })
        .collect()
}

fn new_encounter(
    r: &mut Rng,
    class: EncClass,
    start: Ts,
    end: Option<Ts>,
    hospital: usize,
) -> Encounter {
    let kinds = match class {
        EncClass::Imp | EncClass::Acute | EncClass::Nonac => INPATIENT_TYPES,
        EncClass::Emer => EMERGENCY_TYPES,
        EncClass::Amb => AMBULATORY_TYPES,
    };
    Encounter {
        id: r.id(),
        class,
        status: EncStatus::Finished,
        start,
        end,
        hospital,
        kind: r.pick(kinds),
        disposition: r.weighted(DISPOSITION_WEIGHTS),
        meta: meta1(r),
    }
}

fn new_condition(
    r: &mut Rng,
    code: usize,
    encounter: Option<usize>,
    onset: Option<Ts>,
    recorded: Option<Ts>,
) -> Condition {
    Condition {
        id: r.id(),
        code,
        verification: Verification::Confirmed,
        encounter,
        onset,
        recorded,
        abatement: None,
        meta: meta1(r),
    }
}

/// Inpatient stays: 0-3 per patient, chained with gaps that hit the 30/31
/// day boundaries, some same-day, some across month and year ends.
fn stays(r: &mut Rng, n_hosp: usize, home: usize, out: &mut Vec<Encounter>) {
    let n = r.weighted(&[30, 35, 20, 15]);
    let mut prev_end: Option<Ts> = None;
    let mut prev_hospital = home;
    for k in 0..n {
        let off = offset(r);
        let mut los = None;
        // A transfer: admitted to another hospital the day of the previous discharge or the next.
        let mut transfer = false;
        let start = match prev_end {
            None if r.chance(0.06) => {
                // Admitted in the last week of December, discharged in January.
                let y = r.range(2021, 2024) as i32;
                let day = days_from_civil(y, 12, 24) + r.range(0, 7);
                los = Some(days_from_civil(y + 1, 1, 1) - day + r.range(0, 4));
                at_day(r, day, off)
            }
            None => {
                let day = r.range(DATA_START, DATA_END - 60);
                at_day(r, day, off)
            }
            Some(pe) => {
                let dis = pe.utc_day();
                match r.weighted(&[12, 12, 35, 3, 38, 8]) {
                    0 => at_day(r, dis + 30, off),
                    1 => at_day(r, dis + 31, off),
                    2 => {
                        let d = dis + r.range(1, 29);
                        at_day(r, d, off)
                    }
                    3 => Ts::new(pe.utc + r.range(HOUR / 2, 4 * HOUR), off),
                    5 => {
                        transfer = true;
                        Ts::new(pe.utc + r.range(HOUR / 2, 30 * HOUR), off)
                    }
                    _ => {
                        let d = dis + r.range(32, 240);
                        at_day(r, d, off)
                    }
                }
            }
        };
        let start_day = start.utc_day();
        if start_day > DATA_END - 16 {
            break;
        }
        let los = los.unwrap_or_else(|| if r.chance(0.07) { 0 } else { r.range(1, 14) });
        // Mostly the same offset at both ends; sometimes a DST-like shift.
        let end_off = if r.chance(0.1) { off + 60 } else { off };
        let end = if los == 0 {
            Ts::new(start.utc + r.range(2 * HOUR, 10 * HOUR), end_off)
        } else {
            at_day(r, start_day + los, end_off)
        };
        let class = if r.chance(0.08) {
            EncClass::Acute
        } else {
            EncClass::Imp
        };
        let hospital = if transfer && n_hosp > 1 {
            (prev_hospital + 1 + r.index(n_hosp - 1)) % n_hosp
        } else if r.chance(0.8) {
            home
        } else {
            r.index(n_hosp)
        };
        prev_hospital = hospital;
        // A short record at another hospital inside a long stay (a consult or a transfer
        // record): the episode goes on until the long stay ends.
        let nested = los >= 3 && n_hosp > 1 && r.chance(0.04);
        let mut e = new_encounter(r, class, start, Some(end), hospital);
        if r.chance(0.03) {
            e.status = EncStatus::Cancelled;
        } else if k + 1 == n && r.chance(0.05) {
            e.status = EncStatus::InProgress;
            e.end = None;
        }
        prev_end = Some(end);
        let finished = e.status == EncStatus::Finished;
        out.push(e);
        if nested && finished {
            let other = (hospital + 1 + r.index(n_hosp - 1)) % n_hosp;
            let inner_start = at_day(r, start_day + 1, off);
            let inner_end = Ts::new(inner_start.utc + r.range(2 * HOUR, 20 * HOUR), off);
            out.push(new_encounter(
                r,
                EncClass::Imp,
                inner_start,
                Some(inner_end),
                other,
            ));
        }
    }
}

fn other_encounters(r: &mut Rng, n_hosp: usize, home: usize, out: &mut Vec<Encounter>) {
    for _ in 0..r.below(4) {
        let emer = r.chance(0.4);
        let off = offset(r);
        let day = r.range(DATA_START, DATA_END);
        let start = at_day(r, day, off);
        let len = if emer {
            r.range(2 * HOUR, 10 * HOUR)
        } else {
            r.range(900, 2 * HOUR)
        };
        let class = if emer { EncClass::Emer } else { EncClass::Amb };
        let hospital = if r.chance(0.85) {
            home
        } else {
            r.index(n_hosp)
        };
        let mut e = new_encounter(
            r,
            class,
            start,
            Some(Ts::new(start.utc + len, off)),
            hospital,
        );
        match r.below(100) {
            0 | 1 => e.status = EncStatus::Cancelled,
            2..=4 => {
                e.status = EncStatus::InProgress;
                e.end = None;
            }
            _ => {}
        }
        out.push(e);
    }
}

/// Picks the death (if any) and drops encounters that would start after it.
fn death(r: &mut Rng, encs: &mut Vec<Encounter>) -> Deceased {
    let roll = r.below(1000);
    if roll >= 110 {
        return Deceased::Alive;
    }
    if roll >= 90 {
        return Deceased::Unknown;
    }
    let last_stay = encs.iter().rposition(crate::metrics::is_stay);
    let death = if let Some(li) = last_stay {
        let e = &encs[li];
        let (adm, end) = (e.start.utc_day(), e.end.unwrap_or(e.start));
        let dis = end.utc_day();
        let off = end.offset_min;
        match r.weighted(&[25, 15, 15, 20, 25]) {
            0 => {
                // Died during the stay: discharged "expired" at (or just after) death.
                let back = r.below((end.utc - e.start.utc).clamp(0, 3 * HOUR) as u64 + 1) as i64;
                encs[li].disposition = EXPIRED;
                Ts::new(end.utc - back, off)
            }
            1 => at_day(r, adm + 30, off),
            2 => at_day(r, adm + 31, off),
            3 if dis < adm + 29 => {
                let d = r.range(dis + 1, adm + 29);
                at_day(r, d, off)
            }
            3 => at_day(r, adm + 30, off),
            _ => {
                let d = dis + r.range(40, 400);
                at_day(r, d, off)
            }
        }
    } else {
        let base = encs
            .iter()
            .map(|e| e.end.unwrap_or(e.start).utc_day())
            .max();
        let day = match base {
            Some(d) => d + r.range(5, 500),
            None => r.range(DATA_START, DATA_END),
        };
        let off = offset(r);
        at_day(r, day, off)
    };
    if death.utc > END_TS {
        return Deceased::Alive;
    }
    encs.retain(|e| e.start.utc <= death.utc);
    Deceased::At(death)
}

fn conditions(r: &mut Rng, encs: &[Encounter]) -> Vec<Condition> {
    let mut out = Vec::new();
    for _ in 0..r.below(3) {
        if encs.is_empty() {
            break;
        }
        let ei = r.index(encs.len());
        let e = &encs[ei];
        if e.status == EncStatus::Cancelled {
            continue;
        }
        let t = Ts::new(e.start.utc + r.range(300, HOUR), e.start.offset_min);
        let code = r.pick(CHRONIC);
        out.push(new_condition(r, code, Some(ei), Some(t), Some(t)));
    }
    for (ei, e) in encs.iter().enumerate() {
        if !e.class.is_inpatient() {
            if e.status != EncStatus::Cancelled && r.chance(0.4) {
                let t = Ts::new(e.start.utc + r.range(300, HOUR), e.start.offset_min);
                let code = r.pick(OUTPATIENT_ACUTE);
                let mut c = new_condition(r, code, Some(ei), Some(t), Some(t));
                if r.chance(0.8) {
                    c.abatement = Some(Ts::new(t.utc + r.range(7, 20) * DAY, t.offset_min));
                }
                out.push(c);
            }
            if e.class == EncClass::Emer && r.chance(0.05) {
                // HAI code on an emergency visit: never counted.
                let t = Ts::new(e.start.utc + HOUR, e.start.offset_min);
                let code = r.index(HAI_COUNT);
                out.push(new_condition(r, code, Some(ei), Some(t), Some(t)));
            }
            continue;
        }
        let adm = e.start.utc_day();
        let dis = e.end.map_or(adm + 6, |t| t.utc_day());
        if r.chance(0.85) {
            // Principal diagnosis, present on admission.
            let t = Ts::new(e.start.utc + r.range(0, 2 * HOUR), e.start.offset_min);
            let code = r.pick(PRINCIPAL);
            let mut c = new_condition(r, code, Some(ei), Some(t), Some(t));
            if r.chance(0.3) {
                c.abatement = Some(Ts::new(t.utc + r.range(3, 60) * DAY, t.offset_min));
            }
            out.push(c);
        }
        if r.chance(0.3) {
            let off = offset(r);
            let (onset, recorded) = match r.weighted(&[40, 20, 15, 15, 10]) {
                // Hospital-onset: admission + 2 .. discharge (counted).
                0 if dis >= adm + 2 => {
                    let d = r.range(adm + 2, dis);
                    let t = at_day(r, d, off);
                    (Some(t), Some(t))
                }
                // Present on admission: admission day or the day after.
                0 | 1 => {
                    let d = adm + r.range(0, 1);
                    let t = at_day(r, d, off);
                    (Some(t), Some(t))
                }
                // After discharge.
                2 => {
                    let d = dis + r.range(1, 10);
                    let t = at_day(r, d, off);
                    (Some(t), Some(t))
                }
                // Only recordedDate (inside or outside the window).
                3 => {
                    let d = r.range(adm, dis + 3);
                    (None, Some(at_day(r, d, off)))
                }
                // Onset on admission + 1 (wins), recorded later in the stay.
                _ => {
                    let t = at_day(r, adm + 1, off);
                    let d = r.range(adm + 2, dis.max(adm + 2));
                    (Some(t), Some(at_day(r, d, off)))
                }
            };
            let code = r.index(HAI_COUNT);
            let mut c = new_condition(r, code, Some(ei), onset, recorded);
            // onset or recorded is always set in the arms above.
            let base = onset.or(recorded).unwrap_or(e.start);
            if r.chance(0.5) {
                c.abatement = Some(Ts::new(base.utc + r.range(5, 20) * DAY, off));
            }
            if r.chance(0.08) {
                c.verification = if r.chance(0.5) {
                    Verification::Refuted
                } else {
                    Verification::EnteredInError
                };
            }
            out.push(c);
            if r.chance(0.5) {
                // The same infection recorded again, inside NHSN's 14-day window or after it.
                let day = base.utc_day() + r.range(1, 16);
                let t = at_day(r, day, off);
                out.push(new_condition(r, code, Some(ei), Some(t), Some(t)));
            }
        }
    }
    out
}

/// One patient with everything that references it (export-1 state).
pub fn patient(r: &mut Rng, n_hosp: usize) -> PatientRecord {
    let id = r.id();
    let birth_date = r.range(days_from_civil(1935, 1, 1), days_from_civil(2012, 12, 31));
    let home = r.index(n_hosp);
    let mut encounters = Vec::new();
    stays(r, n_hosp, home, &mut encounters);
    other_encounters(r, n_hosp, home, &mut encounters);
    encounters.sort_by_key(|e| e.start.utc);
    let deceased = death(r, &mut encounters);
    let conditions = conditions(r, &encounters);
    let meta = meta1(r);
    PatientRecord {
        patient: Patient {
            id,
            birth_date,
            deceased,
            meta,
        },
        encounters,
        conditions,
    }
}

/// A resource written to export-2.
#[derive(Clone, Debug)]
pub enum Export2 {
    /// A newer or stale Patient version.
    Patient(Patient),
    /// A newer or stale Encounter version.
    Encounter(Encounter),
    /// A newer or stale Condition version.
    Condition(Condition),
    /// A byte-identical copy of the export-1 encounter at this index.
    EncounterCopy(usize),
    /// Delete of a Condition.
    Delete(Id),
}

pub struct DirtyPlan {
    /// The state a correct loader ends up with.
    pub final_rec: PatientRecord,
    pub items: Vec<Export2>,
    /// Write the whole export-1 record a second time (exact duplicates).
    pub duplicate: bool,
}

/// Decides the export-2 changes of one patient and the resulting final state.
pub fn plan_dirty(r: &mut Rng, base: &PatientRecord, stats: &mut DirtyStats) -> DirtyPlan {
    let mut fin = base.clone();
    let mut items = Vec::new();

    // Patient: newer version gaining a death, or a stale version that flips it.
    let last_activity = base
        .encounters
        .iter()
        .map(|e| e.end.unwrap_or(e.start).utc)
        .max()
        .unwrap_or(DATA_START * DAY);
    if base.patient.deceased == Deceased::Alive && r.chance(0.04) {
        let d = last_activity / DAY + r.range(1, 40);
        let off = offset(r);
        let t = at_day(r, d, off);
        if t.utc > last_activity && t.utc <= END_TS {
            fin.patient.deceased = Deceased::At(t);
            fin.patient.meta = meta_newer(r, 2);
            items.push(Export2::Patient(fin.patient.clone()));
            stats.newer_versions += 1;
        }
    } else if r.chance(0.02) {
        let mut p = base.patient.clone();
        p.deceased = match p.deceased {
            Deceased::Alive => {
                let d = base
                    .encounters
                    .iter()
                    .rev()
                    .find(|e| e.class.is_inpatient())
                    .map_or(last_activity / DAY, |e| e.start.utc_day())
                    + 10;
                let off = offset(r);
                Deceased::At(at_day(r, d, off))
            }
            _ => Deceased::Alive,
        };
        p.meta = meta_stale(r, p.meta);
        items.push(Export2::Patient(p));
        stats.stale_versions += 1;
    }

    let death = fin.patient.deceased.date_time().map_or(i64::MAX, |t| t.utc);
    for i in 0..base.encounters.len() {
        let e = &base.encounters[i];
        let next_start = base.encounters[i + 1..]
            .iter()
            .map(|n| n.start.utc)
            .filter(|&s| s > e.start.utc)
            .min()
            .unwrap_or(i64::MAX);
        let limit = (next_start - 1).min(death).min(END_TS);
        if e.class.is_inpatient() {
            if e.status == EncStatus::Finished && r.chance(0.05) {
                // Newer version: stay extended by 1-3 days.
                if let Some(end) = e.end {
                    let new_end = Ts::new(
                        end.utc + r.range(1, 3) * DAY + r.range(-HOUR, HOUR),
                        end.offset_min,
                    );
                    if new_end.utc <= limit && e.disposition != EXPIRED {
                        let v = &mut fin.encounters[i];
                        v.end = Some(new_end);
                        v.meta = meta_newer(r, 2);
                        items.push(Export2::Encounter(v.clone()));
                        stats.newer_versions += 1;
                    }
                }
                continue;
            }
            if e.status == EncStatus::InProgress && r.chance(0.5) {
                // Newer version: the stay has finished.
                let new_end = Ts::new(
                    e.start.utc + r.range(1, 7) * DAY + r.range(0, 8 * HOUR),
                    e.start.offset_min,
                );
                if new_end.utc <= limit {
                    let disposition = r.weighted(DISPOSITION_WEIGHTS);
                    let v = &mut fin.encounters[i];
                    v.status = EncStatus::Finished;
                    v.end = Some(new_end);
                    v.disposition = disposition;
                    v.meta = meta_newer(r, 2);
                    items.push(Export2::Encounter(v.clone()));
                    stats.newer_versions += 1;
                }
                continue;
            }
        }
        if r.chance(0.02) {
            // Stale version that would change the metrics if it won.
            let mut v = e.clone();
            if v.class.is_inpatient() {
                if r.chance(0.5) {
                    v.class = EncClass::Amb;
                } else {
                    v.status = EncStatus::Cancelled;
                }
            } else if let Some(end) = v.end {
                v.class = EncClass::Imp;
                v.status = EncStatus::Finished;
                v.end = Some(Ts::new(end.utc + 2 * DAY, end.offset_min));
            } else {
                v.status = EncStatus::Cancelled;
            }
            v.meta = meta_stale(r, v.meta);
            items.push(Export2::Encounter(v));
            stats.stale_versions += 1;
            continue;
        }
        if r.chance(0.01) {
            items.push(Export2::EncounterCopy(i));
            stats.exact_duplicates += 1;
        }
    }

    let mut deleted = vec![false; base.conditions.len()];
    for (ci, c) in base.conditions.iter().enumerate() {
        let hai = c.is_hai();
        if r.chance(if hai { 0.10 } else { 0.01 }) {
            items.push(Export2::Delete(c.id));
            deleted[ci] = true;
            stats.deleted += 1;
            stats.deleted_hai += u64::from(hai);
            continue;
        }
        let on_inpatient = c
            .encounter
            .is_some_and(|ei| base.encounters[ei].class.is_inpatient());
        if !hai && on_inpatient && r.chance(0.06) {
            // Newer version: recoded to an HAI code.
            let v = &mut fin.conditions[ci];
            v.code = r.index(HAI_COUNT);
            v.meta = meta_newer(r, 2);
            items.push(Export2::Condition(v.clone()));
            stats.newer_versions += 1;
            continue;
        }
        if r.chance(0.02) {
            let mut v = c.clone();
            v.code = if hai { BRONCHITIS } else { r.index(HAI_COUNT) };
            v.meta = meta_stale(r, v.meta);
            items.push(Export2::Condition(v));
            stats.stale_versions += 1;
        }
    }
    let mut keep = deleted.iter().map(|d| !d);
    fin.conditions.retain(|_| keep.next().unwrap_or(true));

    let duplicate = r.chance(0.03);
    if duplicate {
        stats.exact_duplicates += 1 + (base.encounters.len() + base.conditions.len()) as u64;
    }
    DirtyPlan {
        final_rec: fin,
        items,
        duplicate,
    }
}

/// The broken records of one tenant, anchored on a real patient so that a
/// loader accepting them would visibly change counts and metrics.
pub struct Junk {
    pub no_id_last_updated_ms: i64,
    pub bad_date_encounter: Id,
    pub patient: Id,
    pub hospital: usize,
    pub bad_subject_conditions: [(Id, &'static str); 2],
    /// A real encounter (preferably an inpatient stay) of the anchor patient.
    pub encounter: Option<Id>,
    pub onset: Ts,
    pub last_updated_ms: i64,
}

pub fn junk(r: &mut Rng, anchor: Option<&PatientRecord>, n_hosp: usize) -> Junk {
    let stay = anchor.and_then(|a| {
        a.encounters
            .iter()
            .find(|e| crate::metrics::is_stay(e))
            .or(a.encounters.first())
    });
    let onset = match stay {
        Some(e) => Ts::new(e.start.utc + 3 * DAY, e.start.offset_min),
        None => at_day(r, days_from_civil(2023, 6, 1), 0),
    };
    Junk {
        no_id_last_updated_ms: meta1(r).last_updated_ms,
        bad_date_encounter: r.id(),
        patient: anchor.map_or_else(|| r.id(), |a| a.patient.id),
        hospital: stay.map_or(0, |e| e.hospital.min(n_hosp.saturating_sub(1))),
        bad_subject_conditions: [(r.id(), "Patient/"), (r.id(), "Observation/xyz")],
        encounter: stay.map(|e| e.id),
        onset,
        last_updated_ms: meta1(r).last_updated_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ALL_WINDOWS_ENDED_DAY, episode_outcomes, is_stay, stay_outcomes};
    use crate::vocab::AGAINST_ADVICE;

    fn local_day(t: Ts) -> i64 {
        (t.utc + i64::from(t.offset_min) * 60).div_euclid(DAY)
    }

    /// Every edge case the metrics must get right occurs in generated data.
    #[test]
    fn clean_scenarios_are_covered() {
        let mut r = Rng::new(1);
        let mut seen = std::collections::BTreeMap::<&str, u32>::new();
        let mut hit = |k: &'static str, cond: bool| {
            if cond {
                *seen.entry(k).or_default() += 1;
            }
        };
        for _ in 0..6000 {
            let rec = patient(&mut r, 3);
            let stays: Vec<&Encounter> = rec.encounters.iter().filter(|e| is_stay(e)).collect();
            hit("chain of 3 stays", stays.len() >= 3);
            let death = rec.patient.deceased.date_time().map(|t| t.utc_day());
            hit("deceasedBoolean", rec.patient.deceased == Deceased::Unknown);
            for e in &rec.encounters {
                hit("ACUTE", e.class == EncClass::Acute);
                hit(
                    "cancelled stay",
                    e.class.is_inpatient() && e.status == EncStatus::Cancelled,
                );
                hit(
                    "in-progress stay",
                    e.class.is_inpatient() && e.status == EncStatus::InProgress,
                );
                hit(
                    "local date != UTC date",
                    local_day(e.start) != e.start.utc_day(),
                );
                assert!(e.end.is_none_or(|end| end.utc >= e.start.utc));
                assert!(e.start.utc_day() >= DATA_START && e.start.utc <= END_TS);
            }
            for s in &stays {
                let (adm, dis) = (s.start.utc_day(), s.end.map_or(0, |t| t.utc_day()));
                hit("same-day stay", adm == dis);
                hit(
                    "year-crossing stay",
                    crate::time::civil_from_days(adm).0 != crate::time::civil_from_days(dis).0,
                );
                hit(
                    "month-crossing stay",
                    crate::time::civil_from_days(adm).1 != crate::time::civil_from_days(dis).1,
                );
                hit(
                    "death during stay",
                    death.is_some_and(|d| adm <= d && d <= dis),
                );
                hit("death at admission+30", death == Some(adm + 30));
                hit("death at admission+31", death == Some(adm + 31));
                for n in &stays {
                    if n.start.utc > s.end.map_or(i64::MAX, |t| t.utc) {
                        hit("readmission at discharge+30", n.start.utc_day() == dis + 30);
                        hit("readmission at discharge+31", n.start.utc_day() == dis + 31);
                    }
                }
            }
            for c in rec.conditions.iter().filter(|c| c.is_hai()) {
                let e = &rec.encounters[c.encounter.unwrap_or(0)];
                if !is_stay(e) {
                    hit("HAI code outside a stay", true);
                    continue;
                }
                let (adm, dis) = (e.start.utc_day(), e.end.map_or(0, |t| t.utc_day()));
                let day = c.onset.or(c.recorded).map_or(0, |t| t.utc_day());
                hit("HAI onset admission+1", c.onset.is_some() && day == adm + 1);
                hit("HAI onset admission+2", c.onset.is_some() && day == adm + 2);
                hit("HAI after discharge", day > dis);
                hit(
                    "HAI recordedDate only, in window",
                    c.onset.is_none() && day >= adm + 2 && day <= dis,
                );
                hit(
                    "HAI onset wins over recordedDate",
                    c.onset
                        .zip(c.recorded)
                        .is_some_and(|(o, rd)| o.utc_day() < adm + 2 && rd.utc_day() >= adm + 2),
                );
                hit(
                    "HAI local date differs",
                    c.onset.is_some_and(|o| local_day(o) != o.utc_day()),
                );
                let in_window = day >= adm + 2 && day <= dis;
                hit(
                    "HAI refuted or entered-in-error, in window",
                    in_window && c.verification != Verification::Confirmed,
                );
                hit(
                    "HAI repeated within 14 days, in window",
                    in_window
                        && rec.conditions.iter().any(|o| {
                            o.code == c.code
                                && o.verification == Verification::Confirmed
                                && o.onset.is_some_and(|t| {
                                    (1..14).contains(&(t.utc_day() - day)) && t.utc_day() <= dis
                                })
                        }),
                );
            }
            for s in &stays {
                let end = s.end.map_or(i64::MAX, |t| t.utc);
                hit(
                    "stay left against advice, then another stay",
                    s.disposition == AGAINST_ADVICE && stays.iter().any(|n| n.start.utc > end),
                );
            }
            let outcomes = stay_outcomes(&rec, 0);
            let episodes = episode_outcomes(&rec, &outcomes, 0, ALL_WINDOWS_ENDED_DAY);
            hit("30-day death counted", episodes.iter().any(|e| e.death_30d));
            hit("readmission counted", episodes.iter().any(|e| e.readmitted));
            hit("transfer", episodes.iter().any(|e| e.stays.len() >= 2));
            hit(
                "a stay inside a longer one closes nothing",
                episodes
                    .iter()
                    .any(|e| e.last != e.stays[e.stays.len() - 1]),
            );
            hit(
                "transfer chain of 3",
                episodes.iter().any(|e| e.stays.len() >= 3),
            );
            hit(
                "death after a transfer",
                episodes.iter().any(|e| e.stays.len() >= 2 && e.death_30d),
            );
            hit(
                "readmission after a transfer",
                episodes.iter().any(|e| e.stays.len() >= 2 && e.readmitted),
            );
            hit(
                "HAI counted",
                outcomes.iter().any(|o| !o.hai_codes.is_empty()),
            );
            // Two counted of one code are at least 14 days apart: the second is not a repeat.
            let mut counted_codes: Vec<usize> =
                outcomes.iter().flat_map(|o| o.hai_codes.clone()).collect();
            counted_codes.sort_unstable();
            hit(
                "HAI of one code counted twice, 14 days apart or more",
                counted_codes.windows(2).any(|w| w[0] == w[1]),
            );
        }
        let expected = [
            "chain of 3 stays",
            "deceasedBoolean",
            "ACUTE",
            "cancelled stay",
            "in-progress stay",
            "local date != UTC date",
            "same-day stay",
            "year-crossing stay",
            "month-crossing stay",
            "death during stay",
            "death at admission+30",
            "death at admission+31",
            "readmission at discharge+30",
            "readmission at discharge+31",
            "HAI code outside a stay",
            "HAI onset admission+1",
            "HAI onset admission+2",
            "HAI after discharge",
            "HAI recordedDate only, in window",
            "HAI onset wins over recordedDate",
            "HAI local date differs",
            "HAI refuted or entered-in-error, in window",
            "HAI repeated within 14 days, in window",
            "HAI of one code counted twice, 14 days apart or more",
            "stay left against advice, then another stay",
            "30-day death counted",
            "readmission counted",
            "transfer",
            "a stay inside a longer one closes nothing",
            "transfer chain of 3",
            "death after a transfer",
            "readmission after a transfer",
            "HAI counted",
        ];
        for k in expected {
            assert!(
                seen.get(k).copied().unwrap_or(0) >= 3,
                "scenario not covered: {k} ({seen:?})"
            );
        }
    }

    #[test]
    fn dirty_scenarios_are_covered() {
        let mut r = Rng::new(2);
        let mut d = Rng::new(3);
        let mut stats = DirtyStats::default();
        let (
            mut gained_death,
            mut extended,
            mut finished,
            mut recoded,
            mut stale_p,
            mut stale_e,
            mut stale_c,
            mut copies,
            mut dups,
        ) = (0, 0, 0, 0, 0, 0, 0, 0, 0);
        for _ in 0..4000 {
            let base = patient(&mut r, 3);
            let plan = plan_dirty(&mut d, &base, &mut stats);
            dups += u32::from(plan.duplicate);
            for item in &plan.items {
                match item {
                    Export2::Patient(p)
                        if p.meta.last_updated_ms > base.patient.meta.last_updated_ms =>
                    {
                        assert!(p.deceased.date_time().is_some());
                        gained_death += 1;
                    }
                    Export2::Patient(_) => stale_p += 1,
                    Export2::Encounter(e) => {
                        let old = base.encounters.iter().find(|b| b.id == e.id).unwrap();
                        if e.meta.last_updated_ms > old.meta.last_updated_ms {
                            if old.status == EncStatus::InProgress {
                                finished += 1;
                            } else {
                                assert!(e.end > old.end);
                                extended += 1;
                            }
                        } else {
                            assert_ne!(e, old);
                            stale_e += 1;
                        }
                    }
                    Export2::Condition(c) => {
                        let old = base.conditions.iter().find(|b| b.id == c.id).unwrap();
                        assert_ne!(c.code, old.code);
                        if c.meta.last_updated_ms > old.meta.last_updated_ms {
                            assert!(c.is_hai());
                            recoded += 1;
                        } else {
                            stale_c += 1;
                        }
                    }
                    Export2::EncounterCopy(_) => copies += 1,
                    Export2::Delete(id) => {
                        assert!(!plan.final_rec.conditions.iter().any(|c| c.id == *id))
                    }
                }
            }
        }
        for (name, n) in [
            ("gained death", gained_death),
            ("extended", extended),
            ("finished", finished),
            ("recoded", recoded),
            ("stale patient", stale_p),
            ("stale encounter", stale_e),
            ("stale condition", stale_c),
            ("encounter copies", copies),
            ("duplicated patients", dups),
        ] {
            assert!(n >= 3, "{name}: {n}");
        }
        assert!(stats.deleted_hai >= 3 && stats.deleted > stats.deleted_hai);
    }
}
