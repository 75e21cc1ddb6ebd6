//! Turning ledger values into words people read: times, byte strings, chaincode arguments and
//! who signed a transaction.

use tally_protocol::identity;
use tally_protocol::{Signer, Transaction};

/// `2026-11-21 05:37:32.753 UTC` from Unix milliseconds.
pub fn utc_ms(ms: u64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000) else {
        return format!("{ms} ms");
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03} UTC",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// `2027-01-05` from Unix seconds.
pub fn date_s(s: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(s) {
        Ok(t) => format!("{:04}-{:02}-{:02}", t.year(), t.month() as u8, t.day()),
        Err(_) => format!("{s} s"),
    }
}

/// When a PEM certificate (an organization's CA) stops being valid, in Unix seconds.
pub fn cert_not_after(pem: &str) -> Option<i64> {
    let der = identity::pem_to_der(pem).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// An expiry: the date, how far away it is, and a class: `ok`, `warn` (under 30 days) or
/// `bad` (expired).
pub struct Expiry {
    pub date: String,
    pub distance: String,
    pub class: &'static str,
}

pub fn expiry(not_after_s: i64, now_s: i64) -> Expiry {
    let days = (not_after_s - now_s).div_euclid(86_400);
    Expiry {
        date: date_s(not_after_s),
        distance: if days < 0 {
            format!("expired {} days ago", -days)
        } else {
            format!("in {days} days")
        },
        class: match days {
            d if d < 0 => "bad",
            d if d < 30 => "warn",
            _ => "ok",
        },
    }
}

/// A stored value or a call's result for reading: JSON pretty-printed, text as it is, a record
/// in the chaincode field encoding as its fields, anything else in hex; cut at `max`.
pub fn value(b: &[u8], max: usize) -> String {
    if b.is_empty() {
        return "(empty)".into();
    }
    if let Ok(j) = serde_json::from_slice::<serde_json::Value>(b) {
        if j.is_object() || j.is_array() {
            if let Ok(p) = serde_json::to_string_pretty(&j) {
                return cut(&p, max);
            }
        }
    }
    // A record starts with its little-endian field count, so it is never printable text.
    let text = std::str::from_utf8(b)
        .is_ok_and(|t| !t.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
    if !text && fields(b).is_some_and(|fs| !fs.is_empty()) {
        return cut(&format!("({})", args(b)), max);
    }
    bytes(b, max)
}

/// Bytes as text when they are printable UTF-8, else `0x` and hex; cut at `max` characters.
pub fn bytes(b: &[u8], max: usize) -> String {
    let s = match std::str::from_utf8(b) {
        Ok(t) if !t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => t.to_string(),
        _ => format!("0x{}", hex::encode(b)),
    };
    cut(&s, max)
}

/// `s` cut to `max` characters with an ellipsis.
pub fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Decodes the chaincode argument encoding (a little-endian u32 count, then per field a
/// little-endian u32 length and the bytes); `None` when `b` is not in it.
pub fn fields(b: &[u8]) -> Option<Vec<&[u8]>> {
    let mut rest = b;
    let take_u32 = |rest: &mut &[u8]| -> Option<usize> {
        let (head, tail) = rest.split_first_chunk::<4>()?;
        *rest = tail;
        Some(u32::from_le_bytes(*head) as usize)
    };
    let n = take_u32(&mut rest)?;
    // Each field takes at least its length prefix, so a count beyond that is a lie.
    if n > rest.len() / 4 {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = take_u32(&mut rest)?;
        if len > rest.len() {
            return None;
        }
        let (f, tail) = rest.split_at(len);
        out.push(f);
        rest = tail;
    }
    rest.is_empty().then_some(out)
}

/// Chaincode arguments as `"a", "b", 0x01ff`, or hex when they are not in the field encoding.
pub fn args(b: &[u8]) -> String {
    match fields(b) {
        Some(fs) => fs
            .iter()
            .map(|f| match std::str::from_utf8(f) {
                Ok(t) => format!("{:?}", cut(t, 80)),
                Err(_) => bytes(f, 80),
            })
            .collect::<Vec<_>>()
            .join(", "),
        None => bytes(b, 120),
    }
}

/// Who signed a transaction, as the certificate in it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignedBy {
    /// From the certificate: organization, common name, role.
    Cert {
        org: String,
        name: String,
        role: String,
    },
    /// Signed by certificate hash (the channel recorded the certificate earlier).
    CertHash(String),
    /// A certificate that does not parse (the node rejected such a transaction).
    Unreadable,
}

impl SignedBy {
    pub fn of(tx: &Transaction) -> SignedBy {
        match &tx.body.signer {
            Signer::Certificate(der) => match identity::inspect(der) {
                Ok(i) => SignedBy::Cert {
                    org: i.org,
                    name: i.common_name,
                    role: i.role.as_str().to_string(),
                },
                Err(_) => SignedBy::Unreadable,
            },
            Signer::CertHash(h) => SignedBy::CertHash(h.to_hex()),
        }
    }

    /// `org1/client`, `cert 754c64ec…` or `unreadable certificate`.
    pub fn label(&self) -> String {
        match self {
            SignedBy::Cert { org, name, .. } => format!("{org}/{name}"),
            SignedBy::CertHash(h) => format!("cert {}…", h.get(..8).unwrap_or(h)),
            SignedBy::Unreadable => "unreadable certificate".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(fs: &[&[u8]]) -> Vec<u8> {
        let mut b = (fs.len() as u32).to_le_bytes().to_vec();
        for f in fs {
            b.extend_from_slice(&(f.len() as u32).to_le_bytes());
            b.extend_from_slice(f);
        }
        b
    }

    #[test]
    fn field_encoding_round_trips_and_refuses_lies() {
        let b = encode(&[b"R1", b"org2", b"", &[0xff, 0]]);
        assert_eq!(
            fields(&b).unwrap(),
            vec![&b"R1"[..], b"org2", b"", &[0xff, 0]]
        );
        assert_eq!(args(&b), "\"R1\", \"org2\", \"\", 0xff00");
        assert!(fields(&b[..b.len() - 1]).is_none(), "truncated");
        let mut trailing = b.clone();
        trailing.push(0);
        assert!(fields(&trailing).is_none(), "trailing byte");
        assert!(fields(&[0xff, 0xff, 0xff, 0x7f]).is_none(), "huge count");
        assert_eq!(args(b"\x01\x02"), "0x0102");
        assert_eq!(value(&b, 100), "(\"R1\", \"org2\", \"\", 0xff00)");
        assert_eq!(value(b"{\"a\":1}", 100), "{\n  \"a\": 1\n}");
        assert_eq!(value(b"plain", 100), "plain");
        assert_eq!(value(b"", 100), "(empty)");
    }

    #[test]
    fn times_and_texts() {
        assert_eq!(utc_ms(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(utc_ms(1_795_239_452_753), "2026-11-21 05:37:32.753 UTC");
        assert_eq!(date_s(86_400 * 365), "1971-01-01");
        assert_eq!(bytes(b"hello", 10), "hello");
        assert_eq!(bytes(&[0, 1], 10), "0x0001");
        assert_eq!(cut("abcdef", 3), "abc…");
        assert_eq!(cut("货物", 5), "货物");
    }
}
