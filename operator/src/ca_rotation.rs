//! Rotating an organization's generated CA (`ca.rotate`): what the rotation keeps in the CA
//! Secret, how the plan's channels trust both CAs while it runs, what is observed for its
//! choice ([`crate::decide::ca_rotation`]) and the one Secret write each step is.
//!
//! The Secret holds the issuing CA in `tls.crt`/`tls.key` as always; during `AddingCa` the new
//! CA waits in `next.crt`/`next.key`, during `Reissuing` the old certificate stays in
//! `previous.crt` (its key is dropped: nothing is issued from it any more). Every step is one
//! write conditioned on the Secret's resourceVersion, so a stale read or a second replica
//! never moves the rotation twice, and a restarted operator reads where it was.

use crate::context::{Context, Error, Result};
use crate::decide::ca_rotation::{
    decide, phase_of, ChannelTrust, NodeCa, RotationAction, RotationObserved, SecretState,
};
use crate::reach;
use crate::world::{secret_text, World};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};
use tally_api::consortium::{CaRotationPhase, CaRotationStatus, Consortium};
use tally_planner::Plan;
use tally_protocol::identity::{fingerprint, pem_to_der, OrgCa};

/// Keys of the CA Secret during a rotation.
pub const NEXT_CRT: &str = "next.crt";
pub const NEXT_KEY: &str = "next.key";
pub const PREVIOUS_CRT: &str = "previous.crt";
/// The `ca.rotate` value of the last rotation started, or the one the CA was made with.
pub const ANNOTATION_TOKEN: &str = "tally.dev/ca-rotation";
/// The phase last recorded.
pub const ANNOTATION_PHASE: &str = "tally.dev/ca-rotation-phase";

/// The CAs a channel lists for an organization while its CA Secret is mid-rotation: the old CA
/// first and the new one beside it, the same in `AddingCa` and `Reissuing` so that the swap of
/// the issuing CA changes no channel configuration. `None` outside those phases.
pub fn channel_trust(s: &Secret) -> Option<(String, Vec<String>)> {
    let current = secret_text(s, "tls.crt")?;
    if let Some(next) = secret_text(s, NEXT_CRT) {
        return Some((current, vec![next]));
    }
    let previous = secret_text(s, PREVIOUS_CRT)?;
    Some((previous, vec![current]))
}

/// Makes every planned channel trust both CAs of the organizations mid-rotation (`trust`, by
/// organization, from [`channel_trust`]).
pub fn widen(plan: &mut Plan, trust: &BTreeMap<String, (String, Vec<String>)>) {
    for ch in &mut plan.channels {
        for m in &mut ch.genesis.members {
            if let Some((first, extra)) = trust.get(&m.name) {
                m.ca_pem = first.clone();
                m.extra_cas = extra.clone();
            }
        }
    }
}

fn fp_of(pem: &str) -> Option<String> {
    Some(fingerprint(&pem_to_der(pem).ok()?).to_hex())
}

fn state_of(s: &Secret) -> SecretState {
    let ann = |k: &str| s.annotations().get(k).cloned();
    SecretState {
        token: ann(ANNOTATION_TOKEN),
        phase: ann(ANNOTATION_PHASE).and_then(|p| CaRotationPhase::parse(&p)),
        current: secret_text(s, "tls.crt")
            .and_then(|p| fp_of(&p))
            .unwrap_or_default(),
        next: secret_text(s, NEXT_CRT).and_then(|p| fp_of(&p)),
        previous: secret_text(s, PREVIOUS_CRT).and_then(|p| fp_of(&p)),
    }
}

/// What every node of each channel of `org` lists as `org`'s CAs, asked through the client API
/// of every hosted node of the channel that answers.
async fn channel_trusts(ctx: &Context, w: &World, org: &str) -> Result<Vec<ChannelTrust>> {
    let ns = &w.plan.namespace;
    let mut out = Vec::new();
    for ch in &w.plan.channels {
        if ch.genesis.member(org).is_none() {
            continue;
        }
        let mut answers = Vec::new();
        for n in w
            .plan
            .nodes
            .iter()
            .filter(|n| n.hosted() && n.channels.contains(&ch.name))
        {
            let Some(at) = reach::locate(ctx, ns, n).await? else {
                continue;
            };
            let Ok(api) = reach::api(ctx, &w.plan, n, &at) else {
                continue;
            };
            match api.config(&ch.name).await {
                Ok(config) => {
                    if let Some(m) = config.member(org) {
                        answers.push(m.ca_pems().filter_map(|p| fp_of(p)).collect());
                    } else {
                        answers.push(BTreeSet::new());
                    }
                }
                Err(e) => {
                    tracing::debug!(node = %n.name, channel = %ch.name, error = %e, "no channel configuration for the CA rotation")
                }
            }
        }
        out.push(ChannelTrust {
            channel: ch.name.clone(),
            answers,
        });
    }
    Ok(out)
}

/// Whether each hosted node of `org` completes a handshake that trusts the issuing CA alone.
async fn node_cas(ctx: &Context, w: &World, org: &str) -> Result<Vec<NodeCa>> {
    let ns = &w.plan.namespace;
    let mut out = Vec::new();
    for n in w.plan.nodes.iter().filter(|n| n.hosted() && n.org == org) {
        let not_yet = match reach::locate(ctx, ns, n).await? {
            None => Some("no pod".to_string()),
            Some(at) if !at.pod_ready => Some("pod not ready".to_string()),
            Some(at) => match reach::api(ctx, &w.plan, n, &at) {
                Err(e) => Some(e.to_string()),
                Ok(api) => api.healthy().await.err().map(|e| e.to_string()),
            },
        };
        out.push(NodeCa {
            name: n.name.clone(),
            not_yet,
        });
    }
    Ok(out)
}

fn bytes(s: &str) -> serde_json::Value {
    serde_json::to_value(ByteString(s.as_bytes().to_vec())).unwrap_or_default()
}

/// Moves the rotation of `org`'s CA (Secret `secret`) one step if it can, and says where it
/// stands. `requested`: the organization's `ca.rotate`.
pub async fn advance(
    ctx: &Context,
    cons: &Consortium,
    w: &World,
    org: &str,
    requested: Option<&str>,
    secret: &Secret,
) -> Result<Option<CaRotationStatus>> {
    let state = state_of(secret);
    let mut o = RotationObserved {
        requested: requested.map(String::from),
        secret: state.clone(),
        ..Default::default()
    };
    match phase_of(&state) {
        Some(CaRotationPhase::AddingCa | CaRotationPhase::RemovingOldCa) => {
            o.channels = channel_trusts(ctx, w, org).await?;
        }
        Some(CaRotationPhase::Reissuing) => o.nodes = node_cas(ctx, w, org).await?,
        Some(CaRotationPhase::Done) | None => {}
    }
    let d = decide(&o);
    let Some(action) = d.action else {
        return Ok(d.status);
    };
    let phase = d.status.as_ref().map(|s| s.phase);
    let text = |k: &str| secret_text(secret, k).unwrap_or_default();
    let (data, event) = match action {
        RotationAction::Start => {
            let ca = OrgCa::generate(org).map_err(|e| Error::Internal(e.to_string()))?;
            let data = serde_json::json!({
                NEXT_CRT: bytes(&ca.cert_pem()),
                NEXT_KEY: bytes(&ca.key_pem()),
            });
            let fp = fp_of(&ca.cert_pem()).unwrap_or_default();
            (
                data,
                format!(
                    "CA rotation {:?} of organization {org}: made the new CA {}; adding it to the organization's channels",
                    requested.unwrap_or_default(),
                    &fp[..fp.len().min(12)]
                ),
            )
        }
        RotationAction::Swap => (
            serde_json::json!({
                "tls.crt": bytes(&text(NEXT_CRT)),
                "tls.key": bytes(&text(NEXT_KEY)),
                PREVIOUS_CRT: bytes(&text("tls.crt")),
                NEXT_CRT: null,
                NEXT_KEY: null,
            }),
            format!("CA rotation of organization {org}: every channel trusts both CAs; identities are re-issued from the new CA"),
        ),
        RotationAction::DropPrevious => (
            serde_json::json!({ PREVIOUS_CRT: null }),
            format!("CA rotation of organization {org}: every node serves a certificate of the new CA; removing the old CA from the channels"),
        ),
        RotationAction::Finish => (
            serde_json::json!({}),
            format!("CA rotation of organization {org} done: every channel trusts only the new CA"),
        ),
    };
    let mut annotations = serde_json::Map::new();
    if let Some(p) = phase {
        annotations.insert(ANNOTATION_PHASE.into(), p.as_str().into());
    }
    if action == RotationAction::Start {
        annotations.insert(
            ANNOTATION_TOKEN.into(),
            requested.unwrap_or_default().into(),
        );
    }
    // The resourceVersion makes the write conditional: on a Secret changed since it was read
    // (a stale store, another writer) it fails and the next reconcile decides afresh.
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": secret.resource_version(),
            "annotations": annotations,
        },
        "data": data,
    });
    let ns = secret.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    ctx.fence.check()?;
    match api
        .patch(
            &secret.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(organization = %org, step = ?action, "CA rotation moved on");
            ctx.event(cons, false, "CaRotation", "RotateCa", event)
                .await;
            Ok(d.status)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::debug!(organization = %org, "CA Secret changed since read; the rotation decides again");
            Ok(d.status)
        }
        Err(e) => Err(e.into()),
    }
}
