//! Why records do not make a zone, and what is worth a warning: each error names the file
//! and line of the record at fault and what to do.

use crate::proto::name::Name;
use crate::proto::rr::{Origin, Record};
use crate::proto::types::Rclass;
use crate::proto::types::Rtype;

/// Why a set of records is not a valid zone: what is wrong and, when one record is at
/// fault, where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneError {
    /// File and line of the offending record; `None` for a problem of the zone as a whole,
    /// or for a record that was not read from a file.
    pub at: Option<Origin>,
    pub kind: ZoneErrorKind,
}

impl std::fmt::Display for ZoneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.kind),
            None if self.kind.is_about_a_record() => write!(f, "<update>: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for ZoneError {}

/// What is wrong, one variant per broken rule. The messages do not repeat the position,
/// which [`ZoneError`] carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneErrorKind {
    #[error("{owner} is outside the zone {origin}; remove it or serve it in its own zone")]
    OutOfZone { owner: Name, origin: Name },
    #[error("zone {origin} has no SOA record at its apex; add one (e.g. `@ 300 IN SOA ns1 hostmaster 1 3600 600 86400 60`)")]
    NoSoa { origin: Name },
    #[error("second SOA record for {origin}; a zone has exactly one")]
    SecondSoa { origin: Name },
    #[error("SOA record at {owner}, not at the zone apex {origin}")]
    SoaNotAtApex { owner: Name, origin: Name },
    #[error("malformed SOA rdata")]
    BadSoa,
    #[error("CNAME at {owner} alongside other data ({other}); a CNAME must be alone at its name (RFC 1034 §3.6.2)")]
    CnameAndOther { owner: Name, other: String },
    #[error("CNAME at the zone apex {owner} conflicts with the SOA and NS records")]
    CnameAtApex { owner: Name },
    #[error("{owner}: more than one CNAME record; a name has at most one")]
    MultipleCname { owner: Name },
    #[error("class {class} record; only class IN is served")]
    WrongClass { class: Rclass },
    #[error("{owner}: record data of {len} octets; at most 65535 fit in a record")]
    RdataTooLong { owner: Name, len: usize },
    #[error("{owner}: bad {rtype} record data: {reason}")]
    BadRdata {
        owner: Name,
        rtype: String,
        reason: String,
    },
    #[error("zone {origin} holds more than 4 GiB of record data; split it into several zones")]
    TooLarge { origin: Name },
    #[error("{what} record type {t} cannot be stored in a zone")]
    MetaType { what: String, t: Rtype },
}

impl ZoneErrorKind {
    /// True when one record is at fault (as opposed to the zone as a whole).
    pub fn is_about_a_record(&self) -> bool {
        !matches!(
            self,
            ZoneErrorKind::NoSoa { .. } | ZoneErrorKind::TooLarge { .. }
        )
    }
}

/// A problem worth a log line that does not stop the zone from loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneWarning {
    pub at: String,
    pub message: String,
}

pub(super) fn at(r: &Record) -> String {
    r.source
        .as_ref()
        .map(Origin::to_string)
        .unwrap_or_else(|| "<update>".into())
}

/// The error `kind` about record `r`.
pub(super) fn record_error(r: &Record, kind: ZoneErrorKind) -> ZoneError {
    ZoneError {
        at: r.source.clone(),
        kind,
    }
}

/// An error about the zone as a whole.
pub(super) fn zone_error(kind: ZoneErrorKind) -> ZoneError {
    ZoneError { at: None, kind }
}
