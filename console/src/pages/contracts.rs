//! Views of the example contracts' data (chaincode/contracts): a receivable's trace drawn as a
//! tree, and a notarized document checked by dropping the file on the page.
//!
//! A view is offered for a committed chaincode whose name names the contract (`receivables`,
//! `notary`), as the examples install them. Both views read through signed chaincode queries,
//! so the node applies the channel's readers policy as for any other read.

use crate::app::{App, Page, Reply};
use crate::error::ConsoleError;
use crate::format;
use crate::html::{self, esc, w};
use crate::pages::tx::{proof_json, PROOF_PANEL};
use hyper::StatusCode;
use serde_json::{json, Value};
use tally_client::txs::fields;
use tally_protocol::chaincode::ChaincodeInfo;
use tally_protocol::Hash;

/// Deepest part tree drawn (the contract bounds it by its own stack; this bounds the page).
const MAX_DEPTH: usize = 64;

/// The contract views that apply to a chaincode: label and link.
pub fn views_of(ch: &str, c: &ChaincodeInfo) -> Vec<(&'static str, String)> {
    if c.active.is_none() {
        return Vec::new();
    }
    let base = format!(
        "/channels/{}/chaincodes/{}",
        html::enc(ch),
        html::enc(&c.name)
    );
    let name = c.name.to_ascii_lowercase();
    let mut v = Vec::new();
    if name.contains("receivable") {
        v.push(("trace a receivable", format!("{base}/trace")));
    }
    if name.contains("notary") {
        v.push(("check a document", format!("{base}/notary")));
    }
    v
}

/// The crumbs of a view: the channel's chaincodes, then the view.
fn crumbs(ch: &str, view: &str) -> [(String, String); 2] {
    [
        (
            "chaincodes".into(),
            format!("/channels/{}/chaincodes", html::enc(ch)),
        ),
        (view.to_string(), String::new()),
    ]
}

/// Runs a read-only function of the chaincode as the organization; its result as JSON.
async fn query(
    app: &App,
    ch: &str,
    cc: &str,
    function: &str,
    args: &[&str],
) -> Result<Value, ConsoleError> {
    let args = fields(args);
    let args = &args;
    let r = app
        .ledger
        .read(ch, |c| async move {
            c.query_chaincode(ch, cc, function, args).await
        })
        .await
        .map_err(|e| match e {
            // The contract's own refusal ("no receivable part X") is the answer to show.
            ConsoleError::Node(c) if c.api_code() == Some("chaincode_error") => {
                ConsoleError::NotFound(c.to_string())
            }
            other => other,
        })?;
    serde_json::from_slice(&r.result)
        .map_err(|e| ConsoleError::BadRequest(format!("{cc}.{function} did not answer JSON: {e}")))
}

pub async fn trace(app: &App, ch: &str, cc: &str, id: Option<&str>) -> Result<Reply, ConsoleError> {
    app.ledger.check_reader(ch).await?;
    let mut h = String::new();
    w!(
        h,
        "<section class=\"card\"><h1>Receivable trace</h1><p class=\"muted\">Issue, splits, transfers, \
         financing and settlement of a receivable, from its root part, as chaincode <strong>{}</strong> \
         records them.</p><form class=\"inline\" method=\"get\"><input name=\"id\" id=\"receivable-id\" value=\"{}\" \
         placeholder=\"receivable or part id\"><button type=\"submit\">Trace</button></form></section>",
        esc(cc),
        esc(id.unwrap_or(""))
    );
    if let Some(id) = id.filter(|i| !i.is_empty()) {
        let tree = query(app, ch, cc, "trace", &[id]).await?;
        h.push_str(
            "<section class=\"card\"><div class=\"tree-wrap\"><ul class=\"tree\" id=\"trace\">",
        );
        part(&mut h, ch, &tree, id, 0);
        h.push_str("</ul></div></section>");
    }
    Ok(Reply::Page(Page::in_channel(
        ch,
        "receivable trace",
        &crumbs(ch, &format!("{cc} trace")),
        h,
    )))
}

fn money(v: &Value) -> String {
    let Some(n) = v.as_u64() else {
        return "?".into();
    };
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// One part, its holder changes and its children, as a list item of the tree.
fn part(h: &mut String, ch: &str, node: &Value, focus: &str, depth: usize) {
    let p = &node["part"];
    let id = text(p, "id");
    let status = text(p, "status");
    w!(
        *h,
        "<li><div class=\"part {}{}\" data-part=\"{}\"><div class=\"part-head\"><strong>{}</strong> \
         <span class=\"amount\">{}</span> {}</div><div class=\"part-meta\">held by <strong>{}</strong> · issued by {} · matures {}",
        if status == "settled" { "settled" } else { "active" },
        if id == focus { " focus" } else { "" },
        esc(id),
        esc(id),
        money(&p["amount"]),
        html::pill(if status == "settled" { "info" } else { "ok" }, status),
        esc(text(p, "holder")),
        esc(text(p, "issuer")),
        esc(&format::date_s((p["maturity_ms"].as_u64().unwrap_or(0) / 1000) as i64))
    );
    if let Some(bank) = p.get("financed_by").and_then(Value::as_str) {
        w!(
            *h,
            " · financed by <strong>{}</strong> for {}",
            esc(bank),
            money(&p["price"])
        );
    }
    if let Some(bank) = p.get("offer_bank").and_then(Value::as_str) {
        w!(
            *h,
            " · offered to {} at {} bp discount",
            esc(bank),
            p["offer_bps"].as_u64().unwrap_or(0)
        );
    }
    h.push_str("</div><ol class=\"hops\">");
    for hop in node["hops"].as_array().into_iter().flatten() {
        let kind = text(hop, "kind");
        let tx = text(hop, "tx_id");
        w!(
            *h,
            "<li><span class=\"hop {}\">{}</span> {} → {} <span class=\"muted\">{}</span> {}</li>",
            esc(kind),
            esc(kind),
            esc(text(hop, "from")),
            esc(text(hop, "to")),
            esc(&format::utc_ms(hop["time_ms"].as_u64().unwrap_or(0))),
            html::hash(tx, Some(&html::tx_href(ch, tx)))
        );
    }
    h.push_str("</ol></div>");
    let kids = node["children"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !kids.is_empty() {
        if depth >= MAX_DEPTH {
            h.push_str("<ul><li class=\"muted\">deeper splits not drawn</li></ul>");
        } else {
            h.push_str("<ul>");
            for k in kids {
                part(h, ch, k, focus, depth + 1);
            }
            h.push_str("</ul>");
        }
    }
    h.push_str("</li>");
}

pub async fn notary(app: &App, ch: &str, cc: &str) -> Result<Reply, ConsoleError> {
    app.ledger.check_reader(ch).await?;
    let mut h = String::new();
    w!(
        h,
        "<section class=\"card\"><h1>Check a document</h1><p class=\"muted\">Drop a file: this page \
         computes its SHA-256 here, in the browser (the file is never uploaded), asks chaincode \
         <strong>{}</strong> whether that hash is anchored, and verifies the anchoring transaction's \
         inclusion proof.</p>\
         <div id=\"dropzone\" class=\"dropzone\" data-lookup=\"/channels/{}/chaincodes/{}/notary.json\" tabindex=\"0\">\
         <p><strong>Drop a file here</strong> or <label class=\"button\">choose one<input type=\"file\" id=\"file\" hidden></label></p>\
         <p class=\"muted\" id=\"file-hash\"></p></div>\
         <div id=\"notary-result\"></div></section>",
        esc(cc),
        html::enc(ch),
        html::enc(cc)
    );
    h.push_str("<section class=\"card\" id=\"notary-proof\" hidden><h2>Inclusion proof of the anchoring transaction</h2>");
    h.push_str(PROOF_PANEL);
    h.push_str("</section>");
    Ok(Reply::Page(Page::in_channel(
        ch,
        "document check",
        &crumbs(ch, &format!("{cc} document check")),
        h,
    )))
}

/// `notary.json?hash=H`: the record, and for an anchored hash the anchoring transaction's
/// proof for the page to verify.
pub async fn notary_lookup(
    app: &App,
    ch: &str,
    cc: &str,
    hash: &str,
) -> Result<Reply, ConsoleError> {
    let hash = hash.trim().to_ascii_lowercase();
    if Hash::from_hex(&hash).is_err() {
        return Ok(Reply::Json(
            StatusCode::BAD_REQUEST,
            json!({"error": "the hash must be 64 hex digits"}),
        ));
    }
    let record = query(app, ch, cc, "verify", &[&hash]).await?;
    let tx = record
        .get("tx_id")
        .and_then(Value::as_str)
        .and_then(|t| Hash::from_hex(t).ok());
    let proof = match tx {
        Some(tx_id) if record["anchored"] == Value::Bool(true) => {
            let proven = app
                .ledger
                .read(ch, |c| async move { c.receipt(ch, &tx_id).await })
                .await?;
            match proven {
                Some(p) => proof_json(app, ch, &p).await,
                None => Value::Null,
            }
        }
        _ => Value::Null,
    };
    Ok(Reply::Json(
        StatusCode::OK,
        json!({"record": record, "proof": proof, "tx_href": tx.map(|t| html::tx_href(ch, &t.to_hex()))}),
    ))
}
