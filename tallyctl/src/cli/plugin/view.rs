//! What `kubectl tally status` shows, built from the objects as read from the API server: a
//! consortium's organizations with their Peers and nodes, its channels and chaincodes. Pure,
//! so the shape is tested without a cluster.

use serde::Serialize;
use tally_api::chaincode::Chaincode;
use tally_api::channel::Channel;
use tally_api::common::{Condition, ConditionStatus};
use tally_api::consortium::Consortium;
use tally_api::peer::Peer;

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ConsortiumView {
    pub name: String,
    pub namespace: String,
    pub ready: Readiness,
    pub organizations: Vec<OrgView>,
    pub channels: Vec<ChannelView>,
    pub chaincodes: Vec<ChaincodeView>,
    /// Every identity the operator issued, with its certificate's expiry (Consortium status).
    pub identities: Vec<IdentityView>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct IdentityView {
    /// `org/role/name`.
    pub name: String,
    pub not_after: String,
    pub renew_at: String,
}

/// A channel's open proposals as read from its nodes, or why they could not be read.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Pending {
    Read(Vec<PendingProposal>),
    Unknown(String),
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct PendingProposal {
    pub hash: String,
    pub approvals: usize,
    pub needed: usize,
    pub missing: Vec<String>,
    pub description: String,
}

/// A resource's `Ready` condition, as a person wants it: yes, no with why, or not yet known.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Readiness {
    Ready,
    NotReady { reason: String, message: String },
    Unknown,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct OrgView {
    pub name: String,
    /// Short fingerprint of the organization's CA certificate, when the operator reported it.
    pub ca_fingerprint: String,
    /// When the CA certificate expires (RFC 3339), when known.
    pub ca_not_after: String,
    pub peers: Vec<PeerView>,
    /// The organization's nodes that run outside this cluster (`externalPeers`), as the
    /// Channels' status read them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote: Vec<RemoteNodeView>,
}

/// A node of another cluster (or a laptop), as this cluster's operator reads it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct RemoteNodeView {
    pub name: String,
    /// Its peer address, as the channel configurations name it.
    pub address: String,
    /// Per channel that lists it: its height, or why it could not be read.
    pub channels: Vec<RemoteChannel>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct RemoteChannel {
    pub name: String,
    pub height: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    pub name: String,
    pub role: String,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub ready: Readiness,
    pub nodes: Vec<NodeView>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub ready: bool,
    /// `channel@height` per channel the node serves.
    pub channels: Vec<NodeChannel>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeChannel {
    pub name: String,
    pub height: u64,
    pub role: String,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ChannelView {
    pub name: String,
    pub ready: Readiness,
    pub height: u64,
    pub leader: String,
    /// Whether every node reported the same state root at the same height (None: not known).
    pub agree: Option<bool>,
    pub members: Vec<String>,
    pub consenters: Vec<String>,
    pub observers: Vec<String>,
    pub config_sequence: u64,
    /// The lowest and highest height its nodes reported: a lagging node shows here.
    pub node_heights: Option<(u64, u64)>,
    /// Open proposals, filled in from the nodes (None: not asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// The newest successful Backup of the channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<LastBackup>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct LastBackup {
    pub name: String,
    pub height: u64,
    pub completed: String,
}

/// The newest successful Backup of `channel` among `backups`.
pub fn last_backup(backups: &[tally_api::backup::Backup], channel: &str) -> Option<LastBackup> {
    backups
        .iter()
        .filter(|b| b.spec.channel == channel)
        .filter_map(|b| {
            let st = b.status.as_ref()?;
            (st.phase == tally_api::backup::BackupPhase::Succeeded).then(|| LastBackup {
                name: b.metadata.name.clone().unwrap_or_default(),
                height: st.height.unwrap_or(0),
                completed: st.completed_at.clone(),
            })
        })
        .max_by(|a, b| a.completed.cmp(&b.completed))
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ChaincodeView {
    pub name: String,
    pub channel: String,
    pub version: String,
    pub committed_version: String,
    pub sequence: u64,
    pub approved_by: Vec<String>,
    pub awaiting: Vec<String>,
    pub ready: Readiness,
}

/// What the consortium's Channels report of remote node `node`.
fn remote_channels(channels: &[Channel], consortium: &str, node: &str) -> Vec<RemoteChannel> {
    let mut out: Vec<RemoteChannel> = channels
        .iter()
        .filter(|c| c.spec.consortium == consortium)
        .filter_map(|c| {
            let n = c
                .status
                .as_ref()?
                .nodes
                .iter()
                .find(|n| n.remote && n.name == node)?;
            Some(RemoteChannel {
                name: c.metadata.name.clone().unwrap_or_default(),
                height: n.height,
                unreachable: n.unreachable.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The view of one consortium from everything listed in its namespace (objects of other
/// consortia are left out).
pub fn consortium_view(
    cons: &Consortium,
    peers: &[Peer],
    channels: &[Channel],
    chaincodes: &[Chaincode],
) -> ConsortiumView {
    let name = cons.metadata.name.clone().unwrap_or_default();
    let status = cons.status.as_ref();
    let mut organizations: Vec<OrgView> = cons
        .spec
        .organizations
        .iter()
        .map(|o| {
            let st = status.and_then(|s| s.organizations.iter().find(|x| x.name == o.name));
            OrgView {
                name: o.name.clone(),
                ca_fingerprint: st
                    .map(|s| s.ca_fingerprint.chars().take(12).collect())
                    .unwrap_or_default(),
                ca_not_after: st.map(|s| s.ca_not_after.clone()).unwrap_or_default(),
                peers: Vec::new(),
                remote: o
                    .external_peers
                    .iter()
                    .map(|e| RemoteNodeView {
                        name: e.name.clone(),
                        address: e.peer_address.clone(),
                        channels: remote_channels(channels, &name, &e.name),
                    })
                    .collect(),
            }
        })
        .collect();
    let mut ours: Vec<&Peer> = peers.iter().filter(|p| p.spec.consortium == name).collect();
    ours.sort_by_key(|p| p.metadata.name.clone());
    for p in ours {
        let st = p.status.as_ref();
        let view = PeerView {
            name: p.metadata.name.clone().unwrap_or_default(),
            role: p.spec.role.as_str().to_string(),
            replicas: p.spec.replicas,
            ready_replicas: st.map(|s| s.ready_replicas).unwrap_or(0),
            ready: readiness(st.map(|s| s.conditions.as_slice())),
            nodes: st
                .map(|s| {
                    s.nodes
                        .iter()
                        .map(|n| NodeView {
                            name: n.name.clone(),
                            ready: n.ready,
                            channels: n
                                .channels
                                .iter()
                                .map(|c| NodeChannel {
                                    name: c.name.clone(),
                                    height: c.height,
                                    role: c.role.clone(),
                                })
                                .collect(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        // A Peer of an organization the Consortium does not list still shows, on its own.
        match organizations
            .iter_mut()
            .find(|o| o.name == p.spec.organization)
        {
            Some(o) => o.peers.push(view),
            None => organizations.push(OrgView {
                name: p.spec.organization.clone(),
                ca_fingerprint: String::new(),
                ca_not_after: String::new(),
                peers: vec![view],
                remote: Vec::new(),
            }),
        }
    }
    let mut chans: Vec<ChannelView> = channels
        .iter()
        .filter(|c| c.spec.consortium == name)
        .map(|c| {
            let st = c.status.as_ref();
            // A node that could not be read has no height to compare.
            let heights = st
                .map(|s| {
                    s.nodes
                        .iter()
                        .filter(|n| n.unreachable.is_none())
                        .map(|n| n.height)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            ChannelView {
                name: c.metadata.name.clone().unwrap_or_default(),
                ready: readiness(st.map(|s| s.conditions.as_slice())),
                height: st.map(|s| s.height).unwrap_or(0),
                leader: st.map(|s| s.leader.clone()).unwrap_or_default(),
                agree: st.and_then(|s| s.state_roots_agree),
                members: c.spec.members.clone(),
                consenters: c.spec.consenters.clone(),
                observers: c.spec.observers.clone(),
                config_sequence: st.map(|s| s.config_sequence).unwrap_or(0),
                last_backup: None,
                node_heights: heights
                    .iter()
                    .min()
                    .zip(heights.iter().max())
                    .map(|(a, b)| (*a, *b)),
                pending: None,
            }
        })
        .collect();
    chans.sort_by(|a, b| a.name.cmp(&b.name));
    let mut codes: Vec<ChaincodeView> = chaincodes
        .iter()
        .filter(|cc| chans.iter().any(|c| c.name == cc.spec.channel))
        .map(|cc| {
            let st = cc.status.as_ref();
            let approvals = st.map(|s| s.approvals.as_slice()).unwrap_or_default();
            ChaincodeView {
                name: cc.spec.name.clone(),
                channel: cc.spec.channel.clone(),
                version: cc.spec.version.clone(),
                committed_version: st.map(|s| s.committed_version.clone()).unwrap_or_default(),
                sequence: st.map(|s| s.sequence).unwrap_or(0),
                approved_by: approvals
                    .iter()
                    .filter(|a| a.approved)
                    .map(|a| a.organization.clone())
                    .collect(),
                awaiting: approvals
                    .iter()
                    .filter(|a| !a.approved)
                    .map(|a| a.organization.clone())
                    .collect(),
                ready: readiness(st.map(|s| s.conditions.as_slice())),
            }
        })
        .collect();
    codes.sort_by(|a, b| (&a.channel, &a.name).cmp(&(&b.channel, &b.name)));
    ConsortiumView {
        namespace: cons.metadata.namespace.clone().unwrap_or_default(),
        ready: readiness(status.map(|s| s.conditions.as_slice())),
        name,
        organizations,
        channels: chans,
        chaincodes: codes,
        identities: status
            .map(|s| {
                s.identities
                    .iter()
                    .map(|i| IdentityView {
                        name: i.name.clone(),
                        not_after: i.not_after.clone(),
                        renew_at: i.renew_at.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn readiness(conditions: Option<&[Condition]>) -> Readiness {
    match conditions
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "Ready")
    {
        Some(c) if c.status == ConditionStatus::True => Readiness::Ready,
        Some(c) if c.status == ConditionStatus::False => Readiness::NotReady {
            reason: c.reason.clone(),
            message: c.message.clone(),
        },
        _ => Readiness::Unknown,
    }
}
