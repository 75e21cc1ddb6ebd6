//! Where the ledger stands (its tip: last block, state digest, applied Raft entry) and the
//! channel configuration in force.

use super::{corrupt, Ledger, LedgerError};
use crate::keys;
use rocksdb::WriteBatch;
use std::sync::Arc;
use tally_protocol::codec::{Decode, DecodeError, Encode, Reader, Writer};
use tally_protocol::identity::TrustedCa;
use tally_protocol::state::{StateDigest, DIGEST_BYTES};
use tally_protocol::{ChannelConfig, Hash};

/// Where the ledger stands: the last block and the Raft entry it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tip {
    pub height: u64,
    pub last_hash: Hash,
    pub digest: StateDigest,
    pub timestamp_ms: u64,
    pub applied_index: u64,
    pub applied_term: u64,
}

impl Tip {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + DIGEST_BYTES);
        w.u64(self.height);
        self.last_hash.encode(&mut w);
        w.fixed(&self.digest.to_bytes());
        w.u64(self.timestamp_ms);
        w.u64(self.applied_index);
        w.u64(self.applied_term);
        w.into_inner()
    }
    pub(super) fn decode(b: &[u8]) -> Result<Tip, DecodeError> {
        let mut r = Reader::new(b);
        let t = Tip {
            height: r.u64("height")?,
            last_hash: Hash::decode(&mut r)?,
            digest: StateDigest::from_bytes(&r.fixed::<DIGEST_BYTES>("state commitment")?)?,
            timestamp_ms: r.u64("timestamp")?,
            applied_index: r.u64("applied")?,
            applied_term: r.u64("applied term")?,
        };
        r.finish()?;
        Ok(t)
    }
    /// Decodes a tip record; None when it does not decode.
    pub fn decode_bytes(b: &[u8]) -> Option<Tip> {
        Tip::decode(b).ok()
    }
    pub fn state_root(&self) -> Hash {
        self.digest.root()
    }
}

/// The channel configuration in force and how many changes led to it (0: the genesis one).
#[derive(Clone, Debug)]
pub struct InForce {
    pub sequence: u64,
    pub config: Arc<ChannelConfig>,
    pub hash: Hash,
    pub(super) cas: Arc<Vec<TrustedCa>>,
}

impl InForce {
    pub(super) fn new(sequence: u64, config: ChannelConfig) -> Result<InForce, LedgerError> {
        let cas = config.validate().map_err(|e| corrupt("config", e))?;
        Ok(InForce {
            sequence,
            hash: config.hash(),
            config: Arc::new(config),
            cas: Arc::new(cas),
        })
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.sequence);
        self.config.encode(&mut w);
        w.into_inner()
    }

    pub(crate) fn decode(b: &[u8]) -> Result<InForce, LedgerError> {
        let mut r = Reader::new(b);
        let sequence = r.u64("config sequence").map_err(|e| corrupt("config", e))?;
        let config = ChannelConfig::decode(&mut r).map_err(|e| corrupt("config", e))?;
        InForce::new(sequence, config)
    }
}

impl Ledger {
    pub fn tip(&self) -> Tip {
        self.tip.read().clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<ChannelConfig> {
        self.in_force.read().config.clone()
    }

    pub fn in_force(&self) -> InForce {
        self.in_force.read().clone()
    }

    /// Makes a configuration that a written block installed the one in force. Signers are
    /// checked again from here on: an organization may have left or changed its CA.
    pub fn install_config(&self, next: InForce) {
        *self.in_force.write() = next;
        self.verified_certs.write().clear();
    }

    pub(super) fn reload_config(&self) -> Result<(), LedgerError> {
        let next = match self.db.get(self.keys.kind(keys::CONFIG_IN_FORCE))? {
            Some(b) => InForce::decode(&b)?,
            None => InForce::new(0, (*self.genesis).clone())?,
        };
        self.install_config(next);
        Ok(())
    }

    /// Recomputes the state commitment from the state records themselves and compares it with
    /// the one the tip keeps. The tip's commitment is updated block by block and never looks
    /// at records it does not write, so a record edited behind the node's back would
    /// otherwise go unnoticed until that key is written again. Costs one pass over the state.
    pub fn verify_state(&self) -> Result<Option<String>, LedgerError> {
        let (lo, hi) = self.keys.range(keys::STATE);
        let skip = self.keys.state_prefix_len();
        let mut digest = StateDigest::default();
        for item in self.db.iterator(rocksdb::IteratorMode::From(
            &lo,
            rocksdb::Direction::Forward,
        )) {
            let (k, v) = item?;
            if k.as_ref() >= hi.as_slice() {
                break;
            }
            let Ok(key) = std::str::from_utf8(&k[skip..]) else {
                return Ok(Some("a state record's key is not UTF-8".into()));
            };
            let (version, value) = super::decode_state(&v)?;
            digest.add(key, &version, &value);
        }
        let tip = self.tip();
        if digest == tip.digest {
            return Ok(None);
        }
        Ok(Some(format!(
            "the state records hash to {} but the ledger at height {} commits to {}",
            digest.root(),
            tip.height,
            tip.state_root()
        )))
    }

    pub(super) fn reload_tip(&self) -> Result<(), LedgerError> {
        let b = self
            .db
            .get(self.keys.kind(keys::TIP))?
            .ok_or_else(|| corrupt("tip", "missing after snapshot"))?;
        *self.tip.write() = Tip::decode(&b).map_err(|e| corrupt("tip", e))?;
        // A snapshot replaced the chain: blocks kept for proofs may be another chain's.
        self.proofs.clear();
        Ok(())
    }

    pub fn write_tip(&self, tip: &Tip, wb: &mut WriteBatch) {
        wb.put(self.keys.kind(keys::TIP), tip.encode());
    }

    /// Makes an applied block visible to readers once its write batch is in the database.
    pub fn commit_tip(&self, tip: Tip) {
        *self.tip.write() = tip;
    }
}
