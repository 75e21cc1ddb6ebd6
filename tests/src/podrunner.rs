//! A stand-in for the scheduler and the kubelet, so that the operator's end-to-end suites can
//! run ledger pods on a control plane without a container runtime.
//!
//! [`PodRunner::start`] registers a `Node`, binds every pending pod that no one scheduled (any
//! namespace, scheduler `default-scheduler`) to it, and runs the pods bound to it as local
//! processes:
//!
//! - a container whose image contains `tally-node` runs the `tally-node` executable given in
//!   [`RunnerOptions::node_bin`] (the first element of `command` stands for it; `args` and the
//!   rest of `command` are passed). A pod with any other image is marked `Failed` with a
//!   message naming the image;
//! - its environment is built as the kubelet does (`env` with `value` and `$(VAR)` expansion,
//!   `valueFrom.fieldRef`/`secretKeyRef`/`configMapKeyRef`/`resourceFieldRef`, `envFrom`) on
//!   an empty one holding only `PATH`, `HOSTNAME` and `TALLY_HOSTS_FILE` (the runner's host
//!   table, below); `args` are expanded with it;
//! - volumes are folders: `configMap`, `secret`, `projected` and `downwardAPI` are written under
//!   `<root>/pods/<ns>/<pod>/volumes/<volume>/` (and rewritten when the objects change),
//!   `emptyDir` is an empty folder there, `persistentVolumeClaim` is `<root>/pvc/<ns>/<claim>`
//!   (kept across pods: a recreated StatefulSet pod finds its data; the claim's own status is
//!   not looked at), `hostPath` is the path itself. Since processes see the host's file system,
//!   every `mountPath` (longest first, with its `subPath`) that starts a path in an env value,
//!   an argument or `workingDir` is rewritten to the folder that stands for it;
//! - each pod gets its own loopback address `<ip_prefix>.X.Y`, allocated in order and kept per
//!   namespace/name for the runner's life (a recreated pod gets its predecessor's address);
//!   the process listens where its arguments say (e.g. `$(POD_IP):7051`);
//! - probes (`httpGet`, `tcpSocket`, `grpc` as a TCP connect; `exec` is not run and counts as
//!   success) against the pod address: readiness polled every second, liveness every
//!   `periodSeconds` (at most 10 s), `failureThreshold` consecutive failures; a failing
//!   liveness or startup probe restarts the container;
//! - `restartPolicy`: an exited container is restarted after 1 s, 2 s, 4 s ... at most 10 s;
//!   `restartCount` and `lastState` tell;
//! - status (phase, pod IP, host IP, start time, conditions, container statuses) is patched on
//!   the status subresource whenever it changes;
//! - a pod with a `deletionTimestamp` gets SIGTERM (its process group), SIGKILL after its grace
//!   period, and is then deleted with grace period 0, as the kubelet does; a pod that vanishes
//!   from the API (force-deleted) is killed likewise. Its folder goes (its logs are kept under
//!   `<root>/logs/<ns>/<pod>/`), claim folders stay;
//! - each container's stdout and stderr go to `<root>/pods/<ns>/<pod>/<container>.log`.
//!
//! Cluster DNS stand-in: `<root>/hosts`, in `/etc/hosts` format and replaced by an atomic
//! rename when it changes, lists `<hostname>.<subdomain>.<ns>.svc.cluster.local` (and its
//! shorter forms) for every pod run here that has `spec.hostname` and `spec.subdomain`, and
//! `<service>.<ns>.svc.cluster.local` for every Service with a selector, at the address of one
//! ready pod run here that it selects. tally-node reads it through `TALLY_HOSTS_FILE`
//! (`--hosts-file`).
//!
//! Not simulated: resources, affinity, taints, node selectors, images, users and security
//! contexts, service-account tokens, ports other than what the process binds, Services'
//! virtual IPs. Two runners on one control plane need different `ip_prefix`es (they race to
//! bind pending pods, which spreads them).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Node, Pod, Probe, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;

/// Where a [`PodRunner`] runs its pods.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// The name of the `Node` it registers and runs the pods of.
    pub node_name: String,
    /// Its folder: `pods/`, `pvc/`, `logs/` and `hosts` go there. It must exist or be
    /// creatable; the runner does not delete it.
    pub root_dir: PathBuf,
    /// The first two octets of the pod addresses, e.g. `"127.61"`: pods get `127.61.0.1`,
    /// `127.61.0.2`, ... (all of 127.0.0.0/8 is loopback on Linux).
    pub ip_prefix: String,
    /// The `tally-node` executable that containers with a tally-node image run.
    pub node_bin: PathBuf,
}

const HOST_IP: &str = "127.0.0.1";
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Plays the scheduler and the kubelet for one node; see the [module](self) documentation.
///
/// Every process it started is killed (SIGKILL to its process group) by
/// [`shutdown`](Self::shutdown) or when this is dropped; each also gets `PR_SET_PDEATHSIG`.
/// When dropped while a test panics, the last lines of every container log are printed.
pub struct PodRunner {
    shared: Arc<Shared>,
}

struct Shared {
    client: kube::Client,
    opts: RunnerOptions,
    prefix: [u8; 2],
    configmaps: Store<ConfigMap>,
    secrets: Store<Secret>,
    services: Store<Service>,
    /// Bumped on every ConfigMap or Secret event: volumes and waiting containers look again.
    objects_changed: watch::Sender<u64>,
    /// Poked when what the hosts file lists may have changed.
    hosts_dirty: Notify,
    started: Timestamp,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    ips: HashMap<(String, String), Ipv4Addr>,
    next_ip: u32,
    /// The pods whose workers run, by namespace and name.
    pods: BTreeMap<(String, String), PodInfo>,
    /// The log of each pod's first container: where it is now, or where it was archived.
    logs: HashMap<(String, String), PathBuf>,
    /// Pod workers by pod UID; `None` sent when the pod is gone from the API.
    workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
    finished: HashSet<String>,
    /// Per namespace/name, whether the latest worker has finished: a pod recreated under the
    /// same name starts only once its predecessor's processes are gone.
    last_by_name: HashMap<(String, String), watch::Receiver<bool>>,
    tasks: Vec<AbortHandle>,
    /// Process groups alive, by an id.
    procs: HashMap<u64, i32>,
    next_proc: u64,
    stopped: bool,
}

#[derive(Clone, Debug)]
struct PodInfo {
    uid: String,
    ip: Ipv4Addr,
    hostname: Option<String>,
    subdomain: Option<String>,
    labels: BTreeMap<String, String>,
    ready: bool,
    pids: Vec<u32>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn node(&self) -> &str {
        &self.opts.node_name
    }

    fn spawn<F>(self: &Arc<Self>, fut: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let h = tokio::spawn(fut);
        let mut st = self.state();
        st.tasks.retain(|t| !t.is_finished());
        if st.stopped {
            h.abort();
        } else {
            st.tasks.push(h.abort_handle());
        }
        h
    }

    fn ip_for(&self, ns: &str, name: &str) -> anyhow::Result<Ipv4Addr> {
        let mut st = self.state();
        if let Some(ip) = st.ips.get(&(ns.to_string(), name.to_string())) {
            return Ok(*ip);
        }
        let n = st.next_ip;
        let (x, y) = (n / 254, n % 254 + 1);
        if x > 255 {
            bail!("no pod address left under {}", self.opts.ip_prefix);
        }
        st.next_ip += 1;
        let ip = Ipv4Addr::new(self.prefix[0], self.prefix[1], x as u8, y as u8);
        st.ips.insert((ns.to_string(), name.to_string()), ip);
        Ok(ip)
    }

    fn pod_dir(&self, ns: &str, pod: &str) -> PathBuf {
        self.opts.root_dir.join("pods").join(ns).join(pod)
    }

    fn hosts_path(&self) -> PathBuf {
        self.opts.root_dir.join("hosts")
    }

    fn pvc_dir(&self, ns: &str, claim: &str) -> PathBuf {
        self.opts.root_dir.join("pvc").join(ns).join(claim)
    }

    fn kill_all(&self) {
        let (procs, tasks) = {
            let mut st = self.state();
            st.stopped = true;
            st.workers.clear();
            (std::mem::take(&mut st.procs), std::mem::take(&mut st.tasks))
        };
        for pgid in procs.values() {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is
            // shared.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        for t in tasks {
            t.abort();
        }
    }

    /// The hosts file's text for the pods and Services as they are now.
    fn hosts_text(&self) -> String {
        let mut out = format!(
            "# Written by the tally-tests pod runner of node {}: pod and Service names.\n",
            self.node()
        );
        let mut services: Vec<Arc<Service>> = self.services.state();
        services.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
        let st = self.state();
        for ((ns, _), p) in &st.pods {
            if let (Some(h), Some(sd)) = (&p.hostname, &p.subdomain) {
                let base = format!("{h}.{sd}.{ns}");
                out += &format!(
                    "{} {base}.svc.cluster.local {base}.svc {base} {h}.{sd}\n",
                    p.ip
                );
            }
        }
        for svc in services {
            let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
                continue;
            };
            let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                continue;
            };
            if selector.is_empty() {
                continue;
            }
            let chosen = st.pods.iter().find(|((pns, _), p)| {
                pns == ns
                    && p.ready
                    && selector
                        .iter()
                        .all(|(k, v)| p.labels.get(k).is_some_and(|l| l == v))
            });
            if let Some((_, p)) = chosen {
                let base = format!("{name}.{ns}");
                out += &format!("{} {base}.svc.cluster.local {base}.svc {base}\n", p.ip);
            }
        }
        out
    }
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn rfc3339(t: Timestamp) -> String {
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", t).unwrap_or_default()
}

/// Writes `text` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.podrunner-tmp",
        path.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

impl PodRunner {
    /// Registers the node and starts scheduling and running pods (tokio tasks on the current
    /// runtime).
    ///
    /// # Errors
    /// When `ip_prefix` is not two octets, the folder cannot be made, or the `Node` cannot be
    /// registered.
    pub async fn start(client: kube::Client, opts: RunnerOptions) -> anyhow::Result<PodRunner> {
        let prefix = parse_prefix(&opts.ip_prefix)?;
        for d in ["pods", "pvc", "logs"] {
            let p = opts.root_dir.join(d);
            std::fs::create_dir_all(&p).with_context(|| format!("create {}", p.display()))?;
        }
        let (configmaps, cm_writer) = reflector::store();
        let (secrets, secret_writer) = reflector::store();
        let (services, service_writer) = reflector::store();
        let shared = Arc::new(Shared {
            client: client.clone(),
            opts,
            prefix,
            configmaps,
            secrets,
            services,
            objects_changed: watch::channel(0).0,
            hosts_dirty: Notify::new(),
            started: Timestamp::now(),
            state: Mutex::new(State::default()),
        });
        write_atomic(&shared.hosts_path(), shared.hosts_text().as_bytes())
            .with_context(|| format!("write {}", shared.hosts_path().display()))?;
        register_node(&shared).await?;

        let runner = PodRunner {
            shared: shared.clone(),
        };
        let bump = |s: &Shared| {
            s.objects_changed.send_modify(|n| *n += 1);
        };
        shared.spawn(reflect(
            shared.clone(),
            cm_writer,
            Api::all(client.clone()),
            bump,
        ));
        shared.spawn(reflect(
            shared.clone(),
            secret_writer,
            Api::all(client.clone()),
            bump,
        ));
        shared.spawn(reflect(
            shared.clone(),
            service_writer,
            Api::all(client),
            |s: &Shared| s.hosts_dirty.notify_one(),
        ));
        shared.spawn(heartbeat(shared.clone()));
        shared.spawn(scheduler(shared.clone()));
        shared.spawn(kubelet(shared.clone()));
        shared.spawn(hosts_writer(shared.clone()));
        Ok(runner)
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        self.shared.node()
    }

    /// The runner's folder.
    pub fn root_dir(&self) -> &Path {
        &self.shared.opts.root_dir
    }

    /// The hosts file (`<root>/hosts`).
    pub fn hosts_path(&self) -> PathBuf {
        self.shared.hosts_path()
    }

    /// The folder standing for the PersistentVolumeClaim `claim` (`<root>/pvc/<ns>/<claim>`).
    pub fn pvc_dir(&self, ns: &str, claim: &str) -> PathBuf {
        self.shared.pvc_dir(ns, claim)
    }

    /// The folder of a pod while it runs here (`<root>/pods/<ns>/<pod>`).
    pub fn pod_dir(&self, ns: &str, pod: &str) -> PathBuf {
        self.shared.pod_dir(ns, pod)
    }

    /// The log (stdout and stderr, across restarts) of the pod's first container:
    /// `<root>/pods/<ns>/<pod>/<container>.log` while the pod runs here, its copy under
    /// `<root>/logs/<ns>/<pod>/` once the pod is gone.
    pub fn log_path(&self, ns: &str, pod: &str) -> PathBuf {
        self.shared
            .state()
            .logs
            .get(&(ns.to_string(), pod.to_string()))
            .cloned()
            .unwrap_or_else(|| self.pod_dir(ns, pod).join("tally-node.log"))
    }

    /// The log of one container of a pod that runs here.
    pub fn container_log_path(&self, ns: &str, pod: &str, container: &str) -> PathBuf {
        self.pod_dir(ns, pod).join(format!("{container}.log"))
    }

    /// The address the pod got (also after it is gone: it is kept for its name).
    pub fn pod_ip(&self, ns: &str, pod: &str) -> Option<Ipv4Addr> {
        self.shared
            .state()
            .ips
            .get(&(ns.to_string(), pod.to_string()))
            .copied()
    }

    /// The process id of the pod's first running container, if one runs now.
    pub fn pid(&self, ns: &str, pod: &str) -> Option<u32> {
        self.shared
            .state()
            .pods
            .get(&(ns.to_string(), pod.to_string()))
            .and_then(|p| p.pids.first().copied())
    }

    /// The process ids of every container process alive now.
    pub fn running_pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .shared
            .state()
            .procs
            .values()
            .map(|p| *p as u32)
            .collect();
        v.sort_unstable();
        v
    }

    /// Stops everything: SIGKILL to every process group it started, its tasks aborted; waits
    /// (at most 5 s) until the processes are gone. Pods keep the status they had (as with a
    /// node that died). Idempotent; dropping the runner does the same without waiting.
    pub async fn shutdown(&mut self) {
        let pids = self.running_pids();
        self.shared.kill_all();
        let deadline = Instant::now() + Duration::from_secs(5);
        for pid in pids {
            while process_alive(pid) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

impl Drop for PodRunner {
    fn drop(&mut self) {
        self.shared.kill_all();
        if std::thread::panicking() {
            for dir in ["pods", "logs"] {
                for log in find_logs(&self.shared.opts.root_dir.join(dir)) {
                    eprintln!(
                        "--- podrunner {}: last lines of {} ---\n{}",
                        self.shared.node(),
                        log.display(),
                        crate::log_tail(&log, 25)
                    );
                }
            }
        }
    }
}

/// Whether `pid` names a process that is neither gone nor a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}

fn find_logs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "volumes") {
                continue;
            }
            out.extend(find_logs(&p));
        } else if p.extension().is_some_and(|x| x == "log") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn parse_prefix(s: &str) -> anyhow::Result<[u8; 2]> {
    let parts: Vec<&str> = s.split('.').collect();
    match parts.as_slice() {
        [a, b] => Ok([
            a.parse().with_context(|| format!("ip_prefix {s:?}"))?,
            b.parse().with_context(|| format!("ip_prefix {s:?}"))?,
        ]),
        _ => bail!("ip_prefix {s:?} is not two octets such as \"127.61\""),
    }
}

// ---------------------------------------------------------------------------------------------
// Watches, the node, scheduling and the hosts file.
// ---------------------------------------------------------------------------------------------

/// Keeps `writer`'s store in step with every object of `api`; calls `on_change` after each
/// change and after each (re)list.
async fn reflect<K>(
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

fn node_status(shared: &Shared) -> Value {
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
            {"type": "InternalIP", "address": HOST_IP},
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

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

async fn register_node(shared: &Arc<Shared>) -> anyhow::Result<()> {
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
async fn heartbeat(shared: Arc<Shared>) {
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
async fn scheduler(shared: Arc<Shared>) {
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

async fn bind(shared: Arc<Shared>, ns: String, name: String, uid: String) {
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

/// Rewrites the hosts file whenever what it lists changed.
async fn hosts_writer(shared: Arc<Shared>) {
    let _ = shared.services.wait_until_ready().await;
    let mut last = String::new();
    loop {
        let text = shared.hosts_text();
        if text != last {
            match write_atomic(&shared.hosts_path(), text.as_bytes()) {
                Ok(()) => last = text,
                Err(e) => eprintln!(
                    "podrunner {}: writing {}: {e}",
                    shared.node(),
                    shared.hosts_path().display()
                ),
            }
        }
        shared.hosts_dirty.notified().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The kubelet: one worker per pod bound here.
// ---------------------------------------------------------------------------------------------

async fn kubelet(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.node()));
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Apply(p)) => on_pod(&shared, p),
            Ok(watcher::Event::InitApply(p)) => {
                if let Some(uid) = &p.metadata.uid {
                    listed.insert(uid.clone());
                }
                on_pod(&shared, p);
            }
            Ok(watcher::Event::Delete(p)) => {
                if let Some(uid) = &p.metadata.uid {
                    pod_gone(&shared, uid);
                }
            }
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitDone) => {
                let gone: Vec<String> = shared
                    .state()
                    .workers
                    .keys()
                    .filter(|u| !listed.contains(*u))
                    .cloned()
                    .collect();
                for uid in gone {
                    pod_gone(&shared, &uid);
                }
            }
            Err(e) => eprintln!("podrunner {}: watching its pods: {e}", shared.node()),
        }
    }
}

fn pod_gone(shared: &Shared, uid: &str) {
    if let Some(tx) = shared.state().workers.get(uid) {
        tx.send_replace(None);
    }
}

fn on_pod(shared: &Arc<Shared>, pod: Pod) {
    let (Some(uid), Some(ns), Some(name)) = (
        pod.metadata.uid.clone(),
        pod.metadata.namespace.clone(),
        pod.metadata.name.clone(),
    ) else {
        return;
    };
    let mut st = shared.state();
    if st.stopped || st.finished.contains(&uid) {
        return;
    }
    if let Some(tx) = st.workers.get(&uid) {
        tx.send_replace(Some(Arc::new(pod)));
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        // Finished before this runner saw it: nothing runs; let a deletion complete.
        if pod.metadata.deletion_timestamp.is_some() {
            st.finished.insert(uid.clone());
            drop(st);
            let s = shared.clone();
            shared.spawn(async move { delete_now(&s, &ns, &name, &uid).await });
        }
        return;
    }
    let pod = Arc::new(pod);
    let (tx, rx) = watch::channel(Some(pod.clone()));
    let (done_tx, done_rx) = watch::channel(false);
    let prev = st.last_by_name.insert((ns, name), done_rx);
    st.workers.insert(uid, tx);
    drop(st);
    let s = shared.clone();
    shared.spawn(async move { run_pod(s, pod, rx, prev, done_tx).await });
}

/// Deletes the pod from the API with grace period 0 (what the kubelet does once its
/// containers are gone), if it is still the same pod.
async fn delete_now(shared: &Shared, ns: &str, name: &str, uid: &str) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {}
        Err(e) if matches!(api_code(&e), Some(404 | 409)) => {}
        Err(e) => eprintln!("podrunner {}: deleting pod {ns}/{name}: {e}", shared.node()),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum CState {
    Waiting { reason: String, message: String },
    Running { started_at: String },
    Terminated(Term),
}

#[derive(Clone, Debug, PartialEq)]
struct Term {
    exit_code: i32,
    signal: Option<i32>,
    reason: String,
    message: Option<String>,
    started_at: String,
    finished_at: String,
    container_id: String,
}

impl Term {
    fn json(&self) -> Value {
        let mut t = json!({
            "exitCode": self.exit_code, "reason": self.reason,
            "startedAt": self.started_at, "finishedAt": self.finished_at,
            "containerID": self.container_id,
        });
        if let Some(s) = self.signal {
            t["signal"] = json!(s);
        }
        if let Some(m) = &self.message {
            t["message"] = json!(m);
        }
        json!({ "terminated": t })
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Container1 {
    state: CState,
    last: Option<Term>,
    restart_count: i32,
    ready: bool,
    started: bool,
    ever_ran: bool,
    /// Terminated and not to be restarted.
    done: bool,
    pid: Option<u32>,
    container_id: String,
}

/// One pod's worker state, shared by its container loops.
struct PodCtx {
    shared: Arc<Shared>,
    ns: String,
    name: String,
    uid: String,
    ip: Ipv4Addr,
    dir: PathBuf,
    /// The pod's spec as first seen: it does not change in ways that matter here.
    spec: k8s_openapi::api::core::v1::PodSpec,
    /// The pod as last seen (labels and annotations may change).
    latest: Mutex<Arc<Pod>>,
    containers: Vec<Container>,
    n_init: usize,
    start_time: String,
    states: Mutex<Vec<Container1>>,
    initialized: Mutex<bool>,
    failed: Mutex<Option<(String, String)>>,
    cond_times: Mutex<HashMap<&'static str, (bool, String)>>,
    volumes_lock: tokio::sync::Mutex<()>,
    changed: Notify,
    /// `Some(grace)`: stop every container with that grace period.
    stop: watch::Sender<Option<Duration>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Outcome {
    Succeeded,
    Failed,
    Stopped,
}

enum RunEnd {
    Exited(Term),
    Stopped(Term),
}

struct Waiting {
    reason: &'static str,
    message: String,
}

impl Waiting {
    fn config(message: String) -> Waiting {
        Waiting {
            reason: "CreateContainerConfigError",
            message,
        }
    }
    fn mount(message: String) -> Waiting {
        Waiting {
            reason: "ContainerCreating",
            message,
        }
    }
}

struct Launch {
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
}

async fn run_pod(
    shared: Arc<Shared>,
    pod: Arc<Pod>,
    mut rx: watch::Receiver<Option<Arc<Pod>>>,
    prev: Option<watch::Receiver<bool>>,
    done: watch::Sender<bool>,
) {
    if let Some(mut prev) = prev {
        let _ = prev.wait_for(|d| *d).await;
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    match PodCtx::new(shared.clone(), pod) {
        Ok(ctx) => {
            let ctx = Arc::new(ctx);
            ctx.lifecycle(&mut rx).await;
            ctx.cleanup();
        }
        Err(e) => {
            eprintln!("podrunner {}: pod {ns}/{name}: {e:#}", shared.node());
            // Wait for its deletion all the same.
            loop {
                let current = rx.borrow_and_update().clone();
                match current {
                    None => break,
                    Some(p) if p.metadata.deletion_timestamp.is_some() => {
                        delete_now(&shared, &ns, &name, &uid).await;
                        break;
                    }
                    Some(_) => {}
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
    }
    {
        let mut st = shared.state();
        st.workers.remove(&uid);
        st.finished.insert(uid);
    }
    let _ = done.send(true);
}

impl PodCtx {
    fn new(shared: Arc<Shared>, pod: Arc<Pod>) -> anyhow::Result<PodCtx> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().context("the pod has no spec")?;
        let ip = shared.ip_for(&ns, &name)?;
        let dir = shared.pod_dir(&ns, &name);
        std::fs::create_dir_all(dir.join("volumes"))
            .with_context(|| format!("create {}", dir.display()))?;
        let inits = spec.init_containers.clone().unwrap_or_default();
        let n_init = inits.len();
        let containers: Vec<Container> = inits
            .into_iter()
            .chain(spec.containers.iter().cloned())
            .collect();
        let states = containers
            .iter()
            .enumerate()
            .map(|(i, c)| Container1 {
                state: CState::Waiting {
                    reason: if i < n_init {
                        "PodInitializing"
                    } else {
                        "ContainerCreating"
                    }
                    .to_string(),
                    message: String::new(),
                },
                last: None,
                restart_count: 0,
                ready: false,
                started: false,
                ever_ran: false,
                done: false,
                pid: None,
                container_id: format!("podrunner://{uid}/{}", c.name),
            })
            .collect();
        {
            let mut st = shared.state();
            let key = (ns.clone(), name.clone());
            if let Some(first) = spec.containers.first() {
                st.logs
                    .insert(key.clone(), dir.join(format!("{}.log", first.name)));
            }
            st.pods.insert(
                key,
                PodInfo {
                    uid: uid.clone(),
                    ip,
                    hostname: spec.hostname.clone(),
                    subdomain: spec.subdomain.clone(),
                    labels: pod.metadata.labels.clone().unwrap_or_default(),
                    ready: false,
                    pids: Vec::new(),
                },
            );
        }
        shared.hosts_dirty.notify_one();
        Ok(PodCtx {
            ns,
            name,
            uid,
            ip,
            dir,
            latest: Mutex::new(pod),
            spec,
            containers,
            n_init,
            start_time: rfc3339(Timestamp::now()),
            states: Mutex::new(states),
            initialized: Mutex::new(n_init == 0),
            failed: Mutex::new(None),
            cond_times: Mutex::new(HashMap::new()),
            volumes_lock: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
            stop: watch::channel(None).0,
            shared,
        })
    }

    fn spec(&self) -> &k8s_openapi::api::core::v1::PodSpec {
        &self.spec
    }

    fn set(&self, idx: usize, f: impl FnOnce(&mut Container1)) {
        if let Some(s) = lock(&self.states).get_mut(idx) {
            f(s);
        }
        self.changed.notify_one();
    }

    fn grace(&self, pod: &Pod) -> Duration {
        let secs = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    /// Runs the pod until it is deleted or gone.
    async fn lifecycle(self: &Arc<Self>, rx: &mut watch::Receiver<Option<Arc<Pod>>>) {
        let unsupported = self
            .containers
            .iter()
            .find(|c| !c.image.as_deref().unwrap_or("").contains("tally-node"));
        let driver = match unsupported {
            Some(c) => {
                let message = format!(
                    "the tally-tests pod runner runs only tally-node images: container {:?} has image {:?}",
                    c.name,
                    c.image.as_deref().unwrap_or("")
                );
                for i in 0..self.containers.len() {
                    self.set(i, |s| {
                        s.state = CState::Waiting {
                            reason: "UnsupportedImage".to_string(),
                            message: message.clone(),
                        }
                    });
                }
                *lock(&self.failed) = Some(("UnsupportedImage".to_string(), message));
                None
            }
            None => {
                let ctx = self.clone();
                Some(self.shared.spawn(async move { ctx.drive().await }))
            }
        };
        let mut objects = self.shared.objects_changed.subscribe();
        let mut reported: Option<Value> = None;
        let mut retry_at: Option<tokio::time::Instant> = None;
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.ns);
        loop {
            let current = rx.borrow_and_update().clone();
            match current {
                None => {
                    // Gone from the API (force-deleted): stop with the shortest grace.
                    self.stop.send_replace(Some(Duration::from_secs(2)));
                    if let Some(d) = driver {
                        let _ = d.await;
                    }
                    return;
                }
                Some(p) if p.metadata.deletion_timestamp.is_some() => {
                    self.stop.send_replace(Some(self.grace(&p)));
                    if let Some(d) = driver {
                        let _ = d.await;
                    }
                    delete_now(&self.shared, &self.ns, &self.name, &self.uid).await;
                    return;
                }
                Some(p) => *lock(&self.latest) = p,
            }
            let status = self.status_json();
            self.publish_info();
            let due = retry_at.is_some_and(|t| t <= tokio::time::Instant::now());
            if reported.as_ref() != Some(&status) || due {
                retry_at = None;
                match api
                    .patch_status(
                        &self.name,
                        &PatchParams::default(),
                        &Patch::Strategic(json!({ "status": status })),
                    )
                    .await
                {
                    Ok(_) => reported = Some(status),
                    Err(e) if api_code(&e) == Some(404) => {}
                    Err(e) => {
                        eprintln!(
                            "podrunner {}: status of pod {}/{}: {e}",
                            self.shared.node(),
                            self.ns,
                            self.name
                        );
                        retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                }
            }
            let retry = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = rx.changed() => {
                    if r.is_err() {
                        // The runner is stopping.
                        self.stop.send_replace(Some(Duration::ZERO));
                        return;
                    }
                }
                _ = self.changed.notified() => {}
                r = objects.changed() => {
                    if r.is_ok() {
                        if let Err(w) = self.materialize().await {
                            eprintln!(
                                "podrunner {}: refreshing the volumes of {}/{}: {}",
                                self.shared.node(), self.ns, self.name, w.message
                            );
                        }
                    }
                }
                _ = retry => {}
            }
        }
    }

    /// Runs the init containers in order, then all containers.
    async fn drive(self: Arc<Self>) {
        let _ = self.shared.configmaps.wait_until_ready().await;
        let _ = self.shared.secrets.wait_until_ready().await;
        for i in 0..self.n_init {
            match self.clone().run_container(i).await {
                Outcome::Succeeded => {}
                Outcome::Failed => {
                    *lock(&self.failed) = Some((
                        "InitContainerFailed".to_string(),
                        format!("init container {:?} failed", self.containers[i].name),
                    ));
                    self.changed.notify_one();
                    return;
                }
                Outcome::Stopped => return,
            }
        }
        *lock(&self.initialized) = true;
        self.changed.notify_one();
        let runs = (self.n_init..self.containers.len()).map(|i| self.clone().run_container(i));
        futures_util::future::join_all(runs).await;
    }

    /// One container: start, supervise, restart per the restart policy, until stopped.
    async fn run_container(self: Arc<Self>, idx: usize) -> Outcome {
        let c = self.containers[idx].clone();
        let init = idx < self.n_init;
        let policy = self
            .spec()
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".to_string());
        let mut stop = self.stop.subscribe();
        let mut objects = self.shared.objects_changed.subscribe();
        let mut backoff = Duration::from_secs(1);
        loop {
            if stop.borrow_and_update().is_some() {
                return Outcome::Stopped;
            }
            let launch = match self.materialize().await {
                Ok(()) => self.launch(&c),
                Err(w) => Err(w),
            };
            let launch = match launch {
                Ok(l) => l,
                Err(w) => {
                    self.set(idx, |s| {
                        s.state = CState::Waiting {
                            reason: w.reason.to_string(),
                            message: w.message,
                        }
                    });
                    tokio::select! {
                        _ = stop.changed() => return Outcome::Stopped,
                        _ = objects.changed() => {}
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                    continue;
                }
            };
            let t0 = Instant::now();
            let started_at = rfc3339(Timestamp::now());
            let container_id = {
                let n = lock(&self.states)
                    .get(idx)
                    .map(|s| s.restart_count)
                    .unwrap_or(0);
                format!("podrunner://{}/{}/{n}", self.uid, c.name)
            };
            let end = match self.spawn_process(&c, &launch) {
                Ok(child) => {
                    self.supervise(idx, &c, child, &started_at, &container_id, &mut stop)
                        .await
                }
                Err(e) => RunEnd::Exited(Term {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".to_string(),
                    message: Some(format!(
                        "cannot start {}: {e}",
                        self.shared.opts.node_bin.display()
                    )),
                    started_at: started_at.clone(),
                    finished_at: rfc3339(Timestamp::now()),
                    container_id: container_id.clone(),
                }),
            };
            let term = match end {
                RunEnd::Stopped(term) => {
                    self.set(idx, |s| {
                        s.state = CState::Terminated(term);
                        s.ready = false;
                        s.pid = None;
                        s.done = true;
                    });
                    return Outcome::Stopped;
                }
                RunEnd::Exited(term) => term,
            };
            let success = term.exit_code == 0 && term.reason == "Completed";
            let restart = match policy.as_str() {
                "Never" => false,
                "OnFailure" => !success,
                _ => !(init && success),
            };
            if !restart {
                self.set(idx, |s| {
                    s.state = CState::Terminated(term);
                    s.ready = false;
                    s.pid = None;
                    s.done = true;
                });
                return if success {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed
                };
            }
            if t0.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_secs(1);
            }
            let message = format!(
                "back-off {}s restarting failed container={} pod={}_{}({})",
                backoff.as_secs(),
                c.name,
                self.name,
                self.ns,
                self.uid
            );
            self.set(idx, |s| {
                s.last = Some(term);
                s.restart_count += 1;
                s.state = CState::Waiting {
                    reason: "CrashLoopBackOff".to_string(),
                    message,
                };
                s.ready = false;
                s.started = false;
                s.pid = None;
            });
            tokio::select! {
                _ = stop.changed() => return Outcome::Stopped,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn spawn_process(&self, c: &Container, l: &Launch) -> std::io::Result<tokio::process::Child> {
        use std::io::Write;
        let log = self.dir.join(format!("{}.log", c.name));
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        writeln!(
            out,
            "--- podrunner: {} {}",
            rfc3339(Timestamp::now()),
            l.args.join(" ")
        )?;
        let err = out.try_clone()?;
        let mut cmd = tokio::process::Command::new(&self.shared.opts.node_bin);
        cmd.args(&l.args)
            .env_clear()
            .envs(l.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&l.cwd)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.spawn()
    }

    /// Watches a started process: its exit, a stop request, its probes.
    async fn supervise(
        &self,
        idx: usize,
        c: &Container,
        mut child: tokio::process::Child,
        started_at: &str,
        container_id: &str,
        stop: &mut watch::Receiver<Option<Duration>>,
    ) -> RunEnd {
        let pid = child.id();
        let key = {
            let mut st = self.shared.state();
            st.next_proc += 1;
            let key = st.next_proc;
            if let Some(pid) = pid {
                st.procs.insert(key, pid as i32);
            }
            key
        };
        let has_startup = c.startup_probe.is_some();
        let has_readiness = c.readiness_probe.is_some();
        self.set(idx, |s| {
            s.state = CState::Running {
                started_at: started_at.to_string(),
            };
            s.pid = pid;
            s.ever_ran = true;
            s.started = !has_startup;
            s.ready = !has_startup && !has_readiness;
            s.container_id = container_id.to_string();
        });
        let term = |status: std::io::Result<std::process::ExitStatus>, message: Option<String>| {
            use std::os::unix::process::ExitStatusExt;
            let (exit_code, signal) = match &status {
                Ok(st) => match (st.code(), st.signal()) {
                    (Some(code), _) => (code, None),
                    (None, Some(sig)) => (128 + sig, Some(sig)),
                    (None, None) => (255, None),
                },
                Err(_) => (255, None),
            };
            let message = match (message, &status) {
                (Some(m), _) => Some(m),
                (None, Err(e)) => Some(format!("waiting for the process: {e}")),
                (None, Ok(_)) => None,
            };
            Term {
                exit_code,
                signal,
                reason: if exit_code == 0 { "Completed" } else { "Error" }.to_string(),
                message,
                started_at: started_at.to_string(),
                finished_at: rfc3339(Timestamp::now()),
                container_id: container_id.to_string(),
            }
        };
        let mut probes = Probes::new(c);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            tokio::select! {
                st = child.wait() => break RunEnd::Exited(term(st, None)),
                r = stop.changed() => {
                    let grace = match r {
                        Ok(()) => stop.borrow_and_update().unwrap_or(Duration::ZERO),
                        Err(_) => Duration::ZERO,
                    };
                    let st = terminate(&mut child, pid, grace).await;
                    break RunEnd::Stopped(term(st, None));
                }
                _ = tick.tick() => {
                    let v = probes.step(c, self.ip).await;
                    if let Some(why) = v.kill {
                        let grace = self.grace(&lock(&self.latest));
                        let st = terminate(&mut child, pid, grace).await;
                        let mut t = term(st, Some(why));
                        t.reason = "Error".to_string();
                        break RunEnd::Exited(t);
                    }
                    let (started, ready) = (probes.started, probes.started && probes.ready);
                    let changed = lock(&self.states)
                        .get(idx)
                        .is_some_and(|s| s.started != started || s.ready != ready);
                    if changed {
                        self.set(idx, |s| {
                            s.started = started;
                            s.ready = ready;
                        });
                    }
                }
            }
        };
        self.shared.state().procs.remove(&key);
        end
    }

    /// Writes every volume's files (configMap, secret, projected, downwardAPI) and makes the
    /// folders of the others.
    async fn materialize(&self) -> Result<(), Waiting> {
        let _guard = self.volumes_lock.lock().await;
        for v in self.spec().volumes.iter().flatten() {
            let dir = self.volume_dir(&v.name);
            let files = if let Some(cm) = &v.config_map {
                self.configmap_files(
                    &cm.name,
                    cm.items.as_deref(),
                    cm.optional.unwrap_or(false),
                    cm.default_mode.unwrap_or(0o644),
                )?
            } else if let Some(s) = &v.secret {
                self.secret_files(
                    s.secret_name.as_deref().unwrap_or(""),
                    s.items.as_deref(),
                    s.optional.unwrap_or(false),
                    s.default_mode.unwrap_or(0o644),
                )?
            } else if let Some(p) = &v.projected {
                let mode = p.default_mode.unwrap_or(0o644);
                let mut files = Vec::new();
                for src in p.sources.iter().flatten() {
                    if let Some(cm) = &src.config_map {
                        files.extend(self.configmap_files(
                            &cm.name,
                            cm.items.as_deref(),
                            cm.optional.unwrap_or(false),
                            mode,
                        )?);
                    } else if let Some(s) = &src.secret {
                        files.extend(self.secret_files(
                            &s.name,
                            s.items.as_deref(),
                            s.optional.unwrap_or(false),
                            mode,
                        )?);
                    } else if let Some(d) = &src.downward_api {
                        files.extend(self.downward_files(d.items.as_deref(), mode)?);
                    }
                    // serviceAccountToken and clusterTrustBundle sources are not simulated.
                }
                files
            } else if let Some(d) = &v.downward_api {
                self.downward_files(d.items.as_deref(), d.default_mode.unwrap_or(0o644))?
            } else if v.empty_dir.is_some()
                || v.ephemeral.is_some()
                || v.persistent_volume_claim.is_some()
            {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Waiting::mount(format!("volume {:?}: {}: {e}", v.name, dir.display()))
                })?;
                continue;
            } else if v.host_path.is_some() {
                continue;
            } else {
                return Err(Waiting::mount(format!(
                    "volume {:?}: the tally-tests pod runner supports configMap, secret, projected, \
                     downwardAPI, emptyDir, ephemeral, persistentVolumeClaim and hostPath volumes",
                    v.name
                )));
            };
            write_files(&dir, &files)
                .map_err(|e| Waiting::mount(format!("volume {:?}: {e}", v.name)))?;
        }
        Ok(())
    }

    /// The folder that stands for a volume.
    fn volume_dir(&self, name: &str) -> PathBuf {
        for v in self.spec().volumes.iter().flatten() {
            if v.name != name {
                continue;
            }
            if let Some(pvc) = &v.persistent_volume_claim {
                return self.shared.pvc_dir(&self.ns, &pvc.claim_name);
            }
            if let Some(h) = &v.host_path {
                return PathBuf::from(&h.path);
            }
        }
        self.dir.join("volumes").join(name)
    }

    fn configmap_files(
        &self,
        name: &str,
        items: Option<&[KeyToPath]>,
        optional: bool,
        mode: i32,
    ) -> Result<Vec<VolFile>, Waiting> {
        let key = ObjectRef::new(name).within(&self.ns);
        let Some(cm) = self.shared.configmaps.get(&key) else {
            return if optional {
                Ok(Vec::new())
            } else {
                Err(Waiting::mount(format!("configmap {name:?} not found")))
            };
        };
        let mut all: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (k, v) in cm.data.iter().flatten() {
            all.insert(k.clone(), v.clone().into_bytes());
        }
        for (k, v) in cm.binary_data.iter().flatten() {
            all.insert(k.clone(), v.0.clone());
        }
        select_items(all, items, optional, mode)
            .map_err(|k| Waiting::mount(format!("configmap {name:?} has no key {k:?}")))
    }

    fn secret_files(
        &self,
        name: &str,
        items: Option<&[KeyToPath]>,
        optional: bool,
        mode: i32,
    ) -> Result<Vec<VolFile>, Waiting> {
        let key = ObjectRef::new(name).within(&self.ns);
        let Some(secret) = self.shared.secrets.get(&key) else {
            return if optional {
                Ok(Vec::new())
            } else {
                Err(Waiting::mount(format!("secret {name:?} not found")))
            };
        };
        let all: BTreeMap<String, Vec<u8>> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        select_items(all, items, optional, mode)
            .map_err(|k| Waiting::mount(format!("secret {name:?} has no key {k:?}")))
    }

    fn downward_files(
        &self,
        items: Option<&[DownwardAPIVolumeFile]>,
        mode: i32,
    ) -> Result<Vec<VolFile>, Waiting> {
        let mut out = Vec::new();
        for it in items.into_iter().flatten() {
            let value = if let Some(f) = &it.field_ref {
                self.field_value(&f.field_path).map_err(Waiting::mount)?
            } else if let Some(r) = &it.resource_field_ref {
                self.resource_value(&r.resource, r.container_name.as_deref())
            } else {
                continue;
            };
            out.push(VolFile {
                path: it.path.clone(),
                data: value.into_bytes(),
                mode: it.mode.unwrap_or(mode),
            });
        }
        Ok(out)
    }

    /// A `fieldRef` value (env vars and downwardAPI files).
    fn field_value(&self, path: &str) -> Result<String, String> {
        let pod = lock(&self.latest).clone();
        let meta = &pod.metadata;
        let map_text = |m: Option<&BTreeMap<String, String>>| {
            m.into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v:?}\n"))
                .collect::<String>()
        };
        let subscript = |prefix: &str| {
            path.strip_prefix(prefix)
                .and_then(|r| r.strip_prefix("['"))
                .and_then(|r| r.strip_suffix("']"))
                .map(str::to_string)
        };
        Ok(match path {
            "metadata.name" => self.name.clone(),
            "metadata.namespace" => self.ns.clone(),
            "metadata.uid" => self.uid.clone(),
            "metadata.labels" => map_text(meta.labels.as_ref()),
            "metadata.annotations" => map_text(meta.annotations.as_ref()),
            "spec.nodeName" => self.shared.node().to_string(),
            "spec.serviceAccountName" => self
                .spec()
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            "status.podIP" | "status.podIPs" => self.ip.to_string(),
            "status.hostIP" | "status.hostIPs" => HOST_IP.to_string(),
            _ => {
                if let Some(k) = subscript("metadata.labels") {
                    meta.labels
                        .as_ref()
                        .and_then(|l| l.get(&k))
                        .cloned()
                        .unwrap_or_default()
                } else if let Some(k) = subscript("metadata.annotations") {
                    meta.annotations
                        .as_ref()
                        .and_then(|l| l.get(&k))
                        .cloned()
                        .unwrap_or_default()
                } else {
                    return Err(format!("unsupported fieldRef {path:?}"));
                }
            }
        })
    }

    /// A `resourceFieldRef` value: the container's own limit or request, else the node's
    /// capacity (limits) or 0 (requests). Divisors are not applied.
    fn resource_value(&self, resource: &str, container: Option<&str>) -> String {
        let c = self
            .containers
            .iter()
            .find(|c| container.is_none_or(|n| n == c.name));
        let (kind, name) = resource.split_once('.').unwrap_or(("limits", resource));
        let r = c.and_then(|c| c.resources.as_ref());
        let v = match kind {
            "limits" => r.and_then(|r| r.limits.as_ref()),
            _ => r.and_then(|r| r.requests.as_ref()),
        }
        .and_then(|m| m.get(name))
        .map(|q| q.0.clone());
        v.unwrap_or_else(|| match (kind, name) {
            ("limits", "cpu") => "16".to_string(),
            ("limits", "memory") => (64u64 << 30).to_string(),
            _ => "0".to_string(),
        })
    }

    /// The command line, environment and working folder of a container, as the kubelet would
    /// build them, with mount paths rewritten to their folders.
    fn launch(&self, c: &Container) -> Result<Launch, Waiting> {
        let mut env = Env::default();
        env.set(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string()),
        );
        env.set(
            "HOSTNAME",
            self.spec()
                .hostname
                .clone()
                .unwrap_or_else(|| self.name.clone()),
        );
        env.set(
            "TALLY_HOSTS_FILE",
            self.shared.hosts_path().display().to_string(),
        );
        for ef in c.env_from.iter().flatten() {
            let prefix = ef.prefix.clone().unwrap_or_default();
            let data: Option<BTreeMap<String, String>> = if let Some(r) = &ef.config_map_ref {
                match self
                    .shared
                    .configmaps
                    .get(&ObjectRef::new(&r.name).within(&self.ns))
                {
                    Some(cm) => Some(cm.data.clone().unwrap_or_default()),
                    None if r.optional.unwrap_or(false) => None,
                    None => {
                        return Err(Waiting::config(format!("configmap {:?} not found", r.name)))
                    }
                }
            } else if let Some(r) = &ef.secret_ref {
                match self
                    .shared
                    .secrets
                    .get(&ObjectRef::new(&r.name).within(&self.ns))
                {
                    Some(s) => Some(
                        s.data
                            .iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                            .collect(),
                    ),
                    None if r.optional.unwrap_or(false) => None,
                    None => return Err(Waiting::config(format!("secret {:?} not found", r.name))),
                }
            } else {
                None
            };
            for (k, v) in data.into_iter().flatten() {
                env.set(&format!("{prefix}{k}"), v);
            }
        }
        for e in c.env.iter().flatten() {
            let value = if let Some(v) = &e.value {
                Some(expand(v, &env.map))
            } else if let Some(src) = &e.value_from {
                if let Some(f) = &src.field_ref {
                    Some(self.field_value(&f.field_path).map_err(Waiting::config)?)
                } else if let Some(r) = &src.resource_field_ref {
                    Some(self.resource_value(&r.resource, r.container_name.as_deref()))
                } else if let Some(r) = &src.secret_key_ref {
                    let s = self
                        .shared
                        .secrets
                        .get(&ObjectRef::new(&r.name).within(&self.ns));
                    match s.as_ref().and_then(|s| s.data.as_ref()?.get(&r.key)) {
                        Some(v) => Some(String::from_utf8_lossy(&v.0).into_owned()),
                        None if r.optional.unwrap_or(false) => None,
                        None if s.is_none() => {
                            return Err(Waiting::config(format!("secret {:?} not found", r.name)))
                        }
                        None => {
                            return Err(Waiting::config(format!(
                                "couldn't find key {} in Secret {}/{}",
                                r.key, self.ns, r.name
                            )))
                        }
                    }
                } else if let Some(r) = &src.config_map_key_ref {
                    let cm = self
                        .shared
                        .configmaps
                        .get(&ObjectRef::new(&r.name).within(&self.ns));
                    match cm.as_ref().and_then(|c| c.data.as_ref()?.get(&r.key)) {
                        Some(v) => Some(v.clone()),
                        None if r.optional.unwrap_or(false) => None,
                        None if cm.is_none() => {
                            return Err(Waiting::config(format!(
                                "configmap {:?} not found",
                                r.name
                            )))
                        }
                        None => {
                            return Err(Waiting::config(format!(
                                "couldn't find key {} in ConfigMap {}/{}",
                                r.key, self.ns, r.name
                            )))
                        }
                    }
                } else {
                    Some(String::new())
                }
            } else {
                Some(String::new())
            };
            if let Some(v) = value {
                env.set(&e.name, v);
            }
        }

        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            if !self
                .spec()
                .volumes
                .iter()
                .flatten()
                .any(|v| v.name == m.name)
            {
                return Err(Waiting::config(format!(
                    "volume mount {:?} names no volume of the pod",
                    m.name
                )));
            }
            let mut target = self.volume_dir(&m.name);
            let sub = match (&m.sub_path, &m.sub_path_expr) {
                (Some(s), _) if !s.is_empty() => Some(s.clone()),
                (_, Some(e)) if !e.is_empty() => Some(expand(e, &env.map)),
                _ => None,
            };
            if let Some(sub) = sub {
                if Path::new(&sub)
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
                {
                    return Err(Waiting::config(format!("bad subPath {sub:?}")));
                }
                target = target.join(&sub);
                if !target.exists() {
                    let _ = std::fs::create_dir_all(&target);
                }
            }
            mounts.push((m.mount_path.trim_end_matches('/').to_string(), target));
        }
        mounts.retain(|(p, _)| !p.is_empty());
        mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));

        let mut args: Vec<String> = c.command.iter().flatten().skip(1).cloned().collect();
        args.extend(c.args.iter().flatten().cloned());
        let args = args
            .iter()
            .map(|a| rewrite_paths(&expand(a, &env.map), &mounts))
            .collect();
        let env_out = env
            .order
            .iter()
            .map(|k| {
                let v = env.map.get(k).cloned().unwrap_or_default();
                // The runner's own paths are host paths already, whatever the pod mounts.
                if k == "TALLY_HOSTS_FILE" || k == "PATH" {
                    return (k.clone(), v);
                }
                (k.clone(), rewrite_paths(&v, &mounts))
            })
            .collect();
        let cwd = c
            .working_dir
            .as_deref()
            .map(|w| PathBuf::from(rewrite_paths(w, &mounts)))
            .filter(|p| p.is_dir())
            .unwrap_or_else(|| self.dir.clone());
        Ok(Launch {
            args,
            env: env_out,
            cwd,
        })
    }

    fn condition(&self, kind: &'static str, ok: bool) -> Value {
        let mut times = lock(&self.cond_times);
        let entry = times
            .entry(kind)
            .or_insert_with(|| (ok, rfc3339(Timestamp::now())));
        if entry.0 != ok {
            *entry = (ok, rfc3339(Timestamp::now()));
        }
        json!({"type": kind, "status": if ok { "True" } else { "False" },
               "lastTransitionTime": entry.1, "lastProbeTime": null})
    }

    fn status_json(&self) -> Value {
        let states = lock(&self.states).clone();
        let initialized = *lock(&self.initialized);
        let failed = lock(&self.failed).clone();
        let (inits, mains) = states.split_at(self.n_init.min(states.len()));
        let ready = initialized && failed.is_none() && mains.iter().all(|s| s.ready);
        let phase = if failed.is_some() {
            "Failed"
        } else if !initialized {
            "Pending"
        } else if mains.iter().all(|s| s.done) {
            let ok = mains.iter().all(|s| {
                matches!(&s.state, CState::Terminated(t) if t.exit_code == 0 && t.reason == "Completed")
            });
            if ok {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if mains.iter().all(|s| s.ever_ran) {
            "Running"
        } else {
            "Pending"
        };
        let cstatus = |i: usize, s: &Container1| {
            let c = &self.containers[i];
            let state = match &s.state {
                CState::Waiting { reason, message } => {
                    let mut w = json!({"reason": reason});
                    if !message.is_empty() {
                        w["message"] = json!(message);
                    }
                    json!({ "waiting": w, "running": null, "terminated": null })
                }
                CState::Running { started_at } => json!({
                    "waiting": null, "running": {"startedAt": started_at}, "terminated": null
                }),
                CState::Terminated(t) => {
                    let mut v = t.json();
                    v["waiting"] = Value::Null;
                    v["running"] = Value::Null;
                    v
                }
            };
            let image = c.image.clone().unwrap_or_default();
            let mut v = json!({
                "name": c.name, "image": image,
                "imageID": format!("podrunner://{}", self.shared.opts.node_bin.display()),
                "ready": s.ready, "started": s.started, "restartCount": s.restart_count,
                "state": state, "lastState": s.last.as_ref().map(Term::json).unwrap_or(json!({})),
            });
            if s.ever_ran {
                v["containerID"] = json!(s.container_id);
            }
            v
        };
        let ip = self.ip.to_string();
        let mut status = json!({
            "phase": phase,
            "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}],
            "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": self.start_time,
            "conditions": [
                self.condition("PodScheduled", true),
                self.condition("Initialized", initialized),
                self.condition("ContainersReady", ready),
                self.condition("Ready", ready),
            ],
            "containerStatuses": mains.iter().enumerate()
                .map(|(i, s)| cstatus(self.n_init + i, s)).collect::<Vec<_>>(),
        });
        if !inits.is_empty() {
            status["initContainerStatuses"] = inits
                .iter()
                .enumerate()
                .map(|(i, s)| cstatus(i, s))
                .collect();
        }
        if let Some((reason, message)) = failed {
            status["reason"] = json!(reason);
            status["message"] = json!(message);
        }
        status
    }

    /// Updates what the runner knows of the pod (readiness, labels, processes) for the hosts
    /// file and the accessors; pokes the hosts writer when readiness or labels changed.
    fn publish_info(&self) {
        let states = lock(&self.states).clone();
        let ready = *lock(&self.initialized)
            && lock(&self.failed).is_none()
            && states[self.n_init.min(states.len())..]
                .iter()
                .all(|s| s.ready);
        let labels = lock(&self.latest)
            .metadata
            .labels
            .clone()
            .unwrap_or_default();
        let pids: Vec<u32> = states[self.n_init.min(states.len())..]
            .iter()
            .filter_map(|s| s.pid)
            .collect();
        let mut poke = false;
        {
            let mut st = self.shared.state();
            if let Some(info) = st.pods.get_mut(&(self.ns.clone(), self.name.clone())) {
                if info.uid == self.uid {
                    poke = info.ready != ready || info.labels != labels;
                    info.ready = ready;
                    info.labels = labels;
                    info.pids = pids;
                }
            }
        }
        if poke {
            self.shared.hosts_dirty.notify_one();
        }
    }

    /// After the pod's processes are gone: keeps its logs under `<root>/logs`, removes its
    /// folder and forgets it.
    fn cleanup(&self) {
        let key = (self.ns.clone(), self.name.clone());
        let archive = self
            .shared
            .opts
            .root_dir
            .join("logs")
            .join(&self.ns)
            .join(&self.name);
        let mut first_log = None;
        if std::fs::create_dir_all(&archive).is_ok() {
            for (i, c) in self.containers.iter().enumerate() {
                let from = self.dir.join(format!("{}.log", c.name));
                let to = archive.join(format!("{}-{}.log", self.uid, c.name));
                if std::fs::rename(&from, &to).is_ok() && i == self.n_init {
                    first_log = Some(to);
                }
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "podrunner {}: removing {}: {e}",
                    self.shared.node(),
                    self.dir.display()
                );
            }
        }
        {
            let mut st = self.shared.state();
            if st.pods.get(&key).is_some_and(|p| p.uid == self.uid) {
                st.pods.remove(&key);
                if let Some(l) = first_log {
                    st.logs.insert(key, l);
                }
            }
        }
        self.shared.hosts_dirty.notify_one();
    }
}

/// SIGTERM to the process group, SIGKILL after `grace`; the exit status.
async fn terminate(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    let signal = |sig| {
        if let Some(pid) = pid {
            // SAFETY: kill(2) on the child's process group; the child is not reaped yet, so
            // its id is not reused.
            unsafe {
                libc::kill(-(pid as i32), sig);
            }
        }
    };
    signal(libc::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(r) => r,
        Err(_) => {
            signal(libc::SIGKILL);
            child.wait().await
        }
    }
}

/// Environment variables in definition order.
#[derive(Default)]
struct Env {
    order: Vec<String>,
    map: HashMap<String, String>,
}

impl Env {
    fn set(&mut self, k: &str, v: String) {
        if self.map.insert(k.to_string(), v).is_none() {
            self.order.push(k.to_string());
        }
    }
}

/// The kubelet's `$(VAR)` expansion: `$(NAME)` becomes the variable's value when it is
/// defined and stays as written when not; `$$` is a literal `$`.
fn expand(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            match r.find(')') {
                Some(end) => {
                    let name = &r[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &r[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = r;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Replaces each mount path (`mounts` sorted longest first) that starts a path in `s` (at
/// its start, or after `=`, `:`, `,`, `;`, a quote or white space) and ends at a `/` or where
/// the path ends, by the folder standing for it.
fn rewrite_paths(s: &str, mounts: &[(String, PathBuf)]) -> String {
    let is_sep = |c: char| matches!(c, '=' | ':' | ',' | ';' | '"' | '\'') || c.is_whitespace();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut prev: Option<char> = None;
    while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with('/') && prev.is_none_or(is_sep) {
            let hit = mounts.iter().find(|(mp, _)| {
                rest.starts_with(mp.as_str())
                    && rest[mp.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| c == '/' || is_sep(c))
            });
            if let Some((mp, target)) = hit {
                out.push_str(&target.display().to_string());
                i += mp.len();
                prev = mp.chars().last();
                continue;
            }
        }
        let Some(c) = rest.chars().next() else { break };
        out.push(c);
        prev = Some(c);
        i += c.len_utf8();
    }
    out
}

struct VolFile {
    path: String,
    data: Vec<u8>,
    mode: i32,
}

/// The files of a configMap or secret source: every key, or the listed `items` (a missing key
/// is an error, returned as the key, unless the source is optional).
fn select_items(
    all: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    mode: i32,
) -> Result<Vec<VolFile>, String> {
    match items {
        None => Ok(all
            .into_iter()
            .map(|(k, data)| VolFile {
                path: k,
                data,
                mode,
            })
            .collect()),
        Some(items) => {
            let mut out = Vec::new();
            for it in items {
                match all.get(&it.key) {
                    Some(data) => out.push(VolFile {
                        path: it.path.clone(),
                        data: data.clone(),
                        mode: it.mode.unwrap_or(mode),
                    }),
                    None if optional => {}
                    None => return Err(it.key.clone()),
                }
            }
            Ok(out)
        }
    }
}

/// Makes `dir` hold exactly `files` (rewriting only what changed, each by a rename).
fn write_files(dir: &Path, files: &[VolFile]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let mut keep = HashSet::new();
    for f in files {
        let rel = Path::new(&f.path);
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(std::io::Error::other(format!("bad file path {:?}", f.path)));
        }
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::read(&p).ok().as_deref() != Some(f.data.as_slice()) {
            write_atomic(&p, &f.data)?;
        }
        let mode = (f.mode as u32) & 0o777;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        keep.insert(p);
    }
    remove_others(dir, &keep)
}

fn remove_others(dir: &Path, keep: &HashSet<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            remove_others(&p, keep)?;
            if std::fs::read_dir(&p)?.next().is_none() {
                std::fs::remove_dir(&p)?;
            }
        } else if !keep.contains(&p) {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Probes.
// ---------------------------------------------------------------------------------------------

struct Probes {
    t0: Instant,
    started: bool,
    ready: bool,
    startup_failures: u32,
    ready_failures: u32,
    live_failures: u32,
    last_live: Option<Instant>,
}

#[derive(Default)]
struct Verdict {
    /// Restart the container, for this reason.
    kill: Option<String>,
}

fn secs(v: Option<i32>, default: i32) -> u64 {
    v.unwrap_or(default).max(0) as u64
}

impl Probes {
    fn new(c: &Container) -> Probes {
        Probes {
            t0: Instant::now(),
            started: c.startup_probe.is_none(),
            ready: c.readiness_probe.is_none(),
            startup_failures: 0,
            ready_failures: 0,
            live_failures: 0,
            last_live: None,
        }
    }

    /// Called about once a second.
    async fn step(&mut self, c: &Container, ip: Ipv4Addr) -> Verdict {
        let up = self.t0.elapsed();
        let due = |p: &Probe| up >= Duration::from_secs(secs(p.initial_delay_seconds, 0));
        if !self.started {
            let Some(p) = &c.startup_probe else {
                self.started = true;
                return Verdict::default();
            };
            if !due(p) {
                return Verdict::default();
            }
            match probe(p, c, ip).await {
                Ok(()) => self.started = true,
                Err(e) => {
                    self.startup_failures += 1;
                    // Polled each second: allow failureThreshold × periodSeconds of them.
                    let allowed = secs(p.failure_threshold, 3) * secs(p.period_seconds, 10).max(1);
                    if u64::from(self.startup_failures) >= allowed {
                        return Verdict {
                            kill: Some(format!("Startup probe failed: {e}")),
                        };
                    }
                    return Verdict::default();
                }
            }
        }
        if let Some(p) = &c.readiness_probe {
            if due(p) {
                match probe(p, c, ip).await {
                    Ok(()) => {
                        self.ready = true;
                        self.ready_failures = 0;
                    }
                    Err(_) => {
                        self.ready_failures += 1;
                        if u64::from(self.ready_failures) >= secs(p.failure_threshold, 3).max(1) {
                            self.ready = false;
                        }
                    }
                }
            }
        }
        if let Some(p) = &c.liveness_probe {
            let period = Duration::from_secs(secs(p.period_seconds, 10).clamp(1, 10));
            if due(p) && self.last_live.is_none_or(|t| t.elapsed() >= period) {
                self.last_live = Some(Instant::now());
                match probe(p, c, ip).await {
                    Ok(()) => self.live_failures = 0,
                    Err(e) => {
                        self.live_failures += 1;
                        if u64::from(self.live_failures) >= secs(p.failure_threshold, 3).max(1) {
                            return Verdict {
                                kill: Some(format!("Liveness probe failed: {e}")),
                            };
                        }
                    }
                }
            }
        }
        Verdict::default()
    }
}

fn probe_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("the container has no port named {s:?}"))?,
        },
    };
    u16::try_from(n).map_err(|_| format!("bad port {n}"))
}

async fn tcp_check(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
        Err(_) => Err(format!("dial tcp {host}:{port}: timeout")),
    }
}

/// One probe against the pod's address.
async fn probe(p: &Probe, c: &Container, ip: Ipv4Addr) -> Result<(), String> {
    let timeout = Duration::from_secs(secs(p.timeout_seconds, 1).max(1));
    let ip = ip.to_string();
    if let Some(h) = &p.http_get {
        let port = probe_port(&h.port, c)?;
        let host = h.host.clone().filter(|h| !h.is_empty()).unwrap_or(ip);
        if h.scheme.as_deref() == Some("HTTPS") {
            // No TLS client here: that the port accepts connections has to do.
            return tcp_check(&host, port, timeout).await;
        }
        let mut path = h.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let url = format!("http://{host}:{port}{path}");
        let headers: Vec<(&str, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|x| (x.name.as_str(), x.value.clone()))
            .collect();
        let get = crate::http::request_with("GET", &url, None, &headers, bytes::Bytes::new());
        return match tokio::time::timeout(timeout, get).await {
            Ok(Ok((status, _))) if (200..400).contains(&status) => Ok(()),
            Ok(Ok((status, _))) => Err(format!("HTTP probe failed with statuscode: {status}")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("GET {url}: timeout")),
        };
    }
    if let Some(t) = &p.tcp_socket {
        let port = probe_port(&t.port, c)?;
        let host = t.host.clone().filter(|h| !h.is_empty()).unwrap_or(ip);
        return tcp_check(&host, port, timeout).await;
    }
    if let Some(g) = &p.grpc {
        let port = u16::try_from(g.port).map_err(|_| format!("bad port {}", g.port))?;
        return tcp_check(&ip, port, timeout).await;
    }
    // exec probes are not run: there is no container to run them in.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_the_kubelet() {
        let v = vars(&[("POD_IP", "127.61.0.1"), ("NAME", "tally-0")]);
        assert_eq!(expand("$(POD_IP):7051", &v), "127.61.0.1:7051");
        assert_eq!(
            expand("/etc/tally/tls/$(NAME)/tls.crt", &v),
            "/etc/tally/tls/tally-0/tls.crt"
        );
        assert_eq!(expand("$(MISSING)-x", &v), "$(MISSING)-x");
        assert_eq!(expand("$$(NAME)", &v), "$(NAME)");
        assert_eq!(expand("a$b$", &v), "a$b$");
        assert_eq!(expand("$(NAME", &v), "$(NAME");
        assert_eq!(expand("é$(NAME)é", &v), "étally-0é");
    }

    #[test]
    fn mount_paths_are_rewritten_at_path_starts_only() {
        let mounts = vec![
            (
                "/etc/tally/config".to_string(),
                PathBuf::from("/r/v/config"),
            ),
            ("/etc/tally".to_string(), PathBuf::from("/r/v/tally")),
            ("/var/lib/tally".to_string(), PathBuf::from("/r/pvc/data-0")),
        ];
        let r = |s: &str| rewrite_paths(s, &mounts);
        assert_eq!(r("/etc/tally/config/ca.pem"), "/r/v/config/ca.pem");
        assert_eq!(r("/etc/tally/tls/a/tls.crt"), "/r/v/tally/tls/a/tls.crt");
        assert_eq!(
            r("--cert=/etc/tally/tls/x.crt"),
            "--cert=/r/v/tally/tls/x.crt"
        );
        assert_eq!(r("/var/lib/tally"), "/r/pvc/data-0");
        assert_eq!(r("/var/lib/tally/data"), "/r/pvc/data-0/data");
        assert_eq!(r("/var/lib/tallyx/data"), "/var/lib/tallyx/data");
        assert_eq!(r("/opt/etc/tally/x"), "/opt/etc/tally/x");
        assert_eq!(
            r("a:/etc/tally,b /var/lib/tally"),
            "a:/r/v/tally,b /r/pvc/data-0"
        );
        assert_eq!(r("127.61.0.1:7051"), "127.61.0.1:7051");
    }

    #[test]
    fn items_select_and_refuse() {
        let all: BTreeMap<String, Vec<u8>> = [("a".to_string(), b"1".to_vec())].into();
        let item = |k: &str, p: &str| KeyToPath {
            key: k.to_string(),
            path: p.to_string(),
            mode: None,
        };
        let files = select_items(all.clone(), None, false, 0o644).unwrap();
        assert_eq!(files.len(), 1);
        let files = select_items(all.clone(), Some(&[item("a", "x/y")]), false, 0o600).unwrap();
        assert_eq!((files[0].path.as_str(), files[0].mode), ("x/y", 0o600));
        assert_eq!(
            select_items(all.clone(), Some(&[item("b", "b")]), false, 0o644).err(),
            Some("b".to_string())
        );
        assert!(select_items(all, Some(&[item("b", "b")]), true, 0o644)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn write_files_keeps_exactly_the_desired_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = |p: &str, d: &str| VolFile {
            path: p.to_string(),
            data: d.as_bytes().to_vec(),
            mode: 0o600,
        };
        write_files(dir.path(), &[f("a", "1"), f("s/b", "2")]).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("s/b")).unwrap(),
            "2"
        );
        write_files(dir.path(), &[f("a", "3")]).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "3");
        assert!(!dir.path().join("s").exists());
        assert!(write_files(dir.path(), &[f("../x", "1")]).is_err());
    }
}
