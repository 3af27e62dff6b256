//! Sockets: UDP workers and the TCP listener (RFC 1035 §4.2, RFC 7766).
//!
//! UDP: one `SO_REUSEPORT` socket per worker thread, each a plain blocking loop with its
//! own buffers: receive, answer, send. No task, no channel and no allocation per packet,
//! and the kernel spreads packets over the sockets.
//!
//! TCP (tokio): a cap on concurrent connections (excess ones are closed at once), an idle
//! timeout between messages, an I/O timeout inside a message (slow-loris defence), and
//! pipelining — queries on one connection are answered in order as they arrive.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::answer::{Outcome, Responder, Transport};
use crate::catalog::Catalog;
use crate::stats::{bump, Stats};
use crate::wire::Compressor;

/// What every transport shares.
pub struct Shared {
    pub catalog: Arc<ArcSwap<Catalog>>,
    pub responder: Responder,
    pub stats: Arc<Stats>,
    pub query_log: bool,
    pub shutdown: AtomicBool,
}

impl Shared {
    /// Answers one packet into `out`; returns false when nothing is to be sent.
    fn handle(
        &self,
        catalog: &Catalog,
        pkt: &[u8],
        transport: Transport,
        peer: SocketAddr,
        out: &mut Vec<u8>,
        comp: &mut Compressor,
    ) -> bool {
        match self.responder.respond(catalog, pkt, transport, out, comp) {
            Outcome::Drop(_) => {
                bump(&self.stats.malformed_dropped);
                false
            }
            Outcome::Reply { rcode, truncated } => {
                self.stats.count_rcode(rcode);
                if truncated {
                    bump(&self.stats.truncated);
                }
                if self.query_log {
                    log_query(pkt, peer, transport, rcode, truncated);
                }
                true
            }
        }
    }
}

/// Logs one query (only when the query log is on).
fn log_query(pkt: &[u8], peer: SocketAddr, transport: Transport, rcode: u16, truncated: bool) {
    let (name, qtype) = match crate::wire::parse_query(pkt) {
        Ok(q) => (
            crate::name::Name::from_wire(q.qname())
                .map(|n| n.to_string())
                .unwrap_or_default(),
            crate::rr::type_name(q.qtype),
        ),
        Err(_) => ("<malformed>".into(), String::new()),
    };
    tracing::info!(target: "musterd::query", %peer, ?transport, %name, %qtype, rcode, truncated, "query");
}

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
        // Bigger buffers absorb bursts while a worker is busy; the kernel caps the value.
        let _ = s.set_recv_buffer_size(4 << 20);
        let _ = s.set_send_buffer_size(4 << 20);
        s.bind(&bound.into())?;
        bound = s.local_addr()?.as_socket().unwrap_or(bound);
        sockets.push(UdpSocket::from(s));
    }
    Ok(sockets)
}

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

/// Runs one UDP worker until shutdown.
pub fn udp_worker(sock: UdpSocket, shared: Arc<Shared>) {
    // Waking up now and then lets the thread notice shutdown without extra machinery.
    let _ = sock.set_read_timeout(Some(Duration::from_millis(250)));
    let mut inbuf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(65535);
    let mut comp = Compressor::default();
    let mut catalog = arc_swap::Cache::new(shared.catalog.clone());
    while !shared.shutdown.load(Ordering::Relaxed) {
        let (n, peer) = match sock.recv_from(&mut inbuf) {
            Ok(v) => v,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::debug!("udp receive: {e}");
                continue;
            }
        };
        bump(&shared.stats.udp_queries);
        let cat = catalog.load();
        if shared.handle(cat, &inbuf[..n], Transport::Udp, peer, &mut out, &mut comp) {
            if let Err(e) = sock.send_to(&out, peer) {
                tracing::debug!("udp send to {peer}: {e}");
            }
        }
    }
}

/// TCP limits.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub max_clients: usize,
    pub idle_timeout: Duration,
    pub io_timeout: Duration,
}

/// Accepts TCP connections until shutdown.
pub async fn tcp_accept_loop(listener: TcpListener, shared: Arc<Shared>, limits: TcpLimits) {
    let slots = Arc::new(Semaphore::new(limits.max_clients));
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
            serve_tcp(stream, peer, &shared, limits).await;
            drop(permit);
        });
    }
}

/// Reads exactly `buf.len()` bytes, each read making progress within `io_timeout`.
async fn read_full(stream: &mut TcpStream, buf: &mut [u8], io_timeout: Duration) -> io::Result<bool> {
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
    let mut comp = Compressor::default();
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
        let catalog = shared.catalog.load();
        if !shared.handle(&catalog, &inbuf[..len], Transport::Tcp, peer, &mut out, &mut comp) {
            continue;
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
