//! A minimal signed-update client (RFC 2136 with TSIG, RFC 8945) for tests that need many
//! updates quickly, more than one `nsupdate` process per update allows (included with
//! `mod update_support;`; a directory module, so cargo does not build it as a test binary
//! of its own).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use muster_server::proto::tsig;
use muster_tests::{query::wire_name, query::Query, udp_exchange};

/// An UPDATE of `zone` adding `name` A `ip` and TXT `tag` (two records, so that an update
/// applied in part would show).
pub fn add_a_and_txt(zone: &str, id: u16, name: &str, ip: [u8; 4], tag: &str) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x28, 0, 0, 1, 0, 0, 0, 2, 0, 0]);
    m.extend_from_slice(&wire_name(zone));
    m.extend_from_slice(&[0, 6, 0, 1]);
    m.extend_from_slice(&wire_name(name));
    m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    m.extend_from_slice(&ip);
    m.extend_from_slice(&wire_name(name));
    let len = tag.len() as u8;
    m.extend_from_slice(&[0, 16, 0, 1, 0, 0, 0, 60, 0, len + 1, len]);
    m.extend_from_slice(tag.as_bytes());
    m
}

/// The first key of a key file as `tsig-keygen` writes it.
pub fn load_key(path: &Path) -> tsig::Key {
    let text = std::fs::read_to_string(path).expect("key file");
    tsig::parse_key_file(&text, &path.display().to_string())
        .expect("a valid key file")
        .remove(0)
        .0
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Signs `msg`, sends it and waits for its answer: the rcode, or `None` without one.
pub fn send(addr: SocketAddr, key: &tsig::Key, msg: &[u8], timeout: Duration) -> Option<u8> {
    let mut m = msg.to_vec();
    tsig::sign_request(&mut m, key, 300, now()).expect("signing");
    let r = udp_exchange(addr, &m, timeout)?;
    (r.len() >= 12 && r[..2] == m[..2]).then_some(r[3] & 0xf)
}

/// How many records of type `t` at `name` are served, or `None` without an answer.
pub fn count(addr: SocketAddr, name: &str, t: u16) -> Option<u16> {
    let r = udp_exchange(
        addr,
        &Query::new(name, t).to_bytes(),
        Duration::from_secs(2),
    )?;
    Some(u16::from_be_bytes([r[6], r[7]]))
}

/// The serial of `zone`'s SOA as served, or `None` without an answer.
pub fn serial(addr: SocketAddr, zone: &str) -> Option<u32> {
    let r = udp_exchange(
        addr,
        &Query::new(zone, 6).to_bytes(),
        Duration::from_secs(2),
    )?;
    // The SOA rdata ends with serial, refresh, retry, expire, minimum.
    let n = r.len();
    (u16::from_be_bytes([r[6], r[7]]) == 1 && n >= 32)
        .then(|| u32::from_be_bytes([r[n - 20], r[n - 19], r[n - 18], r[n - 17]]))
}

/// A small deterministic generator (for kill moments; no test depends on its values).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn seeded() -> Lcg {
        Lcg(now())
    }

    pub fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}
