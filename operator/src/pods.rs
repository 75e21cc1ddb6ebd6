//! The node pods and ledger claims the Peer controller manages itself. A StatefulSet would give
//! every pod one shared template, and so every node's Secret in every pod: a compromised pod
//! could read its siblings' keys and vote in Raft as them. One pod per node, built for that
//! node, mounts its own Secret only.

use crate::context::{Context, Result};
use crate::names;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use std::collections::BTreeMap;

/// The `tally-node` pods of `consortium` in `ns`, listed from the API server: the rollout and
/// the scale-down decide from them, and a watch cache a moment behind could restart a second
/// pod before the first one's deletion shows.
pub async fn of_consortium(ctx: &Context, ns: &str, consortium: &str) -> Result<Vec<Pod>> {
    let selector = format!(
        "{}=tally-node,{}={consortium}",
        names::LABEL_NAME,
        names::LABEL_CONSORTIUM
    );
    Ok(Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await?
        .items)
}

/// Ready and not going away.
pub fn serving(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The revision the pod was built at; empty on a pod a StatefulSet made.
pub fn revision(p: &Pod) -> String {
    p.annotations()
        .get(names::ANNOTATION_REVISION)
        .cloned()
        .unwrap_or_default()
}

/// Its containers will not run again (`Failed`: evicted, or exited under `restartPolicy`
/// `Never`; `Succeeded`): only a new pod brings the node back.
pub fn finished(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed" | "Succeeded")
    )
}

pub fn owned_by_stateful_set(p: &Pod) -> bool {
    p.owner_references()
        .iter()
        .any(|o| o.kind == "StatefulSet" && o.controller == Some(true))
}

/// Deletes the StatefulSet `name` of a Peer from before the operator managed pods itself,
/// leaving its pods (`propagationPolicy: Orphan`): the nodes keep running while the Peer
/// adopts them. A StatefulSet being deleted no longer creates or replaces pods.
pub async fn retire_stateful_set(ctx: &Context, ns: &str, name: &str) -> Result<()> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    match api.delete(name, &DeleteParams::orphan()).await {
        Ok(_) => {
            tracing::info!(peer = %name, "StatefulSet deleted, its pods kept for the Peer");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The metadata patch that gives `pod` the labels `want` (channel labels it no longer should
/// carry removed) and the Peer as its only owner; `None` when it has them already. Labels
/// change in place: a pod joining a channel's quorum budget needs no restart.
pub fn metadata_patch(
    pod: &Pod,
    want: &BTreeMap<String, String>,
    owner: &OwnerReference,
) -> Option<serde_json::Value> {
    let have = pod.labels();
    let mut labels = serde_json::Map::new();
    for (k, v) in want {
        if have.get(k) != Some(v) {
            labels.insert(k.clone(), v.clone().into());
        }
    }
    for k in have.keys() {
        if k.starts_with(names::LABEL_CONSENTS_PREFIX) && !want.contains_key(k) {
            labels.insert(k.clone(), serde_json::Value::Null);
        }
    }
    let owned = pod.owner_references().len() == 1
        && pod
            .owner_references()
            .iter()
            .all(|o| o.uid == owner.uid && o.controller == Some(true));
    if labels.is_empty() && owned {
        return None;
    }
    let mut meta = serde_json::Map::new();
    if !labels.is_empty() {
        meta.insert("labels".into(), labels.into());
    }
    if !owned {
        meta.insert("ownerReferences".into(), serde_json::json!([owner]));
    }
    Some(serde_json::json!({ "metadata": meta }))
}

/// Patches `pod`'s labels and owner when they are not what they should be.
pub async fn keep_labels_and_owner(
    ctx: &Context,
    pod: &Pod,
    want: &BTreeMap<String, String>,
    owner: &OwnerReference,
) -> Result<()> {
    let Some(patch) = metadata_patch(pod, want, owner) else {
        return Ok(());
    };
    let ns = pod.namespace().unwrap_or_default();
    Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// Creates `claim` unless it exists (a node's ledger outlives its pods), then `pod`. Plain
/// creates, not apply: a pod's spec cannot change, and a pod of that name made meanwhile
/// (by this operator a moment earlier) is left to the next reconcile.
pub async fn create(ctx: &Context, claim: &PersistentVolumeClaim, pod: &Pod) -> Result<()> {
    let ns = pod.namespace().unwrap_or_default();
    let pp = PostParams {
        field_manager: Some(names::FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    match claims.create(&pp, claim).await {
        Ok(_) => tracing::info!(claim = %claim.name_any(), "ledger claim created"),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    match Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .create(&pp, pod)
        .await
    {
        Ok(_) => {
            tracing::info!(pod = %pod.name_any(), "node pod created");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the pod `name` (gracefully: the node hands its leaderships over on SIGTERM); one
/// already gone is fine.
pub async fn delete(ctx: &Context, ns: &str, name: &str) -> Result<()> {
    match Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::owner;
    use serde_json::json;

    fn pod(labels: serde_json::Value, owners: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p-0", "labels": labels, "ownerReferences": owners},
        }))
        .expect("pod")
    }

    #[test]
    fn an_adopted_pod_gets_the_peer_as_owner_and_its_labels() {
        let peer = owner("tally.dev/v1alpha1", "Peer", "p", "u1");
        let want = BTreeMap::from([
            ("tally.dev/node".to_string(), "p-0".to_string()),
            ("consents.tally.dev/a".to_string(), "true".to_string()),
        ]);
        let sts = pod(
            json!({"consents.tally.dev/a": "true", "consents.tally.dev/gone": "true"}),
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "p", "uid": "s1", "controller": true}]),
        );
        assert!(owned_by_stateful_set(&sts));
        let patch = metadata_patch(&sts, &want, &peer).expect("a patch");
        assert_eq!(
            patch["metadata"]["labels"],
            json!({"tally.dev/node": "p-0", "consents.tally.dev/gone": null})
        );
        assert_eq!(patch["metadata"]["ownerReferences"][0]["uid"], "u1");
        // A pod that has both needs no write.
        let ours = pod(
            json!({"tally.dev/node": "p-0", "consents.tally.dev/a": "true", "other": "x"}),
            json!([peer]),
        );
        assert_eq!(metadata_patch(&ours, &want, &peer), None);
        assert!(!owned_by_stateful_set(&ours));
    }
}
