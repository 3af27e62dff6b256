//! Multi-message answers such as AXFR: signing and checking a stream (RFC 8945 §5.3.1).

use std::sync::Arc;

use super::client::{verify_response, ResponseError};
use super::record::{append_tsig, check_mac, find_tsig, sign_mac, tsig_timers, SignError};
use super::server::{sign_response, ResponseTsig, Verified};
use super::Key;
use crate::proto::types::Rcode;
use crate::proto::HEADER_LEN;

/// The most messages of a stream that may go unsigned in a row (RFC 8945 §5.3.1).
pub const MAX_UNSIGNED_IN_A_ROW: usize = 99;

/// Signs the messages of a multi-message response such as AXFR (RFC 8945 §5.3.1).
///
/// The first message is signed like any response; each later signed message's MAC covers
/// the prior MAC, every message left unsigned since, this message and the timers only.
/// The first and last messages must be signed and no more than 99 may be skipped in a
/// row; [`StreamSigner::skip`] refuses a 100th.
#[derive(Debug, Clone)]
pub struct StreamSigner {
    key: Arc<Key>,
    prior_mac: Vec<u8>,
    original_id: u16,
    fudge: u16,
    first: bool,
    /// The unsigned messages since the last signed one, as sent.
    pending: Vec<u8>,
    skipped: usize,
}

impl StreamSigner {
    /// A signer for the answer to this request.
    pub fn new(request: &Verified) -> StreamSigner {
        StreamSigner {
            key: Arc::clone(&request.key),
            prior_mac: request.request_mac.clone(),
            original_id: request.original_id,
            fudge: request.fudge,
            first: true,
            pending: Vec::new(),
            skipped: 0,
        }
    }

    /// Signs the next message.
    pub fn sign(&mut self, msg: &mut Vec<u8>, now: u64) -> Result<(), SignError> {
        if self.first {
            let tsig = ResponseTsig::Signed {
                key: Arc::clone(&self.key),
                request_mac: std::mem::take(&mut self.prior_mac),
                original_id: self.original_id,
                fudge: self.fudge,
                error: Rcode::NOERROR,
                request_time: None,
            };
            self.prior_mac = sign_response(msg, &tsig, now)?;
            self.first = false;
            return Ok(());
        }
        if msg.len() < HEADER_LEN {
            return Err(SignError::Short);
        }
        let mac = sign_mac(
            &self.key,
            msg,
            self.original_id,
            Some(&self.prior_mac),
            &self.pending,
            &tsig_timers(now, self.fudge),
        );
        append_tsig(
            msg,
            &self.key.name,
            self.key.algorithm.wire_name(),
            now,
            self.fudge,
            &mac,
            self.original_id,
            Rcode::NOERROR,
            &[],
        )?;
        self.prior_mac = mac;
        self.pending.clear();
        self.skipped = 0;
        Ok(())
    }

    /// Sends the next message unsigned; its bytes go into the next MAC. Returns `false`
    /// (and takes nothing) when the message must be signed instead: it is the first, or
    /// 99 are already unsigned in a row.
    pub fn skip(&mut self, msg: &[u8]) -> bool {
        if self.first || self.skipped >= MAX_UNSIGNED_IN_A_ROW {
            return false;
        }
        self.pending.extend_from_slice(msg);
        self.skipped += 1;
        true
    }
}

/// Checks the messages of a multi-message response (RFC 8945 §5.3.1), client side.
#[derive(Debug, Clone)]
pub struct StreamVerifier {
    key: Key,
    prior_mac: Vec<u8>,
    first: bool,
    pending: Vec<u8>,
    skipped: usize,
}

impl StreamVerifier {
    /// A verifier for the answer to a request signed with `key` whose MAC was
    /// `request_mac`.
    pub fn new(key: &Key, request_mac: &[u8]) -> StreamVerifier {
        StreamVerifier {
            key: key.clone(),
            prior_mac: request_mac.to_vec(),
            first: true,
            pending: Vec::new(),
            skipped: 0,
        }
    }

    /// Checks the next message. `Ok(true)`: signed and good; `Ok(false)`: unsigned,
    /// accepted for now (the next signed message covers it). The caller must see a signed
    /// message last.
    pub fn verify(&mut self, msg: &[u8], now: u64) -> Result<bool, ResponseError> {
        if self.first {
            let v = verify_response(msg, &self.key, &self.prior_mac, now)?;
            self.prior_mac = v.mac;
            self.first = false;
            return Ok(true);
        }
        let Some(t) = find_tsig(msg).map_err(ResponseError::Malformed)? else {
            if self.skipped >= MAX_UNSIGNED_IN_A_ROW {
                return Err(ResponseError::TooManyUnsigned);
            }
            self.pending.extend_from_slice(msg);
            self.skipped += 1;
            return Ok(false);
        };
        if !t.names_key(&self.key) {
            return Err(ResponseError::WrongKey);
        }
        let timers = tsig_timers(t.time_signed, t.fudge);
        if !check_mac(
            &self.key,
            msg,
            &t,
            Some(&self.prior_mac),
            &self.pending,
            &timers,
        )
        .map_err(ResponseError::Malformed)?
        {
            return Err(ResponseError::BadSig);
        }
        if now.abs_diff(t.time_signed) > u64::from(t.fudge) {
            return Err(ResponseError::BadTime {
                time_signed: t.time_signed,
                now,
                fudge: t.fudge,
            });
        }
        self.prior_mac = t.mac.to_vec();
        self.pending.clear();
        self.skipped = 0;
        Ok(true)
    }
}
