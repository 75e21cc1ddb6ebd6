//! Whose key signs: an organization's identity from `--identity DIR` (an External
//! organization's own key, which never enters the cluster) or, when the cluster keeps it, from
//! the organization's Secret (`CONSORTIUM-ORG-admin` or `-client`, as profile export reads
//! them). A missing identity is an error that says where one could come from.

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use std::path::Path;
use tally_api::cluster::{self, secret_text};
use tally_protocol::Identity;

/// Which of an organization's identities.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Admin,
    Client,
}

impl Kind {
    fn secret_role(self) -> &'static str {
        match self {
            Kind::Admin => "admin",
            Kind::Client => "client",
        }
    }
}

/// The identity of `org` kept in the cluster, `None` when its Secret is absent or unreadable
/// (an External organization's, or one the caller may not read).
pub async fn from_cluster(
    kube: &kube::Client,
    ns: &str,
    consortium: &str,
    org: &str,
    kind: Kind,
) -> Result<Option<Identity>> {
    let name = cluster::identity_secret(consortium, org, kind.secret_role());
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), ns);
    let Ok(Some(s)) = secrets.get_opt(&name).await else {
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (secret_text(&s, "tls.crt"), secret_text(&s, "tls.key")) else {
        return Ok(None);
    };
    Identity::from_pem(&cert, &key)
        .map(Some)
        .with_context(|| format!("Secret {ns}/{name}"))
}

/// The signer for a command: `--identity DIR` first, else `org`'s identity from the cluster.
pub async fn resolve(
    kube: &kube::Client,
    ns: &str,
    consortium: &str,
    org: Option<&str>,
    identity: Option<&Path>,
    kind: Kind,
) -> Result<Identity> {
    if let Some(dir) = identity {
        let id = crate::cli::identity::load(dir)?;
        if let Some(org) = org {
            if id.info.org != org {
                bail!(
                    "--identity {} belongs to organization {:?}, not {org:?}",
                    dir.display(),
                    id.info.org
                );
            }
        }
        return Ok(id);
    }
    let Some(org) = org else {
        bail!("name the organization that signs: --org ORG (its identity from the cluster) or --identity DIR");
    };
    match from_cluster(kube, ns, consortium, org, kind).await? {
        Some(id) => Ok(id),
        None => bail!(
            "no {} identity for organization {org:?} in the cluster (Secret {ns}/{} is missing or \
             not readable): an organization that keeps its own keys signs with --identity DIR",
            kind.secret_role(),
            cluster::identity_secret(consortium, org, kind.secret_role())
        ),
    }
}

/// A reader for a channel's data: `org`'s client (or admin) when given, else the first member
/// organization whose client identity the cluster keeps and the caller may read.
pub async fn reader(
    kube: &kube::Client,
    ns: &str,
    consortium: &str,
    members: &[String],
    org: Option<&str>,
    identity: Option<&Path>,
) -> Result<Identity> {
    if identity.is_some() || org.is_some() {
        return resolve(kube, ns, consortium, org, identity, Kind::Client).await;
    }
    for m in members {
        for kind in [Kind::Client, Kind::Admin] {
            if let Some(id) = from_cluster(kube, ns, consortium, m, kind).await? {
                return Ok(id);
            }
        }
    }
    bail!(
        "no identity of a member organization ({}) is readable in namespace {ns}: pass \
         --identity DIR (a member's client or admin folder)",
        members.join(", ")
    )
}
