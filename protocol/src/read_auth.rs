//! Signed reads: how a client proves, on each read of a channel's data, which certificate it
//! holds, so that a node serves a channel's keys, blocks and receipts only to its readers.
//!
//! A read carries two headers: [`CERT_HEADER`] with the reader's certificate (DER, hex) and
//! [`AUTH_HEADER`] with `<unix ms>.<nonce hex>.<signature hex>`, the Ed25519 signature of
//! [`message`] over the method, the path with its query, that time and a fresh random nonce.
//! The node checks the certificate against the channel's member CAs, the time against a short
//! window ([`READ_WINDOW_MS`]), the signature, that it has not seen the (signer, nonce) pair
//! within the window (so a captured read cannot be replayed), then the channel's `readers`
//! policy.

use crate::hash::Hash;
use crate::identity::Identity;

/// Header with the reader's certificate, DER in lowercase hex.
pub const CERT_HEADER: &str = "tally-read-cert";
/// Header with `<unix ms>.<32 hex digits of the nonce>.<128 hex digits of the signature>`.
pub const AUTH_HEADER: &str = "tally-read-auth";
/// How far a read's time may be from the node's clock, either way. Short, because a node
/// remembers every nonce it accepted for this long (twice this, counting both sides).
pub const READ_WINDOW_MS: u64 = 30_000;
/// Bytes of a read's nonce: random, so two honest reads never share one.
pub const NONCE_LEN: usize = 16;

/// The parts of an [`AUTH_HEADER`] value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadAuth {
    pub time_ms: u64,
    pub nonce: [u8; NONCE_LEN],
    pub signature: [u8; 64],
}

/// What a reader signs: a tagged hash, so that a read signature can never pass for a
/// transaction signature or the other way round.
pub fn message(method: &str, path_and_query: &str, time_ms: u64, nonce: &[u8; NONCE_LEN]) -> Hash {
    Hash::tagged(
        b"tally-read-v2",
        &[
            &(method.len() as u32).to_be_bytes(),
            method.as_bytes(),
            &(path_and_query.len() as u32).to_be_bytes(),
            path_and_query.as_bytes(),
            &time_ms.to_be_bytes(),
            nonce,
        ],
    )
}

/// A fresh random nonce for one read.
pub fn fresh_nonce() -> [u8; NONCE_LEN] {
    rand::random()
}

/// The two header values for a read by `id` at `time_ms`, with a fresh nonce.
pub fn sign(id: &Identity, method: &str, path_and_query: &str, time_ms: u64) -> (String, String) {
    sign_with_nonce(id, method, path_and_query, time_ms, &fresh_nonce())
}

/// [`sign`] with the nonce given (tests that replay, the bench that precomputes).
pub fn sign_with_nonce(
    id: &Identity,
    method: &str,
    path_and_query: &str,
    time_ms: u64,
    nonce: &[u8; NONCE_LEN],
) -> (String, String) {
    let sig = id.sign(&message(method, path_and_query, time_ms, nonce).0);
    (
        hex::encode(&id.cert_der),
        format!("{time_ms}.{}.{}", hex::encode(nonce), hex::encode(sig)),
    )
}

/// Splits an [`AUTH_HEADER`] value into its time, nonce and signature.
pub fn parse_auth(value: &str) -> Result<ReadAuth, String> {
    let mut parts = value.split('.');
    let (Some(t), Some(n), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "{AUTH_HEADER} is not <unix ms>.<nonce hex>.<signature hex>"
        ));
    };
    let time_ms = t
        .parse::<u64>()
        .map_err(|_| format!("{AUTH_HEADER}: {t:?} is not a time in Unix milliseconds"))?;
    let nonce: [u8; NONCE_LEN] = hex::decode(n)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            format!(
                "{AUTH_HEADER}: the nonce is not {} hex digits",
                NONCE_LEN * 2
            )
        })?;
    let signature: [u8; 64] = hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{AUTH_HEADER}: the signature is not 128 hex digits"))?;
    Ok(ReadAuth {
        time_ms,
        nonce,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{OrgCa, Role};
    use crate::sig;

    #[test]
    fn a_signed_read_verifies_only_for_what_was_signed() {
        let ca = OrgCa::generate("org1").unwrap();
        let id = ca.issue(Role::Client, "reader", &[]).unwrap();
        let (cert, auth) = sign(&id, "GET", "/v1/channels/main/state?key=a", 1000);
        assert_eq!(hex::decode(&cert).unwrap(), id.cert_der);
        let a = parse_auth(&auth).unwrap();
        assert_eq!(a.time_ms, 1000);
        let key = sig::public_key(&id.info.public_key).unwrap();
        let n = a.nonce;
        let ok = |m: &str, p: &str, t: u64, n: &[u8; NONCE_LEN]| {
            sig::verify(&key, &a.signature, &message(m, p, t, n).0)
        };
        assert!(ok("GET", "/v1/channels/main/state?key=a", 1000, &n));
        assert!(!ok("GET", "/v1/channels/main/state?key=b", 1000, &n));
        assert!(!ok("GET", "/v1/channels/main/state?key=a", 1001, &n));
        assert!(!ok("POST", "/v1/channels/main/state?key=a", 1000, &n));
        let mut other = n;
        other[0] ^= 1;
        assert!(!ok("GET", "/v1/channels/main/state?key=a", 1000, &other));
        // The method and the path cannot trade bytes.
        assert_ne!(message("GET", "/x", 1, &n), message("GE", "T/x", 1, &n));
        // Two reads of the same thing at the same time differ by their nonces.
        let (_, again) = sign(&id, "GET", "/v1/channels/main/state?key=a", 1000);
        assert_ne!(parse_auth(&again).unwrap().nonce, n);
    }

    #[test]
    fn malformed_auth_headers_are_explained() {
        let nonce = "00".repeat(NONCE_LEN);
        assert!(parse_auth("nodot").unwrap_err().contains("<unix ms>"));
        assert!(parse_auth("5.00").unwrap_err().contains("<unix ms>"));
        assert!(parse_auth(&format!("x.{nonce}.00"))
            .unwrap_err()
            .contains("Unix milliseconds"));
        assert!(parse_auth("5.00.00").unwrap_err().contains("nonce"));
        assert!(parse_auth(&format!("5.{nonce}.00"))
            .unwrap_err()
            .contains("128 hex"));
        assert!(parse_auth(&format!("5.{nonce}.00.00"))
            .unwrap_err()
            .contains("<unix ms>"));
    }
}
