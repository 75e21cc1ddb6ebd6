//! One consortium as the cluster holds it: its resources, its organizations' CAs, and the plan
//! the shared planner makes of them. Every controller plans the whole consortium, so the node
//! names, Raft ids, certificates and channel genesis it acts on are the ones `tallyctl up`
//! would compute from the same manifests.

use crate::context::{Context, Error, Result, Verdict};
use crate::stores::{versions, Snapshot};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;
use std::sync::Arc;
pub use tally_api::cluster::{ca_secret_name, secret_text};
use tally_api::consortium::Consortium;
use tally_api::manifest::Resources;
use tally_api::{chaincode::Chaincode, channel::Channel, peer::Peer};
use tally_planner::{identity_key, Addressing, CaInput, Held, Plan, PlanInput, Window};
use tally_protocol::identity::{inspect, pem_to_der, OrgCa};

pub struct World {
    pub consortium: Consortium,
    pub resources: Resources,
    pub plan: Plan,
}

impl World {
    /// Whether the operator votes for `org`: its `approvals` is `Operator` (an organization with
    /// `External` approvals signs its own votes; one outside the consortium is not ours).
    pub fn signs_for(&self, org: &str) -> bool {
        self.consortium
            .spec
            .organizations
            .iter()
            .find(|o| o.name == org)
            .is_some_and(|o| o.approvals == tally_api::consortium::Approvals::Operator)
    }
}

/// Why there is no plan yet.
pub enum NoPlan {
    /// The consortium does not exist (yet).
    NoConsortium,
    /// An organization's CA Secret is not there yet (the Consortium controller makes it).
    WaitingForCa(String),
}

/// Unix second from which the consortium's certificates are valid: fixed by its creation, so
/// re-planning issues the same certificates.
pub fn issued_at(cons: &Consortium) -> i64 {
    cons.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0)
        - 300
}

/// The consortium `name` of `ns` and its resources, listed from the API server (when no
/// controller's stores hold the namespace).
async fn list_snapshot(ctx: &Context, ns: &str, name: &str) -> Result<Option<Snapshot>> {
    let client = &ctx.client;
    let Some(consortium) = Api::<Consortium>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
    else {
        return Ok(None);
    };
    let lp = ListParams::default();
    let ours = |c: &str| c == name;
    let peers: Vec<Peer> = Api::<Peer>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|p| ours(&p.spec.consortium))
        .collect();
    let channels: Vec<Channel> = Api::<Channel>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|c| ours(&c.spec.consortium))
        .collect();
    let channel_names: Vec<String> = channels
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    let chaincodes: Vec<Chaincode> = Api::<Chaincode>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|c| channel_names.contains(&c.spec.channel))
        .collect();
    Ok(Some(Snapshot {
        consortium,
        peers,
        channels,
        chaincodes,
    }))
}

/// Loads the consortium `name` of namespace `ns` (from the controllers' stores when they hold
/// the namespace) and plans it, or reuses its last plan when nothing it was made from changed.
pub async fn load(ctx: &Context, ns: &str, name: &str) -> Result<Result<Arc<World>, NoPlan>> {
    let snapshot = match ctx.shared.for_ns(ns).filter(|s| s.ready()) {
        Some(stores) => stores.snapshot(ns, name),
        None => list_snapshot(ctx, ns, name).await?,
    };
    let Some(Snapshot {
        consortium,
        peers,
        channels,
        chaincodes,
    }) = snapshot
    else {
        return Ok(Err(NoPlan::NoConsortium));
    };

    let mut cas = BTreeMap::new();
    let mut ca_metas = Vec::new();
    let mut rotating = BTreeMap::new();
    for org in &consortium.spec.organizations {
        let sname = ca_secret_name(&consortium, &org.name);
        let Some(s) = ca_secret(ctx, ns, &sname).await? else {
            return Ok(Err(NoPlan::WaitingForCa(format!(
                "Secret {ns}/{sname} with the CA of organization {} does not exist yet",
                org.name
            ))));
        };
        let cert = secret_text(&s, "tls.crt").ok_or_else(|| {
            Error::Invalid(format!(
                "Secret {ns}/{sname} (CA of organization {}) has no tls.crt",
                org.name
            ))
        })?;
        let input = match secret_text(&s, "tls.key") {
            Some(key) => CaInput::Full(Box::new(OrgCa::from_pem(&org.name, &cert, &key).map_err(
                |e| {
                    Error::Invalid(format!(
                        "Secret {ns}/{sname} (CA of organization {}): {e}",
                        org.name
                    ))
                },
            )?)),
            None => CaInput::CertOnly(cert),
        };
        cas.insert(org.name.clone(), input);
        if let Some(trust) = crate::ca_rotation::channel_trust(&s) {
            rotating.insert(org.name.clone(), trust);
        }
        ca_metas.push(s.metadata);
    }
    let identities = identity_secrets(ctx, ns, name).await?;
    let key = (ns.to_string(), name.to_string());
    let made_from = versions(
        std::iter::once(("Consortium", &consortium.metadata))
            .chain(peers.iter().map(|p| ("Peer", &p.metadata)))
            .chain(channels.iter().map(|c| ("Channel", &c.metadata)))
            .chain(chaincodes.iter().map(|c| ("Chaincode", &c.metadata)))
            .chain(ca_metas.iter().map(|m| ("Secret", m)))
            .chain(identities.iter().map(|s| ("Secret", &s.metadata))),
    );
    let now = jiff::Timestamp::now().as_second();
    if let Some(w) = ctx.shared.plan(&key, &made_from) {
        // A plan stays good until its first identity falls due.
        if w.plan.next_renewal.is_none_or(|due| now < due) {
            return Ok(Ok(w));
        }
    }

    let mut resources = Resources {
        consortia: vec![consortium.clone()],
        peers,
        channels,
        chaincodes,
        other: Vec::new(),
        config_maps: Vec::new(),
    };
    // The planner reads a resource without a namespace as `default`, as kubectl would.
    for p in &mut resources.peers {
        p.metadata.namespace.get_or_insert_with(|| ns.to_string());
    }
    let addressing = Addressing::Kubernetes {
        cluster_domain: ctx.settings.cluster_domain.clone(),
    };
    let mut plan = tally_planner::plan(&PlanInput {
        resources: &resources.to_plan(),
        namespace: ns,
        consortium: name,
        cas: &cas,
        addressing: &addressing,
        issued_at: issued_at(&consortium),
        held: &held_in(&identities),
        now: Some(now),
    })
    .map_err(|e| Error::Plan(e.to_string()))?;
    // A CA mid-rotation is trusted beside the other in every channel (see `ca_rotation`).
    crate::ca_rotation::widen(&mut plan, &rotating);
    if !plan.renewed.is_empty() {
        tracing::info!(consortium = %name, namespace = %ns, renewed = ?plan.renewed, "certificates due for renewal issued afresh");
    }
    let w = Arc::new(World {
        consortium,
        resources,
        plan,
    });
    ctx.shared.keep_plan(key, made_from, w.clone());
    Ok(Ok(w))
}

/// The CA Secret `sname` of `ns`: from the store of the Secrets the operator made, else (a
/// tenant's own CA, or a store not filled yet) from the API server.
pub async fn ca_secret(ctx: &Context, ns: &str, sname: &str) -> Result<Option<Secret>> {
    let stored = ctx
        .shared
        .for_ns(ns)
        .and_then(|s| s.children.get::<Secret>(ns, sname));
    if let Some(s) = stored {
        return Ok(Some(s.as_ref().clone()));
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    Ok(secrets.get_opt(sname).await?)
}

/// The node, admin and client Secrets the operator wrote for the consortium (the ones with a
/// `ca.crt` beside the pair; a CA's own Secret has none): their versions say whether a plan is
/// still current, and their certificates what each identity holds.
async fn identity_secrets(ctx: &Context, ns: &str, name: &str) -> Result<Vec<Secret>> {
    let ours = |s: &Secret| {
        s.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::names::LABEL_CONSORTIUM))
            .is_some_and(|c| c == name)
            && secret_text(s, "ca.crt").is_some()
    };
    Ok(
        match ctx
            .shared
            .for_ns(ns)
            .map(|s| s.children)
            .filter(|c| c.ready::<Secret>())
        {
            Some(c) => c
                .secrets
                .state()
                .into_iter()
                .filter(|s| s.metadata.namespace.as_deref() == Some(ns) && ours(s))
                .map(|s| s.as_ref().clone())
                .collect(),
            None => Api::<Secret>::namespaced(ctx.client.clone(), ns)
                .list(
                    &ListParams::default()
                        .labels(&format!("{}={name}", crate::names::LABEL_CONSORTIUM)),
                )
                .await?
                .items
                .into_iter()
                .filter(ours)
                .collect(),
        },
    )
}

/// The validity window each identity holds, read from the certificates in `secrets` (only
/// when planning: a reused plan needs none). An identity without a readable certificate is
/// left out: the planner issues it afresh.
fn held_in(secrets: &[Secret]) -> Held {
    secrets
        .iter()
        .filter_map(|s| {
            let der = pem_to_der(&secret_text(s, "tls.crt")?).ok()?;
            let info = inspect(&der).ok()?;
            Some((
                identity_key(&info.org, info.role.as_str(), &info.common_name),
                Window {
                    not_before: info.not_before,
                    not_after: info.not_after,
                },
            ))
        })
        .collect()
}

/// How long until the plan's first identity falls due for renewal, so a controller comes back
/// then rather than at its usual pace.
pub fn until_renewal(plan: &Plan) -> Option<std::time::Duration> {
    let due = plan.next_renewal?;
    let now = jiff::Timestamp::now().as_second();
    Some(std::time::Duration::from_secs(
        due.saturating_sub(now).max(1) as u64,
    ))
}

/// The plan of the consortium that Channel `channel` of `ns` belongs to, or the verdict that
/// says why there is none yet (the Channel does not exist, or its consortium does not plan).
pub async fn plan_of_channel(
    ctx: &Context,
    ns: &str,
    channel: &str,
) -> Result<Result<Arc<World>, Verdict>> {
    let ch: Option<Channel> = Api::namespaced(ctx.client.clone(), ns)
        .get_opt(channel)
        .await?;
    match ch {
        None => Ok(Err(Verdict::progressing(
            "WaitingForChannel",
            format!("Channel {ns}/{channel} does not exist"),
        ))),
        Some(ch) => plan_or_verdict(ctx, ns, &ch.spec.consortium).await,
    }
}

/// [`load`], with what stops planning turned into the verdict a resource of the consortium
/// reports: `Degraded` for resources or Secrets the tenant must fix, `Progressing` while the
/// consortium or its CAs do not exist yet.
pub async fn plan_or_verdict(
    ctx: &Context,
    ns: &str,
    consortium: &str,
) -> Result<Result<Arc<World>, Verdict>> {
    Ok(match load(ctx, ns, consortium).await {
        Err(e @ (Error::Plan(_) | Error::Invalid(_))) => {
            Err(Verdict::degraded(e.reason(), e.to_string()))
        }
        Err(e) => return Err(e),
        Ok(Err(NoPlan::NoConsortium)) => Err(Verdict::progressing(
            "WaitingForConsortium",
            format!("Consortium {ns}/{consortium} does not exist"),
        )),
        Ok(Err(NoPlan::WaitingForCa(m))) => Err(Verdict::progressing("WaitingForCa", m)),
        Ok(Ok(w)) => Ok(w),
    })
}
