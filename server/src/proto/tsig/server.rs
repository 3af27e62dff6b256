//! Server side: checking a signed request (RFC 8945 §5.2) and signing its response (§5.3).

use std::sync::Arc;

use super::key::display_name;
use super::record::{
    append_tsig, check_mac, find_tsig, sign_mac, tsig_rr_len, tsig_variables, Malformed, SignError,
};
use super::{Key, KeyRing};
use crate::proto::name::Name;
use crate::proto::types::Rcode;
use crate::proto::HEADER_LEN;

/// A request whose TSIG checked out: what the response needs to be signed.
#[derive(Debug, Clone)]
pub struct Verified {
    pub key: Arc<Key>,
    /// The request's MAC, which the response MAC covers (RFC 8945 §4.3.1).
    pub request_mac: Vec<u8>,
    pub time_signed: u64,
    pub fudge: u16,
    /// The Original ID of the request's TSIG, echoed in the response's.
    pub original_id: u16,
}

impl Verified {
    /// How to sign a normal response to this request.
    pub fn response(&self) -> ResponseTsig {
        ResponseTsig::Signed {
            key: Arc::clone(&self.key),
            request_mac: self.request_mac.clone(),
            original_id: self.original_id,
            fudge: self.fudge,
            error: Rcode::NOERROR,
            request_time: None,
        }
    }
}

/// Why a signed request was refused, in the terms of RFC 8945 §5.2.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TsigError {
    /// FORMERR, answered without a TSIG.
    #[error("malformed TSIG: {0}")]
    Malformed(Malformed),
    /// Unknown key, or known key with another algorithm: NOTAUTH/BADKEY, unsigned.
    #[error(
        "TSIG key {} with algorithm {} is not known",
        display_name(key_name),
        algorithm_text(algorithm)
    )]
    BadKey {
        key_name: Name,
        algorithm: Vec<u8>,
        original_id: u16,
        fudge: u16,
    },
    /// The MAC does not match: NOTAUTH/BADSIG, unsigned.
    #[error("TSIG signature with key {} does not verify", display_name(&key.name))]
    BadSig {
        key: Arc<Key>,
        original_id: u16,
        fudge: u16,
    },
    /// The request was signed too long ago or too far ahead: NOTAUTH/BADTIME, signed,
    /// Other Data = our time.
    #[error(
        "TSIG time {} is outside our time {now} ± fudge {}",
        verified.time_signed,
        verified.fudge
    )]
    BadTime { verified: Verified, now: u64 },
    /// A truncated MAC the key does not allow: NOTAUTH/BADTRUNC, signed.
    #[error("TSIG MAC truncated to {mac_len} octets, which key {} does not allow", display_name(&verified.key.name))]
    BadTrunc { verified: Verified, mac_len: usize },
}

fn algorithm_text(wire: &[u8]) -> String {
    Name::from_wire(wire)
        .map(|n| display_name(&n))
        .unwrap_or_else(|_| "?".into())
}

impl TsigError {
    /// The response's RCODE: FORMERR for a malformed TSIG, NOTAUTH for the rest
    /// (RFC 8945 §5.2).
    pub fn rcode(&self) -> Rcode {
        match self {
            TsigError::Malformed(_) => Rcode::FORMERR,
            _ => Rcode::NOTAUTH,
        }
    }

    /// The TSIG Error the response carries, if it carries a TSIG.
    pub fn tsig_error(&self) -> Option<Rcode> {
        match self {
            TsigError::Malformed(_) => None,
            TsigError::BadKey { .. } => Some(Rcode::BADKEY),
            TsigError::BadSig { .. } => Some(Rcode::BADSIG),
            TsigError::BadTime { .. } => Some(Rcode::BADTIME),
            TsigError::BadTrunc { .. } => Some(Rcode::BADTRUNC),
        }
    }

    /// The TSIG the error response carries; `None` for FORMERR, which carries none.
    pub fn response(&self) -> Option<ResponseTsig> {
        match self {
            TsigError::Malformed(_) => None,
            // RFC 8945 §5.3.2: BADKEY and BADSIG answers are unsigned (we cannot, or must
            // not, use the key), with the request's key and algorithm names echoed.
            TsigError::BadKey {
                key_name,
                algorithm,
                original_id,
                fudge,
            } => Some(ResponseTsig::Unsigned {
                key_name: key_name.clone(),
                algorithm: algorithm.clone(),
                original_id: *original_id,
                fudge: *fudge,
                error: Rcode::BADKEY,
            }),
            TsigError::BadSig {
                key,
                original_id,
                fudge,
            } => Some(ResponseTsig::Unsigned {
                key_name: key.name.clone(),
                algorithm: key.algorithm.wire_name().to_vec(),
                original_id: *original_id,
                fudge: *fudge,
                error: Rcode::BADSIG,
            }),
            // RFC 8945 §5.2.3: a BADTIME answer is signed and carries our time in Other
            // Data. Its Time Signed is the request's, as BIND and Knot do, so the client's
            // own time check passes and it can read the error and adjust.
            TsigError::BadTime { verified, .. } => Some(ResponseTsig::Signed {
                key: Arc::clone(&verified.key),
                request_mac: verified.request_mac.clone(),
                original_id: verified.original_id,
                fudge: verified.fudge,
                error: Rcode::BADTIME,
                request_time: Some(verified.time_signed),
            }),
            // The MAC was good, so the answer can be and is signed (RFC 8945 §5.2.4).
            TsigError::BadTrunc { verified, .. } => Some(ResponseTsig::Signed {
                key: Arc::clone(&verified.key),
                request_mac: verified.request_mac.clone(),
                original_id: verified.original_id,
                fudge: verified.fudge,
                error: Rcode::BADTRUNC,
                request_time: None,
            }),
        }
    }
}

/// Checks the TSIG of a request in the order of RFC 8945 §5.2, at time `now` (seconds
/// since the epoch).
///
/// `Ok(None)`: the request is not signed. `Ok(Some(_))`: it is signed and good.
/// `Err(_)`: the error says which rcode to answer and, through
/// [`TsigError::response`], which TSIG the answer carries.
pub fn verify_request(msg: &[u8], keys: &KeyRing, now: u64) -> Result<Option<Verified>, TsigError> {
    let Some(t) = find_tsig(msg).map_err(TsigError::Malformed)? else {
        return Ok(None);
    };
    // §5.2.1: the key must be known and its algorithm the one the request names.
    let key = match keys.get(&t.key_name) {
        Some(k) if k.algorithm.wire_name().eq_ignore_ascii_case(t.algorithm) => Arc::clone(k),
        _ => {
            let mut algorithm = t.algorithm.to_vec();
            algorithm.make_ascii_lowercase();
            return Err(TsigError::BadKey {
                key_name: t.key_name.clone(),
                algorithm,
                original_id: t.original_id,
                fudge: t.fudge,
            });
        }
    };
    // §5.2.2: the MAC, whose size rules come first (§5.2.2.1).
    if !check_mac(&key, msg, &t, None, &[], &t.variables()).map_err(TsigError::Malformed)? {
        return Err(TsigError::BadSig {
            key,
            original_id: t.original_id,
            fudge: t.fudge,
        });
    }
    let verified = Verified {
        key,
        request_mac: t.mac.to_vec(),
        time_signed: t.time_signed,
        fudge: t.fudge,
        original_id: t.original_id,
    };
    // §5.2.3: the window includes both ends (catalogue row 24: exactly ±fudge passes).
    if now.abs_diff(t.time_signed) > u64::from(t.fudge) {
        return Err(TsigError::BadTime { verified, now });
    }
    // §5.2.4: local truncation policy.
    if t.mac.len() < verified.key.algorithm.mac_len() && !verified.key.allow_truncated_mac {
        let mac_len = t.mac.len();
        return Err(TsigError::BadTrunc { verified, mac_len });
    }
    Ok(Some(verified))
}

/// The TSIG a response gets.
#[derive(Debug, Clone)]
pub enum ResponseTsig {
    /// Signed with the request's key, its MAC covering the request's (normal answers,
    /// BADTIME, BADTRUNC).
    Signed {
        key: Arc<Key>,
        request_mac: Vec<u8>,
        original_id: u16,
        fudge: u16,
        error: Rcode,
        /// For BADTIME: the request's Time Signed, which the response repeats while Other
        /// Data carries our time.
        request_time: Option<u64>,
    },
    /// An unsigned TSIG with an error and an empty MAC (BADKEY, BADSIG).
    Unsigned {
        key_name: Name,
        algorithm: Vec<u8>,
        original_id: u16,
        fudge: u16,
        error: Rcode,
    },
}

impl ResponseTsig {
    /// Octets the TSIG record will add to the response (uncompressed owner): what the
    /// answer path must keep free when it fits a UDP response to the client's size.
    pub fn record_len(&self) -> usize {
        match self {
            ResponseTsig::Signed {
                key, request_time, ..
            } => {
                let other = if request_time.is_some() { 6 } else { 0 };
                tsig_rr_len(
                    key.name.wire_len(),
                    key.algorithm.wire_name().len(),
                    key.algorithm.mac_len(),
                    other,
                )
            }
            ResponseTsig::Unsigned {
                key_name,
                algorithm,
                ..
            } => tsig_rr_len(key_name.wire_len(), algorithm.len(), 0, 0),
        }
    }
}

/// Signs a finished response (header, rcode and every section written) by appending the
/// TSIG record `tsig` describes (RFC 8945 §4.3.1, §5.3, §5.3.2). Returns the response MAC
/// (empty for an unsigned error TSIG): the prior MAC of the next message of a stream.
pub fn sign_response(
    msg: &mut Vec<u8>,
    tsig: &ResponseTsig,
    now: u64,
) -> Result<Vec<u8>, SignError> {
    if msg.len() < HEADER_LEN {
        return Err(SignError::Short);
    }
    match tsig {
        ResponseTsig::Signed {
            key,
            request_mac,
            original_id,
            fudge,
            error,
            request_time,
        } => {
            let (time_signed, other) = match request_time {
                Some(t) => (*t, now.to_be_bytes()[2..].to_vec()),
                None => (now, Vec::new()),
            };
            let vars = tsig_variables(
                &key.name,
                key.algorithm.wire_name(),
                time_signed,
                *fudge,
                *error,
                &other,
            );
            let mac = sign_mac(key, msg, *original_id, Some(request_mac), &[], &vars);
            append_tsig(
                msg,
                &key.name,
                key.algorithm.wire_name(),
                time_signed,
                *fudge,
                &mac,
                *original_id,
                *error,
                &other,
            )?;
            Ok(mac)
        }
        ResponseTsig::Unsigned {
            key_name,
            algorithm,
            original_id,
            fudge,
            error,
        } => {
            append_tsig(
                msg,
                key_name,
                algorithm,
                now,
                *fudge,
                &[],
                *original_id,
                *error,
                &[],
            )?;
            Ok(Vec::new())
        }
    }
}
