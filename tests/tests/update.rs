//! Dynamic update (RFC 2136) with TSIG against the real clients: `nsupdate` with keys made
//! by `tsig-keygen`, checked with `dig`; crash safety by `kill -9` during a stream of
//! acknowledged updates; torn and corrupted journals; hand edits merged with updates.
//! See docs/dns-answer-rules.md §1.10 and catalogue rows 22–32, 37–39.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use muster_server::proto::tsig;
use muster_tests::{
    free_port, metric, query::Query, require_program, run, udp_exchange, Musterd, TempDir,
};

const ZONE: &str = "$ORIGIN d.test.
$TTL 30
@ 300 IN SOA ns1 hostmaster 10 3600 600 86400 60
@ 300 IN NS ns1
ns1 IN A 127.0.0.1
www IN A 10.0.0.1
www IN A 10.0.0.2
alias IN CNAME www
_etcd-server._tcp IN SRV 0 0 2380 m0
m0 IN A 10.1.0.1
";

/// The names and types whose answers must not change unless a test changes them.
const WATCHED: &[(&str, &str)] = &[
    ("d.test.", "NS"),
    ("ns1.d.test.", "A"),
    ("www.d.test.", "A"),
    ("alias.d.test.", "CNAME"),
    ("_etcd-server._tcp.d.test.", "SRV"),
    ("m0.d.test.", "A"),
];

fn have_tools() -> bool {
    require_program("nsupdate") && require_program("dig") && require_program("tsig-keygen")
}

/// A key file made by `tsig-keygen -a ALG NAME`.
fn keygen(dir: &TempDir, name: &str, alg: &str) -> PathBuf {
    let (ok, out, err) = run(Command::new("tsig-keygen").args(["-a", alg, name]));
    assert!(ok, "tsig-keygen: {err}");
    dir.write(&format!("{name}.key"), &out)
}

/// The base64 secret of the first key in a key file, for `nsupdate -y`.
fn secret_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("secret"))
        .unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

struct Server {
    dir: TempDir,
    zone: PathBuf,
    key: PathBuf,
    args: Vec<String>,
    musterd: Musterd,
}

impl Server {
    /// musterd serving d.test. from a file on a fixed port, `key` allowed everything.
    fn start(extra: &[&str]) -> Server {
        Server::start_with(extra, true)
    }

    /// With `flags` false the zone and its policy come from a `--config` in `extra`.
    fn start_with(extra: &[&str], flags: bool) -> Server {
        let dir = TempDir::new();
        let zone = dir.write("d.test.zone", ZONE);
        let key = keygen(&dir, "ddns-key", "hmac-sha256");
        let port = free_port();
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--key-file".into(),
            key.display().to_string(),
            "--state-dir".into(),
            dir.path().join("state").display().to_string(),
            "--metrics-listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--watch-interval".into(),
            "200ms".into(),
        ];
        if flags {
            args.push("--zone".into());
            args.push(format!("d.test.={}", zone.display()));
            args.push("--allow-update".into());
            args.push("d.test=ddns-key".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let musterd = Musterd::start_with_args(&args);
        Server {
            dir,
            zone,
            key,
            args,
            musterd,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.musterd.addr
    }

    fn metrics(&self) -> SocketAddr {
        let i = self
            .args
            .iter()
            .position(|a| a == "--metrics-listen")
            .unwrap();
        self.args[i + 1].parse().unwrap()
    }

    fn restart(&mut self) {
        let _ = self.musterd.stop();
        self.musterd = Musterd::start_with_args(&self.args);
    }

    fn kill9(&mut self) {
        let _ = self.musterd.child.kill();
        let _ = self.musterd.child.wait();
    }

    /// nsupdate with `auth` (e.g. `["-k", file]`), the script after a `server` line.
    fn nsupdate(&self, auth: &[&str], script: &str) -> (bool, String) {
        nsupdate(self.addr(), auth, script)
    }

    fn update(&self, script: &str) -> (bool, String) {
        let key = self.key.display().to_string();
        self.nsupdate(&["-k", &key], script)
    }

    fn dig(&self, name: &str, qtype: &str) -> Vec<String> {
        dig(self.addr(), name, qtype)
    }

    fn serial(&self) -> u32 {
        let soa = self.dig("d.test.", "SOA");
        soa[0].split_whitespace().nth(2).unwrap().parse().unwrap()
    }

    fn watched(&self) -> Vec<Vec<String>> {
        WATCHED.iter().map(|(n, t)| self.dig(n, t)).collect()
    }
}

fn nsupdate(addr: SocketAddr, auth: &[&str], script: &str) -> (bool, String) {
    let mut child = Command::new("nsupdate")
        .args(auth)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nsupdate");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(
            stdin,
            "server {} {}\n{script}\nsend",
            addr.ip(),
            addr.port()
        )
        .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn dig(addr: SocketAddr, name: &str, qtype: &str) -> Vec<String> {
    let (ok, out, err) = run(Command::new("dig").args([
        &format!("@{}", addr.ip()),
        "-p",
        &addr.port().to_string(),
        name,
        qtype,
        "+short",
        "+norec",
        "+time=2",
        "+tries=2",
    ]));
    assert!(ok, "dig {name} {qtype}: {err}");
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Catalogue row 27: every prerequisite kind, its exact rcode as nsupdate prints it, and
/// the serial unchanged after each failure.
#[test]
fn prerequisites_give_exact_rcodes_and_change_nothing() {
    if !have_tools() {
        return;
    }
    let s = Server::start(&[]);
    let serial = s.serial();
    let add = "update add new.d.test. 60 A 10.9.9.9";
    for (prereq, want) in [
        ("prereq nxdomain www.d.test.", "update failed: YXDOMAIN"),
        ("prereq yxdomain nope.d.test.", "update failed: NXDOMAIN"),
        ("prereq yxrrset www.d.test. AAAA", "update failed: NXRRSET"),
        ("prereq nxrrset www.d.test. A", "update failed: YXRRSET"),
        (
            "prereq yxrrset www.d.test. A 10.0.0.1",
            "update failed: NXRRSET",
        ),
        ("prereq yxrrset www.other.test. A", "update failed: NOTZONE"),
    ] {
        let (ok, out) = s.update(&format!("zone d.test.\n{prereq}\n{add}"));
        assert!(
            !ok && out.contains(want),
            "{prereq}: expected {want:?}, got:\n{out}"
        );
        assert_eq!(s.serial(), serial, "{prereq} changed the serial");
        assert!(s.dig("new.d.test.", "A").is_empty());
    }
    // And each kind that holds lets the update through.
    for (i, prereq) in [
        "prereq yxdomain www.d.test.",
        "prereq nxdomain nope.d.test.",
        "prereq yxrrset www.d.test. A",
        "prereq nxrrset www.d.test. AAAA",
        "prereq yxrrset www.d.test. A 10.0.0.1\nprereq yxrrset www.d.test. A 10.0.0.2",
    ]
    .iter()
    .enumerate()
    {
        let (ok, out) = s.update(&format!(
            "{prereq}\nupdate add p{i}.d.test. 60 A 10.9.9.{i}"
        ));
        assert!(ok, "{prereq}: {out}");
        assert_eq!(
            s.dig(&format!("p{i}.d.test."), "A"),
            [format!("10.9.9.{i}")]
        );
    }
    assert_eq!(s.serial(), serial + 5, "one serial step per update");
}

/// Every update kind, seen by dig; nothing else changes; the serial goes up by one.
#[test]
fn every_update_kind_is_seen_and_nothing_else_changes() {
    if !have_tools() {
        return;
    }
    let s = Server::start(&[]);
    let before = s.watched();
    let serial = s.serial();
    let (ok, out) = s.update("update add h.d.test. 60 A 10.0.0.9\nupdate add h.d.test. 60 TXT \"one\"\nupdate add h.d.test. 60 DHCID AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=");
    assert!(ok, "{out}");
    assert_eq!(s.dig("h.d.test.", "A"), ["10.0.0.9"]);
    assert_eq!(
        s.dig("h.d.test.", "DHCID"),
        ["AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA="]
    );
    assert_eq!(s.serial(), serial + 1);
    // Delete one RR.
    assert!(s.update("update add h.d.test. 60 A 10.0.0.8").0);
    assert!(s.update("update delete h.d.test. A 10.0.0.9").0);
    assert_eq!(s.dig("h.d.test.", "A"), ["10.0.0.8"]);
    // Delete an RRset.
    assert!(s.update("update delete h.d.test. TXT").0);
    assert!(s.dig("h.d.test.", "TXT").is_empty());
    assert_eq!(s.dig("h.d.test.", "A"), ["10.0.0.8"]);
    // Delete all RRsets at a name.
    assert!(s.update("update delete h.d.test.").0);
    assert!(s.dig("h.d.test.", "A").is_empty() && s.dig("h.d.test.", "DHCID").is_empty());
    assert_eq!(s.serial(), serial + 5);
    // Silently ignored (NOERROR, nothing changes, serial too): CNAME where other data is,
    // data where a CNAME is, the SOA, the last apex NS, a lower serial.
    for ignored in [
        "update add www.d.test. 60 CNAME ns1.d.test.",
        "update add alias.d.test. 60 A 10.0.0.7",
        "update delete d.test. SOA",
        "update delete d.test. NS",
        "update delete d.test. NS ns1.d.test.",
        "update add d.test. 300 SOA ns1.d.test. hostmaster.d.test. 3 3600 600 86400 60",
    ] {
        let (ok, out) = s.update(ignored);
        assert!(ok, "{ignored}: {out}");
        assert_eq!(s.serial(), serial + 5, "{ignored}");
    }
    assert_eq!(s.watched(), before, "nothing else changed");
    // Over TCP (nsupdate -v) too.
    let key = s.key.display().to_string();
    let (ok, out) = s.nsupdate(&["-v", "-k", &key], "update add tcp.d.test. 60 A 10.0.0.6");
    assert!(ok, "{out}");
    assert_eq!(s.dig("tcp.d.test.", "A"), ["10.0.0.6"]);
    assert_eq!(metric(s.metrics(), "musterd_updates_accepted_total"), 12);
}

/// Adding a record to an unused name and deleting it again in one message is no change
/// (NOERROR, as BIND and Knot answer), and the zone keeps taking updates afterwards.
#[test]
fn add_and_delete_of_one_record_on_an_unused_name_is_no_change() {
    if !have_tools() {
        return;
    }
    let s = Server::start(&[]);
    let serial = s.serial();
    let (ok, out) =
        s.update("update add new3.d.test. 300 A 10.0.0.9\nupdate delete new3.d.test. A 10.0.0.9");
    assert!(ok, "add + delete on an unused name: {out}");
    assert!(s.dig("new3.d.test.", "A").is_empty());
    assert_eq!(s.serial(), serial, "nothing changed, the serial neither");
    let (ok, out) = s.update("update add new4.d.test. 300 A 10.0.0.10");
    assert!(ok, "a later update to the zone: {out}");
    assert_eq!(s.dig("new4.d.test.", "A"), ["10.0.0.10"]);
    assert_eq!(s.serial(), serial + 1);
}

/// A signed update whose MAC was seen within its fudge window is not applied again: a
/// retransmission gets the first answer, and a captured add replayed after a newer
/// delete does not bring the record back. Both copies are counted and answered signed.
#[test]
fn a_signed_update_seen_again_is_not_applied_again() {
    if !have_tools() {
        return;
    }
    let s = Server::start(&[]);
    let key = load_key(&s.key);
    let mut add = update_msg(0x4242, "replay.d.test.", [10, 7, 7, 7], "first");
    let mac = tsig::sign_request(&mut add, &key, 300, now()).unwrap();
    let send = |m: &[u8]| {
        let r = udp_exchange(s.addr(), m, Duration::from_secs(3)).expect("an answer");
        tsig::verify_response(&r, &key, &mac, now()).expect("signed for this request");
        r[3] & 0xf
    };
    assert_eq!(send(&add), 0);
    let serial = s.serial();
    assert_eq!(s.dig("replay.d.test.", "A"), ["10.7.7.7"]);
    // The client's retransmission: the same answer, applied once.
    assert_eq!(send(&add), 0);
    assert_eq!(s.serial(), serial);
    // A newer change deletes it; the captured add replayed inside the window does not
    // undo that.
    let (ok, out) = s.update("update delete replay.d.test.");
    assert!(ok, "{out}");
    assert_eq!(send(&add), 0);
    assert!(s.dig("replay.d.test.", "A").is_empty());
    assert!(s.dig("replay.d.test.", "TXT").is_empty());
    assert_eq!(s.serial(), serial + 1);
    assert_eq!(
        metric(
            s.metrics(),
            "musterd_updates_refused_total{reason=\"replay\"}"
        ),
        2
    );
    assert_eq!(metric(s.metrics(), "musterd_updates_accepted_total"), 2);
}

/// Catalogue rows 22–24: wrong key, wrong secret, stale time with nsupdate's own
/// messages; unsigned refused; all counted and nothing applied.
#[test]
fn tsig_failures_and_unsigned_updates_are_refused() {
    if !have_tools() {
        return;
    }
    let s = Server::start(&[]);
    let serial = s.serial();
    let secret = secret_of(&s.key);
    let cases: [(Vec<String>, &str); 4] = [
        (
            vec![
                "-y".into(),
                format!("hmac-sha256:ddns-key:{}", "A".repeat(43) + "="),
            ],
            "update failed: NOTAUTH(BADSIG)",
        ),
        (
            vec!["-y".into(), format!("hmac-sha256:other-key:{secret}")],
            "update failed: NOTAUTH(BADKEY)",
        ),
        (
            vec!["-y".into(), format!("hmac-sha512:ddns-key:{secret}")],
            "update failed: NOTAUTH(BADKEY)",
        ),
        (vec![], "update failed: REFUSED"),
    ];
    for (auth, want) in &cases {
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        let (ok, out) = s.nsupdate(&auth, "zone d.test.\nupdate add bad.d.test. 60 A 10.6.6.6");
        assert!(
            !ok && out.contains(want),
            "{auth:?}: expected {want:?}, got:\n{out}"
        );
    }
    assert!(s.dig("bad.d.test.", "A").is_empty());
    assert_eq!(s.serial(), serial);
    assert_eq!(
        metric(
            s.metrics(),
            "musterd_updates_refused_total{reason=\"tsig\"}"
        ),
        3
    );
    assert_eq!(
        metric(
            s.metrics(),
            "musterd_updates_refused_total{reason=\"unsigned\"}"
        ),
        1
    );
    // The right key with -y works, and nsupdate's signed SOA query (no zone line) is
    // answered signed.
    let (ok, out) = s.nsupdate(
        &["-y", &format!("hmac-sha256:ddns-key:{secret}")],
        "update add good.d.test. 60 A 10.6.6.7",
    );
    assert!(ok, "{out}");
    // dig with the key verifies the signed answer (it prints "tsig verify failure" else).
    let key = s.key.display().to_string();
    let addr = s.addr();
    let (ok, out, _) = run(Command::new("dig").args([
        "-k",
        &key,
        &format!("@{}", addr.ip()),
        "-p",
        &addr.port().to_string(),
        "d.test.",
        "SOA",
    ]));
    assert!(
        ok && out.contains("TSIG") && out.contains("NOERROR") && !out.contains("failure"),
        "{out}"
    );
}

/// Stale time: nsupdate against a musterd whose clock is 1000 s ahead (libfaketime on the
/// server; nsupdate itself does not run under it) gets BADTIME, signed with the server's
/// time, which nsupdate reports as unsynchronised clocks.
#[test]
fn stale_time_is_badtime() {
    if !have_tools() || !require_program("faketime") {
        return;
    }
    let dir = TempDir::new();
    let zone = dir.write("d.test.zone", ZONE);
    let key = keygen(&dir, "ddns-key", "hmac-sha256");
    let port = free_port();
    // libfaketime preloaded into musterd itself (the `faketime` wrapper would stand
    // between the test and the process it must stop).
    let lib = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("the faketime package installs libfaketimeMT");
    let child = Killed(
        Command::new(muster_tests::bin_path("musterd"))
            .args([
                "serve".to_string(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--zone".into(),
                format!("d.test.={}", zone.display()),
                "--key-file".into(),
                key.display().to_string(),
                "--allow-update".into(),
                "d.test=ddns-key".into(),
                "--state-dir".into(),
                dir.path().join("state").display().to_string(),
            ])
            .env("LD_PRELOAD", lib)
            .env("FAKETIME", "+1000s")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let probe = Query::new("d.test.", 6).to_bytes();
    let up = Instant::now();
    while udp_exchange(addr, &probe, Duration::from_millis(100)).is_none() {
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "musterd under faketime did not start"
        );
    }
    let k = key.display().to_string();
    let (ok, out) = nsupdate(
        addr,
        &["-k", &k],
        "zone d.test.\nupdate add late.d.test. 60 A 10.5.5.5",
    );
    drop(child);
    assert!(!ok && out.contains("clocks are unsynchronized"), "{out}");
}

/// Catalogue row 22 with a policy: a key limited to its own name and to A/AAAA/DHCID is
/// refused elsewhere, the whole update untouched.
#[test]
fn keys_outside_their_policy_are_refused() {
    if !have_tools() {
        return;
    }
    let dir = TempDir::new();
    let host = keygen(&dir, "h1.d.test.", "hmac-sha256");
    let zone_path = dir.write("d.test.zone", ZONE);
    let config = dir.write(
        "musterd.toml",
        &format!(
            "key_files = [\"{}\"]\n[[zone]]\norigin = \"d.test\"\nfile = \"{}\"\n\
             [[zone.update_policy]]\nkey = \"h1.d.test\"\nmatch = \"self\"\ntypes = [\"A\", \"AAAA\", \"DHCID\"]\n",
            host.display(),
            zone_path.display()
        ),
    );
    let (ok, out, err) = run(Command::new(muster_tests::bin_path("musterd")).args([
        "check",
        "--config",
        &config.display().to_string(),
    ]));
    assert!(ok, "musterd check --config: {out}{err}");
    let s = Server::start_with(&["--config", &config.display().to_string()], false);
    let k = host.display().to_string();
    let (ok, out) = s.nsupdate(&["-k", &k], "update add h1.d.test. 60 A 10.0.0.11");
    assert!(ok, "{out}");
    for outside in [
        "update add h1.d.test. 60 TXT \"not mine\"",
        "update add h2.d.test. 60 A 10.0.0.12",
        "update add h1.d.test. 60 A 10.0.0.13\nupdate add www.d.test. 60 A 10.0.0.14",
    ] {
        let (ok, out) = s.nsupdate(&["-k", &k], &format!("zone d.test.\n{outside}"));
        assert!(
            !ok && out.contains("update failed: REFUSED"),
            "{outside}: {out}"
        );
    }
    assert_eq!(s.dig("h1.d.test.", "A"), ["10.0.0.11"]);
    assert_eq!(s.dig("www.d.test.", "A"), ["10.0.0.1", "10.0.0.2"]);
    assert_eq!(
        metric(
            s.metrics(),
            "musterd_updates_refused_total{reason=\"policy\"}"
        ),
        3
    );
    // A policy naming an unknown key does not pass `musterd check --config`.
    let bad = dir.write(
        "bad.toml",
        &format!(
            "[[zone]]\norigin = \"d.test\"\nfile = \"{}\"\nallow_update = [\"nokey\"]\n",
            zone_path.display()
        ),
    );
    let (ok, out, err) = run(Command::new(muster_tests::bin_path("musterd")).args([
        "check",
        "--config",
        &bad.display().to_string(),
    ]));
    assert!(
        !ok && format!("{out}{err}").contains("\"nokey\" is not defined"),
        "{out}{err}"
    );
}

// ---------------------------------------------------------------------------------------
// A minimal signed-update client, for many updates quickly.

fn wire(name: &str) -> Vec<u8> {
    muster_tests::query::wire_name(name)
}

/// An UPDATE adding `name` A `ip` and TXT `tag` (two records: a partial update would show).
fn update_msg(id: u16, name: &str, ip: [u8; 4], tag: &str) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x28, 0, 0, 1, 0, 0, 0, 2, 0, 0]);
    m.extend_from_slice(&wire("d.test."));
    m.extend_from_slice(&[0, 6, 0, 1]);
    m.extend_from_slice(&wire(name));
    m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    m.extend_from_slice(&ip);
    m.extend_from_slice(&wire(name));
    m.extend_from_slice(&[
        0,
        16,
        0,
        1,
        0,
        0,
        0,
        60,
        0,
        tag.len() as u8 + 1,
        tag.len() as u8,
    ]);
    m.extend_from_slice(tag.as_bytes());
    m
}

fn load_key(path: &Path) -> tsig::Key {
    tsig::parse_key_file(&std::fs::read_to_string(path).unwrap(), "k")
        .unwrap()
        .remove(0)
        .0
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends a signed update and waits for its answer: the rcode, or `None` without one.
fn send_update(addr: SocketAddr, key: &tsig::Key, msg: &[u8], timeout: Duration) -> Option<u8> {
    let mut m = msg.to_vec();
    tsig::sign_request(&mut m, key, 300, now()).unwrap();
    let r = udp_exchange(addr, &m, timeout)?;
    (r.len() >= 12 && r[..2] == m[..2]).then_some(r[3] & 0xf)
}

/// Records of `name` of type `t` served: the answer count, or `None` if no answer.
fn count(addr: SocketAddr, name: &str, t: u16) -> Option<u16> {
    let r = udp_exchange(
        addr,
        &Query::new(name, t).to_bytes(),
        Duration::from_secs(2),
    )?;
    Some(u16::from_be_bytes([r[6], r[7]]))
}

fn soa_serial(addr: SocketAddr) -> u32 {
    let r = udp_exchange(
        addr,
        &Query::new("d.test.", 6).to_bytes(),
        Duration::from_secs(2),
    )
    .expect("SOA answer");
    // The SOA rdata ends with serial, refresh, retry, expire, minimum.
    let n = r.len();
    u32::from_be_bytes([r[n - 20], r[n - 19], r[n - 18], r[n - 17]])
}

/// A small deterministic generator for kill moments (no test depends on its values).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Catalogue row 37: kill -9 at random moments during a stream of concurrent updates, 20
/// rounds. After each restart every acknowledged update is served, no update is served
/// half (both of its records or neither), the serial never goes backwards and moved by
/// at least the number acknowledged, and no manual clean-up is needed. The write-back
/// threshold is low so that zone-file write-backs and journal compactions are killed too.
#[test]
fn kill_9_during_updates_loses_no_acknowledged_update() {
    if !have_tools() {
        return;
    }
    let cfg_dir = TempDir::new();
    let config = cfg_dir.write(
        "musterd.toml",
        "[update]\nwriteback_changes = 40\njournal_history = 20\n",
    );
    let mut s = Server::start(&["--config", &config.display().to_string()]);
    let key = Arc::new(load_key(&s.key));
    let mut acked: Vec<String> = Vec::new();
    let mut attempted: Vec<String> = Vec::new();
    let mut lcg = Lcg(now());
    let mut serial = soa_serial(s.addr());
    let mut killed_mid_stream = 0;
    for round in 0..20 {
        let addr = s.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let round_acked = Arc::new(Mutex::new(Vec::new()));
        let round_tried = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let (stop, acked, tried, key) = (
                    stop.clone(),
                    round_acked.clone(),
                    round_tried.clone(),
                    key.clone(),
                );
                std::thread::spawn(move || {
                    let mut i = 0u16;
                    while !stop.load(Ordering::Relaxed) {
                        let name = format!("r{round}-t{t}-{i}.d.test.");
                        tried.lock().unwrap().push(name.clone());
                        let msg = update_msg(
                            i.wrapping_mul(8) + t,
                            &name,
                            [10, round as u8, t as u8, i as u8],
                            &name,
                        );
                        match send_update(addr, &key, &msg, Duration::from_millis(500)) {
                            Some(0) => acked.lock().unwrap().push(name),
                            Some(rc) => panic!("update {name}: rcode {rc}"),
                            None => {}
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100 + lcg.next(500)));
        let acked_before_kill = round_acked.lock().unwrap().len();
        s.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        let round_acked = std::mem::take(&mut *round_acked.lock().unwrap());
        if round_acked.len() > acked_before_kill || !round_acked.is_empty() {
            killed_mid_stream += 1;
        }
        acked.extend(round_acked.iter().cloned());
        attempted.extend(std::mem::take(&mut *round_tried.lock().unwrap()));
        // Restart with the same flags: no clean-up.
        s.musterd = Musterd::start_with_args(&s.args);
        let addr = s.addr();
        let now_serial = soa_serial(addr);
        let moved = now_serial.wrapping_sub(serial);
        assert!(
            moved < 0x8000_0000,
            "round {round}: serial went backwards from {serial} to {now_serial}"
        );
        assert!(
            moved as usize >= round_acked.len(),
            "round {round}: serial moved {moved}, {} acknowledged; log after the restart:\n{}",
            round_acked.len(),
            s.musterd.log_text()
        );
        serial = now_serial;
        for name in &acked {
            assert_eq!(
                count(addr, name, 1),
                Some(1),
                "round {round}: acknowledged {name} A lost"
            );
            assert_eq!(
                count(addr, name, 16),
                Some(1),
                "round {round}: acknowledged {name} TXT lost"
            );
        }
        for name in &attempted {
            let (a, t) = (count(addr, name, 1), count(addr, name, 16));
            assert_eq!(
                a, t,
                "round {round}: {name} is served half (A {a:?}, TXT {t:?})"
            );
        }
    }
    assert!(
        acked.len() > 100,
        "only {} updates acknowledged in 20 rounds",
        acked.len()
    );
    assert!(killed_mid_stream >= 10);
    assert!(
        !s.musterd.log_text().contains("panicked"),
        "{}",
        s.musterd.log_text()
    );
}

fn journal_path(s: &Server) -> PathBuf {
    s.dir.path().join("state").join("d.test.journal")
}

/// Catalogue row 39 end to end: a torn tail is cut with a warning naming the offset and
/// every acknowledged update is still served; damage followed by more records stops the
/// zone from loading with a clear error.
#[test]
fn torn_and_corrupted_journals() {
    if !have_tools() {
        return;
    }
    let mut s = Server::start(&[]);
    for i in 0..3 {
        let (ok, out) = s.update(&format!("update add j{i}.d.test. 60 A 10.7.7.{i}"));
        assert!(ok, "{out}");
    }
    let serial = s.serial();
    s.kill9();
    let path = journal_path(&s);
    let clean = std::fs::read(&path).unwrap();
    // A torn tail: a record header that promises more than follows.
    let mut torn = clean.clone();
    torn.extend_from_slice(&[0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
    std::fs::write(&path, &torn).unwrap();
    s.musterd = Musterd::start_with_args(&s.args);
    let log = s.musterd.log_text();
    assert!(
        log.contains(&format!("torn record at offset {}", clean.len())),
        "{log}"
    );
    for i in 0..3 {
        assert_eq!(
            s.dig(&format!("j{i}.d.test."), "A"),
            [format!("10.7.7.{i}")]
        );
    }
    assert_eq!(s.serial(), serial);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        clean,
        "the torn tail is cut off"
    );
    s.kill9();
    // A flipped byte inside the first record, with records after it: refuse to start.
    let mut bad = clean.clone();
    let header = 8 + 2 + 1 + wire("d.test.").len() + 4;
    bad[header + 8 + 6] ^= 0x40;
    std::fs::write(&path, &bad).unwrap();
    let (ok, out, err) = run(Command::new(muster_tests::bin_path("musterd")).args(&s.args));
    assert!(!ok, "musterd started on a corrupt journal:\n{out}{err}");
    assert!(
        err.contains(&format!("the record at offset {header} is damaged"))
            && err.contains("refusing to load the zone"),
        "{err}"
    );
    // Moving it aside, as the message says, serves the zone file.
    std::fs::rename(&path, path.with_extension("bad")).unwrap();
    s.musterd = Musterd::start_with_args(&s.args);
    assert!(s.dig("j0.d.test.", "A").is_empty());
    assert_eq!(s.dig("www.d.test.", "A"), ["10.0.0.1", "10.0.0.2"]);
}

/// A hand edit (SIGHUP, then the file watcher) and updates: both are served, the serial
/// is max(file, served) + 1, and both survive a restart.
#[test]
fn hand_edits_and_updates_survive_reload_and_restart() {
    if !have_tools() {
        return;
    }
    let mut s = Server::start(&[]);
    assert!(s.update("update add a1.d.test. 60 A 10.8.8.1").0);
    let served = s.serial();
    // The operator edits the file as it is on disk (without a1: an editor's buffer
    // opened before the update), raising nothing.
    let edited = std::fs::read_to_string(&s.zone)
        .unwrap()
        .replace(
            "m0 IN A 10.1.0.1",
            "m0 IN A 10.1.0.1\nedit1 IN TXT \"by hand\"",
        )
        .replace("www IN A 10.0.0.2\n", "");
    std::fs::write(&s.zone, edited).unwrap();
    s.musterd.reload();
    assert_eq!(s.dig("a1.d.test.", "A"), ["10.8.8.1"], "the update stays");
    assert_eq!(
        s.dig("edit1.d.test.", "TXT"),
        ["\"by hand\""],
        "the edit is served"
    );
    assert_eq!(
        s.dig("www.d.test.", "A"),
        ["10.0.0.1"],
        "the edit's removal is served"
    );
    assert_eq!(s.serial(), served + 1);
    // The merged zone was written back with the served serial.
    let text = std::fs::read_to_string(&s.zone).unwrap();
    assert!(
        text.contains("a1.d.test. 60 IN A 10.8.8.1")
            && text.contains(&format!(" {} 3600", served + 1)),
        "{text}"
    );
    // An update, then an edit picked up by the watcher with a serial far above.
    assert!(s.update("update add a2.d.test. 60 A 10.8.8.2").0);
    let text = std::fs::read_to_string(&s.zone)
        .unwrap()
        .replace(&format!(" {} 3600", served + 1), " 5000 3600")
        + "edit2 60 IN TXT \"watched\"\n";
    std::fs::write(&s.zone, text).unwrap();
    let start = Instant::now();
    while s.dig("edit2.d.test.", "TXT").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the watcher did not apply the edit:\n{}",
            s.musterd.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.serial(), 5001);
    s.restart();
    for (name, t, want) in [
        ("a1.d.test.", "A", "10.8.8.1"),
        ("a2.d.test.", "A", "10.8.8.2"),
        ("edit1.d.test.", "TXT", "\"by hand\""),
        ("edit2.d.test.", "TXT", "\"watched\""),
    ] {
        assert_eq!(s.dig(name, t), [want], "{name} after restart");
    }
    assert_eq!(s.serial(), 5001);
    // And after a kill -9 too.
    assert!(s.update("update add a3.d.test. 60 A 10.8.8.3").0);
    s.kill9();
    s.musterd = Musterd::start_with_args(&s.args);
    assert_eq!(s.dig("a3.d.test.", "A"), ["10.8.8.3"]);
    assert_eq!(s.dig("edit2.d.test.", "TXT"), ["\"watched\""]);
    assert_eq!(s.serial(), 5002);
    // An edit made while musterd is down (killed after an acknowledged update that the
    // file does not hold yet): both are served after the start, the serial above both.
    assert!(s.update("update add a4.d.test. 60 A 10.8.8.4").0);
    s.kill9();
    let text = std::fs::read_to_string(&s.zone)
        .unwrap()
        .replace(" 5001 3600", " 6000 3600")
        + "edit3 60 IN TXT \"offline\"\n";
    assert!(!text.contains("a4"), "{text}");
    std::fs::write(&s.zone, text).unwrap();
    s.musterd = Musterd::start_with_args(&s.args);
    assert_eq!(s.dig("a4.d.test.", "A"), ["10.8.8.4"]);
    assert_eq!(s.dig("a3.d.test.", "A"), ["10.8.8.3"]);
    assert_eq!(s.dig("edit3.d.test.", "TXT"), ["\"offline\""]);
    assert_eq!(s.serial(), 6001);
}

/// Catalogue row 38: the journal's file system fills up (a 64 KiB tmpfs in a private mount
/// namespace). The update whose record cannot be made durable is answered SERVFAIL and
/// is not served, updates before it stay, and the failure is counted.
#[test]
fn a_full_journal_disk_fails_updates_without_applying_them() {
    if !have_tools() || !muster_tests::require_root() || !require_program("unshare") {
        return;
    }
    let dir = TempDir::new();
    let zone = dir.write("d.test.zone", ZONE);
    let key_path = keygen(&dir, "ddns-key", "hmac-sha256");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let port = free_port();
    let metrics = free_port();
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs {state} && exec {bin} serve --listen 127.0.0.1:{port} \
         --zone d.test.={zone} --key-file {key} --allow-update d.test=ddns-key --state-dir {state} \
         --metrics-listen 127.0.0.1:{metrics}",
        state = state.display(),
        bin = muster_tests::bin_path("musterd").display(),
        zone = zone.display(),
        key = key_path.display(),
    );
    // unshare and sh exec musterd, so the child is musterd; killed even if the test fails.
    let child = Killed(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let probe = Query::new("d.test.", 6).to_bytes();
    let up = Instant::now();
    while udp_exchange(addr, &probe, Duration::from_millis(100)).is_none() {
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "musterd did not start"
        );
    }
    let key = load_key(&key_path);
    let mut failed_at = None;
    for i in 0..5000u16 {
        let name = format!("f{i}.d.test.");
        // Long TXT data fills the 64 KiB quickly.
        let tag = format!("{name}{}", "x".repeat(200));
        match send_update(
            addr,
            &key,
            &update_msg(i, &name, [10, 0, (i >> 8) as u8, i as u8], &tag),
            Duration::from_secs(2),
        ) {
            Some(0) => {}
            Some(2) => {
                failed_at = Some(i);
                break;
            }
            other => panic!("update {i}: {other:?}"),
        }
    }
    let failed_at = failed_at.expect("the journal never filled up");
    let serial = soa_serial(addr);
    let first_failed = format!("f{failed_at}.d.test.");
    assert_eq!(
        count(addr, &first_failed, 1),
        Some(0),
        "the failed update is not served"
    );
    assert_eq!(
        count(addr, "f0.d.test.", 1),
        Some(1),
        "earlier updates stay"
    );
    // A later update is answered as it is served: SERVFAIL and absent while the journal
    // cannot take it, NOERROR and present once a compaction made room.
    let later = update_msg(9999, "later.d.test.", [10, 9, 9, 9], "later");
    match send_update(addr, &key, &later, Duration::from_secs(2)) {
        Some(2) => {
            assert_eq!(count(addr, "later.d.test.", 1), Some(0));
            assert_eq!(soa_serial(addr), serial);
        }
        Some(0) => {
            assert_eq!(count(addr, "later.d.test.", 1), Some(1));
            assert_eq!(soa_serial(addr), serial + 1);
        }
        other => panic!("later update: {other:?}"),
    }
    let m: SocketAddr = format!("127.0.0.1:{metrics}").parse().unwrap();
    assert!(metric(m, "musterd_updates_failed_total{reason=\"journal\"}") >= 1);
    drop(child);
}

/// A child process killed (and reaped) when it goes out of scope, also when a test fails.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
