//! The bad-input catalogue of docs/dns-answer-rules.md §2, rows 1-8 and 19-20, against the running
//! musterd binary (rows 9-18 are scenario files: tests/scenarios/edns.scn, answers.scn).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

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

struct Fixture {
    server: Musterd,
    metrics: SocketAddr,
    _dir: TempDir,
}

fn start(extra_config: &str) -> Fixture {
    let dir = TempDir::new();
    let zone = dir.write("example.test.zone", ZONE);
    let metrics = SocketAddr::from(([127, 0, 0, 1], muster_tests::free_port()));
    let config = dir.write(
        "musterd.toml",
        &format!(
            "listen = [\"127.0.0.1:0\"]\nmetrics_listen = \"{metrics}\"\n{extra_config}\n[[zone]]\norigin = \"example.test.\"\nfile = \"{}\"\n",
            zone.display()
        ),
    );
    let server = Musterd::start_with_args(&["serve", "--config", config.to_str().unwrap()]);
    Fixture {
        server,
        metrics,
        _dir: dir,
    }
}

/// A query for `host.example.test. A` with this ID (RD set).
fn query(id: u16) -> Vec<u8> {
    Query::new("host.example.test", 1).id(id).rd().to_bytes()
}

/// Waits until the metric reaches `want` (workers count after they answer, so the value
/// can lag the last reply by a moment); returns the last value seen.
fn wait_metric(addr: SocketAddr, name: &str, want: u64) -> u64 {
    let start = Instant::now();
    loop {
        let v = metric(addr, name);
        if v >= want || start.elapsed() > Duration::from_secs(3) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rcode(resp: &[u8]) -> u8 {
    resp[3] & 0x0f
}

fn expect_rcode(addr: SocketAddr, pkt: &[u8], want: u8, what: &str) {
    let start = Instant::now();
    let resp = udp_exchange(addr, pkt, Duration::from_secs(2))
        .unwrap_or_else(|| panic!("{what}: no response"));
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{what}: slow answer"
    );
    assert_eq!(
        rcode(&resp),
        want,
        "{what}: rcode {} (response {resp:02x?})",
        rcode(&resp)
    );
    assert_eq!(resp[..2], pkt[..2], "{what}: ID");
    assert!(resp[2] & 0x80 != 0, "{what}: QR");
}

fn still_answers(addr: SocketAddr) {
    let resp = udp_exchange(addr, &query(0x7777), Duration::from_secs(2))
        .expect("server stopped answering");
    assert_eq!(rcode(&resp), 0);
}

#[test]
fn row1_short_datagrams_are_dropped_and_counted() {
    let f = start("");
    let addr = f.server.addr;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for n in 0..12 {
        sock.send_to(&vec![0xffu8; n], addr).unwrap();
    }
    let mut buf = [0u8; 512];
    assert!(
        sock.recv_from(&mut buf).is_err(),
        "a reply to a short datagram"
    );
    // Exactly these twelve so far: nothing else has been sent to this server.
    assert_eq!(
        wait_metric(f.metrics, "musterd_malformed_dropped_total", 12),
        12,
        "each datagram shorter than a header is one counted drop"
    );
    // 10,000 random datagrams: whatever they are, the server survives and keeps answering.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut short = 0u64;
    for i in 0..10_000 {
        let len = (next() % 80) as usize;
        short += u64::from(len < 12);
        let pkt: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        sock.send_to(&pkt, addr).unwrap();
        if i % 500 == 0 {
            still_answers(addr);
        }
    }
    still_answers(addr);
    // Random datagrams shorter than a header are certain drops; the rest may be drops,
    // FORMERR or answers. The counter must have grown by at least the certain ones.
    let dropped = metric(f.metrics, "musterd_malformed_dropped_total");
    assert!(
        dropped >= 12 + short,
        "malformed_dropped_total = {dropped}, want at least {}",
        12 + short
    );
}

#[test]
fn row2_responses_are_not_answered() {
    let f = start("");
    let mut p = query(1);
    p[2] |= 0x80;
    assert!(udp_exchange(f.server.addr, &p, Duration::from_millis(500)).is_none());
    still_answers(f.server.addr);
}

#[test]
fn rows3_to_8_malformed_queries_get_formerr() {
    let f = start("");
    let a = f.server.addr;
    // Row 3: header only, QDCOUNT=0.
    expect_rcode(a, &[0, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], 1, "qdcount 0");
    // Row 4: QDCOUNT=2: duplicate question, two names, two types, two classes.
    let q1 = &query(4)[12..];
    let two = |second: &[u8]| {
        let mut p = vec![0, 4, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(q1);
        p.extend_from_slice(second);
        p
    };
    expect_rcode(a, &two(q1), 1, "duplicate question");
    expect_rcode(
        a,
        &two(b"\x03ns1\x07example\x04test\x00\x00\x01\x00\x01"),
        1,
        "two names",
    );
    expect_rcode(
        a,
        &two(b"\x04host\x07example\x04test\x00\x00\x1c\x00\x01"),
        1,
        "two types",
    );
    expect_rcode(
        a,
        &two(b"\x04host\x07example\x04test\x00\x00\x01\x00\x03"),
        1,
        "two classes",
    );
    // Row 5: truncated question; section counts larger than the data.
    let q = query(5);
    expect_rcode(a, &q[..q.len() - 2], 1, "truncated question");
    expect_rcode(a, &q[..16], 1, "truncated name");
    let mut p = query(5);
    p[6] = 0xff;
    p[7] = 0xff;
    expect_rcode(a, &p, 1, "ancount 65535");
    let mut p = query(5);
    p[10] = 0xff;
    p[11] = 0xff;
    expect_rcode(a, &p, 1, "arcount 65535");
    // Row 6: compression pointers: loop, forward, into the header, 200-hop chain.
    let name_q = |name: &[u8]| {
        let mut p = vec![0, 6, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(name);
        p.extend_from_slice(&[0, 1, 0, 1]);
        p
    };
    expect_rcode(a, &name_q(b"\xc0\x0c"), 1, "pointer to itself");
    expect_rcode(a, &name_q(b"\x01a\xc0\x0c"), 1, "pointer loop");
    expect_rcode(a, &name_q(b"\xc0\x30"), 1, "forward pointer");
    expect_rcode(a, &name_q(b"\xc0\x02"), 1, "pointer into the header");
    let mut chain = query(6);
    chain[7] = 1; // one answer record whose owner is a long pointer chain
    let base = chain.len();
    chain.extend_from_slice(b"\x01x\x00");
    let mut prev = base;
    for _ in 0..200 {
        let here = chain.len();
        chain.extend_from_slice(&(0xc000u16 | prev as u16).to_be_bytes());
        prev = here;
    }
    chain.extend_from_slice(&(0xc000u16 | prev as u16).to_be_bytes());
    chain.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
    // Backward pointers into pointers are legal one by one, but a name that takes 200
    // jumps is an attack: the parser stops after 126 (each jump must add a label to stay
    // under 255 octets) and the query gets FORMERR, quickly.
    expect_rcode(a, &chain, 1, "200-hop pointer chain");
    // Row 7: label of 64, label types 0x40 and 0x80, name over 255 octets.
    let mut l64 = vec![64u8];
    l64.extend_from_slice(&[b'a'; 64]);
    l64.push(0);
    expect_rcode(a, &name_q(&l64), 1, "label 64");
    expect_rcode(a, &name_q(b"\x41a\x00"), 1, "label type 0x40");
    expect_rcode(a, &name_q(b"\x81a\x00"), 1, "label type 0x80");
    let mut long = Vec::new();
    for _ in 0..5 {
        long.push(60u8);
        long.extend_from_slice(&[b'b'; 60]);
    }
    long.push(0);
    expect_rcode(a, &name_q(&long), 1, "name of 306 octets");
    // Row 8: two OPT; OPT with non-root owner; OPT in the answer section.
    let opt = |owner: &[u8]| {
        let mut o = owner.to_vec();
        o.extend_from_slice(&[0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        o
    };
    let mut p = query(8);
    p[11] = 2;
    p.extend(opt(b"\x00"));
    p.extend(opt(b"\x00"));
    expect_rcode(a, &p, 1, "two OPT");
    let mut p = query(8);
    p[11] = 1;
    p.extend(opt(b"\x01a\x00"));
    expect_rcode(a, &p, 1, "OPT owner not root");
    let mut p = query(8);
    p[7] = 1;
    p.extend(opt(b"\x00"));
    expect_rcode(a, &p, 1, "OPT in answer");
    // The FORMERR for a bad OPT carries no OPT (RFC 6891 §7).
    let mut p = query(8);
    p[11] = 1;
    p.extend(opt(b"\x01a\x00"));
    let r = udp_exchange(a, &p, Duration::from_secs(2)).unwrap();
    assert_eq!(&r[10..12], &[0, 0], "OPT in a FORMERR caused by OPT");
    still_answers(a);
}

fn tcp_msg(pkt: &[u8]) -> Vec<u8> {
    let mut m = (pkt.len() as u16).to_be_bytes().to_vec();
    m.extend_from_slice(pkt);
    m
}

fn read_msg(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).expect("length");
    let mut m = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut m).expect("message");
    m
}

/// Waits for the server to close the connection; returns how long it took.
fn closed_after(s: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => start.elapsed(),
        Ok(n) => panic!("unexpected {n} bytes"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => start.elapsed(),
        Err(e) => panic!("connection still open after {limit:?}: {e}"),
    }
}

#[test]
fn row19_tcp_pipelining_segments_and_stalls() {
    let f = start("tcp_idle_timeout = \"3s\"");
    let a = f.server.addr;
    // Three queries in one segment: three answers, matched by ID.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut batch = Vec::new();
    for id in [11u16, 12, 13] {
        batch.extend(tcp_msg(&query(id)));
    }
    s.write_all(&batch).unwrap();
    let mut ids: Vec<u16> = (0..3)
        .map(|_| {
            let m = read_msg(&mut s);
            assert_eq!(rcode(&m), 0);
            u16::from_be_bytes([m[0], m[1]])
        })
        .collect();
    ids.sort();
    assert_eq!(ids, vec![11, 12, 13]);
    // One byte per segment is reassembled.
    s.set_nodelay(true).unwrap();
    for b in tcp_msg(&query(14)) {
        s.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let m = read_msg(&mut s);
    assert_eq!(u16::from_be_bytes([m[0], m[1]]), 14);
    // Length 0 closes the connection.
    s.write_all(&[0, 0]).unwrap();
    closed_after(&mut s, Duration::from_secs(2));
    // A length larger than what follows, then a stall: cut off by the I/O timeout (1 s).
    let mut s = TcpStream::connect(a).unwrap();
    let mut m = tcp_msg(&query(15));
    m[1] += 10;
    s.write_all(&m).unwrap();
    let took = closed_after(&mut s, Duration::from_secs(3));
    assert!(
        took <= Duration::from_millis(1500),
        "stalled message closed after {took:?}"
    );
    // A half-sent length prefix stalls too.
    let mut s = TcpStream::connect(a).unwrap();
    s.write_all(&[0]).unwrap();
    let took = closed_after(&mut s, Duration::from_secs(3));
    assert!(
        took <= Duration::from_millis(1500),
        "stalled length closed after {took:?}"
    );
    still_answers(a);
}

#[test]
fn row20_idle_tcp_connections_are_closed() {
    let f = start("tcp_idle_timeout = \"2s\"");
    let mut s = TcpStream::connect(f.server.addr).unwrap();
    s.write_all(&tcp_msg(&query(20))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    read_msg(&mut s);
    let took = closed_after(&mut s, Duration::from_secs(5));
    assert!(
        took >= Duration::from_millis(1500) && took <= Duration::from_millis(3500),
        "idle connection closed after {took:?}, configured 2 s"
    );
    assert!(metric(f.metrics, "musterd_tcp_timeouts_total") >= 1);
}

#[test]
fn tcp_connection_cap_closes_excess() {
    let f = start("tcp_max_clients = 4");
    let a = f.server.addr;
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(a).unwrap()).collect();
    // The server has accepted the first four (nothing else connected to it over TCP).
    assert_eq!(
        wait_metric(f.metrics, "musterd_tcp_connections_total", 4),
        4,
        "the four held connections are accepted"
    );
    let mut extra = TcpStream::connect(a).unwrap();
    closed_after(&mut extra, Duration::from_secs(2));
    assert_eq!(metric(f.metrics, "musterd_tcp_refused_total"), 1);
    assert_eq!(metric(f.metrics, "musterd_tcp_connections_total"), 4);
    // Closed by the client, their slots come free as the server sees each end: a new
    // connection is answered within a few seconds.
    drop(held);
    let start = Instant::now();
    let resp = loop {
        if let Some(resp) = try_tcp_query(a, &query(21)) {
            break resp;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no TCP answer within 5 s after the held connections were closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(rcode(&resp), 0);
}

/// One query over a new TCP connection: `None` when the server closes it unanswered (the
/// connection cap).
fn try_tcp_query(addr: SocketAddr, pkt: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(&tcp_msg(pkt)).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut out = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut out).ok()?;
    Some(out)
}
