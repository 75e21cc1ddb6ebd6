//! A snapshot from a peer is pulled, verified and staged before Raft sees it.
//!
//! The Raft message is only a descriptor (`crate::snapshot_stream`). When it is ahead of what
//! this node committed, the records are pulled from the sender in chunks, each checked and
//! staged as it arrives, on a thread of its own (in line in the simulator), while the channel
//! thread goes on. Only a snapshot that passed every check is handed to Raft, whose Ready then
//! swaps the staged records in (`RaftStore::apply_snapshot`). A refused or failed pull leaves
//! the ledger and Raft state as they were and tells the sender's Raft (a rejected
//! `MsgSnapStatus`), so the leader sends a snapshot again; a leader that never hears back
//! gives up on its own after [`PATIENCE`] without a chunk served.

use super::worker::Worker;
use super::Input;
use crate::snapshot_stream::{self, Descriptor, PullError};
use raft::prelude::{Message, MessageType};
use raft::{ProgressState, SnapshotStatus};
use std::time::{Duration, Instant};
use tally_protocol::codec::Decode;
use tracing::{info, warn};

/// A follower in snapshot state whose sender served no chunk for this long is reported failed,
/// so that its leader sends a snapshot again.
pub(super) const PATIENCE: Duration = Duration::from_secs(10);

/// Where this node stands with a snapshot from a peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Pull {
    #[default]
    None,
    /// Records of build `build` are being pulled.
    Running { build: u64 },
    /// Pulled, verified and staged; handed to Raft, installed at its next Ready.
    Staged,
}

impl Worker {
    /// Whether a snapshot message may be stepped as it is: true when Raft will not install
    /// it anyway. Otherwise its pull starts here (unless one is under way) and the message
    /// comes back as [`Input::SnapshotPulled`].
    pub(super) fn snapshot_arrived(&mut self, msg: &Message) -> bool {
        let snap = msg.get_snapshot();
        let index = snap.get_metadata().index;
        // Raft ignores a snapshot that is not ahead of what this node has committed: no
        // need to pull what will not be installed.
        if index <= self.raw.raft.raft_log.committed {
            return true;
        }
        if self.pull != Pull::None {
            return false;
        }
        let desc = match Descriptor::from_bytes(&snap.data) {
            Ok(d) if d.index == index && d.term == snap.get_metadata().term => d,
            Ok(_) => {
                let e = crate::ledger::SnapshotRefused::Malformed(
                    "the descriptor names another index or term than the message".into(),
                );
                self.pull_failed(msg, &e.into());
                return false;
            }
            Err(e) => {
                let e = crate::ledger::SnapshotRefused::Malformed(format!("descriptor: {e}"));
                self.pull_failed(msg, &e.into());
                return false;
            }
        };
        let Some(peer) = self.chan.peer(msg.from) else {
            return false;
        };
        let anchors = crate::checkpoint::majority_anchors(&self.chan);
        info!(channel = %self.ch, from = msg.from, index, height = desc.height, "pulling a snapshot");
        if let Some(builds) = self.env.peers.inline_snapshots() {
            let mut source = snapshot_stream::InlineSource(builds);
            let ledger = self.chan.ledger.clone();
            let result = {
                let mut write = |wb| self.write(wb, false).map_err(|e| e.to_string());
                snapshot_stream::pull(&ledger, &desc, anchors, &mut source, &mut write)
            };
            self.snapshot_pulled(msg.clone(), result);
            return false;
        }
        let Some(mut source) = self.env.peers.snapshot_source(&peer, &self.ch) else {
            return false;
        };
        let ledger = self.chan.ledger.clone();
        let input = self.chan.input.lock().clone();
        let back = Box::new(msg.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("pull-{}", self.ch))
            .spawn(move || {
                let db = ledger.db_arc();
                let mut write = |wb| db.write(wb).map_err(|e| e.to_string());
                // A panic in the pull must still end it, or the channel would never pull again.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    snapshot_stream::pull(&ledger, &desc, anchors, &mut *source, &mut write)
                }))
                .unwrap_or_else(|_| Err(PullError::Storage("the pull panicked".into())));
                let _ = input.send(Input::SnapshotPulled { msg: back, result });
            });
        match spawned {
            Ok(_) => {
                self.pull = Pull::Running {
                    build: desc_build(&snap.data),
                }
            }
            Err(e) => warn!(channel = %self.ch, error = %e, "cannot start a snapshot pull"),
        }
        false
    }

    /// A pull ended: a verified snapshot goes to Raft, anything else is counted, logged and
    /// reported to the sender.
    pub(super) fn snapshot_pulled(
        &mut self,
        msg: Message,
        result: Result<snapshot_stream::Pulled, PullError>,
    ) {
        self.pull = Pull::None;
        match result {
            Ok(p) => {
                info!(
                    channel = %self.ch,
                    from = msg.from,
                    height = p.verified.height,
                    index = msg.get_snapshot().get_metadata().index,
                    records = p.records,
                    bytes = p.bytes,
                    anchored_at = ?p.verified.anchored_at,
                    "snapshot verified and staged: one hash chain from genesis, state matching its last header"
                );
                self.pull = Pull::Staged;
                self.step_raft(msg);
            }
            Err(e) => self.pull_failed(&msg, &e),
        }
    }

    fn pull_failed(&mut self, msg: &Message, e: &PullError) {
        warn!(
            channel = %self.ch,
            from = msg.from,
            index = msg.get_snapshot().get_metadata().index,
            reason = e.label(),
            "snapshot refused, the ledger is left as it was: {e}"
        );
        self.env
            .metrics
            .snapshots_refused
            .with_label_values(&[&self.ch, e.label()])
            .inc();
        // The sender's Raft keeps the follower in snapshot state until it hears how the
        // snapshot went.
        let status = Message {
            msg_type: MessageType::MsgSnapStatus,
            to: msg.from,
            from: self.chan.node_id,
            reject: true,
            ..Message::default()
        };
        self.send(vec![status]);
    }

    /// On the leader: a follower left in snapshot state while this node's held snapshot
    /// served nothing for [`PATIENCE`] (its pull failed and the report was lost, or it
    /// stopped) is reported failed, so that Raft sends it a snapshot again.
    pub(super) fn unstick_snapshots(&mut self, now: Instant) {
        if self.raw.raft.state != raft::StateRole::Leader {
            self.snap_sent.clear();
            return;
        }
        let in_snapshot: Vec<u64> = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(_, pr)| pr.state == ProgressState::Snapshot)
            .map(|(id, _)| *id)
            .collect();
        self.snap_sent.retain(|id, _| in_snapshot.contains(id));
        let idle = self.raw.store().snapshot_idle();
        for id in in_snapshot {
            let (since, _) = *self.snap_sent.entry(id).or_insert((now, u64::MAX));
            if now.saturating_duration_since(since) >= PATIENCE && idle >= PATIENCE {
                warn!(channel = %self.ch, to = id, "no news of a snapshot sent {PATIENCE:?} ago; sending another");
                self.raw.report_snapshot(id, SnapshotStatus::Failure);
                self.snap_sent.remove(&id);
            }
        }
    }
}

fn desc_build(data: &[u8]) -> u64 {
    Descriptor::from_bytes(data).map_or(0, |d| d.build)
}
