//! Arbitrary bytes as an encoded changeset (a journal record's payload): decoding never
//! panics, and whatever decodes encodes back to the same bytes and decodes to the same
//! changeset.

#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_server::zone::changeset::Changeset;

fuzz_target!(|data: &[u8]| {
    if let Ok(cs) = Changeset::decode(data) {
        let again = cs.encode().expect("a decoded changeset encodes");
        let back = Changeset::decode(&again).expect("an encoded changeset decodes");
        assert_eq!(back, cs, "decode(encode(x)) != x");
    }
});
