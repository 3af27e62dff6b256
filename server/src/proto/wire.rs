//! The query path's names for the codec in [`crate::proto`]: parsing queries and writing
//! responses. Kept so that the answer code reads `wire::Writer`, `wire::rcode` and so on;
//! new code uses [`crate::proto`] directly.

pub use crate::proto::builder::{
    ede, Checkpoint, Compressor, Ede, MessageBuilder as Writer, Section, WriteError,
};
pub use crate::proto::query::{parse_query, parse_query_with, DropReason, Edns, Malformed, Query};
pub use crate::proto::types::{Opcode, Rcode};
pub use crate::proto::{flags, HEADER_LEN};
