//! Who may look through the console. The console reads with an organization's identity, so
//! whoever reaches it reads as that organization: it never serves an open port.
//!
//! - Loopback (local mode): no login, but only on a loopback address, and only for requests
//!   whose `Host` is a loopback name, so that a web page elsewhere cannot reach it by
//!   rebinding its own DNS name to 127.0.0.1.
//! - Token (a cluster): every request carries the token from a Secret, as
//!   `Authorization: Bearer <token>` or as the session cookie that the login form sets (a
//!   digest of the token, so the cookie never holds the token itself).
//! - Client certificates (a cluster): the TLS layer admits only certificates of the given CA.

use hyper::header::{HeaderMap, AUTHORIZATION, COOKIE, HOST};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "tally_console";
/// Shortest token accepted: a guessable token would be an open port with extra steps.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Clone)]
pub enum Auth {
    Loopback,
    Token(Token),
    /// Clients were authenticated by their TLS certificates before any request.
    Open,
}

/// A bearer token, kept as digests so that comparisons take the same time whatever matches.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
    session: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token from the text of a Secret or file (surrounding whitespace ignored).
    pub fn new(text: &str) -> Result<Token, String> {
        let t = text.trim();
        if t.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the console token must be at least {MIN_TOKEN_LEN} characters (it has {})",
                t.len()
            ));
        }
        let digest: [u8; 32] = Sha256::digest(t.as_bytes()).into();
        let session = hex::encode(Sha256::digest(
            [&b"tally-console-session\0"[..], t.as_bytes()].concat(),
        ));
        Ok(Token { digest, session })
    }

    /// Whether `candidate` is the token.
    pub fn matches(&self, candidate: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(candidate.trim().as_bytes()).into();
        same(&d, &self.digest)
    }

    /// The value of the session cookie for this token.
    pub fn session(&self) -> &str {
        &self.session
    }

    fn session_matches(&self, candidate: &str) -> bool {
        same(candidate.as_bytes(), self.session.as_bytes())
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The outcome of checking a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No or wrong credentials: show the login form (or a 401 to a program).
    LoginNeeded,
    /// A loopback console asked under a name that is not loopback.
    WrongHost,
}

impl Auth {
    pub fn check(&self, headers: &HeaderMap) -> Verdict {
        match self {
            Auth::Open => Verdict::Allowed,
            Auth::Loopback => {
                let host = headers
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("");
                if loopback_host(host) {
                    Verdict::Allowed
                } else {
                    Verdict::WrongHost
                }
            }
            Auth::Token(t) => {
                let bearer = headers
                    .get(AUTHORIZATION)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                if bearer.is_some_and(|b| t.matches(b)) {
                    return Verdict::Allowed;
                }
                let cookie = headers
                    .get_all(COOKIE)
                    .iter()
                    .filter_map(|h| h.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .filter_map(|kv| kv.trim().split_once('='))
                    .any(|(k, v)| k == COOKIE_NAME && t.session_matches(v));
                if cookie {
                    Verdict::Allowed
                } else {
                    Verdict::LoginNeeded
                }
            }
        }
    }
}

/// `127.0.0.1:7080`, `[::1]:7080`, `localhost`, ...: names that only reach this machine.
pub fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, _)) => ip,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A path to go back to after the login: local and absolute, never `//elsewhere`.
pub fn safe_next(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next.to_string()
    } else {
        "/".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(hyper::header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn loopback_console_refuses_other_host_names() {
        let a = Auth::Loopback;
        for ok in ["127.0.0.1:7080", "127.4.5.6", "localhost:1", "[::1]:7080"] {
            assert_eq!(a.check(&headers(&[(HOST, ok)])), Verdict::Allowed, "{ok}");
        }
        for bad in [
            "evil.example:7080",
            "10.0.0.1:7080",
            "",
            "[::1",
            "localhost.evil.example",
        ] {
            assert_eq!(
                a.check(&headers(&[(HOST, bad)])),
                Verdict::WrongHost,
                "{bad}"
            );
        }
    }

    #[test]
    fn token_console_wants_the_token_or_its_session() {
        assert!(Token::new("short").is_err());
        let t = Token::new(" correct-horse-battery-staple\n").unwrap();
        let a = Auth::Token(t.clone());
        let ok = |h: &HeaderMap| a.check(h) == Verdict::Allowed;
        assert!(ok(&headers(&[(
            AUTHORIZATION,
            "Bearer correct-horse-battery-staple"
        )])));
        assert!(!ok(&headers(&[(
            AUTHORIZATION,
            "Bearer correct-horse-battery-stapl"
        )])));
        assert!(!ok(&headers(&[(
            AUTHORIZATION,
            "Basic correct-horse-battery-staple"
        )])));
        assert!(!ok(&headers(&[])));
        let cookie = format!("a=b; {COOKIE_NAME}={}", t.session());
        assert!(ok(&headers(&[(COOKIE, &cookie)])));
        assert!(!ok(&headers(&[(COOKIE, &format!("{COOKIE_NAME}=00"))])));
        // The cookie is not the token itself.
        assert!(!ok(&headers(&[(
            COOKIE,
            &format!("{COOKIE_NAME}=correct-horse-battery-staple")
        )])));
        assert!(!t.session().contains("horse"));
    }

    #[test]
    fn next_stays_on_this_console() {
        assert_eq!(safe_next("/channels/main"), "/channels/main");
        assert_eq!(safe_next("//evil.example/"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
    }
}
