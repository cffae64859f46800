//! Erasure of one patient (a data subject's request under POPIA or a hospital's policy): the
//! patient, their encounters and their conditions leave silver — the latest snapshot and every file
//! slice still on disk — and the rejected resources that name them; the tenant's gold is recomputed;
//! a receipt without PHI says what was removed and which raw objects still hold the patient (the
//! uploader's to remove). An erased patient stays erased: their keys keep a tombstone that no
//! version outranks, and a later file's rows of the patient are not loaded (counted).
//!
//! Steps, each safe to repeat (an erasure retried after any failure removes everything):
//! 1. the patient's pseudonym joins the tenant's erased list (`_metriccare/erased/<tenant>/<key>`,
//!    created if absent), so that files ingested from now on skip them;
//! 2. every base file of the tenant's patient, encounter and condition partitions is read for the
//!    patient's keys (latest and older slices alike);
//! 3. one delete commit per table, ordered after everything (`i64::MAX`), with its tombstones;
//! 4. older slices that still hold a row of the patient are rewritten without it;
//! 5. reject logs lose the lines of the patient's resources, and quarantined copies of raw files
//!    that hold the patient are removed;
//! 6. gold is refreshed, and the receipt is kept in `_metriccare/erasures/<tenant>/`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow_select::filter::filter_record_batch;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::gold;
use crate::hudi::{Delete, HudiTable, StagedRows, TableDef, read_base_file, rewrite_base_file};
use crate::ingest::Services;
use crate::objects;
use crate::profile::TenantProfile;
use crate::silver::SilverTable;
use crate::tenant::TenantId;
use crate::time::{hudi_instant, now_micros, rfc3339};

/// Where each tenant's erased patients (pseudonyms) are listed.
pub const ERASED_DIR: &str = "_metriccare/erased";
/// The raw-zone folder of erasure requests: `<tenant>/_erasure/<any name>.json`, holding
/// `{"patient_id": "<Patient.id>"}` — the way an uploader asks for an erasure on AWS, through the
/// same bucket and ingest path as its exports.
pub const REQUEST_FOLDER: &str = "_erasure";

/// Whether a raw key is an erasure request (`<tenant>/_erasure/...`), not an export.
pub fn is_request(key: &Path) -> bool {
    key.parts()
        .nth(1)
        .is_some_and(|part| part.as_ref() == REQUEST_FOLDER)
}

/// The patient id an erasure request names.
pub fn parse_request(bytes: &[u8]) -> Result<String> {
    #[derive(Deserialize)]
    struct Request {
        patient_id: String,
    }
    let request: Request = serde_json::from_slice(bytes).map_err(|e| {
        CoreError::ErasureRequest(format!(
            "it must be {{\"patient_id\": \"<Patient.id>\"}}: {e}"
        ))
    })?;
    if !crate::fhir::is_valid_id(&request.patient_id) {
        return Err(CoreError::ErasureRequest(
            "its patient_id is not a FHIR id".into(),
        ));
    }
    Ok(request.patient_id)
}
/// Where the receipts are kept.
pub const RECEIPTS_DIR: &str = "_metriccare/erasures";

/// What an erasure did. No PHI: pseudonyms, counts, file names, instants and ledger ids only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub tenant_id: String,
    /// The patient's pseudonymous key (the source id is never written).
    pub patient_key: String,
    pub erased_at: String,
    /// The patient was erased before: this erasure found what a later file brought, or nothing.
    pub already_erased: bool,
    /// Rows removed from the latest snapshot, per silver table.
    pub rows_removed: BTreeMap<String, u64>,
    /// Older file slices (kept for the retention window) rewritten without the patient's rows.
    pub slices_rewritten: Vec<String>,
    /// `table@instant` of the delete commits.
    pub silver_instants: Vec<String>,
    /// `table@instant` of the gold commits of the tenant's recompute.
    pub gold_instants: Vec<String>,
    /// Why the tenant's gold was not recomputed, when its profile is refused: its gold still counts
    /// the patient until the profile is fixed (the next refresh then recomputes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_not_recomputed: Option<String>,
    /// Lines of reject logs (`rejects/<tenant>/`) removed.
    pub reject_lines_removed: u64,
    /// Parts a scale-out run had staged for the tenant (`staging/<tenant>/`), removed whole: they
    /// may hold the patient's rows and rejected resources. That run's files fail and are read
    /// again, without the patient, by its retry.
    #[serde(default)]
    pub staged_parts_removed: u64,
    /// Quarantined copies of raw files (`files/<tenant>/<ledger id>/`) that held the patient,
    /// removed; their `reason.json` stays.
    #[serde(default)]
    pub quarantined_copies_removed: u64,
    /// Ledger ids of the raw objects whose rows or rejects held the patient: the files are the
    /// uploader's, and still hold the patient until the uploader removes them.
    pub raw_ledger_ids: Vec<String>,
    /// Where this receipt is kept in the lake.
    pub receipt: String,
}

fn erased_dir(tenant: &TenantId) -> Path {
    Path::from(ERASED_DIR).join(tenant.as_str())
}

/// The pseudonyms of the tenant's erased patients (one listing; erasures are few).
pub async fn erased_patients(
    lake: &dyn ObjectStore,
    tenant: &TenantId,
) -> Result<BTreeSet<String>> {
    let listed: Vec<_> = lake.list(Some(&erased_dir(tenant))).try_collect().await?;
    Ok(listed
        .into_iter()
        .filter_map(|o| o.location.filename().map(str::to_owned))
        .collect())
}

/// The keys of one patient's rows, per table, and the ledger ids of the files they came from.
#[derive(Default)]
struct Found {
    keys: BTreeMap<SilverTable, BTreeSet<String>>,
    sources: BTreeSet<String>,
}

/// Erases one patient of `tenant`, given by their resource id in the export. With `gold`, the
/// tenant's gold is refreshed here; without, it is left to the next refresh (the gold function,
/// on AWS, after the silver commit is announced).
pub async fn erase(
    services: &Services,
    tenant: &TenantId,
    patient_id: &str,
    gold: Option<&TenantProfile>,
) -> Result<Receipt> {
    services.check_key().await?;
    let lake = &services.lake;
    let patient_key = services
        .pseudonymizer
        .pseudonym(tenant, "Patient", patient_id);
    let erased_at = now_micros();
    // 1. From now on, ingest skips the patient.
    // One object per patient, created if absent: concurrent erasures never lose one.
    let marker = erased_dir(tenant).join(patient_key.as_str());
    let already_erased = !objects::create(lake.as_ref(), &marker, PutPayload::new()).await?;
    // 2. Every row of the patient, in every slice on disk.
    let partition = tenant.partition_path();
    let found = find_rows(lake, &partition, &patient_key).await?;
    let mut receipt = Receipt {
        tenant_id: tenant.to_string(),
        patient_key: patient_key.clone(),
        erased_at: rfc3339(erased_at),
        already_erased,
        raw_ledger_ids: found.sources.iter().cloned().collect(),
        ..Receipt::default()
    };
    // 3. Deletes no version outranks, referencing tables first. The patient's own key is
    //    tombstoned even when no row holds it, so that a later file cannot bring them back.
    for table in [
        SilverTable::Condition,
        SilverTable::Encounter,
        SilverTable::Patient,
    ] {
        let mut keys = found.keys.get(&table).cloned().unwrap_or_default();
        if table == SilverTable::Patient && !already_erased {
            keys.insert(patient_key.clone());
        }
        if keys.is_empty() {
            continue;
        }
        let hudi = HudiTable::open_with_tombstones(lake.clone(), table.def()).await?;
        let mut deletes = StagedRows::new(&table.def());
        for key in &keys {
            deletes.delete(
                tenant.as_str(),
                Delete {
                    key: key.clone(),
                    ordering: i64::MAX,
                },
            );
        }
        let outcome = hudi.commit_staged(&mut deletes).await?;
        receipt
            .rows_removed
            .insert(table.name().to_owned(), outcome.deleted);
        if let Some(instant) = outcome.instant {
            receipt
                .silver_instants
                .push(format!("{}@{instant}", table.name()));
        }
        // 4. Older slices kept for the retention window still hold the rows: rewrite them.
        for path in rewrite_slices(lake, &table.def(), &partition, &keys).await? {
            receipt.slices_rewritten.push(path.to_string());
        }
    }
    // 5. Rejected resources of the patient (raw FHIR, PHI) leave the reject logs.
    let (removed, reject_sources) =
        remove_rejects(services.quarantine.as_ref(), tenant, patient_id).await?;
    receipt.reject_lines_removed = removed;
    receipt.raw_ledger_ids.extend(reject_sources);
    receipt.staged_parts_removed =
        crate::scale_out::remove_staged(services.quarantine.as_ref(), tenant).await?;
    let (copies, copy_sources) =
        remove_quarantined_copies(services.quarantine.as_ref(), tenant, patient_id).await?;
    receipt.quarantined_copies_removed = copies;
    receipt.raw_ledger_ids.extend(copy_sources);
    receipt.raw_ledger_ids.sort();
    receipt.raw_ledger_ids.dedup();
    // 6. The tenant's gold without the patient, and the receipt.
    if let Some(defaults) = gold {
        let refreshed = gold::refresh(
            lake,
            services.notifier.as_ref(),
            defaults,
            &services.settings.retention,
        )
        .await?;
        receipt.gold_instants = refreshed.gold_instants;
        receipt.gold_not_recomputed = refreshed.profile_errors.get(tenant.as_str()).cloned();
    }
    let path = Path::from(RECEIPTS_DIR)
        .join(tenant.as_str())
        .join(format!("{}-{patient_key}.json", hudi_instant(erased_at)));
    receipt.receipt = path.to_string();
    lake.put(
        &path,
        PutPayload::from(serde_json::to_vec_pretty(&receipt)?),
    )
    .await?;
    tracing::info!(tenant_id = %tenant, patient_key = %patient_key, rows = receipt.rows_removed.values().sum::<u64>(), "patient erased");
    Ok(receipt)
}

/// Base files of a table's partition folder (every slice on disk).
async fn base_files(
    lake: &Arc<dyn ObjectStore>,
    def: &TableDef,
    partition: &str,
) -> Result<Vec<Path>> {
    let listing = lake
        .list_with_delimiter(Some(&def.base.clone().join(partition)))
        .await?;
    Ok(listing
        .objects
        .into_iter()
        .map(|o| o.location)
        .filter(|p| p.filename().is_some_and(|n| n.ends_with(".parquet")))
        .collect())
}

/// The keys of the patient's rows: the patient, encounters of the patient, conditions of the
/// patient or of those encounters; with the ledger ids of their source files.
async fn find_rows(
    lake: &Arc<dyn ObjectStore>,
    partition: &str,
    patient_key: &str,
) -> Result<Found> {
    let mut found = Found::default();
    let mut encounters = BTreeSet::new();
    for table in [
        SilverTable::Patient,
        SilverTable::Encounter,
        SilverTable::Condition,
    ] {
        let def = table.def();
        let mut columns = vec![table.record_key(), "source_file_id"];
        if table != SilverTable::Patient {
            columns.push("patient_key");
        }
        if table == SilverTable::Condition {
            columns.push("encounter_key");
        }
        for path in base_files(lake, &def, partition).await? {
            let schema = def.file_schema();
            for batch in read_base_file(lake.as_ref(), &path, Some(&columns), &schema).await? {
                let text = |name: &str| {
                    batch
                        .column_by_name(name)
                        .map(|c| c.as_string::<i32>().clone())
                };
                let keys =
                    text(table.record_key()).ok_or_else(|| missing(&def, table.record_key()))?;
                let sources =
                    text("source_file_id").ok_or_else(|| missing(&def, "source_file_id"))?;
                let patients = text("patient_key");
                let encounter_keys = text("encounter_key");
                for row in 0..batch.num_rows() {
                    let holds = match table {
                        SilverTable::Patient => keys.value(row) == patient_key,
                        _ => {
                            value_at(&patients, row) == Some(patient_key)
                                || value_at(&encounter_keys, row)
                                    .is_some_and(|e| encounters.contains(e))
                        }
                    };
                    if holds {
                        found
                            .keys
                            .entry(table)
                            .or_default()
                            .insert(keys.value(row).to_owned());
                        found.sources.insert(sources.value(row).to_owned());
                        if table == SilverTable::Encounter {
                            encounters.insert(keys.value(row).to_owned());
                        }
                    }
                }
            }
        }
    }
    Ok(found)
}

/// A row's value of an optional string column, `None` when the column or the value is absent.
fn value_at(array: &Option<StringArray>, row: usize) -> Option<&str> {
    array
        .as_ref()
        .filter(|a| a.is_valid(row))
        .map(|a| a.value(row))
}

fn missing(def: &TableDef, column: &str) -> CoreError {
    CoreError::Table {
        table: def.name.clone(),
        message: format!("base file without column {column}"),
    }
}

/// Rewrites every base file of the partition that still holds one of `keys`, without those rows.
async fn rewrite_slices(
    lake: &Arc<dyn ObjectStore>,
    def: &TableDef,
    partition: &str,
    keys: &BTreeSet<String>,
) -> Result<Vec<Path>> {
    let mut rewritten = Vec::new();
    for path in base_files(lake, def, partition).await? {
        let batches = read_base_file(lake.as_ref(), &path, None, &def.file_schema()).await?;
        let mut removed = 0;
        let mut kept: Vec<RecordBatch> = Vec::with_capacity(batches.len());
        for batch in batches {
            let column = batch
                .column_by_name(&def.record_key)
                .ok_or_else(|| missing(def, &def.record_key))?
                .as_string::<i32>();
            let keep: BooleanArray = column
                .iter()
                .map(|k| Some(!k.is_some_and(|k| keys.contains(k))))
                .collect();
            removed += keep.false_count();
            kept.push(filter_record_batch(&batch, &keep)?);
        }
        if removed > 0 {
            rewrite_base_file(lake.as_ref(), def, &path, &kept).await?;
            rewritten.push(path);
        }
    }
    Ok(rewritten)
}

/// Removes from the tenant's reject logs every line whose resource is the patient or names them
/// (`Patient/<id>`). Returns the lines removed and the ledger ids of the logs that had any.
async fn remove_rejects(
    quarantine: &dyn ObjectStore,
    tenant: &TenantId,
    patient_id: &str,
) -> Result<(u64, Vec<String>)> {
    let reference = format!("Patient/{patient_id}");
    let logs: Vec<_> = quarantine
        .list(Some(&Path::from("rejects").join(tenant.as_str())))
        .try_collect()
        .await?;
    let (mut removed, mut sources) = (0, Vec::new());
    for log in logs {
        let text = quarantine.get(&log.location).await?.bytes().await?;
        let mut kept = Vec::with_capacity(text.len());
        let mut dropped = 0;
        for line in text.split_inclusive(|b| *b == b'\n') {
            if names_patient(line, patient_id, &reference) {
                dropped += 1;
            } else {
                kept.extend_from_slice(line);
            }
        }
        if dropped == 0 {
            continue;
        }
        removed += dropped;
        if let Some(id) = log
            .location
            .filename()
            .and_then(|n| n.strip_suffix(".ndjson"))
        {
            sources.push(id.to_owned());
        }
        if kept.is_empty() {
            quarantine.delete(&log.location).await?;
        } else {
            quarantine
                .put(&log.location, PutPayload::from(Bytes::from(kept)))
                .await?;
        }
    }
    Ok((removed, sources))
}

/// Removes the tenant's quarantined copies (`files/<tenant>/<ledger id>/<name>`) that hold the
/// patient. A quarantined file is raw input that did not load (not JSON, a Bundle cut short...), so
/// it is searched as bytes, not parsed (see [`PatientNeedles`]), after gzip decompression when it
/// starts with the gzip magic. A copy that cannot be searched (a corrupt gzip) is removed too:
/// erasure errs on the side of removing. The copy goes, its `reason.json` stays (it says a file
/// was quarantined and why). Returns the copies removed and their ledger ids.
async fn remove_quarantined_copies(
    quarantine: &dyn ObjectStore,
    tenant: &TenantId,
    patient_id: &str,
) -> Result<(u64, Vec<String>)> {
    let copies: Vec<_> = quarantine
        .list(Some(&Path::from("files").join(tenant.as_str())))
        .try_collect()
        .await?;
    let needles = Arc::new(PatientNeedles::new(patient_id));
    let (mut removed, mut sources) = (0, Vec::new());
    for copy in copies {
        let parts: Vec<_> = copy.location.parts().collect();
        let [_, _, ledger_id, name] = parts.as_slice() else {
            continue;
        };
        if name.as_ref() == "reason.json" {
            continue;
        }
        // Gone meanwhile (another erasure): nothing to remove.
        let Some(file) = objects::download(quarantine, &copy.location).await? else {
            continue;
        };
        let needles = needles.clone();
        // Decompressing and scanning are blocking work: off the async workers.
        let holds = tokio::task::spawn_blocking(move || needles.found_in_file(file))
            .await
            .map_err(|e| CoreError::Io(std::io::Error::other(e)))?;
        if holds {
            match quarantine.delete(&copy.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            removed += 1;
            sources.push(ledger_id.as_ref().to_owned());
        }
    }
    Ok((removed, sources))
}

/// What marks a patient in raw bytes: a reference to them (`Patient/<id>"` or a versioned
/// `Patient/<id>/_history/…`, relative or absolute, with `/` escaped as `\/` or not) or an `"id"`
/// member whose value is their id (their own resource; a resource of another type with the same
/// id matches too, and is removed with them: erasure errs on the side of removing). Up to
/// [`MAX_GAP`](Self::MAX_GAP) bytes of whitespace around the `:` are recognised. Text in another
/// encoding than UTF-8 (UTF-16) is not recognised.
struct PatientNeedles {
    references: Vec<Vec<u8>>,
    value: Vec<u8>,
}

impl PatientNeedles {
    const MAX_GAP: usize = 16;
    /// Bytes read at a time from a copy.
    const CHUNK: usize = 1 << 16;

    fn new(patient_id: &str) -> Self {
        let references = ["/", "\\/"]
            .iter()
            .flat_map(|slash| {
                [
                    format!("Patient{slash}{patient_id}\""),
                    format!("Patient{slash}{patient_id}{slash}_history{slash}"),
                ]
            })
            .map(String::into_bytes)
            .collect();
        Self {
            references,
            value: format!("\"{patient_id}\"").into_bytes(),
        }
    }

    /// The longest span of bytes one match can cover.
    fn longest_match(&self) -> usize {
        let member = self.value.len() + "\"id\"".len() + 1 + 2 * Self::MAX_GAP;
        self.references
            .iter()
            .map(Vec::len)
            .fold(member, usize::max)
    }

    fn found_in(&self, bytes: &[u8]) -> bool {
        self.references
            .iter()
            .any(|reference| memchr::memmem::find(bytes, reference).is_some())
            || memchr::memmem::find_iter(bytes, &self.value).any(|at| is_id_member(&bytes[..at]))
    }

    /// Whether the file (gzip-compressed or not) holds the patient, read in chunks; a file that
    /// cannot be read to its end (a corrupt gzip) counts as holding them.
    fn found_in_file(&self, mut file: std::fs::File) -> bool {
        use std::io::{Read, Seek};
        let mut magic = [0u8; 2];
        let gzip = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
        if file.rewind().is_err() {
            return true;
        }
        let mut reader: Box<dyn Read> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
                file,
            )))
        } else {
            Box::new(file)
        };
        let mut window = Vec::with_capacity(Self::CHUNK + self.longest_match());
        let mut chunk = vec![0u8; Self::CHUNK];
        loop {
            let read = match reader.read(&mut chunk) {
                Ok(0) => return false,
                Ok(read) => read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return true,
            };
            window.extend_from_slice(&chunk[..read]);
            if self.found_in(&window) {
                return true;
            }
            // Keep enough of the end for a match that straddles two chunks.
            let keep = window.len().min(self.longest_match());
            window.drain(..window.len() - keep);
        }
    }
}

/// Whether `before` ends with `"id"`, then `:`, with at most [`PatientNeedles::MAX_GAP`] bytes of
/// whitespace on either side of the colon.
fn is_id_member(before: &[u8]) -> bool {
    match skip_space(before).strip_suffix(b":") {
        Some(key) => skip_space(key).ends_with(b"\"id\""),
        None => false,
    }
}

/// `text` without up to [`PatientNeedles::MAX_GAP`] bytes of trailing whitespace.
fn skip_space(text: &[u8]) -> &[u8] {
    let spaces = text
        .iter()
        .rev()
        .take(PatientNeedles::MAX_GAP)
        .take_while(|b| b.is_ascii_whitespace())
        .count();
    &text[..text.len() - spaces]
}

/// Whether a reject line is the patient's own resource or one that references them.
fn names_patient(line: &[u8], patient_id: &str, reference: &str) -> bool {
    let Ok(entry) = serde_json::from_slice::<serde_json::Value>(line) else {
        return false;
    };
    let resource = &entry["resource"];
    let is_patient =
        resource["resourceType"] == "Patient" && resource["id"].as_str() == Some(patient_id);
    // A relative reference (`"Patient/<id>"`) or an absolute one (`".../Patient/<id>"`).
    let text = resource.to_string();
    is_patient
        || text.contains(&format!("\"{reference}\""))
        || text.contains(&format!("/{reference}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patient_is_found_by_reference_or_by_an_id_member_and_not_by_a_longer_id() {
        let needles = PatientNeedles::new("p1");
        assert!(needles.found_in(br#"{"subject":{"reference":"Patient/p1"}}"#));
        assert!(needles.found_in(br#"{"reference":"https://ehr.example/fhir/Patient/p1"}"#));
        assert!(needles.found_in(b"{\"resourceType\":\"Patient\",\n \"id\" :\t\"p1\"}"));
        assert!(!needles.found_in(br#"{"reference":"Patient/p10"}"#));
        assert!(!needles.found_in(br#"{"id":"p10","note":"p1"}"#));
        assert!(!needles.found_in(br#"{"family":"p1"}"#));
        assert!(needles.found_in(br#"{"reference":"Patient/p1/_history/3"}"#));
        assert!(needles.found_in(br#"{"reference":"Patient\/p1"}"#));
    }

    #[test]
    fn a_gzip_copy_is_searched_decompressed_and_a_corrupt_one_counts_as_holding() {
        use std::io::{Seek, Write};
        let needles = PatientNeedles::new("p1");
        let file_of = |bytes: &[u8]| {
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(bytes).unwrap();
            file.rewind().unwrap();
            file
        };
        let gzip = |text: &[u8]| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(text).unwrap();
            encoder.finish().unwrap()
        };
        // Past the first chunk, so the match is found in a later read.
        let mut text = vec![b' '; PatientNeedles::CHUNK + 5];
        text.extend_from_slice(br#"{"subject":{"reference":"Patient/p1"}}"#);
        assert!(needles.found_in_file(file_of(&gzip(&text))));
        assert!(!needles.found_in_file(file_of(&gzip(br#"{"reference":"Patient/p2"}"#))));
        let mut cut = gzip(br#"{"reference":"Patient/p2"} and more text to compress"#);
        cut.truncate(cut.len() / 2);
        assert!(needles.found_in_file(file_of(&cut)));
        assert!(!needles.found_in_file(file_of(b"not json at all")));
    }

    #[test]
    fn the_kept_tail_covers_the_longest_match() {
        let needles = PatientNeedles::new("p1");
        let text = br#"{"id"                :                "p1"}"#;
        let start = text.iter().position(|b| *b == b'"').unwrap();
        let span = &text[start..text.len() - 1];
        assert!(span.len() <= needles.longest_match(), "{}", span.len());
        assert!(needles.found_in(span));
    }
}
