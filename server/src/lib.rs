//! musterd: an authoritative DNS server for etcd discovery zones.
//!
//! Architecture, from the wire inwards: [`listen`] owns the sockets (with [`mmsg`] for
//! batched UDP), [`dispatch`] parses each message's header once and routes it by opcode
//! and transport (UPDATE, NOTIFY, zone transfers, queries), [`proto`] is the codec every
//! module reads and writes messages with, [`respond`] picks the path that answers a
//! query: a precompiled answer from [`fastpath`] or [`answer`], which applies the
//! DNS answer rules to an immutable [`catalog::Catalog`] of [`zone::Zone`] snapshots.
//! [`loader`] builds those from [`zonefile`] text and swaps them in on reload. [`check`]
//! lints zones for etcd pitfalls.

pub mod check;
pub mod cli;
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
