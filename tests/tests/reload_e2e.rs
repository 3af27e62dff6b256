//! Reloading zones in the running musterd: a broken zone keeps the old answers, a fixed
//! one is picked up (by SIGHUP and by watching the file), a serial going backwards is
//! warned about, and SIGTERM stops the server cleanly.

use std::time::Duration;

use muster_tests::{udp_exchange, Musterd, TempDir};

fn zone(serial: u32, address: &str) -> String {
    format!(
        "$ORIGIN example.test.\n$TTL 30\n@ 300 IN SOA ns1 hostmaster {serial} 3600 600 86400 60\n\
         @ 300 IN NS ns1\nns1 IN A 127.0.0.1\nhost IN A {address}\n"
    )
}

/// The A record of host.example.test. as served now.
fn host_a(server: &Musterd) -> [u8; 4] {
    let mut q = vec![0x11, 0x22, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x04host\x07example\x04test\x00\x00\x01\x00\x01");
    let r = udp_exchange(server.addr, &q, Duration::from_secs(2)).expect("an answer");
    assert_eq!(r[3] & 0xf, 0, "rcode");
    r[r.len() - 4..].try_into().unwrap()
}

fn wait_for(server: &Musterd, want: [u8; 4]) {
    for _ in 0..100 {
        if host_a(server) == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("never served {want:?}; log:\n{}", server.log_text());
}

#[test]
fn broken_zone_keeps_old_answers_and_fixed_zone_is_served() {
    let dir = TempDir::new();
    let path = dir.write("example.test.zone", &zone(1, "192.0.2.1"));
    let mut server = Musterd::start_with_args(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--watch-interval",
        "0s",
        "--zone",
        &format!("example.test.={}", path.display()),
    ]);
    assert_eq!(host_a(&server), [192, 0, 2, 1]);

    // A syntax error on line 6: the old version keeps serving, the log names file:line.
    std::fs::write(
        &path,
        format!("{}broken IN A 10.0.0.300\n", zone(2, "192.0.2.2")),
    )
    .unwrap();
    server.reload();
    assert_eq!(
        host_a(&server),
        [192, 0, 2, 1],
        "the broken zone must not replace the old one"
    );
    let log = server.log_text();
    assert!(
        log.contains(&format!(
            "{}:7: bad A record: invalid IPv4 address \"10.0.0.300\"",
            path.display()
        )),
        "{log}"
    );
    assert!(log.contains("keeps serving"), "{log}");

    // A semantic error (CNAME beside other data) is refused the same way.
    std::fs::write(
        &path,
        format!("{}host IN CNAME ns1\n", zone(2, "192.0.2.2")),
    )
    .unwrap();
    server.reload();
    assert_eq!(host_a(&server), [192, 0, 2, 1]);

    // Fixed, with a higher serial: served.
    std::fs::write(&path, zone(3, "192.0.2.3")).unwrap();
    server.reload();
    assert_eq!(host_a(&server), [192, 0, 2, 3]);

    // Serial going backwards: served (it is what the file says) but warned about.
    std::fs::write(&path, zone(2, "192.0.2.4")).unwrap();
    server.reload();
    assert_eq!(host_a(&server), [192, 0, 2, 4]);
    assert!(
        server
            .log_text()
            .contains("serial went backwards from 3 to 2"),
        "{}",
        server.log_text()
    );

    let status = server.stop().expect("exit status");
    assert!(status.success(), "SIGTERM should exit 0, got {status:?}");
    assert!(server.log_text().contains("shutting down"));
}

#[test]
fn changed_file_is_picked_up_without_sighup() {
    let dir = TempDir::new();
    let path = dir.write("example.test.zone", &zone(1, "192.0.2.1"));
    let server = Musterd::start_with_args(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--watch-interval",
        "200ms",
        "--zone",
        &format!("example.test.={}", path.display()),
    ]);
    assert_eq!(host_a(&server), [192, 0, 2, 1]);
    // Make sure the modification time changes even on coarse-grained file systems.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, zone(2, "192.0.2.22")).unwrap();
    wait_for(&server, [192, 0, 2, 22]);
}
