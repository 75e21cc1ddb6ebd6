//! Who may read a channel's data: every read of keys, history, blocks and receipts carries a
//! signed request (see `tally_protocol::read_auth`) that must come from a certificate of a
//! member organization in the channel's `readers` policy. Status, configuration, block headers
//! (hashes only) and health stay open: they say how the channel runs, not what it holds, and
//! anyone holding a receipt can check it against them.

use crate::http::Refusal;
use crate::ledger::Ledger;
use hyper::{Request, StatusCode};
use std::collections::HashMap;
use tally_protocol::read_auth::{self, AUTH_HEADER, CERT_HEADER};
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
        )
}

/// Checks the reader of `req` and returns who it is (a chaincode query runs as the reader);
/// the error says what to answer instead.
pub fn check<B>(
    ledger: &Ledger,
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
    let (time_ms, signature) = read_auth::parse_auth(auth).map_err(bad)?;
    let window_ms = u64::from(ledger.config().tx_window_s) * 1000;
    if time_ms.abs_diff(now_ms) > window_ms {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "expired",
            format!(
                "the read was signed more than {} s from this node's time",
                ledger.config().tx_window_s
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
    let msg = read_auth::message(req.method().as_str(), path, time_ms);
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
    Ok(signer.info.clone())
}
