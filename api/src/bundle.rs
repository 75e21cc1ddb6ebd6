//! An organization's public bundle: what another cluster (or a laptop in local mode) needs to
//! list the organization as a member whose nodes run elsewhere. It carries no key: the CA
//! certificates, and each node's name, Raft id, role and reachable addresses.
//!
//! `kubectl tally org export` / `tallyctl org export` write one; `org import` turns it into
//! a Consortium organization with `ca.mode: Secret` (certificate only), `approvals:
//! External` and `externalPeers`, plus the Secret holding the certificates.

use serde::{Deserialize, Serialize};

use crate::consortium::{Approvals, CaMode};
use crate::consortium::{CaSource, ExternalPeer, Organization, SecretRef};
use crate::peer::PeerRole;

pub const KIND: &str = "OrganizationBundle";

/// One organization as the others see it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationBundle {
    /// `tally.dev/v1alpha1`.
    pub api_version: String,
    /// `OrganizationBundle`.
    pub kind: String,
    pub organization: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// The organization's CA certificates (PEM), the one that issues first; a node or admin
    /// certificate of the organization chains to one of them.
    pub ca_certificates: Vec<String>,
    /// The organization's nodes, as channel configurations name them.
    #[serde(default)]
    pub nodes: Vec<BundleNode>,
}

/// A node of the organization.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BundleNode {
    pub name: String,
    pub raft_id: u64,
    #[serde(default)]
    pub role: PeerRole,
    /// host:port of its mutual-TLS peer listener, reachable from the other members' nodes.
    pub peer_address: String,
    /// Base URL of its client API.
    pub api_url: String,
}

/// What is wrong with a bundle.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("not an organization bundle: kind is {0:?}, expected {KIND:?}")]
    Kind(String),
    #[error("organization {0:?} is not a DNS label of at most 40 characters")]
    Name(String),
    #[error("the bundle of {0} holds no CA certificate")]
    NoCa(String),
    #[error("caCertificates[{0}] is not a PEM certificate")]
    NotPem(usize),
    #[error("node {0:?}: {1}")]
    Node(String, String),
}

/// Why a bundle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not a bundle: {0}")]
    Syntax(#[from] serde_yaml::Error),
    #[error(transparent)]
    Invalid(#[from] BundleError),
}

fn dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl OrganizationBundle {
    pub fn new(organization: &str) -> OrganizationBundle {
        OrganizationBundle {
            api_version: format!("{}/{}", crate::GROUP, crate::VERSION),
            kind: KIND.to_string(),
            organization: organization.to_string(),
            display_name: String::new(),
            ca_certificates: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// Reads a bundle (YAML or JSON) and checks it.
    pub fn parse(text: &str) -> Result<OrganizationBundle, ParseError> {
        let b: OrganizationBundle = serde_yaml::from_str(text)?;
        b.check()?;
        Ok(b)
    }

    /// Checks what a Consortium would refuse later, with the field named.
    pub fn check(&self) -> Result<(), BundleError> {
        if self.kind != KIND {
            return Err(BundleError::Kind(self.kind.clone()));
        }
        if !dns_label(&self.organization, 40) {
            return Err(BundleError::Name(self.organization.clone()));
        }
        if self.ca_certificates.is_empty() {
            return Err(BundleError::NoCa(self.organization.clone()));
        }
        for (i, pem) in self.ca_certificates.iter().enumerate() {
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(BundleError::NotPem(i));
            }
        }
        for n in &self.nodes {
            let bad = |why: &str| BundleError::Node(n.name.clone(), why.to_string());
            if !dns_label(&n.name, 63) {
                return Err(bad("the name is not a DNS label"));
            }
            if n.raft_id == 0 {
                return Err(bad("raftId 0 is not a Raft id"));
            }
            match n.peer_address.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {}
                _ => return Err(bad("peerAddress is not host:port")),
            }
            if !(n.api_url.starts_with("https://") || n.api_url.starts_with("http://")) {
                return Err(bad("apiUrl is not an http(s) URL"));
            }
        }
        Ok(())
    }

    /// The organization as a member of a Consortium whose nodes run elsewhere: its CA from
    /// the Secret `secret` (certificate only), its approvals its own.
    pub fn to_organization(&self, secret: &str) -> Organization {
        Organization {
            name: self.organization.clone(),
            display_name: self.display_name.clone(),
            ca: CaSource {
                mode: CaMode::Secret,
                secret_ref: Some(SecretRef {
                    name: secret.to_string(),
                }),
                rotate: None,
            },
            approvals: Approvals::External,
            external_peers: self
                .nodes
                .iter()
                .map(|n| ExternalPeer {
                    name: n.name.clone(),
                    peer_address: n.peer_address.clone(),
                    api_url: n.api_url.clone(),
                    role: n.role,
                    raft_id: Some(n.raft_id),
                })
                .collect(),
        }
    }

    /// `tls.crt` of the Secret that [`Self::to_organization`] names: the certificates, the
    /// issuing one first, each exactly as exported. The text matters: a channel's genesis
    /// carries the CA certificate as text, and both clusters must plan the same bytes (a
    /// generated CA's PEM has CRLF line ends, which must survive the trip).
    pub fn ca_secret_pem(&self) -> String {
        let mut out = String::new();
        for pem in &self.ca_certificates {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(pem);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> OrganizationBundle {
        let mut b = OrganizationBundle::new("bank");
        b.ca_certificates
            .push("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into());
        b.nodes.push(BundleNode {
            name: "bank-peer-0".into(),
            raft_id: 42,
            role: PeerRole::Consenter,
            peer_address: "bank-peer-0.peers.bank.example:7052".into(),
            api_url: "https://bank-peer-0.peers.bank.example:7051".into(),
        });
        b
    }

    #[test]
    fn a_bundle_becomes_an_external_member_and_reads_back() {
        let b = bundle();
        let text = serde_yaml::to_string(&b).expect("yaml");
        assert_eq!(OrganizationBundle::parse(&text).expect("parses"), b);
        let o = b.to_organization("scf-bank-ca");
        assert_eq!(o.approvals, Approvals::External);
        assert_eq!(o.ca.mode, CaMode::Secret);
        assert_eq!(o.external_peers[0].raft_id, Some(42));
        assert!(b.ca_secret_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn a_bad_bundle_names_what_is_wrong() {
        let mut b = bundle();
        b.nodes[0].peer_address = "no-port".into();
        assert!(b.check().unwrap_err().to_string().contains("peerAddress"));
        let mut b = bundle();
        b.kind = "Secret".into();
        assert!(matches!(b.check(), Err(BundleError::Kind(_))));
        let mut b = bundle();
        b.ca_certificates.clear();
        assert!(matches!(b.check(), Err(BundleError::NoCa(_))));
        let mut b = bundle();
        b.nodes[0].raft_id = 0;
        assert!(b.check().unwrap_err().to_string().contains("raftId"));
    }
}
