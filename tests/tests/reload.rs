//! Reloading zones in the running musterd, as an operator does it: SIGHUP after an edit,
//! or just saving the file (the server polls zone files). A zone that fails to load keeps
//! serving its previous version and the log names file:line; a fixed zone is served; a
//! serial going backwards (RFC 1982 arithmetic) is warned about; SIGTERM exits 0.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;
use muster_tests::query::Query;
use muster_tests::{udp_exchange, Musterd, TempDir};

/// example.test. with serial `serial`, host.example.test. A `host`, and `extra` appended.
/// The SOA spans lines 3-9 in parentheses, so a line number after it shows that
/// multi-line records are counted right. `extra` starts on line 13.
fn zone(serial: u32, host: &str, extra: &str) -> String {
    format!(
        "$ORIGIN example.test.\n\
         $TTL 30\n\
         @ 300 IN SOA ns1 hostmaster (\n\
         \x20       {serial} ; serial\n\
         \x20       3600     ; refresh\n\
         \x20       600      ; retry\n\
         \x20       86400    ; expire\n\
         \x20       60       ; minimum\n\
         \x20       )\n\
         @ 300 IN NS ns1\n\
         ns1 IN A 127.0.0.1\n\
         host IN A {host}\n\
         {extra}"
    )
}

/// other.test. with serial `serial`.
fn other_zone(serial: u32) -> String {
    format!(
        "$ORIGIN other.test.\n$TTL 30\n@ 300 IN SOA ns1 hostmaster {serial} 3600 600 86400 60\n\
         @ 300 IN NS ns1\nns1 IN A 127.0.0.1\n"
    )
}

/// Polls until other.test. answers SOA serial `want`.
fn wait_for_other_serial(server: &Musterd, want: u32, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let m = query(server, "other.test.", 6);
        if let Some(RData::SOA(soa)) = m.answers.first().map(|r| &r.data) {
            if soa.serial == want {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "other.test. did not serve serial {want} within {timeout:?}; log:\n{}",
        server.log_text()
    );
}

/// The first line of `extra` in [`zone`].
const EXTRA_LINE: usize = 13;

/// Writes `text` to `path` atomically (temp file + rename), as editors and config
/// management do, so the server never reads a half-written file.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write zone");
    std::fs::rename(&tmp, path).expect("rename zone");
}

fn query(server: &Musterd, name: &str, qtype: u16) -> Message {
    let q = Query::new(name, qtype).id(0x524c).rd().to_bytes();
    let resp = udp_exchange(server.addr, &q, Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no answer to {name}; log:\n{}", server.log_text()));
    Message::from_vec(&resp).expect("a decodable answer")
}

/// (rcode, addresses) of `name` A.
fn a(server: &Musterd, name: &str) -> (ResponseCode, Vec<Ipv4Addr>) {
    let m = query(server, name, 1);
    let addrs = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    (m.metadata.response_code, addrs)
}

fn host(server: &Musterd) -> Vec<Ipv4Addr> {
    let (rcode, addrs) = a(server, "host.example.test.");
    assert_eq!(rcode, ResponseCode::NoError, "{}", server.log_text());
    addrs
}

fn serial(server: &Musterd) -> u32 {
    let m = query(server, "example.test.", 6);
    match m.answers.first().map(|r| &r.data) {
        Some(RData::SOA(soa)) => soa.serial,
        other => panic!("no SOA answer: {other:?}\n{}", server.log_text()),
    }
}

fn ip(s: &str) -> Vec<Ipv4Addr> {
    vec![s.parse().expect("an IPv4 address")]
}

/// Polls until `host.example.test.` is `want`; returns how long that took.
fn wait_for_host(server: &Musterd, want: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if host(server) == ip(want) {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "host.example.test. was not {want} within {timeout:?}; log:\n{}",
        server.log_text()
    );
}

fn start(path: &Path, watch: &str) -> Musterd {
    Musterd::start_with_args(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--watch-interval",
        watch,
        "--zone",
        &format!("example.test.={}", path.display()),
    ])
}

#[test]
fn sighup_with_a_broken_zone_keeps_the_previous_version() {
    let dir = TempDir::new();
    let path = dir.write("example.test.zone", &zone(1, "192.0.2.1", ""));
    // No polling: only SIGHUP reloads here.
    let mut server = start(&path, "0s");
    assert_eq!(host(&server), ip("192.0.2.1"));
    assert_eq!(serial(&server), 1);

    let p = path.display().to_string();
    // (what is wrong, the text appended to a zone with serial 2, line of the error)
    let broken = [
        ("A without address", "host2 IN A\n".to_string(), EXTRA_LINE),
        (
            "bad IPv4 address",
            "host2 IN A 192.0.2.300\n".into(),
            EXTRA_LINE,
        ),
        (
            "unknown type after comments and blank lines",
            "; a comment\n\nhost2 IN BOGUS 1\n".into(),
            EXTRA_LINE + 2,
        ),
        (
            "bad SRV port inside parentheses",
            "_x._tcp IN SRV (\n 0 0\n 99999 host )\n".into(),
            EXTRA_LINE,
        ),
        (
            "CNAME beside other data",
            "host IN CNAME ns1\n".into(),
            EXTRA_LINE,
        ),
    ];
    for (what, extra, line) in &broken {
        let before = server.log_text().len();
        replace(&path, &zone(2, "192.0.2.2", extra));
        server.reload();
        let log = server.log_text()[before..].to_string();
        assert_eq!(
            host(&server),
            ip("192.0.2.1"),
            "{what}: the broken zone must not replace the served one; log:\n{log}"
        );
        assert_eq!(serial(&server), 1, "{what}");
        let (rcode, _) = a(&server, "host2.example.test.");
        assert_eq!(rcode, ResponseCode::NXDomain, "{what}");
        assert!(
            log.contains(&format!("{p}:{line}:")),
            "{what}: the log must name {p}:{line}:\n{log}"
        );
        assert!(log.contains("keeps serving"), "{what}:\n{log}");
        assert!(log.contains("failed=1"), "{what}:\n{log}");
    }

    // The file disappears (e.g. a bad deploy): still the old version.
    let before = server.log_text().len();
    std::fs::remove_file(&path).unwrap();
    server.reload();
    assert_eq!(host(&server), ip("192.0.2.1"));
    let log = server.log_text()[before..].to_string();
    assert!(log.contains(&p) && log.contains("keeps serving"), "{log}");

    // Fixed, with new data and a higher serial: served, including a new name.
    replace(&path, &zone(5, "192.0.2.5", "new IN A 192.0.2.55\n"));
    server.reload();
    assert_eq!(host(&server), ip("192.0.2.5"));
    assert_eq!(
        a(&server, "new.example.test."),
        (ResponseCode::NoError, ip("192.0.2.55"))
    );
    assert_eq!(serial(&server), 5);
    // Negative answers carry the new SOA too.
    let m = query(&server, "gone.example.test.", 1);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    match m.authorities.first().map(|r| &r.data) {
        Some(RData::SOA(soa)) => assert_eq!(soa.serial, 5),
        other => panic!("no SOA in authority: {other:?}"),
    }
    let log = server.log_text();
    assert!(!log.contains("serial went backwards"), "{log}");
    assert!(log.contains("failed=0"), "{log}");

    let status = server.stop().expect("exit status");
    assert!(
        status.success(),
        "SIGTERM: {status:?}\n{}",
        server.log_text()
    );
}

#[test]
fn changed_file_is_picked_up_without_sighup() {
    let dir = TempDir::new();
    let path = dir.write("example.test.zone", &zone(1, "192.0.2.1", ""));
    // A second zone, changed while the first one's file stays broken: each change served
    // shows one more pass of the watcher over every zone file.
    let other = dir.write("other.test.zone", &other_zone(1));
    let server = Musterd::start_with_args(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--watch-interval",
        "1s",
        "--zone",
        &format!("example.test.={}", path.display()),
        "--zone",
        &format!("other.test.={}", other.display()),
    ]);
    assert_eq!(host(&server), ip("192.0.2.1"));

    // Saved atomically (rename): picked up within about one interval.
    replace(&path, &zone(2, "192.0.2.2", ""));
    let took = wait_for_host(&server, "192.0.2.2", Duration::from_secs(5));
    eprintln!("rename picked up after {took:?}");
    assert_eq!(serial(&server), 2);

    // Rewritten in place: picked up too.
    std::fs::write(&path, zone(3, "192.0.2.3", "")).unwrap();
    let took = wait_for_host(&server, "192.0.2.3", Duration::from_secs(5));
    eprintln!("in-place write picked up after {took:?}");

    // A broken save: the old version keeps serving, and the error is logged once, not on
    // every poll while the file stays the same.
    let p = path.display().to_string();
    replace(&path, &zone(4, "192.0.2.4", "host2 IN A\n"));
    let needle = format!("{p}:{EXTRA_LINE}:");
    server.wait_log(|l| l.contains(&needle), Duration::from_secs(5));
    // Three more passes of the watcher, each seen through the other zone's new serial.
    for serial in 2..=4 {
        replace(&other, &other_zone(serial));
        wait_for_other_serial(&server, serial, Duration::from_secs(5));
    }
    assert_eq!(host(&server), ip("192.0.2.3"));
    assert_eq!(
        server.log_text().matches(&needle).count(),
        1,
        "an unchanged broken file is reported once:\n{}",
        server.log_text()
    );

    // Fixed: picked up.
    replace(&path, &zone(5, "192.0.2.5", ""));
    wait_for_host(&server, "192.0.2.5", Duration::from_secs(5));
    assert_eq!(serial(&server), 5);
    // The watcher did all of it: three reloads of example.test. (serials 2, 3 and 5), and
    // none of them was a SIGHUP's. That a SIGHUP would have said so is shown right after.
    let log = server.log_text();
    let reloads = log
        .lines()
        .filter(|l| l.contains("zone reloaded") && l.contains("zone=example.test."))
        .count();
    assert_eq!(reloads, 3, "{log}");
    assert!(!log.contains("reload finished"), "{log}");
    server.reload();
    assert!(server.log_text().contains("reload finished"));
}

#[test]
fn serial_going_backwards_is_warned_about() {
    let dir = TempDir::new();
    let path = dir.write("example.test.zone", &zone(10, "192.0.2.10", ""));
    let server = start(&path, "0s");
    let warnings = |s: &Musterd| s.log_text().matches("serial went backwards").count();

    // Backwards: served (it is what the file says) but warned about, because secondaries
    // compare serials and would keep the old data.
    replace(&path, &zone(9, "192.0.2.9", ""));
    server.reload();
    assert_eq!(host(&server), ip("192.0.2.9"));
    assert_eq!(serial(&server), 9);
    assert_eq!(warnings(&server), 1, "{}", server.log_text());
    assert!(
        server
            .log_text()
            .contains("serial went backwards from 10 to 9"),
        "{}",
        server.log_text()
    );

    // RFC 1982: 4294967295 is 2^32 - 10 ahead of 9, more than 2^31, so going from 9 to
    // 4294967295 is backwards...
    replace(&path, &zone(u32::MAX, "192.0.2.11", ""));
    server.reload();
    assert_eq!(serial(&server), u32::MAX);
    assert_eq!(warnings(&server), 2, "{}", server.log_text());

    // ...and wrapping from 4294967295 to 5 is forwards: no warning.
    replace(&path, &zone(5, "192.0.2.12", ""));
    server.reload();
    assert_eq!(serial(&server), 5);
    assert_eq!(host(&server), ip("192.0.2.12"));
    assert_eq!(warnings(&server), 2, "{}", server.log_text());
}

#[test]
fn sigterm_exits_zero() {
    let dir = TempDir::new();
    let path = dir.write("example.test.zone", &zone(1, "192.0.2.1", ""));
    let mut server = start(&path, "1s");
    // A SIGHUP right after the "listening" line reloads; it must not kill the server
    // (SIGHUP's default action) while handlers are still being installed.
    server.reload();
    assert_eq!(host(&server), ip("192.0.2.1"));

    let started = Instant::now();
    let status = server.stop().expect("exit status");
    let took = started.elapsed();
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status:?}; log:\n{}",
        server.log_text()
    );
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    assert!(
        server.log_text().contains("shutting down"),
        "{}",
        server.log_text()
    );
    // Nothing answers any more.
    let q = Query::new(".", 6).to_bytes();
    assert!(udp_exchange(server.addr, &q, Duration::from_millis(300)).is_none());
    eprintln!("SIGTERM to exit: {took:?}");
}
