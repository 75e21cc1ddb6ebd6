//! Deleting a `Channel`: its finalizer holds the object until the channel is retired on the
//! ledger (a proposal approved as the channel's policy requires: the operator approves for
//! organizations with `Operator` custody, and waits, `AwaitingApprovals`, for the others)
//! and every node that holds it has left it (deleted its data through the admin API). The
//! steps are chosen by `decide::channel_delete`.

use crate::context::{Context, Error, Reported, Result};
use crate::decide::channel::Awaiting;
use crate::decide::channel_delete::{
    awaiting_verdict, next_step, DeletionObserved, DeletionStep, Holder,
};
use crate::decide::Verdict;
use crate::reach;
use crate::retire_proposal::{self, Retiring};
use crate::world;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use tally_api::channel::Channel;
use tally_protocol::api::ChannelInfo;
use tally_protocol::proposal::Change;

/// Reports `verdict` and keeps the finalizer (the controller looks again later).
async fn hold(
    ch: &Channel,
    ctx: &Context,
    verdict: Verdict,
    awaiting: Option<&Awaiting>,
) -> Result<Action> {
    let mut status = ch.current_status();
    status.pending_change = awaiting
        .filter(|a| !a.proposal.is_empty())
        .map(Awaiting::pending_change);
    ctx.report(ch, &verdict, status).await?;
    Err(Error::Held(verdict.message))
}

pub async fn cleanup(ch: &Channel, ctx: &Context) -> Result<Action> {
    let ns = ch.namespace().unwrap_or_default();
    let name = ch.name_any();
    let w = match world::plan_or_verdict(ctx, &ns, &ch.spec.consortium).await? {
        Ok(w) => w,
        Err(v) => {
            // Without a plan (the consortium is going too) no node can be reached: the
            // channel's data stays on the nodes' volumes, which go with their Peers.
            tracing::warn!(channel = %name, reason = %v.reason, "channel deleted without a plan: its nodes were not asked to leave it");
            return Ok(Action::await_change());
        }
    };
    let mut observed = DeletionObserved::default();
    let mut reached = Vec::new();
    for n in w.plan.nodes.iter().filter(|n| n.hosted()) {
        let Some(at) = reach::locate(ctx, &ns, n).await? else {
            if n.channels.contains(&name) {
                observed.unreachable.push(format!("{} (no pod)", n.name));
            }
            continue;
        };
        let admin = reach::admin(ctx, &w.plan, n, &at)?;
        match admin.channel(&name).await {
            Ok(Some(info)) => {
                observed.holders.push(Holder {
                    node: n.name.clone(),
                    retired: info.retired.is_some(),
                });
                reached.push((n, at, admin, info));
            }
            Ok(None) => {}
            Err(e) => observed.unreachable.push(format!("{} ({e})", n.name)),
        }
    }
    match next_step(&observed, &name) {
        DeletionStep::Done => {
            ctx.event(
                ch,
                false,
                "Deleted",
                "Leave",
                format!("channel {name} is retired and no node holds it any more"),
            )
            .await;
            Ok(Action::await_change())
        }
        DeletionStep::Wait(v) => hold(ch, ctx, v, None).await,
        DeletionStep::Leave(nodes) => {
            let mut refused = Vec::new();
            for (n, _, admin, _) in reached.iter().filter(|r| nodes.contains(&r.0.name)) {
                match admin.leave_channel(&name).await {
                    Ok(_) => {
                        ctx.event(
                            ch,
                            false,
                            "NodeLeft",
                            "Leave",
                            format!("{} left channel {name} and deleted its data", n.name),
                        )
                        .await
                    }
                    Err(e) => refused.push(format!("{} ({e})", n.name)),
                }
            }
            let waiting: Vec<String> = observed
                .holders
                .iter()
                .filter(|h| !h.retired)
                .map(|h| format!("{} (retirement not applied yet)", h.node))
                .chain(refused)
                .collect();
            if waiting.is_empty() {
                return Ok(Action::await_change());
            }
            let v = Verdict::progressing(
                "Deleting",
                format!(
                    "channel {name} is retired; waiting for {} to leave it",
                    waiting.join(", ")
                ),
            );
            hold(ch, ctx, v, None).await
        }
        DeletionStep::Retire => {
            let infos: Vec<&ChannelInfo> = reached.iter().map(|r| &r.3).collect();
            retire(ch, ctx, &w, &reached, &infos).await
        }
    }
}

type Holding<'a> = (
    &'a tally_planner::NodePlan,
    reach::Reached,
    tally_client::AdminClient,
    ChannelInfo,
);

/// Proposes the channel's retirement (or approves the open proposal) for the organizations
/// the operator signs for.
async fn retire(
    ch: &Channel,
    ctx: &Context,
    w: &world::World,
    reached: &[Holding<'_>],
    infos: &[&ChannelInfo],
) -> Result<Action> {
    let name = ch.name_any();
    let Some(src) = infos
        .iter()
        .max_by_key(|i| (i.status.config_sequence, i.status.height))
    else {
        return Ok(Action::await_change());
    };
    let nodes: Vec<_> = reached.iter().map(|(n, at, _, _)| (*n, at)).collect();
    let v = match retire_proposal::propose(ctx, w, src, &nodes, &Change::RetireChannel).await? {
        Retiring::Committed => {
            ctx.event(
                ch,
                false,
                "Retired",
                "Propose",
                format!("channel {name} retired by an approved proposal; its nodes leave it next"),
            )
            .await;
            Verdict::progressing(
                "Deleting",
                format!("channel {name} retired; its nodes leave it next"),
            )
        }
        Retiring::Awaiting(a, new) => {
            if new {
                ctx.event(
                    ch,
                    false,
                    "AwaitingApprovals",
                    "Propose",
                    format!(
                        "proposed the retirement of channel {name} as {}: {} approvals, missing [{}]",
                        a.proposal,
                        a.count(),
                        a.missing.join(", ")
                    ),
                )
                .await;
            }
            return hold(ch, ctx, awaiting_verdict(&name, &a), Some(&a)).await;
        }
        Retiring::NobodyToSign(a) => {
            return hold(ch, ctx, awaiting_verdict(&name, &a), Some(&a)).await
        }
        Retiring::Refused(why) => Verdict::degraded("RetirementRejected", why),
        Retiring::NotYet(last) => Verdict::progressing(
            "Deleting",
            format!(
                "channel {name} is being deleted: its retirement could not be proposed yet: {last}"
            ),
        ),
    };
    hold(ch, ctx, v, None).await
}
