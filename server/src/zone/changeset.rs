//! The difference between two versions of a zone: the unit that dynamic update
//! (RFC 2136) produces, the journal stores and IXFR (RFC 1995) serves.
//!
//! A [`Changeset`] lists the records removed and the records added, in IXFR order
//! (RFC 1995 §4): the removed list starts with the old SOA, the added list with the new
//! one, and no other SOA appears in either. Its binary form is compact and versioned:
//!
//! ```text
//! version u8 (= 1) | from_serial u32 | to_serial u32
//! removed_count u32 | record...  | added_count u32 | record...
//! record = owner (uncompressed wire name) | type u16 | class u16 | ttl u32 | rdlength u16 | rdata
//! ```
//!
//! All integers are big-endian. [`Changeset::decode`] checks every length, name, count and
//! record data (with the same [`crate::proto::rr::check_rdata`] the zone loader uses), refuses
//! meta and query-only types (RFC 6895 §3.1), checks the SOA rules, never panics, and
//! says what is wrong at which offset.
//!
//! Limitations: types without a known layout (RFC 3597) are carried as opaque bytes, as
//! DHCID is meant to be (RFC 4701).

use crate::proto::name::{wire_name_len, Name};
use crate::proto::rr::{check_rdata, is_meta_or_query_only, Rclass, Record, Rtype, Soa};

/// The encoding version written by [`Changeset::encode`].
pub const FORMAT_VERSION: u8 = 1;

/// Smallest encoded record: the root name (1) + type, class, TTL, rdlength (10).
const MIN_RECORD_LEN: usize = 11;

/// Records removed from and added to a zone, taking it from one serial to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changeset {
    pub from_serial: u32,
    pub to_serial: u32,
    /// The old SOA first, then the records removed.
    pub removed: Vec<Record>,
    /// The new SOA first, then the records added.
    pub added: Vec<Record>,
}

/// What is wrong with a changeset, or with its encoding at `offset`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangesetError {
    #[error("at offset {offset}: the data ends inside {what}")]
    Truncated { offset: usize, what: &'static str },
    #[error("at offset {offset}: unknown changeset format version {version} (this musterd reads version {FORMAT_VERSION})")]
    UnknownVersion { offset: usize, version: u8 },
    #[error("at offset {offset}: malformed owner name")]
    BadOwner { offset: usize },
    #[error("at offset {offset}: {count} records cannot fit in the {left} octets left")]
    BadCount {
        offset: usize,
        count: u32,
        left: usize,
    },
    #[error("at offset {offset}: {} record data is malformed: {reason}", rtype.to_string())]
    BadRdata {
        offset: usize,
        rtype: Rtype,
        reason: String,
    },
    #[error("at offset {offset}: type {} cannot be zone data", rtype.to_string())]
    MetaType { offset: usize, rtype: Rtype },
    #[error("{list} record {index} ({}): {reason}", rtype.to_string())]
    BadRecord {
        list: &'static str,
        index: usize,
        rtype: Rtype,
        reason: String,
    },
    #[error("at offset {offset}: {left} octets follow the last record")]
    TrailingData { offset: usize, left: usize },
    #[error("the {list} list must start with an SOA record")]
    MissingSoa { list: &'static str },
    #[error("the {list} list has a second SOA record (record {index})")]
    ExtraSoa { list: &'static str, index: usize },
    #[error("the {list} SOA record data is malformed")]
    BadSoa { list: &'static str },
    #[error("the {list} SOA has serial {found}, the changeset says {expected}")]
    SerialMismatch {
        list: &'static str,
        expected: u32,
        found: u32,
    },
    #[error("the old and new SOA records have different owners")]
    SoaOwnerMismatch,
    #[error("a record's data is longer than 65535 octets")]
    RdataTooLong,
    #[error("more than 4294967295 records in one list")]
    TooManyRecords,
}

impl Changeset {
    /// The names (lower-cased) whose records this changeset removes or adds: what a patch
    /// of the served snapshot must touch ([`crate::zone::Zone::patch`]).
    pub fn touched_names(&self) -> std::collections::BTreeSet<Name> {
        self.removed
            .iter()
            .chain(&self.added)
            .map(|r| r.owner.to_lowercase())
            .collect()
    }

    /// Checks what decoding checks: every record is zone data with well-formed rdata,
    /// each list starts with an SOA carrying its serial, both SOAs have the same owner,
    /// and no other SOA appears. Encoding refuses what this refuses, so a journal never
    /// holds a record that would stop its zone from loading.
    pub fn validate(&self) -> Result<(), ChangesetError> {
        for (list, records) in [("removed", &self.removed), ("added", &self.added)] {
            for (index, r) in records.iter().enumerate() {
                let bad = |reason: String| ChangesetError::BadRecord {
                    list,
                    index,
                    rtype: r.rtype,
                    reason,
                };
                if is_meta_or_query_only(r.rtype) {
                    return Err(bad("this type cannot be zone data".into()));
                }
                check_rdata(r.rtype, &r.rdata).map_err(bad)?;
            }
        }
        let old = check_soa_list(&self.removed, "removed", self.from_serial)?;
        let new = check_soa_list(&self.added, "added", self.to_serial)?;
        if !old.eq_ignore_case(new) {
            return Err(ChangesetError::SoaOwnerMismatch);
        }
        Ok(())
    }

    /// Appends the binary form to `out`. The changeset is validated first, so that only
    /// what [`Changeset::decode`] accepts is ever written.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), ChangesetError> {
        self.validate()?;
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.from_serial.to_be_bytes());
        out.extend_from_slice(&self.to_serial.to_be_bytes());
        for list in [&self.removed, &self.added] {
            let n = u32::try_from(list.len()).map_err(|_| ChangesetError::TooManyRecords)?;
            out.extend_from_slice(&n.to_be_bytes());
            for r in list {
                let rdlen =
                    u16::try_from(r.rdata.len()).map_err(|_| ChangesetError::RdataTooLong)?;
                out.extend_from_slice(r.owner.as_wire());
                out.extend_from_slice(&r.rtype.to_be_bytes());
                out.extend_from_slice(&r.class.to_be_bytes());
                out.extend_from_slice(&r.ttl.to_be_bytes());
                out.extend_from_slice(&rdlen.to_be_bytes());
                out.extend_from_slice(&r.rdata);
            }
        }
        Ok(())
    }

    /// The binary form.
    pub fn encode(&self) -> Result<Vec<u8>, ChangesetError> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    fn encoded_len_hint(&self) -> usize {
        let records: usize = self
            .removed
            .iter()
            .chain(&self.added)
            .map(|r| r.owner.wire_len() + 10 + r.rdata.len())
            .sum();
        17 + records
    }

    /// Reads the binary form, checking everything.
    pub fn decode(data: &[u8]) -> Result<Changeset, ChangesetError> {
        let mut r = Reader { data, pos: 0 };
        let version = r.u8("the format version")?;
        if version != FORMAT_VERSION {
            return Err(ChangesetError::UnknownVersion { offset: 0, version });
        }
        let from_serial = r.u32("the old serial")?;
        let to_serial = r.u32("the new serial")?;
        let removed = r.records("the removed records")?;
        let added = r.records("the added records")?;
        if r.pos != data.len() {
            return Err(ChangesetError::TrailingData {
                offset: r.pos,
                left: data.len() - r.pos,
            });
        }
        let cs = Changeset {
            from_serial,
            to_serial,
            removed,
            added,
        };
        cs.validate()?;
        Ok(cs)
    }
}

fn check_soa_list<'a>(
    list: &'a [Record],
    name: &'static str,
    serial: u32,
) -> Result<&'a Name, ChangesetError> {
    let first = list
        .first()
        .filter(|r| r.rtype == Rtype::SOA)
        .ok_or(ChangesetError::MissingSoa { list: name })?;
    let soa = Soa::from_rdata(&first.rdata).ok_or(ChangesetError::BadSoa { list: name })?;
    if soa.serial != serial {
        return Err(ChangesetError::SerialMismatch {
            list: name,
            expected: serial,
            found: soa.serial,
        });
    }
    if let Some(index) = list.iter().skip(1).position(|r| r.rtype == Rtype::SOA) {
        return Err(ChangesetError::ExtraSoa {
            list: name,
            index: index + 1,
        });
    }
    Ok(&first.owner)
}

/// A bounds-checked cursor over an encoded changeset.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], ChangesetError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(ChangesetError::Truncated {
                offset: self.pos,
                what,
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ChangesetError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, ChangesetError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ChangesetError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn records(&mut self, what: &'static str) -> Result<Vec<Record>, ChangesetError> {
        let offset = self.pos;
        let count = self.u32(what)?;
        let left = self.data.len() - self.pos;
        // A forged count must not make us allocate more than the data could hold.
        if count as usize > left / MIN_RECORD_LEN {
            return Err(ChangesetError::BadCount {
                offset,
                count,
                left,
            });
        }
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            out.push(self.record()?);
        }
        Ok(out)
    }

    fn record(&mut self) -> Result<Record, ChangesetError> {
        let offset = self.pos;
        let rest = &self.data[self.pos..];
        let len = wire_name_len(rest).ok_or(ChangesetError::BadOwner { offset })?;
        let owner =
            Name::from_wire(&rest[..len]).map_err(|_| ChangesetError::BadOwner { offset })?;
        self.pos += len;
        let rtype = Rtype(self.u16("a record type")?);
        let class = Rclass(self.u16("a record class")?);
        let ttl = self.u32("a record TTL")?;
        let rdlen = self.u16("a record data length")? as usize;
        let rdata = self.take(rdlen, "a record's data")?.to_vec();
        if is_meta_or_query_only(rtype) {
            return Err(ChangesetError::MetaType { offset, rtype });
        }
        check_rdata(rtype, &rdata).map_err(|reason| ChangesetError::BadRdata {
            offset,
            rtype,
            reason,
        })?;
        Ok(Record {
            owner,
            rtype,
            class,
            ttl,
            rdata,
            source: None,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::rr::Rclass;

    pub(crate) fn name(s: &str) -> Name {
        Name::parse(s, None).unwrap()
    }

    pub(crate) fn soa(zone: &str, serial: u32) -> Record {
        let mut rdata = Vec::new();
        rdata.extend_from_slice(name("ns1.example.").as_wire());
        rdata.extend_from_slice(name("hostmaster.example.").as_wire());
        for v in [serial, 3600, 600, 86400, 60] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        Record {
            owner: name(zone),
            rtype: Rtype::SOA,
            class: Rclass::IN,
            ttl: 3600,
            rdata,
            source: None,
        }
    }

    pub(crate) fn a(owner: &str, last: u8) -> Record {
        Record {
            owner: name(owner),
            rtype: Rtype::A,
            class: Rclass::IN,
            ttl: 300,
            rdata: vec![192, 0, 2, last],
            source: None,
        }
    }

    /// A changeset taking `zone` from `serial` to `serial + 1`, adding one A record.
    pub(crate) fn sample(zone: &str, serial: u32) -> Changeset {
        Changeset {
            from_serial: serial,
            to_serial: serial.wrapping_add(1),
            removed: vec![soa(zone, serial), a(&format!("old.{zone}"), 1)],
            added: vec![
                soa(zone, serial.wrapping_add(1)),
                a(&format!("h{serial}.{zone}"), (serial % 250) as u8),
                Record {
                    owner: name(&format!("h{serial}.{zone}")),
                    rtype: Rtype::DHCID,
                    class: Rclass::IN,
                    ttl: 300,
                    rdata: vec![0, 1, 1, 0xde, 0xad],
                    source: None,
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let cs = sample("example.", 41);
        let bytes = cs.encode().unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(Changeset::decode(&bytes).unwrap(), cs);
    }

    #[test]
    fn serial_wraps_per_rfc1982() {
        let cs = sample("example.", u32::MAX);
        assert_eq!(cs.to_serial, 0);
        assert_eq!(Changeset::decode(&cs.encode().unwrap()).unwrap(), cs);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample("example.", 7).encode().unwrap();
        for len in 0..bytes.len() {
            let err = Changeset::decode(&bytes[..len]).unwrap_err();
            assert!(
                matches!(
                    err,
                    ChangesetError::Truncated { .. }
                        | ChangesetError::BadOwner { .. }
                        | ChangesetError::BadCount { .. }
                ),
                "{len}: {err}"
            );
        }
    }

    #[test]
    fn errors_name_the_offset() {
        let mut bytes = sample("example.", 7).encode().unwrap();
        bytes[0] = 9;
        assert_eq!(
            Changeset::decode(&bytes).unwrap_err().to_string(),
            "at offset 0: unknown changeset format version 9 (this musterd reads version 1)"
        );
        let mut bytes = sample("example.", 7).encode().unwrap();
        bytes.push(0);
        let n = bytes.len();
        assert_eq!(
            Changeset::decode(&bytes).unwrap_err(),
            ChangesetError::TrailingData {
                offset: n - 1,
                left: 1
            }
        );
        // The removed count sits at offset 9; a count too large for the data is refused
        // before anything is allocated.
        let mut bytes = sample("example.", 7).encode().unwrap();
        bytes[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Changeset::decode(&bytes).unwrap_err(),
            ChangesetError::BadCount { offset: 9, .. }
        ));
        // A label length over 63 in the first owner, at offset 13.
        let mut bytes = sample("example.", 7).encode().unwrap();
        bytes[13] = 64;
        assert_eq!(
            Changeset::decode(&bytes).unwrap_err(),
            ChangesetError::BadOwner { offset: 13 }
        );
    }

    #[test]
    fn record_data_is_checked() {
        // An A record with 3 octets of data is refused when encoding...
        let mut cs = sample("example.", 7);
        cs.removed[1].rdata.pop();
        assert!(matches!(
            cs.encode().unwrap_err(),
            ChangesetError::BadRecord {
                list: "removed",
                index: 1,
                rtype: Rtype::A,
                ..
            }
        ));
        // ... and when decoding, with its offset.
        let mut bytes = sample("example.", 7).encode().unwrap();
        let a_start = 13 + cs.removed[0].owner.wire_len() + 10 + cs.removed[0].rdata.len();
        let rdlen_at = a_start + cs.removed[1].owner.wire_len() + 8;
        bytes[rdlen_at + 1] = 3;
        bytes.remove(rdlen_at + 2);
        let offset = 13 + cs.removed[0].owner.wire_len() + 10 + cs.removed[0].rdata.len();
        match Changeset::decode(&bytes).unwrap_err() {
            ChangesetError::BadRdata {
                offset: o,
                rtype: Rtype::A,
                ..
            } => assert_eq!(o, offset),
            other => panic!("{other}"),
        }
        let mut cs = sample("example.", 7);
        cs.added[1].rtype = Rtype::TSIG;
        assert!(matches!(
            cs.encode().unwrap_err(),
            ChangesetError::BadRecord { .. }
        ));
        let mut bytes = sample("example.", 7).encode().unwrap();
        let tsig_at = bytes.len() - 5 - 2 - 4 - 2 - 2; // type of the last (DHCID) record
        bytes[tsig_at..tsig_at + 2].copy_from_slice(&Rtype::TSIG.to_be_bytes());
        assert!(matches!(
            Changeset::decode(&bytes).unwrap_err(),
            ChangesetError::MetaType {
                rtype: Rtype::TSIG,
                ..
            }
        ));
    }

    #[test]
    fn soa_rules() {
        let mut cs = sample("example.", 7);
        cs.to_serial = 9;
        assert_eq!(
            cs.encode().unwrap_err(),
            ChangesetError::SerialMismatch {
                list: "added",
                expected: 9,
                found: 8
            }
        );
        let mut cs = sample("example.", 7);
        cs.removed.swap(0, 1);
        assert_eq!(
            cs.encode().unwrap_err(),
            ChangesetError::MissingSoa { list: "removed" }
        );
        let mut cs = sample("example.", 7);
        cs.added.push(soa("example.", 8));
        assert!(matches!(
            cs.encode().unwrap_err(),
            ChangesetError::ExtraSoa { list: "added", .. }
        ));
        let mut cs = sample("example.", 7);
        cs.added[0] = soa("other.", 8);
        assert_eq!(cs.encode().unwrap_err(), ChangesetError::SoaOwnerMismatch);
        let mut cs = sample("example.", 7);
        // A private-use type (RFC 6895 §3.1), whose data is opaque, but too long.
        cs.added[1].rtype = Rtype(65280);
        cs.added[1].rdata = vec![0; 70_000];
        assert_eq!(cs.encode().unwrap_err(), ChangesetError::RdataTooLong);
    }

    #[test]
    fn random_bytes_and_mutations_never_panic() {
        let good = sample("example.", 7).encode().unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..20_000 {
            let mut data = if i % 2 == 0 {
                good.clone()
            } else {
                (0..(next() % 200)).map(|_| next() as u8).collect()
            };
            for _ in 0..(next() % 4) {
                if !data.is_empty() {
                    let at = (next() as usize) % data.len();
                    data[at] = next() as u8;
                }
            }
            let _ = Changeset::decode(&data);
        }
    }
}
