//! The checked-in fuzz corpora (`fuzz/corpus/<target>/`) and pseudo-random inputs derived
//! from them, for the tests that run each fuzz target's body under `cargo test`.

use std::path::PathBuf;

use rand::{Rng, RngCore, SeedableRng};

/// Fewest files a target's corpus must hold (a smaller one means it was not written).
pub const MIN_CORPUS_FILES: usize = 10;

/// Where the corpora are: `fuzz/corpus/` of the workspace.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Every file of `target`'s corpus with its bytes, sorted by path.
///
/// # Panics
/// If the directory cannot be read or holds fewer than [`MIN_CORPUS_FILES`] files.
pub fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {dir:?}: {e}"))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path).expect("corpus file");
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= MIN_CORPUS_FILES,
        "seed corpus of {target} is too small"
    );
    files
}

/// Writes `seeds` as `target`'s corpus files (for the ignored tests that regenerate them).
pub fn write_corpus(target: &str, seeds: &[(&str, Vec<u8>)]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).expect("write a corpus file");
    }
}

/// `count` pseudo-random inputs drawn from `seed`: half are mutations (bytes changed,
/// inserted, cut) of `seeds`, half random bytes shorter than `max_len`.
pub fn random_inputs(seed: u64, count: usize, seeds: &[Vec<u8>], max_len: usize) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            if !seeds.is_empty() && rng.random_ratio(1, 2) {
                let mut input = seeds[rng.random_range(0..seeds.len())].clone();
                for _ in 0..rng.random_range(1..6) {
                    match rng.random_range(0..3) {
                        0 if !input.is_empty() => {
                            let at = rng.random_range(0..input.len());
                            input[at] = rng.random();
                        }
                        1 if !input.is_empty() => {
                            let len = rng.random_range(0..=input.len());
                            input.truncate(len);
                        }
                        _ => {
                            let at = rng.random_range(0..=input.len());
                            input.insert(at, rng.random());
                        }
                    }
                }
                input
            } else {
                let len = rng.random_range(0..max_len.max(1));
                let mut input = vec![0u8; len];
                rng.fill_bytes(&mut input);
                input
            }
        })
        .collect()
}

/// How many random inputs a corpus test runs: `default`, or ten per case of
/// `TANDEM_PROPTEST_CASES`.
pub fn random_count(default: usize) -> usize {
    std::env::var("TANDEM_PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse::<usize>().ok())
        .map_or(default, |cases| cases * 10)
}
