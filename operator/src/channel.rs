//! `Channel` → the channel created on every listed node through its admin API (mutual TLS as
//! the node organization's admin) from the planner's genesis configuration, a budget that
//! keeps its Raft quorum, and status read back from the nodes. Once the channel exists, the
//! planner's configuration is the target: a change of members, consenters or observers (a
//! Channel edit, a Peer scaled) becomes a configuration transaction approved by the member
//! organizations' admins, and nodes it adds join from the channel's real genesis.

use crate::builders;
use crate::context::{owner_of, Context, Error, Result, Verdict};
use crate::reach;
use crate::world;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use tally_api::channel::{Channel, ChannelNodeStatus};
use tally_api::peer::PeerRole;
use tally_protocol::api::ChannelInfo;
use tally_protocol::{ChannelConfig, Identity, NodeRef, RejectCode, TxStatus};

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

    // Ask every listed node what it knows of the channel.
    let mut waiting = Vec::new();
    let mut reached = Vec::new();
    for n in nodes.iter().copied().filter(|n| n.hosted()) {
        let Some(at) = reach::locate(ctx, &ns, n).await? else {
            waiting.push(format!("{} (no pod yet)", n.name));
            continue;
        };
        let admin = reach::admin(ctx, &w.plan, n, &at)?;
        match admin.channel(&name).await {
            Ok(info) => reached.push((n, at, admin, info)),
            Err(e) => waiting.push(format!("{} ({e})", n.name)),
        }
    }
    // The node furthest along in configuration changes speaks for the channel.
    let source = reached
        .iter()
        .filter_map(|(_, _, _, i)| i.as_ref())
        .max_by_key(|i| (i.status.config_sequence, i.status.height))
        .cloned();
    let mut changing = None;
    let mut rejected = None;
    match &source {
        None => {
            // A new channel: every node starts from the planner's genesis.
            for (n, _, admin, _) in &reached {
                if let Err(e) = admin.create_channel(genesis).await {
                    waiting.push(format!("{} ({e})", n.name));
                }
            }
        }
        Some(src) => {
            let target = if genesis.hash() != src.config.hash() {
                genesis
            } else {
                &src.config
            };
            // Nodes that the channel (or the change about to be made) adds join first, from
            // the channel's real genesis, so they listen when the leader starts sending.
            for (n, _, admin, info) in &reached {
                if info.is_some() || target.node(&n.name).is_none() {
                    continue;
                }
                let joined = if src.genesis.hash() == target.hash() {
                    admin.create_channel(&src.genesis).await
                } else {
                    admin.join_channel(&src.genesis, target).await
                };
                match joined {
                    Ok(_) => {
                        ctx.event(
                            ch,
                            false,
                            "NodeJoined",
                            "Join",
                            format!("{} joined channel {name}", n.name),
                        )
                        .await
                    }
                    Err(e) => waiting.push(format!("{} ({e})", n.name)),
                }
            }
            if genesis.hash() != src.config.hash() {
                match propose_change(ctx, w, &reached, src, genesis).await {
                    Ok(seq) => {
                        ctx.event(
                            ch,
                            false,
                            "Reconfigured",
                            "ConfigUpdate",
                            format!(
                                "channel {name} moved to configuration {seq}: consenters [{}], observers [{}], members [{}]",
                                names_of(genesis.consenters.iter().map(|n| n.name.as_str())),
                                names_of(genesis.observers.iter().map(|n| n.name.as_str())),
                                names_of(genesis.members.iter().map(|m| m.name.as_str())),
                            ),
                        )
                        .await;
                        changing = Some(format!(
                            "configuration {seq} committed; waiting for the nodes to apply it"
                        ));
                    }
                    Err(Refused(why)) => rejected = Some(why),
                    Err(Unreachable(why)) => waiting.push(why),
                }
            } else {
                // Nodes report Raft's voters and learners sorted by id.
                let sorted_ids = |nodes: &[NodeRef]| {
                    let mut v: Vec<u64> = nodes.iter().map(|n| n.id).collect();
                    v.sort_unstable();
                    v
                };
                if src.status.voters != sorted_ids(&genesis.consenters)
                    || src.status.learners != sorted_ids(&genesis.observers)
                {
                    changing = Some(format!(
                        "Raft membership is moving to the configuration: voters [{}], learners [{}] now",
                        names_of(src.status.voters.iter().map(|i| *ids.get(i).unwrap_or(&"?"))),
                        names_of(src.status.learners.iter().map(|i| *ids.get(i).unwrap_or(&"?"))),
                    ));
                }
            }
        }
    }

    let mut observed = Vec::new();
    let mut leader = String::new();
    for (n, at, _, _) in &reached {
        let api = reach::api(ctx, &w.plan, n, at)?;
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
    }
    let members: Vec<String> = source
        .as_ref()
        .map(|s| s.config.members.iter().map(|m| m.name.clone()).collect())
        .unwrap_or_default();
    if let Some(src) = &source {
        let named = |v: &[u64]| -> Vec<String> {
            v.iter()
                .map(|i| {
                    ids.get(i)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| i.to_string())
                })
                .collect()
        };
        status["configSequence"] = src.status.config_sequence.into();
        status["voters"] = named(&src.status.voters).into();
        status["learners"] = named(&src.status.learners).into();
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
    Ok(if let Some(why) = rejected {
        Verdict::degraded("ConfigurationRejected", why)
    } else if let Some(what) = changing {
        Verdict::progressing("Reconfiguring", what)
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

fn names_of<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

/// Why a configuration change was not made.
enum ChangeFailure {
    /// The channel refused it (its reason); trying again changes nothing.
    Refused(String),
    /// No node took it; try again later.
    Unreachable(String),
}
use ChangeFailure::{Refused, Unreachable};

/// Proposes `next` as the channel's configuration in place of `src.config`, approved by the
/// admins of every eligible organization the operator holds a key for, through a node that
/// serves the channel. Returns the new configuration's sequence number once committed.
async fn propose_change(
    ctx: &Context,
    w: &world::World,
    reached: &[Reached<'_>],
    src: &ChannelInfo,
    next: &ChannelConfig,
) -> std::result::Result<u64, ChangeFailure> {
    let admins: Vec<Identity> = src
        .config
        .admin_orgs()
        .iter()
        .filter_map(|o| w.plan.org(o).and_then(|p| p.admin.clone()))
        .collect();
    let Some(submitter) = admins.first() else {
        return Err(Refused(format!(
            "the operator holds no admin key of an organization that administers channel {}",
            src.config.name
        )));
    };
    let approvers: Vec<&Identity> = admins.iter().collect();
    let tx = tally_client::txs::sign_config(
        submitter,
        &src.config,
        src.status.config_sequence,
        next.clone(),
        &approvers,
    );
    let mut last = String::from("no node serves the channel");
    for (n, at, _, info) in reached {
        if info.is_none() {
            continue;
        }
        let api = reach::api(ctx, &w.plan, n, at).map_err(|e| Unreachable(e.to_string()))?;
        match api.submit_wait(&tx).await {
            Ok(r) => {
                return match r.status {
                    TxStatus::Committed => Ok(src.status.config_sequence + 1),
                    // Another change went first; the next reconcile starts from it.
                    TxStatus::Rejected {
                        code: RejectCode::ReadConflict,
                        reason,
                    } => Err(Unreachable(format!("configuration moved on: {reason}"))),
                    TxStatus::Rejected { reason, .. } => Err(Refused(format!(
                        "the channel refused the configuration change: {reason}"
                    ))),
                };
            }
            Err(e) => last = format!("{}: {e}", n.name),
        }
    }
    Err(Unreachable(last))
}

type Reached<'a> = (
    &'a tally_planner::NodePlan,
    reach::Reached,
    tally_client::AdminClient,
    Option<ChannelInfo>,
);
