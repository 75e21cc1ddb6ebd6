//! Reaching the nodes of a plan: by their pod's IP (which works whether or not the operator
//! runs inside the cluster), checking TLS against the stable DNS name their certificates carry.

use crate::context::{Context, Error, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use tally_client::{AdminClient, Client};
use tally_planner::{NodePlan, Plan, ADMIN_PORT, API_PORT};

/// A hosted node whose pod has an IP.
pub struct Reached {
    pub name: String,
    pub org: String,
    pub pod_ip: String,
    /// Whether the pod reports Ready.
    pub pod_ready: bool,
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        .unwrap_or(false)
}

/// The pod of a hosted node, if it exists and has an IP.
pub async fn locate(ctx: &Context, ns: &str, node: &NodePlan) -> Result<Option<Reached>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    Ok(pods
        .get_opt(&node.name)
        .await?
        .and_then(|pod| at_pod(node, &pod)))
}

/// Where `pod` (the node's pod, already at hand) serves the node: none while it has no IP or
/// is going away.
pub fn at_pod(node: &NodePlan, pod: &Pod) -> Option<Reached> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty())?;
    Some(Reached {
        name: node.name.clone(),
        org: node.org.clone(),
        pod_ready: pod_ready(pod),
        pod_ip,
    })
}

fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The node's admin API, as its organization's admin (the identity the operator issued).
pub fn admin(ctx: &Context, plan: &Plan, node: &NodePlan, at: &Reached) -> Result<AdminClient> {
    // Whatever an admin client is for changes a ledger: only the lease holder may.
    ctx.fence.check()?;
    let org = plan
        .org(&node.org)
        .ok_or_else(|| Error::Internal(format!("organization {} is not planned", node.org)))?;
    let id = org.admin.clone().ok_or_else(|| {
        Error::Invalid(format!(
            "the CA Secret of organization {} has no tls.key: the operator cannot act as its admin",
            node.org
        ))
    })?;
    let a = AdminClient::reaching(
        &host_port(&at.pod_ip, ADMIN_PORT),
        Some(&node.address.host),
        &org.ca_pem,
        &id,
    )
    .map_err(|e| Error::Node(format!("node {}: {e}", node.name)))?;
    Ok(a.with_timeout(ctx.settings.node_timeout))
}

/// The node's client API, signing reads as its organization's client.
pub fn api(ctx: &Context, plan: &Plan, node: &NodePlan, at: &Reached) -> Result<Client> {
    let url = format!("https://{}", host_port(&at.pod_ip, API_PORT));
    // Only the node's own organization's CA, and the name its certificate carries (the pod
    // IP is not in it): another member's CA cannot vouch for this node.
    let org = plan
        .org(&node.org)
        .ok_or_else(|| Error::Internal(format!("organization {} is not planned", node.org)))?;
    let trust = tally_client::ApiTrust::from_ca_pems(&[org.ca_pem.as_str()])
        .map_err(|e| Error::Internal(format!("CA certificates: {e}")))?;
    let c = Client::reaching(&url, Some(&node.address.host), &trust)
        .map_err(|e| Error::Internal(format!("{url}: {e}")))?
        .with_timeout(ctx.settings.node_timeout);
    Ok(match plan.org(&node.org).and_then(|o| o.client.clone()) {
        Some(id) => c.with_reader(id),
        None => c,
    })
}

/// The client API of a node that runs outside this cluster (another cluster's member), at
/// the address the channel configuration names, checked against its own organization's CA
/// and the name in that address. Reads are signed as the client of an organization the
/// operator holds that is among `members` (a channel's readers are its members).
pub fn remote_api(
    ctx: &Context,
    plan: &Plan,
    node: &NodePlan,
    members: &[String],
) -> Result<Client> {
    let org = plan
        .org(&node.org)
        .ok_or_else(|| Error::Internal(format!("organization {} is not planned", node.org)))?;
    let trust = tally_client::ApiTrust::from_ca_pems(&[org.ca_pem.as_str()])
        .map_err(|e| Error::Internal(format!("CA certificates: {e}")))?;
    let (url, host) = dial_url(&node.address.api_url);
    let c = Client::reaching(&url, Some(&host), &trust)
        .map_err(|e| Error::Node(format!("{}: {e}", node.address.api_url)))?
        .with_timeout(ctx.settings.node_timeout);
    let reader = members
        .iter()
        .filter_map(|m| plan.org(m))
        .find_map(|o| o.client.clone());
    Ok(match reader {
        Some(id) => c.with_reader(id),
        None => c,
    })
}

/// `url` with its host replaced by its entry in the process's host table (if any), and the
/// name TLS must find in the node's certificate.
fn dial_url(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let target = tally_protocol::hosts::resolve(authority);
    (format!("{scheme}://{target}{path}"), host)
}

#[cfg(test)]
mod tests {
    use super::dial_url;

    #[test]
    fn a_remote_url_keeps_its_name_for_tls() {
        assert_eq!(
            dial_url("https://bank-0.peers.example:7051"),
            (
                "https://bank-0.peers.example:7051".to_string(),
                "bank-0.peers.example".to_string()
            )
        );
        assert_eq!(
            dial_url("https://bank-0.peers.example:31000/tally"),
            (
                "https://bank-0.peers.example:31000/tally".to_string(),
                "bank-0.peers.example".to_string()
            )
        );
    }
}
