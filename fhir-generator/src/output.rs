//! Output files of one tenant: NDJSON (Bulk FHIR) or Synthea-style Bundles,
//! optionally gzipped.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::Format;
use crate::decor::PatientDecor;
use crate::json::{self, Ctx, Refs};
use crate::model::{Hospital, Id, PatientRecord};
use crate::synth::{Export2, Junk};
use crate::truth::Reject;
use crate::vocab::SYNTHEA_SYSTEM;

const BUF_SIZE: usize = 1 << 18;
/// Entries per export-2 updates Bundle file.
const UPDATES_PER_FILE: usize = 1000;
/// DELETE entries per Bundle line in `deleted/Bundle.ndjson`.
const DELETES_PER_LINE: usize = 20;

/// A plain or gzip-compressed buffered file.
pub enum Sink {
    Plain(BufWriter<File>),
    Gz(GzEncoder<BufWriter<File>>),
}

impl Sink {
    pub fn create(path: &Path, gzip: bool) -> io::Result<Sink> {
        let file = File::create(path).map_err(|e| annotate(e, path))?;
        let w = BufWriter::with_capacity(BUF_SIZE, file);
        Ok(if gzip {
            Sink::Gz(GzEncoder::new(w, Compression::fast()))
        } else {
            Sink::Plain(w)
        })
    }

    pub fn finish(self) -> io::Result<()> {
        match self {
            Sink::Plain(mut w) => w.flush(),
            Sink::Gz(g) => g.finish()?.flush(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gz(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(buf),
            Sink::Gz(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gz(w) => w.flush(),
        }
    }
}

pub fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// How an entry is requested in a Bundle.
enum Req<'a> {
    Post(&'a str),
    Put(&'a str, Id),
    PutOrganization(Id),
    Delete(&'a str, Id),
}

/// A Bundle file written entry by entry (one entry spans several lines).
struct BundleFile {
    sink: Sink,
    rel: String,
    entries: usize,
}

impl BundleFile {
    fn open(path: &Path, rel: String, gzip: bool, kind: &str) -> io::Result<BundleFile> {
        let mut sink = Sink::create(path, gzip)?;
        write!(
            sink,
            "{{\n  \"resourceType\": \"Bundle\",\n  \"type\": \"{kind}\",\n  \"entry\": [\n"
        )?;
        Ok(BundleFile {
            sink,
            rel,
            entries: 0,
        })
    }

    fn entry(
        &mut self,
        b: &mut Vec<u8>,
        full_url: Option<Id>,
        resource: Option<&[u8]>,
        req: Req,
    ) -> io::Result<()> {
        b.clear();
        if self.entries > 0 {
            b.extend_from_slice(b",\n");
        }
        b.extend_from_slice(b"    {\n");
        if let Some(id) = full_url {
            emit!(b; "      \"fullUrl\": \"urn:uuid:", id, "\",\n");
        }
        if let Some(r) = resource {
            emit!(b; "      \"resource\": ", r, ",\n");
        }
        b.extend_from_slice(b"      \"request\": {\n        \"method\": ");
        match req {
            Req::Post(t) => emit!(b; "\"POST\",\n        \"url\": \"", t),
            Req::Put(t, id) => emit!(b; "\"PUT\",\n        \"url\": \"", t, "/", id),
            Req::PutOrganization(ident) => {
                emit!(b; "\"PUT\",\n        \"url\": \"Organization?identifier=", SYNTHEA_SYSTEM, "|", ident)
            }
            Req::Delete(t, id) => emit!(b; "\"DELETE\",\n        \"url\": \"", t, "/", id),
        }
        b.extend_from_slice(b"\"\n      }\n    }");
        self.entries += 1;
        self.sink.write_all(b)
    }

    fn close(mut self) -> io::Result<()> {
        self.sink.write_all(b"\n  ]\n}\n")?;
        self.sink.finish()
    }
}

const NDJSON_TYPES: [&str; 4] = ["Organization", "Patient", "Encounter", "Condition"];
const ORG: usize = 0;
const PAT: usize = 1;
const ENC: usize = 2;
const CON: usize = 3;

/// Writes all files of one tenant.
pub struct TenantWriter {
    format: Format,
    gzip: bool,
    tenant: String,
    dir1: PathBuf,
    dir2: PathBuf,
    nd1: [Option<Sink>; 4],
    nd2: [Option<Sink>; 4],
    deleted: Option<Sink>,
    pending_deletes: Vec<Id>,
    chunk: Option<BundleFile>,
    chunk_no: usize,
    updates: Option<BundleFile>,
    updates_no: usize,
    delete_bundle: Option<BundleFile>,
    org_bundle2: Option<BundleFile>,
    /// Resource JSON scratch buffer.
    res: Vec<u8>,
    /// Line / entry scratch buffer.
    line: Vec<u8>,
    /// Resource records written (including duplicates, versions, junk).
    pub resources: u64,
    files: Vec<PathBuf>,
}

fn gz_name(base: &str, gzip: bool) -> String {
    if gzip {
        format!("{base}.gz")
    } else {
        base.to_string()
    }
}

fn ensure<'a>(
    slot: &'a mut Option<Sink>,
    dir: &Path,
    name: &str,
    gzip: bool,
    files: &mut Vec<PathBuf>,
) -> io::Result<&'a mut Sink> {
    if slot.is_none() {
        fs::create_dir_all(dir).map_err(|e| annotate(e, dir))?;
        let path = dir.join(name);
        *slot = Some(Sink::create(&path, gzip)?);
        files.push(path);
    }
    slot.as_mut()
        .ok_or_else(|| io::Error::other("sink missing"))
}

impl TenantWriter {
    pub fn new(root: &Path, tenant: &str, format: Format, gzip: bool) -> io::Result<TenantWriter> {
        let dir1 = root.join(tenant).join("export-1");
        let dir2 = root.join(tenant).join("export-2");
        fs::create_dir_all(&dir1).map_err(|e| annotate(e, &dir1))?;
        let mut w = TenantWriter {
            format,
            gzip,
            tenant: tenant.to_string(),
            dir1,
            dir2,
            nd1: [None, None, None, None],
            nd2: [None, None, None, None],
            deleted: None,
            pending_deletes: Vec::new(),
            chunk: None,
            chunk_no: 0,
            updates: None,
            updates_no: 0,
            delete_bundle: None,
            org_bundle2: None,
            res: Vec::with_capacity(8192),
            line: Vec::with_capacity(8192),
            resources: 0,
            files: Vec::new(),
        };
        if format == Format::Ndjson {
            for (i, t) in NDJSON_TYPES.iter().enumerate() {
                let name = gz_name(&format!("{t}.ndjson"), gzip);
                ensure(&mut w.nd1[i], &w.dir1, &name, gzip, &mut w.files)?;
            }
        }
        Ok(w)
    }

    fn ndjson1_name(&self, ty: usize) -> String {
        format!(
            "{}/export-1/{}",
            self.tenant,
            gz_name(&format!("{}.ndjson", NDJSON_TYPES[ty]), self.gzip)
        )
    }

    /// Writes `self.res` as one NDJSON line of export-1.
    fn nd1_line(&mut self, ty: usize) -> io::Result<()> {
        self.res.push(b'\n');
        self.resources += 1;
        match self.nd1[ty].as_mut() {
            Some(s) => s.write_all(&self.res),
            None => Err(io::Error::other("export-1 file not open")),
        }
    }

    fn nd2_line(&mut self, ty: usize) -> io::Result<()> {
        self.res.push(b'\n');
        self.resources += 1;
        let name = gz_name(&format!("{}.ndjson", NDJSON_TYPES[ty]), self.gzip);
        ensure(
            &mut self.nd2[ty],
            &self.dir2,
            &name,
            self.gzip,
            &mut self.files,
        )?
        .write_all(&self.res)
    }

    /// Adds `self.res` to the current export-1 Bundle.
    fn chunk_entry(&mut self, full_url: Option<Id>, req: Req) -> io::Result<()> {
        self.resources += 1;
        match self.chunk.as_mut() {
            Some(c) => c.entry(&mut self.line, full_url, Some(&self.res), req),
            None => Err(io::Error::other("no open bundle")),
        }
    }

    /// Adds `self.res` to the current export-2 updates Bundle.
    fn update_entry(&mut self, id: Id, ty: &str) -> io::Result<()> {
        if let Some(full) = self.updates.take_if(|u| u.entries >= UPDATES_PER_FILE) {
            full.close()?;
        }
        if self.updates.is_none() {
            fs::create_dir_all(&self.dir2).map_err(|e| annotate(e, &self.dir2))?;
            self.updates_no += 1;
            let name = gz_name(&format!("updates-{:06}.json", self.updates_no), self.gzip);
            let path = self.dir2.join(&name);
            let rel = format!("{}/export-2/{name}", self.tenant);
            self.updates = Some(BundleFile::open(&path, rel, self.gzip, "transaction")?);
            self.files.push(path);
        }
        self.resources += 1;
        match self.updates.as_mut() {
            Some(u) => u.entry(&mut self.line, Some(id), Some(&self.res), Req::Put(ty, id)),
            None => Err(io::Error::other("no updates bundle")),
        }
    }

    pub fn organizations(&mut self, hospitals: &[Hospital]) -> io::Result<()> {
        match self.format {
            Format::Ndjson => {
                for h in hospitals {
                    self.res.clear();
                    json::organization(&mut self.res, h);
                    self.nd1_line(ORG)?;
                }
                Ok(())
            }
            Format::Bundle => {
                let name = gz_name("organizations.json", self.gzip);
                let path = self.dir1.join(&name);
                let rel = format!("{}/export-1/{name}", self.tenant);
                let mut bf = BundleFile::open(&path, rel, self.gzip, "batch")?;
                self.files.push(path);
                for h in hospitals {
                    self.res.clear();
                    json::organization(&mut self.res, h);
                    self.resources += 1;
                    bf.entry(
                        &mut self.line,
                        Some(h.id),
                        Some(&self.res),
                        Req::PutOrganization(h.identifier),
                    )?;
                }
                bf.close()
            }
        }
    }

    /// An exact copy of an Organization in export-2.
    pub fn organization_copy(&mut self, h: &Hospital) -> io::Result<()> {
        self.res.clear();
        json::organization(&mut self.res, h);
        match self.format {
            Format::Ndjson => self.nd2_line(ORG),
            Format::Bundle => {
                if self.org_bundle2.is_none() {
                    fs::create_dir_all(&self.dir2).map_err(|e| annotate(e, &self.dir2))?;
                    let name = gz_name("organizations.json", self.gzip);
                    let path = self.dir2.join(&name);
                    let rel = format!("{}/export-2/{name}", self.tenant);
                    self.org_bundle2 = Some(BundleFile::open(&path, rel, self.gzip, "batch")?);
                    self.files.push(path);
                }
                self.resources += 1;
                match self.org_bundle2.as_mut() {
                    Some(bf) => bf.entry(
                        &mut self.line,
                        Some(h.id),
                        Some(&self.res),
                        Req::PutOrganization(h.identifier),
                    ),
                    None => Err(io::Error::other("no organizations bundle")),
                }
            }
        }
    }

    /// Starts a new export-1 patient Bundle (no-op for NDJSON).
    pub fn begin_chunk(&mut self) -> io::Result<()> {
        if self.format == Format::Bundle {
            self.end_chunk()?;
            self.chunk_no += 1;
            let name = gz_name(&format!("patients-{:06}.json", self.chunk_no), self.gzip);
            let path = self.dir1.join(&name);
            let rel = format!("{}/export-1/{name}", self.tenant);
            self.chunk = Some(BundleFile::open(&path, rel, self.gzip, "transaction")?);
            self.files.push(path);
        }
        Ok(())
    }

    pub fn end_chunk(&mut self) -> io::Result<()> {
        match self.chunk.take() {
            Some(c) => c.close(),
            None => Ok(()),
        }
    }

    /// Writes a patient with its encounters and conditions to export-1.
    pub fn patient_record(&mut self, rec: &PatientRecord, ctx: &Ctx) -> io::Result<()> {
        let d = PatientDecor::new(rec.patient.id, ctx.state);
        let bundle = self.format == Format::Bundle;
        let refs = if bundle {
            Refs::BundleInternal
        } else {
            Refs::Bulk
        };
        self.res.clear();
        json::patient(&mut self.res, &rec.patient, &d, ctx.state);
        if bundle {
            self.chunk_entry(Some(rec.patient.id), Req::Post("Patient"))?;
        } else {
            self.nd1_line(PAT)?;
        }
        for e in &rec.encounters {
            self.res.clear();
            json::encounter(
                &mut self.res,
                e,
                rec.patient.id,
                &d,
                &ctx.hospitals[e.hospital],
                refs,
            );
            if bundle {
                self.chunk_entry(Some(e.id), Req::Post("Encounter"))?;
            } else {
                self.nd1_line(ENC)?;
            }
        }
        for c in &rec.conditions {
            self.res.clear();
            let enc = c.encounter.map(|i| rec.encounters[i].id);
            json::condition(&mut self.res, c, rec.patient.id, enc, refs);
            if bundle {
                self.chunk_entry(Some(c.id), Req::Post("Condition"))?;
            } else {
                self.nd1_line(CON)?;
            }
        }
        Ok(())
    }

    /// Writes one export-2 item. `rec` is the patient's final state (ids
    /// and encounter indices are the same as in export-1).
    pub fn export2(&mut self, item: &Export2, rec: &PatientRecord, ctx: &Ctx) -> io::Result<()> {
        let bundle = self.format == Format::Bundle;
        let refs = if bundle {
            Refs::BundleExternal
        } else {
            Refs::Bulk
        };
        self.res.clear();
        let d = || PatientDecor::new(rec.patient.id, ctx.state);
        let (ty, id, slot) = match item {
            Export2::Patient(p) => {
                json::patient(&mut self.res, p, &d(), ctx.state);
                ("Patient", p.id, PAT)
            }
            Export2::Encounter(e) => {
                json::encounter(
                    &mut self.res,
                    e,
                    rec.patient.id,
                    &d(),
                    &ctx.hospitals[e.hospital],
                    refs,
                );
                ("Encounter", e.id, ENC)
            }
            Export2::EncounterCopy(i) => {
                let e = &rec.encounters[*i];
                json::encounter(
                    &mut self.res,
                    e,
                    rec.patient.id,
                    &d(),
                    &ctx.hospitals[e.hospital],
                    refs,
                );
                ("Encounter", e.id, ENC)
            }
            Export2::Condition(c) => {
                let enc = c.encounter.map(|i| rec.encounters[i].id);
                json::condition(&mut self.res, c, rec.patient.id, enc, refs);
                ("Condition", c.id, CON)
            }
            Export2::Delete(id) => return self.delete_condition(*id),
        };
        if bundle {
            self.update_entry(id, ty)
        } else {
            self.nd2_line(slot)
        }
    }

    fn delete_condition(&mut self, id: Id) -> io::Result<()> {
        match self.format {
            Format::Ndjson => {
                self.pending_deletes.push(id);
                if self.pending_deletes.len() >= DELETES_PER_LINE {
                    self.flush_deletes()?;
                }
                Ok(())
            }
            Format::Bundle => {
                if self.delete_bundle.is_none() {
                    fs::create_dir_all(&self.dir2).map_err(|e| annotate(e, &self.dir2))?;
                    let name = gz_name("deletes.json", self.gzip);
                    let path = self.dir2.join(&name);
                    let rel = format!("{}/export-2/{name}", self.tenant);
                    self.delete_bundle =
                        Some(BundleFile::open(&path, rel, self.gzip, "transaction")?);
                    self.files.push(path);
                }
                match self.delete_bundle.as_mut() {
                    Some(bf) => bf.entry(&mut self.line, None, None, Req::Delete("Condition", id)),
                    None => Err(io::Error::other("no deletes bundle")),
                }
            }
        }
    }

    /// Writes the pending deletes as one Bundle line of `deleted/Bundle.ndjson`.
    fn flush_deletes(&mut self) -> io::Result<()> {
        if self.pending_deletes.is_empty() {
            return Ok(());
        }
        let b = &mut self.line;
        b.clear();
        b.extend_from_slice(br#"{"resourceType":"Bundle","type":"transaction","entry":["#);
        for (i, id) in self.pending_deletes.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            emit!(b; r#"{"request":{"method":"DELETE","url":"Condition/"#, id, r#""}}"#);
        }
        b.extend_from_slice(b"]}\n");
        self.pending_deletes.clear();
        let dir = self.dir2.join("deleted");
        let name = gz_name("Bundle.ndjson", self.gzip);
        ensure(&mut self.deleted, &dir, &name, self.gzip, &mut self.files)?.write_all(&self.line)
    }

    /// Writes the broken records (in the current chunk / in the middle of the
    /// export-1 NDJSON files) and returns what a loader must reject.
    pub fn junk(&mut self, j: &Junk, ctx: &Ctx) -> io::Result<Vec<Reject>> {
        let bundle = self.format == Format::Bundle;
        let refs = if bundle {
            Refs::BundleInternal
        } else {
            Refs::Bulk
        };
        let rel = |w: &TenantWriter, ty: usize| match &w.chunk {
            Some(c) if bundle => c.rel.clone(),
            _ => w.ndjson1_name(ty),
        };
        let reject = |file: String, ty: &str, id: Option<Id>, reason: &str| Reject {
            file,
            resource_type: ty.to_string(),
            id: id.map(|i| i.to_string()),
            reason: reason.to_string(),
        };
        let mut out = Vec::new();

        self.res.clear();
        json::junk_patient_without_id(&mut self.res, j.no_id_last_updated_ms);
        if bundle {
            self.chunk_entry(None, Req::Post("Patient"))?;
        } else {
            self.nd1_line(PAT)?;
        }
        out.push(reject(rel(self, PAT), "Patient", None, "missing-id"));

        if !bundle {
            self.res.clear();
            self.res.extend_from_slice(json::NOT_JSON.as_bytes());
            self.nd1_line(PAT)?;
            out.push(reject(rel(self, PAT), "Patient", None, "invalid-json"));
        }

        self.res.clear();
        let h = &ctx.hospitals[j.hospital];
        json::junk_encounter_bad_date(
            &mut self.res,
            j.bad_date_encounter,
            j.last_updated_ms,
            j.patient,
            h,
            refs,
        );
        if bundle {
            self.chunk_entry(Some(j.bad_date_encounter), Req::Post("Encounter"))?;
        } else {
            self.nd1_line(ENC)?;
        }
        out.push(reject(
            rel(self, ENC),
            "Encounter",
            Some(j.bad_date_encounter),
            "invalid-datetime",
        ));

        for (id, subject) in j.bad_subject_conditions {
            self.res.clear();
            json::junk_condition_bad_subject(
                &mut self.res,
                id,
                j.last_updated_ms,
                subject,
                j.encounter,
                j.onset,
                refs,
            );
            if bundle {
                self.chunk_entry(Some(id), Req::Post("Condition"))?;
            } else {
                self.nd1_line(CON)?;
            }
            out.push(reject(
                rel(self, CON),
                "Condition",
                Some(id),
                "invalid-reference",
            ));
        }
        Ok(out)
    }

    /// Closes every file. Returns (files, bytes on disk).
    pub fn finish(mut self) -> io::Result<(usize, u64)> {
        self.end_chunk()?;
        self.flush_deletes()?;
        for bf in [
            self.updates.take(),
            self.delete_bundle.take(),
            self.org_bundle2.take(),
        ]
        .into_iter()
        .flatten()
        {
            bf.close()?;
        }
        for s in self
            .nd1
            .iter_mut()
            .chain(self.nd2.iter_mut())
            .chain(std::iter::once(&mut self.deleted))
        {
            if let Some(s) = s.take() {
                s.finish()?;
            }
        }
        let mut bytes = 0;
        for f in &self.files {
            bytes += fs::metadata(f).map_err(|e| annotate(e, f))?.len();
        }
        Ok((self.files.len(), bytes))
    }
}
