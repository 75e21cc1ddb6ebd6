//! What one node's clock may do to a channel, and what the others do about it.
//!
//! Block time is the leader's: the leader stamps every batch it orders with its own clock,
//! its own proposals and those its followers forward alike (a follower's stamp is replaced).
//! Apply then bounds the step deterministically (`ledger::block_time`). What apply cannot use
//! is any node's own clock, since every node must reach the same verdict; so the clock check
//! gates replication instead:
//!
//! - A follower does not accept (append, acknowledge) a leader's entries stamped more than
//!   [`TOLERANCE_MS`] ahead of its own clock. It then ignores that leader (appends,
//!   heartbeats, snapshots and its vote requests) for [`SHUN`]: its election timer runs out,
//!   the correct nodes elect one of themselves (PreVote and check-quorum keep a lone node
//!   from disrupting), and the fast node's uncommitted entries are overwritten. A fast
//!   leader therefore gets nothing committed while a majority of clocks is right.
//! - A leader whose clock is more than [`TOLERANCE_MS`] behind the last block's time knows
//!   its clock is wrong (that time was accepted by a majority) and hands leadership over:
//!   stamping the old time would freeze block time and age every new transaction out.

use super::Worker;
use bytes::Bytes;
use raft::prelude::{EntryType, Message, MessageType};
use raft::StateRole;
use std::time::{Duration, Instant};
use tracing::warn;

/// How far ahead of a follower's clock a leader's block time may be.
pub const TOLERANCE_MS: u64 = 30_000;
/// How long a follower ignores a leader it caught stamping the future.
pub const SHUN: Duration = Duration::from_secs(60);
/// How often a leader with a clock behind the ledger tries to hand leadership over.
const RELEASE_EVERY: Duration = Duration::from_secs(5);

/// Where a batch's timestamp sits: after its format byte.
const TS_AT: usize = 1;
const BATCH_FORMAT: u8 = 1;

/// The leader's stamp on a batch entry, if the entry is one.
fn batch_time(data: &[u8]) -> Option<u64> {
    if data.first() != Some(&BATCH_FORMAT) {
        return None;
    }
    let b: [u8; 8] = data.get(TS_AT..TS_AT + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

fn restamp(data: &Bytes, ts: u64) -> Option<Bytes> {
    batch_time(data)?;
    let mut v = data.to_vec();
    v[TS_AT..TS_AT + 8].copy_from_slice(&ts.to_be_bytes());
    Some(Bytes::from(v))
}

impl Worker {
    /// On the leader: a follower's forwarded batches take the leader's time.
    pub(super) fn stamp_forwarded(&self, msg: &mut Message) {
        if msg.msg_type != MessageType::MsgPropose || self.raw.raft.state != StateRole::Leader {
            return;
        }
        let now = self.env.clock.wall_ms();
        for e in msg.mut_entries().iter_mut() {
            if e.get_entry_type() != EntryType::EntryNormal {
                continue;
            }
            if let Some(d) = restamp(&e.data, now) {
                e.data = d;
            }
        }
    }

    /// On a follower: true when `msg` is to be dropped because its sender's clock is ahead
    /// (now, or recently).
    pub(super) fn refused_for_clock(&mut self, msg: &Message) -> bool {
        let now = self.env.clock.now();
        if let Some(&until) = self.shunned.get(&msg.from) {
            if now < until {
                return matches!(
                    msg.msg_type,
                    MessageType::MsgAppend
                        | MessageType::MsgHeartbeat
                        | MessageType::MsgSnapshot
                        | MessageType::MsgRequestVote
                        | MessageType::MsgRequestPreVote
                        | MessageType::MsgTimeoutNow
                );
            }
            self.shunned.remove(&msg.from);
        }
        if msg.msg_type != MessageType::MsgAppend {
            return false;
        }
        let wall = self.env.clock.wall_ms();
        let ahead = msg
            .entries
            .iter()
            .filter(|e| e.get_entry_type() == EntryType::EntryNormal)
            .filter_map(|e| batch_time(&e.data))
            .max()
            .filter(|&t| t > wall.saturating_add(TOLERANCE_MS));
        let Some(t) = ahead else {
            return false;
        };
        warn!(
            channel = %self.ch,
            leader = msg.from,
            ahead_s = (t - wall) / 1000,
            tolerance_s = TOLERANCE_MS / 1000,
            ignore_s = SHUN.as_secs(),
            "the leader stamps blocks ahead of this node's clock: not accepting its entries and \
             ignoring it so that the channel elects another leader (check the clocks)"
        );
        self.shunned.insert(msg.from, now + SHUN);
        true
    }

    /// On the leader: hands leadership over when this node's clock is behind the ledger's.
    pub(super) fn check_own_clock(&mut self, now: Instant) {
        if self.raw.raft.state != StateRole::Leader
            || self.raw.raft.lead_transferee.is_some()
            || self
                .last_clock_release
                .is_some_and(|t| now.duration_since(t) < RELEASE_EVERY)
        {
            return;
        }
        let wall = self.env.clock.wall_ms();
        let ledger = self.chan.ledger.tip().timestamp_ms;
        if wall.saturating_add(TOLERANCE_MS) >= ledger {
            return;
        }
        self.last_clock_release = Some(now);
        warn!(
            channel = %self.ch,
            behind_s = (ledger - wall) / 1000,
            "this node's clock is behind the last block's time: handing leadership over (check the clock)"
        );
        self.release_leadership();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_restamped_in_place() {
        let data = Bytes::from(tally_protocol::write_batch(
            7,
            [b"x".as_slice()].into_iter(),
        ));
        assert_eq!(batch_time(&data), Some(7));
        let again = restamp(&data, 99).unwrap();
        assert_eq!(batch_time(&again), Some(99));
        assert_eq!(again[TS_AT + 8..], data[TS_AT + 8..]);
        assert!(restamp(&Bytes::from_static(b"\x02rest-of-it"), 1).is_none());
        assert!(batch_time(b"\x01short").is_none());
    }
}
