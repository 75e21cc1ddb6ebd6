//! Local clusters: organizations, identities and tally-node processes on loopback.
//!
//! A cluster is always a planned consortium. [`LocalCluster::start`] compiles a
//! [`LocalClusterSpec`] into the resources a tenant would write, generates one CA per
//! organization and runs the planner (the one the operator and `tallyctl up` run) on a free
//! loopback block; [`LocalCluster::launch`] takes a plan made elsewhere (`tallyctl up` plans
//! YAML manifests). Either way the launcher writes the identities, spawns the nodes, creates
//! each channel on each of its nodes through the mutual-TLS admin API and waits until every
//! channel has a leader and every node is ready. The end-to-end suites, the benchmark,
//! `tallyctl demo` and `tallyctl up` all start clusters this way.
//!
//! Everything lives under the spec's `dir`:
//!
//! ```text
//! dir/cluster.json                  ports, Raft ids and channel configurations (for `open`)
//! dir/orgs/ORG/ca.pem, ca-key.pem   the organization's CA
//! dir/orgs/ORG/admins/admin/        cert.pem, key.pem, ca.pem of the org's admin identity
//! dir/orgs/ORG/clients/client/      ... of the org's client identity
//! dir/orgs/ORG/nodes/NODE/          ... of each node of the org (SANs: its loopback address, localhost)
//! dir/nodes/NODE/data/              the node's --data-dir
//! dir/nodes/NODE/node.log           the node's stdout and stderr, appended across restarts
//! ```
//!
//! A cluster written by `start` is brought back on the same data by [`LocalCluster::open`]:
//! the nodes remember their channels, so they only need to be spawned again.
//!
//! Processes are started with `kill_on_drop`, and on Linux with a parent-death signal, so
//! dropping a `LocalCluster` (or its owner dying) never leaves nodes behind. Use
//! [`LocalCluster::shutdown`] for a graceful stop.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tally_client::{AdminClient, Client, ClientError};
use tally_planner::spec::{self, PeerRole};
use tally_planner::{Addressing, CaInput, Plan, PlanInput};
use tally_protocol::api::{ChannelStatus, RaftRole};
use tally_protocol::identity::now_unix;
use tally_protocol::{BatchConfig, ChannelConfig, Identity, NodeRef, OrgCa, Policies, Role};
use tokio::process::{Child, Command};

/// How long `start` and `open` wait for the nodes to listen, take their channels and elect
/// leaders.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`LocalCluster::stop`] waits after SIGTERM before it kills the process.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub use tally_planner::{ADMIN_NAME, CLIENT_NAME};

const CLUSTER_FILE: &str = "cluster.json";
const CLUSTER_FILE_VERSION: u32 = 1;

/// Peers of a local cluster: `replicas` nodes of one organization, named `NAME-0`, `NAME-1`...
/// as the planner names a Peer's nodes everywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPeerSpec {
    pub name: String,
    /// Organization that issues the nodes' certificates; must be listed in `orgs`.
    pub org: String,
    pub replicas: u32,
    #[serde(default)]
    pub role: PeerRole,
}

/// One channel of a local cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalChannelSpec {
    pub name: String,
    /// Member organizations.
    pub members: Vec<String>,
    /// Peers whose nodes order (Raft voters).
    pub consenters: Vec<String>,
    /// Peers whose nodes follow without voting (Raft learners).
    #[serde(default)]
    pub observers: Vec<String>,
    #[serde(default)]
    pub batch: BatchConfig,
    pub snapshot_interval: u64,
    /// Who may read, write and administer; empty lists mean every member.
    #[serde(default)]
    pub policies: Policies,
}

impl LocalChannelSpec {
    /// A channel with the given members and consenters, no observers, the default batch
    /// settings and a snapshot every 1000 blocks.
    pub fn new(name: &str, members: &[String], consenters: &[String]) -> LocalChannelSpec {
        LocalChannelSpec {
            name: name.to_string(),
            members: members.to_vec(),
            consenters: consenters.to_vec(),
            observers: Vec::new(),
            batch: BatchConfig::default(),
            snapshot_interval: 1000,
            policies: Policies::default(),
        }
    }
}

/// What to start: organizations, Peers, channels and where to put them. It is compiled into
/// the same resources a tenant would write ([`LocalClusterSpec::resources`]) and planned by the
/// planner the operator and `tallyctl up` use, so a test cluster is a planned consortium.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalClusterSpec {
    /// Folder for keys, data and logs; created if missing, must not hold a cluster already.
    pub dir: PathBuf,
    /// The `tally-node` executable.
    pub node_bin: PathBuf,
    /// Name of the consortium (in namespace `default`).
    pub consortium: String,
    pub orgs: Vec<String>,
    pub peers: Vec<LocalPeerSpec>,
    pub channels: Vec<LocalChannelSpec>,
    /// When false the nodes run with `--no-fsync` (faster, loses the last writes on power loss).
    pub fsync: bool,
    /// When true each node's output goes to `dir/nodes/NODE/node.log`; when false it is
    /// inherited from this process.
    pub log_to_files: bool,
}

impl LocalClusterSpec {
    /// `n` organizations `org1`..`orgN`, each with one Peer `nodeI` of one consenter node
    /// (`node1-0`..`nodeN-0`), and the given channels with every organization as a member and
    /// every Peer as a consenter. Default batch settings, snapshots every 1000 blocks, no fsync,
    /// logs to files.
    pub fn simple(
        dir: impl Into<PathBuf>,
        node_bin: impl Into<PathBuf>,
        n: usize,
        channels: &[&str],
    ) -> LocalClusterSpec {
        let orgs: Vec<String> = (1..=n).map(|i| format!("org{i}")).collect();
        let peers: Vec<LocalPeerSpec> = (1..=n)
            .map(|i| LocalPeerSpec {
                name: format!("node{i}"),
                org: format!("org{i}"),
                replicas: 1,
                role: PeerRole::Consenter,
            })
            .collect();
        let names: Vec<String> = peers.iter().map(|n| n.name.clone()).collect();
        LocalClusterSpec {
            dir: dir.into(),
            node_bin: node_bin.into(),
            consortium: "local".to_string(),
            channels: channels
                .iter()
                .map(|c| LocalChannelSpec::new(c, &orgs, &names))
                .collect(),
            orgs,
            peers,
            fsync: false,
            log_to_files: true,
        }
    }

    /// The channel named `name`, to adjust its settings before `start`.
    pub fn channel_mut(&mut self, name: &str) -> Option<&mut LocalChannelSpec> {
        self.channels.iter_mut().find(|c| c.name == name)
    }

    /// Plans the consortium on the loopback block `prefix` (`127.A.B`) with a new CA for
    /// every organization: the plan and the CAs it was made with.
    pub fn plan(&self, prefix: &str) -> Result<(Plan, BTreeMap<String, CaInput>), ClientError> {
        let mut cas = BTreeMap::new();
        for org in &self.orgs {
            let ca = OrgCa::generate(org)?;
            cas.insert(org.clone(), CaInput::Full(Box::new(ca)));
        }
        let plan = tally_planner::plan(&PlanInput {
            resources: &self.resources(),
            namespace: spec::DEFAULT_NAMESPACE,
            consortium: &self.consortium,
            cas: &cas,
            addressing: &Addressing::Loopback {
                prefix: prefix.to_string(),
            },
            // A little in the past, so that a clock a few minutes off still accepts them.
            issued_at: now_unix() - 300,
        })
        .map_err(|e| other(format!("the local cluster spec does not plan: {e}")))?;
        Ok((plan, cas))
    }

    /// The consortium as the planner reads it: one Consortium, its Peers and Channels, in
    /// namespace `default`.
    pub fn resources(&self) -> spec::Resources {
        let meta = |name: &str| spec::Meta::new(spec::DEFAULT_NAMESPACE, name);
        spec::Resources {
            consortia: vec![spec::Consortium {
                meta: meta(&self.consortium),
                display_name: String::new(),
                organizations: self
                    .orgs
                    .iter()
                    .map(|o| spec::Organization {
                        name: o.clone(),
                        display_name: String::new(),
                        ca_mode: spec::CaMode::Generate,
                        ca_secret: None,
                        external_peers: Vec::new(),
                    })
                    .collect(),
                policies: spec::ConsortiumPolicies::default(),
                ordering: spec::Ordering::default(),
            }],
            peers: self
                .peers
                .iter()
                .map(|p| spec::Peer {
                    meta: meta(&p.name),
                    consortium: self.consortium.clone(),
                    organization: p.org.clone(),
                    replicas: i32::try_from(p.replicas).unwrap_or(i32::MAX),
                    role: p.role,
                })
                .collect(),
            channels: self
                .channels
                .iter()
                .map(|c| spec::Channel {
                    meta: meta(&c.name),
                    consortium: self.consortium.clone(),
                    members: c.members.clone(),
                    consenters: c.consenters.clone(),
                    observers: c.observers.clone(),
                    policies: spec::ChannelPolicies {
                        readers: c.policies.readers.clone(),
                        writers: c.policies.writers.clone(),
                        admins: c.policies.admins.clone(),
                        chaincode_lifecycle: None,
                    },
                    batch: Some(spec::Batch {
                        max_transactions: c.batch.max_txs,
                        max_bytes: c.batch.max_bytes,
                        timeout_ms: c.batch.timeout_ms,
                    }),
                    snapshot_interval: Some(c.snapshot_interval),
                })
                .collect(),
            chaincodes: Vec::new(),
        }
    }
}

/// A cluster whose identities and channel configurations were made elsewhere (by the
/// planner, for `tallyctl up`): what [`LocalCluster::launch`] writes and starts.
pub struct LocalLayout {
    /// Folder for keys, data and logs; created if missing, must not hold a cluster already.
    pub dir: PathBuf,
    /// The `tally-node` executable.
    pub node_bin: PathBuf,
    pub orgs: Vec<LocalOrg>,
    pub nodes: Vec<LocalNode>,
    /// Genesis configurations; every node they name must be in `nodes`.
    pub channels: Vec<ChannelConfig>,
    pub fsync: bool,
    pub log_to_files: bool,
    /// The consortium the nodes belong to: passed as `tally-node --consortium`, the
    /// `consortium` label of their metrics. Empty: none.
    pub consortium: String,
}

impl LocalLayout {
    /// The layout of a plan made with [`Addressing::Loopback`]: its organizations with their
    /// CAs (which `cas` must hold in full) and the identities the plan issued, its hosted nodes
    /// and its channels' genesis configurations.
    pub fn from_plan(
        plan: &Plan,
        mut cas: BTreeMap<String, CaInput>,
        dir: &Path,
        node_bin: &Path,
        fsync: bool,
        log_to_files: bool,
    ) -> Result<LocalLayout, ClientError> {
        if let Some(n) = plan.nodes.iter().find(|n| !n.hosted()) {
            return Err(other(format!(
                "node {:?} of organization {} runs elsewhere (an external peer); the local mode runs every node itself",
                n.name, n.org
            )));
        }
        let mut orgs = Vec::new();
        for o in &plan.organizations {
            let Some(CaInput::Full(ca)) = cas.remove(&o.name) else {
                return Err(other(format!("organization {} has no CA key", o.name)));
            };
            let (Some(admin), Some(client)) = (o.admin.clone(), o.client.clone()) else {
                return Err(other(format!(
                    "organization {} has no admin or client identity",
                    o.name
                )));
            };
            orgs.push(LocalOrg {
                ca: *ca,
                admin,
                client,
            });
        }
        let mut nodes = Vec::new();
        for n in plan.hosted_nodes() {
            let Some(identity) = n.identity.clone() else {
                return Err(other(format!("node {} has no certificate", n.name)));
            };
            nodes.push(LocalNode {
                name: n.name.clone(),
                org: n.org.clone(),
                id: n.raft_id,
                host: n.address.host.clone(),
                identity,
            });
        }
        Ok(LocalLayout {
            dir: dir.to_path_buf(),
            node_bin: node_bin.to_path_buf(),
            orgs,
            nodes,
            channels: plan.channels.iter().map(|c| c.genesis.clone()).collect(),
            fsync,
            log_to_files,
            consortium: plan.consortium.clone(),
        })
    }
}

/// An organization of a [`LocalLayout`] with the identities issued for it.
pub struct LocalOrg {
    pub ca: OrgCa,
    pub admin: Identity,
    pub client: Identity,
}

/// A node of a [`LocalLayout`].
pub struct LocalNode {
    pub name: String,
    pub org: String,
    /// Raft id, the same in every channel.
    pub id: u64,
    /// Loopback address it listens on, with the standard ports.
    pub host: String,
    /// Its certificate (naming `host`) and key, issued by its organization's CA.
    pub identity: Identity,
}

/// A node as `cluster.json` records it, for comparing a stored cluster with a new plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredNode {
    pub name: String,
    pub org: String,
    pub id: u64,
    pub host: String,
}

/// Nodes and channel configurations of the cluster stored in `dir`, without starting it.
pub fn stored_layout(dir: &Path) -> Result<(Vec<StoredNode>, Vec<ChannelConfig>), ClientError> {
    let file = read_cluster_file(dir)?;
    let nodes = file
        .nodes
        .iter()
        .map(|n| StoredNode {
            name: n.name.clone(),
            org: n.org.clone(),
            id: n.id,
            host: n.host.clone(),
        })
        .collect();
    Ok((nodes, file.channels))
}

fn read_cluster_file(dir: &Path) -> Result<ClusterFile, ClientError> {
    let path = dir.join(CLUSTER_FILE);
    let bytes = std::fs::read(&path).map_err(|e| io_err("cannot read", &path, e))?;
    let file: ClusterFile =
        serde_json::from_slice(&bytes).map_err(|e| other(format!("{}: {e}", path.display())))?;
    if file.version != CLUSTER_FILE_VERSION {
        return Err(other(format!(
            "{}: format version {} is not supported (expected {CLUSTER_FILE_VERSION})",
            path.display(),
            file.version
        )));
    }
    Ok(file)
}

/// What `dir/cluster.json` holds: enough to run the same nodes again.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ClusterFile {
    version: u32,
    orgs: Vec<String>,
    nodes: Vec<NodeEntry>,
    channels: Vec<ChannelConfig>,
    fsync: bool,
    log_to_files: bool,
    /// `tally-node --consortium` (the label of the nodes' metrics); empty for none, and in
    /// files written before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    consortium: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct NodeEntry {
    name: String,
    org: String,
    /// Raft id, the same in every channel.
    id: u64,
    /// Loopback address the node listens on.
    #[serde(default = "default_host")]
    host: String,
    api_port: u16,
    peer_port: u16,
    admin_port: u16,
}

fn default_host() -> String {
    "127.0.0.1".to_string()
}

impl NodeEntry {
    fn api_addr(&self) -> String {
        format!("{}:{}", self.host, self.api_port)
    }
    fn api_url(&self) -> String {
        format!("http://{}:{}", self.host, self.api_port)
    }
    fn peer_addr(&self) -> String {
        format!("{}:{}", self.host, self.peer_port)
    }
    fn admin_addr(&self) -> String {
        format!("{}:{}", self.host, self.admin_port)
    }
    fn node_ref(&self) -> NodeRef {
        NodeRef {
            id: self.id,
            name: self.name.clone(),
            org: self.org.clone(),
            peer_addr: self.peer_addr(),
            api_url: self.api_url(),
        }
    }
}

/// An organization's CA certificate and the identities the launcher issued for it.
struct OrgKeys {
    ca_pem: String,
    admin: Identity,
    client: Identity,
}

/// The process of one node, as far as the launcher knows.
#[derive(Default)]
struct NodeProc {
    child: Option<Child>,
    pid: Option<u32>,
    /// Set by kill/stop/wipe before the process goes away, cleared by the next spawn.
    expected_down: bool,
    /// Exits the launcher did not cause, oldest first.
    unexpected_exits: Vec<ExitStatus>,
}

impl NodeProc {
    /// Reaps the child if it has exited; records the exit when nobody asked for it.
    fn poll(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                if !self.expected_down {
                    self.unexpected_exits.push(status);
                }
                self.child = None;
                self.pid = None;
            }
        }
    }

    fn running(&mut self) -> bool {
        self.poll();
        self.child.is_some()
    }
}

/// Running tally-node processes on loopback and the keys to talk to them.
pub struct LocalCluster {
    dir: PathBuf,
    node_bin: PathBuf,
    file: ClusterFile,
    orgs: BTreeMap<String, OrgKeys>,
    clients: BTreeMap<String, Client>,
    procs: Mutex<BTreeMap<String, NodeProc>>,
}

fn other(msg: impl Into<String>) -> ClientError {
    ClientError::Other(msg.into())
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> ClientError {
    other(format!("{what} {}: {e}", path.display()))
}

/// Ports every local node listens on, each node at an address of its own.
pub use tally_planner::{ADMIN_PORT, API_PORT, PEER_PORT};

/// Chooses a loopback block of its own for a cluster of `n` nodes and returns its prefix
/// `127.A.B`: node `i` (from 1) gets `127.A.B.i`, with the standard ports. Clusters started side
/// by side (tests in parallel) then never race for ports, and ports below the ephemeral range
/// are never taken by outgoing connections meanwhile.
pub fn pick_loopback_prefix(n: usize) -> Result<String, ClientError> {
    if n == 0 || n > 254 {
        return Err(other(format!(
            "a local cluster has 1 to 254 nodes, not {n}"
        )));
    }
    for _ in 0..64 {
        let a: u8 = rand::random::<u8>().max(1);
        let b: u8 = rand::random();
        let prefix = format!("127.{a}.{b}");
        let free = (1..=n).all(|i| {
            let h = format!("{prefix}.{i}");
            [API_PORT, PEER_PORT, ADMIN_PORT]
                .iter()
                .all(|p| std::net::TcpListener::bind((h.as_str(), *p)).is_ok())
        });
        if free {
            return Ok(prefix);
        }
    }
    Err(other("no free loopback address block for a local cluster"))
}

/// Sends a signal to a process. Declared here rather than through the libc crate: std links
/// the C library on every Unix already, and this is the only call the launcher needs.
#[cfg(unix)]
fn send_signal(pid: u32, signal: i32) -> std::io::Result<()> {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { kill(pid as i32, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(unix)]
const SIGTERM: i32 = 15;

/// Asks the kernel to SIGKILL the child when the thread that spawned it dies, so that nodes
/// (and `tallyctl up`'s console) do not outlive a test binary or tallyctl that was itself
/// killed.
#[cfg(target_os = "linux")]
pub fn die_with_parent(cmd: &mut Command) {
    extern "C" {
        fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    }
    const PR_SET_PDEATHSIG: i32 = 1;
    const SIGKILL: u64 = 9;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_cmd: &mut Command) {}

/// Checks the node executable and makes `dir` ready for a new cluster: created if missing,
/// refused if it holds one already.
fn claim_dir(dir: &Path, node_bin: &Path) -> Result<PathBuf, ClientError> {
    check_bin(node_bin)?;
    std::fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
    if dir.join(CLUSTER_FILE).exists() {
        return Err(other(format!(
            "{} already holds a cluster; use LocalCluster::open to run it again",
            dir.display()
        )));
    }
    Ok(dir.to_path_buf())
}

/// The last `lines` lines of a text file, or a note why there are none.
fn tail_of(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}

impl LocalCluster {
    /// Plans the spec's consortium (a CA per organization, certificates, Raft ids and channel
    /// configurations, as the operator and `tallyctl up` plan theirs), starts every node,
    /// creates every channel and waits until each channel has a leader and each node is ready
    /// (at most [`START_TIMEOUT`]).
    pub async fn start(spec: LocalClusterSpec) -> Result<LocalCluster, ClientError> {
        let hosted: usize = spec.peers.iter().map(|p| p.replicas as usize).sum();
        let (plan, cas) = spec.plan(&pick_loopback_prefix(hosted)?)?;
        let layout = LocalLayout::from_plan(
            &plan,
            cas,
            &spec.dir,
            &spec.node_bin,
            spec.fsync,
            spec.log_to_files,
        )?;
        LocalCluster::launch(layout).await
    }

    /// Writes the identities of a planned cluster, then starts it like [`LocalCluster::start`]:
    /// spawns every node, creates every channel on its nodes and waits until ready.
    pub async fn launch(layout: LocalLayout) -> Result<LocalCluster, ClientError> {
        let dir = claim_dir(&layout.dir, &layout.node_bin)?;
        let mut orgs = BTreeMap::new();
        for o in &layout.orgs {
            let org_dir = dir.join("orgs").join(&o.ca.org);
            o.ca.save(&org_dir)?;
            o.ca.save_identity(&org_dir, &o.admin)?;
            o.ca.save_identity(&org_dir, &o.client)?;
            for n in layout.nodes.iter().filter(|n| n.org == o.ca.org) {
                o.ca.save_identity(&org_dir, &n.identity)?;
            }
            orgs.insert(
                o.ca.org.clone(),
                OrgKeys {
                    ca_pem: o.ca.cert_pem(),
                    admin: o.admin.clone(),
                    client: o.client.clone(),
                },
            );
        }
        for n in &layout.nodes {
            if !orgs.contains_key(&n.org) {
                return Err(other(format!(
                    "node {:?} belongs to organization {:?}, which the layout does not have",
                    n.name, n.org
                )));
            }
        }
        let file = ClusterFile {
            version: CLUSTER_FILE_VERSION,
            orgs: layout.orgs.iter().map(|o| o.ca.org.clone()).collect(),
            nodes: layout
                .nodes
                .iter()
                .map(|n| NodeEntry {
                    name: n.name.clone(),
                    org: n.org.clone(),
                    id: n.id,
                    host: n.host.clone(),
                    api_port: API_PORT,
                    peer_port: PEER_PORT,
                    admin_port: ADMIN_PORT,
                })
                .collect(),
            channels: layout.channels,
            fsync: layout.fsync,
            log_to_files: layout.log_to_files,
            consortium: layout.consortium,
        };
        for c in &file.channels {
            if let Some(n) = c
                .nodes()
                .find(|n| !file.nodes.iter().any(|e| e.name == n.name))
            {
                return Err(other(format!(
                    "channel {:?} names node {:?}, which the layout does not run",
                    c.name, n.name
                )));
            }
        }
        LocalCluster::first_start(dir, layout.node_bin, file, orgs).await
    }

    /// Writes `cluster.json`, spawns the nodes, creates the channels and waits until ready.
    async fn first_start(
        dir: PathBuf,
        node_bin: PathBuf,
        file: ClusterFile,
        orgs: BTreeMap<String, OrgKeys>,
    ) -> Result<LocalCluster, ClientError> {
        let path = dir.join(CLUSTER_FILE);
        let json = serde_json::to_vec_pretty(&file).expect("cluster file serializes");
        std::fs::write(&path, json).map_err(|e| io_err("cannot write", &path, e))?;

        let cluster = LocalCluster::assemble(dir, node_bin, file, orgs)?;
        let deadline = Instant::now() + START_TIMEOUT;
        cluster.spawn_all(deadline).await?;
        for cfg in cluster.file.channels.clone() {
            for n in cfg.nodes() {
                cluster.create_channel_on(&n.name, &cfg, deadline).await?;
            }
        }
        cluster
            .wait_ready(deadline.saturating_duration_since(Instant::now()))
            .await?;
        Ok(cluster)
    }

    /// Runs again a cluster that `start` wrote into `dir` (after a shutdown, a crash or a
    /// reboot): spawns every node with the same ports and data, and waits until ready.
    pub async fn open(
        dir: impl Into<PathBuf>,
        node_bin: impl Into<PathBuf>,
    ) -> Result<LocalCluster, ClientError> {
        let dir = dir.into();
        let node_bin = node_bin.into();
        check_bin(&node_bin)?;
        let file = read_cluster_file(&dir)?;
        let mut orgs = BTreeMap::new();
        for org in &file.orgs {
            let org_dir = dir.join("orgs").join(org);
            let ca_path = org_dir.join("ca.pem");
            let ca_pem = std::fs::read_to_string(&ca_path)
                .map_err(|e| io_err("cannot read", &ca_path, e))?;
            let admin = Identity::load(&org_dir.join(Role::Admin.folder()).join(ADMIN_NAME))?;
            let client = Identity::load(&org_dir.join(Role::Client.folder()).join(CLIENT_NAME))?;
            orgs.insert(
                org.clone(),
                OrgKeys {
                    ca_pem,
                    admin,
                    client,
                },
            );
        }
        let cluster = LocalCluster::assemble(dir, node_bin, file, orgs)?;
        let deadline = Instant::now() + START_TIMEOUT;
        cluster.spawn_all(deadline).await?;
        cluster
            .wait_ready(deadline.saturating_duration_since(Instant::now()))
            .await?;
        Ok(cluster)
    }

    /// Spawns every node and waits until each listens.
    async fn spawn_all(&self, deadline: Instant) -> Result<(), ClientError> {
        for n in self.node_names() {
            self.spawn(&n)?;
        }
        for n in self.node_names() {
            self.wait_listening(&n, deadline).await?;
        }
        Ok(())
    }

    fn assemble(
        dir: PathBuf,
        node_bin: PathBuf,
        file: ClusterFile,
        orgs: BTreeMap<String, OrgKeys>,
    ) -> Result<LocalCluster, ClientError> {
        let mut clients = BTreeMap::new();
        let mut procs = BTreeMap::new();
        for n in &file.nodes {
            // Reads are signed as the node's own organization's client, a member of every
            // channel the node serves.
            let reader = orgs.get(&n.org).map(|k| k.client.clone());
            let client = Client::new(&n.api_url())?;
            let client = match reader {
                Some(id) => client.with_reader(id),
                None => client,
            };
            clients.insert(n.name.clone(), client);
            procs.insert(n.name.clone(), NodeProc::default());
        }
        Ok(LocalCluster {
            dir,
            node_bin,
            file,
            orgs,
            clients,
            procs: Mutex::new(procs),
        })
    }

    // ----- accessors -------------------------------------------------------------------------

    /// The cluster's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Node names in Raft id order.
    pub fn node_names(&self) -> Vec<String> {
        self.file.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Organization names.
    pub fn org_names(&self) -> Vec<String> {
        self.file.orgs.clone()
    }

    /// Channel names.
    pub fn channel_names(&self) -> Vec<String> {
        self.file.channels.iter().map(|c| c.name.clone()).collect()
    }

    fn entry(&self, name: &str) -> &NodeEntry {
        self.file
            .nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("the local cluster has no node {name:?}"))
    }

    /// Client of the node's API.
    ///
    /// # Panics
    /// If the cluster has no such node.
    pub fn client(&self, name: &str) -> Client {
        self.clients
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("the local cluster has no node {name:?}"))
    }

    /// Clients of every node, in Raft id order.
    pub fn clients(&self) -> Vec<Client> {
        self.file
            .nodes
            .iter()
            .map(|n| self.clients[&n.name].clone())
            .collect()
    }

    /// Base URL of the node's client API, like `http://127.1.2.1:7051`.
    pub fn api_url(&self, name: &str) -> String {
        self.entry(name).api_url()
    }

    /// host:port of the node's mutual-TLS admin API.
    pub fn admin_addr(&self, name: &str) -> String {
        self.entry(name).admin_addr()
    }

    /// How channel configurations name this node (id and addresses).
    pub fn node_ref(&self, name: &str) -> NodeRef {
        self.entry(name).node_ref()
    }

    /// The node's Raft id (the same in every channel).
    pub fn node_id(&self, name: &str) -> u64 {
        self.entry(name).id
    }

    /// Organization of the node.
    pub fn node_org(&self, name: &str) -> String {
        self.entry(name).org.clone()
    }

    /// Name of the node with this Raft id.
    pub fn node_name(&self, id: u64) -> Option<String> {
        self.file
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.name.clone())
    }

    /// The organization's admin or client identity; for `Role::Node`, the identity of the
    /// organization's first node.
    ///
    /// # Panics
    /// If the cluster has no such organization, or for `Role::Node` when it has no node or its
    /// files cannot be read.
    pub fn identity(&self, org: &str, role: Role) -> Identity {
        let keys = self
            .orgs
            .get(org)
            .unwrap_or_else(|| panic!("the local cluster has no organization {org:?}"));
        match role {
            Role::Admin => keys.admin.clone(),
            Role::Client => keys.client.clone(),
            Role::Node => {
                let n = self
                    .file
                    .nodes
                    .iter()
                    .find(|n| n.org == org)
                    .unwrap_or_else(|| panic!("organization {org:?} has no node"));
                self.node_identity(&n.name)
                    .unwrap_or_else(|e| panic!("{e}"))
            }
        }
    }

    /// The node's own certificate and key.
    pub fn node_identity(&self, name: &str) -> Result<Identity, ClientError> {
        let e = self.entry(name);
        Ok(Identity::load(
            &self.org_dir(&e.org).join(Role::Node.folder()).join(&e.name),
        )?)
    }

    /// PEM of the organization's CA certificate.
    pub fn ca_pem(&self, org: &str) -> String {
        self.orgs
            .get(org)
            .map(|k| k.ca_pem.clone())
            .unwrap_or_else(|| panic!("the local cluster has no organization {org:?}"))
    }

    /// The channel's genesis configuration.
    ///
    /// # Panics
    /// If the cluster has no such channel.
    pub fn config(&self, channel: &str) -> ChannelConfig {
        self.file
            .channels
            .iter()
            .find(|c| c.name == channel)
            .cloned()
            .unwrap_or_else(|| panic!("the local cluster has no channel {channel:?}"))
    }

    /// Names of the nodes (consenters and observers) that serve the channel.
    pub fn channel_nodes(&self, channel: &str) -> Vec<String> {
        self.config(channel)
            .nodes()
            .map(|n| n.name.clone())
            .collect()
    }

    /// Channels the node serves.
    pub fn node_channels(&self, name: &str) -> Vec<String> {
        self.file
            .channels
            .iter()
            .filter(|c| c.node(name).is_some())
            .map(|c| c.name.clone())
            .collect()
    }

    fn org_dir(&self, org: &str) -> PathBuf {
        self.dir.join("orgs").join(org)
    }

    fn node_dir(&self, name: &str) -> PathBuf {
        self.dir.join("nodes").join(name)
    }

    /// The node's `--data-dir`.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.node_dir(name).join("data")
    }

    /// Where the node's output goes when the spec asked for log files.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.node_dir(name).join("node.log")
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        tail_of(&self.log_path(name), lines)
    }

    /// Whether the node's log contains `needle`.
    pub fn log_contains(&self, name: &str, needle: &str) -> bool {
        std::fs::read(self.log_path(name))
            .map(|b| String::from_utf8_lossy(&b).contains(needle))
            .unwrap_or(false)
    }

    /// Whether the node's log shows a Rust panic.
    pub fn panicked(&self, name: &str) -> bool {
        self.log_contains(name, "panicked")
    }

    /// Process id of the node while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        let mut procs = self.procs.lock().unwrap();
        let p = procs.get_mut(name)?;
        p.poll();
        p.pid
    }

    /// Whether the node's process is alive.
    pub fn is_running(&self, name: &str) -> bool {
        self.procs
            .lock()
            .unwrap()
            .get_mut(name)
            .map(NodeProc::running)
            .unwrap_or(false)
    }

    /// The last exit of the node that the launcher did not cause (a crash, a panic, an exit on
    /// a fatal error), if any happened since the cluster was started or opened. It stays
    /// reported after the node is started again; [`LocalCluster::problems`] lists them all.
    pub fn exited_on_its_own(&self, name: &str) -> Option<ExitStatus> {
        let mut procs = self.procs.lock().unwrap();
        let p = procs.get_mut(name)?;
        p.poll();
        p.unexpected_exits.last().copied()
    }

    /// Everything that went wrong with the processes so far: exits nobody asked for and logs
    /// with panics, one line each. Empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in self.node_names() {
            let exits = {
                let mut procs = self.procs.lock().unwrap();
                let p = procs.get_mut(&n).expect("known node");
                p.poll();
                p.unexpected_exits.clone()
            };
            for s in exits {
                out.push(format!(
                    "node {n} exited on its own ({s}); log {}",
                    self.log_path(&n).display()
                ));
            }
            if self.panicked(&n) {
                out.push(format!(
                    "node {n} panicked; log {}",
                    self.log_path(&n).display()
                ));
            }
        }
        out
    }

    // ----- status ----------------------------------------------------------------------------

    /// Name of the channel's leader: the node that reports itself leader in the highest term.
    /// `None` while no running node claims leadership.
    pub async fn leader(&self, channel: &str) -> Option<String> {
        let statuses = self.statuses(channel).await;
        statuses
            .into_iter()
            .filter_map(|(name, s)| s.ok().map(|s| (name, s)))
            .filter(|(_, s)| s.role == RaftRole::Leader)
            .max_by_key(|(_, s)| s.term)
            .map(|(name, _)| name)
    }

    /// Status of the channel on each of its running nodes (in Raft id order).
    pub async fn statuses(
        &self,
        channel: &str,
    ) -> Vec<(String, Result<ChannelStatus, ClientError>)> {
        let names: Vec<String> = self
            .channel_nodes(channel)
            .into_iter()
            .filter(|n| self.is_running(n))
            .collect();
        let futs = names.iter().map(|n| {
            let c = self.client(n);
            async move { c.status(channel).await }
        });
        let results = futures_util::future::join_all(futs).await;
        names.into_iter().zip(results).collect()
    }

    /// Why the node is not ready yet, or `None` when it is: every channel it serves has a
    /// leader and reports itself ready, and `/readyz` answers 200.
    async fn not_ready(&self, name: &str) -> Option<String> {
        if !self.is_running(name) {
            return Some("the process is not running".into());
        }
        let c = self.client(name);
        for ch in self.node_channels(name) {
            match c.status(&ch).await {
                Err(e) => return Some(format!("channel {ch}: {e}")),
                Ok(s) if s.leader_id == 0 => return Some(format!("channel {ch}: no leader yet")),
                Ok(s) if !s.ready => {
                    return Some(format!(
                        "channel {ch}: not ready (applied {} of {} committed)",
                        s.applied_index, s.commit_index
                    ))
                }
                Ok(_) => {}
            }
        }
        match c.ready().await {
            Ok(true) => None,
            Ok(false) => Some("/readyz does not answer 200".into()),
            Err(e) => Some(format!("/readyz: {e}")),
        }
    }

    /// Waits until the node is ready (see [`LocalCluster::wait_ready`]).
    pub async fn wait_node_ready(&self, name: &str, timeout: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let why = match self.not_ready(name).await {
                None => return Ok(()),
                Some(why) => why,
            };
            if !self.is_running(name) {
                let how = match self.exited_on_its_own(name) {
                    Some(s) => format!("exited on its own ({s})"),
                    None => "is not running".to_string(),
                };
                return Err(other(format!(
                    "node {name} {how} while waiting for it to become ready; last log lines:\n{}",
                    self.log_tail(name, 30)
                )));
            }
            if Instant::now() >= deadline {
                return Err(other(format!(
                    "node {name} not ready after {timeout:?}: {why}; last log lines:\n{}",
                    self.log_tail(name, 20)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every running node is ready: each channel it serves has a leader and the
    /// node says it is ready (`ready` in the channel status, `/readyz` 200). Nodes that were
    /// killed or stopped through this launcher are skipped.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        for n in self.node_names() {
            let expected_down = self.procs.lock().unwrap()[&n].expected_down;
            if expected_down {
                continue;
            }
            self.wait_node_ready(&n, deadline.saturating_duration_since(Instant::now()))
                .await?;
        }
        Ok(())
    }

    /// Waits until every running node of the channel has the same height, last block hash and
    /// state root, and returns that status (of the first node).
    pub async fn wait_converged(
        &self,
        channel: &str,
        timeout: Duration,
    ) -> Result<ChannelStatus, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let statuses = self.statuses(channel).await;
            let mut why = None;
            let mut first: Option<&ChannelStatus> = None;
            for (name, s) in &statuses {
                match (s, first) {
                    (Err(e), _) => why = Some(format!("{name}: {e}")),
                    (Ok(s), None) => first = Some(s),
                    (Ok(s), Some(f)) => {
                        if (s.height, s.last_block_hash, s.state_root)
                            != (f.height, f.last_block_hash, f.state_root)
                        {
                            why = Some("nodes differ".into());
                        }
                    }
                }
            }
            if statuses.is_empty() {
                why = Some("no node of the channel is running".into());
            }
            match (why, first) {
                (None, Some(f)) => return Ok(f.clone()),
                (why, _) if Instant::now() >= deadline => {
                    let table: Vec<String> = statuses
                        .iter()
                        .map(|(n, s)| match s {
                            Ok(s) => format!(
                                "  {n}: height {} last block {} state root {} role {:?} leader {}",
                                s.height, s.last_block_hash, s.state_root, s.role, s.leader_id
                            ),
                            Err(e) => format!("  {n}: {e}"),
                        })
                        .collect();
                    return Err(other(format!(
                        "channel {channel} did not converge within {timeout:?} ({}):\n{}",
                        why.unwrap_or_default(),
                        table.join("\n")
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    // ----- processes -------------------------------------------------------------------------

    fn spawn(&self, name: &str) -> Result<(), ClientError> {
        let e = self.entry(name).clone();
        let mut procs = self.procs.lock().unwrap();
        let p = procs.get_mut(name).expect("known node");
        if p.running() {
            return Err(other(format!(
                "node {name} is already running (pid {:?})",
                p.pid
            )));
        }
        let data = self.data_dir(name);
        std::fs::create_dir_all(&data).map_err(|err| io_err("cannot create", &data, err))?;
        let id_dir = self.org_dir(&e.org).join(Role::Node.folder()).join(name);

        let mut cmd = Command::new(&self.node_bin);
        cmd.arg("--name")
            .arg(name)
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen-api")
            .arg(e.api_addr())
            .arg("--listen-peer")
            .arg(e.peer_addr())
            .arg("--listen-admin")
            .arg(e.admin_addr())
            .arg("--cert")
            .arg(id_dir.join("cert.pem"))
            .arg("--key")
            .arg(id_dir.join("key.pem"))
            .arg("--org-ca")
            .arg(self.org_dir(&e.org).join("ca.pem"));
        if !self.file.fsync {
            cmd.arg("--no-fsync");
        }
        if !self.file.consortium.is_empty() {
            cmd.arg("--consortium").arg(&self.file.consortium);
        }
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            cmd.env("RUST_BACKTRACE", "1");
        }
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        // A process group of its own: Ctrl-C in a terminal reaches only the launcher, which
        // then stops the nodes in order, instead of every node at once.
        #[cfg(unix)]
        cmd.process_group(0);
        if self.file.log_to_files {
            let path = self.log_path(name);
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|err| io_err("cannot open", &path, err))?;
            let _ = writeln!(
                log,
                "==== local cluster: starting {name} (id {}) at unix ms {} ====",
                e.id,
                tally_protocol::now_ms()
            );
            let err = log
                .try_clone()
                .map_err(|err| io_err("cannot reopen", &path, err))?;
            cmd.stdout(log).stderr(err);
            // Plain text in log files: no terminal colour codes.
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        }
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|err| {
            other(format!(
                "cannot start {} for node {name}: {err}",
                self.node_bin.display()
            ))
        })?;
        p.pid = child.id();
        p.child = Some(child);
        p.expected_down = false;
        Ok(())
    }

    /// Waits until the node accepts connections on its API and admin ports.
    async fn wait_listening(&self, name: &str, deadline: Instant) -> Result<(), ClientError> {
        let e = self.entry(name).clone();
        for addr in [e.api_addr(), e.admin_addr()] {
            loop {
                if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                    break;
                }
                if !self.is_running(name) {
                    return Err(other(format!(
                        "node {name} exited during start-up; last log lines:\n{}",
                        self.log_tail(name, 30)
                    )));
                }
                if Instant::now() >= deadline {
                    return Err(other(format!(
                        "node {name} does not listen on {addr}; last log lines:\n{}",
                        self.log_tail(name, 20)
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Creates the channel on the node through its admin API, retrying while the node is not
    /// reachable yet.
    async fn create_channel_on(
        &self,
        name: &str,
        cfg: &ChannelConfig,
        deadline: Instant,
    ) -> Result<(), ClientError> {
        let e = self.entry(name);
        let keys = &self.orgs[&e.org];
        let admin = AdminClient::new(&e.admin_addr(), &keys.ca_pem, &keys.admin)?;
        loop {
            match admin.create_channel(cfg).await {
                Ok(_) => return Ok(()),
                Err(
                    err @ (ClientError::Transport { .. } | ClientError::Api { status: 503, .. }),
                ) if Instant::now() < deadline => {
                    tracing::debug!("create channel {} on {name}: {err}; retrying", cfg.name);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => {
                    return Err(other(format!(
                        "cannot create channel {} on node {name}: {err}; last log lines:\n{}",
                        cfg.name,
                        self.log_tail(name, 20)
                    )))
                }
            }
        }
    }

    /// Takes the child out of the table, marked as going down on purpose.
    fn take_child(&self, name: &str) -> Option<Child> {
        let mut procs = self.procs.lock().unwrap();
        let p = procs
            .get_mut(name)
            .unwrap_or_else(|| panic!("the local cluster has no node {name:?}"));
        p.poll();
        p.expected_down = true;
        p.pid = None;
        p.child.take()
    }

    /// Kills the node with SIGKILL and waits until the process is gone. No-op when it is not
    /// running.
    pub async fn kill(&self, name: &str) -> Result<(), ClientError> {
        if let Some(mut child) = self.take_child(name) {
            child
                .kill()
                .await
                .map_err(|e| other(format!("cannot kill node {name}: {e}")))?;
        }
        Ok(())
    }

    /// Stops the node with SIGTERM and waits for it to exit (at most [`STOP_TIMEOUT`]; then it
    /// is killed and an error says so). An exit status other than success is an error too.
    pub async fn stop(&self, name: &str) -> Result<(), ClientError> {
        let Some(mut child) = self.take_child(name) else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            #[cfg(unix)]
            send_signal(pid, SIGTERM)
                .map_err(|e| other(format!("cannot signal node {name}: {e}")))?;
            #[cfg(not(unix))]
            let _ = pid;
        }
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(other(format!(
                "node {name} exited with {status} after SIGTERM; last log lines:\n{}",
                self.log_tail(name, 20)
            ))),
            Ok(Err(e)) => Err(other(format!("cannot wait for node {name}: {e}"))),
            Err(_) => {
                let _ = child.kill().await;
                Err(other(format!(
                    "node {name} did not stop within {STOP_TIMEOUT:?} of SIGTERM and was killed; last log lines:\n{}",
                    self.log_tail(name, 20)
                )))
            }
        }
    }

    /// Starts a node that was killed or stopped, with the same flags and data, and waits until
    /// it listens. It rejoins its channels by itself; use [`LocalCluster::wait_node_ready`] to
    /// wait until it caught up.
    pub async fn start_node(&self, name: &str) -> Result<(), ClientError> {
        self.spawn(name)?;
        self.wait_listening(name, Instant::now() + START_TIMEOUT)
            .await
    }

    /// Stops the node if it runs (SIGTERM), then starts it again (see
    /// [`LocalCluster::start_node`]).
    pub async fn restart(&self, name: &str) -> Result<(), ClientError> {
        self.stop(name).await?;
        self.start_node(name).await
    }

    /// Kills the node, deletes its data, starts it again and creates its channels on it through
    /// the admin API, so that it rejoins them from scratch and catches up from its peers (by
    /// Raft log or snapshot). Waits until the channels are created, not until it caught up.
    pub async fn wipe(&self, name: &str) -> Result<(), ClientError> {
        self.kill(name).await?;
        let data = self.data_dir(name);
        if data.exists() {
            std::fs::remove_dir_all(&data).map_err(|e| io_err("cannot delete", &data, e))?;
        }
        self.start_node(name).await?;
        let deadline = Instant::now() + START_TIMEOUT;
        for cfg in self.file.channels.iter().filter(|c| c.node(name).is_some()) {
            self.create_channel_on(name, cfg, deadline).await?;
        }
        Ok(())
    }

    /// Stops every node gracefully (SIGTERM, in parallel) and reports the first failure.
    pub async fn shutdown(self) -> Result<(), ClientError> {
        let names = self.node_names();
        let results = futures_util::future::join_all(names.iter().map(|n| self.stop(n))).await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let procs = self.procs.get_mut().unwrap_or_else(|e| e.into_inner());
        for p in procs.values_mut() {
            if let Some(child) = p.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}

fn check_bin(bin: &Path) -> Result<(), ClientError> {
    if bin.is_file() {
        Ok(())
    } else {
        Err(other(format!(
            "tally-node executable not found at {} (build it with `cargo build -p tally-node`)",
            bin.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simple_spec_plans_one_org_per_node_and_everyone_everywhere() {
        let s = LocalClusterSpec::simple("/tmp/x", "/bin/true", 3, &["a", "b"]);
        assert_eq!(s.orgs, ["org1", "org2", "org3"]);
        let (plan, cas) = s.plan("127.9.9").unwrap();
        assert_eq!(cas.len(), 3);
        let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["node1-0", "node2-0", "node3-0"]);
        let n3 = plan.node("node3-0").unwrap();
        assert_eq!(n3.org, "org3");
        assert_eq!(n3.address.host, "127.9.9.3");
        assert_eq!(n3.channels, ["a", "b"]);
        assert_eq!(plan.channels.len(), 2);
        let b = &plan.channel("b").unwrap().genesis;
        let consenters: Vec<&str> = b.consenters.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(consenters, ["node1-0", "node2-0", "node3-0"]);
        let members: Vec<&str> = b.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(members, s.orgs);
    }

    #[test]
    fn a_spec_that_does_not_plan_names_the_problem() {
        let mut s = LocalClusterSpec::simple("/tmp/x", "/bin/true", 2, &["a"]);
        s.channels[0].consenters.push("node9".into());
        let e = s.plan("127.9.9").err().expect("no plan").to_string();
        assert!(e.contains("node9"), "{e}");
        let mut s = LocalClusterSpec::simple("/tmp/x", "/bin/true", 2, &["a"]);
        s.peers[1].org = "nope".into();
        let e = s.plan("127.9.9").err().expect("no plan").to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn a_cluster_can_be_shared_between_tasks() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<LocalCluster>();
    }

    #[test]
    fn clusters_get_distinct_address_blocks() {
        let a = pick_loopback_prefix(5).unwrap();
        assert!(a.starts_with("127."));
        // Keep the first block busy: a second pick must avoid it.
        let _held = std::net::TcpListener::bind((format!("{a}.1").as_str(), API_PORT)).unwrap();
        let b = pick_loopback_prefix(5).unwrap();
        assert_ne!(a, b);
        assert!(pick_loopback_prefix(0).is_err());
    }
}
