//! Deleting a `Chaincode` (`deletionPolicy: Retire`, the default): its finalizer holds the
//! object until the chaincode's active definition is retired on the ledger by a proposal
//! approved as the channel's policy requires. The operator approves for organizations with
//! `Operator` custody and waits, `AwaitingApprovals`, for the others. The steps are chosen by
//! `decide::chaincode_delete`.

use crate::context::{Context, Error, Reported, Result};
use crate::decide::chaincode_delete::{
    awaiting_verdict, next_step, NodeChaincode, Release, RetireObserved, RetireStep,
};
use crate::decide::channel::Awaiting;
use crate::decide::Verdict;
use crate::reach;
use crate::retire_proposal::{self, Retiring};
use crate::world;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use tally_api::chaincode::{Chaincode, ChaincodeDeletionPolicy};
use tally_api::channel::Channel;
use tally_protocol::api::ChannelInfo;
use tally_protocol::proposal::Change;

/// Reports `verdict` and keeps the finalizer (the controller looks again later).
async fn hold(
    cc: &Chaincode,
    ctx: &Context,
    verdict: Verdict,
    awaiting: Option<&Awaiting>,
) -> Result<Action> {
    let mut status = cc.current_status();
    status.pending_change = awaiting
        .filter(|a| !a.proposal.is_empty())
        .map(Awaiting::pending_change);
    ctx.report(cc, &verdict, status).await?;
    Err(Error::Held(verdict.message))
}

/// A node of the channel that answered, with what it knows of the channel.
type Answered<'a> = (&'a tally_planner::NodePlan, reach::Reached, ChannelInfo);

pub async fn cleanup(cc: &Chaincode, ctx: &Context) -> Result<Action> {
    let ns = cc.namespace().unwrap_or_default();
    let resource = cc.name_any();
    let channel = &cc.spec.channel;
    let name = &cc.spec.name;
    let mut observed = RetireObserved {
        policy: cc.spec.deletion_policy,
        ..RetireObserved::default()
    };
    let retain = cc.spec.deletion_policy == ChaincodeDeletionPolicy::Retain;
    let ch: Option<Channel> = match retain {
        true => None,
        false => {
            Api::namespaced(ctx.client.clone(), &ns)
                .get_opt(channel)
                .await?
        }
    };
    let w = match ch {
        // Nothing to look at: the ledger keeps the chaincode.
        None if retain => Err(String::new()),
        None => Err(format!("Channel {ns}/{channel} does not exist")),
        // The channel's own deletion retires it, and every chaincode with it.
        Some(ch) if ch.metadata.deletion_timestamp.is_some() => {
            Err(format!("Channel {ns}/{channel} is being deleted"))
        }
        Some(ch) => match world::plan_or_verdict(ctx, &ns, &ch.spec.consortium).await? {
            Ok(w) => Ok(w),
            Err(v) => Err(format!(
                "no plan of the channel's consortium: {}",
                v.message
            )),
        },
    };
    let mut answered: Vec<Answered<'_>> = Vec::new();
    let w = match w {
        Ok(w) => Some(w),
        Err(why) => {
            observed.channel_gone = Some(why);
            None
        }
    };
    if let Some(w) = &w {
        for n in w
            .plan
            .nodes
            .iter()
            .filter(|n| n.hosted() && n.channels.contains(channel))
        {
            let at = match reach::locate(ctx, &ns, n).await? {
                Some(at) if at.pod_ready => at,
                _ => {
                    observed
                        .unreachable
                        .push(format!("{} (no ready pod)", n.name));
                    continue;
                }
            };
            let admin = reach::admin(ctx, &w.plan, n, &at)?;
            let info = match admin.channel(channel).await {
                Ok(Some(info)) => info,
                // Not joined yet: it has nothing to refuse calls with.
                Ok(None) => continue,
                Err(e) => {
                    observed.unreachable.push(format!("{} ({e})", n.name));
                    continue;
                }
            };
            let api = reach::api(ctx, &w.plan, n, &at)?;
            match api.chaincodes(channel).await {
                Ok(list) => {
                    let found = list.iter().find(|c| &c.name == name);
                    observed.nodes.push(NodeChaincode {
                        node: n.name.clone(),
                        active: found.and_then(|c| c.active.as_ref()).map(|d| d.sequence),
                        retired: found.and_then(|c| c.retired).map(|r| r.sequence),
                        channel_retired: info.retired.is_some(),
                    });
                    answered.push((n, at, info));
                }
                Err(e) => observed.unreachable.push(format!("{} ({e})", n.name)),
            }
        }
    }
    match next_step(&observed, channel, name) {
        RetireStep::Release(why) => {
            match why {
                Release::Retained | Release::NeverDefined => {}
                Release::Retired => {
                    ctx.event(
                        cc,
                        false,
                        "Retired",
                        "Retire",
                        format!("chaincode {name} is retired on channel {channel}; calls of it are refused"),
                    )
                    .await
                }
                Release::Abandoned(reason) => {
                    tracing::warn!(chaincode = %resource, namespace = %ns, %reason, "chaincode deleted without retiring it on the ledger");
                }
            }
            Ok(Action::await_change())
        }
        RetireStep::Wait(v) => hold(cc, ctx, v, None).await,
        RetireStep::Retire { sequence } => match &w {
            Some(w) => retire(cc, ctx, w, &answered, sequence).await,
            None => Ok(Action::await_change()),
        },
    }
}

/// Proposes the retirement of definition `sequence` (or approves the open proposal) for the
/// organizations the operator signs for.
async fn retire(
    cc: &Chaincode,
    ctx: &Context,
    w: &world::World,
    answered: &[Answered<'_>],
    sequence: u64,
) -> Result<Action> {
    let channel = &cc.spec.channel;
    let name = &cc.spec.name;
    let Some(src) = answered
        .iter()
        .map(|a| &a.2)
        .max_by_key(|i| (i.status.config_sequence, i.status.height))
    else {
        return Ok(Action::await_change());
    };
    let change = Change::RetireChaincode {
        name: name.clone(),
        sequence,
    };
    let nodes: Vec<_> = answered.iter().map(|(n, at, _)| (*n, at)).collect();
    let v = match retire_proposal::propose(ctx, w, src, &nodes, &change).await? {
        Retiring::Committed => Verdict::progressing(
            "Deleting",
            format!("chaincode {name} retired by an approved proposal; waiting for every node to show it"),
        ),
        Retiring::Awaiting(a, new) => {
            if new {
                ctx.event(
                    cc,
                    false,
                    "AwaitingApprovals",
                    "Propose",
                    format!(
                        "proposed the retirement of chaincode {name} on channel {channel} as {}: {} approvals, missing [{}]",
                        a.proposal,
                        a.count(),
                        a.missing.join(", ")
                    ),
                )
                .await;
            }
            return hold(cc, ctx, awaiting_verdict(channel, name, &a), Some(&a)).await;
        }
        Retiring::NobodyToSign(a) => {
            return hold(cc, ctx, awaiting_verdict(channel, name, &a), Some(&a)).await
        }
        Retiring::Refused(why) => Verdict::degraded("RetirementRejected", why),
        Retiring::NotYet(last) => Verdict::progressing(
            "Deleting",
            format!(
                "chaincode {name} is being deleted: its retirement could not be proposed yet: {last}"
            ),
        ),
    };
    hold(cc, ctx, v, None).await
}
