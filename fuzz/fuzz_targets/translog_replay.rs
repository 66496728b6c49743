//! Arbitrary bytes as a translog generation file, opened and replayed
//! (see `tandem_engine::fuzzing::translog_replay`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tandem_engine::fuzzing::translog_replay(data));
