//! A block: its header and every transaction with its status, signer, call and effects.

use crate::app::{App, Page, Reply};
use crate::error::ConsoleError;
use crate::format;
use crate::html::{self, esc, w};
use crate::pages::txview;

pub async fn page(app: &App, ch: &str, n: u64) -> Result<Reply, ConsoleError> {
    let b = app
        .ledger
        .read(ch, |c| async move { c.block(ch, Some(n)).await })
        .await?;
    let hd = &b.header;
    let hash = hd.hash().to_hex();
    let mut h = String::new();
    w!(h, "<section class=\"card\"><h1>Block {n}</h1>");
    let prev = if n == 0 {
        format!(
            "{} <span class=\"muted\">(the genesis configuration's hash)</span>",
            html::hash(&hd.prev_hash.to_hex(), None)
        )
    } else {
        html::hash(&hd.prev_hash.to_hex(), Some(&html::block_href(ch, n - 1)))
    };
    let time = if n == 0 {
        "— (genesis)".to_string()
    } else {
        format::utc_ms(hd.timestamp_ms)
    };
    h.push_str(&html::facts(&[
        (
            "hash",
            format!("<code class=\"full\">{}</code>", esc(&hash)),
        ),
        ("previous", prev),
        (
            "transaction root",
            format!("<code class=\"full\">{}</code>", hd.tx_root.to_hex()),
        ),
        (
            "state root",
            format!("<code class=\"full\">{}</code>", hd.state_root.to_hex()),
        ),
        ("time", esc(&time).to_string()),
        (
            "raft",
            format!("term {}, index {}", hd.raft_term, hd.raft_index),
        ),
        ("transactions", format!("{}", b.txs.len())),
    ]));
    h.push_str("<p class=\"pager\">");
    if n > 0 {
        w!(
            h,
            "<a href=\"{}\">← block {}</a> · ",
            esc(&html::block_href(ch, n - 1)),
            n - 1
        );
    }
    w!(
        h,
        "<a href=\"{}\">block {} →</a></p></section>",
        esc(&html::block_href(ch, n + 1)),
        n + 1
    );

    for (i, tx) in b.txs.iter().enumerate() {
        let id = tx.id().to_hex();
        let status = b
            .results
            .get(i)
            .map(txview::status)
            .unwrap_or_else(|| html::pill("warn", "no result"));
        w!(
            h,
            "<section class=\"card tx\"><h3><span class=\"muted\">#{i}</span> {} {} <span class=\"kind\">{}</span></h3>",
            html::hash(&id, Some(&html::tx_href(ch, &id))),
            status,
            txview::kind(&tx.body.payload)
        );
        h.push_str(&html::facts(&[
            ("signed by", txview::signer(tx)),
            ("call", txview::call(ch, &tx.body.payload)),
            (
                "client time",
                esc(&format::utc_ms(tx.body.timestamp_ms)).to_string(),
            ),
        ]));
        let fx = b.effects.get(i).and_then(|e| e.as_ref());
        h.push_str(&txview::effects(ch, tx, fx));
        h.push_str("</section>");
    }
    if b.txs.is_empty() {
        h.push_str("<section class=\"card\"><p class=\"muted\">No transactions.</p></section>");
    }
    Ok(Reply::Page(Page::in_channel(
        ch,
        format!("block {n}"),
        &[],
        h,
    )))
}
