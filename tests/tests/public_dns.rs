//! The pod runner's stand-in for external-dns and a cloud's load balancers, across two
//! clusters (`tally_tests::two_clusters`): a tally-node pod in cluster A behind a LoadBalancer
//! Service with the external-dns hostname annotation is named in B's hosts file at the pod's
//! address (and the Service gets its load-balancer ingress); behind a NodePort Service it is
//! named at A's node address, where a forwarder carries real TCP (an HTTPS request) to the
//! node; a pod that is not ready is named only behind a Service that publishes not-ready
//! addresses; deleting the Services takes the names and the forwarder away.
//!
//! Needs etcd, kube-apiserver, kube-controller-manager and kubectl (`TALLY_SKIP_K8S=1` skips)
//! and a built tally-node.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;
use tally_protocol::config::{NodeRef, OrgMember};
use tally_protocol::identity::{OrgCa, Role};
use tally_protocol::ChannelConfig;
use tally_tests::http;
use tally_tests::podrunner::PodRunner;
use tally_tests::two_clusters::TwoClusters;

const NS: &str = "exposed";
const TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposed_nodes_resolve_and_forward_across_two_clusters() {
    let t0 = Instant::now();
    let Some(mut two) = TwoClusters::start("public_dns").await else {
        return;
    };
    eprintln!("two clusters up in {:?}", t0.elapsed());
    let t1 = Instant::now();
    let result = scenario(&two).await;
    two.shutdown().await;
    if let Err(e) = result {
        panic!("{e:#}");
    }
    eprintln!("scenario took {:?}", t1.elapsed());
}

async fn scenario(two: &TwoClusters) -> anyhow::Result<()> {
    let client = two.a.client().await;
    let (runner_a, runner_b) = (&two.a.runner, &two.b.runner);
    ensure!(
        runner_a.node_ip() != runner_b.node_ip(),
        "both runners' nodes are at {}",
        runner_a.node_ip()
    );
    let pod_ip = start_node_pod(&client).await?;

    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let lb_names = "n0.a.example.org,N0-alias.a.example.org.";
    services
        .create(
            &PostParams::default(),
            &service(
                "n0-public",
                "LoadBalancer",
                lb_names,
                &[(7051, 7051, None), (7052, 7052, None)],
            )?,
        )
        .await
        .context("create the LoadBalancer Service")?;
    let np = services
        .create(
            &PostParams::default(),
            // The API server allocates the node port; the second one by the name of the
            // container's port.
            &service(
                "n0-nodeport",
                "NodePort",
                "n0.np.a.example.org",
                &[(7051, 7051, None), (7052, 7052, Some("peer"))],
            )?,
        )
        .await
        .context("create the NodePort Service")?;
    let node_port = np
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
        .and_then(|p| p.node_port)
        .context("no node port allocated")?;

    // B resolves A's exposed names: the LoadBalancer at the pod, the NodePort at A's node.
    let lb_line = format!("{pod_ip} n0.a.example.org n0-alias.a.example.org\n");
    let np_line = format!("{} n0.np.a.example.org\n", runner_a.node_ip());
    let hosts_b = wait_hosts(runner_b, "B names A's exposed nodes", |h| {
        h.contains(&lb_line) && h.contains(&np_line)
    })
    .await?;
    eprintln!("B's hosts file:\n{hosts_b}");
    // A lists them too (and its own cluster names), B publishes nothing of its own.
    wait_hosts(runner_a, "A names its exposed nodes", |h| {
        h.contains(&lb_line) && h.contains(&np_line)
    })
    .await?;
    let public_b = std::fs::read_to_string(runner_b.public_hosts_path())?;
    ensure!(
        !public_b.contains("example.org"),
        "B publishes A's names as its own:\n{public_b}"
    );

    // The cloud controller's part: the LoadBalancer's ingress is the pod's address.
    let svc = wait_for(
        &services,
        "n0-public",
        "load balancer ingress",
        |s: Option<&Service>| {
            s.and_then(|s| s.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref())
                .and_then(|i| i.first())
                .is_some_and(|i| i.ip.is_some())
        },
    )
    .await?;
    let ingress = svc
        .status
        .and_then(|s| s.load_balancer?.ingress?.into_iter().next())
        .context("no ingress")?;
    ensure!(
        ingress.ip.as_deref() == Some(pod_ip.to_string().as_str())
            && ingress.hostname.as_deref() == Some("n0.a.example.org"),
        "ingress {ingress:?}, expected {pod_ip} / n0.a.example.org"
    );

    // Real TCP through the forwarder on A's node address reaches the node's client API.
    let through = format!("https://{}:{node_port}/healthz", runner_a.node_ip());
    let (status, body) = http::get(&through).await.map_err(anyhow::Error::msg)?;
    ensure!(
        status == 200,
        "{through} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    eprintln!("{through}: {status}");

    // A pod that is not ready is behind a Service's name only when the Service publishes
    // not-ready addresses (as Raft peers' Services do: they must meet to become ready).
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    // Nothing listens on port 9: never ready.
    create_node_pod(
        &pods,
        "n1",
        json!({"tcpSocket": {"port": 9}, "periodSeconds": 1}),
    )
    .await?;
    wait_for(&pods, "n1", "pod n1 Running", conditions::is_pod_running()).await?;
    let early = services
        .create(
            &PostParams::default(),
            &service_of(
                "n1",
                true,
                "n1-early",
                "NodePort",
                "n1.np.a.example.org",
                &[(7051, 7051, None)],
            )?,
        )
        .await
        .context("create the Service publishing not-ready addresses")?;
    services
        .create(
            &PostParams::default(),
            &service_of(
                "n1",
                false,
                "n1-ready-only",
                "NodePort",
                "n1-ready.np.a.example.org",
                &[(7051, 7051, None)],
            )?,
        )
        .await
        .context("create the Service of ready addresses only")?;
    let early_line = format!("{} n1.np.a.example.org\n", runner_a.node_ip());
    let hosts_b = wait_hosts(runner_b, "B names A's not-ready node", |h| {
        h.contains(&early_line)
    })
    .await?;
    ensure!(
        !hosts_b.contains("n1-ready.np.a.example.org"),
        "a not-ready pod published behind a Service of ready addresses only:\n{hosts_b}"
    );
    ensure!(!is_ready(&pods.get("n1").await?), "pod n1 became ready");
    let early_port = early
        .spec
        .and_then(|s| s.ports?.first()?.node_port)
        .context("no node port allocated for n1-early")?;
    let through = format!("https://{}:{early_port}/healthz", runner_a.node_ip());
    let (status, _) = http::get(&through).await.map_err(anyhow::Error::msg)?;
    ensure!(
        status == 200,
        "{through} (a not-ready pod) answered {status}"
    );

    // Deleting the Services takes the names away on both sides, and closes the node port.
    for name in ["n0-public", "n0-nodeport", "n1-early", "n1-ready-only"] {
        services.delete(name, &DeleteParams::default()).await?;
    }
    wait_hosts(runner_b, "B forgets A's names", |h| {
        !h.contains("example.org") && h.contains("public names from")
    })
    .await?;
    wait_hosts(runner_a, "A forgets its names", |h| {
        !h.contains("example.org")
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect((runner_a.node_ip(), node_port as u16))
        .await
        .is_ok()
    {
        if Instant::now() > deadline {
            bail!("node port {node_port} still accepts connections after its Service went");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// (port, targetPort, targetPort by name)
fn service(
    name: &str,
    type_: &str,
    hostnames: &str,
    ports: &[(u16, u16, Option<&str>)],
) -> anyhow::Result<Service> {
    service_of("n0", false, name, type_, hostnames, ports)
}

/// A Service selecting pod `app`, routing to it before it is ready with `not_ready_too`.
fn service_of(
    app: &str,
    not_ready_too: bool,
    name: &str,
    type_: &str,
    hostnames: &str,
    ports: &[(u16, u16, Option<&str>)],
) -> anyhow::Result<Service> {
    let ports: Vec<_> = ports
        .iter()
        .map(|(p, t, named)| {
            json!({"name": format!("p{p}"), "port": p,
                   "targetPort": named.map_or(json!(t), |n| json!(n))})
        })
        .collect();
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {
            "external-dns.alpha.kubernetes.io/hostname": hostnames}},
        "spec": {"type": type_, "selector": {"app": app}, "ports": ports,
                 "publishNotReadyAddresses": not_ready_too},
    }))?)
}

/// A one-node channel's tally-node as a bare pod `n0` (labels `app: n0`); its address once
/// Ready.
async fn start_node_pod(client: &kube::Client) -> anyhow::Result<Ipv4Addr> {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
        )
        .await
        .context("create the namespace")?;
    let ca = OrgCa::generate("org1")?;
    let id = ca.issue(Role::Node, "n0", &["n0.a.example.org".to_string()])?;
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "n0-tls"},
                "type": "kubernetes.io/tls",
                "stringData": {"tls.crt": id.cert_pem(), "tls.key": id.key_pem()},
            }))?,
        )
        .await?;
    let genesis = ChannelConfig::new(
        "ch1",
        vec![OrgMember::new("org1", &ca.cert_pem())],
        vec![NodeRef {
            id: 1,
            name: "n0".to_string(),
            org: "org1".to_string(),
            peer_addr: "n0.a.example.org:7052".to_string(),
            api_url: "https://n0.a.example.org:7051".to_string(),
        }],
        Vec::new(),
    );
    let creation = tally_protocol::genesis::ChannelCreation {
        approvals: vec![tally_protocol::genesis::approve(
            &genesis,
            &ca.issue(Role::Admin, "admin", &[])?,
        )],
        genesis: genesis.clone(),
        config: None,
    };
    Api::<ConfigMap>::namespaced(client.clone(), NS)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "n0-config"},
                "data": {"org-ca.pem": ca.cert_pem(),
                         "genesis.json": serde_json::to_string(&creation)?},
            }))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    // Listening is enough here: what is tested is how the pod is reached.
    create_node_pod(
        &pods,
        "n0",
        json!({"tcpSocket": {"port": "api"}, "periodSeconds": 1}),
    )
    .await?;
    wait_for(&pods, "n0", "pod n0 Running", conditions::is_pod_running()).await?;
    let pod = wait_for(&pods, "n0", "pod n0 Ready", |p: Option<&Pod>| {
        p.is_some_and(is_ready)
    })
    .await?;
    let ip = pod
        .status
        .and_then(|s| s.pod_ip)
        .context("no status.podIP")?;
    Ok(ip.parse()?)
}

/// Whether the pod's `Ready` condition is true.
fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Creates pod `name` (label `app: <name>`) running the node of [`start_node_pod`]'s
/// configuration, ready as `readiness` (a probe) says.
async fn create_node_pod(
    pods: &Api<Pod>,
    name: &str,
    readiness: serde_json::Value,
) -> anyhow::Result<()> {
    let env = |name: &str, value: &str| json!({"name": name, "value": value});
    let pod = json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "tally-node",
                "image": "ghcr.io/tally-dev/tally-node:0.1.0",
                "command": ["tally-node"],
                "args": ["--cert=/etc/tally/tls/tls.crt", "--key=/etc/tally/tls/tls.key",
                         "--genesis=/etc/tally/config/genesis.json", "--no-fsync"],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    env("TALLY_NODE_NAME", "n0"),
                    env("TALLY_LISTEN_API", "$(POD_IP):7051"),
                    env("TALLY_LISTEN_PEER", "$(POD_IP):7052"),
                    env("TALLY_LISTEN_ADMIN", "$(POD_IP):7053"),
                    env("TALLY_DATA_DIR", "/var/lib/tally/data"),
                    env("TALLY_ORG_CA", "/etc/tally/config/org-ca.pem"),
                ],
                "ports": [{"name": "api", "containerPort": 7051},
                          {"name": "peer", "containerPort": 7052}],
                "readinessProbe": readiness,
                "volumeMounts": [
                    {"name": "data", "mountPath": "/var/lib/tally"},
                    {"name": "tls", "mountPath": "/etc/tally/tls", "readOnly": true},
                    {"name": "config", "mountPath": "/etc/tally/config", "readOnly": true},
                ],
            }],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "tls", "secret": {"secretName": "n0-tls"}},
                {"name": "config", "configMap": {"name": "n0-config"}},
            ],
        },
    });
    pods.create(&PostParams::default(), &serde_json::from_value(pod)?)
        .await
        .with_context(|| format!("create pod {name}"))?;
    Ok(())
}

async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    cond: impl kube::runtime::wait::Condition<K>,
) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + std::fmt::Debug + Send + serde::de::DeserializeOwned + 'static,
{
    tokio::time::timeout(TIMEOUT, await_condition(api.clone(), name, cond))
        .await
        .map_err(|_| anyhow::anyhow!("{what}: not within {TIMEOUT:?}"))?
        .with_context(|| format!("waiting for {what}"))?
        .with_context(|| format!("{what}: {name} is gone"))
}

/// Waits until the runner's hosts file satisfies `pred` (the runners look again at least
/// once a second); its text.
async fn wait_hosts(
    runner: &PodRunner,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(runner.hosts_path()).unwrap_or_default();
        if pred(&text) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!(
                "{what}: the hosts file of {} is\n{text}",
                runner.node_name()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
