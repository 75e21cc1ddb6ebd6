//! One channel: a Raft group with its own thread. The thread owns the Raft node and is the
//! only writer of the channel's log and ledger; HTTP handlers talk to it through a queue and
//! read the ledger directly.
//!
//! `handle` is the [`Channel`] others call; `worker` is the thread's loop and its Ready
//! handling, which follows raft-rs's order: send messages, install a snapshot, apply
//! committed entries, persist new entries and hard state (one synced write), send the
//! messages that had to wait for persistence, advance. `batching` groups submissions into
//! proposals, `membership` keeps Raft's voters in line with the configuration and repairs
//! nodes that lost their log, `publishing` reports status, metrics and block events.

use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::raft_store::RaftStore;
use crate::transport::{frame, Transport};
use parking_lot::{Mutex, RwLock};
use protobuf::Message as _;
use raft::prelude::{ConfState, Message};
use raft::RawNode;
use rocksdb::DB;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_protocol::{ChannelConfig, Hash, NodeRef};
use tokio::sync::broadcast;
use tracing::error;

mod batching;
mod clock_check;
mod handle;
mod membership;
mod publishing;
mod quiet;
mod rejoin;
mod snapshot_pull;
mod step_aside;
mod worker;

pub use handle::{Channel, RaftView, SubmitFailure};
pub use quiet::Quiet;
pub(crate) use worker::Worker;

const TICK: Duration = Duration::from_millis(100);
/// A follower within this many entries of the leader's commit counts as caught up.
const READY_SLACK: u64 = 64;
/// Submissions queued but not yet proposed, beyond which new ones are refused (backpressure).
pub const MAX_QUEUED: usize = 100_000;
/// The same bound in bytes: 100,000 transactions of a megabyte would not fit in memory.
pub const MAX_QUEUED_BYTES: usize = 256 * 1024 * 1024;
const STALE: Duration = Duration::from_secs(120);

pub enum Input {
    Raft(Box<Message>),
    Submit {
        id: Hash,
        raw: Vec<u8>,
    },
    /// Hand leadership to the most up-to-date other voter, if this node leads.
    ReleaseLeadership,
    /// A snapshot pull started for `msg` ended: staged and verified, or not.
    SnapshotPulled {
        msg: Box<Message>,
        result: Result<crate::snapshot_stream::Pulled, crate::snapshot_stream::PullError>,
    },
    /// Stop the Raft clock: this leader's node announced the channel as quiet (`leader`
    /// None), or this follower's leader did (`quiet.rs`).
    Quiet {
        term: u64,
        commit: u64,
        leader: Option<u64>,
    },
    /// The quiet follower's leader stopped listing the channel: start the clock again.
    Wake,
    /// Node `to` listed the channel as quiet under it, but this node does not follow it:
    /// wake it with a message.
    Poke {
        to: u64,
    },
    Shutdown,
}

/// What the channel thread needs from the node.
pub struct Env {
    pub db: Arc<DB>,
    pub peers: Arc<dyn Peers>,
    /// Time for ticks, batching and block timestamps: the system's in production.
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub fsync: bool,
    /// Called after a configuration change is applied, so the node trusts the right CAs.
    pub on_config: Arc<dyn Fn() + Send + Sync>,
    /// Sees each of the worker's writes before RocksDB does: `None` in production; the
    /// simulator records them (to model what a crash keeps) and cuts a node off at one.
    pub writes: Option<Arc<dyn WriteHook>>,
    /// Whether idle channels stop their Raft clock (`quiet.rs`): only where the node announces
    /// them to its peers, not in the simulator or a read-only restore.
    pub quiesce: bool,
}

/// Where the simulator may stop a node at one of its writes (a crash inside a Ready).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The write happens and the worker goes on.
    None,
    /// The node stops before the write reaches the disk.
    Before,
    /// The write reaches the disk, then the node stops.
    After,
}

pub trait WriteHook: Send + Sync {
    /// Called with each batch the worker is about to write; `sync` when it asked for fsync.
    fn on_write(&self, wb: &rocksdb::WriteBatch, sync: bool) -> Cut;
}

/// The error a worker stops with when the simulator cut it off at a write.
#[derive(Debug, thiserror::Error)]
#[error("stopped at a write by the simulator")]
pub struct CutOff;

/// Where the channel's Raft messages go: the peer transport in production, the simulator's
/// network in tests.
pub trait Peers: Send + Sync {
    /// Sends `msg` to `to`; false when it certainly cannot be delivered now.
    fn send(&self, to: &NodeRef, channel: &str, msg: &Message) -> bool;
    /// Where the records of a snapshot `from` holds are pulled from.
    fn snapshot_source(
        &self,
        _from: &NodeRef,
        _channel: &str,
    ) -> Option<Box<dyn crate::snapshot_stream::ChunkSource>> {
        None
    }
    /// Snapshots built in line and pulled in line, on the channel's thread (the simulator,
    /// which must replay runs exactly); None: held and pulled on threads of their own.
    fn inline_snapshots(&self) -> Option<Arc<crate::snapshot_stream::InlineBuilds>> {
        None
    }
}

/// Peers that are never reached: the Raft of a channel restored read-only at a point in time,
/// which must neither campaign in nor answer the live channel.
pub struct Silent;

impl Peers for Silent {
    fn send(&self, _: &NodeRef, _: &str, _: &Message) -> bool {
        false
    }
}

impl Peers for Transport {
    fn send(&self, to: &NodeRef, channel: &str, msg: &Message) -> bool {
        match msg.write_to_bytes() {
            Ok(bytes) => Transport::send(self, &to.peer_addr, frame(channel, &bytes)),
            Err(e) => {
                error!(error = %e, "cannot encode raft message");
                false
            }
        }
    }

    fn snapshot_source(
        &self,
        from: &NodeRef,
        channel: &str,
    ) -> Option<Box<dyn crate::snapshot_stream::ChunkSource>> {
        Some(Box::new(self.puller(&from.peer_addr, channel)))
    }
}

/// Where the channel's time comes from, so that a simulation can run on its own.
pub trait Clock: Send + Sync {
    /// Monotonic time, for ticks and batch deadlines.
    fn now(&self) -> Instant;
    /// Wall time in Unix milliseconds, for the timestamp a leader proposes with a batch.
    fn wall_ms(&self) -> u64;
}

/// The machine's clocks.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall_ms(&self) -> u64 {
        crate::wall_clock::now_ms()
    }
}

/// Builds a channel and the worker that drives it, without starting a thread: [`start`]
/// runs the worker on its own thread, the simulator steps it by hand. `tune` may adjust
/// Raft's configuration (the simulator fixes election timeouts, which raft-rs otherwise
/// draws from an unseeded generator).
pub(crate) fn open(
    ledger: Arc<Ledger>,
    me: &NodeRef,
    hint: Option<Arc<ChannelConfig>>,
    env: Env,
    tune: impl FnOnce(&mut raft::Config),
) -> Result<(Arc<Channel>, Worker, Receiver<Input>), raft::Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (blocks, _) = broadcast::channel(1024);
    let node_id = me.id;
    let learner = ledger.config().observers.iter().any(|n| n.id == node_id);
    let hint = hint.filter(|_| ledger.config().node(&me.name).is_none());
    let chan = Arc::new(Channel {
        ledger: ledger.clone(),
        node_id,
        node_name: me.name.clone(),
        org: me.org.clone(),
        hint: RwLock::new(hint),
        departing: RwLock::new(Vec::new()),
        input: Mutex::new(tx),
        view: RwLock::new(RaftView {
            learner,
            ..RaftView::default()
        }),
        blocks,
        waiters: Mutex::new(HashMap::new()),
        arrivals: Mutex::new(HashMap::new()),
        preverified: Mutex::new(HashMap::new()),
        queued: AtomicUsize::new(0),
        queued_bytes: AtomicUsize::new(0),
        checkpoints: Default::default(),
        stopped: RwLock::new(None),
        rejoining: AtomicBool::new(false),
        held: Default::default(),
        quiet: Mutex::new(Quiet::Awake),
    });
    // Every node, including one that joins later, starts from the genesis voters: the log
    // holds only the changes made since, and replaying them must start where they started.
    let genesis = &ledger.genesis;
    let initial = ConfState {
        voters: genesis.consenters.iter().map(|n| n.id).collect(),
        learners: genesis.observers.iter().map(|n| n.id).collect(),
        ..ConfState::default()
    };
    let mut store = RaftStore::open(env.db.clone(), ledger.clone(), initial)?;
    // The simulator needs every run alike: it builds and pulls snapshots in line, where a
    // background thread's timing would make runs differ.
    match env.peers.inline_snapshots() {
        Some(builds) => store.build_snapshots_in_line(builds),
        None => store.build_snapshots_in_background(chan.held.clone()),
    }
    let mut raft_cfg = raft::Config {
        id: node_id,
        election_tick: 10,
        heartbeat_tick: 2,
        applied: ledger.tip().applied_index,
        max_size_per_msg: crate::limits::RAFT_MSG_BYTES,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..raft::Config::default()
    };
    tune(&mut raft_cfg);
    let logger = slog::Logger::root(
        crate::raft_log::TracingDrain,
        slog::o!("channel" => ledger.name.clone()),
    );
    let raw = RawNode::new(&raft_cfg, store, &logger)?;
    let worker = Worker::new(chan.clone(), raw, env);
    Ok((chan, worker, rx))
}

/// Starts a channel's thread. The ledger must already be open (its genesis written).
pub fn start(
    ledger: Arc<Ledger>,
    me: &NodeRef,
    hint: Option<Arc<ChannelConfig>>,
    env: Env,
) -> Result<(Arc<Channel>, std::thread::JoinHandle<()>), raft::Error> {
    let name = format!("raft-{}", ledger.name);
    let (chan, mut worker, rx) = open(ledger, me, hint, env, |_| {})?;
    let watched = chan.clone();
    let handle = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            // A panic in the loop must not leave a channel that looks alive: record it, so
            // the node turns unready and says why.
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run(rx)));
            if let Err(p) = run {
                let why = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                error!(channel = %watched.ledger.name, cause = %why, "channel thread panicked");
                watched.set_stopped(format!("panic: {why}"));
            }
        })
        .map_err(|e| raft::Error::Store(raft::StorageError::Other(e.into())))?;
    Ok((chan, handle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::{OrgCa, OrgMember};

    /// A transport that fails the way a bug would: the channel thread dies on its first send.
    struct Panicking;
    impl Peers for Panicking {
        fn send(&self, _: &NodeRef, _: &str, _: &Message) -> bool {
            panic!("peer transport exploded");
        }
    }

    fn node(id: u64, name: &str) -> NodeRef {
        NodeRef {
            id,
            name: name.into(),
            org: "org1".into(),
            peer_addr: "127.0.0.1:1".into(),
            api_url: "http://127.0.0.1:2".into(),
        }
    }

    /// A channel whose thread dies makes the node unready and says why, instead of leaving a
    /// channel that looks alive.
    #[test]
    fn a_dead_channel_thread_is_unready_with_its_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(DB::open_default(dir.path()).expect("db"));
        let ca = OrgCa::generate("org1").expect("ca");
        let cfg = ChannelConfig {
            name: "ch".into(),
            members: vec![OrgMember::new("org1", &ca.cert_pem())],
            // Two consenters: the first election sends a vote request, which panics.
            consenters: vec![node(1, "n1"), node(2, "n2")],
            observers: vec![],
            batch: Default::default(),
            policies: Default::default(),
            snapshot_interval: 100,
            max_tx_bytes: 100_000,
            tx_window_s: 600,
        };
        let engine = Arc::new(tally_runtime::Engine::new(tally_runtime::Limits::default()));
        let ledger = Arc::new(Ledger::open(db.clone(), cfg, engine).expect("ledger"));
        let env = Env {
            db,
            peers: Arc::new(Panicking),
            clock: Arc::new(SystemClock),
            metrics: Arc::new(Metrics::new("n1", "org1")),
            fsync: false,
            on_config: Arc::new(|| {}),
            writes: None,
            quiesce: false,
        };
        let (chan, thread) = start(ledger, &node(1, "n1"), None, env).expect("start");
        thread.join().expect("the panic is caught, the thread ends");
        let d = chan.degraded().expect("the dead thread is reported");
        assert!(d.reason.contains("peer transport exploded"), "{d:?}");
        let why = chan.ready().expect_err("a dead channel is not ready");
        assert!(why.contains("thread stopped"), "{why}");
        assert!(chan.status().degraded.is_some());
    }
}
