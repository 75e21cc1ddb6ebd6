//! Retirement of the channel and of chaincodes (see `tally_protocol::retirement`): the
//! records an approved proposal writes, and the refusals every node derives from them at
//! submission and at apply.

use super::{corrupt, Ledger, LedgerError, Scratch};
use std::collections::HashMap;
use tally_protocol::chaincode::ChaincodeDefinition;
use tally_protocol::codec::Decode;
use tally_protocol::retirement::{self, Retirement};
use tally_protocol::RejectCode;

type Reject = (RejectCode, String);

impl Ledger {
    /// The channel's retirement, if an applied block retired it.
    pub fn retired(&self) -> Option<Retirement> {
        *self.retired.read()
    }

    /// Makes a retirement that a written block applied the one nodes refuse by.
    pub fn install_retirement(&self, r: Retirement) {
        *self.retired.write() = Some(r);
    }

    /// Reads the channel's retirement from state (at open, after a snapshot install).
    pub(super) fn reload_retirement(&self) -> Result<(), LedgerError> {
        let r = match self.read_state(&retirement::channel_key(), &HashMap::new())? {
            Some((_, b)) => {
                Some(Retirement::from_bytes(&b).map_err(|e| corrupt("channel retirement", e))?)
            }
            None => None,
        };
        *self.retired.write() = r;
        Ok(())
    }

    /// Refuses every transaction once the channel is retired (`in_block`: retired by an
    /// earlier transaction of the block being applied).
    pub(super) fn refuse_if_retired(&self, in_block: Option<&Retirement>) -> Result<(), Reject> {
        match in_block.copied().or_else(|| self.retired()) {
            Some(r) => Err((
                RejectCode::Retired,
                retirement::channel_refusal(&self.name, &r),
            )),
            None => Ok(()),
        }
    }

    /// The retirement of chaincode `name`, as of the block's earlier transactions.
    pub(super) fn chaincode_retirement(
        &self,
        name: &str,
        scratch: Option<&Scratch>,
    ) -> Result<Option<Retirement>, LedgerError> {
        let none = HashMap::new();
        let overlay = scratch.map_or(&none, |s| &s.overlay);
        match self.read_state(&retirement::chaincode_key(name), overlay)? {
            Some((_, b)) => Retirement::from_bytes(&b)
                .map(Some)
                .map_err(|e| corrupt("chaincode retirement", e)),
            None => Ok(None),
        }
    }

    /// Refuses a call of `def` when that very definition was retired; a later definition
    /// (a higher sequence, approved and committed as any) is callable again.
    pub(super) fn refuse_retired_call(
        &self,
        def: &ChaincodeDefinition,
        scratch: Option<&Scratch>,
    ) -> Result<Result<(), Reject>, LedgerError> {
        Ok(match self.chaincode_retirement(&def.name, scratch)? {
            Some(r) if r.sequence == def.sequence => Err((
                RejectCode::Retired,
                retirement::chaincode_refusal(&def.name, &r),
            )),
            _ => Ok(()),
        })
    }

    /// Why chaincode `name` sequence `sequence` cannot be retired now, if it cannot: only the
    /// active definition, and only once.
    pub(super) fn why_not_retirable(
        &self,
        name: &str,
        sequence: u64,
        scratch: &Scratch,
    ) -> Result<Option<String>, LedgerError> {
        let Some(active) = self.active_definition(name, scratch)? else {
            return Ok(Some(format!(
                "chaincode {name} has no committed definition on channel {}",
                self.name
            )));
        };
        if active.sequence != sequence {
            return Ok(Some(format!(
                "chaincode {name}'s active definition is sequence {}, not {sequence}",
                active.sequence
            )));
        }
        if let Some(r) = self.chaincode_retirement(name, Some(scratch))? {
            if r.sequence == sequence {
                return Ok(Some(retirement::chaincode_refusal(name, &r)));
            }
        }
        Ok(None)
    }
}
