//! What a local cluster is asked to be: organizations, Peers and channels, planned by the planner.

use super::*;

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
            held: &tally_planner::NOTHING_HELD,
            now: None,
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
                certificates: spec::Certificates::default(),
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
                    exposure: None,
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
                        chaincode_lifecycle: approval_of(c.policies.chaincode),
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

/// A channel's chaincode rule as the Channel resource spells it (`chaincodeLifecycle`); none
/// for a majority, the default.
fn approval_of(rule: tally_protocol::config::MembershipRule) -> Option<spec::Approval> {
    use tally_protocol::config::MembershipRule as R;
    match rule {
        R::Majority => None,
        R::All => Some(spec::Approval {
            rule: spec::ApprovalRule::All,
            count: None,
        }),
        R::AtLeast(n) => Some(spec::Approval {
            rule: spec::ApprovalRule::AtLeast,
            count: Some(n),
        }),
    }
}
