//! Lists of blocks: the rows the channel page starts with and the live stream adds to, and
//! the page of older blocks.

use crate::app::{App, Page, Reply};
use crate::error::ConsoleError;
use crate::format;
use crate::html::{self, esc, w};
use futures_util::future::join_all;
use serde::Serialize;
use tally_protocol::Block;

/// Blocks shown at once.
pub const PAGE: u64 = 25;

/// One line of a block list; the live stream sends the same as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct BlockRow {
    pub number: u64,
    pub hash: String,
    pub txs: usize,
    pub rejected: usize,
    pub time_ms: u64,
    pub time: String,
}

impl BlockRow {
    pub fn of(b: &Block) -> BlockRow {
        BlockRow {
            number: b.header.number,
            hash: b.header.hash().to_hex(),
            txs: b.txs.len(),
            rejected: b.results.iter().filter(|r| !r.is_committed()).count(),
            time_ms: b.header.timestamp_ms,
            time: if b.header.number == 0 {
                "genesis".into()
            } else {
                format::utc_ms(b.header.timestamp_ms)
            },
        }
    }
}

/// A table row; console.js builds the same for blocks that arrive live.
pub fn row(ch: &str, r: &BlockRow) -> String {
    let mut h = String::new();
    w!(
        h,
        "<tr data-n=\"{n}\"><td><a href=\"{href}\">{n}</a></td><td>{time}</td><td class=\"num\">{txs}</td><td>",
        n = r.number,
        href = esc(&html::block_href(ch, r.number)),
        time = esc(&r.time),
        txs = r.txs
    );
    if r.rejected > 0 {
        h.push_str(&html::pill("bad", &format!("{} rejected", r.rejected)));
    }
    w!(
        h,
        "</td><td>{}</td></tr>",
        html::hash(&r.hash, Some(&html::block_href(ch, r.number)))
    );
    h
}

pub fn table(ch: &str, rows: &[BlockRow], live_from: Option<u64>) -> String {
    let mut h = String::new();
    match live_from {
        Some(from) => w!(
            h,
            "<table class=\"blocks\" id=\"blocks\" data-channel=\"{}\" data-from=\"{from}\">",
            esc(ch)
        ),
        None => h.push_str("<table class=\"blocks\">"),
    }
    h.push_str(
        "<thead><tr><th>Block</th><th>Time</th><th class=\"num\">Txs</th><th></th><th>Hash</th></tr></thead><tbody>",
    );
    for r in rows {
        h.push_str(&row(ch, r));
    }
    h.push_str("</tbody></table>");
    h
}

/// Blocks `numbers` of `ch`, fetched in parallel with the organization's signed reads.
pub async fn fetch(
    app: &App,
    ch: &str,
    numbers: impl Iterator<Item = u64>,
) -> Result<Vec<Block>, ConsoleError> {
    let got = join_all(numbers.map(|n| {
        app.ledger
            .read(ch, move |c| async move { c.block(ch, Some(n)).await })
    }))
    .await;
    got.into_iter().collect()
}

/// `/channels/{ch}/blocks?before=N`: the blocks below N, newest first.
pub async fn older(app: &App, ch: &str, before: Option<u64>) -> Result<Reply, ConsoleError> {
    let latest = app
        .ledger
        .read(ch, |c| async move { c.block(ch, None).await })
        .await?;
    let top = before
        .unwrap_or(latest.header.number + 1)
        .min(latest.header.number + 1);
    let low = top.saturating_sub(PAGE);
    // Fetched newest first, in the order asked.
    let blocks = fetch(app, ch, (low..top).rev()).await?;
    let rows: Vec<BlockRow> = blocks.iter().map(BlockRow::of).collect();
    let mut h = String::new();
    w!(
        h,
        "<section class=\"card\"><h1>Blocks {}–{} of channel {}</h1>",
        low,
        top.saturating_sub(1),
        esc(ch)
    );
    h.push_str(&table(ch, &rows, None));
    h.push_str("<p class=\"pager\">");
    if top <= latest.header.number {
        w!(
            h,
            "<a href=\"/channels/{}/blocks?before={}\">← newer</a> ",
            html::enc(ch),
            (top + PAGE).min(latest.header.number + 1)
        );
    }
    if low > 0 {
        w!(
            h,
            "<a href=\"/channels/{}/blocks?before={low}\">older →</a>",
            html::enc(ch)
        );
    }
    h.push_str("</p></section>");
    Ok(Reply::Page(Page::in_channel(ch, "Blocks", &[], h)))
}
