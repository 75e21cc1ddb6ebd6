//! Leaving a channel: an admin of the node's organization asks the node to stop serving a
//! channel and delete its data. Allowed only once the channel's configuration no longer
//! lists the node (an approved membership change removed it) or the channel was retired by
//! an approved proposal; otherwise the node would silently drop out of a quorum it still
//! counts for, or lose the only copy of a live ledger.
//!
//! The deletion is one RocksDB write batch (a range tombstone over every key of the channel
//! plus the node-wide records that make the node resume it), so a crash leaves either the
//! whole channel or none of it.

use crate::keys::{self, Keys};
use crate::ledger::Ledger;
use crate::node::Node;
use serde::Serialize;
use std::sync::OnceLock;
use tally_protocol::retirement::Retirement;
use tally_protocol::{ChannelConfig, Decode};
use thiserror::Error;
use tracing::info;

/// Test-only: `before` aborts the process after the channel's worker stopped and before its
/// data is deleted, `after` right after the deletion is written (debug builds only).
pub const CRASH_IN_LEAVE_VAR: &str = "TALLY_TEST_ONLY_CRASH_IN_LEAVE";

#[derive(Debug, Error)]
pub enum LeaveError {
    #[error("this node does not hold channel {0}")]
    NotFound(String),
    #[error("node {node} is still a {role} of channel {channel} in configuration {sequence}; an approved configuration change removing it (or a retirement of the channel) must apply first")]
    StillListed {
        node: String,
        channel: String,
        role: &'static str,
        sequence: u64,
    },
    #[error("storage: {0}")]
    Storage(String),
}

/// What leaving did.
#[derive(Debug, Serialize)]
pub struct Left {
    pub channel: String,
    /// Height of the ledger deleted.
    pub height: u64,
    /// Set when the channel had been retired (rather than the node removed from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired: Option<Retirement>,
}

fn storage(e: impl std::fmt::Display) -> LeaveError {
    LeaveError::Storage(e.to_string())
}

fn crash_point(at: &str) {
    static MODE: OnceLock<Option<String>> = OnceLock::new();
    let mode = MODE.get_or_init(|| {
        let raw = std::env::var(CRASH_IN_LEAVE_VAR).ok()?;
        if !cfg!(debug_assertions) {
            tracing::error!(
                variable = CRASH_IN_LEAVE_VAR,
                "ignored: test hooks exist only in debug builds"
            );
            return None;
        }
        Some(raw.trim().to_string())
    });
    if mode.as_deref() == Some(at) {
        tracing::error!(
            variable = CRASH_IN_LEAVE_VAR,
            at,
            "TEST BUILD: aborting while leaving a channel"
        );
        std::process::abort();
    }
}

impl Node {
    /// Refuses while the configuration `ledger` has applied lists this node and the channel
    /// is not retired.
    fn may_leave(&self, ledger: &Ledger, channel: &str) -> Result<(), LeaveError> {
        if ledger.retired().is_some() {
            return Ok(());
        }
        let in_force = ledger.in_force();
        let listed = |nodes: &[tally_protocol::NodeRef]| nodes.iter().any(|n| n.name == self.name);
        let role = if listed(&in_force.config.consenters) {
            "consenter"
        } else if listed(&in_force.config.observers) {
            "observer"
        } else {
            return Ok(());
        };
        Err(LeaveError::StillListed {
            node: self.name.clone(),
            channel: channel.to_string(),
            role,
            sequence: in_force.sequence,
        })
    }

    /// Stops serving `channel` and deletes its data, if the node may leave it.
    pub fn leave(&self, channel: &str) -> Result<Left, LeaveError> {
        let _g = self.join_lock.lock();
        let running = self.channel(channel);
        // A node that a configuration change took out is not resumed at start, but its data
        // stays: read the ledger from disk then.
        let ledger = match &running {
            Some(ch) => ch.ledger.clone(),
            None => {
                let Some(genesis) = self.db.get(keys::joined(channel)).map_err(storage)? else {
                    return Err(LeaveError::NotFound(channel.to_string()));
                };
                let genesis = ChannelConfig::from_bytes(&genesis).map_err(storage)?;
                std::sync::Arc::new(
                    Ledger::open(self.db.clone(), genesis, self.engine.clone()).map_err(storage)?,
                )
            }
        };
        self.may_leave(&ledger, channel)?;
        if let Some(ch) = running {
            self.channels.write().remove(channel);
            ch.shutdown();
            let thread = format!("raft-{channel}");
            let handle = {
                let mut threads = self.threads.lock();
                threads
                    .iter()
                    .position(|t| t.thread().name() == Some(thread.as_str()))
                    .map(|i| threads.swap_remove(i))
            };
            // Nothing of the channel may be written after its deletion.
            if let Some(h) = handle {
                let _ = h.join();
            }
            // A block applied between the check and the stop may have listed this node again:
            // then it stays, and serves the channel as before.
            if let Err(e) = self.may_leave(&ledger, channel) {
                let hint = match self.db.get(keys::join_hint(channel)).map_err(storage)? {
                    Some(b) => Some(ChannelConfig::from_bytes(&b).map_err(storage)?),
                    None => None,
                };
                if let Err(why) = self.start_channel((*ledger.genesis).clone(), hint) {
                    return Err(storage(format!(
                        "{e}; starting the channel again failed: {why}"
                    )));
                }
                return Err(e);
            }
        }
        let height = ledger.tip().height;
        let retired = ledger.retired();
        crash_point("before");
        let k = Keys::new(channel);
        let start = k.kind(0);
        let prefix = &start[..start.len() - 1];
        let end = keys::prefix_end(prefix).ok_or_else(|| storage("channel prefix has no end"))?;
        let mut wb = rocksdb::WriteBatch::default();
        wb.delete_range(prefix, &end);
        wb.delete(keys::joined(channel));
        wb.delete(keys::rejoining(channel));
        wb.delete(keys::join_hint(channel));
        wb.delete(keys::genesis_approvals(channel));
        wb.delete(keys::restored(channel));
        wb.delete(keys::frozen(channel));
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(wb, &opts).map_err(storage)?;
        crash_point("after");
        // Space comes back when compaction drops the covered records; ask for it now.
        self.db.compact_range(Some(prefix), Some(end.as_slice()));
        self.metrics.forget_channel(channel);
        if let Err(e) = self.refresh_trust() {
            tracing::warn!(error = %e, "peer trust not updated after leaving a channel");
        }
        info!(
            channel,
            height,
            retired = retired.is_some(),
            "left the channel and deleted its data"
        );
        Ok(Left {
            channel: channel.to_string(),
            height,
            retired,
        })
    }
}
