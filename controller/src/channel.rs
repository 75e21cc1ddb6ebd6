//! `Channel` → the channel created on every listed node through its admin API (mutual TLS as
//! the node organization's admin) from the planner's genesis configuration, a budget that
//! keeps its Raft quorum, and status read back from the nodes.

use crate::builders;
use crate::context::{owner_of, Context, Error, Result, Verdict};
use crate::reach;
use crate::world;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use tally_client::ClientError;
use tally_operator::crd::channel::{Channel, ChannelNodeStatus};
use tally_operator::crd::peer::PeerRole;

pub async fn reconcile(ch: Arc<Channel>, ctx: Arc<Context>) -> Result<Action> {
    if ch.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ch.namespace().unwrap_or_default();
    let mut status = serde_json::json!({"observedGeneration": ch.metadata.generation});
    let verdict = match world::plan_or_verdict(&ctx, &ns, &ch.spec.consortium).await? {
        Err(v) => v,
        Ok(w) => converge(&ch, &ctx, &w, &mut status).await?,
    };
    ctx.report(ch.as_ref(), &verdict, status).await?;
    Ok(Action::requeue(verdict.requeue()))
}

async fn converge(
    ch: &Channel,
    ctx: &Context,
    w: &world::World,
    status: &mut serde_json::Value,
) -> Result<Verdict> {
    let ns = ch.namespace().unwrap_or_default();
    let name = ch.name_any();
    let plan = w
        .plan
        .channels
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| Error::Internal(format!("channel {name} is not planned")))?;
    let genesis = &plan.genesis;
    let nodes: Vec<_> = w
        .plan
        .nodes
        .iter()
        .filter(|n| n.channels.contains(&name))
        .collect();
    let voters = nodes
        .iter()
        .filter(|n| n.role == PeerRole::Consenter)
        .count();
    ctx.apply::<PodDisruptionBudget>(
        &ns,
        &crate::names::quorum_budget(&name),
        &builders::quorum_budget(&name, &ch.spec.consortium, &ns, voters, &owner_of(ch)),
    )
    .await?;
    let ids: BTreeMap<u64, &str> = w
        .plan
        .nodes
        .iter()
        .map(|n| (n.raft_id, n.name.as_str()))
        .collect();

    let mut waiting = Vec::new();
    let mut drift = Vec::new();
    let mut observed = Vec::new();
    let mut leader = String::new();
    let mut members = Vec::new();
    for n in nodes.iter().filter(|n| n.hosted()) {
        let Some(at) = reach::locate(ctx, &ns, n).await? else {
            waiting.push(format!("{} (no pod yet)", n.name));
            continue;
        };
        let admin = reach::admin(ctx, &w.plan, n, &at)?;
        match admin.create_channel(genesis).await {
            Ok(_) => {}
            Err(ClientError::Api { status: 409, .. }) => {
                drift.push(n.name.clone());
            }
            Err(e) => {
                waiting.push(format!("{} ({e})", n.name));
                continue;
            }
        }
        let api = reach::api(ctx, &w.plan, n, &at)?;
        match api.status(&name).await {
            Ok(s) => {
                if s.leader_id != 0 {
                    leader = ids
                        .get(&s.leader_id)
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                }
                observed.push(ChannelNodeStatus {
                    name: n.name.clone(),
                    organization: n.org.clone(),
                    role: n.role.as_str().to_string(),
                    height: s.height,
                    state_root: s.state_root.to_string(),
                });
            }
            Err(e) => waiting.push(format!("{} ({e})", n.name)),
        }
        if members.is_empty() {
            if let Ok(cfg) = api.config(&name).await {
                members = cfg.members.iter().map(|m| m.name.clone()).collect();
            }
        }
    }
    let height = observed.iter().map(|o| o.height).max().unwrap_or(0);
    let mut roots: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for o in &observed {
        roots.entry(o.height).or_default().push(&o.state_root);
    }
    let agree = roots.values().all(|r| r.windows(2).all(|p| p[0] == p[1]));
    status["height"] = height.into();
    status["leader"] = leader.clone().into();
    status["memberCount"] = members.len().into();
    status["members"] = members.into();
    status["nodes"] = serde_json::to_value(&observed).unwrap_or_default();
    if !observed.is_empty() {
        status["stateRootsAgree"] = agree.into();
    }
    Ok(if !drift.is_empty() {
        Verdict::degraded(
            "ConfigurationChanged",
            format!(
                "nodes [{}] already serve channel {name} with another configuration; changing the members or consenters of an existing channel needs a configuration transaction, which this operator version does not make yet",
                drift.join(", ")
            ),
        )
    } else if !agree {
        Verdict::degraded(
            "StateRootsDisagree",
            format!("nodes of channel {name} report different state roots at the same height"),
        )
    } else if !waiting.is_empty() {
        Verdict::progressing(
            "WaitingForNodes",
            format!("waiting for {}", waiting.join(", ")),
        )
    } else if leader.is_empty() {
        Verdict::progressing(
            "ElectingLeader",
            "the channel's consenters have no leader yet",
        )
    } else {
        Verdict::ready(
            "Ready",
            format!(
                "{} nodes at height {height}, led by {leader}",
                observed.len()
            ),
        )
    })
}
