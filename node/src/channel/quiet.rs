//! Quiet channels: a channel with nothing to do stops its Raft clock on every node, so that
//! many idle channels on one node cost next to nothing (no thread waking ten times a second,
//! no heartbeat every 200 ms per follower).
//!
//! Raft's safety does not rest on the clock, only its liveness does, so stopping the clock is
//! safe as long as something still notices a dead leader. That is the node, not the channel:
//! every [`crate::quiescence::PERIOD`] a node sends each peer one frame listing the channels it
//! leads quietly (one frame per pair of nodes, whatever the number of channels), and a quiet
//! follower whose leader stopped listing it wakes up, pokes the leader, and runs its election
//! clock again from an already expired timeout.
//!
//! How a channel goes quiet, as TiKV's hibernating regions and CockroachDB's quiescent ranges
//! do, in two steps:
//!
//! 1. The leader, after [`IDLE_TICKS`] ticks in which every follower had acknowledged its whole
//!    log and answered recently and nothing was pending, says it is idle
//!    ([`Quiet::Idle`]). It still ticks and heartbeats.
//! 2. The node's next announcement lists the channel to every peer, then tells the leader,
//!    which stops its clock if it is still idle in the same term. A follower that receives
//!    the listing stops its clock if it follows that leader in that term and has the same
//!    log, fully committed and applied.
//!
//! Any input wakes a quiet channel (a Raft message, a submission, a snapshot, a request to hand
//! leadership over), and a follower woken by anything but its leader pokes the leader (a
//! heartbeat response, which Raft takes as a sign of life and nothing more), so that a leader
//! never stays quiet while one of its followers counts down to an election.

use super::{Input, Worker};
use raft::prelude::{Message, MessageType};
use raft::StateRole;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tracing::debug;

/// Ticks a leader stays idle before it offers to go quiet: long enough for every follower to
/// have heard the commit index in a heartbeat.
pub const IDLE_TICKS: u32 = 20;
/// A follower that answered the leader within this time counts as present.
const ANSWERED_WITHIN: Duration = Duration::from_secs(1);

/// A channel's quiet state as the node sees it (the worker writes it, the node's announcer
/// reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quiet {
    #[default]
    Awake,
    /// The leader is idle and offers to go quiet at `term` with the log committed at `commit`.
    Idle { term: u64, commit: u64 },
    /// The leader's clock is stopped.
    Leading { term: u64, commit: u64 },
    /// The follower's clock is stopped; `heard` is when its leader last listed the channel.
    Following {
        term: u64,
        leader: u64,
        heard: Instant,
    },
}

impl Quiet {
    /// Whether the channel's Raft clock is stopped on this node.
    pub fn is_quiet(&self) -> bool {
        matches!(self, Quiet::Leading { .. } | Quiet::Following { .. })
    }
}

impl Worker {
    /// Notes a follower's answer to this leader, for [`Worker::leader_idle`].
    pub(super) fn note_answer(&mut self, msg: &Message) {
        if matches!(
            msg.msg_type,
            MessageType::MsgHeartbeatResponse | MessageType::MsgAppendResponse
        ) {
            self.answered.insert(msg.from, self.env.clock.now());
        }
    }

    /// Nothing queued, proposed, pulled or unapplied on this node, and no trouble with a peer.
    fn settled(&self) -> bool {
        let r = &self.raw.raft;
        let last = r.raft_log.last_index();
        r.raft_log.committed == last
            && r.raft_log.applied == last
            && self.pending.is_empty()
            && self.inflight.is_empty()
            && self.pull == super::snapshot_pull::Pull::None
            && self.snap_sent.is_empty()
            && self.shunned.is_empty()
            && !self.rejoining()
            && self.chan.departing.read().is_empty()
            && self.chan.stopped.read().is_none()
    }

    /// On the leader: settled, Raft's members as configured, and every member has the whole
    /// log and answered lately.
    fn leader_idle(&self, now: Instant) -> bool {
        let r = &self.raw.raft;
        if r.state != StateRole::Leader
            || r.lead_transferee.is_some()
            || r.has_pending_conf()
            || r.pending_read_count() > 0
            || !self.settled()
        {
            return false;
        }
        let conf = r.prs().conf().to_conf_state();
        let cfg = self.chan.ledger.config();
        let ids = |v: &[u64]| v.iter().copied().collect::<BTreeSet<u64>>();
        let want_voters: BTreeSet<u64> = cfg.consenters.iter().map(|n| n.id).collect();
        let want_learners: BTreeSet<u64> = cfg.observers.iter().map(|n| n.id).collect();
        if !conf.voters_outgoing.is_empty()
            || ids(&conf.voters) != want_voters
            || ids(&conf.learners) != want_learners
        {
            return false;
        }
        let last = r.raft_log.last_index();
        let me = self.chan.node_id;
        r.prs().iter().all(|(id, p)| {
            *id == me
                || (p.matched == last
                    && self
                        .answered
                        .get(id)
                        .is_some_and(|t| now.duration_since(*t) < ANSWERED_WITHIN))
        })
    }

    /// Each tick: counts the leader's idle ticks and offers to go quiet after [`IDLE_TICKS`].
    pub(super) fn count_idle(&mut self, now: Instant) {
        if !self.env.quiesce {
            return;
        }
        if self.leader_idle(now) {
            self.idle_ticks = self.idle_ticks.saturating_add(1);
        } else {
            self.idle_ticks = 0;
        }
        let r = &self.raw.raft;
        let mut shared = self.chan.quiet.lock();
        if self.idle_ticks >= IDLE_TICKS {
            if *shared == Quiet::Awake {
                *shared = Quiet::Idle {
                    term: r.term,
                    commit: r.raft_log.committed,
                };
            }
        } else if matches!(*shared, Quiet::Idle { .. }) {
            *shared = Quiet::Awake;
        }
    }

    /// The node announced this leader's channel as quiet (`leader` None), or this follower's
    /// leader did (`leader` Some): stops the clock if the channel is still where it was.
    pub(super) fn go_quiet(&mut self, term: u64, commit: u64, leader: Option<u64>) {
        if !self.env.quiesce || self.quiet {
            return;
        }
        let now = self.env.clock.now();
        let r = &self.raw.raft;
        let same = r.term == term && r.raft_log.committed == commit;
        let next = match leader {
            None if same && self.idle_ticks >= IDLE_TICKS && self.leader_idle(now) => {
                Quiet::Leading { term, commit }
            }
            Some(leader)
                if same
                    && r.state == StateRole::Follower
                    && r.leader_id == leader
                    && r.raft_log.last_index() == commit
                    && self.settled() =>
            {
                Quiet::Following {
                    term,
                    leader,
                    heard: now,
                }
            }
            _ => {
                debug!(channel = %self.ch, term, commit, ?leader, "not going quiet: the channel moved on");
                return;
            }
        };
        *self.chan.quiet.lock() = next;
        self.quiet = true;
        self.env.metrics.quiet.with_label_values(&[&self.ch]).set(1);
    }

    /// Before any input but a quiet announcement: a quiet channel starts its clock again. A
    /// follower woken by anything but its leader's message pokes the leader; one whose
    /// leader went silent (`Input::Wake`) counts its election timeout as already run out.
    /// Returns whether the channel was quiet.
    pub(super) fn wake_for(&mut self, input: &Input) -> bool {
        if !self.quiet || matches!(input, Input::Quiet { .. }) {
            return false;
        }
        self.quiet = false;
        self.idle_ticks = 0;
        *self.chan.quiet.lock() = Quiet::Awake;
        self.env.metrics.quiet.with_label_values(&[&self.ch]).set(0);
        let r = &mut self.raw.raft;
        let leader = r.leader_id;
        if r.state != StateRole::Follower || leader == 0 {
            return true;
        }
        let from_leader = matches!(input, Input::Raft(m) if m.from == leader);
        if from_leader {
            return true;
        }
        if matches!(input, Input::Wake) {
            r.election_elapsed = r.election_timeout();
        }
        debug!(channel = %self.ch, leader, "woken: poking the leader");
        self.poke(leader);
        true
    }

    /// Sends `to` a heartbeat response: Raft takes it as a sign of life and nothing more, and
    /// any message wakes a quiet channel.
    pub(super) fn poke(&mut self, to: u64) {
        let r = &self.raw.raft;
        let poke = Message {
            msg_type: MessageType::MsgHeartbeatResponse,
            to,
            from: self.chan.node_id,
            term: r.term,
            commit: r.raft_log.committed,
            ..Default::default()
        };
        self.send(vec![poke]);
    }
}
