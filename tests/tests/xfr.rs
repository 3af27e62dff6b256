//! Zone transfer, NOTIFY and secondary mode against real peers on loopback
//! (docs/dns-answer-rules.md §1.11–§1.13, rows 33–36): Knot and NSD as secondaries of
//! musterd (also through a NOTIFY storm and a restart, incremental throughout), musterd
//! as a secondary of Knot, and `dig AXFR` / `dig IXFR=N` against musterd.
//!
//! Knot and NSD come from the Debian packages `knot` and `nsd`; each is started in the
//! foreground with its own config, working directory and port under a TempDir (never as
//! the packaged service) and stopped by PID.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use muster_tests::{free_port, metric, require_program, run, udp_exchange, Musterd, TempDir};

/// The TSIG key every peer shares (32 octets, base64).
const SECRET: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEY: &str = "xfr-key";

fn key_file(dir: &TempDir) -> PathBuf {
    dir.write(
        "xfr.key",
        &format!("key \"{KEY}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{SECRET}\";\n}};\n"),
    )
}

/// A zone with serial `serial`, SOA timers `timers` (refresh retry expire) and `extra`.
fn zone(origin: &str, serial: u32, timers: &str, extra: &str) -> String {
    format!(
        "$ORIGIN {origin}\n$TTL 60\n\
         @ IN SOA ns1 hostmaster {serial} {timers} 60\n\
         @ IN NS ns1\n\
         ns1 IN A 127.0.0.1\n\
         _etcd-server-ssl._tcp IN SRV 0 0 2380 m1\n\
         _etcd-server-ssl._tcp IN SRV 0 0 2380 m2\n\
         m1 IN A 10.0.0.1\n\
         m2 IN A 10.0.0.2\n\
         m2 IN AAAA 2001:db8::2\n\
         txt IN TXT \"muster-size=2\"\n\
         {extra}"
    )
}

/// A daemon this test started, killed (by its PID) on drop.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(name: &'static str, cmd: &mut Command, log: PathBuf) -> Daemon {
        let out = std::fs::File::create(&log).expect("daemon log");
        let err = out.try_clone().expect("daemon log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon { name, child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        // SAFETY: kill(2) on the PID of a child we started and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log_text());
        }
    }
}

/// Runs dig and returns its standard output.
fn dig(args: &[&str]) -> String {
    let (_, out, err) = run(Command::new("dig").args(args));
    format!("{out}{err}")
}

fn at(addr: SocketAddr) -> [String; 3] {
    [
        format!("@{}", addr.ip()),
        "-p".into(),
        addr.port().to_string(),
    ]
}

/// The SOA serial `server` answers for `zone`, if it answers one.
fn serial(server: SocketAddr, zone: &str) -> Option<u32> {
    let [a, p, port] = at(server);
    let out = dig(&[&a, &p, &port, zone, "SOA", "+short", "+time=1", "+tries=1"]);
    out.split_whitespace().nth(2)?.parse().ok()
}

/// The records of an AXFR (or IXFR) as dig prints them, one normalised line each;
/// `key` signs the request.
fn transfer(server: SocketAddr, zone: &str, qtype: &str, key: bool) -> Vec<String> {
    let [a, p, port] = at(server);
    let y = format!("hmac-sha256:{KEY}:{SECRET}");
    let mut args = vec![
        a.as_str(),
        p.as_str(),
        port.as_str(),
        zone,
        qtype,
        "+noall",
        "+answer",
        "+nocmd",
    ];
    if key {
        args.extend(["-y", &y]);
    }
    dig(&args)
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| {
            l.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        })
        .collect()
}

/// The records of an AXFR as a sorted set, without the closing SOA.
fn axfr_set(server: SocketAddr, zone: &str, key: bool) -> Vec<String> {
    let mut r = transfer(server, zone, "AXFR", key);
    r.pop();
    r.sort();
    r
}

/// Asserts that dig's output of a transfer shows it failed with the header `status` (as
/// dig prints it with `+comments`) and, when given, this TSIG error, and holds no record.
fn assert_transfer_refused(out: &str, status: &str, tsig_error: Option<&str>) {
    assert!(out.contains("; Transfer failed."), "{out}");
    assert!(out.contains(status), "{status}: {out}");
    assert!(out.contains("ANSWER: 0,"), "no record: {out}");
    let tsig = out
        .lines()
        .find(|l| !l.starts_with(';') && l.split_whitespace().nth(3) == Some("TSIG"));
    match (tsig_error, tsig) {
        (Some(e), Some(l)) => assert!(
            l.split_whitespace().any(|w| w == e),
            "TSIG error {e}: {l}\n{out}"
        ),
        (Some(e), None) => panic!("no TSIG record with {e}: {out}"),
        (None, Some(l)) => panic!("a TSIG record on an unsigned refusal: {l}\n{out}"),
        (None, None) => {}
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {timeout:?}");
}

/// Writes `text` to `path` atomically, as an editor does.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write zone");
    std::fs::rename(&tmp, path).expect("rename zone");
}

fn knot_secondary_conf(dir: &Path, port: u16, zone: &str, primary: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n\
         log:\n  - target: stderr\n    any: info\n\
         database:\n    storage: \"{d}\"\n\
         key:\n  - id: {KEY}\n    algorithm: hmac-sha256\n    secret: {SECRET}\n\
         remote:\n  - id: primary\n    address: {}@{}\n    key: {KEY}\n\
         acl:\n  - id: notify_from_primary\n    address: 127.0.0.1\n    action: notify\n  - id: transfer_out\n    address: 127.0.0.1\n    action: transfer\n\
         zone:\n  - domain: {zone}\n    storage: \"{d}\"\n    file: \"{zone}zone\"\n    master: primary\n    acl: [notify_from_primary, transfer_out]\n",
        primary.ip(),
        primary.port()
    )
}

fn nsd_conf(dir: &Path, port: u16, zone: &str, primary: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "server:\n    ip-address: 127.0.0.1@{port}\n    zonesdir: \"{d}\"\n    zonelistfile: \"{d}/zone.list\"\n\
         \x20   database: \"\"\n    pidfile: \"{d}/nsd.pid\"\n    xfrdfile: \"{d}/xfrd.state\"\n    xfrdir: \"{d}\"\n\
         \x20   username: \"\"\n    chroot: \"\"\n    verbosity: 2\n    server-count: 1\n\
         remote-control:\n    control-enable: no\n\
         key:\n    name: \"{KEY}\"\n    algorithm: hmac-sha256\n    secret: \"{SECRET}\"\n\
         zone:\n    name: \"{zone}\"\n    zonefile: \"{zone}zone\"\n\
         \x20   allow-notify: 127.0.0.1 NOKEY\n    provide-xfr: 127.0.0.1 NOKEY\n    request-xfr: {}@{} {KEY}\n",
        primary.ip(),
        primary.port()
    )
}

/// Rows 33 and 34: AXFR over UDP is NOTIMP; over TCP without the key REFUSED, with a
/// wrong key NOTAUTH, with the key SOA … SOA holding every record once; a source prefix
/// allows without a key; IXFR gives a single SOA when current, the changes when the
/// history reaches, the whole zone when it does not, FORMERR for garbage in authority.
#[test]
fn dig_axfr_and_ixfr_against_musterd() {
    if !require_program("dig") {
        return;
    }
    let dir = TempDir::new();
    let keys = key_file(&dir);
    let file = dir.write("d.test.zone", &zone("d.test.", 1, "3600 600 86400", ""));
    let open = dir.write(
        "open.test.zone",
        &zone("open.test.", 7, "3600 600 86400", ""),
    );
    let metrics = free_port();
    let m = Musterd::start_with_args(&[
        "serve".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--zone".into(),
        format!("d.test.={}", file.display()),
        "--zone".into(),
        format!("open.test.={}", open.display()),
        "--key-file".into(),
        keys.display().to_string(),
        "--state-dir".into(),
        dir.path().join("state").display().to_string(),
        "--allow-transfer".into(),
        format!("d.test.=key:{KEY}"),
        "--allow-transfer".into(),
        "open.test.=127.0.0.2/32".into(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics}"),
    ]);
    let [a, p, port] = at(m.addr);

    // Row 33: AXFR over UDP.
    let q = muster_tests::query::Query::new("d.test.", 252).to_bytes();
    let r = udp_exchange(m.addr, &q, Duration::from_secs(2)).expect("an answer over UDP");
    assert_eq!(r[3] & 0xf, 4, "AXFR over UDP is NOTIMP");

    // Without the key REFUSED; with the key's name but another secret NOTAUTH/BADSIG; with
    // a key musterd does not know NOTAUTH/BADKEY (RFC 8945 §5.2). `+comments` makes dig
    // print the header of the failed transfer, the TSIG pseudo-section holds the error.
    let out = dig(&[&a, &p, &port, "d.test.", "AXFR", "+comments"]);
    assert_transfer_refused(&out, "status: REFUSED", None);
    let other_secret = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=";
    let wrong = format!("hmac-sha256:{KEY}:{other_secret}");
    let out = dig(&[&a, &p, &port, "d.test.", "AXFR", "-y", &wrong, "+comments"]);
    assert_transfer_refused(&out, "status: NOTAUTH", Some("BADSIG"));
    let unknown = format!("hmac-sha256:not-{KEY}:{other_secret}");
    let out = dig(&[
        &a,
        &p,
        &port,
        "d.test.",
        "AXFR",
        "-y",
        &unknown,
        "+comments",
    ]);
    assert_transfer_refused(&out, "status: NOTAUTH", Some("BADKEY"));

    // With the key: SOA first and last, every record once.
    let records = transfer(m.addr, "d.test.", "AXFR", true);
    assert!(records.first().unwrap().contains(" soa "), "{records:?}");
    assert_eq!(records.first(), records.last());
    let mut body = records[1..records.len() - 1].to_vec();
    let n = body.len();
    body.sort();
    body.dedup();
    assert_eq!(body.len(), n, "a record twice: {records:?}");
    assert_eq!(n, 8, "{records:?}");

    // A prefix: 127.0.0.2 may, 127.0.0.1 may not, key or not.
    let out = dig(&[
        "-b",
        "127.0.0.1",
        &a,
        &p,
        &port,
        "open.test.",
        "AXFR",
        "+comments",
    ]);
    assert_transfer_refused(&out, "status: REFUSED", None);
    let out = dig(&[
        "-b",
        "127.0.0.2",
        &a,
        &p,
        &port,
        "open.test.",
        "AXFR",
        "+noall",
        "+answer",
    ]);
    assert_eq!(
        out.lines().filter(|l| l.contains("SOA")).count(),
        2,
        "{out}"
    );

    // Row 34: IXFR, current -> one SOA; then a change, and IXFR from 1 gives the change.
    let cur = transfer(m.addr, "d.test.", "IXFR=1", true);
    assert_eq!(cur.len(), 1, "{cur:?}");
    replace(
        &file,
        &zone("d.test.", 2, "3600 600 86400", "m3 IN A 10.0.0.3\n"),
    );
    m.reload();
    // The transfer side records the difference within its 100 ms poll; until then IXFR
    // from 1 is answered with the whole zone (11 records).
    let mut inc = Vec::new();
    wait_for(
        "IXFR from serial 1 answered with the change",
        Duration::from_secs(5),
        || {
            inc = transfer(m.addr, "d.test.", "IXFR=1", true);
            inc.len() != 11
        },
    );
    let soas: Vec<&String> = inc.iter().filter(|l| l.contains(" soa ")).collect();
    assert_eq!(soas.len(), 4, "new, old, new, new: {inc:?}");
    assert!(inc.iter().any(|l| l.starts_with("m3.d.test.")), "{inc:?}");
    assert_eq!(inc.len(), 5, "{inc:?}");
    // Not in the history: the whole zone, AXFR style.
    let full = transfer(m.addr, "d.test.", "IXFR=0", true);
    assert_eq!(full.len(), 11, "{full:?}");
    // Over UDP: a single SOA, even when behind.
    let out = dig(&[
        "-b",
        "127.0.0.2",
        &a,
        &p,
        &port,
        "open.test.",
        "IXFR=1",
        "+notcp",
        "+noall",
        "+answer",
    ]);
    assert_eq!(
        out.lines().filter(|l| l.contains("SOA")).count(),
        1,
        "{out}"
    );
    assert!(out.contains(" 7 "), "{out}");

    // Garbage SOA in the authority section: FORMERR.
    let mut q = muster_tests::query::Query::new("d.test.", 251).to_bytes();
    q[9] = 1; // NSCOUNT = 1
    q.extend_from_slice(&[0xc0, 12, 0, 6, 0, 1, 0, 0, 0, 0, 0, 3, 0xc0, 12, 0]);
    let r = muster_tests::tcp_exchange(m.addr, &q);
    assert_eq!(r[3] & 0xf, 1, "garbage SOA is FORMERR: {r:?}");

    assert!(
        metric(
            format!("127.0.0.1:{metrics}").parse().unwrap(),
            "musterd_xfr_out_refused_total"
        ) >= 3
    );
}

/// Knot and NSD copy a zone from musterd (AXFR, TSIG-signed), then pick up a change
/// through NOTIFY well before their SOA refresh timer (an hour), and their AXFR equals
/// musterd's.
#[test]
fn knot_and_nsd_are_secondaries_of_musterd() {
    if !require_program("dig") || !require_program("knotd") || !require_program("nsd") {
        return;
    }
    let dir = TempDir::new();
    let keys = key_file(&dir);
    let file = dir.write("d.test.zone", &zone("d.test.", 1, "3600 600 86400", ""));
    let (kport, nport, mport) = (free_port(), free_port(), free_port());
    let m = Musterd::start_with_args(&[
        "serve".to_string(),
        "--listen".into(),
        format!("127.0.0.1:{mport}"),
        "--zone".into(),
        format!("d.test.={}", file.display()),
        "--key-file".into(),
        keys.display().to_string(),
        "--state-dir".into(),
        dir.path().join("state").display().to_string(),
        "--allow-transfer".into(),
        format!("d.test.=key:{KEY}"),
        "--allow-update".into(),
        format!("d.test.={KEY}"),
        "--notify".into(),
        format!("d.test.=127.0.0.1:{kport}"),
        "--notify".into(),
        format!("d.test.=127.0.0.1:{nport}"),
    ]);
    let kdir = dir.path().join("knot");
    let ndir = dir.path().join("nsd");
    std::fs::create_dir_all(&kdir).unwrap();
    std::fs::create_dir_all(&ndir).unwrap();
    let kconf = kdir.join("knot.conf");
    std::fs::write(&kconf, knot_secondary_conf(&kdir, kport, "d.test.", m.addr)).unwrap();
    let nconf = ndir.join("nsd.conf");
    std::fs::write(&nconf, nsd_conf(&ndir, nport, "d.test.", m.addr)).unwrap();
    let _knot = Daemon::start(
        "knotd",
        Command::new("knotd").arg("-c").arg(&kconf),
        kdir.join("log"),
    );
    let _nsd = Daemon::start(
        "nsd",
        Command::new("nsd").arg("-d").arg("-c").arg(&nconf),
        ndir.join("log"),
    );
    let knot: SocketAddr = format!("127.0.0.1:{kport}").parse().unwrap();
    let nsd: SocketAddr = format!("127.0.0.1:{nport}").parse().unwrap();
    for (name, s) in [("knot", knot), ("nsd", nsd)] {
        wait_for(
            &format!("{name} serves serial 1"),
            Duration::from_secs(20),
            || serial(s, "d.test.") == Some(1),
        );
    }
    let reference = axfr_set(m.addr, "d.test.", true);
    assert_eq!(axfr_set(knot, "d.test.", false), reference, "knot's copy");
    assert_eq!(axfr_set(nsd, "d.test.", false), reference, "nsd's copy");

    // A change on musterd reaches both through NOTIFY within seconds.
    replace(
        &file,
        &zone("d.test.", 2, "3600 600 86400", "m3 IN A 10.0.0.3\n"),
    );
    let changed = Instant::now();
    m.reload();
    // An updatable zone's hand edit gets the serial after both the file's and the
    // served one, so ask musterd which it is.
    let new = serial(m.addr, "d.test.").expect("musterd's serial");
    assert!(new >= 2, "{new}");
    for (name, s) in [("knot", knot), ("nsd", nsd)] {
        wait_for(
            &format!("{name} serves serial {new}"),
            Duration::from_secs(10),
            || serial(s, "d.test.") == Some(new),
        );
    }
    eprintln!(
        "reload -> both secondaries at serial {new}: {:?}",
        changed.elapsed()
    );
    let reference = axfr_set(m.addr, "d.test.", true);
    assert!(reference.iter().any(|l| l.starts_with("m3.d.test.")));
    assert_eq!(axfr_set(knot, "d.test.", false), reference, "knot's copy");
    assert_eq!(axfr_set(nsd, "d.test.", false), reference, "nsd's copy");
    m.wait_log(
        |l| {
            l.matches(&format!("NOTIFY acknowledged zone=d.test. serial={new}"))
                .count()
                >= 2
        },
        Duration::from_secs(5),
    );
    // Knot asks by IXFR and gets the change.
    assert!(m.log_text().contains("kind=\"ixfr\""), "{}", m.log_text());

    // A dynamic update (when nsupdate is there) goes the same way.
    if require_program("nsupdate") {
        let script = format!(
            "server 127.0.0.1 {mport}\nzone d.test.\nupdate add m4.d.test. 60 IN A 10.0.0.4\nsend\n"
        );
        let script_file = dir.write("update.txt", &script);
        let (ok, out, err) = run(Command::new("nsupdate")
            .arg("-y")
            .arg(format!("hmac-sha256:{KEY}:{SECRET}"))
            .arg(&script_file));
        assert!(ok, "nsupdate: {out}{err}");
        let updated = Instant::now();
        for (name, s) in [("knot", knot), ("nsd", nsd)] {
            wait_for(
                &format!("{name} serves the update"),
                Duration::from_secs(10),
                || {
                    dig(&[
                        &format!("@{}", s.ip()),
                        "-p",
                        &s.port().to_string(),
                        "m4.d.test.",
                        "A",
                        "+short",
                    ])
                    .contains("10.0.0.4")
                },
            );
        }
        eprintln!(
            "update -> both secondaries answer it: {:?}",
            updated.elapsed()
        );
        let reference = axfr_set(m.addr, "d.test.", true);
        assert_eq!(axfr_set(knot, "d.test.", false), reference, "knot's copy");
        assert_eq!(axfr_set(nsd, "d.test.", false), reference, "nsd's copy");
    }
}

/// musterd copies a zone from Knot (TSIG), follows a change through NOTIFY, keeps
/// serving the saved copy after a restart while Knot is down, and answers SERVFAIL
/// (EDE 22) once the SOA EXPIRE has passed.
#[test]
fn musterd_is_a_secondary_of_knot() {
    if !require_program("dig") || !require_program("knotd") || !require_program("knotc") {
        return;
    }
    let dir = TempDir::new();
    let keys = key_file(&dir);
    let (kport, mport, metrics) = (free_port(), free_port(), free_port());
    let kdir = dir.path().join("knot");
    std::fs::create_dir_all(&kdir).unwrap();
    // refresh 2, retry 1, expire 10: a refresh every two seconds, expiry ten seconds
    // after the primary goes away.
    let kzone = kdir.join("k.test.zone");
    std::fs::write(&kzone, zone("k.test.", 1, "2 1 10", "")).unwrap();
    let d = kdir.display();
    let kconf = kdir.join("knot.conf");
    std::fs::write(
        &kconf,
        format!(
            "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{kport}\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n    storage: \"{d}\"\n\
             key:\n  - id: {KEY}\n    algorithm: hmac-sha256\n    secret: {SECRET}\n\
             remote:\n  - id: musterd\n    address: 127.0.0.1@{mport}\n\
             acl:\n  - id: xfr\n    address: 127.0.0.1\n    key: {KEY}\n    action: transfer\n\
             zone:\n  - domain: k.test.\n    storage: \"{d}\"\n    file: \"k.test.zone\"\n    notify: musterd\n    acl: xfr\n    zonefile-load: difference\n"
        ),
    )
    .unwrap();
    let mut knot = Daemon::start(
        "knotd",
        Command::new("knotd").arg("-c").arg(&kconf),
        kdir.join("log"),
    );
    let kaddr: SocketAddr = format!("127.0.0.1:{kport}").parse().unwrap();
    wait_for("knot serves k.test.", Duration::from_secs(20), || {
        serial(kaddr, "k.test.") == Some(1)
    });
    let args = vec![
        "serve".to_string(),
        "--listen".into(),
        format!("127.0.0.1:{mport}"),
        "--key-file".into(),
        keys.display().to_string(),
        "--state-dir".into(),
        dir.path().join("state").display().to_string(),
        "--secondary".into(),
        format!("k.test.=127.0.0.1:{kport},key:{KEY}"),
        "--allow-transfer".into(),
        "k.test.=127.0.0.1".into(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics}"),
    ];
    let mut m = Musterd::start_with_args(&args);
    wait_for(
        "musterd serves k.test. serial 1",
        Duration::from_secs(10),
        || serial(m.addr, "k.test.") == Some(1),
    );
    // musterd hands the copy on as it got it.
    assert_eq!(
        axfr_set(m.addr, "k.test.", false),
        axfr_set(kaddr, "k.test.", true)
    );
    let answer = dig(&[
        &format!("@{}", m.addr.ip()),
        "-p",
        &mport.to_string(),
        "_etcd-server-ssl._tcp.k.test.",
        "SRV",
        "+short",
    ]);
    assert_eq!(answer.lines().count(), 2, "{answer}");

    // A change on Knot: NOTIFY, and musterd serves it well before it would poll.
    std::fs::write(&kzone, zone("k.test.", 5, "2 1 10", "m3 IN A 10.0.0.3\n")).unwrap();
    let (ok, out, err) = run(Command::new("knotc")
        .arg("-c")
        .arg(&kconf)
        .arg("zone-reload")
        .arg("k.test."));
    assert!(ok, "knotc: {out}{err}");
    wait_for("musterd serves serial 5", Duration::from_secs(10), || {
        serial(m.addr, "k.test.") == Some(5)
    });
    let a = dig(&[
        &format!("@{}", m.addr.ip()),
        "-p",
        &mport.to_string(),
        "m3.k.test.",
        "A",
        "+short",
    ]);
    assert_eq!(a.trim(), "10.0.0.3");
    // The incremental change patched the served copy (as an update does).
    assert!(m.log_text().contains("patched=true"), "{}", m.log_text());
    // Handed on incrementally to a further secondary at once: the refresh recorded the
    // change before serving serial 5.
    assert_incremental_from_1(&transfer(m.addr, "k.test.", "IXFR=1", false));
    let maddr: SocketAddr = format!("127.0.0.1:{metrics}").parse().unwrap();
    // The gauges follow within the watcher's 100 ms poll.
    wait_for(
        "the NOTIFY and serial metrics",
        Duration::from_secs(5),
        || {
            metric(maddr, "musterd_notify_received_total") >= 1
                && metric(maddr, "musterd_zone_serial{zone=\"k.test.\"}") == 5
        },
    );

    // Restart with Knot down: the saved copy serves.
    m.stop();
    knot.stop();
    let m = Musterd::start_with_args(&args);
    assert_eq!(serial(m.addr, "k.test."), Some(5), "{}", m.log_text());
    // The history came back from the zone's journal.
    assert_incremental_from_1(&transfer(m.addr, "k.test.", "IXFR=1", false));
    // Past EXPIRE (10 s after the last good refresh): SERVFAIL with EDE 22.
    wait_for("k.test. expires", Duration::from_secs(20), || {
        dig(&[
            &format!("@{}", m.addr.ip()),
            "-p",
            &mport.to_string(),
            "m3.k.test.",
            "A",
        ])
        .contains("SERVFAIL")
    });
    let out = dig(&[
        &format!("@{}", m.addr.ip()),
        "-p",
        &mport.to_string(),
        "m3.k.test.",
        "A",
    ]);
    assert!(out.contains("EDE: 22"), "{out}");
}

/// An incremental IXFR answer from serial 1 to 5 that adds m3 (RFC 1995 §4: new SOA, old
/// SOA, removals, new SOA, additions, new SOA), not the whole zone.
fn assert_incremental_from_1(lines: &[String]) {
    let field = |i: usize, f: usize| {
        lines
            .get(i)
            .and_then(|l| l.split(' ').nth(f).map(str::to_string))
    };
    assert_eq!(field(1, 3).as_deref(), Some("soa"), "{lines:#?}");
    assert_eq!(field(1, 6).as_deref(), Some("1"), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.starts_with("m3.k.test.")),
        "{lines:#?}"
    );
    assert_eq!(lines.len(), 5, "{lines:#?}");
}

/// Row 35: transfers taken while the zone keeps changing are each one version: the
/// first SOA equals the last, and the records are exactly those of that serial.
#[test]
fn axfr_during_changes_is_one_version() {
    if !require_program("dig") {
        return;
    }
    let dir = TempDir::new();
    // Version n holds 2,000 + n records r0..r(2000+n), so its size tells its serial.
    let version = |n: u32| {
        let extra: String = (0..2000 + n)
            .map(|j| format!("r{j} IN A 10.1.{}.{}\n", j / 250, j % 250))
            .collect();
        zone("v.test.", n, "3600 600 86400", &extra)
    };
    let file = dir.write("v.test.zone", &version(1));
    let m = Musterd::start_with_args(&[
        "serve".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--zone".into(),
        format!("v.test.={}", file.display()),
        "--allow-transfer".into(),
        "v.test.=127.0.0.1".into(),
        "--watch-interval".into(),
        "0s".into(),
    ]);
    let addr = m.addr;
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..30 {
            let records = transfer(addr, "v.test.", "AXFR", false);
            let serial_of = |l: &String| {
                l.split_whitespace()
                    .nth(6)
                    .and_then(|s| s.parse::<u32>().ok())
            };
            let first = records.first().and_then(serial_of).expect("an SOA first");
            assert_eq!(records.first(), records.last(), "first and last SOA differ");
            assert_eq!(
                records.len() as u32 - 2,
                8 + 2000 + first,
                "serial {first}: not its records"
            );
            seen.push(first);
        }
        seen
    });
    for n in 2..=15 {
        replace(&file, &version(n));
        m.reload();
    }
    let seen = reader.join().expect("every transfer was one version");
    eprintln!("serials seen: {seen:?}");
}

/// Incoming transfer limits (`transfer.in_max_records`, `transfer.in_max_bytes`): a
/// primary (musterd) whose zone grows past a secondary's limit is cut off with a log
/// line naming the zone and the primary, the secondary keeps serving the copy it holds,
/// and takes the zone again once it fits (the over-limit IXFR falls back to AXFR).
#[test]
fn a_transfer_over_the_limits_is_refused_and_the_old_copy_served() {
    if !require_program("dig") {
        return;
    }
    let dir = TempDir::new();
    let version = |serial: u32, n: u32| {
        let extra: String = (0..n)
            .map(|j| format!("r{j} IN TXT \"padding record {j} of the limits test\"\n"))
            .collect();
        zone("p.test.", serial, "1 1 600", &extra)
    };
    let file = dir.write("p.test.zone", &version(1, 5));
    let primary = Musterd::start_with_args(&[
        "serve".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--zone".into(),
        format!("p.test.={}", file.display()),
        "--allow-transfer".into(),
        "p.test.=127.0.0.1".into(),
        "--watch-interval".into(),
        "0s".into(),
    ]);
    let paddr = primary.addr;
    // One secondary limited in records, one in octets; the zone at serial 1 fits both
    // (14 records, under 1 KB), at serial 2 neither (306 records, over 15 KB).
    let secondary = |name: &str, limit: &str| {
        let cfg = dir.write(
            &format!("{name}.toml"),
            &format!(
                "{limit}\ntransfer.secondary = [{{ origin = \"p.test.\", primary = \"{paddr}\" }}]\n"
            ),
        );
        Musterd::start_with_args(&[
            "serve".to_string(),
            "--config".into(),
            cfg.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--state-dir".into(),
            dir.path().join(name).display().to_string(),
            "--allow-transfer".into(),
            "p.test.=127.0.0.1".into(),
        ])
    };
    let by_records = secondary("records", "transfer.in_max_records = 100");
    let by_bytes = secondary("bytes", "transfer.in_max_bytes = 8000");
    for (s, key) in [(&by_records, "in_max_records"), (&by_bytes, "in_max_bytes")] {
        wait_for(
            &format!("the {key} secondary serves serial 1"),
            Duration::from_secs(10),
            || serial(s.addr, "p.test.") == Some(1),
        );
    }
    let held = axfr_set(paddr, "p.test.", false);
    replace(&file, &version(2, 300));
    primary.reload();
    assert_eq!(serial(paddr, "p.test."), Some(2));
    for (s, key) in [(&by_records, "in_max_records"), (&by_bytes, "in_max_bytes")] {
        s.wait_log(
            |log| {
                log.lines().any(|l| {
                    l.contains("refresh failed")
                        && l.contains(&format!("transfer.{key}"))
                        && l.contains("p.test.")
                        && l.contains(&paddr.to_string())
                })
            },
            Duration::from_secs(10),
        );
        assert_eq!(serial(s.addr, "p.test."), Some(1), "{key}: the old copy");
        assert_eq!(axfr_set(s.addr, "p.test.", false), held, "{key}");
    }
    // Small again: taken (the IXFR 1 -> 3 carries both changes and is still over the
    // limit, so this is the AXFR fallback).
    replace(&file, &version(3, 10));
    primary.reload();
    for (s, key) in [(&by_records, "in_max_records"), (&by_bytes, "in_max_bytes")] {
        wait_for(
            &format!("the {key} secondary serves serial 3"),
            Duration::from_secs(10),
            || serial(s.addr, "p.test.") == Some(3),
        );
        assert_eq!(
            axfr_set(s.addr, "p.test.", false),
            axfr_set(paddr, "p.test.", false)
        );
    }
}

/// A NOTIFY storm (issue 16): 100 signed updates in quick succession, each announced to
/// Knot and NSD, which follow by IXFR. Every transfer they ask for is answered
/// incrementally (musterd's count of AXFR-style IXFR answers stays 0, and neither asks
/// for a full AXFR again), also after a musterd restart when the history comes from the
/// journal; after each batch their copies equal musterd's.
#[test]
fn notify_storm_keeps_knot_and_nsd_incremental_also_after_a_restart() {
    if !require_program("dig")
        || !require_program("knotd")
        || !require_program("nsd")
        || !require_program("nsupdate")
    {
        return;
    }
    let started = Instant::now();
    let dir = TempDir::new();
    let keys = key_file(&dir);
    let file = dir.write("d.test.zone", &zone("d.test.", 1, "3600 600 86400", ""));
    let (kport, nport, mport, metrics) = (free_port(), free_port(), free_port(), free_port());
    let metrics: SocketAddr = format!("127.0.0.1:{metrics}").parse().unwrap();
    let args = vec![
        "serve".to_string(),
        "--listen".into(),
        format!("127.0.0.1:{mport}"),
        "--metrics-listen".into(),
        metrics.to_string(),
        "--zone".into(),
        format!("d.test.={}", file.display()),
        "--key-file".into(),
        keys.display().to_string(),
        "--state-dir".into(),
        dir.path().join("state").display().to_string(),
        "--allow-transfer".into(),
        format!("d.test.=key:{KEY}"),
        "--allow-update".into(),
        format!("d.test.={KEY}"),
        "--notify".into(),
        format!("d.test.=127.0.0.1:{kport}"),
        "--notify".into(),
        format!("d.test.=127.0.0.1:{nport}"),
    ];
    let mut m = Musterd::start_with_args(&args);
    let (kdir, ndir) = (dir.path().join("knot"), dir.path().join("nsd"));
    std::fs::create_dir_all(&kdir).unwrap();
    std::fs::create_dir_all(&ndir).unwrap();
    let kconf = kdir.join("knot.conf");
    std::fs::write(&kconf, knot_secondary_conf(&kdir, kport, "d.test.", m.addr)).unwrap();
    let nconf = ndir.join("nsd.conf");
    std::fs::write(&nconf, nsd_conf(&ndir, nport, "d.test.", m.addr)).unwrap();
    let knot_daemon = Daemon::start(
        "knotd",
        Command::new("knotd").arg("-c").arg(&kconf),
        kdir.join("log"),
    );
    let nsd_daemon = Daemon::start(
        "nsd",
        Command::new("nsd").arg("-d").arg("-c").arg(&nconf),
        ndir.join("log"),
    );
    let knot: SocketAddr = format!("127.0.0.1:{kport}").parse().unwrap();
    let nsd: SocketAddr = format!("127.0.0.1:{nport}").parse().unwrap();
    let secondaries = [("knot", knot), ("nsd", nsd)];
    let in_step = |m: &Musterd, what: &str| {
        let want = serial(m.addr, "d.test.").expect("musterd's serial");
        for (name, s) in secondaries {
            wait_for(
                &format!("{what}: {name} serves serial {want}"),
                Duration::from_secs(20),
                || serial(s, "d.test.") == Some(want),
            );
        }
        let reference = axfr_set(m.addr, "d.test.", true);
        assert_eq!(axfr_set(knot, "d.test.", false), reference, "{what}: knot");
        assert_eq!(axfr_set(nsd, "d.test.", false), reference, "{what}: nsd");
        reference
    };
    in_step(&m, "first copy");
    // The first copies are whole zones (and so is each reference copy taken here); from
    // here on every transfer a secondary asks for must be incremental.
    let axfr_before = metric(metrics, "musterd_xfr_out_total{kind=\"axfr\"}");
    let xfr = |kind: &str| {
        metric(
            metrics,
            &format!("musterd_xfr_out_total{{kind=\"{kind}\"}}"),
        )
    };

    // After a storm: musterd answered every IXFR incrementally (`ixfr_axfr_style` 0) and
    // Knot never asked for more than its first AXFR. NSD 4.6 may: when one of its reloads
    // applies several IXFRs at once it logs "soa serial N update failed, restarting
    // transfer" and may ask for the whole zone again (its own race, NLnetLabs/nsd#227), so
    // each AXFR it asks for must follow such a line. `extra` is the AXFRs asked of this
    // musterd beyond the first copies and this test's own; `earlier` those of a former run.
    let check = |m: &Musterd, what: &str, extra: u64, earlier: u64| {
        let (ixfr, axfr_style) = (xfr("ixfr"), xfr("ixfr_axfr_style"));
        let nsd_restarts = nsd_daemon
            .log_text()
            .matches("update failed, restarting transfer")
            .count() as u64;
        eprintln!(
            "{what}: {ixfr} IXFR answered, {axfr_style} AXFR-style, {extra} AXFR asked again \
             (NSD restarted a transfer {nsd_restarts} times), {:?} since the start",
            started.elapsed()
        );
        assert_eq!(
            axfr_style,
            0,
            "{what}: an IXFR was answered with the whole zone:\n{}",
            m.log_text()
        );
        assert!(ixfr >= 2, "{what}: both secondaries follow by IXFR: {ixfr}");
        let knot_log = knot_daemon.log_text();
        assert_eq!(
            knot_log.matches("AXFR, incoming").count(),
            2,
            "{what}: Knot asked for the whole zone again:\n{knot_log}"
        );
        assert!(!knot_log.contains("fallback"), "{what}: {knot_log}");
        assert!(
            extra + earlier <= nsd_restarts,
            "{what}: {extra} AXFR asked again, NSD restarted only {nsd_restarts} transfers:\n{}",
            m.log_text()
        );
        extra
    };

    // One nsupdate run sends the 100 updates one after another (each its own message
    // and its own new serial), adding names and, every fifth, deleting an earlier one.
    let storm = |batch: u32| {
        let mut script = format!("server 127.0.0.1 {mport}\nzone d.test.\n");
        for i in 0..100u32 {
            if i % 5 == 4 {
                script.push_str(&format!("update delete s{batch}-{}.d.test. A\n", i - 2));
            } else {
                script.push_str(&format!(
                    "update add s{batch}-{i}.d.test. 60 IN A 10.{batch}.{}.{}\n",
                    i / 250,
                    i % 250
                ));
            }
            script.push_str("send\n");
        }
        let path = dir.write(&format!("storm{batch}.txt"), &script);
        // Bounded: 5 s an update, one retry (nsupdate's default allows 300 s), and 60 s
        // for the batch (nsupdate goes on after a failed send).
        let (ok, out, err) = run(Command::new("timeout")
            .args(["60", "nsupdate", "-t", "5", "-u", "1", "-r", "1", "-y"])
            .arg(format!("hmac-sha256:{KEY}:{SECRET}"))
            .arg(&path));
        assert!(ok, "nsupdate batch {batch}: {out}{err}");
    };
    let before = serial(m.addr, "d.test.").unwrap();
    storm(1);
    assert_eq!(serial(m.addr, "d.test.").unwrap(), before + 100);
    let copy = in_step(&m, "after the first storm");
    assert_eq!(
        copy.iter().filter(|l| l.starts_with("s1-")).count(),
        60,
        "80 added, 20 of them deleted: {copy:#?}"
    );
    let first_extra = check(&m, "the first storm", xfr("axfr") - axfr_before - 1, 0);

    // A restart: the history the secondaries ask from now comes from the journal.
    m.stop();
    m = Musterd::start_with_args(&args);
    let before = serial(m.addr, "d.test.").unwrap();
    storm(2);
    assert_eq!(serial(m.addr, "d.test.").unwrap(), before + 100);
    let copy = in_step(&m, "after the restart and the second storm");
    assert_eq!(copy.iter().filter(|l| l.starts_with("s2-")).count(), 60);
    check(
        &m,
        "the restart and the second storm",
        xfr("axfr") - 1,
        first_extra,
    );
    assert!(!m.log_text().contains("panicked"), "{}", m.log_text());
    drop((knot_daemon, nsd_daemon));
}
