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
//! [`ROUTE`]`<channel>`, on a connection of their own.

use crate::keys::LEDGER_KINDS;
use crate::ledger::{Intake, IntakeError, Ledger, SnapshotRefused, StageWrite, VerifiedSnapshot};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tally_protocol::codec::{Decode, DecodeError, Encode, Reader, Writer};
use tally_protocol::Hash;

/// Route prefix of chunk requests and responses on the peer port.
pub const ROUTE: &str = "snapshot-pull:";
/// A chunk holds records up to about this many bytes (one record more at most).
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// A chunk that does not arrive within this time ends the pull; the leader sends the
/// snapshot again (and the receiver pulls again) after it hears of the failure.
pub const PULL_STALL: Duration = Duration::from_secs(10);
const FORMAT: u8 = 1;

/// What a Raft snapshot message carries instead of the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Names the sender's held build the chunks are pulled from.
    pub build: u64,
    pub index: u64,
    pub term: u64,
    pub height: u64,
    pub last_hash: Hash,
    pub state_root: Hash,
}

impl Encode for Descriptor {
    fn encode(&self, w: &mut Writer) {
        w.u8(FORMAT);
        w.u64(self.build);
        w.u64(self.index);
        w.u64(self.term);
        w.u64(self.height);
        self.last_hash.encode(w);
        self.state_root.encode(w);
    }
}

impl Decode for Descriptor {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.format("snapshot descriptor", FORMAT)?;
        Ok(Descriptor {
            build: r.u64("build")?,
            index: r.u64("index")?,
            term: r.u64("term")?,
            height: r.u64("height")?,
            last_hash: Hash::decode(r)?,
            state_root: Hash::decode(r)?,
        })
    }
}

/// A chunk request: the build and the key of the last record the receiver has (empty at
/// the start).
pub fn request(build: u64, after: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(FORMAT);
    w.u64(build);
    w.bytes(after);
    w.into_inner()
}

pub fn decode_request(b: &[u8]) -> Result<(u64, Vec<u8>), DecodeError> {
    let mut r = Reader::new(b);
    r.format("chunk request", FORMAT)?;
    let build = r.u64("build")?;
    let after = r.bytes("after")?;
    r.finish()?;
    Ok((build, after))
}

/// A chunk as served.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    Records {
        records: Vec<(Vec<u8>, Vec<u8>)>,
        /// With the last chunk: the snapshot's record count.
        end: Option<u64>,
    },
    /// The build is no longer held (idle too long, or replaced by a newer one).
    Gone,
}

impl Chunk {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(FORMAT);
        match self {
            Chunk::Gone => w.u8(1),
            Chunk::Records { records, end } => {
                w.u8(0);
                w.u32(records.len() as u32);
                for (k, v) in records {
                    w.bytes(k);
                    w.bytes(v);
                }
                w.opt(end);
            }
        }
        w.into_inner()
    }

    /// Decodes a peer's chunk; lengths beyond the input are refused before anything is
    /// reserved for them.
    pub fn decode(b: &[u8]) -> Result<Chunk, DecodeError> {
        let mut r = Reader::new(b);
        r.format("chunk", FORMAT)?;
        let chunk = match r.u8("chunk status")? {
            1 => Chunk::Gone,
            0 => {
                let n = r.u32("record count")? as usize;
                // Each record takes at least eight bytes.
                if n > r.remaining() / 8 {
                    return Err(DecodeError::Truncated("records"));
                }
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = r.bytes("key")?;
                    let v = r.bytes("value")?;
                    records.push((k, v));
                }
                Chunk::Records {
                    records,
                    end: r.opt("end")?,
                }
            }
            tag => {
                return Err(DecodeError::BadTag {
                    what: "chunk status",
                    tag,
                })
            }
        };
        r.finish()?;
        Ok(chunk)
    }
}

/// A peer's chunk, decoded; what does not decode is a malformed snapshot.
pub fn decode_chunk(b: &[u8]) -> Result<Chunk, PullError> {
    Chunk::decode(b).map_err(|e| SnapshotRefused::Malformed(format!("a chunk: {e}")).into())
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
        answer: Some(Chunk::Records { records: out, end }.encode()),
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
            return Chunk::Gone.encode();
        };
        let from = if after.is_empty() {
            0
        } else {
            recs.partition_point(|(k, _)| stream_order(k) <= stream_order(after))
        };
        serve_chunk(recs[from..].iter().cloned(), from as u64, after)
            .answer
            .unwrap_or_else(|| Chunk::Gone.encode())
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
    fn frames_round_trip_and_hostile_bytes_never_panic_or_overallocate() {
        let d = Descriptor {
            build: 7,
            index: 100,
            term: 3,
            height: 40,
            last_hash: Hash([1; 32]),
            state_root: Hash([2; 32]),
        };
        assert_eq!(Descriptor::from_bytes(&d.to_bytes()).expect("decode"), d);
        assert_eq!(
            decode_request(&request(7, b"Sk")).expect("decode"),
            (7, b"Sk".to_vec())
        );
        let c = Chunk::Records {
            records: vec![(b"Sa".to_vec(), b"1".to_vec()), (b"Sb".to_vec(), vec![])],
            end: Some(2),
        };
        let good = c.encode();
        assert_eq!(Chunk::decode(&good).expect("decode"), c);
        assert_eq!(
            Chunk::decode(&Chunk::Gone.encode()).expect("gone"),
            Chunk::Gone
        );
        // A record count far beyond the bytes is refused before anything is reserved.
        let mut lying = good.clone();
        lying[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Chunk::decode(&lying).is_err());
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
            let _ = Chunk::decode(&b);
            let _ = Descriptor::from_bytes(&b);
            let _ = decode_request(&b);
        }
    }
}
