//! The DNS protocol layer: names, the vocabulary of types, classes, rcodes and opcodes,
//! and the one codec every module reads and writes messages with.
//!
//! - [`name`]: domain names in wire form, and their master-file text form;
//! - [`types`]: [`Rtype`](types::Rtype), [`Rclass`](types::Rclass),
//!   [`Rcode`](types::Rcode), [`Opcode`](types::Opcode), one table each;
//! - [`reader`]: the message [`Reader`](reader::Reader) with the RFC 9267 rules;
//! - [`builder`]: the [`MessageBuilder`](builder::MessageBuilder);
//! - [`query`]: what a query must look like to be answered.
//!
//! This is the bottom layer of the server: it imports nothing from the rest of it.

pub mod builder;
pub mod name;
pub mod query;
pub mod reader;
pub mod rr;
pub mod tsig;
pub mod types;

/// Length of the fixed DNS header (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;

/// Header flag bits (in the 16-bit flags word).
pub mod flags {
    pub const QR: u16 = 0x8000;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const Z: u16 = 0x0040;
    pub const AD: u16 = 0x0020;
    pub const CD: u16 = 0x0010;
}

pub use builder::{Compressor, MessageBuilder, Section, WriteError};
pub use reader::{Header, ReadError, Reader};
pub use types::{Opcode, Rclass, Rcode, Rtype};

/// A random message ID (RFC 5452: IDs must not be guessable).
pub fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // On failure the ID is 0; the answer is still matched by ID, address and port.
    let _ = getrandom::fill(&mut b);
    u16::from_be_bytes(b)
}
