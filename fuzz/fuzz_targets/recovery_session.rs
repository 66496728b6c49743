//! A recovery target against a hostile leader's session metadata and chunk answers: no write
//! outside the shard directory, bounded requests, and a success holds the genuine commit (see
//! `tandem_recovery::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tandem_recovery::fuzzing::recovery_session(data);
});
