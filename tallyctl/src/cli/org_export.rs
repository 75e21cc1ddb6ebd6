//! `tallyctl org export ORG`: the public bundle of an organization that a local consortium
//! (`tallyctl up`) hosts, for the other side of a consortium to list it as an external
//! member. It carries the organization's CA certificates as the channels list them and its
//! nodes with their Raft ids and addresses as the channel configurations name them; never a
//! key.

use super::Ctx;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use tally_api::bundle::{BundleNode, OrganizationBundle};
use tally_client::Profile;
use tally_planner::spec::PeerRole;
use tally_planner::{API_PORT, PEER_PORT};

pub fn export(ctx: &Ctx, org: &str, out: Option<&Path>) -> Result<()> {
    let dir = ctx.data_dir.as_deref().ok_or_else(|| {
        anyhow!("`org export` reads a consortium started by `tallyctl up`: give --data-dir")
    })?;
    let b = bundle_of(dir, org)?;
    let yaml = serde_yaml::to_string(&b)?;
    match out {
        Some(path) => {
            std::fs::write(path, &yaml).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "bundle of {org} ({} CA certificate(s), {} node(s)) written to {}",
                b.ca_certificates.len(),
                b.nodes.len(),
                path.display()
            );
        }
        None => print!("{yaml}"),
    }
    Ok(())
}

/// The bundle of `org` from the data directory `dir` of a local consortium.
pub fn bundle_of(dir: &Path, org: &str) -> Result<OrganizationBundle> {
    let profile = Profile::load(dir)?;
    if profile.org(org).is_err() {
        bail!(
            "{} has no organization {org} (organizations: {})",
            dir.display(),
            profile
                .organizations
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let org_dir = dir.join("orgs").join(org);
    if !org_dir.join("ca-key.pem").exists() {
        bail!("organization {org} runs elsewhere (this side holds no key of it): its own side exports its bundle");
    }
    let (nodes, channels) = crate::local::stored_layout(dir).map_err(|e| anyhow!("{e}"))?;
    let mut b = OrganizationBundle::new(org);
    // The CAs the channels trust for it (a rotation lists two), else the one it issues from.
    for m in channels.iter().filter_map(|c| c.member(org)) {
        for pem in std::iter::once(&m.ca_pem).chain(&m.extra_cas) {
            if !b.ca_certificates.contains(pem) {
                b.ca_certificates.push(pem.clone());
            }
        }
    }
    if b.ca_certificates.is_empty() {
        let path = org_dir.join("ca.pem");
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        b.ca_certificates.push(pem);
    }
    for n in nodes.iter().filter(|n| n.org == org) {
        // As the channel configurations name it, when one does.
        let named = channels
            .iter()
            .find_map(|c| c.nodes().find(|r| r.name == n.name).cloned());
        let (peer_address, api_url) = match named {
            Some(r) => (r.peer_addr, r.api_url),
            None => (
                format!("{}:{PEER_PORT}", n.host),
                format!("https://{}:{API_PORT}", n.host),
            ),
        };
        let observer = channels
            .iter()
            .any(|c| c.observers.iter().any(|o| o.name == n.name))
            || profile
                .nodes
                .iter()
                .any(|p| p.name == n.name && p.role == PeerRole::Observer.as_str());
        b.nodes.push(BundleNode {
            name: n.name.clone(),
            raft_id: n.id,
            role: if observer {
                PeerRole::Observer
            } else {
                PeerRole::Consenter
            },
            peer_address,
            api_url,
        });
    }
    b.check()?;
    Ok(b)
}
