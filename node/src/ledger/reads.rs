//! Reads of a channel's ledger: world state, key history, keys by prefix, receipts with
//! inclusion proofs, blocks and the certificate registry.

use super::proof_cache::BlockProofs;
use super::{corrupt, Ledger, LedgerError};
use rocksdb::{Direction, IteratorMode};
use std::collections::HashMap;
use std::sync::Arc;
use tally_protocol::api::{utf8, HistoryEntry, KeyEntry};
use tally_protocol::codec::{Decode, Reader};
use tally_protocol::receipt::{InclusionProof, ProvenReceipt, Receipt};
use tally_protocol::{Block, BlockHeader, Hash, Version};

/// A key's state: its version and value, or absent.
pub(super) type StateEntry = Option<(Version, Vec<u8>)>;

impl Ledger {
    pub(super) fn read_state(
        &self,
        key: &str,
        overlay: &HashMap<String, StateEntry>,
    ) -> Result<StateEntry, LedgerError> {
        if let Some(v) = overlay.get(key) {
            return Ok(v.clone());
        }
        Ok(match self.db.get(self.keys.state(key))? {
            Some(b) => Some(decode_state(&b)?),
            None => None,
        })
    }

    pub(super) fn tx_seen(&self, id: &Hash) -> Result<bool, LedgerError> {
        Ok(self.db.get_pinned(self.keys.tx(&id.0))?.is_some())
    }
    pub fn block_bytes(&self, number: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.db.get(self.keys.block(number))?)
    }

    pub fn block(&self, number: u64) -> Result<Option<Block>, LedgerError> {
        match self.block_bytes(number)? {
            Some(b) => Block::from_bytes(&b)
                .map(Some)
                .map_err(|e| corrupt("block", e)),
            None => Ok(None),
        }
    }

    /// The header of block `number`, without decoding its transactions.
    pub fn header(&self, number: u64) -> Result<Option<BlockHeader>, LedgerError> {
        match self.db.get_pinned(self.keys.block(number))? {
            Some(b) => BlockHeader::decode(&mut Reader::new(&b))
                .map(Some)
                .map_err(|e| corrupt("block header", e)),
            None => Ok(None),
        }
    }

    pub fn tx_location(&self, id: &Hash) -> Result<Option<Version>, LedgerError> {
        match self.db.get_pinned(self.keys.tx(&id.0))? {
            Some(b) => Version::from_bytes(&b)
                .map(Some)
                .map_err(|e| corrupt("tx index", e)),
            None => Ok(None),
        }
    }

    pub fn receipt(&self, id: &Hash) -> Result<Option<ProvenReceipt>, LedgerError> {
        let Some(loc) = self.tx_location(id)? else {
            return Ok(None);
        };
        let proofs = self.block_proofs(loc.block)?;
        let i = loc.tx as usize;
        let status = proofs
            .results
            .get(i)
            .cloned()
            .ok_or_else(|| corrupt("block", "result missing"))?;
        let effects = proofs.effects.get(i).cloned().flatten().map(Box::new);
        let effects_hash = proofs
            .effects_hashes
            .get(i)
            .copied()
            .ok_or_else(|| corrupt("block", "effects missing"))?;
        let proof = proofs
            .tree
            .prove(i)
            .ok_or_else(|| corrupt("block", "index out of range"))?;
        Ok(Some(ProvenReceipt {
            receipt: Receipt {
                tx_id: *id,
                channel: self.name.clone(),
                block: loc.block,
                index: loc.tx,
                status: status.clone(),
                block_hash: proofs.block_hash,
                effects,
            },
            proof: InclusionProof {
                tx_id: *id,
                header: proofs.header.clone(),
                status,
                effects_hash,
                merkle: proof,
            },
        }))
    }

    /// What proving a transaction of block `number` needs, from the cache or built once.
    fn block_proofs(&self, number: u64) -> Result<Arc<BlockProofs>, LedgerError> {
        if let Some(p) = self.proofs.get(number) {
            return Ok(p);
        }
        let block = self
            .block(number)?
            .ok_or_else(|| corrupt("block", "indexed block missing"))?;
        let proofs =
            Arc::new(BlockProofs::of(block).ok_or_else(|| {
                corrupt("block", "results or effects do not match its transactions")
            })?);
        self.proofs.insert(number, proofs.clone());
        Ok(proofs)
    }

    pub fn get(&self, key: &str) -> Result<StateEntry, LedgerError> {
        self.read_state(key, &HashMap::new())
    }

    pub fn history(&self, key: &str, limit: usize) -> Result<Vec<HistoryEntry>, LedgerError> {
        let prefix = self.keys.history_prefix(key);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&prefix, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let ver =
                Version::from_bytes(&k[prefix.len()..]).map_err(|e| corrupt("history key", e))?;
            let mut r = Reader::new(&v);
            let tx_id = Hash::decode(&mut r).map_err(|e| corrupt("history", e))?;
            let timestamp_ms = r.u64("ts").map_err(|e| corrupt("history", e))?;
            let value = match r.u8("tag").map_err(|e| corrupt("history", e))? {
                1 => Some(v[v.len() - r.remaining()..].to_vec()),
                _ => None,
            };
            let value_utf8 = value.as_deref().and_then(utf8);
            out.push(HistoryEntry {
                version: ver,
                tx_id,
                value,
                value_utf8,
                timestamp_ms,
            });
        }
        Ok(out)
    }

    pub fn keys_with_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<KeyEntry>, LedgerError> {
        let mut out = Vec::new();
        self.scan_state(prefix, |key, version, _| {
            if out.len() >= limit {
                return Ok(false);
            }
            out.push(KeyEntry {
                key: key.to_string(),
                version,
            });
            Ok(true)
        })?;
        Ok(out)
    }

    /// Each state record whose key starts with `prefix`, in key order: its key, version and
    /// value, until `f` returns false.
    pub(super) fn scan_state(
        &self,
        prefix: &str,
        mut f: impl FnMut(&str, Version, Vec<u8>) -> Result<bool, LedgerError>,
    ) -> Result<(), LedgerError> {
        let start = self.keys.state(prefix);
        let skip = self.keys.state_prefix_len();
        for item in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(&start) {
                break;
            }
            let key = String::from_utf8_lossy(&k[skip..]);
            let (version, value) = decode_state(&v)?;
            if !f(&key, version, value)? {
                break;
            }
        }
        Ok(())
    }

    pub fn cert_known(&self, hash: &Hash) -> Result<bool, LedgerError> {
        Ok(self.db.get_pinned(self.keys.cert(&hash.0))?.is_some())
    }
}

pub(super) fn decode_state(b: &[u8]) -> Result<(Version, Vec<u8>), LedgerError> {
    if b.len() < 12 {
        return Err(corrupt("state", "short value"));
    }
    let v = Version::from_bytes(&b[..12]).map_err(|e| corrupt("state", e))?;
    Ok((v, b[12..].to_vec()))
}
