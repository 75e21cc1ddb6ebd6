//! `Peer` → one pod and ledger claim per node, Services, ConfigMap and node Secrets; status
//! from the pods and the nodes; rollouts of a new revision one pod at a time, each node
//! handing its Raft leadership over before its pod goes; and scale-down that lets a pod go
//! only once its node has left every channel (the Channel controller makes that
//! configuration change). The pods are the operator's own rather than a StatefulSet's so that
//! each mounts its own node's Secret only (see `pods`).

use crate::builders::{self, PeerInputs};
use crate::context::{owner_of, Context, Error, Reported, Result, Verdict};
use crate::decide::peer::{
    decide, departing, ordinal, ChannelMembership, Membership, PeerAction, PeerObserved, PodView,
};
use crate::names;
use crate::network_policy::network_policy;
use crate::pods;
use crate::quorum_guard::{self, ChannelVoters};
use crate::reach;
use crate::world;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
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
            // Owner references then take the pods, Services and Secrets with it (the ledger
            // claims stay).
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
    if let Some(c) = status {
        st.replicas = c.replicas;
        st.ready_replicas = c.ready;
        st.updated_replicas = c.updated;
        st.nodes = c.nodes;
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

/// Another Peer of the consortium, as the rollout order sees it.
#[derive(Debug)]
struct Sibling {
    name: String,
    /// `spec.replicas`.
    want: i32,
    /// Its pods that are ready now.
    ready: i32,
    /// Its nodes at its current revision, as its last reconcile counted them.
    updated: i32,
}

/// Another Peer of the same consortium that must finish first before this one replaces a
/// pod: one that is not fully ready, or one earlier by name that still has pods of an older
/// revision. Peers of one consortium share channels, so rolling two at once (a certificate
/// renewal makes all of them roll) could take two voters of a channel down together.
fn rollout_turn(me: &str, siblings: &[Sibling]) -> Option<String> {
    siblings.iter().find_map(|s| {
        if s.name == me {
            return None;
        }
        let busy = s.ready < s.want || (s.name.as_str() < me && s.updated < s.want);
        busy.then(|| s.name.clone())
    })
}

/// The Peer's nodes as its pods show them, and what each node reports.
struct PeerCounts {
    replicas: i32,
    ready: i32,
    updated: i32,
    nodes: Vec<NodeStatus>,
}

async fn converge(peer: &Peer, ctx: &Context, w: &world::World) -> Result<(Verdict, PeerCounts)> {
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
        certificates: certificates_digest(&nodes),
        restore: crate::restore::source(ctx, &ns, peer, &nodes).await?,
    };
    let revision = builders::pod_revision(&inputs);

    // Observe: the pods of the whole consortium (this Peer's, and its siblings' for the
    // rollout order), from the store once it has made its first list.
    let consortium_pods = pods::of_consortium(ctx, &ns, &peer.spec.consortium).await?;
    let own: Vec<&Pod> = consortium_pods
        .iter()
        .filter(|p| p.labels().get(names::LABEL_PEER) == Some(&name))
        .filter(|p| ordinal(&name, &p.name_any()).is_some())
        .collect();
    let running = own
        .iter()
        .filter_map(|p| ordinal(&name, &p.name_any()))
        .map(|k| k + 1)
        .max()
        .unwrap_or(0);
    let want = peer.spec.replicas;
    let siblings: Vec<Sibling> = w
        .resources
        .peers
        .iter()
        .filter(|p| p.spec.consortium == peer.spec.consortium && p.name_any() != name)
        .map(|p| {
            let pname = p.name_any();
            Sibling {
                ready: consortium_pods
                    .iter()
                    .filter(|q| q.labels().get(names::LABEL_PEER) == Some(&pname))
                    .filter(|q| pods::serving(q))
                    .count() as i32,
                want: p.spec.replicas,
                updated: p.status.as_ref().map_or(0, |s| s.updated_replicas),
                name: pname,
            }
        })
        .collect();
    let observed = PeerObserved {
        peer: name.clone(),
        want,
        running,
        ready: own.iter().filter(|p| pods::serving(p)).count() as i32,
        update_revision: revision.clone(),
        pods: own
            .iter()
            .map(|p| PodView {
                name: p.name_any(),
                revision: pods::revision(p),
                terminating: p.metadata.deletion_timestamp.is_some(),
                finished: pods::finished(p),
            })
            .collect(),
        waiting_for: rollout_turn(&name, &siblings),
        channels: if running > want {
            memberships(ctx, w, peer, &departing(&name, want, running)).await?
        } else {
            Vec::new()
        },
    };

    // Decide.
    let decision = decide(&observed);

    // Act.
    // The ConfigMap, node Secrets and Services do not depend on one another: applied
    // together, a first reconcile waits for one round trip instead of one per object. The
    // pods come after them, so that they start with their configuration in place.
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
    let exposed: std::collections::BTreeSet<u32> = nodes
        .iter()
        .filter_map(|n| n.ordinal)
        .chain(
            own.iter()
                .filter_map(|p| ordinal(&name, &p.name_any()))
                .filter_map(|o| u32::try_from(o).ok()),
        )
        .collect();
    crate::exposure::reconcile(ctx, &inputs, &exposed).await?;
    // Pods a StatefulSet made (before the operator managed pods itself) become the Peer's:
    // the StatefulSet goes without them, they are relabelled and owned here, and, carrying
    // no revision, the rollout replaces them one at a time.
    if own.iter().any(|p| pods::owned_by_stateful_set(p)) {
        pods::retire_stateful_set(ctx, &ns, &name).await?;
        ctx.event(
            peer,
            false,
            "AdoptingPods",
            "Adopt",
            format!("the pods of StatefulSet {name} are now the Peer's; they are replaced one at a time"),
        )
        .await;
    }
    for p in own
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let labels = builders::node_pod_labels(&inputs, &p.name_any());
        pods::keep_labels_and_owner(ctx, p, &labels, &inputs.owner).await?;
    }
    for action in &decision.actions {
        match action {
            PeerAction::CreatePod { pod } => {
                pods::create(
                    ctx,
                    &builders::data_claim(&inputs, pod),
                    &builders::node_pod(&inputs, pod, &revision),
                )
                .await?;
            }
            PeerAction::HandOverLeadership { pod } => {
                if let Some(p) = own.iter().find(|p| p.name_any() == *pod) {
                    hand_over_leadership(ctx, w, &nodes, p).await;
                }
            }
            PeerAction::DeletePod { pod } => {
                pods::delete(ctx, &ns, pod).await?;
                ctx.event(
                    peer,
                    false,
                    "RollingPod",
                    "Rollout",
                    format!("restarting {pod} with image {}", inputs.image_ref()),
                )
                .await;
            }
            PeerAction::ReplacePod { pod } => {
                pods::delete(ctx, &ns, pod).await?;
                ctx.event(
                    peer,
                    true,
                    "ReplacingPod",
                    "Replace",
                    format!("{pod} stopped for good; it is created again"),
                )
                .await;
            }
            PeerAction::RemovePod { pod } => {
                pods::delete(ctx, &ns, pod).await?;
                ctx.event(
                    peer,
                    false,
                    "RemovingPod",
                    "ScaleDown",
                    format!("{pod} has left its channels; its pod goes, its volume stays"),
                )
                .await;
            }
        }
    }

    // Status, from the pods and the nodes themselves.
    let mut node_status = Vec::new();
    for n in &nodes {
        let mut st = NodeStatus {
            name: n.name.clone(),
            ready: false,
            raft_id: Some(n.raft_id),
            peer_address: n.address.peer_addr.clone(),
            api_url: n.address.api_url.clone(),
            channels: Vec::new(),
        };
        // The Peer's pods are listed above: no request per node.
        let pod = own
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
    let alive: Vec<&&Pod> = own
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let counts = PeerCounts {
        replicas: alive.len() as i32,
        ready: observed.ready,
        updated: alive
            .iter()
            .filter(|p| pods::revision(p) == revision)
            .count() as i32,
        nodes: node_status,
    };
    Ok((decision.verdict, counts))
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
    use super::{rollout_turn, Sibling};

    fn peer(name: &str, want: i32, ready: i32, updated: i32) -> Sibling {
        Sibling {
            name: name.into(),
            want,
            ready,
            updated,
        }
    }

    #[test]
    fn one_peer_of_a_consortium_rolls_at_a_time() {
        let all = [peer("a-peer", 2, 2, 1), peer("b-peer", 1, 1, 0)];
        // The earliest Peer with outdated pods goes first; the later one waits for it.
        assert_eq!(rollout_turn("a-peer", &all), None);
        assert_eq!(rollout_turn("b-peer", &all).as_deref(), Some("a-peer"));
        // A later Peer's outdated pods do not hold an earlier one, but its unready pods do.
        let unready = [peer("a-peer", 2, 2, 2), peer("b-peer", 1, 0, 0)];
        assert_eq!(rollout_turn("a-peer", &unready).as_deref(), Some("b-peer"));
        // No siblings (another consortium's Peers are never passed in): nothing holds it.
        assert_eq!(rollout_turn("a-peer", &[]), None);
    }
}
