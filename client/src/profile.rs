//! Client profiles: where a consortium's nodes are and which identities to use, in one file.
//!
//! `tallyctl up` writes `profile.json` into its data directory; the operator exports the same
//! format from a cluster. Every `tallyctl` command given `--data-dir DIR --org ORG` takes its
//! nodes and its signing identity from it. Paths in the file are relative to its folder, so a
//! data directory can be moved or copied whole.

use crate::{ApiTrust, ClientError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tally_protocol::{Identity, Role};

/// File name of a profile inside a data directory.
pub const PROFILE_FILE: &str = "profile.json";
/// Version of the format this build reads and writes.
pub const PROFILE_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub version: u32,
    pub consortium: String,
    #[serde(default)]
    pub namespace: String,
    pub organizations: Vec<ProfileOrg>,
    pub nodes: Vec<ProfileNode>,
    pub channels: Vec<ProfileChannel>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileOrg {
    pub name: String,
    /// PEM file of the organization's CA certificate.
    pub ca: PathBuf,
    /// Folders with `cert.pem` and `key.pem`, by identity name (`admin`, `client`).
    pub identities: Vec<ProfileIdentity>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileIdentity {
    pub name: String,
    pub role: Role,
    pub dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileNode {
    pub name: String,
    pub org: String,
    /// `consenter` or `observer`.
    pub role: String,
    pub api_url: String,
    /// The name the node's TLS certificate carries, when `api_url` dials something else (a
    /// pod IP): the client checks the certificate for this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// host:port of the mutual-TLS admin API.
    #[serde(default)]
    pub admin_addr: String,
    pub channels: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileChannel {
    pub name: String,
    pub members: Vec<String>,
    /// Names of the nodes that serve it.
    pub nodes: Vec<String>,
}

fn other(msg: impl Into<String>) -> ClientError {
    ClientError::Other(msg.into())
}

impl Profile {
    /// Reads `DIR/profile.json`; paths in it stay relative to `DIR` (see [`Profile::path`]).
    pub fn load(dir: &Path) -> Result<Profile, ClientError> {
        let path = dir.join(PROFILE_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                other(format!(
                    "{} has no {PROFILE_FILE}: is it a data directory written by `tallyctl up`?",
                    dir.display()
                ))
            } else {
                other(format!("cannot read {}: {e}", path.display()))
            }
        })?;
        let p: Profile = serde_json::from_slice(&bytes)
            .map_err(|e| other(format!("{}: {e}", path.display())))?;
        if p.version != PROFILE_VERSION {
            return Err(other(format!(
                "{}: profile version {} is not supported (expected {PROFILE_VERSION})",
                path.display(),
                p.version
            )));
        }
        Ok(p)
    }

    /// Writes `DIR/profile.json`.
    pub fn save(&self, dir: &Path) -> Result<(), ClientError> {
        let path = dir.join(PROFILE_FILE);
        let json = serde_json::to_vec_pretty(self).expect("profile serializes");
        std::fs::write(&path, json)
            .map_err(|e| other(format!("cannot write {}: {e}", path.display())))
    }

    pub fn org(&self, name: &str) -> Result<&ProfileOrg, ClientError> {
        self.organizations.iter().find(|o| o.name == name).ok_or_else(|| {
            other(format!(
                "organization {name:?} is not in the profile of consortium {:?} (organizations: {})",
                self.consortium,
                self.organizations
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// The identity `name` (e.g. `client`, `admin`) of organization `org`, read from `dir`.
    pub fn identity(&self, dir: &Path, org: &str, name: &str) -> Result<Identity, ClientError> {
        let o = self.org(org)?;
        let id = o
            .identities
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| {
                other(format!(
                    "organization {org:?} has no identity {name:?} in the profile (identities: {})",
                    o.identities
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        Ok(Identity::load(&dir.join(&id.dir))?)
    }

    /// What a client verifies nodes against: every organization's CA certificate in the
    /// profile (a channel's nodes may belong to any member), read from `dir`.
    pub fn trust(&self, dir: &Path) -> Result<ApiTrust, ClientError> {
        let mut pems = Vec::new();
        for o in &self.organizations {
            let path = dir.join(&o.ca);
            pems.push(std::fs::read_to_string(&path).map_err(|e| {
                other(format!(
                    "cannot read the CA certificate of organization {} at {}: {e}",
                    o.name,
                    path.display()
                ))
            })?);
        }
        ApiTrust::from_ca_pems(&pems)
    }

    /// What a client verifies the node at `url` against: the CA of the organization the
    /// profile says runs it (another member's CA cannot vouch for it), or every CA when the
    /// profile does not list the URL.
    pub fn trust_for(&self, dir: &Path, url: &str) -> Result<ApiTrust, ClientError> {
        let Some(node) = self.nodes.iter().find(|n| n.api_url == url) else {
            return self.trust(dir);
        };
        let o = self.org(&node.org)?;
        let path = dir.join(&o.ca);
        let pem = std::fs::read_to_string(&path).map_err(|e| {
            other(format!(
                "cannot read the CA certificate of organization {} at {}: {e}",
                o.name,
                path.display()
            ))
        })?;
        ApiTrust::from_ca_pems(&[pem])
    }

    /// The certificate name to check for the node at `url`, when the profile gives one.
    pub fn server_name_for(&self, url: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.api_url == url)
            .and_then(|n| n.server_name.as_deref())
    }

    /// Client API URLs to try for `channel` (every node when `None`): the nodes of `org`
    /// first, then the others, each group in profile order.
    pub fn api_urls(&self, channel: Option<&str>, org: Option<&str>) -> Vec<String> {
        let serves = |n: &&ProfileNode| channel.is_none_or(|c| n.channels.iter().any(|x| x == c));
        let (mut own, rest): (Vec<&ProfileNode>, Vec<&ProfileNode>) = self
            .nodes
            .iter()
            .filter(serves)
            .partition(|n| Some(n.org.as_str()) == org);
        own.extend(rest);
        own.into_iter().map(|n| n.api_url.clone()).collect()
    }

    pub fn channel(&self, name: &str) -> Option<&ProfileChannel> {
        self.channels.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Profile {
        let node = |name: &str, org: &str, channels: &[&str]| ProfileNode {
            name: name.into(),
            org: org.into(),
            role: "consenter".into(),
            api_url: format!("https://{name}:7051"),
            server_name: None,
            admin_addr: String::new(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
        };
        Profile {
            version: PROFILE_VERSION,
            consortium: "demo".into(),
            namespace: "default".into(),
            organizations: vec![],
            nodes: vec![
                node("a", "org1", &["main", "private"]),
                node("b", "org2", &["main"]),
                node("c", "org2", &["main", "private"]),
            ],
            channels: vec![],
        }
    }

    #[test]
    fn own_nodes_of_the_channel_come_first() {
        let p = sample();
        assert_eq!(
            p.api_urls(Some("main"), Some("org2")),
            ["https://b:7051", "https://c:7051", "https://a:7051"]
        );
        assert_eq!(
            p.api_urls(Some("private"), Some("org2")),
            ["https://c:7051", "https://a:7051"]
        );
        assert_eq!(p.api_urls(None, None).len(), 3);
        assert!(p.api_urls(Some("nope"), None).is_empty());
    }

    #[test]
    fn unknown_organizations_are_named() {
        let e = sample().org("org9").unwrap_err().to_string();
        assert!(e.contains("\"org9\""), "{e}");
    }
}
