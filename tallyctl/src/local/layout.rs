//! Where a planned cluster lives: its nodes, identities and channel configurations, and the
//! cluster file that lets `open` bring it back.

use super::*;

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

pub(super) fn read_cluster_file(dir: &Path) -> Result<ClusterFile, ClientError> {
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
pub(super) struct ClusterFile {
    pub(super) version: u32,
    pub(super) orgs: Vec<String>,
    pub(super) nodes: Vec<NodeEntry>,
    pub(super) channels: Vec<ChannelConfig>,
    pub(super) fsync: bool,
    pub(super) log_to_files: bool,
    /// `tally-node --consortium` (the label of the nodes' metrics); empty for none, and in
    /// files written before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) consortium: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct NodeEntry {
    pub(super) name: String,
    pub(super) org: String,
    /// Raft id, the same in every channel.
    pub(super) id: u64,
    /// Loopback address the node listens on.
    #[serde(default = "default_host")]
    pub(super) host: String,
    pub(super) api_port: u16,
    pub(super) peer_port: u16,
    pub(super) admin_port: u16,
}

pub(super) fn default_host() -> String {
    "127.0.0.1".to_string()
}

impl NodeEntry {
    pub(super) fn api_addr(&self) -> String {
        format!("{}:{}", self.host, self.api_port)
    }
    pub(super) fn api_url(&self) -> String {
        format!("https://{}:{}", self.host, self.api_port)
    }
    pub(super) fn peer_addr(&self) -> String {
        format!("{}:{}", self.host, self.peer_port)
    }
    pub(super) fn admin_addr(&self) -> String {
        format!("{}:{}", self.host, self.admin_port)
    }
    pub(super) fn node_ref(&self) -> NodeRef {
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
pub(super) struct OrgKeys {
    pub(super) ca_pem: String,
    pub(super) admin: Identity,
    pub(super) client: Identity,
}
