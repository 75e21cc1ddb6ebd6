//! `Peer` → its StatefulSet, Services, ConfigMap and node Secrets; status from the pods and
//! the nodes; rollouts of a new image one pod at a time, each node handing its Raft
//! leadership over before its pod goes; and scale-down that lets a pod go only once its
//! node has left every channel (the Channel controller makes that configuration change).

use crate::builders::{self, PeerInputs};
use crate::context::{owner_of, Context, Error, Reported, Result, Verdict};
use crate::decide::peer::{
    decide, departing, ChannelMembership, Membership, PeerAction, PeerObserved, PodView,
};
use crate::names;
use crate::network_policy::network_policy;
use crate::quorum_guard::{self, ChannelVoters};
use crate::reach;
use crate::world;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use tally_api::channel::Channel;
use tally_api::peer::{NodeChannelStatus, NodeStatus, Peer, PeerRole};
use tally_planner::raft_id;

pub async fn reconcile(peer: Arc<Peer>, ctx: Arc<Context>) -> Result<Action> {
    let ns = peer.namespace().unwrap_or_default();
    let api: Api<Peer> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, names::FINALIZER, peer, |ev| async {
        match ev {
            Finalizer::Apply(p) => apply(p, &ctx).await,
            // Owner references then take the StatefulSet, Services and Secrets with it.
            Finalizer::Cleanup(p) => cleanup(&p, &ctx).await,
        }
    })
    .await
    .map_err(crate::context::from_finalizer)
}

/// Holds the Peer's deletion while its nodes are a live channel's quorum.
async fn cleanup(peer: &Peer, ctx: &Context) -> Result<Action> {
    let ns = peer.namespace().unwrap_or_default();
    let name = peer.name_any();
    let channels: Vec<ChannelVoters> = Api::<Channel>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|c| c.spec.consortium == peer.spec.consortium)
        .map(|c| ChannelVoters {
            channel: c.name_any(),
            deleting: c.metadata.deletion_timestamp.is_some(),
            voters: c.status.map(|s| s.voters).unwrap_or_default(),
        })
        .collect();
    let others: Vec<String> = Api::<Peer>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && p.name_any() != name)
        .map(|p| p.name_any())
        .collect();
    // External organizations' nodes stand whatever happens here; without a plan (the
    // consortium going too) none are counted, which can only hold more.
    let external: Vec<String> =
        match world::plan_or_verdict(ctx, &ns, &peer.spec.consortium).await? {
            Ok(w) => w
                .plan
                .nodes
                .iter()
                .filter(|n| n.peer.is_none())
                .map(|n| n.name.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
    let why = quorum_guard::blocked_by(&name, &channels, &others, &external);
    if why.is_empty() {
        return Ok(Action::await_change());
    }
    let message = format!(
        "deleting Peer {name} would stop channels: {}; remove its nodes from those channels' \
         consenters first (or delete the channels)",
        why.join("; ")
    );
    let held = Verdict::degraded("DeletionBlocked", message.clone());
    ctx.report(peer, &held, peer.current_status()).await?;
    Err(Error::Held(message))
}

async fn apply(peer: Arc<Peer>, ctx: &Context) -> Result<Action> {
    let ns = peer.namespace().unwrap_or_default();
    let name = peer.name_any();
    let mut renewal = None;
    let (verdict, status) = match world::plan_or_verdict(ctx, &ns, &peer.spec.consortium).await? {
        Err(v) => (v, None),
        Ok(w) => {
            let (v, s) = converge(&peer, ctx, &w).await?;
            renewal = world::until_renewal(&w.plan);
            (v, Some(s))
        }
    };
    let mut st = peer.current_status();
    if let Some((replicas, ready, nodes)) = status {
        st.replicas = replicas;
        st.ready_replicas = ready;
        st.nodes = nodes;
    }
    ctx.report(peer.as_ref(), &verdict, st).await?;
    tracing::debug!(peer = %name, state = ?verdict.state, reason = %verdict.reason, message = %verdict.message, "reconciled");
    Ok(ctx.parked.after_until(peer.as_ref(), &verdict, renewal))
}

/// A short digest of the certificates of the Peer's nodes.
fn certificates_digest(nodes: &[&tally_planner::NodePlan]) -> String {
    let mut all = String::new();
    for n in nodes {
        if let Some(id) = &n.identity {
            all.push_str(&id.cert_pem());
        }
    }
    let hex = tally_protocol::hash::Hash::tagged(b"tally/operator/certificates", &[all.as_bytes()])
        .to_hex();
    hex[..16].to_string()
}

/// Another Peer of the same consortium that must finish first before this one replaces a
/// pod: one that is not fully ready, or one earlier by name that still has pods of an older
/// revision. Peers of one consortium share channels, so rolling two at once (a certificate
/// renewal makes all of them roll) could take two voters of a channel down together.
fn rollout_turn(me: &str, consortium: &str, stateful_sets: &[StatefulSet]) -> Option<String> {
    stateful_sets.iter().find_map(|s| {
        let name = s.metadata.name.as_deref()?;
        let ours = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(names::LABEL_CONSORTIUM))
            .is_some_and(|c| c == consortium);
        if !ours || name == me {
            return None;
        }
        let want = s.spec.as_ref().and_then(|sp| sp.replicas).unwrap_or(0);
        let st = s.status.as_ref();
        let ready = st.and_then(|st| st.ready_replicas).unwrap_or(0);
        let updated = st.and_then(|st| st.updated_replicas).unwrap_or(0);
        let busy = ready < want || (name < me && updated < want);
        busy.then(|| name.to_string())
    })
}

/// The StatefulSet's replicas and ready replicas, and what each node reports.
type PeerStatus = (i32, i32, Vec<NodeStatus>);

async fn converge(peer: &Peer, ctx: &Context, w: &world::World) -> Result<(Verdict, PeerStatus)> {
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
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    // Observe.
    // From the store when it has made its first list (absent there is absent), else asked.
    let children = ctx.shared.for_ns(&ns).map(|s| s.children);
    let current = match &children {
        Some(c) if c.ready::<StatefulSet>() => {
            c.get::<StatefulSet>(&ns, &name).map(|s| s.as_ref().clone())
        }
        _ => sts_api.get_opt(&name).await?,
    };
    let sts_status = current
        .as_ref()
        .and_then(|s| s.status.clone())
        .unwrap_or_default();
    let running = current
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    let selector = names::peer_selector(&name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pod_list = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let want = peer.spec.replicas;
    let stateful_sets: Vec<StatefulSet> = match &children {
        Some(c) if c.ready::<StatefulSet>() => c
            .stateful_sets
            .state()
            .iter()
            .map(|s| s.as_ref().clone())
            .collect(),
        _ => sts_api.list(&ListParams::default()).await?.items,
    };
    let observed = PeerObserved {
        peer: name.clone(),
        want,
        running,
        ready: sts_status.ready_replicas.unwrap_or(0),
        update_revision: sts_status.update_revision.clone().unwrap_or_default(),
        pods: pod_list
            .iter()
            .map(|p| PodView {
                name: p.name_any(),
                revision: p
                    .labels()
                    .get("controller-revision-hash")
                    .cloned()
                    .unwrap_or_default(),
                terminating: p.metadata.deletion_timestamp.is_some(),
            })
            .collect(),
        waiting_for: rollout_turn(&name, &peer.spec.consortium, &stateful_sets),
        channels: if running > want {
            memberships(ctx, w, peer, &departing(&name, want, running)).await?
        } else {
            Vec::new()
        },
    };

    // Decide.
    let decision = decide(&observed);

    // Act.
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
        replicas: decision.replicas,
        certificates: certificates_digest(&nodes),
        restore: crate::restore::source(ctx, &ns, peer, &nodes).await?,
    };
    // The ConfigMap, node Secrets and Services do not depend on one another: applied
    // together, a first reconcile waits for one round trip instead of one per object. The
    // StatefulSet comes after them, so its pods start with their configuration in place.
    let config = builders::config_map(&inputs);
    let headless = builders::headless(&inputs);
    let client_service = builders::client_service(&inputs);
    let policy = network_policy(&inputs, &s.operator_namespace);
    let secrets: Vec<(String, Secret)> = nodes
        .iter()
        .filter_map(|n| {
            let id = n.identity.as_ref()?;
            Some((
                names::node_secret(&n.name),
                builders::node_secret(&inputs, &n.name, id),
            ))
        })
        .collect();
    let headless_name = names::headless_service(&name);
    let config_name = names::peer_config(&name);
    futures_util::try_join!(
        ctx.apply::<ConfigMap>(&ns, &config_name, &config),
        futures_util::future::try_join_all(
            secrets
                .iter()
                .map(|(sname, body)| ctx.apply::<Secret>(&ns, sname, body))
        ),
        ctx.apply::<Service>(&ns, &headless_name, &headless),
        ctx.apply::<Service>(&ns, &name, &client_service),
        ctx.apply::<NetworkPolicy>(&ns, &name, &policy),
    )?;
    let sts: StatefulSet = ctx
        .apply(&ns, &name, &builders::stateful_set(&inputs))
        .await?;
    for action in &decision.actions {
        match action {
            PeerAction::HandOverLeadership { pod } => {
                if let Some(p) = pod_list.iter().find(|p| p.name_any() == *pod) {
                    hand_over_leadership(ctx, w, &nodes, p).await;
                }
            }
            PeerAction::DeletePod { pod } => {
                pods.delete(pod, &DeleteParams::default()).await?;
                ctx.event(
                    peer,
                    false,
                    "RollingPod",
                    "Rollout",
                    format!("restarting {pod} with image {}", inputs.image_ref()),
                )
                .await;
            }
        }
    }

    // Status, from the StatefulSet and the nodes themselves.
    let sts_status = sts.status.unwrap_or_default();
    let mut node_status = Vec::new();
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
        node_status.push(st);
    }
    Ok((
        decision.verdict,
        (
            sts_status.replicas,
            sts_status.ready_replicas.unwrap_or(0),
            node_status,
        ),
    ))
}

/// For each channel of this Peer that keeps a node besides `departing`: its membership as the
/// first node that stays and answers reports it, Raft ids turned into node names.
async fn memberships(
    ctx: &Context,
    w: &world::World,
    peer: &Peer,
    departing: &[String],
) -> Result<Vec<ChannelMembership>> {
    let ns = peer.namespace().unwrap_or_default();
    let name = peer.name_any();
    let by_id: BTreeMap<u64, &str> = departing
        .iter()
        .map(|d| (raft_id(&ns, &peer.spec.consortium, d), d.as_str()))
        .chain(w.plan.nodes.iter().map(|n| (n.raft_id, n.name.as_str())))
        .collect();
    let named = |ids: &[u64]| -> Vec<String> {
        ids.iter()
            .map(|i| {
                by_id
                    .get(i)
                    .map_or_else(|| i.to_string(), |s| s.to_string())
            })
            .collect()
    };
    let mut out = Vec::new();
    let channels = w
        .resources
        .channels
        .iter()
        .filter(|c| c.spec.consenters.contains(&name) || c.spec.observers.contains(&name));
    for ch in channels {
        let ch_name = ch.name_any();
        let stays: Vec<_> = w
            .plan
            .nodes
            .iter()
            .filter(|n| n.hosted() && n.channels.contains(&ch_name))
            .filter(|n| !departing.contains(&n.name))
            .collect();
        if stays.is_empty() {
            continue; // nobody stays to remember them
        }
        let mut answer = None;
        for n in stays {
            let Some(at) = reach::locate(ctx, &ns, n).await? else {
                continue;
            };
            let Ok(admin) = reach::admin(ctx, &w.plan, n, &at) else {
                continue;
            };
            if let Ok(Some(info)) = admin.channel(&ch_name).await {
                answer = Some(Membership {
                    configured: info.config.nodes().map(|n| n.name.clone()).collect(),
                    voters: named(&info.status.voters),
                    learners: named(&info.status.learners),
                });
                break;
            }
        }
        out.push(ChannelMembership {
            channel: ch_name,
            answer,
        });
    }
    Ok(out)
}

/// Asks the node of `pod` to hand its Raft leaderships to other caught-up voters before the
/// pod is deleted, so its channels do not wait out an election timeout. Best effort: the
/// node also does this itself on SIGTERM, and Raft elects a new leader regardless.
async fn hand_over_leadership(
    ctx: &Context,
    w: &world::World,
    nodes: &[&tally_planner::NodePlan],
    pod: &Pod,
) {
    let pod_name = pod.name_any();
    let Some(n) = nodes.iter().find(|n| n.name == pod_name) else {
        return;
    };
    let Some(at) = reach::at_pod(n, pod) else {
        return;
    };
    match reach::admin(ctx, &w.plan, n, &at) {
        Ok(admin) => match admin.release_leadership().await {
            Ok(v) => {
                tracing::info!(node = %pod_name, answer = %v, "leadership handed over before restart")
            }
            Err(e) => {
                tracing::warn!(node = %pod_name, error = %e, "leadership not handed over before restart")
            }
        },
        Err(e) => tracing::warn!(node = %pod_name, error = %e, "cannot reach the node's admin API"),
    }
}

#[cfg(test)]
mod tests {
    use super::rollout_turn;
    use k8s_openapi::api::apps::v1::StatefulSet;

    fn sts(name: &str, consortium: &str, want: i32, ready: i32, updated: i32) -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"tally.dev/consortium": consortium}},
            "spec": {"replicas": want, "selector": {}, "serviceName": name, "template": {}},
            "status": {"replicas": want, "readyReplicas": ready, "updatedReplicas": updated},
        }))
        .expect("statefulset")
    }

    #[test]
    fn one_peer_of_a_consortium_rolls_at_a_time() {
        let all = [
            sts("a-peer", "c1", 2, 2, 1),
            sts("b-peer", "c1", 1, 1, 0),
            sts("z-peer", "c2", 3, 0, 0),
        ];
        // The earliest Peer with outdated pods goes first; the later one waits for it.
        assert_eq!(rollout_turn("a-peer", "c1", &all), None);
        assert_eq!(
            rollout_turn("b-peer", "c1", &all).as_deref(),
            Some("a-peer")
        );
        // A later Peer's outdated pods do not hold an earlier one, but its unready pods do.
        let unready = [sts("a-peer", "c1", 2, 2, 2), sts("b-peer", "c1", 1, 0, 0)];
        assert_eq!(
            rollout_turn("a-peer", "c1", &unready).as_deref(),
            Some("b-peer")
        );
        // Another consortium's Peers never hold this one.
        assert_eq!(rollout_turn("a-peer", "c1", &all[2..]), None);
    }
}
