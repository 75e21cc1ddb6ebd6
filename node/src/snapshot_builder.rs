//! Raft snapshots built off the channel's thread.
//!
//! Raft asks its storage for a snapshot on the channel's thread, in the middle of a Ready; a
//! dump of the whole ledger there would stall ordering for as long as the dump takes. Instead
//! the first request starts a build on a thread of its own, from one RocksDB snapshot (so
//! the ledger records, the tip, the Raft index and the configuration state are of one
//! instant), and Raft is told the snapshot is temporarily unavailable; it asks again with its
//! next append to the node, and gets the built one. A build is reused while it is still
//! recent enough (at or past the log's first index), so a node that refuses it and asks again
//! costs no new dump, and dropped [`KEEP`] after it was built (a node serving many channels
//! does not hold one snapshot per channel). At most [`MAX_BUILDS`] builds run at once on a
//! node, over all its channels.

use crate::keys;
use crate::ledger::Ledger;
use bytes::Bytes;
use parking_lot::Mutex;
use protobuf::Message as _;
use raft::prelude::ConfState;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long a built snapshot is kept for more requests.
pub const KEEP: Duration = Duration::from_secs(60);
/// Snapshot builds running at once on this node.
pub const MAX_BUILDS: usize = 2;
static BUILDS: AtomicUsize = AtomicUsize::new(0);

/// A snapshot ready to send: the ledger's records at `index`.
pub struct Built {
    pub built_at: Instant,
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
    pub data: Bytes,
}

#[derive(Default)]
enum Slot {
    #[default]
    Idle,
    Building,
    Ready(Arc<Built>),
}

pub struct Builder {
    ledger: Arc<Ledger>,
    slot: Arc<Mutex<Slot>>,
}

/// Gives the build permit back when a build ends, however it ends.
struct Permit;
impl Drop for Permit {
    fn drop(&mut self) {
        BUILDS.fetch_sub(1, Ordering::AcqRel);
    }
}

fn permit() -> Option<Permit> {
    BUILDS
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_BUILDS).then_some(n + 1)
        })
        .ok()
        .map(|_| Permit)
}

impl Builder {
    pub fn new(ledger: Arc<Ledger>) -> Builder {
        Builder {
            ledger,
            slot: Arc::new(Mutex::new(Slot::Idle)),
        }
    }

    /// Drops a built snapshot kept longer than [`KEEP`].
    pub fn expire(&self) {
        let mut slot = self.slot.lock();
        if matches!(&*slot, Slot::Ready(b) if b.built_at.elapsed() > KEEP) {
            *slot = Slot::Idle;
        }
    }

    /// The built snapshot if there is one at `floor` or later; otherwise starts a build
    /// (unless one runs, or the node's builds are all taken) and returns None.
    pub fn get(&self, floor: u64) -> Option<Arc<Built>> {
        let mut slot = self.slot.lock();
        match &*slot {
            Slot::Ready(b) if b.index >= floor => return Some(b.clone()),
            Slot::Building => return None,
            _ => {}
        }
        let permit = permit()?;
        *slot = Slot::Building;
        let ledger = self.ledger.clone();
        let out = self.slot.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("snapshot-{}", ledger.name))
            .spawn(move || {
                let _permit = permit;
                let result = build(&ledger);
                let mut slot = out.lock();
                *slot = match result {
                    Ok(b) => {
                        info!(channel = %ledger.name, index = b.index, bytes = b.data.len(), "snapshot built");
                        Slot::Ready(Arc::new(b))
                    }
                    Err(e) => {
                        warn!(channel = %ledger.name, error = %e, "snapshot build failed; retried on the next request");
                        Slot::Idle
                    }
                };
            });
        if let Err(e) = spawned {
            warn!(channel = %self.ledger.name, error = %e, "cannot start a snapshot build");
            *slot = Slot::Idle;
        }
        None
    }
}

fn build(ledger: &Ledger) -> Result<Built, Box<dyn std::error::Error + Send + Sync>> {
    let snap = ledger.db().snapshot();
    let (data, tip) = ledger.dump_at(&snap)?;
    let keys = keys::Keys::new(&ledger.name);
    let conf_state = match snap.get(keys.kind(keys::CONF_STATE))? {
        Some(b) => ConfState::parse_from_bytes(&b)?,
        None => return Err("no Raft configuration state".into()),
    };
    Ok(Built {
        built_at: Instant::now(),
        index: tip.applied_index,
        term: tip.applied_term,
        conf_state,
        data: crate::ledger::forge_snapshot(data).into(),
    })
}
