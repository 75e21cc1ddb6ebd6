//! Who may read a channel's data: every read of keys, history, blocks, receipts and proposals
//! carries a signed request (see `tally_protocol::read_auth`) that must come from a
//! certificate of a member organization in the channel's `readers` policy. Status,
//! configuration, block headers (hashes only) and health stay open: they say how the channel
//! runs, not what it holds, and anyone holding a receipt can check it against them.
//!
//! A signed read is good once: its time must be within
//! [`READ_WINDOW_MS`](tally_protocol::read_auth::READ_WINDOW_MS) of the node's clock and its
//! (signer key, nonce) pair new to this node (see [`crate::read_replay`]).

use crate::http::Refusal;
use crate::ledger::Ledger;
use crate::read_replay::{Refused, SeenReads};
use hyper::{Request, StatusCode};
use std::collections::HashMap;
use tally_protocol::read_auth::{self, ReadAuth, AUTH_HEADER, CERT_HEADER, READ_WINDOW_MS};
use tally_protocol::{sig, Signer};

/// Whether a request to a channel route reads the channel's data.
pub fn is_data_read(method: &hyper::Method, rest: &[&str]) -> bool {
    method == hyper::Method::GET
        && matches!(
            rest,
            ["transactions", _]
                | ["blocks", _]
                | ["state"]
                | ["history"]
                | ["keys"]
                | ["chaincodes", _, "query"]
                | ["proposals"]
                | ["proposals", _]
        )
}

/// Checks the reader of `req` and returns who it is (a chaincode query runs as the reader);
/// the error says what to answer instead.
pub fn check<B>(
    ledger: &Ledger,
    seen: &SeenReads,
    req: &Request<B>,
    now_ms: u64,
) -> Result<tally_protocol::CertInfo, Refusal> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let (Some(cert), Some(auth)) = (header(CERT_HEADER), header(AUTH_HEADER)) else {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "read_unauthenticated",
            format!(
                "reading channel {} needs a signed request (headers {CERT_HEADER} and {AUTH_HEADER}); \
                 tallyctl signs reads with --data-dir DIR --org ORG or --identity DIR",
                ledger.name
            ),
        ));
    };
    let bad = |msg: String| Refusal::new(StatusCode::BAD_REQUEST, "malformed", msg);
    let der = hex::decode(cert).map_err(|_| bad(format!("{CERT_HEADER} is not hex")))?;
    let ReadAuth {
        time_ms,
        nonce,
        signature,
    } = read_auth::parse_auth(auth).map_err(bad)?;
    if time_ms.abs_diff(now_ms) > READ_WINDOW_MS {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "expired",
            format!(
                "the read was signed more than {} s from this node's time",
                READ_WINDOW_MS / 1000
            ),
        ));
    }
    let (signer, _) = ledger
        .signer_info(
            &Signer::Certificate(der),
            (now_ms / 1000) as i64,
            &HashMap::new(),
        )
        .map_err(|(code, msg)| Refusal::new(StatusCode::FORBIDDEN, code.as_str(), msg))?;
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let msg = read_auth::message(req.method().as_str(), path, time_ms, &nonce);
    if !sig::verify(&signer.key, &signature, &msg.0) {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the read signature does not match the certificate and the request",
        ));
    }
    if !ledger.config().may_read(&signer.info.org) {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "organization {} may not read channel {} (readers policy)",
                signer.info.org, ledger.name
            ),
        ));
    }
    // Last, so that only reads that would be served take a place in the cache. Keyed by the
    // public key, not the certificate: a renewed certificate keeps the key, and must not make
    // an old read new again.
    match seen.admit(&signer.info.public_key, &nonce, time_ms, now_ms) {
        Ok(()) => Ok(signer.info.clone()),
        Err(Refused::Replayed) => Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "replayed",
            "this signed read was already served: every read needs a fresh nonce",
        )),
        Err(Refused::Full) => Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "this node remembers as many recent reads as it may; retry shortly",
        )),
    }
}
