//! `Chaincode` → the module checked against its pinned sha256, approvals of the definition
//! by the member organizations whose admins the operator acts for, and the commit once the
//! channel's lifecycle policy is met. Approvals and the committed definition are ordinary
//! signed transactions under the `_lifecycle/` keys of the channel, so every node holds them
//! and status is read back from the ledger. Execution of the module arrives with the
//! chaincode runtime; this is its lifecycle plumbing.

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
use tally_client::Client;
use tally_operator::crd::chaincode::{Chaincode, OrgApproval};

/// Key of an organization's approval of a definition.
pub fn approval_key(name: &str, version: &str, org: &str) -> String {
    format!("_lifecycle/{name}/approvals/{version}/{org}")
}

/// Key of the committed definition of a chaincode.
pub fn definition_key(name: &str) -> String {
    format!("_lifecycle/{name}/definition")
}

pub async fn reconcile(cc: Arc<Chaincode>, ctx: Arc<Context>) -> Result<Action> {
    if cc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = cc.namespace().unwrap_or_default();
    let mut status = serde_json::json!({"observedGeneration": cc.metadata.generation});
    let verdict = match check_module(&ctx, &cc).await {
        Err(e @ Error::Invalid(_)) => Verdict::degraded(e.reason(), e.to_string()),
        Err(e) => return Err(e),
        Ok(()) => {
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
                    Ok(w) => lifecycle(&cc, &ctx, &w, &mut status).await?,
                },
            }
        }
    };
    ctx.report(cc.as_ref(), &verdict, status).await?;
    Ok(Action::requeue(verdict.requeue()))
}

/// The module in its ConfigMap must hash to the pinned sha256.
async fn check_module(ctx: &Context, cc: &Chaincode) -> Result<()> {
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
    Ok(())
}

async fn lifecycle(
    cc: &Chaincode,
    ctx: &Context,
    w: &world::World,
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
    let node_err = |e: tally_client::ClientError| Error::Node(format!("channel {channel}: {e}"));
    let sha = &cc.spec.source.sha256;
    let mut approvals = Vec::new();
    let mut approved = 0;
    for org in &plan.approvers {
        let key = approval_key(&plan.name, &plan.version, org);
        let mut have = api.get(channel, &key).await.map_err(node_err)?;
        if have.is_none() {
            if let Some(admin) = w.plan.org(org).and_then(|o| o.admin.as_ref()) {
                let tx =
                    txs::sign_writes(admin, channel, vec![txs::put(&key, sha.as_bytes())], false);
                api.submit_wait(&tx).await.map_err(node_err)?;
                ctx.event(
                    cc,
                    false,
                    "Approved",
                    "Approve",
                    format!(
                        "organization {org} approved {} version {}",
                        plan.name, plan.version
                    ),
                )
                .await;
                have = api.get(channel, &key).await.map_err(node_err)?;
            }
        }
        let ok = have
            .as_ref()
            .map(|kv| kv.value == sha.as_bytes())
            .unwrap_or(false);
        approved += usize::from(ok);
        approvals.push(OrgApproval {
            organization: org.clone(),
            approved: ok,
            version: plan.version.clone(),
        });
    }
    status["approvals"] = serde_json::to_value(&approvals).unwrap_or_default();
    if approved < plan.approvals_needed {
        return Ok(Verdict::progressing(
            "WaitingForApprovals",
            format!("{approved} of {} needed approvals", plan.approvals_needed),
        ));
    }
    let def_key = definition_key(&plan.name);
    let current = api.get(channel, &def_key).await.map_err(node_err)?;
    let parse = |v: &[u8]| serde_json::from_slice::<serde_json::Value>(v).unwrap_or_default();
    let committed = current.as_ref().map(|kv| parse(&kv.value));
    let seq = committed
        .as_ref()
        .and_then(|d| d["sequence"].as_u64())
        .unwrap_or(0);
    let same = committed
        .as_ref()
        .map(|d| d["version"] == plan.version.as_str() && d["sha256"] == sha.as_str())
        .unwrap_or(false);
    let mut sequence = seq;
    if !same {
        let committer = plan
            .approvers
            .iter()
            .find_map(|o| w.plan.org(o).and_then(|o| o.admin.clone()))
            .ok_or_else(|| {
                Error::Invalid("no approving organization's CA key is held here".into())
            })?;
        sequence = seq + 1;
        let def = serde_json::json!({"name": plan.name, "version": plan.version, "sha256": sha, "sequence": sequence});
        let tx = txs::sign_writes(
            &committer,
            channel,
            vec![txs::put(&def_key, def.to_string().as_bytes())],
            false,
        );
        api.submit_wait(&tx).await.map_err(node_err)?;
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
    }
    status["sequence"] = sequence.into();
    status["committedVersion"] = plan.version.clone().into();
    Ok(Verdict::ready(
        "Committed",
        format!("version {} committed as sequence {sequence}", plan.version),
    ))
}
