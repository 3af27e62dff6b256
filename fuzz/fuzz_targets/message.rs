//! Arbitrary bytes as a DNS message, read by the one codec (`proto::Reader`) the way every
//! module reads messages: header, questions, records, rdata with its names decompressed;
//! routed by the dispatcher over both transports; parsed as a query and as an UPDATE; and
//! echoed in an error reply. Nothing may panic, every name the reader gives is a
//! well-formed uncompressed name of at most 255 octets, every read moves forward, and the
//! error reply decodes with hickory-proto and carries the message's ID.

#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_server::query::answer::Transport;
use muster_server::net::dispatch::{route, Route};
use muster_server::proto::name::Name;
use muster_server::proto::reader::{Header, Reader};
use muster_server::proto::query::parse_query;

use muster_server::update;

fn walk(data: &[u8]) {
    let Ok((h, mut r)) = Reader::after_header(data) else {
        assert!(data.len() < 12);
        return;
    };
    for _ in 0..h.qdcount() {
        let before = r.pos();
        let Ok(q) = r.question() else { return };
        assert!(r.pos() > before);
        assert!(Name::from_wire(&q.name).is_ok(), "{:?}", &*q.name);
    }
    for _ in 0..h.ancount() as usize + h.nscount() as usize + h.arcount() as usize {
        let before = r.pos();
        let Ok(rec) = r.record() else { return };
        assert!(r.pos() >= before + 11);
        assert!(Name::from_wire(&rec.owner).is_ok());
        assert_eq!(&data[rec.rdata_start..rec.rdata_start + rec.rdata.len()], rec.rdata);
        let _ = r.rdata_uncompressed(&rec);
    }
}

fuzz_target!(|data: &[u8]| {
    walk(data);
    for transport in [Transport::Udp, Transport::Tcp] {
        for on in [false, true] {
            match route(data, transport, on, on) {
                Route::Drop(_) => assert!(Header::parse(data).is_none_or(|h| h.is_response())),
                Route::Update | Route::Notify => assert!(on),
                Route::Transfer(_) => assert!(on && transport == Transport::Tcp),
                Route::Query(q) => assert_eq!(q.is_ok(), parse_query(data).is_ok()),
            }
        }
    }
    let _ = update::parse(data);
    let _ = update::echo_of(data);
    let reply = muster_server::proto::builder::error_reply(data, muster_server::proto::types::Rcode::FORMERR);
    if let Err(e) = hickory_proto::op::Message::from_vec(&reply) {
        panic!("the error reply does not decode: {e}: {reply:?}");
    }
    if data.len() >= 2 {
        assert_eq!(reply[..2], data[..2], "the error reply's ID is not the message's");
    }
});
