//! The tunables of group commits and table services, read from the environment by every binary
//! (the CLI, both Lambdas): one set of names, one parser, the same defaults and the same errors.

use crate::error::{CoreError, Result};
use crate::ingest::Settings;

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

/// `base` with the tunables `lookup` (an environment) sets; an unset or blank variable keeps
/// `base`'s value, a value that is not a number in range is an error naming the variable.
pub fn lifecycle_settings(
    lookup: impl Fn(&str) -> Option<String>,
    base: Settings,
) -> Result<Settings> {
    let lookup = |variable: &str| lookup(variable).filter(|text| !text.trim().is_empty());
    let retention = &base.retention;
    let mut settings = base.clone();
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
        let settings = lifecycle_settings(env, Settings::default()).unwrap();
        assert_eq!(settings.retention.retain_commits, 3);
        assert_eq!(settings.file_group_bytes, 512 << 10);
        assert_eq!(
            settings.group.max_files,
            Settings::default().group.max_files
        );
        assert_eq!(settings.retention.retain_hours, 24);
    }

    #[test]
    fn a_value_out_of_range_names_its_variable() {
        let env = |name: &str| (name == RETAIN_COMMITS_VARIABLE).then(|| "0".to_owned());
        let error = lifecycle_settings(env, Settings::default()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("METRICCARE_RETAIN_COMMITS=\"0\""),
            "{error}"
        );
    }
}
