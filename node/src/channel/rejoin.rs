//! A node whose Raft state for a channel is new — a first join, a wiped volume, a restore —
//! does not know what it voted for or acknowledged before. If it voted at once, a wiped voter
//! and one lagging node could elect the lagging one, which lacks blocks the channel committed
//! (they were on the leader and on the wiped node's lost log), and a restarted node could vote
//! twice in one term. So such a node *withholds its vote*: it grants no vote or pre-vote,
//! takes no leadership transfer and never campaigns, until one of:
//!
//! - **caught up**: it heard from a leader, and has applied that leader's commit index as it
//!   stood then, so its log holds every block committed before it may vote again;
//! - **founding**: every other consenter has reported, in a signed checkpoint, the same tip
//!   (height and last block hash) as this node's — the channel is being created and all its
//!   consenters hold the genesis block only, or every node of the channel was restored from
//!   one backup after a disaster. Nobody holds a block this node lacks, so its vote cannot
//!   help elect a leader that lacks a committed block.
//!
//! A node restored from a backup (`crate::backup::restore`) must also show that its ledger is
//! the channel's chain before it votes: the restore leaves a marker with the backup's height,
//! and the node stays out of elections until the consenters' signed checkpoints at that
//! height or above carry its own block hash (enough of them to make a majority with it; the
//! block hashes chain, so agreement above the backup's height is agreement at it). A majority
//! signing another block there is a backup of another chain (of a channel of the same name
//! and genesis that went another way, or an old incarnation): the node then refuses the
//! channel, degraded with a message that says so, and never votes.
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
        // First, and on every tick: a restored ledger found to be another chain is refused as
        // soon as the checkpoints show it, caught up or not.
        let chain_ok = self.restored_chain_confirmed();
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
                "every other consenter reports this node's tip: the channel is new, or was restored whole from one backup".to_string()
            }
            _ => return,
        };
        if !chain_ok {
            return;
        }
        if let Err(e) = self.env.db.delete(crate::keys::rejoining(&self.ch)) {
            warn!(channel = %self.ch, error = %e, "cannot record that this node caught up; it stays out of elections");
            return;
        }
        self.chan.rejoining.store(false, Ordering::Release);
        info!(channel = %self.ch, "caught up ({why}): this node votes again");
    }

    /// Every other consenter's latest checkpoint reports this node's own tip: the same height
    /// and the same last block hash.
    fn founding(&self) -> bool {
        let own = self.chan.ledger.tip();
        let tips = self.chan.checkpoints.peer_tip_values();
        let config = self.chan.ledger.config();
        config
            .consenters
            .iter()
            .filter(|n| n.id != self.chan.node_id)
            .all(|n| tips.get(&n.name) == Some(&(own.height, own.last_hash)))
    }

    /// True unless this node was restored from a backup and its chain is not yet known to be
    /// the channel's. A chain found to differ degrades the channel, once, with the reason.
    fn restored_chain_confirmed(&mut self) -> bool {
        let key = crate::keys::restored(&self.ch);
        let marker = match self.env.db.get(&key) {
            Ok(Some(v)) => v,
            Ok(None) => return true,
            Err(e) => {
                warn!(channel = %self.ch, error = %e, "cannot read the restore marker; staying out of elections");
                return false;
            }
        };
        let Some((height, hash)) = crate::backup::restore::parse_restored_marker(&marker) else {
            warn!(channel = %self.ch, "unreadable restore marker; staying out of elections");
            return false;
        };
        use crate::checkpoint::ChainCheck;
        match crate::checkpoint::check_chain_from(&self.chan, height) {
            ChainCheck::Confirmed(at) => {
                if let Err(e) = self.env.db.delete(&key) {
                    warn!(channel = %self.ch, error = %e, "cannot clear the restore marker");
                    return false;
                }
                info!(channel = %self.ch, backup_height = height, confirmed_at = at, "the restored ledger is the channel's chain: the consenters signed this node's block at height {at}");
                true
            }
            ChainCheck::Differs { height: at, others } => {
                let reason = format!(
                    "this node was restored from a backup (height {height}, last block {hash}) that is not the channel's chain: at height {at} {others} consenters signed another block; restore from a backup of this channel's chain"
                );
                if self.chan.checkpoints.degrade(crate::checkpoint::Degraded {
                    first_differing_height: at.min(height),
                    reason: reason.clone(),
                }) {
                    tracing::error!(channel = %self.ch, "restored ledger refused, not voting or serving: {reason}");
                }
                false
            }
            ChainCheck::Unknown => false,
        }
    }
}
