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
    /// Organizations whose nodes run elsewhere (the other side of a consortium): the local
    /// mode holds only their CA certificate, runs none of their nodes and signs nothing for
    /// them.
    pub external_orgs: Vec<ExternalOrg>,
}

/// An organization of a [`LocalLayout`] that runs elsewhere: its CA certificate only.
#[derive(Clone, Debug)]
pub struct ExternalOrg {
    pub name: String,
    pub ca_pem: String,
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
        let mut orgs = Vec::new();
        let mut external_orgs = Vec::new();
        for o in &plan.organizations {
            let ca = match cas.remove(&o.name) {
                Some(CaInput::Full(ca)) => ca,
                Some(CaInput::CertOnly(pem)) => {
                    external_orgs.push(ExternalOrg {
                        name: o.name.clone(),
                        ca_pem: pem,
                    });
                    continue;
                }
                None => return Err(other(format!("organization {} has no CA", o.name))),
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
            external_orgs,
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

/// Channels of the cluster stored in `dir` that are not created yet (they wait for external
/// members' approvals).
pub fn stored_pending(dir: &Path) -> Result<Vec<String>, ClientError> {
    Ok(read_cluster_file(dir)?.pending)
}

/// Replaces (or adds) the genesis of channels not created yet in the cluster stored in `dir`:
/// a resumed `up` that got an external organization's bundle since plans them anew. A
/// channel already created is refused: its genesis is on the ledger.
/// `external` are the organizations that run elsewhere as the new plan has them: recorded
/// with their CA certificate (a bundle that arrived since the cluster was first started).
pub fn store_pending(
    dir: &Path,
    configs: &[ChannelConfig],
    external: &[ExternalOrg],
) -> Result<(), ClientError> {
    let mut file = read_cluster_file(dir)?;
    for o in external {
        let org_dir = dir.join("orgs").join(&o.name);
        std::fs::create_dir_all(&org_dir).map_err(|e| io_err("cannot create", &org_dir, e))?;
        let path = org_dir.join("ca.pem");
        std::fs::write(&path, &o.ca_pem).map_err(|e| io_err("cannot write", &path, e))?;
        if !file.external_orgs.contains(&o.name) {
            file.external_orgs.push(o.name.clone());
        }
    }
    for cfg in configs {
        let known = file.channels.iter().position(|c| c.name == cfg.name);
        match known {
            Some(_) if !file.pending.contains(&cfg.name) => {
                return Err(other(format!(
                    "channel {} is created already; its genesis cannot change",
                    cfg.name
                )))
            }
            Some(i) => file.channels[i] = cfg.clone(),
            None => {
                file.channels.push(cfg.clone());
                file.pending.push(cfg.name.clone());
            }
        }
    }
    write_cluster_file(dir, &file)
}

pub(super) fn write_cluster_file(dir: &Path, file: &ClusterFile) -> Result<(), ClientError> {
    let path = dir.join(CLUSTER_FILE);
    let json =
        serde_json::to_vec_pretty(file).map_err(|e| other(format!("{}: {e}", path.display())))?;
    std::fs::write(&path, json).map_err(|e| io_err("cannot write", &path, e))
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
    /// Organizations whose nodes run elsewhere; `orgs/ORG/ca.pem` holds their CA certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) external_orgs: Vec<String>,
    /// Channels of `channels` not created yet: they wait for the approvals of external
    /// members (see [`LocalCluster::ensure_channels`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) pending: Vec<String>,
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
