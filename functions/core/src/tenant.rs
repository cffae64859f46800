//! Tenant ids: the first path segment of every raw object and the silver partition value.

use std::fmt;

use object_store::path::Path;

use crate::error::{CoreError, Result};

/// A validated tenant id (`^[a-z0-9][a-z0-9-]{0,62}$`). Validation makes path traversal through a
/// tenant id impossible: no `/`, no `.`, no upper case that could collide on case-insensitive disks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(value: &str) -> Result<Self> {
        let bytes = value.as_bytes();
        let valid_first = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let valid_rest = bytes
            .iter()
            .skip(1)
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if valid_first && valid_rest && bytes.len() <= 63 {
            Ok(Self(value.to_owned()))
        } else {
            Err(CoreError::InvalidTenant(value.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant of a raw-zone key (`<tenant>/<any path>/<file>`): its first segment, validated.
    /// A key directly at the root has no tenant.
    pub fn of_raw_key(key: &Path) -> Result<Self> {
        let mut parts = key.parts();
        match (parts.next(), parts.next()) {
            (Some(first), Some(_)) => Self::parse(first.as_ref()),
            _ => Err(CoreError::NotInTenantFolder(key.to_string())),
        }
    }

    /// The hive-style partition path of this tenant in every silver and gold table.
    pub fn partition_path(&self) -> String {
        format!("tenant_id={}", self.0)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_shape() {
        for ok in ["a", "tenant-01", "0abc", &"x".repeat(63)] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn the_tenant_of_a_raw_key_is_its_first_folder() {
        let tenant = |key: &str| TenantId::of_raw_key(&Path::from(key)).map(|t| t.to_string());
        assert_eq!(tenant("clinic-1/export/a.ndjson").unwrap(), "clinic-1");
        assert!(matches!(
            tenant("a.ndjson"),
            Err(CoreError::NotInTenantFolder(_))
        ));
        assert!(matches!(
            tenant("Clinic/a.ndjson"),
            Err(CoreError::InvalidTenant(_))
        ));
    }

    #[test]
    fn rejects_traversal_case_and_length() {
        for bad in [
            "",
            "-a",
            "A",
            "a/b",
            "..",
            "a.b",
            "a_b",
            "ä",
            &"x".repeat(64),
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad}");
        }
    }
}
