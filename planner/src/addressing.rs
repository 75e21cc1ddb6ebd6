//! Where nodes listen and how others reach them: the one thing that differs between a cluster
//! and `tallyctl up`.

use crate::spec::ExternalPeer;
use serde::{Deserialize, Serialize};

/// Ports of every node: client API (HTTP), peer (mutual TLS, Raft) and admin (mutual TLS).
pub const API_PORT: u16 = 7051;
pub const PEER_PORT: u16 = 7052;
pub const ADMIN_PORT: u16 = 7053;

/// How hosted nodes are addressed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Addressing {
    /// Local processes: the `i`-th hosted node (from 1) listens on `{prefix}.{i}`, a loopback
    /// address of its own (`prefix` like `127.31.7`), with the standard ports.
    Loopback { prefix: String },
    /// One pod per node (`hostname` `N`, `subdomain` `P-nodes`): node `N` of Peer `P` in
    /// namespace `NS` is `N.P-nodes.NS.svc.{cluster_domain}` behind the headless Service
    /// `P-nodes`.
    Kubernetes { cluster_domain: String },
}

/// Where one node can be reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    /// Host name or IP that the node's certificate names and others dial.
    pub host: String,
    /// host:port of the peer listener.
    pub peer_addr: String,
    /// Base URL of the client API.
    pub api_url: String,
    /// host:port of the admin listener.
    pub admin_addr: String,
    /// Names the node's certificate carries (subject alternative names).
    pub sans: Vec<String>,
}

/// Name of a Peer's node (and of its pod): the Peer's name and the replica's ordinal (as a
/// StatefulSet would name its pods, which the operator once used).
pub fn node_name(peer: &str, ordinal: impl std::fmt::Display) -> String {
    format!("{peer}-{ordinal}")
}

/// Name of the headless Service that gives a Peer's pods stable DNS names.
pub fn headless_service(peer: &str) -> String {
    format!("{peer}-nodes")
}

impl Addressing {
    /// Address of the `index`-th hosted node (from 0) of the plan, node `node` of Peer `peer`.
    pub(crate) fn hosted(
        &self,
        namespace: &str,
        peer: &str,
        node: &str,
        index: usize,
    ) -> NodeAddress {
        match self {
            Addressing::Loopback { prefix } => {
                let host = format!("{prefix}.{}", index + 1);
                let sans = vec![host.clone(), "localhost".to_string()];
                NodeAddress::at(host, sans)
            }
            Addressing::Kubernetes { cluster_domain } => {
                let svc = headless_service(peer);
                let short = format!("{node}.{svc}.{namespace}.svc");
                let host = format!("{short}.{cluster_domain}");
                let sans = vec![
                    host.clone(),
                    short,
                    format!("{node}.{svc}.{namespace}"),
                    format!("{node}.{svc}"),
                    "localhost".to_string(),
                ];
                NodeAddress::at(host, sans)
            }
        }
    }

    /// How many hosted nodes this addressing can place.
    pub(crate) fn capacity(&self) -> usize {
        match self {
            Addressing::Loopback { .. } => 254,
            Addressing::Kubernetes { .. } => usize::MAX,
        }
    }
}

impl NodeAddress {
    fn at(host: String, sans: Vec<String>) -> NodeAddress {
        NodeAddress {
            peer_addr: format!("{host}:{PEER_PORT}"),
            api_url: format!("https://{host}:{API_PORT}"),
            admin_addr: format!("{host}:{ADMIN_PORT}"),
            host,
            sans,
        }
    }

    /// Address of a node that runs elsewhere, as its organization declared it.
    pub(crate) fn external(p: &ExternalPeer) -> NodeAddress {
        let host = p
            .peer_address
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_default();
        NodeAddress {
            host,
            peer_addr: p.peer_address.clone(),
            api_url: p.api_url.trim_end_matches('/').to_string(),
            admin_addr: String::new(),
            sans: Vec::new(),
        }
    }
}
