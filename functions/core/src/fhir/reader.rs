//! Streams the resources out of one raw file without building a DOM of it.
//!
//! Accepted: FHIR R4 `Bundle` JSON of every R4 Bundle type (one document, pretty-printed or not;
//! a Bundle nested in an entry is read through), a single resource, and Bulk-FHIR NDJSON (one
//! resource — or one Bundle, as in a Bulk export's `deleted` file — per line), either of them
//! gzip-compressed. The format is sniffed from the bytes, not trusted from the file name. Entries
//! without a resource are normal in response and history Bundles and for reads (`GET`, `HEAD`)
//! inside a transaction or batch (skipped), and rejected elsewhere; a DELETE entry (a
//! transaction's, or a history's deleted version) is a delete.
//!
//! Memory: NDJSON is read a line at a time; a Bundle document is walked with serde's streaming
//! deserializer and each `entry.resource` is captured alone as raw JSON text, so only one resource
//! is ever held. A file-level problem (not JSON, truncated, unknown encoding, not FHIR) ends the
//! stream with [`FileError`] and the caller quarantines the file; a resource-level problem is
//! reported as [`Item::Rejected`] and the stream goes on.
//!
//! [`read_file`] reads a whole file; [`read_ndjson_run`] reads one span of lines of an NDJSON file
//! that [`is_splittable_ndjson`] found can be split (the scale-out path's tasks), with the same
//! rules and line numbers counted from the span's start.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// What the reader hands to its sink, in file order.
#[derive(Debug)]
pub enum Item<'a> {
    /// A resource as raw JSON text, with its Bundle `fullUrl` when it came from a Bundle.
    Resource {
        raw: &'a str,
        full_url: Option<&'a str>,
        position: Position,
    },
    /// A Bundle entry whose `request.method` is DELETE: `url` is `Type/id`; `modified` is the
    /// entry's `response.lastModified` (a history Bundle's time of the deletion), when it has one.
    Delete {
        url: &'a str,
        modified: Option<&'a str>,
        position: Position,
    },
    /// An entry or line that cannot become a resource; the rest of the file goes on.
    Rejected {
        reason: String,
        raw: Option<&'a str>,
        position: Position,
    },
}

impl Item<'_> {
    /// The item placed at `position` (the outer entry of a nested Bundle's items).
    fn at(self, position: Position) -> Self {
        match self {
            Item::Resource { raw, full_url, .. } => Item::Resource {
                raw,
                full_url,
                position,
            },
            Item::Delete { url, modified, .. } => Item::Delete {
                url,
                modified,
                position,
            },
            Item::Rejected { reason, raw, .. } => Item::Rejected {
                reason,
                raw,
                position,
            },
        }
    }
}

/// Where an item sits in its file, for reject reasons a person can find again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line (NDJSON) or 1 for a single document.
    pub line: u64,
    /// 1-based Bundle entry index, 0 when the item is not a Bundle entry.
    pub entry: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry {
            0 => write!(f, "line {}", self.line),
            n => write!(f, "line {} entry {}", self.line, n),
        }
    }
}

impl Position {
    /// Reads back what `Display` wrote (`line N` or `line N entry M`).
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("line ")?;
        let (line, entry) = match rest.split_once(" entry ") {
            Some((line, entry)) => (line, entry.parse().ok()?),
            None => (rest, 0),
        };
        Some(Self {
            line: line.parse().ok()?,
            entry,
        })
    }
}

/// Why a whole file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The content is bad (not JSON, truncated, unknown encoding, not FHIR): quarantine the file.
    #[error("{0}")]
    Invalid(String),
    /// The bytes could not be fetched (storage or network): a retry may succeed.
    #[error("reading the file failed: {0}")]
    Unreadable(String),
}

fn invalid(reason: impl Into<String>) -> FileError {
    FileError::Invalid(reason.into())
}

/// Limits that keep hostile files from exhausting memory.
#[derive(Debug, Clone)]
pub struct ReadLimits {
    /// Longest NDJSON line kept (a longer line is rejected without being buffered whole), and the
    /// largest single Bundle entry or top-level value of a document (a larger one quarantines it).
    pub max_line_bytes: usize,
    /// Most bytes a gzip file may expand to.
    pub max_decompressed_bytes: u64,
    /// Largest expansion ratio of a gzip file once it has produced `ratio_grace_bytes`.
    pub max_gzip_ratio: u64,
    pub ratio_grace_bytes: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_line_bytes: 64 << 20,
            max_decompressed_bytes: 32 << 30,
            max_gzip_ratio: 200,
            ratio_grace_bytes: 64 << 20,
        }
    }
}

/// Every R4 Bundle type (`Bundle.type`, required binding).
const BUNDLE_TYPES: [&str; 9] = [
    "document",
    "message",
    "transaction",
    "transaction-response",
    "batch",
    "batch-response",
    "history",
    "searchset",
    "collection",
];

/// Bundle types whose entries may carry no resource: a response's entries report outcomes (a
/// resource only when the server was asked to return it), a history's DELETE entries and entries
/// of versions a server does not return.
const ENTRIES_WITHOUT_RESOURCE: [&str; 3] = ["transaction-response", "batch-response", "history"];

/// How much of the start of a file the format sniffer may read before it decides.
const SNIFF_BYTES: usize = 1 << 20;
/// The UTF-8 byte order mark, tolerated at the start of a file.
const BOM: [u8; 3] = [0xef, 0xbb, 0xbf];

/// Reads `input` (the raw object's bytes), calling `sink` for every item. `name` is the object
/// key, used only to cross-check a `.gz` suffix.
pub fn read_file(
    input: impl Read,
    name: &str,
    limits: &ReadLimits,
    sink: &mut dyn FnMut(Item<'_>),
) -> Result<(), FileError> {
    let mut raw = BufReader::with_capacity(256 << 10, input);
    let mut magic = [0u8; 2];
    let magic_len = fill_exact_or_eof(&mut raw, &mut magic)?;
    let gzip = magic_len == 2 && magic == [0x1f, 0x8b];
    if name.ends_with(".gz") && !gzip && magic_len > 0 {
        return Err(invalid(
            "the file name ends in .gz but the content is not gzip",
        ));
    }
    let meter = Rc::new(Meter::new(limits.max_line_bytes as u64));
    let compressed = Rc::new(Cell::new(0u64));
    let source = std::io::Cursor::new(magic[..magic_len].to_vec()).chain(raw);
    let counter = if gzip {
        let source = BufReader::new(CompressedCounter {
            inner: source,
            count: compressed.clone(),
        });
        let decoder = flate2::bufread::MultiGzDecoder::new(source);
        CountingReader::new(
            Box::new(decoder),
            meter.clone(),
            Some((limits.clone(), compressed)),
        )
    } else {
        CountingReader::new(Box::new(source), meter.clone(), None)
    };
    let mut reader = BufReader::with_capacity(256 << 10, counter);
    read_decoded(&mut reader, limits, &meter, sink)
}

/// Reads up to `buf.len()` bytes, fewer only at the end of the input.
fn fill_exact_or_eof(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, FileError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(e)),
        }
    }
    Ok(filled)
}

fn read_error(e: io::Error) -> FileError {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof => {
            invalid(format!("corrupt or unreadable content: {e}"))
        }
        _ => FileError::Unreadable(e.to_string()),
    }
}

/// Sniffs the format from an owned head of the file (however the bytes arrive in chunks), then
/// reads the head and the rest as one stream.
fn read_decoded(
    reader: &mut impl BufRead,
    limits: &ReadLimits,
    meter: &Rc<Meter>,
    sink: &mut dyn FnMut(Item<'_>),
) -> Result<(), FileError> {
    let head = read_head(reader)?;
    if head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff]) {
        return Err(invalid("the file is UTF-16; FHIR JSON must be UTF-8"));
    }
    let start = content_start(&head);
    match head.get(start) {
        None => return Err(invalid("the file is empty")),
        Some(b'{') => {}
        Some(b'[') => {
            return Err(invalid(
                "a JSON array is neither a FHIR Bundle nor NDJSON (one resource per line)",
            ));
        }
        Some(_) => return Err(invalid("the file is not JSON (it does not start with '{')")),
    }
    let is_ndjson = sniff_ndjson(&head, start, true).unwrap_or(false);
    let mut head = std::io::Cursor::new(head);
    head.set_position(start as u64);
    let mut stream = BufReader::with_capacity(256 << 10, head.chain(reader));
    if is_ndjson {
        read_ndjson(&mut stream, limits, sink)
    } else {
        read_document(&mut stream, limits, meter, sink)
    }
}

/// Where the content starts: after a UTF-8 byte order mark and leading white space.
fn content_start(head: &[u8]) -> usize {
    let bom = if head.starts_with(&BOM) { BOM.len() } else { 0 };
    bom + head[bom..]
        .iter()
        .take_while(|b| b.is_ascii_whitespace())
        .count()
}

fn first_line_end(content: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', content)
}

/// Whether content starting with `{` at `start` is NDJSON: its first line, found within
/// [`SNIFF_BYTES`], is a complete JSON value on its own and more follows (a pretty-printed
/// document's first line, `{`, is not; nor is a one-line document). A first line longer than that
/// is one long resource per line (NDJSON also reads a one-line document of one resource), unless
/// it is a Bundle: that is a document, streamed rather than held as one line. `None`: more of the
/// head is needed; `complete` says there is no more (end of file, or the head's cap).
fn sniff_ndjson(head: &[u8], start: usize, complete: bool) -> Option<bool> {
    let window = &head[start..head.len().min(start + SNIFF_BYTES)];
    match first_line_end(window) {
        Some(end) => {
            let follows = head[start + end..].iter().any(|b| !b.is_ascii_whitespace());
            if !follows {
                return complete.then_some(false);
            }
            Some(serde_json::from_slice::<IgnoredAny>(&window[..end]).is_ok())
        }
        None if window.len() >= SNIFF_BYTES => Some(first_resource_type(window) != Some(b"Bundle")),
        None => complete.then_some(false),
    }
}

/// The value of the first `"resourceType"` key in `text`, whatever the spacing around the colon.
fn first_resource_type(text: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"resourceType\"";
    let after = &text[memchr::memmem::find(text, KEY)? + KEY.len()..];
    let after = after.trim_ascii_start().strip_prefix(b":")?;
    let value = after.trim_ascii_start().strip_prefix(b"\"")?;
    Some(&value[..memchr::memchr(b'"', value)?])
}

/// Reads the start of the file until the format can be decided (see [`sniff_ndjson`]), up to the
/// end of the file or twice [`SNIFF_BYTES`].
fn read_head(reader: &mut impl BufRead) -> Result<Vec<u8>, FileError> {
    let mut head = Vec::new();
    loop {
        let chunk = reader.fill_buf().map_err(read_error)?;
        if chunk.is_empty() {
            return Ok(head);
        }
        let n = chunk.len();
        head.extend_from_slice(chunk);
        reader.consume(n);
        // A chunk can end inside a byte order mark: decide on at least its length.
        if head.len() < BOM.len() {
            continue;
        }
        let start = content_start(&head);
        let decided = match head.get(start) {
            None => false,
            Some(b'{') => sniff_ndjson(&head, start, false).is_some(),
            Some(_) => true,
        };
        if decided || head.len() >= 2 * SNIFF_BYTES {
            return Ok(head);
        }
    }
}

fn read_ndjson(
    reader: &mut impl BufRead,
    limits: &ReadLimits,
    sink: &mut dyn FnMut(Item<'_>),
) -> Result<(), FileError> {
    let lines = read_ndjson_lines(reader, limits, sink)?;
    if lines.resources == 0 {
        return Err(invalid("no line of the file is a FHIR resource"));
    }
    Ok(())
}

/// What a run of NDJSON lines held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct LineCounts {
    /// Lines read, blank ones included: the next run's first line is one past them.
    pub lines: u64,
    /// Lines that were a FHIR resource (or a Bundle of them).
    pub resources: u64,
}

/// Whether a file whose first bytes are `head` (up to twice the sniffing window, or the whole
/// file) is NDJSON that can be split into runs of lines: not gzip (a gzip stream is read from its
/// start), and sniffed as NDJSON as [`read_file`] would.
pub fn is_splittable_ndjson(head: &[u8]) -> bool {
    if head.starts_with(&[0x1f, 0x8b]) {
        return false;
    }
    let start = content_start(head);
    head.get(start) == Some(&b'{') && sniff_ndjson(head, start, true) == Some(true)
}

/// Reads a run of whole lines of an NDJSON file (a line-aligned byte range a scale-out worker was
/// given; see [`is_splittable_ndjson`]), numbering them from 1. Unlike [`read_file`], a run with
/// no resource is no error: the file is judged on all its runs. The `first` run skips what
/// [`read_file`] skips before the content (a byte order mark, then white space), so that its
/// lines are numbered as the whole file's are; a later run skips nothing.
pub fn read_ndjson_run(
    input: impl Read,
    first: bool,
    limits: &ReadLimits,
    sink: &mut dyn FnMut(Item<'_>),
) -> Result<LineCounts, FileError> {
    let mut reader = BufReader::with_capacity(256 << 10, input);
    if first {
        skip_to_content(&mut reader)?;
    }
    read_ndjson_lines(&mut reader, limits, sink)
}

/// Consumes a leading byte order mark and the white space after it.
fn skip_to_content(reader: &mut impl BufRead) -> Result<(), FileError> {
    if reader.fill_buf().map_err(read_error)?.starts_with(&BOM) {
        reader.consume(BOM.len());
    }
    loop {
        let chunk = reader.fill_buf().map_err(read_error)?;
        let blank = chunk.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let more = blank > 0 && blank == chunk.len();
        reader.consume(blank);
        if !more {
            return Ok(());
        }
    }
}

fn read_ndjson_lines(
    reader: &mut impl BufRead,
    limits: &ReadLimits,
    sink: &mut dyn FnMut(Item<'_>),
) -> Result<LineCounts, FileError> {
    let mut line_no = 0u64;
    let mut resources_seen = 0u64;
    for_each_line(reader, limits.max_line_bytes, |line| {
        line_no += 1;
        let position = Position {
            line: line_no,
            entry: 0,
        };
        if line.overflow {
            sink(Item::Rejected {
                reason: format!("line longer than {} bytes", limits.max_line_bytes),
                raw: None,
                position,
            });
            return Ok(());
        }
        let text = trim_ascii(line.text);
        if text.is_empty() {
            return Ok(());
        }
        let Ok(text) = std::str::from_utf8(text) else {
            sink(Item::Rejected {
                reason: "line is not valid UTF-8".into(),
                raw: None,
                position,
            });
            return Ok(());
        };
        // A last line without its newline that stops mid-value means the file was cut off.
        if !line.complete
            && let Err(e) = serde_json::from_str::<IgnoredAny>(text)
            && e.classify() == serde_json::error::Category::Eof
        {
            return Err(truncated(e));
        }
        match resource_type_of(text) {
            Ok(kind) if kind == "Bundle" => {
                let mut de = serde_json::Deserializer::from_str(text);
                let seed = TopLevel {
                    sink: &mut *sink,
                    line: line_no,
                    meter: None,
                    nesting: Nesting::TOP,
                };
                let outcome = seed.deserialize(&mut de).and_then(|()| de.end());
                match outcome {
                    Ok(()) => resources_seen += 1,
                    Err(e) => sink(Item::Rejected {
                        reason: format!("invalid Bundle line: {e}"),
                        raw: Some(text),
                        position,
                    }),
                }
            }
            Ok(_) => {
                resources_seen += 1;
                sink(Item::Resource {
                    raw: text,
                    full_url: None,
                    position,
                });
            }
            Err(reason) => sink(Item::Rejected {
                reason,
                raw: Some(text),
                position,
            }),
        }
        Ok(())
    })?;
    Ok(LineCounts {
        lines: line_no,
        resources: resources_seen,
    })
}

fn truncated(e: serde_json::Error) -> FileError {
    invalid(format!("the file is truncated: {e}"))
}

/// One line of an NDJSON file, without its newline.
struct Line<'a> {
    text: &'a [u8],
    /// Ended by a newline (not the end of the file).
    complete: bool,
    /// Longer than the limit: `text` is empty, the line was skipped without being buffered.
    overflow: bool,
}

/// Calls `on_line` for every line of `reader`. A line that lies inside the reader's buffer (nearly
/// all of them, with a 256 KiB buffer) is handed over in place, found with a SIMD newline search:
/// copying every line out first was a tenth of the NDJSON profile. Only a line that straddles two
/// buffer fills is assembled in `spill`, and only up to `max` bytes.
fn for_each_line(
    reader: &mut impl BufRead,
    max: usize,
    mut on_line: impl FnMut(Line<'_>) -> Result<(), FileError>,
) -> Result<(), FileError> {
    let mut spill: Vec<u8> = Vec::new();
    // A line is in progress across fills; `overflow` when it has already passed `max`.
    let (mut spilling, mut overflow) = (false, false);
    loop {
        let chunk = reader.fill_buf().map_err(read_error)?;
        if chunk.is_empty() {
            if spilling {
                on_line(Line {
                    text: &spill,
                    complete: false,
                    overflow,
                })?;
            }
            return Ok(());
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', chunk) {
            let part = &chunk[start..end];
            if spilling {
                overflow |= spill.len() + part.len() > max;
                if !overflow {
                    spill.extend_from_slice(part);
                }
                on_line(Line {
                    text: if overflow { &[] } else { &spill },
                    complete: true,
                    overflow,
                })?;
                spill.clear();
                (spilling, overflow) = (false, false);
            } else {
                let too_long = part.len() > max;
                on_line(Line {
                    text: if too_long { &[] } else { part },
                    complete: true,
                    overflow: too_long,
                })?;
            }
            start = end + 1;
        }
        let rest = &chunk[start..];
        if !rest.is_empty() {
            spilling = true;
            overflow |= spill.len() + rest.len() > max;
            if overflow {
                spill.clear();
            } else {
                spill.extend_from_slice(rest);
            }
        }
        let used = chunk.len();
        reader.consume(used);
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// A document up to this size (and the value bound) is read into memory and parsed from the slice:
/// serde_json's reader-based parser fetches byte by byte and ran Bundles at a third of the speed.
/// A bigger document is streamed, so memory stays bounded whatever the file.
const IN_MEMORY_DOCUMENT_BYTES: usize = 64 << 20;

fn read_document(
    reader: &mut impl BufRead,
    limits: &ReadLimits,
    meter: &Meter,
    sink: &mut dyn FnMut(Item<'_>),
) -> Result<(), FileError> {
    let in_memory = IN_MEMORY_DOCUMENT_BYTES.min(limits.max_line_bytes);
    let mut head = Vec::new();
    reader
        .take(in_memory as u64 + 1)
        .read_to_end(&mut head)
        .map_err(read_error)?;
    let outcome = if head.len() <= in_memory {
        // The whole document is no bigger than one value may be: no per-value bound is needed.
        let mut de = serde_json::Deserializer::from_slice(&head);
        let seed = TopLevel {
            sink,
            line: 1,
            meter: None,
            nesting: Nesting::TOP,
        };
        seed.deserialize(&mut de).and_then(|()| de.end())
    } else {
        // The head was counted when it was read ahead; count it again as the parser consumes it,
        // so that the per-value bound measures what the parser has actually passed.
        meter.count.set(meter.count.get() - head.len() as u64);
        let head = MeteredHead {
            head: io::Cursor::new(head),
            meter,
        };
        let mut de = serde_json::Deserializer::from_reader(head.chain(reader));
        let seed = TopLevel {
            sink,
            line: 1,
            meter: Some(meter),
            nesting: Nesting::TOP,
        };
        seed.deserialize(&mut de).and_then(|()| de.end())
    };
    outcome.map_err(|e| match e.classify() {
        serde_json::error::Category::Eof => truncated(e),
        serde_json::error::Category::Io => read_error(io::Error::from(e)),
        _ => invalid(format!("not a valid FHIR JSON document: {e}")),
    })
}

/// The read-ahead head of a document too big for memory, counted into the meter as it is consumed.
struct MeteredHead<'m> {
    head: io::Cursor<Vec<u8>>,
    meter: &'m Meter,
}

impl Read for MeteredHead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.head.read(buf)?;
        self.meter.count.set(self.meter.count.get() + n as u64);
        Ok(n)
    }
}

/// The `resourceType` of a resource's JSON text. Bulk exports put it first, so the common case is
/// read off the prefix without parsing; anything else is probed with a skipping parse.
pub fn resource_type_of(raw: &str) -> Result<Cow<'_, str>, String> {
    const PREFIX: &str = "{\"resourceType\":\"";
    if let Some(rest) = raw.strip_prefix(PREFIX)
        && let Some(end) = rest.find('"')
        && !rest[..end].contains('\\')
    {
        let kind = &rest[..end];
        if !kind.is_empty() {
            return Ok(Cow::Borrowed(kind));
        }
    }
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, rename = "resourceType")]
        resource_type: Option<Cow<'a, str>>,
    }
    match serde_json::from_str::<Probe<'_>>(raw) {
        Ok(Probe {
            resource_type: Some(kind),
        }) if !kind.is_empty() => Ok(kind),
        Ok(_) => Err("resource has no resourceType".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// The top-level value of a document, or of an NDJSON line that is a Bundle: streams `entry`
/// elements to the sink; any other top-level resource is re-assembled and handed on whole.
struct TopLevel<'s> {
    sink: &'s mut dyn FnMut(Item<'_>),
    line: u64,
    /// Bounds each top-level value and each entry when reading a stream (not a line in memory).
    meter: Option<&'s Meter>,
    /// Inside how many Bundles this value is (0: the file's own value); for a nested Bundle, its
    /// type, read ahead (see [`read_nested_bundle`]).
    nesting: Nesting,
}

/// Where a Bundle being read sits.
#[derive(Clone, Copy)]
struct Nesting {
    depth: u32,
    /// A nested Bundle's `type`, known before its entries whatever the key order.
    known_type: Option<&'static str>,
}

impl Nesting {
    const TOP: Self = Self {
        depth: 0,
        known_type: None,
    };
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a FHIR resource object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut resource_type: Option<String> = None;
        let mut bundle_type: Option<String> = None;
        let mut fields: Vec<(String, Box<RawValue>)> = Vec::new();
        let mut kept_bytes = 0usize;
        let bound = |on: bool| match (self.meter, on) {
            (Some(meter), true) => meter.start(),
            (Some(meter), false) => meter.stop(),
            _ => {}
        };
        bound(true);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "resourceType" => resource_type = Some(map.next_value()?),
                "entry" if resource_type.as_deref().is_none_or(|t| t == "Bundle") => {
                    check_bundle_type(bundle_type.as_deref()).map_err(de::Error::custom)?;
                    bound(false);
                    let known_type = bundle_type.as_deref().or(self.nesting.known_type);
                    map.next_value_seed(Entries {
                        sink: &mut *self.sink,
                        line: self.line,
                        meter: self.meter,
                        depth: self.nesting.depth,
                        resource_optional: known_type
                            .is_some_and(|t| ENTRIES_WITHOUT_RESOURCE.contains(&t)),
                    })?;
                }
                // A Bundle's other fields (id, meta, link, total) are not needed: skipped, not
                // kept, so they need no bound.
                _ if resource_type.as_deref() == Some("Bundle") && key != "type" => {
                    bound(false);
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    let value: Box<RawValue> = map.next_value()?;
                    if key == "type" {
                        bundle_type = serde_json::from_str::<String>(value.get()).ok();
                    }
                    kept_bytes += value.get().len();
                    if self.meter.is_some_and(|m| kept_bytes as u64 > m.max_value) {
                        return Err(de::Error::custom(
                            "a single resource exceeds the size limit",
                        ));
                    }
                    fields.push((key, value));
                }
            }
            bound(true);
        }
        bound(false);
        match resource_type.as_deref() {
            None | Some("") => Err(de::Error::custom("no resourceType: not a FHIR resource")),
            Some("Bundle") => {
                check_bundle_type(bundle_type.as_deref()).map_err(de::Error::custom)?;
                // A nested Bundle without a type is read through all the same.
                if bundle_type.is_none() && self.nesting.depth == 0 {
                    return Err(de::Error::custom("the Bundle has no type"));
                }
                Ok(())
            }
            Some(kind) => {
                // A single resource as a whole document (rare): rebuild its text for the parser.
                let mut text = format!("{{\"resourceType\":{}", serde_json::Value::from(kind));
                for (key, value) in &fields {
                    text.push(',');
                    text.push_str(&serde_json::Value::from(key.as_str()).to_string());
                    text.push(':');
                    text.push_str(value.get());
                }
                text.push('}');
                let position = Position {
                    line: self.line,
                    entry: 0,
                };
                (self.sink)(Item::Resource {
                    raw: &text,
                    full_url: None,
                    position,
                });
                Ok(())
            }
        }
    }
}

fn check_bundle_type(bundle_type: Option<&str>) -> Result<(), String> {
    match bundle_type {
        Some(t) if !BUNDLE_TYPES.contains(&t) => Err(format!(
            "Bundle type {t:?} is not accepted (accepted: {})",
            BUNDLE_TYPES.join(", ")
        )),
        _ => Ok(()),
    }
}

/// The `entry` array of a Bundle, one element at a time.
struct Entries<'s> {
    sink: &'s mut dyn FnMut(Item<'_>),
    line: u64,
    meter: Option<&'s Meter>,
    /// Inside how many Bundles the entries' Bundle is.
    depth: u32,
    /// An entry without a resource is normal here (a response or history Bundle, when its `type`
    /// came before its entries, as servers write it): skipped, not rejected.
    resource_optional: bool,
}

impl<'de> DeserializeSeed<'de> for Entries<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

/// One Bundle entry with its parts kept as raw JSON, so a malformed part rejects only the entry.
#[derive(Deserialize)]
struct RawEntry {
    #[serde(rename = "fullUrl")]
    full_url: Option<Box<RawValue>>,
    resource: Option<Box<RawValue>>,
    request: Option<Box<RawValue>>,
    response: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow, rename = "lastModified")]
    last_modified: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    url: Option<Cow<'a, str>>,
}

impl<'de> Visitor<'de> for Entries<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the Bundle's entry array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0u64;
        loop {
            if let Some(meter) = self.meter {
                meter.start();
            }
            let Some(entry) = seq.next_element::<RawEntry>()? else {
                break;
            };
            if let Some(meter) = self.meter {
                meter.stop();
            }
            index += 1;
            let position = Position {
                line: self.line,
                entry: index,
            };
            emit_entry(
                &entry,
                position,
                self.resource_optional,
                self.depth,
                &mut *self.sink,
            );
        }
        Ok(())
    }
}

fn emit_entry(
    entry: &RawEntry,
    position: Position,
    resource_optional: bool,
    depth: u32,
    sink: &mut dyn FnMut(Item<'_>),
) {
    let request = entry
        .request
        .as_ref()
        .map(|r| serde_json::from_str::<Request<'_>>(r.get()));
    if let Some(Ok(Request {
        method: Some(method),
        url,
    })) = &request
        && method.eq_ignore_ascii_case("DELETE")
    {
        let response = entry
            .response
            .as_ref()
            .and_then(|r| serde_json::from_str::<Response<'_>>(r.get()).ok());
        match url {
            Some(url) => sink(Item::Delete {
                url,
                modified: response.as_ref().and_then(|r| r.last_modified.as_deref()),
                position,
            }),
            None => sink(Item::Rejected {
                reason: "DELETE entry without request.url".into(),
                raw: None,
                position,
            }),
        }
        return;
    }
    // A read inside a transaction or batch (`GET Patient?name=peter`) carries no resource.
    let is_read = matches!(&request, Some(Ok(Request { method: Some(m), .. }))
        if m.eq_ignore_ascii_case("GET") || m.eq_ignore_ascii_case("HEAD"));
    let Some(resource) = &entry.resource else {
        if !resource_optional && !is_read {
            sink(Item::Rejected {
                reason: "Bundle entry without a resource".into(),
                raw: None,
                position,
            });
        }
        return;
    };
    let raw = resource.get();
    if !raw.starts_with('{') {
        sink(Item::Rejected {
            reason: "Bundle entry resource is not a JSON object".into(),
            raw: Some(raw),
            position,
        });
        return;
    }
    if is_bundle(raw) {
        read_nested_bundle(raw, position, depth + 1, sink);
        return;
    }
    let full_url = entry
        .full_url
        .as_ref()
        .and_then(|u| serde_json::from_str::<&str>(u.get()).ok());
    sink(Item::Resource {
        raw,
        full_url,
        position,
    });
}

/// Whether an entry's resource is a Bundle. Every entry pays a text search for `"Bundle"`; only
/// one that has it is parsed to see whether its own `resourceType` is Bundle (the key may come
/// after `entry`, as with keys written in sorted order).
fn is_bundle(raw: &str) -> bool {
    memchr::memmem::find(raw.as_bytes(), b"\"Bundle\"").is_some()
        && resource_type_of(raw).is_ok_and(|kind| kind == "Bundle")
}

/// How deep Bundles may nest inside a file's Bundle (a collection of documents is 1): deeper ones
/// reject their entry, since each level holds its text once more.
const MAX_NESTED_BUNDLES: u32 = 4;

/// A Bundle inside a Bundle (a collection of documents, a message carrying a Bundle) is read
/// through: its entries reach the sink as the outer entry's items, at the outer entry's position
/// (a resource silver does not hold is counted and skipped there, as anywhere). A nested Bundle
/// that is not well formed rejects the outer entry alone. Its text is already in memory and was
/// bounded with the outer entry; serde_json's nesting limit on that entry bounds the depth.
fn read_nested_bundle(raw: &str, position: Position, depth: u32, sink: &mut dyn FnMut(Item<'_>)) {
    let reject = |sink: &mut dyn FnMut(Item<'_>), reason: String| {
        sink(Item::Rejected {
            reason,
            raw: Some(raw),
            position,
        })
    };
    if depth > MAX_NESTED_BUNDLES {
        let reason = format!("Bundles nested more than {MAX_NESTED_BUNDLES} deep");
        return reject(sink, reason);
    }
    // The type first, wherever its key is: a type that is not accepted rejects the entry before
    // any of its items is handed on.
    #[derive(Deserialize)]
    struct TypeProbe<'a> {
        #[serde(borrow, rename = "type")]
        bundle_type: Option<Cow<'a, str>>,
    }
    let known_type = match serde_json::from_str::<TypeProbe<'_>>(raw) {
        Ok(probe) => match probe.bundle_type.as_deref() {
            None => None,
            Some(t) => match BUNDLE_TYPES.iter().find(|known| **known == t) {
                Some(known) => Some(*known),
                None => {
                    return reject(
                        sink,
                        format!(
                            "invalid nested Bundle: {}",
                            check_bundle_type(Some(t)).unwrap_err()
                        ),
                    );
                }
            },
        },
        Err(e) => return reject(sink, format!("invalid nested Bundle: {e}")),
    };
    let mut at_entry = |item: Item<'_>| sink(item.at(position));
    let mut de = serde_json::Deserializer::from_str(raw);
    let seed = TopLevel {
        sink: &mut at_entry,
        line: position.line,
        meter: None,
        nesting: Nesting { depth, known_type },
    };
    if let Err(e) = seed.deserialize(&mut de).and_then(|()| de.end()) {
        reject(sink, format!("invalid nested Bundle: {e}"));
    }
}

/// Decompressed bytes read so far, and the bound on the value being read: a single Bundle entry or
/// top-level field may not exceed `max_value` bytes, so a hostile document cannot make the reader
/// buffer without limit.
pub(crate) struct Meter {
    count: Cell<u64>,
    value_start: Cell<Option<u64>>,
    max_value: u64,
}

impl Meter {
    fn new(max_value: u64) -> Self {
        Self {
            count: Cell::new(0),
            value_start: Cell::new(None),
            max_value,
        }
    }

    fn start(&self) {
        self.value_start.set(Some(self.count.get()));
    }

    fn stop(&self) {
        self.value_start.set(None);
    }
}

/// Counts decompressed bytes, enforcing the value bound and, for gzip, the decompression-bomb
/// limits against the compressed count.
struct CountingReader<'a> {
    inner: Box<dyn Read + 'a>,
    meter: Rc<Meter>,
    gzip: Option<(ReadLimits, Rc<Cell<u64>>)>,
}

impl<'a> CountingReader<'a> {
    fn new(
        inner: Box<dyn Read + 'a>,
        meter: Rc<Meter>,
        gzip: Option<(ReadLimits, Rc<Cell<u64>>)>,
    ) -> Self {
        Self { inner, meter, gzip }
    }
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let count = self.meter.count.get() + n as u64;
        self.meter.count.set(count);
        if let Some(start) = self.meter.value_start.get()
            && count - start > self.meter.max_value + buf.len() as u64
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a single resource is larger than {} bytes",
                    self.meter.max_value
                ),
            ));
        }
        if let Some((limits, compressed)) = &self.gzip {
            let ratio_exceeded = count > limits.ratio_grace_bytes
                && count
                    > compressed
                        .get()
                        .max(1)
                        .saturating_mul(limits.max_gzip_ratio);
            if count > limits.max_decompressed_bytes || ratio_exceeded {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "gzip content expands beyond the decompression-bomb limits ({} bytes or {}x)",
                        limits.max_decompressed_bytes, limits.max_gzip_ratio
                    ),
                ));
            }
        }
        Ok(n)
    }
}

/// Counts the compressed bytes the gzip decoder consumes.
struct CompressedCounter<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for CompressedCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out at most `step` bytes per read, like a network stream or a gzip decoder.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// (resources, rejects) read from `data`, or the file error.
    fn read(
        data: &[u8],
        step: usize,
        limits: &ReadLimits,
    ) -> Result<(Vec<String>, Vec<String>), FileError> {
        let (mut resources, mut rejects) = (Vec::new(), Vec::new());
        read_file(
            Trickle { data, step },
            "f.json",
            limits,
            &mut |item| match item {
                Item::Resource { raw, .. } => resources.push(raw.to_owned()),
                Item::Delete { url, .. } => resources.push(format!("DELETE {url}")),
                Item::Rejected { reason, .. } => rejects.push(reason),
            },
        )?;
        Ok((resources, rejects))
    }

    const NDJSON: &[u8] = b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\",\"id\":\"b\"}\n";

    #[test]
    fn the_format_is_decided_the_same_whatever_the_chunk_size() {
        let limits = ReadLimits::default();
        let bundle = b"{\"resourceType\":\"Bundle\",\"type\":\"collection\",\n\"entry\":[{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"a\"}}]}";
        for step in [1, 3, 7, 36, 37, 38, 4096] {
            assert_eq!(
                read(NDJSON, step, &limits).unwrap().0.len(),
                2,
                "ndjson, step {step}"
            );
            assert_eq!(
                read(bundle, step, &limits).unwrap().0.len(),
                1,
                "bundle, step {step}"
            );
        }
    }

    #[test]
    fn a_first_line_longer_than_the_sniff_window_is_ndjson_unless_it_is_a_bundle() {
        let limits = ReadLimits::default();
        let long = "x".repeat(SNIFF_BYTES + 10);
        let patient = format!("{{\"resourceType\":\"Patient\",\"id\":\"a\",\"text\":\"{long}\"}}");
        let ndjson = format!("{patient}\n{}", std::str::from_utf8(NDJSON).unwrap());
        // The Bundle's type is found whatever the spacing and wherever its key is in the window.
        let bundle = format!(
            "{{\"id\": \"b\", \"resourceType\" : \"Bundle\", \"type\": \"collection\", \"comment\": \"{long}\", \"entry\": [{{\"resource\": {{\"resourceType\": \"Patient\", \"id\": \"a\"}}}}]}}"
        );
        for step in [4096, 256 << 10, SNIFF_BYTES] {
            let (resources, rejects) = read(ndjson.as_bytes(), step, &limits).unwrap();
            assert_eq!(
                (resources.len(), rejects.len()),
                (3, 0),
                "ndjson, step {step}"
            );
            let (resources, _) = read(bundle.as_bytes(), step, &limits).unwrap();
            assert_eq!(resources.len(), 1, "bundle, step {step}");
        }
        // The first line's end is read, but what follows it only after a blank stretch.
        let blank = " ".repeat(SNIFF_BYTES);
        let edge = format!(
            "{{\"resourceType\":\"Patient\",\"id\":\"z\"}}\n{blank}{}",
            std::str::from_utf8(NDJSON).unwrap()
        );
        let (resources, _) = read(edge.as_bytes(), SNIFF_BYTES / 2, &limits).unwrap();
        assert_eq!(
            resources.len(),
            3,
            "a first line followed by a long blank stretch is NDJSON"
        );
    }

    #[test]
    fn a_cut_off_last_line_is_truncation_but_a_bad_last_line_is_a_reject() {
        let limits = ReadLimits::default();
        let cut = b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\",\"id\":\"b";
        let error = read(cut, 4096, &limits).unwrap_err();
        assert!(error.to_string().contains("truncated"), "{error}");
        let bad_last = b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"id\":\"b\"}";
        let (resources, rejects) = read(bad_last, 4096, &limits).unwrap();
        assert_eq!((resources.len(), rejects.len()), (1, 1));
    }

    #[test]
    fn a_bundle_never_buffers_more_than_one_bounded_value() {
        let limits = ReadLimits {
            max_line_bytes: 4096,
            ..ReadLimits::default()
        };
        let filler = "x".repeat(2 << 20);
        // A huge field of a Bundle is skipped, not kept.
        let big_field = format!(
            "{{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"comment\":\"{filler}\",\n\"entry\":[{{\"resource\":{{\"resourceType\":\"Patient\",\"id\":\"a\"}}}}]}}"
        );
        assert_eq!(
            read(big_field.as_bytes(), 65536, &limits).unwrap().0.len(),
            1
        );
        // A single entry over the limit quarantines the file instead of filling memory.
        let big_entry = format!(
            "{{\"resourceType\":\"Bundle\",\"type\":\"batch\",\n\"entry\":[{{\"resource\":{{\"resourceType\":\"Patient\",\"id\":\"a\",\"note\":\"{filler}\"}}}}]}}"
        );
        let error = read(big_entry.as_bytes(), 65536, &limits).unwrap_err();
        assert!(error.to_string().contains("larger than"), "{error}");
    }

    #[test]
    fn an_overlong_line_is_rejected_alone_whether_in_the_buffer_or_across_fills() {
        let limits = ReadLimits {
            max_line_bytes: 64,
            ..ReadLimits::default()
        };
        let long = format!(
            "{{\"resourceType\":\"Patient\",\"id\":\"x\",\"note\":\"{}\"}}\n",
            "y".repeat(100)
        );
        let data = [&NDJSON[..36], long.as_bytes(), &NDJSON[36..]].concat();
        for step in [1, 5, 64, 65, 200, 4096] {
            let (resources, rejects) = read(&data, step, &limits).unwrap();
            assert_eq!(resources.len(), 2, "step {step}");
            assert_eq!(rejects, ["line longer than 64 bytes"], "step {step}");
        }
    }

    #[test]
    fn deletes_and_entries_keep_their_order() {
        let bundle = b"{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[\n{\"request\":{\"method\":\"DELETE\",\"url\":\"Condition/c1\"}},\n{\"fullUrl\":\"urn:uuid:x\",\"resource\":{\"resourceType\":\"Patient\"}}]}";
        let (items, _) = read(bundle, 4096, &ReadLimits::default()).unwrap();
        assert_eq!(items[0], "DELETE Condition/c1");
        assert!(items[1].contains("Patient"));
    }
}
