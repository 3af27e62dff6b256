//! The conventions `musterd` and `muster-agent` must agree on, written once: the
//! cluster-size TXT record ([`size`]), etcd's SRV owner names ([`srv`]), BIND key files
//! ([`keyfile`]) and the lexical layer of master-file text that key files and zone files
//! share ([`text`]). A server that withholds an SRV set until it is complete and an
//! agent that waits for the same set read one rule, so they cannot drift apart.
//!
//! Plain functions over text and bytes: no DNS library, no I/O, so both programs (and
//! their tests) use it with their own types around it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod keyfile;
pub mod size;
pub mod srv;
pub mod text;
