//! Sockets: UDP workers and the TCP listener (RFC 1035 §4.2, RFC 7766).
//!
//! UDP: one `SO_REUSEPORT` socket per worker thread, each a plain blocking loop with its
//! own buffers: `recvmmsg` a batch, answer each packet, `sendmmsg` the replies. No task,
//! no channel and no allocation per packet, and the kernel spreads packets over the
//! sockets.
//!
//! TCP (tokio): a cap on concurrent connections (excess ones are closed at once), an idle
//! timeout between messages, an I/O timeout inside a message (slow-loris defence), and
//! pipelining — queries on one connection are answered in order as they arrive.
//!
//! # Panics are contained, counted and logged
//!
//! A panic is a bug, but the input that triggers it is one packet or one zone's data,
//! while the state it could leave inconsistent is local: zones and catalogs are immutable
//! snapshots, counters are atomics, and each worker owns its buffers. So musterd contains
//! a panic where it happened instead of exiting: a UDP worker is restarted with fresh
//! buffers (the rest of its batch gets no reply), a TCP connection is closed (the accept
//! loop, should it panic, is restarted), a zone whose precompiling panics is answered by
//! the full path, and a reload that panics fails like a bad file. Each is counted in
//! `musterd_panics_total{thread=...}` and logged as an error with the panic message.
//! Exiting so that systemd restarts the process would let one crafted packet take down
//! every listener and, on a large zone, stop answering for the seconds a restart takes
//! to reload it. What is not contained: a panic while starting up, or in the main thread
//! (signals, reload bookkeeping), ends the process with a non-zero status.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::loader::panic_message;
use crate::net::dispatch::TcpNext;
use crate::net::mmsg::Batch;
use crate::proto::reader::{Header, Reader};
use crate::proto::types::Rtype;
use crate::proto::HEADER_LEN;
use crate::query::answer::Scratch;
use crate::stats::{bump, PanicSite};

pub use crate::net::dispatch::Shared;

/// Binds `workers` UDP sockets sharing `addr` with SO_REUSEPORT. With port 0 the first
/// socket picks the port and the others join it.
pub fn bind_udp(addr: SocketAddr, workers: usize) -> io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(workers);
    let mut bound = addr;
    for _ in 0..workers.max(1) {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_reuse_port(true)?;
        never_fragment(&s, addr.is_ipv6());
        // Bigger buffers absorb bursts while a worker is busy; the kernel caps the value.
        let _ = s.set_recv_buffer_size(4 << 20);
        let _ = s.set_send_buffer_size(4 << 20);
        s.bind(&bound.into())?;
        bound = s.local_addr()?.as_socket().unwrap_or(bound);
        sockets.push(UdpSocket::from(s));
    }
    Ok(sockets)
}

/// Sends responses with DF set and without learned path-MTU state
/// (draft-ietf-dnsop-avoid-fragmentation §3.1): UDP responses are capped at 1232 octets by
/// default, which fits any IPv6 path, and fragments are what off-path cache-poisoning
/// attacks forge. "Probe" ignores ICMP-learned MTUs, so a forged ICMP message cannot
/// shrink them either. It also spares the kernel an IP ID per packet (a few percent of a
/// query's cost). A response larger than the interface MTU (only possible with
/// max_udp_payload raised) is then refused by the kernel and sent as TC instead (see
/// [`truncate_to_tc`]). Best effort: where the option is refused, sends as before.
#[cfg(target_os = "linux")]
fn never_fragment(s: &Socket, v6: bool) {
    use std::os::fd::AsRawFd;
    let (level, opt, val) = if v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    };
    // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the stated size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::debug!("IP_MTU_DISCOVER: {}", io::Error::last_os_error());
    }
}

#[cfg(not(target_os = "linux"))]
fn never_fragment(_: &Socket, _: bool) {}

/// Binds the TCP listener.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Binds UDP and TCP on the same address. With port 0, retries until a port is free for
/// both protocols.
pub fn bind_pair(
    addr: SocketAddr,
    workers: usize,
) -> io::Result<(Vec<UdpSocket>, std::net::TcpListener, SocketAddr)> {
    let mut last_err = None;
    for _ in 0..20 {
        let udp = bind_udp(addr, workers)?;
        let local = udp[0].local_addr()?;
        match bind_tcp(local) {
            Ok(tcp) => return Ok((udp, tcp, local)),
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no free port")))
}

/// Packets taken per system call. 32 amortises the call without holding replies long.
const BATCH: usize = 32;
/// Largest query accepted over UDP; longer datagrams are dropped (a query is a few
/// hundred bytes at most).
const UDP_QUERY_MAX: usize = 4096;

/// A batch at least this large, but not a full [`BATCH`], means "busy, and the socket
/// is drained": worth waiting for more. Smaller batches mean light traffic, which is
/// answered at once; a full batch means more are already queued.
const COALESCE_MIN: usize = 4;

/// Runs one UDP worker until shutdown, restarting it after a panic (see the module
/// documentation for why).
pub fn udp_worker(sock: UdpSocket, shared: Arc<Shared>) {
    let local = sock.local_addr().ok();
    loop {
        let started = Instant::now();
        // Unwind safety: what outlives a panic is the socket, the shared catalog (immutable
        // snapshots) and atomics; the worker's buffers die with it and are rebuilt.
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| serve_udp(&sock, &shared)));
        let Err(payload) = run else { return };
        shared.stats.count_panic(PanicSite::Udp);
        tracing::error!(
            "udp worker on {} panicked: {}; restarted (the rest of its batch got no reply)",
            local.map_or_else(|| "?".into(), |a| a.to_string()),
            panic_message(&*payload)
        );
        if shared.shutdown.load(Ordering::Relaxed) {
            return;
        }
        // A panic before the first packet would repeat at once: do not spin on it.
        if started.elapsed() < Duration::from_millis(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The UDP worker's loop: `recvmmsg` a batch, answer each, `sendmmsg` the replies back to
/// the addresses they came from.
///
/// Under load, most of a query's cost is the kernel's: two system calls per batch and a
/// sleep and wake-up whenever the socket runs dry. When a receive returns a part-full
/// batch, the worker sleeps `udp_coalesce` (80 µs by default) after sending the answers,
/// so the next call finds a fuller queue. Measured on the small benchmark zone, pinned to
/// one core: CPU per query fell by about 12% (3.6 -> 3.2 µs); the price is up to the wait
/// in added latency while busy (0.035 -> 0.10 ms average at 100k queries/s). Light
/// traffic is unaffected: batches of fewer than 4 packets never wait.
fn serve_udp(sock: &UdpSocket, shared: &Shared) {
    // Waking up now and then lets the thread notice shutdown without extra machinery.
    let _ = sock.set_read_timeout(Some(Duration::from_millis(250)));
    let mut batch = Batch::new(BATCH, UDP_QUERY_MAX, 4096);
    if !shared.udp_coalesce.is_zero() {
        // The default timer slack (50 µs) would more than double the coalescing wait.
        #[cfg(target_os = "linux")]
        // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer rounding.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 5_000 as libc::c_ulong);
        }
    }
    let mut scratch = Scratch::default();
    let mut catalog = arc_swap::Cache::new(shared.catalog.clone());
    // UPDATE messages are answered from the runtime (they wait for the journal's fsync),
    // through a clone of this socket.
    let update_socket = shared
        .updates
        .as_ref()
        .and_then(|_| match sock.try_clone() {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::error!("cannot clone the udp socket for update replies: {e}");
                None
            }
        });
    while !shared.shutdown.load(Ordering::Relaxed) {
        let n = match batch.recv(sock) {
            Ok(0) => continue,
            Ok(n) => n,
            Err(e) => {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) {
                    tracing::debug!("udp receive: {e}");
                }
                continue;
            }
        };
        let coalesce = (COALESCE_MIN..BATCH).contains(&n) && !shared.udp_coalesce.is_zero();
        shared
            .stats
            .udp_queries
            .fetch_add(n as u64, Ordering::Relaxed);
        bump(&shared.stats.udp_batches);
        let cat = catalog.load();
        batch.answer(|datagram, out| {
            if datagram.truncated() {
                bump(&shared.stats.malformed_dropped);
                return false;
            }
            shared.udp(
                cat,
                datagram.bytes(),
                || datagram.peer(),
                update_socket.as_ref(),
                out,
                &mut scratch,
            )
        });
        batch.send(sock, |reply, e| {
            // Larger than the interface MTU (DF is set, see `never_fragment`; only with
            // max_udp_payload raised above the link's size): send TC instead, so the
            // client retries over TCP rather than waiting for a reply that never comes.
            if e.raw_os_error() == Some(libc::EMSGSIZE) && truncate_to_tc(reply) {
                bump(&shared.stats.truncated);
                return true;
            }
            // A reply that cannot be sent (e.g. unreachable peer) is skipped.
            tracing::debug!("udp send: {e}");
            false
        });
        if coalesce {
            std::thread::sleep(shared.udp_coalesce);
        }
    }
}

/// Rewrites a response as its truncated form: header with TC, the question, and the OPT
/// record if there was one (ours is always last and has no options). False when there is
/// nothing to remove.
fn truncate_to_tc(buf: &mut Vec<u8>) -> bool {
    if Header::parse(buf).is_none_or(|h| h.qdcount() != 1) {
        return false;
    }
    let mut r = Reader::at(buf, HEADER_LEN);
    if r.question().is_err() {
        return false;
    }
    let question_end = r.pos();
    let len = buf.len();
    let ar = u16::from_be_bytes([buf[10], buf[11]]);
    let has_opt = ar > 0
        && len >= question_end + 11
        && buf[len - 11] == 0
        && buf[len - 10..len - 8] == Rtype::OPT.to_be_bytes()
        && buf[len - 2..] == [0, 0];
    let new_len = question_end + if has_opt { 11 } else { 0 };
    if new_len >= len {
        return false;
    }
    if has_opt {
        buf.copy_within(len - 11.., question_end);
    }
    buf.truncate(new_len);
    let fl = u16::from_be_bytes([buf[2], buf[3]]) | crate::proto::flags::TC;
    buf[2..4].copy_from_slice(&fl.to_be_bytes());
    buf[6..12].copy_from_slice(&[0, 0, 0, 0, 0, has_opt as u8]);
    true
}

/// TCP limits.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub max_clients: usize,
    pub idle_timeout: Duration,
    pub io_timeout: Duration,
}

/// Polls a future, turning a panic inside it into an `Err` (`catch_unwind` for futures).
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        // Unwind safety: after a panic the future is never polled again (its owner drops
        // it), and it shares only immutable snapshots and atomics with other tasks.
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// Accepts TCP connections until shutdown; restarts accepting after a panic.
pub async fn tcp_accept_loop(listener: TcpListener, shared: Arc<Shared>, limits: TcpLimits) {
    let slots = Arc::new(Semaphore::new(limits.max_clients));
    loop {
        let run = CatchUnwind(Box::pin(accept(&listener, &shared, limits, &slots))).await;
        let Err(payload) = run else { return };
        shared.stats.count_panic(PanicSite::Tcp);
        tracing::error!(
            "tcp accept loop panicked: {}; restarted",
            panic_message(&*payload)
        );
        if shared.shutdown.load(Ordering::Relaxed) {
            return;
        }
    }
}

async fn accept(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    limits: TcpLimits,
    slots: &Arc<Semaphore>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if shared.shutdown.load(Ordering::Relaxed) {
            return;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            bump(&shared.stats.tcp_refused);
            drop(stream);
            continue;
        };
        bump(&shared.stats.tcp_connections);
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            // Tokio would also catch the panic, but silently: count and log it. The
            // connection is closed after that, when the future is dropped.
            let mut conn = CatchUnwind(Box::pin(serve_tcp(stream, peer, &shared, limits)));
            if let Err(payload) = (&mut conn).await {
                shared.stats.count_panic(PanicSite::Tcp);
                tracing::error!(
                    %peer,
                    "tcp connection panicked: {}; closed",
                    panic_message(&*payload)
                );
            }
            drop(conn);
            drop(permit);
        });
    }
}

/// Reads exactly `buf.len()` bytes, each read making progress within `io_timeout`.
async fn read_full(
    stream: &mut TcpStream,
    buf: &mut [u8],
    io_timeout: Duration,
) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match tokio::time::timeout(io_timeout, stream.read(&mut buf[got..])).await {
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
            Ok(Ok(0)) => return Ok(false),
            Ok(Ok(n)) => got += n,
            Ok(Err(e)) => return Err(e),
        }
    }
    Ok(true)
}

async fn serve_tcp(mut stream: TcpStream, peer: SocketAddr, shared: &Shared, limits: TcpLimits) {
    let mut inbuf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(4096);
    let mut frame = Vec::with_capacity(4096);
    let mut scratch = Scratch::default();
    loop {
        // Idle timeout: waiting for the first byte of the next message.
        let mut len_buf = [0u8; 2];
        let first = tokio::time::timeout(limits.idle_timeout, stream.read(&mut len_buf[..1])).await;
        match first {
            Err(_) => {
                bump(&shared.stats.tcp_timeouts);
                return;
            }
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
        }
        match read_full(&mut stream, &mut len_buf[1..], limits.io_timeout).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => {
                bump(&shared.stats.tcp_timeouts);
                return;
            }
        }
        let len = u16::from_be_bytes(len_buf) as usize;
        if len == 0 {
            return; // RFC 7766 gives a zero-length message no meaning: close.
        }
        match read_full(&mut stream, &mut inbuf[..len], limits.io_timeout).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => {
                bump(&shared.stats.tcp_timeouts);
                return;
            }
        }
        bump(&shared.stats.tcp_queries);
        let pkt = &inbuf[..len];
        match shared
            .tcp(
                pkt,
                peer,
                &mut stream,
                limits.idle_timeout,
                &mut out,
                &mut scratch,
            )
            .await
        {
            TcpNext::Reply => {}
            TcpNext::Nothing => continue,
            TcpNext::Close => return,
        }
        frame.clear();
        frame.extend_from_slice(&(out.len() as u16).to_be_bytes());
        frame.extend_from_slice(&out);
        let write = tokio::time::timeout(limits.idle_timeout, stream.write_all(&frame)).await;
        if !matches!(write, Ok(Ok(()))) {
            return;
        }
        if shared.shutdown.load(Ordering::Relaxed) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ZoneSpec;
    use crate::proto::name::Name;
    use crate::query::answer::Responder;
    use crate::stats::Stats;
    use crate::zone::catalog::Catalog;
    use arc_swap::ArcSwap;
    use std::sync::atomic::AtomicBool;

    /// What a transport needs, serving the built-in example zone.
    fn shared() -> Arc<Shared> {
        let spec = ZoneSpec {
            origin: Name::parse(crate::example::ORIGIN, None).unwrap(),
            file: None,
            sizes: Vec::new(),
        };
        let mut catalog = Catalog::new();
        catalog.insert(Arc::new(crate::loader::load_zone(&spec).unwrap()));
        Arc::new(Shared {
            catalog: Arc::new(ArcSwap::from_pointee(catalog)),
            udp_coalesce: Duration::ZERO,
            responder: Responder::default(),
            stats: Arc::new(Stats::default()),
            query_log: false,
            shutdown: AtomicBool::new(false),
            updates: None,
            xfr: None,
        })
    }

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(Name::parse(name, None).unwrap().as_wire());
        p.extend_from_slice(&[0, 1, 0, 1]);
        p
    }

    /// Waits until `f` holds, for up to five seconds.
    fn eventually(mut f: impl FnMut() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Review issue 8: a panic killed the UDP worker for good, unnoticed (the thread's
    /// result was only looked at on shutdown, and then ignored).
    #[test]
    fn a_udp_worker_that_panics_is_restarted_and_counted() {
        let shared = shared();
        let sock = bind_udp("127.0.0.1:0".parse().unwrap(), 1)
            .unwrap()
            .remove(0);
        let addr = sock.local_addr().unwrap();
        let worker = {
            let shared = shared.clone();
            std::thread::spawn(move || udp_worker(sock, shared))
        };
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        client
            .send_to(&query(1, "inject-panic.example.test."), addr)
            .unwrap();
        assert!(eventually(|| shared.stats.panics_at(PanicSite::Udp) == 1));
        // The restarted worker answers.
        let mut buf = [0u8; 512];
        let answered = eventually(|| {
            client
                .send_to(&query(2, "ns1.example.test."), addr)
                .unwrap();
            matches!(client.recv(&mut buf), Ok(n) if n > 12 && buf[..2] == [0, 2])
        });
        assert!(answered, "no answer after the panic");
        assert_eq!(shared.stats.panics_at(PanicSite::Udp), 1);
        shared.shutdown.store(true, Ordering::Relaxed);
        worker.join().unwrap();
    }

    /// A panic while answering on a TCP connection closes that connection, is counted,
    /// and leaves the listener (and the connection slot) usable.
    #[test]
    fn a_tcp_connection_that_panics_is_closed_and_counted() {
        let shared = shared();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let limits = TcpLimits {
                max_clients: 1,
                idle_timeout: Duration::from_secs(5),
                io_timeout: Duration::from_secs(5),
            };
            tokio::spawn(tcp_accept_loop(listener, shared.clone(), limits));
            let exchange = |name: &'static str| async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                let q = query(7, name);
                s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
                s.write_all(&q).await.unwrap();
                let mut len = [0u8; 2];
                match s.read_exact(&mut len).await {
                    Ok(_) => {
                        let mut r = vec![0; u16::from_be_bytes(len) as usize];
                        s.read_exact(&mut r).await.unwrap();
                        Some(r)
                    }
                    Err(_) => None,
                }
            };
            assert_eq!(exchange("inject-panic.example.test.").await, None);
            assert_eq!(shared.stats.panics_at(PanicSite::Tcp), 1);
            let r = exchange("ns1.example.test.").await.expect("an answer");
            assert_eq!(r[..2], [0, 7]);
        });
    }

    /// A response too big for the link becomes header + question (+ OPT) with TC.
    #[test]
    fn oversized_reply_becomes_tc() {
        let question = b"\x01a\x04test\x00\x00\x10\x00\x01";
        let opt = [0u8, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0];
        for with_opt in [false, true] {
            let mut r = vec![0x12, 0x34, 0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, with_opt as u8];
            r.extend_from_slice(question);
            // One TXT answer of 2000 octets.
            r.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 30, 0x07, 0xd0]);
            r.extend(std::iter::repeat_n(0u8, 2000));
            if with_opt {
                r.extend_from_slice(&opt);
            }
            assert!(truncate_to_tc(&mut r));
            let mut want = vec![0x12, 0x34, 0x86, 0x00, 0, 1, 0, 0, 0, 0, 0, with_opt as u8];
            want.extend_from_slice(question);
            if with_opt {
                want.extend_from_slice(&opt);
            }
            assert_eq!(r, want);
            // Nothing left to remove: not rewritten again.
            assert!(!truncate_to_tc(&mut r));
        }
    }
}
