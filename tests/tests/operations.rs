//! What an operator relies on beyond the answers themselves, against the running binary:
//! the systemd notify protocol (READY, RELOADING, STOPPING), `version = "..."` for
//! `version.bind CH TXT`, unknown EDNS options ignored, and the reload counters.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;
use muster_tests::query::Query;
use muster_tests::{metric, udp_exchange, Musterd, TempDir};

const ZONE: &str = "\
$ORIGIN example.test.
$TTL 30
@   300 IN SOA ns1 hostmaster 1 3600 600 86400 60
@   300 IN NS  ns1
ns1     IN A   127.0.0.1
host    IN A   192.0.2.1
";

/// Reads notify datagrams until one contains `want`; returns everything read.
fn read_until(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.lines().any(|l| l == want);
            seen.push(msg);
            if done {
                return;
            }
        }
    }
    panic!("no {want} from musterd within 10 s; got {seen:?}");
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let dir = TempDir::new();
    let zone = dir.write("example.test.zone", ZONE);
    let notify_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut server = Musterd::start_with_env(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--watch-interval",
            "0s",
            "--zone",
            &format!("example.test.={}", zone.display()),
        ],
        &[("NOTIFY_SOCKET", notify_path.as_os_str())],
    );
    let mut seen = Vec::new();
    read_until(&sock, "READY=1", &mut seen);
    // READY comes after the sockets answer: a query works now.
    let q = Query::new("host.example.test", 1).to_bytes();
    assert!(udp_exchange(server.addr, &q, Duration::from_secs(2)).is_some());

    server.reload();
    let mut reload = Vec::new();
    read_until(&sock, "READY=1", &mut reload);
    let text = reload.join("\n");
    assert!(
        text.contains("RELOADING=1"),
        "a reload is announced: {reload:?}"
    );
    // systemd 253+ wants the reload's start time with RELOADING=1.
    assert!(text.contains("MONOTONIC_USEC="), "{reload:?}");

    let status = server.stop().expect("exit status");
    assert!(status.success(), "{status:?}");
    let mut stop = Vec::new();
    read_until(&sock, "STOPPING=1", &mut stop);
}

fn start_with_config(
    dir: &TempDir,
    extra: &str,
    metrics: bool,
) -> (Musterd, Option<std::net::SocketAddr>) {
    let zone = dir.write("example.test.zone", ZONE);
    let metrics =
        metrics.then(|| std::net::SocketAddr::from(([127, 0, 0, 1], muster_tests::free_port())));
    let metrics_line = metrics
        .map(|m| format!("metrics_listen = \"{m}\"\n"))
        .unwrap_or_default();
    let config = dir.write(
        "musterd.toml",
        &format!(
            "listen = [\"127.0.0.1:0\"]\nwatch_interval = \"0s\"\n{metrics_line}{extra}\n[[zone]]\norigin = \"example.test.\"\nfile = \"{}\"\n",
            zone.display()
        ),
    );
    let server = Musterd::start_with_args(&["serve", "--config", config.to_str().unwrap()]);
    (server, metrics)
}

fn version_bind(server: &Musterd) -> Message {
    let mut q = Query::new("version.bind", 16);
    q.qclass = 3;
    let resp = udp_exchange(server.addr, &q.to_bytes(), Duration::from_secs(2)).expect("an answer");
    Message::from_vec(&resp).expect("decodable")
}

#[test]
fn version_bind_is_refused_unless_configured() {
    let dir = TempDir::new();
    let (server, _) = start_with_config(&dir, "", false);
    let m = version_bind(&server);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
    drop(server);

    let dir = TempDir::new();
    let (server, _) = start_with_config(&dir, "version = \"muster test 1.2\"", false);
    let m = version_bind(&server);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let texts: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["muster test 1.2"], "{m:?}");
}

#[test]
fn unknown_edns_options_are_ignored() {
    let dir = TempDir::new();
    let (server, _) = start_with_config(&dir, "", false);
    let plain = Query::new("host.example.test", 1).edns(1232).to_bytes();
    // The same query with two options no server knows (codes 65001 and 65002), and an
    // empty one: the answer must be the same, with no option echoed.
    let mut with = plain.clone();
    let opts: &[u8] = &[0xfd, 0xe9, 0, 3, 1, 2, 3, 0xfd, 0xea, 0, 0];
    let rdlen = with.len() - 2;
    with[rdlen..].copy_from_slice(&(opts.len() as u16).to_be_bytes());
    with.extend_from_slice(opts);
    let a = udp_exchange(server.addr, &plain, Duration::from_secs(2)).expect("answer");
    let b = udp_exchange(server.addr, &with, Duration::from_secs(2)).expect("answer");
    assert_eq!(a, b, "unknown options change nothing in the answer");
    let m = Message::from_vec(&b).expect("decodable");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1);
    assert!(m.edns.expect("OPT").options().as_ref().is_empty());
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn reload_counters_tell_successes_from_failures() {
    let dir = TempDir::new();
    let (server, metrics) = start_with_config(&dir, "", true);
    let metrics = metrics.unwrap();
    let zone = dir.path().join("example.test.zone");
    let count = || {
        (
            metric(metrics, "musterd_reloads_total"),
            metric(metrics, "musterd_reload_failures_total"),
        )
    };
    assert_eq!(count(), (0, 0), "the first load is not a reload");
    // A good reload, then a broken one (kept serving the old zone), then a good one.
    server.reload();
    assert_eq!(count(), (1, 0));
    replace(&zone, &format!("{ZONE}broken IN A\n"));
    server.reload();
    assert_eq!(count(), (1, 1));
    replace(&zone, ZONE);
    server.reload();
    assert_eq!(count(), (2, 1));
}
