//! Signed reads: how a client proves, on each read of a channel's data, which certificate it
//! holds, so that a node serves a channel's keys, blocks and receipts only to its readers.
//!
//! A read carries two headers: [`CERT_HEADER`] with the reader's certificate (DER, hex) and
//! [`AUTH_HEADER`] with `<unix ms>.<signature hex>`, the Ed25519 signature of
//! [`message`] over the method, the path with its query, and that time. The node checks the
//! certificate against the channel's member CAs, the time against the channel's transaction
//! window and the signature, then the channel's `readers` policy.

use crate::hash::Hash;
use crate::identity::Identity;

/// Header with the reader's certificate, DER in lowercase hex.
pub const CERT_HEADER: &str = "tally-read-cert";
/// Header with `<unix ms>.<128 hex digits of the signature>`.
pub const AUTH_HEADER: &str = "tally-read-auth";

/// What a reader signs: a tagged hash, so that a read signature can never pass for a
/// transaction signature or the other way round.
pub fn message(method: &str, path_and_query: &str, time_ms: u64) -> Hash {
    Hash::tagged(
        b"tally-read-v1",
        &[
            &(method.len() as u32).to_be_bytes(),
            method.as_bytes(),
            &(path_and_query.len() as u32).to_be_bytes(),
            path_and_query.as_bytes(),
            &time_ms.to_be_bytes(),
        ],
    )
}

/// The two header values for a read by `id` at `time_ms`.
pub fn sign(id: &Identity, method: &str, path_and_query: &str, time_ms: u64) -> (String, String) {
    let sig = id.sign(&message(method, path_and_query, time_ms).0);
    (
        hex::encode(&id.cert_der),
        format!("{time_ms}.{}", hex::encode(sig)),
    )
}

/// Splits an [`AUTH_HEADER`] value into its time and signature.
pub fn parse_auth(value: &str) -> Result<(u64, [u8; 64]), String> {
    let (t, s) = value
        .split_once('.')
        .ok_or_else(|| format!("{AUTH_HEADER} is not <unix ms>.<signature hex>"))?;
    let time = t
        .parse::<u64>()
        .map_err(|_| format!("{AUTH_HEADER}: {t:?} is not a time in Unix milliseconds"))?;
    let sig: [u8; 64] = hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{AUTH_HEADER}: the signature is not 128 hex digits"))?;
    Ok((time, sig))
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
        let (t, s) = parse_auth(&auth).unwrap();
        assert_eq!(t, 1000);
        let key = sig::public_key(&id.info.public_key).unwrap();
        let ok = |m: &str, p: &str, t: u64| sig::verify(&key, &s, &message(m, p, t).0);
        assert!(ok("GET", "/v1/channels/main/state?key=a", 1000));
        assert!(!ok("GET", "/v1/channels/main/state?key=b", 1000));
        assert!(!ok("GET", "/v1/channels/main/state?key=a", 1001));
        assert!(!ok("POST", "/v1/channels/main/state?key=a", 1000));
        // The method and the path cannot trade bytes.
        assert_ne!(message("GET", "/x", 1), message("GE", "T/x", 1));
    }

    #[test]
    fn malformed_auth_headers_are_explained() {
        assert!(parse_auth("nodot").unwrap_err().contains("<unix ms>"));
        assert!(parse_auth("x.00")
            .unwrap_err()
            .contains("Unix milliseconds"));
        assert!(parse_auth("5.00").unwrap_err().contains("128 hex"));
    }
}
