//! Tally's wire and ledger formats, shared by the node, the client and the operator.
//!
//! Everything hashed or signed has one canonical binary encoding ([`codec`]); JSON appears only
//! at the human-facing HTTP edge, through the serde derives.

pub mod api;
pub mod block;
pub mod chaincode;
pub mod codec;
pub mod config;
pub mod config_update;
pub mod genesis;
pub mod hash;
pub mod hosts;
pub mod identity;
pub mod merkle;
pub mod org_trust;
pub mod proposal;
pub mod read_auth;
pub mod receipt;
pub mod retirement;
pub mod sig;
pub mod snapshot;
pub mod state;
pub mod tx;

pub use block::{
    write_batch, write_block, Batch, Block, BlockHeader, RawBatch, RejectCode, TxStatus,
};
pub use chaincode::{ChaincodeDefinition, ChaincodeEvent, InitCall, TxEffects};
pub use codec::{Decode, DecodeError, Encode};
pub use config::{BatchConfig, ChannelConfig, NodeRef, OrgMember, Policies};
pub use config_update::{Approval, ConfigUpdate, UpdateError};
pub use hash::Hash;
pub use identity::{CertInfo, Identity, OrgCa, Role, TrustedCa};
pub use proposal::{Change, Proposal, ProposalView};
pub use receipt::{InclusionProof, ProvenReceipt, Receipt};
pub use tx::{Payload, RawTx, ReadCheck, Signer, Transaction, TxBody, Version, Write};

/// Current time in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
