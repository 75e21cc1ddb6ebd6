//! Proposing a retirement when its resource is deleted (a `Channel`, a `Chaincode`): through
//! the first node that takes it, approved for the organizations the operator signs for. What
//! it came to is for the caller to report, in its own words.

use crate::channel::{by_proposal, ChangeFailure, Proposed};
use crate::context::{Context, Result};
use crate::decide::channel::Awaiting;
use crate::reach;
use crate::world;
use tally_planner::NodePlan;
use tally_protocol::api::ChannelInfo;
use tally_protocol::proposal::Change;
use tally_protocol::Identity;

pub enum Retiring {
    /// Approved and applied on the ledger.
    Committed,
    /// On the ledger, waiting for organizations the operator does not sign for; `true` when
    /// this call made the proposal.
    Awaiting(Awaiting, bool),
    /// The operator signs for none of the organizations that may approve: nothing proposed.
    NobodyToSign(Awaiting),
    /// The channel refused it (its reason).
    Refused(String),
    /// No node took it yet (the last reason).
    NotYet(String),
}

/// Proposes `change` on the base `src` (the most advanced configuration the nodes showed)
/// through the first of `nodes` that takes it.
pub async fn propose(
    ctx: &Context,
    w: &world::World,
    src: &ChannelInfo,
    nodes: &[(&NodePlan, &reach::Reached)],
    change: &Change,
) -> Result<Retiring> {
    let eligible = src.config.admin_orgs();
    let admins: Vec<Identity> = eligible
        .iter()
        .filter(|o| w.signs_for(o))
        .filter_map(|o| w.plan.org(o).and_then(|p| p.admin.clone()))
        .collect();
    if admins.is_empty() {
        return Ok(Retiring::NobodyToSign(Awaiting {
            proposal: String::new(),
            needed: src.config.approvals_needed(),
            approved: Vec::new(),
            missing: eligible,
        }));
    }
    let mut last = String::from("no node took the proposal");
    for &(n, at) in nodes {
        let api = reach::api(ctx, &w.plan, n, at)?;
        match by_proposal(&api, &admins, src, change).await {
            Ok(Ok(Proposed::Committed(_))) => return Ok(Retiring::Committed),
            Ok(Ok(Proposed::Awaiting(a, new))) => return Ok(Retiring::Awaiting(a, new)),
            Ok(Err(ChangeFailure::Refused(why))) => return Ok(Retiring::Refused(why)),
            Ok(Err(ChangeFailure::Unreachable(why))) => last = format!("{}: {why}", n.name),
            Err(e) => last = format!("{}: {e}", n.name),
        }
    }
    Ok(Retiring::NotYet(last))
}
