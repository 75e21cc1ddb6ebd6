//! One channel: a Raft group with its own thread. The thread owns the Raft node and is the
//! only writer of the channel's log and ledger; HTTP handlers talk to it through a queue and
//! read the ledger directly.
//!
//! Work on each Ready follows raft-rs's order: send messages, install a snapshot, apply
//! committed entries, persist new entries and hard state (one synced write), send the
//! messages that had to wait for persistence, advance.

use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::raft_store::RaftStore;
use crate::transport::{frame, Transport};
use parking_lot::{Mutex, RwLock};
use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType, Message, MessageType,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use rocksdb::{WriteBatch, WriteOptions, DB};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_protocol::api::{ChannelStatus, RaftRole};
use tally_protocol::{BatchConfig, ChannelConfig, Hash, NodeRef, Receipt, RejectCode, TxStatus};
use tokio::sync::{broadcast, oneshot};
use tracing::{error, info, warn};

const TICK: Duration = Duration::from_millis(100);
/// A follower within this many entries of the leader's commit counts as caught up.
const READY_SLACK: u64 = 64;
/// Submissions queued but not yet proposed, beyond which new ones are refused (backpressure).
pub const MAX_QUEUED: usize = 100_000;
const STALE: Duration = Duration::from_secs(120);

pub enum Input {
    Raft(Box<Message>),
    Submit {
        id: Hash,
        raw: Vec<u8>,
    },
    /// Hand leadership to the most up-to-date other voter, if this node leads.
    ReleaseLeadership,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitFailure {
    NoLeader,
    ShuttingDown,
}

type Waiter = oneshot::Sender<Result<Receipt, SubmitFailure>>;

#[derive(Clone, Debug, Default)]
pub struct RaftView {
    pub role: Option<StateRole>,
    pub learner: bool,
    pub leader_id: u64,
    pub term: u64,
    pub commit: u64,
    /// Highest commit index the leader has told this node about.
    pub leader_commit: u64,
    pub heard_from_leader: bool,
    /// Raft's voters and learners as this node knows them.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

pub struct Channel {
    pub ledger: Arc<Ledger>,
    pub node_id: u64,
    pub node_name: String,
    pub org: String,
    /// The configuration an admin gave when this node joined an existing channel, until the
    /// ledger's own configuration lists this node: it tells which peers to talk to and
    /// accept before the ledger has caught up with the changes that added this node.
    hint: RwLock<Option<Arc<ChannelConfig>>>,
    /// Nodes that a configuration change removed, while Raft still counts them: the change
    /// is finished (and a leaving leader hands over) by talking to them.
    departing: RwLock<Vec<NodeRef>>,
    input: Mutex<Sender<Input>>,
    view: RwLock<RaftView>,
    pub blocks: broadcast::Sender<u64>,
    waiters: Mutex<HashMap<Hash, Vec<Waiter>>>,
    /// Arrival time of transactions submitted here, for the commit latency histogram.
    arrivals: Mutex<HashMap<Hash, Instant>>,
    /// Signatures this node checked at submission, so the apply step need not check them
    /// again. Keyed by id and compared by signature bytes: only an identical copy is skipped.
    preverified: Mutex<HashMap<Hash, (Vec<u8>, Instant)>>,
    pub queued: AtomicUsize,
}

impl Channel {
    pub fn status(&self) -> ChannelStatus {
        let v = self.view.read().clone();
        let tip = self.ledger.tip();
        let in_force = self.ledger.in_force();
        ChannelStatus {
            channel: self.ledger.name.clone(),
            node: self.node_name.clone(),
            node_id: self.node_id,
            org: self.org.clone(),
            role: match (v.learner, v.role) {
                (true, _) => RaftRole::Learner,
                (_, Some(StateRole::Leader)) => RaftRole::Leader,
                (_, Some(StateRole::Candidate)) | (_, Some(StateRole::PreCandidate)) => {
                    RaftRole::Candidate
                }
                _ => RaftRole::Follower,
            },
            leader_id: v.leader_id,
            term: v.term,
            height: tip.height,
            last_block_hash: tip.last_hash,
            state_root: tip.state_root(),
            applied_index: tip.applied_index,
            commit_index: v.commit,
            ready: self.is_ready(&v, tip.applied_index),
            config_hash: in_force.hash,
            config_sequence: in_force.sequence,
            member: self.is_member(),
            voters: v.voters,
            learners: v.learners,
        }
    }

    /// Whether the configuration in force (or the join hint, while catching up) lists this
    /// node. A node that a configuration change removed stops counting for readiness.
    pub fn is_member(&self) -> bool {
        self.ledger.config().node(&self.node_name).is_some() || self.hint.read().is_some()
    }

    /// A node of the channel by Raft id: from the configuration in force, else the hint,
    /// else a removed node that Raft has not let go of yet.
    pub fn peer(&self, id: u64) -> Option<NodeRef> {
        if let Some(n) = self.ledger.config().nodes().find(|n| n.id == id) {
            return Some(n.clone());
        }
        if let Some(n) = self
            .hint
            .read()
            .as_ref()
            .and_then(|h| h.nodes().find(|n| n.id == id).cloned())
        {
            return Some(n);
        }
        let v = self.view.read();
        if !v.voters.contains(&id) && !v.learners.contains(&id) {
            return None;
        }
        self.departing.read().iter().find(|n| n.id == id).cloned()
    }

    /// Member CAs of the configuration in force and of the hint.
    pub fn member_cas(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .ledger
            .config()
            .members
            .iter()
            .map(|m| (m.name.clone(), m.ca_pem.clone()))
            .collect();
        if let Some(h) = self.hint.read().as_ref() {
            out.extend(h.members.iter().map(|m| (m.name.clone(), m.ca_pem.clone())));
        }
        out
    }

    pub fn release_leadership(&self) {
        let _ = self.input.lock().send(Input::ReleaseLeadership);
    }

    fn is_ready(&self, v: &RaftView, applied: u64) -> bool {
        if v.leader_id == 0 || applied == 0 {
            return false;
        }
        if v.role == Some(StateRole::Leader) {
            return true;
        }
        v.heard_from_leader && applied + READY_SLACK >= v.leader_commit
    }

    pub fn ready(&self) -> Result<(), String> {
        if !self.is_member() {
            return Ok(());
        }
        let v = self.view.read().clone();
        let applied = self.ledger.tip().applied_index;
        if v.leader_id == 0 {
            return Err(format!("channel {} has no leader", self.ledger.name));
        }
        if !self.is_ready(&v, applied) {
            return Err(format!(
                "channel {} is catching up: applied {} of {}",
                self.ledger.name, applied, v.leader_commit
            ));
        }
        Ok(())
    }

    pub fn leader_id(&self) -> u64 {
        self.view.read().leader_id
    }

    /// Queues a checked transaction for ordering. With `wait`, the returned receiver gets the
    /// receipt once the transaction is in a block on this node.
    pub fn submit(
        &self,
        raw: Vec<u8>,
        id: Hash,
        signature: &[u8],
        wait: bool,
    ) -> Result<Option<oneshot::Receiver<Result<Receipt, SubmitFailure>>>, SubmitFailure> {
        let now = Instant::now();
        let rx = if wait {
            let (tx, rx) = oneshot::channel();
            self.waiters.lock().entry(id).or_default().push(tx);
            Some(rx)
        } else {
            None
        };
        self.arrivals.lock().entry(id).or_insert(now);
        self.preverified
            .lock()
            .insert(id, (signature.to_vec(), now));
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.input.lock().send(Input::Submit { id, raw }).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.waiters.lock().remove(&id);
            return Err(SubmitFailure::ShuttingDown);
        }
        Ok(rx)
    }

    pub fn deliver(&self, msg: Message) {
        let _ = self.input.lock().send(Input::Raft(Box::new(msg)));
    }

    pub fn shutdown(&self) {
        let _ = self.input.lock().send(Input::Shutdown);
    }

    fn fail_waiters(&self, ids: &[Hash], why: SubmitFailure) {
        let mut w = self.waiters.lock();
        for id in ids {
            for tx in w.remove(id).unwrap_or_default() {
                let _ = tx.send(Err(why));
            }
        }
    }

    fn is_preverified(&self, id: &Hash, sig: &[u8]) -> bool {
        self.preverified
            .lock()
            .get(id)
            .is_some_and(|(s, _)| s.as_slice() == sig)
    }

    fn sweep(&self) {
        let now = Instant::now();
        self.preverified
            .lock()
            .retain(|_, (_, t)| now.duration_since(*t) < STALE);
        self.arrivals
            .lock()
            .retain(|_, t| now.duration_since(*t) < STALE);
        self.waiters.lock().retain(|_, ws| {
            ws.retain(|w| !w.is_closed());
            !ws.is_empty()
        });
    }
}

/// What the channel thread needs from the node.
pub struct Env {
    pub db: Arc<DB>,
    pub transport: Arc<Transport>,
    pub metrics: Arc<Metrics>,
    pub fsync: bool,
    /// Called after a configuration change is applied, so the node trusts the right CAs.
    pub on_config: Arc<dyn Fn() + Send + Sync>,
}

/// Starts a channel's thread. The ledger must already be open (its genesis written).
pub fn start(
    ledger: Arc<Ledger>,
    me: &NodeRef,
    hint: Option<Arc<ChannelConfig>>,
    env: Env,
) -> Result<(Arc<Channel>, std::thread::JoinHandle<()>), raft::Error> {
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
    });
    // Every node, including one that joins later, starts from the genesis voters: the log
    // holds only the changes made since, and replaying them must start where they started.
    let genesis = &ledger.genesis;
    let initial = ConfState {
        voters: genesis.consenters.iter().map(|n| n.id).collect(),
        learners: genesis.observers.iter().map(|n| n.id).collect(),
        ..ConfState::default()
    };
    let store = RaftStore::open(env.db.clone(), ledger.clone(), initial)?;
    let raft_cfg = raft::Config {
        id: node_id,
        election_tick: 10,
        heartbeat_tick: 2,
        applied: ledger.tip().applied_index,
        max_size_per_msg: 4 * 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..raft::Config::default()
    };
    let logger = slog::Logger::root(
        crate::raft_log::TracingDrain,
        slog::o!("channel" => ledger.name.clone()),
    );
    let raw = RawNode::new(&raft_cfg, store, &logger)?;
    let c = chan.clone();
    let name = format!("raft-{}", ledger.name);
    let handle = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut worker = Worker::new(c, raw, env);
            worker.run(rx);
        })
        .map_err(|e| raft::Error::Store(raft::StorageError::Other(e.into())))?;
    Ok((chan, handle))
}

struct Worker {
    chan: Arc<Channel>,
    raw: RawNode<RaftStore>,
    env: Env,
    batch: BatchConfig,
    pending: Vec<(Hash, Vec<u8>)>,
    pending_bytes: usize,
    /// Transactions this node proposed that it has not yet seen in a block, with the time of
    /// the last proposal. A proposal forwarded to a leader that dies, or dropped on the way, is
    /// lost silently; these are proposed again (a second copy is refused by id at apply).
    inflight: HashMap<Hash, (Vec<u8>, Instant)>,
    repropose: bool,
    batch_started: Option<Instant>,
    ch: String,
    last_leader: u64,
    last_sweep: Instant,
}

impl Worker {
    fn new(chan: Arc<Channel>, raw: RawNode<RaftStore>, env: Env) -> Worker {
        let ch = chan.ledger.name.clone();
        let batch = chan.ledger.config().batch.clone();
        Worker {
            chan,
            raw,
            env,
            batch,
            pending: Vec::new(),
            pending_bytes: 0,
            inflight: HashMap::new(),
            repropose: false,
            batch_started: None,
            ch,
            last_leader: 0,
            last_sweep: Instant::now(),
        }
    }

    fn run(&mut self, rx: Receiver<Input>) {
        let mut next_tick = Instant::now() + TICK;
        self.publish();
        loop {
            let batch = self.batch.clone();
            let batch_timeout = Duration::from_millis(batch.timeout_ms as u64);
            let now = Instant::now();
            let mut deadline = next_tick;
            if let Some(s) = self.batch_started {
                deadline = deadline.min(s + batch_timeout);
            }
            let first = match rx.recv_timeout(deadline.saturating_duration_since(now)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut stop = false;
            if let Some(m) = first {
                stop |= self.handle(m);
                // Take what else is queued, so one Ready covers many messages.
                for _ in 0..8192 {
                    match rx.try_recv() {
                        Ok(m) => stop |= self.handle(m),
                        Err(_) => break,
                    }
                    if self.pending.len() >= batch.max_txs as usize {
                        self.propose();
                    }
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick = now + TICK;
                self.requeue_lost(now);
                self.reconcile_membership();
            }
            // Self-clocking batches: with nothing of this node's in flight a batch goes out
            // at once (one round trip of latency at low load); otherwise it grows until the
            // size limit or the timeout, so high load makes big batches.
            if !self.pending.is_empty()
                && (self.inflight.is_empty()
                    || self.pending.len() >= batch.max_txs as usize
                    || self.pending_bytes >= batch.max_bytes as usize
                    || self.batch_started.is_some_and(|s| now >= s + batch_timeout))
            {
                self.propose();
            }
            if self.raw.has_ready() {
                if let Err(e) = self.on_ready() {
                    error!(channel = %self.ch, error = %e, "channel stopped: storage failure");
                    break;
                }
            }
            if now.duration_since(self.last_sweep) > Duration::from_secs(10) {
                self.chan.sweep();
                self.last_sweep = now;
            }
            if stop {
                break;
            }
        }
        let ids: Vec<Hash> = self.chan.waiters.lock().keys().copied().collect();
        self.chan.fail_waiters(&ids, SubmitFailure::ShuttingDown);
        info!(channel = %self.ch, "channel stopped");
    }

    /// Returns true on shutdown.
    fn handle(&mut self, m: Input) -> bool {
        match m {
            Input::Raft(msg) => {
                if msg.from == self.raw.raft.leader_id || msg.msg_type == MessageType::MsgSnapshot {
                    let mut v = self.chan.view.write();
                    match msg.msg_type {
                        MessageType::MsgAppend
                        | MessageType::MsgHeartbeat
                        | MessageType::MsgSnapshot => {
                            v.leader_commit = v.leader_commit.max(msg.commit);
                            if msg.msg_type == MessageType::MsgSnapshot {
                                v.leader_commit =
                                    v.leader_commit.max(msg.get_snapshot().get_metadata().index);
                            }
                            v.heard_from_leader = true;
                        }
                        _ => {}
                    }
                }
                let mut msg = *msg;
                self.repair_lost_log(&mut msg);
                if let Err(e) = self.raw.step(msg) {
                    tracing::debug!(channel = %self.ch, error = %e, "raft step");
                }
                false
            }
            Input::Submit { id, raw } => {
                self.chan.queued.fetch_sub(1, Ordering::Relaxed);
                if self.batch_started.is_none() {
                    self.batch_started = Some(Instant::now());
                }
                self.pending_bytes += raw.len();
                self.pending.push((id, raw));
                false
            }
            Input::ReleaseLeadership => {
                self.release_leadership();
                false
            }
            Input::Shutdown => true,
        }
    }

    /// A voter other than this node that is caught up with the log, the best one first.
    fn successor(&self, among: &BTreeSet<u64>) -> Option<u64> {
        let r = &self.raw.raft;
        let last = r.raft_log.last_index();
        r.prs()
            .iter()
            .filter(|(id, p)| {
                **id != self.chan.node_id
                    && among.contains(id)
                    && p.recent_active
                    && p.matched + READY_SLACK >= last
            })
            .max_by_key(|(id, p)| (p.matched, std::cmp::Reverse(**id)))
            .map(|(id, _)| *id)
    }

    fn release_leadership(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            return;
        }
        let voters: BTreeSet<u64> = self.raw.raft.prs().conf().voters().ids().iter().collect();
        if !self.hand_over(&voters, "handing leadership over") {
            warn!(channel = %self.ch, "no caught-up voter to hand leadership to");
        }
    }

    /// Transfers leadership to the best caught-up voter of `among`; false when there is none.
    fn hand_over(&mut self, among: &BTreeSet<u64>, why: &str) -> bool {
        let Some(to) = self.successor(among) else {
            return false;
        };
        info!(channel = %self.ch, to, "{why}");
        self.raw.transfer_leader(to);
        true
    }

    /// Brings Raft's voters and learners in line with the configuration in force, on the
    /// leader, one step per tick. New consenters join as learners and become voters once
    /// caught up, so an added node that is slow to start never weakens the quorum; a leader
    /// that the change removes hands leadership to a remaining voter, which finishes it.
    fn reconcile_membership(&mut self) {
        let r = &self.raw.raft;
        if r.state != StateRole::Leader || r.has_pending_conf() || r.lead_transferee.is_some() {
            return;
        }
        let conf = r.prs().conf().to_conf_state();
        if !conf.voters_outgoing.is_empty() {
            return; // in a joint configuration; Raft leaves it by itself
        }
        let cfg = self.chan.ledger.config();
        let want_voters: BTreeSet<u64> = cfg.consenters.iter().map(|n| n.id).collect();
        let want_learners: BTreeSet<u64> = cfg.observers.iter().map(|n| n.id).collect();
        let voters: BTreeSet<u64> = conf.voters.iter().copied().collect();
        let learners: BTreeSet<u64> = conf.learners.iter().copied().collect();
        let last = r.raft_log.last_index();
        let caught_up = |id: u64| {
            r.prs()
                .get(id)
                .is_some_and(|p| p.recent_active && p.matched + READY_SLACK >= last)
        };
        let change = |node_id: u64, change_type: ConfChangeType| ConfChangeSingle {
            change_type,
            node_id,
            ..Default::default()
        };
        let mut changes = Vec::new();
        for &id in &want_voters {
            if learners.contains(&id) && caught_up(id) {
                changes.push(change(id, ConfChangeType::AddNode));
            } else if !voters.contains(&id) && !learners.contains(&id) {
                changes.push(change(id, ConfChangeType::AddLearnerNode));
            }
        }
        for &id in &want_learners {
            if !learners.contains(&id) {
                changes.push(change(id, ConfChangeType::AddLearnerNode));
            }
        }
        for &id in voters.union(&learners) {
            if !want_voters.contains(&id) && !want_learners.contains(&id) {
                changes.push(change(id, ConfChangeType::RemoveNode));
            }
        }
        if changes.is_empty() {
            return;
        }
        let me = self.chan.node_id;
        if voters.contains(&me) && !want_voters.contains(&me) {
            let stay: BTreeSet<u64> = want_voters.intersection(&voters).copied().collect();
            // None caught up yet: the next tick tries again.
            self.hand_over(&stay, "leaving the voters: handing leadership over first");
            return;
        }
        let summary: Vec<String> = changes
            .iter()
            .map(|c| format!("{:?} {}", c.change_type, c.node_id))
            .collect();
        let cc = ConfChangeV2 {
            changes: changes.into(),
            transition: ConfChangeTransition::Auto,
            ..Default::default()
        };
        match self.raw.propose_conf_change(vec![], cc) {
            Ok(()) => {
                info!(channel = %self.ch, changes = ?summary, "proposing a Raft membership change")
            }
            Err(e) => warn!(channel = %self.ch, error = %e, "membership change not proposed"),
        }
    }

    /// A node whose data was wiped rejoins with the same Raft id and an empty log, which Raft
    /// itself assumes never happens: the leader still believes the node holds what it had
    /// acknowledged (and ignores its rejections as stale), and the node would be told to
    /// commit entries it does not have. Both sides are corrected here, so the leader probes
    /// the node again and, past the compacted log, sends it a snapshot.
    fn repair_lost_log(&mut self, msg: &mut Message) {
        match msg.msg_type {
            MessageType::MsgHeartbeat => {
                let last = self.raw.raft.raft_log.last_index();
                if msg.commit > last {
                    msg.commit = last;
                }
            }
            MessageType::MsgAppendResponse
                if msg.reject && self.raw.raft.state == StateRole::Leader =>
            {
                if let Some(pr) = self.raw.raft.mut_prs().get_mut(msg.from) {
                    if msg.reject_hint < pr.matched {
                        warn!(
                            channel = %self.ch,
                            node = msg.from,
                            had = pr.matched,
                            has = msg.reject_hint,
                            "a node lost log entries it had acknowledged (wiped?); catching it up again"
                        );
                        pr.matched = msg.reject_hint;
                        pr.become_probe();
                    }
                }
            }
            _ => {}
        }
    }

    fn propose(&mut self) {
        let txs = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.batch_started = None;
        if txs.is_empty() {
            return;
        }
        let data = tally_protocol::write_batch(
            tally_protocol::now_ms(),
            txs.iter().map(|(_, raw)| raw.as_slice()),
        );
        if self.raw.raft.leader_id == 0 || self.raw.propose(vec![], data).is_err() {
            let ids: Vec<Hash> = txs.iter().map(|(id, _)| *id).collect();
            self.chan.fail_waiters(&ids, SubmitFailure::NoLeader);
            return;
        }
        let now = Instant::now();
        for (id, raw) in txs {
            self.inflight.insert(id, (raw, now));
        }
    }

    /// Queues again what this node proposed and has not seen committed: everything after a
    /// leader change, and anything older than an election timeout otherwise.
    fn requeue_lost(&mut self, now: Instant) {
        const LOST_AFTER: Duration = Duration::from_secs(3);
        if self.raw.raft.leader_id == 0 || self.inflight.is_empty() {
            return;
        }
        let all = std::mem::take(&mut self.repropose);
        let mut again = Vec::new();
        self.inflight.retain(|id, (raw, at)| {
            let age = now.duration_since(*at);
            if age > STALE {
                return false;
            }
            if all || age > LOST_AFTER {
                again.push((*id, std::mem::take(raw)));
                return false;
            }
            true
        });
        if again.is_empty() {
            return;
        }
        tracing::debug!(channel = %self.ch, count = again.len(), "proposing again transactions not seen committed");
        if self.batch_started.is_none() {
            self.batch_started = Some(now);
        }
        for (id, raw) in again {
            self.pending_bytes += raw.len();
            self.pending.push((id, raw));
        }
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            let is_snap = m.msg_type == MessageType::MsgSnapshot;
            let Some(peer) = self.chan.peer(to) else {
                warn!(channel = %self.ch, to, "message for a node that is not in the channel");
                continue;
            };
            let bytes = match m.write_to_bytes() {
                Ok(b) => b,
                Err(e) => {
                    error!(error = %e, "cannot encode raft message");
                    continue;
                }
            };
            let ok = self
                .env
                .transport
                .send(&peer.peer_addr, frame(&self.ch, &bytes));
            if is_snap {
                self.env
                    .metrics
                    .snapshots_sent
                    .with_label_values(&[&self.ch])
                    .inc();
                let status = if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, status);
            }
            if !ok {
                self.raw.report_unreachable(to);
            }
        }
    }

    fn write(&self, wb: WriteBatch, sync: bool) -> Result<(), rocksdb::Error> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync && self.env.fsync);
        self.env.db.write_opt(wb, &opts)
    }

    fn on_ready(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            let mut v = self.chan.view.write();
            v.role = Some(ss.raft_state);
            if ss.leader_id != v.leader_id {
                v.heard_from_leader = ss.leader_id == self.chan.node_id;
                v.leader_id = ss.leader_id;
                self.repropose = ss.leader_id != 0;
            }
        }
        self.send(rd.take_messages());
        if !rd.snapshot().is_empty() {
            let mut wb = WriteBatch::default();
            self.raw.store().apply_snapshot(rd.snapshot(), &mut wb)?;
            self.write(wb, true)?;
            self.chan.ledger.after_restore()?;
            self.config_changed();
            self.env
                .metrics
                .snapshots_applied
                .with_label_values(&[&self.ch])
                .inc();
            let tip = self.chan.ledger.tip();
            info!(channel = %self.ch, height = tip.height, index = tip.applied_index, "installed snapshot");
            let _ = self.chan.blocks.send(tip.height);
        }
        self.apply(rd.take_committed_entries())?;
        let mut wb = WriteBatch::default();
        let mut persist = false;
        if !rd.entries().is_empty() {
            self.raw.store().append(rd.entries(), &mut wb)?;
            persist = true;
        }
        if let Some(hs) = rd.hs() {
            self.raw.store().set_hard_state(hs, &mut wb)?;
            persist = true;
        }
        if persist {
            let t = Instant::now();
            self.write(wb, true)?;
            self.env
                .metrics
                .fsync_seconds
                .observe(t.elapsed().as_secs_f64());
        }
        self.send(rd.take_persisted_messages());
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            let mut wb = WriteBatch::default();
            self.raw.store().set_commit(commit, &mut wb)?;
            self.write(wb, false)?;
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.maybe_compact()?;
        self.publish();
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), Box<dyn std::error::Error>> {
        for e in entries {
            match e.get_entry_type() {
                EntryType::EntryNormal if !e.data.is_empty() => self.apply_batch(&e)?,
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    let cs = if e.get_entry_type() == EntryType::EntryConfChange {
                        let cc = ConfChange::parse_from_bytes(&e.data)?;
                        self.raw.apply_conf_change(&cc)?
                    } else {
                        let cc = ConfChangeV2::parse_from_bytes(&e.data)?;
                        self.raw.apply_conf_change(&cc)?
                    };
                    let mut wb = WriteBatch::default();
                    self.raw.store().set_conf_state(&cs, &mut wb)?;
                    self.mark_applied(e.index, e.term, wb)?;
                }
                _ => self.mark_applied(e.index, e.term, WriteBatch::default())?,
            }
        }
        Ok(())
    }

    /// Records an applied entry that made no block (a leader's empty entry, a conf change).
    fn mark_applied(
        &mut self,
        index: u64,
        term: u64,
        mut wb: WriteBatch,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let mut tip = self.chan.ledger.tip();
        tip.applied_index = index;
        tip.applied_term = term;
        self.chan.ledger.write_tip(&tip, &mut wb);
        self.write(wb, false)?;
        self.chan.ledger.commit_tip(tip);
        Ok(())
    }

    fn apply_batch(&mut self, e: &Entry) -> Result<(), Box<dyn std::error::Error>> {
        let mut wb = WriteBatch::default();
        let chan = self.chan.clone();
        let pre = |id: &Hash, sig: &[u8]| chan.is_preverified(id, sig);
        let outcome = self
            .chan
            .ledger
            .apply_batch(&e.data, e.term, e.index, &pre, &mut wb)?;
        let Some((applied, tip)) = outcome else {
            warn!(channel = %self.ch, index = e.index, "skipped an entry that is not a batch");
            return self.mark_applied(e.index, e.term, wb);
        };
        self.write(wb, false)?;
        self.chan.ledger.commit_tip(tip.clone());
        if let Some(next) = applied.config.clone() {
            info!(
                channel = %self.ch,
                sequence = next.sequence,
                consenters = ?next.config.consenters.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
                observers = ?next.config.observers.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
                members = ?next.config.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
                "configuration changed"
            );
            let before = self.chan.ledger.config();
            {
                let mut departing = self.chan.departing.write();
                departing.retain(|n| next.config.node(&n.name).is_none());
                for n in before.nodes() {
                    if next.config.node(&n.name).is_none() && departing.iter().all(|d| d.id != n.id)
                    {
                        departing.push(n.clone());
                    }
                }
            }
            self.chan.ledger.install_config(next);
            self.config_changed();
        }
        let m = &self.env.metrics;
        let ch = [self.ch.as_str()];
        for x in &applied.exec {
            let l = [self.ch.as_str(), x.chaincode.as_str()];
            m.chaincode_exec_seconds
                .with_label_values(&l)
                .observe(x.seconds);
            m.chaincode_fuel_used
                .with_label_values(&l)
                .inc_by(x.fuel_used);
        }
        m.committed_blocks.with_label_values(&ch).inc();
        m.batch_size
            .with_label_values(&ch)
            .observe(applied.receipts.len() as f64);
        let mut committed = 0u64;
        let now = Instant::now();
        {
            let mut arrivals = self.chan.arrivals.lock();
            let mut pre = self.chan.preverified.lock();
            for r in &applied.receipts {
                match &r.status {
                    TxStatus::Committed => committed += 1,
                    TxStatus::Rejected { code, .. } => {
                        m.rejected_txs
                            .with_label_values(&[&self.ch, code.as_str()])
                            .inc();
                    }
                }
                self.inflight.remove(&r.tx_id);
                if let Some(t) = arrivals.remove(&r.tx_id) {
                    m.commit_latency
                        .with_label_values(&ch)
                        .observe(now.duration_since(t).as_secs_f64());
                }
                pre.remove(&r.tx_id);
            }
        }
        m.committed_txs.with_label_values(&ch).inc_by(committed);
        let mut waiters = self.chan.waiters.lock();
        if !waiters.is_empty() {
            for r in applied.receipts {
                let Some(ws) = waiters.remove(&r.tx_id) else {
                    continue;
                };
                // A replay's waiter gets the receipt of the copy that was ordered first.
                let receipt = match &r.status {
                    TxStatus::Rejected {
                        code: RejectCode::Duplicate,
                        ..
                    } => self
                        .chan
                        .ledger
                        .receipt(&r.tx_id)
                        .ok()
                        .flatten()
                        .map(|p| p.receipt)
                        .unwrap_or(r),
                    _ => r,
                };
                for w in ws {
                    let _ = w.send(Ok(receipt.clone()));
                }
            }
        }
        drop(waiters);
        let _ = self.chan.blocks.send(tip.height);
        Ok(())
    }

    /// After the configuration in force changed (a configuration block, a snapshot).
    fn config_changed(&mut self) {
        let cfg = self.chan.ledger.config();
        self.batch = cfg.batch.clone();
        if cfg.node(&self.chan.node_name).is_some() {
            self.chan.hint.write().take();
        } else if self.chan.hint.read().is_none() {
            info!(channel = %self.ch, "this node is no longer part of the channel's configuration");
        }
        (self.env.on_config)();
    }

    fn maybe_compact(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let interval = self.chan.ledger.config().snapshot_interval.max(1);
        let applied = self.chan.ledger.tip().applied_index;
        let first = self.raw.store().first_index_now();
        // Keep a tail of the log so that a follower a little behind catches up from entries.
        let keep = (interval / 2).max(1);
        if applied >= first + interval + keep {
            let mut wb = WriteBatch::default();
            if self.raw.store().compact(applied - keep, &mut wb)? {
                self.write(wb, false)?;
                self.env
                    .metrics
                    .compactions
                    .with_label_values(&[&self.ch])
                    .inc();
            }
        }
        Ok(())
    }

    /// Publishes the Raft view for readers and metrics.
    fn publish(&mut self) {
        let r = &self.raw.raft;
        let leader = r.leader_id;
        {
            let mut v = self.chan.view.write();
            v.role = Some(r.state);
            v.leader_id = leader;
            v.term = r.term;
            v.commit = r.raft_log.committed;
            if r.state == StateRole::Leader {
                v.leader_commit = r.raft_log.committed;
                v.heard_from_leader = true;
            }
            let conf = r.prs().conf();
            let mut voters: Vec<u64> = conf.voters().ids().iter().collect();
            voters.sort_unstable();
            let mut learners: Vec<u64> = conf.learners().iter().copied().collect();
            learners.sort_unstable();
            v.learner = learners.contains(&self.chan.node_id);
            v.voters = voters;
            v.learners = learners;
        }
        let m = &self.env.metrics;
        let ch = [self.ch.as_str()];
        if leader != self.last_leader {
            if leader != 0 {
                info!(channel = %self.ch, leader, term = r.term, "leader elected");
                m.leader_changes.with_label_values(&ch).inc();
            }
            self.last_leader = leader;
        }
        let tip = self.chan.ledger.tip();
        let learner = self.chan.view.read().learner;
        m.height.with_label_values(&ch).set(tip.height as i64);
        m.term.with_label_values(&ch).set(r.term as i64);
        m.role.with_label_values(&ch).set(match (learner, r.state) {
            (true, _) => 3,
            (_, StateRole::Leader) => 2,
            (_, StateRole::Candidate) | (_, StateRole::PreCandidate) => 1,
            _ => 0,
        });
        m.leader_id.with_label_values(&ch).set(leader as i64);
        m.applied_index
            .with_label_values(&ch)
            .set(tip.applied_index as i64);
        m.commit_index
            .with_label_values(&ch)
            .set(r.raft_log.committed as i64);
        m.state_root
            .with_label_values(&ch)
            .set(tip.state_root().fingerprint() as f64);
        let ready = self.chan.ready().is_ok();
        m.ready.with_label_values(&ch).set(ready as i64);
        // Raft's voters, not the configuration's consenters: while a new consenter catches up
        // as a learner, the quorum is still counted over the old voters.
        let voters = self.chan.view.read().voters.len();
        m.publish_channel(&self.ch, voters);
    }
}
