//! `Backup` → one node of the channel streams a consistent copy of its ledger to the
//! repository (the node does the work, off its channel thread, without pausing writes); the
//! operator picks the node, hands it the store's settings from the credentials Secret,
//! follows the run and writes what the node reports into the status. A finished Backup is
//! never run again. With `deletionPolicy: Delete` a finalizer removes the stored backup
//! when the object goes ([`crate::backup_store`]).

use crate::backup_store;
use crate::context::{Context, Error, Result, Verdict};
use crate::reach::{self, Reached};
use crate::world::{self, World};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tally_api::backup::{Backup, BackupPhase, BackupStatus, DeletionPolicy, Destination};
use tally_client::admin::BackupStatus as BackupRun;
use tally_planner::NodePlan;

/// Keeps the stored backup until the operator has removed it (`deletionPolicy: Delete`).
pub const FINALIZER: &str = "tally.dev/backup-data";

/// How often a running backup is looked at.
const POLL: Duration = Duration::from_secs(2);

pub async fn reconcile(b: Arc<Backup>, ctx: Arc<Context>) -> Result<Action> {
    if b.metadata.deletion_timestamp.is_some() {
        return remove(&b, &ctx).await;
    }
    if b.spec.deletion_policy == DeletionPolicy::Delete
        && !b.finalizers().iter().any(|f| f == FINALIZER)
    {
        set_finalizer(&b, &ctx, true).await?;
    }
    let mut status = crate::context::Reported::current_status(b.as_ref());
    let (verdict, again) = match status.phase {
        BackupPhase::Succeeded => (succeeded(&status), None),
        BackupPhase::Failed => (
            Verdict::degraded("BackupFailed", status.error.clone()),
            None,
        ),
        BackupPhase::Pending => match start(&b, &ctx, &mut status).await {
            Ok(v) => (v, Some(POLL)),
            Err(e @ Error::Invalid(_)) => (
                Verdict::degraded(e.reason(), e.to_string()),
                Some(Duration::from_secs(30)),
            ),
            Err(e) => return Err(e),
        },
        BackupPhase::Running => {
            let v = follow(&b, &ctx, &mut status).await?;
            let again = (status.phase == BackupPhase::Running).then_some(POLL);
            (v, again)
        }
    };
    ctx.report(b.as_ref(), &verdict, status).await?;
    Ok(match again {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

fn succeeded(s: &BackupStatus) -> Verdict {
    Verdict::ready(
        "Completed",
        format!(
            "height {} in {} ({} of {} chunks already stored)",
            s.height.unwrap_or(0),
            s.manifest,
            s.chunks_reused.unwrap_or(0),
            s.chunks.unwrap_or(0)
        ),
    )
}

/// The store's settings from the destination's Secret: each key, lowercased, is an option
/// of the store (`AWS_ACCESS_KEY_ID` → `aws_access_key_id`).
pub async fn store_options(
    ctx: &Context,
    ns: &str,
    d: &Destination,
) -> Result<BTreeMap<String, String>> {
    let Some(name) = &d.credentials_secret else {
        return Ok(BTreeMap::new());
    };
    let secret: Option<Secret> = Api::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await?;
    let Some(secret) = secret else {
        return Err(Error::Invalid(format!(
            "destination.credentialsSecret: Secret {ns}/{name} does not exist"
        )));
    };
    let mut out = BTreeMap::new();
    for key in secret.data.iter().flat_map(|d| d.keys()) {
        if let Some(v) = world::secret_text(&secret, key) {
            out.insert(key.to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Ok(out)
}

/// The nodes that may make the backup, best first: ready hosted nodes of the channel whose
/// organization's admin the operator holds, the named node only when one is named, followers
/// before the leader (a backup reads the whole ledger; the leader has the most to do).
async fn candidates<'w>(
    ctx: &Context,
    ns: &str,
    w: &'w World,
    b: &Backup,
) -> Result<Vec<(&'w NodePlan, Reached)>> {
    let channel = &b.spec.channel;
    let mut out = Vec::new();
    for n in w
        .plan
        .hosted_nodes()
        .filter(|n| n.channels.contains(channel))
    {
        if !b.spec.node.is_empty() && n.name != b.spec.node {
            continue;
        }
        if w.plan.org(&n.org).and_then(|o| o.admin.as_ref()).is_none() {
            continue;
        }
        if let Some(at) = reach::locate(ctx, ns, n).await? {
            if at.pod_ready {
                out.push((n, at));
            }
        }
    }
    let mut ranked = Vec::new();
    for (n, at) in out {
        let leading = match reach::admin(ctx, &w.plan, n, &at)?.channel(channel).await {
            Ok(Some(info)) => info.status.leader_id == info.status.node_id,
            _ => true,
        };
        ranked.push((leading, n, at));
    }
    ranked.sort_by_key(|(leading, n, _)| (*leading, n.name.clone()));
    Ok(ranked.into_iter().map(|(_, n, at)| (n, at)).collect())
}

async fn start(b: &Backup, ctx: &Context, status: &mut BackupStatus) -> Result<Verdict> {
    let ns = b.namespace().unwrap_or_default();
    let w = match world::plan_of_channel(ctx, &ns, &b.spec.channel).await? {
        Ok(w) => w,
        Err(v) => return Ok(v),
    };
    let options = store_options(ctx, &ns, &b.spec.destination).await?;
    let nodes = candidates(ctx, &ns, &w, b).await?;
    let Some((node, at)) = nodes.first() else {
        let who = if b.spec.node.is_empty() {
            format!("no ready node of channel {} whose organization's admin the operator holds (organizations with approvals: External make their own backups with tallyctl)", b.spec.channel)
        } else {
            format!("node {} is not a ready node of channel {} whose organization's admin the operator holds", b.spec.node, b.spec.channel)
        };
        return Ok(Verdict::progressing("WaitingForNode", who));
    };
    let admin = reach::admin(ctx, &w.plan, node, at)?;
    match admin
        .start_backup(&b.spec.channel, &b.spec.destination.url, &options)
        .await
    {
        Ok(run) => {
            status.phase = BackupPhase::Running;
            status.node = node.name.clone();
            status.id = run.id.clone();
            status.url = b.spec.destination.url.clone();
            status.started_at = crate::context::now();
            ctx.event(
                b,
                false,
                "Started",
                "Backup",
                format!(
                    "node {} is backing up channel {} to {}",
                    node.name, b.spec.channel, b.spec.destination.url
                ),
            )
            .await;
            Ok(Verdict::progressing(
                "Running",
                format!(
                    "node {} is backing up channel {}",
                    node.name, b.spec.channel
                ),
            ))
        }
        // Another backup of the channel is running on that node: wait for it.
        Err(tally_client::ClientError::Api {
            status: 409,
            message,
            ..
        }) => Ok(Verdict::progressing("WaitingForNode", message)),
        Err(tally_client::ClientError::Api {
            status: 400,
            message,
            ..
        }) => Err(Error::Invalid(format!(
            "destination: node {} refused it: {message}",
            node.name
        ))),
        Err(e) => Err(Error::Node(format!("node {}: {e}", node.name))),
    }
}

/// Copies what the node reports about the run into the status.
fn record(status: &mut BackupStatus, run: &BackupRun) {
    status.height = Some(run.height);
    status.bytes_raw = Some(run.bytes_raw);
    status.bytes_stored = Some(run.bytes_stored);
    status.stored_size = human_bytes(run.bytes_stored);
    status.chunks = Some(run.chunks);
    status.chunks_reused = Some(run.chunks_reused);
    if let Some(m) = &run.manifest {
        status.manifest = m.clone();
    }
    if let Some(f) = run.finished_unix {
        status.duration_seconds = Some(f.saturating_sub(run.started_unix));
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

async fn follow(b: &Backup, ctx: &Context, status: &mut BackupStatus) -> Result<Verdict> {
    let ns = b.namespace().unwrap_or_default();
    let w = match world::plan_of_channel(ctx, &ns, &b.spec.channel).await? {
        Ok(w) => w,
        Err(v) => return Ok(v),
    };
    let node = w.plan.hosted_nodes().find(|n| n.name == status.node);
    let at = match &node {
        Some(n) => reach::locate(ctx, &ns, n).await?,
        None => None,
    };
    let (Some(node), Some(at)) = (node, at) else {
        return Ok(fail(
            status,
            format!("node {} went away during the backup", status.node),
        ));
    };
    let admin = reach::admin(ctx, &w.plan, node, &at)?;
    let run = match admin.backup(&b.spec.channel, &status.id).await {
        Ok(Some(run)) => run,
        Ok(None) => {
            return Ok(fail(
                status,
                format!(
                    "node {} restarted during the backup and forgot it",
                    status.node
                ),
            ))
        }
        Err(e) => return Err(Error::Node(format!("node {}: {e}", status.node))),
    };
    record(status, &run);
    match run.phase.as_str() {
        "Succeeded" => {
            status.phase = BackupPhase::Succeeded;
            status.completed_at = crate::context::now();
            ctx.event(
                b,
                false,
                "Completed",
                "Backup",
                format!(
                    "channel {} at height {} in {}",
                    b.spec.channel, run.height, status.manifest
                ),
            )
            .await;
            Ok(succeeded(status))
        }
        "Failed" => {
            let why = run
                .error
                .clone()
                .unwrap_or_else(|| "the node gave no reason".into());
            ctx.event(b, true, "Failed", "Backup", why.clone()).await;
            Ok(fail(status, why))
        }
        _ => Ok(Verdict::progressing(
            "Running",
            format!(
                "node {}: {} read, {} chunks so far",
                status.node,
                human_bytes(run.bytes_raw),
                run.chunks
            ),
        )),
    }
}

fn fail(status: &mut BackupStatus, why: String) -> Verdict {
    status.phase = BackupPhase::Failed;
    status.completed_at = crate::context::now();
    status.error = why.clone();
    Verdict::degraded("BackupFailed", why)
}

async fn set_finalizer(b: &Backup, ctx: &Context, on: bool) -> Result<()> {
    ctx.fence.check()?;
    let mut list: Vec<String> = b
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if on {
        list.push(FINALIZER.to_string());
    }
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &b.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"finalizers": list, "resourceVersion": b.resource_version()}});
    api.patch(
        &b.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// A deleted Backup: with `Delete`, its manifest and the chunks no other backup in the
/// repository uses are removed first. A backup still running is let finish (its manifest
/// would otherwise appear after the removal).
async fn remove(b: &Backup, ctx: &Context) -> Result<Action> {
    if !b.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let status = crate::context::Reported::current_status(b);
    if status.phase == BackupPhase::Running {
        let mut s = status.clone();
        let _ = follow(b, ctx, &mut s).await;
        if s.phase == BackupPhase::Running {
            return Ok(Action::requeue(POLL));
        }
        let v = if s.phase == BackupPhase::Succeeded {
            succeeded(&s)
        } else {
            Verdict::degraded("BackupFailed", s.error.clone())
        };
        ctx.report(b, &v, s).await?;
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    if b.spec.deletion_policy == DeletionPolicy::Delete && !status.manifest.is_empty() {
        let ns = b.namespace().unwrap_or_default();
        let options = store_options(ctx, &ns, &b.spec.destination).await?;
        let url = b.spec.destination.url.clone();
        // A backup running into the same repository may be about to reuse a chunk that no
        // manifest names yet: removing chunks waits for it.
        let all: Vec<Backup> = Api::namespaced(ctx.client.clone(), &ns)
            .list(&Default::default())
            .await?
            .items;
        if let Some(busy) = all.iter().find(|o| {
            o.spec.destination.url == url
                && o.status
                    .as_ref()
                    .is_some_and(|s| s.phase == BackupPhase::Running)
        }) {
            tracing::debug!(backup = %b.name_any(), running = %busy.name_any(), "removal waits for a backup running into the same repository");
            return Ok(Action::requeue(POLL));
        }
        let removed = backup_store::remove_backup(&url, &options, &status.manifest)
            .await
            .map_err(|e| {
                Error::Node(format!(
                    "removing backup {} from {url}: {e}",
                    status.manifest
                ))
            })?;
        ctx.event(
            b,
            false,
            "Removed",
            "Delete",
            format!(
                "removed {} and {} chunks no other backup uses",
                status.manifest, removed.chunks
            ),
        )
        .await;
    }
    set_finalizer(b, ctx, false).await?;
    Ok(Action::await_change())
}
