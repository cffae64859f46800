//! The embedded default wired together: a directory is the lake (`raw/`, `silver/`, `quarantine/`,
//! `ledger.sqlite`, `notifications.jsonl`), and the same core pipeline the Lambdas run processes
//! its files.

use std::io::Read;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use metriccare_core::deid::{Pseudonymizer, parse_key};
use metriccare_core::erase::{self, Receipt};
use metriccare_core::gold::{self, HaiValueSet, RefreshReport};
use metriccare_core::ingest::{FileReport, Services, Settings};
use metriccare_core::profile::TenantProfile;
use metriccare_core::tenant::TenantId;
use metriccare_core::tunables::tunable_settings;
use metriccare_core::{CoreError, Result};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use crate::counting::{CountingStore, RequestCounter};
use crate::{JsonLinesNotifier, SqliteLedger};

/// Environment variable with the pseudonymisation key (hex, or any text of at least 32 bytes).
pub const KEY_VARIABLE: &str = "METRICCARE_PSEUDONYM_KEY";

/// A lake directory and its services.
pub struct LocalLake {
    pub dir: PathBuf,
    pub services: Services,
    /// `<lake>/raw`, the bronze zone `watch` scans.
    pub raw: Arc<dyn ObjectStore>,
    /// The whole file system, for `ingest PATH…` of files outside the lake.
    pub files: Arc<dyn ObjectStore>,
    /// How gold reads a tenant without a profile (and what a profile leaves out).
    pub profile_defaults: TenantProfile,
    /// The requests made of the lake store so far (printed after each run).
    pub requests: Arc<RequestCounter>,
}

/// Where the raw zone and the rest live inside a lake directory.
pub const RAW_DIR: &str = "raw";
pub const QUARANTINE_DIR: &str = "quarantine";
pub const LEDGER_FILE: &str = "ledger.sqlite";
pub const NOTIFICATIONS_FILE: &str = "notifications.jsonl";
const LOCAL_KEY_FILE: &str = "_metriccare/secret/pseudonym.key";

fn config_error(message: String) -> CoreError {
    CoreError::Config(message)
}

/// A file named on the command line that cannot be read.
fn input_error(path: &FsPath, source: std::io::Error) -> CoreError {
    CoreError::Input {
        path: path.display().to_string(),
        source,
    }
}

/// Environment variable naming a JSON file with the HAI value set (default: the shipped one).
pub const VALUE_SET_VARIABLE: &str = "METRICCARE_HAI_VALUE_SET";

/// Configuration of a local lake; [`LocalConfig::from_env`] reads it from the environment.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The pseudonymisation key; `None` uses (creating) the lake's local key file.
    pub key: Option<Vec<u8>>,
    pub settings: Settings,
    pub hai_value_set: HaiValueSet,
    /// For commands that only read the lake: without `key`, the local key file is not created
    /// when it is missing (a throwaway key stands in; nothing is pseudonymised with it).
    pub read_only: bool,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            key: None,
            read_only: false,
            settings: Settings::default(),
            hai_value_set: HaiValueSet::builtin(),
        }
    }
}

impl LocalConfig {
    /// Configuration from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Configuration from the variables `lookup` (an environment) sets.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let key = match lookup(KEY_VARIABLE) {
            Some(text) => Some(parse_key(&text, KEY_VARIABLE)?),
            None => None,
        };
        let hai_value_set = match lookup(VALUE_SET_VARIABLE) {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| config_error(format!("{VALUE_SET_VARIABLE}={path}: {e}")))?;
                HaiValueSet::from_json(&text)?
            }
            None => HaiValueSet::builtin(),
        };
        Ok(Self {
            key,
            settings: tunable_settings(lookup, Settings::default())?,
            hai_value_set,
            read_only: false,
        })
    }
}

impl LocalLake {
    /// Opens (creating) the lake at `dir`, configured from the environment.
    pub fn open(dir: &FsPath) -> Result<Self> {
        Self::open_with(dir, LocalConfig::from_env()?)
    }

    /// Opens (creating) the lake at `dir` with explicit configuration.
    pub fn open_with(dir: &FsPath, config: LocalConfig) -> Result<Self> {
        for sub in [RAW_DIR, QUARANTINE_DIR, "silver", "_metriccare"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let dir = dir.canonicalize()?;
        let requests = Arc::new(RequestCounter::default());
        let lake =
            CountingStore::wrap(Arc::new(LocalFileSystem::new_with_prefix(&dir)?), &requests);
        let quarantine: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.join(QUARANTINE_DIR))?);
        let raw: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.join(RAW_DIR))?);
        let ledger = Arc::new(SqliteLedger::open(&dir.join(LEDGER_FILE))?);
        let notifier = Arc::new(JsonLinesNotifier::new(dir.join(NOTIFICATIONS_FILE)));
        let key = match config.key {
            Some(key) => key,
            None if config.read_only => match read_local_key(&dir)? {
                Some(key) => key,
                None => random_key()?,
            },
            None => local_key(&dir)?,
        };
        let pseudonymizer = Pseudonymizer::new(&key)?;
        let services = Services::new(
            lake,
            quarantine,
            ledger,
            notifier,
            pseudonymizer,
            config.settings,
        );
        Ok(Self {
            dir,
            services,
            raw,
            files: Arc::new(LocalFileSystem::new()),
            profile_defaults: TenantProfile::default_with(config.hai_value_set),
            requests,
        })
    }

    /// Ingests a local file (not necessarily inside the lake) for one tenant. The tenant is part of
    /// the ledger's source name: the same file loaded for two tenants is two ledger items.
    pub async fn ingest_file(&self, file: &FsPath, tenant: &TenantId) -> Result<FileReport> {
        let mut reports = self
            .ingest_files(std::slice::from_ref(&file.to_path_buf()), tenant)
            .await?;
        Ok(reports.pop().expect("one report per file"))
    }

    /// Ingests local files of one tenant as one group commit (see `Services::ingest_group`).
    pub async fn ingest_files(
        &self,
        files: &[PathBuf],
        tenant: &TenantId,
    ) -> Result<Vec<FileReport>> {
        let mut keys = Vec::with_capacity(files.len());
        for file in files {
            let absolute = file
                .canonicalize()
                .map_err(|source| input_error(file, source))?;
            keys.push(Path::from_absolute_path(&absolute).map_err(|e| {
                input_error(
                    &absolute,
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
                )
            })?);
        }
        let source = format!("file:tenant={tenant}");
        self.services
            .ingest_group(&self.files, &source, &keys, tenant)
            .await
    }

    /// Splits files, in order, into groups within the configured group limits.
    pub fn file_groups(&self, files: Vec<PathBuf>) -> Result<Vec<Vec<PathBuf>>> {
        let sized = files
            .into_iter()
            .map(|file| {
                let size = std::fs::metadata(&file)
                    .map_err(|source| input_error(&file, source))?
                    .len();
                Ok((file, size))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.services.settings.group.split(sized))
    }

    /// Recomputes gold for the tenants whose silver changed (see `metriccare_core::gold`).
    pub async fn refresh_gold(&self) -> Result<RefreshReport> {
        gold::refresh(
            &self.services.lake,
            self.services.notifier.as_ref(),
            &self.profile_defaults,
            &self.services.settings.retention,
        )
        .await
    }

    /// Erases one patient of a tenant (see `metriccare_core::erase`) and refreshes gold.
    pub async fn erase(&self, tenant: &TenantId, patient_id: &str) -> Result<Receipt> {
        erase::erase(
            &self.services,
            tenant,
            patient_id,
            Some(&self.profile_defaults),
        )
        .await
    }

    /// Carries out an erasure request dropped in the raw zone (`<tenant>/_erasure/<name>.json`).
    pub async fn erase_requested(&self, key: &Path) -> Result<Receipt> {
        let tenant = TenantId::of_raw_key(key)?;
        let request = self.raw.get(key).await?.bytes().await?;
        let patient_id = erase::parse_request(&request)?;
        self.erase(&tenant, &patient_id).await
    }

    /// Processes one object of the raw zone (`<tenant>/<any path>/<file>`), as an S3 event would.
    pub async fn ingest_raw(&self, key: &Path) -> Result<FileReport> {
        let tenant = TenantId::of_raw_key(key)?;
        self.services
            .ingest_object(&self.raw, RAW_DIR, key, &tenant)
            .await
    }

    /// Processes objects of one tenant's raw folder that arrived together as one group commit.
    pub async fn ingest_raw_group(
        &self,
        tenant: &TenantId,
        keys: &[Path],
    ) -> Result<Vec<FileReport>> {
        self.services
            .ingest_group(&self.raw, RAW_DIR, keys, tenant)
            .await
    }

    /// The raw objects of one tenant folder, in order, split into groups within the group limits.
    pub fn raw_groups(&self, objects: Vec<ObjectMeta>) -> Vec<Vec<Path>> {
        let sized = objects
            .into_iter()
            .map(|object| (object.location, object.size))
            .collect();
        self.services.settings.group.split(sized)
    }

    /// Every object of the raw zone under a tenant folder, sorted by key.
    pub async fn list_raw(&self) -> Result<Vec<ObjectMeta>> {
        let mut objects: Vec<ObjectMeta> = Vec::new();
        let mut listing = self.raw.list(None);
        while let Some(object) = listing.next().await {
            let object = object?;
            if object.location.parts().count() >= 2 {
                objects.push(object);
            }
        }
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }
}

/// Every file under the given paths (folders are walked), sorted within each folder so that an
/// incremental export (`export-2`) loads after the one before it.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path).map_err(|source| input_error(path, source))?;
        if metadata.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &FsPath, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), out)?;
        } else {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// The lake's local key file, created on first use from the operating system's random source.
/// A shared deployment sets `METRICCARE_PSEUDONYM_KEY` instead.
fn local_key(lake: &FsPath) -> Result<Vec<u8>> {
    if let Some(key) = read_local_key(lake)? {
        return Ok(key);
    }
    let key = random_key()?;
    let path = lake.join(LOCAL_KEY_FILE);
    std::fs::create_dir_all(path.parent().unwrap_or(lake))?;
    write_private(&path, hex::encode(&key).as_bytes())?;
    tracing::warn!(path = %path.display(), "created a local pseudonymisation key; set {KEY_VARIABLE} for a shared lake");
    Ok(key)
}

/// The lake's local key file, if it has one.
fn read_local_key(lake: &FsPath) -> Result<Option<Vec<u8>>> {
    let path = lake.join(LOCAL_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => hex::decode(text.trim())
            .map(Some)
            .map_err(|e| config_error(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(config_error(format!("{}: {e}", path.display()))),
    }
}

fn random_key() -> Result<Vec<u8>> {
    let mut key = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| {
            config_error(format!(
                "no random source to create a key ({e}); set {KEY_VARIABLE}"
            ))
        })?;
    Ok(key)
}

#[cfg(unix)]
fn write_private(path: &FsPath, content: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    Ok(file.write_all(content)?)
}

#[cfg(not(unix))]
fn write_private(path: &FsPath, content: &[u8]) -> Result<()> {
    Ok(std::fs::write(path, content)?)
}
