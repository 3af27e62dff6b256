//! Arbitrary bytes as a zone's journal file on disk: opening it never panics; it either
//! recovers a list of changesets (cutting a torn tail) or refuses with an error; and what
//! it recovered is what a second open of the (possibly cut) file recovers.

#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use muster_server::update::journal::{file_name, Journal};
use muster_server::proto::name::Name;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("muster-fuzz-journal-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("a temp dir");
    d
}

fuzz_target!(|data: &[u8]| {
    let zone = Name::parse("example.test.", None).expect("a valid name");
    let dir = dir();
    let path = dir.join(file_name(&zone));
    std::fs::write(&path, data).expect("write the journal file");
    let first = Journal::open(&dir, &zone);
    if let Ok((journal, recovery)) = first {
        drop(journal);
        let (_, again) = Journal::open(&dir, &zone).expect("a recovered journal opens again");
        assert_eq!(
            again.changesets, recovery.changesets,
            "a second open differs"
        );
        assert!(again.torn_tail.is_none(), "the torn tail was not cut");
    }
    let _ = std::fs::remove_file(&path);
});
