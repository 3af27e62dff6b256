//! musterd: an authoritative DNS server for etcd discovery zones.
//!
//! Architecture, from the wire inwards: [`listen`] owns the sockets, [`wire`] parses
//! queries and writes responses, [`answer`] applies the DNS answer rules to an immutable
//! [`catalog::Catalog`] of [`zone::Zone`] snapshots, which [`loader`] builds from
//! [`zonefile`] text and swaps in on reload. [`check`] lints zones for etcd pitfalls.

pub mod answer;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod config;
pub mod example;
pub mod fastpath;
pub mod listen;
pub mod loader;
pub mod name;
pub mod rr;
pub mod serve;
pub mod stats;
pub mod wire;
pub mod zone;
pub mod zonefile;
