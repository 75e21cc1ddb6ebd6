//! `Consortium` → one CA Secret per organization (generated once, never overwritten nor
//! replaced once lost, or the tenant's own checked), the admin and client identities the
//! operator issues from them, and a finalizer that holds deletion while peers or channels
//! still use the consortium and keeps the CAs while ledger volumes remain.

use crate::builders::{self, OrgSecret};
use crate::ca_custody::{self, MissingCa};
use crate::ca_rotation;
use crate::context::{owner_of, Context, Error, Reported, Result, Verdict};
use crate::names::{self, FINALIZER};
use crate::world::{self, secret_text};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::ResourceExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use tally_api::consortium::{
    CaMode, CaRotationPhase, Consortium, IdentityStatus, Organization, OrganizationStatus,
};
use tally_api::{channel::Channel, peer::Peer};
use tally_protocol::identity::{inspect, OrgCa, TrustedCa};

pub async fn reconcile(obj: Arc<Consortium>, ctx: Arc<Context>) -> Result<Action> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<Consortium> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, obj, |ev| async {
        match ev {
            Finalizer::Apply(c) => apply(&c, &ctx).await,
            Finalizer::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
    .map_err(crate::context::from_finalizer)
}

/// The CA certificate in an organization's CA Secret.
fn read_ca(s: &Secret, ns: &str, sname: &str, org: &str) -> Result<TrustedCa> {
    let cert = secret_text(s, "tls.crt").ok_or_else(|| {
        Error::Invalid(format!(
            "Secret {ns}/{sname} (CA of organization {org}) has no tls.crt"
        ))
    })?;
    TrustedCa::from_pem(org, &cert).map_err(|e| {
        Error::Invalid(format!(
            "Secret {ns}/{sname} (CA of organization {org}): {e}"
        ))
    })
}

/// Makes or checks the CA of one organization; returns its Secret's name and certificate.
/// `known`: the organizations the status already records (a CA recorded there is never
/// made again).
async fn ensure_ca(
    ctx: &Context,
    cons: &Consortium,
    org: &Organization,
    known: &[OrganizationStatus],
) -> Result<(String, TrustedCa)> {
    let (mode, org) = (org.ca.mode, org.name.as_str());
    let ns = cons.namespace().unwrap_or_default();
    let name = cons.name_any();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let sname = world::ca_secret_name(cons, org);
    if let Some(s) = world::ca_secret(ctx, &ns, &sname).await? {
        return Ok((sname.clone(), read_ca(&s, &ns, &sname, org)?));
    }
    if mode == CaMode::Secret {
        return Err(Error::Invalid(format!(
            "organization {org} brings its CA in Secret {ns}/{sname}, which does not exist"
        )));
    }
    if let MissingCa::Refuse(why) = ca_custody::when_missing(org, &ns, &sname, known) {
        return Err(Error::CaLost(why));
    }
    let ca = OrgCa::generate(org).map_err(|e| Error::Internal(e.to_string()))?;
    let owner = owner_of(cons);
    let at = OrgSecret {
        name: &sname,
        namespace: &ns,
        org,
        consortium: &name,
        owner: &owner,
    };
    let mut secret =
        builders::ca_secret(&at, &ca.cert_pem(), &ca.key_pem(), world::issued_at(cons));
    // A CA made while `ca.rotate` is set is already the one that value asks for.
    if let Some(token) = rotate_of(cons, org) {
        secret
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ca_rotation::ANNOTATION_TOKEN.into(), token.to_string());
    }
    // Create, never apply: a CA is made once, and a second writer must not replace it.
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            ctx.event(
                cons,
                false,
                "CaCreated",
                "CreateCa",
                format!("created the CA of organization {org} in Secret {sname}"),
            )
            .await;
            Ok((sname, ca.trusted()))
        }
        // Someone else's CA won: report that one, not the one just thrown away.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let s = secrets.get(&sname).await?;
            Ok((sname.clone(), read_ca(&s, &ns, &sname, org)?))
        }
        Err(e) => Err(e.into()),
    }
}

async fn apply(cons: &Consortium, ctx: &Context) -> Result<Action> {
    let ns = cons.namespace().unwrap_or_default();
    let name = cons.name_any();
    let mut orgs = Vec::new();
    let mut problems: Vec<Error> = Vec::new();
    let known = cons
        .status
        .as_ref()
        .map(|s| s.organizations.as_slice())
        .unwrap_or_default();
    for org in &cons.spec.organizations {
        match ensure_ca(ctx, cons, org, known).await {
            Ok((sname, ca)) => {
                let fp = ca.fingerprint().to_string();
                let not_after = inspect(&ca.der)
                    .ok()
                    .and_then(|i| jiff::Timestamp::from_second(i.not_after).ok())
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                orgs.push(OrganizationStatus {
                    name: org.name.clone(),
                    ca_fingerprint: fp,
                    ca_secret: sname,
                    ca_not_after: not_after,
                    // Until this reconcile looks at the rotation again, what it last said.
                    ca_rotation: known
                        .iter()
                        .find(|o| o.name == org.name)
                        .and_then(|o| o.ca_rotation.clone()),
                });
            }
            Err(e) if e.tenant_must_fix() => {
                // What the status knew of this organization's CA is kept: forgetting its
                // fingerprint would let a later reconcile make a new CA in its place.
                orgs.extend(known.iter().find(|o| o.name == org.name).cloned());
                problems.push(e);
            }
            Err(e) => return Err(e),
        }
    }
    let mut identities = None;
    let mut renewal = None;
    let verdict = if let Some(first) = problems.first() {
        let all: Vec<String> = problems.iter().map(Error::to_string).collect();
        Verdict::degraded(first.reason(), all.join("; "))
    } else {
        match world::plan_or_verdict(ctx, &ns, &name).await? {
            Err(v) => v,
            Ok(w) => {
                identities = Some(identity_statuses(&w.plan));
                renewal = world::until_renewal(&w.plan);
                let owner = owner_of(cons);
                let mut bodies = Vec::new();
                for o in &w.plan.organizations {
                    // An organization that approves for itself keeps its admin key out of the
                    // cluster: no admin Secret, and one written before is removed.
                    let admin = if w.signs_for(&o.name) {
                        &o.admin
                    } else {
                        let sname = names::identity_secret(&name, &o.name, "admin");
                        remove_secret(ctx, &ns, &sname).await?;
                        &None
                    };
                    for (role, id) in [("admin", admin), ("client", &o.client)] {
                        let Some(id) = id else { continue };
                        let sname = names::identity_secret(&name, &o.name, role);
                        let at = OrgSecret {
                            name: &sname,
                            namespace: &ns,
                            org: &o.name,
                            consortium: &name,
                            owner: &owner,
                        };
                        let body = builders::identity_secret(&at, id, &o.ca_pem);
                        bodies.push((sname, body));
                    }
                }
                // Independent objects: applied together, one round trip instead of four.
                futures_util::future::try_join_all(
                    bodies
                        .iter()
                        .map(|(sname, body)| ctx.apply::<Secret>(&ns, sname, body)),
                )
                .await?;
                let rotating = rotate_cas(ctx, cons, &w, &mut orgs).await?;
                if rotating.is_empty() {
                    Verdict::ready(
                        "Ready",
                        format!("{} organizations with their CAs", orgs.len()),
                    )
                } else {
                    Verdict::progressing("RotatingCa", rotating.join("; "))
                }
            }
        }
    };
    let mut status = cons.current_status();
    status.organization_count = orgs.len() as u32;
    status.organizations = orgs;
    if let Some(ids) = identities {
        status.identities = ids;
    }
    ctx.report(cons, &verdict, status).await?;
    Ok(ctx.parked.after_until(cons, &verdict, renewal))
}

/// The organization's `ca.rotate`, if set.
fn rotate_of<'a>(cons: &'a Consortium, org: &str) -> Option<&'a str> {
    cons.spec
        .organizations
        .iter()
        .find(|o| o.name == org)
        .and_then(|o| o.ca.rotate.as_deref())
}

/// Moves each generated CA's rotation on by a step where it can, recording where each stands
/// in `orgs`; returns, for every rotation still running, a sentence on what it waits for.
async fn rotate_cas(
    ctx: &Context,
    cons: &Consortium,
    w: &world::World,
    orgs: &mut [OrganizationStatus],
) -> Result<Vec<String>> {
    let ns = cons.namespace().unwrap_or_default();
    let mut running = Vec::new();
    for org in &cons.spec.organizations {
        if org.ca.mode != CaMode::Generate {
            continue; // `ca.rotate` is refused by the schema for a CA the tenant brings
        }
        let sname = world::ca_secret_name(cons, &org.name);
        let Some(secret) = world::ca_secret(ctx, &ns, &sname).await? else {
            continue;
        };
        let status =
            ca_rotation::advance(ctx, cons, w, &org.name, org.ca.rotate.as_deref(), &secret)
                .await?;
        if let Some(s) = &status {
            if s.phase != CaRotationPhase::Done {
                running.push(format!(
                    "organization {}: CA rotation {:?} {}: {}",
                    org.name,
                    s.requested,
                    s.phase.as_str(),
                    s.message
                ));
            }
        }
        if let Some(o) = orgs.iter_mut().find(|o| o.name == org.name) {
            o.ca_rotation = status;
        }
    }
    Ok(running)
}

/// Expiry and renewal time of every identity the plan holds, in the plan's order.
fn identity_statuses(plan: &tally_planner::Plan) -> Vec<IdentityStatus> {
    let rfc3339 = |s: i64| {
        jiff::Timestamp::from_second(s)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    let orgs = plan.organizations.iter().flat_map(|o| {
        [("admin", &o.admin), ("client", &o.client)]
            .into_iter()
            .filter_map(move |(role, id)| Some((o.name.as_str(), role, role, id.as_ref()?)))
    });
    let nodes = plan.nodes.iter().filter_map(|n| {
        Some((
            n.org.as_str(),
            "node",
            n.name.as_str(),
            n.identity.as_ref()?,
        ))
    });
    orgs.chain(nodes)
        .filter_map(|(org, role, name, id)| {
            let not_after = inspect(&id.cert_der).ok()?.not_after;
            Some(IdentityStatus {
                name: tally_planner::identity_key(org, role, name),
                not_after: rfc3339(not_after),
                renew_at: rfc3339(not_after - plan.lifetimes.renew_before_s),
            })
        })
        .collect()
}

/// Holds deletion while peers or channels of the consortium remain; once they are gone, keeps
/// the CAs if ledger volumes remain, then lets go.
async fn cleanup(cons: &Consortium, ctx: &Context) -> Result<Action> {
    let ns = cons.namespace().unwrap_or_default();
    let name = cons.name_any();
    let lp = ListParams::default();
    let all_peers = Api::<Peer>::namespaced(ctx.client.clone(), &ns)
        .list(&lp)
        .await?
        .items;
    let peers: Vec<String> = all_peers
        .iter()
        .filter(|p| p.spec.consortium == name)
        .map(|p| p.name_any())
        .collect();
    let channels: Vec<String> = Api::<Channel>::namespaced(ctx.client.clone(), &ns)
        .list(&lp)
        .await?
        .items
        .into_iter()
        .filter(|c| c.spec.consortium == name)
        .map(|c| c.name_any())
        .collect();
    if peers.is_empty() && channels.is_empty() {
        let live = all_peers.iter().map(|p| p.name_any()).collect();
        keep_cas_while_volumes_remain(cons, ctx, &live).await?;
        ctx.event(
            cons,
            false,
            "Deleted",
            "Delete",
            "no peers or channels left; releasing the consortium".into(),
        )
        .await;
        return Ok(Action::await_change());
    }
    let message = format!(
        "consortium {name} is still used by peers [{}] and channels [{}]; delete them first",
        peers.join(", "),
        channels.join(", ")
    );
    let held = Verdict::degraded("DeletionBlocked", message.clone());
    // Only the conditions change while deletion is held.
    let status = cons.status.clone().unwrap_or_default();
    ctx.report(cons, &held, status).await?;
    Err(Error::Held(message))
}

/// Takes the consortium's ownership off its generated CA Secrets when ledger volumes that no
/// live Peer holds remain, so that garbage collection leaves the CAs those ledgers need.
async fn keep_cas_while_volumes_remain(
    cons: &Consortium,
    ctx: &Context,
    live_peers: &BTreeSet<String>,
) -> Result<()> {
    let ns = cons.namespace().unwrap_or_default();
    let selector = format!("{}=tally-node", names::LABEL_NAME);
    let claims: Vec<(String, Option<String>)> =
        Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .iter()
            .map(|c| (c.name_any(), c.labels().get(names::LABEL_PEER).cloned()))
            .collect();
    let volumes = ca_custody::orphan_volumes(&claims, live_peers);
    if volumes.is_empty() {
        return Ok(());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let disown = Patch::Merge(serde_json::json!({"metadata": {"ownerReferences": null}}));
    let mut kept = Vec::new();
    for org in &cons.spec.organizations {
        if org.ca.mode == CaMode::Secret {
            continue; // the tenant's own Secret was never the consortium's
        }
        let sname = world::ca_secret_name(cons, &org.name);
        match secrets
            .patch(&sname, &PatchParams::default(), &disown)
            .await
        {
            Ok(_) => kept.push(sname),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    ctx.event(
        cons,
        true,
        "CaKept",
        "KeepCa",
        format!(
            "ledger volumes [{}] remain, so the CA Secrets [{}] are kept after the consortium \
             goes; delete them (label {}={}) once those volumes are gone for good",
            volumes.join(", "),
            kept.join(", "),
            names::LABEL_CONSORTIUM,
            cons.name_any()
        ),
    )
    .await;
    Ok(())
}

/// Deletes the Secret `sname` if it may exist (absent from a listed store means absent).
async fn remove_secret(ctx: &Context, ns: &str, sname: &str) -> Result<()> {
    let may_exist = ctx
        .shared
        .for_ns(ns)
        .is_none_or(|s| s.children.holds("Secret", ns, sname));
    if !may_exist {
        return Ok(());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    match secrets.delete(sname, &Default::default()).await {
        Ok(_) => {
            tracing::info!(namespace = %ns, secret = %sname, "removed the admin Secret of an organization that approves for itself");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
