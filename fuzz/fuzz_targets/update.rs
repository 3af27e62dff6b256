//! Random signed and unsigned UPDATE messages against a zone, through the steps of
//! dynamic update: see `update_input.rs` for the input and what must hold after each
//! message (all or nothing, serial monotonic, every answer decodes and is signed when the
//! request was, copies not applied again, fast path = full path after each change).

#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;
mod update_input;

fuzz_target!(|data: &[u8]| {
    update_input::run(data, update_input::Ask::EachChange);
});
