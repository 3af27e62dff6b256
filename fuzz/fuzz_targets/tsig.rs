//! Arbitrary bytes as a TSIG-signed request and as a signed response: verification must
//! answer FORMERR, NOTAUTH (BADKEY, BADSIG, BADTIME, BADTRUNC) or success — never panic,
//! whatever the key name, algorithm, MAC length, times or other data say.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    muster_server::proto::tsig::fuzz_verify(data);
});
