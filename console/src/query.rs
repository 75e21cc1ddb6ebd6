//! Query strings and form bodies: `a=1&b=x%20y`, with `+` as a space (HTML forms send it so).

/// Percent-decodes `s` (`+` as a space); invalid escapes are kept as they are and invalid
/// UTF-8 is replaced, so any input decodes to some string.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The pairs of a query string or form body, decoded, in order.
pub fn pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The first value of `name` in a query string.
pub fn get(q: Option<&str>, name: &str) -> Option<String> {
    pairs(q?)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_handles_escapes_plus_and_garbage() {
        assert_eq!(decode("a%20b+c"), "a b c");
        assert_eq!(decode("%E8%B4%A7"), "货");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%ff"), "\u{fffd}");
        assert_eq!(
            pairs("q=r%2F1&channel=main&flag"),
            vec![
                ("q".into(), "r/1".into()),
                ("channel".into(), "main".into()),
                ("flag".into(), String::new())
            ]
        );
        assert_eq!(get(Some("a=1&b=2&b=3"), "b").as_deref(), Some("2"));
        assert_eq!(get(None, "b"), None);
    }
}
