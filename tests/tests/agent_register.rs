//! `muster-agent register` (issue 9 item 6): one TSIG-signed RFC 2136 update that makes a
//! host's A/AAAA and etcd SRV records match its addresses.
//!
//! Two halves:
//! - the message itself, captured by a small UDP responder in this file that serves the
//!   records the agent reads first and answers the update REFUSED (unsigned): each
//!   section decoded with hickory and compared record by record;
//! - end to end against musterd with `--key-file`, `--allow-update` and `--state-dir`:
//!   register, replay (serial unchanged), address and port changes, deregister, wrong
//!   keys, and a 3-member etcd 3.4 cluster whose address and SRV records come only from
//!   `muster-agent exec --register-*`.

mod agent_support;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_support::{agent, output, stop_all, wait_for, zone, Cluster, DOMAIN};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use muster_tests::{require_program, require_root, Musterd, TempDir};

/// Secrets for the key files (base64 of 32 bytes, as `tsig-keygen` makes them).
const SECRET1: &str = "2r8GNuUPHEPHhaAUxR3AsR6Cxq7XeVp/Ah/bwhV1kgA=";
const SECRET2: &str = "hUv2qCxCexn1Wt5Dx7rxWsZOc9XrHzgAqEJ2UuQoWdo=";

/// A key file exactly as `tsig-keygen NAME` prints it.
fn key_file(dir: &TempDir, name: &str, algorithm: &str, secret: &str) -> PathBuf {
    dir.write(
        &format!("{name}.key"),
        &format!("key \"{name}\" {{\n\talgorithm {algorithm};\n\tsecret \"{secret}\";\n}};\n"),
    )
}

/// One record as text: `owner CLASS TYPE TTL rdata` (`UPDATE` for empty rdata).
fn show(r: &Record) -> String {
    format!(
        "{} {} {} {} {}",
        r.name,
        r.dns_class,
        r.record_type(),
        r.ttl,
        r.data
    )
}

fn shows(rs: &[Record]) -> Vec<String> {
    rs.iter().map(show).collect()
}

// ---------------------------------------------------------------------------------------
// The responder

/// A UDP "server" on 127.0.0.1: answers queries from `records` (NOERROR, possibly empty),
/// keeps every UPDATE it receives and answers it with `update_rcode`, unsigned.
struct Responder {
    addr: SocketAddr,
    updates: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl Responder {
    fn start(zone_text: &str, update_rcode: ResponseCode) -> Responder {
        let records: Vec<Record> = zone_text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(parse_record)
            .collect();
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let updates = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (u2, s2) = (updates.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65535];
            while !s2.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(req) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
                resp.add_queries(req.queries.clone());
                if req.metadata.op_code == OpCode::Update {
                    u2.lock().unwrap().push(buf[..n].to_vec());
                    resp.metadata.response_code = update_rcode;
                } else {
                    let q = &req.queries[0];
                    resp.metadata.authoritative = true;
                    resp.add_answers(
                        records
                            .iter()
                            .filter(|r| r.name == *q.name() && r.record_type() == q.query_type())
                            .cloned(),
                    );
                }
                let _ = sock.send_to(&resp.to_vec().expect("encode"), from);
            }
        });
        Responder {
            addr,
            updates,
            stop,
        }
    }

    /// The one update received, decoded.
    fn update(&self) -> Message {
        let u = self.updates.lock().unwrap();
        assert_eq!(u.len(), 1, "expected exactly one UPDATE, got {}", u.len());
        Message::from_vec(&u[0]).expect("the update decodes")
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `owner TTL TYPE rdata` for the responder's records (A, AAAA, SRV only).
fn parse_record(line: &str) -> Record {
    use hickory_proto::rr::rdata::{A, AAAA, SRV};
    use hickory_proto::rr::{Name, RData};
    let f: Vec<&str> = line.split_whitespace().collect();
    let name = Name::from_ascii(f[0]).unwrap();
    let ttl: u32 = f[1].parse().unwrap();
    let data = match f[2] {
        "A" => RData::A(A(f[3].parse().unwrap())),
        "AAAA" => RData::AAAA(AAAA(f[3].parse().unwrap())),
        "SRV" => RData::SRV(SRV::new(
            f[3].parse().unwrap(),
            f[4].parse().unwrap(),
            f[5].parse().unwrap(),
            Name::from_ascii(f[6]).unwrap(),
        )),
        other => panic!("responder records: unknown type {other}"),
    };
    Record::from_rdata(name, ttl, data)
}

/// `muster-agent register` against `server` with key host1 for m1.example.test.
fn register(dir: &TempDir, server: SocketAddr, extra: &[&str]) -> (bool, String, String) {
    let key = key_file(dir, "host1", "hmac-sha256", SECRET1);
    output(
        agent()
            .arg("register")
            .arg("--server")
            .arg(server.to_string())
            .arg("--key")
            .arg(&key)
            .args([
                "--zone",
                "example.test",
                "--hostname",
                "m1",
                "--timeout",
                "3s",
            ])
            .args(extra),
    )
}

/// Checks the zone section and the TSIG record of an update.
fn check_envelope(m: &Message) {
    assert_eq!(m.metadata.op_code, OpCode::Update);
    assert_eq!(m.metadata.message_type, MessageType::Query);
    assert_eq!(m.queries.len(), 1, "one zone");
    let z = &m.queries[0];
    assert_eq!(z.name().to_ascii(), "example.test.");
    assert_eq!(z.query_type(), RecordType::SOA);
    // Decoded into `signature` when hickory has its TSIG support enabled (a workspace
    // build unifies the agent's features), else left as the last additional record.
    let (name, tsig) = match m.signature() {
        Some(s) => (s.name.clone(), s.data.clone()),
        None => {
            let last = m
                .additionals
                .last()
                .expect("the update carries a TSIG record");
            match &last.data {
                RData::TSIG(t) => (last.name.clone(), t.clone()),
                other => panic!("the last additional record is not TSIG: {other:?}"),
            }
        }
    };
    assert_eq!(name.to_ascii(), "host1.");
    assert_eq!(tsig.algorithm.to_string(), "hmac-sha256");
    assert_eq!(tsig.mac.len(), 32, "a full HMAC-SHA256");
    assert_eq!(tsig.fudge, 300);
    assert_eq!(tsig.oid, m.metadata.id, "original ID");
    assert!(tsig.error.is_none());
}

#[test]
fn first_registration_replaces_addresses_and_adds_srv() {
    let dir = TempDir::new();
    let r = Responder::start("", ResponseCode::Refused);
    let (ok, _, err) = register(
        &dir,
        r.addr,
        &[
            "--address",
            "127.0.0.11",
            "--address",
            "2001:db8::11",
            "--srv-port",
            "2380",
            "--client-srv-port",
            "2379",
            "--cluster",
            "example.test",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("REFUSED: key \"host1\" may not change m1.example.test. A/AAAA or its SRV records in zone example.test.")
            && err.contains("(unsigned reply)"),
        "{err}"
    );
    let m = r.update();
    check_envelope(&m);
    assert_eq!(
        shows(&m.answers),
        ["m1.example.test. NONE CNAME 0 UPDATE"],
        "prerequisite: the host name is no alias"
    );
    assert_eq!(
        shows(&m.authorities),
        [
            "m1.example.test. ANY A 0 UPDATE",
            "m1.example.test. ANY AAAA 0 UPDATE",
            "m1.example.test. IN A 60 127.0.0.11",
            "m1.example.test. IN AAAA 60 2001:db8::11",
            "_etcd-server._tcp.example.test. NONE SRV 0 0 0 2380 m1.example.test.",
            "_etcd-client._tcp.example.test. NONE SRV 0 0 0 2379 m1.example.test.",
            "_etcd-server._tcp.example.test. IN SRV 60 0 0 2380 m1.example.test.",
            "_etcd-client._tcp.example.test. IN SRV 60 0 0 2379 m1.example.test.",
        ]
    );
}

#[test]
fn a_registered_host_sends_prerequisites_only() {
    let dir = TempDir::new();
    let r = Responder::start(
        "m1.example.test. 60 A 127.0.0.11\n\
         _etcd-server._tcp.example.test. 60 SRV 0 0 2380 m1.example.test.\n\
         _etcd-server._tcp.example.test. 60 SRV 0 0 2380 m2.example.test.\n",
        ResponseCode::Refused,
    );
    let (ok, _, _) = register(
        &dir,
        r.addr,
        &[
            "--address",
            "127.0.0.11",
            "--srv-port",
            "2380",
            "--cluster",
            "example.test",
        ],
    );
    assert!(!ok);
    let m = r.update();
    check_envelope(&m);
    // RFC 2136 §2.4.2/2.4.3: the A RRset is exactly this, no AAAA, no CNAME.
    assert_eq!(
        shows(&m.answers),
        [
            "m1.example.test. NONE CNAME 0 UPDATE",
            "m1.example.test. IN A 0 127.0.0.11",
            "m1.example.test. NONE AAAA 0 UPDATE",
        ]
    );
    assert!(m.authorities.is_empty(), "{:?}", shows(&m.authorities));
}

#[test]
fn stale_srv_records_of_this_host_go_and_others_stay() {
    let dir = TempDir::new();
    let r = Responder::start(
        "m1.example.test. 60 A 127.0.0.11\n\
         _etcd-server._tcp.example.test. 60 SRV 0 0 2370 m1.example.test.\n\
         _etcd-server._tcp.example.test. 60 SRV 0 0 2380 m2.example.test.\n\
         _etcd-server-ssl._tcp.example.test. 60 SRV 10 5 2380 m1.example.test.\n",
        ResponseCode::Refused,
    );
    let (ok, _, _) = register(
        &dir,
        r.addr,
        &[
            "--address",
            "127.0.0.11",
            "--srv-port",
            "2380",
            "--cluster",
            "example.test",
        ],
    );
    assert!(!ok);
    let m = r.update();
    assert_eq!(
        shows(&m.authorities),
        [
            "m1.example.test. ANY A 0 UPDATE",
            "m1.example.test. ANY AAAA 0 UPDATE",
            "m1.example.test. IN A 60 127.0.0.11",
            "_etcd-server._tcp.example.test. NONE SRV 0 0 0 2370 m1.example.test.",
            "_etcd-server-ssl._tcp.example.test. NONE SRV 0 10 5 2380 m1.example.test.",
            "_etcd-server._tcp.example.test. NONE SRV 0 0 0 2380 m1.example.test.",
            "_etcd-server._tcp.example.test. IN SRV 60 0 0 2380 m1.example.test.",
        ],
        "m2's record is never named"
    );
}

#[test]
fn deregister_deletes_addresses_and_own_srv_records() {
    let dir = TempDir::new();
    let r = Responder::start(
        "m1.example.test. 60 A 127.0.0.11\n\
         _etcd-client._tcp.example.test. 60 SRV 0 0 2379 m1.example.test.\n\
         _etcd-client._tcp.example.test. 60 SRV 0 0 2379 m2.example.test.\n",
        ResponseCode::Refused,
    );
    let (ok, _, _) = register(&dir, r.addr, &["--deregister", "--cluster", "example.test"]);
    assert!(!ok);
    let m = r.update();
    check_envelope(&m);
    assert!(m.answers.is_empty(), "{:?}", shows(&m.answers));
    assert_eq!(
        shows(&m.authorities),
        [
            "m1.example.test. ANY A 0 UPDATE",
            "m1.example.test. ANY AAAA 0 UPDATE",
            "_etcd-client._tcp.example.test. NONE SRV 0 0 0 2379 m1.example.test.",
        ]
    );
}

#[test]
fn an_unsigned_success_is_not_trusted() {
    let dir = TempDir::new();
    let r = Responder::start("", ResponseCode::NoError);
    let (ok, _, err) = register(&dir, r.addr, &["--address", "127.0.0.11"]);
    assert!(!ok);
    assert!(
        err.contains("NOERROR but the reply is not signed: it cannot be trusted"),
        "{err}"
    );
}

#[test]
fn nothing_listening_fails_with_status_1() {
    let dir = TempDir::new();
    let port = muster_tests::free_port();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let key = key_file(&dir, "host1", "hmac-sha256", SECRET1);
    let out = agent()
        .args(["register", "--server", &server.to_string(), "--key"])
        .arg(&key)
        .args([
            "--zone",
            "example.test",
            "--hostname",
            "m1",
            "--address",
            "127.0.0.11",
            "--timeout",
            "2s",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "nothing answers DNS on {server} (connection refused)"
        )),
        "{err}"
    );
}

#[test]
fn bad_flags_and_key_files_are_usage_errors() {
    let dir = TempDir::new();
    let good = key_file(&dir, "host1", "hmac-sha256", SECRET1);
    let md5 = key_file(&dir, "old", "hmac-md5", SECRET1);
    let two = dir.write(
        "two.key",
        &format!(
            "key \"a\" {{ algorithm hmac-sha256; secret \"{SECRET1}\"; }};\n\
             key \"b\" {{ algorithm hmac-sha512; secret \"{SECRET2}\"; }};\n"
        ),
    );
    let p = |p: &Path| p.display().to_string();
    let missing = dir.path().join("missing.key");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--key".into(), p(&missing)],
            "cannot read the key file",
        ),
        (
            vec!["--key".into(), p(&two)],
            "holds several keys (\"a\", \"b\"): choose one with --key-name",
        ),
        (
            vec!["--key".into(), p(&two), "--key-name".into(), "c".into()],
            "has no key \"c\"",
        ),
        (
            vec!["--key".into(), p(&md5)],
            "create the key with `tsig-keygen -a hmac-sha256 old`",
        ),
        (
            vec!["--key".into(), p(&good), "--srv-port".into(), "2380".into()],
            "--cluster",
        ),
        (
            vec![
                "--key".into(),
                p(&good),
                "--hostname".into(),
                "m1.other.test.".into(),
            ],
            "is not in zone example.test.",
        ),
        (
            vec![
                "--key".into(),
                p(&good),
                "--cluster".into(),
                "other.test".into(),
                "--srv-port".into(),
                "2380".into(),
            ],
            "is not in zone example.test.",
        ),
        (
            vec!["--key".into(), p(&good), "--server".into(), "ns1".into()],
            "--server",
        ),
    ];
    for (args, want) in cases {
        let mut cmd = agent();
        cmd.args([
            "register",
            "--zone",
            "example.test",
            "--address",
            "127.0.0.11",
        ]);
        if !args.contains(&"--hostname".to_string()) {
            cmd.args(["--hostname", "m1"]);
        }
        if !args.contains(&"--server".to_string()) {
            cmd.args(["--server", "127.0.0.1:9"]);
        }
        let out = cmd.args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// Against musterd

/// musterd serving `example.test.` from a writable copy, taking updates signed by host1
/// (host2's key is known but has no grant).
struct Server {
    musterd: Musterd,
    dir: TempDir,
}

fn start_server(body: &str) -> Server {
    let dir = TempDir::new();
    key_file(&dir, "host1", "hmac-sha256", SECRET1);
    key_file(&dir, "host2", "hmac-sha256", SECRET2);
    start_server_with(dir, body, &["host1.key", "host2.key"], "example.test=host1")
}

/// musterd for `example.test.` with these key files of `dir` and this grant.
fn start_server_with(dir: TempDir, body: &str, keys: &[&str], allow: &str) -> Server {
    let zone_file = dir.write(
        "example.test.zone",
        &format!(
            "$ORIGIN example.test.\n$TTL 5\n@ IN SOA ns1 hostmaster 1 3600 600 86400 5\n  IN NS ns1\nns1 IN A 127.0.0.1\n{body}"
        ),
    );
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    let mut args = vec![
        "serve".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--zone".into(),
        format!("example.test={}", zone_file.display()),
        "--allow-update".into(),
        allow.into(),
        "--state-dir".into(),
        d("state"),
    ];
    for k in keys {
        args.extend(["--key-file".to_string(), d(k)]);
    }
    let musterd = Musterd::start_with_args(&args);
    Server { musterd, dir }
}

/// `dig +short` at the server, sorted lines.
fn dig(addr: SocketAddr, name: &str, t: &str) -> Vec<String> {
    let (ok, out, err) = output(Command::new("dig").args([
        "+short",
        "+norec",
        "+time=2",
        "+tries=1",
        &format!("@{}", addr.ip()),
        "-p",
        &addr.port().to_string(),
        name,
        t,
    ]));
    assert!(ok, "dig {name} {t}: {err}");
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

fn serial(addr: SocketAddr) -> u32 {
    let soa = dig(addr, "example.test.", "SOA");
    soa[0].split_whitespace().nth(2).unwrap().parse().unwrap()
}

fn with_key(s: &Server, key: &str, args: &[&str]) -> (bool, String, String) {
    output(
        agent()
            .arg("register")
            .arg("--server")
            .arg(s.musterd.addr.to_string())
            .arg("--key")
            .arg(s.dir.path().join(key))
            .args([
                "--zone",
                "example.test",
                "--hostname",
                "m1",
                "--timeout",
                "5s",
            ])
            .args(args),
    )
}

#[test]
fn register_replay_change_and_deregister_against_musterd() {
    if !require_program("dig") {
        return;
    }
    let s = start_server("_etcd-server._tcp IN SRV 0 0 2380 m2\nm2 IN A 127.0.0.12\n");
    let a = s.musterd.addr;
    let srv = [
        "--srv-port",
        "2380",
        "--client-srv-port",
        "2379",
        "--cluster",
        "example.test",
    ];
    let first = [&["--address", "127.0.0.11"][..], &srv].concat();

    let (ok, _, err) = with_key(&s, "host1.key", &first);
    assert!(ok, "{err}");
    assert!(
        err.contains("registered m1.example.test.: A 127.0.0.11"),
        "{err}"
    );
    assert_eq!(dig(a, "m1.example.test.", "A"), ["127.0.0.11"]);
    assert_eq!(
        dig(a, "_etcd-server._tcp.example.test.", "SRV"),
        ["0 0 2380 m1.example.test.", "0 0 2380 m2.example.test."]
    );
    assert_eq!(
        dig(a, "_etcd-client._tcp.example.test.", "SRV"),
        ["0 0 2379 m1.example.test."]
    );
    let after_first = serial(a);
    assert_eq!(after_first, 2, "one update, one serial step");

    // A replay changes nothing: prerequisites only, serial unchanged.
    let (ok, _, err) = with_key(&s, "host1.key", &first);
    assert!(ok, "{err}");
    assert!(err.contains("already registered"), "{err}");
    assert_eq!(serial(a), after_first);

    // A new lease: the old address goes, in the same update as the new one comes; a new
    // peer port replaces the old SRV record; m2 is untouched.
    let moved = [
        "--address",
        "127.0.0.21",
        "--address",
        "::1",
        "--srv-port",
        "2390",
        "--cluster",
        "example.test",
    ];
    let (ok, _, err) = with_key(&s, "host1.key", &moved);
    assert!(ok, "{err}");
    assert_eq!(dig(a, "m1.example.test.", "A"), ["127.0.0.21"]);
    assert_eq!(dig(a, "m1.example.test.", "AAAA"), ["::1"]);
    assert_eq!(
        dig(a, "_etcd-server._tcp.example.test.", "SRV"),
        ["0 0 2380 m2.example.test.", "0 0 2390 m1.example.test."]
    );
    assert!(
        dig(a, "_etcd-client._tcp.example.test.", "SRV").is_empty(),
        "no client port asked for any more"
    );
    assert_eq!(serial(a), after_first + 1);

    // A key the server knows but whose policy has no grant in the zone.
    let (ok, _, err) = with_key(&s, "host2.key", &first);
    assert!(!ok);
    assert!(
        err.contains("update of zone example.test. at")
            && err.contains(
                "with key \"host2\": REFUSED: key \"host2\" may not change m1.example.test."
            ),
        "{err}"
    );
    // A key the server does not know, and host1's name with another secret.
    key_file(&s.dir, "host3", "hmac-sha256", SECRET1);
    let (ok, _, err) = with_key(&s, "host3.key", &first);
    assert!(!ok);
    assert!(
        err.contains("NOTAUTH: BADKEY: the server does not know key \"host3\""),
        "{err}"
    );
    let forged = TempDir::new();
    let forged_key = key_file(&forged, "host1", "hmac-sha256", SECRET2);
    let (ok, _, err) = with_key(&s, &forged_key.display().to_string(), &first);
    assert!(!ok);
    assert!(
        err.contains("NOTAUTH: BADSIG: the signature does not verify"),
        "{err}"
    );
    assert_eq!(serial(a), after_first + 1, "refused updates change nothing");

    let (ok, _, err) = with_key(
        &s,
        "host1.key",
        &["--deregister", "--cluster", "example.test"],
    );
    assert!(ok, "{err}");
    assert!(err.contains("deregistered m1.example.test."), "{err}");
    assert!(dig(a, "m1.example.test.", "A").is_empty());
    assert!(dig(a, "m1.example.test.", "AAAA").is_empty());
    assert_eq!(
        dig(a, "_etcd-server._tcp.example.test.", "SRV"),
        ["0 0 2380 m2.example.test."]
    );
    assert_eq!(dig(a, "m2.example.test.", "A"), ["127.0.0.12"]);
    let (ok, _, err) = with_key(
        &s,
        "host1.key",
        &["--deregister", "--cluster", "example.test"],
    );
    assert!(ok && err.contains("nothing changed"), "{err}");
    assert_eq!(serial(a), after_first + 2);
}

#[test]
fn a_tsig_keygen_key_works_as_printed() {
    if !require_program("tsig-keygen") || !require_program("dig") {
        return;
    }
    // The same generated file for both sides, for each algorithm the agent signs with.
    for alg in ["hmac-sha256", "hmac-sha384", "hmac-sha512"] {
        let dir = TempDir::new();
        let (ok, out, err) = output(Command::new("tsig-keygen").args(["-a", alg, "gen-key"]));
        assert!(ok, "{err}");
        dir.write("gen.key", &out);
        let s = start_server_with(dir, "", &["gen.key"], "example.test=gen-key");
        let (ok, _, err) = with_key(&s, "gen.key", &["--address", "127.0.0.11"]);
        assert!(ok, "{alg}: {err}");
        assert_eq!(
            dig(s.musterd.addr, "m1.example.test.", "A"),
            ["127.0.0.11"],
            "{alg}"
        );
    }
}

/// Three hosts that only run `muster-agent exec --register-*`: the zone holds no address
/// or SRV record of any member, only the size; each member publishes its own records,
/// and the three form one healthy etcd 3.4 cluster.
#[test]
fn three_hosts_register_themselves_and_form_one_cluster() {
    if !(require_program("etcd")
        && require_program("etcdctl")
        && require_program("unshare")
        && require_root())
    {
        return;
    }
    let c = Cluster::new(3);
    let keys = TempDir::new();
    let key = key_file(&keys, "hosts", "hmac-sha256", SECRET1);
    let zone_file = c.dir.write("cluster.test.zone", &zone(1, &c.size_record()));
    let state = c.dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let ns = Musterd::start_with_args(&[
        "serve".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--zone".into(),
        format!("cluster.test={}", zone_file.display()),
        "--key-file".into(),
        key.display().to_string(),
        "--allow-update".into(),
        "cluster.test=hosts".into(),
        "--state-dir".into(),
        state.display().to_string(),
    ]);
    let mut members = Vec::new();
    for i in 0..3 {
        let mut args = c.agent_args_unsized(i, ns.addr);
        args.extend([
            "--register-server".to_string(),
            ns.addr.to_string(),
            "--register-key".into(),
            key.display().to_string(),
            "--register-zone".into(),
            DOMAIN.into(),
            "--register-hostname".into(),
            c.names[i].clone(),
            "--register-address".into(),
            "127.0.0.1".into(),
            "--register-srv-port".into(),
            c.peer[i].to_string(),
            "--register-client-srv-port".into(),
            c.client[i].to_string(),
        ]);
        members.push(c.spawn_with(i, args, "60s"));
    }
    let refs: Vec<&agent_support::Member> = members.iter().collect();
    c.wait_healthy(&refs, Duration::from_secs(60));
    let want: Vec<(String, bool)> = c.names.iter().map(|n| (n.clone(), false)).collect();
    let got = wait_for(Duration::from_secs(30), || {
        c.member_names(&c.endpoints()).filter(|m| *m == want)
    });
    assert_eq!(got, Some(want), "one cluster of the three registered hosts");
    let srv = dig(ns.addr, "_etcd-server._tcp.cluster.test.", "SRV");
    assert_eq!(srv.len(), 3, "{srv:?}");
    stop_all(&mut members);
}

// ---------------------------------------------------------------------------------------
// deploy/

/// deploy/kea-dhcp-ddns.conf is a configuration Kea's D2 accepts.
#[test]
fn the_kea_d2_example_passes_kea_check() {
    if !require_program("kea-dhcp-ddns") {
        return;
    }
    let conf = muster_tests::workspace_root().join("deploy/kea-dhcp-ddns.conf");
    let (ok, out, err) = output(Command::new("kea-dhcp-ddns").arg("-t").arg(&conf));
    assert!(ok, "kea-dhcp-ddns -t {}:\n{out}{err}", conf.display());
}

/// Runs a deploy/ hook with a fake `muster-agent` (and `logger`) on PATH that records
/// its arguments and MUSTER_* environment; returns what it recorded ("" if not run).
fn run_hook(script: &str, env: &[(&str, &str)], wait: Duration) -> String {
    let dir = TempDir::new();
    let rec = dir.path().join("recorded");
    dir.write(
        "etcd-muster",
        "MUSTER_DOMAIN=cluster.test\nMUSTER_EXPECT=3\n\
         MUSTER_ETCD_ARGS=--cert-file=/a --key-file=/b\n\
         MUSTER_REGISTER_SERVER=127.0.0.1:53\nMUSTER_REGISTER_KEY=/etc/muster/host.key\n\
         MUSTER_REGISTER_ZONE=\"cluster.test\"\nMUSTER_REGISTER_SRV_PORT=2380\n",
    );
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = format!(
        "#!/bin/sh\n{{ echo \"$@\"; env | grep '^MUSTER_' | sort; }} > {}.tmp && mv {0}.tmp {0}\n",
        rec.display()
    );
    for (name, text) in [
        ("muster-agent", fake.as_str()),
        ("logger", "#!/bin/sh\ncat >/dev/null\n"),
    ] {
        let p = dir.write(&format!("bin/{name}"), text);
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let script = muster_tests::workspace_root().join("deploy").join(script);
    let (ok, _, err) = output(
        Command::new("sh")
            .arg("-c")
            .arg(". \"$0\"")
            .arg(&script)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("MUSTER_DEFAULTS_FILE", dir.path().join("etcd-muster"))
            .envs(env.iter().copied()),
    );
    assert!(ok, "{}: {err}", script.display());
    // The dhclient hook registers in the background.
    wait_for(wait, || std::fs::read_to_string(&rec).ok()).unwrap_or_default()
}

#[test]
fn the_dhcp_hooks_register_with_the_defaults_file() {
    // Long enough for a background registration to show up, for the cases that must not.
    const QUIET: Duration = Duration::from_secs(1);
    const RUNS: Duration = Duration::from_secs(10);
    let want = "register\nMUSTER_DEFAULTS_FILE=";
    let check = |got: &str| {
        assert!(got.starts_with(want), "{got}");
        for line in [
            "MUSTER_DOMAIN=cluster.test",
            "MUSTER_REGISTER_SERVER=127.0.0.1:53",
            "MUSTER_REGISTER_KEY=/etc/muster/host.key",
            "MUSTER_REGISTER_ZONE=cluster.test",
            "MUSTER_REGISTER_SRV_PORT=2380",
        ] {
            assert!(got.lines().any(|l| l == line), "{line} missing:\n{got}");
        }
        assert!(
            !got.contains("MUSTER_ETCD_ARGS") && !got.contains("MUSTER_EXPECT"),
            "{got}"
        );
    };
    check(&run_hook(
        "dhclient-exit-hook-muster",
        &[("reason", "BOUND"), ("new_ip_address", "10.0.0.5")],
        RUNS,
    ));
    check(&run_hook(
        "dhclient-exit-hook-muster",
        &[
            ("reason", "RENEW"),
            ("new_ip_address", "10.0.0.6"),
            ("old_ip_address", "10.0.0.5"),
        ],
        RUNS,
    ));
    check(&run_hook(
        "networkd-dispatcher-muster",
        &[("IFACE", "eth0"), ("STATE", "routable")],
        RUNS,
    ));
    // A renewal of the same address, and other reasons, change nothing.
    let same = [
        ("reason", "RENEW"),
        ("new_ip_address", "10.0.0.5"),
        ("old_ip_address", "10.0.0.5"),
    ];
    assert_eq!(run_hook("dhclient-exit-hook-muster", &same, QUIET), "");
    assert_eq!(
        run_hook("dhclient-exit-hook-muster", &[("reason", "PREINIT")], QUIET),
        ""
    );
}
