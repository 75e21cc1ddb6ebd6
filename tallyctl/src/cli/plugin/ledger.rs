//! The plugin's ledger commands, through the API server (see `reach`): `tx put|get`,
//! `proposals`, `approve` and `reject`. Each finds the channel and its nodes from the
//! cluster's objects, signs with an organization's identity (see `signer`) and asks the nodes
//! in turn until one answers.

use super::reach::{channel_nodes, ChannelNodes};
use super::signer::{self, Kind};
use crate::cli::output::{short, show_value};
use crate::cli::receipt::receipt_line;
use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use std::future::Future;
use std::path::PathBuf;
use tally_client::{txs, Client, ClientError};
use tally_protocol::proposal::ProposalView;
use tally_protocol::{Hash, Receipt, TxStatus};

/// Who signs, as the commands take it.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SignerArgs {
    /// The organization whose identity signs (read from its Secret in the cluster).
    #[arg(long)]
    pub org: Option<String>,
    /// A folder with cert.pem and key.pem to sign with instead (an organization that keeps
    /// its own keys outside the cluster).
    #[arg(long)]
    pub identity: Option<PathBuf>,
}

/// Asks each node in turn; a node that cannot be reached or is shutting down is skipped,
/// any other answer is final.
async fn on_any<T, F, Fut>(nodes: &ChannelNodes, f: F) -> Result<T>
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut failures = Vec::new();
    for (name, c) in &nodes.nodes {
        match f(c.clone()).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transport() || e.api_code() == Some("shutting_down") => {
                tracing::warn!(node = %name, "{e}; trying the next node");
                failures.push(format!("{name}: {e}"));
            }
            Err(e) => return Err(anyhow!("{name}: {e}")),
        }
    }
    bail!("no node of the channel answered: {}", failures.join("; "))
}

fn committed(r: &Receipt) -> Result<()> {
    match &r.status {
        TxStatus::Committed => Ok(()),
        TxStatus::Rejected { .. } => bail!("{}", receipt_line(r)),
    }
}

pub async fn put(
    kube: &kube::Client,
    ns: &str,
    channel: &str,
    key: &str,
    value: &str,
    who: &SignerArgs,
) -> Result<Receipt> {
    let nodes = channel_nodes(kube, ns, channel).await?;
    let id = signer::resolve(
        kube,
        ns,
        &nodes.consortium,
        who.org.as_deref(),
        who.identity.as_deref(),
        Kind::Client,
    )
    .await?;
    let tx = txs::sign_writes(&id, channel, vec![txs::put(key, value.as_bytes())], false);
    let r = on_any(&nodes, |c| {
        let tx = &tx;
        async move { c.submit_wait(tx).await }
    })
    .await?;
    committed(&r)?;
    Ok(r)
}

/// The channel's nodes and the identity that signs reads for `who`.
async fn reading(
    kube: &kube::Client,
    ns: &str,
    channel: &str,
    who: &SignerArgs,
) -> Result<(ChannelNodes, tally_protocol::Identity)> {
    let nodes = channel_nodes(kube, ns, channel).await?;
    let id = signer::reader(
        kube,
        ns,
        &nodes.consortium,
        &nodes.channel.spec.members,
        who.org.as_deref(),
        who.identity.as_deref(),
    )
    .await?;
    Ok((nodes, id))
}

pub async fn get(
    kube: &kube::Client,
    ns: &str,
    channel: &str,
    key: &str,
    who: &SignerArgs,
) -> Result<tally_protocol::api::KeyValue> {
    let (nodes, id) = reading(kube, ns, channel, who).await?;
    let kv = on_any(&nodes, |c| {
        let c = c.with_reader(id.clone());
        async move { c.get(channel, key).await }
    })
    .await?;
    kv.ok_or_else(|| anyhow!("key {key:?} does not exist in channel {channel}"))
}

pub fn value_text(kv: &tally_protocol::api::KeyValue) -> String {
    show_value(&kv.value, kv.value_utf8.as_deref())
}

/// One proposal as `kubectl tally proposals` shows it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ProposalLine {
    pub hash: String,
    pub status: String,
    pub approvals: usize,
    pub needed: usize,
    pub approved: Vec<String>,
    pub rejected: Vec<String>,
    pub missing: Vec<String>,
    pub proposer: String,
    pub description: String,
}

impl ProposalLine {
    pub fn new(p: &ProposalView) -> ProposalLine {
        ProposalLine {
            hash: p.hash.to_hex(),
            status: p.status.as_str().to_string(),
            approvals: p.tally.approved.len(),
            needed: p.tally.needed,
            approved: p.tally.approved.clone(),
            rejected: p.tally.rejected.clone(),
            missing: p.tally.missing.clone(),
            proposer: p.proposer.org.clone(),
            description: p.proposal.description.clone(),
        }
    }

    pub fn text(&self) -> String {
        let mut s = format!(
            "{}  {:<8} approvals {}/{}",
            &self.hash[..12.min(self.hash.len())],
            self.status,
            self.approvals,
            self.needed
        );
        if !self.approved.is_empty() {
            s.push_str(&format!(" (by {})", self.approved.join(", ")));
        }
        if self.status == "open" && !self.missing.is_empty() {
            s.push_str(&format!(", missing {}", self.missing.join(", ")));
        }
        if !self.rejected.is_empty() {
            s.push_str(&format!(", rejected by {}", self.rejected.join(", ")));
        }
        s.push_str(&format!("  proposed by {}", self.proposer));
        if !self.description.is_empty() {
            s.push_str(&format!(": {}", self.description));
        }
        s
    }
}

/// The channel's proposals, oldest first, read as a member organization.
pub async fn proposals(
    kube: &kube::Client,
    ns: &str,
    channel: &str,
    who: &SignerArgs,
) -> Result<Vec<ProposalView>> {
    let (nodes, id) = reading(kube, ns, channel, who).await?;
    on_any(&nodes, |c| {
        let c = c.with_reader(id.clone());
        async move { c.proposals(channel).await }
    })
    .await
}

/// The proposal a full hash or a unique prefix of one names, among the channel's.
fn resolve_hash(all: &[ProposalView], given: &str) -> Result<Hash> {
    let given = given.trim().to_ascii_lowercase();
    if given.len() < 4 {
        bail!("give at least 4 hex digits of the proposal's hash");
    }
    let found: Vec<&ProposalView> = all
        .iter()
        .filter(|p| p.hash.to_hex().starts_with(&given))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.hash),
        [] => bail!(
            "no proposal {given} in the channel (there: {})",
            if all.is_empty() {
                "none".to_string()
            } else {
                all.iter()
                    .map(|p| short(&p.hash))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        _ => bail!("{given} names more than one proposal: give more of the hash"),
    }
}

/// Approves (or rejects) a proposal as an organization's admin; returns the receipt and
/// the proposal as it stands after the vote.
pub async fn vote(
    kube: &kube::Client,
    ns: &str,
    channel: &str,
    hash: &str,
    approve: bool,
    who: &SignerArgs,
) -> Result<(Receipt, Option<ProposalView>)> {
    let nodes = channel_nodes(kube, ns, channel).await?;
    let admin = signer::resolve(
        kube,
        ns,
        &nodes.consortium,
        who.org.as_deref(),
        who.identity.as_deref(),
        Kind::Admin,
    )
    .await?;
    let all = on_any(&nodes, |c| {
        let c = c.with_reader(admin.clone());
        async move { c.proposals(channel).await }
    })
    .await?;
    let hash = resolve_hash(&all, hash)?;
    let r = on_any(&nodes, |c| {
        let admin = &admin;
        async move {
            if approve {
                c.approve(admin, channel, hash).await
            } else {
                c.reject(admin, channel, hash).await
            }
        }
    })
    .await?;
    committed(&r)?;
    let after = on_any(&nodes, |c| {
        let c = c.with_reader(admin.clone());
        async move { c.proposal(channel, &hash).await }
    })
    .await?;
    Ok((r, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(status: &str, approved: &[&str], missing: &[&str]) -> ProposalLine {
        ProposalLine {
            hash: "56366dd759fffe31e686".into(),
            status: status.into(),
            approvals: approved.len(),
            needed: 2,
            approved: approved.iter().map(|s| s.to_string()).collect(),
            rejected: Vec::new(),
            missing: missing.iter().map(|s| s.to_string()).collect(),
            proposer: "org1".into(),
            description: "smaller blocks".into(),
        }
    }

    #[test]
    fn a_proposal_line_says_who_approved_and_who_is_missing() {
        assert_eq!(
            line("open", &["org1"], &["org2"]).text(),
            "56366dd759ff  open     approvals 1/2 (by org1), missing org2  proposed by org1: smaller blocks"
        );
        // Once applied, nobody is "missing" any more.
        assert_eq!(
            line("applied", &["org1", "org2"], &[]).text(),
            "56366dd759ff  applied  approvals 2/2 (by org1, org2)  proposed by org1: smaller blocks"
        );
    }

    #[test]
    fn short_hashes_must_be_long_enough_to_mean_one_proposal() {
        let e = resolve_hash(&[], "ab").unwrap_err().to_string();
        assert!(e.contains("at least 4 hex digits"), "{e}");
        let e = resolve_hash(&[], "abcd").unwrap_err().to_string();
        assert!(
            e.contains("no proposal abcd in the channel (there: none)"),
            "{e}"
        );
    }
}
