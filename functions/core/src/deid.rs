//! De-identification on the way into silver: keyed HMAC-SHA256 pseudonyms for resource ids
//! (tenant mixed in), and the key fingerprint the lake records so that a run with another key
//! refuses to write.

use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;

use crate::error::{CoreError, Result};
use crate::tenant::TenantId;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC kept in a pseudonym: 128 bits make collisions impossible in practice and keep
/// join keys short (32 hex characters).
const PSEUDONYM_BYTES: usize = 16;

/// Minimum key length: shorter keys make the pseudonyms guessable by brute force over ids.
pub const MIN_KEY_BYTES: usize = 32;

/// Reads a key given as hex (at least 32 bytes once decoded), or as any text of at least 32 bytes.
/// `source` names where it came from (an environment variable, a parameter) for the error.
pub fn parse_key(text: &str, source: &str) -> Result<Vec<u8>> {
    let key = match hex::decode(text.trim()) {
        Ok(bytes) if bytes.len() >= MIN_KEY_BYTES => bytes,
        _ => text.as_bytes().to_vec(),
    };
    if key.len() < MIN_KEY_BYTES {
        return Err(CoreError::Config(format!(
            "{source} must hold at least {MIN_KEY_BYTES} bytes"
        )));
    }
    Ok(key)
}

/// How S3 request URLs encode a key: every byte but `A-Z a-z 0-9 - . _ ~ /`.
const URL_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Object keys can name patients (uploaders name files after them), and storage errors quote the
/// key, as given or percent-encoded in a request URL. Both forms become `replacement` (the ledger
/// id) before an error text reaches the ledger, a log line or an alert.
pub fn redact_key(text: &str, key: &str, replacement: &str) -> String {
    if key.is_empty() {
        return text.to_owned();
    }
    let encoded = utf8_percent_encode(key, URL_PATH).to_string();
    text.replace(key, replacement)
        .replace(&encoded, replacement)
}

#[derive(Clone)]
pub struct Pseudonymizer {
    mac: HmacSha256,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        write!(f, "Pseudonymizer(fingerprint={})", self.fingerprint())
    }
}

impl Pseudonymizer {
    pub fn new(key: &[u8]) -> Result<Self> {
        if key.len() < MIN_KEY_BYTES {
            return Err(CoreError::Config(format!(
                "the pseudonymisation key must be at least {MIN_KEY_BYTES} bytes, got {}",
                key.len()
            )));
        }
        let mac = HmacSha256::new_from_slice(key)
            .map_err(|e| CoreError::Config(format!("pseudonymisation key: {e}")))?;
        Ok(Self { mac })
    }

    /// The pseudonymous key of `resource_type/id` within a tenant. The same source id in two
    /// tenants gets two unrelated pseudonyms.
    pub fn pseudonym(&self, tenant: &TenantId, resource_type: &str, id: &str) -> String {
        let mut mac = self.mac.clone();
        // Length-prefix each part so that ("ab","c") and ("a","bc") can never collide.
        for part in [tenant.as_str(), resource_type, id] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part.as_bytes());
        }
        to_hex(&mac.finalize().into_bytes()[..PSEUDONYM_BYTES])
    }

    /// A public fingerprint of the key (not the key): recorded in the lake, compared on every write.
    pub fn fingerprint(&self) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"metriccare key fingerprint v1");
        hex::encode(&mac.finalize().into_bytes()[..8])
    }
}

/// Lower-case hex. Written out because `hex::encode` collects a `String` one `char` at a time, which
/// showed up in ingest profiles (two to three pseudonyms per resource).
fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = Vec::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)]);
        text.push(DIGITS[usize::from(byte & 0x0f)]);
    }
    String::from_utf8(text).expect("hex digits are ASCII")
}

/// Pseudonyms of references already computed in one file. Bulk exports group a patient's
/// resources together and a tenant has few hospitals, so most references repeat; a lookup is
/// several times cheaper than the HMAC. Bounded: emptied when full.
#[derive(Debug, Default)]
pub struct PseudonymCache {
    known: std::collections::HashMap<String, String>,
    /// `type/id` of the lookup, reused so that a hit allocates nothing but its answer.
    probe: String,
}

impl PseudonymCache {
    const CAPACITY: usize = 16 * 1024;

    pub fn pseudonym(
        &mut self,
        pseudonymizer: &Pseudonymizer,
        tenant: &TenantId,
        resource_type: &str,
        id: &str,
    ) -> String {
        self.probe.clear();
        self.probe.push_str(resource_type);
        self.probe.push('/');
        self.probe.push_str(id);
        if let Some(known) = self.known.get(self.probe.as_str()) {
            return known.clone();
        }
        let pseudonym = pseudonymizer.pseudonym(tenant, resource_type, id);
        if self.known.len() >= Self::CAPACITY {
            self.known.clear();
        }
        self.known.insert(self.probe.clone(), pseudonym.clone());
        pseudonym
    }
}

/// The first three characters of a postal code (HIPAA limited data set / POPIA pseudonymisation).
pub fn postal_prefix(postal_code: &str) -> String {
    postal_code.trim().chars().take(3).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_error_texts_are_replaced_in_both_forms() {
        let key = "clinic-1/Jane Doe (1970).ndjson";
        let text = "not found: clinic-1/Jane Doe (1970).ndjson; GET http://s3/raw/clinic-1/Jane%20Doe%20%281970%29.ndjson failed";
        let redacted = redact_key(text, key, "<ledger 1a2b>");
        assert_eq!(
            redacted,
            "not found: <ledger 1a2b>; GET http://s3/raw/<ledger 1a2b> failed"
        );
        assert_eq!(redact_key("plain", "", "x"), "plain");
    }

    fn key(byte: u8) -> Pseudonymizer {
        Pseudonymizer::new(&[byte; 32]).unwrap()
    }

    #[test]
    fn pseudonyms_are_stable_and_do_not_contain_the_id() {
        let tenant = TenantId::parse("tenant-01").unwrap();
        let a = key(1).pseudonym(&tenant, "Patient", "12345");
        assert_eq!(a, key(1).pseudonym(&tenant, "Patient", "12345"));
        assert_eq!(a.len(), 32);
        assert!(!a.contains("12345"));
    }

    #[test]
    fn tenant_type_and_key_all_change_the_pseudonym() {
        let t1 = TenantId::parse("t1").unwrap();
        let t2 = TenantId::parse("t2").unwrap();
        let base = key(1).pseudonym(&t1, "Patient", "x");
        assert_ne!(base, key(1).pseudonym(&t2, "Patient", "x"));
        assert_ne!(base, key(1).pseudonym(&t1, "Encounter", "x"));
        assert_ne!(base, key(2).pseudonym(&t1, "Patient", "x"));
        assert_ne!(key(1).fingerprint(), key(2).fingerprint());
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(Pseudonymizer::new(b"short").is_err());
    }

    #[test]
    fn hex_is_lower_case_and_cache_answers_like_the_key() {
        assert_eq!(to_hex(&[0x00, 0x9f, 0xa0, 0xff]), "009fa0ff");
        let (pseudonymizer, tenant) = (key(1), TenantId::parse("t1").unwrap());
        let mut cache = PseudonymCache::default();
        for _ in 0..2 {
            assert_eq!(
                cache.pseudonym(&pseudonymizer, &tenant, "Patient", "p1"),
                pseudonymizer.pseudonym(&tenant, "Patient", "p1")
            );
        }
        // The probe is type and id together: the same id of another type is another pseudonym.
        assert_ne!(
            cache.pseudonym(&pseudonymizer, &tenant, "Encounter", "p1"),
            cache.pseudonym(&pseudonymizer, &tenant, "Patient", "p1")
        );
    }

    #[test]
    fn postal_codes_keep_three_characters() {
        assert_eq!(postal_prefix(" 02139-1234"), "021");
        assert_eq!(postal_prefix("7"), "7");
    }
}
