//! Client side (the agent's `register`, tests): signing a request and checking the signed
//! response (RFC 8945 §5.3, client side of §5.2).

use super::record::{append_tsig, check_mac, find_tsig, tsig_variables, Malformed, SignError};
use super::Key;
use crate::proto::reader::Reader;
use crate::proto::types::Rcode;
use crate::proto::HEADER_LEN;

/// Signs a request (RFC 8945 §4.3.2 applied to a request: no prior MAC) by appending the
/// TSIG record. Returns the request MAC, which [`verify_response`] needs.
pub fn sign_request(
    msg: &mut Vec<u8>,
    key: &Key,
    fudge: u16,
    now: u64,
) -> Result<Vec<u8>, SignError> {
    if msg.len() < HEADER_LEN {
        return Err(SignError::Short);
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let vars = tsig_variables(
        &key.name,
        key.algorithm.wire_name(),
        now,
        fudge,
        Rcode::NOERROR,
        &[],
    );
    let parts: [&[u8]; 2] = [msg, &vars];
    let mac = key.algorithm.mac(&key.secret, &parts);
    append_tsig(
        msg,
        &key.name,
        key.algorithm.wire_name(),
        now,
        fudge,
        &mac,
        id,
        Rcode::NOERROR,
        &[],
    )?;
    Ok(mac)
}

/// Why a client refuses a server's response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("malformed TSIG in the response: {0}")]
    Malformed(Malformed),
    #[error("the response is not signed")]
    Unsigned,
    #[error("the response is signed with another key or algorithm")]
    WrongKey,
    #[error("the server refused our signature: TSIG error {}", tsig_error_name(*error))]
    ServerError {
        /// BADKEY, BADSIG (unsigned answers) or BADTIME, BADTRUNC (signed).
        error: Rcode,
        /// With BADTIME: the server's clock, from Other Data.
        server_time: Option<u64>,
    },
    #[error("the response's TSIG signature does not verify")]
    BadSig,
    #[error("the response was signed at {time_signed}, outside our time {now} ± {fudge}")]
    BadTime {
        time_signed: u64,
        now: u64,
        fudge: u16,
    },
    #[error("more than 99 unsigned messages in a row (RFC 8945 §5.3.1)")]
    TooManyUnsigned,
}

/// The name of a TSIG error code, as `dig` and nsupdate print it.
pub fn tsig_error_name(code: Rcode) -> String {
    code.tsig_mnemonic()
        .map_or_else(|| code.to_string(), str::to_string)
}

/// A response whose TSIG checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedResponse {
    /// The response MAC: the prior MAC of the next message of a stream.
    pub mac: Vec<u8>,
    pub time_signed: u64,
}

/// Checks the TSIG of the first (or only) response to a request we signed with `key`,
/// whose MAC was `request_mac` (RFC 8945 §5.3, client side of §5.2).
pub fn verify_response(
    msg: &[u8],
    key: &Key,
    request_mac: &[u8],
    now: u64,
) -> Result<VerifiedResponse, ResponseError> {
    let t = find_tsig(msg)
        .map_err(ResponseError::Malformed)?
        .ok_or(ResponseError::Unsigned)?;
    if !t.names_key(key) {
        return Err(ResponseError::WrongKey);
    }
    if t.mac.is_empty() && t.error != Rcode::NOERROR {
        return Err(ResponseError::ServerError {
            error: t.error,
            server_time: None,
        });
    }
    if !check_mac(key, msg, &t, Some(request_mac), &[], &t.variables())
        .map_err(ResponseError::Malformed)?
    {
        return Err(ResponseError::BadSig);
    }
    if t.error != Rcode::NOERROR {
        let server_time = (t.error == Rcode::BADTIME)
            .then(|| Reader::new(t.other).u48().ok())
            .flatten();
        return Err(ResponseError::ServerError {
            error: t.error,
            server_time,
        });
    }
    if now.abs_diff(t.time_signed) > u64::from(t.fudge) {
        return Err(ResponseError::BadTime {
            time_signed: t.time_signed,
            now,
            fudge: t.fudge,
        });
    }
    Ok(VerifiedResponse {
        mac: t.mac.to_vec(),
        time_signed: t.time_signed,
    })
}
