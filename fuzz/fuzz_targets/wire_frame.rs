//! Transport frames, long-poll answers and chunk answers: decode returns a value or a clear
//! error, and a value re-encodes to the same bytes (see `tandem_transport::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tandem_transport::fuzzing::wire_frame(data));
