//! Checking a proven receipt: offline against the block hash it names, and against another
//! node's copy of that block, so that a caller need not trust the node that served it.

use super::Client;
use crate::error::ClientError;
use tally_protocol::ProvenReceipt;

/// Checks a proven receipt offline: the proof is for the receipt's transaction, the header
/// in the proof hashes to the receipt's block hash and is the receipt's block of its channel,
/// and the Merkle path leads from the transaction's outcome (id, status, effects) to the
/// header's results root, with the status and effects the receipt states. A receipt of a
/// rejected transaction thus proves "rejected": its status cannot be swapped for another.
///
/// This shows that the node that signed nothing but served the receipt could not have made
/// the inclusion up *given* the block hash; to trust the block hash itself, compare it with
/// another node ([`Client::cross_check_receipt`]) or with a copy of the chain.
pub fn verify_receipt(proven: &ProvenReceipt) -> Result<(), ClientError> {
    let r = &proven.receipt;
    let h = &proven.proof.header;
    if h.number != r.block {
        return Err(ClientError::Proof(format!(
            "the proof's header is block {} but the receipt names block {}",
            h.number, r.block
        )));
    }
    if h.channel != r.channel {
        return Err(ClientError::Proof(format!(
            "the proof's header is of channel {:?} but the receipt names {:?}",
            h.channel, r.channel
        )));
    }
    proven
        .verify(&r.block_hash)
        .map(|_| ())
        .map_err(|e| ClientError::Proof(e.to_string()))
}

impl Client {
    /// Fetches the receipt's block header from this node and checks that it hashes to the
    /// receipt's block hash, then checks the proof against it. Use a node other than the one
    /// that served the receipt, ideally of another organization.
    pub async fn cross_check_receipt(&self, proven: &ProvenReceipt) -> Result<(), ClientError> {
        verify_receipt(proven)?;
        let r = &proven.receipt;
        let block = self.block(&r.channel, Some(r.block)).await?;
        let hash = block.header.hash();
        if hash != r.block_hash {
            return Err(ClientError::Proof(format!(
                "{} has block {} with hash {hash}, the receipt says {}",
                self.url(),
                r.block,
                r.block_hash
            )));
        }
        proven
            .verify(&hash)
            .map(|_| ())
            .map_err(|e| ClientError::Proof(e.to_string()))
    }
}
