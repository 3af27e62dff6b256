//! Zone transfers: [`xfr`] serves AXFR and IXFR, [`secondary`] keeps copies of zones
//! from primaries, [`notify`] sends and receives NOTIFY.

pub mod metrics;
pub mod notify;
pub mod secondary;
pub mod stream;
pub mod xfr;
