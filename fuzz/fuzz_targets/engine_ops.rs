//! Engine operations against an in-memory model and a follower replay
//! (see `tandem_engine::fuzzing::engine_ops`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tandem_engine::fuzzing::engine_ops(data));
