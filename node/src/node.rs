//! A node: one RocksDB, one peer transport, and the channels it serves.

use crate::channel::{self, Channel, Env};
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::peer_trust::{PeerCert, TrustMap};
use crate::transport::Transport;
use parking_lot::{Mutex, RwLock};
use protobuf::Message as _;
use raft::prelude::Message;
use rocksdb::DB;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tally_protocol::genesis::ChannelCreation;
use tally_protocol::identity::TrustedCa;
use tally_protocol::{ChannelConfig, Decode, Encode, Identity, NodeRef};
use thiserror::Error;
use tracing::{info, warn};

#[derive(Debug, Error)]
pub enum JoinError {
    #[error("invalid channel configuration: {0}")]
    Invalid(String),
    #[error("this node ({0}) is not listed as a consenter or observer of the channel")]
    NotListed(String),
    #[error("the configuration in force is for channel {got}, not {want}")]
    Mismatch { want: String, got: String },
    #[error("channel {0} already exists here with a different configuration")]
    Conflict(String),
    #[error("{0}")]
    NotApproved(String),
    #[error("storage: {0}")]
    Storage(String),
}

pub enum Joined {
    Created(Arc<Channel>),
    Existing(Arc<Channel>),
}

pub struct Node {
    pub name: String,
    pub org: String,
    pub identity: Identity,
    /// The node's own organization CA: admins must hold a certificate from it.
    pub org_ca: TrustedCa,
    pub db: Arc<DB>,
    pub transport: Arc<Transport>,
    pub metrics: Arc<Metrics>,
    pub fsync: bool,
    pub verifier: crate::verifier::Verifier,
    /// The chaincode engine of every channel on this node: one compiled-module cache. Default
    /// limits, because every node of a channel must stop calls at the same place.
    pub engine: Arc<tally_runtime::Engine>,
    /// Where chaincode queries run: off the async workers, a bounded number at once.
    pub queries: crate::query_pool::QueryPool,
    /// The client API's TLS configuration: rebuilt when the member CAs change, so that an
    /// optional client certificate is checked against the organizations of today.
    pub api_tls: RwLock<Arc<rustls::ServerConfig>>,
    /// The admin listener's TLS configuration: rebuilt with the channels, see `admin_cas`.
    pub admin_tls: RwLock<Arc<rustls::ServerConfig>>,
    /// Nonces of the signed reads this node served recently: a read is served once.
    pub seen_reads: crate::read_replay::SeenReads,
    /// Backups to object storage this node runs or ran recently (`crate::backup`).
    pub backups: crate::backup::Jobs,
    /// Channels restored read-only at a point in time (`keys::frozen`): no Raft, no
    /// checkpoints, no writes.
    pub(crate) frozen: RwLock<std::collections::BTreeSet<String>>,
    pub(crate) channels: RwLock<BTreeMap<String, Arc<Channel>>>,
    /// The organization CAs of each channel, for binding peer certificates to Raft ids.
    trust: RwLock<TrustMap>,
    pub(crate) threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    pub(crate) join_lock: Mutex<()>,
    /// Itself, for the channels' configuration callbacks.
    me: Weak<Node>,
    /// Tells the checkpoint and quiescence threads to end.
    checkpoints_stop: Arc<std::sync::atomic::AtomicBool>,
}

/// Where a node stands on each channel after a request to hand leadership over.
#[derive(Debug, serde::Serialize)]
pub struct Released {
    pub channel: String,
    /// Whether this node still leads the channel.
    pub leading: bool,
    pub leader_id: u64,
}

impl Node {
    pub fn open(
        data_dir: &Path,
        identity: Identity,
        org_ca: TrustedCa,
        fsync: bool,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Arc<Node>> {
        std::fs::create_dir_all(data_dir)?;
        let opts = crate::db_options::db_options();
        let db = Arc::new(DB::open(&opts, data_dir.join("ledger"))?);
        let metrics = Arc::new(Metrics::new(
            &identity.info.subject_cn(),
            &identity.info.org,
        ));
        let transport = Arc::new(Transport::new(identity.clone(), runtime, metrics.clone()));
        let verifier = crate::verifier::Verifier::start()?;
        let api_tls = crate::tls::api_server_config(
            &identity,
            std::slice::from_ref(&org_ca.der),
            Default::default(),
        )?;
        let admin_tls = crate::tls::server_config(&identity, std::slice::from_ref(&org_ca.der))?;
        let node = Arc::new_cyclic(|me| Node {
            me: me.clone(),
            name: identity.info.subject_cn(),
            org: identity.info.org.clone(),
            identity,
            org_ca,
            db,
            transport,
            metrics,
            fsync,
            verifier,
            engine: Arc::new(tally_runtime::Engine::new(tally_runtime::Limits::default())),
            queries: crate::query_pool::QueryPool::for_this_machine(),
            seen_reads: crate::read_replay::SeenReads::default(),
            backups: Default::default(),
            frozen: Default::default(),
            api_tls: RwLock::new(api_tls),
            admin_tls: RwLock::new(admin_tls),
            channels: RwLock::new(BTreeMap::new()),
            trust: RwLock::new(TrustMap::default()),
            threads: Mutex::new(Vec::new()),
            join_lock: Mutex::new(()),
            checkpoints_stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        });
        let mut configs = Vec::new();
        for item in node.db.prefix_iterator(crate::keys::JOINED_PREFIX) {
            let (k, v) = item?;
            if !k.starts_with(crate::keys::JOINED_PREFIX) {
                break;
            }
            let genesis = ChannelConfig::from_bytes(&v)?;
            let hint = match node.db.get(crate::keys::join_hint(&genesis.name))? {
                Some(b) => Some(ChannelConfig::from_bytes(&b)?),
                None => None,
            };
            configs.push((genesis, hint));
        }
        for (genesis, hint) in configs {
            let name = genesis.name.clone();
            info!(channel = %name, "resuming channel");
            match node.start_channel(genesis, hint) {
                Ok(_) => {}
                // A configuration change took this node out of the channel: its data stays,
                // and an admin can add it back.
                Err(JoinError::NotListed(_)) => {
                    info!(channel = %name, "not resuming: this node is no longer part of the channel")
                }
                Err(e) => return Err(anyhow::anyhow!("{e}")),
            }
        }
        let (weak, stop) = (Arc::downgrade(&node), node.checkpoints_stop.clone());
        std::thread::Builder::new()
            .name("checkpoints".into())
            .spawn(move || crate::checkpoint::run(weak, stop))?;
        let (weak, stop) = (Arc::downgrade(&node), node.checkpoints_stop.clone());
        std::thread::Builder::new()
            .name("quiescence".into())
            .spawn(move || crate::quiescence::run(weak, stop))?;
        Ok(node)
    }

    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels.read().get(name).cloned()
    }

    pub fn channels(&self) -> Vec<Arc<Channel>> {
        self.channels.read().values().cloned().collect()
    }

    /// Creates or joins a channel from its genesis configuration. A node joining a channel
    /// that has changed since genesis also gets `current`, the configuration in force that
    /// lists it; it replays the ledger from genesis and reaches that configuration itself.
    /// Every member organization of the genesis must have approved it (`approvals`), whoever
    /// asks: the node's own admin cannot place other organizations in a channel alone.
    pub fn join(&self, creation: ChannelCreation) -> Result<Joined, JoinError> {
        let ChannelCreation {
            genesis,
            approvals,
            config: current,
        } = creation;
        let _g = self.join_lock.lock();
        let cas = genesis
            .validate()
            .map_err(|e| JoinError::Invalid(e.to_string()))?;
        tally_protocol::genesis::check(&genesis, &cas, &approvals)
            .map_err(|e| JoinError::NotApproved(e.to_string()))?;
        if let Some(c) = &current {
            c.validate()
                .map_err(|e| JoinError::Invalid(e.to_string()))?;
            if c.name != genesis.name {
                return Err(JoinError::Mismatch {
                    want: genesis.name.clone(),
                    got: c.name.clone(),
                });
            }
        }
        let current = current.filter(|c| c.hash() != genesis.hash());
        if let Some(existing) = self.channel(&genesis.name) {
            if existing.ledger.genesis_hash == genesis.hash() {
                return Ok(Joined::Existing(existing));
            }
            return Err(JoinError::Conflict(genesis.name.clone()));
        }
        if current
            .as_ref()
            .unwrap_or(&genesis)
            .node(&self.name)
            .is_none()
        {
            return Err(JoinError::NotListed(self.name.clone()));
        }
        let mut wb = rocksdb::WriteBatch::default();
        wb.put(crate::keys::joined(&genesis.name), genesis.to_bytes());
        wb.put(
            crate::keys::genesis_approvals(&genesis.name),
            tally_protocol::genesis::approvals_to_bytes(&approvals),
        );
        // New Raft state: no vote until caught up (`channel/rejoin.rs`).
        wb.put(crate::keys::rejoining(&genesis.name), []);
        match &current {
            Some(c) => wb.put(crate::keys::join_hint(&genesis.name), c.to_bytes()),
            None => wb.delete(crate::keys::join_hint(&genesis.name)),
        }
        self.db
            .write(wb)
            .map_err(|e| JoinError::Storage(e.to_string()))?;
        let ch = self.start_channel(genesis, current)?;
        Ok(Joined::Created(ch))
    }

    /// The approvals of the channel's genesis this node was created or joined with; none
    /// where it has no record of them (a channel restored from a backup).
    pub fn genesis_approvals(&self, channel: &str) -> Vec<tally_protocol::Approval> {
        match self.db.get(crate::keys::genesis_approvals(channel)) {
            Ok(Some(b)) => tally_protocol::genesis::approvals_from_bytes(&b).unwrap_or_else(|e| {
                warn!(channel, error = %e, "unreadable record of the genesis approvals");
                Vec::new()
            }),
            Ok(None) => Vec::new(),
            Err(e) => {
                warn!(channel, error = %e, "reading the genesis approvals");
                Vec::new()
            }
        }
    }

    /// Whether the channel was restored read-only at a point in time (`keys::frozen`).
    pub fn is_frozen(&self, channel: &str) -> bool {
        self.frozen.read().contains(channel)
    }

    /// This node as a channel that does not list it sees it, for a read-only restore: a Raft id
    /// that no member has, so that its Raft never counts as one of them. Its organization must
    /// be a member, whose CA issued the certificate its clients check.
    fn outsider(&self, config: &ChannelConfig) -> Result<NodeRef, JoinError> {
        if config.member(&self.org).is_none() {
            return Err(JoinError::Invalid(format!(
                "channel {} restored read-only on node {}, whose organization {} is not a member of it",
                config.name, self.name, self.org
            )));
        }
        let taken: std::collections::BTreeSet<u64> = config
            .consenters
            .iter()
            .chain(&config.observers)
            .map(|n| n.id)
            .collect();
        let id = (1..=u64::MAX)
            .rev()
            .find(|id| !taken.contains(id))
            .unwrap_or(u64::MAX);
        Ok(NodeRef {
            id,
            name: self.name.clone(),
            org: self.org.clone(),
            peer_addr: String::new(),
            api_url: String::new(),
        })
    }

    pub(crate) fn start_channel(
        &self,
        genesis: ChannelConfig,
        hint: Option<ChannelConfig>,
    ) -> Result<Arc<Channel>, JoinError> {
        let frozen = matches!(self.db.get(crate::keys::frozen(&genesis.name)), Ok(Some(_)));
        if frozen {
            info!(channel = %genesis.name, "read-only: restored at a point in time, serving reads only, out of the channel's Raft and checkpoints");
            self.frozen.write().insert(genesis.name.clone());
        }
        let ledger = Arc::new(
            Ledger::open(self.db.clone(), genesis, self.engine.clone())
                .map_err(|e| JoinError::Storage(e.to_string()))?,
        );
        let hint = hint.map(Arc::new);
        let listed = ledger
            .config()
            .node(&self.name)
            .cloned()
            .or_else(|| hint.as_ref().and_then(|h| h.node(&self.name).cloned()));
        let me = match listed {
            Some(me) => me,
            // A read-only restore may go to a node made for the investigation, which the
            // channel never listed: it needs no place in the channel, since it never speaks.
            None if frozen => self.outsider(&ledger.config())?,
            None => return Err(JoinError::NotListed(self.name.clone())),
        };
        if me.org != self.org {
            return Err(JoinError::Invalid(format!(
                "the channel lists node {} in organization {}, but its certificate says {}",
                self.name, me.org, self.org
            )));
        }
        let node = self.me.clone();
        // A read-only channel sends nothing either: its Raft must not disturb the live channel.
        let peers: Arc<dyn channel::Peers> = if frozen {
            Arc::new(channel::Silent)
        } else {
            self.transport.clone()
        };
        let env = Env {
            db: self.db.clone(),
            peers,
            clock: Arc::new(channel::SystemClock),
            metrics: self.metrics.clone(),
            fsync: self.fsync,
            writes: None,
            quiesce: !frozen,
            on_config: Arc::new(move || {
                if let Some(n) = node.upgrade() {
                    if let Err(e) = n.refresh_trust() {
                        warn!(error = %e, "peer trust not updated after a configuration change");
                    }
                }
            }),
        };
        // Records edited behind the node's back while it was stopped do not match the state
        // commitment its tip keeps; such a ledger must not serve.
        let tampered = ledger
            .verify_state()
            .map_err(|e| JoinError::Storage(e.to_string()))?;
        let (ch, handle) = channel::start(ledger, &me, hint, env)
            .map_err(|e| JoinError::Storage(e.to_string()))?;
        if let Some(why) = tampered {
            let height = ch.ledger.tip().height;
            tracing::error!(channel = %ch.ledger.name, height, "channel degraded, not serving it: {why}");
            ch.checkpoints.degrade(crate::checkpoint::Degraded {
                first_differing_height: height,
                reason: why,
            });
        }
        self.channels
            .write()
            .insert(ch.ledger.name.clone(), ch.clone());
        self.threads.lock().push(handle);
        self.refresh_trust()?;
        info!(channel = %ch.ledger.name, node_id = me.id, "channel started");
        Ok(ch)
    }

    /// Whose admins the admin listener accepts: the node's own organization CA (`--org-ca`)
    /// and every CA its channels list for that organization. A CA rotation adds the new CA to
    /// the channels first, so the new CA's admins reach nodes not restarted yet; and a
    /// channel lists a CA for an organization only with that organization's own approval
    /// (`own_approval_needed`, the genesis approvals), so no other member can add one.
    fn admin_cas(&self, trust: &TrustMap) -> Vec<Vec<u8>> {
        let mut cas = vec![self.org_ca.der.clone()];
        for ca in trust.by_org().remove(&self.org).unwrap_or_default() {
            if !cas.contains(&ca.ca.der) {
                cas.push(ca.ca.der);
            }
        }
        cas
    }

    /// Peers are trusted when their CA is a member of a channel this node serves, and for a
    /// channel's messages only with that channel's CA for their organization.
    pub(crate) fn refresh_trust(&self) -> Result<(), JoinError> {
        let mut trust = self.trust.write();
        let channels: Vec<(String, Vec<tally_protocol::TrustedCa>)> = self
            .channels
            .read()
            .values()
            .map(|ch| (ch.ledger.name.clone(), ch.member_cas()))
            .collect();
        let next = TrustMap::build(&trust, channels);
        self.transport
            .set_trust(&next)
            .map_err(|e| JoinError::Invalid(e.to_string()))?;
        let mut cas = next.all_der();
        cas.push(self.org_ca.der.clone());
        *self.api_tls.write() = crate::tls::api_server_config(&self.identity, &cas, next.revoked())
            .map_err(|e| JoinError::Invalid(e.to_string()))?;
        *self.admin_tls.write() = crate::tls::server_config(&self.identity, &self.admin_cas(&next))
            .map_err(|e| JoinError::Invalid(e.to_string()))?;
        *trust = next;
        Ok(())
    }

    /// Answers a peer's snapshot chunk request (route `snapshot-pull:<channel>`) from the
    /// channel's held snapshot, if the requester's certificate is that of a node of the
    /// channel, issued by the channel's CA for that node's organization.
    pub fn serve_snapshot_chunk(
        &self,
        route: &str,
        body: &[u8],
        sender: &PeerCert,
    ) -> Option<Vec<u8>> {
        let channel = route.strip_prefix(crate::snapshot_stream::ROUTE)?;
        if self.is_frozen(channel) {
            return None;
        }
        let ch = self.channel(channel)?;
        let node = ch.peer_named(&sender.info.common_name)?;
        if let Err(why) = self.trust.read().admit(channel, &node, sender) {
            warn!(channel, "snapshot chunk request refused: {why}");
            return None;
        }
        crate::snapshot_builder::serve(&ch.held, body)
    }

    /// Routes a Raft message from a peer to its channel, after checking that the connection's
    /// certificate is that of the node whose Raft id the message claims, issued by the
    /// channel's CA for that node's organization.
    pub fn deliver(&self, channel: &str, bytes: &[u8], sender: &PeerCert) {
        if channel == crate::quiescence::ROUTE {
            crate::quiescence::receive(self, bytes, sender);
            return;
        }
        // A read-only channel hears nothing from its peers: it stays at the restored point.
        let checkpoint = crate::checkpoint::parse_route(channel);
        let name = checkpoint.map_or(channel, |(name, _)| name);
        if self.is_frozen(name) {
            return;
        }
        if let Some((name, answer)) = checkpoint {
            if let Some(ch) = self.channel(name) {
                crate::checkpoint::receive(self, &ch, bytes, sender, answer);
            }
            return;
        }
        let Some(ch) = self.channel(channel) else {
            return;
        };
        let Ok(msg) = Message::parse_from_bytes(bytes) else {
            warn!(channel, "undecodable raft message from a peer");
            return;
        };
        let Some(node) = ch.peer(msg.from) else {
            // A node that a configuration change removed keeps asking for votes until it is
            // stopped; that is expected and not worth a warning each time.
            tracing::debug!(channel, from = msg.from, sender = %sender.info.common_name, "raft message from a node not in the channel");
            return;
        };
        match self.trust.read().admit(channel, &node, sender) {
            Ok(()) => ch.deliver(msg),
            Err(why) if sender.first_refusal() => {
                warn!(channel, "raft message refused: {why}")
            }
            Err(why) => tracing::debug!(channel, "raft message refused: {why}"),
        }
    }

    /// Whether a channel this node serves revokes the certificate `der`.
    pub fn revokes(&self, der: &[u8]) -> bool {
        self.trust
            .read()
            .revoked()
            .contains(&tally_protocol::identity::fingerprint(der))
    }

    /// Whether `sender` may speak for `node` on `channel` (see [`TrustMap::admit`]).
    pub fn admit(&self, channel: &str, node: &NodeRef, sender: &PeerCert) -> Result<(), String> {
        self.trust.read().admit(channel, node, sender)
    }

    /// Asks every channel this node leads to hand leadership to another caught-up voter,
    /// and waits up to `timeout` for them to do so. Used before a planned restart, so the
    /// channel does not wait out an election timeout.
    pub fn release_leadership(&self, timeout: Duration) -> Vec<Released> {
        let leading = |c: &Channel| c.leader_id() == c.node_id;
        let chans: Vec<Arc<Channel>> = self
            .channels()
            .into_iter()
            .filter(|c| leading(c) && c.status().voters.len() > 1)
            .collect();
        let deadline = Instant::now() + timeout;
        let mut asked = Instant::now() - Duration::from_secs(1);
        while Instant::now() < deadline && chans.iter().any(|c| leading(c)) {
            // A transfer Raft gives up on (the target was slow) is asked for again.
            if asked.elapsed() >= Duration::from_millis(1000) {
                for c in chans.iter().filter(|c| leading(c)) {
                    c.release_leadership();
                }
                asked = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        chans
            .iter()
            .map(|c| Released {
                channel: c.ledger.name.clone(),
                leading: leading(c),
                leader_id: c.leader_id(),
            })
            .collect()
    }

    pub fn ready(&self) -> Result<(), String> {
        for ch in self.channels.read().values() {
            // A read-only channel has no leader to follow: it is ready as restored.
            if self.is_frozen(&ch.ledger.name) {
                if let Some(d) = ch.degraded() {
                    return Err(format!(
                        "channel {} is degraded: {}",
                        ch.ledger.name, d.reason
                    ));
                }
                continue;
            }
            ch.ready()?;
        }
        Ok(())
    }

    pub fn update_size_metric(&self) {
        let p = |name| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        let size = p("rocksdb.total-sst-files-size") + p("rocksdb.cur-size-all-mem-tables");
        self.metrics.rocksdb_size.set(size as f64);
        let m = &self.metrics;
        m.rocksdb_write_stopped
            .set(p("rocksdb.is-write-stopped").min(1) as i64);
        m.rocksdb_delayed_write_rate
            .set(p("rocksdb.actual-delayed-write-rate") as f64);
    }

    /// Stops every channel thread after its current step and flushes the database.
    pub fn shutdown(&self) {
        self.checkpoints_stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for ch in self.channels.read().values() {
            ch.shutdown();
        }
        let threads: Vec<_> = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            let _ = t.join();
        }
        if let Err(e) = self.db.flush_wal(true) {
            warn!(error = %e, "WAL sync at shutdown failed");
        }
        if let Err(e) = self.db.flush() {
            warn!(error = %e, "flush at shutdown failed");
        }
    }
}
