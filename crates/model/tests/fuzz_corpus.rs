//! Replays the fuzz seed corpus (hand-made seeds and every crash the fuzzer
//! found) through the fuzz target's checks, so regressions show up in a plain
//! `cargo test` on stable.

use std::path::{Path, PathBuf};

#[test]
fn fuzz_corpus_holds_the_invariants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/check");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the fuzz corpus at {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the fuzz corpus at {} is empty", dir.display());
    let mut failures = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).expect("read corpus file");
        // Same as the fuzz target: only UTF-8 input reaches the compiler.
        let Ok(source) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let result = std::panic::catch_unwind(|| charter_model::testing::check_invariants(source));
        if result.is_err() {
            failures.push(path.file_name().unwrap_or_default().to_string_lossy().into_owned());
        }
    }
    assert!(failures.is_empty(), "{} of {} corpus files break an invariant: {failures:?}", failures.len(), files.len());
}
