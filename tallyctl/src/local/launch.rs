//! Starting a cluster: plan, write identities, spawn every node, create every channel, wait.

use super::*;

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
        for o in &layout.external_orgs {
            // The certificate alone: what the profile and `tallyctl org export` point at.
            let org_dir = dir.join("orgs").join(&o.name);
            std::fs::create_dir_all(&org_dir).map_err(|e| io_err("cannot create", &org_dir, e))?;
            let path = org_dir.join("ca.pem");
            std::fs::write(&path, &o.ca_pem).map_err(|e| io_err("cannot write", &path, e))?;
        }
        for n in &layout.nodes {
            if !orgs.contains_key(&n.org) {
                return Err(other(format!(
                    "node {:?} belongs to organization {:?}, which the layout does not have",
                    n.name, n.org
                )));
            }
        }
        let external_orgs: Vec<String> = layout
            .external_orgs
            .iter()
            .map(|o| o.name.clone())
            .collect();
        // A channel with an external member is created once that member approved its
        // genesis; `tallyctl up` brings the approvals (`ensure_channels`).
        let pending: Vec<String> = layout
            .channels
            .iter()
            .filter(|c| c.members.iter().any(|m| external_orgs.contains(&m.name)))
            .map(|c| c.name.clone())
            .collect();
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
            external_orgs,
            pending,
        };
        for c in &file.channels {
            if let Some(n) = c.nodes().find(|n| {
                !file.nodes.iter().any(|e| e.name == n.name) && !file.external_orgs.contains(&n.org)
            }) {
                return Err(other(format!(
                    "channel {:?} names node {:?}, which the layout does not run",
                    c.name, n.name
                )));
            }
        }
        LocalCluster::first_start(dir, layout.node_bin, file, orgs).await
    }

    /// Writes `cluster.json`, spawns the nodes, creates the channels and waits until ready.
    pub(super) async fn first_start(
        dir: PathBuf,
        node_bin: PathBuf,
        file: ClusterFile,
        orgs: BTreeMap<String, OrgKeys>,
    ) -> Result<LocalCluster, ClientError> {
        write_cluster_file(&dir, &file)?;

        let cluster = LocalCluster::assemble(dir, node_bin, file, orgs)?;
        let deadline = Instant::now() + START_TIMEOUT;
        cluster.spawn_all(deadline).await?;
        let pending = cluster.file.pending.clone();
        for cfg in cluster.file.channels.clone() {
            if pending.contains(&cfg.name) {
                continue;
            }
            let approvals = cluster.genesis_approvals(&cfg, None).await?;
            for n in cfg.nodes() {
                cluster
                    .create_channel_on(&n.name, &cfg, &approvals, deadline)
                    .await?;
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
    pub(super) async fn spawn_all(&self, deadline: Instant) -> Result<(), ClientError> {
        for n in self.node_names() {
            self.spawn(&n)?;
        }
        for n in self.node_names() {
            self.wait_listening(&n, deadline).await?;
        }
        Ok(())
    }

    pub(super) fn assemble(
        dir: PathBuf,
        node_bin: PathBuf,
        file: ClusterFile,
        orgs: BTreeMap<String, OrgKeys>,
    ) -> Result<LocalCluster, ClientError> {
        let mut clients = BTreeMap::new();
        let mut procs = BTreeMap::new();
        let pems: Vec<&str> = orgs.values().map(|k| k.ca_pem.as_str()).collect();
        let trust = tally_client::ApiTrust::from_ca_pems(&pems)?;
        for n in &file.nodes {
            // Each node is verified against its own organization's CA only.
            let own = match orgs.get(&n.org) {
                Some(k) => tally_client::ApiTrust::from_ca_pems(&[k.ca_pem.as_str()])?,
                None => trust.clone(),
            };
            // Reads are signed as the node's own organization's client, a member of every
            // channel the node serves.
            let reader = orgs.get(&n.org).map(|k| k.client.clone());
            let client = Client::new(&n.api_url(), &own)?;
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
            trust,
            procs: Mutex::new(procs),
            node_env: Mutex::new(BTreeMap::new()),
        })
    }

    pub(super) fn spawn(&self, name: &str) -> Result<(), ClientError> {
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
        if let Some(vars) = self.node_env.lock().unwrap().get(name) {
            cmd.envs(vars.iter().map(|(k, v)| (k, v)));
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
    pub(super) async fn wait_listening(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<(), ClientError> {
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

    /// Every member organization's approval of the channel's genesis `cfg`. The local mode
    /// holds each organization's admin key and signs with it; where an organization's admin
    /// was since re-issued by a CA the genesis does not name (a rotated CA), the approvals
    /// another node of the channel was created with (other than `except`) stand in.
    pub(super) async fn genesis_approvals(
        &self,
        cfg: &ChannelConfig,
        except: Option<&str>,
    ) -> Result<Vec<Approval>, ClientError> {
        let mut approvals = Vec::new();
        for m in &cfg.members {
            // An external organization signs for itself; its approval is recorded by the
            // nodes that were created with it (below) or brought by `ensure_channels`.
            if self.file.external_orgs.contains(&m.name) {
                continue;
            }
            let keys = self.orgs.get(&m.name).ok_or_else(|| {
                other(format!(
                    "channel {} has member {:?}, whose admin key the local cluster does not hold",
                    cfg.name, m.name
                ))
            })?;
            approvals.push(genesis::approve(cfg, &keys.admin));
        }
        let cas = cfg
            .validate()
            .map_err(|e| other(format!("channel {}: {e}", cfg.name)))?;
        if genesis::missing(cfg, &cas, &approvals).is_ok() {
            return Ok(approvals);
        }
        let mut recorded = Vec::new();
        for n in self
            .hosted_channel_nodes(cfg)
            .filter(|n| Some(n.name.as_str()) != except)
        {
            let e = self.entry(&n.name);
            let keys = &self.orgs[&e.org];
            let admin = AdminClient::new(&e.admin_addr(), &keys.ca_pem, &keys.admin)?;
            if let Ok(Some(info)) = admin.channel(&cfg.name).await {
                recorded.extend(info.approvals);
            }
        }
        Ok(genesis::merge(
            cfg,
            &cas,
            recorded.into_iter().chain(approvals),
        ))
    }

    /// Creates the channel on the node through its admin API, retrying while the node is not
    /// reachable yet.
    pub(super) async fn create_channel_on(
        &self,
        name: &str,
        cfg: &ChannelConfig,
        approvals: &[Approval],
        deadline: Instant,
    ) -> Result<(), ClientError> {
        let e = self.entry(name);
        let keys = &self.orgs[&e.org];
        let admin = AdminClient::new(&e.admin_addr(), &keys.ca_pem, &keys.admin)?;
        loop {
            match admin.create_channel(cfg, approvals).await {
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
}
