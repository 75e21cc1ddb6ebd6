//! JSON bodies of the node's HTTP API, shared by the node and its clients.

use crate::hash::{hex_bytes, hex_opt, Hash};
use crate::tx::Version;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub code: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitJson {
    /// Hex of the transaction's canonical bytes.
    pub tx: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub tx_id: Hash,
    pub status: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaftRole {
    Leader,
    Follower,
    Candidate,
    Learner,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    pub channel: String,
    pub node: String,
    pub node_id: u64,
    pub org: String,
    pub role: RaftRole,
    /// Raft id of the leader this node knows of; 0 when none.
    pub leader_id: u64,
    pub term: u64,
    /// Number of blocks, the genesis block included.
    pub height: u64,
    pub last_block_hash: Hash,
    pub state_root: Hash,
    pub applied_index: u64,
    pub commit_index: u64,
    pub ready: bool,
    /// Hash of the configuration in force.
    pub config_hash: Hash,
    /// How many configuration changes the channel has applied (0: the genesis one).
    #[serde(default)]
    pub config_sequence: u64,
    /// Whether the configuration in force lists this node.
    #[serde(default = "yes")]
    pub member: bool,
    /// Raft voters and learners, by node id, as this node knows them.
    #[serde(default)]
    pub voters: Vec<u64>,
    #[serde(default)]
    pub learners: Vec<u64>,
    /// Set when this node stopped serving the channel because its ledger differs from the
    /// one the channel's majority agreed on (signed checkpoints) or its own records do not
    /// match its state commitment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<Degraded>,
    /// This node's Raft state for the channel is new (a join, a wiped volume) and it has not
    /// caught up with a leader yet: it withholds its vote meanwhile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rejoining: bool,
}

/// Why a node stopped serving a channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Degraded {
    /// The first height at which this node's ledger was found to differ.
    pub first_differing_height: u64,
    pub reason: String,
}

fn yes() -> bool {
    true
}

/// A channel as its node's admin API describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    pub genesis: crate::ChannelConfig,
    /// The configuration in force.
    pub config: crate::ChannelConfig,
    pub status: ChannelStatus,
    /// Set once an approved proposal retired the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<crate::retirement::Retirement>,
    /// The member organizations' approvals of the genesis the node was created with (see
    /// [`crate::genesis`]): what another node needs to join. Empty for a channel restored from
    /// a backup or created before approvals were recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<crate::Approval>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelList {
    pub channels: Vec<ChannelStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(with = "hex_bytes")]
    pub value: Vec<u8>,
    pub value_utf8: Option<String>,
    pub version: Version,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: Version,
    pub tx_id: Hash,
    /// None for a delete.
    #[serde(with = "hex_opt")]
    pub value: Option<Vec<u8>>,
    pub value_utf8: Option<String>,
    pub timestamp_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub key: String,
    pub entries: Vec<HistoryEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub key: String,
    pub version: Version,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyEntry>,
}

pub fn utf8(v: &[u8]) -> Option<String> {
    std::str::from_utf8(v).ok().map(str::to_string)
}
