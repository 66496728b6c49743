//! The `recovery_session` fuzz target's body (`tandem_recovery::fuzzing`) over its checked-in
//! seed corpus (`fuzz/corpus/recovery_session/`) and pseudo-random inputs derived from it.
//! Regenerate the corpus with
//! `cargo test -p tandem-recovery --test fuzz_corpus -- --ignored write_seed_corpus`.

use tandem_recovery::fuzzing::recovery_session;
use tandem_testkit::fuzz_corpus::{corpus, random_count, random_inputs, write_corpus};

#[test]
fn recovery_session_over_corpus_and_random_inputs() {
    let files = corpus("recovery_session");
    for (path, bytes) in &files {
        let recovered = recovery_session(bytes);
        eprintln!("recovery_session {path:?}: recovered {recovered}");
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        // The truth and answers a target retries through recover; lies it must catch do not.
        let expected = match name {
            "truth" | "truth_explicit" | "lease_retry" | "lease_exists" | "retryable_chunk"
            | "flipped_chunk" | "short_chunk" | "long_chunk" | "session_lost" => Some(true),
            "checkpoint_lie"
            | "escape_name"
            | "absolute_name"
            | "temp_suffix_name"
            | "checkpoint_above_max"
            | "duplicate_file"
            | "missing_file"
            | "fatal_chunk" => Some(false),
            _ => None,
        };
        if let Some(expected) = expected {
            assert_eq!(recovered, expected, "{name}");
        }
    }
    let seeds: Vec<Vec<u8>> = files.into_iter().map(|(_, bytes)| bytes).collect();
    for input in random_inputs(0x7a4d_0005, random_count(300), &seeds, 96) {
        recovery_session(&input);
    }
}

#[test]
#[ignore = "writes the seed corpus under fuzz/corpus/"]
fn write_seed_corpus() {
    write_corpus("recovery_session", &seeds());
}

/// Inputs in the script format of `tandem_recovery::fuzzing`: lease answer, then the number
/// of lies about the session (low 2 bits) and each lie (op, file, arguments), then one byte
/// per chunk answer; zeros are the truth.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("truth", vec![]),
        ("truth_explicit", vec![0, 0, 0, 0, 0, 0]),
        ("lease_retry", vec![1, 0]),
        ("lease_exists", vec![2, 0]),
        ("escape_name", vec![0, 1, 1, 0, 0]),
        ("absolute_name", vec![0, 1, 1, 1, 2]),
        ("temp_suffix_name", vec![0, 1, 1, 0, 9]),
        ("huge_length", vec![0, 1, 2, 0, 3]),
        (
            "max_length",
            vec![0, 1, 2, 0, 4, 255, 255, 255, 255, 255, 255, 255, 255],
        ),
        ("wrong_checksum", vec![0, 1, 3, 0, 5]),
        ("duplicate_file", vec![0, 1, 4, 1]),
        ("missing_file", vec![0, 1, 5, 0]),
        ("checkpoint_above_max", vec![0, 1, 6, 0]),
        ("checkpoint_lie", vec![0, 1, 7, 0, 3]),
        ("extra_file", vec![0, 1, 8, 0, 7, 9]),
        ("flipped_chunk", vec![0, 0, 2, 5, 3, 0, 0, 2, 1, 1]),
        ("short_chunk", vec![0, 0, 3, 3, 3, 3]),
        ("long_chunk", vec![0, 0, 4, 7]),
        ("retryable_chunk", vec![0, 0, 5, 5, 0]),
        ("session_lost", vec![0, 0, 6, 0, 0, 6]),
        ("fatal_chunk", vec![0, 0, 7]),
    ]
}
