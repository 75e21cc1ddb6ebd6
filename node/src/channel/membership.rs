//! Raft membership on the leader: voters and learners brought in line with the configuration
//! in force, leadership handed over, and nodes that lost their log caught up again.

use super::{Worker, READY_SLACK};
use raft::prelude::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, Message, MessageType,
};
use raft::StateRole;
use std::collections::BTreeSet;
use tracing::{info, warn};

impl Worker {
    /// A voter other than this node that is caught up with the log, the best one first.
    pub(super) fn successor(&self, among: &BTreeSet<u64>) -> Option<u64> {
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

    pub(super) fn release_leadership(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            return;
        }
        let voters: BTreeSet<u64> = self.raw.raft.prs().conf().voters().ids().iter().collect();
        if !self.hand_over(&voters, "handing leadership over") {
            warn!(channel = %self.ch, "no caught-up voter to hand leadership to");
        }
    }

    /// Transfers leadership to the best caught-up voter of `among`; false when there is none.
    pub(super) fn hand_over(&mut self, among: &BTreeSet<u64>, why: &str) -> bool {
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
    pub(super) fn reconcile_membership(&mut self) {
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
    pub(super) fn repair_lost_log(&mut self, msg: &mut Message) {
        match msg.msg_type {
            MessageType::MsgHeartbeat => {
                let last = self.raw.raft.raft_log.last_index();
                if msg.commit > last {
                    msg.commit = last;
                    // A leader names at most what this node acknowledged: this node lost it.
                    // On an idle (or quiet) channel no append would come to be rejected, so
                    // the rejection that makes the leader probe is sent now.
                    let lost = Message {
                        msg_type: MessageType::MsgAppendResponse,
                        to: msg.from,
                        from: self.chan.node_id,
                        term: msg.term,
                        reject: true,
                        index: last,
                        reject_hint: last,
                        ..Default::default()
                    };
                    self.send(vec![lost]);
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
}
