//! Reading Tally resources from YAML manifests, the same files a tenant gives `kubectl apply`.

use crate::{Chaincode, Channel, Consortium, Peer};
use kube::ResourceExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The `apiVersion` of every Tally kind.
pub const API_VERSION: &str = "tally.dev/v1alpha1";
pub use tally_planner::spec::DEFAULT_NAMESPACE;

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// Every Tally resource read from a set of manifests.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub consortia: Vec<Consortium>,
    pub peers: Vec<Peer>,
    pub channels: Vec<Channel>,
    pub chaincodes: Vec<Chaincode>,
    /// Documents of other kinds (ConfigMaps, Namespaces...) as `kind/name`, which a cluster
    /// would take and the local mode leaves aside.
    pub other: Vec<String>,
    /// ConfigMaps (`v1`), kept too: a Chaincode's module lives in one, and the local mode
    /// installs it from there.
    pub config_maps: Vec<k8s_openapi::api::core::v1::ConfigMap>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

impl Resources {
    /// The bytes of `key` in ConfigMap `name` (`binaryData`, else `data`), if present.
    pub fn config_map_key(&self, name: &str, key: &str) -> Option<Vec<u8>> {
        let cm = self.config_maps.iter().find(|c| c.name_any() == name)?;
        cm.binary_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                cm.data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.as_bytes().to_vec())
            })
    }

    /// Reads every document of every file.
    pub fn read_files(paths: &[PathBuf]) -> Result<Resources, ManifestError> {
        let mut all = Resources::default();
        for p in paths {
            let text = std::fs::read_to_string(p).map_err(|source| ManifestError::Read {
                path: p.clone(),
                source,
            })?;
            all.add_yaml(&origin_of(p), &text)?;
        }
        Ok(all)
    }

    /// Parses a multi-document YAML text; `origin` names it in errors (a file name).
    pub fn from_yaml(origin: &str, text: &str) -> Result<Resources, ManifestError> {
        let mut all = Resources::default();
        all.add_yaml(origin, text)?;
        Ok(all)
    }

    fn add_yaml(&mut self, origin: &str, text: &str) -> Result<(), ManifestError> {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let at = format!("{origin}, document {}", i + 1);
            let value = serde_yaml::Value::deserialize(doc).map_err(|e| invalid(&at, e))?;
            if value.is_null() {
                continue;
            }
            let head: Head = serde_yaml::from_value(value.clone()).map_err(|e| invalid(&at, e))?;
            if head.kind.is_empty() {
                return Err(invalid(&at, "the document has no `kind`"));
            }
            let tally_kind = matches!(
                head.kind.as_str(),
                "Consortium" | "Peer" | "Channel" | "Chaincode"
            );
            if head.kind == "ConfigMap" && head.api_version == "v1" {
                self.config_maps.push(parse(&at, value.clone())?);
            }
            if !tally_kind || !head.api_version.starts_with("tally.dev/") {
                let name = value
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(|n| n.as_str())
                    .unwrap_or("?");
                self.other.push(format!("{}/{name}", head.kind));
                continue;
            }
            if head.api_version != API_VERSION {
                return Err(invalid(
                    &at,
                    format!(
                        "apiVersion {} is not served; use {API_VERSION}",
                        head.api_version
                    ),
                ));
            }
            match head.kind.as_str() {
                "Consortium" => self.consortia.push(parse(&at, value)?),
                "Peer" => self.peers.push(parse(&at, value)?),
                "Channel" => self.channels.push(parse(&at, value)?),
                _ => self.chaincodes.push(parse(&at, value)?),
            }
        }
        Ok(())
    }

    /// Total number of Tally resources.
    pub fn len(&self) -> usize {
        self.consortia.len() + self.peers.len() + self.channels.len() + self.chaincodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Namespace of a resource, with the default filled in.
pub fn namespace_of<K: ResourceExt>(r: &K) -> String {
    r.namespace()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
}

fn origin_of(p: &Path) -> String {
    p.display().to_string()
}

fn invalid(at: &str, e: impl std::fmt::Display) -> ManifestError {
    ManifestError::Invalid {
        origin: at.to_string(),
        message: e.to_string(),
    }
}

fn parse<K: DeserializeOwned + ResourceExt>(
    at: &str,
    value: serde_yaml::Value,
) -> Result<K, ManifestError> {
    let r: K = serde_yaml::from_value(value).map_err(|e| invalid(at, e))?;
    if r.meta().name.as_deref().unwrap_or("").is_empty() {
        return Err(invalid(at, "metadata.name is required"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS: &str = r#"
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {name: demo}
spec:
  organizations: [{name: org1}, {name: org2}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: wasm}
binaryData: {m.wasm: AGFzbQ==}
data: {note: text}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: org1-nodes, namespace: tenant-a}
spec: {consortium: demo, organization: org1, replicas: 2}
---
"#;

    #[test]
    fn reads_every_kind_and_sets_defaults() {
        let r = Resources::from_yaml("demo.yaml", DOCS).unwrap();
        assert_eq!(r.consortia.len(), 1);
        assert_eq!(r.peers.len(), 1);
        assert_eq!(r.other, ["ConfigMap/wasm"]);
        assert_eq!(r.config_map_key("wasm", "m.wasm").unwrap(), b"\0asm");
        assert_eq!(r.config_map_key("wasm", "note").unwrap(), b"text");
        assert!(r.config_map_key("wasm", "absent").is_none());
        let c = &r.consortia[0];
        assert_eq!(namespace_of(c), "default");
        assert_eq!(c.spec.ordering.batch_max_transactions, 500);
        assert_eq!(namespace_of(&r.peers[0]), "tenant-a");
        assert_eq!(r.peers[0].spec.replicas, 2);
        assert_eq!(r.peers[0].spec.storage.size.0, "10Gi");
    }

    #[test]
    fn errors_name_the_document_and_the_field() {
        let bad = "apiVersion: tally.dev/v1alpha1\nkind: Peer\nmetadata: {name: p}\nspec: {consortium: demo}\n";
        let e = Resources::from_yaml("x.yaml", bad).unwrap_err().to_string();
        assert!(e.contains("x.yaml, document 1"), "{e}");
        assert!(e.contains("organization"), "{e}");

        let old = "apiVersion: tally.dev/v1beta9\nkind: Peer\nmetadata: {name: p}\n";
        let e = Resources::from_yaml("x.yaml", old).unwrap_err().to_string();
        assert!(e.contains("v1beta9 is not served"), "{e}");

        let nameless = "apiVersion: tally.dev/v1alpha1\nkind: Consortium\nmetadata: {}\nspec: {organizations: [{name: a}]}\n";
        let e = Resources::from_yaml("x.yaml", nameless)
            .unwrap_err()
            .to_string();
        assert!(e.contains("metadata.name is required"), "{e}");

        let e = Resources::from_yaml("x.yaml", "kind: [")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.yaml, document 1"), "{e}");
    }
}
