//! Base URLs and percent-encoding: what a caller's `https://host:port` may look like, and how
//! channel names, keys and query values are put into a request path. Pure functions, kept
//! apart from the transport so they can be used (and tested) without a connection.

use crate::error::ClientError;
use hyper::Uri;

/// Accepts `https://host:port[/]` or a bare `host:port`; returns the base URL without a
/// trailing slash. Plain `http://` is refused: nodes speak only TLS, and a client that fell
/// back to clear text would send signed requests and read answers anyone on the path sees.
pub fn normalize_url(url: &str) -> Result<String, ClientError> {
    let url = url.trim();
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    let base = with_scheme.trim_end_matches('/').to_string();
    let uri: Uri = base
        .parse()
        .map_err(|_| ClientError::BadUrl(url.to_string()))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some(other) => {
            return Err(ClientError::BadUrl(format!(
                "{url} (scheme {other}: the client API speaks only TLS, use https://)"
            )))
        }
        None => return Err(ClientError::BadUrl(url.to_string())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ClientError::BadUrl(url.to_string()));
    }
    if uri.query().is_some() || (uri.path() != "/" && !uri.path().is_empty()) {
        return Err(ClientError::BadUrl(format!(
            "{url} (give the base URL, without a path)"
        )));
    }
    Ok(base)
}

/// Percent-encodes a query value or a path segment: everything but the unreserved characters
/// of RFC 3986 (`A-Z a-z 0-9 - . _ ~`) becomes `%XX` of its UTF-8 bytes.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

/// Builds `?a=1&b=2` from pairs (values percent-encoded); empty when there are none.
pub fn query_string(pairs: &[(&str, String)]) -> String {
    let mut q = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        q.push(if i == 0 { '?' } else { '&' });
        q.push_str(k);
        q.push('=');
        q.push_str(&percent_encode(v));
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_unreserved_and_encodes_utf8() {
        assert_eq!(percent_encode("abc-XYZ_0.9~"), "abc-XYZ_0.9~");
        assert_eq!(
            percent_encode("a b&c=d/e?f#g%h+"),
            "a%20b%26c%3Dd%2Fe%3Ff%23g%25h%2B"
        );
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode("货"), "%E8%B4%A7");
        assert_eq!(percent_encode(""), "");
        assert_eq!(
            query_string(&[("key", "a b".into()), ("limit", "5".into())]),
            "?key=a%20b&limit=5"
        );
        assert_eq!(query_string(&[]), "");
    }

    #[test]
    fn urls_are_normalized() {
        assert_eq!(
            normalize_url("https://127.0.0.1:7051/").unwrap(),
            "https://127.0.0.1:7051"
        );
        assert_eq!(
            normalize_url("127.0.0.1:7051").unwrap(),
            "https://127.0.0.1:7051"
        );
        assert_eq!(
            normalize_url(" https://node-1:80 ").unwrap(),
            "https://node-1:80"
        );
        let e = normalize_url("http://x:1").unwrap_err().to_string();
        assert!(e.contains("only TLS"), "{e}");
        assert!(normalize_url("https://x:1/v1").is_err());
        assert!(normalize_url("https://").is_err());
        assert!(normalize_url("not a url").is_err());
    }
}
