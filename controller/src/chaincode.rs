//! `Chaincode` → the module checked against its pinned sha256, installed once on the channel
//! with its definition (the transaction carries the module, so every node receives the exact
//! bytes through the ledger), approved by each member organization whose admin key the
//! operator holds, and committed once the channel's lifecycle policy is met. Status shows each
//! organization's approval as the ledger records it (`GET /v1/channels/{ch}/chaincodes`).
//!
//! The ledger requires approvals from a majority of the channel's member organizations; a
//! `Chaincode`'s or `Channel`'s approval rule asking for more is an additional floor the
//! operator waits for before committing.

use crate::context::{Context, Error, Result, Verdict};
use crate::reach;
use crate::world;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tally_client::txs;
use tally_client::{Client, ClientError};
use tally_operator::crd::chaincode::{Chaincode, OrgApproval};
use tally_protocol::chaincode::{ChaincodeDefinition, ChaincodeInfo, PendingDefinition};
use tally_protocol::{Hash, InitCall, Receipt, TxStatus};

pub async fn reconcile(cc: Arc<Chaincode>, ctx: Arc<Context>) -> Result<Action> {
    if cc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = cc.namespace().unwrap_or_default();
    let mut status = serde_json::json!({"observedGeneration": cc.metadata.generation});
    let verdict = match check_module(&ctx, &cc).await {
        Err(e @ Error::Invalid(_)) => Verdict::degraded(e.reason(), e.to_string()),
        Err(e) => return Err(e),
        Ok(module) => {
            let channel: Option<tally_operator::crd::channel::Channel> =
                Api::namespaced(ctx.client.clone(), &ns)
                    .get_opt(&cc.spec.channel)
                    .await?;
            match channel {
                None => Verdict::progressing(
                    "WaitingForChannel",
                    format!("Channel {ns}/{} does not exist", cc.spec.channel),
                ),
                Some(ch) => match world::plan_or_verdict(&ctx, &ns, &ch.spec.consortium).await? {
                    Err(v) => v,
                    Ok(w) => match lifecycle(&cc, &ctx, &w, &module, &mut status).await {
                        Err(e @ Error::Invalid(_)) => Verdict::degraded(e.reason(), e.to_string()),
                        other => other?,
                    },
                },
            }
        }
    };
    ctx.report(cc.as_ref(), &verdict, status).await?;
    Ok(Action::requeue(verdict.requeue()))
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

/// The definition the resource asks for at `sequence`.
fn desired(cc: &Chaincode, version: &str, module: &[u8], sequence: u64) -> ChaincodeDefinition {
    let init = cc.spec.init.as_ref().map(|i| InitCall {
        function: i.function.clone(),
        args: txs::fields(&i.args),
    });
    txs::chaincode_definition(&cc.spec.name, version, sequence, module, init)
}

/// The committed definition is what the resource asks for (the sequence aside).
fn same(a: &ChaincodeDefinition, b: &ChaincodeDefinition) -> bool {
    (&a.name, &a.version, a.module_hash, &a.init) == (&b.name, &b.version, b.module_hash, &b.init)
}

/// A refusal by the channel is the tenant's to fix (a module the runtime refuses, a name the
/// ledger does not accept); anything else is a node problem, retried.
fn node_error(channel: &str, e: ClientError) -> Error {
    match &e {
        ClientError::Api { status, .. }
            if (400..500).contains(status) && *status != 408 && *status != 429 =>
        {
            Error::Invalid(format!(
                "channel {channel} refused the chaincode transaction: {e}"
            ))
        }
        _ => Error::Node(format!("channel {channel}: {e}")),
    }
}

fn committed(channel: &str, what: &str, r: Receipt) -> Result<()> {
    match r.status {
        TxStatus::Committed => Ok(()),
        TxStatus::Rejected { code, reason } => Err(Error::Invalid(format!(
            "channel {channel} rejected the {what}: {}: {reason}",
            code.as_str()
        ))),
    }
}

async fn chaincode_info(api: &Client, channel: &str, name: &str) -> Result<Option<ChaincodeInfo>> {
    let list = api
        .chaincodes(channel)
        .await
        .map_err(|e| node_error(channel, e))?;
    Ok(list.into_iter().find(|c| c.name == name))
}

async fn lifecycle(
    cc: &Chaincode,
    ctx: &Context,
    w: &world::World,
    module: &[u8],
    status: &mut serde_json::Value,
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
    let held = |org: &String| w.plan.org(org).and_then(|o| o.admin.clone());
    let Some(submitter) = plan.approvers.iter().find_map(held) else {
        return Err(Error::Invalid(
            "no member organization's admin key is held by the operator, so it cannot submit the chaincode lifecycle".into(),
        ));
    };
    let info = chaincode_info(&api, channel, &plan.name).await?;
    let active = info.as_ref().and_then(|i| i.active.clone());
    let sequence = active.as_ref().map_or(1, |d| d.sequence + 1);
    let want = desired(cc, &plan.version, module, sequence);
    if let Some(a) = active.as_ref().filter(|a| same(a, &want)) {
        status["sequence"] = a.sequence.into();
        status["committedVersion"] = a.version.clone().into();
        status["approvals"] = serde_json::to_value(
            plan.approvers
                .iter()
                .map(|o| OrgApproval {
                    organization: o.clone(),
                    approved: true,
                    version: a.version.clone(),
                })
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default();
        return Ok(Verdict::ready(
            "Committed",
            format!("version {} committed as sequence {}", a.version, a.sequence),
        ));
    }
    if let Some(a) = &active {
        status["sequence"] = a.sequence.into();
        status["committedVersion"] = a.version.clone().into();
    }
    let find_pending = |info: &Option<ChaincodeInfo>| -> Option<PendingDefinition> {
        info.as_ref()?
            .pending
            .iter()
            .find(|p| p.definition == want)
            .cloned()
    };
    // Install once: only when the ledger holds no pending definition equal to this one.
    let mut pending = find_pending(&info);
    if pending.is_none() {
        let tx = txs::sign_install(&submitter, channel, want.clone(), module.to_vec());
        let r = api
            .submit_wait(&tx)
            .await
            .map_err(|e| node_error(channel, e))?;
        committed(channel, "install", r)?;
        ctx.event(
            cc,
            false,
            "Installed",
            "Install",
            format!(
                "installed {} version {} as sequence {sequence} ({} bytes)",
                plan.name,
                plan.version,
                module.len()
            ),
        )
        .await;
        pending = find_pending(&chaincode_info(&api, channel, &plan.name).await?);
    }
    let Some(mut pending) = pending else {
        return Ok(Verdict::progressing(
            "Installing",
            format!("waiting for the install of sequence {sequence} to show"),
        ));
    };
    let hash: Hash = want.module_hash;
    let mut approved_now = false;
    for org in &plan.approvers {
        if pending.approvals.contains(org) {
            continue;
        }
        let Some(admin) = held(org) else { continue };
        let tx = txs::sign_approve(&admin, channel, &plan.name, sequence, hash);
        let r = api
            .submit_wait(&tx)
            .await
            .map_err(|e| node_error(channel, e))?;
        committed(channel, &format!("approval of {org}"), r)?;
        approved_now = true;
        ctx.event(
            cc,
            false,
            "Approved",
            "Approve",
            format!(
                "organization {org} approved {} version {} (sequence {sequence})",
                plan.name, plan.version
            ),
        )
        .await;
    }
    if approved_now {
        if let Some(p) = find_pending(&chaincode_info(&api, channel, &plan.name).await?) {
            pending = p;
        }
    }
    let approvals: Vec<OrgApproval> = plan
        .approvers
        .iter()
        .map(|o| {
            let ok = pending.approvals.contains(o);
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
    status["approvals"] = serde_json::to_value(&approvals).unwrap_or_default();
    let have = pending.approvals.len();
    let needed = plan.approvals_needed.max(pending.needed);
    if have < needed {
        return Ok(Verdict::progressing(
            "WaitingForApprovals",
            format!("{have} of {needed} needed approvals"),
        ));
    }
    let tx = txs::sign_commit(&submitter, channel, &plan.name, sequence);
    let r = api
        .submit_wait(&tx)
        .await
        .map_err(|e| node_error(channel, e))?;
    committed(channel, "commit", r)?;
    ctx.event(
        cc,
        false,
        "Committed",
        "Commit",
        format!(
            "committed {} version {} as sequence {sequence}",
            plan.name, plan.version
        ),
    )
    .await;
    status["sequence"] = sequence.into();
    status["committedVersion"] = plan.version.clone().into();
    Ok(Verdict::ready(
        "Committed",
        format!("version {} committed as sequence {sequence}", plan.version),
    ))
}
