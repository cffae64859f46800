//! A Bulk FHIR export folder as it is dropped: besides its NDJSON resource files it holds a
//! `manifest.json` (the export's `transactionTime` and its files), error files of OperationOutcome
//! resources, and often a `log.ndjson` of export events. The manifest orders the deletes of the
//! files it names; the manifest, the log and the error files are not resources to load: they are
//! recorded as skipped (ledger SKIPPED, tag `skipped`, no alert), not quarantined.

use std::collections::HashMap;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;

use crate::error::Result;
use crate::objects;
use crate::ports::ResourceCounts;

/// A manifest or log bigger than this is not read as one: it goes through the resource reader
/// (and is quarantined there if it holds no resource). Real ones are kilobytes.
const MAX_COMPANION_BYTES: u64 = 16 << 20;

/// A file of a Bulk export folder that holds no resources to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Companion {
    Manifest,
    Log,
    ErrorFile,
}

impl Companion {
    /// Why the file was skipped, as the ledger and the CLI say it.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Manifest => "a Bulk export manifest (read for its transactionTime), no resources",
            Self::Log => "a Bulk export log of export events, no resources",
            Self::ErrorFile => "a Bulk export error file of OperationOutcome resources only",
        }
    }

    /// Whether a file whose name and size are these may be a manifest or a log: only those are
    /// read before the resource reader, so that a resource file is never read twice.
    pub(crate) fn may_be_read_ahead(key: &str, size: u64) -> bool {
        let name = key.rsplit('/').next().unwrap_or_default();
        size <= MAX_COMPANION_BYTES && (name == "manifest.json" || name.ends_with("log.ndjson"))
    }

    /// What a manifest- or log-named file is, from its bytes: `None` when it is not what its name
    /// says (it is then read as resources, and quarantined if it holds none).
    pub(crate) fn of_bytes(key: &str, bytes: &[u8]) -> Option<Self> {
        let name = key.rsplit('/').next().unwrap_or_default();
        if name == "manifest.json" {
            let manifest: serde_json::Value = serde_json::from_slice(bytes).ok()?;
            let is_manifest = manifest["transactionTime"].is_string()
                && manifest["output"].is_array()
                && manifest.get("resourceType").is_none();
            return is_manifest.then_some(Self::Manifest);
        }
        is_export_log(bytes).then_some(Self::Log)
    }

    /// Whether a file that was read as resources is an error file: OperationOutcome resources and
    /// nothing else (no other type, reject or delete).
    pub(crate) fn is_error_file(counts: &ResourceCounts, rejected: u64, deleted: u64) -> bool {
        rejected == 0
            && deleted == 0
            && !counts.is_empty()
            && counts.keys().all(|kind| kind == "OperationOutcome")
    }
}

/// An export log (as the SMART Bulk Data client writes it): every line a JSON object with an
/// `eventId` and no `resourceType`.
fn is_export_log(bytes: &[u8]) -> bool {
    let mut lines = bytes
        .split(|b| *b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty())
        .peekable();
    lines.peek().is_some()
        && lines.all(|line| {
            serde_json::from_slice::<serde_json::Value>(line).is_ok_and(|event| {
                event["eventId"].is_string() && event.get("resourceType").is_none()
            })
        })
}

/// The Bulk export manifests (`manifest.json`) of the folders a group's files are in, read once
/// per folder.
#[derive(Default)]
pub(crate) struct BulkManifests {
    by_folder: HashMap<Path, Option<BulkManifest>>,
}

/// What a Bulk export manifest says that matters here: when the export was taken, and its files.
struct BulkManifest {
    transaction_time: i64,
    file_names: Vec<String>,
}

impl BulkManifests {
    /// The `transactionTime` of the export whose manifest (beside the file) names the file among
    /// its `output` or `deleted` files. No manifest, or one that is not a Bulk manifest, is no
    /// error: the upload time orders the file's deletes then. A manifest that cannot be read now
    /// is (the file is retried).
    pub(crate) async fn transaction_time(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        key: &Path,
    ) -> Result<Option<i64>> {
        let parts: Vec<_> = key.parts().collect();
        let Some((name, folder)) = parts.split_last() else {
            return Ok(None);
        };
        let folder = Path::from_iter(folder.iter().cloned());
        if !self.by_folder.contains_key(&folder) {
            let path = folder.clone().join("manifest.json");
            let manifest = objects::read(store.as_ref(), &path)
                .await?
                .and_then(|bytes| parse_bulk_manifest(&bytes));
            self.by_folder.insert(folder.clone(), manifest);
        }
        Ok(self
            .by_folder
            .get(&folder)
            .and_then(Option::as_ref)
            .filter(|m| m.file_names.iter().any(|n| n == name.as_ref()))
            .map(|m| m.transaction_time))
    }
}

fn parse_bulk_manifest(bytes: &[u8]) -> Option<BulkManifest> {
    let manifest: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let transaction_time =
        crate::time::parse_fhir_datetime(manifest["transactionTime"].as_str()?).ok()?;
    let file_names = ["output", "deleted"]
        .iter()
        .filter_map(|list| manifest[list].as_array())
        .flatten()
        .filter_map(|entry| entry["url"].as_str()?.rsplit('/').next().map(str::to_owned))
        .collect();
    Some(BulkManifest {
        transaction_time,
        file_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_or_log_is_known_by_its_name_and_its_content() {
        let manifest = br#"{"transactionTime":"2024-03-01T00:00:00Z","request":"x","requiresAccessToken":true,"output":[{"type":"Patient","url":"https://h/Patient.ndjson"}],"error":[]}"#;
        assert_eq!(
            Companion::of_bytes("t1/e/manifest.json", manifest),
            Some(Companion::Manifest)
        );
        // A Bundle named manifest.json is read as resources.
        let bundle =
            br#"{"resourceType":"Bundle","type":"collection","transactionTime":"x","output":[]}"#;
        assert_eq!(Companion::of_bytes("t1/e/manifest.json", bundle), None);
        let log = b"{\"exportId\":\"a\",\"timestamp\":\"2024\",\"eventId\":\"kickoff\",\"eventDetail\":{}}\n\n{\"exportId\":\"a\",\"eventId\":\"export_complete\"}\n";
        assert_eq!(
            Companion::of_bytes("t1/e/log.ndjson", log),
            Some(Companion::Log)
        );
        // A log with one resource line in it is read as resources.
        let mixed = b"{\"eventId\":\"kickoff\"}\n{\"resourceType\":\"Patient\",\"id\":\"p\",\"eventId\":\"x\"}\n";
        assert_eq!(Companion::of_bytes("t1/e/log.ndjson", mixed), None);
        assert_eq!(Companion::of_bytes("t1/e/log.ndjson", b"\n"), None);
        assert!(Companion::may_be_read_ahead("t1/e/log.ndjson", 100));
        assert!(!Companion::may_be_read_ahead("t1/e/Patient.ndjson", 100));
        assert!(!Companion::may_be_read_ahead(
            "t1/e/manifest.json",
            MAX_COMPANION_BYTES + 1
        ));
    }

    #[test]
    fn an_error_file_holds_operation_outcomes_and_nothing_else() {
        let counts = |kinds: &[(&str, u64)]| -> ResourceCounts {
            kinds.iter().map(|(k, n)| (k.to_string(), *n)).collect()
        };
        assert!(Companion::is_error_file(
            &counts(&[("OperationOutcome", 2)]),
            0,
            0
        ));
        assert!(!Companion::is_error_file(
            &counts(&[("OperationOutcome", 2), ("Patient", 1)]),
            0,
            0
        ));
        assert!(!Companion::is_error_file(
            &counts(&[("OperationOutcome", 2)]),
            1,
            0
        ));
        assert!(!Companion::is_error_file(&counts(&[]), 0, 0));
    }
}
