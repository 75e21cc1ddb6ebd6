//! The channel as the rest of the node sees it: status, membership as configured, the
//! submission queue and delivery of Raft messages to the channel's thread.

use super::{Input, READY_SLACK, STALE};
use crate::ledger::Ledger;
use parking_lot::{Mutex, RwLock};
use raft::prelude::Message;
use raft::StateRole;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;
use tally_protocol::api::{ChannelStatus, RaftRole};
use tally_protocol::{ChannelConfig, Hash, NodeRef, Receipt, TrustedCa};
use tokio::sync::{broadcast, oneshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitFailure {
    NoLeader,
    ShuttingDown,
}

pub(super) type Waiter = oneshot::Sender<Result<Receipt, SubmitFailure>>;

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
    pub(super) hint: RwLock<Option<Arc<ChannelConfig>>>,
    /// Nodes that a configuration change removed, while Raft still counts them: the change
    /// is finished (and a leaving leader hands over) by talking to them.
    pub(super) departing: RwLock<Vec<NodeRef>>,
    pub(super) input: Mutex<Sender<Input>>,
    pub(super) view: RwLock<RaftView>,
    pub blocks: broadcast::Sender<u64>,
    pub(super) waiters: Mutex<HashMap<Hash, Vec<Waiter>>>,
    /// Arrival time of transactions submitted here, for the commit latency histogram.
    pub(super) arrivals: Mutex<HashMap<Hash, Instant>>,
    /// Signatures this node checked at submission, so the apply step need not check them
    /// again. Keyed by id and compared by signature bytes: only an identical copy is skipped.
    pub(super) preverified: Mutex<HashMap<Hash, (Vec<u8>, Instant)>>,
    pub queued: AtomicUsize,
    pub queued_bytes: AtomicUsize,
    /// Signed checkpoints from peers and whether this node found itself in the minority.
    pub checkpoints: crate::checkpoint::Tracker,
    /// Why the channel's thread ended, if it died (a storage or apply error, a panic): the
    /// channel then serves nothing and the node is not ready.
    pub(super) stopped: RwLock<Option<String>>,
    /// The channel's Raft state was new (a join, a wiped volume) and this node has not caught
    /// up since: it withholds its vote (`rejoin.rs`).
    pub(super) rejoining: AtomicBool,
    /// The snapshot this node holds for peers to pull (`crate::snapshot_builder`).
    pub held: crate::snapshot_builder::Shelf,
    /// Whether the channel's Raft clock is stopped here (`quiet.rs`).
    pub(super) quiet: Mutex<super::Quiet>,
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
            degraded: self.degraded(),
            rejoining: self.rejoining.load(std::sync::atomic::Ordering::Acquire),
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

    /// A node of the channel by name, from the configuration in force or the hint.
    pub fn peer_named(&self, name: &str) -> Option<NodeRef> {
        if let Some(n) = self.ledger.config().node(name) {
            return Some(n.clone());
        }
        self.hint
            .read()
            .as_ref()
            .and_then(|h| h.node(name).cloned())
    }

    /// Member CAs of the configuration in force and of the hint (every CA of each
    /// organization, each refusing what the organization revoked in that configuration).
    pub fn member_cas(&self) -> Vec<TrustedCa> {
        let config = self.ledger.config();
        let hint = self.hint.read().clone();
        config
            .members
            .iter()
            .chain(hint.iter().flat_map(|h| h.members.iter()))
            // Both configurations were validated; a member that does not parse is left out.
            .flat_map(|m| m.trusted().unwrap_or_default())
            .collect()
    }

    pub fn release_leadership(&self) {
        let _ = self.input.lock().send(Input::ReleaseLeadership);
    }

    pub(super) fn is_ready(&self, v: &RaftView, applied: u64) -> bool {
        if v.leader_id == 0 || applied == 0 {
            return false;
        }
        if v.role == Some(StateRole::Leader) {
            return true;
        }
        v.heard_from_leader && applied + READY_SLACK >= v.leader_commit
    }

    /// Why this node does not serve the channel's reads and writes, if it does not: its
    /// ledger differs from the channel's (see [`crate::checkpoint`]) or its thread died.
    pub fn degraded(&self) -> Option<tally_protocol::api::Degraded> {
        if let Some(d) = self.checkpoints.degraded() {
            return Some(d);
        }
        self.stopped
            .read()
            .as_ref()
            .map(|why| tally_protocol::api::Degraded {
                first_differing_height: 0,
                reason: format!("the channel's thread stopped: {why}"),
            })
    }

    pub(super) fn set_stopped(&self, why: String) {
        *self.stopped.write() = Some(why);
    }

    pub fn ready(&self) -> Result<(), String> {
        if let Some(d) = self.degraded() {
            return Err(format!(
                "channel {} is degraded: {} (first differing height {})",
                self.ledger.name, d.reason, d.first_differing_height
            ));
        }
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
        let bytes = raw.len();
        self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        if self.input.lock().send(Input::Submit { id, raw }).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.waiters.lock().remove(&id);
            return Err(SubmitFailure::ShuttingDown);
        }
        Ok(rx)
    }

    /// The channel's quiet state on this node.
    pub fn quiet(&self) -> super::Quiet {
        *self.quiet.lock()
    }

    /// This node announced the leader's channel as quiet: the leader may stop its clock.
    pub fn quiet_announced(&self, term: u64, commit: u64) {
        let _ = self.input.lock().send(Input::Quiet {
            term,
            commit,
            leader: None,
        });
    }

    /// The leader `leader` listed the channel as quiet at `term` and `commit`. A follower
    /// already quiet under it notes the time and stays asleep; any other is told to go quiet.
    pub fn quiet_heard(&self, leader: u64, term: u64, commit: u64, now: Instant) {
        {
            let mut q = self.quiet.lock();
            if let super::Quiet::Following {
                term: t,
                leader: l,
                heard,
            } = &mut *q
            {
                if *t == term && *l == leader {
                    *heard = now;
                    return;
                }
            }
            if q.is_quiet() {
                return;
            }
        }
        let _ = self.input.lock().send(Input::Quiet {
            term,
            commit,
            leader: Some(leader),
        });
    }

    /// Wakes the channel's node `to` (a leader that believes this node asleep under it).
    pub fn poke(&self, to: u64) {
        let _ = self.input.lock().send(Input::Poke { to });
    }

    /// What this node lists for the channel to its peers: `(term, commit)` while it leads the
    /// channel quietly or offers to, and whether it only offers (then, once listed, it is told
    /// through [`Channel::quiet_announced`]).
    pub fn listing(&self) -> Option<(u64, u64, bool)> {
        match *self.quiet.lock() {
            super::Quiet::Idle { term, commit } => Some((term, commit, true)),
            super::Quiet::Leading { term, commit } => Some((term, commit, false)),
            _ => None,
        }
    }

    /// Node `from` (admitted as that channel node by the caller) listed the channel as led
    /// quietly by it: a follower of it in that term goes (or stays) quiet; any other node pokes
    /// it awake, since it does not follow it (it knows no leader yet, another one, or a newer
    /// term) and would otherwise wait for a heartbeat or, rejoining, forever.
    pub fn listed_by(&self, from: u64, term: u64, commit: u64, now: Instant) {
        let (leader, my_term) = {
            let v = self.view.read();
            (v.leader_id, v.term)
        };
        if leader == from && my_term == term {
            self.quiet_heard(from, term, commit, now);
        } else {
            self.poke(from);
        }
    }

    /// Wakes a quiet follower whose leader has not listed the channel since `before`.
    pub fn wake_if_unheard(&self, before: Instant) {
        let mut q = self.quiet.lock();
        if matches!(*q, super::Quiet::Following { heard, .. } if heard < before) {
            *q = super::Quiet::Awake;
            drop(q);
            let _ = self.input.lock().send(Input::Wake);
        }
    }

    pub fn deliver(&self, msg: Message) {
        let _ = self.input.lock().send(Input::Raft(Box::new(msg)));
    }

    pub fn shutdown(&self) {
        let _ = self.input.lock().send(Input::Shutdown);
    }

    pub(super) fn fail_waiters(&self, ids: &[Hash], why: SubmitFailure) {
        let mut w = self.waiters.lock();
        for id in ids {
            for tx in w.remove(id).unwrap_or_default() {
                let _ = tx.send(Err(why));
            }
        }
    }

    /// Records a signature as checked, as a submission through this node does: the simulator
    /// tells every node of the signatures it made itself, which it would otherwise have each
    /// node verify again (a large share of a simulated run).
    #[cfg(any(test, feature = "sim"))]
    pub fn mark_preverified(&self, id: Hash, signature: &[u8]) {
        self.preverified
            .lock()
            .insert(id, (signature.to_vec(), Instant::now()));
    }

    pub(super) fn is_preverified(&self, id: &Hash, sig: &[u8]) -> bool {
        self.preverified
            .lock()
            .get(id)
            .is_some_and(|(s, _)| s.as_slice() == sig)
    }

    pub(super) fn sweep(&self) {
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
