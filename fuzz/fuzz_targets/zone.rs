//! Zone text through everything a served zone goes through: parse, build, precompile,
//! and the questions of [`common::ask_everything`].

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use muster_server::proto::name::Name;
use muster_server::zone::Zone;
use muster_server::zone::zonefile;

#[path = "common.rs"]
mod common;

/// The zone's origin: its first `$ORIGIN`, else `example.test.`.
fn origin_of(text: &str) -> Name {
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            w.next()
                .filter(|d| d.eq_ignore_ascii_case("$ORIGIN"))
                .and_then(|_| w.next())
                .and_then(|o| Name::parse(o, Some(&Name::root())).ok())
        })
        .unwrap_or_else(|| Name::parse("example.test.", None).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let origin = origin_of(&text);
    let Ok(mut records) = zonefile::parse_str(&text, Path::new("fuzz.zone"), &origin) else {
        return;
    };
    // A zone that loads round-trips through its printed form.
    let printed: String = records
        .iter()
        .map(|r| format!("{}\n", zonefile::format_record(r, None)))
        .collect();
    let again = zonefile::parse_str(&printed, Path::new("printed.zone"), &origin)
        .unwrap_or_else(|e| panic!("the printed zone does not parse: {e:?}\n{printed}"));
    let key = |r: &muster_server::proto::rr::Record| {
        (
            r.owner.to_lowercase(),
            r.rtype,
            r.class,
            r.ttl,
            r.rdata.clone(),
        )
    };
    assert_eq!(
        records.iter().map(key).collect::<Vec<_>>(),
        again.iter().map(key).collect::<Vec<_>>(),
        "records differ after printing and parsing again:\n{printed}"
    );
    records.retain(common::hickory_reads);
    let types: Vec<muster_server::proto::types::Rtype> = records.iter().map(|r| r.rtype).collect();
    if let Ok((zone, _warnings)) = Zone::build(&origin, records) {
        common::ask_everything(zone, &types);
    }
});
