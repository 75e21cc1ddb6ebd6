//! `tallyctl chaincode`: the lifecycle, listing, invoking and querying chaincode. A definition
//! reaches the ledger in two steps: `install` carries the module to every node, `propose`
//! records the definition as a proposal that the member organizations approve with
//! `tallyctl proposal approve` (it becomes active in the block where the channel's chaincode
//! rule is met). `approve` + `commit` is the older two-step path, kept for compatibility.
//! Lifecycle commands are signed by an admin (`--as admin`).

use super::output::{short, show_value};
use super::tx::{print_outcome, submit, WriteOpts};
use super::Ctx;
use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use tally_client::lifecycle::definition_proposals;
use tally_client::{txs, SubmitOutcome};
use tally_protocol::chaincode::{ChaincodeInfo, PendingDefinition};
use tally_protocol::proposal::{ProposalView, Status};
use tally_protocol::{Hash, InitCall};

#[derive(Subcommand, Debug)]
pub enum ChaincodeCmd {
    /// Install a definition with its wasm module (the next sequence unless --sequence).
    Install {
        #[arg(long, short)]
        channel: String,
        name: String,
        /// The compiled module (.wasm).
        module: PathBuf,
        /// Free text shown with the definition.
        #[arg(long, default_value = "1")]
        version: String,
        /// Default: one more than the committed definition's (1 for a new chaincode).
        #[arg(long)]
        sequence: Option<u64>,
        /// Function the lifecycle calls on commit, with --init-arg values.
        #[arg(long)]
        init: Option<String>,
        /// An argument of the init call (repeatable), in the field encoding.
        #[arg(long = "init-arg")]
        init_args: Vec<String>,
        #[command(flatten)]
        opts: WriteOpts,
    },
    /// Propose an installed definition on the ledger (the highest pending sequence unless
    /// --sequence); the proposing organization's approval counts. The member organizations
    /// review it with `proposal show` and approve it with `proposal approve`; it becomes
    /// active, exactly as a commit would make it, when the channel's chaincode rule is met.
    Propose {
        #[arg(long, short)]
        channel: String,
        name: String,
        #[arg(long)]
        sequence: Option<u64>,
        /// How long the proposal stays open, in block time: 90s, 15m, 24h, 7d (at most 30d).
        #[arg(long, default_value = "24h")]
        expires_in: String,
        /// Why, for the organizations that review it.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        opts: WriteOpts,
    },
    /// The older two-step path (kept for compatibility; prefer `propose`): approve, for the
    /// admin's organization, a pending definition (the highest pending sequence and its
    /// module hash unless given).
    Approve {
        #[arg(long, short)]
        channel: String,
        name: String,
        #[arg(long)]
        sequence: Option<u64>,
        /// The module sha256 (hex) being approved; default: the installed definition's.
        #[arg(long)]
        module_hash: Option<String>,
        #[command(flatten)]
        opts: WriteOpts,
    },
    /// The older two-step path (kept for compatibility; prefer `propose`): commit a pending
    /// definition once enough organizations approved it with `chaincode approve`.
    Commit {
        #[arg(long, short)]
        channel: String,
        name: String,
        #[arg(long)]
        sequence: Option<u64>,
        #[command(flatten)]
        opts: WriteOpts,
    },
    /// Chaincode definitions of a channel: committed, pending and who approved them.
    List {
        #[arg(long, short)]
        channel: String,
    },
    /// Call a function in a transaction; prints the receipt and the result.
    Invoke {
        #[arg(long, short)]
        channel: String,
        name: String,
        function: String,
        /// Arguments, sent in the field encoding (numbers as decimal text).
        args: Vec<String>,
        /// Most fuel the call may use; 0: the node's maximum.
        #[arg(long, default_value_t = 0)]
        fuel: u64,
        #[command(flatten)]
        opts: WriteOpts,
    },
    /// Retire a chaincode: a proposal that the channel's admin organizations approve (all
    /// at once with the admins at hand, or later with `proposal approve` when --propose).
    /// Once applied, calls are refused on every node; its state stays readable, and only a
    /// new approved definition makes it callable again.
    Retire {
        #[arg(long, short)]
        channel: String,
        #[arg(long)]
        name: String,
        /// The active definition's sequence (default: read from the node).
        #[arg(long)]
        sequence: Option<u64>,
        #[command(flatten)]
        args: super::retire::RetireArgs,
    },
    /// Call a function read-only on committed state (no transaction); prints the result.
    Query {
        #[arg(long, short)]
        channel: String,
        name: String,
        function: String,
        args: Vec<String>,
    },
}

impl ChaincodeCmd {
    pub fn channel(&self) -> &str {
        match self {
            ChaincodeCmd::Install { channel, .. }
            | ChaincodeCmd::Propose { channel, .. }
            | ChaincodeCmd::Approve { channel, .. }
            | ChaincodeCmd::Commit { channel, .. }
            | ChaincodeCmd::List { channel }
            | ChaincodeCmd::Invoke { channel, .. }
            | ChaincodeCmd::Retire { channel, .. }
            | ChaincodeCmd::Query { channel, .. } => channel,
        }
    }
}

async fn list(ctx: &Ctx, channel: &str) -> Result<Vec<ChaincodeInfo>> {
    let (_, l) = ctx
        .on_any(|c| async move { c.chaincodes(channel).await })
        .await?;
    Ok(l)
}

/// The pending definition `sequence` of `name`, or the highest pending one.
async fn pending(
    ctx: &Ctx,
    channel: &str,
    name: &str,
    sequence: Option<u64>,
) -> Result<PendingDefinition> {
    let all = list(ctx, channel).await?;
    let info = all
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| anyhow!("chaincode {name} is not installed on channel {channel}"))?;
    info.pending
        .into_iter()
        .filter(|p| sequence.is_none_or(|s| p.definition.sequence == s))
        .max_by_key(|p| p.definition.sequence)
        .ok_or_else(|| match sequence {
            Some(s) => anyhow!("chaincode {name} has no pending definition at sequence {s}"),
            None => anyhow!("chaincode {name} has no pending definition (install one first)"),
        })
}

fn print_list(l: &[ChaincodeInfo], proposals: &[ProposalView]) {
    if l.is_empty() {
        println!("no chaincode");
    }
    for c in l {
        match (&c.active, &c.retired) {
            (Some(d), Some(r)) => println!(
                "{}  RETIRED sequence {} version {} module {}: retired at block {} by proposal {}",
                c.name, d.sequence, d.version, d.module_hash, r.block, r.proposal
            ),
            (Some(d), None) => println!(
                "{}  committed sequence {} version {} module {}",
                c.name, d.sequence, d.version, d.module_hash
            ),
            (None, _) => println!("{}  not committed", c.name),
        }
        for p in &c.pending {
            println!(
                "  pending sequence {} version {} module {}: approved by [{}], {} needed",
                p.definition.sequence,
                p.definition.version,
                p.definition.module_hash,
                p.approvals.join(", "),
                p.needed
            );
            // The proposal path counts its own approvals: show where the open one stands.
            for o in definition_proposals(proposals, &c.name)
                .iter()
                .filter(|o| o.status == Status::Open && o.definition == p.definition)
            {
                println!(
                    "    proposed as {}: approved by [{}], {} of {} needed, missing [{}]",
                    short(&o.hash),
                    o.tally.approved.join(", "),
                    o.tally.approved.len(),
                    o.tally.needed,
                    o.tally.missing.join(", ")
                );
            }
        }
    }
}

/// Prints the outcome; for a committed invoke also the result and the events.
fn print_invoke(ctx: &Ctx, o: &SubmitOutcome) -> Result<()> {
    if let (SubmitOutcome::Receipt(r), false) = (o, ctx.json()) {
        if let Some(fx) = &r.effects {
            let text = String::from_utf8(fx.result.clone()).ok();
            println!("{}", show_value(&fx.result, text.as_deref()));
            for e in &fx.events {
                let t = String::from_utf8(e.payload.clone()).ok();
                eprintln!("event {}: {}", e.name, show_value(&e.payload, t.as_deref()));
            }
        }
    }
    print_outcome(ctx, o)
}

pub async fn run(ctx: &Ctx, cmd: ChaincodeCmd) -> Result<()> {
    match cmd {
        ChaincodeCmd::Install {
            channel,
            name,
            module,
            version,
            sequence,
            init,
            init_args,
            opts,
        } => {
            let bytes =
                std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            if init.is_none() && !init_args.is_empty() {
                bail!("--init-arg needs --init FUNCTION");
            }
            let sequence = match sequence {
                Some(s) => s,
                None => list(ctx, &channel)
                    .await?
                    .iter()
                    .find(|c| c.name == name)
                    .and_then(|c| c.active.as_ref())
                    .map_or(1, |d| d.sequence + 1),
            };
            let init = init.map(|function| InitCall {
                function,
                args: txs::fields(&init_args),
            });
            let def = txs::chaincode_definition(&name, &version, sequence, &bytes, init);
            let id = ctx.identity()?;
            let t = txs::sign_install(&id, &channel, def, bytes);
            let o = submit(ctx, &t, &opts).await?;
            print_outcome(ctx, &o)
        }
        ChaincodeCmd::Propose {
            channel,
            name,
            sequence,
            expires_in,
            description,
            opts,
        } => {
            let def = pending(ctx, &channel, &name, sequence).await?.definition;
            let description = if description.is_empty() {
                format!(
                    "tallyctl: define chaincode {} version {}",
                    def.name, def.version
                )
            } else {
                description
            };
            let ttl = super::proposal::ttl(&expires_in)?;
            let change = tally_protocol::Change::DefineChaincode(def);
            super::proposal::propose(ctx, &channel, change, ttl, &description, &opts).await
        }
        ChaincodeCmd::Approve {
            channel,
            name,
            sequence,
            module_hash,
            opts,
        } => {
            let (sequence, hash) = match (sequence, module_hash) {
                (Some(s), Some(h)) => (
                    s,
                    Hash::from_hex(h.trim())
                        .map_err(|_| anyhow!("--module-hash is not 64 hex digits"))?,
                ),
                (s, h) => {
                    let p = pending(ctx, &channel, &name, s).await?;
                    let hash = match h {
                        Some(h) => Hash::from_hex(h.trim())
                            .map_err(|_| anyhow!("--module-hash is not 64 hex digits"))?,
                        None => p.definition.module_hash,
                    };
                    (p.definition.sequence, hash)
                }
            };
            let id = ctx.identity()?;
            let t = txs::sign_approve(&id, &channel, &name, sequence, hash);
            let o = submit(ctx, &t, &opts).await?;
            print_outcome(ctx, &o)
        }
        ChaincodeCmd::Commit {
            channel,
            name,
            sequence,
            opts,
        } => {
            let sequence = match sequence {
                Some(s) => s,
                None => {
                    pending(ctx, &channel, &name, None)
                        .await?
                        .definition
                        .sequence
                }
            };
            let id = ctx.identity()?;
            let t = txs::sign_commit(&id, &channel, &name, sequence);
            let o = submit(ctx, &t, &opts).await?;
            print_outcome(ctx, &o)
        }
        ChaincodeCmd::Retire {
            channel,
            name,
            sequence,
            args,
        } => {
            let sequence = match sequence {
                Some(s) => s,
                None => list(ctx, &channel)
                    .await?
                    .iter()
                    .find(|c| c.name == name)
                    .and_then(|c| c.active.as_ref())
                    .map(|d| d.sequence)
                    .ok_or_else(|| {
                        anyhow!("chaincode {name} has no committed definition on channel {channel}")
                    })?,
            };
            let change = tally_protocol::Change::RetireChaincode { name, sequence };
            super::retire::retire(ctx, &channel, change, &args).await
        }
        ChaincodeCmd::List { channel } => {
            let l = list(ctx, &channel).await?;
            let proposals = if ctx.json() || l.iter().all(|c| c.pending.is_empty()) {
                Vec::new()
            } else {
                let (_, p) = ctx
                    .on_any(|c| {
                        let channel = channel.clone();
                        async move { c.proposals(&channel).await }
                    })
                    .await?;
                p
            };
            ctx.show(&l, || print_list(&l, &proposals))
        }
        ChaincodeCmd::Invoke {
            channel,
            name,
            function,
            args,
            fuel,
            opts,
        } => {
            let id = ctx.identity()?;
            let t = txs::sign_invoke(
                &id,
                &channel,
                &name,
                &function,
                txs::fields(&args),
                fuel,
                opts.cert_hash,
            );
            let o = submit(ctx, &t, &opts).await?;
            print_invoke(ctx, &o)
        }
        ChaincodeCmd::Query {
            channel,
            name,
            function,
            args,
        } => {
            let a = txs::fields(&args);
            let (_, r) = ctx
                .on_any(|c| {
                    let (channel, name, function, a) = (&channel, &name, &function, &a);
                    async move { c.query_chaincode(channel, name, function, a).await }
                })
                .await?;
            ctx.show(&r, || {
                println!("{}", show_value(&r.result, r.result_utf8.as_deref()))
            })
        }
    }
}
