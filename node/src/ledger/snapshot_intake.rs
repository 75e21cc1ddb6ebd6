//! A peer's snapshot taken in record by record: each record is checked as it arrives (one
//! pass, in the order the sender's dump produces) and written under the channel's staging
//! prefix ([`keys::STAGED`]), never over the ledger. What the checks of later records need
//! from earlier ones and that grows with the ledger (where each transaction sits, which
//! certificates signed) is written beside the staged records ([`keys::STAGED_AUX`]) and read
//! back, so memory stays the same whatever the ledger's size. Only a stream that passed every
//! check of [`Ledger::verify_snapshot`]'s list may be installed (`snapshot_install.rs`).

use super::snapshots::{be_u64, SnapshotRefused, VerifiedSnapshot};
use super::{decode_state, InForce, Ledger, LedgerError, Tip};
use crate::keys::{self, LEDGER_KINDS};
use rocksdb::WriteBatch;
use std::collections::BTreeMap;
use tally_protocol::block::results_root;
use tally_protocol::codec::{Decode, Encode};
use tally_protocol::identity::cert_hash;
use tally_protocol::proposal::installed_config;
use tally_protocol::state::StateDigest;
use tally_protocol::{merkle, Block, Hash, Version};

/// Staged records are written in batches of about this size.
const FLUSH_BYTES: usize = 4 * 1024 * 1024;

/// Why taking a snapshot in stopped.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Refused(#[from] SnapshotRefused),
    #[error("storage: {0}")]
    Storage(String),
}

impl From<LedgerError> for IntakeError {
    fn from(e: LedgerError) -> Self {
        IntakeError::Storage(e.to_string())
    }
}

impl From<rocksdb::Error> for IntakeError {
    fn from(e: rocksdb::Error) -> Self {
        IntakeError::Storage(e.to_string())
    }
}

/// Where the intake's batches go: RocksDB directly, or the channel thread's write path (the
/// simulator journals every write).
pub type StageWrite<'w> = dyn FnMut(WriteBatch) -> Result<(), String> + 'w;

/// One snapshot being received and checked.
pub struct Intake<'a> {
    ledger: &'a Ledger,
    anchors: BTreeMap<u64, (Hash, Hash)>,
    count: u64,
    genesis_seen: bool,
    in_force: Option<Vec<u8>>,
    tip: Option<Tip>,
    height: u64,
    last_hash: Hash,
    last_state_root: Hash,
    last_timestamp: u64,
    config: Option<InForce>,
    digest: StateDigest,
    anchored_at: Option<u64>,
    prev_kind: u8,
    prev_key: Vec<u8>,
    wb: WriteBatch,
    wb_bytes: usize,
}

fn pos(kind: u8) -> Option<usize> {
    LEDGER_KINDS.iter().position(|&y| y == kind)
}

impl<'a> Intake<'a> {
    /// Starts a snapshot, dropping whatever an earlier one left staged. `anchors`: height →
    /// (block hash, state root) that a strict majority of the consenters signed.
    pub fn begin(
        ledger: &'a Ledger,
        anchors: BTreeMap<u64, (Hash, Hash)>,
        write: &mut StageWrite<'_>,
    ) -> Result<Intake<'a>, IntakeError> {
        let mut wb = WriteBatch::default();
        ledger.clear_staging(&mut wb);
        write(wb).map_err(IntakeError::Storage)?;
        Ok(Intake {
            ledger,
            anchors,
            count: 0,
            genesis_seen: false,
            in_force: None,
            tip: None,
            height: 0,
            last_hash: Hash::default(),
            last_state_root: Hash::default(),
            last_timestamp: 0,
            config: None,
            digest: StateDigest::default(),
            anchored_at: None,
            prev_kind: 0,
            prev_key: Vec::new(),
            wb: WriteBatch::default(),
            wb_bytes: 0,
        })
    }

    fn flush(&mut self, write: &mut StageWrite<'_>) -> Result<(), IntakeError> {
        if self.wb_bytes > 0 {
            let wb = std::mem::take(&mut self.wb);
            self.wb_bytes = 0;
            write(wb).map_err(IntakeError::Storage)?;
        }
        Ok(())
    }

    fn put(&mut self, key: Vec<u8>, value: &[u8]) {
        self.wb_bytes += key.len() + value.len();
        self.wb.put(key, value);
    }

    fn aux(&self, tag: u8, id: &[u8]) -> Vec<u8> {
        let mut k = self.ledger.keys.kind(keys::STAGED_AUX);
        k.push(tag);
        k.extend_from_slice(id);
        k
    }

    /// Checks one record (key without the channel prefix, kind byte first) and stages it.
    pub fn record(
        &mut self,
        k: &[u8],
        v: &[u8],
        write: &mut StageWrite<'_>,
    ) -> Result<(), IntakeError> {
        use SnapshotRefused::*;
        let Some(&kind) = k.first() else {
            return Err(Malformed("an empty key".into()).into());
        };
        if !LEDGER_KINDS.contains(&kind) {
            return Err(ForeignKind(kind).into());
        }
        let rest = &k[1..];
        // Records come in the dump's order, each key once; a reordered or repeated record
        // could otherwise shadow a checked one when the staged records are swapped in.
        if pos(kind) < pos(self.prev_kind)
            || (kind == self.prev_kind && k <= self.prev_key.as_slice())
        {
            return Err(Malformed("records out of order or repeated".into()).into());
        }
        // Lookups of what earlier kinds staged must find it on disk.
        if kind != self.prev_kind || self.wb_bytes >= FLUSH_BYTES {
            self.flush(write)?;
        }
        self.prev_kind = kind;
        self.prev_key.clear();
        self.prev_key.extend_from_slice(k);
        match kind {
            keys::CONFIG => {
                if v != self.ledger.genesis.to_bytes().as_slice() || !rest.is_empty() {
                    return Err(
                        Chain("its genesis configuration is not this channel's".into()).into(),
                    );
                }
                self.genesis_seen = true;
            }
            keys::CONFIG_IN_FORCE => self.in_force = Some(v.to_vec()),
            keys::BLOCK => self.block(rest, v)?,
            keys::TX_INDEX => {
                let id: [u8; 32] = rest
                    .try_into()
                    .map_err(|_| Malformed("transaction index key".into()))?;
                let at = Version::from_bytes(v)
                    .map_err(|e| Malformed(format!("transaction index: {e}")))?;
                // Every place the chain has the transaction (a duplicate is ordered again and
                // refused), one key each.
                let mut placed = id.to_vec();
                placed.extend_from_slice(&place(at.block, at.tx));
                if self.ledger.db.get(self.aux(b'p', &placed))?.is_none() {
                    return Err(Derived(format!(
                        "the index places transaction {} at {}:{}, where the chain has not it",
                        Hash(id),
                        at.block,
                        at.tx
                    ))
                    .into());
                }
            }
            keys::STATE => {
                let key = std::str::from_utf8(rest)
                    .map_err(|_| Malformed("a state key is not UTF-8".into()))?;
                let (version, value) =
                    decode_state(v).map_err(|e| Malformed(format!("state {key}: {e}")))?;
                if version.block >= self.height {
                    return Err(State(format!(
                        "key {key} was written in block {}, beyond the chain",
                        version.block
                    ))
                    .into());
                }
                self.digest.add(key, &version, &value);
            }
            keys::HISTORY => {
                // Shape only: a history record names a key and a version in the chain.
                if rest.len() < 4 + 12 {
                    return Err(Malformed("history key".into()).into());
                }
            }
            keys::CERT => {
                let hash = cert_hash(v);
                if rest.len() != 32 || hash.0 != rest {
                    return Err(Derived("a certificate is filed under another hash".into()).into());
                }
                if self.ledger.db.get(self.aux(b'c', &hash.0))?.is_none() {
                    return Err(Derived(
                        "a certificate no transaction of the chain carried".into(),
                    )
                    .into());
                }
            }
            keys::TIP => {
                self.tip = Some(Tip::decode(v).map_err(|e| Malformed(format!("tip: {e}")))?);
            }
            _ => return Err(ForeignKind(kind).into()),
        }
        let mut staged = self.ledger.keys.kind(keys::STAGED);
        staged.extend_from_slice(k);
        self.put(staged, v);
        self.count += 1;
        Ok(())
    }

    fn block(&mut self, rest: &[u8], v: &[u8]) -> Result<(), IntakeError> {
        use SnapshotRefused::*;
        let number = be_u64(rest).ok_or_else(|| Malformed("block key".into()))?;
        let height = self.height;
        if number != height {
            return Err(Chain(format!("block {number} where block {height} was expected")).into());
        }
        let block = Block::from_bytes(v).map_err(|e| Malformed(format!("block {number}: {e}")))?;
        let h = &block.header;
        let expected_prev = if number == 0 {
            self.ledger.genesis_hash
        } else {
            self.last_hash
        };
        if h.number != number || h.channel != self.ledger.name || h.prev_hash != expected_prev {
            return Err(Chain(format!(
                "block {number} does not link to the block before it (or to this channel's genesis)"
            ))
            .into());
        }
        let ids = block.tx_ids();
        if h.tx_root != merkle::root(&ids)
            || block.results.len() != ids.len()
            || block.effects.len() != ids.len()
            || h.results_root != results_root(&ids, &block.results, &block.effects)
        {
            return Err(Chain(format!(
                "block {number}'s header does not commit to its transactions and results"
            ))
            .into());
        }
        for (i, (tx, status)) in block.txs.iter().zip(&block.results).enumerate() {
            let mut placed = ids[i].0.to_vec();
            placed.extend_from_slice(&place(number, i as u32));
            let key = self.aux(b'p', &placed);
            self.put(key, &[]);
            if let tally_protocol::Signer::Certificate(der) = &tx.body.signer {
                let key = self.aux(b'c', &cert_hash(der).0);
                self.put(key, &[]);
            }
            // A one-transaction update or a proposal whose policy was met here.
            let fx = block.effects.get(i).and_then(Option::as_ref);
            if let Some(update) = installed_config(tx, status, fx)
                .map_err(|e| Derived(format!("a committed configuration: {e}")))?
            {
                self.config = Some(
                    InForce::new(update.sequence, update.config)
                        .map_err(|e| Derived(format!("a committed configuration: {e}")))?,
                );
            }
        }
        self.last_hash = h.hash();
        self.last_state_root = h.state_root;
        self.last_timestamp = h.timestamp_ms;
        self.height = number + 1;
        if let Some((hash, root)) = self.anchors.get(&self.height) {
            if (*hash, *root) != (self.last_hash, self.last_state_root) {
                return Err(Checkpoint(format!(
                    "at height {} the consenters' majority signed another block",
                    self.height
                ))
                .into());
            }
            self.anchored_at = Some(self.height);
        }
        Ok(())
    }

    /// Ends the stream: `count` is the record count the sender's end marker gives,
    /// `raft_index` the Raft index the snapshot claims to be at. On success every record is
    /// staged and the snapshot may be installed.
    pub fn finish(
        mut self,
        count: u64,
        raft_index: u64,
        write: &mut StageWrite<'_>,
    ) -> Result<VerifiedSnapshot, IntakeError> {
        use SnapshotRefused::*;
        if count != self.count {
            return Err(Truncated(format!(
                "{} records where the end marker says {count}",
                self.count
            ))
            .into());
        }
        if !self.genesis_seen {
            return Err(Chain("no genesis configuration".into()).into());
        }
        let tip = self
            .tip
            .take()
            .ok_or_else(|| Truncated("no tip record".into()))?;
        let height = self.height;
        if height == 0 || tip.height != height || tip.last_hash != self.last_hash {
            return Err(Chain(format!(
                "the tip says height {} but the chain has {height} blocks ending elsewhere",
                tip.height
            ))
            .into());
        }
        if self.digest.root() != self.last_state_root {
            return Err(State(format!(
                "the state records hash to {} but block {} commits to {}",
                self.digest.root(),
                height - 1,
                self.last_state_root
            ))
            .into());
        }
        if tip.timestamp_ms != self.last_timestamp {
            return Err(Chain("the tip's time is not its last block's".into()).into());
        }
        if tip.digest != self.digest {
            return Err(State("the tip's commitment is not the state's".into()).into());
        }
        if tip.applied_index != raft_index {
            return Err(Derived(format!(
                "the tip is at Raft index {} but the snapshot claims {raft_index}",
                tip.applied_index
            ))
            .into());
        }
        let derived = self.config.as_ref().map(InForce::encode);
        if derived != self.in_force {
            return Err(Derived(
                "the configuration in force is not the last one the chain committed".into(),
            )
            .into());
        }
        self.flush(write)?;
        Ok(VerifiedSnapshot {
            height,
            last_hash: self.last_hash,
            anchored_at: self.anchored_at,
        })
    }
}

fn place(block: u64, tx: u32) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..8].copy_from_slice(&block.to_be_bytes());
    p[8..].copy_from_slice(&tx.to_be_bytes());
    p
}

impl Ledger {
    /// Deletes whatever a snapshot being received left staged, in `wb`.
    pub(crate) fn clear_staging(&self, wb: &mut WriteBatch) {
        for kind in [keys::STAGED, keys::STAGED_AUX] {
            let (lo, hi) = self.keys.range(kind);
            wb.delete_range(lo, hi);
        }
    }
}
