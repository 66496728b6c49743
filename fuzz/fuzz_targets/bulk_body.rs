//! The `_bulk` parser and executor: per-item answers and errors, never a panic, and what an
//! item acknowledged is what the index holds (see `tandem_node::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tandem_node::fuzzing::bulk_body(data));
