//! Test support: temp-dir lake contexts, fixtures, a silver reader that turns rows into JSON for
//! assertions, and fault-injecting wrappers of the storage and ledger ports ([`faults`]). With the
//! `aws-emulator` feature, [`aws`] deploys MetricCare's AWS resources into a running moto server.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;

use metriccare_core::deid::Pseudonymizer;
use metriccare_core::gold::GoldRows;
use metriccare_core::ingest::{FileReport, Services, Settings};
use metriccare_core::scale_out::ScaleOutGroup;
use metriccare_core::silver::SilverTable;
use metriccare_core::tenant::TenantId;
use metriccare_local::{LocalConfig, LocalLake};
use object_store::path::Path;
use serde_json::{Map, Value};

#[cfg(feature = "aws-emulator")]
pub mod aws;
pub mod faults;
pub mod fuzzing;

/// The key every test lake uses, so tests can compute expected pseudonyms.
pub const TEST_KEY: [u8; 32] = *b"metriccare-test-key-32-bytes-ok!";

pub fn test_pseudonymizer() -> Pseudonymizer {
    Pseudonymizer::new(&TEST_KEY).expect("valid test key")
}

pub fn pseudonym(tenant: &str, kind: &str, id: &str) -> String {
    test_pseudonymizer().pseudonym(&tenant_id(tenant), kind, id)
}

pub fn tenant_id(tenant: &str) -> TenantId {
    TenantId::parse(tenant).expect("valid tenant in test")
}

/// The repository's `tests/fixtures` folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The bytes of a file of `tests/fixtures`.
pub fn read_fixture(path: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(path)).expect("fixture file")
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

/// A lake in a temporary directory with the test key.
pub struct TestLake {
    pub dir: tempfile::TempDir,
    pub lake: LocalLake,
    settings: Settings,
}

impl TestLake {
    pub fn new() -> Self {
        Self::with_settings(Settings::default())
    }

    /// A test lake whose processes use these settings (limits, lease).
    pub fn with_settings(settings: Settings) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let lake = open_lake(dir.path(), settings.clone());
        Self {
            dir,
            lake,
            settings,
        }
    }

    /// Another process's view of the same lake (its own ledger connection and services).
    pub fn another_process(&self) -> LocalLake {
        open_lake(self.dir.path(), self.settings.clone())
    }

    pub fn path(&self) -> &FsPath {
        self.dir.path()
    }

    /// Writes a file into a scratch folder outside the lake and returns its path.
    pub fn write_input(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.dir.path().join("input").join(name);
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write input");
        path
    }

    /// Drops a file into the raw zone (`<lake>/raw/<key>`), as an upload would.
    pub fn drop_raw(&self, key: &str, content: &[u8]) -> Path {
        let path = self.lake.dir.join("raw").join(key);
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write raw");
        Path::parse(key).expect("a valid object key")
    }

    pub async fn ingest(&self, file: &FsPath, tenant: &str) -> FileReport {
        self.lake
            .ingest_file(file, &tenant_id(tenant))
            .await
            .expect("ingest runs")
    }

    /// Every row of a silver table's latest snapshot, as JSON objects without the meta columns.
    pub async fn rows(&self, table: SilverTable) -> Vec<Map<String, Value>> {
        silver_rows(&self.lake.services, table).await
    }

    pub async fn latest_instant(&self, table: SilverTable) -> Option<String> {
        let hudi = self
            .lake
            .services
            .silver_table(table)
            .await
            .expect("open table");
        hudi.snapshot(None)
            .await
            .expect("snapshot")
            .latest_instant()
            .map(str::to_owned)
    }
}

impl Default for TestLake {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn open_lake(dir: &FsPath, settings: Settings) -> LocalLake {
    let config = LocalConfig {
        key: Some(TEST_KEY.to_vec()),
        settings,
        ..LocalConfig::default()
    };
    LocalLake::open_with(dir, config).expect("open test lake")
}

/// Every record key in every base file under `folder` of the lake (latest and older slices, live
/// or replaced file groups): what is still on disk.
pub async fn record_keys_on_disk(lake: &TestLake, folder: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for file in files_under(&lake.path().join(folder)) {
        if !file.to_string_lossy().ends_with(".parquet") {
            continue;
        }
        let relative = file.strip_prefix(lake.path()).expect("under the lake");
        let path = Path::from(relative.to_string_lossy().as_ref());
        let store = lake.lake.services.lake.as_ref();
        let key_only =
            std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
                "_hoodie_record_key",
                arrow_schema::DataType::Utf8,
                false,
            )]));
        let columns = ["_hoodie_record_key"];
        let batches =
            metriccare_core::hudi::read_base_file(store, &path, Some(&columns), &key_only)
                .await
                .expect("a readable base file");
        for batch in batches {
            let column = batch.column(0).as_string::<i32>();
            keys.extend(column.iter().flatten().map(str::to_owned));
        }
    }
    keys
}

/// Every file under a directory, recursively (none when it does not exist).
pub fn files_under(dir: &FsPath) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Stages every task of a scale-out group here, one after the other, as Spark's executors would.
pub async fn stage_every_task(
    services: &Services,
    source: &std::sync::Arc<dyn object_store::ObjectStore>,
    group: &ScaleOutGroup,
) {
    for task in group.tasks() {
        services
            .stage_task(source.clone(), &task)
            .await
            .expect("stage a task");
    }
}

/// Rows of a silver table (sorted by record key) as JSON objects, meta columns left out.
pub async fn silver_rows(services: &Services, table: SilverTable) -> Vec<Map<String, Value>> {
    let hudi = services.silver_table(table).await.expect("open table");
    let snapshot = hudi.snapshot(None).await.expect("snapshot");
    let batches = snapshot
        .read(services.lake.as_ref(), None, None)
        .await
        .expect("read snapshot");
    let mut rows: Vec<Map<String, Value>> = batches.iter().flat_map(batch_rows).collect();
    rows.sort_by(|a, b| {
        a[table.record_key()]
            .as_str()
            .cmp(&b[table.record_key()].as_str())
    });
    rows
}

fn batch_rows(batch: &RecordBatch) -> Vec<Map<String, Value>> {
    let schema = batch.schema();
    (0..batch.num_rows())
        .map(|row| {
            schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| !f.name().starts_with("_hoodie_"))
                .map(|(i, field)| (field.name().clone(), cell(batch.column(i).as_ref(), row)))
                .collect()
        })
        .collect()
}

fn cell(column: &dyn Array, row: usize) -> Value {
    if column.is_null(row) {
        return Value::Null;
    }
    match column.data_type() {
        DataType::Utf8 => Value::from(column.as_string::<i32>().value(row)),
        DataType::Int32 => Value::from(column.as_primitive::<Int32Type>().value(row)),
        DataType::Boolean => Value::from(column.as_boolean().value(row)),
        DataType::Timestamp(_, _) => Value::from(metriccare_core::time::rfc3339(
            column.as_primitive::<TimestampMicrosecondType>().value(row),
        )),
        other => Value::from(format!("<{other}>")),
    }
}

/// How close computed and expected rates must be.
pub const EPSILON: f64 = 1e-9;

/// Asserts that gold holds exactly the generator's expected metrics for every tenant.
/// Every count of `hospital_monthly` and `mortality_yearly` is a sum over `stay_detail`: stays,
/// patient days and infections at each stay's hospital and month; mortality on each episode's first
/// stay, readmission on its last.
pub fn assert_gold_sums_over_stay_detail(rows: &GoldRows, case: &str) {
    let mut monthly: BTreeMap<(String, String), [i64; 10]> = BTreeMap::new();
    let mut yearly: BTreeMap<i32, [i64; 2]> = BTreeMap::new();
    for stay in &rows.stay_detail {
        let cell = monthly
            .entry((stay.hospital_id.clone(), stay.month.clone()))
            .or_default();
        let yes = |flag: Option<bool>| i64::from(flag == Some(true));
        cell[0] += 1;
        cell[1] += yes(stay.died_30d);
        cell[2] += i64::from(stay.died_30d.is_some());
        cell[3] += yes(stay.index_episode);
        cell[4] += yes(stay.readmitted);
        cell[5] += stay.los;
        cell[6] += stay.hai_count;
        cell[7] += i64::from(stay.hai_count > 0);
        cell[8] += yes(stay.readmission_window_open);
        cell[9] += yes(stay.mortality_window_open);
        if let Some(died) = stay.died_30d {
            let year: i32 = stay.month[..4].parse().unwrap();
            let y = yearly.entry(year).or_default();
            y[0] += 1;
            y[1] += i64::from(died);
        }
    }
    let expected: BTreeMap<(String, String), [i64; 10]> = rows
        .hospital_monthly
        .iter()
        .map(|r| {
            (
                (r.hospital_id.clone(), r.month.clone()),
                [
                    r.stays,
                    r.deaths_30d,
                    r.mortality_episodes,
                    r.index_stays,
                    r.readmissions_30d,
                    r.patient_days,
                    r.hai_count,
                    r.hai_stays,
                    r.open_window_index,
                    r.open_window_mortality,
                ],
            )
        })
        .collect();
    assert_eq!(
        monthly, expected,
        "{case}: hospital_monthly over stay_detail"
    );
    let expected_yearly: BTreeMap<i32, [i64; 2]> = rows
        .mortality_yearly
        .iter()
        .map(|r| (r.year, [r.episodes, r.deaths]))
        .collect();
    assert_eq!(
        yearly, expected_yearly,
        "{case}: mortality_yearly over stay_detail"
    );
}

pub fn assert_matches_truth(
    gold: &BTreeMap<String, GoldRows>,
    truth: &fhir_generator::GroundTruth,
    case: &str,
) {
    assert_eq!(gold.len(), truth.tenants.len(), "{case}: tenants");
    for tenant in &truth.tenants {
        let rows = &gold[&tenant.tenant];
        let case = format!("{case} {}", tenant.tenant);
        assert_gold_sums_over_stay_detail(rows, &case);
        assert_eq!(
            rows.hospital_monthly.len(),
            tenant.hospital_monthly.len(),
            "{case}: hospital-months"
        );
        for expected in &tenant.hospital_monthly {
            let got = rows
                .hospital_monthly
                .iter()
                .find(|r| r.hospital_name == expected.hospital_name && r.month == expected.month)
                .unwrap_or_else(|| {
                    panic!(
                        "{case}: no row for {} {}",
                        expected.hospital_name, expected.month
                    )
                });
            let counts = |r: [u64; 10]| r;
            assert_eq!(
                counts([
                    got.stays as u64,
                    got.deaths_30d as u64,
                    got.mortality_episodes as u64,
                    got.index_stays as u64,
                    got.readmissions_30d as u64,
                    got.patient_days as u64,
                    got.hai_count as u64,
                    got.hai_stays as u64,
                    got.open_window_index as u64,
                    got.open_window_mortality as u64,
                ]),
                counts([
                    expected.stays,
                    expected.deaths_30d,
                    expected.mortality_episodes,
                    expected.index_stays,
                    expected.readmissions_30d,
                    expected.patient_days,
                    expected.hai_count,
                    expected.hai_stays,
                    expected.open_window_index,
                    expected.open_window_mortality,
                ]),
                "{case}: {} {}",
                expected.hospital_name,
                expected.month
            );
            for (got, expected) in [
                (got.mortality_rate, expected.mortality_rate),
                (got.readmission_rate, expected.readmission_rate),
                (got.alos, expected.alos),
                (
                    got.hai_per_1000_patient_days,
                    expected.hai_per_1000_patient_days,
                ),
            ] {
                assert!(
                    (got - expected).abs() < EPSILON,
                    "{case}: rate {got} != {expected}"
                );
            }
        }
        let hai: Vec<[String; 5]> = rows
            .hai_by_code
            .iter()
            .map(|r| {
                [
                    r.month.clone(),
                    r.system.clone(),
                    r.code.clone(),
                    r.display.clone(),
                    r.count.to_string(),
                ]
            })
            .collect();
        let expected_hai: Vec<[String; 5]> = tenant
            .hai_by_code
            .iter()
            .map(|r| {
                [
                    r.month.clone(),
                    r.system.clone(),
                    r.code.clone(),
                    r.display.clone(),
                    r.count.to_string(),
                ]
            })
            .collect();
        assert_eq!(hai, expected_hai, "{case}: hai_by_code");
        let yearly: Vec<(i32, u64, u64)> = rows
            .mortality_yearly
            .iter()
            .map(|r| (r.year, r.episodes as u64, r.deaths as u64))
            .collect();
        let expected_yearly: Vec<(i32, u64, u64)> = tenant
            .mortality_yearly
            .iter()
            .map(|r| (r.year, r.episodes, r.deaths))
            .collect();
        assert_eq!(yearly, expected_yearly, "{case}: mortality_yearly");
    }
}
