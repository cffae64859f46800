//! The gold tables' schemas, and conversions between Arrow batches and the metric rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::ArrowPrimitiveType;
use arrow_array::types::{Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, BooleanArray, PrimitiveArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{Schema, SchemaRef};
use object_store::path::Path;

use super::metrics::{
    ConditionFacts, EncounterFacts, GoldRows, HaiByCode, HaiValueSet, HospitalMonth, Infection,
    MortalityYear, PatientFacts, StayDetail, TenantSilver,
};
use crate::error::{CoreError, Result};
use crate::fast_hash::FastMap;
use crate::fhir::CodingValue;
use crate::hudi::TableDef;
use crate::profile::TenantProfile;
use crate::rows::{BatchBuilder, Kind, RowWriter, field};
use crate::silver::{SilverTable, parse_codings_column};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GoldTable {
    HospitalMonthly,
    HaiByCode,
    MortalityYearly,
    StayDetail,
}

/// The most rows of one gold batch.
const BATCH_ROWS: usize = 64 * 1024;

/// The columns of `stay_detail` that hold a value only on some stays (an episode's first or last).
const STAY_DETAIL_OPTIONAL: [&str; 7] = [
    "died_30d",
    "mortality_window_open",
    "index_episode",
    "exclusion_reason",
    "readmitted",
    "readmission_stay_key",
    "readmission_window_open",
];

impl GoldTable {
    pub const ALL: [GoldTable; 4] = [
        Self::HaiByCode,
        Self::MortalityYearly,
        Self::HospitalMonthly,
        Self::StayDetail,
    ];

    /// The tables of sums (per hospital and month, year, infection code): all but the stay detail.
    pub const SUMS: [GoldTable; 3] = [
        Self::HaiByCode,
        Self::MortalityYearly,
        Self::HospitalMonthly,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::HospitalMonthly => "hospital_monthly",
            Self::HaiByCode => "hai_by_code",
            Self::MortalityYearly => "mortality_yearly",
            Self::StayDetail => "stay_detail",
        }
    }

    /// Gold tables are small per tenant: one file group per tenant partition, rewritten whole.
    pub fn def(self) -> TableDef {
        TableDef {
            name: self.name().to_owned(),
            base: Path::from("gold").join(self.name()),
            record_key: "row_key".to_owned(),
            partition_field: "tenant_id".to_owned(),
            precombine: "refreshed_at".to_owned(),
            buckets: 1,
            data_schema: self.schema(),
        }
    }

    pub fn schema(self) -> SchemaRef {
        use Kind::*;
        let specific: &[(&str, Kind)] = match self {
            Self::HospitalMonthly => &[
                ("hospital_id", Str),
                ("hospital_name", Str),
                ("month", Str),
                ("stays", I64),
                ("deaths_30d", I64),
                ("mortality_episodes", I64),
                ("mortality_rate", F64),
                ("index_stays", I64),
                ("readmissions_30d", I64),
                ("readmission_rate", F64),
                ("patient_days", I64),
                ("alos", F64),
                ("hai_count", I64),
                ("hai_stays", I64),
                ("hai_per_1000_patient_days", F64),
                ("open_window_index", I64),
                ("open_window_mortality", I64),
                ("measure_version", I32),
            ],
            Self::HaiByCode => &[
                ("month", Str),
                ("system", Str),
                ("code", Str),
                ("display", Str),
                ("count", I64),
                ("measure_version", I32),
            ],
            Self::MortalityYearly => &[
                ("year", I32),
                ("episodes", I64),
                ("deaths", I64),
                ("rate", F64),
                ("measure_version", I32),
            ],
            Self::StayDetail => &[
                ("stay_key", Str),
                ("episode_key", Str),
                ("patient_key", Str),
                ("hospital_id", Str),
                ("month", Str),
                ("admission_date", Date),
                ("discharge_date", Date),
                ("los", I64),
                ("died_30d", Bool),
                ("mortality_window_open", Bool),
                ("index_episode", Bool),
                ("exclusion_reason", Str),
                ("readmitted", Bool),
                ("readmission_stay_key", Str),
                ("readmission_window_open", Bool),
                ("hai_count", I64),
                ("measure_version", I32),
            ],
        };
        let mut fields = vec![field("row_key", Str, false), field("tenant_id", Str, false)];
        fields.extend(
            specific
                .iter()
                .map(|(name, kind)| field(name, *kind, STAY_DETAIL_OPTIONAL.contains(name))),
        );
        fields.push(field("refreshed_at", Ts, false));
        Arc::new(Schema::new(fields))
    }

    /// This table's rows of a tenant's gold content, as batches of at most [`BATCH_ROWS`] rows
    /// (a million stays' detail as one batch was built, then split by bucket, at twice the cost).
    pub fn batches(
        self,
        tenant: &str,
        rows: &GoldRows,
        refreshed_at: i64,
    ) -> Result<Vec<RecordBatch>> {
        let mut builder = BatchBuilder::new(self.schema());
        let mut batches = Vec::new();
        // Every gold row: its key and tenant first, the refresh time last.
        let mut push = |key: &str, values: &dyn Fn(&mut RowWriter<'_>)| -> Result<()> {
            let mut row = builder.row();
            row.str(Some(key)).str(Some(tenant));
            values(&mut row);
            row.ts(Some(refreshed_at)).end();
            if builder.len() == BATCH_ROWS {
                batches.push(builder.finish()?);
            }
            Ok(())
        };
        match self {
            Self::HospitalMonthly => {
                for r in &rows.hospital_monthly {
                    push(&format!("{}|{}", r.hospital_id, r.month), &|row| {
                        row.str(Some(&r.hospital_id))
                            .str(Some(&r.hospital_name))
                            .str(Some(&r.month))
                            .i64(Some(r.stays))
                            .i64(Some(r.deaths_30d))
                            .i64(Some(r.mortality_episodes))
                            .f64(Some(r.mortality_rate))
                            .i64(Some(r.index_stays))
                            .i64(Some(r.readmissions_30d))
                            .f64(Some(r.readmission_rate))
                            .i64(Some(r.patient_days))
                            .f64(Some(r.alos))
                            .i64(Some(r.hai_count))
                            .i64(Some(r.hai_stays))
                            .f64(Some(r.hai_per_1000_patient_days))
                            .i64(Some(r.open_window_index))
                            .i64(Some(r.open_window_mortality))
                            .i32(Some(r.measure_version));
                    })?;
                }
            }
            Self::HaiByCode => {
                for r in &rows.hai_by_code {
                    push(&format!("{}|{}|{}", r.month, r.system, r.code), &|row| {
                        row.str(Some(&r.month))
                            .str(Some(&r.system))
                            .str(Some(&r.code))
                            .str(Some(&r.display))
                            .i64(Some(r.count))
                            .i32(Some(r.measure_version));
                    })?;
                }
            }
            Self::MortalityYearly => {
                for r in &rows.mortality_yearly {
                    push(&r.year.to_string(), &|row| {
                        row.i32(Some(r.year))
                            .i64(Some(r.episodes))
                            .i64(Some(r.deaths))
                            .f64(Some(r.rate))
                            .i32(Some(r.measure_version));
                    })?;
                }
            }
            Self::StayDetail => {
                for r in &rows.stay_detail {
                    push(&r.stay_key, &|row| {
                        row.str(Some(&r.stay_key))
                            .str(Some(&r.episode_key))
                            .str(Some(&r.patient_key))
                            .str(Some(&r.hospital_id))
                            .str(Some(&r.month))
                            .date(Some(r.admission_date))
                            .date(Some(r.discharge_date))
                            .i64(Some(r.los))
                            .bool(r.died_30d)
                            .bool(r.mortality_window_open)
                            .bool(r.index_episode)
                            .str(r.exclusion_reason.as_deref())
                            .bool(r.readmitted)
                            .str(r.readmission_stay_key.as_deref())
                            .bool(r.readmission_window_open)
                            .i64(Some(r.hai_count))
                            .i32(Some(r.measure_version));
                    })?;
                }
            }
        }
        if !builder.is_empty() || batches.is_empty() {
            batches.push(builder.finish()?);
        }
        Ok(batches)
    }
}

/// Typed access to a batch's columns by name, with an error that names what is missing.
struct Columns<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    fn column(&self, name: &str) -> Result<&'a dyn Array> {
        self.batch
            .column_by_name(name)
            .map(|c| c.as_ref())
            .ok_or_else(|| CoreError::Table {
                table: "gold input".into(),
                message: format!("missing column {name}"),
            })
    }

    fn strings(&self, name: &str) -> Result<&'a StringArray> {
        Ok(self.column(name)?.as_string::<i32>())
    }

    fn times(&self, name: &str) -> Result<&'a TimestampMicrosecondArray> {
        self.primitives::<TimestampMicrosecondType>(name)
    }

    fn primitives<T: ArrowPrimitiveType>(&self, name: &str) -> Result<&'a PrimitiveArray<T>> {
        Ok(self.column(name)?.as_primitive::<T>())
    }

    fn flags(&self, name: &str) -> Result<&'a BooleanArray> {
        Ok(self.column(name)?.as_boolean())
    }

    fn text(&self, name: &str, row: usize) -> Result<Option<String>> {
        let column = self.column(name)?;
        Ok((!column.is_null(row)).then(|| column.as_string::<i32>().value(row).to_owned()))
    }

    fn int32(&self, name: &str, row: usize) -> Result<i32> {
        Ok(self.column(name)?.as_primitive::<Int32Type>().value(row))
    }

    fn int(&self, name: &str, row: usize) -> Result<i64> {
        Ok(self.column(name)?.as_primitive::<Int64Type>().value(row))
    }

    fn float(&self, name: &str, row: usize) -> Result<f64> {
        Ok(self.column(name)?.as_primitive::<Float64Type>().value(row))
    }
}

/// A text cell, borrowed; `None` when null.
fn text_at(column: &StringArray, row: usize) -> Option<&str> {
    column.is_valid(row).then(|| column.value(row))
}

/// A number or timestamp cell; `None` when null.
fn value_at<T: ArrowPrimitiveType>(column: &PrimitiveArray<T>, row: usize) -> Option<T::Native> {
    column.is_valid(row).then(|| column.value(row))
}

/// A boolean cell; `None` when null.
fn flag_at(column: &BooleanArray, row: usize) -> Option<bool> {
    column.is_valid(row).then(|| column.value(row))
}

/// The `stay_detail` rows (a million for a large tenant), columns resolved once per batch.
fn stay_detail_rows<'b>(
    batches: impl IntoIterator<Item = &'b RecordBatch>,
) -> Result<Vec<StayDetail>> {
    let mut rows = Vec::new();
    for batch in batches {
        let c = Columns { batch };
        let [
            stay,
            episode,
            patient,
            hospital,
            month,
            exclusion,
            readmission,
        ] = [
            "stay_key",
            "episode_key",
            "patient_key",
            "hospital_id",
            "month",
            "exclusion_reason",
            "readmission_stay_key",
        ]
        .map(|name| c.strings(name));
        let (stay, episode, patient, hospital) = (stay?, episode?, patient?, hospital?);
        let (month, exclusion, readmission) = (month?, exclusion?, readmission?);
        let [died, mortality_open, index, readmitted, readmission_open] = [
            "died_30d",
            "mortality_window_open",
            "index_episode",
            "readmitted",
            "readmission_window_open",
        ]
        .map(|name| c.flags(name));
        let (died, mortality_open, index) = (died?, mortality_open?, index?);
        let (readmitted, readmission_open) = (readmitted?, readmission_open?);
        let admission = c.primitives::<Date32Type>("admission_date")?;
        let discharge = c.primitives::<Date32Type>("discharge_date")?;
        let los = c.primitives::<Int64Type>("los")?;
        let hai_count = c.primitives::<Int64Type>("hai_count")?;
        let version = c.primitives::<Int32Type>("measure_version")?;
        let owned = |column: &StringArray, row: usize| text_at(column, row).map(str::to_owned);
        for r in 0..batch.num_rows() {
            rows.push(StayDetail {
                stay_key: owned(stay, r).unwrap_or_default(),
                episode_key: owned(episode, r).unwrap_or_default(),
                patient_key: owned(patient, r).unwrap_or_default(),
                hospital_id: owned(hospital, r).unwrap_or_default(),
                month: owned(month, r).unwrap_or_default(),
                admission_date: admission.value(r),
                discharge_date: discharge.value(r),
                los: los.value(r),
                died_30d: flag_at(died, r),
                mortality_window_open: flag_at(mortality_open, r),
                index_episode: flag_at(index, r),
                exclusion_reason: owned(exclusion, r),
                readmitted: flag_at(readmitted, r),
                readmission_stay_key: owned(readmission, r),
                readmission_window_open: flag_at(readmission_open, r),
                hai_count: hai_count.value(r),
                measure_version: version.value(r),
            });
        }
    }
    Ok(rows)
}

/// Whether a tenant's committed `stay_detail`, read a batch at a time ([`Self::add`]), holds
/// exactly the rows just computed: a daily refresh compares a million rows without holding a
/// second copy of them.
pub struct StayDetailComparison<'r> {
    /// Sorted by stay key, as [`super::compute`] returns them.
    computed: &'r [StayDetail],
    matched: usize,
    differs: bool,
}

impl<'r> StayDetailComparison<'r> {
    pub fn new(computed: &'r [StayDetail]) -> Self {
        Self {
            computed,
            matched: 0,
            differs: false,
        }
    }

    /// Compares one batch of committed rows (any order: files are per bucket).
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.differs {
            return Ok(());
        }
        for committed in stay_detail_rows([batch])? {
            let found = self
                .computed
                .binary_search_by(|row| row.stay_key.cmp(&committed.stay_key));
            // Stay keys are the table's record keys: each committed row matches one at most.
            match found {
                Ok(at) if self.computed[at] == committed => self.matched += 1,
                _ => {
                    self.differs = true;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Every committed row equals a computed one, and every computed row was committed.
    pub fn same(&self) -> bool {
        !self.differs && self.matched == self.computed.len()
    }
}

fn each_row<T>(
    batches: Option<&Vec<RecordBatch>>,
    mut f: impl FnMut(&Columns<'_>, usize) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for batch in batches.into_iter().flatten() {
        let columns = Columns { batch };
        for row in 0..batch.num_rows() {
            out.push(f(&columns, row)?);
        }
    }
    Ok(out)
}

/// The silver columns [`tenant_silver_from_batches`] reads: a gold refresh decodes only these
/// (a fraction of each table's bytes).
pub fn silver_columns_read(table: SilverTable) -> &'static [&'static str] {
    match table {
        SilverTable::Patient => &["patient_key", "deceased_at"],
        SilverTable::Encounter => &[
            "encounter_key",
            "patient_key",
            "status",
            "class_code",
            "class_system",
            "period_start",
            "period_end",
            "hospital_key",
            "hospital_name",
            "part_of_key",
            "discharge_disposition",
            "discharge_disposition_system",
        ],
        SilverTable::Condition => &[
            "encounter_key",
            "verification_status",
            "code_system",
            "code",
            "code_codings",
            "onset_at",
            "recorded_at",
        ],
        SilverTable::Organization => &["organization_key", "identifier_key", "name"],
    }
}

/// A condition's codings: `code_codings`, or for a row written before that column existed, its one
/// preferred coding.
fn condition_codings(c: &Columns<'_>, row: usize) -> Result<Vec<CodingValue>> {
    if let Some(text) = c.text("code_codings", row)? {
        return parse_codings_column(&text).map_err(|e| unreadable_codings(&e));
    }
    let system = c.text("code_system", row)?;
    Ok(c.text("code", row)?
        .map(|code| CodingValue { system, code })
        .into_iter()
        .collect())
}

/// One coding of `condition.code_codings`, borrowed from the column where it has no escapes.
#[derive(serde::Deserialize)]
struct CodingRef<'a> {
    #[serde(borrow, default)]
    system: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    code: std::borrow::Cow<'a, str>,
}

fn unreadable_codings(e: &serde_json::Error) -> CoreError {
    CoreError::Table {
        table: "gold input".into(),
        message: format!("condition.code_codings does not parse: {e}"),
    }
}

/// The conditions with a coding in the value set, as [`Infection`]s: a tenant has millions of the
/// others, which count for nothing. They are read a batch at a time ([`Self::add`]), so the
/// condition columns are never held whole.
pub struct ListedConditions<'v> {
    value_set: &'v HaiValueSet,
    /// A tenant's millions of conditions repeat a few thousand codings: each text is parsed once.
    listed_codings: FastMap<Box<str>, bool>,
    infections: Vec<Infection>,
}

impl<'v> ListedConditions<'v> {
    pub fn new(value_set: &'v HaiValueSet) -> Self {
        Self {
            value_set,
            listed_codings: FastMap::default(),
            infections: Vec::new(),
        }
    }

    /// Keeps the listed conditions of one batch (the columns [`silver_columns_read`] names).
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let c = Columns { batch };
        let (codings, systems, codes) = (
            c.strings("code_codings")?,
            c.strings("code_system")?,
            c.strings("code")?,
        );
        let (encounters, statuses) = (
            c.strings("encounter_key")?,
            c.strings("verification_status")?,
        );
        let (onsets, recorded) = (c.times("onset_at")?, c.times("recorded_at")?);
        for r in 0..batch.num_rows() {
            let listed = if codings.is_null(r) {
                !codes.is_null(r) && self.value_set.lists(text_at(systems, r), codes.value(r))
            } else {
                let text = codings.value(r);
                match self.listed_codings.get(text) {
                    Some(&listed) => listed,
                    None => {
                        let listed = serde_json::from_str::<Vec<CodingRef<'_>>>(text)
                            .map_err(|e| unreadable_codings(&e))?
                            .iter()
                            .any(|coding| {
                                self.value_set.lists(coding.system.as_deref(), &coding.code)
                            });
                        self.listed_codings.insert(text.into(), listed);
                        listed
                    }
                }
            };
            if listed {
                let condition = ConditionFacts {
                    encounter_key: text_at(encounters, r).map(str::to_owned),
                    verification_status: text_at(statuses, r).map(str::to_owned),
                    codings: condition_codings(&c, r)?,
                    onset_at: value_at(onsets, r),
                    recorded_at: value_at(recorded, r),
                };
                self.infections.extend(condition.infection(self.value_set));
            }
        }
        Ok(())
    }

    pub fn into_infections(self) -> Vec<Infection> {
        self.infections
    }
}

/// The encounter columns [`tenant_silver_from_batches`] reads, resolved once per batch.
struct EncounterColumns<'a> {
    strings: [&'a StringArray; 10],
    start: &'a TimestampMicrosecondArray,
    end: &'a TimestampMicrosecondArray,
}

impl<'a> EncounterColumns<'a> {
    fn new(batch: &'a RecordBatch) -> Result<Self> {
        const NAMES: [&str; 10] = [
            "encounter_key",
            "patient_key",
            "status",
            "class_code",
            "class_system",
            "hospital_key",
            "hospital_name",
            "part_of_key",
            "discharge_disposition",
            "discharge_disposition_system",
        ];
        let c = Columns { batch };
        let strings = NAMES
            .iter()
            .map(|name| c.strings(name))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            strings: strings.try_into().expect("one column per name"),
            start: c.times("period_start")?,
            end: c.times("period_end")?,
        })
    }

    fn row(&self, r: usize) -> EncounterFacts<'a> {
        let [
            key,
            patient,
            status,
            class_code,
            class_system,
            hospital_key,
            hospital_name,
            part_of,
            disposition,
            disposition_system,
        ] = self.strings;
        EncounterFacts {
            encounter_key: text_at(key, r).unwrap_or_default(),
            patient_key: text_at(patient, r).unwrap_or_default(),
            status: text_at(status, r),
            class_code: text_at(class_code, r),
            class_system: text_at(class_system, r),
            period_start: value_at(self.start, r),
            period_end: value_at(self.end, r),
            hospital_key: text_at(hospital_key, r),
            hospital_name: text_at(hospital_name, r),
            part_of_key: text_at(part_of, r),
            discharge_disposition: text_at(disposition, r),
            discharge_disposition_system: text_at(disposition_system, r),
        }
    }
}

/// The rows of a silver batch (the columns [`silver_columns_read`] names) that
/// [`tenant_silver_from_batches`] keeps with `profile`: patients with a death date, encounters
/// that are stays or part of another, every organization. A refresh applies it as it reads, so the
/// others (most patients and encounters) are never held.
pub fn silver_rows_kept(
    table: SilverTable,
    batch: RecordBatch,
    profile: &TenantProfile,
) -> Result<RecordBatch> {
    let keep: BooleanArray = match table {
        SilverTable::Patient => {
            let deaths = Columns { batch: &batch }.times("deceased_at")?;
            (0..batch.num_rows())
                .map(|r| Some(deaths.is_valid(r)))
                .collect()
        }
        SilverTable::Encounter => {
            let encounters = EncounterColumns::new(&batch)?;
            (0..batch.num_rows())
                .map(|r| Some(encounters.row(r).counts(profile)))
                .collect()
        }
        SilverTable::Condition | SilverTable::Organization => return Ok(batch),
    };
    if keep.true_count() == batch.num_rows() {
        return Ok(batch);
    }
    Ok(arrow_select::filter::filter_record_batch(&batch, &keep)?)
}

/// A tenant's silver content as the metrics read it with `profile`, borrowed from `batches` (its
/// patients, encounters and organizations), with its `infections` ([`ListedConditions`]). Kept are
/// only what [`super::compute`] reads: patients with a death date, encounters that are stays or part
/// of another.
pub fn tenant_silver_from_batches<'a>(
    batches: &'a BTreeMap<SilverTable, Vec<RecordBatch>>,
    infections: Vec<Infection>,
    profile: &TenantProfile,
) -> Result<TenantSilver<'a>> {
    let mut silver = TenantSilver {
        infections,
        ..TenantSilver::default()
    };
    // Each column is resolved once per batch and read borrowed: these loops see every row.
    for batch in batches.get(&SilverTable::Patient).into_iter().flatten() {
        let c = Columns { batch };
        let (keys, deaths) = (c.strings("patient_key")?, c.times("deceased_at")?);
        for r in 0..batch.num_rows() {
            if let Some(deceased_at) = value_at(deaths, r) {
                let key = text_at(keys, r).unwrap_or_default();
                silver.patients.insert(
                    key,
                    PatientFacts {
                        deceased_at: Some(deceased_at),
                    },
                );
            }
        }
    }
    for batch in batches.get(&SilverTable::Encounter).into_iter().flatten() {
        let encounters = EncounterColumns::new(batch)?;
        for r in 0..batch.num_rows() {
            let encounter = encounters.row(r);
            if encounter.counts(profile) {
                silver.encounters.push(encounter);
            }
        }
    }
    for batch in batches
        .get(&SilverTable::Organization)
        .into_iter()
        .flatten()
    {
        let c = Columns { batch };
        let (keys, identifiers, names) = (
            c.strings("organization_key")?,
            c.strings("identifier_key")?,
            c.strings("name")?,
        );
        for r in 0..batch.num_rows() {
            if let Some(name) = text_at(names, r) {
                for key in [text_at(keys, r), text_at(identifiers, r)]
                    .into_iter()
                    .flatten()
                {
                    silver.hospital_names.insert(key, name);
                }
            }
        }
    }
    Ok(silver)
}

/// A tenant's gold content read back from its gold partitions, sorted like [`super::compute`].
pub fn gold_rows_from_batches(batches: &BTreeMap<GoldTable, Vec<RecordBatch>>) -> Result<GoldRows> {
    let mut rows = GoldRows {
        hospital_monthly: each_row(batches.get(&GoldTable::HospitalMonthly), |c, r| {
            Ok(HospitalMonth {
                hospital_id: c.text("hospital_id", r)?.unwrap_or_default(),
                hospital_name: c.text("hospital_name", r)?.unwrap_or_default(),
                month: c.text("month", r)?.unwrap_or_default(),
                stays: c.int("stays", r)?,
                deaths_30d: c.int("deaths_30d", r)?,
                mortality_episodes: c.int("mortality_episodes", r)?,
                mortality_rate: c.float("mortality_rate", r)?,
                index_stays: c.int("index_stays", r)?,
                readmissions_30d: c.int("readmissions_30d", r)?,
                readmission_rate: c.float("readmission_rate", r)?,
                patient_days: c.int("patient_days", r)?,
                alos: c.float("alos", r)?,
                hai_count: c.int("hai_count", r)?,
                hai_stays: c.int("hai_stays", r)?,
                hai_per_1000_patient_days: c.float("hai_per_1000_patient_days", r)?,
                open_window_index: c.int("open_window_index", r)?,
                open_window_mortality: c.int("open_window_mortality", r)?,
                measure_version: c.int32("measure_version", r)?,
            })
        })?,
        hai_by_code: each_row(batches.get(&GoldTable::HaiByCode), |c, r| {
            Ok(HaiByCode {
                month: c.text("month", r)?.unwrap_or_default(),
                system: c.text("system", r)?.unwrap_or_default(),
                code: c.text("code", r)?.unwrap_or_default(),
                display: c.text("display", r)?.unwrap_or_default(),
                count: c.int("count", r)?,
                measure_version: c.int32("measure_version", r)?,
            })
        })?,
        stay_detail: stay_detail_rows(batches.get(&GoldTable::StayDetail).into_iter().flatten())?,
        mortality_yearly: each_row(batches.get(&GoldTable::MortalityYearly), |c, r| {
            Ok(MortalityYear {
                year: c.int32("year", r)?,
                episodes: c.int("episodes", r)?,
                deaths: c.int("deaths", r)?,
                rate: c.float("rate", r)?,
                measure_version: c.int32("measure_version", r)?,
            })
        })?,
    };
    rows.hospital_monthly.sort_by(|a, b| {
        (&a.hospital_name, &a.hospital_id, &a.month).cmp(&(
            &b.hospital_name,
            &b.hospital_id,
            &b.month,
        ))
    });
    rows.hai_by_code
        .sort_by(|a, b| (&a.month, &a.system, &a.code).cmp(&(&b.month, &b.system, &b.code)));
    rows.mortality_yearly.sort_by_key(|r| r.year);
    rows.stay_detail.sort_by(|a, b| a.stay_key.cmp(&b.stay_key));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(stay_key: &str, hai_count: i64) -> StayDetail {
        StayDetail {
            stay_key: stay_key.into(),
            episode_key: stay_key.into(),
            patient_key: "p".into(),
            hospital_id: "h".into(),
            month: "2024-07".into(),
            los: 3,
            hai_count,
            measure_version: 2,
            ..StayDetail::default()
        }
    }

    /// `rows` as committed: one batch per bucket-like chunk, in another order than the keys'.
    fn committed(rows: &[StayDetail]) -> Vec<RecordBatch> {
        rows.rchunks(2)
            .map(|chunk| {
                let gold = GoldRows {
                    stay_detail: chunk.to_vec(),
                    ..GoldRows::default()
                };
                let mut batches = GoldTable::StayDetail.batches("t1", &gold, 0).unwrap();
                batches.pop().unwrap()
            })
            .collect()
    }

    fn same(computed: &[StayDetail], committed: &[RecordBatch]) -> bool {
        let mut comparison = StayDetailComparison::new(computed);
        for batch in committed {
            comparison.add(batch).unwrap();
        }
        comparison.same()
    }

    #[test]
    fn the_stay_detail_comparison_finds_a_changed_missing_or_extra_row_in_any_order() {
        // GIVEN five computed rows, sorted by stay key, and the same rows committed in batches
        // in another order
        let computed: Vec<StayDetail> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|key| detail(key, 0))
            .collect();
        // WHEN each is compared, THEN the same rows are the same
        assert!(same(&computed, &committed(&computed)));
        // and a changed value, a row missing from either side, or another key is not
        let mut changed = computed.clone();
        changed[3].hai_count = 1;
        assert!(!same(&computed, &committed(&changed)));
        assert!(!same(&computed, &committed(&computed[1..])));
        assert!(!same(&computed[1..], &committed(&computed)));
        let mut renamed = computed.clone();
        renamed[4].stay_key = "f".into();
        assert!(!same(&computed, &committed(&renamed)));
        // nothing computed and nothing committed are the same
        assert!(same(&[], &[]));
    }
}
