use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::record::{append_tsig, find_tsig, tsig_variables};
use super::*;
use crate::proto::reader::Reader;
use crate::proto::types::Rcode;
use crate::proto::HEADER_LEN;

/// Keys exactly as `tsig-keygen` (BIND 9.18) printed them, one per algorithm, plus
/// the comment styles named.conf allows.
const KEYGEN_FILE: &str = r#"// made with tsig-keygen -a ALG key-ALG.example
# and tsig-keygen update-key
key "key-hmac-sha1.example" {
	algorithm hmac-sha1;
	secret "rCtWrYB0yDtOXafVni48zC7l+vs=";
};
key "key-hmac-sha224.example" {
	algorithm hmac-sha224;
	secret "DTVIeSkz4PaS52o8MgexFYSTK9GZym2mIYKXUQ==";
};
/* a block
   comment */
key "key-hmac-sha256.example" {
	algorithm hmac-sha256;
	secret "2Coy5ah5FxTdoEYIqle8xjD7wP/ypt67Degk9Vqdxc4=";
};
key "key-hmac-sha384.example" {
	algorithm hmac-sha384;
	secret "zAqcTbFsGwMgBDDrD0xTx8rS8TjgptoK28ij3X0qZMggy2R9fLivs5BCE1BFhxwh";
};
key "key-hmac-sha512.example" { algorithm hmac-sha512; secret "GLTd0tCEPgqwG2fwbZ6pyilOXgThNzz2sM55PAsrV+I2ElgXTjxGXOedM2CiDcgxSlXzbmRBNIhEIg5rG/FcPQ=="; };
key "update-key" {
	algorithm HMAC-SHA256.;   // Kea's spelling, with the trailing dot
	secret "2VweQ/BPa6R2A86RzwB3FOqCKPnGWAX1/Cy9RnV2ZeA=";
};
"#;

const UPDATE_SECRET: &str = "2VweQ/BPa6R2A86RzwB3FOqCKPnGWAX1/Cy9RnV2ZeA=";

fn ring() -> KeyRing {
    let mut r = KeyRing::new();
    assert_eq!(r.load_text(KEYGEN_FILE, "keys.conf").unwrap(), 6);
    r
}

fn name(s: &str) -> Name {
    Name::parse(s, None).unwrap()
}

fn key(n: &str) -> Arc<Key> {
    Arc::clone(ring().get(&name(n)).unwrap())
}

/// A query for `qname`/SOA with id 0x1234.
fn query(qname: &str, opcode: u8) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, opcode << 3, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(name(qname).as_wire());
    m.extend_from_slice(&rtype_soa());
    m
}

fn rtype_soa() -> [u8; 4] {
    [0, 6, 0, 1]
}

/// The response header and question for `req`: QR set, counts for the question only.
fn response_to(req: &[u8], rcode: Rcode) -> Vec<u8> {
    let qend = {
        let mut r = Reader::at(req, HEADER_LEN);
        r.question().unwrap();
        r.pos()
    };
    let mut r = req[..qend].to_vec();
    r[2] |= 0x84; // QR, AA
    r[3] = (r[3] & 0xf0) | rcode.header_bits() as u8;
    r[6..12].copy_from_slice(&[0; 6]);
    r
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn reads_tsig_keygen_files() {
    let r = ring();
    assert_eq!(r.len(), 6);
    for (n, alg, len) in [
        ("key-hmac-sha1.example.", Algorithm::HmacSha1, 20),
        ("key-hmac-sha224.example.", Algorithm::HmacSha224, 28),
        ("key-hmac-sha256.example.", Algorithm::HmacSha256, 32),
        ("key-hmac-sha384.example.", Algorithm::HmacSha384, 48),
        ("KEY-hmac-SHA512.Example.", Algorithm::HmacSha512, 64),
        ("Update-Key.", Algorithm::HmacSha256, 32),
    ] {
        let k = r.get(&name(n)).unwrap_or_else(|| panic!("{n}"));
        assert_eq!((k.algorithm, k.secret.len()), (alg, len), "{n}");
        assert!(!k.allow_truncated_mac);
    }
    assert_eq!(
        r.location(&name("update-key.")).unwrap().to_string(),
        "keys.conf:22"
    );
    // The secret stays out of logs.
    let dbg = format!("{:?}", r.get(&name("update-key.")).unwrap());
    assert!(
        !dbg.contains("2VweQ") && dbg.contains("<32 octets>"),
        "{dbg}"
    );
}

#[test]
fn key_file_errors_name_file_line_and_key() {
    let err = |text: &str| parse_key_file(text, "k.conf").unwrap_err().to_string();
    assert_eq!(
        err("key \"old\" {\n\talgorithm hmac-md5;\n\tsecret \"JFT0JJqfUqipUxgzj9fkYw==\";\n};\n"),
        "k.conf:2: key \"old\": unsupported algorithm \"hmac-md5\"; musterd supports \
         hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384 and hmac-sha512 (make a new \
         key with `tsig-keygen -a hmac-sha256 old`)"
    );
    assert_eq!(
        err("key k {\n algorithm hmac-sha256;\n secret \"not*base64\";\n};"),
        "k.conf:3: key \"k\": the secret is not valid base64 (Invalid symbol 42, offset 3.)"
    );
    assert_eq!(
        err("\n\nkey k { algorithm hmac-sha256; };"),
        "k.conf:3: key \"k\" has no secret statement"
    );
    assert_eq!(
        err("key k { secret \"AAAA\"; };"),
        "k.conf:1: key \"k\" has no algorithm statement"
    );
    assert_eq!(
        err(concat!(
            "key k { algorithm hmac-sha256; secret \"AAAA\"; };\n",
            "key K. { algorithm hmac-sha256; secret \"AAAA\"; };"
        )),
        "k.conf:2: key \"K.\" is already defined at k.conf:1"
    );
    assert_eq!(
        err("key k { algorithm hmac-sha256; secret \"AAAA\"; }"),
        "k.conf:1: the file ends where `;` was expected"
    );
    assert_eq!(
        err("key k { algorithm hmac-sha256 secret \"AAAA\"; };"),
        "k.conf:1: expected `;` after `algorithm hmac-sha256`, found `secret`"
    );
    assert_eq!(
        err("key k { algorithm hmac-sha256; secret \"\"; };"),
        "k.conf:1: key \"k\": the secret is not valid base64 (it is empty)"
    );
    assert_eq!(
        err("options { };"),
        "k.conf:1: expected a `key` statement, found `options`"
    );
    assert_eq!(
        err("key k { algorithm hmac-sha256; secret \"AAAA\"; port 53; };"),
        "k.conf:1: unknown statement `port` in key \"k\" (a key has only `algorithm` and `secret`)"
    );
    assert_eq!(
        err("/* never closed\nkey k {};"),
        "k.conf:1: comment `/*` is never closed"
    );
    // A duplicate across files is caught by the ring.
    let mut r = ring();
    let e = r
        .load_text(
            "key UPDATE-KEY { algorithm hmac-sha1; secret \"AAAA\"; };",
            "b.conf",
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "b.conf:1: key \"update-key\" is already defined at keys.conf:22"
    );
    let e = KeyRing::new()
        .load_file(Path::new("/nonexistent/k.conf"))
        .unwrap_err();
    assert!(e
        .to_string()
        .starts_with("cannot read key file /nonexistent/k.conf"));
}

#[test]
fn inline_config_keys() {
    let k = Key::from_config("update-key", "HMAC-SHA256", UPDATE_SECRET).unwrap();
    assert_eq!(&k, &*key("update-key."));
    let k = Key::from_config("Update-Key.", "hmac-sha256.", UPDATE_SECRET).unwrap();
    assert_eq!(k.name, name("update-key."));
    let e = Key::from_config("k", "hmac-md5", "AAAA").unwrap_err();
    assert!(matches!(e, KeyError::UnknownAlgorithm { .. }), "{e}");
    assert!(e
        .to_string()
        .starts_with("the config: key \"k\": unsupported algorithm"));
    assert!(Key::from_config("a..b", "hmac-sha256", "AAAA").is_err());
}

/// HMAC known answers: RFC 4231 §4.3 test case 2 for SHA-2, RFC 2202 §3 for SHA-1.
#[test]
fn hmac_known_answers() {
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let data: [&[u8]; 2] = [b"what do ya ", b"want for nothing?"];
    for (alg, want) in [
        (
            Algorithm::HmacSha1,
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
        ),
        (
            Algorithm::HmacSha224,
            "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44",
        ),
        (
            Algorithm::HmacSha256,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            Algorithm::HmacSha384,
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
             8e2240ca5e69e2c78b3239ecfab21649",
        ),
        (
            Algorithm::HmacSha512,
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
    ] {
        let want = hex(want);
        assert_eq!(alg.mac(b"Jefe", &data), want, "{alg}");
        assert_eq!(alg.mac_len(), want.len());
        assert!(alg.verify(b"Jefe", &data, &want));
        assert!(alg.verify(b"Jefe", &data, &want[..alg.min_mac_len()]));
        assert!(!alg.verify(b"Jeff", &data, &want));
        assert!(!alg.verify(b"Jefe", &data, &[]));
    }
}

#[test]
fn algorithm_names() {
    for a in Algorithm::ALL {
        assert_eq!(Algorithm::from_text(a.name()), Some(a));
        assert_eq!(Algorithm::from_wire_name(a.wire_name()), Some(a));
        assert_eq!(
            name(a.name()).as_wire(),
            a.wire_name(),
            "wire name of {a} matches its text"
        );
    }
    assert_eq!(
        Algorithm::from_text("HMAC-SHA384"),
        Some(Algorithm::HmacSha384)
    );
    assert_eq!(Algorithm::from_text("hmac-md5"), None);
    assert_eq!(Algorithm::from_text("hmac-md5.sig-alg.reg.int."), None);
    assert_eq!(
        Algorithm::from_wire_name(b"\x0bHMAC-SHA256\x00"),
        Some(Algorithm::HmacSha256)
    );
}

#[test]
fn request_and_response_round_trip_for_every_algorithm() {
    let r = ring();
    let t = 1_700_000_000;
    for a in Algorithm::ALL {
        let k = key(&format!("key-{}.example.", a));
        let mut req = query("example.", 5);
        let unsigned_len = req.len();
        let mac = sign_request(&mut req, &k, DEFAULT_FUDGE, t).unwrap();
        assert_eq!(mac.len(), a.mac_len());
        assert_eq!(req[11], 1, "ARCOUNT counts the TSIG");
        let v = verify_request(&req, &r, t + 10).unwrap().unwrap();
        assert_eq!(v.key.name, k.name);
        assert_eq!(v.request_mac, mac);
        assert_eq!((v.time_signed, v.fudge, v.original_id), (t, 300, 0x1234));

        let tsig = v.response();
        let mut resp = response_to(&req[..unsigned_len], Rcode::NOERROR);
        let before = resp.len();
        sign_response(&mut resp, &tsig, t + 11).unwrap();
        assert_eq!(resp.len() - before, tsig.record_len());
        let vr = verify_response(&resp, &k, &mac, t + 12).unwrap();
        assert_eq!(vr.time_signed, t + 11);
        // The response MAC chains the request MAC: another request MAC fails.
        assert_eq!(
            verify_response(&resp, &k, &[0; 32], t + 12).unwrap_err(),
            ResponseError::BadSig
        );
    }
    // Unsigned requests are simply unsigned.
    assert!(verify_request(&query("example.", 0), &r, t)
        .unwrap()
        .is_none());
}

fn signed_update(key_name: &str, now: u64) -> (Vec<u8>, Vec<u8>) {
    let mut req = query("example.", 5);
    let mac = sign_request(&mut req, &key(key_name), DEFAULT_FUDGE, now).unwrap();
    (req, mac)
}

#[test]
fn rfc8945_check_order_and_error_responses() {
    let r = ring();
    let t = 1_700_000_000;
    let k = key("update-key.");

    // BADKEY: a key we do not know, answered unsigned with its names echoed.
    let mut req = query("example.", 5);
    let stranger = Key::new(&name("stranger."), Algorithm::HmacSha256, vec![1; 32]);
    let mac = sign_request(&mut req, &stranger, DEFAULT_FUDGE, t).unwrap();
    let e = verify_request(&req, &r, t).unwrap_err();
    assert_eq!(
        (e.rcode(), e.tsig_error()),
        (Rcode::NOTAUTH, Some(Rcode::BADKEY))
    );
    let mut resp = response_to(&req, e.rcode());
    assert!(sign_response(&mut resp, &e.response().unwrap(), t)
        .unwrap()
        .is_empty());
    assert_eq!(
        verify_response(&resp, &stranger, &mac, t).unwrap_err(),
        ResponseError::ServerError {
            error: Rcode::BADKEY,
            server_time: None
        }
    );

    // BADKEY also for a known key name with another algorithm (RFC 8945 §5.2.1).
    let mut req = query("example.", 5);
    let other_alg = Key::new(
        &name("update-key."),
        Algorithm::HmacSha512,
        k.secret.clone(),
    );
    sign_request(&mut req, &other_alg, DEFAULT_FUDGE, t).unwrap();
    assert_eq!(
        verify_request(&req, &r, t).unwrap_err().tsig_error(),
        Some(Rcode::BADKEY)
    );

    // BADSIG: right key, wrong secret; answered unsigned.
    let mut req = query("example.", 5);
    let wrong = Key::new(&name("update-key."), Algorithm::HmacSha256, vec![9; 32]);
    let mac = sign_request(&mut req, &wrong, DEFAULT_FUDGE, t).unwrap();
    let e = verify_request(&req, &r, t).unwrap_err();
    assert_eq!(
        (e.rcode(), e.tsig_error()),
        (Rcode::NOTAUTH, Some(Rcode::BADSIG))
    );
    let mut resp = response_to(&req, e.rcode());
    sign_response(&mut resp, &e.response().unwrap(), t).unwrap();
    assert_eq!(
        verify_response(&resp, &wrong, &mac, t).unwrap_err(),
        ResponseError::ServerError {
            error: Rcode::BADSIG,
            server_time: None
        }
    );

    // A tampered message is BADSIG too, but a changed ID is not: the MAC covers the
    // Original ID (RFC 8945 §4.3.1), which a forwarder may not keep.
    let (req, _) = signed_update("update-key.", t);
    let mut tampered = req.clone();
    tampered[HEADER_LEN + 2] ^= 1;
    assert_eq!(
        verify_request(&tampered, &r, t).unwrap_err().tsig_error(),
        Some(Rcode::BADSIG)
    );
    let mut new_id = req.clone();
    new_id[0] = 0x77;
    assert_eq!(
        verify_request(&new_id, &r, t).unwrap().unwrap().original_id,
        0x1234
    );

    // Time: exactly ±fudge passes, one second more is BADTIME, answered signed with
    // our time in Other Data and the request's time as Time Signed.
    for (now, ok) in [
        (t + 300, true),
        (t - 300, true),
        (t + 301, false),
        (t - 301, false),
    ] {
        let (req, mac) = signed_update("update-key.", t);
        match verify_request(&req, &r, now) {
            Ok(Some(_)) => assert!(ok, "{now}"),
            Err(e) => {
                assert!(!ok, "{now}");
                assert_eq!(
                    (e.rcode(), e.tsig_error()),
                    (Rcode::NOTAUTH, Some(Rcode::BADTIME))
                );
                let mut resp = response_to(&req, e.rcode());
                sign_response(&mut resp, &e.response().unwrap(), now).unwrap();
                // The client's clock is `t`: the signed error verifies and carries ours.
                assert_eq!(
                    verify_response(&resp, &k, &mac, t).unwrap_err(),
                    ResponseError::ServerError {
                        error: Rcode::BADTIME,
                        server_time: Some(now)
                    }
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // BADTIME is checked after the MAC: a wrong secret at a wrong time is BADSIG.
    let mut req = query("example.", 5);
    sign_request(&mut req, &wrong, DEFAULT_FUDGE, t).unwrap();
    assert_eq!(
        verify_request(&req, &r, t + 1000).unwrap_err().tsig_error(),
        Some(Rcode::BADSIG)
    );
}

/// `msg` signed with `key` but with the MAC cut to `len` octets.
fn signed_truncated(key: &Key, len: usize, now: u64) -> Vec<u8> {
    let mut msg = query("example.", 5);
    let vars = tsig_variables(
        &key.name,
        key.algorithm.wire_name(),
        now,
        300,
        Rcode::NOERROR,
        &[],
    );
    let mac = key.algorithm.mac(&key.secret, &[&msg, &vars]);
    append_tsig(
        &mut msg,
        &key.name,
        key.algorithm.wire_name(),
        now,
        300,
        &mac[..len.min(mac.len())],
        0x1234,
        Rcode::NOERROR,
        &[],
    )
    .unwrap();
    msg
}

#[test]
fn truncated_macs() {
    let t = 1_700_000_000;
    let mut r = ring();
    let k = key("update-key.");
    // Within RFC 8945 §5.2.2.1 but not allowed by the key: BADTRUNC, signed.
    let req = signed_truncated(&k, 16, t);
    let e = verify_request(&req, &r, t).unwrap_err();
    assert_eq!(
        (e.rcode(), e.tsig_error()),
        (Rcode::NOTAUTH, Some(Rcode::BADTRUNC))
    );
    assert!(matches!(e.response(), Some(ResponseTsig::Signed { .. })));
    // Shorter than max(10, 32/2): FORMERR, as is a MAC longer than the hash.
    let e = verify_request(&signed_truncated(&k, 15, t), &r, t).unwrap_err();
    assert_eq!((e.rcode(), e.tsig_error()), (Rcode::FORMERR, None));
    assert!(e.response().is_none());
    let e = verify_request(&signed_truncated(&k, 0, t), &r, t).unwrap_err();
    assert_eq!(e.rcode(), Rcode::FORMERR);
    let mut long = signed_truncated(&k, 32, t);
    // Turn the 32-octet MAC into a 33-octet one by rebuilding the record.
    let start = find_tsig(&long).unwrap().unwrap().start;
    let mut mac = find_tsig(&long).unwrap().unwrap().mac.to_vec();
    mac.push(0);
    long.truncate(start);
    long[11] -= 1;
    append_tsig(
        &mut long,
        &k.name,
        k.algorithm.wire_name(),
        t,
        300,
        &mac,
        0x1234,
        Rcode::NOERROR,
        &[],
    )
    .unwrap();
    assert_eq!(
        verify_request(&long, &r, t).unwrap_err().to_string(),
        "malformed TSIG: the MAC is longer than the algorithm's output"
    );
    // A key that allows truncation accepts it; a wrong truncated MAC is still BADSIG.
    let mut allowing = (*k).clone();
    allowing.allow_truncated_mac = true;
    r = KeyRing::new();
    r.insert(
        allowing,
        Location {
            source: "t".into(),
            line: None,
        },
    )
    .unwrap();
    assert!(verify_request(&req, &r, t).unwrap().is_some());
    let mut bad = req.clone();
    let n = bad.len();
    bad[n - 8] ^= 1; // the last MAC octet
    assert_eq!(
        verify_request(&bad, &r, t).unwrap_err().tsig_error(),
        Some(Rcode::BADSIG)
    );
}

#[test]
fn placement_and_format_are_formerr() {
    let r = ring();
    let t = 1_700_000_000;
    let (req, _) = signed_update("update-key.", t);
    let tsig_start = find_tsig(&req).unwrap().unwrap().start;
    let tsig_rr = req[tsig_start..].to_vec();
    let a_rr: Vec<u8> = [
        &[0xc0, 12][..],
        &[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1],
    ]
    .concat();
    let formerr = |m: &[u8]| match verify_request(m, &r, t) {
        Err(TsigError::Malformed(why)) => why,
        other => panic!("{other:?}"),
    };

    // Not last: an A record after it in the additional section.
    let mut m = req.clone();
    m.extend_from_slice(&a_rr);
    m[11] += 1;
    assert_eq!(formerr(&m), Malformed::NotLast);
    // In the answer section instead of additional.
    let mut m = req[..tsig_start].to_vec();
    m[11] = 0;
    m[7] = 1;
    m.extend_from_slice(&tsig_rr);
    assert_eq!(formerr(&m), Malformed::NotLast);
    // Two TSIG records.
    let mut m = req.clone();
    m.extend_from_slice(&tsig_rr);
    m[11] += 1;
    assert_eq!(formerr(&m), Malformed::Several);
    // Class IN (BIND's tsigwrongclass), TTL not 0.
    let owner_len = name("update-key.").wire_len();
    let mut m = req.clone();
    m[tsig_start + owner_len + 3] = 1;
    assert_eq!(formerr(&m), Malformed::WrongClass);
    let mut m = req.clone();
    m[tsig_start + owner_len + 7] = 1;
    assert_eq!(formerr(&m), Malformed::NonZeroTtl);
    // Bytes after the TSIG record.
    let mut m = req.clone();
    m.push(0);
    assert_eq!(formerr(&m), Malformed::TrailingData);
    // Counts larger than the message, and a short header.
    let mut m = req.clone();
    m[7] = 200;
    assert_eq!(formerr(&m), Malformed::Truncated);
    assert_eq!(formerr(&req[..5]), Malformed::Short);
    // An rdata length that disagrees with the fields.
    let mut m = req.clone();
    m[tsig_start + owner_len + 9] -= 1;
    m.pop();
    assert_eq!(formerr(&m), Malformed::BadRdata);
}

#[test]
fn compressed_key_name_is_read() {
    // A key named like the zone: BIND compresses the TSIG owner into a pointer.
    let t = 1_700_000_000;
    let mut r = KeyRing::new();
    let k = Key::new(&name("example."), Algorithm::HmacSha256, vec![5; 32]);
    r.insert(
        k.clone(),
        Location {
            source: "t".into(),
            line: None,
        },
    )
    .unwrap();
    let mut req = query("example.", 5);
    sign_request(&mut req, &k, 300, t).unwrap();
    let start = find_tsig(&req).unwrap().unwrap().start;
    let rest = req[start + k.name.wire_len()..].to_vec();
    req.truncate(start);
    req.extend_from_slice(&[0xc0, 12]);
    req.extend_from_slice(&rest);
    assert!(verify_request(&req, &r, t).unwrap().is_some());
    // A pointer loop in the owner is FORMERR.
    let n = req.len();
    req[start..start + 2].copy_from_slice(&[0xc0, (start as u8)]);
    let _ = n;
    assert!(matches!(
        verify_request(&req, &r, t),
        Err(TsigError::Malformed(Malformed::Truncated))
    ));
}

#[test]
fn stream_signing_chains_macs_and_counts_unsigned() {
    let t = 1_700_000_000;
    let r = ring();
    let k = key("key-hmac-sha384.example.");
    let mut req = query("example.", 0);
    let req_mac = sign_request(&mut req, &k, 300, t).unwrap();
    let v = verify_request(&req, &r, t).unwrap().unwrap();
    let mut signer = StreamSigner::new(&v);
    let mut verifier = StreamVerifier::new(&k, &req_mac);
    // A transfer message: no question, one A record in the answer.
    let msg = |i: u8| {
        let mut m = vec![0x12, 0x34, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, i]);
        m
    };
    let first_unsigned = msg(0);
    assert!(
        !signer.skip(&first_unsigned),
        "the first message must be signed"
    );
    let plan = [true, false, false, true, false, true];
    let mut sent = Vec::new();
    for (i, &sign) in plan.iter().enumerate() {
        let mut m = msg(i as u8);
        if sign {
            signer.sign(&mut m, t + i as u64).unwrap();
        } else {
            assert!(signer.skip(&m));
        }
        sent.push(m);
    }
    for (i, m) in sent.iter().enumerate() {
        assert_eq!(verifier.verify(m, t + 6).unwrap(), plan[i], "message {i}");
    }
    // A change in an unsigned message breaks the next signed one.
    let mut verifier = StreamVerifier::new(&k, &req_mac);
    let mut forged = sent.clone();
    forged[1][HEADER_LEN + 14] ^= 1;
    assert!(verifier.verify(&forged[0], t).unwrap());
    assert!(!verifier.verify(&forged[1], t).unwrap());
    assert!(!verifier.verify(&forged[2], t).unwrap());
    assert_eq!(
        verifier.verify(&forged[3], t).unwrap_err(),
        ResponseError::BadSig
    );

    // At most 99 unsigned in a row, on both sides.
    let mut signer = StreamSigner::new(&v);
    let mut first = msg(0);
    signer.sign(&mut first, t).unwrap();
    let mut verifier = StreamVerifier::new(&k, &req_mac);
    verifier.verify(&first, t).unwrap();
    for _ in 0..MAX_UNSIGNED_IN_A_ROW {
        assert!(signer.skip(&msg(1)));
        assert!(!verifier.verify(&msg(1), t).unwrap());
    }
    assert!(!signer.skip(&msg(1)));
    assert_eq!(
        verifier.verify(&msg(1), t).unwrap_err(),
        ResponseError::TooManyUnsigned
    );
}

/// Catalogue rows 25–26: random and mutated messages, and random TSIG field values,
/// give FORMERR or NOTAUTH (or "unsigned"), never a panic and never acceptance of a
/// changed message.
#[test]
fn random_and_mutated_messages_never_panic() {
    let r = ring();
    let t = 1_700_000_000;
    let (good, _) = signed_update("update-key.", t);
    let mut x: u64 = 0x853c_49e6_748f_ea9b;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut accepted = 0;
    for i in 0..10_000 {
        let mut m = match i % 3 {
            0 => (0..(next() % 300))
                .map(|_| next() as u8)
                .collect::<Vec<u8>>(),
            _ => good.clone(),
        };
        for _ in 0..1 + next() % 3 {
            if m.is_empty() {
                break;
            }
            match next() % 4 {
                0 => {
                    let at = next() as usize % m.len();
                    let v = next() as u8;
                    m[at] = v;
                }
                1 => {
                    let keep = next() as usize % m.len();
                    m.truncate(keep);
                }
                2 => {
                    m.push(next() as u8);
                }
                _ => {
                    // Random TSIG fields after the algorithm name (time, fudge, MAC
                    // size, MAC, original ID, error, other).
                    let start = good.len() - 60;
                    if m.len() > start {
                        let at = start + next() as usize % (m.len() - start);
                        let v = next() as u8;
                        m[at] = v;
                    }
                }
            }
        }
        // The ID is the one part the MAC does not cover (the Original ID stands in).
        let changed = m.len() != good.len() || m[2..] != good[2..];
        match verify_request(&m, &r, t) {
            Ok(Some(_)) => {
                accepted += 1;
                assert!(!changed || i % 3 == 0, "a changed message verified: {m:?}");
            }
            Ok(None) => {}
            Err(e) => assert!(matches!(e.rcode(), Rcode::FORMERR | Rcode::NOTAUTH)),
        }
        fuzz_verify(&m);
    }
    assert!(accepted < 10_000);
}

// --- Interoperability with hickory-proto's TSIG (an independent implementation) ----

mod hickory {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
    use hickory_proto::rr::{Name as HName, RecordType, TSigResponseContext, TSigner};

    pub(super) fn algorithms() -> [(Algorithm, TsigAlgorithm); 3] {
        // hickory 0.26 implements only these three (see its `TsigAlgorithm::supported`).
        [
            (Algorithm::HmacSha256, TsigAlgorithm::HmacSha256),
            (Algorithm::HmacSha384, TsigAlgorithm::HmacSha384),
            (Algorithm::HmacSha512, TsigAlgorithm::HmacSha512),
        ]
    }

    fn signer(k: &Key, alg: TsigAlgorithm) -> TSigner {
        TSigner::new(
            k.secret.clone(),
            alg,
            HName::from_ascii(k.name.to_string()).unwrap(),
            300,
        )
        .unwrap()
    }

    fn hickory_query(id: u16, op: OpCode) -> Message {
        let mut m = Message::new(id, MessageType::Query, op);
        m.add_query(Query::query(
            HName::from_ascii("example.").unwrap(),
            RecordType::SOA,
        ));
        m
    }

    #[test]
    fn hickory_signed_request_verifies_and_our_response_verifies_in_hickory() {
        let r = ring();
        let t = now();
        for (ours, theirs) in algorithms() {
            let k = key(&format!("key-{ours}.example."));
            let mut q = hickory_query(0x4321, OpCode::Update);
            let verifier = q.finalize(&signer(&k, theirs.clone()), t).unwrap();
            let bytes = q.to_vec().unwrap();
            let v = verify_request(&bytes, &r, t)
                .unwrap_or_else(|e| panic!("{ours}: {e}"))
                .unwrap();
            assert_eq!(v.original_id, 0x4321);

            // Our signed answer, checked by hickory's client-side verifier.
            let unsigned_end = find_tsig(&bytes).unwrap().unwrap().start;
            let mut resp = response_to(&bytes[..unsigned_end], Rcode::NOERROR);
            sign_response(&mut resp, &v.response(), t).unwrap();
            verifier
                .unwrap()
                .verify(&resp)
                .unwrap_or_else(|e| panic!("{ours}: hickory refused our response: {e}"));

            // A changed secret on our side: hickory must refuse.
            let mut q = hickory_query(0x4321, OpCode::Update);
            let verifier = q.finalize(&signer(&k, theirs.clone()), t).unwrap();
            let mut bad = v.response();
            if let ResponseTsig::Signed { key, .. } = &mut bad {
                let mut kk = (**key).clone();
                kk.secret[0] ^= 1;
                *key = Arc::new(kk);
            }
            let mut resp = response_to(&bytes[..unsigned_end], Rcode::NOERROR);
            sign_response(&mut resp, &bad, t).unwrap();
            assert!(verifier.unwrap().verify(&resp).is_err());
        }
    }

    #[test]
    fn our_signed_request_verifies_in_hickory_and_its_response_verifies_here() {
        let t = now();
        for (ours, theirs) in algorithms() {
            let k = key(&format!("key-{ours}.example."));
            let s = signer(&k, theirs);
            let mut req = query("example.", 5);
            let mac = sign_request(&mut req, &k, 300, t).unwrap();
            let (their_mac, time, _) = s
                .verify_message_byte(&req, None, true)
                .unwrap_or_else(|e| panic!("{ours}: hickory refused our request: {e}"));
            assert_eq!((their_mac, time), (mac.clone(), t));

            // hickory's server-side response signer, checked by our client side.
            let mut resp = Message::response(0x1234, OpCode::Update);
            resp.add_query(Query::query(
                HName::from_ascii("example.").unwrap(),
                RecordType::SOA,
            ));
            let unsigned = resp.to_vec().unwrap();
            let ctx = TSigResponseContext::new(0x1234, t, s.clone(), mac.clone(), None);
            resp.set_signature(ctx.sign(&unsigned).unwrap());
            let bytes = resp.to_vec().unwrap();
            verify_response(&bytes, &k, &mac, t)
                .unwrap_or_else(|e| panic!("{ours}: hickory's response refused: {e}"));

            // hickory's unsigned BADSIG answer reads as the server's BADSIG.
            let mut resp = Message::response(0x1234, OpCode::Update);
            let ctx = TSigResponseContext::bad_signature(0x1234, t, s.clone());
            let unsigned = resp.to_vec().unwrap();
            resp.set_signature(ctx.sign(&unsigned).unwrap());
            assert_eq!(
                verify_response(&resp.to_vec().unwrap(), &k, &mac, t).unwrap_err(),
                ResponseError::ServerError {
                    error: Rcode::BADSIG,
                    server_time: None
                }
            );
        }
    }

    #[test]
    fn our_stream_verifies_in_hickory() {
        // hickory's verifier expects every message of a stream signed (prior MAC +
        // message + timers, RFC 8945 §5.3.1); ours can sign that way.
        let r = ring();
        let t = now();
        for (ours, theirs) in algorithms() {
            let k = key(&format!("key-{ours}.example."));
            let mut q = hickory_query(7, OpCode::Query);
            let mut verifier = q.finalize(&signer(&k, theirs.clone()), t).unwrap().unwrap();
            let bytes = q.to_vec().unwrap();
            let v = verify_request(&bytes, &r, t).unwrap().unwrap();
            let mut stream = StreamSigner::new(&v);
            let unsigned_end = find_tsig(&bytes).unwrap().unwrap().start;
            for i in 0..3u64 {
                let mut m = response_to(&bytes[..unsigned_end], Rcode::NOERROR);
                if i > 0 {
                    // Later messages of a transfer have no question.
                    m.truncate(HEADER_LEN);
                    m[4..6].copy_from_slice(&[0, 0]);
                }
                stream.sign(&mut m, t + i).unwrap();
                verifier
                    .verify(&m)
                    .unwrap_or_else(|e| panic!("{ours}: message {i}: {e}"));
            }
        }
    }
}

// --- The real clients: dig and nsupdate from BIND 9.18 -------------------------------

/// A one-socket DNS responder on 127.0.0.1 that answers with our TSIG code: verify,
/// then sign (or, when `forge` is set, sign and then spoil the MAC).
struct Responder {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Responder {
    fn start(keys: KeyRing, clock_offset: i64, forge: bool) -> Responder {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let req = &buf[..n];
                let now = (now() as i64 + clock_offset) as u64;
                let verdict = verify_request(req, &keys, now);
                seen.push(match &verdict {
                    Ok(Some(_)) => "signed".to_string(),
                    Ok(None) => "unsigned".to_string(),
                    Err(e) => e.to_string(),
                });
                let Some(end) = find_tsig(req).ok().flatten().map(|t| t.start) else {
                    continue;
                };
                let (rcode, tsig) = match verdict {
                    Ok(Some(v)) => (Rcode::NOERROR, Some(v.response())),
                    Ok(None) => (Rcode::REFUSED, None),
                    Err(e) => (e.rcode(), e.response()),
                };
                let mut resp = response_to(&req[..end], rcode);
                if req[2] >> 3 & 0xf == 0 && rcode == Rcode::NOERROR {
                    // A TXT answer for queries, its owner a pointer to the question.
                    resp.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 3, 2]);
                    resp.extend_from_slice(b"ok");
                    resp[7] = 1;
                }
                if let Some(tsig) = tsig {
                    let mac = sign_response(&mut resp, &tsig, now).unwrap();
                    if forge && !mac.is_empty() {
                        let n = resp.len();
                        // The MAC ends 6 octets before the end (original ID, error,
                        // other length follow it).
                        resp[n - 7] ^= 0x5a;
                    }
                }
                sock.send_to(&resp, peer).unwrap();
            }
            seen
        });
        Responder {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Whether a BIND client is installed; under CI its absence is a failure.
fn have(program: &str) -> bool {
    let found = Command::new(program)
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{program} is required under CI (Debian package bind9-dnsutils)"
        );
        eprintln!("skipped: {program} is not installed (Debian package bind9-dnsutils)");
    }
    found
}

fn dig(addr: std::net::SocketAddr, y: &str) -> String {
    let out = Command::new("dig")
        .args([
            "-p",
            &addr.port().to_string(),
            "@127.0.0.1",
            "-y",
            y,
            "+tries=1",
            "+time=2",
            "+norec",
            "example.",
            "SOA",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn dig_accepts_our_signature_and_notices_a_forged_one() {
    if !have("dig") {
        return;
    }
    for alg in Algorithm::ALL {
        let k = key(&format!("key-{alg}.example."));
        let secret = base64::engine::general_purpose::STANDARD.encode(&k.secret);
        let y = format!("{alg}:key-{alg}.example:{secret}");

        let good = Responder::start(ring(), 0, false);
        let out = dig(good.addr, &y);
        assert_eq!(good.finish(), vec!["signed"], "{alg}: {out}");
        assert!(out.contains("status: NOERROR"), "{alg}: {out}");
        assert!(out.contains("\"ok\""), "{alg}: {out}");
        assert!(!out.contains("WARNING"), "{alg}: {out}");
        assert!(!out.contains("Couldn't verify"), "{alg}: {out}");
        assert!(out.contains("TSIG PSEUDOSECTION"), "{alg}: {out}");

        let forged = Responder::start(ring(), 0, true);
        let out = dig(forged.addr, &y);
        forged.finish();
        assert!(
            out.contains(";; Couldn't verify signature: tsig verify failure")
                && out.contains(";; WARNING -- Some TSIG could not be validated"),
            "{alg}: dig accepted a forged MAC: {out}"
        );
    }
}

fn nsupdate(addr: std::net::SocketAddr, y: &str) -> (i32, String) {
    let mut child = Command::new("nsupdate")
        .args(["-y", y])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    write!(
        child.stdin.take().unwrap(),
        "server 127.0.0.1 {}\nzone example.\nupdate add h1.example. 300 A 192.0.2.1\nsend\n",
        addr.port()
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn nsupdate_sees_our_answers_and_errors_exactly() {
    if !have("nsupdate") {
        return;
    }
    let y = format!("hmac-sha256:update-key:{UPDATE_SECRET}");

    // Signed request, signed NOERROR answer: nsupdate is satisfied.
    let r = Responder::start(ring(), 0, false);
    let (code, out) = nsupdate(r.addr, &y);
    assert_eq!((code, out.as_str()), (0, ""));
    assert_eq!(r.finish(), vec!["signed"]);

    // Our answer with a spoiled MAC: nsupdate refuses it.
    let r = Responder::start(ring(), 0, true);
    let (code, out) = nsupdate(r.addr, &y);
    r.finish();
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("tsig verify failure"), "{out}");

    // Wrong secret: BADSIG, unsigned.
    let r = Responder::start(ring(), 0, false);
    let wrong = "hmac-sha256:update-key:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let (code, out) = nsupdate(r.addr, wrong);
    r.finish();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("update failed: NOTAUTH(BADSIG)"), "{out}");

    // Unknown key: BADKEY, unsigned.
    let r = Responder::start(ring(), 0, false);
    let (code, out) = nsupdate(r.addr, &format!("hmac-sha256:nobody:{UPDATE_SECRET}"));
    r.finish();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("update failed: NOTAUTH(BADKEY)"), "{out}");

    // Our clock 1000 s ahead: BADTIME, signed with our time; nsupdate verifies the
    // signed error and reports it.
    let r = Responder::start(ring(), 1000, false);
    let (code, out) = nsupdate(r.addr, &y);
    r.finish();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("update failed: NOTAUTH(BADTIME)"), "{out}");
}
