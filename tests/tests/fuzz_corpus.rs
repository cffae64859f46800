//! Replays the fuzz targets' committed inputs (`fuzz/seeds/<target>/` and the crashes found,
//! `fuzz/regressions/<target>/`) through the targets' bodies: on stable Rust, in the test command.

use std::path::PathBuf;

use metriccare_tests::fuzzing;

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut found = Vec::new();
    for folder in ["seeds", "regressions"] {
        let dir = fuzz.join(folder).join(target);
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n != ".keep") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn replay(target: &str, body: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no committed inputs for {target}");
    for path in inputs {
        let data = std::fs::read(&path).unwrap();
        // A panic names the input that caused it.
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "{target}: {} panics", path.display());
    }
}

#[test]
fn the_ndjson_target_survives_its_corpus() {
    replay("ndjson", fuzzing::ndjson);
}

#[test]
fn the_document_target_survives_its_corpus() {
    replay("document", fuzzing::document);
}

#[test]
fn the_event_target_survives_its_corpus() {
    replay("event", fuzzing::event);
}
