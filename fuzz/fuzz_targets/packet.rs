//! Arbitrary bytes as a DNS message from the network, answered by both paths over both
//! transports, against the example zone (precompiled) and a zone whose completeness gate
//! is closed. Nothing may panic; every reply must decode with hickory-proto and carry the
//! query's ID; the fast path must answer exactly as the full path; a TSIG-signed packet
//! goes through the signed path.

#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use muster_server::query::answer::{Outcome, Responder, Scratch, Transport};
use muster_server::zone::catalog::Catalog;
use muster_server::proto::name::Name;
use muster_server::zone::Zone;
use muster_server::example;
use muster_server::proto::tsig;
use muster_server::query::{fastpath, respond};
use muster_server::zone::zonefile;

/// A zone whose SRV set declares 3 members but has 2: the gate withholds it.
const GATED: &str = "\
$ORIGIN gated.test.
$TTL 30
@   IN SOA ns1 hostmaster 1 3600 600 86400 60
    IN NS  ns1
ns1 IN A   127.0.0.1
_etcd-server-ssl._tcp IN SRV 0 0 2380 m1
                      IN SRV 0 0 2380 m2
                      IN TXT \"muster-size=3\"
m1  IN A 192.0.2.1
m2  IN A 192.0.2.2
*.wild IN TXT \"w\"
cname IN CNAME m1
";

struct World {
    responder: Responder,
    catalog: Catalog,
    keys: tsig::KeyRing,
}

fn build(origin: &str, text: &str) -> Arc<Zone> {
    let origin = Name::parse(origin, None).expect("a valid origin");
    let records = zonefile::parse_str(text, Path::new("fuzz.zone"), &origin).expect("a valid zone");
    Arc::new(Zone::build(&origin, records).expect("a zone that builds").0)
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let responder = Responder::default();
        let example = build(example::ORIGIN, example::ZONE);
        let gated = build("gated.test.", GATED);
        let mut catalog = Catalog::new();
        catalog.insert(example.clone());
        catalog.insert(gated.clone());
        fastpath::precompile(&example, &responder, &[]);
        fastpath::precompile(&gated, &responder, &[]);
        let mut keys = tsig::KeyRing::new();
        let _ = keys.load_text(
            "key \"k\" { algorithm hmac-sha256; secret \"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\"; };",
            "fuzz",
        );
        World {
            responder,
            catalog,
            keys,
        }
    })
}

fn check_reply(what: &str, pkt: &[u8], buf: &[u8]) {
    if let Err(e) = hickory_proto::op::Message::from_vec(buf) {
        panic!("{what}: the reply does not decode: {e}\nquery {pkt:02x?}\nreply {buf:02x?}");
    }
    assert_eq!(
        buf[..2],
        pkt[..2],
        "{what}: the reply's ID is not the query's"
    );
}

fuzz_target!(|pkt: &[u8]| {
    let w = world();
    let mut full = Vec::new();
    let mut fast = Vec::new();
    let mut scratch = Scratch::default();
    for transport in [Transport::Udp, Transport::Tcp] {
        if let Some(out) = respond::respond_signed(
            &w.responder,
            &w.catalog,
            pkt,
            &muster_server::proto::query::parse_query(pkt),
            transport,
            &mut full,
            &mut scratch,
            &w.keys,
        ) {
            if matches!(out, Outcome::Reply { .. }) {
                check_reply("signed path", pkt, &full);
            }
            continue;
        }
        let a = w
            .responder
            .respond_full(&w.catalog, pkt, transport, &mut full, &mut scratch);
        let b = respond::respond(
            &w.responder,
            &w.catalog,
            pkt,
            transport,
            &mut fast,
            &mut scratch,
        );
        assert_eq!(a, b, "fast and full outcomes differ");
        if matches!(a, Outcome::Reply { .. }) {
            check_reply("full path", pkt, &full);
            assert_eq!(fast, full, "fast and full replies differ");
        }
    }
});
