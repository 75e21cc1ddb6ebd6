//! `tallyctl profile export`: the client profile of a consortium that runs on a cluster, read
//! from its resources and the Secrets the operator keeps, in the same format `tallyctl up`
//! writes, so every other command works against the cluster as it does locally.

use super::Ctx;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tally_api::channel::Channel;
use tally_api::cluster::{self, secret_text};
use tally_api::consortium::Consortium;
use tally_api::peer::Peer;
use tally_client::profile::{
    ProfileChannel, ProfileIdentity, ProfileNode, ProfileOrg, PROFILE_VERSION,
};
use tally_client::Profile;
use tally_planner::{headless_service, ADMIN_PORT, API_PORT};
use tally_protocol::identity::write_pem;
use tally_protocol::{Identity, Role};

#[derive(Subcommand, Debug)]
pub enum ProfileCmd {
    /// Write the profile of a consortium on a cluster into --data-dir.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Kubeconfig of the cluster; the usual lookup (KUBECONFIG, ~/.kube/config, in-cluster)
    /// when absent.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    #[arg(long)]
    consortium: String,
    /// How the profile reaches the nodes: `dns` (their stable names, from inside the
    /// cluster) or `pod-ip` (the pods' current IPs, e.g. from a node or with a routed pod
    /// network).
    #[arg(long, default_value = "dns", value_parser = ["dns", "pod-ip"])]
    address: String,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
}

pub async fn run(ctx: &Ctx, cmd: ProfileCmd) -> Result<()> {
    match cmd {
        ProfileCmd::Export(a) => export(ctx, a).await,
    }
}

async fn export(ctx: &Ctx, a: ExportArgs) -> Result<()> {
    let Some(dir) = ctx.data_dir.clone() else {
        bail!("profile export writes into --data-dir DIR: name the folder");
    };
    let kube = cluster::client(a.kubeconfig.as_deref()).await?;
    let ns = a.namespace.as_str();
    let cons: Consortium = Api::namespaced(kube.clone(), ns)
        .get_opt(&a.consortium)
        .await?
        .with_context(|| format!("no Consortium {ns}/{} on the cluster", a.consortium))?;
    let lp = ListParams::default();
    let peers: Vec<Peer> = Api::<Peer>::namespaced(kube.clone(), ns)
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|p| p.spec.consortium == a.consortium)
        .collect();
    let channels: Vec<Channel> = Api::<Channel>::namespaced(kube.clone(), ns)
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|c| c.spec.consortium == a.consortium)
        .collect();
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), ns);

    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut orgs = Vec::new();
    for o in &cons.spec.organizations {
        let ca_name = cluster::ca_secret_name(&cons, &o.name);
        let ca = secrets.get_opt(&ca_name).await?.and_then(|s| secret_text(&s, "tls.crt"))
            .with_context(|| format!("Secret {ns}/{ca_name} with the CA of {} is missing or has no tls.crt (is the Consortium Ready?)", o.name))?;
        let org_dir = PathBuf::from("orgs").join(&o.name);
        write_pem(&dir.join(org_dir.join("ca.pem")), &ca, false)?;
        let mut identities = Vec::new();
        for (name, role) in [("admin", Role::Admin), ("client", Role::Client)] {
            let sname = cluster::identity_secret(&a.consortium, &o.name, name);
            // A caller who may not read an organization's identities still gets its nodes.
            let Ok(Some(s)) = secrets.get_opt(&sname).await else {
                continue;
            };
            let (Some(cert), Some(key)) = (secret_text(&s, "tls.crt"), secret_text(&s, "tls.key"))
            else {
                continue;
            };
            let id =
                Identity::from_pem(&cert, &key).with_context(|| format!("Secret {ns}/{sname}"))?;
            let id_dir = org_dir.join(role.folder()).join(name);
            id.save(&dir.join(&id_dir), &ca)?;
            identities.push(ProfileIdentity {
                name: name.into(),
                role,
                dir: id_dir,
            });
        }
        orgs.push(ProfileOrg {
            name: o.name.clone(),
            ca: org_dir.join("ca.pem"),
            identities,
        });
    }

    let pods: Api<Pod> = Api::namespaced(kube.clone(), ns);
    let mut nodes = Vec::new();
    let mut by_peer: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &peers {
        let pname = p.metadata.name.clone().unwrap_or_default();
        let serves: Vec<String> = channels
            .iter()
            .filter(|c| c.spec.consenters.contains(&pname) || c.spec.observers.contains(&pname))
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        for i in 0..p.spec.replicas.max(0) {
            let node = tally_planner::node_name(&pname, i);
            let dns = format!(
                "{node}.{}.{ns}.svc.{}",
                headless_service(&pname),
                a.cluster_domain
            );
            let host = match a.address.as_str() {
                "pod-ip" => pods
                    .get_opt(&node)
                    .await?
                    .and_then(|p| p.status.and_then(|s| s.pod_ip))
                    .with_context(|| format!("pod {ns}/{node} has no IP yet"))?,
                _ => dns.clone(),
            };
            nodes.push(ProfileNode {
                name: node.clone(),
                org: p.spec.organization.clone(),
                role: p.spec.role.as_str().to_string(),
                api_url: format!("https://{host}:{API_PORT}"),
                // The node's certificate names its DNS name, not its pod IP.
                server_name: (host != dns).then(|| dns.clone()),
                admin_addr: format!("{host}:{ADMIN_PORT}"),
                channels: serves.clone(),
            });
            by_peer.entry(pname.clone()).or_default().push(node);
        }
    }
    let profile = Profile {
        version: PROFILE_VERSION,
        consortium: a.consortium.clone(),
        namespace: ns.to_string(),
        organizations: orgs,
        nodes,
        channels: channels
            .iter()
            .map(|c| ProfileChannel {
                name: c.metadata.name.clone().unwrap_or_default(),
                members: c.spec.members.clone(),
                nodes: c
                    .spec
                    .consenters
                    .iter()
                    .chain(&c.spec.observers)
                    .flat_map(|p| by_peer.get(p).cloned().unwrap_or_default())
                    .collect(),
            })
            .collect(),
    };
    profile.save(&dir)?;
    ctx.show(&serde_json::json!({"data_dir": dir, "consortium": profile.consortium, "nodes": profile.nodes.len(), "channels": profile.channels.len()}), || {
        println!("wrote the profile of {ns}/{} ({} nodes, {} channels) to {}", profile.consortium, profile.nodes.len(), profile.channels.len(), dir.display());
        println!("try: tallyctl --data-dir {} --org {} status <channel>", dir.display(), cons.spec.organizations.first().map(|o| o.name.as_str()).unwrap_or("ORG"));
    })
}
