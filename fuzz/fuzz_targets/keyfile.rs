//! Arbitrary text as a BIND key file through musterd's and muster-agent's readers: the
//! invariants of `keyfile_input.rs` (never a panic; both read the same keys; printed
//! blocks read back the same).

#![no_main]

use libfuzzer_sys::fuzz_target;

mod keyfile_input;

fuzz_target!(|data: &[u8]| {
    keyfile_input::check(&String::from_utf8_lossy(data));
});
