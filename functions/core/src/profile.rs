//! The tenant profile: per tenant, how its data is to be read for gold — the facility's time zone,
//! which encounter classes are inpatient stays, which condition codes are hospital-acquired
//! infections. An optional JSON file at `config/tenants/<tenant>.json` in the lake (the lake
//! bucket on AWS), every key optional:
//!
//! ```json
//! {"time_zone": "America/New_York",
//!  "inpatient_classes": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}],
//!  "hai_codes": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "T81.4"}]}
//! ```
//!
//! A profile that does not parse is refused whole, with the key that is wrong; the tenant's gold
//! is then left as it is. Gold records the fingerprint of the profile it was computed with, so a
//! changed profile recomputes that tenant.

use std::collections::BTreeMap;

use object_store::ObjectStore;
use object_store::path::Path;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};
use crate::gold::{HaiCode, HaiValueSet};
use crate::objects;
use crate::tenant::TenantId;

/// Where the profiles are, in the lake.
pub const PROFILES_DIR: &str = "config/tenants";

/// A profile bigger than this is refused (a real one is a few kilobytes).
const MAX_PROFILE_BYTES: usize = 1 << 20;

/// HL7 v3 ActCode: the code system of the default inpatient classes.
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// Other names of v3 ActCode that exports use: the pre-R4 URL and the OID.
const ACT_CODE_ALIASES: [&str; 2] = [
    "http://hl7.org/fhir/v3/ActCode",
    "urn:oid:2.16.840.1.113883.5.4",
];

/// The inpatient classes when a profile names none: v3 ActCode IMP, ACUTE and NONAC.
const DEFAULT_INPATIENT_CODES: [&str; 3] = ["IMP", "ACUTE", "NONAC"];

/// A code in a code system.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coded {
    pub system: String,
    pub code: String,
}

/// An HAI code of a profile: `display` is optional (the code stands for itself).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileHaiCode {
    system: String,
    code: String,
    display: Option<String>,
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    time_zone: Option<String>,
    inpatient_classes: Option<Vec<Coded>>,
    hai_codes: Option<Vec<ProfileHaiCode>>,
}

/// How gold reads one tenant's data: the defaults, or its profile.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantProfile {
    /// The facility's clock: every calendar date in gold is a date here.
    pub time_zone: chrono_tz::Tz,
    /// Encounter classes (system and code) that make an inpatient stay.
    pub inpatient_classes: Vec<Coded>,
    /// The conditions that count as hospital-acquired infections.
    pub hai: HaiValueSet,
    /// A hash of the profile file (empty without one): gold recomputes a tenant when it changes.
    pub fingerprint: String,
}

impl TenantProfile {
    /// The profile of a tenant without a profile file: UTC, v3 ActCode IMP/ACUTE/NONAC, and the
    /// given HAI value set (the built-in one, or the deployment's).
    pub fn default_with(hai: HaiValueSet) -> Self {
        Self {
            time_zone: chrono_tz::UTC,
            inpatient_classes: [ACT_CODE]
                .iter()
                .chain(&ACT_CODE_ALIASES)
                .flat_map(|system| {
                    DEFAULT_INPATIENT_CODES.iter().map(|code| Coded {
                        system: (*system).to_owned(),
                        code: (*code).to_owned(),
                    })
                })
                .collect(),
            hai,
            fingerprint: String::new(),
        }
    }

    /// Parses a profile file; what it leaves out comes from `defaults`. The error names the key
    /// that is wrong.
    pub fn parse(bytes: &[u8], defaults: &Self) -> Result<Self> {
        let invalid = |message: String| CoreError::Profile(message);
        if bytes.len() > MAX_PROFILE_BYTES {
            return Err(invalid(format!(
                "the profile is larger than {MAX_PROFILE_BYTES} bytes"
            )));
        }
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(invalid("the profile must be a JSON object".into()));
        }
        let file: ProfileFile =
            serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        let time_zone = match &file.time_zone {
            Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
                invalid(format!(
                    "time_zone: {name:?} is not an IANA time zone (such as \"America/New_York\")"
                ))
            })?,
            None => defaults.time_zone,
        };
        let inpatient_classes = match file.inpatient_classes {
            Some(classes) => {
                check_codes(
                    "inpatient_classes",
                    classes.iter().map(|c| (&c.system, &c.code)),
                )?;
                classes
            }
            None => defaults.inpatient_classes.clone(),
        };
        let hai = match file.hai_codes {
            Some(codes) => {
                check_codes("hai_codes", codes.iter().map(|c| (&c.system, &c.code)))?;
                HaiValueSet {
                    codes: codes
                        .into_iter()
                        .map(|c| HaiCode {
                            display: c.display.unwrap_or_else(|| c.code.clone()),
                            system: c.system,
                            code: c.code,
                        })
                        .collect(),
                }
            }
            None => defaults.hai.clone(),
        };
        Ok(Self {
            time_zone,
            inpatient_classes,
            hai,
            fingerprint: hex::encode(&Sha256::digest(bytes)[..8]),
        })
    }

    /// A hash of what the profile says (not of a file): the deployment's defaults change it.
    pub fn effective_fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.time_zone.name());
        for class in &self.inpatient_classes {
            hasher.update(format!("\0{}\0{}", class.system, class.code));
        }
        hasher.update("\0hai");
        for code in &self.hai.codes {
            hasher.update(format!(
                "\0{}\0{}\0{}",
                code.system, code.code, code.display
            ));
        }
        hex::encode(&hasher.finalize()[..8])
    }

    /// Whether an encounter class (system and code) is an inpatient one. A class without a system
    /// (the source left it out, or the row was loaded before silver kept it) matches on its code.
    pub fn is_inpatient(&self, system: Option<&str>, code: Option<&str>) -> bool {
        let Some(code) = code else {
            return false;
        };
        self.inpatient_classes
            .iter()
            .any(|c| system.is_none_or(|s| c.system == s) && c.code == code)
    }
}

/// A list of codes must not be empty, and no entry may have an empty system or code.
fn check_codes<'a>(
    key: &str,
    codes: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<()> {
    if codes.len() == 0 {
        return Err(CoreError::Profile(format!(
            "{key}: the list is empty (leave the key out for the default)"
        )));
    }
    for (index, (system, code)) in codes.enumerate() {
        if system.trim().is_empty() || code.trim().is_empty() {
            return Err(CoreError::Profile(format!(
                "{key}[{index}]: system and code must not be empty"
            )));
        }
    }
    Ok(())
}

/// The path of a tenant's profile in the lake.
pub fn profile_path(tenant: &TenantId) -> Path {
    Path::from(PROFILES_DIR).join(format!("{}.json", tenant.as_str()))
}

/// Every tenant's profile in the lake: the parsed profile, or why it is refused. A tenant without
/// a file has none here (it reads with the defaults). One listing of `config/tenants/`.
pub async fn load_profiles(
    lake: &dyn ObjectStore,
    defaults: &TenantProfile,
) -> Result<BTreeMap<String, Result<TenantProfile>>> {
    use futures::TryStreamExt;
    let listed: Vec<_> = lake
        .list(Some(&Path::from(PROFILES_DIR)))
        .try_collect()
        .await?;
    let mut profiles = BTreeMap::new();
    for object in listed {
        // Only `config/tenants/<tenant>.json` itself: a copy in a subfolder (`old/<tenant>.json`)
        // is not the tenant's profile.
        let Some(tenant) = object
            .location
            .filename()
            .and_then(|name| name.strip_suffix(".json"))
            .and_then(|name| TenantId::parse(name).ok())
            .filter(|tenant| profile_path(tenant) == object.location)
        else {
            continue;
        };
        let Some(bytes) = objects::read(lake, &object.location).await? else {
            continue;
        };
        let parsed = TenantProfile::parse(&bytes, defaults)
            .map_err(|e| CoreError::Profile(format!("{}: {e}", profile_path(&tenant))));
        profiles.insert(tenant.as_str().to_owned(), parsed);
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TenantProfile {
        TenantProfile::default_with(HaiValueSet::builtin())
    }

    #[test]
    fn a_profile_replaces_what_it_names_and_keeps_the_defaults_for_the_rest() {
        let text = br#"{"time_zone": "America/Chicago",
            "inpatient_classes": [{"system": "http://example.org/local-class", "code": "INPT"}]}"#;
        let profile = TenantProfile::parse(text, &defaults()).unwrap();
        assert_eq!(profile.time_zone, chrono_tz::America::Chicago);
        assert!(profile.is_inpatient(Some("http://example.org/local-class"), Some("INPT")));
        // Replaced, not added to: the default IMP no longer counts, nor a code of another system.
        assert!(!profile.is_inpatient(Some(ACT_CODE), Some("IMP")));
        assert!(!profile.is_inpatient(Some(ACT_CODE), Some("INPT")));
        assert_eq!(profile.hai, HaiValueSet::builtin());
        assert!(!profile.fingerprint.is_empty());
        // An empty profile is the defaults.
        let empty = TenantProfile::parse(b"{}", &defaults()).unwrap();
        assert_eq!(empty.time_zone, chrono_tz::UTC);
        assert!(empty.is_inpatient(Some(ACT_CODE), Some("ACUTE")));
        // A class without a system matches on its code (rows loaded before silver kept it).
        assert!(empty.is_inpatient(None, Some("IMP")));
        assert!(!empty.is_inpatient(None, Some("AMB")));
        assert!(!empty.is_inpatient(Some(ACT_CODE), None));
        // The pre-R4 name of v3 ActCode is v3 ActCode.
        assert!(empty.is_inpatient(Some("http://hl7.org/fhir/v3/ActCode"), Some("IMP")));
    }

    #[test]
    fn a_bad_profile_is_refused_with_the_key_that_is_wrong() {
        for (text, names) in [
            (r#"{"time_zone": "Mars/Olympus"}"#, "time_zone"),
            (r#"{"timezone": "UTC"}"#, "timezone"),
            (r#"{"inpatient_classes": []}"#, "inpatient_classes"),
            (
                r#"{"inpatient_classes": [{"system": "", "code": "IMP"}]}"#,
                "inpatient_classes[0]",
            ),
            (r#"{"hai_codes": [{"code": "A41.9"}]}"#, "system"),
            (
                r#"{"hai_codes": [{"system": "s", "code": "c", "colour": "red"}]}"#,
                "colour",
            ),
            ("[1, 2]", "JSON object"),
            ("{", "EOF"),
        ] {
            let error = TenantProfile::parse(text.as_bytes(), &defaults())
                .unwrap_err()
                .to_string();
            assert!(error.contains(names), "{text}: {error}");
        }
    }
}
