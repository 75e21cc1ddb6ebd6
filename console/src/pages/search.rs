//! The search box: a transaction id (64 hex digits), a block number, or a key; in the channel
//! the page was about first, then in every other channel the organization reads. One match
//! goes straight to its page; several are listed.

use crate::app::{App, Page, Reply};
use crate::error::ConsoleError;
use crate::html::{self, esc, w};
use futures_util::future::join_all;
use tally_protocol::Hash;

/// What the text looks like.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    Tx(Hash),
    Block(u64),
    Key(String),
}

pub fn classify(q: &str) -> Option<Wanted> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let hex = q.strip_prefix("0x").unwrap_or(q);
    if hex.len() == 64 {
        if let Ok(h) = Hash::from_hex(&hex.to_ascii_lowercase()) {
            return Some(Wanted::Tx(h));
        }
    }
    if let Ok(n) = q.strip_prefix('#').unwrap_or(q).parse::<u64>() {
        return Some(Wanted::Block(n));
    }
    Some(Wanted::Key(q.to_string()))
}

pub async fn page(app: &App, q: &str, channel: Option<&str>) -> Result<Reply, ConsoleError> {
    let topo = app.ledger.topology().await;
    let mut channels: Vec<String> = topo.readable().map(|(c, _)| c.clone()).collect();
    // The channel the search came from goes first, if the organization reads it at all.
    if let Some(pos) = channel.and_then(|ch| channels.iter().position(|c| c == ch)) {
        let ch = channels.remove(pos);
        channels.insert(0, ch);
    }
    let channel = channel.filter(|ch| channels.first().is_some_and(|c| c == ch));
    let Some(wanted) = classify(q) else {
        return Ok(results(
            q,
            "Type a transaction id, a block number or a key.",
            &[],
        ));
    };
    // A number or a key names something of the channel the search came from, when it came
    // from one; a transaction id is looked for everywhere.
    let scope: Vec<&String> = match (&wanted, channel) {
        (Wanted::Tx(_), _) | (_, None) => channels.iter().collect(),
        (_, Some(_)) => channels.iter().take(1).collect(),
    };
    let found = join_all(scope.into_iter().map(|ch| find(app, ch, &wanted))).await;
    let hits: Vec<(String, String)> = found.into_iter().flatten().collect();
    match hits.as_slice() {
        [(_, href)] => Ok(Reply::Redirect(href.clone())),
        [] => Ok(results(
            q,
            &format!(
                "Nothing found in {}.",
                if channels.is_empty() {
                    "any channel (this organization reads none)".to_string()
                } else {
                    format!(
                        "channel{} {}",
                        if channels.len() == 1 { "" } else { "s" },
                        channels.join(", ")
                    )
                }
            ),
            &[],
        )),
        many => Ok(results(q, "Found in several places:", many)),
    }
}

/// Where `wanted` is in channel `ch`, if it is: a label and a link.
async fn find(app: &App, ch: &str, wanted: &Wanted) -> Option<(String, String)> {
    match wanted {
        Wanted::Tx(id) => {
            let r = app
                .ledger
                .read(ch, |c| async move { c.receipt(ch, id).await })
                .await;
            matches!(r, Ok(Some(_))).then(|| {
                (
                    format!("transaction in channel {ch}"),
                    html::tx_href(ch, &id.to_hex()),
                )
            })
        }
        Wanted::Block(n) => {
            let s = app
                .ledger
                .read(ch, |c| async move { c.status(ch).await })
                .await;
            matches!(s, Ok(s) if s.height > *n).then(|| {
                (
                    format!("block {n} of channel {ch}"),
                    html::block_href(ch, *n),
                )
            })
        }
        Wanted::Key(k) => {
            let h = app
                .ledger
                .read(ch, |c| async move { c.history(ch, k, Some(1)).await })
                .await;
            matches!(h, Ok(h) if !h.entries.is_empty())
                .then(|| (format!("key {k} in channel {ch}"), html::key_href(ch, k)))
        }
    }
}

fn results(q: &str, note: &str, hits: &[(String, String)]) -> Reply {
    let mut h = String::new();
    w!(
        h,
        "<section class=\"card\"><h1>Search: <code>{}</code></h1><p id=\"search-note\">{}</p><ul class=\"plain\">",
        esc(q),
        esc(note)
    );
    for (label, href) in hits {
        w!(h, "<li><a href=\"{}\">{}</a></li>", esc(href), esc(label));
    }
    h.push_str("</ul></section>");
    Reply::Page(Page::new("search", h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_classified() {
        let id = "ab".repeat(32);
        assert_eq!(classify(&id), Some(Wanted::Tx(Hash([0xab; 32]))));
        assert_eq!(
            classify(&format!("0x{}", id.to_uppercase())),
            Some(Wanted::Tx(Hash([0xab; 32])))
        );
        assert_eq!(classify(" 42 "), Some(Wanted::Block(42)));
        assert_eq!(classify("#7"), Some(Wanted::Block(7)));
        assert_eq!(classify("greeting"), Some(Wanted::Key("greeting".into())));
        assert_eq!(
            classify(&"zz".repeat(32)),
            Some(Wanted::Key("zz".repeat(32)))
        );
        assert_eq!(classify("  "), None);
    }
}
