//! Where nodes listen and how others reach them: the one thing that differs between a cluster
//! and `tallyctl up`.

use crate::spec::{Exposure, ExternalPeer};
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

    /// The address others dial when the node is exposed outside the cluster: its own name
    /// under the exposure's domain, at the load balancer's standard ports or at its node
    /// ports. The certificate keeps the cluster's names too, which the node's own cluster
    /// (the operator, probes) uses; the admin listener is not exposed.
    pub(crate) fn exposed(
        self,
        exposure: Option<&Exposure>,
        node: &str,
        ordinal: u32,
    ) -> NodeAddress {
        let Some(e) = exposure else { return self };
        let host = format!("{node}.{}", e.domain);
        let (api, peer) = match e.node_port_base {
            Some(base) => {
                let api = u32::from(base) + 2 * ordinal;
                (api, api + 1)
            }
            None => (u32::from(API_PORT), u32::from(PEER_PORT)),
        };
        let mut sans = vec![host.clone()];
        sans.extend(self.sans.into_iter().filter(|s| s != &host));
        NodeAddress {
            peer_addr: format!("{host}:{peer}"),
            api_url: format!("https://{host}:{api}"),
            admin_addr: self.admin_addr,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exposed_node_is_advertised_under_its_own_domain_name() {
        let k8s = Addressing::Kubernetes {
            cluster_domain: "cluster.local".into(),
        };
        let inside = k8s.hosted("t1", "bank", "bank-1", 0);
        let lb = Exposure {
            domain: "peers.bank.example".into(),
            node_port_base: None,
        };
        let a = inside.clone().exposed(Some(&lb), "bank-1", 1);
        assert_eq!(a.host, "bank-1.peers.bank.example");
        assert_eq!(a.peer_addr, "bank-1.peers.bank.example:7052");
        assert_eq!(a.api_url, "https://bank-1.peers.bank.example:7051");
        // The operator reaches the admin port inside the cluster, under the cluster's name.
        assert_eq!(a.admin_addr, inside.admin_addr);
        assert_eq!(a.sans[0], a.host);
        assert!(a.sans.contains(&inside.host), "{:?}", a.sans);

        let np = Exposure {
            node_port_base: Some(31000),
            ..lb
        };
        let a = inside.clone().exposed(Some(&np), "bank-1", 1);
        assert_eq!(a.api_url, "https://bank-1.peers.bank.example:31002");
        assert_eq!(a.peer_addr, "bank-1.peers.bank.example:31003");
        assert_eq!(inside.clone().exposed(None, "bank-1", 1), inside);
    }
}
