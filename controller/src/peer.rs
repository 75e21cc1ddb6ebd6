//! `Peer` → its StatefulSet, Services, ConfigMap and node Secrets; status from the pods and
//! the nodes; and rollouts of a new image one pod at a time.

use crate::builders::{self, PeerInputs};
use crate::context::{owner_of, Context, Error, Result, Verdict};
use crate::names;
use crate::reach;
use crate::world;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use std::sync::Arc;
use tally_operator::crd::peer::{NodeChannelStatus, NodeStatus, Peer, PeerRole};

pub async fn reconcile(peer: Arc<Peer>, ctx: Arc<Context>) -> Result<Action> {
    if peer.metadata.deletion_timestamp.is_some() {
        // Owner references take the StatefulSet, Services and Secrets with it.
        return Ok(Action::await_change());
    }
    let ns = peer.namespace().unwrap_or_default();
    let name = peer.name_any();
    let (verdict, status) = match world::plan_or_verdict(&ctx, &ns, &peer.spec.consortium).await? {
        Err(v) => (v, None),
        Ok(w) => {
            let (v, s) = converge(&peer, &ctx, &w).await?;
            (v, Some(s))
        }
    };
    let mut st = serde_json::json!({"observedGeneration": peer.metadata.generation});
    if let Some(s) = status {
        st["replicas"] = s.0.into();
        st["readyReplicas"] = s.1.into();
        st["nodes"] = serde_json::to_value(&s.2).unwrap_or_default();
    }
    ctx.report(peer.as_ref(), &verdict, st).await?;
    tracing::debug!(peer = %name, state = ?verdict.state, reason = %verdict.reason, message = %verdict.message, "reconciled");
    Ok(Action::requeue(verdict.requeue()))
}

type PeerObserved = (i32, i32, Vec<NodeStatus>);

async fn converge(peer: &Peer, ctx: &Context, w: &world::World) -> Result<(Verdict, PeerObserved)> {
    let ns = peer.namespace().unwrap_or_default();
    let name = peer.name_any();
    let nodes: Vec<_> = w
        .plan
        .nodes
        .iter()
        .filter(|n| n.peer.as_deref() == Some(name.as_str()))
        .collect();
    let org = w.plan.org(&peer.spec.organization).ok_or_else(|| {
        Error::Internal(format!(
            "organization {} not planned",
            peer.spec.organization
        ))
    })?;
    let consents = match peer.spec.role {
        PeerRole::Consenter => nodes
            .first()
            .map(|n| n.channels.clone())
            .unwrap_or_default(),
        PeerRole::Observer => Vec::new(),
    };
    let s = &ctx.settings;
    let inputs = PeerInputs {
        peer,
        namespace: &ns,
        owner: owner_of(peer),
        image: if peer.spec.image.is_empty() {
            s.node_image.clone()
        } else {
            peer.spec.image.clone()
        },
        version: if peer.spec.version.is_empty() {
            s.node_version.clone()
        } else {
            peer.spec.version.clone()
        },
        org_ca_pem: &org.ca_pem,
        consents,
    };
    ctx.apply::<ConfigMap>(
        &ns,
        &names::peer_config(&name),
        &builders::config_map(&inputs),
    )
    .await?;
    for n in &nodes {
        let Some(id) = &n.identity else { continue };
        let body = builders::node_secret(&inputs, &n.name, id);
        ctx.apply::<Secret>(&ns, &names::node_secret(&n.name), &body)
            .await?;
    }
    ctx.apply::<Service>(
        &ns,
        &names::headless_service(&name),
        &builders::headless(&inputs),
    )
    .await?;
    ctx.apply::<Service>(&ns, &name, &builders::client_service(&inputs))
        .await?;
    let sts: StatefulSet = ctx
        .apply(&ns, &name, &builders::stateful_set(&inputs))
        .await?;

    let want = peer.spec.replicas;
    let sts_status = sts.status.clone().unwrap_or_default();
    let ready = sts_status.ready_replicas.unwrap_or(0);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = names::peer_selector(&name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut pod_list = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    pod_list.sort_by_key(|p| std::cmp::Reverse(p.name_any()));

    // Observed node status, from the nodes themselves.
    let mut observed = Vec::new();
    for n in &nodes {
        let mut st = NodeStatus {
            name: n.name.clone(),
            ready: false,
            channels: Vec::new(),
        };
        // The Peer's pods are listed above: no request per node.
        let pod = pod_list
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(n.name.as_str()));
        if let Some(at) = pod.and_then(|p| reach::at_pod(n, p)) {
            st.ready = at.pod_ready;
            if let Ok(api) = reach::api(ctx, &w.plan, n, &at) {
                if let Ok(list) = api.channels().await {
                    st.channels = list
                        .channels
                        .iter()
                        .map(|c| NodeChannelStatus {
                            name: c.channel.clone(),
                            height: c.height,
                            role: format!("{:?}", c.role).to_lowercase(),
                        })
                        .collect();
                }
            }
        }
        observed.push(st);
    }

    // Roll pods whose revision is not the StatefulSet's, one at a time, only when every
    // node is ready, so that a channel never loses two voters to a rollout.
    let update_rev = sts_status.update_revision.clone().unwrap_or_default();
    let outdated: Vec<&Pod> = pod_list
        .iter()
        .filter(|p| {
            p.labels()
                .get("controller-revision-hash")
                .map(String::as_str)
                != Some(&update_rev)
        })
        .collect();
    let terminating = pod_list
        .iter()
        .any(|p| p.metadata.deletion_timestamp.is_some());
    let verdict = if !update_rev.is_empty() && !outdated.is_empty() {
        if ready == want && !terminating && pod_list.len() as i32 == want {
            let p = outdated[0].name_any();
            pods.delete(&p, &DeleteParams::default()).await?;
            ctx.event(
                peer,
                false,
                "RollingPod",
                "Rollout",
                format!("restarting {p} with image {}", inputs.image_ref()),
            )
            .await;
        }
        Verdict::progressing(
            "RollingUpdate",
            format!(
                "{} of {} nodes run an older revision; replacing one at a time",
                outdated.len(),
                pod_list.len()
            ),
        )
    } else if ready < want {
        Verdict::progressing("Starting", format!("{ready} of {want} nodes ready"))
    } else {
        Verdict::ready("Ready", format!("{ready} of {want} nodes ready"))
    };
    Ok((verdict, (sts_status.replicas, ready, observed)))
}
