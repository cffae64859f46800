//! The bodies of the fuzz targets in `fuzz/`: hostile bytes through the NDJSON path, the Bundle
//! (document) path and the Lambda event parsing. `tests/fuzz_corpus.rs` replays the committed
//! corpus through the same functions on stable Rust, so every past finding stays a regression test.
//!
//! Each body panics only on a broken invariant: the reader ends in `Ok` or in
//! `FileError::Invalid` (in-memory bytes are never "unreadable"), and so on.

use metriccare_aws::events;
use metriccare_core::fhir::parse_resource;
use metriccare_core::fhir::reader::{FileError, Item, ReadLimits, read_file};

/// A first line that makes the reader take any file as NDJSON.
const NDJSON_FIRST_LINE: &[u8] = b"{\"resourceType\":\"Patient\",\"id\":\"first\"}\n";

/// Limits small enough for a fuzzer's inputs to reach them.
fn limits() -> ReadLimits {
    ReadLimits {
        max_line_bytes: 4 << 10,
        max_decompressed_bytes: 1 << 20,
        max_gzip_ratio: 50,
        ratio_grace_bytes: 16 << 10,
    }
}

/// The NDJSON path: every line read, and every resource parsed as ingest parses it.
pub fn ndjson(data: &[u8]) {
    read(&[NDJSON_FIRST_LINE, data].concat(), "fuzz.ndjson");
}

/// The document path (a Bundle, or a single resource), as uploaded; gzip when the bytes are.
pub fn document(data: &[u8]) {
    read(data, "fuzz.json");
}

fn read(data: &[u8], name: &str) {
    let mut sink = |item: Item<'_>| {
        if let Item::Resource { raw, full_url, .. } = item {
            // A reject is a fine outcome; a panic is not.
            let _ = parse_resource(raw, full_url);
        }
    };
    match read_file(data, name, &limits(), &mut sink) {
        Ok(_) | Err(FileError::Invalid(_)) => {}
        Err(FileError::Unreadable(e)) => panic!("bytes in memory reported as unreadable: {e}"),
    }
}

/// The ingest function's event parsing: a Lambda event (SQS batch or S3 notification), an SQS
/// body, and a URL-encoded object key.
pub fn event(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = serde_json::from_str(text) {
        let _ = events::parse_trigger(&value);
    }
    let _ = events::parse_notification(text);
    if let Ok(key) = events::decode_key(text) {
        assert!(key.len() <= text.len(), "decoding made {text:?} longer");
    }
}
