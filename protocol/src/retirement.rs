//! Retirement of a chaincode or of a whole channel, decided by an approved proposal
//! ([`crate::proposal::Change::RetireChaincode`], [`crate::proposal::Change::RetireChannel`]).
//!
//! A retirement is recorded in world state, so it is covered by the state commitment and
//! travels with snapshots; every node refuses what it forbids at apply time, whatever a
//! leader puts in a block. Nothing is deleted from the ledger: a retired chaincode's keys and
//! a retired channel's blocks stay readable and provable.

use crate::chaincode::LIFECYCLE_PREFIX;
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::Hash;
use crate::proposal::GOVERNANCE_PREFIX;
use serde::{Deserialize, Serialize};

/// The world-state key of a channel's retirement.
pub fn channel_key() -> String {
    format!("{GOVERNANCE_PREFIX}retired")
}

/// The world-state key of chaincode `name`'s retirement.
pub fn chaincode_key(name: &str) -> String {
    format!("{LIFECYCLE_PREFIX}{name}/retired")
}

/// The event a governance transaction leaves in its block when it retired a chaincode; the
/// payload is an encoded [`Retirement`] and the chaincode's name.
pub const CHAINCODE_RETIRED: &str = "chaincode_retired";
/// The event of a governance transaction that retired the channel (payload: [`Retirement`]).
pub const CHANNEL_RETIRED: &str = "channel_retired";

/// What was retired, where and by which proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    /// For a chaincode, the sequence of the definition retired (a later definition makes the
    /// name callable again); for a channel, the configuration sequence in force.
    pub sequence: u64,
    /// The block whose transaction met the policy; the retirement holds from the next
    /// transaction on.
    pub block: u64,
    pub proposal: Hash,
}

impl Encode for Retirement {
    fn encode(&self, w: &mut Writer) {
        w.u8(1); // format version
        w.u64(self.sequence);
        w.u64(self.block);
        self.proposal.encode(w);
    }
}
impl Decode for Retirement {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.format("retirement format", 1)?;
        Ok(Retirement {
            sequence: r.u64("retirement.sequence")?,
            block: r.u64("retirement.block")?,
            proposal: Hash::decode(r)?,
        })
    }
}

/// Why a transaction on a retired channel is refused.
pub fn channel_refusal(channel: &str, r: &Retirement) -> String {
    format!(
        "channel {channel} was retired at block {} (proposal {}); it takes no new transactions, and its blocks and keys stay readable",
        r.block, r.proposal
    )
}

/// Why a call of a retired chaincode is refused.
pub fn chaincode_refusal(name: &str, r: &Retirement) -> String {
    format!(
        "chaincode {name} sequence {} was retired at block {} (proposal {}); its state stays readable, and only a new approved definition makes it callable again",
        r.sequence, r.block, r.proposal
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retirements_round_trip_and_keys_stay_in_their_prefixes() {
        let r = Retirement {
            sequence: 3,
            block: 17,
            proposal: Hash([4; 32]),
        };
        assert_eq!(Retirement::from_bytes(&r.to_bytes()).unwrap(), r);
        assert!(chaincode_key("notary").starts_with(LIFECYCLE_PREFIX));
        assert!(channel_key().starts_with(GOVERNANCE_PREFIX));
        assert!(chaincode_refusal("notary", &r).contains("block 17"));
        assert!(channel_refusal("ch", &r).contains("retired at block 17"));
    }
}
