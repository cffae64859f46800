//! The settings every binary reads (the CLI, both Lambdas, the Glue module) whatever its backend:
//! each variable named once, here, and read through a `lookup` (the process environment, or a
//! test's map), with one parser, the same defaults and the same errors. A backend's own variables
//! (buckets, ARNs; the local key) are named by that backend's configuration.

use std::time::Duration;

use crate::error::{CoreError, Result};
use crate::ingest::Settings;

/// The local lake directory (the CLI's `--lake`); a Lambda refuses to start with it set.
pub const LAKE_VARIABLE: &str = "METRICCARE_LAKE";
/// The log filter (`info` by default), in `tracing`'s `EnvFilter` syntax.
pub const LOG_VARIABLE: &str = "METRICCARE_LOG";
/// How long a claim holds, in seconds, before another worker may take the object over.
pub const LEASE_SECONDS_VARIABLE: &str = "METRICCARE_LEASE_SECONDS";

/// Cleaning keeps the file slices a snapshot as of any of the newest N commits needs.
pub const RETAIN_COMMITS_VARIABLE: &str = "METRICCARE_RETAIN_COMMITS";
/// … and the slices replaced less than N hours ago.
pub const RETAIN_HOURS_VARIABLE: &str = "METRICCARE_RETAIN_HOURS";
/// Completed instants kept in each table's `.hoodie/`.
pub const ACTIVE_INSTANTS_VARIABLE: &str = "METRICCARE_ACTIVE_INSTANTS";
/// Files of one tenant committed together.
pub const GROUP_FILES_VARIABLE: &str = "METRICCARE_GROUP_FILES";
/// The size (MB, fractions allowed) a tenant's file groups reach before its partition gets more.
pub const FILE_GROUP_MB_VARIABLE: &str = "METRICCARE_FILE_GROUP_MB";

const MIB: f64 = (1u64 << 20) as f64;

/// `base` with the tunables `lookup` (an environment) sets — the claim lease, group commits and
/// table services; an unset or blank variable keeps `base`'s value, a value that is not a number
/// in range is an error naming the variable.
pub fn tunable_settings(
    lookup: impl Fn(&str) -> Option<String>,
    base: Settings,
) -> Result<Settings> {
    let lookup = |variable: &str| lookup(variable).filter(|text| !text.trim().is_empty());
    let retention = &base.retention;
    let mut settings = base.clone();
    settings.lease = Duration::from_secs(number(
        &lookup,
        LEASE_SECONDS_VARIABLE,
        base.lease.as_secs(),
        1,
    )?);
    settings.retention.retain_commits = number(
        &lookup,
        RETAIN_COMMITS_VARIABLE,
        retention.retain_commits,
        1,
    )?;
    settings.retention.retain_hours =
        number(&lookup, RETAIN_HOURS_VARIABLE, retention.retain_hours, 0)?;
    settings.retention.active_instants = number(
        &lookup,
        ACTIVE_INSTANTS_VARIABLE,
        retention.active_instants,
        1,
    )?;
    settings.group.max_files = number(&lookup, GROUP_FILES_VARIABLE, base.group.max_files, 1)?;
    // Fractions allowed: tests and benchmarks re-size small tables.
    let file_group_mb = number(
        &lookup,
        FILE_GROUP_MB_VARIABLE,
        base.file_group_bytes as f64 / MIB,
        0.001,
    )?;
    settings.file_group_bytes = (file_group_mb * MIB) as u64;
    Ok(settings)
}

fn number<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &str,
    default: T,
    min: T,
) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match lookup(variable) {
        Some(text) => text
            .trim()
            .parse::<T>()
            .ok()
            .filter(|n| *n >= min)
            .ok_or_else(|| {
                CoreError::Config(format!(
                    "{variable}={text:?} is not a number of at least {min}"
                ))
            }),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_variables_override_the_base_and_unset_or_blank_ones_keep_it() {
        let env = |name: &str| match name {
            RETAIN_COMMITS_VARIABLE => Some("3".to_owned()),
            FILE_GROUP_MB_VARIABLE => Some("0.5".to_owned()),
            GROUP_FILES_VARIABLE => Some("  ".to_owned()),
            _ => None,
        };
        let settings = tunable_settings(env, Settings::default()).unwrap();
        assert_eq!(settings.retention.retain_commits, 3);
        assert_eq!(settings.file_group_bytes, 512 << 10);
        assert_eq!(
            settings.group.max_files,
            Settings::default().group.max_files
        );
        assert_eq!(settings.retention.retain_hours, 24);
        assert_eq!(settings.lease, Settings::default().lease);
    }

    #[test]
    fn the_lease_is_read_in_whole_seconds_of_at_least_one() {
        let env = |value: &'static str| {
            move |name: &str| (name == LEASE_SECONDS_VARIABLE).then(|| value.to_owned())
        };
        let settings = tunable_settings(env("120"), Settings::default()).unwrap();
        assert_eq!(settings.lease, Duration::from_secs(120));
        for bad in ["0", "-5", "1.5", "soon"] {
            let error = tunable_settings(env(bad), Settings::default()).unwrap_err();
            assert!(
                error.to_string().contains("METRICCARE_LEASE_SECONDS"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_value_out_of_range_names_its_variable() {
        let env = |name: &str| (name == RETAIN_COMMITS_VARIABLE).then(|| "0".to_owned());
        let error = tunable_settings(env, Settings::default()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("METRICCARE_RETAIN_COMMITS=\"0\""),
            "{error}"
        );
    }
}
