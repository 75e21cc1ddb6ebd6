//! A node: one RocksDB, one peer transport, and the channels it serves.

use crate::channel::{self, Channel, Env};
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::transport::Transport;
use parking_lot::{Mutex, RwLock};
use protobuf::Message as _;
use raft::prelude::Message;
use rocksdb::{Options, DB};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use tally_protocol::identity::{CertInfo, TrustedCa};
use tally_protocol::{ChannelConfig, Decode, Encode, Identity};
use thiserror::Error;
use tracing::{info, warn};

#[derive(Debug, Error)]
pub enum JoinError {
    #[error("invalid channel configuration: {0}")]
    Invalid(String),
    #[error("this node ({0}) is not listed as a consenter or observer of the channel")]
    NotListed(String),
    #[error("channel {0} already exists here with a different configuration")]
    Conflict(String),
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
    channels: RwLock<BTreeMap<String, Arc<Channel>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    join_lock: Mutex<()>,
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
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.increase_parallelism(2);
        opts.set_max_background_jobs(2);
        opts.set_write_buffer_size(64 * 1024 * 1024);
        opts.set_max_total_wal_size(512 * 1024 * 1024);
        // Every submission and every applied transaction looks up its id, and nearly all of
        // those lookups miss: bloom filters answer a miss without reading data blocks.
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(64 * 1024 * 1024));
        table.set_cache_index_and_filter_blocks(true);
        opts.set_block_based_table_factory(&table);
        // The same for the memtable, where most lookups land and miss.
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.1);
        let db = Arc::new(DB::open(&opts, data_dir.join("ledger"))?);
        let metrics = Arc::new(Metrics::new(
            &identity.info.subject_cn(),
            &identity.info.org,
        ));
        let transport = Arc::new(Transport::new(identity.clone(), runtime, metrics.clone()));
        let node = Arc::new(Node {
            name: identity.info.subject_cn(),
            org: identity.info.org.clone(),
            identity,
            org_ca,
            db,
            transport,
            metrics,
            fsync,
            verifier: crate::verifier::Verifier::start()?,
            channels: RwLock::new(BTreeMap::new()),
            threads: Mutex::new(Vec::new()),
            join_lock: Mutex::new(()),
        });
        let mut configs = Vec::new();
        for item in node.db.prefix_iterator(crate::keys::JOINED_PREFIX) {
            let (k, v) = item?;
            if !k.starts_with(crate::keys::JOINED_PREFIX) {
                break;
            }
            configs.push(ChannelConfig::from_bytes(&v)?);
        }
        for cfg in configs {
            info!(channel = %cfg.name, "resuming channel");
            node.start_channel(cfg)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(node)
    }

    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels.read().get(name).cloned()
    }

    pub fn channels(&self) -> Vec<Arc<Channel>> {
        self.channels.read().values().cloned().collect()
    }

    /// Creates or joins a channel from its genesis configuration.
    pub fn join(&self, cfg: ChannelConfig) -> Result<Joined, JoinError> {
        let _g = self.join_lock.lock();
        cfg.validate()
            .map_err(|e| JoinError::Invalid(e.to_string()))?;
        if let Some(existing) = self.channel(&cfg.name) {
            if existing.ledger.config_hash == cfg.hash() {
                return Ok(Joined::Existing(existing));
            }
            return Err(JoinError::Conflict(cfg.name.clone()));
        }
        if cfg.node(&self.name).is_none() {
            return Err(JoinError::NotListed(self.name.clone()));
        }
        self.db
            .put(crate::keys::joined(&cfg.name), cfg.to_bytes())
            .map_err(|e| JoinError::Storage(e.to_string()))?;
        let ch = self.start_channel(cfg)?;
        Ok(Joined::Created(ch))
    }

    fn start_channel(&self, cfg: ChannelConfig) -> Result<Arc<Channel>, JoinError> {
        let me = cfg
            .node(&self.name)
            .cloned()
            .ok_or_else(|| JoinError::NotListed(self.name.clone()))?;
        if me.org != self.org {
            return Err(JoinError::Invalid(format!(
                "the channel lists node {} in organization {}, but its certificate says {}",
                self.name, me.org, self.org
            )));
        }
        let ledger = Arc::new(
            Ledger::open(self.db.clone(), cfg).map_err(|e| JoinError::Storage(e.to_string()))?,
        );
        let env = Env {
            db: self.db.clone(),
            transport: self.transport.clone(),
            metrics: self.metrics.clone(),
            fsync: self.fsync,
        };
        let (ch, handle) = channel::start(ledger, me.id, &self.name, &self.org, env)
            .map_err(|e| JoinError::Storage(e.to_string()))?;
        self.channels
            .write()
            .insert(ch.ledger.name.clone(), ch.clone());
        self.threads.lock().push(handle);
        self.refresh_trust()?;
        info!(channel = %ch.ledger.name, node_id = me.id, "channel started");
        Ok(ch)
    }

    /// Peers are trusted when their CA is a member of any channel this node serves.
    fn refresh_trust(&self) -> Result<(), JoinError> {
        let mut cas: HashMap<Vec<u8>, ()> = HashMap::new();
        for ch in self.channels.read().values() {
            for m in &ch.ledger.config.members {
                if let Ok(ca) = TrustedCa::from_pem(&m.name, &m.ca_pem) {
                    cas.insert(ca.der, ());
                }
            }
        }
        let list: Vec<Vec<u8>> = cas.into_keys().collect();
        self.transport
            .set_trust(&list)
            .map_err(|e| JoinError::Invalid(e.to_string()))
    }

    /// Routes a Raft message from a peer to its channel, after checking that the sending node
    /// belongs to the organization its certificate names.
    pub fn deliver(&self, channel: &str, bytes: &[u8], sender: &CertInfo) {
        let Some(ch) = self.channel(channel) else {
            return;
        };
        let Ok(msg) = Message::parse_from_bytes(bytes) else {
            warn!(channel, "undecodable raft message from a peer");
            return;
        };
        let allowed = ch
            .ledger
            .config
            .nodes()
            .any(|n| n.id == msg.from && n.org == sender.org);
        if allowed {
            ch.deliver(msg);
        } else {
            warn!(channel, from = msg.from, org = %sender.org, "raft message from a node not in the channel for that organization");
        }
    }

    pub fn ready(&self) -> Result<(), String> {
        for ch in self.channels.read().values() {
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
