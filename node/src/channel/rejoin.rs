//! A node whose Raft state for a channel is new — a first join, a wiped volume, a restore —
//! does not know what it voted for or acknowledged before. If it voted at once, a wiped voter
//! and one lagging node could elect the lagging one, which lacks blocks the channel committed
//! (they were on the leader and on the wiped node's lost log), and a restarted node could vote
//! twice in one term. So such a node *withholds its vote*: it grants no vote or pre-vote,
//! takes no leadership transfer and never campaigns, until one of:
//!
//! - **caught up**: it heard from a leader, and has applied that leader's commit index as it
//!   stood then, so its log holds every block committed before it may vote again;
//! - **founding**: its ledger holds only the genesis block and every other consenter has
//!   reported, in a signed checkpoint, that its ledger does too — the channel is being
//!   created and all its consenters are fresh.
//!
//! The state is kept on disk (`keys::rejoining`), written with the join and deleted when it
//! ends, so a node restarted before catching up still withholds its vote. etcd reaches the
//! same end by adding a replaced member under a new id as a learner; Tally's Raft ids are
//! fixed by the channel configuration, so the node itself stays out of elections instead.

use super::worker::Worker;
use raft::prelude::{Message, MessageType};
use raft::StateRole;
use std::sync::atomic::Ordering;
use tracing::{debug, info, warn};

impl Worker {
    /// Whether the channel's Raft state was new at this start and has not caught up since.
    pub(super) fn load_rejoining(&mut self) {
        let key = crate::keys::rejoining(&self.ch);
        let on = matches!(self.env.db.get(&key), Ok(Some(_)));
        self.chan.rejoining.store(on, Ordering::Release);
        if on {
            info!(channel = %self.ch, "new Raft state: withholding this node's vote until it has caught up with a leader");
        }
    }

    pub(super) fn rejoining(&self) -> bool {
        self.chan.rejoining.load(Ordering::Acquire)
    }

    /// True when `msg` asks for what a rejoining node must not give: a vote, a pre-vote, or
    /// leadership. It is dropped, and counted.
    pub(super) fn withholds(&self, msg: &Message) -> bool {
        if !self.rejoining() {
            return false;
        }
        let asks = matches!(
            msg.msg_type,
            MessageType::MsgRequestVote
                | MessageType::MsgRequestPreVote
                | MessageType::MsgTimeoutNow
        );
        if asks {
            debug!(channel = %self.ch, from = msg.from, kind = ?msg.msg_type, "vote withheld: this node has not caught up since its Raft state was new");
            self.env
                .metrics
                .votes_withheld
                .with_label_values(&[&self.ch])
                .inc();
        }
        asks
    }

    /// Whether Raft may tick: a rejoining node never reaches an election timeout, so it never
    /// campaigns.
    pub(super) fn may_tick(&mut self) -> bool {
        if !self.rejoining() {
            return true;
        }
        self.check_rejoined();
        !self.rejoining() || self.raw.raft.state == StateRole::Leader
    }

    fn check_rejoined(&mut self) {
        let (heard, leader_commit) = {
            let v = self.chan.view.read();
            (v.heard_from_leader, v.leader_commit)
        };
        if heard && self.rejoin_target.is_none() {
            self.rejoin_target = Some(leader_commit);
        }
        let applied = self.raw.raft.raft_log.applied;
        let why = match self.rejoin_target {
            Some(target) if applied >= target => {
                format!("applied index {applied} reached the leader's commit index {target}")
            }
            _ if self.founding() => {
                "every consenter reports the genesis block only: the channel is new".to_string()
            }
            _ => return,
        };
        if let Err(e) = self.env.db.delete(crate::keys::rejoining(&self.ch)) {
            warn!(channel = %self.ch, error = %e, "cannot record that this node caught up; it stays out of elections");
            return;
        }
        self.chan.rejoining.store(false, Ordering::Release);
        info!(channel = %self.ch, "caught up ({why}): this node votes again");
    }

    /// Every other consenter has reported a checkpoint, none above this node's height, and
    /// this node holds the genesis block only.
    fn founding(&self) -> bool {
        let own = self.chan.ledger.tip().height;
        if own > 1 {
            return false;
        }
        let tips = self.chan.checkpoints.peer_tips();
        let config = self.chan.ledger.config();
        config
            .consenters
            .iter()
            .filter(|n| n.id != self.chan.node_id)
            .all(|n| tips.get(&n.name).is_some_and(|h| *h <= own))
    }
}
