//! What a running cluster knows about itself: names, clients, identities, paths, logs.

use super::*;

impl LocalCluster {
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

    pub(super) fn entry(&self, name: &str) -> &NodeEntry {
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

    /// What clients of this cluster verify nodes' TLS certificates against: every
    /// organization's CA.
    pub fn api_trust(&self) -> tally_client::ApiTrust {
        self.trust.clone()
    }

    /// Clients of every node, in Raft id order.
    pub fn clients(&self) -> Vec<Client> {
        self.file
            .nodes
            .iter()
            .map(|n| self.clients[&n.name].clone())
            .collect()
    }

    /// Base URL of the node's client API, like `https://127.1.2.1:7051`.
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

    /// Names of the nodes (consenters and observers) of this cluster that serve the channel;
    /// nodes of external organizations (see [`LocalCluster::external_nodes`]) are left out.
    pub fn channel_nodes(&self, channel: &str) -> Vec<String> {
        self.hosted_channel_nodes(&self.config(channel))
            .map(|n| n.name.clone())
            .collect()
    }

    /// The nodes of `cfg` that this cluster runs.
    pub(super) fn hosted_channel_nodes<'a>(
        &'a self,
        cfg: &'a ChannelConfig,
    ) -> impl Iterator<Item = &'a NodeRef> + 'a {
        cfg.nodes()
            .filter(|n| self.file.nodes.iter().any(|e| e.name == n.name))
    }

    /// The channel's nodes that run elsewhere (of external organizations).
    pub fn external_nodes(&self, channel: &str) -> Vec<NodeRef> {
        let cfg = self.config(channel);
        cfg.nodes()
            .filter(|n| !self.file.nodes.iter().any(|e| e.name == n.name))
            .cloned()
            .collect()
    }

    /// Organizations whose nodes run elsewhere.
    pub fn external_orgs(&self) -> Vec<String> {
        self.file.external_orgs.clone()
    }

    /// Channels not created yet: they wait for external members' approvals.
    pub fn pending_channels(&self) -> Vec<String> {
        self.file.pending.clone()
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

    pub(super) fn org_dir(&self, org: &str) -> PathBuf {
        self.dir.join("orgs").join(org)
    }

    pub(super) fn node_dir(&self, name: &str) -> PathBuf {
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
}
