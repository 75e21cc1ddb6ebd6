//! What the channel tells the outside: its Raft view for status and readiness, metrics, and
//! applied blocks to waiting submitters and block subscribers.

use super::Worker;
use crate::ledger::Applied;
use raft::StateRole;
use std::time::Instant;
use tally_protocol::{Hash, RejectCode, TxStatus};
use tracing::info;

impl Worker {
    /// Tells everyone who waits on an applied block: metrics, submitters waiting for their
    /// receipts, and block subscribers.
    pub(super) fn publish_block(&mut self, applied: Applied, height: u64) {
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
        let _ = self.chan.blocks.send(height);
    }

    /// Publishes the Raft view for readers and metrics.
    pub(super) fn publish(&mut self) {
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
        let degraded = self.chan.degraded();
        let gauges = Gauges {
            height: tip.height,
            term: r.term,
            role: match (learner, r.state) {
                (true, _) => 3,
                (_, StateRole::Leader) => 2,
                (_, StateRole::Candidate) | (_, StateRole::PreCandidate) => 1,
                _ => 0,
            },
            leader,
            applied: tip.applied_index,
            commit: r.raft_log.committed,
            last_hash: tip.last_hash,
            degraded: degraded.map(|d| d.first_differing_height),
            ready: self.chan.ready().is_ok(),
            // Raft's voters, not the configuration's consenters: while a new consenter
            // catches up as a learner, the quorum is still counted over the old voters.
            voters: self.chan.view.read().voters.len(),
        };
        // Most Readies change none of these; looking each series up by its labels again
        // cost more than the rest of the Ready in the channel simulator.
        if self.published.as_ref() == Some(&gauges) {
            return;
        }
        m.height.with_label_values(&ch).set(gauges.height as i64);
        m.term.with_label_values(&ch).set(gauges.term as i64);
        m.role.with_label_values(&ch).set(gauges.role);
        m.leader_id.with_label_values(&ch).set(leader as i64);
        m.applied_index
            .with_label_values(&ch)
            .set(gauges.applied as i64);
        m.commit_index
            .with_label_values(&ch)
            .set(gauges.commit as i64);
        m.state_root
            .with_label_values(&ch)
            .set(tip.state_root().fingerprint() as f64);
        m.degraded
            .with_label_values(&ch)
            .set(gauges.degraded.is_some() as i64);
        m.first_differing_height
            .with_label_values(&ch)
            .set(gauges.degraded.unwrap_or(0) as i64);
        m.ready.with_label_values(&ch).set(gauges.ready as i64);
        m.publish_channel(&self.ch, gauges.voters);
        self.published = Some(gauges);
    }
}

/// What [`Worker::publish`] last exported, to skip exporting it again unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Gauges {
    height: u64,
    term: u64,
    role: i64,
    leader: u64,
    applied: u64,
    commit: u64,
    /// Stands for the state root: the same block, the same state.
    last_hash: Hash,
    degraded: Option<u64>,
    ready: bool,
    voters: usize,
}
