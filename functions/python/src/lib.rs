//! `metriccare`, the Rust core as a Python module: what the Glue jobs run, and `read_table` for
//! analysts. Its API is the core's scale-out API ([`metriccare_core::scale_out`]), nothing of its
//! own: a driver claims a tenant's files and plans them into tasks (`Lake.claim`), executors stage
//! a task each (`Lake.stage`), the driver commits the group (`Group.commit`) through the same group
//! commit, claim, sequence and ledger semantics as the ingest Lambda, then refreshes gold.
//!
//! Values cross the boundary as JSON (tasks, reports, ledger items) and Arrow IPC (tables), so the
//! module needs no Python package but `pyarrow` for `read_table`. Every call that waits on storage
//! or parses releases the GIL and runs on one Tokio runtime per process.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use futures::TryStreamExt;
use metriccare_aws::IngestFunction;
use metriccare_aws::config::Env;
use metriccare_aws::gold_function::GoldFunction;
use metriccare_core::catalog;
use metriccare_core::deid::redact_key;
use metriccare_core::ingest::{FileResult, Services};
use metriccare_core::scale_out::{ScaleOutGroup, Task};
use metriccare_core::tenant::TenantId;
use metriccare_local::lake::{LocalConfig, LocalLake, RAW_DIR};
use object_store::ObjectStore;
use object_store::path::Path;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::{Deserialize, Serialize};

create_exception!(
    metriccare,
    MetricCareError,
    PyException,
    "A MetricCare operation failed; the message says what and why."
);

fn error(e: impl std::fmt::Display) -> PyErr {
    MetricCareError::new_err(e.to_string())
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("metriccare")
            .build()
            .expect("a Tokio runtime can be built")
    })
}

/// Runs `future` to completion with the GIL released.
fn wait<F>(py: Python<'_>, future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    py.detach(|| runtime().block_on(future))
}

/// Parses JSON text into Python objects (dicts, lists...).
fn to_python<'py>(py: Python<'py>, value: &impl Serialize) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(error)?;
    py.import("json")?.call_method1("loads", (text,))
}

/// How to open the same lake in another process (an executor): a lake directory, or the AWS
/// deployment the `METRICCARE_*` variables name (the ingest Lambda's and the gold Lambda's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Spec {
    dir: Option<PathBuf>,
    /// The driver's `METRICCARE_*` variables, applied before the process environment.
    env: BTreeMap<String, String>,
}

enum Backend {
    Local(Box<LocalLake>),
    Aws {
        ingest: Box<IngestFunction>,
        gold: GoldFunction,
    },
}

struct Opened {
    spec: Spec,
    backend: Backend,
}

impl Opened {
    async fn open(spec: Spec) -> Result<Self, String> {
        // The driver's variables (the spec carries them to executors), then this process's.
        let lookup = |name: &str| {
            spec.env
                .get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
        };
        let backend = match &spec.dir {
            Some(dir) => {
                let config = LocalConfig::from_lookup(lookup).map_err(|e| e.to_string())?;
                Backend::Local(Box::new(
                    LocalLake::open_with(dir, config).map_err(|e| e.to_string())?,
                ))
            }
            None => {
                let env = Env::new(lookup);
                let ingest = env.ingest().map_err(|e| e.to_string())?;
                let gold = env.gold().map_err(|e| e.to_string())?;
                let sdk = metriccare_aws::clients::sdk_config().await;
                Backend::Aws {
                    ingest: Box::new(
                        IngestFunction::with_sdk(&sdk, ingest)
                            .await
                            .map_err(|e| e.to_string())?,
                    ),
                    gold: GoldFunction::with_sdk(&sdk, gold).map_err(|e| e.to_string())?,
                }
            }
        };
        Ok(Self { spec, backend })
    }

    fn services(&self) -> &Services {
        match &self.backend {
            Backend::Local(lake) => &lake.services,
            Backend::Aws { ingest, .. } => ingest.services(),
        }
    }

    /// Where raw files are read and claimed from: the store and the bucket name the ledger keeps.
    fn source(&self) -> (&Arc<dyn ObjectStore>, &str) {
        match &self.backend {
            Backend::Local(lake) => (&lake.raw, RAW_DIR),
            Backend::Aws { ingest, .. } => ingest.raw(),
        }
    }
}

/// Lakes opened in this process, by spec: an executor opens its lake once, not per task.
fn opened(spec: Spec) -> Result<Arc<Opened>, String> {
    static OPENED: OnceLock<Mutex<HashMap<String, Arc<Opened>>>> = OnceLock::new();
    let key = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
    let cache = OPENED.get_or_init(Default::default);
    if let Some(lake) = cache.lock().map_err(|e| e.to_string())?.get(&key) {
        return Ok(lake.clone());
    }
    let lake = Arc::new(runtime().block_on(Opened::open(spec))?);
    cache
        .lock()
        .map_err(|e| e.to_string())?
        .insert(key, lake.clone());
    Ok(lake)
}

fn metriccare_variables() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(name, _)| name.starts_with("METRICCARE_"))
        .collect()
}

/// A MetricCare lake: a local directory (the embedded default) or the AWS deployment.
#[pyclass(frozen, module = "metriccare")]
struct Lake {
    opened: Arc<Opened>,
}

#[pymethods]
impl Lake {
    /// The lake in directory `dir` (raw files under `dir/raw`), configured by the `METRICCARE_*`
    /// variables as the CLI is.
    #[staticmethod]
    fn local(py: Python<'_>, dir: PathBuf) -> PyResult<Self> {
        let spec = Spec {
            dir: Some(dir),
            env: metriccare_variables(),
        };
        py.detach(|| opened(spec)).map(Self::wrap).map_err(error)
    }

    /// The AWS deployment the `METRICCARE_*` variables name (those of the ingest and gold
    /// Lambdas), with `env` overriding the process environment.
    #[staticmethod]
    #[pyo3(signature = (env = None))]
    fn aws(py: Python<'_>, env: Option<BTreeMap<String, String>>) -> PyResult<Self> {
        let mut variables = metriccare_variables();
        variables.extend(env.unwrap_or_default());
        let spec = Spec {
            dir: None,
            env: variables,
        };
        py.detach(|| opened(spec)).map(Self::wrap).map_err(error)
    }

    /// The lake another process opens with `Lake.from_spec` (JSON text).
    fn spec(&self) -> PyResult<String> {
        serde_json::to_string(&self.opened.spec).map_err(error)
    }

    /// Opens the lake `spec` describes, once per process.
    #[staticmethod]
    fn from_spec(py: Python<'_>, spec: &str) -> PyResult<Self> {
        let spec: Spec = serde_json::from_str(spec).map_err(error)?;
        py.detach(|| opened(spec)).map(Self::wrap).map_err(error)
    }

    /// Raw objects under `prefix` (`tenant/...`), as `(key, size)` pairs in key order.
    #[pyo3(signature = (prefix = None))]
    fn list_raw(&self, py: Python<'_>, prefix: Option<&str>) -> PyResult<Vec<(String, u64)>> {
        let (source, _) = self.opened.source();
        let prefix = prefix.map(Path::from);
        let mut objects: Vec<(String, u64)> = wait(py, async {
            source
                .list(prefix.as_ref())
                .map_ok(|meta| (meta.location.to_string(), meta.size))
                .try_collect::<Vec<_>>()
                .await
        })
        .map_err(error)?;
        objects.sort();
        Ok(objects)
    }

    /// The ledger item `ledger_id` as a dict (`status`, `object`, counts...), or None.
    fn ledger_entry<'py>(
        &self,
        py: Python<'py>,
        ledger_id: &str,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let ledger = self.opened.services().ledger.clone();
        let entry = wait(py, async { ledger.get(ledger_id).await }).map_err(error)?;
        entry.map(|entry| to_python(py, &entry)).transpose()
    }

    /// Claims raw objects of one tenant (keys in the raw bucket, or under the lake's `raw/`) for a
    /// scale-out run and plans them into tasks of about `split_bytes`. A file the ingest Lambda
    /// handed off is taken over.
    #[pyo3(signature = (tenant, keys, split_bytes = 128 << 20))]
    fn claim(
        &self,
        py: Python<'_>,
        tenant: &str,
        keys: Vec<String>,
        split_bytes: u64,
    ) -> PyResult<Group> {
        let tenant = TenantId::parse(tenant).map_err(error)?;
        let keys: Vec<Path> = keys
            .iter()
            .map(|k| Path::parse(k).map_err(error))
            .collect::<PyResult<_>>()?;
        let opened = self.opened.clone();
        let group = wait(py, async {
            let (source, bucket) = opened.source();
            opened
                .services()
                .claim_scale_out(source, bucket, &keys, &tenant, split_bytes)
                .await
        })
        .map_err(|e| {
            // Storage errors quote keys, which may name patients: never into a job's log.
            let text = keys.iter().fold(e.to_string(), |text, key| {
                redact_key(&text, key.as_ref(), "<raw object>")
            });
            error(text)
        })?;
        Ok(Group {
            opened: self.opened.clone(),
            group: Mutex::new(Some(group)),
        })
    }

    /// Runs one task (JSON, from `Group.tasks`): parses and de-identifies its span and stages the
    /// part for the driver. Returns the part's path in the quarantine store.
    fn stage(&self, py: Python<'_>, task: &str) -> PyResult<String> {
        let task: Task = serde_json::from_str(task).map_err(error)?;
        let opened = self.opened.clone();
        let staged = wait(py, async {
            let (source, _) = opened.source();
            opened.services().stage_task(source.clone(), &task).await
        });
        // An executor's error reaches Spark's logs: never with the key, which may name a patient.
        staged
            .map(|path| path.to_string())
            .map_err(|e| error(redact_key(&e.to_string(), &task.key, "<raw object>")))
    }

    /// Recomputes gold for the tenants whose silver changed (as the gold Lambda does).
    fn refresh_gold<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let opened = self.opened.clone();
        let report = wait(py, async {
            match &opened.backend {
                Backend::Local(lake) => lake
                    .refresh_gold()
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|report| serde_json::to_value(report).map_err(|e| e.to_string())),
                Backend::Aws { gold, .. } => gold
                    .handle(serde_json::json!({"detail-type": "scale-out job"}))
                    .await
                    .map_err(|e| e.to_string()),
            }
        })
        .map_err(error)?;
        to_python(py, &report)
    }
}

impl Lake {
    fn wrap(opened: Arc<Opened>) -> Self {
        Self { opened }
    }
}

/// A tenant's files claimed for a scale-out run: hand out its tasks, then commit it once.
#[pyclass(frozen, module = "metriccare")]
struct Group {
    opened: Arc<Opened>,
    group: Mutex<Option<ScaleOutGroup>>,
}

#[pymethods]
impl Group {
    /// The tasks (JSON text each) for `Lake.stage`, in file and span order.
    fn tasks(&self) -> PyResult<Vec<String>> {
        let guard = self.group.lock().map_err(error)?;
        let group = guard
            .as_ref()
            .ok_or_else(|| error("the group was committed"))?;
        group
            .tasks()
            .iter()
            .map(|t| serde_json::to_string(t).map_err(error))
            .collect()
    }

    /// Merges the staged parts and commits the group; finishes every file in the ledger. Returns
    /// one report (dict) per file. A group commits once.
    fn commit<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let group = self
            .group
            .lock()
            .map_err(error)?
            .take()
            .ok_or_else(|| error("the group was committed"))?;
        let opened = self.opened.clone();
        let reports = wait(py, async {
            let tenant = group.tenant().clone();
            let reports = opened
                .services()
                .commit_scale_out(group)
                .await
                .map_err(|e| e.to_string())?;
            // Also for a file already done: a registration that failed after its commit is retried.
            if let Backend::Aws { ingest, .. } = &opened.backend
                && reports
                    .iter()
                    .any(|r| matches!(r.result, FileResult::Completed | FileResult::AlreadyDone))
            {
                ingest
                    .register_tenant(&tenant)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(reports)
        })
        .map_err(error)?;
        to_python(py, &reports)
    }
}

/// The latest snapshot of table `name` (`silver_patient`, `gold_measures`...: any table
/// `metriccare query` knows) as a `pyarrow.Table`. `lake` is a `Lake` or a lake directory.
#[pyfunction]
fn read_table<'py>(
    py: Python<'py>,
    lake: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let opened = match lake.cast::<Lake>() {
        Ok(lake) => lake.get().opened.clone(),
        Err(_) => Lake::local(py, lake.extract()?)?.opened,
    };
    let bytes = wait(py, async {
        let (schema, batches) = catalog::read_latest(&opened.services().lake, name)
            .await
            .map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut bytes, &schema)
            .map_err(|e| e.to_string())?;
        for batch in &batches {
            writer.write(batch).map_err(|e| e.to_string())?;
        }
        writer.finish().map_err(|e| e.to_string())?;
        drop(writer);
        Ok::<_, String>(bytes)
    })
    .map_err(error)?;
    py.import("pyarrow.ipc")?
        .call_method1("open_stream", (PyBytes::new(py, &bytes),))?
        .call_method0("read_all")
}

#[pymodule]
fn metriccare(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Lake>()?;
    m.add_class::<Group>()?;
    m.add_function(wrap_pyfunction!(read_table, m)?)?;
    m.add("MetricCareError", m.py().get_type::<MetricCareError>())?;
    Ok(())
}
