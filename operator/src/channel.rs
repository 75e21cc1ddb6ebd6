//! `Channel` → the channel created on every listed node through its admin API (mutual TLS as
//! the node organization's admin) from the planner's genesis configuration, a budget that
//! keeps its Raft quorum, and status read back from the nodes. Once the channel exists, the
//! planner's configuration is the target: a change of members, consenters or observers (a
//! Channel edit, a Peer scaled) becomes a configuration transaction approved by the member
//! organizations' admins, and nodes it adds join from the channel's real genesis.

use crate::builders;
use crate::context::{owner_of, Context, Error, Reported, Result, Verdict};
use crate::decide::channel::{
    decide, leader, roots_agree, verdict, Awaiting, ChannelAction, ChannelObserved, ChannelTarget,
    ChannelView, JoinAt, NodeReport, NodeView, Outcome,
};
use crate::genesis_approvals;
use crate::reach;
use crate::world;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tally_api::channel::{Channel, ChannelNodeStatus, ChannelStatus};
use tally_api::peer::PeerRole;
use tally_protocol::api::ChannelInfo;
use tally_protocol::proposal::{Change, ProposalView, Status as ProposalStatus};
use tally_protocol::{ChannelConfig, Identity, RejectCode, TxStatus};

pub async fn reconcile(ch: Arc<Channel>, ctx: Arc<Context>) -> Result<Action> {
    let ns = ch.namespace().unwrap_or_default();
    let api: Api<Channel> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, crate::names::FINALIZER, ch, |ev| async {
        match ev {
            Finalizer::Apply(c) => apply(c, &ctx).await,
            // Retire the channel, then have every node delete its data (`channel_delete.rs`).
            Finalizer::Cleanup(c) => crate::channel_delete::cleanup(&c, &ctx).await,
        }
    })
    .await
    .map_err(crate::context::from_finalizer)
}

async fn apply(ch: Arc<Channel>, ctx: &Context) -> Result<Action> {
    let ns = ch.namespace().unwrap_or_default();
    let mut status = ch.current_status();
    let verdict = match world::plan_or_verdict(ctx, &ns, &ch.spec.consortium).await? {
        Err(v) => v,
        Ok(w) => converge(&ch, ctx, &w, &mut status).await?,
    };
    ctx.report(ch.as_ref(), &verdict, status).await?;
    Ok(ctx.parked.after(ch.as_ref(), &verdict))
}

async fn converge(
    ch: &Channel,
    ctx: &Context,
    w: &world::World,
    status: &mut ChannelStatus,
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
    let named = |v: &[u64]| -> Vec<String> {
        v.iter()
            .map(|i| ids.get(i).map_or_else(|| i.to_string(), |s| s.to_string()))
            .collect()
    };

    // Observe: ask every listed node what it knows of the channel.
    let mut observed = ChannelObserved::default();
    let mut reached: Vec<Reached<'_>> = Vec::new();
    for n in nodes.iter().copied().filter(|n| n.hosted()) {
        let mut view = NodeView {
            name: n.name.clone(),
            ..NodeView::default()
        };
        match reach::locate(ctx, &ns, n).await? {
            None => view.unreachable = Some("no pod yet".into()),
            Some(at) => {
                let admin = reach::admin(ctx, &w.plan, n, &at)?;
                match admin.channel(&name).await {
                    Ok(info) => {
                        view.channel = info.as_ref().map(|i| ChannelView {
                            config_sequence: i.status.config_sequence,
                            height: i.status.height,
                            genesis: i.genesis.hash().to_string(),
                            config: i.config.hash().to_string(),
                            configured: i.config.nodes().map(|n| n.name.clone()).collect(),
                            voters: named(&i.status.voters),
                            learners: named(&i.status.learners),
                        });
                        reached.push((n, at, admin, info));
                    }
                    Err(e) => view.unreachable = Some(e.to_string()),
                }
            }
        }
        observed.nodes.push(view);
    }
    // Revocations are made on the ledger, not planned: keep the channel's, or proposing the
    // plan would undo them.
    let furthest = reached
        .iter()
        .filter_map(|r| r.3.as_ref())
        .max_by_key(|i| (i.status.config_sequence, i.status.height));
    let kept;
    let genesis = match furthest {
        Some(info) => {
            kept = tally_protocol::org_trust::keep_revocations(genesis, &info.config);
            &kept
        }
        None => genesis,
    };
    let target = ChannelTarget {
        config: genesis.hash().to_string(),
        consenters: genesis.consenters.iter().map(|n| n.name.clone()).collect(),
        observers: genesis.observers.iter().map(|n| n.name.clone()).collect(),
    };

    // Decide.
    let decision = decide(&observed, &target);

    // Act.
    let info_of = |node: &str| {
        reached
            .iter()
            .find(|r| r.0.name == node)
            .and_then(|r| r.3.as_ref())
    };
    let admin_of = |node: &str| reached.iter().find(|r| r.0.name == node).map(|r| &r.2);
    let mut outcome = Outcome::default();
    // The channel's real genesis once a node has it, else the planned one: what members
    // approve, published for those that approve outside the cluster.
    let real_genesis = furthest.map_or(genesis, |i| &i.genesis);
    publish_genesis(ctx, ch, w, &ns, real_genesis).await?;
    let infos = || reached.iter().filter_map(|r| r.3.as_ref());
    let approved = |g: &ChannelConfig, outcome: &mut Outcome| {
        let got = genesis_approvals::gather(ch, w, g, infos());
        outcome.waiting.extend(got.refused.iter().cloned());
        if got.complete() {
            Some(got.approvals)
        } else {
            outcome.genesis = Some(got.awaiting(g));
            None
        }
    };
    for action in &decision.actions {
        match action {
            ChannelAction::Create { node } => {
                let Some(admin) = admin_of(node) else {
                    continue;
                };
                let Some(approvals) = approved(genesis, &mut outcome) else {
                    continue;
                };
                if let Err(e) = admin.create_channel(genesis, &approvals).await {
                    outcome.waiting.push(format!("{node} ({e})"));
                }
            }
            ChannelAction::Join { node, source, at } => {
                let (Some(admin), Some(src)) = (admin_of(node), info_of(source)) else {
                    continue;
                };
                let Some(approvals) = approved(&src.genesis, &mut outcome) else {
                    continue;
                };
                let joined = match at {
                    JoinAt::Genesis => admin.create_channel(&src.genesis, &approvals).await,
                    JoinAt::Current => {
                        admin
                            .join_channel(&src.genesis, &src.config, &approvals)
                            .await
                    }
                    JoinAt::Planned => admin.join_channel(&src.genesis, genesis, &approvals).await,
                };
                match joined {
                    Ok(_) => {
                        ctx.event(
                            ch,
                            false,
                            "NodeJoined",
                            "Join",
                            format!("{node} joined channel {name}"),
                        )
                        .await
                    }
                    Err(e) => outcome.waiting.push(format!("{node} ({e})")),
                }
            }
            ChannelAction::Propose { source, .. } => {
                let Some(src) = info_of(source) else { continue };
                match propose_change(ctx, w, &reached, src, genesis).await {
                    Ok(Proposed::Awaiting(a, new)) => {
                        if new {
                            ctx.event(
                                ch,
                                false,
                                "AwaitingApprovals",
                                "Propose",
                                format!(
                                    "proposed configuration change {} for channel {name}: {} approvals, missing [{}]",
                                    a.proposal,
                                    a.count(),
                                    a.missing.join(", ")
                                ),
                            )
                            .await;
                        }
                        outcome.awaiting = Some(a);
                    }
                    Ok(Proposed::Committed(seq)) => {
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
                        outcome.reconfigured = Some(seq);
                    }
                    Err(Refused(why)) => outcome.rejected = Some(why),
                    Err(Unreachable(why)) => outcome.waiting.push(why),
                }
            }
        }
    }

    // Nodes the plan no longer puts in the channel leave it once an applied configuration
    // change no longer lists them (each node checks that itself and refuses otherwise).
    for n in w
        .plan
        .nodes
        .iter()
        .filter(|n| n.hosted() && !n.channels.contains(&name))
    {
        let Some(at) = reach::locate(ctx, &ns, n).await? else {
            continue;
        };
        let admin = reach::admin(ctx, &w.plan, n, &at)?;
        if let Ok(Some(_)) = admin.leave_channel(&name).await {
            ctx.event(
                ch,
                false,
                "NodeLeft",
                "Leave",
                format!("{} left channel {name} and deleted its data", n.name),
            )
            .await;
        }
    }

    // What the nodes report now.
    let mut nodes_status = Vec::new();
    for (n, at, _, _) in &reached {
        let api = reach::api(ctx, &w.plan, n, at)?;
        match api.status(&name).await {
            Ok(s) => {
                let (report, st) = node_report(n, &s, &ids, false);
                outcome.reports.push(report);
                nodes_status.push(st);
            }
            Err(e) => outcome.waiting.push(format!("{} ({e})", n.name)),
        }
    }
    // Members' nodes in other clusters: read where the channel configuration names them,
    // reported but never waited for (their own cluster's operator runs them).
    let member_names: Vec<String> = genesis.members.iter().map(|m| m.name.clone()).collect();
    for n in nodes.iter().copied().filter(|n| !n.hosted()) {
        let read = match reach::remote_api(ctx, &w.plan, n, &member_names) {
            Ok(api) => api.status(&name).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match read {
            Ok(s) => {
                let (report, st) = node_report(n, &s, &ids, true);
                outcome.reports.push(report);
                nodes_status.push(st);
            }
            Err(e) => {
                outcome.remote_unreachable.push(format!("{} ({e})", n.name));
                nodes_status.push(ChannelNodeStatus {
                    name: n.name.clone(),
                    organization: n.org.clone(),
                    role: n.role.as_str().to_string(),
                    height: 0,
                    state_root: String::new(),
                    degraded: None,
                    first_differing_height: None,
                    remote: true,
                    unreachable: Some(e),
                });
            }
        }
    }
    let source = decision.source.as_deref().and_then(info_of);
    let members: Vec<String> = source
        .map(|s| s.config.members.iter().map(|m| m.name.clone()).collect())
        .unwrap_or_default();
    if let Some(src) = source {
        status.config_sequence = src.status.config_sequence;
        status.voters = named(&src.status.voters);
        status.learners = named(&src.status.learners);
    }
    status.height = outcome.reports.iter().map(|o| o.height).max().unwrap_or(0);
    status.leader = leader(&outcome.reports).to_string();
    status.member_count = members.len() as u32;
    status.members = members;
    status.nodes = nodes_status;
    status.pending_change = outcome
        .awaiting
        .as_ref()
        .or(outcome.genesis.as_ref())
        .map(Awaiting::pending_change);
    if !outcome.reports.is_empty() {
        status.state_roots_agree = Some(roots_agree(&outcome.reports));
    }
    Ok(verdict(&name, &decision, &outcome))
}

/// What node `n` reported of the channel, for the decision and for the status.
fn node_report(
    n: &tally_planner::NodePlan,
    s: &tally_protocol::api::ChannelStatus,
    ids: &BTreeMap<u64, &str>,
    remote: bool,
) -> (NodeReport, ChannelNodeStatus) {
    let degraded = s.degraded.as_ref().map(|d| d.reason.clone());
    let first_differing_height = s.degraded.as_ref().map(|d| d.first_differing_height);
    let report = NodeReport {
        name: n.name.clone(),
        height: s.height,
        state_root: s.state_root.to_string(),
        leader: ids
            .get(&s.leader_id)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        degraded: degraded.clone(),
        first_differing_height,
    };
    let status = ChannelNodeStatus {
        name: n.name.clone(),
        organization: n.org.clone(),
        role: n.role.as_str().to_string(),
        height: s.height,
        state_root: s.state_root.to_string(),
        degraded,
        first_differing_height,
        remote,
        unreachable: None,
    };
    (report, status)
}

/// The ConfigMap `CHANNEL-genesis`: the genesis members approve (`genesis.json`), and the
/// operator's own approvals of it (`approvals.yaml`, as `spec.genesisApprovals` entries for the
/// same Channel in another cluster). Members approve with
/// `tallyctl channel approve-genesis`.
async fn publish_genesis(
    ctx: &Context,
    ch: &Channel,
    w: &world::World,
    ns: &str,
    genesis: &ChannelConfig,
) -> Result<()> {
    let name = crate::names::channel_genesis(&ch.name_any());
    let own = genesis_approvals::own_as_spec(w, genesis, &ch.name_any());
    let cm = builders::genesis_config_map(&name, ns, genesis, &own, &owner_of(ch))?;
    ctx.apply::<ConfigMap>(ns, &name, &cm).await.map(drop)
}

fn names_of<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

/// Why a configuration change was not made.
pub(crate) enum ChangeFailure {
    /// The channel refused it (its reason); trying again changes nothing.
    Refused(String),
    /// No node took it; try again later.
    Unreachable(String),
}
pub(crate) use ChangeFailure::{Refused, Unreachable};

/// What proposing a change came to.
pub(crate) enum Proposed {
    /// Committed as this configuration sequence.
    Committed(u64),
    /// Proposed on the ledger and waiting for organizations the operator does not sign for;
    /// `true` when this reconcile made the proposal.
    Awaiting(Awaiting, bool),
}

/// How long a proposal the operator makes stays open.
const PROPOSAL_TTL: Duration = Duration::from_secs(24 * 3600);

/// Proposes `next` as the channel's configuration in place of `src.config`, through a node
/// that serves the channel. The operator signs only for organizations whose `approvals` is
/// `Operator` and whose admin identity it holds. When they are a majority of the channel's
/// admin organizations, it is one configuration transaction with all their approvals;
/// otherwise a proposal on the ledger, approved by each of them, that applies when the other
/// organizations approve it themselves.
async fn propose_change(
    ctx: &Context,
    w: &world::World,
    reached: &[Reached<'_>],
    src: &ChannelInfo,
    next: &ChannelConfig,
) -> std::result::Result<Proposed, ChangeFailure> {
    let eligible = src.config.admin_orgs();
    let admins: Vec<Identity> = eligible
        .iter()
        .filter(|o| w.signs_for(o))
        .filter_map(|o| w.plan.org(o).and_then(|p| p.admin.clone()))
        .collect();
    let needed = src.config.approvals_needed_for(next);
    let Some(submitter) = admins.first() else {
        return Ok(Proposed::Awaiting(
            Awaiting {
                proposal: String::new(),
                needed,
                approved: Vec::new(),
                missing: eligible,
            },
            false,
        ));
    };
    let mut last = String::from("no node serves the channel");
    for (n, at, _, info) in reached {
        if info.is_none() {
            continue;
        }
        let api = reach::api(ctx, &w.plan, n, at).map_err(|e| Unreachable(e.to_string()))?;
        let tried = if admins.len() >= needed {
            let approvers: Vec<&Identity> = admins.iter().collect();
            let tx = tally_client::txs::sign_config(
                submitter,
                &src.config,
                src.status.config_sequence,
                next.clone(),
                &approvers,
            );
            match api.submit_wait(&tx).await {
                Ok(r) => return committed(&r.status, src).map(Proposed::Committed),
                Err(e) => e,
            }
        } else {
            let change = Change::Config(Box::new(next.clone()));
            match by_proposal(&api, &admins, src, &change).await {
                Ok(p) => return p,
                Err(e) => e,
            }
        };
        last = format!("{}: {tried}", n.name);
    }
    Err(Unreachable(last))
}

/// What a configuration transaction's status means for the operator.
fn committed(status: &TxStatus, src: &ChannelInfo) -> std::result::Result<u64, ChangeFailure> {
    match status {
        TxStatus::Committed => Ok(src.status.config_sequence + 1),
        // Another change went first; the next reconcile starts from it.
        TxStatus::Rejected {
            code: RejectCode::ReadConflict,
            reason,
        } => Err(Unreachable(format!("configuration moved on: {reason}"))),
        TxStatus::Rejected { reason, .. } => Err(Refused(format!(
            "the channel refused the configuration change: {reason}"
        ))),
    }
}

/// The open proposal of `change` on the base `src` (made by `admins[0]` if there is none
/// yet), approved by every one of `admins` that has not voted; what it stands at after.
pub(crate) async fn by_proposal(
    api: &tally_client::Client,
    admins: &[Identity],
    src: &ChannelInfo,
    change: &Change,
) -> std::result::Result<std::result::Result<Proposed, ChangeFailure>, tally_client::ClientError> {
    let channel = &src.config.name;
    let wanted = |v: &ProposalView| {
        v.status == ProposalStatus::Open
            && v.proposal.base_sequence == src.status.config_sequence
            && v.proposal.change == *change
    };
    let open = api.proposals(channel).await?.into_iter().find(wanted);
    let (mut view, new) = match open {
        Some(v) => (v, false),
        None => {
            let proposal = match change {
                Change::Config(next) => {
                    api.config_proposal(
                        channel,
                        (**next).clone(),
                        PROPOSAL_TTL,
                        "the operator's planned configuration (Consortium, Peers and Channel resources)",
                    )
                    .await?
                }
                other => {
                    let why = match other {
                        Change::RetireChaincode { .. } => {
                            "the operator: the Chaincode resource was deleted"
                        }
                        _ => "the operator: the Channel resource was deleted",
                    };
                    api.change_proposal(channel, other.clone(), PROPOSAL_TTL, why)
                    .await?
                }
            };
            let hash = proposal.hash();
            let r = api.propose(&admins[0], proposal).await?;
            if let Err(e) = committed(&r.status, src) {
                return Ok(Err(e));
            }
            match api.proposal(channel, &hash).await? {
                Some(v) => (v, true),
                None => {
                    return Ok(Err(Unreachable(format!(
                        "proposal {hash} not found after it committed"
                    ))))
                }
            }
        }
    };
    for admin in admins {
        // Once the policy is met the proposal is closed: a further vote would be refused.
        if view.status != ProposalStatus::Open {
            break;
        }
        let org = &admin.info.org;
        if view.tally.approved.iter().any(|o| o == org)
            || view.tally.rejected.iter().any(|o| o == org)
        {
            continue;
        }
        let r = api.approve(admin, channel, view.hash).await?;
        if let Err(e) = committed(&r.status, src) {
            return Ok(Err(e));
        }
        match api.proposal(channel, &view.hash).await? {
            Some(v) => view = v,
            None => break,
        }
    }
    Ok(Ok(match view.status {
        ProposalStatus::Applied => Proposed::Committed(src.status.config_sequence + 1),
        ProposalStatus::Open => Proposed::Awaiting(
            Awaiting {
                proposal: view.hash.to_hex(),
                needed: view.tally.needed,
                approved: view.tally.approved.clone(),
                missing: view.tally.missing.clone(),
            },
            new,
        ),
        other => {
            return Ok(Err(Refused(format!(
                "proposal {} is {}",
                view.hash,
                other.as_str()
            ))))
        }
    }))
}

type Reached<'a> = (
    &'a tally_planner::NodePlan,
    reach::Reached,
    tally_client::AdminClient,
    Option<ChannelInfo>,
);
