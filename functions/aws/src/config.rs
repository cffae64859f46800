//! Each function's configuration, from the environment variables Terraform sets. Anything missing
//! or malformed stops the function at start with an error that names the variable.

use std::time::Duration;

use metriccare_core::hudi::Retention;
use metriccare_core::ingest::Settings;
use metriccare_core::tunables::{LAKE_VARIABLE, tunable_settings};

use crate::error::{AwsError, Result};

pub const RAW_BUCKET: &str = "METRICCARE_RAW_BUCKET";
pub const LAKE_BUCKET: &str = "METRICCARE_LAKE_BUCKET";
pub const QUARANTINE_BUCKET: &str = "METRICCARE_QUARANTINE_BUCKET";
pub const LEDGER_TABLE: &str = "METRICCARE_LEDGER_TABLE";
pub const NOTIFICATIONS_TOPIC_ARN: &str = "METRICCARE_NOTIFICATIONS_TOPIC_ARN";
pub const ALERTS_TOPIC_ARN: &str = "METRICCARE_ALERTS_TOPIC_ARN";
pub const PSEUDONYM_KEY_PARAMETER: &str = "METRICCARE_PSEUDONYM_KEY_PARAMETER";
pub const GLUE_JOB_NAME: &str = "METRICCARE_GLUE_JOB_NAME";
pub const MAX_OBJECT_BYTES: &str = "METRICCARE_MAX_OBJECT_BYTES";
pub const SILVER_DATABASE: &str = "METRICCARE_SILVER_DATABASE";
pub const GOLD_DATABASE: &str = "METRICCARE_GOLD_DATABASE";
pub const EVENT_BUS: &str = "METRICCARE_EVENT_BUS";
/// `true` for S3 emulators that only speak path-style requests.
pub const S3_FORCE_PATH_STYLE: &str = "METRICCARE_S3_FORCE_PATH_STYLE";

/// Objects above this go to the Glue job: a Lambda has 15 minutes, and the staged rows of a file
/// spill to its ephemeral storage (512 MB by default, up to 10 GB).
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 1 << 30;
/// A claim outlives the Lambda's 15-minute maximum, so a live invocation never loses its object.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(16 * 60);

/// What both functions need to reach AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub lake_bucket: String,
    pub force_path_style: bool,
}

/// The ingest function: S3 (or S3 → SQS) events in, silver out.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub common: Common,
    pub raw_bucket: String,
    pub quarantine_bucket: String,
    pub ledger_table: String,
    /// Quarantined, failed and ignored files are announced here.
    pub alerts_topic_arn: String,
    pub pseudonym_key_parameter: String,
    pub glue_job_name: String,
    pub max_object_bytes: u64,
    pub silver_database: String,
    /// The ingest function registers a new tenant's gold partitions too, with its silver ones.
    pub gold_database: String,
    pub event_bus: String,
    /// The claim lease, group commits and table services (the `METRICCARE_*` tunables the CLI
    /// reads too: see [`metriccare_core::tunables`]).
    pub settings: Settings,
}

/// The gold function: schedule or silver-commit events in, gold and `gold.refreshed` out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldConfig {
    pub common: Common,
    pub notifications_topic_arn: String,
    /// How the gold tables' services keep slices and instants.
    pub retention: Retention,
}

/// Reads variables through `lookup`, so tests need not touch the process environment.
pub struct Env<F: Fn(&str) -> Option<String>> {
    lookup: F,
}

impl Env<fn(&str) -> Option<String>> {
    pub fn process() -> Self {
        Self {
            lookup: |name| std::env::var(name).ok(),
        }
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn new(lookup: F) -> Self {
        Self { lookup }
    }

    fn optional(&self, variable: &str) -> Option<String> {
        (self.lookup)(variable).filter(|value| !value.trim().is_empty())
    }

    fn required(&self, variable: &'static str) -> Result<String> {
        self.optional(variable)
            .ok_or_else(|| AwsError::config(variable, "is not set"))
    }

    fn bucket(&self, variable: &'static str) -> Result<String> {
        let name = self.required(variable)?;
        if is_bucket_name(&name) {
            Ok(name)
        } else {
            Err(AwsError::config(
                variable,
                format!("{name:?} is not an S3 bucket name (3-63 of a-z 0-9 . -)"),
            ))
        }
    }

    fn arn(&self, variable: &'static str, service: &str) -> Result<String> {
        let arn = self.required(variable)?;
        if arn.starts_with("arn:") && arn.split(':').nth(2) == Some(service) {
            Ok(arn)
        } else {
            Err(AwsError::config(
                variable,
                format!("{arn:?} is not an {service} ARN"),
            ))
        }
    }

    fn number(&self, variable: &'static str, default: u64) -> Result<u64> {
        match self.optional(variable) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    AwsError::config(variable, format!("{text:?} is not a positive whole number"))
                }),
        }
    }

    fn flag(&self, variable: &'static str) -> Result<bool> {
        match self.optional(variable).as_deref().map(str::trim) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(AwsError::config(
                variable,
                format!("{other:?} is not true or false"),
            )),
        }
    }

    fn common(&self) -> Result<Common> {
        if let Some(dir) = self.optional(LAKE_VARIABLE) {
            return Err(AwsError::config(
                LAKE_VARIABLE,
                format!(
                    "is set ({dir:?}): that is the local backend's lake directory; a Lambda refuses \
                     to run on the local backend and writes to {LAKE_BUCKET}"
                ),
            ));
        }
        Ok(Common {
            lake_bucket: self.bucket(LAKE_BUCKET)?,
            force_path_style: self.flag(S3_FORCE_PATH_STYLE)?,
        })
    }

    pub fn ingest(&self) -> Result<IngestConfig> {
        Ok(IngestConfig {
            common: self.common()?,
            raw_bucket: self.bucket(RAW_BUCKET)?,
            quarantine_bucket: self.bucket(QUARANTINE_BUCKET)?,
            ledger_table: self.required(LEDGER_TABLE)?,
            alerts_topic_arn: self.arn(ALERTS_TOPIC_ARN, "sns")?,
            pseudonym_key_parameter: self.required(PSEUDONYM_KEY_PARAMETER)?,
            glue_job_name: self.required(GLUE_JOB_NAME)?,
            max_object_bytes: self.number(MAX_OBJECT_BYTES, DEFAULT_MAX_OBJECT_BYTES)?,
            silver_database: self.required(SILVER_DATABASE)?,
            gold_database: self.required(GOLD_DATABASE)?,
            event_bus: self
                .optional(EVENT_BUS)
                .unwrap_or_else(|| "default".to_owned()),
            settings: self.tunables(Settings {
                lease: DEFAULT_LEASE,
                ..Settings::default()
            })?,
        })
    }

    /// `base` with the optional tunables set (see [`tunable_settings`]).
    fn tunables(&self, base: Settings) -> Result<Settings> {
        Ok(tunable_settings(|name| self.optional(name), base)?)
    }

    pub fn gold(&self) -> Result<GoldConfig> {
        Ok(GoldConfig {
            common: self.common()?,
            notifications_topic_arn: self.arn(NOTIFICATIONS_TOPIC_ARN, "sns")?,
            retention: self.tunables(Settings::default())?.retention,
        })
    }
}

fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !name.starts_with(['.', '-'])
        && !name.ends_with(['.', '-'])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use metriccare_core::tunables::{
        FILE_GROUP_MB_VARIABLE, LEASE_SECONDS_VARIABLE, RETAIN_COMMITS_VARIABLE,
    };

    use super::*;

    fn ingest_env() -> HashMap<&'static str, String> {
        HashMap::from([
            (LAKE_BUCKET, "metriccare-lake".to_owned()),
            (
                ALERTS_TOPIC_ARN,
                "arn:aws:sns:eu-west-1:123456789012:alerts".to_owned(),
            ),
            (RAW_BUCKET, "metriccare-raw".to_owned()),
            (QUARANTINE_BUCKET, "metriccare-quarantine".to_owned()),
            (LEDGER_TABLE, "metriccare_bronze_ledger".to_owned()),
            (
                PSEUDONYM_KEY_PARAMETER,
                "/metriccare/pseudonym-key".to_owned(),
            ),
            (GLUE_JOB_NAME, "metriccare_silver_ingest".to_owned()),
            (SILVER_DATABASE, "metriccare_silver".to_owned()),
            (GOLD_DATABASE, "metriccare_gold".to_owned()),
        ])
    }

    fn read(vars: &HashMap<&'static str, String>) -> Result<IngestConfig> {
        Env::new(|name| vars.get(name).cloned()).ingest()
    }

    #[test]
    fn defaults_fill_what_is_optional() {
        let config = read(&ingest_env()).unwrap();
        assert_eq!(config.max_object_bytes, DEFAULT_MAX_OBJECT_BYTES);
        assert_eq!(config.settings.lease, DEFAULT_LEASE);
        assert_eq!(config.settings.retention, Retention::default());
        assert_eq!(config.event_bus, "default");
        assert!(!config.common.force_path_style);
    }

    #[test]
    fn every_missing_variable_is_named() {
        for variable in ingest_env().keys() {
            let mut vars = ingest_env();
            vars.remove(variable);
            let error = read(&vars).unwrap_err().to_string();
            assert!(error.contains(variable), "{error}");
        }
    }

    #[test]
    fn malformed_values_are_named_with_the_problem() {
        for (variable, value) in [
            (LAKE_BUCKET, "./lake"),
            (ALERTS_TOPIC_ARN, "alerts"),
            (MAX_OBJECT_BYTES, "1GB"),
            (LEASE_SECONDS_VARIABLE, "0"),
            (S3_FORCE_PATH_STYLE, "yes please"),
            (RETAIN_COMMITS_VARIABLE, "0"),
            (FILE_GROUP_MB_VARIABLE, "big"),
        ] {
            let mut vars = ingest_env();
            vars.insert(variable, value.to_owned());
            let error = read(&vars).unwrap_err().to_string();
            assert!(error.contains(variable) && error.contains(value), "{error}");
        }
    }

    #[test]
    fn the_local_backend_is_refused() {
        let mut vars = ingest_env();
        vars.insert(LAKE_VARIABLE, "./lake".to_owned());
        let error = read(&vars).unwrap_err().to_string();
        assert!(error.contains("METRICCARE_LAKE") && error.contains("local backend"));
    }
}
