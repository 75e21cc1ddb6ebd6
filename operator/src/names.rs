//! Names and labels of the objects the operator owns. Other tools (`tallyctl profile export`,
//! the chart's monitors, dashboards) find the objects by these, so they are a contract.

use std::collections::BTreeMap;

pub use tally_api::cluster::{ca_secret, identity_secret};
pub use tally_planner::headless_service;

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "tally-operator";
/// The finalizer of consortia (held while peers or channels use it), peers (held while their
/// nodes are a channel's quorum) and channels (held until the channel is retired and its
/// nodes have left it).
pub const FINALIZER: &str = "tally.dev/cleanup";

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_CONSORTIUM: &str = "tally.dev/consortium";
pub const LABEL_ORGANIZATION: &str = "tally.dev/organization";
pub const LABEL_PEER: &str = "tally.dev/peer";
/// On a node's pod and Secret: the node's name.
pub const LABEL_NODE: &str = "tally.dev/node";
/// Annotation on a CA Secret: Unix second from which the identities it issues are valid.
/// Fixed once, so that re-planning issues byte-identical certificates.
pub const ANNOTATION_ISSUED_AT: &str = "tally.dev/issued-at";
/// On a channel's genesis ConfigMap: the hash its members' approvals must cover.
pub const ANNOTATION_GENESIS_HASH: &str = "tally.dev/genesis-hash";
/// On a node's pod: digest of the nodes' certificates.
pub const ANNOTATION_CERTIFICATES: &str = "tally.dev/certificates";
/// On a node's pod: the revision it was built at (`builders::pod_revision`).
pub const ANNOTATION_REVISION: &str = "tally.dev/revision";

/// Prefix of the per-channel pod label that marks a channel's consenters (for its quorum PDB).
pub const LABEL_CONSENTS_PREFIX: &str = "consents.tally.dev/";

/// Secret holding one node's certificate and key.
pub fn node_secret(node: &str) -> String {
    format!("{node}-tls")
}

/// PersistentVolumeClaim holding one node's ledger (the name a StatefulSet's `data` claim
/// template gave it).
pub fn data_claim(node: &str) -> String {
    format!("data-{node}")
}

/// ConfigMap with the configuration shared by a Peer's nodes.
pub fn peer_config(peer: &str) -> String {
    format!("{peer}-config")
}

/// ConfigMap with a channel's genesis (`genesis.json`), for members to approve.
pub fn channel_genesis(channel: &str) -> String {
    format!("{channel}-genesis")
}

/// PodDisruptionBudget that keeps a channel's Raft quorum.
pub fn quorum_budget(channel: &str) -> String {
    format!("{channel}-quorum")
}

pub fn consents_label(channel: &str) -> String {
    format!("{LABEL_CONSENTS_PREFIX}{channel}")
}

/// Labels every object of a Peer carries; the first three also select its pods.
pub fn peer_labels(consortium: &str, org: &str, peer: &str) -> BTreeMap<String, String> {
    let mut l = peer_selector(peer);
    l.insert(LABEL_CONSORTIUM.into(), consortium.into());
    l.insert(LABEL_ORGANIZATION.into(), org.into());
    l.insert(LABEL_MANAGED_BY.into(), FIELD_MANAGER.into());
    l.insert(LABEL_COMPONENT.into(), "ledger".into());
    l
}

/// The selector of a Peer's pods (and the labels of its ledger claims); never changes for the
/// life of the Peer.
/// The Service that exposes one node outside the cluster (`spec.exposure`).
pub fn public_service(node: &str) -> String {
    format!("{node}-public")
}

pub fn peer_selector(peer: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), "tally-node".to_string()),
        (LABEL_INSTANCE.to_string(), peer.to_string()),
        (LABEL_PEER.to_string(), peer.to_string()),
    ])
}

/// Labels of objects owned by a consortium (CA and identity Secrets).
pub fn consortium_labels(consortium: &str, org: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_CONSORTIUM.to_string(), consortium.to_string()),
        (LABEL_ORGANIZATION.to_string(), org.to_string()),
        (LABEL_MANAGED_BY.to_string(), FIELD_MANAGER.to_string()),
    ])
}
