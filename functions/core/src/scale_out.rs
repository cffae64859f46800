//! Scale-out: a big file (or many files) read by many workers, committed by one.
//!
//! A driver (the Glue job's Spark driver) claims a tenant's files in the ledger and plans them
//! into [`Task`]s: a splittable NDJSON file becomes line-aligned byte spans, anything else (a
//! Bundle, a gzip stream) one task that reads it whole. Workers (Spark executors) run
//! [`Services::stage_task`]: they parse and de-identify their span exactly as the ingest path parses a
//! file and write the rows, deletes, counts and rejects as one *part* object in the quarantine
//! store (it may hold rejected resources, PHI). The driver then merges each file's parts in order
//! and commits the group through the ingest path's own group commit: the same claim, sequence,
//! seal, table services and ledger outcome as a Lambda, so a Lambda and a job racing on one
//! tenant are two writers of one protocol.
//!
//! One deliberate difference from reading the file whole: a `urn:uuid` reference between NDJSON
//! lines of different spans is not resolved (it is rejected, as a dangling one is). Bulk exports
//! do not use them between lines; Bundles inside one line resolve as before.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::sync::Arc;

use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::deid::redact_key;
use crate::error::{CoreError, Result};
use crate::fhir::{self, FileError, Position};
use crate::hudi::{Delete, StagedRows};
use crate::ingest::{
    FileReport, FileResult, FileState, GroupFile, LoadContext, ParsedFile, RejectLog, Services,
    parse_object,
};
use crate::ports::ResourceCounts;
use crate::silver::SilverTable;
use crate::tenant::TenantId;

/// The part of an object one task reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Span {
    /// The whole object, through the full reader (any format, gzip).
    Whole,
    /// The NDJSON lines that *start* in bytes `start..end`: a line crossing `end` is this span's,
    /// a line crossing `start` the previous one's, so spans cut anywhere still share out every
    /// line exactly once.
    Lines { start: u64, end: u64 },
}

impl Span {
    /// The bytes to fetch: from the byte before `start` (to see whether a line starts at it).
    pub(crate) fn range(self) -> Option<GetRange> {
        match self {
            Span::Lines { start, .. } if start > 0 => Some(GetRange::Offset(start - 1)),
            _ => None,
        }
    }

    /// Cuts the fetched bytes down to the span's lines.
    pub(crate) fn bound(self, input: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
        match self {
            Span::Whole => input,
            Span::Lines { start, end } => Box::new(LineSpan {
                inner: input,
                position: start.saturating_sub(1),
                end,
                // The byte before `start` was fetched: skip through the line it is in.
                skipping: start > 0,
                at_line_start: start == 0,
                done: false,
            }),
        }
    }
}

/// A reader of the lines that start before `end`, over bytes fetched from `position`.
struct LineSpan {
    inner: Box<dyn Read + Send>,
    position: u64,
    end: u64,
    skipping: bool,
    at_line_start: bool,
    done: bool,
}

impl Read for LineSpan {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while !self.done {
            let n = self.inner.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            let mut kept = 0;
            let mut i = 0;
            if self.skipping {
                match memchr::memchr(b'\n', &buf[..n]) {
                    Some(newline) => {
                        i = newline + 1;
                        self.skipping = false;
                        self.at_line_start = true;
                    }
                    None => i = n,
                }
                self.position += i as u64;
            }
            while i < n {
                if self.at_line_start && self.position >= self.end {
                    self.done = true;
                    break;
                }
                // Copy through the end of the current line (or the buffer) at once.
                let line_end = memchr::memchr(b'\n', &buf[i..n]).map_or(n, |at| i + at + 1);
                buf.copy_within(i..line_end, kept);
                kept += line_end - i;
                self.position += (line_end - i) as u64;
                self.at_line_start = buf[line_end - 1] == b'\n';
                i = line_end;
            }
            if kept > 0 {
                return Ok(kept);
            }
        }
        Ok(0)
    }
}

/// One unit of work for a worker: a span of one claimed file, and what it is loaded with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub ledger_id: String,
    pub tenant_id: String,
    /// The object's path in the source store, exactly as it was claimed.
    pub key: String,
    /// The claimed version: a worker never reads a newer upload under this ledger item.
    pub etag: Option<String>,
    pub attempt: u32,
    /// The file's ingest time and delete ordering (see the ingest path).
    pub now: i64,
    pub delete_ordering: i64,
    pub span: Span,
    /// The span's place among the file's spans, from 0.
    pub index: usize,
    /// Pseudonyms of the tenant's erased patients.
    pub erased: BTreeSet<String>,
}

impl Task {
    /// Where the worker writes the task's part.
    pub fn part_path(&self) -> Path {
        part_dir(&self.tenant_id, &self.ledger_id)
            .join(self.attempt.to_string())
            .join(format!("{}.part", self.index))
    }
}

/// The staging folder of one file: every attempt's parts, removed once the file is final.
fn part_dir(tenant: &str, ledger_id: &str) -> Path {
    Path::from("staging").join(tenant).join(ledger_id)
}

/// A tenant's files claimed by a scale-out driver, planned, waiting for their parts.
pub struct ScaleOutGroup {
    tenant: TenantId,
    files: Vec<GroupFile>,
    /// The tasks of each planned file, by ledger id.
    tasks: HashMap<String, Vec<Task>>,
}

impl ScaleOutGroup {
    /// Every task of every file, to hand out to workers.
    pub fn tasks(&self) -> Vec<Task> {
        self.files
            .iter()
            .filter_map(|f| self.tasks.get(&f.ledger_id))
            .flatten()
            .cloned()
            .collect()
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }
}

/// Bytes of the head of a file the planner sniffs to decide whether it can be split.
const HEAD_BYTES: u64 = 2 << 20;

impl Services {
    /// Claims a tenant's files for a scale-out run and plans each into tasks of about
    /// `split_bytes` (a file the ingest path handed off is taken over; one that another worker
    /// holds, or that is already final, is reported as such when the group is committed).
    pub async fn claim_scale_out(
        &self,
        source: &Arc<dyn ObjectStore>,
        bucket: &str,
        keys: &[Path],
        tenant: &TenantId,
        split_bytes: u64,
    ) -> Result<ScaleOutGroup> {
        self.check_key().await?;
        let mut files = Vec::with_capacity(keys.len());
        for key in keys {
            match self.claim(source, bucket, key, tenant, true).await {
                Ok(file) => files.push(file),
                Err(e) => {
                    // Record what was claimed as failed (it is retried), then give the error; its
                    // text may quote the key, which may name a patient.
                    let error = redact_key(&e.to_string(), key.as_ref(), "<raw object>");
                    for file in files.iter_mut() {
                        file.fail(format!("the scale-out run stopped: {error}"));
                    }
                    let _ = self.finish_group(files).await;
                    return Err(CoreError::ScaleOut(format!(
                        "claiming a file failed: {error}"
                    )));
                }
            }
        }
        let erased = self.prepare(&mut files, tenant).await.unwrap_or_default();
        let mut tasks = HashMap::new();
        for file in files.iter_mut() {
            let FileState::Claimed { attempt } = file.state else {
                continue;
            };
            match plan_spans(file, split_bytes).await {
                Ok(spans) => {
                    let planned = spans
                        .into_iter()
                        .enumerate()
                        .map(|(index, span)| Task {
                            ledger_id: file.ledger_id.clone(),
                            tenant_id: tenant.to_string(),
                            key: file.claimed.key.to_string(),
                            etag: file.claimed.pinned.if_match.clone(),
                            attempt,
                            now: file.now,
                            delete_ordering: file.delete_ordering,
                            span,
                            index,
                            erased: erased.as_ref().clone(),
                        })
                        .collect();
                    tasks.insert(file.ledger_id.clone(), planned);
                }
                Err(e) => file.fail(format!("planning the file's spans failed: {e}")),
            }
        }
        Ok(ScaleOutGroup {
            tenant: tenant.clone(),
            files,
            tasks,
        })
    }

    /// Merges each file's parts (in span order) and commits the group through the ingest path's
    /// group commit; finishes every file in the ledger and removes the staged parts of the files
    /// that ended final. A file with a missing or unreadable part fails (and is retried); a
    /// part that found the content bad quarantines its file. Returns a report per file.
    pub async fn commit_scale_out(&self, group: ScaleOutGroup) -> Result<Vec<FileReport>> {
        let ScaleOutGroup {
            tenant,
            mut files,
            tasks,
        } = group;
        for file in files.iter_mut() {
            let FileState::Claimed { attempt } = file.state else {
                continue;
            };
            let Some(file_tasks) = tasks.get(&file.ledger_id) else {
                continue;
            };
            match self.merge_parts(&tenant, file_tasks).await {
                Ok(Merged::Parsed(load)) => file.state = FileState::Parsed { attempt, load },
                Ok(Merged::Invalid(reason)) => match self.quarantine(file, &reason).await {
                    Ok(()) => file.end_quarantined(reason),
                    Err(e) => file.fail(format!("quarantine failed: {e}")),
                },
                Err(e) => file.fail(e),
            }
        }
        self.commit_parsed(&mut files, &tenant).await;
        let (reports, error) = self.finish_group(files).await;
        for report in &reports {
            // Also a file finished elsewhere since (a dead run's parts would stay otherwise).
            if matches!(
                report.result,
                FileResult::Completed
                    | FileResult::Quarantined
                    | FileResult::Skipped
                    | FileResult::AlreadyDone
            ) && let Err(e) = self.remove_parts(&tenant, &report.ledger_id).await
            {
                tracing::warn!(ledger_id = %report.ledger_id, error = %e, "staged parts could not be removed");
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(reports),
        }
    }

    /// One file's parts merged into what a parse of the whole file gives.
    async fn merge_parts(
        &self,
        tenant: &TenantId,
        tasks: &[Task],
    ) -> std::result::Result<Merged, String> {
        let mut merged = ParsedFile {
            counts: ResourceCounts::new(),
            deleted: 0,
            future_last_updated: 0,
            erased: 0,
            staged: HashMap::new(),
            rejects: RejectLog::new(),
        };
        let mut lines_before = 0u64;
        let mut resources = 0u64;
        let mut whole = false;
        for task in tasks {
            let path = task.part_path();
            let file = match crate::objects::download(self.quarantine.as_ref(), &path).await {
                Ok(Some(file)) => file,
                Ok(None) => return Err(format!("span {} was not staged", task.index)),
                Err(e) => return Err(format!("reading span {}: {e}", task.index)),
            };
            let mut part = Part::open(file).map_err(|e| format!("span {}: {e}", task.index))?;
            match part.header.outcome {
                PartOutcome::Loaded => {}
                PartOutcome::Invalid => return Ok(Merged::Invalid(part.header.reason)),
                PartOutcome::Unreadable => return Err(part.header.reason),
            }
            whole |= task.span == Span::Whole;
            part.merge_into(&mut merged, tenant, &task.ledger_id, lines_before)
                .map_err(|e| format!("merging span {}: {e}", task.index))?;
            lines_before += part.header.lines.lines;
            resources += part.header.lines.resources;
        }
        // A whole-file read judged this itself; spans are judged together.
        if !whole && resources == 0 {
            return Ok(Merged::Invalid(
                "no line of the file is a FHIR resource".into(),
            ));
        }
        Ok(Merged::Parsed(merged))
    }

    async fn remove_parts(&self, tenant: &TenantId, ledger_id: &str) -> Result<()> {
        remove_all(
            self.quarantine.as_ref(),
            &part_dir(tenant.as_str(), ledger_id),
        )
        .await
        .map(|_| ())
    }
}

/// Removes every part staged for the tenant (an erasure: see `erase.rs`); how many.
pub async fn remove_staged(staging: &dyn ObjectStore, tenant: &TenantId) -> Result<u64> {
    remove_all(staging, &Path::from("staging").join(tenant.as_str())).await
}

async fn remove_all(store: &dyn ObjectStore, dir: &Path) -> Result<u64> {
    let objects: Vec<_> = store.list(Some(dir)).try_collect().await?;
    for object in &objects {
        store.delete(&object.location).await?;
    }
    Ok(objects.len() as u64)
}

enum Merged {
    Parsed(ParsedFile),
    Invalid(String),
}

/// Reads the head of a claimed file and cuts it into spans.
async fn plan_spans(file: &GroupFile, split_bytes: u64) -> Result<Vec<Span>> {
    let size = file.object.size;
    // A `.gz` name is read whole even when its content is not gzip: the reader quarantines that.
    if size <= split_bytes.max(1) || file.object.key.ends_with(".gz") {
        return Ok(vec![Span::Whole]);
    }
    let options = GetOptions {
        range: Some(GetRange::Bounded(0..HEAD_BYTES.min(size))),
        ..file.claimed.pinned.clone()
    };
    let head = file
        .claimed
        .store
        .get_opts(&file.claimed.key, options)
        .await?
        .bytes()
        .await?;
    if !fhir::is_splittable_ndjson(&head) {
        return Ok(vec![Span::Whole]);
    }
    let split = split_bytes.max(1);
    Ok((0..size.div_ceil(split))
        .map(|i| Span::Lines {
            start: i * split,
            end: ((i + 1) * split).min(size),
        })
        .collect())
}

impl Services {
    /// Parses and de-identifies one task's span, read from `source`, and writes its part to the
    /// quarantine store (what a worker runs). A span whose content is bad, or that cannot be read,
    /// is written as such: the driver decides for the whole file. Errors are about writing the
    /// part (the worker's task fails and is retried).
    pub async fn stage_task(&self, source: Arc<dyn ObjectStore>, task: &Task) -> Result<Path> {
        let context = LoadContext {
            tenant: TenantId::parse(&task.tenant_id)?,
            ledger_id: task.ledger_id.clone(),
            now: task.now,
            delete_ordering: task.delete_ordering,
            pseudonymizer: self.pseudonymizer.clone(),
            erased: Arc::new(task.erased.clone()),
        };
        let pinned = GetOptions {
            if_match: task.etag.clone(),
            ..GetOptions::default()
        };
        let key = Path::parse(&task.key).map_err(object_store::Error::from)?;
        let loaded = parse_object(
            source,
            key,
            pinned,
            task.span,
            self.settings.limits.clone(),
            context,
            None,
        )
        .await;
        let file = tokio::task::spawn_blocking(move || Part::encode(loaded))
            .await
            .map_err(|e| CoreError::Task(format!("staging a span: {e}")))??;
        let path = task.part_path();
        crate::objects::upload_file(self.quarantine.as_ref(), &path, file).await?;
        Ok(path)
    }
}

/// How a span's parse ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PartOutcome {
    #[default]
    Loaded,
    /// The content is bad: the file is quarantined.
    Invalid,
    /// The bytes could not be read: the file fails and is retried.
    Unreadable,
}

/// What a part holds besides its rows.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PartHeader {
    outcome: PartOutcome,
    reason: String,
    counts: ResourceCounts,
    deleted: u64,
    future_last_updated: u64,
    erased: u64,
    lines: fhir::LineCounts,
    /// Bytes of rejects (JSON lines, as the ingest path writes them) after the header.
    rejects_bytes: u64,
    tables: Vec<PartTable>,
}

/// One table's rows (an Arrow IPC stream of its data schema) and deletes.
#[derive(Debug, Serialize, Deserialize)]
struct PartTable {
    table: String,
    deletes: Vec<(String, i64)>,
    ipc_bytes: u64,
}

/// A staged part, written to a local file and uploaded in parts (a whole-file task of a large gzip
/// or Bundle file can stage gigabytes): `MCPART2\n`, the rejects, each table's Arrow IPC stream,
/// then the header (JSON) and its length (u64 little-endian) at the end, where the sections'
/// lengths are known.
struct Part {
    header: PartHeader,
    file: std::fs::File,
}

const PART_MAGIC: &[u8] = b"MCPART2\n";

impl Part {
    fn encode(
        loaded: std::result::Result<crate::ingest::FileLoad, FileError>,
    ) -> Result<std::fs::File> {
        let mut header = PartHeader::default();
        let mut out = std::io::BufWriter::new(tempfile::tempfile()?);
        out.write_all(PART_MAGIC)?;
        match loaded {
            Err(FileError::Invalid(reason)) => {
                header.outcome = PartOutcome::Invalid;
                header.reason = reason;
            }
            Err(FileError::Unreadable(reason)) => {
                header.outcome = PartOutcome::Unreadable;
                header.reason = reason;
            }
            Ok(mut load) => {
                header.counts = std::mem::take(&mut load.counts);
                header.deleted = load.deleted;
                header.future_last_updated = load.future_last_updated;
                header.erased = load.erased;
                header.lines = load.lines;
                if load.rejects.count > 0 {
                    header.rejects_bytes = io::copy(&mut load.rejects.seal()?, &mut out)?;
                }
                for table in SilverTable::ALL {
                    let Some(mut staged) = load.staged.remove(&table) else {
                        continue;
                    };
                    staged.seal()?;
                    let before = out.stream_position()?;
                    let mut writer = StreamWriter::try_new(&mut out, &table.schema())?;
                    for (partition, bucket) in staged.touched() {
                        for (_, batch) in staged.bucket_batches(&partition, bucket)? {
                            writer.write(&batch?)?;
                        }
                    }
                    writer.finish()?;
                    drop(writer);
                    header.tables.push(PartTable {
                        table: table.name().to_owned(),
                        deletes: staged
                            .deletes()
                            .map(|(_, d)| (d.key.clone(), d.ordering))
                            .collect(),
                        ipc_bytes: out.stream_position()? - before,
                    });
                }
            }
        }
        let header = serde_json::to_vec(&header)?;
        out.write_all(&header)?;
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        let mut file = out
            .into_inner()
            .map_err(|e| CoreError::Io(e.into_error()))?;
        file.seek(io::SeekFrom::Start(0))?;
        Ok(file)
    }

    /// Reads a downloaded part's header.
    fn open(mut file: std::fs::File) -> Result<Self> {
        let corrupt = || CoreError::StagedPart("corrupt: not as it was written".into());
        let mut magic = [0u8; PART_MAGIC.len()];
        file.read_exact(&mut magic).map_err(|_| corrupt())?;
        let size = file.seek(io::SeekFrom::End(0))?;
        if magic != PART_MAGIC || size < (PART_MAGIC.len() + 8) as u64 {
            return Err(corrupt());
        }
        let mut length = [0u8; 8];
        file.seek(io::SeekFrom::End(-8))?;
        file.read_exact(&mut length)?;
        let length = u64::from_le_bytes(length);
        let start = (size - 8).checked_sub(length).ok_or_else(corrupt)?;
        file.seek(io::SeekFrom::Start(start))?;
        let mut header = vec![0u8; length as usize];
        file.read_exact(&mut header)?;
        Ok(Self {
            header: serde_json::from_slice(&header)?,
            file,
        })
    }

    /// Adds the part to the file's merged load; its rejects' lines are renumbered to the file's.
    fn merge_into(
        &mut self,
        merged: &mut ParsedFile,
        tenant: &TenantId,
        ledger_id: &str,
        lines_before: u64,
    ) -> Result<()> {
        let corrupt = || CoreError::StagedPart("corrupt: not as it was written".into());
        let header = &self.header;
        for (kind, count) in &header.counts {
            *merged.counts.entry(kind.clone()).or_default() += count;
        }
        merged.deleted += header.deleted;
        merged.future_last_updated += header.future_last_updated;
        merged.erased += header.erased;
        let mut offset = PART_MAGIC.len() as u64;
        self.file.seek(io::SeekFrom::Start(offset))?;
        let rejects = BufReader::new((&self.file).take(header.rejects_bytes));
        for line in rejects.lines() {
            let mut reject: serde_json::Value = serde_json::from_str(&line?)?;
            let mut position = reject["position"]
                .as_str()
                .and_then(Position::parse)
                .ok_or_else(corrupt)?;
            position.line += lines_before;
            let resource = reject["resource"].take();
            merged.rejects.add_value(
                ledger_id,
                position,
                reject["reason"].as_str().unwrap_or_default(),
                resource,
            )?;
        }
        offset += header.rejects_bytes;
        for part_table in &header.tables {
            let table = SilverTable::ALL
                .into_iter()
                .find(|t| t.name() == part_table.table)
                .ok_or_else(corrupt)?;
            self.file.seek(io::SeekFrom::Start(offset))?;
            offset += part_table.ipc_bytes;
            let staged = merged
                .staged
                .entry(table)
                .or_insert_with(|| StagedRows::new(&table.def()));
            let ipc = BufReader::new((&self.file).take(part_table.ipc_bytes));
            for batch in StreamReader::try_new(ipc, None)? {
                staged.push(tenant.as_str(), &batch?)?;
            }
            for (key, ordering) in &part_table.deletes {
                staged.delete(
                    tenant.as_str(),
                    Delete {
                        key: key.clone(),
                        ordering: *ordering,
                    },
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(text: &str, span: Span) -> String {
        let fetched = match span.range() {
            Some(GetRange::Offset(from)) => text.as_bytes()[from as usize..].to_vec(),
            _ => text.as_bytes().to_vec(),
        };
        let mut out = String::new();
        span.bound(Box::new(io::Cursor::new(fetched)))
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn spans_cut_anywhere_share_out_every_line_once() {
        // GIVEN lines of many lengths, with and without a final newline
        for text in [
            "a\nbb\n\nccc\ndddd\ne",
            "a\nbb\nccc\n",
            "\n\nxyz\n",
            "one line",
        ] {
            for split in 1..=text.len() as u64 + 1 {
                // WHEN the text is cut into spans of `split` bytes
                let size = text.len() as u64;
                let joined: String = (0..size.div_ceil(split))
                    .map(|i| {
                        lines_of(
                            text,
                            Span::Lines {
                                start: i * split,
                                end: ((i + 1) * split).min(size),
                            },
                        )
                    })
                    .collect();
                // THEN the spans' lines, in order, are the text
                assert_eq!(joined, text, "split {split}");
            }
        }
    }

    #[test]
    fn a_span_owns_the_lines_that_start_in_it() {
        let text = "aaaa\nbb\ncc\n";
        assert_eq!(lines_of(text, Span::Lines { start: 0, end: 1 }), "aaaa\n");
        assert_eq!(lines_of(text, Span::Lines { start: 1, end: 5 }), "");
        assert_eq!(lines_of(text, Span::Lines { start: 5, end: 6 }), "bb\n");
        assert_eq!(lines_of(text, Span::Lines { start: 6, end: 11 }), "cc\n");
    }
}
