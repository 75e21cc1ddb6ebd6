//! The frames a snapshot travels in between nodes (the node's `snapshot_stream` uses them).
//!
//! A Raft snapshot message carries a [`Descriptor`] instead of the ledger's records; the
//! receiver then asks the sender for the records chunk by chunk ([`ChunkRequest`] →
//! [`Chunk`]). Records are `(key, value)` with the key as the node stores it under the
//! channel's prefix (a kind byte first). Every frame starts with a format byte.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::Hash;

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

/// Asks for the records of build `build` that follow the record keyed `after` (all of
/// them from the first when empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRequest {
    pub build: u64,
    pub after: Vec<u8>,
}

impl Encode for ChunkRequest {
    fn encode(&self, w: &mut Writer) {
        w.u8(FORMAT);
        w.u64(self.build);
        w.bytes(&self.after);
    }
}

impl Decode for ChunkRequest {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.format("chunk request", FORMAT)?;
        Ok(ChunkRequest {
            build: r.u64("build")?,
            after: r.bytes("after")?,
        })
    }
}

/// A chunk as served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    Records {
        records: Vec<(Vec<u8>, Vec<u8>)>,
        /// With the last chunk: the snapshot's record count.
        end: Option<u64>,
    },
    /// The build is no longer held (idle too long, or replaced by a newer one).
    Gone,
}

impl Encode for Chunk {
    fn encode(&self, w: &mut Writer) {
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
    }
}

impl Decode for Chunk {
    /// Lengths and counts beyond the input are refused before anything is reserved for them.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.format("chunk", FORMAT)?;
        match r.u8("chunk status")? {
            1 => Ok(Chunk::Gone),
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
                Ok(Chunk::Records {
                    records,
                    end: r.opt("end")?,
                })
            }
            tag => Err(DecodeError::BadTag {
                what: "chunk status",
                tag,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_lying_counts_reserve_nothing() {
        let d = Descriptor {
            build: 7,
            index: 100,
            term: 3,
            height: 40,
            last_hash: Hash([1; 32]),
            state_root: Hash([2; 32]),
        };
        assert_eq!(Descriptor::from_bytes(&d.to_bytes()).expect("decode"), d);
        let q = ChunkRequest {
            build: 7,
            after: b"Sk".to_vec(),
        };
        assert_eq!(ChunkRequest::from_bytes(&q.to_bytes()).expect("decode"), q);
        let c = Chunk::Records {
            records: vec![(b"Sa".to_vec(), b"1".to_vec()), (b"Sb".to_vec(), vec![])],
            end: Some(2),
        };
        let good = c.to_bytes();
        assert_eq!(Chunk::from_bytes(&good).expect("decode"), c);
        assert_eq!(
            Chunk::from_bytes(&Chunk::Gone.to_bytes()).expect("gone"),
            Chunk::Gone
        );
        let mut lying = good.clone();
        lying[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Chunk::from_bytes(&lying).is_err());
    }
}
