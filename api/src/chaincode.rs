//! `Chaincode`: a WebAssembly module for a channel, pinned by digest, and its approval.

use crate::channel::PendingChange;
use crate::common::{Approval, Condition, KeyRef};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A chaincode definition to approve and commit on a channel.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tally.dev",
    version = "v1alpha1",
    kind = "Chaincode",
    namespaced,
    status = "ChaincodeStatus",
    shortname = "tcc",
    category = "tally",
    derive = "PartialEq",
    doc = "A WebAssembly chaincode for a channel: its module (a ConfigMap key pinned by SHA-256), version, init call and approval.",
    printcolumn(name = "Channel", type_ = "string", json_path = ".spec.channel"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(
        name = "Committed",
        type_ = "string",
        json_path = ".status.committedVersion"
    ),
    printcolumn(name = "Sequence", type_ = "integer", json_path = ".status.sequence"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ChaincodeSpec {
    /// The `Channel` in this namespace. Cannot change.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = kube::core::cel::Rule::new("self == oldSelf").message("channel cannot change; create a new Chaincode"))]
    pub channel: String,
    /// Name on the ledger, which namespaces its state. Cannot change.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")
    )]
    #[x_kube(validation = kube::core::cel::Rule::new("self == oldSelf").message("name cannot change: it namespaces the chaincode's state"))]
    pub name: String,
    /// Version label; a new version is an upgrade that needs approval again.
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    )]
    pub version: String,
    /// Where the module is.
    pub source: ChaincodeSource,
    /// Call made once when a version is committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "InitCall")]
    pub init: Option<InitCall>,
    /// Approvals needed; the channel's `chaincodeLifecycle` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Approval")]
    pub approval: Option<Approval>,
    /// What deleting this object does on the ledger. `Retire` (default): a finalizer holds
    /// the object until the chaincode's active definition is retired by an approved proposal
    /// (calls refused from then on, state kept readable). `Retain`: the chaincode stays
    /// active on the ledger.
    #[serde(default)]
    pub deletion_policy: ChaincodeDeletionPolicy,
}

/// What deleting a `Chaincode` does on the ledger.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ChaincodeDeletionPolicy {
    #[default]
    Retire,
    Retain,
}

/// The module: a binary ConfigMap key, and the digest it must have.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChaincodeSource {
    /// ConfigMap (`binaryData`) and key holding the `.wasm` module.
    pub config_map: KeyRef,
    /// SHA-256 of the module, lowercase hex. A module with another digest is refused.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitCall {
    #[schemars(length(min = 1, max = 128))]
    pub function: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub args: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChaincodeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Definitions committed so far (1 after the first commit).
    #[serde(default)]
    pub sequence: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub committed_version: String,
    /// Each member organization and whether it approved `spec.version` (its vote on the
    /// definition's proposal).
    #[serde(default)]
    pub approvals: Vec<OrgApproval>,
    /// While its definition (or, for a deleted object, its retirement) waits for approvals:
    /// the proposal on the ledger and which organizations have and have not approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_change: Option<PendingChange>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgApproval {
    pub organization: String,
    pub approved: bool,
    /// Version the organization approved, when any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}
