//! Adapter over `tallyctl::LocalCluster`: what the benchmark needs from a running cluster.

use crate::tally::TallyParams;
use anyhow::{Context, Result};
use std::time::Duration;
use tally_protocol::{Identity, Role};
use tallyctl::{LocalCluster, LocalClusterSpec};

/// The benchmark's channels: `bench`, then `bench1`, `bench2`, ... when there are several.
pub fn channel_names(n: usize) -> Vec<String> {
    (0..n.max(1))
        .map(|i| {
            if i == 0 {
                "bench".to_string()
            } else {
                format!("bench{i}")
            }
        })
        .collect()
}

pub struct Cluster {
    /// Every node is a consenter of every channel, every organization a member.
    pub channels: Vec<String>,
    pub api_urls: Vec<String>,
    /// Every organization's CA: what the nodes' TLS certificates are verified against.
    pub trust: tally_client::ApiTrust,
    /// One client identity per organization; all may write on the channel.
    pub identities: Vec<Identity>,
    /// Each organization's admin, in the order of `identities` (the chaincode lifecycle).
    pub admins: Vec<(String, Identity)>,
    /// Node process ids.
    pub pids: Vec<u32>,
    // Field order matters: the nodes are killed before their folder is removed.
    inner: Option<LocalCluster>,
    dir: tempfile::TempDir,
}

pub async fn start(p: &TallyParams) -> Result<Cluster> {
    let dir = tempfile::Builder::new().prefix("tally-bench-").tempdir()?;
    let channels = channel_names(p.channels);
    let names: Vec<&str> = channels.iter().map(String::as_str).collect();
    let mut spec = LocalClusterSpec::simple(dir.path(), &p.node_bin, p.nodes, &names);
    spec.fsync = p.fsync;
    spec.log_to_files = true;
    for ch in &mut spec.channels {
        if let Some(n) = p.batch_max_txs {
            ch.batch.max_txs = n;
        }
        if let Some(ms) = p.batch_timeout_ms {
            ch.batch.timeout_ms = ms;
        }
    }
    let inner = LocalCluster::start(spec).await.with_context(|| {
        format!(
            "starting the local cluster (logs under {})",
            dir.path().display()
        )
    })?;
    let names = inner.node_names();
    let api_urls = names.iter().map(|n| inner.api_url(n)).collect();
    let pids = names
        .iter()
        .map(|n| {
            inner
                .pid(n)
                .with_context(|| format!("node {n} is not running"))
        })
        .collect::<Result<Vec<_>>>()?;
    let identities = inner
        .org_names()
        .iter()
        .map(|o| inner.identity(o, Role::Client))
        .collect();
    let admins = inner
        .org_names()
        .iter()
        .map(|o| (o.clone(), inner.identity(o, Role::Admin)))
        .collect();
    Ok(Cluster {
        channels,
        api_urls,
        trust: inner.api_trust(),
        identities,
        admins,
        pids,
        inner: Some(inner),
        dir,
    })
}

impl Cluster {
    /// The admin API of node `i` (in node order), as its organization's admin.
    pub fn admin(&self, i: usize) -> Result<tally_client::AdminClient> {
        let c = self.inner.as_ref().context("the cluster is stopped")?;
        let names = c.node_names();
        let name = names.get(i).with_context(|| format!("no node {i}"))?;
        let org = c.node_org(name);
        Ok(tally_client::AdminClient::new(
            &c.admin_addr(name),
            &c.ca_pem(&org),
            &c.identity(&org, Role::Admin),
        )?)
    }

    /// Last lines of each node's log, for error reports.
    pub fn log_tails(&self, lines: usize) -> String {
        let Some(c) = &self.inner else {
            return String::new();
        };
        c.node_names()
            .iter()
            .map(|n| {
                format!(
                    "--- {n} ({}):\n{}",
                    c.log_path(n).display(),
                    c.log_tail(n, lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills the nodes and waits (briefly) until they are gone, so the next system measured
    /// does not share the CPU with them.
    pub async fn stop(mut self) {
        drop(self.inner.take());
        crate::procstat::wait_gone(&self.pids, Duration::from_secs(10)).await;
        let _ = &self.dir;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_channel_keeps_its_name_and_more_are_numbered() {
        assert_eq!(channel_names(1), ["bench"]);
        assert_eq!(channel_names(3), ["bench", "bench1", "bench2"]);
        let names = channel_names(50);
        let cfgs: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(cfgs.len(), 50);
    }
}
