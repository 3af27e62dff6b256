//! Zone transfers: [`xfr`] serves AXFR and IXFR, [`secondary`] keeps copies of zones
//! from primaries, [`notify`] sends and receives NOTIFY.

pub mod notify;
pub mod secondary;
pub mod xfr;
