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
//!   (kept across pods: a recreated pod finds its data; the claim's own status is
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
//! ready pod run here that it selects (any such pod, ready or not, when the Service has
//! `publishNotReadyAddresses`, as kube-proxy's endpoints would). tally-node reads it through
//! `TALLY_HOSTS_FILE` (`--hosts-file`).
//!
//! Public DNS and load-balancer stand-in (external-dns and a cloud controller): every Service
//! of type `LoadBalancer` or `NodePort` with a selector and the annotation
//! `external-dns.alpha.kubernetes.io/hostname` (comma-separated names) has its names published
//! while a pod it selects is ready here (or runs here at all, with `publishNotReadyAddresses`:
//! Raft peers in two clusters reach one another before either is ready). For a LoadBalancer
//! they resolve to that pod's address (the ports are the pod's), and the Service's `status.loadBalancer.ingress` is set to that
//! address and the first name. For a NodePort they resolve to the node's address
//! (`<ip_prefix>.255.254`, distinct per runner, also its `InternalIP` and the pods' `hostIP`),
//! where a TCP forwarder listens on each `nodePort` and connects to the pod's `targetPort`
//! (a number, or a container port's name); the forwarder and its connections go with the
//! Service or the pod. Published names are listed in the hosts file and in
//! `<root>/public-hosts`; the lines of other runners' `public-hosts` files named in
//! [`RunnerOptions::public_dns_from`] are merged into the hosts file, so two runners on two
//! control planes reach each other's exposed nodes by name as two clusters would through
//! public DNS. Both files are looked at again at least once a second and rewritten (by an
//! atomic rename) only when their text changes.
//!
//! Not simulated: resources, affinity, taints, node selectors, images, users and security
//! contexts, service-account tokens, ports other than what the process binds, Services'
//! virtual IPs, load balancers' own ports (a LoadBalancer Service's `port` must equal its
//! `targetPort` to be reached). Two runners on one control plane need different `ip_prefix`es (they race to
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

mod cluster;
mod files;
mod kubelet;
mod probes;
mod public;

use cluster::*;
use files::*;
use kubelet::*;
use probes::*;
use public::*;

/// Where a [`PodRunner`] runs its pods.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// The name of the `Node` it registers and runs the pods of.
    pub node_name: String,
    /// Its folder: `pods/`, `pvc/`, `logs/`, `hosts` and `public-hosts` go there. It must exist or be
    /// creatable; the runner does not delete it.
    pub root_dir: PathBuf,
    /// The first two octets of the pod addresses, e.g. `"127.61"`: pods get `127.61.0.1`,
    /// `127.61.0.2`, ... (all of 127.0.0.0/8 is loopback on Linux).
    pub ip_prefix: String,
    /// The `tally-node` executable that containers with a tally-node image run.
    pub node_bin: PathBuf,
    /// Other runners' `public-hosts` files (see [`PodRunner::public_hosts_path`]): their lines
    /// are merged into this runner's hosts file, as public DNS would make another cluster's
    /// exposed names resolvable here. Missing files count as empty.
    pub public_dns_from: Vec<PathBuf>,
}

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
    /// The NodePort forwarders listening now, by node port.
    forwarders: HashMap<u16, Forwarder>,
    /// Node ports that could not be bound (logged once; tried again every pass).
    unbound: HashSet<u16>,
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
    /// Named container ports, for Services whose `targetPort` is a name.
    ports: BTreeMap<String, u16>,
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
        // x.255 holds the node's own address.
        if x >= 255 {
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

    fn public_hosts_path(&self) -> PathBuf {
        self.opts.root_dir.join("public-hosts")
    }

    /// The node's own address, distinct per runner (`<ip_prefix>.255.254`, never given to a
    /// pod) so that two runners' node ports do not collide.
    fn node_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], 255, 254)
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
        let services = self.sorted_services();
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
            if let Some(p) = st.selected_pod(ns, selector, publishes_not_ready(&svc)) {
                let base = format!("{name}.{ns}");
                out += &format!("{} {base}.svc.cluster.local {base}.svc {base}\n", p.ip);
            }
        }
        out
    }

    fn sorted_services(&self) -> Vec<Arc<Service>> {
        let mut services: Vec<Arc<Service>> = self.services.state();
        services.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
        services
    }
}

impl State {
    /// One pod run here in `ns` that `selector` picks (the first by name): a ready one, or
    /// any with `not_ready_too` (a Service that publishes not-ready addresses).
    fn selected_pod(
        &self,
        ns: &str,
        selector: &BTreeMap<String, String>,
        not_ready_too: bool,
    ) -> Option<&PodInfo> {
        self.pods
            .iter()
            .find(|((pns, _), p)| {
                pns == ns
                    && (p.ready || not_ready_too)
                    && selector
                        .iter()
                        .all(|(k, v)| p.labels.get(k).is_some_and(|l| l == v))
            })
            .map(|(_, p)| p)
    }
}

/// Whether `svc` routes to its pods before they are ready, as kube-proxy and external-dns do
/// for `publishNotReadyAddresses`: Raft peers must reach one another to become ready at all.
fn publishes_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
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
        write_atomic(&shared.public_hosts_path(), b"")
            .with_context(|| format!("write {}", shared.public_hosts_path().display()))?;
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

    /// The names this runner publishes as public DNS would (`<root>/public-hosts`, in
    /// `/etc/hosts` format): give it to another runner's [`RunnerOptions::public_dns_from`].
    pub fn public_hosts_path(&self) -> PathBuf {
        self.shared.public_hosts_path()
    }

    /// The node's address (`<ip_prefix>.255.254`): its `InternalIP`, the pods' `hostIP`, where
    /// NodePort Services listen.
    pub fn node_ip(&self) -> Ipv4Addr {
        self.shared.node_ip()
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
