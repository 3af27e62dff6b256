//! Writing zone transfers: the records of a snapshot or of a chain of changesets as a
//! stream of DNS messages over TCP (RFC 5936 §2.2, RFC 1995 §4), each message filled up
//! to [`MESSAGE_TARGET`] with its names compressed, signed when the request was, and
//! written within a timeout. [`diff`] gives the changeset between two snapshots.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::clock::unix_now;
use crate::proto::builder::{Compressor, MessageBuilder, Section, Suspended, WriteError};
use crate::proto::flags;
use crate::proto::name::Name;
use crate::proto::rr::{Rclass, Record, Rtype};
use crate::proto::tsig::{self, StreamSigner};
use crate::proto::types::Opcode;
use crate::zone::changeset::Changeset;
use crate::zone::Zone;

/// Largest transfer message before its TSIG: every offset in it can be a compression
/// pointer target (14-bit offsets).
pub(super) const MESSAGE_TARGET: usize = 16 * 1024;

// ---------------------------------------------------------------------------------------
// History and differences

/// Every record of a snapshot, apex SOA first, in node order: what AXFR sends between
/// the two SOAs, and what a secondary stores.
pub fn zone_records(zone: &Zone) -> Vec<Record> {
    let mut out = Vec::with_capacity(zone.record_count + 1);
    out.push(soa_record(zone));
    out.extend(zone_rrs(zone).map(|(owner, t, ttl, rdata)| record(owner, t, ttl, rdata)));
    out
}

/// A record as stored in a snapshot (owner and rdata in wire form), as a [`Record`].
fn record(owner: &[u8], t: Rtype, ttl: u32, rdata: &[u8]) -> Record {
    Record {
        owner: Name::from_wire(owner).expect("stored names are valid"),
        rtype: t,
        class: Rclass::IN,
        ttl,
        rdata: rdata.to_vec(),
        source: None,
    }
}

/// Every record of the zone except the apex SOA, in node order: owner, type, TTL, rdata.
fn zone_rrs(zone: &Zone) -> impl Iterator<Item = (&[u8], Rtype, u32, &[u8])> {
    let apex = zone.apex().index();
    zone.nodes().flat_map(move |node| {
        let owner = node.owner();
        node.rrsets()
            .filter(move |set| !(set.rtype == Rtype::SOA && node.index() == apex))
            .flat_map(move |set| {
                set.rdatas()
                    .map(move |rdata| (owner, set.rtype, set.ttl, rdata))
            })
    })
}

/// The apex SOA record of a snapshot.
pub fn soa_record(zone: &Zone) -> Record {
    Record {
        owner: zone.apex().owner_name(),
        rtype: Rtype::SOA,
        class: Rclass::IN,
        ttl: zone.soa_ttl,
        rdata: zone.soa_rdata.to_vec(),
        source: None,
    }
}

/// What changed from `old` to `new`, IXFR style: removals led by the old SOA, additions
/// by the new one. An RRset whose TTL changed is removed and added whole. Names in rdata
/// compare as bytes, so a change of case is a change.
pub fn diff(old: &Zone, new: &Zone) -> Changeset {
    let mut removed = vec![soa_record(old)];
    let mut added = vec![soa_record(new)];
    // Records of `a` that `b` does not hold with the same TTL.
    let missing = |a: &Zone, b: &Zone, out: &mut Vec<Record>| {
        let apex = a.apex().index();
        for node in a.nodes() {
            let other = b.node(node.key());
            for set in node.rrsets() {
                if set.rtype == Rtype::SOA && node.index() == apex {
                    continue;
                }
                let twin = other
                    .and_then(|o| o.rrset(set.rtype))
                    .filter(|s| s.ttl == set.ttl);
                for rdata in set.rdatas() {
                    if !twin.is_some_and(|s| s.rdatas().any(|r| r == rdata)) {
                        out.push(record(node.owner(), set.rtype, set.ttl, rdata));
                    }
                }
            }
        }
    };
    missing(old, new, &mut removed);
    missing(new, old, &mut added);
    Changeset {
        from_serial: old.serial(),
        to_serial: new.serial(),
        removed,
        added,
    }
}

// ---------------------------------------------------------------------------------------
// Writing transfer messages

/// One transfer message being filled, with the [`MessageBuilder`] (set aside between
/// records, because the stream awaits the client between messages). Owner and rdata
/// names are compressed through an indexed table: a message holds hundreds of names.
pub(super) struct Message {
    buf: Vec<u8>,
    comp: Compressor,
    /// The message being filled; `None` before [`Message::start`].
    state: Option<Suspended>,
}

/// Why a record cannot go into any message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {} record of {len} octets does not fit in a transfer message", rtype.to_string())]
pub struct Oversized {
    rtype: Rtype,
    len: usize,
}

impl Message {
    pub(super) fn new() -> Message {
        Message {
            buf: Vec::with_capacity(MESSAGE_TARGET + 512),
            comp: Compressor::indexed(),
            state: None,
        }
    }

    /// Starts a message: header, and the question in the first one only (RFC 5936 §2.2).
    fn start(&mut self, id: u16, copy_flags: u16, question: Option<&[u8]>) {
        let q = question.unwrap_or_default();
        let mut w = MessageBuilder::new(
            &mut self.buf,
            &mut self.comp,
            id,
            Opcode::QUERY,
            copy_flags,
            q,
        );
        w.set_flags(flags::AA);
        self.state = Some(w.suspend());
    }

    fn builder(&mut self) -> MessageBuilder<'_> {
        let s = self
            .state
            .expect("a transfer message is started before records go in");
        MessageBuilder::resume(&mut self.buf, &mut self.comp, s)
    }

    /// Appends a record if it fits under `limit`; false when the message is full.
    fn record(
        &mut self,
        limit: usize,
        owner: &[u8],
        t: Rtype,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<bool, StreamError> {
        // Compression only shortens names: this is the most the record can take.
        let worst = owner.len() + 10 + rdata.len();
        let mut w = self.builder();
        let full = w.len() + worst > limit;
        let empty = w.count(Section::Answer) == 0;
        let written = if full {
            Ok(false)
        } else {
            w.record(Section::Answer, owner, t, Rclass::IN, ttl, rdata)
                .map(|()| true)
        };
        self.state = Some(w.suspend());
        if full && empty {
            return Err(StreamError::Oversized(Oversized {
                rtype: t,
                len: worst,
            }));
        }
        Ok(written?)
    }

    /// Writes the section counts; the message is then ready to sign and send.
    fn finish(&mut self) {
        if self.state.is_some() {
            self.builder().finish();
        }
    }
}

/// Why a transfer out stopped early.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("writing to the client: {0}")]
    Io(#[from] std::io::Error),
    #[error("the client did not read for {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Oversized(#[from] Oversized),
    #[error("a record of the zone cannot be written: {0}")]
    Write(#[from] WriteError),
    #[error("signing a message: {0}")]
    Sign(#[from] tsig::SignError),
}

/// Writes the messages of one transfer answer to a client.
pub(super) struct Stream<'w, W> {
    pub(super) out: &'w mut W,
    pub(super) id: u16,
    pub(super) copy_flags: u16,
    pub(super) question: Vec<u8>,
    pub(super) signer: Option<StreamSigner>,
    /// The size messages are filled to.
    pub(super) limit: usize,
    /// The most one message may hold (65535 octets less the TSIG record): a record larger
    /// than `limit` goes alone in a message of up to this size, so that any zone the
    /// server can load can also be transferred.
    pub(super) max: usize,
    pub(super) first: bool,
    pub(super) frame: Vec<u8>,
    pub(super) timeout: Duration,
    pub(super) messages: usize,
}

impl<W: AsyncWrite + Unpin> Stream<'_, W> {
    pub(super) async fn send(&mut self, msg: &mut Message) -> Result<(), StreamError> {
        msg.finish();
        if let Some(s) = &mut self.signer {
            s.sign(&mut msg.buf, unix_now())?;
        }
        self.frame.clear();
        self.frame
            .extend_from_slice(&(msg.buf.len() as u16).to_be_bytes());
        self.frame.extend_from_slice(&msg.buf);
        match tokio::time::timeout(self.timeout, self.out.write_all(&self.frame)).await {
            Err(_) => return Err(StreamError::Timeout(self.timeout)),
            Ok(r) => r?,
        }
        self.messages += 1;
        Ok(())
    }

    pub(super) fn start(&mut self, msg: &mut Message) {
        let q = if self.first {
            Some(&self.question[..])
        } else {
            None
        };
        msg.start(self.id, self.copy_flags, q);
        self.first = false;
    }

    /// Appends a record, sending the message first when it is full.
    pub(super) async fn record(
        &mut self,
        msg: &mut Message,
        owner: &[u8],
        t: Rtype,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<(), StreamError> {
        if !self.place(msg, owner, t, ttl, rdata)? {
            self.send(msg).await?;
            self.start(msg);
            self.place(msg, owner, t, ttl, rdata)?;
        }
        Ok(())
    }

    /// Adds the record if it fits under `limit`, or — alone in an empty message — under
    /// `max`. `Ok(false)`: the message is full, send it and start another.
    fn place(
        &self,
        msg: &mut Message,
        owner: &[u8],
        t: Rtype,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<bool, StreamError> {
        match msg.record(self.limit, owner, t, ttl, rdata) {
            Err(StreamError::Oversized(_)) => msg.record(self.max, owner, t, ttl, rdata),
            fits => fits,
        }
    }
}

/// A whole zone, SOA first and last.
pub(super) async fn axfr_stream<W: AsyncWrite + Unpin>(
    zone: &Zone,
    stream: &mut Stream<'_, W>,
) -> Result<(), StreamError> {
    let mut msg = Message::new();
    stream.start(&mut msg);
    apex_soa(zone, stream, &mut msg).await?;
    for (owner, t, ttl, rdata) in zone_rrs(zone) {
        stream.record(&mut msg, owner, t, ttl, rdata).await?;
    }
    apex_soa(zone, stream, &mut msg).await?;
    stream.send(&mut msg).await
}

/// The changes since the client's serial (RFC 1995 §4): the new SOA, each changeset as
/// old SOA, removals, new SOA, additions, and the new SOA again.
pub(super) async fn ixfr_stream<W: AsyncWrite + Unpin>(
    zone: &Zone,
    chain: &[Arc<Changeset>],
    stream: &mut Stream<'_, W>,
) -> Result<(), StreamError> {
    let mut msg = Message::new();
    stream.start(&mut msg);
    apex_soa(zone, stream, &mut msg).await?;
    for cs in chain {
        for r in cs.removed.iter().chain(&cs.added) {
            stream
                .record(&mut msg, r.owner.as_wire(), r.rtype, r.ttl, &r.rdata)
                .await?;
        }
    }
    apex_soa(zone, stream, &mut msg).await?;
    stream.send(&mut msg).await
}

/// Adds the zone's apex SOA, which opens and closes every transfer.
async fn apex_soa<W: AsyncWrite + Unpin>(
    zone: &Zone,
    stream: &mut Stream<'_, W>,
    msg: &mut Message,
) -> Result<(), StreamError> {
    let owner = zone.apex().owner();
    stream
        .record(msg, owner, Rtype::SOA, zone.soa_ttl, &zone.soa_rdata)
        .await
}

pub(super) async fn write_frame<W: AsyncWrite + Unpin>(
    out: &mut W,
    msg: &[u8],
    timeout: Duration,
) -> Result<(), StreamError> {
    let mut frame = Vec::with_capacity(msg.len() + 2);
    frame.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    frame.extend_from_slice(msg);
    match tokio::time::timeout(timeout, out.write_all(&frame)).await {
        Err(_) => Err(StreamError::Timeout(timeout)),
        Ok(r) => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::reader::Reader;
    use crate::zone::history::History;
    use std::path::Path;

    fn zone(origin: &str, serial: u32, body: &str) -> Zone {
        let o = Name::parse(origin, None).unwrap();
        let text = format!("$ORIGIN {origin}\n$TTL 60\n@ IN SOA ns1 host {serial} 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 10.0.0.1\n{body}");
        let records = crate::zone::zonefile::parse_str(&text, Path::new("t.zone"), &o).unwrap();
        Zone::build(&o, records).unwrap().0
    }

    #[test]
    fn diff_and_history_chain() {
        let a = zone("d.test.", 1, "x IN A 10.0.0.2\ny IN TXT \"keep\"\n");
        let b = zone(
            "d.test.",
            2,
            "x IN A 10.0.0.3\ny IN TXT \"keep\"\nz 30 IN A 10.0.0.4\n",
        );
        let c = zone("d.test.", 3, "x IN A 10.0.0.3\ny IN TXT \"keep\"\n");
        let ab = diff(&a, &b);
        assert_eq!(ab.removed.len(), 2, "{ab:?}");
        assert_eq!(ab.added.len(), 3, "{ab:?}");
        ab.validate().unwrap();
        let h = History::new(100);
        let o = a.origin.clone();
        h.record_change(&o, Some(ab), 10);
        h.record_change(&o, Some(diff(&b, &c)), 10);
        assert_eq!(h.since(&o, 1, 3).unwrap().len(), 2);
        assert_eq!(h.since(&o, 2, 3).unwrap().len(), 1);
        assert!(h.since(&o, 0, 3).is_none());
        h.record_change(&o, None, 0);
        assert!(h.since(&o, 2, 3).is_none());
    }

    /// The AXFR of `z` (zone d.test.) as written to TCP, length-prefixed messages, and
    /// how many messages it took.
    fn axfr_of(z: &Zone) -> (Vec<u8>, usize) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut out: Vec<u8> = Vec::new();
        let question = [&b"\x01d\x04test\x00"[..], &[0, 252, 0, 1]].concat();
        let messages = rt.block_on(async {
            let mut s = Stream {
                out: &mut out,
                id: 9,
                copy_flags: 0,
                question,
                signer: None,
                limit: MESSAGE_TARGET,
                max: u16::MAX as usize,
                first: true,
                frame: Vec::new(),
                timeout: Duration::from_secs(1),
                messages: 0,
            };
            axfr_stream(z, &mut s).await.expect("the transfer succeeds");
            s.messages
        });
        (out, messages)
    }

    #[test]
    fn messages_compress_owners_and_split() {
        let z = zone(
            "d.test.",
            1,
            &(0..2000)
                .map(|i| format!("h{i} IN A 10.0.{}.{}\n", i / 250, i % 250))
                .collect::<String>(),
        );
        let (out, messages) = axfr_of(&z);
        assert!(messages > 1, "{messages}");
        // Read back every record through the decompressing reader.
        let mut pos = 0;
        let mut records = Vec::new();
        while pos < out.len() {
            let len = u16::from_be_bytes([out[pos], out[pos + 1]]) as usize;
            let msg = &out[pos + 2..pos + 2 + len];
            assert!(len <= MESSAGE_TARGET);
            let (h, mut r) = Reader::after_header(msg).unwrap();
            for _ in 0..h.qdcount() {
                r.question().unwrap();
            }
            for _ in 0..h.ancount() {
                let rec = r.record().unwrap();
                records.push((Name::from_wire(&rec.owner).unwrap().to_string(), rec.rtype));
            }
            pos += 2 + len;
        }
        assert_eq!(records.len(), z.record_count + 1);
        assert_eq!(records.first().unwrap().1, Rtype::SOA);
        assert_eq!(records.last().unwrap().1, Rtype::SOA);
        assert!(records.iter().any(|(o, _)| o == "h1999.d.test."));
    }

    /// A record larger than the message target size (here a TXT of ~30,000 octets, which
    /// the zone file accepts) goes alone in a larger message instead of failing the
    /// transfer: any zone the server loads can be transferred (NSD 4.15.1 fixed the
    /// opposite, a transfer that looped on such a record).
    #[test]
    fn a_record_larger_than_the_target_goes_alone() {
        let chunk = "x".repeat(250);
        let big: String = (0..120).map(|_| format!(" \"{chunk}\"")).collect();
        let z = zone(
            "d.test.",
            1,
            &format!("a IN A 10.0.0.1\nbig IN TXT{big}\nz IN A 10.0.0.2\n"),
        );
        let (out, _) = axfr_of(&z);
        let mut pos = 0;
        let mut lens = Vec::new();
        let mut total = 0;
        while pos < out.len() {
            let len = u16::from_be_bytes([out[pos], out[pos + 1]]) as usize;
            let msg = &out[pos + 2..pos + 2 + len];
            total += u16::from_be_bytes([msg[6], msg[7]]) as usize;
            lens.push(len);
            pos += 2 + len;
        }
        assert_eq!(total, z.record_count + 1, "every record, SOA twice");
        assert!(
            lens.iter().any(|&l| l > MESSAGE_TARGET),
            "the big record went into a larger message: {lens:?}"
        );
    }
}
