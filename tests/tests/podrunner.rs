//! The test pod runner (`tally_tests::podrunner`) against a real control plane with
//! kube-controller-manager: a StatefulSet of two tally-node pods is scheduled, started with its
//! Secrets, ConfigMap and claims, probed and reported Ready; the controllers see it (StatefulSet
//! status, PodDisruptionBudget status); a deleted pod comes back with the same address and
//! data; a pod with another image fails; scaling down, deleting the StatefulSet and deleting the namespace stop the
//! processes; the hosts file names the pods.
//!
//! Needs etcd, kube-apiserver, kube-controller-manager and kubectl (see
//! `tally_tests::k8s_bin_dir_with_controller_manager`; `TALLY_SKIP_K8S=1` skips this suite where
//! they cannot be had) and
//! a built tally-node: `cargo build -p tally-node && cargo test -p tally-tests --test podrunner`.

use std::fmt::Debug;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Namespace, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions, Condition};
use serde::de::DeserializeOwned;
use serde_json::json;
use tally_protocol::config::{NodeRef, OrgMember};
use tally_protocol::identity::{OrgCa, Role};
use tally_protocol::ChannelConfig;
use tally_tests::podrunner::{process_alive, PodRunner, RunnerOptions};
use tally_tests::{http, k8s_bin_dir_with_controller_manager, node_bin, ControlPlane};

const NS: &str = "ledger";
const TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_runner_runs_a_statefulset_of_tally_nodes() {
    let Some(bin) = k8s_bin_dir_with_controller_manager() else {
        return;
    };
    let node_bin = node_bin();
    let t0 = Instant::now();
    let cp = tokio::task::block_in_place(|| {
        ControlPlane::start_with_controller_manager("podrunner", &bin)
    });
    eprintln!(
        "control plane with controller-manager up in {:?}",
        t0.elapsed()
    );
    let client = cp.client().await;
    let dir = tempfile::Builder::new()
        .prefix("tally-podrunner-")
        .tempdir()
        .expect("temporary folder");
    let mut runner = PodRunner::start(
        client.clone(),
        RunnerOptions {
            node_name: "runner-1".to_string(),
            root_dir: dir.path().to_path_buf(),
            ip_prefix: "127.61".to_string(),
            node_bin,
            public_dns_from: Vec::new(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("the pod runner did not start: {e:#}"));
    let t1 = Instant::now();
    if let Err(e) = scenario(&client, &runner).await {
        let kept = dir.keep();
        panic!("{e:#}\n(pod runner folder kept at {})", kept.display());
    }
    eprintln!("scenario took {:?}", t1.elapsed());
    runner.shutdown().await;
    if std::env::var_os("TALLY_E2E_KEEP").is_some() {
        eprintln!("pod runner folder kept at {}", dir.keep().display());
    }
}

async fn scenario(client: &kube::Client, runner: &PodRunner) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns_obj = namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
        )
        .await
        .context("create the namespace")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let ca = create_ledger_objects(client).await?;

    // Both pods are scheduled, started and Ready, at distinct addresses.
    let mut ips = Vec::new();
    for name in ["tally-0", "tally-1"] {
        let pod = wait(&pods, name, &format!("{name} Ready"), is_ready)
            .await?
            .context("gone")?;
        let ip = pod_ip(&pod)?;
        ensure!(
            runner.pod_ip(NS, name) == Some(ip),
            "{name}: status.podIP {ip} is not the runner's {:?}",
            runner.pod_ip(NS, name)
        );
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        ensure!(
            node.as_deref() == Some(runner.node_name()),
            "{name} is bound to {node:?}"
        );
        let (status, body) = http::get(&format!("https://{ip}:7051/readyz"))
            .await
            .map_err(anyhow::Error::msg)?;
        ensure!(
            status == 200,
            "{name}: /readyz answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        ips.push(ip);
    }
    ensure!(ips[0] != ips[1], "both pods got {}", ips[0]);
    let log = std::fs::read_to_string(runner.log_path(NS, "tally-0"))?;
    let peer = format!("tally-1.tally.{NS}.svc.cluster.local:7052");
    ensure!(
        log.lines()
            .any(|l| l.contains("connected to peer") && l.contains(&peer)),
        "tally-0 never connected to {peer}:\n{log}"
    );

    check_status(&pods.get("tally-0").await?, &ips[0], runner.node_ip())?;

    wait(
        &sets,
        "tally",
        "readyReplicas 2",
        |s: Option<&StatefulSet>| ready_replicas(s) == Some(2),
    )
    .await?;

    // The hosts file names both pods and the Service.
    let hosts = wait_hosts(runner, |h| {
        h.contains(&format!("{} tally-0.tally.{NS}.svc.cluster.local ", ips[0]))
            && h.contains(&format!("{} tally-1.tally.{NS}.svc.cluster.local ", ips[1]))
            && h.contains(&format!(" tally.{NS}.svc.cluster.local "))
    })
    .await?;
    ensure!(
        hosts.contains(&format!(
            "{} tally-0.tally.{NS}.svc.cluster.local tally-0.tally.{NS}.svc tally-0.tally.{NS} tally-0.tally\n",
            ips[0]
        )),
        "hosts file:\n{hosts}"
    );

    // The disruption controller sees the pods. (The EndpointSlice controller sees them too,
    // but the apiserver refuses loopback endpoint addresses.)
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), NS);
    pdbs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "tally"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "tally"}}},
        }))?,
    )
    .await?;
    wait(
        &pdbs,
        "tally",
        "PodDisruptionBudget status",
        |p: Option<&PodDisruptionBudget>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.current_healthy == 2 && s.disruptions_allowed == 1)
        },
    )
    .await?;

    // A deleted pod comes back with the same address and its claim's data.
    let old = pods.get("tally-0").await?;
    let old_uid = old.metadata.uid.clone().context("tally-0 has no uid")?;
    let old_pid = runner
        .pid(NS, "tally-0")
        .context("tally-0 has no process")?;
    let claim = runner.pvc_dir(NS, "data-tally-0");
    ensure!(
        claim.join("data").is_dir(),
        "the node's data folder {} is missing",
        claim.join("data").display()
    );
    std::fs::write(claim.join("marker"), "before")?;
    pods.delete("tally-0", &DeleteParams::default()).await?;
    let new = wait(
        &pods,
        "tally-0",
        "tally-0 recreated and Ready",
        |p: Option<&Pod>| {
            p.is_some_and(|p| p.metadata.uid.as_deref() != Some(old_uid.as_str())) && is_ready(p)
        },
    )
    .await?
    .context("gone")?;
    ensure!(
        !process_alive(old_pid),
        "the first tally-0 process ({old_pid}) still runs"
    );
    ensure!(
        pod_ip(&new)? == ips[0],
        "the new tally-0 got {} instead of {}",
        pod_ip(&new)?,
        ips[0]
    );
    ensure!(
        std::fs::read_to_string(claim.join("marker"))
            .ok()
            .as_deref()
            == Some("before"),
        "the claim folder lost its contents"
    );
    let new_pid = runner
        .pid(NS, "tally-0")
        .context("the new tally-0 has no process")?;
    ensure!(new_pid != old_pid, "tally-0 still has process {old_pid}");
    let restarts = new
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map(|c| c.restart_count);
    ensure!(restarts == Some(0), "restartCount {restarts:?}");

    // A process that dies is restarted, counted and reported.
    let pid = runner
        .pid(NS, "tally-0")
        .context("tally-0 has no process")?;
    // SAFETY: kill(2) on a process of ours.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let restarted = wait(
        &pods,
        "tally-0",
        "tally-0 restarted and Ready",
        |p: Option<&Pod>| first_container(p).is_some_and(|c| c.restart_count == 1) && is_ready(p),
    )
    .await?
    .context("gone")?;
    let last = first_container(Some(&restarted))
        .and_then(|c| c.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .context("no lastState.terminated")?;
    ensure!(
        last.exit_code == 137 && last.signal == Some(9),
        "lastState.terminated: {last:?}"
    );
    ensure!(
        runner.pid(NS, "tally-0").is_some_and(|p| p != pid),
        "tally-0 has no new process"
    );

    // Volumes follow their ConfigMap.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    cms.patch(
        "tally-config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"extra": "1"}})),
    )
    .await?;
    let extra = runner.pod_dir(NS, "tally-0").join("volumes/config/extra");
    wait_file(&extra, "1").await?;

    // A force-deleted pod is killed; its successor starts once it is gone, at the same address.
    let pid1 = runner
        .pid(NS, "tally-1")
        .context("tally-1 has no process")?;
    let uid1 = pods
        .get("tally-1")
        .await?
        .metadata
        .uid
        .context("tally-1 has no uid")?;
    pods.delete(
        "tally-1",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await?;
    let new1 = wait(
        &pods,
        "tally-1",
        "tally-1 force-deleted, recreated and Ready",
        |p: Option<&Pod>| {
            p.is_some_and(|p| p.metadata.uid.as_deref() != Some(uid1.as_str())) && is_ready(p)
        },
    )
    .await?
    .context("gone")?;
    ensure!(
        !process_alive(pid1),
        "the first tally-1 ({pid1}) still runs"
    );
    ensure!(
        pod_ip(&new1)? == ips[1],
        "the new tally-1 got another address"
    );

    // A pod whose Secret is missing waits for it, and starts once it exists.
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "late"},
            "spec": {
                "containers": [{
                    "name": "node", "image": "tally-node",
                    "env": [
                        {"name": "TALLY_NODE_NAME", "value": "late"},
                        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "TALLY_LISTEN_API", "value": "$(IP):7051"},
                        {"name": "TALLY_LISTEN_PEER", "value": "$(IP):7052"},
                        {"name": "TALLY_LISTEN_ADMIN", "value": "$(IP):7053"},
                        {"name": "TALLY_DATA_DIR", "value": "/scratch/db"},
                        {"name": "TALLY_CERT", "value": "/tls/tls.crt"},
                        {"name": "TALLY_KEY", "value": "/tls/tls.key"},
                        {"name": "TALLY_ORG_CA", "value": "/config/org-ca.pem"},
                    ],
                    "readinessProbe": {"tcpSocket": {"port": 7051}},
                    "volumeMounts": [
                        {"name": "tls", "mountPath": "/tls"},
                        {"name": "config", "mountPath": "/config"},
                        {"name": "scratch", "mountPath": "/scratch"},
                    ],
                }],
                "volumes": [
                    {"name": "tls", "secret": {"secretName": "late-tls"}},
                    {"name": "config", "configMap": {"name": "tally-config",
                                                     "items": [{"key": "org-ca.pem", "path": "org-ca.pem"}]}},
                    {"name": "scratch", "emptyDir": {}},
                ],
            },
        }))?,
    )
    .await?;
    let waiting = wait(
        &pods,
        "late",
        "the pod waiting for its Secret",
        |p: Option<&Pod>| {
            first_container(p)
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.message.as_deref())
                .is_some_and(|m| m.contains("late-tls"))
        },
    )
    .await?
    .context("gone")?;
    ensure!(
        phase(Some(&waiting)) == Some("Pending"),
        "phase {:?}",
        phase(Some(&waiting))
    );
    let late = ca.issue(Role::Node, "late", &[])?;
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "late-tls"},
                "stringData": {"tls.crt": late.cert_pem(), "tls.key": late.key_pem()},
            }))?,
        )
        .await?;
    wait(&pods, "late", "the late pod Ready", is_ready).await?;

    // A pod with another image fails, naming the image.
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "other"},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
        }))?,
    )
    .await?;
    let other = wait(
        &pods,
        "other",
        "the busybox pod Failed",
        |p: Option<&Pod>| phase(p) == Some("Failed"),
    )
    .await?
    .context("gone")?;
    let message = other.status.and_then(|s| s.message).unwrap_or_default();
    ensure!(message.contains("busybox:1.36"), "message: {message:?}");

    // Scaling down stops the departing pod's process.
    let pid1 = runner
        .pid(NS, "tally-1")
        .context("tally-1 has no process")?;
    let uid1 = pods
        .get("tally-1")
        .await?
        .metadata
        .uid
        .context("tally-1 has no uid")?;
    sets.patch(
        "tally",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await?;
    wait(
        &pods,
        "tally-1",
        "tally-1 deleted",
        conditions::is_deleted(&uid1),
    )
    .await?;
    ensure!(!process_alive(pid1), "tally-1's process {pid1} still runs");
    ensure!(
        tokio::net::TcpStream::connect((ips[1], 7051))
            .await
            .is_err(),
        "{}:7051 still accepts connections",
        ips[1]
    );
    wait_hosts(runner, |h| !h.contains("tally-1.tally")).await?;

    // Deleting the StatefulSet (foreground cascade) stops the remaining pod.
    let set_uid = sets
        .get("tally")
        .await?
        .metadata
        .uid
        .context("the StatefulSet has no uid")?;
    let pid0 = runner
        .pid(NS, "tally-0")
        .context("tally-0 has no process")?;
    sets.delete("tally", &DeleteParams::foreground()).await?;
    wait(
        &sets,
        "tally",
        "the StatefulSet deleted",
        conditions::is_deleted(&set_uid),
    )
    .await?;
    ensure!(
        pods.get_opt("tally-0").await?.is_none(),
        "tally-0 outlived its StatefulSet"
    );
    ensure!(!process_alive(pid0), "tally-0's process {pid0} still runs");

    // Deleting the namespace takes the rest (the failed pod, claims, Service ...).
    let ns_uid = ns_obj.metadata.uid.context("the namespace has no uid")?;
    namespaces.delete(NS, &DeleteParams::default()).await?;
    wait(
        &namespaces,
        NS,
        "the namespace deleted",
        conditions::is_deleted(&ns_uid),
    )
    .await?;
    ensure!(
        runner.running_pids().is_empty(),
        "processes left: {:?}",
        runner.running_pids()
    );
    let left: Vec<_> = std::fs::read_dir(runner.root_dir().join("pods").join(NS))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    ensure!(left.is_empty(), "pod folders left: {left:?}");
    ensure!(claim.join("marker").is_file(), "the claim folder is gone");
    ensure!(
        runner.log_path(NS, "tally-0").is_file(),
        "no log kept at {}",
        runner.log_path(NS, "tally-0").display()
    );
    Ok(())
}

/// The org CA, one node certificate per pod (Secrets `tally-<i>-tls`), the CA's ConfigMap, a
/// headless Service and the StatefulSet.
async fn create_ledger_objects(client: &kube::Client) -> anyhow::Result<OrgCa> {
    let ca = OrgCa::generate("org1")?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    for i in 0..2 {
        let name = format!("tally-{i}");
        let id = ca.issue(
            Role::Node,
            &name,
            &[format!("{name}.tally.{NS}.svc.cluster.local")],
        )?;
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": format!("{name}-tls")},
                    "type": "kubernetes.io/tls",
                    "stringData": {"tls.crt": id.cert_pem(), "tls.key": id.key_pem()},
                }))?,
            )
            .await?;
    }
    // A channel of both nodes, addressed by their DNS names: Raft elects a leader (and
    // /readyz says ready) only once the nodes reach each other through the hosts file.
    let node = |i: u64| {
        let host = format!("tally-{}.tally.{NS}.svc.cluster.local", i - 1);
        NodeRef {
            id: i,
            name: format!("tally-{}", i - 1),
            org: "org1".to_string(),
            peer_addr: format!("{host}:7052"),
            api_url: format!("https://{host}:7051"),
        }
    };
    let genesis = ChannelConfig::new(
        "ch1",
        vec![OrgMember::new("org1", &ca.cert_pem())],
        vec![node(1), node(2)],
        Vec::new(),
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "tally-config"},
            "data": {
                "org-ca.pem": ca.cert_pem(),
                "genesis.json": serde_json::to_string(&tally_protocol::genesis::ChannelCreation {
                    approvals: vec![tally_protocol::genesis::approve(&genesis, &ca.issue(Role::Admin, "admin", &[])?)],
                    genesis: genesis.clone(),
                    config: None,
                })?,
            },
        }))?,
    )
    .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "tally"},
                "spec": {
                    "clusterIP": "None",
                    "publishNotReadyAddresses": true,
                    "selector": {"app": "tally"},
                    "ports": [{"name": "api", "port": 7051}, {"name": "peer", "port": 7052}],
                },
            }))?,
        )
        .await?;
    // Secrets of three pods, the third missing: optional sources are skipped.
    let tls_sources: Vec<_> = (0..3)
        .map(|i| {
            json!({"secret": {"name": format!("tally-{i}-tls"), "optional": true, "items": [
                {"key": "tls.crt", "path": format!("tally-{i}/tls.crt")},
                {"key": "tls.key", "path": format!("tally-{i}/tls.key"), "mode": 0o600},
            ]}})
        })
        .collect();
    let env = |name: &str, value: &str| json!({"name": name, "value": value});
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let sts = json!({
        "metadata": {"name": "tally"},
        "spec": {
            "serviceName": "tally",
            "replicas": 2,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "tally"}},
            "template": {
                "metadata": {"labels": {"app": "tally"}},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": "tally-node",
                        "image": "ghcr.io/tally-dev/tally-node:0.1.0",
                        "command": ["tally-node"],
                        "args": [
                            "--cert=/etc/tally/tls/$(POD_NAME)/tls.crt",
                            "--key=/etc/tally/tls/$(POD_NAME)/tls.key",
                            "--genesis=/etc/tally/config/genesis.json",
                            "--no-fsync",
                        ],
                        "env": [
                            field("POD_NAME", "metadata.name"),
                            field("POD_IP", "status.podIP"),
                            env("TALLY_NODE_NAME", "$(POD_NAME)"),
                            env("TALLY_LISTEN_API", "$(POD_IP):7051"),
                            env("TALLY_LISTEN_PEER", "$(POD_IP):7052"),
                            env("TALLY_LISTEN_ADMIN", "$(POD_IP):7053"),
                            env("TALLY_DATA_DIR", "/var/lib/tally/data"),
                            env("TALLY_ORG_CA", "/etc/tally/config/org-ca.pem"),
                        ],
                        "ports": [
                            {"name": "api", "containerPort": 7051},
                            {"name": "peer", "containerPort": 7052},
                            {"name": "admin", "containerPort": 7053},
                        ],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "api", "scheme": "HTTPS"},
                                           "periodSeconds": 2},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 7051, "scheme": "HTTPS"},
                                          "initialDelaySeconds": 5},
                        "volumeMounts": [
                            {"name": "data", "mountPath": "/var/lib/tally"},
                            {"name": "tls", "mountPath": "/etc/tally/tls", "readOnly": true},
                            {"name": "config", "mountPath": "/etc/tally/config", "readOnly": true},
                        ],
                    }],
                    "volumes": [
                        {"name": "tls", "projected": {"sources": tls_sources}},
                        {"name": "config", "configMap": {"name": "tally-config"}},
                    ],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    });
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    sets.create(&PostParams::default(), &serde_json::from_value(sts)?)
        .await
        .context("create the StatefulSet")?;
    Ok(ca)
}

fn first_container(p: Option<&Pod>) -> Option<&ContainerStatus> {
    p.and_then(|p| p.status.as_ref())
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
}

/// What a kubelet reports for a running, ready pod.
fn check_status(pod: &Pod, ip: &Ipv4Addr, node_ip: Ipv4Addr) -> anyhow::Result<()> {
    let s = pod.status.as_ref().context("no status")?;
    ensure!(s.phase.as_deref() == Some("Running"), "phase {:?}", s.phase);
    ensure!(
        s.host_ip.as_deref() == Some(node_ip.to_string().as_str()),
        "hostIP {:?}",
        s.host_ip
    );
    let ips: Vec<&str> = s.pod_ips.iter().flatten().map(|p| p.ip.as_str()).collect();
    ensure!(ips == [ip.to_string()], "podIPs {ips:?}");
    ensure!(s.start_time.is_some(), "no startTime");
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        ensure!(
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == kind && c.status == "True"),
            "condition {kind} is not True: {:?}",
            s.conditions
        );
    }
    let c = first_container(Some(pod)).context("no containerStatuses")?;
    ensure!(
        c.name == "tally-node"
            && c.ready
            && c.started == Some(true)
            && c.restart_count == 0
            && c.state.as_ref().and_then(|s| s.running.as_ref()).is_some(),
        "container status {c:?}"
    );
    Ok(())
}

fn is_ready(p: Option<&Pod>) -> bool {
    p.and_then(|p| p.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn phase(p: Option<&Pod>) -> Option<&str> {
    p.and_then(|p| p.status.as_ref())
        .and_then(|s| s.phase.as_deref())
}

fn ready_replicas(s: Option<&StatefulSet>) -> Option<i32> {
    s.and_then(|s| s.status.as_ref())
        .and_then(|s| s.ready_replicas)
}

fn pod_ip(p: &Pod) -> anyhow::Result<Ipv4Addr> {
    let ip = p
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .context("no status.podIP")?;
    ip.parse().with_context(|| format!("status.podIP {ip:?}"))
}

/// Waits (watching the object) until `cond` holds; the object then (None once deleted).
async fn wait<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    cond: impl Condition<K>,
) -> anyhow::Result<Option<K>>
where
    K: kube::Resource + Clone + Debug + Send + DeserializeOwned + 'static,
{
    let t = Instant::now();
    let r = tokio::time::timeout(TIMEOUT, await_condition(api.clone(), name, cond))
        .await
        .map_err(|_| anyhow::anyhow!("{what}: not within {TIMEOUT:?}"))?
        .with_context(|| format!("waiting for {what}"))?;
    eprintln!("{what}: after {:?}", t.elapsed());
    Ok(r)
}

/// Waits until `path` holds `text` (the runner rewrites volumes within moments of a change;
/// polled every 100 ms).
async fn wait_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        if Instant::now() > deadline {
            bail!("{} does not hold {text:?}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Waits until the runner's hosts file satisfies `pred` (it is rewritten within moments of a
/// change; polled every 100 ms). Returns its text.
async fn wait_hosts(runner: &PodRunner, pred: impl Fn(&str) -> bool) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(runner.hosts_path()).unwrap_or_default();
        if pred(&text) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("the hosts file did not become as expected:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
