//! How the plugin reaches a channel's nodes: through the Kubernetes API server's pod proxy
//! (`/api/v1/namespaces/NS/pods/https:POD:7051/proxy/...`), with the caller's kubeconfig
//! credentials, so nobody runs a port-forward by hand and the caller needs only `get` on
//! `pods/proxy`. The proxy ends our TLS at the API server, which dials the node over TLS of
//! its own; what crosses it unchanged is what the node checks: signed transactions and
//! signed reads (docs/install.md says why the proxy and what it trusts).

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use std::sync::Arc;
use tally_api::channel::Channel;
use tally_api::peer::Peer;
use tally_client::client::{Relay, RelayBody, RelayError};
use tally_client::Client;
use tally_planner::API_PORT;

/// Carries a node's client API requests through the API server's proxy to one pod.
struct PodProxy {
    kube: kube::Client,
    /// `/api/v1/namespaces/NS/pods/https:POD:7051/proxy`
    prefix: String,
}

impl Relay for PodProxy {
    fn round_trip(
        &self,
        req: hyper::Request<Full<Bytes>>,
    ) -> BoxFuture<'static, Result<hyper::Response<RelayBody>, RelayError>> {
        let kube = self.kube.clone();
        let prefix = self.prefix.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let node_path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            parts.uri = format!("{prefix}{node_path}")
                .parse()
                .map_err(|e| RelayError(format!("proxy path for {node_path}: {e}")))?;
            let bytes = body
                .collect()
                .await
                .map_err(|e| RelayError(e.to_string()))?
                .to_bytes();
            let req = hyper::Request::from_parts(parts, kube::client::Body::from(bytes));
            let resp = kube
                .send(req)
                .await
                .map_err(|e| RelayError(format!("through the API server: {e}")))?;
            Ok(resp.map(|b| {
                b.map_err(|e| RelayError(format!("through the API server: {e}")))
                    .boxed_unsync()
            }))
        })
    }
}

/// A client of node `pod`'s API through the API server.
pub fn node_client(kube: &kube::Client, ns: &str, pod: &str) -> Client {
    let relay = PodProxy {
        kube: kube.clone(),
        prefix: format!("/api/v1/namespaces/{ns}/pods/https:{pod}:{API_PORT}/proxy"),
    };
    Client::relayed(&format!("{ns}/{pod} (via the API server)"), Arc::new(relay))
}

/// A channel as the cluster describes it, with clients of its nodes that have a pod.
pub struct ChannelNodes {
    pub channel: Channel,
    pub consortium: String,
    /// (node name, client), consenters first.
    pub nodes: Vec<(String, Client)>,
}

/// The Channel `name` of namespace `ns` and its nodes. An unknown channel is an error that
/// names the channels there are.
pub async fn channel_nodes(kube: &kube::Client, ns: &str, name: &str) -> Result<ChannelNodes> {
    let channels: Api<Channel> = Api::namespaced(kube.clone(), ns);
    let Some(channel) = channels
        .get_opt(name)
        .await
        .with_context(|| format!("reading Channel {ns}/{name} (are Tally's CRDs installed?)"))?
    else {
        let there: Vec<String> = channels
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        bail!(
            "no Channel {name:?} in namespace {ns} (there: {})",
            if there.is_empty() {
                "none".to_string()
            } else {
                there.join(", ")
            }
        );
    };
    let peers = Api::<Peer>::namespaced(kube.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    let pods: Api<Pod> = Api::namespaced(kube.clone(), ns);
    let mut nodes = Vec::new();
    for peer_name in channel
        .spec
        .consenters
        .iter()
        .chain(&channel.spec.observers)
    {
        let Some(peer) = peers
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(peer_name.as_str()))
        else {
            continue;
        };
        for i in 0..peer.spec.replicas.max(0) {
            let node = tally_planner::node_name(peer_name, i);
            // A pod without an address cannot be proxied to; the next node may answer.
            let running = pods
                .get_opt(&node)
                .await?
                .and_then(|p| p.status)
                .and_then(|s| s.pod_ip)
                .is_some();
            if running {
                nodes.push((node.clone(), node_client(kube, ns, &node)));
            }
        }
    }
    if nodes.is_empty() {
        bail!("channel {ns}/{name} has no running node (no pod of its Peers has an address yet)");
    }
    Ok(ChannelNodes {
        consortium: channel.spec.consortium.clone(),
        channel,
        nodes,
    })
}
