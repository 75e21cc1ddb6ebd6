//! What the operator keeps on a cluster that other tools read back (`tallyctl profile
//! export`): the names of the Secrets holding organization CAs and identities, reading them,
//! and reaching the API server from a kubeconfig or from inside a pod.

use crate::consortium::{CaMode, Consortium};
use k8s_openapi::api::core::v1::Secret;
use std::path::Path;
use thiserror::Error;

/// Secret holding an organization's CA (`tls.crt`, `tls.key`) when the operator generates it.
pub fn ca_secret(consortium: &str, org: &str) -> String {
    format!("{consortium}-{org}-ca")
}

/// Secret holding an identity the operator issued for an organization (`admin`, `client`).
pub fn identity_secret(consortium: &str, org: &str, role: &str) -> String {
    format!("{consortium}-{org}-{role}")
}

/// The Secret that holds an organization's CA, by the organization's `ca` setting.
pub fn ca_secret_name(cons: &Consortium, org: &str) -> String {
    let name = cons.metadata.name.as_deref().unwrap_or_default();
    cons.spec
        .organizations
        .iter()
        .find(|o| o.name == org)
        .and_then(|o| match o.ca.mode {
            CaMode::Secret => o.ca.secret_ref.as_ref().map(|r| r.name.clone()),
            CaMode::Generate => None,
        })
        .unwrap_or_else(|| ca_secret(name, org))
}

/// A key of a Secret as text.
pub fn secret_text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .or_else(|| s.string_data.as_ref().and_then(|d| d.get(key).cloned()))
}

#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("reading kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("no kubeconfig and no in-cluster service account: {0}")]
    Infer(String),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client from `kubeconfig`, or from the usual lookup (`KUBECONFIG`, `~/.kube/config`,
/// the pod's service account) when none is given.
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, ConnectError> {
    Ok(kube::Client::try_from(config(kubeconfig).await?)?)
}

/// The connection settings [`client`] uses, for a caller that builds its own client stack.
pub async fn config(kubeconfig: Option<&Path>) -> Result<kube::Config, ConnectError> {
    Ok(match kubeconfig {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| ConnectError::Kubeconfig {
                path: path.display().to_string(),
                message: e.to_string(),
            };
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| bad(&e))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| bad(&e))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| ConnectError::Infer(e.to_string()))?,
    })
}
