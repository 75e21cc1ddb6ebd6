//! `Consortium`: the member organizations of a chain, their certificate authorities, and the
//! defaults every channel of the consortium starts from.

use crate::common::{Approval, Condition};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The member organizations of a permissioned chain and the rules they agreed on.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tally.dev",
    version = "v1alpha1",
    kind = "Consortium",
    plural = "consortia",
    namespaced,
    status = "ConsortiumStatus",
    shortname = "cons",
    category = "tally",
    derive = "PartialEq",
    doc = "The member organizations of a permissioned chain, their certificate authorities and the default policies and ordering settings of its channels.",
    printcolumn(name = "Orgs", type_ = "integer", json_path = ".status.organizationCount", description = "Member organizations"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", description = "Reason of the Ready condition"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::cel::Rule::new("self.metadata.name.size() <= 40").message("a consortium name has at most 40 characters, so that the objects named after it stay valid"),
)]
#[x_kube(validation = kube::core::cel::Rule::new("self.policies.channelCreators.all(o, self.organizations.exists(m, m.name == o))").message("policies.channelCreators may only name member organizations"))]
#[x_kube(validation = kube::core::cel::Rule::new("!has(self.policies.membershipApproval.count) || self.policies.membershipApproval.count <= size(self.organizations)").message("policies.membershipApproval.count cannot exceed the number of organizations"))]
#[serde(rename_all = "camelCase")]
pub struct ConsortiumSpec {
    /// Name shown to people, e.g. "Shenzhen receivables network".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 128))]
    pub display_name: String,
    /// The member organizations; names are unique.
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub organizations: Vec<Organization>,
    /// Who may do what across the consortium.
    #[serde(default)]
    pub policies: ConsortiumPolicies,
    /// Defaults for the ordering settings of every channel.
    #[serde(default)]
    pub ordering: Ordering,
    /// How long the certificates issued for nodes, admins and clients last, and when they are
    /// renewed: by the operator (nodes restarted one at a time on their new certificates) and
    /// by `tallyctl up` alike.
    #[serde(default, skip_serializing_if = "Certificates::is_default")]
    pub certificates: Certificates,
}

/// Certificate lifetimes: durations such as `8760h`, `90m` or `365d`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Certificates {
    /// How long an issued certificate is valid; 365d when absent, at least 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[dhms])+$"))]
    pub validity: Option<String>,
    /// How long before the end of its validity a certificate is renewed; a third of the
    /// validity when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+[dhms])+$"))]
    pub renew_before: Option<String>,
}

impl Certificates {
    fn is_default(&self) -> bool {
        self == &Certificates::default()
    }
}

/// A member organization.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::cel::Rule::new("!has(self.externalPeers) || size(self.externalPeers) == 0 || self.ca.mode == 'Secret'").message("an organization with externalPeers brings its CA by Secret: its nodes outside the cluster hold certificates from that CA"))]
pub struct Organization {
    /// Name used in certificates, channel membership and policies; a DNS label.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Name shown to people, e.g. "Bank of Example".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 128))]
    pub display_name: String,
    /// Where the organization's certificate authority comes from.
    #[serde(default)]
    pub ca: CaSource,
    /// Who approves changes that need this organization's consent. `Operator`: the operator
    /// signs with the organization's admin identity, issued from its CA. `External`: the
    /// organization keeps its admin key out of the cluster; the operator writes no admin
    /// Secret for it and never votes for it, so a change that needs its approval waits
    /// (`AwaitingApprovals`) until its admin approves with `tallyctl proposal approve`.
    #[serde(default)]
    pub approvals: Approvals,
    /// Ledger nodes of this organization that run outside this cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub external_peers: Vec<ExternalPeer>,
}

// Who signs an organization's approvals: the operator, with the admin identity it issues, or
// the organization itself, with a key the cluster never holds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Approvals {
    #[default]
    Operator,
    External,
}

/// Where an organization's CA comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::cel::Rule::new("self.mode != 'Secret' || has(self.secretRef)").message("ca.secretRef is required when ca.mode is Secret").reason(kube::core::cel::Reason::FieldValueRequired))]
#[x_kube(validation = kube::core::cel::Rule::new("self.mode == 'Secret' || !has(self.secretRef)").message("ca.secretRef is only read when ca.mode is Secret"))]
#[x_kube(validation = kube::core::cel::Rule::new("self.mode != 'Secret' || !has(self.rotate)").message("ca.rotate is only for ca.mode Generate: an organization that brings its CA by Secret rotates it itself (tallyctl org add-ca, re-issue, tallyctl org remove-ca)"))]
pub struct CaSource {
    /// `Generate`: the operator creates the CA once and keeps it in a Secret.
    /// `Secret`: the organization brings its own (`tls.crt`, and `tls.key` when the operator
    /// is to issue certificates for the organization's nodes here).
    #[serde(default)]
    pub mode: CaMode,
    /// The Secret that holds the CA, with `mode: Secret`.
    // Not nullable in the schema, so that `secretRef: null` is dropped rather than passing
    // `has(self.secretRef)` (see `Approval::count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "SecretRef")]
    pub secret_ref: Option<SecretRef>,
    /// Any new value (a date, a ticket number) starts one rotation of a generated CA: a new
    /// CA is added to every channel beside the old one, every identity of the organization is
    /// re-issued from it (nodes one at a time), then the old CA is removed. The value a CA was
    /// made with, or last rotated for, starts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub rotate: Option<String>,
}

pub use tally_planner::spec::CaMode;

/// A Secret in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A ledger node that an organization runs elsewhere.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalPeer {
    /// Node name, unique in the consortium; channels list it like a `Peer`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// host:port of the node's mutual-TLS peer listener.
    #[schemars(length(min = 3, max = 261), regex(pattern = r"^[^\s:/]+:[0-9]{1,5}$"))]
    pub peer_address: String,
    /// Base URL of the node's client API.
    #[schemars(
        length(min = 8, max = 300),
        regex(pattern = r"^https?://[^\s/]+(/.*)?$")
    )]
    pub api_url: String,
    /// `consenter` or `observer`.
    #[serde(default)]
    pub role: crate::peer::PeerRole,
    /// The node's Raft id where its own plan gave it one (another cluster's consortium, as
    /// its exported bundle says): every member must know a node by the same id. Default: the
    /// id this plan derives from the node's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub raft_id: Option<u64>,
}

/// Consortium-wide rules.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsortiumPolicies {
    /// Organizations whose admins may create channels; empty means every member.
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(inner(length(min = 1, max = 63)))]
    pub channel_creators: Vec<String>,
    /// Approvals needed to admit or remove a member organization (default: a majority).
    #[serde(default)]
    pub membership_approval: Approval,
    /// Default approvals for a chaincode definition (default: a majority).
    #[serde(default)]
    pub chaincode_approval: Approval,
}

/// How channels cut blocks and snapshots, unless a channel says otherwise.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ordering {
    /// A block is cut at this many transactions...
    #[serde(default = "default_max_txs")]
    #[schemars(range(min = 1, max = 10000))]
    pub batch_max_transactions: u32,
    /// ...or this many bytes...
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 4096, max = 67108864))]
    pub batch_max_bytes: u32,
    /// ...or this many milliseconds after the first pending transaction.
    #[serde(default = "default_timeout_ms")]
    #[schemars(range(min = 1, max = 10000))]
    pub batch_timeout_ms: u32,
    /// Blocks between two snapshots (and Raft log compactions).
    #[serde(default = "default_snapshot_interval")]
    #[schemars(range(min = 10, max = 1000000))]
    pub snapshot_interval: u64,
}

// The planner's defaults, so that a channel planned from plain specs and one planned from a
// manifest that leaves these out agree.
fn default_max_txs() -> u32 {
    tally_planner::spec::Ordering::default().batch_max_transactions
}
fn default_max_bytes() -> u32 {
    tally_planner::spec::Ordering::default().batch_max_bytes
}
fn default_timeout_ms() -> u32 {
    tally_planner::spec::Ordering::default().batch_timeout_ms
}
fn default_snapshot_interval() -> u64 {
    tally_planner::spec::Ordering::default().snapshot_interval
}

impl Default for Ordering {
    fn default() -> Self {
        Ordering {
            batch_max_transactions: default_max_txs(),
            batch_max_bytes: default_max_bytes(),
            batch_timeout_ms: default_timeout_ms(),
            snapshot_interval: default_snapshot_interval(),
        }
    }
}

/// What the operator observed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsortiumStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub organization_count: u32,
    /// Each member organization with the fingerprint of its CA certificate.
    #[serde(default)]
    pub organizations: Vec<OrganizationStatus>,
    /// Every identity the operator issues for the consortium (admins, clients, nodes), with
    /// when its certificate expires and when it falls due for renewal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<IdentityStatus>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityStatus {
    /// `org/role/name`, e.g. `bank/node/bank-peer-0` or `bank/admin/admin`.
    pub name: String,
    /// When the certificate expires (RFC 3339).
    pub not_after: String,
    /// When it falls due for renewal: `spec.certificates.renewBefore` ahead of its expiry
    /// (RFC 3339).
    pub renew_at: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationStatus {
    pub name: String,
    /// SHA-256 (tagged, as on the ledger) of the CA certificate, hex.
    pub ca_fingerprint: String,
    /// Where the CA is kept.
    #[serde(default)]
    pub ca_secret: String,
    /// When the CA certificate expires (RFC 3339).
    #[serde(default)]
    pub ca_not_after: String,
    /// The last CA rotation asked for with `ca.rotate`, and how far it got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_rotation: Option<CaRotationStatus>,
}

/// Where a CA rotation stands.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaRotationStatus {
    /// The `ca.rotate` value this rotation is for.
    pub requested: String,
    pub phase: CaRotationPhase,
    /// What it waits for, in words.
    #[serde(default)]
    pub message: String,
}

/// The steps of a CA rotation, in order.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CaRotationPhase {
    /// The new CA is made and being added to every channel of the organization.
    AddingCa,
    /// Every channel trusts both CAs; identities are re-issued from the new one, nodes
    /// restarted one at a time.
    Reissuing,
    /// Every node serves a certificate of the new CA; the old CA is being removed from the
    /// channels.
    RemovingOldCa,
    Done,
}

impl CaRotationPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CaRotationPhase::AddingCa => "AddingCa",
            CaRotationPhase::Reissuing => "Reissuing",
            CaRotationPhase::RemovingOldCa => "RemovingOldCa",
            CaRotationPhase::Done => "Done",
        }
    }

    pub fn parse(s: &str) -> Option<CaRotationPhase> {
        [
            CaRotationPhase::AddingCa,
            CaRotationPhase::Reissuing,
            CaRotationPhase::RemovingOldCa,
            CaRotationPhase::Done,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}
