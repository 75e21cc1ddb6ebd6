//! What the planner reads: a consortium's resources as plain data.
//!
//! These mirror the `tally.dev` kinds field for field where the plan depends on them, and
//! nothing else: no object metadata beyond namespace and name, no schema, no Kubernetes types.
//! The `tally-api` crate turns its kinds into these at the edge; a test or a benchmark can
//! write them directly.

use serde::{Deserialize, Serialize};

/// Namespace of a resource that names none, as with `kubectl apply`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Where a resource lives: its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Meta {
    pub namespace: String,
    pub name: String,
}

impl Meta {
    /// `name` in `namespace`, or in [`DEFAULT_NAMESPACE`] when `namespace` is empty.
    pub fn new(namespace: &str, name: &str) -> Meta {
        Meta {
            namespace: if namespace.is_empty() {
                DEFAULT_NAMESPACE.to_string()
            } else {
                namespace.to_string()
            },
            name: name.to_string(),
        }
    }
}

/// Every resource of one or more consortia.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub consortia: Vec<Consortium>,
    pub peers: Vec<Peer>,
    pub channels: Vec<Channel>,
    pub chaincodes: Vec<Chaincode>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Consortium {
    pub meta: Meta,
    pub display_name: String,
    pub organizations: Vec<Organization>,
    pub policies: ConsortiumPolicies,
    pub ordering: Ordering,
    pub certificates: Certificates,
}

/// How long issued certificates last and when they are renewed, as the tenant wrote them
/// (duration strings; the planner parses them and names the field when one is wrong).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Certificates {
    pub validity: Option<String>,
    pub renew_before: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Organization {
    pub name: String,
    pub display_name: String,
    pub ca_mode: CaMode,
    /// The Secret that holds the CA, with `CaMode::Secret`.
    pub ca_secret: Option<String>,
    pub external_peers: Vec<ExternalPeer>,
}

// Where an organization's CA comes from: made by whoever runs the plan (the operator,
// `tallyctl up`), or brought by the tenant in a Secret. (Plain comments here and on the other
// enums that the kinds embed: a doc comment would change the CRDs' schema.)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum CaMode {
    #[default]
    Generate,
    Secret,
}

/// A node an organization runs outside this plan, by its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalPeer {
    pub name: String,
    /// host:port of its peer listener.
    pub peer_address: String,
    /// Base URL of its client API.
    pub api_url: String,
    pub role: PeerRole,
    /// The Raft id its own plan gave it; derived from the name here when absent.
    pub raft_id: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct ConsortiumPolicies {
    pub channel_creators: Vec<String>,
    pub membership_approval: Approval,
    pub chaincode_approval: Approval,
}

/// Batch and snapshot settings of every channel that sets none of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ordering {
    pub batch_max_transactions: u32,
    pub batch_max_bytes: u32,
    pub batch_timeout_ms: u32,
    pub snapshot_interval: u64,
}

impl Default for Ordering {
    fn default() -> Ordering {
        Ordering {
            batch_max_transactions: 500,
            batch_max_bytes: 2 * 1024 * 1024,
            batch_timeout_ms: 20,
            snapshot_interval: 1000,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Peer {
    pub meta: Meta,
    pub consortium: String,
    pub organization: String,
    pub replicas: i32,
    pub role: PeerRole,
    /// Reachable from outside the cluster under names of its own (for members in other
    /// clusters); none: only inside the cluster.
    pub exposure: Option<Exposure>,
}

/// Where a Peer's nodes are advertised outside the cluster: node `N` as `N.{domain}`, at the
/// standard ports (a load balancer per node) or at node ports counted from a base.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposure {
    pub domain: String,
    /// With node ports: node of ordinal `o` has its client API at `base + 2o` and its peer
    /// listener at `base + 2o + 1`.
    pub node_port_base: Option<u16>,
}

// Whether a node votes in Raft (`Consenter`) or follows as a learner (`Observer`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum PeerRole {
    #[default]
    Consenter,
    Observer,
}

impl PeerRole {
    pub fn as_str(&self) -> &'static str {
        match self {
            PeerRole::Consenter => "consenter",
            PeerRole::Observer => "observer",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Channel {
    pub meta: Meta,
    pub consortium: String,
    pub members: Vec<String>,
    /// Peers (or external peers) whose nodes vote.
    pub consenters: Vec<String>,
    /// Peers (or external peers) whose nodes follow.
    pub observers: Vec<String>,
    pub policies: ChannelPolicies,
    /// The consortium's ordering settings when `None`.
    pub batch: Option<Batch>,
    pub snapshot_interval: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct ChannelPolicies {
    /// Empty: every member.
    pub readers: Vec<String>,
    pub writers: Vec<String>,
    pub admins: Vec<String>,
    /// The consortium's chaincode approval when `None`.
    pub chaincode_lifecycle: Option<Approval>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub max_transactions: u32,
    pub max_bytes: u32,
    pub timeout_ms: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chaincode {
    pub meta: Meta,
    pub channel: String,
    /// The chaincode's name on the ledger (may differ from the resource's).
    pub name: String,
    pub version: String,
    pub module: ModuleRef,
    pub init: Option<InitCall>,
    /// The channel's chaincode approval when `None`.
    pub approval: Option<Approval>,
}

/// Where a chaincode's WebAssembly module is kept, and the digest it must have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleRef {
    pub config_map: String,
    pub key: String,
    /// Lowercase hex SHA-256 of the module.
    pub sha256: String,
}

/// A function a chaincode definition runs once when it is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitCall {
    pub function: String,
    pub args: Vec<String>,
}

/// How many member organizations must approve a change.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ApprovalRule {
    /// More than half of the member organizations.
    #[default]
    Majority,
    /// Every member organization.
    All,
    /// Any single member organization.
    Any,
    /// At least `count` member organizations.
    AtLeast,
}

/// An approval rule with its count where the rule needs one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Approval {
    pub rule: ApprovalRule,
    pub count: Option<u32>,
}

impl Approval {
    /// Approvals needed out of `members` organizations.
    pub fn needed(&self, members: usize) -> usize {
        match self.rule {
            ApprovalRule::Majority => members / 2 + 1,
            ApprovalRule::All => members,
            ApprovalRule::Any => 1.min(members),
            ApprovalRule::AtLeast => self.count.unwrap_or(1) as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_needed() {
        let maj = Approval::default();
        assert_eq!(maj.needed(1), 1);
        assert_eq!(maj.needed(2), 2);
        assert_eq!(maj.needed(3), 2);
        assert_eq!(maj.needed(4), 3);
        let all = Approval {
            rule: ApprovalRule::All,
            count: None,
        };
        assert_eq!(all.needed(5), 5);
        let two = Approval {
            rule: ApprovalRule::AtLeast,
            count: Some(2),
        };
        assert_eq!(two.needed(5), 2);
        let any = Approval {
            rule: ApprovalRule::Any,
            count: None,
        };
        assert_eq!(any.needed(0), 0);
        assert_eq!(any.needed(3), 1);
    }
}
