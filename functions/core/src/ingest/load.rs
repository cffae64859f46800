//! One file's load while it streams: each item of the FHIR reader becomes a silver row (built in
//! batches per table and bucket, staged on local disk), a delete, or a reject.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::quarantine::RejectLog;
use crate::deid::{PseudonymCache, Pseudonymizer};
use crate::error::{CoreError, Result};
use crate::fhir::{self, Item, Parsed, Position, Record};
use crate::hudi::{Delete, StagedRows, bucket_of};
use crate::ports::ResourceCounts;
use crate::silver::{
    BatchBuilder, Resolver, RowError, SILVER_BUCKETS, SilverTable, resolve_references, write_row,
};
use crate::tenant::TenantId;
use crate::time::parse_fhir_datetime;

/// Rows built per (table, bucket) before they are staged: a file's rows go to disk in batches of
/// this many, so memory does not grow with the file (at most 16 builders are filling at once).
const BATCH_ROWS: usize = 2048;

/// What a file is loaded for: tenant, lineage and the key.
pub(crate) struct LoadContext {
    pub(crate) tenant: TenantId,
    pub(crate) ledger_id: String,
    pub(crate) now: i64,
    /// The ordering of the file's deletes: its export's `transactionTime` when a Bulk manifest
    /// beside it names it, else its upload time.
    pub(crate) delete_ordering: i64,
    pub(crate) pseudonymizer: Pseudonymizer,
    /// Pseudonyms of the tenant's erased patients: their rows are not loaded.
    pub(crate) erased: Arc<BTreeSet<String>>,
}

/// What a parsed file brings to its group: counts, staged rows per table, rejects.
pub(crate) struct ParsedFile {
    pub(crate) counts: ResourceCounts,
    pub(crate) deleted: u64,
    pub(crate) future_last_updated: u64,
    pub(crate) erased: u64,
    pub(crate) staged: HashMap<SilverTable, StagedRows>,
    pub(crate) rejects: RejectLog,
}

/// The state of one file's load while it streams: counts, `urn:uuid` map, rows being built and
/// staged, resources waiting for a reference further down the file, rejects.
pub(crate) struct FileLoad {
    context: LoadContext,
    pub(crate) counts: ResourceCounts,
    pub(crate) deleted: u64,
    /// Resources whose `meta.lastUpdated` was later than the ingest time.
    pub(crate) future_last_updated: u64,
    /// Resources of erased patients, not loaded.
    pub(crate) erased: u64,
    /// The lines and resources of a scale-out worker's span of an NDJSON file.
    pub(crate) lines: fhir::LineCounts,
    /// `urn:uuid` of each Bundle entry → (resource type, id).
    uuids: HashMap<String, (String, String)>,
    /// Rows being built per (table, bucket), so that each staged batch is one bucket's.
    builders: HashMap<(SilverTable, u32), BatchBuilder>,
    pub(crate) staged: HashMap<SilverTable, StagedRows>,
    /// Resources whose `urn:uuid` reference points further down the Bundle.
    pending: Vec<(Record, Position)>,
    pub(crate) rejects: RejectLog,
    /// The first local staging failure: the file fails (and is retried), it is not quarantined.
    error: Option<CoreError>,
    references: std::cell::RefCell<PseudonymCache>,
}

impl FileLoad {
    pub(super) fn new(context: LoadContext) -> Self {
        Self {
            context,
            counts: ResourceCounts::new(),
            deleted: 0,
            future_last_updated: 0,
            erased: 0,
            lines: fhir::LineCounts::default(),
            uuids: HashMap::new(),
            builders: HashMap::new(),
            staged: HashMap::new(),
            pending: Vec::new(),
            rejects: RejectLog::new(),
            error: None,
            references: Default::default(),
        }
    }

    pub(super) fn take(&mut self, item: Item<'_>) {
        if self.error.is_some() {
            return;
        }
        let result = match item {
            Item::Resource {
                raw,
                full_url,
                position,
            } => match fhir::parse_resource(raw, full_url) {
                Ok(Parsed::Kept(record)) => {
                    let kind = record.resource_type();
                    *self.counts.entry(kind.to_owned()).or_default() += 1;
                    if let Some(uuid) = full_url.and_then(|u| u.strip_prefix("urn:uuid:")) {
                        self.uuids.insert(
                            uuid.to_owned(),
                            (kind.to_owned(), record.common().id.clone()),
                        );
                    }
                    self.add(record, position, false)
                }
                Ok(Parsed::Skipped(kind)) => {
                    *self.counts.entry(kind).or_default() += 1;
                    Ok(())
                }
                Err(reason) => self.reject(position, &reason, Some(raw)),
            },
            Item::Delete {
                url,
                modified,
                position,
            } => self.delete(url, modified, position),
            Item::Rejected {
                reason,
                raw,
                position,
            } => self.reject(position, &reason, raw),
        };
        if let Err(e) = result {
            self.error = Some(e);
        }
    }

    fn reject(&mut self, position: Position, reason: &str, raw: Option<&str>) -> Result<()> {
        // An erased patient stays erased in the reject logs too: their own resource, or one whose
        // subject they are, is counted as erased rather than kept as raw FHIR.
        if raw.is_some_and(|raw| self.names_erased_patient(raw)) {
            self.erased += 1;
            return Ok(());
        }
        self.rejects
            .add(&self.context.ledger_id, position, reason, raw)
    }

    /// Whether a raw (rejected) resource is an erased patient, or names one as its subject.
    fn names_erased_patient(&self, raw: &str) -> bool {
        if self.context.erased.is_empty() {
            return false;
        }
        let Ok(resource) = serde_json::from_str::<serde_json::Value>(raw) else {
            return false;
        };
        let patient_id = match resource["resourceType"].as_str() {
            Some("Patient") => resource["id"].as_str(),
            _ => ["subject", "patient"]
                .iter()
                .find_map(|field| resource[field]["reference"].as_str())
                .and_then(|reference| reference.strip_prefix("Patient/")),
        };
        patient_id.is_some_and(|id| {
            let key = self
                .context
                .pseudonymizer
                .pseudonym(&self.context.tenant, "Patient", id);
            self.context.erased.contains(&key)
        })
    }

    /// A DELETE entry. Its ordering is the time of the deletion when the entry has one (a history
    /// Bundle's `response.lastModified`, never later than now: a resource re-created after it in
    /// the same history survives), else the file's delete ordering.
    fn delete(&mut self, url: &str, modified: Option<&str>, position: Position) -> Result<()> {
        let Some((kind, id)) = url.split_once('/') else {
            return self.reject(
                position,
                &format!("DELETE url {url:?} is not Type/id"),
                None,
            );
        };
        // Deletes of resource types silver does not hold are nothing to do.
        let Some(table) = SilverTable::from_resource_type(kind) else {
            return Ok(());
        };
        if !fhir::is_valid_id(id) {
            return self.reject(
                position,
                &format!("DELETE url {url:?} has no valid id"),
                None,
            );
        }
        let key = self
            .context
            .pseudonymizer
            .pseudonym(&self.context.tenant, kind, id);
        let tenant = self.context.tenant.to_string();
        let ordering = modified
            .and_then(|at| parse_fhir_datetime(at).ok())
            .map_or(self.context.delete_ordering, |at| at.min(self.context.now));
        self.staged_rows(table)
            .delete(&tenant, Delete { key, ordering });
        self.deleted += 1;
        Ok(())
    }

    fn staged_rows(&mut self, table: SilverTable) -> &mut StagedRows {
        self.staged
            .entry(table)
            .or_insert_with(|| StagedRows::new(&table.def()))
    }

    /// Builds the record's row, or keeps it for later while `last_chance` is false and one of its
    /// `urn:uuid` references has not been seen yet.
    fn add(&mut self, record: Record, position: Position, last_chance: bool) -> Result<()> {
        let resolver = Resolver {
            tenant: &self.context.tenant,
            pseudonymizer: &self.context.pseudonymizer,
            uuids: &self.uuids,
            references: &self.references,
            last_chance,
        };
        let references = match resolve_references(&resolver, &record) {
            Ok(references) => references,
            Err(RowError::Pending) => {
                self.pending.push((record, position));
                return Ok(());
            }
            Err(RowError::Invalid(reason)) => return self.reject(position, &reason, None),
        };
        let table = SilverTable::from_resource_type(record.resource_type())
            .expect("kept records have a table");
        let key = resolver.key_of(record.resource_type(), &record.common().id);
        // An erased patient stays erased: their own row, and rows whose subject they are.
        let patient = match record {
            Record::Patient(_) => Some(&key),
            Record::Encounter(_) | Record::Condition(_) => references[0].as_ref(),
            Record::Organization(_) => None,
        };
        if patient.is_some_and(|p| self.context.erased.contains(p)) {
            self.erased += 1;
            return Ok(());
        }
        let bucket = (table, bucket_of(&key, SILVER_BUCKETS));
        // The version's ordering: `meta.lastUpdated`, but never later than now (a clock ahead or a
        // forged date would otherwise beat every later version and delete); counted when cut.
        let now = self.context.now;
        let ordering = match record.common().last_updated {
            Some(at) if at > now => {
                self.future_last_updated += 1;
                now
            }
            Some(at) => at,
            None => now,
        };
        let builder = self
            .builders
            .entry(bucket)
            .or_insert_with(|| BatchBuilder::new(table.schema()));
        write_row(
            &mut builder.row(),
            &key,
            &record,
            &references,
            &self.context,
            ordering,
        );
        if builder.len() >= BATCH_ROWS {
            self.flush(bucket)?;
        }
        Ok(())
    }

    fn flush(&mut self, bucket: (SilverTable, u32)) -> Result<()> {
        let Some(builder) = self.builders.get_mut(&bucket) else {
            return Ok(());
        };
        if builder.is_empty() {
            return Ok(());
        }
        let batch = builder.finish()?;
        let tenant = self.context.tenant.to_string();
        self.staged_rows(bucket.0).push(&tenant, &batch)
    }

    /// Resolves what waited for the end of the file and stages the last rows.
    pub(super) fn finish(mut self) -> Result<Self> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        for (record, position) in std::mem::take(&mut self.pending) {
            self.add(record, position, true)?;
        }
        let buckets: Vec<_> = self.builders.keys().copied().collect();
        for bucket in buckets {
            self.flush(bucket)?;
        }
        Ok(self)
    }
}
