//! Raft snapshots held off the channel's thread and served in chunks.
//!
//! Raft asks its storage for a snapshot on the channel's thread, in the middle of a Ready; a
//! dump of the whole ledger there would stall ordering for as long as the dump takes. Instead
//! the first request starts a *held build* on a thread of its own: it takes one RocksDB
//! snapshot (so the ledger records, the tip, the Raft index and the configuration state are of
//! one instant while the channel keeps writing; it costs no pass over the ledger, so a build is
//! ready before the log moves past it) and then serves chunk requests from it (`crate::snapshot_stream`) until nobody asked for [`IDLE`]. Raft is told
//! the snapshot is temporarily unavailable until the build is ready, and then sends a small
//! descriptor naming it; the receiver pulls the records. A build is reused while it is still
//! recent enough (at or past the log's first index), so a node that refuses it and asks again
//! costs no new build. At most [`MAX_BUILDS`] builds are held at once on a node, over all
//! its channels, which bounds the streams it serves.

use crate::keys::{self, LEDGER_KINDS};
use crate::ledger::Ledger;
use crate::snapshot_stream::{self, Chunk, Descriptor};
use parking_lot::Mutex;
use protobuf::Message as _;
use raft::prelude::ConfState;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_protocol::codec::Encode;
use tracing::{info, warn};

/// A held build nobody pulled from for this long is dropped.
pub const IDLE: Duration = Duration::from_secs(30);
/// Snapshot builds held at once on this node.
pub const MAX_BUILDS: usize = 2;
static BUILDS: AtomicUsize = AtomicUsize::new(0);

/// A chunk request to a held build, with where its answer goes (None: no answer).
type Request = (Vec<u8>, SyncSender<Option<Vec<u8>>>);

/// A snapshot ready to be pulled.
pub struct Held {
    pub descriptor: Descriptor,
    pub conf_state: ConfState,
    requests: SyncSender<Request>,
    last_served: Mutex<Instant>,
}

impl Held {
    pub fn index(&self) -> u64 {
        self.descriptor.index
    }
}

#[derive(Default)]
pub enum Slot {
    #[default]
    Idle,
    Building,
    Ready(Arc<Held>),
}

/// The channel's held build, shared by Raft's storage (which starts builds) and the peer
/// port (which serves chunks of it).
pub type Shelf = Arc<Mutex<Slot>>;

pub struct Builder {
    ledger: Arc<Ledger>,
    slot: Shelf,
}

/// Gives the build permit back when a held build ends, however it ends.
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

/// A build id no other build of this process or its peers is likely to have had.
fn build_id(channel: &str, index: u64) -> u64 {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let mut h = Sha256::new();
    h.update(channel.as_bytes());
    h.update(index.to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    h.update((SEQ.fetch_add(1, Ordering::Relaxed) as u64).to_be_bytes());
    h.update(crate::wall_clock::now_ms().to_be_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().unwrap_or([0; 8]))
}

impl Builder {
    pub fn new(ledger: Arc<Ledger>, slot: Shelf) -> Builder {
        Builder { ledger, slot }
    }

    /// How long the held build has gone without serving a chunk (zero while one is being
    /// built; `Duration::MAX` when none is held).
    pub fn idle_for(&self) -> Duration {
        match &*self.slot.lock() {
            Slot::Idle => Duration::MAX,
            Slot::Building => Duration::ZERO,
            Slot::Ready(h) => h.last_served.lock().elapsed(),
        }
    }

    /// The Raft index of the held build while peers are pulling it (a chunk served within
    /// [`IDLE`]).
    pub fn pulled_index(&self) -> Option<u64> {
        match &*self.slot.lock() {
            Slot::Ready(h) if h.last_served.lock().elapsed() < IDLE => Some(h.index()),
            _ => None,
        }
    }

    /// The held build if there is one at `floor` or later; otherwise starts a build (unless
    /// one runs, or the node's builds are all taken) and returns None.
    pub fn get(&self, floor: u64) -> Option<Arc<Held>> {
        let mut slot = self.slot.lock();
        match &*slot {
            Slot::Ready(b) if b.index() >= floor => return Some(b.clone()),
            Slot::Building => return None,
            _ => {}
        }
        let permit = permit()?;
        // A build being replaced stops serving once its last requester is done.
        *slot = Slot::Building;
        let ledger = self.ledger.clone();
        let out = self.slot.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("snapshot-{}", ledger.name))
            .spawn(move || {
                let _permit = permit;
                if let Err(e) = hold(&ledger, &out) {
                    warn!(channel = %ledger.name, error = %e, "snapshot build failed; retried on the next request");
                    let mut slot = out.lock();
                    if matches!(&*slot, Slot::Building) {
                        *slot = Slot::Idle;
                    }
                }
            });
        if let Err(e) = spawned {
            warn!(channel = %self.ledger.name, error = %e, "cannot start a snapshot build");
            *slot = Slot::Idle;
        }
        None
    }
}

/// Serves a peer's chunk request from the channel's held build: the encoded response, or
/// None when there is nothing to say (a malformed request; a test build that stalls).
pub fn serve(shelf: &Shelf, request: &[u8]) -> Option<Vec<u8>> {
    let (build, after) = snapshot_stream::decode_request(request).ok()?;
    let held = match &*shelf.lock() {
        Slot::Ready(h) if h.descriptor.build == build => h.clone(),
        _ => return Some(Chunk::Gone.to_bytes()),
    };
    let (tx, rx) = sync_channel(1);
    if held.requests.try_send((after, tx)).is_err() {
        return Some(Chunk::Gone.to_bytes());
    }
    let answer = rx.recv_timeout(snapshot_stream::PULL_STALL).ok()?;
    *held.last_served.lock() = Instant::now();
    answer
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The held build's thread: takes the RocksDB snapshot, puts the build on the shelf, and
/// serves chunks until it is idle or replaced.
fn hold(ledger: &Arc<Ledger>, shelf: &Shelf) -> Result<(), BoxError> {
    let db = ledger.db_arc();
    let snap = db.snapshot();
    let keys = keys::Keys::new(&ledger.name);
    let tip = ledger.tip_at(&snap)?;
    let conf_state = match snap.get(keys.kind(keys::CONF_STATE))? {
        Some(b) => ConfState::parse_from_bytes(&b)?,
        None => return Err("no Raft configuration state".into()),
    };
    let descriptor = Descriptor {
        build: build_id(&ledger.name, tip.applied_index),
        index: tip.applied_index,
        term: tip.applied_term,
        height: tip.height,
        last_hash: tip.last_hash,
        state_root: tip.state_root(),
    };
    let (tx, rx) = sync_channel::<Request>(4);
    let held = Arc::new(Held {
        descriptor: descriptor.clone(),
        conf_state,
        requests: tx,
        last_served: Mutex::new(Instant::now()),
    });
    info!(channel = %ledger.name, index = descriptor.index, height = descriptor.height, "snapshot held for peers to pull");
    *shelf.lock() = Slot::Ready(held.clone());
    // Only the shelf holds the build now: once it is replaced, this thread hears so.
    let weak = Arc::downgrade(&held);
    drop(held);
    // How many records come before a key that ended a served chunk (pulls go in order, so
    // the count goes on from the last chunk; a few cursors for pulls side by side).
    let mut counted: std::collections::VecDeque<(Vec<u8>, u64)> = Default::default();
    // The chunk after the one last served, read while the receiver checks that one: the
    // sender's reading overlaps the receiver's work.
    let mut ahead: Option<(Vec<u8>, snapshot_stream::Served)> = None;
    let mut chunk_after = |after: &[u8]| {
        let before = if after.is_empty() {
            0
        } else if let Some((_, n)) = counted.iter().find(|(k, _)| k == after) {
            *n
        } else {
            // A cursor not seen: count up to it (a pull resumed elsewhere; rare).
            records_after(ledger, &snap, &[])
                .map_while(Result::ok)
                .take_while(|(k, _)| {
                    snapshot_stream::stream_order(k) <= snapshot_stream::stream_order(after)
                })
                .count() as u64
        };
        let rest = records_after(ledger, &snap, after)
            .map_while(Result::ok)
            .map(|(k, v)| (k.to_vec(), v.to_vec()));
        let served = snapshot_stream::serve_chunk(rest, before, after);
        if let Some((next, n)) = served.next.clone().zip(served.sent) {
            counted.push_back((next, before + n));
            if counted.len() > 8 {
                counted.pop_front();
            }
        }
        served
    };
    loop {
        match rx.recv_timeout(IDLE) {
            Ok((after, reply)) => {
                let served = match ahead.take() {
                    Some((at, served)) if at == after => served,
                    _ => chunk_after(&after),
                };
                let _ = reply.send(served.answer);
                if let Some(next) = served.next {
                    let served = chunk_after(&next);
                    ahead = Some((next, served));
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let mut slot = shelf.lock();
                if matches!(&*slot, Slot::Ready(h) if weak.upgrade().is_some_and(|me| Arc::ptr_eq(h, &me)))
                {
                    *slot = Slot::Idle;
                }
                info!(channel = %ledger.name, index = descriptor.index, "held snapshot dropped after {IDLE:?} without a pull");
                return Ok(());
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

/// A record as read: key (without the channel prefix) and value.
type Kv = (Box<[u8]>, Box<[u8]>);

/// Records of a held build's RocksDB snapshot, in stream order, after `after` (from the
/// start when empty). Keys are without the channel prefix.
pub(crate) fn records_after<'s>(
    ledger: &Ledger,
    snap: &'s rocksdb::Snapshot<'s>,
    after: &[u8],
) -> impl Iterator<Item = Result<Kv, rocksdb::Error>> + 's {
    let skip = ledger.keys.kind(0).len() - 1;
    let start_kind = snapshot_stream::stream_order(after)
        .0
        .min(LEDGER_KINDS.len());
    let start_kind = if after.is_empty() { 0 } else { start_kind };
    let ranges: Vec<(Vec<u8>, Vec<u8>, bool)> = LEDGER_KINDS
        .iter()
        .enumerate()
        .skip(start_kind)
        .map(|(i, kind)| {
            let (lo, hi) = ledger.keys.range(*kind);
            if i == start_kind && !after.is_empty() {
                let mut from = lo[..skip].to_vec();
                from.extend_from_slice(after);
                (from, hi, true)
            } else {
                (lo, hi, false)
            }
        })
        .collect();
    ranges.into_iter().flat_map(move |(from, hi, exclusive)| {
        snap.iterator(rocksdb::IteratorMode::From(
            &from,
            rocksdb::Direction::Forward,
        ))
        .filter(move |item| !(exclusive && item.as_ref().is_ok_and(|(k, _)| **k == *from)))
        .take_while(move |item| item.as_ref().map_or(true, |(k, _)| **k < *hi))
        .map(move |item| item.map(|(k, v)| (k[skip..].to_vec().into_boxed_slice(), v)))
    })
}
