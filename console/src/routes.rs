//! The console's URLs.

use crate::query::{self, decode};

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Consortium,
    Channel(String),
    Blocks {
        ch: String,
        before: Option<u64>,
    },
    Block {
        ch: String,
        n: u64,
    },
    Tx {
        ch: String,
        id: String,
    },
    Keys {
        ch: String,
        prefix: String,
    },
    Key {
        ch: String,
        key: String,
    },
    Chaincodes(String),
    Trace {
        ch: String,
        cc: String,
        id: Option<String>,
    },
    Notary {
        ch: String,
        cc: String,
    },
    NotaryLookup {
        ch: String,
        cc: String,
        hash: String,
    },
    /// Server-sent events of committed blocks from `from` on.
    Live {
        ch: String,
        from: Option<u64>,
    },
    Search {
        q: String,
        channel: Option<String>,
    },
    Asset(String),
    Health,
    Login,
    NotFound,
}

/// The route of a path and its query string (both as received, still percent-encoded).
pub fn parse(path: &str, q: Option<&str>) -> Route {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let get = |name: &str| query::get(q, name);
    let number = |name: &str| get(name).and_then(|v| v.trim().parse::<u64>().ok());
    match s.as_slice() {
        [] => Route::Consortium,
        ["healthz"] => Route::Health,
        ["login"] => Route::Login,
        ["assets", name] => Route::Asset(name.to_string()),
        ["search"] => Route::Search {
            q: get("q").unwrap_or_default(),
            channel: get("channel").filter(|c| !c.is_empty()),
        },
        ["channels", ch] => Route::Channel(ch.to_string()),
        ["channels", ch, "blocks"] => Route::Blocks {
            ch: ch.to_string(),
            before: number("before"),
        },
        ["channels", ch, "blocks", n] => match n.parse() {
            Ok(n) => Route::Block {
                ch: ch.to_string(),
                n,
            },
            Err(_) => Route::NotFound,
        },
        ["channels", ch, "tx", id] => Route::Tx {
            ch: ch.to_string(),
            id: id.to_string(),
        },
        ["channels", ch, "keys"] => Route::Keys {
            ch: ch.to_string(),
            prefix: get("prefix").unwrap_or_default(),
        },
        ["channels", ch, "key"] => match get("k") {
            Some(key) => Route::Key {
                ch: ch.to_string(),
                key,
            },
            None => Route::NotFound,
        },
        ["channels", ch, "live"] => Route::Live {
            ch: ch.to_string(),
            from: number("from"),
        },
        ["channels", ch, "chaincodes"] => Route::Chaincodes(ch.to_string()),
        ["channels", ch, "chaincodes", cc, "trace"] => Route::Trace {
            ch: ch.to_string(),
            cc: cc.to_string(),
            id: get("id").map(|i| i.trim().to_string()),
        },
        ["channels", ch, "chaincodes", cc, "notary"] => Route::Notary {
            ch: ch.to_string(),
            cc: cc.to_string(),
        },
        ["channels", ch, "chaincodes", cc, "notary.json"] => Route::NotaryLookup {
            ch: ch.to_string(),
            cc: cc.to_string(),
            hash: get("hash").unwrap_or_default(),
        },
        _ => Route::NotFound,
    }
}

/// A path segment: percent-decoded, where `+` stays a plus.
fn decode_segment(s: &str) -> String {
    decode(&s.replace('+', "%2B"))
}

impl Route {
    /// The channel a route is about, for the error page's crumbs.
    pub fn channel(&self) -> Option<&str> {
        match self {
            Route::Channel(ch) | Route::Chaincodes(ch) => Some(ch),
            Route::Blocks { ch, .. }
            | Route::Block { ch, .. }
            | Route::Tx { ch, .. }
            | Route::Keys { ch, .. }
            | Route::Key { ch, .. }
            | Route::Trace { ch, .. }
            | Route::Notary { ch, .. }
            | Route::NotaryLookup { ch, .. }
            | Route::Live { ch, .. } => Some(ch),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_routes() {
        assert_eq!(parse("/", None), Route::Consortium);
        assert_eq!(parse("/channels/main", None), Route::Channel("main".into()));
        assert_eq!(
            parse("/channels/main/blocks/7", None),
            Route::Block {
                ch: "main".into(),
                n: 7
            }
        );
        assert_eq!(parse("/channels/main/blocks/x", None), Route::NotFound);
        assert_eq!(
            parse("/channels/main/key", Some("k=cc~receivables~r%2FR1")),
            Route::Key {
                ch: "main".into(),
                key: "cc~receivables~r/R1".into()
            }
        );
        assert_eq!(
            parse("/channels/main/live", Some("from=12")),
            Route::Live {
                ch: "main".into(),
                from: Some(12)
            }
        );
        assert_eq!(
            parse("/search", Some("q=a+b&channel=")),
            Route::Search {
                q: "a b".into(),
                channel: None
            }
        );
        assert_eq!(
            parse("/channels/main/chaincodes/receivables/trace", Some("id=R1")),
            Route::Trace {
                ch: "main".into(),
                cc: "receivables".into(),
                id: Some("R1".into())
            }
        );
        assert_eq!(parse("/channels/a%2Bb", None), Route::Channel("a+b".into()));
        assert_eq!(parse("/channels/a+b", None), Route::Channel("a+b".into()));
        assert_eq!(parse("/nope/x", None), Route::NotFound);
    }
}
