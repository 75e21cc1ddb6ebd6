//! `Peer`: a set of ledger nodes that one organization runs (one pod per node in the cluster,
//! local processes under `tallyctl up`).

use crate::common::Condition;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use tally_planner::spec::PeerRole;
pub use tally_planner::MAX_REPLICAS;

/// Ledger nodes of one organization.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tally.dev",
    version = "v1alpha1",
    kind = "Peer",
    namespaced,
    status = "PeerStatus",
    shortname = "tp",
    category = "tally",
    derive = "PartialEq",
    doc = "A set of ledger nodes of one organization: one pod and volume per node, the same role in every channel.",
    scale(spec_replicas_path = ".spec.replicas", status_replicas_path = ".status.replicas"),
    printcolumn(name = "Org", type_ = "string", json_path = ".spec.organization"),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::cel::Rule::new("self.metadata.name.size() <= 50").message("a Peer name has at most 50 characters: node names add an ordinal and pod names a hash"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::cel::Rule::new("has(self.exposure) == has(oldSelf.exposure)").message("exposure cannot be added or removed: channel configurations name the nodes at their addresses; create a new Peer"))]
pub struct PeerSpec {
    /// The `Consortium` in this namespace. Cannot change.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = kube::core::cel::Rule::new("self == oldSelf").message("consortium cannot change; create a new Peer"))]
    pub consortium: String,
    /// The member organization (of that consortium) that runs these nodes. Cannot change.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = kube::core::cel::Rule::new("self == oldSelf").message("organization cannot change: node certificates are issued by its CA"))]
    pub organization: String,
    /// Number of nodes. Scaling down first removes the departing nodes from their channels.
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 9))]
    pub replicas: i32,
    /// `consenter` nodes vote in Raft; `observer` nodes follow as learners and serve reads.
    #[serde(default)]
    #[x_kube(validation = kube::core::cel::Rule::new("self == oldSelf").message("role cannot change; add a Peer with the other role and move channels to it"))]
    pub role: PeerRole,
    /// Volume of each node.
    #[serde(default)]
    pub storage: Storage,
    /// CPU and memory of each node's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Container image without a tag; the operator's default when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(
        length(max = 512),
        regex(pattern = r"^[^\s:@]+(:[0-9]+)?(/[^\s:@]+)*$")
    )]
    pub image: String,
    /// Image tag (the Tally release); the operator's own version when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 128), regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"))]
    pub version: String,
    /// How clients reach the nodes.
    #[serde(default)]
    pub service: ServiceSpec,
    /// Ledgers to start from a backup: before a node starts, each listed channel whose ledger
    /// is missing from its volume is restored (verified first) from the backup; the node
    /// then catches up from the channel's live nodes, if any, and votes only once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Restore")]
    pub restore: Option<Restore>,
    /// Makes every node reachable from outside the cluster under a name of its own, for
    /// members in other clusters: node `N` is advertised as `N.<domain>` in channel
    /// configurations, its certificate names it, and it gets a Service of its own. Cannot
    /// change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Exposure")]
    #[x_kube(validation = kube::core::cel::Rule::new("self == oldSelf").message("exposure cannot change: channel configurations name the nodes at these addresses; create a new Peer"))]
    pub exposure: Option<Exposure>,
}

/// How a Peer's nodes are reached from outside the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::cel::Rule::new("self.type != 'NodePort' || has(self.nodePortBase)").message("exposure.type NodePort needs nodePortBase"))]
#[x_kube(validation = kube::core::cel::Rule::new("self.type == 'NodePort' || !has(self.nodePortBase)").message("nodePortBase is only read with exposure.type NodePort"))]
pub struct Exposure {
    /// `LoadBalancer`: each node gets a LoadBalancer Service with the standard ports (7051
    /// client API, 7052 peer). `NodePort`: each node gets a NodePort Service; node `N-o` is
    /// reached at `nodePortBase + 2o` (client API) and `nodePortBase + 2o + 1` (peer).
    #[serde(default, rename = "type")]
    pub type_: ExposureType,
    /// DNS suffix the platform resolves to the nodes' Services (for instance with
    /// external-dns, which reads the hostname annotation the operator puts on each Service).
    #[schemars(
        length(min = 1, max = 190),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub domain: String,
    /// First node port, with `type: NodePort`; the Peer uses two per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30000, max = 32750))]
    pub node_port_base: Option<u16>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ExposureType {
    #[default]
    LoadBalancer,
    NodePort,
}

/// Where a restore reads from: a `Backup` of this namespace, or a repository URL.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::cel::Rule::new("has(self.backup) != has(self.url)").message("restore needs exactly one of backup (a Backup's name) and url"))]
#[x_kube(validation = kube::core::cel::Rule::new("!has(self.readOnly) || !self.readOnly || has(self.backup) || (has(self.channels) && size(self.channels) > 0)").message("a read-only restore from url names its channels"))]
pub struct Restore {
    /// A succeeded `Backup` in this namespace: its repository, manifest and credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub backup: Option<String>,
    /// A backup repository (`s3://...`, `file:///...`); the newest backup of each channel,
    /// or the newest at or below `height`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 6, max = 1024), regex(pattern = r"^(s3|file)://[^\s]+$"))]
    pub url: Option<String>,
    /// With `url`: the Secret with the store's settings, as `Backup.spec.destination`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: Option<String>,
    /// With `url`: restore the newest backup at or below this height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// Channels to restore; every channel of the Peer when empty (with `backup`: its channel).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(inner(length(min = 1, max = 63)))]
    pub channels: Vec<String>,
    /// Restore for investigation at the backup's point in time, into a Peer made for it that
    /// serves none of these channels: its nodes serve the channels' reads as they were at the
    /// backup's height, take no writes and never join the channels' Raft.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

fn one() -> i32 {
    1
}

/// A node's volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Size of each node's volume.
    #[serde(default = "default_size")]
    pub size: Quantity,
    /// StorageClass of the volumes; the cluster default when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 253))]
    pub storage_class_name: String,
}

fn default_size() -> Quantity {
    Quantity("10Gi".to_string())
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            size: default_size(),
            storage_class_name: String::new(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Type of the client Service.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// What the operator observed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Nodes whose pod exists.
    #[serde(default)]
    pub replicas: i32,
    /// Nodes that answer `/readyz`.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Nodes whose pod runs the current revision of the Peer (image, certificates, settings),
    /// below `replicas` while a rollout replaces pods one at a time.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Each node with the channels it serves.
    #[serde(default)]
    pub nodes: Vec<NodeStatus>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub name: String,
    pub ready: bool,
    /// The node's Raft id: what another cluster's consortium lists it by (`raftId` of an
    /// external peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_id: Option<u64>,
    /// host:port of its peer listener as channel configurations name it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_address: String,
    /// Base URL of its client API as channel configurations name it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_url: String,
    #[serde(default)]
    pub channels: Vec<NodeChannelStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeChannelStatus {
    pub name: String,
    pub height: u64,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: String,
}
