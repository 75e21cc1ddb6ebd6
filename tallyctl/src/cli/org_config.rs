//! `tallyctl org revoke | add-ca | remove-ca`: changes to whom an organization vouches for in
//! a channel's configuration. The next configuration is built by `tally_protocol::org_trust`
//! from the one in force; this module only finds the approvals the caller can give and
//! submits it as a configuration transaction.

use super::tx::{print_outcome, submit, WriteOpts};
use super::Ctx;
use super::IdentitySource;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use tally_client::txs;
use tally_protocol::identity::{fingerprint, pem_to_der};
use tally_protocol::org_trust;
use tally_protocol::{ChannelConfig, Hash, Identity, Role};

/// Which channel and organization, and who approves.
#[derive(Args, Debug)]
pub struct Target {
    #[arg(long, short)]
    pub channel: String,
    /// The organization whose trust changes, when it is not the --org acting (or the
    /// organization of the --identity).
    #[arg(long = "org-name")]
    pub org_name: Option<String>,
    /// Further admin identities (folders with cert.pem and key.pem) that approve the change,
    /// beside the signing identity. With --data-dir every organization's admin in the
    /// profile approves (the local mode holds them all).
    #[arg(long = "approver")]
    pub approvers: Vec<PathBuf>,
    /// Propose the change on the ledger instead (signed by the acting admin, whose
    /// organization's approval counts); the other admin organizations approve it with
    /// `tallyctl proposal approve`. Open for 24 hours.
    #[arg(long, conflicts_with = "approvers")]
    pub propose: bool,
    #[command(flatten)]
    pub opts: WriteOpts,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub target: Target,
    /// The certificate to revoke (PEM).
    #[arg(
        long,
        conflicts_with = "fingerprint",
        required_unless_present = "fingerprint"
    )]
    pub cert: Option<PathBuf>,
    /// SHA-256 of the certificate's DER, hex (`openssl x509 -noout -fingerprint -sha256`;
    /// colons are allowed).
    #[arg(long)]
    pub fingerprint: Option<String>,
}

#[derive(Args, Debug)]
pub struct AddCaArgs {
    #[command(flatten)]
    pub target: Target,
    /// The new CA certificate (PEM).
    #[arg(long)]
    pub ca: PathBuf,
}

#[derive(Args, Debug)]
pub struct RemoveCaArgs {
    #[command(flatten)]
    pub target: Target,
    /// The CA certificate to remove (PEM).
    #[arg(
        long,
        conflicts_with = "fingerprint",
        required_unless_present = "fingerprint"
    )]
    pub ca: Option<PathBuf>,
    /// SHA-256 of the CA certificate's DER, hex.
    #[arg(long)]
    pub fingerprint: Option<String>,
}

/// A certificate fingerprint as hex, with or without the colons OpenSSL prints.
pub fn parse_fingerprint(s: &str) -> Result<Hash> {
    let hex: String = s
        .trim()
        .trim_start_matches("sha256 Fingerprint=")
        .trim_start_matches("SHA256 Fingerprint=")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    Hash::from_hex(&hex.to_ascii_lowercase()).map_err(|_| {
        anyhow!("fingerprint {s:?} is not a SHA-256 digest (64 hex digits, colons allowed)")
    })
}

fn read_cert(path: &Path) -> Result<Vec<u8>> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    pem_to_der(&pem).with_context(|| format!("{} is not a PEM certificate", path.display()))
}

/// The organization the change is about: --org-name, else the --org of the profile, else
/// the signing identity's own.
fn org_of(ctx: &Ctx, t: &Target) -> Result<String> {
    if let Some(o) = &t.org_name {
        return Ok(o.clone());
    }
    match &ctx.identity {
        IdentitySource::Profile { org, .. } => Ok(org.clone()),
        IdentitySource::Dir(_) => Ok(ctx.identity()?.info.org),
        IdentitySource::None => {
            bail!("name the organization: --data-dir DIR --org ORG, or --identity ORG/admins/NAME")
        }
    }
}

/// The configuration in force and how many changes led to it, read from one node (its
/// status and configuration agree, or it is asked again).
pub(super) async fn in_force(ctx: &Ctx, channel: &str) -> Result<(ChannelConfig, u64)> {
    for _ in 0..5 {
        let ch = channel.to_string();
        let (_, (status, config)) = ctx
            .on_any(|c| {
                let ch = ch.clone();
                async move {
                    let s = c.status(&ch).await?;
                    let cfg = c.config(&ch).await?;
                    Ok((s, cfg))
                }
            })
            .await?;
        if status.config_hash == config.hash() {
            return Ok((config, status.config_sequence));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    bail!("the channel's configuration kept changing while it was read; try again")
}

/// Who signs and who approves: the signing identity (an admin) and the admins the caller
/// holds. Only admins of organizations the configuration lets approve are kept.
pub(super) fn approvers(
    ctx: &Ctx,
    extra: &[PathBuf],
    config: &ChannelConfig,
) -> Result<(Identity, Vec<Identity>)> {
    let eligible = config.admin_orgs();
    let mut all: Vec<Identity> = Vec::new();
    match &ctx.identity {
        IdentitySource::Profile { dir, profile, .. } => {
            for o in &profile.organizations {
                if !eligible.contains(&o.name) {
                    continue;
                }
                if let Ok(id) = profile.identity(dir, &o.name, "admin") {
                    all.push(id);
                }
            }
        }
        IdentitySource::Dir(_) => all.push(ctx.identity()?),
        IdentitySource::None => {}
    }
    for dir in extra {
        all.push(Identity::load(dir).with_context(|| format!("--approver {}", dir.display()))?);
    }
    all.retain(|id| id.info.role == Role::Admin && eligible.contains(&id.info.org));
    let submitter = match &ctx.identity {
        // Prefer the organization acting, when it is among the approvers.
        IdentitySource::Profile { org, .. } => all.iter().find(|i| &i.info.org == org),
        _ => None,
    }
    .or_else(|| all.first())
    .cloned()
    .ok_or_else(|| {
        anyhow!(
            "no admin identity to approve with: pass --data-dir DIR (with an admin in its profile), \
             or --identity ORG/admins/NAME and --approver for the other organizations"
        )
    })?;
    Ok((submitter, all))
}

/// Approves `next` with every admin the caller holds and submits it.
async fn submit_change(
    ctx: &Ctx,
    t: &Target,
    current: &ChannelConfig,
    applied: u64,
    next: ChannelConfig,
    what: &str,
) -> Result<()> {
    if t.propose {
        let ttl = std::time::Duration::from_secs(24 * 3600);
        let why = format!("tallyctl org {what}");
        return super::proposal::propose_config(ctx, &current.name, next, ttl, &why, &t.opts).await;
    }
    let (submitter, ids) = approvers(ctx, &t.approvers, current)?;
    let orgs: std::collections::BTreeSet<&str> = ids.iter().map(|i| i.info.org.as_str()).collect();
    let need = current.approvals_needed_for(&next);
    if orgs.len() < need {
        tracing::warn!(
            "{what}: approvals of {} organizations at hand ({}); the channel needs {need}",
            orgs.len(),
            orgs.iter().copied().collect::<Vec<_>>().join(", ")
        );
    }
    let refs: Vec<&Identity> = ids.iter().collect();
    let tx = txs::sign_config(&submitter, current, applied, next, &refs);
    let o = submit(ctx, &tx, &t.opts).await?;
    print_outcome(ctx, &o)
}

pub async fn revoke(ctx: &Ctx, a: RevokeArgs) -> Result<()> {
    let org = org_of(ctx, &a.target)?;
    let (current, applied) = in_force(ctx, &a.target.channel).await?;
    let next = match (&a.cert, &a.fingerprint) {
        (Some(path), _) => {
            let der = read_cert(path)?;
            warn_if_node_in_use(&current, &der);
            org_trust::revoke_cert(&current, &org, &der)?
        }
        (None, Some(fp)) => org_trust::revoke(&current, &org, parse_fingerprint(fp)?)?,
        (None, None) => bail!("pass --cert FILE or --fingerprint HEX"),
    };
    submit_change(ctx, &a.target, &current, applied, next, "revoke").await
}

/// The configuration cannot tell which certificate a node runs with, so revoking one in use
/// is allowed; but a node cut off that way stops ordering, and enough of them stop the channel
/// (and with it any configuration change that could undo it). Say so before it happens.
fn warn_if_node_in_use(config: &ChannelConfig, der: &[u8]) {
    let Ok(info) = tally_protocol::identity::inspect(der) else {
        return;
    };
    if info.role == Role::Node && config.node(&info.common_name).is_some() {
        let what = if config.consenters.iter().any(|n| n.name == info.common_name) {
            "a consenter"
        } else {
            "an observer"
        };
        tracing::warn!(
            "{} is {what} of channel {}: if this is the certificate it runs with, it is cut off \
             from its peers from the next block on; re-issue its certificate and restart it first",
            info.common_name,
            config.name
        );
    }
}

pub async fn add_ca(ctx: &Ctx, a: AddCaArgs) -> Result<()> {
    let org = org_of(ctx, &a.target)?;
    let pem =
        std::fs::read_to_string(&a.ca).with_context(|| format!("reading {}", a.ca.display()))?;
    let (current, applied) = in_force(ctx, &a.target.channel).await?;
    let next = org_trust::add_ca(&current, &org, &pem)?;
    submit_change(ctx, &a.target, &current, applied, next, "add-ca").await
}

pub async fn remove_ca(ctx: &Ctx, a: RemoveCaArgs) -> Result<()> {
    let org = org_of(ctx, &a.target)?;
    let fp = match (&a.ca, &a.fingerprint) {
        (Some(path), _) => fingerprint(&read_cert(path)?),
        (None, Some(fp)) => parse_fingerprint(fp)?,
        (None, None) => bail!("pass --ca FILE or --fingerprint HEX"),
    };
    let (current, applied) = in_force(ctx, &a.target.channel).await?;
    let next = org_trust::remove_ca(&current, &org, fp)?;
    submit_change(ctx, &a.target, &current, applied, next, "remove-ca").await
}

#[cfg(test)]
mod tests {
    use super::parse_fingerprint;

    #[test]
    fn fingerprints_read_as_openssl_prints_them() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            parse_fingerprint(&hex).expect("hex"),
            parse_fingerprint(&colons).expect("colons")
        );
        assert_eq!(
            parse_fingerprint(&format!("sha256 Fingerprint={colons}")).expect("openssl line"),
            parse_fingerprint(&hex).expect("hex")
        );
        assert!(parse_fingerprint("abcd").is_err());
    }
}
