//! The stand-in for external-dns and a cloud's load balancers: Services of type LoadBalancer
//! or NodePort with an `external-dns.alpha.kubernetes.io/hostname` annotation get their names
//! published (in this runner's hosts file and in `<root>/public-hosts`, which other runners
//! merge), LoadBalancer Services get `status.loadBalancer.ingress`, NodePort Services get a
//! TCP forwarder on the node's address.

use std::net::{SocketAddr, SocketAddrV4};

use super::*;

pub(super) const HOSTNAME_ANNOTATION: &str = "external-dns.alpha.kubernetes.io/hostname";

/// What one exposed Service publishes while a pod it selects is ready here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Exposed {
    pub(super) ns: String,
    pub(super) name: String,
    /// The annotation's names, in its order.
    pub(super) names: Vec<String>,
    /// Where the names resolve: the pod (LoadBalancer) or the node (NodePort).
    pub(super) ip: Ipv4Addr,
    pub(super) load_balancer: bool,
    /// NodePort: node port to the pod's port.
    pub(super) forwards: Vec<(u16, SocketAddrV4)>,
}

/// A listener on the node's address forwarding each connection to `target`.
pub(super) struct Forwarder {
    target: SocketAddrV4,
    task: AbortHandle,
}

/// The names in a hostname annotation (comma-separated, blanks and a trailing dot dropped).
pub(super) fn annotation_names(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// The Services this runner exposes now, sorted by namespace and name.
pub(super) fn exposed_services(shared: &Shared) -> Vec<Exposed> {
    let services = shared.sorted_services();
    let st = shared.state();
    let mut out = Vec::new();
    for svc in services {
        let (Some(ns), Some(name), Some(spec)) =
            (&svc.metadata.namespace, &svc.metadata.name, &svc.spec)
        else {
            continue;
        };
        let load_balancer = match spec.type_.as_deref() {
            Some("LoadBalancer") => true,
            Some("NodePort") => false,
            _ => continue,
        };
        let Some(names) = svc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(HOSTNAME_ANNOTATION))
            .map(|v| annotation_names(v))
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let Some(pod) = st.selected_pod(ns, selector, super::publishes_not_ready(&svc)) else {
            continue;
        };
        let mut forwards = Vec::new();
        if !load_balancer {
            for port in spec.ports.iter().flatten() {
                let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                let target = match &port.target_port {
                    None => u16::try_from(port.port).ok(),
                    Some(IntOrString::Int(p)) => u16::try_from(*p).ok(),
                    Some(IntOrString::String(n)) => pod.ports.get(n).copied(),
                };
                if let Some(target) = target {
                    forwards.push((node_port, SocketAddrV4::new(pod.ip, target)));
                }
            }
        }
        out.push(Exposed {
            ns: ns.clone(),
            name: name.clone(),
            names,
            ip: if load_balancer {
                pod.ip
            } else {
                shared.node_ip()
            },
            load_balancer,
            forwards,
        });
    }
    out
}

/// The `public-hosts` text: one line per exposed Service.
pub(super) fn public_text(shared: &Shared, exposed: &[Exposed]) -> String {
    let mut out = format!(
        "# Published by the tally-tests pod runner of node {} (external-dns stand-in).\n",
        shared.node()
    );
    for e in exposed {
        out += &format!("{} {}\n", e.ip, e.names.join(" "));
    }
    out
}

/// The lines of the other runners' `public-hosts` files, each under a comment naming it.
pub(super) fn merged_public_dns(shared: &Shared) -> String {
    let mut out = String::new();
    for path in &shared.opts.public_dns_from {
        // Not there yet (the other runner has not started): nothing to merge.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        out += &format!("# public names from {}\n", path.display());
        for line in text.lines() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                out += line;
                out.push('\n');
            }
        }
    }
    out
}

/// Starts, retargets and stops forwarders so that exactly the node ports of `exposed` listen.
pub(super) fn sync_forwarders(shared: &Arc<Shared>, exposed: &[Exposed]) {
    let want: HashMap<u16, SocketAddrV4> = exposed
        .iter()
        .flat_map(|e| e.forwards.iter().copied())
        .collect();
    let mut st = shared.state();
    st.forwarders.retain(|port, f| {
        let keep = want.get(port) == Some(&f.target);
        if !keep {
            // Aborting drops the listener and every connection it forwards.
            f.task.abort();
        }
        keep
    });
    let missing: Vec<(u16, SocketAddrV4)> = want
        .into_iter()
        .filter(|(p, _)| !st.forwarders.contains_key(p))
        .collect();
    if st.stopped {
        return;
    }
    drop(st);
    for (port, target) in missing {
        let listen = SocketAddr::from((shared.node_ip(), port));
        let listener = match std::net::TcpListener::bind(listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
        {
            Ok(l) => l,
            Err(e) => {
                // Tried again on the next pass (at most a second later); said once.
                if shared.state().unbound.insert(port) {
                    eprintln!("podrunner {}: node port {listen}: {e}", shared.node());
                }
                continue;
            }
        };
        shared.state().unbound.remove(&port);
        let task = shared.spawn(forward(listener, target)).abort_handle();
        shared
            .state()
            .forwarders
            .insert(port, Forwarder { target, task });
    }
}

async fn forward(listener: tokio::net::TcpListener, target: SocketAddrV4) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut inbound, _)) = accepted else { continue };
                conns.spawn(async move {
                    // A refused target closes the client's connection, as a dead backend would.
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Sets `status.loadBalancer.ingress` of each exposed LoadBalancer Service to its pod's
/// address and first name, as a cloud controller would, where it says something else.
pub(super) async fn sync_load_balancers(shared: &Shared, exposed: &[Exposed]) {
    for e in exposed.iter().filter(|e| e.load_balancer) {
        let want = json!([{"ip": e.ip.to_string(), "hostname": e.names[0]}]);
        let current = shared
            .services
            .get(&ObjectRef::new(&e.name).within(&e.ns))
            .and_then(|s| s.status.as_ref()?.load_balancer.as_ref()?.ingress.clone())
            .map(|i| serde_json::to_value(i).unwrap_or_default());
        if current.as_ref() == Some(&want) {
            continue;
        }
        let api: Api<Service> = Api::namespaced(shared.client.clone(), &e.ns);
        let patch = json!({"status": {"loadBalancer": {"ingress": want}}});
        if let Err(err) = api
            .patch_status(&e.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            eprintln!(
                "podrunner {}: load balancer status of {}/{}: {err}",
                shared.node(),
                e.ns,
                e.name
            );
        }
    }
}

/// The named ports of a pod's containers.
pub(super) fn container_ports(spec: &k8s_openapi::api::core::v1::PodSpec) -> BTreeMap<String, u16> {
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| Some((p.name.clone()?, u16::try_from(p.container_port).ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_names_are_split_and_normalised() {
        assert_eq!(
            annotation_names(" a.example.org, B.example.org.,,"),
            vec!["a.example.org", "b.example.org"]
        );
        assert!(annotation_names(" , ").is_empty());
    }
}
