//! The query path: [`respond`] picks the answer for a parsed query, a precompiled one
//! from [`fastpath`] or one made by [`answer`], which applies the DNS answer rules to a
//! [`crate::zone::catalog::Catalog`] of zone snapshots.

pub mod answer;
pub mod fastpath;
pub mod respond;
