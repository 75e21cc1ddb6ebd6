//! Receipts and inclusion proofs a third party can check offline.

use crate::block::{effects_hash, result_leaf, BlockHeader, TxStatus};
use crate::hash::Hash;
use crate::merkle::{self, MerkleProof};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub tx_id: Hash,
    pub channel: String,
    pub block: u64,
    pub index: u32,
    #[serde(flatten)]
    pub status: TxStatus,
    pub block_hash: Hash,
    /// What a committed chaincode call did (its result, events, reads and writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effects: Option<Box<crate::chaincode::TxEffects>>,
}

/// Links a transaction's outcome to a block header through the header's results root: the
/// transaction id, the status every node gave it and the hash of its effects. A proof of a
/// rejected transaction proves "rejected", never "committed".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub tx_id: Hash,
    pub header: BlockHeader,
    /// The status the proof is for; part of the proven leaf.
    pub status: TxStatus,
    /// Hash of the transaction's effects ([`crate::block::effects_hash`]); part of the leaf.
    pub effects_hash: Hash,
    /// Path from the leaf to the header's `results_root`.
    pub merkle: MerkleProof,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error(
        "the Merkle path does not lead from the transaction's outcome to the block's results root"
    )]
    BadPath,
    #[error("the header does not hash to the expected block hash")]
    WrongHeader,
    #[error("the proof is for another transaction")]
    WrongTx,
    #[error("the receipt's status or effects are not the ones the proof proves")]
    WrongOutcome,
}

impl InclusionProof {
    /// Checks the proof; `trusted_block_hash` is the block hash the verifier trusts (from a
    /// receipt, another node, or its own copy of the chain). Returns the proven status: a
    /// caller that needs "committed" must look at it.
    pub fn verify(&self, tx_id: &Hash, trusted_block_hash: &Hash) -> Result<&TxStatus, ProofError> {
        if self.tx_id != *tx_id {
            return Err(ProofError::WrongTx);
        }
        if self.header.hash() != *trusted_block_hash {
            return Err(ProofError::WrongHeader);
        }
        let leaf = result_leaf(tx_id, &self.status, &self.effects_hash);
        if !merkle::verify(&leaf, &self.merkle, &self.header.results_root) {
            return Err(ProofError::BadPath);
        }
        Ok(&self.status)
    }
}

/// A receipt together with its proof, as the node's API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenReceipt {
    pub receipt: Receipt,
    pub proof: InclusionProof,
}

impl ProvenReceipt {
    /// Checks the proof against `trusted_block_hash` and that the receipt says what the proof
    /// proves: the same transaction, status and effects.
    pub fn verify(&self, trusted_block_hash: &Hash) -> Result<&TxStatus, ProofError> {
        let r = &self.receipt;
        let status = self.proof.verify(&r.tx_id, trusted_block_hash)?;
        let effects = r.effects.as_deref().cloned();
        if *status != r.status || effects_hash(&effects) != self.proof.effects_hash {
            return Err(ProofError::WrongOutcome);
        }
        Ok(status)
    }
}
