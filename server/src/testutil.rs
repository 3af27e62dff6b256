//! Helpers shared by the unit tests of several modules.

use crate::proto::name::Name;
use crate::proto::rr::{Rclass, Record};
use crate::proto::types::Rtype;

/// A record of class IN, the owner in text.
pub(crate) fn record(owner: &str, t: Rtype, ttl: u32, rdata: Vec<u8>) -> Record {
    Record {
        owner: Name::parse(owner, None).unwrap(),
        rtype: t,
        class: Rclass::IN,
        ttl,
        rdata,
        source: None,
    }
}

/// A name in wire form.
pub(crate) fn wire_name(s: &str) -> Vec<u8> {
    Name::parse(s, None).unwrap().as_wire().to_vec()
}
