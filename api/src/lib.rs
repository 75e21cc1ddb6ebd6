//! Tally's Kubernetes API: the kinds of `tally.dev/v1alpha1` and their generated CRDs,
//! reading them from manifests ([`manifest`]), and the names of what the operator keeps on a
//! cluster ([`cluster`]).

// kube's `printcolumn(...)` repeats `type_ = ...` once per column, which clippy takes for a
// duplicated attribute.
#![allow(clippy::duplicated_attributes)]

pub mod backup;
pub mod bundle;
pub mod chaincode;
pub mod channel;
pub mod cluster;
pub mod common;
pub mod consortium;
pub mod manifest;
pub mod peer;
pub mod plan;

pub use backup::{Backup, BackupSchedule, BackupScheduleSpec, BackupSpec, BackupStatus};
pub use bundle::{BundleNode, OrganizationBundle};
pub use chaincode::{Chaincode, ChaincodeSpec, ChaincodeStatus};
pub use channel::{Channel, ChannelSpec, ChannelStatus};
pub use common::{Approval, ApprovalRule, Condition, ConditionStatus, GROUP, VERSION};
pub use consortium::{Consortium, ConsortiumSpec, ConsortiumStatus};
pub use peer::{Peer, PeerRole, PeerSpec, PeerStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD with the file name it is kept under in `crds/`.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("consortium.yaml", Consortium::crd()),
        ("peer.yaml", Peer::crd()),
        ("channel.yaml", Channel::crd()),
        ("chaincode.yaml", Chaincode::crd()),
        ("backup.yaml", Backup::crd()),
        ("backupschedule.yaml", BackupSchedule::crd()),
    ]
}

/// The YAML of a CRD as checked into `crds/`, with a header that says where it comes from.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(crd)?;
    Ok(format!(
        "# Generated from api/src by `cargo run -p tally-api --bin tally-crdgen`; do not edit.\n{body}"
    ))
}
