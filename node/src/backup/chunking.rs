//! Records cut into chunks at content-defined boundaries.
//!
//! A chunk ends after a record whose key hash falls below a threshold proportional to the
//! record's size (so a chunk holds about [`Cuts::target`] bytes on average whatever the record
//! sizes), never before [`Cuts::min`] bytes and always by [`Cuts::max`]; and always where the
//! record kind changes. The boundaries therefore depend on the records themselves, not on
//! where they sit in the stream: blocks appended since the last backup change only the last
//! chunk of blocks, a state key written changes only the chunk that holds it, and every other
//! chunk comes out byte for byte as before — already stored, so not uploaded again.

use sha2::{Digest, Sha256};
use tally_protocol::codec::{Reader, Writer};

/// Where chunks are cut, in raw (uncompressed) bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cuts {
    pub min: usize,
    pub target: usize,
    pub max: usize,
}

impl Default for Cuts {
    fn default() -> Self {
        Cuts::around(2 * 1024 * 1024)
    }
}

/// Environment variable that sets the average chunk size in bytes (tests use small chunks to
/// show reuse on small ledgers).
pub const CHUNK_BYTES_VAR: &str = "TALLY_BACKUP_CHUNK_BYTES";

impl Cuts {
    /// Chunks of about `target` bytes: at least a quarter of it, at most four times.
    pub fn around(target: usize) -> Cuts {
        let target = target.max(1024);
        Cuts {
            min: target / 4,
            target,
            max: target * 4,
        }
    }

    /// [`CHUNK_BYTES_VAR`] when set to a number, else the default.
    pub fn from_env() -> Cuts {
        std::env::var(CHUNK_BYTES_VAR)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map_or_else(Cuts::default, Cuts::around)
    }

    /// Whether a record with this key and encoded size ends its chunk (size permitting).
    fn boundary(&self, key: &[u8], len: usize) -> bool {
        let h = Sha256::digest(key);
        let mut top = [0u8; 8];
        top.copy_from_slice(&h[..8]);
        let h = u64::from_be_bytes(top);
        // P(cut) = len / target: a chunk's expected size is `target` bytes.
        h < (len as u64).saturating_mul(u64::MAX / self.target as u64)
    }
}

/// A chunk's raw bytes (records as the codec's length-prefixed key and value) and how many
/// records it holds.
#[derive(Debug, Default)]
pub struct RawChunk {
    pub bytes: Vec<u8>,
    pub records: u64,
}

/// Cuts a stream of records into chunks; at most one chunk is held.
pub struct Chunker {
    cuts: Cuts,
    current: Writer,
    records: u64,
    kind: Option<u8>,
}

impl Chunker {
    pub fn new(cuts: Cuts) -> Chunker {
        Chunker {
            cuts,
            current: Writer::default(),
            records: 0,
            kind: None,
        }
    }

    fn take(&mut self) -> Option<RawChunk> {
        if self.records == 0 {
            return None;
        }
        let w = std::mem::take(&mut self.current);
        let records = std::mem::replace(&mut self.records, 0);
        Some(RawChunk {
            bytes: w.into_inner(),
            records,
        })
    }

    /// Adds a record; returns the chunk it completed, if any (the chunk before it, when the
    /// record starts a new kind).
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Option<RawChunk> {
        let kind = key.first().copied();
        let before = if self.kind.is_some() && self.kind != kind {
            self.take()
        } else {
            None
        };
        self.kind = kind;
        self.current.bytes(key);
        self.current.bytes(value);
        self.records += 1;
        let len = key.len() + value.len() + 8;
        let size = self.current.len();
        let ends = size >= self.cuts.max || (size >= self.cuts.min && self.cuts.boundary(key, len));
        match (before, ends) {
            // The record opened a new kind: the previous kind's chunk goes now, and this
            // record's chunk ends at a later boundary (or at the next kind, or the end).
            (Some(b), _) => Some(b),
            (None, true) => self.take(),
            (None, false) => None,
        }
    }

    /// The last chunk.
    pub fn finish(mut self) -> Option<RawChunk> {
        self.take()
    }
}

/// A record: key (kind byte first, no channel prefix) and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Splits a chunk's raw bytes into its records; `expected` is the count its manifest gives.
pub fn decode_records(raw: &[u8], expected: u64) -> Result<Vec<Record>, String> {
    let mut r = Reader::new(raw);
    let mut out = Vec::new();
    while r.remaining() > 0 {
        let k = r.bytes("record key").map_err(|e| e.to_string())?;
        let v = r.bytes("record value").map_err(|e| e.to_string())?;
        out.push((k, v));
        if out.len() as u64 > expected {
            return Err(format!(
                "more records than the {expected} its manifest lists"
            ));
        }
    }
    if out.len() as u64 != expected {
        return Err(format!(
            "{} records where its manifest lists {expected}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger_like(blocks: u64, state: u64, gen: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut recs = vec![(b"g".to_vec(), vec![1; 300])];
        for b in 0..blocks {
            let mut k = b"B".to_vec();
            k.extend_from_slice(&b.to_be_bytes());
            recs.push((k, vec![(b % 251) as u8; 700]));
        }
        for s in 0..state {
            let k = format!("Skey-{s:08}").into_bytes();
            let v = if s == 5_000 { gen } else { 0 };
            recs.push((k, format!("value-{s}-{v}").into_bytes()));
        }
        recs.push((b"t".to_vec(), gen.to_be_bytes().to_vec()));
        recs
    }

    fn chunks(recs: &[(Vec<u8>, Vec<u8>)], cuts: Cuts) -> Vec<RawChunk> {
        let mut c = Chunker::new(cuts);
        let mut out = Vec::new();
        for (k, v) in recs {
            out.extend(c.push(k, v));
        }
        out.extend(c.finish());
        out
    }

    fn hashes(cs: &[RawChunk]) -> Vec<[u8; 32]> {
        cs.iter().map(|c| Sha256::digest(&c.bytes).into()).collect()
    }

    #[test]
    fn every_record_lands_in_exactly_one_chunk_in_order() {
        let recs = ledger_like(500, 20_000, 1);
        let cs = chunks(&recs, Cuts::around(64 * 1024));
        let mut back = Vec::new();
        for c in &cs {
            assert!(c.bytes.len() <= 4 * 64 * 1024 + 1024, "{}", c.bytes.len());
            back.extend(decode_records(&c.bytes, c.records).expect("decodes"));
        }
        assert_eq!(back, recs);
        // Kinds never share a chunk.
        for c in &cs {
            let r = decode_records(&c.bytes, c.records).expect("decodes");
            assert!(r.iter().all(|(k, _)| k[0] == r[0].0[0]));
        }
        assert!(cs.len() > 10, "{} chunks", cs.len());
    }

    /// Appending blocks and changing one state value leaves nearly every chunk as it was.
    #[test]
    fn appended_blocks_and_one_changed_key_reuse_most_chunks() {
        let cuts = Cuts::around(64 * 1024);
        let before = hashes(&chunks(&ledger_like(500, 20_000, 1), cuts));
        let after = hashes(&chunks(&ledger_like(520, 20_000, 2), cuts));
        let new: Vec<_> = after.iter().filter(|h| !before.contains(h)).collect();
        assert!(
            new.len() <= 4,
            "{} of {} chunks are new",
            new.len(),
            after.len()
        );
        assert!(after.len() > 10);
    }

    #[test]
    fn a_chunk_with_a_wrong_count_or_cut_short_is_refused() {
        let recs = ledger_like(3, 3, 1);
        let cs = chunks(&recs, Cuts::default());
        let c = &cs[1];
        assert!(decode_records(&c.bytes, c.records + 1).is_err());
        assert!(decode_records(&c.bytes, c.records - 1).is_err());
        assert!(decode_records(&c.bytes[..c.bytes.len() - 3], c.records).is_err());
    }
}
