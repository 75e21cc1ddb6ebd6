//! `tallyctl blocks`: one block in full, or a live stream of them (`follow.rs`), and the
//! forms a block takes on screen.

use super::follow::follow;
use super::output::{fmt_time_ms, short};
use super::Ctx;
use anyhow::{anyhow, Result};
use clap::Subcommand;
use serde_json::json;
use tally_protocol::identity::inspect;
use tally_protocol::{Block, Signer, TxStatus};

#[derive(Subcommand, Debug)]
pub enum BlocksCmd {
    /// Show one block.
    Get {
        #[arg(long, short)]
        channel: String,
        /// Block number, or `latest`.
        #[arg(default_value = "latest")]
        which: String,
    },
    /// Print blocks as they are committed, one line each, until Ctrl-C.
    Follow {
        #[arg(long, short)]
        channel: String,
        /// First block to print (default: the next block to be committed).
        #[arg(long)]
        from: Option<u64>,
        /// Stop after this many blocks.
        #[arg(long)]
        count: Option<u64>,
        /// With --output json, print whole blocks instead of summaries.
        #[arg(long)]
        full: bool,
    },
}

/// `ORG/CN` of a signer, readable where a certificate hash would not be.
fn signer_label(s: &Signer) -> String {
    match s {
        Signer::Certificate(der) => match inspect(der) {
            Ok(i) => format!("{}/{}", i.org, subject_cn(&i.subject)),
            Err(_) => "(bad certificate)".into(),
        },
        Signer::CertHash(h) => format!("cert {}", short(h)),
    }
}

fn subject_cn(subject: &str) -> String {
    subject
        .split(',')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("CN="))
        .unwrap_or(subject)
        .to_string()
}

/// The whole block, with its hash, which the wire form leaves for the reader to compute.
pub fn block_json(b: &Block) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(b)?;
    v["hash"] = json!(b.header.hash());
    Ok(v)
}

pub fn block_summary(b: &Block) -> serde_json::Value {
    let rejected = rejected(b);
    json!({
        "channel": b.header.channel,
        "number": b.header.number,
        "hash": b.header.hash(),
        "prev_hash": b.header.prev_hash,
        "version": b.header.version,
        "results_root": b.header.results_root,
        "state_root": b.header.state_root,
        "timestamp_ms": b.header.timestamp_ms,
        "txs": b.txs.len(),
        "committed": b.txs.len() - rejected,
        "rejected": rejected,
    })
}

pub fn rejected(b: &Block) -> usize {
    b.results.iter().filter(|r| !r.is_committed()).count()
}

pub fn block_line(b: &Block) -> String {
    let rejected = rejected(b);
    let rej = if rejected > 0 {
        format!(" ({rejected} rejected)")
    } else {
        String::new()
    };
    format!(
        "block {:<8} txs {:<5}{rej} hash {}  {}",
        b.header.number,
        b.txs.len(),
        short(&b.header.hash()),
        fmt_time_ms(b.header.timestamp_ms)
    )
}

impl BlocksCmd {
    pub fn channel(&self) -> &str {
        match self {
            BlocksCmd::Get { channel, .. } | BlocksCmd::Follow { channel, .. } => channel,
        }
    }
}

pub async fn run(ctx: &Ctx, cmd: BlocksCmd) -> Result<()> {
    match cmd {
        BlocksCmd::Get { channel, which } => {
            let number = match which.trim() {
                "latest" | "" => None,
                n => Some(
                    n.parse::<u64>()
                        .map_err(|_| anyhow!("{n:?} is not a block number or `latest`"))?,
                ),
            };
            let (_, b) = ctx
                .on_any(|c| {
                    let channel = &channel;
                    async move { c.block(channel, number).await }
                })
                .await?;
            ctx.show(&block_json(&b)?, || print_block(&b))
        }
        BlocksCmd::Follow {
            channel,
            from,
            count,
            full,
        } => follow(ctx, &channel, from, count, full).await,
    }
}

fn print_block(b: &Block) {
    let h = &b.header;
    println!("block {} of channel {}", h.number, h.channel);
    println!("  hash        {}", h.hash());
    println!("  prev_hash   {}", h.prev_hash);
    println!("  version     {}", h.version);
    println!("  tx_root     {}", h.tx_root);
    println!("  results     {}", h.results_root);
    println!("  state_root  {}", h.state_root);
    println!(
        "  time        {} ({} ms)",
        fmt_time_ms(h.timestamp_ms),
        h.timestamp_ms
    );
    println!("  raft        term {} index {}", h.raft_term, h.raft_index);
    println!("  txs         {}", b.txs.len());
    for (i, t) in b.txs.iter().enumerate() {
        let status = match b.results.get(i) {
            Some(TxStatus::Committed) => "committed".to_string(),
            Some(TxStatus::Rejected { code, reason }) => {
                format!("rejected {}: {reason}", code.as_str())
            }
            None => "?".to_string(),
        };
        let what = match &t.body.payload {
            tally_protocol::Payload::KvWrite { reads, writes } => {
                format!("{} writes, {} reads", writes.len(), reads.len())
            }
            tally_protocol::Payload::Config(u) => format!(
                "configuration {} ({} consenters, {} observers, {} approvals)",
                u.sequence,
                u.config.consenters.len(),
                u.config.observers.len(),
                u.approvals.len()
            ),
            tally_protocol::Payload::ChaincodeInstall { definition, module } => format!(
                "chaincode install {} sequence {} ({} bytes, sha256 {})",
                definition.name,
                definition.sequence,
                module.len(),
                definition.module_hash
            ),
            tally_protocol::Payload::ChaincodeApprove { name, sequence, .. } => {
                format!("chaincode approve {name} sequence {sequence}")
            }
            tally_protocol::Payload::ChaincodeCommit { name, sequence } => {
                format!("chaincode commit {name} sequence {sequence}")
            }
            tally_protocol::Payload::Invoke {
                chaincode,
                function,
                ..
            } => match b.effects.get(i).and_then(Option::as_ref) {
                Some(fx) => format!(
                    "invoke {chaincode}.{function} ({} writes, {} reads, {} events, {} fuel)",
                    fx.writes.len(),
                    fx.reads.len(),
                    fx.events.len(),
                    fx.fuel_used
                ),
                None => format!("invoke {chaincode}.{function}"),
            },
            tally_protocol::Payload::Propose(p) => {
                format!("proposal {} on configuration {}", p.hash(), p.base_sequence)
            }
            tally_protocol::Payload::ProposalApprove { hash } => format!("approve proposal {hash}"),
            tally_protocol::Payload::ProposalReject { hash } => format!("reject proposal {hash}"),
        };
        println!(
            "    {i:>4} {}  {}  {what}  {status}",
            t.id(),
            signer_label(&t.body.signer),
        );
    }
}
