//! A Peer's nodes reachable from other clusters (`spec.exposure`): one Service per node,
//! under the name channel configurations advertise it by.

use crate::builders::{self, PeerInputs, LABEL_EXPOSED};
use crate::context::{Context, Result};
use crate::names;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams};
use kube::ResourceExt;
use std::collections::BTreeSet;

/// Applies the public Service of every node in `ordinals` (those planned and those whose pod
/// still runs: a departing node must stay reachable until it has left its channels) and
/// deletes the Peer's other public Services. Nothing at all for a Peer without exposure
/// (exposure cannot be added or removed later).
pub async fn reconcile(
    ctx: &Context,
    inputs: &PeerInputs<'_>,
    ordinals: &BTreeSet<u32>,
) -> Result<()> {
    if inputs.peer.spec.exposure.is_none() {
        return Ok(());
    }
    let ns = inputs.namespace;
    let peer = inputs.name();
    let mut wanted = BTreeSet::new();
    for &o in ordinals {
        let node = tally_planner::node_name(&peer, o);
        if let Some(svc) = builders::public_service(inputs, &node, o) {
            let name = names::public_service(&node);
            ctx.apply::<Service>(ns, &name, &svc).await?;
            wanted.insert(name);
        }
    }
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("{}={peer},{LABEL_EXPOSED}=true", names::LABEL_PEER);
    for svc in api.list(&ListParams::default().labels(&selector)).await? {
        let name = svc.name_any();
        if !wanted.contains(&name) {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
