//! Submissions grouped into batches and proposed, and proposals lost on the way proposed
//! again.

use super::handle::SubmitFailure;
use super::{Worker, STALE};
use raft::prelude::EntryType;
use raft::GetEntriesContext;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tally_protocol::Hash;
use tally_protocol::RawBatch;

impl Worker {
    pub(super) fn propose(&mut self) {
        let txs = self.take_batch();
        if txs.is_empty() {
            return;
        }
        let data = tally_protocol::write_batch(
            self.env.clock.wall_ms(),
            txs.iter().map(|(_, raw)| raw.as_slice()),
        );
        if self.raw.raft.leader_id == 0 || self.raw.propose(vec![], data).is_err() {
            let ids: Vec<Hash> = txs.iter().map(|(id, _)| *id).collect();
            self.chan.fail_waiters(&ids, SubmitFailure::NoLeader);
            return;
        }
        let now = self.env.clock.now();
        let term = self.raw.raft.term;
        for (id, raw) in txs {
            self.inflight.insert(id, Proposed { raw, at: now, term });
        }
    }

    /// The next batch from the front of the pending queue: at most the channel's count and
    /// bytes (one transaction at least, which `max_tx_bytes <= batch.max_bytes` keeps within
    /// bounds), so a block always fits a peer frame however much piled up. What remains
    /// starts the next batch at once.
    fn take_batch(&mut self) -> Vec<(Hash, Vec<u8>)> {
        let max_txs = (self.batch.max_txs as usize).max(1);
        let max_bytes = self.batch.max_bytes as usize;
        let mut bytes = 0usize;
        let mut n = 0;
        for (_, raw) in &self.pending {
            if n == max_txs || (n > 0 && bytes + raw.len() > max_bytes) {
                break;
            }
            bytes += raw.len();
            n += 1;
        }
        let rest = self.pending.split_off(n);
        let txs = std::mem::replace(&mut self.pending, rest);
        self.pending_bytes = self.pending_bytes.saturating_sub(bytes);
        self.batch_started = if self.pending.is_empty() {
            None
        } else {
            Some(self.env.clock.now())
        };
        txs
    }

    /// Queues again what this node proposed and is certainly lost, so that a submission is
    /// ordered once. A forward dropped on the way or a leader that died with it loses a
    /// proposal silently; but a proposal merely not applied *yet* must not be proposed again
    /// (the copy would be ordered too, and refused as a duplicate in a block of its own).
    ///
    /// A proposal is lost when it is neither in a block nor in this node's unapplied log, and
    /// either it was made in an earlier term and this node has applied an entry of the current
    /// term (every entry of an earlier term that can still commit precedes that entry, so it
    /// is applied by then), or it is older than [`LOST_AFTER`] (a forward lost without a
    /// leader change).
    pub(super) fn requeue_lost(&mut self, now: Instant) {
        if self.raw.raft.leader_id == 0 || self.inflight.is_empty() {
            return;
        }
        let term = self.raw.raft.term;
        let settled = self.chan.ledger.tip().applied_term == term;
        let due: Vec<Hash> = self
            .inflight
            .iter()
            .filter(|(_, p)| (p.term < term && settled) || now.duration_since(p.at) > LOST_AFTER)
            .map(|(id, _)| *id)
            .collect();
        if due.is_empty() {
            return;
        }
        let in_log = self.unapplied_ids();
        let mut again = Vec::new();
        for id in due {
            if in_log.contains(&id) {
                // On its way to a block: looked at again only after another LOST_AFTER (or a
                // leader change), not on every tick.
                if let Some(p) = self.inflight.get_mut(&id) {
                    p.at = now;
                }
                continue;
            }
            let Some(p) = self.inflight.remove(&id) else {
                continue;
            };
            // Ordered after all (its block arrived in a snapshot), or given up on.
            if now.duration_since(p.at) > STALE
                || self.chan.ledger.tx_location(&id).ok().flatten().is_some()
            {
                continue;
            }
            again.push((id, p.raw));
        }
        if again.is_empty() {
            return;
        }
        tracing::debug!(channel = %self.ch, count = again.len(), "proposing again transactions lost on the way");
        if self.batch_started.is_none() {
            self.batch_started = Some(now);
        }
        for (id, raw) in again {
            self.pending_bytes += raw.len();
            self.pending.push((id, raw));
        }
    }

    /// Ids of the transactions in this node's log that are not applied yet.
    fn unapplied_ids(&self) -> HashSet<Hash> {
        let log = &self.raw.raft.raft_log;
        let mut ids = HashSet::new();
        if log.last_index() <= log.applied {
            return ids;
        }
        let Ok(entries) = log.entries(log.applied + 1, None, GetEntriesContext::empty(false))
        else {
            return ids;
        };
        for e in entries {
            if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
                continue;
            }
            if let Ok(batch) = RawBatch::parse(&e.data) {
                ids.extend(batch.txs.iter().map(|t| t.id));
            }
        }
        ids
    }
}

/// A proposal of this node not seen in a block yet.
pub(super) struct Proposed {
    pub(super) raw: Vec<u8>,
    pub(super) at: Instant,
    /// The Raft term when it was proposed.
    pub(super) term: u64,
}

/// How long a proposal may stay out of this node's log and blocks before it counts as lost
/// without a leader change.
const LOST_AFTER: Duration = Duration::from_secs(3);
