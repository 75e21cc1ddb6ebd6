//! `tallyctl status`: every node of a channel, found from the channel's configuration, and
//! whether they agree on the ledger.

use super::output::{print_table, raft_role_name, short};
use super::progress::Spinner;
use super::Ctx;
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use serde_json::json;
use std::time::Duration;
use tally_client::{Client, ClientError};
use tally_protocol::api::ChannelStatus;
use tally_protocol::{ChannelConfig, Hash, NodeRef};

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(long, short)]
    channel: String,
    /// Per-node time limit in seconds.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

/// What the statuses alone say about agreement.
#[derive(Debug, PartialEq, Eq)]
enum Assessment {
    Agree,
    Disagree(String),
    /// Heights differ and nodes at the same height agree: compare the block headers at this
    /// number (the highest block every node has).
    CompareAt(u64),
}

fn assess(statuses: &[&ChannelStatus]) -> Assessment {
    if statuses.is_empty() {
        return Assessment::Disagree("no node reachable".into());
    }
    // nodes at the same height must have the same last block and state root
    let mut by_height: std::collections::BTreeMap<u64, &ChannelStatus> = Default::default();
    for s in statuses {
        match by_height.get(&s.height) {
            None => {
                by_height.insert(s.height, s);
            }
            Some(first) => {
                if first.state_root != s.state_root || first.last_block_hash != s.last_block_hash {
                    return Assessment::Disagree(format!(
                        "{} and {} are both at height {} but have different {}",
                        first.node,
                        s.node,
                        s.height,
                        if first.last_block_hash != s.last_block_hash {
                            "last blocks"
                        } else {
                            "state roots"
                        }
                    ));
                }
            }
        }
    }
    if by_height.len() == 1 {
        return Assessment::Agree;
    }
    let min = by_height.keys().next().copied().unwrap_or(0);
    if min == 0 {
        // a node without even the genesis block has nothing to disagree about
        return Assessment::Agree;
    }
    Assessment::CompareAt(min - 1)
}

/// Given every node's hash of the same block (None where it could not be fetched), whether
/// they agree: all fetched hashes equal, at least one fetched.
fn hashes_agree(hashes: &[Option<Hash>]) -> bool {
    let mut it = hashes.iter().flatten();
    match it.next() {
        None => false,
        Some(first) => it.all(|h| h == first),
    }
}

fn leader_name(config: &ChannelConfig, leader_id: u64) -> Option<String> {
    if leader_id == 0 {
        return None;
    }
    Some(
        config
            .nodes()
            .find(|n| n.id == leader_id)
            .map_or_else(|| format!("id {leader_id}"), |n| n.name.clone()),
    )
}

#[derive(Serialize)]
struct NodeRow {
    name: String,
    org: String,
    /// consenter or observer, from the configuration.
    role: &'static str,
    api_url: String,
    reachable: bool,
    /// leader, follower, candidate or learner, as the node reports it.
    raft_role: Option<String>,
    height: Option<u64>,
    leader: Option<String>,
    term: Option<u64>,
    state_root: Option<Hash>,
    last_block_hash: Option<Hash>,
    ready: Option<bool>,
    error: Option<String>,
}

impl StatusArgs {
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

pub async fn run(ctx: &Ctx, a: StatusArgs) -> Result<()> {
    let channel = a.channel.as_str();
    let timeout = Duration::from_secs(a.timeout.max(1));
    let spinner = Spinner::start(format!("fetching the configuration of channel {channel}"));
    let (_, config) = ctx
        .on_any(|c| async move { c.with_timeout(timeout).config(channel).await })
        .await
        .with_context(|| format!("fetching the configuration of channel {channel}"))?;
    spinner.set(format!("asking {} nodes", config.nodes().count()));
    let nodes: Vec<(NodeRef, &'static str)> = config
        .consenters
        .iter()
        .map(|n| (n.clone(), "consenter"))
        .chain(config.observers.iter().map(|n| (n.clone(), "observer")))
        .collect();
    let clients: Vec<Option<Client>> = nodes
        .iter()
        .map(|(n, _)| {
            // A profile knows how this machine reaches a node (a pod IP, a forwarded port),
            // which may differ from the address in the channel configuration.
            let url = ctx
                .profile_url(&n.name)
                .unwrap_or_else(|| n.api_url.clone());
            ctx.client(&url).ok().map(|c| c.with_timeout(timeout))
        })
        .collect();
    let results = futures_util::future::join_all(clients.iter().map(|c| async move {
        match c {
            Some(c) => c.status(channel).await,
            None => Err(ClientError::Other("invalid api_url".into())),
        }
    }))
    .await;
    let mut rows = Vec::new();
    for ((n, kind), r) in nodes.iter().zip(&results) {
        let mut row = NodeRow {
            name: n.name.clone(),
            org: n.org.clone(),
            role: kind,
            api_url: n.api_url.clone(),
            reachable: false,
            raft_role: None,
            height: None,
            leader: None,
            term: None,
            state_root: None,
            last_block_hash: None,
            ready: None,
            error: None,
        };
        match r {
            Ok(s) => {
                row.reachable = true;
                row.raft_role = raft_role_name(s.role);
                row.height = Some(s.height);
                row.leader = leader_name(&config, s.leader_id);
                row.term = Some(s.term);
                row.state_root = Some(s.state_root);
                row.last_block_hash = Some(s.last_block_hash);
                row.ready = Some(s.ready);
            }
            Err(e) => row.error = Some(e.to_string()),
        }
        rows.push(row);
    }
    let ok: Vec<&ChannelStatus> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let (agree, detail) = match assess(&ok) {
        Assessment::Agree => (true, None),
        Assessment::Disagree(why) => (false, Some(why)),
        Assessment::CompareAt(n) => {
            spinner.set(format!("comparing block {n} across nodes"));
            let hashes =
                futures_util::future::join_all(
                    clients.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(
                        |(c, _)| async move {
                            match c {
                                Some(c) => c.header(channel, n).await.ok().map(|h| h.hash()),
                                None => None,
                            }
                        },
                    ),
                )
                .await;
            if hashes_agree(&hashes) && hashes.iter().all(Option::is_some) {
                (
                    true,
                    Some(format!(
                        "heights differ; block {n} is the same on every reachable node"
                    )),
                )
            } else if hashes.iter().any(Option::is_none) {
                (
                    false,
                    Some(format!(
                        "heights differ and block {n} could not be fetched from every node"
                    )),
                )
            } else {
                (false, Some(format!("block {n} differs between nodes")))
            }
        }
    };
    drop(spinner);
    let json = json!({
        "channel": channel,
        "config_hash": config.hash(),
        "nodes": rows,
        "agree": agree,
        "detail": detail,
    });
    ctx.show(&json, || {
        let mut table = vec![vec![
            "NAME".to_string(),
            "ORG".into(),
            "ROLE".into(),
            "RAFT".into(),
            "HEIGHT".into(),
            "LEADER".into(),
            "STATE_ROOT".into(),
            "READY".into(),
        ]];
        for r in &rows {
            let dash = || "-".to_string();
            table.push(vec![
                r.name.clone(),
                r.org.clone(),
                r.role.to_string(),
                if r.reachable {
                    r.raft_role.clone().unwrap_or_else(dash)
                } else {
                    "unreachable".to_string()
                },
                r.height.map_or_else(dash, |h| h.to_string()),
                r.leader.clone().unwrap_or_else(dash),
                r.state_root.as_ref().map_or_else(dash, short),
                r.ready
                    .map_or_else(dash, |b| if b { "yes".into() } else { "no".into() }),
            ]);
        }
        print_table(&table);
        let reachable = rows.iter().filter(|r| r.reachable).count();
        println!(
            "{reachable}/{} nodes reachable; {}{}",
            rows.len(),
            if agree {
                "they agree"
            } else {
                "they DO NOT agree"
            },
            detail.map(|d| format!(" ({d})")).unwrap_or_default()
        );
        for r in rows.iter().filter(|r| !r.reachable) {
            println!(
                "  {}: {}",
                r.name,
                r.error.as_deref().unwrap_or("unreachable")
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::genesis::parse_node_spec;
    use tally_protocol::api::RaftRole;

    fn st(node: &str, height: u64, root: u8, last: u8) -> ChannelStatus {
        ChannelStatus {
            channel: "ch".into(),
            node: node.into(),
            node_id: 1,
            org: "o".into(),
            role: RaftRole::Follower,
            leader_id: 1,
            term: 1,
            height,
            last_block_hash: Hash([last; 32]),
            state_root: Hash([root; 32]),
            applied_index: 1,
            commit_index: 1,
            ready: true,
            config_hash: Hash::ZERO,
            config_sequence: 0,
            member: true,
            voters: vec![1],
            learners: vec![],
            degraded: None,
            rejoining: false,
        }
    }

    #[test]
    fn agreement_from_statuses() {
        let (a, b, c) = (st("a", 5, 1, 9), st("b", 5, 1, 9), st("c", 5, 2, 9));
        assert_eq!(assess(&[&a, &b]), Assessment::Agree);
        assert_eq!(assess(&[&a]), Assessment::Agree);
        assert!(matches!(assess(&[]), Assessment::Disagree(_)));
        assert!(
            matches!(assess(&[&a, &b, &c]), Assessment::Disagree(m) if m.contains("state roots"))
        );
        let d = st("d", 5, 1, 8);
        assert!(matches!(assess(&[&a, &d]), Assessment::Disagree(m) if m.contains("last blocks")));
        // behind: compare at the highest block everyone has
        let (e, f) = (st("e", 3, 7, 7), st("f", 7, 8, 8));
        assert_eq!(assess(&[&a, &e, &f, &b]), Assessment::CompareAt(2));
        // behind, and two at the top disagree
        let g = st("g", 7, 9, 8);
        assert!(matches!(assess(&[&e, &f, &g]), Assessment::Disagree(_)));
        assert_eq!(assess(&[&st("x", 0, 0, 0), &a]), Assessment::Agree);

        assert!(hashes_agree(&[Some(Hash([1; 32])), Some(Hash([1; 32]))]));
        assert!(hashes_agree(&[Some(Hash([1; 32])), None]));
        assert!(!hashes_agree(&[Some(Hash([1; 32])), Some(Hash([2; 32]))]));
        assert!(!hashes_agree(&[None, None]));
        assert!(!hashes_agree(&[]));
    }

    #[test]
    fn leaders_resolve_to_names() {
        let c = ChannelConfig {
            name: "ch".into(),
            members: vec![],
            consenters: vec![parse_node_spec("4:n4:o:h:1:https://h:2").unwrap()],
            observers: vec![],
            batch: Default::default(),
            policies: Default::default(),
            snapshot_interval: 1,
            max_tx_bytes: 1,
            tx_window_s: 1,
        };
        assert_eq!(leader_name(&c, 4).as_deref(), Some("n4"));
        assert_eq!(leader_name(&c, 0), None);
        assert_eq!(leader_name(&c, 9).as_deref(), Some("id 9"));
    }
}
