//! Watches, the node, scheduling and the hosts file.

use super::*;

/// Keeps `writer`'s store in step with every object of `api`; calls `on_change` after each
/// change and after each (re)list.
pub(super) async fn reflect<K>(
    shared: Arc<Shared>,
    writer: reflector::store::Writer<K>,
    api: Api<K>,
    on_change: impl Fn(&Shared) + Send + 'static,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let kind = K::kind(&Default::default()).to_string();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    let mut stream = std::pin::pin!(stream);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                on_change(&shared)
            }
            Ok(_) => {}
            Err(e) => eprintln!("podrunner {}: watching {kind}s: {e}", shared.node()),
        }
    }
}

pub(super) fn node_status(shared: &Shared) -> Value {
    let now = rfc3339(Timestamp::now());
    let since = rfc3339(shared.started);
    let cond = |t: &str, status: &str, reason: &str, message: &str| {
        json!({"type": t, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": since})
    };
    let resources = json!({"cpu": "16", "memory": "64Gi", "pods": "110",
                           "ephemeral-storage": "100Gi"});
    json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "podrunner"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "podrunner"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "podrunner"),
            cond("Ready", "True", "KubeletReady", "the tally-tests pod runner is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": shared.node_ip().to_string()},
            {"type": "Hostname", "address": shared.node()},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "architecture": go_arch(), "bootID": "", "containerRuntimeVersion": "podrunner://0",
            "kernelVersion": "", "kubeProxyVersion": "", "kubeletVersion": "v0.0.0-podrunner",
            "machineID": "", "operatingSystem": "linux", "osImage": "tally-tests pod runner",
            "systemUUID": "",
        },
    }})
}

pub(super) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub(super) async fn register_node(shared: &Arc<Shared>) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(shared.client.clone());
    let name = shared.node();
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": go_arch(), "tally.dev/podrunner": "true",
        }},
    }))?;
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(e) if api_code(&e) == Some(409) => {}
        Err(e) => return Err(e).with_context(|| format!("register node {name}")),
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(node_status(shared)),
    )
    .await
    .with_context(|| format!("status of node {name}"))?;
    Ok(())
}

/// Renews the node's conditions every 10 s.
pub(super) async fn heartbeat(shared: Arc<Shared>) {
    let api: Api<Node> = Api::all(shared.client.clone());
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = api
            .patch_status(
                shared.node(),
                &PatchParams::default(),
                &Patch::Merge(node_status(&shared)),
            )
            .await
        {
            eprintln!("podrunner {}: node heartbeat: {e}", shared.node());
        }
    }
}

/// Binds every pending, unscheduled pod of the default scheduler to this node.
pub(super) async fn scheduler(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let cfg = watcher::Config::default()
        .fields("spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed");
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    while let Some(ev) = stream.next().await {
        let pod = match ev {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
            Ok(_) => continue,
            Err(e) => {
                eprintln!(
                    "podrunner {}: watching unscheduled pods: {e}",
                    shared.node()
                );
                continue;
            }
        };
        let Some(spec) = &pod.spec else { continue };
        if pod.metadata.deletion_timestamp.is_some()
            || spec.node_name.as_deref().is_some_and(|n| !n.is_empty())
            || spec
                .scheduler_name
                .as_deref()
                .is_some_and(|s| s != "default-scheduler")
            || spec
                .scheduling_gates
                .as_ref()
                .is_some_and(|g| !g.is_empty())
        {
            continue;
        }
        let (Some(ns), Some(name), Some(uid)) = (
            pod.metadata.namespace.clone(),
            pod.metadata.name.clone(),
            pod.metadata.uid.clone(),
        ) else {
            continue;
        };
        let s = shared.clone();
        shared.spawn(async move { bind(s, ns, name, uid).await });
    }
}

pub(super) async fn bind(shared: Arc<Shared>, ns: String, name: String, uid: String) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": shared.node()},
    });
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=6 {
        match api
            .create_subresource::<_, Value>("binding", &name, &PostParams::default(), &binding)
            .await
        {
            Ok(_) => return,
            // Gone, or bound already (by another runner or an earlier event).
            Err(e) if matches!(api_code(&e), Some(404 | 409)) => return,
            Err(e) => {
                eprintln!(
                    "podrunner {}: binding pod {ns}/{name} (attempt {attempt}): {e}",
                    shared.node()
                );
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

/// Rewrites the hosts file and the public-hosts file whenever what they list changed, and
/// keeps node-port forwarders and load-balancer statuses in step; looks again at least once a
/// second since other runners' public-hosts files are not watched.
pub(super) async fn hosts_writer(shared: Arc<Shared>) {
    let _ = shared.services.wait_until_ready().await;
    let mut last = String::new();
    let mut last_public = String::new();
    loop {
        let exposed = exposed_services(&shared);
        let public = public_text(&shared, &exposed);
        let mut text = shared.hosts_text();
        for e in &exposed {
            text += &format!("{} {}\n", e.ip, e.names.join(" "));
        }
        text += &merged_public_dns(&shared);
        write_if_changed(&shared, &shared.hosts_path(), text, &mut last);
        write_if_changed(
            &shared,
            &shared.public_hosts_path(),
            public,
            &mut last_public,
        );
        sync_forwarders(&shared, &exposed);
        sync_load_balancers(&shared, &exposed).await;
        tokio::select! {
            _ = shared.hosts_dirty.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn write_if_changed(shared: &Shared, path: &Path, text: String, last: &mut String) {
    if text == *last {
        return;
    }
    match write_atomic(path, text.as_bytes()) {
        Ok(()) => *last = text,
        Err(e) => eprintln!(
            "podrunner {}: writing {}: {e}",
            shared.node(),
            path.display()
        ),
    }
}
