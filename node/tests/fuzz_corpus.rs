//! The `bulk_body` fuzz target's body (`tandem_node::fuzzing`) over its checked-in seed corpus
//! (`fuzz/corpus/bulk_body/`) and pseudo-random inputs derived from it. Regenerate the corpus
//! with `cargo test -p tandem-node --test fuzz_corpus -- --ignored write_seed_corpus`.

use tandem_node::fuzzing::bulk_body;
use tandem_testkit::fuzz_corpus::{corpus, random_count, random_inputs, write_corpus};

#[test]
fn bulk_body_over_corpus_and_random_inputs() {
    let files = corpus("bulk_body");
    for (path, bytes) in &files {
        eprintln!("bulk_body {path:?}");
        bulk_body(bytes);
    }
    let seeds: Vec<Vec<u8>> = files.into_iter().map(|(_, bytes)| bytes).collect();
    for input in random_inputs(0x7a4d_0004, random_count(400), &seeds, 128) {
        bulk_body(&input);
    }
}

#[test]
#[ignore = "writes the seed corpus under fuzz/corpus/"]
fn write_seed_corpus() {
    write_corpus("bulk_body", &seeds());
}

/// `flags` (bit 0: `/{index}/_bulk`) then the body.
fn input(flags: u8, body: &str) -> Vec<u8> {
    let mut input = vec![flags];
    input.extend_from_slice(body.as_bytes());
    input
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "tutorial",
            input(
                0,
                concat!(
                    "{\"index\":{\"_index\":\"server-metrics\",\"_id\":\"1\"}}\n",
                    "{\"@timestamp\":\"2019-05-18T15:57:27.541Z\",\"cpu\":42.5}\n",
                    "{\"create\":{\"_index\":\"server-metrics\",\"_id\":\"2\"}}\n",
                    "{\"cpu\":12}\n",
                    "{\"delete\":{\"_index\":\"server-metrics\",\"_id\":\"1\"}}\n",
                ),
            ),
        ),
        (
            "default_index",
            input(
                1,
                "{\"index\":{\"_id\":\"a\"}}\n{\"x\":1}\n{\"index\":{}}\n{\"x\":2}\n",
            ),
        ),
        (
            "update_upsert",
            input(
                1,
                concat!(
                    "{\"update\":{\"_id\":\"u\",\"retry_on_conflict\":2}}\n",
                    "{\"doc\":{\"n\":1},\"doc_as_upsert\":true}\n",
                    "{\"update\":{\"_id\":\"u\"}}\n{\"doc\":{\"m\":2}}\n",
                ),
            ),
        ),
        (
            "conditional",
            input(
                1,
                concat!(
                    "{\"index\":{\"_id\":\"c\"}}\n{\"v\":1}\n",
                    "{\"index\":{\"_id\":\"c\",\"if_seq_no\":0,\"if_primary_term\":1}}\n{\"v\":2}\n",
                    "{\"index\":{\"_id\":\"c\",\"if_seq_no\":0,\"if_primary_term\":1}}\n{\"v\":3}\n",
                ),
            ),
        ),
        (
            "create_twice",
            input(
                1,
                "{\"create\":{\"_id\":\"d\"}}\n{\"v\":1}\n{\"create\":{\"_id\":\"d\"}}\n{\"v\":2}\n",
            ),
        ),
        (
            "bad_index_name",
            input(
                0,
                "{\"index\":{\"_index\":\"Bad*Name\",\"_id\":\"1\"}}\n{\"x\":1}\n{\"index\":{\"_index\":\"ok\",\"_id\":\"1\"}}\n{\"x\":1}\n",
            ),
        ),
        (
            "bad_source",
            input(
                1,
                "{\"index\":{\"_id\":\"1\"}}\n{\"x\":\n{\"index\":{\"_id\":\"2\"}}\n[1,2]\n",
            ),
        ),
        (
            "mapping_conflict",
            input(
                1,
                "{\"index\":{\"_id\":\"1\"}}\n{\"n\":1}\n{\"index\":{\"_id\":\"2\"}}\n{\"n\":\"text\"}\n",
            ),
        ),
        ("no_newline", input(1, "{\"index\":{\"_id\":\"1\"}}\n{\"x\":1}")),
        ("missing_source", input(1, "{\"index\":{\"_id\":\"1\"}}\n")),
        ("duplicate_key", input(1, "{\"index\":{\"_id\":\"1\",\"_id\":\"2\"}}\n{}\n")),
        ("two_actions", input(1, "{\"index\":{},\"delete\":{}}\n{}\n")),
        ("unknown_parameter", input(1, "{\"index\":{\"_id\":\"1\",\"routing\":\"r\"}}\n{}\n")),
        ("empty", input(1, "")),
        ("blank_lines", input(1, "\n \n\t\n")),
        ("delete_missing", input(1, "{\"delete\":{\"_id\":\"nope\"}}\n")),
        ("long_id", input(1, &format!("{{\"index\":{{\"_id\":\"{}\"}}}}\n{{}}\n", "x".repeat(600)))),
    ]
}
