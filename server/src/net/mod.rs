//! The network edge: [`listen`] owns the UDP and TCP sockets (with [`mmsg`] for batched
//! UDP), [`dispatch`] parses each message's header once and routes it by opcode and
//! transport.

pub mod dispatch;
pub mod listen;
pub mod mmsg;
