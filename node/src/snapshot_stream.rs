//! Snapshots streamed in bounded chunks over the peer port.
//!
//! The Raft snapshot message carries only a [`Descriptor`] (the build's id, its Raft index and
//! term, its height, last block hash and state root): building one costs a RocksDB snapshot,
//! not a pass over the ledger. The receiver pulls the records from the
//! sender in chunks of about [`CHUNK_BYTES`]: a [`request`] names the build and the last key
//! it has, a response carries the records that follow (at least one unless the snapshot is
//! over) and, with the last chunk, the snapshot's record count. Each chunk is checked and
//! staged as it arrives ([`crate::ledger::Intake`]), so memory on both sides is a chunk,
//! whatever the ledger's size. Requests and responses travel as peer frames on route
//! [`ROUTE`]`<channel>`, on a connection of their own; their byte layout is
//! `tally_protocol::snapshot`'s.

use crate::keys::LEDGER_KINDS;
use crate::ledger::{Intake, IntakeError, Ledger, SnapshotRefused, StageWrite, VerifiedSnapshot};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tally_protocol::codec::{Decode, DecodeError, Encode};
use tally_protocol::Hash;

/// Route prefix of chunk requests and responses on the peer port.
pub const ROUTE: &str = "snapshot-pull:";
/// A chunk holds records up to about this many bytes (one record more at most).
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// A chunk that does not arrive within this time ends the pull; the leader sends the
/// snapshot again (and the receiver pulls again) after it hears of the failure.
pub const PULL_STALL: Duration = Duration::from_secs(10);
pub use tally_protocol::snapshot::{Chunk, ChunkRequest, Descriptor};

/// A chunk request: the build and the key of the last record the receiver has (empty at
/// the start).
pub fn request(build: u64, after: &[u8]) -> Vec<u8> {
    ChunkRequest {
        build,
        after: after.to_vec(),
    }
    .to_bytes()
}

pub fn decode_request(b: &[u8]) -> Result<(u64, Vec<u8>), DecodeError> {
    ChunkRequest::from_bytes(b).map(|q| (q.build, q.after))
}

/// A peer's chunk, decoded; what does not decode is a malformed snapshot.
pub fn decode_chunk(b: &[u8]) -> Result<Chunk, PullError> {
    Chunk::from_bytes(b).map_err(|e| SnapshotRefused::Malformed(format!("a chunk: {e}")).into())
}

/// The order records are dumped and streamed in: by kind as [`LEDGER_KINDS`] lists them,
/// then by key.
pub fn stream_order(k: &[u8]) -> (usize, &[u8]) {
    let kind = k
        .first()
        .and_then(|kind| LEDGER_KINDS.iter().position(|x| x == kind))
        .unwrap_or(LEDGER_KINDS.len());
    (kind, k)
}

/// Why a pull ended without a verified snapshot.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Refused(#[from] SnapshotRefused),
    #[error("the sender did not answer within {0:?}")]
    Stalled(Duration),
    #[error("the snapshot cannot be pulled: {0}")]
    Unavailable(String),
    #[error("storage: {0}")]
    Storage(String),
}

impl PullError {
    /// Value of the `reason` label of `tally_snapshots_refused_total`.
    pub fn label(&self) -> &'static str {
        match self {
            PullError::Refused(r) => r.label(),
            PullError::Stalled(_) => "stalled",
            PullError::Unavailable(_) => "unavailable",
            PullError::Storage(_) => "storage",
        }
    }
}

impl From<IntakeError> for PullError {
    fn from(e: IntakeError) -> Self {
        match e {
            IntakeError::Refused(r) => PullError::Refused(r),
            IntakeError::Storage(s) => PullError::Storage(s),
        }
    }
}

/// Where chunks come from: the sender over the peer port, or the simulator's network.
pub trait ChunkSource: Send {
    /// The chunk that follows `after` (see [`request`]).
    fn fetch(&mut self, build: u64, after: &[u8]) -> Result<Chunk, PullError>;
}

/// A pulled snapshot: verified, with what was staged.
#[derive(Debug)]
pub struct Pulled {
    pub verified: VerifiedSnapshot,
    pub records: u64,
    pub bytes: u64,
}

/// Pulls the snapshot `desc` names from `source`, checking and staging every record. On
/// success the staged records are the verified snapshot, ready to install.
pub fn pull(
    ledger: &Ledger,
    desc: &Descriptor,
    anchors: BTreeMap<u64, (Hash, Hash)>,
    source: &mut dyn ChunkSource,
    write: &mut StageWrite<'_>,
) -> Result<Pulled, PullError> {
    let mut intake = Intake::begin(ledger, anchors, write)?;
    let mut after: Vec<u8> = Vec::new();
    let (mut records_in, mut bytes) = (0u64, 0u64);
    loop {
        let (records, end) = match source.fetch(desc.build, &after)? {
            Chunk::Gone => {
                return Err(PullError::Unavailable(
                    "the sender no longer holds the build".into(),
                ))
            }
            Chunk::Records { records, end } => (records, end),
        };
        if records.is_empty() && end.is_none() {
            return Err(SnapshotRefused::Malformed("an empty chunk before the end".into()).into());
        }
        for (k, v) in &records {
            intake.record(k, v, write)?;
            bytes += (k.len() + v.len()) as u64;
        }
        records_in += records.len() as u64;
        if let Some((k, _)) = records.last() {
            after.clone_from(k);
        }
        if let Some(count) = end {
            let verified = intake.finish(count, desc.index, write)?;
            if verified.height != desc.height || verified.last_hash != desc.last_hash {
                return Err(SnapshotRefused::Chain(
                    "the records end at another block than the descriptor names".into(),
                )
                .into());
            }
            return Ok(Pulled {
                verified,
                records: records_in,
                bytes,
            });
        }
    }
}

/// One chunk as served: the encoded answer (None: none at all) and, unless it ends the
/// snapshot, the key the next request will name and the records in this chunk.
pub struct Served {
    pub answer: Option<Vec<u8>>,
    pub next: Option<Vec<u8>>,
    pub sent: Option<u64>,
}

/// Serves one chunk from records in stream order, starting after `after`: `records` yields
/// the records from there on, `before` is how many come before them (the last chunk's
/// record count is the snapshot's).
pub fn serve_chunk(
    records: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
    before: u64,
    after: &[u8],
) -> Served {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut exhausted = true;
    for (k, v) in records {
        if bytes >= CHUNK_BYTES {
            exhausted = false;
            break;
        }
        bytes += k.len() + v.len() + 8;
        out.push((k, v));
    }
    let mut end = exhausted.then_some(before + out.len() as u64);
    let sent = u64::from(!after.is_empty());
    if !crate::ledger::snapshot_forge::forge_chunk(&mut out, &mut end, sent) {
        return Served {
            answer: None,
            next: None,
            sent: None,
        };
    }
    let next = match (end, out.last()) {
        (None, Some((k, _))) => Some(k.clone()),
        _ => None,
    };
    let sent = Some(out.len() as u64);
    Served {
        answer: Some(Chunk::Records { records: out, end }.to_bytes()),
        next,
        sent,
    }
}

/// Snapshots built in line and served from memory: what the simulator uses, where every run
/// must replay exactly and a background thread's timing would make runs differ. Its ledgers
/// are small; the last few builds are kept.
#[derive(Default)]
pub struct InlineBuilds {
    next: std::sync::atomic::AtomicU64,
    builds: parking_lot::Mutex<std::collections::VecDeque<(u64, Arc<Vec<Record>>)>>,
}

type Record = (Vec<u8>, Vec<u8>);

impl InlineBuilds {
    const KEPT: usize = 16;

    /// Keeps `records` (in stream order) and returns the build's id.
    pub fn add(&self, records: Vec<Record>) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut b = self.builds.lock();
        b.push_back((id, Arc::new(records)));
        while b.len() > Self::KEPT {
            b.pop_front();
        }
        id
    }

    fn serve(&self, build: u64, after: &[u8]) -> Vec<u8> {
        let recs = self
            .builds
            .lock()
            .iter()
            .find(|(id, _)| *id == build)
            .map(|(_, r)| r.clone());
        let Some(recs) = recs else {
            return Chunk::Gone.to_bytes();
        };
        let from = if after.is_empty() {
            0
        } else {
            recs.partition_point(|(k, _)| stream_order(k) <= stream_order(after))
        };
        serve_chunk(recs[from..].iter().cloned(), from as u64, after)
            .answer
            .unwrap_or_else(|| Chunk::Gone.to_bytes())
    }
}

/// Pulls from [`InlineBuilds`].
pub struct InlineSource(pub Arc<InlineBuilds>);

impl ChunkSource for InlineSource {
    fn fetch(&mut self, build: u64, after: &[u8]) -> Result<Chunk, PullError> {
        decode_chunk(&self.0.serve(build, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Rng;

    #[test]
    fn hostile_frames_never_panic() {
        let good = Chunk::Records {
            records: vec![(b"Sa".to_vec(), b"1".to_vec()), (b"Sb".to_vec(), vec![])],
            end: Some(2),
        }
        .to_bytes();
        let mut rng = Rng::new(5);
        for _ in 0..5000 {
            let mut b = good.clone();
            match rng.below(3) {
                0 => {
                    let i = rng.below(b.len() as u64) as usize;
                    b[i] ^= 1 << rng.below(8);
                }
                1 => b.truncate(rng.below(b.len() as u64) as usize),
                _ => b.push(rng.next_u64() as u8),
            }
            let _ = Chunk::from_bytes(&b);
            let _ = Descriptor::from_bytes(&b);
            let _ = decode_request(&b);
        }
    }
}
