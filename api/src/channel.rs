//! `Channel`: a ledger shared by some member organizations of a consortium, ordered by Raft
//! among its consenters.

use crate::common::{Approval, Condition};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A ledger of some members of a consortium.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tally.dev",
    version = "v1alpha1",
    kind = "Channel",
    namespaced,
    status = "ChannelStatus",
    shortname = "tch",
    category = "tally",
    derive = "PartialEq",
    doc = "A ledger shared by some member organizations of a consortium: its members, who orders it, who follows it and its policies.",
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.memberCount"),
    printcolumn(name = "Height", type_ = "integer", json_path = ".status.height"),
    printcolumn(name = "Leader", type_ = "string", json_path = ".status.leader"),
    printcolumn(name = "Agree", type_ = "boolean", json_path = ".status.stateRootsAgree", description = "Whether every node reports the same state root"),
    printcolumn(name = "Degraded", type_ = "string", json_path = ".status.conditions[?(@.type==\"Degraded\")].status", description = "True when a node stopped serving the channel (its ledger differs from the majority's, or its channel thread died); the condition's message names it"),
    printcolumn(name = "Approvals", type_ = "string", json_path = ".status.pendingChange.approvals", description = "Approvals of the configuration change waiting for organizations, as n/m"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::cel::Rule::new("self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("a channel name is a DNS label: it names the channel on the ledger"),
)]
#[x_kube(validation = kube::core::cel::Rule::new("size(self.consenters) >= 1").message("a channel needs at least one consenter").reason(kube::core::cel::Reason::FieldValueRequired))]
#[x_kube(validation = kube::core::cel::Rule::new("!has(self.observers) || !self.consenters.exists(c, c in self.observers)").message("a Peer is either a consenter or an observer of a channel, not both"))]
#[x_kube(validation = kube::core::cel::Rule::new("!has(self.policies) || ((!has(self.policies.readers) || self.policies.readers.all(o, o in self.members)) && (!has(self.policies.writers) || self.policies.writers.all(o, o in self.members)) && (!has(self.policies.admins) || self.policies.admins.all(o, o in self.members)))").message("policies may only name member organizations of the channel"))]
#[x_kube(validation = kube::core::cel::Rule::new("!has(self.policies) || !has(self.policies.chaincodeLifecycle) || !has(self.policies.chaincodeLifecycle.count) || self.policies.chaincodeLifecycle.count <= size(self.members)").message("policies.chaincodeLifecycle.count cannot exceed the number of members"))]
#[serde(rename_all = "camelCase")]
pub struct ChannelSpec {
    /// The `Consortium` in this namespace. Cannot change.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = kube::core::cel::Rule::new("self == oldSelf").message("consortium cannot change; create a new Channel"))]
    pub consortium: String,
    /// Member organizations: they may read and write unless policies narrow it.
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(inner(length(min = 1, max = 63)))]
    pub members: Vec<String>,
    /// `Peer` resources (every node of each) or external peers that order the channel.
    #[schemars(length(min = 1, max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(inner(length(min = 1, max = 63)))]
    pub consenters: Vec<String>,
    /// `Peer` resources or external peers that follow the channel without voting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(inner(length(min = 1, max = 63)))]
    pub observers: Vec<String>,
    /// Which members may read, write and administer; each empty list means every member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "ChannelPolicies")]
    pub policies: Option<ChannelPolicies>,
    /// Block cutting; the consortium's `ordering` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Batch")]
    pub batch: Option<Batch>,
    /// Blocks between snapshots; the consortium's `ordering.snapshotInterval` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u64", range(min = 10, max = 1000000))]
    pub snapshot_interval: Option<u64>,
    /// Approvals of the channel's genesis by member organizations whose admin key the operator
    /// does not hold (`approvals: External`): nodes create the channel only once every member
    /// approved it. `tallyctl channel approve-genesis` prints one from the genesis the operator
    /// publishes in the ConfigMap `CHANNEL-genesis`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub genesis_approvals: Vec<GenesisApproval>,
}

/// One organization's approval of a channel's genesis, as `tallyctl channel approve-genesis`
/// prints it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenesisApproval {
    /// The organization it speaks for (its admin certificate must say the same).
    #[schemars(length(min = 1, max = 63))]
    pub organization: String,
    /// The channel, for people (the signature covers it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub channel: Option<String>,
    /// The genesis hash, for people (the signature covers it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub genesis: Option<String>,
    /// The approving admin's certificate (DER, hex).
    #[schemars(length(min = 2, max = 8192))]
    pub certificate: String,
    /// Ed25519 signature (hex).
    #[schemars(length(min = 128, max = 128))]
    pub signature: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelPolicies {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(inner(length(min = 1, max = 63)))]
    pub readers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(inner(length(min = 1, max = 63)))]
    pub writers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(inner(length(min = 1, max = 63)))]
    pub admins: Vec<String>,
    /// Approvals a chaincode definition needs; the consortium's `chaincodeApproval` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Approval")]
    pub chaincode_lifecycle: Option<Approval>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    #[schemars(range(min = 1, max = 10000))]
    pub max_transactions: u32,
    #[schemars(range(min = 4096, max = 67108864))]
    pub max_bytes: u32,
    #[schemars(range(min = 1, max = 10000))]
    pub timeout_ms: u32,
}

/// What the operator observed on the ledger.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Blocks committed (the highest height any node reports).
    #[serde(default)]
    pub height: u64,
    /// Node that leads Raft now.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub leader: String,
    #[serde(default)]
    pub member_count: u32,
    /// Members as committed in the channel configuration on the ledger.
    #[serde(default)]
    #[schemars(inner(length(min = 1, max = 63)))]
    pub members: Vec<String>,
    /// Whether every node at the same height reports the same state root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_roots_agree: Option<bool>,
    /// Configuration changes the channel has applied since its genesis.
    #[serde(default)]
    pub config_sequence: u64,
    /// Nodes that vote in the channel's Raft group now, and those that follow it as learners.
    #[serde(default)]
    #[schemars(inner(length(min = 1, max = 63)))]
    pub voters: Vec<String>,
    #[serde(default)]
    #[schemars(inner(length(min = 1, max = 63)))]
    pub learners: Vec<String>,
    /// Each node with its height and state root.
    #[serde(default)]
    pub nodes: Vec<ChannelNodeStatus>,
    /// The configuration change proposed on the ledger that waits for organizations'
    /// approvals; absent when none waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_change: Option<PendingChange>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A configuration change waiting on the ledger for approvals.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingChange {
    /// The proposal's hash (hex), as `tallyctl proposal show` takes it.
    pub proposal: String,
    /// `n/m`: approvals given and needed.
    pub approvals: String,
    /// Organizations that approved.
    #[serde(default)]
    pub approved: Vec<String>,
    /// Organizations that have not voted yet.
    #[serde(default)]
    pub missing: Vec<String>,
    /// When the proposal expires (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expires: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelNodeStatus {
    pub name: String,
    pub organization: String,
    /// `consenter` or `observer`.
    pub role: String,
    pub height: u64,
    #[serde(default)]
    pub state_root: String,
    /// Set when the node stopped serving the channel: its ledger differs from the one the
    /// channel's majority signed in checkpoints (or its channel thread died). Says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    /// The first height at which a degraded node's ledger was found to differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_differing_height: Option<u64>,
    /// The node runs outside this cluster (an organization's `externalPeers`); the operator
    /// reads its status at the address the channel configuration names.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
    /// Why a remote node could not be read (its cluster down, unreachable, refusing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
}
