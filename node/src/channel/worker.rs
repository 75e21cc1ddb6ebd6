//! The channel's thread: waits for input or the next tick, steps Raft, and handles each
//! Ready in raft-rs's order.

use super::batching::Proposed;
use super::handle::{Channel, SubmitFailure};
use super::{Cut, CutOff, Env, Input, TICK};
use crate::raft_store::RaftStore;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType};
use raft::{RawNode, SnapshotStatus};
use rocksdb::{WriteBatch, WriteOptions};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_protocol::{BatchConfig, Hash};
use tracing::{error, info, warn};

/// How often the channel's thread clears what waiters and arrivals time left behind.
const SWEEP: Duration = Duration::from_secs(10);

pub(crate) struct Worker {
    pub(super) chan: Arc<Channel>,
    pub(super) raw: RawNode<RaftStore>,
    pub(super) env: Env,
    pub(super) batch: BatchConfig,
    pub(super) pending: Vec<(Hash, Vec<u8>)>,
    pub(super) pending_bytes: usize,
    /// Transactions this node proposed that it has not yet seen in a block (ordered by id, so
    /// that what is proposed again goes out in the same order on every run).
    pub(super) inflight: BTreeMap<Hash, Proposed>,
    pub(super) batch_started: Option<Instant>,
    pub(super) ch: String,
    pub(super) last_leader: u64,
    pub(super) last_sweep: Instant,
    /// Leaders caught stamping blocks ahead of this node's clock, ignored until the instant.
    pub(super) shunned: HashMap<u64, Instant>,
    /// When this node last handed leadership over because its clock is behind the ledger.
    pub(super) last_clock_release: Option<Instant>,
    /// The term this node leads in and for how many ticks it has led in it.
    pub(super) led: Option<(u64, u64)>,
    /// Per configuration sequence in force, the change that added this node
    /// (`step_aside.rs`).
    pub(super) added: Option<(u64, Option<super::step_aside::Added>)>,
    /// The gauges last exported (`publishing.rs`).
    pub(super) published: Option<super::publishing::Gauges>,
    /// While rejoining: the commit index of the first leader heard from (`rejoin.rs`).
    pub(super) rejoin_target: Option<u64>,
    /// A snapshot from a peer being pulled or staged (`snapshot_pull.rs`).
    pub(super) pull: super::snapshot_pull::Pull,
    /// On the leader: followers sent a snapshot, since when, and its Raft index.
    pub(super) snap_sent: HashMap<u64, (Instant, u64)>,
    /// The simulator cut this node off at a write: every later write fails too.
    pub(super) cut: std::cell::Cell<bool>,
    /// Whether the Raft clock is stopped (`quiet.rs`).
    pub(super) quiet: bool,
    /// Woken from quiet by the last input: the loop ticks at once.
    pub(super) woke: bool,
    /// On the leader: consecutive ticks it was idle, and when each follower last answered.
    pub(super) idle_ticks: u32,
    pub(super) answered: HashMap<u64, Instant>,
}

impl Worker {
    pub(super) fn new(chan: Arc<Channel>, raw: RawNode<RaftStore>, env: Env) -> Worker {
        let ch = chan.ledger.name.clone();
        let batch = chan.ledger.config().batch.clone();
        let last_sweep = env.clock.now();
        let mut w = Worker {
            chan,
            raw,
            env,
            batch,
            pending: Vec::new(),
            pending_bytes: 0,
            inflight: BTreeMap::new(),
            batch_started: None,
            ch,
            last_leader: 0,
            last_sweep,
            shunned: HashMap::new(),
            last_clock_release: None,
            led: None,
            added: None,
            published: None,
            rejoin_target: None,
            pull: Default::default(),
            snap_sent: HashMap::new(),
            cut: std::cell::Cell::new(false),
            quiet: false,
            woke: false,
            idle_ticks: 0,
            answered: HashMap::new(),
        };
        w.load_rejoining();
        w
    }

    /// The production loop: waits for input until the next tick or batch deadline, then
    /// takes a [`Worker::turn`].
    pub(super) fn run(&mut self, rx: Receiver<Input>) {
        let mut next_tick = self.env.clock.now() + TICK;
        self.publish();
        loop {
            let now = self.env.clock.now();
            // A quiet channel waits for input alone (and wakes for its sweep).
            let mut deadline = if self.quiet { now + SWEEP } else { next_tick };
            if let Some(s) = self.batch_started {
                deadline = deadline.min(s + self.batch_timeout());
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
                    if self.pending.len() >= self.batch.max_txs as usize
                        || self.pending_bytes >= self.batch.max_bytes as usize
                    {
                        self.propose();
                    }
                }
            }
            let now = self.env.clock.now();
            if std::mem::take(&mut self.woke) {
                // The clock starts with a tick, which checks what a quiet channel did not.
                next_tick = now;
            }
            let tick = now >= next_tick;
            if tick {
                next_tick = now + TICK;
            }
            if let Err(e) = self.turn(tick) {
                error!(channel = %self.ch, error = %e, "channel stopped: storage or apply failure");
                self.chan.set_stopped(e.to_string());
                break;
            }
            if now.duration_since(self.last_sweep) > SWEEP {
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

    fn batch_timeout(&self) -> Duration {
        Duration::from_millis(self.batch.timeout_ms as u64)
    }

    /// What follows handled input, in production and in the simulator alike: a Raft tick
    /// (when `tick`), a proposal when a batch is due, and the handling of Raft's Ready.
    pub(crate) fn turn(&mut self, tick: bool) -> Result<(), Box<dyn std::error::Error>> {
        let mut result = self.turn_inner(tick);
        // A staged snapshot that this turn's Ready did not install, Raft declined (it was no
        // longer ahead, or came from an old term): its records are dropped now rather than
        // left on disk until the next pull.
        if self.pull == super::snapshot_pull::Pull::Staged {
            self.pull = super::snapshot_pull::Pull::None;
            if result.is_ok() {
                let mut wb = WriteBatch::default();
                self.chan.ledger.clear_staging(&mut wb);
                result = self.write(wb, false);
            }
        }
        if self.cut.get() {
            return Err(CutOff.into());
        }
        result
    }

    fn turn_inner(&mut self, tick: bool) -> Result<(), Box<dyn std::error::Error>> {
        let now = self.env.clock.now();
        if tick && !self.quiet {
            self.unstick_snapshots(now);
            if self.may_tick() {
                self.raw.tick();
            }
            self.check_own_clock(now);
            self.requeue_lost(now);
            self.reconcile_membership();
            self.step_aside_for_laggards();
            self.count_idle(now);
        }
        // Self-clocking batches: with nothing of this node's in flight a batch goes out
        // at once (one round trip of latency at low load); otherwise it grows until the
        // size limit or the timeout, so high load makes big batches.
        if !self.pending.is_empty()
            && (self.inflight.is_empty()
                || self.pending.len() >= self.batch.max_txs as usize
                || self.pending_bytes >= self.batch.max_bytes as usize
                || self
                    .batch_started
                    .is_some_and(|s| now >= s + self.batch_timeout()))
        {
            self.propose();
        }
        if self.raw.has_ready() {
            self.on_ready()?;
        }
        Ok(())
    }

    /// Returns true on shutdown.
    pub(crate) fn handle(&mut self, m: Input) -> bool {
        self.woke |= self.wake_for(&m);
        match m {
            Input::Raft(msg) => {
                if msg.msg_type == MessageType::MsgSnapshot && !self.snapshot_arrived(&msg) {
                    return false;
                }
                self.step_raft(*msg);
                false
            }
            Input::SnapshotPulled { msg, result } => {
                self.snapshot_pulled(*msg, result);
                false
            }
            Input::Submit { id, raw } => {
                self.chan.queued.fetch_sub(1, Ordering::Relaxed);
                self.chan
                    .queued_bytes
                    .fetch_sub(raw.len(), Ordering::Relaxed);
                if self.batch_started.is_none() {
                    self.batch_started = Some(self.env.clock.now());
                }
                self.pending_bytes += raw.len();
                self.pending.push((id, raw));
                false
            }
            Input::ReleaseLeadership => {
                self.release_leadership();
                false
            }
            Input::Quiet {
                term,
                commit,
                leader,
            } => {
                self.go_quiet(term, commit, leader);
                false
            }
            // Woken already (`wake_for`).
            Input::Wake => false,
            Input::Poke { to } => {
                self.poke(to);
                false
            }
            Input::Shutdown => true,
        }
    }

    /// Steps Raft with a peer's message (a snapshot's only once it is staged).
    pub(super) fn step_raft(&mut self, mut msg: Message) {
        // Clamped first, so that a commit index beyond the log reaches neither Raft nor the
        // readiness view.
        if self.refused_for_clock(&msg) || self.withholds(&msg) {
            return;
        }
        self.stamp_forwarded(&mut msg);
        self.repair_lost_log(&mut msg);
        self.note_answer(&msg);
        if msg.from == self.raw.raft.leader_id || msg.msg_type == MessageType::MsgSnapshot {
            let mut v = self.chan.view.write();
            match msg.msg_type {
                MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot => {
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
        if let Err(e) = self.raw.step(msg) {
            tracing::debug!(channel = %self.ch, error = %e, "raft step");
        }
    }

    pub(super) fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            let is_snap = m.msg_type == MessageType::MsgSnapshot;
            let Some(peer) = self.chan.peer(to) else {
                warn!(channel = %self.ch, to, "message for a node that is not in the channel");
                continue;
            };
            let ok = self.env.peers.send(&peer, &self.ch, &m);
            if is_snap {
                self.env
                    .metrics
                    .snapshots_sent
                    .with_label_values(&[&self.ch])
                    .inc();
                // Sent, the follower pulls the records and Raft hears how it went from the
                // follower's response (or its rejected MsgSnapStatus, or `unstick_snapshots`).
                if ok {
                    let index = m.get_snapshot().get_metadata().index;
                    self.snap_sent.insert(to, (self.env.clock.now(), index));
                } else {
                    self.raw.report_snapshot(to, SnapshotStatus::Failure);
                }
            }
            if !ok {
                self.raw.report_unreachable(to);
            }
        }
    }

    pub(super) fn write(
        &self,
        wb: WriteBatch,
        sync: bool,
    ) -> Result<(), Box<dyn std::error::Error>> {
        if self.cut.get() {
            return Err(CutOff.into());
        }
        let cut = self
            .env
            .writes
            .as_ref()
            .map_or(Cut::None, |w| w.on_write(&wb, sync));
        if cut == Cut::Before {
            self.cut.set(true);
            return Err(CutOff.into());
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync && self.env.fsync);
        self.env.db.write_opt(wb, &opts)?;
        if cut == Cut::After {
            self.cut.set(true);
            return Err(CutOff.into());
        }
        Ok(())
    }

    pub(super) fn on_ready(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            let mut v = self.chan.view.write();
            v.role = Some(ss.raft_state);
            if ss.leader_id != v.leader_id {
                v.heard_from_leader = ss.leader_id == self.chan.node_id;
                v.leader_id = ss.leader_id;
            }
        }
        self.send(rd.take_messages());
        if !rd.snapshot().is_empty() {
            let mut write = |wb, sync| self.write(wb, sync).map_err(|e| e.to_string());
            let moved = self.raw.store().apply_snapshot(rd.snapshot(), &mut write)?;
            self.pull = super::snapshot_pull::Pull::None;
            self.chan.ledger.after_restore()?;
            self.config_changed();
            self.env
                .metrics
                .snapshots_applied
                .with_label_values(&[&self.ch])
                .inc();
            let tip = self.chan.ledger.tip();
            info!(channel = %self.ch, height = tip.height, index = tip.applied_index, records = moved, "installed snapshot");
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

    pub(super) fn apply(&mut self, entries: Vec<Entry>) -> Result<(), Box<dyn std::error::Error>> {
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
    pub(super) fn mark_applied(
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

    pub(super) fn apply_batch(&mut self, e: &Entry) -> Result<(), Box<dyn std::error::Error>> {
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
        if let Some(r) = applied.retired {
            info!(channel = %self.ch, block = r.block, proposal = %r.proposal, "channel retired: no new transactions from here on");
            self.chan.ledger.install_retirement(r);
        }
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
        self.publish_block(applied, tip.height);
        Ok(())
    }

    /// After the configuration in force changed (a configuration block, a snapshot).
    pub(super) fn config_changed(&mut self) {
        let cfg = self.chan.ledger.config();
        self.batch = cfg.batch.clone();
        if cfg.node(&self.chan.node_name).is_some() {
            self.chan.hint.write().take();
        } else if self.chan.hint.read().is_none() {
            info!(channel = %self.ch, "this node is no longer part of the channel's configuration");
        }
        (self.env.on_config)();
    }

    pub(super) fn maybe_compact(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let interval = self.chan.ledger.config().snapshot_interval.max(1);
        let applied = self.chan.ledger.tip().applied_index;
        let first = self.raw.store().first_index_now();
        // Keep a tail of the log so that a follower a little behind catches up from entries.
        let keep = (interval / 2).max(1);
        // A follower pulling a snapshot needs the entries after it once it is installed: the
        // log is kept from there while one was sent and not settled, or while peers pull it.
        let pulled = self
            .snap_sent
            .values()
            .map(|(_, i)| *i)
            .chain(self.raw.store().pulled_snapshot_index())
            .min();
        let upto = (applied - keep.min(applied)).min(pulled.unwrap_or(u64::MAX));
        if applied >= first + interval + keep && upto >= first {
            let mut wb = WriteBatch::default();
            if self.raw.store().compact(upto, &mut wb)? {
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
}
