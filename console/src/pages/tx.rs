//! A transaction by id: where it landed, how it ended, what it did, and its inclusion proof,
//! which the page verifies itself (assets/verify.js) against the block hash, and checks
//! against the block header as every other node of the channel serves it.

use crate::app::{App, Page, Reply};
use crate::error::ConsoleError;
use crate::format;
use crate::html::{self, esc, w};
use crate::pages::txview;
use futures_util::future::join_all;
use serde_json::json;
use tally_protocol::{Hash, ProvenReceipt};

/// A proof and the headers other nodes serve for its block, as the page's script takes them.
pub async fn proof_json(app: &App, ch: &str, proven: &ProvenReceipt) -> serde_json::Value {
    let r = &proven.receipt;
    let witnesses = match app.ledger.channel_nodes(ch).await {
        Ok((_, nodes)) => {
            join_all(nodes.into_iter().map(|(n, c)| async move {
                match c.header(ch, r.block).await {
                    Ok(hd) => json!({"node": n.name, "org": n.org, "header": hd}),
                    Err(e) => json!({"node": n.name, "org": n.org, "error": e.to_string()}),
                }
            }))
            .await
        }
        Err(_) => Vec::new(),
    };
    json!({
        "tx_id": r.tx_id,
        "channel": r.channel,
        "block": r.block,
        "index": r.index,
        "block_hash": r.block_hash,
        "status": r.status,
        "proof": proven.proof,
        "witnesses": witnesses,
    })
}

/// The place where the page's script writes its verdict; without the script it says so.
pub const PROOF_PANEL: &str = "<div class=\"proof\"><p id=\"proof-status\" class=\"pill warn\">\
    not verified: this page checks the proof with its own script, which has not run</p>\
    <ol id=\"proof-checks\" class=\"checks\"></ol></div>";

pub async fn page(app: &App, ch: &str, id: &str) -> Result<Reply, ConsoleError> {
    let tx_id = Hash::from_hex(id.trim().trim_start_matches("0x")).map_err(|_| {
        ConsoleError::BadRequest(format!("{id:?} is not a transaction id (64 hex digits)"))
    })?;
    let proven = app
        .ledger
        .read(ch, |c| async move { c.receipt(ch, &tx_id).await })
        .await?
        .ok_or_else(|| {
            ConsoleError::NotFound(format!(
                "no transaction {tx_id} is committed in channel {ch} (it may be pending, or unknown)"
            ))
        })?;
    let r = &proven.receipt;
    let n = r.block;
    let (block, proof) = tokio::join!(
        app.ledger
            .read(ch, |c| async move { c.block(ch, Some(n)).await }),
        proof_json(app, ch, &proven)
    );
    let block = block?;
    let i = r.index as usize;
    let tx = block
        .txs
        .get(i)
        .filter(|t| t.id() == tx_id)
        .ok_or_else(|| {
            ConsoleError::NotFound(format!(
                "block {n} does not hold transaction {tx_id} at {i}"
            ))
        })?;

    let mut h = String::new();
    w!(
        h,
        "<section class=\"card\"><h1>Transaction <code class=\"full\" id=\"tx-id\">{}</code></h1>",
        tx_id
    );
    h.push_str(&html::facts(&[
        (
            "status",
            format!(
                "<span id=\"tx-status\">{}</span>",
                txview::status(&r.status)
            ),
        ),
        (
            "block",
            format!(
                "<a href=\"{}\">{n}</a>, position {}",
                esc(&html::block_href(ch, n)),
                r.index
            ),
        ),
        (
            "block hash",
            format!("<code class=\"full\">{}</code>", r.block_hash),
        ),
        (
            "block time",
            esc(&format::utc_ms(block.header.timestamp_ms)).to_string(),
        ),
        ("kind", txview::kind(&tx.body.payload).to_string()),
        ("signed by", txview::signer(tx)),
        ("call", txview::call(ch, &tx.body.payload)),
    ]));
    h.push_str("</section>");
    h.push_str("<section class=\"card\"><h2>Inclusion proof</h2><p class=\"muted\">The node's receipt \
        comes with the block header and the Merkle path from this transaction's id to the header's \
        transaction root. This page recomputes both hashes itself (SHA-256 in its own script, no \
        server help) and compares the header with the one every other node of the channel serves.</p>");
    h.push_str(PROOF_PANEL);
    h.push_str(&html::json_island("proof-data", &proof));
    h.push_str("</section>");
    let fx = r
        .effects
        .as_deref()
        .or(block.effects.get(i).and_then(|e| e.as_ref()));
    let effects = txview::effects(ch, tx, fx);
    if !effects.is_empty() {
        w!(
            h,
            "<section class=\"card\"><h2>What it did</h2>{effects}</section>"
        );
    }
    Ok(Reply::Page(Page::in_channel(
        ch,
        format!("transaction {}", &tx_id.to_hex()[..12]),
        &[],
        h,
    )))
}
