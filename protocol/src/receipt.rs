//! Receipts and inclusion proofs a third party can check offline.

use crate::block::{BlockHeader, TxStatus};
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

/// Links a transaction id to a block header through the header's transaction root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub tx_id: Hash,
    pub header: BlockHeader,
    pub merkle: MerkleProof,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("the Merkle path does not lead from the transaction to the block's transaction root")]
    BadPath,
    #[error("the header does not hash to the expected block hash")]
    WrongHeader,
    #[error("the proof is for another transaction")]
    WrongTx,
}

impl InclusionProof {
    /// Checks the proof; `trusted_block_hash` is the block hash the verifier trusts (from a
    /// receipt, another node, or its own copy of the chain).
    pub fn verify(&self, tx_id: &Hash, trusted_block_hash: &Hash) -> Result<(), ProofError> {
        if self.tx_id != *tx_id {
            return Err(ProofError::WrongTx);
        }
        if self.header.hash() != *trusted_block_hash {
            return Err(ProofError::WrongHeader);
        }
        if !merkle::verify(tx_id, &self.merkle, &self.header.tx_root) {
            return Err(ProofError::BadPath);
        }
        Ok(())
    }
}

/// A receipt together with its proof, as the node's API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenReceipt {
    pub receipt: Receipt,
    pub proof: InclusionProof,
}
