//! `tallyctl tx receipt`: where a transaction landed, and with `--verify` the proof that it
//! is in that block, checked here and cross-checked with the other nodes, so that a reader
//! need not trust the node that answered.

use super::output::short;
use super::{Ctx, Exit};
use anyhow::{anyhow, bail, Result};
use serde_json::json;
use tally_client::client::verify_receipt;
use tally_protocol::{Hash, Receipt, TxStatus};

pub fn receipt_line(r: &Receipt) -> String {
    match &r.status {
        TxStatus::Committed => format!(
            "committed tx {} in block {} (index {}, block hash {})",
            r.tx_id,
            r.block,
            r.index,
            short(&r.block_hash)
        ),
        TxStatus::Rejected { code, reason } => format!(
            "rejected tx {} in block {} (index {}): {}: {reason}",
            r.tx_id,
            r.block,
            r.index,
            code.as_str()
        ),
    }
}

fn parse_tx_id(s: &str) -> Result<Hash> {
    let s = s.trim().trim_start_matches("0x");
    Hash::from_hex(s).map_err(|_| anyhow!("{s:?} is not a transaction id (64 hex digits)"))
}

pub async fn run(ctx: &Ctx, channel: &str, tx_id: &str, verify: bool) -> Result<()> {
    let id = parse_tx_id(tx_id)?;
    let (served_by, r) = ctx
        .on_any(|c| async move { c.receipt(channel, &id).await })
        .await?;
    let Some(p) = r else {
        bail!("transaction {id} is not in channel {channel} (not committed yet, or unknown)");
    };
    let mut checks = Vec::new();
    let mut verified = None;
    if verify {
        let ok = verify_receipt(&p);
        verified = Some(ok.is_ok());
        if let Err(e) = &ok {
            checks.push(json!({"node": served_by.url(), "ok": false, "error": e.to_string()}));
        }
        // a hash that one node vouches for proves little: ask the others only once the
        // proof itself holds
        if ok.is_ok() {
            for c in ctx.nodes.iter().filter(|c| c.url() != served_by.url()) {
                let r = c.cross_check_receipt(&p).await;
                checks.push(json!({
                    "node": c.url(),
                    "ok": r.is_ok(),
                    "error": r.as_ref().err().map(|e| e.to_string()),
                }));
            }
        }
    }
    let all_ok = verified != Some(false) && checks.iter().all(|c| c["ok"] == json!(true));
    let mut v = serde_json::to_value(&p)?;
    if verify {
        v["verified"] = json!(all_ok);
        v["proof_valid"] = json!(verified);
        v["cross_checks"] = json!(checks);
    }
    ctx.show(&v, || {
        println!("{}", receipt_line(&p.receipt));
        println!(
            "channel {}  served by {}",
            p.receipt.channel,
            served_by.url()
        );
        if !verify {
            return;
        }
        match verified {
            Some(true) => println!(
                "proof: verified offline: the transaction is leaf {} of {} under the transaction root \
                 of block {}, whose header hashes to {}",
                p.proof.merkle.index,
                p.proof.merkle.leaves,
                p.receipt.block,
                p.receipt.block_hash
            ),
            _ => println!(
                "proof: INVALID: {}",
                checks
                    .first()
                    .map_or("", |c| c["error"].as_str().unwrap_or(""))
            ),
        }
        for c in checks
            .iter()
            .filter(|c| verified == Some(true) || c["node"] != json!(served_by.url()))
        {
            let node = c["node"].as_str().unwrap_or("");
            if c["ok"] == json!(true) {
                println!(
                    "cross-check: {node} has the same block {} header",
                    p.receipt.block
                );
            } else {
                println!(
                    "cross-check: {node} FAILED: {}",
                    c["error"].as_str().unwrap_or("")
                );
            }
        }
        if verified == Some(true) && checks.is_empty() {
            println!("(give more --node URLs, ideally of other organizations, to cross-check the block hash)");
        }
    })?;
    if verify && !all_ok {
        return Err(Exit(1, "error: the receipt did not verify".into()).into());
    }
    Ok(())
}
