//! `tallyctl chaincode retire`, `tallyctl channel retire` and `tallyctl channel leave`.
//!
//! A retirement is a proposal on the ledger (`tally_protocol::retirement`), decided by the
//! channel's admin organizations like a configuration change. Without `--propose` the
//! command gives every approval the caller holds (the local mode holds every organization's
//! admin) so that it applies at once, as `org revoke` does; with `--propose` it only records
//! the proposal with the caller's approval and the others approve it with `proposal approve`.
//!
//! Leaving deletes a channel's data from nodes through their admin API; each node refuses
//! while the channel's configuration still lists it and the channel is not retired.

use super::org_config::{approvers, in_force};
use super::proposal::report;
use super::tx::{submit, WriteOpts};
use super::{Ctx, Exit, IdentitySource};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::PathBuf;
use tally_client::{txs, AdminClient, Profile, SubmitOutcome};
use tally_protocol::proposal::Change;
use tally_protocol::{Payload, Proposal, Role, TxStatus};

/// Who approves a retirement, and for how long it stays open.
#[derive(Args, Debug)]
pub struct RetireArgs {
    /// Further admin identities (folders with cert.pem and key.pem) that approve, beside the
    /// signing identity. With --data-dir every organization's admin in the profile approves.
    #[arg(long = "approver")]
    pub approvers: Vec<PathBuf>,
    /// Only propose it on the ledger (signed by the acting admin, whose organization's
    /// approval counts); the other admin organizations approve it with `tallyctl proposal
    /// approve`.
    #[arg(long, conflicts_with = "approvers")]
    pub propose: bool,
    /// How long the proposal stays open, in block time: 90s, 15m, 24h, 7d (at most 30d).
    #[arg(long, default_value = "24h")]
    pub expires_in: String,
    /// Why, for the organizations that review it.
    #[arg(long, default_value = "")]
    pub description: String,
    #[command(flatten)]
    pub opts: WriteOpts,
}

/// Which nodes leave a channel.
#[derive(Args, Debug)]
pub struct LeaveArgs {
    #[arg(long, short)]
    pub channel: String,
    /// Only these nodes of the --data-dir profile (repeatable); default: every node of the
    /// profile that serves the channel.
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// host:port of a node's admin listener instead of the profile's nodes (repeat or
    /// separate by commas); --identity is the admin.
    #[arg(long, value_delimiter = ',')]
    pub admin_addr: Vec<String>,
    /// The nodes' organization CA certificate with --admin-addr (default: ca.pem in the
    /// --identity folder).
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

/// Proposes `change` and, unless `--propose`, approves it with every admin at hand.
pub async fn retire(ctx: &Ctx, channel: &str, change: Change, a: &RetireArgs) -> Result<()> {
    let ttl = tally_planner::lifetime::parse_duration(&a.expires_in)
        .map_err(|e| anyhow!("--expires-in: {e}"))?;
    if ttl <= 0 {
        bail!("--expires-in must be positive");
    }
    let (current, applied) = in_force(ctx, channel).await?;
    let description = if a.description.is_empty() {
        format!("tallyctl: {}", change.summary())
    } else {
        a.description.clone()
    };
    let expires = tally_protocol::now_ms().saturating_add(ttl as u64 * 1000);
    let proposal = Proposal::other(&current, applied, change, expires, &description);
    let hash = proposal.hash();
    let (submitter, ids) = if a.propose {
        let id = ctx.identity()?;
        if id.info.role != Role::Admin {
            bail!(
                "the identity is a {} certificate; retirements are proposed by an admin (--as admin, or --identity ORG/admins/NAME)",
                id.info.role
            );
        }
        (id, Vec::new())
    } else {
        approvers(ctx, &a.approvers, &current)?
    };
    let t = txs::sign_payload(
        &submitter,
        channel,
        Payload::Propose(Box::new(proposal)),
        a.opts.cert_hash,
    );
    let mut outcome = submit(ctx, &t, &a.opts).await?;
    let mut verb = "proposed";
    let need = current.approvals_needed();
    let mut approved: BTreeSet<String> = BTreeSet::from([submitter.info.org.clone()]);
    for id in &ids {
        if approved.len() >= need || !committed(&outcome) {
            break;
        }
        if !approved.insert(id.info.org.clone()) {
            continue;
        }
        let vote = txs::sign_payload(
            id,
            channel,
            Payload::ProposalApprove { hash },
            a.opts.cert_hash,
        );
        outcome = submit(ctx, &vote, &a.opts).await?;
        verb = "approved";
    }
    if !a.propose && approved.len() < need {
        tracing::warn!(
            "approvals of {} organizations at hand ({}); the channel needs {need}: the proposal stays open for the others (`tallyctl proposal approve`)",
            approved.len(),
            approved.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    report(ctx, channel, hash, verb, &outcome).await
}

fn committed(o: &SubmitOutcome) -> bool {
    matches!(o, SubmitOutcome::Receipt(r) if r.status == TxStatus::Committed)
}

/// Asks nodes to leave a channel (delete its data) through their admin API.
pub async fn leave(ctx: &Ctx, a: &LeaveArgs) -> Result<()> {
    let mut targets: Vec<(String, AdminClient)> = Vec::new();
    if !a.admin_addr.is_empty() {
        let id = ctx.identity()?;
        if id.info.role != Role::Admin {
            bail!(
                "the identity is a {} certificate; the admin API needs an admin identity",
                id.info.role
            );
        }
        let ca_path = match &a.ca {
            Some(p) => p.clone(),
            None => ctx
                .identity_dir()
                .map(|d| d.join("ca.pem"))
                .ok_or_else(|| anyhow!("pass --ca"))?,
        };
        let ca_pem = std::fs::read_to_string(&ca_path)
            .with_context(|| format!("reading the CA certificate {}", ca_path.display()))?;
        for addr in super::non_empty(&a.admin_addr) {
            targets.push((addr.to_string(), AdminClient::new(addr, &ca_pem, &id)?));
        }
    } else {
        // Each node is asked as its own organization's admin, from the profile: no --org needed.
        let loaded;
        let (dir, profile) = match (&ctx.identity, &ctx.data_dir) {
            (IdentitySource::Profile { dir, profile, .. }, _) => (dir, &**profile),
            (_, Some(dir)) => {
                loaded = Profile::load(dir)?;
                (dir, &loaded)
            }
            _ => bail!("name the nodes: --data-dir DIR (a local consortium's profile), or --admin-addr with an admin --identity"),
        };
        for n in &profile.nodes {
            // A node without an admin address runs elsewhere (the other side of a consortium):
            // it leaves by its own side's command.
            let wanted = if a.nodes.is_empty() {
                n.channels.iter().any(|c| c == &a.channel) && !n.admin_addr.is_empty()
            } else {
                a.nodes.contains(&n.name)
            };
            if !wanted {
                continue;
            }
            if n.admin_addr.is_empty() {
                bail!("the profile gives no admin address for node {}", n.name);
            }
            let admin = profile.identity(dir, &n.org, "admin")?;
            let ca_path = dir.join(&profile.org(&n.org)?.ca);
            let ca_pem = std::fs::read_to_string(&ca_path)
                .with_context(|| format!("reading {}", ca_path.display()))?;
            targets.push((
                n.name.clone(),
                AdminClient::new(&n.admin_addr, &ca_pem, &admin)?,
            ));
        }
        if let Some(missing) = a
            .nodes
            .iter()
            .find(|n| !profile.nodes.iter().any(|p| &p.name == *n))
        {
            bail!("node {missing} is not in the profile");
        }
    }
    if targets.is_empty() {
        bail!("no node of the profile serves channel {}", a.channel);
    }
    let mut results = Vec::new();
    let mut failed = 0;
    for (name, admin) in &targets {
        let r = admin.leave_channel(&a.channel).await;
        if r.is_err() {
            failed += 1;
        }
        results.push((name.clone(), r));
    }
    let v: Vec<_> = results
        .iter()
        .map(|(n, r)| match r {
            Ok(Some(left)) => json!({"node": n, "ok": true, "left": left}),
            Ok(None) => json!({"node": n, "ok": true, "left": null}),
            Err(e) => json!({"node": n, "ok": false, "error": e.to_string()}),
        })
        .collect();
    ctx.show(&json!({"channel": a.channel, "results": v}), || {
        for (n, r) in &results {
            match r {
                Ok(Some(left)) => println!(
                    "{n}: left channel {} (deleted {} blocks)",
                    a.channel, left["height"]
                ),
                Ok(None) => println!("{n}: does not hold channel {}", a.channel),
                Err(e) => println!("{n}: REFUSED: {e}"),
            }
        }
    })?;
    if failed > 0 {
        return Err(Exit(
            1,
            format!(
                "error: {failed} of {} nodes did not leave channel {}",
                results.len(),
                a.channel
            ),
        )
        .into());
    }
    Ok(())
}
