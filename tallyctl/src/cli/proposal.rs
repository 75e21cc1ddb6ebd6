//! `tallyctl proposal`: governance on the ledger. An organization's admin proposes a change (a
//! channel configuration here; a chaincode definition with `chaincode propose`, a retirement
//! with `chaincode retire` / `channel retire`), every organization that votes on it reviews
//! the exact change (a readable difference from the configuration in force, or the
//! definition's every field, and the proposal's hash) and approves or rejects it with its own
//! admin identity, from wherever it keeps its keys. The change applies on every node in the
//! block where the channel's rule for it is met.

use super::config_diff::diff;
use super::output::{fmt_time_ms, print_table, short};
use super::receipt::receipt_line;
use super::tx::{self, WriteOpts};
use super::{Ctx, Exit, EXIT_REJECTED};
use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tally_client::txs;
use tally_client::SubmitOutcome;
use tally_protocol::codec::{Decode, Encode};
use tally_protocol::proposal::{Change, ProposalView, Status};
use tally_protocol::{ChannelConfig, Hash, Identity, Payload, Role, Transaction, TxStatus};

#[derive(Subcommand, Debug)]
pub enum ProposalCmd {
    /// Propose a new channel configuration (JSON, as `channel config` prints it); the
    /// proposing organization's approval is counted. Needs an admin identity.
    Create {
        #[arg(long, short)]
        channel: String,
        /// The whole configuration wanted (members, consenters, observers, policies, batch).
        #[arg(long)]
        config: PathBuf,
        /// How long the proposal stays open, in block time: 90s, 15m, 24h, 7d (at most 30d).
        #[arg(long, default_value = "24h")]
        expires_in: String,
        /// Why, for the organizations that review it.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        opts: WriteOpts,
    },
    /// The channel's proposals with their status and votes.
    List {
        #[arg(long, short)]
        channel: String,
    },
    /// One proposal: its status, who approved, who is missing, and what it changes.
    Show {
        #[arg(long, short)]
        channel: String,
        /// The proposal's hash (64 hex digits, or a unique prefix as `list` shows it).
        hash: String,
    },
    /// Approve a proposal as the identity's organization (an admin identity).
    Approve {
        #[arg(long, short)]
        channel: String,
        hash: String,
        /// Sign only: print the signed vote ({"tx": hex}) instead of submitting it, e.g. on a
        /// machine without network; `proposal submit` sends it later (within the channel's
        /// transaction window, 600 s by default). Needs the full hash.
        #[arg(long)]
        sign_only: bool,
        #[command(flatten)]
        opts: WriteOpts,
    },
    /// Reject a proposal as the identity's organization (an admin identity).
    Reject {
        #[arg(long, short)]
        channel: String,
        hash: String,
        /// Sign only, as for `approve`.
        #[arg(long)]
        sign_only: bool,
        #[command(flatten)]
        opts: WriteOpts,
    },
    /// Submit a vote signed elsewhere with `--sign-only` (the JSON it printed, or the hex).
    Submit {
        #[arg(long, short)]
        channel: String,
        /// File with the signed vote; `-` reads stdin.
        file: PathBuf,
        #[command(flatten)]
        opts: WriteOpts,
    },
}

impl ProposalCmd {
    pub fn channel(&self) -> &str {
        match self {
            ProposalCmd::Create { channel, .. }
            | ProposalCmd::List { channel }
            | ProposalCmd::Show { channel, .. }
            | ProposalCmd::Approve { channel, .. }
            | ProposalCmd::Reject { channel, .. }
            | ProposalCmd::Submit { channel, .. } => channel,
        }
    }
}

/// A proposal named by its hash or by a unique prefix of it (as `proposal list` shows them).
async fn resolve(ctx: &Ctx, channel: &str, given: &str) -> Result<Hash> {
    let s = given.trim().trim_start_matches("0x").to_ascii_lowercase();
    if let Ok(h) = Hash::from_hex(&s) {
        return Ok(h);
    }
    if s.len() < 6 || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{given:?} is not a proposal hash (64 hex digits, or a prefix of at least 6)");
    }
    let (_, list) = ctx
        .on_any(|c| async move { c.proposals(channel).await })
        .await?;
    let mut found = list.iter().filter(|p| p.hash.to_hex().starts_with(&s));
    match (found.next(), found.next()) {
        (Some(p), None) => Ok(p.hash),
        (None, _) => bail!("channel {channel} has no proposal whose hash starts with {s}"),
        (Some(_), Some(_)) => {
            bail!("more than one proposal's hash starts with {s}: give more digits")
        }
    }
}

/// The signing identity, which must be an admin: only admins vote for their organization.
fn admin(ctx: &Ctx) -> Result<Identity> {
    let id = ctx.identity()?;
    if id.info.role != Role::Admin {
        bail!(
            "the identity is a {} certificate of {}; proposals and votes are signed by an admin \
             (--identity ORG/admins/NAME, or --data-dir DIR --org ORG --as admin)",
            id.info.role,
            id.info.org
        );
    }
    Ok(id)
}

/// Proposes `next` as `channel`'s configuration, signed by the caller's admin identity (whose
/// organization's approval counts at once), open for `ttl`; prints where it stands.
pub async fn propose_config(
    ctx: &Ctx,
    channel: &str,
    next: ChannelConfig,
    ttl: Duration,
    description: &str,
    opts: &WriteOpts,
) -> Result<()> {
    propose(
        ctx,
        channel,
        Change::Config(Box::new(next)),
        ttl,
        description,
        opts,
    )
    .await
}

/// Proposes `change` on `channel` (based on the configuration in force), signed by the
/// caller's admin identity (whose organization's approval counts at once), open for `ttl`;
/// prints where it stands.
pub async fn propose(
    ctx: &Ctx,
    channel: &str,
    change: Change,
    ttl: Duration,
    description: &str,
    opts: &WriteOpts,
) -> Result<()> {
    let id = admin(ctx)?;
    let (_, proposal) = ctx
        .on_any(|c| {
            let change = change.clone();
            let description = description.to_string();
            let channel = channel.to_string();
            async move { c.change_proposal(&channel, change, ttl, &description).await }
        })
        .await?;
    let hash = proposal.hash();
    let t = txs::sign_payload(
        &id,
        channel,
        Payload::Propose(Box::new(proposal)),
        opts.cert_hash,
    );
    let o = tx::submit(ctx, &t, opts).await?;
    report(ctx, channel, hash, "proposed", &o).await
}

/// A `--expires-in` value as a duration.
pub fn ttl(expires_in: &str) -> Result<Duration> {
    let ttl = tally_planner::lifetime::parse_duration(expires_in)
        .map_err(|e| anyhow!("--expires-in: {e}"))?;
    if ttl <= 0 {
        bail!("--expires-in must be positive");
    }
    Ok(Duration::from_secs(ttl as u64))
}

pub async fn run(ctx: &Ctx, cmd: ProposalCmd) -> Result<()> {
    match cmd {
        ProposalCmd::Create {
            channel,
            config,
            expires_in,
            description,
            opts,
        } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            let next: ChannelConfig = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a channel configuration", config.display()))?;
            if next.name != channel {
                bail!(
                    "{} is a configuration of channel {:?}, not {channel:?}",
                    config.display(),
                    next.name
                );
            }
            next.validate()
                .with_context(|| config.display().to_string())?;
            propose_config(ctx, &channel, next, ttl(&expires_in)?, &description, &opts).await
        }
        ProposalCmd::Approve {
            channel,
            hash,
            sign_only,
            opts,
        } => vote(ctx, &channel, &hash, true, sign_only, &opts).await,
        ProposalCmd::Reject {
            channel,
            hash,
            sign_only,
            opts,
        } => vote(ctx, &channel, &hash, false, sign_only, &opts).await,
        ProposalCmd::Submit {
            channel,
            file,
            opts,
        } => submit_signed(ctx, &channel, &file, &opts).await,
        ProposalCmd::List { channel } => {
            let (_, list) = ctx
                .on_any(|c| {
                    let channel = channel.clone();
                    async move { c.proposals(&channel).await }
                })
                .await?;
            let json = json!({ "channel": channel, "proposals": list });
            ctx.show(&json, || {
                if list.is_empty() {
                    println!("channel {channel} has no proposals");
                    return;
                }
                let mut rows = vec![vec![
                    "HASH".to_string(),
                    "STATUS".into(),
                    "APPROVALS".into(),
                    "MISSING".into(),
                    "CHANGE".into(),
                    "BASE".into(),
                    "EXPIRES".into(),
                    "DESCRIPTION".into(),
                ]];
                for p in &list {
                    rows.push(vec![
                        short(&p.hash),
                        p.status.to_string(),
                        format!("{}/{}", p.tally.approved.len(), p.tally.needed),
                        p.tally.missing.join(","),
                        label(&p.proposal.change),
                        p.proposal.base_sequence.to_string(),
                        fmt_time_ms(p.proposal.expires_at_ms),
                        p.proposal.description.clone(),
                    ]);
                }
                print_table(&rows);
            })
        }
        ProposalCmd::Show { channel, hash } => {
            let hash = resolve(ctx, &channel, &hash).await?;
            let (c, found) = ctx
                .on_any(|c| {
                    let channel = channel.clone();
                    async move { c.proposal(&channel, &hash).await }
                })
                .await?;
            let Some(p) = found else {
                bail!(
                    "channel {channel} has no proposal {hash} (as seen by {})",
                    c.url()
                );
            };
            let changes = changes(&p);
            let json = json!({ "proposal": p, "diff": changes });
            ctx.show(&json, || print_view(&p, &changes))
        }
    }
}

/// What a proposal changes, in a few words, for `proposal list`.
fn label(c: &Change) -> String {
    match c {
        Change::Config(_) => "configuration".into(),
        Change::DefineChaincode(d) => format!(
            "define {} {} (sequence {}, module {})",
            d.name,
            d.version,
            d.sequence,
            &d.module_hash.to_hex()[..12]
        ),
        Change::RetireChaincode { name, sequence } => {
            format!("retire chaincode {name} (sequence {sequence})")
        }
        Change::RetireChannel => "retire channel".into(),
    }
}

/// What the proposal changes, against the configuration it applies to when the node still
/// has it in force.
fn changes(p: &ProposalView) -> Option<Vec<String>> {
    match &p.proposal.change {
        Change::Config(next) => p.base_config.as_ref().map(|base| diff(base, next)),
        // Everything the definition pins, since that is what the approvals make callable.
        Change::DefineChaincode(d) => Some(vec![
            format!("define chaincode {}", d.name),
            format!("version        {}", d.version),
            format!("sequence       {}", d.sequence),
            format!("module sha256  {}", d.module_hash),
            match &d.init {
                Some(i) => format!(
                    "init call      {} (args {})",
                    i.function,
                    super::output::show_value(&i.args, std::str::from_utf8(&i.args).ok())
                ),
                None => "init call      none".to_string(),
            },
        ]),
        // Not a configuration: the change is the same whatever is in force.
        other => Some(vec![other.summary()]),
    }
}

fn print_view(p: &ProposalView, changes: &Option<Vec<String>>) {
    println!("proposal    {}", p.hash);
    println!("channel     {}", p.proposal.channel);
    println!("status      {}", p.status);
    if !p.proposal.description.is_empty() {
        println!("description {}", p.proposal.description);
    }
    println!(
        "proposed by {}/{} in block {} at {}",
        p.proposer.org,
        p.proposer.subject,
        p.proposer.block,
        fmt_time_ms(p.proposed_at_ms)
    );
    println!(
        "applies to  configuration {} ({})",
        p.proposal.base_sequence, p.proposal.base
    );
    println!("expires     {}", fmt_time_ms(p.proposal.expires_at_ms));
    println!(
        "approvals   {} of {} needed from [{}]",
        p.tally.approved.len(),
        p.tally.needed,
        p.tally.eligible.join(", ")
    );
    for v in &p.approvals {
        println!(
            "  approved  {}/{} (block {}, tx {})",
            v.org,
            v.subject,
            v.block,
            short(&v.tx_id)
        );
    }
    for v in &p.rejections {
        println!(
            "  rejected  {}/{} (block {}, tx {})",
            v.org,
            v.subject,
            v.block,
            short(&v.tx_id)
        );
    }
    if !p.tally.missing.is_empty() {
        println!("  missing   {}", p.tally.missing.join(", "));
    }
    match changes {
        Some(lines) if lines.is_empty() => println!("changes     none"),
        Some(lines) => {
            println!("changes");
            for l in lines {
                println!("  {l}");
            }
        }
        None => println!(
            "changes     (the configuration it applies to is no longer in force; `--output json` shows the proposed one)"
        ),
    }
}

async fn vote(
    ctx: &Ctx,
    channel: &str,
    hash: &str,
    approve: bool,
    sign_only: bool,
    opts: &WriteOpts,
) -> Result<()> {
    let id = admin(ctx)?;
    let hash = if sign_only {
        // Offline: nothing to look a prefix up in.
        Hash::from_hex(hash.trim().trim_start_matches("0x"))
            .map_err(|_| anyhow!("--sign-only needs the proposal's full hash (64 hex digits)"))?
    } else {
        resolve(ctx, channel, hash).await?
    };
    let payload = if approve {
        Payload::ProposalApprove { hash }
    } else {
        Payload::ProposalReject { hash }
    };
    let t = txs::sign_payload(&id, channel, payload, opts.cert_hash);
    if sign_only {
        let signed = json!({
            "tx": hex::encode(t.to_bytes()),
            "tx_id": t.id(),
            "channel": channel,
            "proposal": hash,
            "approve": approve,
            "signed_at_ms": t.body.timestamp_ms,
        });
        // The signed vote is the output either way: JSON is what `proposal submit` reads.
        return super::output::print_json(&signed);
    }
    let o = tx::submit(ctx, &t, opts).await?;
    let verb = if approve { "approved" } else { "rejected" };
    report(ctx, channel, hash, verb, &o).await
}

/// Submits a vote signed with `--sign-only`, after checking that it is one.
async fn submit_signed(ctx: &Ctx, channel: &str, file: &Path, opts: &WriteOpts) -> Result<()> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let text = text.trim();
    let hex_tx = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => v["tx"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("the JSON has no \"tx\" field"))?,
        Err(_) => text.to_string(),
    };
    let bytes = hex::decode(hex_tx.trim()).context("the signed vote is not hex")?;
    let t = Transaction::from_bytes(&bytes).context("not a signed transaction")?;
    let hash = match &t.body.payload {
        Payload::ProposalApprove { hash } | Payload::ProposalReject { hash } => *hash,
        _ => bail!("the transaction is not a vote on a proposal"),
    };
    if t.body.channel != channel {
        bail!(
            "the vote is for channel {:?}, not {channel:?}",
            t.body.channel
        );
    }
    let verb = if matches!(t.body.payload, Payload::ProposalApprove { .. }) {
        "approved"
    } else {
        "rejected"
    };
    let o = tx::submit(ctx, &t, opts).await?;
    report(ctx, channel, hash, verb, &o).await
}

/// Prints what a proposal or vote did, and the proposal's status after it.
pub(super) async fn report(
    ctx: &Ctx,
    channel: &str,
    hash: Hash,
    verb: &str,
    o: &SubmitOutcome,
) -> Result<()> {
    let r = match o {
        SubmitOutcome::Pending(id) => {
            return ctx.show(
                &json!({"tx_id": id, "status": "pending", "proposal": hash}),
                || println!("submitted tx {id} (pending) for proposal {hash}"),
            )
        }
        SubmitOutcome::Receipt(r) => r,
    };
    let view = match &r.status {
        TxStatus::Committed => ctx
            .on_any(|c| async move { c.proposal(channel, &hash).await })
            .await
            .ok()
            .and_then(|(_, v)| v),
        TxStatus::Rejected { .. } => None,
    };
    let json = json!({ "receipt": r, "hash": hash, "proposal": view });
    ctx.show(&json, || {
        println!("{}", receipt_line(r));
        if let Some(v) = &view {
            println!(
                "{verb} proposal {hash}: {} ({} of {} approvals{})",
                v.status,
                v.tally.approved.len(),
                v.tally.needed,
                if v.tally.missing.is_empty() || v.status != Status::Open {
                    String::new()
                } else {
                    format!("; missing {}", v.tally.missing.join(", "))
                }
            );
        }
    })?;
    match &r.status {
        TxStatus::Committed => Ok(()),
        TxStatus::Rejected { .. } => Err(Exit(EXIT_REJECTED, String::new()).into()),
    }
}
