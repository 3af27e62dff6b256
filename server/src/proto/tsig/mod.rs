//! TSIG: secret-key transaction signatures (RFC 8945), for dynamic updates, the queries
//! that come with them, and zone transfers.
//!
//! Keys come from BIND key files exactly as `tsig-keygen` prints them, or from the config
//! ([`Key::from_config`]); a [`KeyRing`] finds them by name, case-insensitively (RFC 4343).
//! The HMACs are RustCrypto's `hmac` over `sha1`/`sha2`, and every tag is compared in
//! constant time by the `Mac` trait; nothing cryptographic is written here.
//!
//! Server side: [`verify_request`] checks a raw request in the order of RFC 8945 §5.2
//! (placement and format → key → MAC → time → truncation policy) and gives either a
//! [`Verified`] request or a [`TsigError`] that says which rcode to answer and which TSIG
//! the answer carries. [`sign_response`] then appends that TSIG to the finished response
//! (RFC 8945 §4.3.1, §5.3, §5.3.2). [`StreamSigner`] signs the messages of a multi-message
//! answer such as AXFR (RFC 8945 §5.3.1).
//!
//! Client side (the agent's `register`, tests): [`sign_request`], [`verify_response`] and
//! [`StreamVerifier`].
//!
//! Every function that reads a message is total: any byte string gives a result, never a
//! panic, and the work is linear in its length.
//!
//! Limitations: HMAC-MD5 and GSS-TSIG are not supported (RFC 8945 §6 makes MD5 optional,
//! and it is refused when keys load, never at packet time). The server does not remember
//! the last Time Signed per key, so a replay inside the fudge window is not refused
//! (RFC 8945 §5.2.3 says SHOULD); updates stay safe to replay through their prerequisites.
//! Responses are always signed with the full-length MAC, even when a truncated request MAC
//! was accepted (any verifier accepts a full MAC, RFC 8945 §5.2.2.1 case 2).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};

use crate::proto::name::Name;

/// The fudge BIND, Knot and nsupdate use: five minutes of clock difference either way
/// (RFC 8945 §10 recommends 300 seconds).
pub const DEFAULT_FUDGE: u16 = 300;

/// A TSIG MAC algorithm musterd implements (RFC 8945 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    HmacSha1,
    HmacSha224,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Algorithm {
    /// Every supported algorithm, weakest first.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::HmacSha1,
        Algorithm::HmacSha224,
        Algorithm::HmacSha256,
        Algorithm::HmacSha384,
        Algorithm::HmacSha512,
    ];

    /// The algorithm's name as RFC 8945 §6 spells it, absolute.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "hmac-sha1.",
            Algorithm::HmacSha224 => "hmac-sha224.",
            Algorithm::HmacSha256 => "hmac-sha256.",
            Algorithm::HmacSha384 => "hmac-sha384.",
            Algorithm::HmacSha512 => "hmac-sha512.",
        }
    }

    /// The algorithm name in canonical (lower-case, uncompressed) wire form, as it goes
    /// into the TSIG RR and the MAC input (RFC 8945 §4.3.3).
    pub fn wire_name(self) -> &'static [u8] {
        match self {
            Algorithm::HmacSha1 => b"\x09hmac-sha1\x00",
            Algorithm::HmacSha224 => b"\x0bhmac-sha224\x00",
            Algorithm::HmacSha256 => b"\x0bhmac-sha256\x00",
            Algorithm::HmacSha384 => b"\x0bhmac-sha384\x00",
            Algorithm::HmacSha512 => b"\x0bhmac-sha512\x00",
        }
    }

    /// Reads an algorithm from text: BIND's and Kea's spellings (`hmac-sha256`,
    /// `HMAC-SHA256`), with or without the trailing dot.
    pub fn from_text(text: &str) -> Option<Algorithm> {
        let t = text.strip_suffix('.').unwrap_or(text);
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().trim_end_matches('.').eq_ignore_ascii_case(t))
    }

    /// Reads an algorithm from an uncompressed wire name, case-insensitively.
    pub fn from_wire_name(wire: &[u8]) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.wire_name().eq_ignore_ascii_case(wire))
    }

    /// Length of the full MAC, the hash output length.
    pub fn mac_len(self) -> usize {
        match self {
            Algorithm::HmacSha1 => 20,
            Algorithm::HmacSha224 => 28,
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha384 => 48,
            Algorithm::HmacSha512 => 64,
        }
    }

    /// The shortest MAC RFC 8945 §5.2.2.1 lets anyone send: the larger of 10 octets and
    /// half the hash length.
    pub fn min_mac_len(self) -> usize {
        (self.mac_len() / 2).max(10)
    }

    /// The HMAC of the concatenation of `parts`.
    fn mac(self, secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Algorithm::HmacSha1 => mac_with::<Hmac<sha1::Sha1>>(secret, parts),
            Algorithm::HmacSha224 => mac_with::<Hmac<sha2::Sha224>>(secret, parts),
            Algorithm::HmacSha256 => mac_with::<Hmac<sha2::Sha256>>(secret, parts),
            Algorithm::HmacSha384 => mac_with::<Hmac<sha2::Sha384>>(secret, parts),
            Algorithm::HmacSha512 => mac_with::<Hmac<sha2::Sha512>>(secret, parts),
        }
    }

    /// Whether `tag` is the HMAC of `parts`, or its leftmost `tag.len()` octets (a
    /// truncated MAC, RFC 8945 §5.2.2.1 case 4), compared in constant time.
    fn verify(self, secret: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
        match self {
            Algorithm::HmacSha1 => verify_with::<Hmac<sha1::Sha1>>(secret, parts, tag),
            Algorithm::HmacSha224 => verify_with::<Hmac<sha2::Sha224>>(secret, parts, tag),
            Algorithm::HmacSha256 => verify_with::<Hmac<sha2::Sha256>>(secret, parts, tag),
            Algorithm::HmacSha384 => verify_with::<Hmac<sha2::Sha384>>(secret, parts, tag),
            Algorithm::HmacSha512 => verify_with::<Hmac<sha2::Sha512>>(secret, parts, tag),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name().trim_end_matches('.'))
    }
}

fn keyed<M: KeyInit>(secret: &[u8]) -> M {
    // HMAC accepts keys of any length (RFC 2104 §2: longer keys are hashed first), so
    // `new_from_slice` cannot fail for an `Hmac<_>`.
    M::new_from_slice(secret).expect("HMAC takes keys of any length")
}

fn mac_with<M: Mac + KeyInit>(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m: M = keyed(secret);
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn verify_with<M: Mac + KeyInit>(secret: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut m: M = keyed(secret);
    for p in parts {
        m.update(p);
    }
    // `verify_truncated_left` also accepts a full-length tag; an empty one is refused.
    m.verify_truncated_left(tag).is_ok()
}

mod client;
mod key;
mod record;
mod server;
mod stream;
#[cfg(test)]
mod tests;

pub use client::{sign_request, tsig_error_name, verify_response, ResponseError, VerifiedResponse};
pub use key::{parse_key_file, Key, KeyError, KeyRing, Location};
pub use record::{Malformed, SignError};
pub use server::{sign_response, verify_request, ResponseTsig, TsigError, Verified};
pub use stream::{StreamSigner, StreamVerifier, MAX_UNSIGNED_IN_A_ROW};

/// Entry point for a fuzz target: runs every message reader on arbitrary bytes. It must
/// return, never panic.
pub fn fuzz_verify(data: &[u8]) {
    let mut keys = KeyRing::new();
    let key = Key::new(
        &Name::parse("k.", None).expect("a constant valid name"),
        Algorithm::HmacSha256,
        vec![7; 32],
    );
    let _ = keys.insert(
        key.clone(),
        Location {
            source: "fuzz".into(),
            line: None,
        },
    );
    let _ = verify_request(data, &keys, 0);
    let _ = verify_response(data, &key, &[1; 32], 0);
    let _ = StreamVerifier::new(&key, &[]).verify(data, 0);
}
