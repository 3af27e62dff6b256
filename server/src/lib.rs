//! musterd: an authoritative DNS server for etcd discovery zones.
//!
//! Architecture, from the wire inwards, one folder a layer (lower layers never import
//! upper ones): [`net`] owns the sockets and dispatches each message by opcode and
//! transport; [`query`] answers queries from the immutable [`zone::Zone`] snapshots of the
//! [`zone::catalog::Catalog`]; [`update`] applies RFC 2136 updates and [`dynamic`] runs one
//! change pipeline per zone (journal, versions, write-back, hand edits); [`transfer`] serves
//! and pulls zones (AXFR, IXFR, NOTIFY); [`discovery`] is etcd's discovery service. Below
//! them, [`zone`] holds snapshots, master files, changesets and completeness gates, and
//! [`proto`] is the one codec (names, records, TSIG) every module reads and writes
//! messages with. [`config`] is read and checked before anything starts; [`loader`]
//! builds the zone set and swaps it in on reload; [`check`] lints zones for etcd
//! pitfalls; [`stats`] imports nothing; [`serve`] wires it all.

pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod discovery;
pub mod dynamic;
pub mod example;
pub mod loader;
pub mod net;
pub mod proto;
pub mod query;
pub mod serve;
pub mod stats;
#[cfg(test)]
mod testutil;
pub mod transfer;
pub mod update;
pub mod zone;

/// A label that makes the UDP and TCP handlers and the precompiler panic in unit tests
/// (`inject-panic`), to test that panics are contained.
#[cfg(test)]
pub(crate) const INJECT_PANIC: &[u8] = b"\x0cinject-panic";

/// TXT rdata the response writer refuses in unit tests (see
/// [`proto::builder::INJECT_WRITE_ERROR`]).
#[cfg(test)]
pub(crate) use proto::builder::INJECT_WRITE_ERROR;
