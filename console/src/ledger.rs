//! The consortium as one organization sees it: the channels its nodes serve, whether the
//! organization may read each, which nodes serve them, and reads that go to the
//! organization's own nodes first and move on to the next node when one cannot be reached.
//!
//! The console never decides on its own what the organization may read: every read of a
//! channel's data is signed with the organization's identity and the node answers it or
//! refuses it (`not_member`, `forbidden`) under the channel's readers policy.

use crate::error::ConsoleError;
use futures_util::future::join_all;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally_client::{ApiTrust, Client, ClientError};
use tally_protocol::api::ChannelStatus;
use tally_protocol::{ChannelConfig, Identity};

/// How long a discovered topology is reused by pages that only need to know where to read.
const TOPOLOGY_TTL: Duration = Duration::from_secs(5);
/// Most nodes discovery follows (a bound on what a lying configuration can make us call).
const MAX_NODES: usize = 256;

/// Whether the organization may read a channel, as its configuration says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Reader,
    NotMember,
    NotReader,
}

/// A channel as discovery found it.
#[derive(Clone, Debug)]
pub struct ChannelEntry {
    /// The configuration in force, as the node serves it.
    pub config: ChannelConfig,
    pub access: Access,
}

/// One node's answer to `GET /v1/channels` (open to anyone): its status in every channel.
#[derive(Clone, Debug)]
pub struct NodeAnswer {
    pub url: String,
    pub statuses: Result<Vec<ChannelStatus>, String>,
}

/// What discovery found: channels by name and the answers of every node it asked.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub channels: BTreeMap<String, ChannelEntry>,
    pub nodes: Vec<NodeAnswer>,
}

/// A node as channel configurations list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSeat {
    pub name: String,
    pub org: String,
    pub api_url: String,
    /// `(channel, "consenter" | "observer")`.
    pub seats: Vec<(String, &'static str)>,
}

impl Topology {
    /// Channels the organization may read, by name.
    pub fn readable(&self) -> impl Iterator<Item = (&String, &ChannelEntry)> {
        self.channels
            .iter()
            .filter(|(_, c)| c.access == Access::Reader)
    }

    /// Nodes of the readable channels, by name.
    pub fn nodes_of_readable(&self) -> BTreeMap<String, NodeSeat> {
        let mut out: BTreeMap<String, NodeSeat> = BTreeMap::new();
        for (ch, c) in self.readable() {
            let seats = c
                .config
                .consenters
                .iter()
                .map(|n| (n, "consenter"))
                .chain(c.config.observers.iter().map(|n| (n, "observer")));
            for (n, role) in seats {
                out.entry(n.name.clone())
                    .or_insert_with(|| NodeSeat {
                        name: n.name.clone(),
                        org: n.org.clone(),
                        api_url: n.api_url.clone(),
                        seats: Vec::new(),
                    })
                    .seats
                    .push((ch.clone(), role));
            }
        }
        out
    }

    /// The node's status in `channel`, from discovery's answers.
    pub fn status(&self, api_url: &str, channel: &str) -> Option<&ChannelStatus> {
        let a = self.nodes.iter().find(|a| same_url(&a.url, api_url))?;
        a.statuses
            .as_ref()
            .ok()?
            .iter()
            .find(|s| s.channel == channel)
    }

    /// Why the node at `api_url` did not answer, if it did not.
    pub fn node_error(&self, api_url: &str) -> Option<&str> {
        let a = self.nodes.iter().find(|a| same_url(&a.url, api_url))?;
        a.statuses.as_ref().err().map(String::as_str)
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

fn access(config: &ChannelConfig, org: &str) -> Access {
    if !config.members.iter().any(|m| m.name == org) {
        Access::NotMember
    } else if !config.policies.readers.is_empty()
        && !config.policies.readers.iter().any(|r| r == org)
    {
        Access::NotReader
    } else {
        Access::Reader
    }
}

/// Reads the ledger as one organization.
pub struct Ledger {
    identity: Identity,
    seeds: Vec<String>,
    trust: ApiTrust,
    clients: Mutex<HashMap<String, Client>>,
    topology: tokio::sync::Mutex<Option<(Instant, Arc<Topology>)>>,
    timeout: Duration,
}

impl Ledger {
    /// `seeds`: client API URLs to start discovery from (the organization's own nodes first).
    pub fn new(
        identity: Identity,
        seeds: Vec<String>,
        trust: ApiTrust,
        timeout: Duration,
    ) -> Result<Ledger, ConsoleError> {
        if seeds.is_empty() {
            return Err(ConsoleError::Config("no node URL to read from".into()));
        }
        let ledger = Ledger {
            identity,
            seeds,
            trust,
            clients: Mutex::new(HashMap::new()),
            topology: tokio::sync::Mutex::new(None),
            timeout,
        };
        for s in &ledger.seeds {
            ledger.client(s)?;
        }
        Ok(ledger)
    }

    pub fn org(&self) -> &str {
        &self.identity.info.org
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A client of the node at `url` that signs its reads with the organization's identity.
    pub fn client(&self, url: &str) -> Result<Client, ConsoleError> {
        let mut map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(url) {
            return Ok(c.clone());
        }
        let c = Client::new(url, &self.trust)?
            .with_timeout(self.timeout)
            .with_reader(self.identity.clone());
        map.insert(url.to_string(), c.clone());
        Ok(c)
    }

    /// The topology, rediscovered when older than a few seconds.
    pub async fn topology(&self) -> Arc<Topology> {
        let mut cached = self.topology.lock().await;
        if let Some((at, t)) = cached.as_ref() {
            if at.elapsed() < TOPOLOGY_TTL {
                return t.clone();
            }
        }
        let t = Arc::new(self.discover().await);
        *cached = Some((Instant::now(), t.clone()));
        t
    }

    /// A fresh topology (the consortium page shows live heights and leaders).
    pub async fn fresh_topology(&self) -> Arc<Topology> {
        let t = Arc::new(self.discover().await);
        *self.topology.lock().await = Some((Instant::now(), t.clone()));
        t
    }

    /// Asks every known node which channels it serves, reads each channel's configuration,
    /// and follows the nodes those configurations list for channels the organization reads.
    async fn discover(&self) -> Topology {
        let mut asked: BTreeSet<String> = BTreeSet::new();
        let mut todo: Vec<String> = self.seeds.clone();
        let mut topo = Topology::default();
        while !todo.is_empty() && asked.len() < MAX_NODES {
            let batch: Vec<String> = todo
                .drain(..)
                .filter(|u| asked.insert(u.trim_end_matches('/').to_string()))
                .take(MAX_NODES)
                .collect();
            let answers = join_all(batch.iter().map(|url| async move {
                let statuses = match self.client(url) {
                    Ok(c) => c
                        .channels()
                        .await
                        .map(|l| l.channels)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                NodeAnswer {
                    url: url.clone(),
                    statuses,
                }
            }))
            .await;
            // Channels seen for the first time, with a node that serves each.
            let mut new: BTreeMap<String, String> = BTreeMap::new();
            for a in &answers {
                for s in a.statuses.iter().flatten() {
                    if !topo.channels.contains_key(&s.channel) {
                        new.entry(s.channel.clone())
                            .or_insert_with(|| a.url.clone());
                    }
                }
            }
            topo.nodes.extend(answers);
            let configs = join_all(new.iter().map(|(ch, url)| async move {
                let c = self.client(url).ok()?;
                let config = c.config(ch).await.ok()?;
                let access = access(&config, self.org());
                Some((ch.clone(), config, access))
            }))
            .await;
            for (ch, config, access) in configs.into_iter().flatten() {
                if access == Access::Reader {
                    todo.extend(config.nodes().map(|n| n.api_url.clone()));
                }
                topo.channels.insert(ch, ChannelEntry { config, access });
            }
        }
        topo
    }

    /// Client API URLs of the nodes of `channel`: the organization's own first.
    fn channel_urls(&self, entry: &ChannelEntry) -> Vec<String> {
        let (mut own, rest): (Vec<_>, Vec<_>) =
            entry.config.nodes().partition(|n| n.org == self.org());
        own.extend(rest);
        own.into_iter().map(|n| n.api_url.clone()).collect()
    }

    /// Runs `read` against the nodes of `channel`, the organization's own first, until one
    /// answers; a refusal is final (another node would refuse the same signed read).
    pub async fn read<T, F, Fut>(&self, channel: &str, read: F) -> Result<T, ConsoleError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let topo = self.topology().await;
        let entry = topo
            .channels
            .get(channel)
            .ok_or_else(|| ConsoleError::UnknownChannel(channel.to_string()))?;
        let mut errors = Vec::new();
        for url in self.channel_urls(entry) {
            match read(self.client(&url)?).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transport() || matches!(e, ClientError::Timeout(_)) => {
                    tracing::debug!(%url, error = %e, "node unreachable; trying the next");
                    errors.push(e.to_string());
                }
                Err(e) => return Err(ConsoleError::from_node(channel, self.org(), e)),
            }
        }
        Err(ConsoleError::Unreachable {
            channel: channel.to_string(),
            errors: errors.join("; "),
        })
    }

    /// A signed read that the node answers only for the channel's readers: pages built from
    /// open routes (chaincode list, headers, status) ask it first.
    pub async fn check_reader(&self, channel: &str) -> Result<(), ConsoleError> {
        self.read(channel, |c| async move {
            c.keys(channel, "", Some(1)).await.map(|_| ())
        })
        .await
    }

    /// The configuration and clients of every node of `channel` (for cross-checks and
    /// agreement), the organization's own nodes first.
    pub async fn channel_nodes(
        &self,
        channel: &str,
    ) -> Result<(ChannelEntry, Vec<(tally_protocol::NodeRef, Client)>), ConsoleError> {
        let topo = self.topology().await;
        let entry = topo
            .channels
            .get(channel)
            .cloned()
            .ok_or_else(|| ConsoleError::UnknownChannel(channel.to_string()))?;
        let (mut own, rest): (Vec<_>, Vec<_>) = entry
            .config
            .nodes()
            .cloned()
            .partition(|n| n.org == self.org());
        own.extend(rest);
        let mut out = Vec::with_capacity(own.len());
        for n in own {
            let c = self.client(&n.api_url)?;
            out.push((n, c));
        }
        Ok((entry, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::{NodeRef, OrgCa, OrgMember};

    fn config(readers: &[&str]) -> ChannelConfig {
        let member = |o: &str| OrgMember::new(o, &OrgCa::generate(o).unwrap().cert_pem());
        let node = |id: u64, org: &str| NodeRef {
            id,
            name: format!("n{id}"),
            org: org.into(),
            peer_addr: "127.0.0.1:1".into(),
            api_url: format!("https://127.0.0.{id}:7051"),
        };
        let mut c = ChannelConfig::new(
            "main",
            vec![member("org1"), member("org2")],
            vec![node(1, "org1"), node(2, "org2")],
            vec![node(3, "org2")],
        );
        c.policies.readers = readers.iter().map(|r| r.to_string()).collect();
        c
    }

    #[test]
    fn access_follows_members_and_readers() {
        assert_eq!(access(&config(&[]), "org2"), Access::Reader);
        assert_eq!(access(&config(&["org1"]), "org2"), Access::NotReader);
        assert_eq!(access(&config(&[]), "org3"), Access::NotMember);
    }

    #[test]
    fn nodes_of_readable_channels_carry_their_seats() {
        let mut t = Topology::default();
        t.channels.insert(
            "main".into(),
            ChannelEntry {
                config: config(&[]),
                access: Access::Reader,
            },
        );
        let mut hidden = config(&[]);
        hidden.name = "hidden".into();
        t.channels.insert(
            "hidden".into(),
            ChannelEntry {
                config: hidden,
                access: Access::NotMember,
            },
        );
        let nodes = t.nodes_of_readable();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes["n3"].seats, vec![("main".to_string(), "observer")]);
        assert_eq!(nodes["n1"].org, "org1");
    }
}
