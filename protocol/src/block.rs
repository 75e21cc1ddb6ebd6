//! Blocks, their headers, per-transaction results and the ordered batch a block is made from.

use crate::chaincode::TxEffects;
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::Hash;
use crate::merkle;
use crate::tx::{RawTx, Transaction};
use serde::{Deserialize, Serialize};

/// The block header format this code writes and reads. A header starts with it, so a later
/// format can be told apart; decoding refuses any other.
pub const HEADER_VERSION: u8 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Always [`HEADER_VERSION`] for a header that decoded.
    pub version: u8,
    pub channel: String,
    pub number: u64,
    pub prev_hash: Hash,
    /// Merkle root of the transaction ids, in block order.
    pub tx_root: Hash,
    /// Merkle root of each transaction's outcome ([`result_leaf`]: id, status and the hash of
    /// its effects), in block order: what a receipt's status and effects are proven against.
    pub results_root: Hash,
    /// Root of the state commitment after this block ([`crate::state::StateDigest`]).
    pub state_root: Hash,
    /// Leader time at proposal, never earlier than the previous block's.
    pub timestamp_ms: u64,
    pub raft_term: u64,
    pub raft_index: u64,
}

impl Encode for BlockHeader {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.version);
        w.str(&self.channel);
        w.u64(self.number);
        self.prev_hash.encode(w);
        self.tx_root.encode(w);
        self.results_root.encode(w);
        self.state_root.encode(w);
        w.u64(self.timestamp_ms);
        w.u64(self.raft_term);
        w.u64(self.raft_index);
    }
}
impl Decode for BlockHeader {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("header version")?;
        if version != HEADER_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "block header",
                version,
                supported: HEADER_VERSION,
            });
        }
        Ok(BlockHeader {
            version,
            channel: r.str("channel")?,
            number: r.u64("number")?,
            prev_hash: Hash::decode(r)?,
            tx_root: Hash::decode(r)?,
            results_root: Hash::decode(r)?,
            state_root: Hash::decode(r)?,
            timestamp_ms: r.u64("timestamp")?,
            raft_term: r.u64("term")?,
            raft_index: r.u64("index")?,
        })
    }
}

impl BlockHeader {
    pub fn hash(&self) -> Hash {
        Hash::tagged(b"tally-block", &[&self.to_bytes()])
    }
}

/// Hash of a transaction's effects as a block stores them (`None` for all but committed
/// chaincode calls).
pub fn effects_hash(effects: &Option<TxEffects>) -> Hash {
    Hash::tagged(b"tally-tx-effects", &[&effects.to_bytes()])
}

/// The leaf of a transaction's outcome under a header's `results_root`: its id, its status
/// in canonical bytes and the hash of its effects.
pub fn result_leaf(tx_id: &Hash, status: &TxStatus, effects_hash: &Hash) -> Hash {
    Hash::tagged(
        b"tally-tx-result",
        &[&tx_id.0, &status.to_bytes(), &effects_hash.0],
    )
}

/// The `results_root` of a block's outcomes.
pub fn results_root(ids: &[Hash], results: &[TxStatus], effects: &[Option<TxEffects>]) -> Hash {
    merkle::root(&result_leaves(ids, results, effects))
}

/// The leaves under `results_root`, in block order.
pub fn result_leaves(
    ids: &[Hash],
    results: &[TxStatus],
    effects: &[Option<TxEffects>],
) -> Vec<Hash> {
    ids.iter()
        .zip(results)
        .zip(effects)
        .map(|((id, s), e)| result_leaf(id, s, &effects_hash(e)))
        .collect()
}

/// Why a node refused a transaction. Every node reaches the same verdict from the same block,
/// so the reason is part of the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    BadSignature,
    UnknownCertificate,
    NotMember,
    Forbidden,
    Duplicate,
    Expired,
    ReadConflict,
    WrongChannel,
    TooLarge,
    Malformed,
    /// The chaincode failed (its own error, a trap, a bad host call, ...); the reason starts
    /// with the runtime's failure code.
    ChaincodeError,
    OutOfFuel,
    MemoryLimit,
    /// A chaincode commit without the approvals the lifecycle policy needs.
    NotApproved,
    UnknownChaincode,
    /// The signer's certificate is revoked by its organization in the configuration in force.
    Revoked,
    /// The channel, or the chaincode called, was retired by an approved proposal.
    Retired,
}

impl RejectCode {
    /// Every code, in tag order: a code's position is its canonical tag, so new codes are
    /// only ever appended.
    pub const ALL: [RejectCode; 17] = [
        RejectCode::BadSignature,
        RejectCode::UnknownCertificate,
        RejectCode::NotMember,
        RejectCode::Forbidden,
        RejectCode::Duplicate,
        RejectCode::Expired,
        RejectCode::ReadConflict,
        RejectCode::WrongChannel,
        RejectCode::TooLarge,
        RejectCode::Malformed,
        RejectCode::ChaincodeError,
        RejectCode::OutOfFuel,
        RejectCode::MemoryLimit,
        RejectCode::NotApproved,
        RejectCode::UnknownChaincode,
        RejectCode::Revoked,
        RejectCode::Retired,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            RejectCode::BadSignature => "bad_signature",
            RejectCode::UnknownCertificate => "unknown_certificate",
            RejectCode::NotMember => "not_member",
            RejectCode::Forbidden => "forbidden",
            RejectCode::Duplicate => "duplicate",
            RejectCode::Expired => "expired",
            RejectCode::ReadConflict => "read_conflict",
            RejectCode::WrongChannel => "wrong_channel",
            RejectCode::TooLarge => "too_large",
            RejectCode::Malformed => "malformed",
            RejectCode::ChaincodeError => "chaincode_error",
            RejectCode::OutOfFuel => "out_of_fuel",
            RejectCode::MemoryLimit => "memory_limit",
            RejectCode::NotApproved => "not_approved",
            RejectCode::UnknownChaincode => "unknown_chaincode",
            RejectCode::Revoked => "revoked",
            RejectCode::Retired => "retired",
        }
    }

    fn tag(&self) -> u8 {
        Self::ALL.iter().position(|c| c == self).unwrap_or(0) as u8
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxStatus {
    Committed,
    Rejected { code: RejectCode, reason: String },
}

impl TxStatus {
    pub fn is_committed(&self) -> bool {
        matches!(self, TxStatus::Committed)
    }
}

impl Encode for TxStatus {
    fn encode(&self, w: &mut Writer) {
        match self {
            TxStatus::Committed => w.u8(0),
            TxStatus::Rejected { code, reason } => {
                w.u8(1);
                w.u8(code.tag());
                w.str(reason);
            }
        }
    }
}
impl Decode for TxStatus {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("status")? {
            0 => Ok(TxStatus::Committed),
            1 => {
                let tag = r.u8("reject code")?;
                let code = *RejectCode::ALL
                    .get(tag as usize)
                    .ok_or(DecodeError::BadTag {
                        what: "reject code",
                        tag,
                    })?;
                Ok(TxStatus::Rejected {
                    code,
                    reason: r.str("reason")?,
                })
            }
            tag => Err(DecodeError::BadTag {
                what: "status",
                tag,
            }),
        }
    }
}

/// What the Raft leader orders: a batch of transactions with the leader's clock reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub timestamp_ms: u64,
    pub txs: Vec<Transaction>,
}

impl Encode for Batch {
    fn encode(&self, w: &mut Writer) {
        w.u8(1);
        w.u64(self.timestamp_ms);
        w.seq(&self.txs);
    }
}
impl Decode for Batch {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.format("batch format", 1)?;
        Ok(Batch {
            timestamp_ms: r.u64("timestamp")?,
            txs: r.seq("txs")?,
        })
    }
}

/// Length of a batch's prefix before its transaction count: format byte and timestamp.
const BATCH_PREFIX: usize = 1 + 8;

/// The bytes of a [`Batch`] made from transactions already in their canonical bytes, as the
/// leader proposes them: one allocation, each transaction copied once.
pub fn write_batch<'a>(
    timestamp_ms: u64,
    raw_txs: impl ExactSizeIterator<Item = &'a [u8]> + Clone,
) -> Vec<u8> {
    let len: usize = raw_txs.clone().map(<[u8]>::len).sum();
    let mut w = Writer::with_capacity(BATCH_PREFIX + 4 + len);
    w.u8(1);
    w.u64(timestamp_ms);
    w.u32(raw_txs.len() as u32);
    for t in raw_txs {
        w.fixed(t);
    }
    w.into_inner()
}

/// A [`Batch`] read from its bytes, each transaction kept with its canonical bytes and id.
#[derive(Debug)]
pub struct RawBatch<'a> {
    pub timestamp_ms: u64,
    pub txs: Vec<RawTx<'a>>,
    /// The transaction sequence as encoded (count, then each transaction): a block holds the
    /// same bytes, so [`write_block`] copies them in one piece.
    txs_bytes: &'a [u8],
}

impl<'a> RawBatch<'a> {
    pub fn parse(data: &'a [u8]) -> Result<RawBatch<'a>, DecodeError> {
        let mut r = Reader::new(data);
        r.format("batch format", 1)?;
        let timestamp_ms = r.u64("timestamp")?;
        let txs_bytes = r.rest();
        let n = r.u32("count")? as usize;
        // Each transaction takes more than one byte, so a count beyond the input is a lie.
        if n > r.remaining() {
            return Err(DecodeError::Truncated("txs"));
        }
        let mut txs = Vec::with_capacity(crate::codec::prealloc::<RawTx<'_>>(n));
        for _ in 0..n {
            txs.push(RawTx::read(&mut r)?);
        }
        r.finish()?;
        Ok(RawBatch {
            timestamp_ms,
            txs,
            txs_bytes,
        })
    }
}

/// The bytes of the [`Block`] that `batch` became: the header, the batch's transactions as
/// they were ordered, and what applying them gave.
pub fn write_block(
    header: &BlockHeader,
    batch: &RawBatch<'_>,
    results: &[TxStatus],
    effects: &[Option<TxEffects>],
) -> Vec<u8> {
    // Results and effects take a byte or two per transaction unless rejected or chaincode.
    let mut w = Writer::with_capacity(
        192 + header.channel.len() + batch.txs_bytes.len() + 2 * batch.txs.len(),
    );
    header.encode(&mut w);
    w.fixed(batch.txs_bytes);
    w.seq(results);
    w.seq(effects);
    w.into_inner()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<Transaction>,
    pub results: Vec<TxStatus>,
    /// Per transaction, what a committed chaincode call read, wrote, emitted and returned
    /// (`None` for every other transaction). Deterministic like `results`: every node
    /// computes the same from the same transactions and prior state.
    #[serde(default)]
    pub effects: Vec<Option<TxEffects>>,
}

impl Encode for Block {
    fn encode(&self, w: &mut Writer) {
        self.header.encode(w);
        w.seq(&self.txs);
        w.seq(&self.results);
        w.seq(&self.effects);
    }
}
impl Decode for Block {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Block {
            header: BlockHeader::decode(r)?,
            txs: r.seq("txs")?,
            results: r.seq("results")?,
            effects: r.seq("effects")?,
        })
    }
}

impl Block {
    pub fn tx_ids(&self) -> Vec<Hash> {
        self.txs.iter().map(|t| t.id()).collect()
    }
}

pub fn tx_root(ids: &[Hash]) -> Hash {
    merkle::root(ids)
}
