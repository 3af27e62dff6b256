//! Talking to the server: one exchange over UDP (TCP for truncated replies and large
//! messages; RFC 2136 §3.8 lets an update go over either), and the plain queries that
//! read what the server holds now.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::message::{rcode_name, Observed, EDNS_PAYLOAD};
use super::spec::Spec;

/// Extended DNS Error option code (RFC 8914) and its "Not Ready" info code, which musterd
/// uses when a completeness gate withholds an SRV set.
const EDE_OPTION: u16 = 15;
const EDE_NOT_READY: u16 = 14;

fn unspecified_for(server: &SocketAddr) -> SocketAddr {
    match server {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

fn io_context(server: SocketAddr, e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            format!(
                "nothing answers DNS on {server} (connection refused): is musterd running there?"
            )
        }
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no answer from {server} in time")
        }
        _ => format!("talking to {server}: {e}"),
    }
}

/// One exchange over TCP (RFC 1035 §4.2.2: two-byte length, then the message).
fn exchange_tcp(server: SocketAddr, msg: &[u8], deadline: Instant) -> Result<Vec<u8>, String> {
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut s = TcpStream::connect_timeout(&server, left()).map_err(|e| io_context(server, e))?;
    s.set_read_timeout(Some(left()))
        .and_then(|_| s.set_write_timeout(Some(left())))
        .map_err(|e| io_context(server, e))?;
    let len =
        u16::try_from(msg.len()).map_err(|_| "the message exceeds 65535 bytes".to_string())?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    s.write_all(&out).map_err(|e| io_context(server, e))?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).map_err(|e| io_context(server, e))?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut reply)
        .map_err(|e| io_context(server, e))?;
    Ok(reply)
}

/// Sends `msg` and returns the reply with the same ID: UDP, sent again if nothing comes
/// back (an update is idempotent in effect, so a resend is harmless), TCP when the reply
/// is truncated or the message does not fit the EDNS size.
pub fn exchange(server: SocketAddr, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + timeout;
    if msg.len() > usize::from(EDNS_PAYLOAD) {
        return exchange_tcp(server, msg, deadline);
    }
    let sock = UdpSocket::bind(unspecified_for(&server)).map_err(|e| io_context(server, e))?;
    sock.connect(server).map_err(|e| io_context(server, e))?;
    let tries = 3u32;
    let mut buf = vec![0u8; 65535];
    for attempt in 0..tries {
        sock.send(msg).map_err(|e| io_context(server, e))?;
        let until = (Instant::now() + timeout / tries).min(deadline);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))
                .map_err(|e| io_context(server, e))?;
            match sock.recv(&mut buf) {
                Ok(n) if n >= 12 && buf[..2] == msg[..2] && buf[2] & 0x80 != 0 => {
                    if buf[2] & 0x02 != 0 {
                        return exchange_tcp(server, msg, deadline);
                    }
                    return Ok(buf[..n].to_vec());
                }
                Ok(_) => continue, // not the reply to this message
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(io_context(server, e)),
            }
        }
        if attempt + 1 == tries || Instant::now() >= deadline {
            break;
        }
    }
    Err(format!(
        "no answer from {server} within {}",
        humantime::format_duration(timeout)
    ))
}

// ---------------------------------------------------------------------------------------
// Reading the current records

/// Why the current records could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// No answer at all: the update would not get one either.
    Unreachable(String),
    /// The server answers, but not this query (a primary that only takes updates).
    Refused(String),
}

fn query(
    server: SocketAddr,
    name: &Name,
    t: RecordType,
    timeout: Duration,
) -> Result<Message, ReadError> {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = false;
    m.add_query(Query::query(name.clone(), t));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD).set_version(0);
    m.set_edns(edns);
    let bytes = m
        .to_vec()
        .map_err(|e| ReadError::Refused(format!("cannot encode a query: {e}")))?;
    let reply = exchange(server, &bytes, timeout).map_err(ReadError::Unreachable)?;
    let r = Message::from_vec(&reply)
        .map_err(|e| ReadError::Refused(format!("malformed reply from {server}: {e}")))?;
    match r.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(r),
        rc => Err(ReadError::Refused(format!(
            "{server} answers {} {t} with {}",
            name,
            rcode_name(rc)
        ))),
    }
}

fn not_ready(m: &Message) -> bool {
    not_ready_text(m).is_some()
}

/// The extra text of an Extended DNS Error 14 "Not Ready" (RFC 8914) in `m`, which
/// musterd sends when a completeness gate withholds an SRV set; "" without text.
fn not_ready_text(m: &Message) -> Option<String> {
    m.edns.as_ref().and_then(|e| {
        e.options().options.iter().find_map(|(_, o)| match o {
            hickory_proto::rr::rdata::opt::EdnsOption::Unknown(EDE_OPTION, d)
                if d.len() >= 2 && u16::from_be_bytes([d[0], d[1]]) == EDE_NOT_READY =>
            {
                Some(String::from_utf8_lossy(&d[2..]).into_owned())
            }
            _ => None,
        })
    })
}

/// Asks `server` for the SRV records at `owner` (absolute) and gives the server's reason
/// when it withholds them (an empty answer with EDE 14 Not Ready): what a completeness
/// gate waits for. `None` when the set is not withheld or the server does not answer.
pub fn withheld(server: SocketAddr, owner: &str, timeout: Duration) -> Option<String> {
    let name = Name::from_ascii(owner).ok()?;
    let m = query(server, &name, RecordType::SRV, timeout).ok()?;
    m.answers.is_empty().then(|| not_ready_text(&m)).flatten()
}

/// Reads the host's addresses and its SRV records from the server itself.
pub fn observe(server: SocketAddr, spec: &Spec, timeout: Duration) -> Result<Observed, ReadError> {
    let mut seen = Observed::default();
    let at = |m: &Message, name: &Name, t: RecordType| -> Vec<Record> {
        m.answers
            .iter()
            .filter(|r| &r.name == name && r.record_type() == t)
            .cloned()
            .collect()
    };
    seen.a = at(
        &query(server, &spec.host, RecordType::A, timeout)?,
        &spec.host,
        RecordType::A,
    );
    seen.aaaa = at(
        &query(server, &spec.host, RecordType::AAAA, timeout)?,
        &spec.host,
        RecordType::AAAA,
    );
    for owner in &spec.srv_owners {
        let m = query(server, owner, RecordType::SRV, timeout)?;
        if m.answers.is_empty() && not_ready(&m) {
            seen.withheld.push(owner.clone());
        }
        seen.srv.extend(
            at(&m, owner, RecordType::SRV)
                .into_iter()
                .filter(|r| match &r.data {
                    RData::SRV(s) => s.target == spec.host,
                    _ => false,
                }),
        );
    }
    Ok(seen)
}

/// The zone's SOA serial as the server answers it, if it answers.
pub fn zone_serial(server: SocketAddr, zone: &Name, timeout: Duration) -> Option<u32> {
    let m = query(server, zone, RecordType::SOA, timeout).ok()?;
    m.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) if &r.name == zone => Some(soa.serial),
        _ => None,
    })
}

/// A message ID for one exchange.
pub fn rand_id() -> u16 {
    // The ID only pairs a reply with its request on a connected socket; the clock's
    // nanoseconds and the process ID vary enough for that.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16) ^ std::process::id()) as u16
}
