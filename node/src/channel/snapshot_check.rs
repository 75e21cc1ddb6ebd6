//! A snapshot from a peer is verified before Raft sees it: a refused one is dropped, so the
//! node's ledger and Raft state stay as they were, and the leader (this one or the next)
//! sends another when its next append finds the node still behind.

use super::worker::Worker;
use raft::prelude::Message;
use tracing::{info, warn};

impl Worker {
    /// Whether the snapshot `msg` carries may be handed to Raft.
    pub(super) fn snapshot_verified(&mut self, msg: &Message) -> bool {
        let snap = msg.get_snapshot();
        let index = snap.get_metadata().index;
        // Raft ignores a snapshot that is not ahead of what this node has committed: no
        // need to check what will not be installed.
        if index <= self.raw.raft.raft_log.committed {
            return true;
        }
        let anchors = crate::checkpoint::majority_anchors(&self.chan);
        match self
            .chan
            .ledger
            .verify_snapshot(&snap.data, index, &anchors)
        {
            Ok(v) => {
                info!(
                    channel = %self.ch,
                    from = msg.from,
                    height = v.height,
                    index,
                    bytes = snap.data.len(),
                    anchored_at = ?v.anchored_at,
                    "snapshot verified: one hash chain from genesis, state matching its last header"
                );
                true
            }
            Err(e) => {
                warn!(
                    channel = %self.ch,
                    from = msg.from,
                    index,
                    reason = e.label(),
                    "snapshot refused, the ledger is left as it was: {e}"
                );
                self.env
                    .metrics
                    .snapshots_refused
                    .with_label_values(&[&self.ch, e.label()])
                    .inc();
                false
            }
        }
    }
}
