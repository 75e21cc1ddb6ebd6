//! `tallyctl channel approve-genesis`: an organization's admin reviews a channel's genesis and
//! signs it. A node creates or joins a channel only with every member organization's
//! approval of its genesis (`tally_protocol::genesis`), so this is how an organization that
//! keeps its admin key to itself (`approvals: External`) agrees to a channel.

use super::Ctx;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tally_protocol::hash::hex_bytes;
use tally_protocol::{genesis, Approval, ChannelConfig, Role};

/// An approval as people pass it around: the organization it speaks for (checked against
/// the certificate), the admin's certificate (DER, hex) and the signature (hex). This is also
/// an item of a Channel's `spec.genesisApprovals`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApprovalFile {
    pub organization: String,
    pub channel: String,
    /// The genesis hash the approval covers, for people to compare.
    pub genesis: String,
    #[serde(with = "hex_bytes")]
    pub certificate: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

pub fn read_genesis(path: &Path) -> Result<ChannelConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // Accept the operator's ConfigMap key or a creation request as well as a bare genesis.
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let genesis = value.get("genesis").cloned().unwrap_or(value);
    let config: ChannelConfig = serde_json::from_value(genesis)
        .with_context(|| format!("{} is not a channel configuration", path.display()))?;
    config
        .validate()
        .with_context(|| format!("{}", path.display()))?;
    Ok(config)
}

/// Reads approvals written by `approve-genesis`, checking each against `genesis`.
pub fn read_approvals(genesis: &ChannelConfig, paths: &[PathBuf]) -> Result<Vec<Approval>> {
    let cas = genesis.validate()?;
    let mut out = Vec::new();
    for p in paths {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let f: ApprovalFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a genesis approval", p.display()))?;
        let a = Approval {
            certificate: f.certificate,
            signature: f.signature,
        };
        match genesis::approver(genesis, &cas, &a) {
            Ok(org) if org == f.organization => out.push(a),
            Ok(org) => bail!(
                "{}: says it is {}'s approval, but its certificate is {org}'s",
                p.display(),
                f.organization
            ),
            Err(why) => bail!("{}: {why}", p.display()),
        }
    }
    Ok(out)
}

/// The approval of `genesis` by the profile's admin.
pub fn sign(ctx: &Ctx, genesis: &ChannelConfig) -> Result<ApprovalFile> {
    let id = ctx.identity()?;
    if id.info.role != Role::Admin {
        bail!(
            "the identity is a {} certificate; only an organization's admin approves a genesis",
            id.info.role
        );
    }
    if genesis.member(&id.info.org).is_none() {
        bail!(
            "organization {} is not a member of channel {}: only members approve its genesis",
            id.info.org,
            genesis.name
        );
    }
    let a = genesis::approve(genesis, &id);
    let cas = genesis.validate()?;
    if let Err(why) = genesis::approver(genesis, &cas, &a) {
        bail!("this admin's approval would not count: {why}");
    }
    Ok(ApprovalFile {
        organization: id.info.org.clone(),
        channel: genesis.name.clone(),
        genesis: genesis.hash().to_string(),
        certificate: a.certificate,
        signature: a.signature,
    })
}

pub fn approve(ctx: &Ctx, genesis_path: &Path, out: Option<&Path>) -> Result<()> {
    let genesis = read_genesis(genesis_path)?;
    let approval = sign(ctx, &genesis)?;
    let json = serde_json::to_string_pretty(&approval)?;
    if let Some(out) = out {
        std::fs::write(out, format!("{json}\n"))
            .with_context(|| format!("writing {}", out.display()))?;
    }
    ctx.show(&approval, || {
        eprintln!(
            "{} approves channel {} (genesis {}):",
            approval.organization, genesis.name, approval.genesis
        );
        for line in summary(&genesis) {
            eprintln!("  {line}");
        }
        match out {
            Some(out) => eprintln!("approval written to {}", out.display()),
            None => println!("{json}"),
        }
    })
}

/// What an organization agrees to, in a few lines.
pub fn summary(g: &ChannelConfig) -> Vec<String> {
    let names = |ns: &[tally_protocol::NodeRef]| {
        ns.iter()
            .map(|n| format!("{} ({})", n.name, n.org))
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        format!(
            "members: {}",
            g.members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!("consenters: {}", names(&g.consenters)),
        format!("observers: {}", names(&g.observers)),
        format!("admin organizations: {}", g.admin_orgs().join(", ")),
        format!(
            "batch: {} transactions, {} bytes, {} ms",
            g.batch.max_txs, g.batch.max_bytes, g.batch.timeout_ms
        ),
    ]
}
