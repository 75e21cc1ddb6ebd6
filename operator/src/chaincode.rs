//! `Chaincode` → the module checked against its pinned sha256, installed once on the channel
//! with its definition (the transaction carries the module, so every node receives the exact
//! bytes through the ledger), then proposed on the ledger as a chaincode definition
//! (`Change::DefineChaincode`, once: an open proposal of the same definition is reused, an
//! expired one proposed again) and approved for each member organization with `Operator`
//! custody whose admin key the operator holds. The definition applies on every node in the
//! block of the approval that meets the channel's chaincode rule (`chaincodeLifecycle`),
//! whoever sends it: `External` organizations approve with `tallyctl proposal approve`. Until
//! then the status is `Progressing/AwaitingApprovals` with approvals n/m, who approved and who
//! is missing.

use crate::context::{Context, Error, Reported, Result, Verdict};
use crate::decide::chaincode_define::awaiting_verdict;
use crate::decide::channel::Awaiting;
use crate::reach;
use crate::world;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tally_api::chaincode::{Chaincode, ChaincodeStatus, OrgApproval};
use tally_client::lifecycle::{self, LifecycleError, Progress, Wanted};
use tally_client::txs;
use tally_client::{Client, ClientError};
use tally_protocol::InitCall;

pub async fn reconcile(cc: Arc<Chaincode>, ctx: Arc<Context>) -> Result<Action> {
    let ns = cc.namespace().unwrap_or_default();
    let api: Api<Chaincode> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, crate::names::FINALIZER, cc, |ev| async {
        match ev {
            Finalizer::Apply(c) => apply(c, &ctx).await,
            // Retire the chaincode on the ledger first (`chaincode_delete.rs`).
            Finalizer::Cleanup(c) => crate::chaincode_delete::cleanup(&c, &ctx).await,
        }
    })
    .await
    .map_err(crate::context::from_finalizer)
}

async fn apply(cc: Arc<Chaincode>, ctx: &Context) -> Result<Action> {
    let ns = cc.namespace().unwrap_or_default();
    let mut status = cc.current_status();
    // Set again below while a definition waits for approvals.
    status.pending_change = None;
    let verdict = match check_module(ctx, &cc).await {
        Err(e @ Error::Invalid(_)) => Verdict::degraded(e.reason(), e.to_string()),
        Err(e) => return Err(e),
        Ok(module) => match world::plan_of_channel(ctx, &ns, &cc.spec.channel).await? {
            Err(v) => v,
            Ok(w) => match lifecycle(&cc, ctx, &w, &module, &mut status).await {
                Err(e @ Error::Invalid(_)) => Verdict::degraded(e.reason(), e.to_string()),
                other => other?,
            },
        },
    };
    ctx.report(cc.as_ref(), &verdict, status).await?;
    Ok(ctx.parked.after(cc.as_ref(), &verdict))
}

/// The module in its ConfigMap, which must hash to the pinned sha256.
async fn check_module(ctx: &Context, cc: &Chaincode) -> Result<Vec<u8>> {
    let ns = cc.namespace().unwrap_or_default();
    let r = &cc.spec.source.config_map;
    let cm: Option<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns)
        .get_opt(&r.name)
        .await?;
    let Some(cm) = cm else {
        return Err(Error::Invalid(format!(
            "spec.source.configMap: ConfigMap {ns}/{} does not exist",
            r.name
        )));
    };
    let bytes = cm
        .binary_data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| b.0.clone())
        .or_else(|| {
            cm.data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .map(|s| s.as_bytes().to_vec())
        })
        .ok_or_else(|| {
            Error::Invalid(format!(
                "spec.source.configMap: ConfigMap {ns}/{} has no key {}",
                r.name, r.key
            ))
        })?;
    let got = hex::encode(Sha256::digest(&bytes));
    if got != cc.spec.source.sha256 {
        return Err(Error::Invalid(format!(
            "spec.source.sha256: the module in ConfigMap {ns}/{} key {} hashes to {got}, not the pinned {}",
            r.name, r.key, cc.spec.source.sha256
        )));
    }
    Ok(bytes)
}

/// A refusal by the channel is the tenant's to fix (a module the runtime refuses, a name the
/// ledger does not accept, an init call that fails); anything else is a node problem, retried.
fn lifecycle_error(e: LifecycleError) -> Error {
    match &e {
        LifecycleError::Node {
            source: ClientError::Api { status, .. },
            ..
        } if (400..500).contains(status) && *status != 408 && *status != 429 => {
            Error::Invalid(e.to_string())
        }
        LifecycleError::Node { .. } => Error::Node(e.to_string()),
        LifecycleError::Rejected { .. }
        | LifecycleError::NoAdmin
        | LifecycleError::DefinitionRejected { .. } => Error::Invalid(e.to_string()),
    }
}

async fn lifecycle(
    cc: &Chaincode,
    ctx: &Context,
    w: &world::World,
    module: &[u8],
    status: &mut ChaincodeStatus,
) -> Result<Verdict> {
    let ns = cc.namespace().unwrap_or_default();
    let Some(plan) = w
        .plan
        .chaincodes
        .iter()
        .find(|p| p.resource == cc.name_any())
    else {
        return Err(Error::Internal(format!(
            "chaincode {} is not planned",
            cc.name_any()
        )));
    };
    let channel = &plan.channel;
    // Any reachable node of the channel takes the transactions.
    let mut api: Option<Client> = None;
    for n in w
        .plan
        .nodes
        .iter()
        .filter(|n| n.hosted() && n.channels.contains(channel))
    {
        if let Some(at) = reach::locate(ctx, &ns, n).await? {
            if at.pod_ready {
                api = Some(reach::api(ctx, &w.plan, n, &at)?);
                break;
            }
        }
    }
    let Some(api) = api else {
        return Ok(Verdict::progressing(
            "WaitingForNodes",
            format!("no node of channel {channel} is ready"),
        ));
    };
    let admins: Vec<(String, tally_protocol::Identity)> = plan
        .approvers
        .iter()
        .filter(|o| w.signs_for(o))
        .filter_map(|o| Some((o.clone(), w.plan.org(o)?.admin.clone()?)))
        .collect();
    let wanted = Wanted {
        channel,
        name: &plan.name,
        version: &plan.version,
        module,
        init: cc.spec.init.as_ref().map(|i| InitCall {
            function: i.function.clone(),
            args: txs::fields(&i.args),
        }),
    };
    let report = lifecycle::ensure(&api, &wanted, &admins)
        .await
        .map_err(lifecycle_error)?;
    for a in &report.actions {
        let (reason, action) = if a.starts_with("installed") {
            ("Installed", "Install")
        } else if a.starts_with("proposed") {
            ("Proposed", "Propose")
        } else {
            ("Approved", "Approve")
        };
        ctx.event(cc, false, reason, action, a.clone()).await;
    }
    let approvals: Vec<OrgApproval> = plan
        .approvers
        .iter()
        .map(|o| {
            let ok = report.approved.contains(o);
            OrgApproval {
                organization: o.clone(),
                approved: ok,
                version: if ok {
                    plan.version.clone()
                } else {
                    String::new()
                },
            }
        })
        .collect();
    status.approvals = approvals;
    Ok(match report.progress {
        Progress::Committed { sequence } => {
            status.sequence = sequence;
            status.committed_version = plan.version.clone();
            Verdict::ready(
                "Committed",
                format!("version {} committed as sequence {sequence}", plan.version),
            )
        }
        Progress::WaitingForApprovals {
            proposal,
            needed,
            missing,
            ..
        } => {
            let a = Awaiting {
                proposal: proposal.map(|h| h.to_hex()).unwrap_or_default(),
                needed,
                approved: report.approved.clone(),
                missing,
            };
            if !a.proposal.is_empty() {
                status.pending_change = Some(a.pending_change());
            }
            awaiting_verdict(channel, &plan.name, &plan.version, &a)
        }
    })
}
