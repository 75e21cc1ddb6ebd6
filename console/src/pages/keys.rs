//! World state: the keys of a channel by prefix, and one key's value and history.

use crate::app::{App, Page, Reply};
use crate::error::ConsoleError;
use crate::format;
use crate::html::{self, esc, w};

/// Keys listed at once.
const LIST: u32 = 200;
/// History entries shown.
const HISTORY: u32 = 500;

pub async fn key(app: &App, ch: &str, key: &str) -> Result<Reply, ConsoleError> {
    let (current, history) = tokio::join!(
        app.ledger.read(ch, |c| async move { c.get(ch, key).await }),
        app.ledger.read(
            ch,
            |c| async move { c.history(ch, key, Some(HISTORY)).await }
        ),
    );
    let (current, history) = (current?, history?);
    let mut h = String::new();
    w!(
        h,
        "<section class=\"card\"><h1>Key <code class=\"full\" id=\"key-name\">{}</code></h1>",
        esc(key)
    );
    match &current {
        Some(kv) => {
            w!(
                h,
                "<p>Current value, written at <a href=\"{}\">block {}</a> position {}:</p><pre class=\"value\">{}</pre>",
                esc(&html::block_href(ch, kv.version.block)),
                kv.version.block,
                kv.version.tx,
                esc(&format::value(&kv.value, 20_000))
            );
        }
        None => h.push_str("<p class=\"muted\">No current value: never written, or deleted.</p>"),
    }
    h.push_str("</section><section class=\"card\"><h2>History</h2>");
    if history.entries.is_empty() {
        h.push_str("<p class=\"muted\">No writes.</p>");
    } else {
        w!(
            h,
            "<p class=\"muted\">{} write{}, newest first{}.</p>",
            history.entries.len(),
            if history.entries.len() == 1 { "" } else { "s" },
            if history.entries.len() as u32 >= HISTORY {
                format!(" (the oldest {HISTORY} are shown)")
            } else {
                String::new()
            }
        );
        h.push_str("<table><thead><tr><th>Version</th><th>Time</th><th>Transaction</th><th>Value</th></tr></thead><tbody>");
        for e in history.entries.iter().rev() {
            let value = match &e.value {
                Some(v) => format!("<code>{}</code>", esc(&format::value(v, 160))),
                None => html::pill("warn", "deleted"),
            };
            w!(
                h,
                "<tr><td><a href=\"{}\">{}.{}</a></td><td>{}</td><td>{}</td><td>{value}</td></tr>",
                esc(&html::block_href(ch, e.version.block)),
                e.version.block,
                e.version.tx,
                esc(&format::utc_ms(e.timestamp_ms)),
                html::hash(
                    &e.tx_id.to_hex(),
                    Some(&html::tx_href(ch, &e.tx_id.to_hex()))
                )
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>");
    Ok(Reply::Page(Page::in_channel(
        ch,
        format!("key {}", format::cut(key, 40)),
        &[
            (
                "keys".to_string(),
                format!("/channels/{}/keys", html::enc(ch)),
            ),
            (format::cut(key, 40), String::new()),
        ],
        h,
    )))
}

pub async fn list(app: &App, ch: &str, prefix: &str) -> Result<Reply, ConsoleError> {
    let keys = app
        .ledger
        .read(ch, |c| async move { c.keys(ch, prefix, Some(LIST)).await })
        .await?;
    let mut h = String::new();
    w!(
        h,
        "<section class=\"card\"><h1>Keys of channel {}</h1>\
         <form class=\"inline\" method=\"get\"><input name=\"prefix\" value=\"{}\" placeholder=\"prefix, e.g. cc~receivables~r/\">\
         <button type=\"submit\">List</button></form>",
        esc(ch),
        esc(prefix)
    );
    if keys.is_empty() {
        h.push_str("<p class=\"muted\">No keys.</p>");
    } else {
        h.push_str("<table><thead><tr><th>Key</th><th>Last written</th></tr></thead><tbody>");
        for k in &keys {
            w!(
                h,
                "<tr><td><a href=\"{}\">{}</a></td><td><a href=\"{}\">{}.{}</a></td></tr>",
                esc(&html::key_href(ch, &k.key)),
                esc(&format::cut(&k.key, 100)),
                esc(&html::block_href(ch, k.version.block)),
                k.version.block,
                k.version.tx
            );
        }
        h.push_str("</tbody></table>");
        if keys.len() as u32 >= LIST {
            w!(
                h,
                "<p class=\"muted\">The first {LIST} keys; a longer prefix narrows the list.</p>"
            );
        }
    }
    h.push_str("</section>");
    Ok(Reply::Page(Page::in_channel(ch, "keys", &[], h)))
}
