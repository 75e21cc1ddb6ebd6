//! Proposals on the ledger (see `tally_protocol::proposal`): recording a proposal, counting
//! the approvals and rejections that admin organizations send, and installing the change in
//! the block where the channel's admin majority is met. Records live in world state under
//! `_governance/`, so they are covered by the state commitment and travel with snapshots;
//! what each transaction decided is also in its block, as effects.

use super::chaincode::At;
use super::{corrupt, InForce, Ledger, LedgerError, Scratch};
use rocksdb::{Direction, IteratorMode, WriteBatch};
use std::collections::HashMap;
use tally_protocol::codec::{Decode, Encode};
use tally_protocol::config_update::check_transition;
use tally_protocol::identity::cert_hash;
use tally_protocol::proposal::{
    self, Change, Decision, Installed, Now, Proposal, ProposalView, Record, Vote, VoteError,
    MAX_DESCRIPTION, MAX_TTL_MS,
};
use tally_protocol::state::StateDigest;
use tally_protocol::{Hash, Payload, RejectCode, Signer, Transaction, TxStatus};

type Reject = (RejectCode, String);

fn reject(code: RejectCode, reason: impl Into<String>) -> TxStatus {
    TxStatus::Rejected {
        code,
        reason: reason.into(),
    }
}

fn vote_reject(e: VoteError) -> TxStatus {
    let code = match &e {
        VoteError::Closed(..) | VoteError::Stale { .. } => RejectCode::ReadConflict,
        VoteError::Expired { .. } => RejectCode::Expired,
        VoteError::NotEligible(_) => RejectCode::Forbidden,
        VoteError::AlreadyVoted(..) => RejectCode::Duplicate,
    };
    reject(code, e.to_string())
}

impl Ledger {
    /// Checks of governance payloads that need no state (also run at submission).
    pub(super) fn governance_static_checks(&self, p: &Payload) -> Result<(), Reject> {
        let Payload::Propose(p) = p else {
            return Ok(());
        };
        if p.channel != self.name {
            return Err((
                RejectCode::WrongChannel,
                format!(
                    "the proposal is for channel {:?}, not {:?}",
                    p.channel, self.name
                ),
            ));
        }
        if p.description.len() > MAX_DESCRIPTION {
            return Err((
                RejectCode::Malformed,
                format!("the proposal's description is longer than {MAX_DESCRIPTION} bytes"),
            ));
        }
        match &p.change {
            Change::Config(next) if next.name != self.name => Err((
                RejectCode::Malformed,
                format!(
                    "the proposed configuration is for channel {:?}, not {:?}",
                    next.name, self.name
                ),
            )),
            Change::Config(_) => Ok(()),
        }
    }

    /// The proposal with this hash as of the block's earlier transactions.
    fn record_at(&self, hash: &Hash, scratch: &Scratch) -> Result<Option<Record>, LedgerError> {
        match self.read_state(&proposal::key(hash), &scratch.overlay)? {
            Some((_, b)) => Record::from_bytes(&b)
                .map(Some)
                .map_err(|e| corrupt("proposal record", e)),
            None => Ok(None),
        }
    }

    /// Applies a proposal, an approval or a rejection signed by an admin (the caller checked
    /// the signature and the role).
    pub(super) fn apply_governance(
        &self,
        tx: &Transaction,
        at: &At<'_>,
        scratch: &mut Scratch,
        digest: &mut StateDigest,
        wb: &mut WriteBatch,
    ) -> Result<TxStatus, LedgerError> {
        // A configuration installed earlier in the block is the one votes are counted on.
        let current = scratch.config.clone().unwrap_or_else(|| self.in_force());
        let now = Now {
            sequence: current.sequence,
            config_hash: &current.hash,
            block_ts_ms: at.block_ts,
        };
        let vote = Vote {
            org: at.info.org.clone(),
            cert_hash: match &tx.body.signer {
                Signer::Certificate(der) => cert_hash(der),
                Signer::CertHash(h) => *h,
            },
            subject: if at.info.common_name.is_empty() {
                at.info.subject.clone()
            } else {
                at.info.common_name.clone()
            },
            block: at.version.block,
            tx_id: at.tx_id,
        };
        let (record, decision) = match &tx.body.payload {
            Payload::Propose(p) => match self.open_proposal(p, vote, &current, now, scratch)? {
                Ok(x) => x,
                Err(rejected) => return Ok(rejected),
            },
            Payload::ProposalApprove { hash } | Payload::ProposalReject { hash } => {
                let Some(mut record) = self.record_at(hash, scratch)? else {
                    return Ok(reject(
                        RejectCode::Malformed,
                        format!("no proposal {hash} on channel {}", self.name),
                    ));
                };
                let approve = matches!(tx.body.payload, Payload::ProposalApprove { .. });
                match record.vote(vote, approve, now) {
                    Ok(d) => (record, d),
                    Err(e) => return Ok(vote_reject(e)),
                }
            }
            _ => {
                return Ok(reject(
                    RejectCode::Malformed,
                    "not a governance transaction",
                ))
            }
        };
        let mut installed = None;
        if decision == Decision::Met {
            let Change::Config(next) = &record.proposal.change;
            // Checked when proposed against the same base; checked again so that nothing but
            // a valid transition is ever installed.
            if let Err(e) = check_transition(&current.config, next) {
                return Ok(reject(RejectCode::Malformed, e.to_string()));
            }
            let sequence = record.proposal.base_sequence + 1;
            match InForce::new(sequence, (**next).clone()) {
                Ok(in_force) => scratch.config = Some(in_force),
                Err(e) => return Ok(reject(RejectCode::Malformed, e.to_string())),
            }
            installed = Some(Installed {
                sequence,
                config: (**next).clone(),
            });
        }
        self.write_key(
            &proposal::key(&record.hash),
            Some(&record.to_bytes()),
            at.version,
            &at.tx_id,
            at.block_ts,
            &mut scratch.overlay,
            digest,
            wb,
        )?;
        scratch.effects = Some(proposal::effects(
            &record.hash,
            &record.outcome,
            installed.as_ref(),
        ));
        Ok(TxStatus::Committed)
    }

    /// A new proposal's record, or why it is refused.
    fn open_proposal(
        &self,
        p: &Proposal,
        proposer: Vote,
        current: &InForce,
        now: Now<'_>,
        scratch: &Scratch,
    ) -> Result<Result<(Record, Decision), TxStatus>, LedgerError> {
        let hash = p.hash();
        if self.record_at(&hash, scratch)?.is_some() {
            return Ok(Err(reject(
                RejectCode::Duplicate,
                format!("proposal {hash} was already made; approve it instead"),
            )));
        }
        if p.expires_at_ms > now.block_ts_ms.saturating_add(MAX_TTL_MS) {
            return Ok(Err(reject(
                RejectCode::Malformed,
                format!(
                    "the proposal expires more than {} days after the block time",
                    MAX_TTL_MS / 86_400_000
                ),
            )));
        }
        let Change::Config(next) = &p.change;
        if p.base_sequence == current.sequence && p.base == current.hash {
            if let Err(e) = check_transition(&current.config, next) {
                return Ok(Err(reject(RejectCode::Malformed, e.to_string())));
            }
        }
        let eligible = current.config.admin_orgs();
        let needed = current.config.approvals_needed();
        Ok(Record::open(p.clone(), proposer, eligible, needed, now).map_err(vote_reject))
    }

    /// Every proposal of the channel, oldest first, with its status as of the last block.
    pub fn proposals(&self, limit: usize) -> Result<Vec<ProposalView>, LedgerError> {
        let start = self
            .keys
            .state(&format!("{}proposals/", proposal::GOVERNANCE_PREFIX));
        let mut records = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(&start) {
                break;
            }
            let (_, value) = super::decode_state(&v)?;
            records.push(Record::from_bytes(&value).map_err(|e| corrupt("proposal record", e))?);
        }
        records.sort_by_key(|r| (r.proposer.block, r.hash));
        let skip = records.len().saturating_sub(limit);
        Ok(records
            .into_iter()
            .skip(skip)
            .map(|r| self.view(r))
            .collect())
    }

    /// The proposal with this hash, with its status as of the last block.
    pub fn proposal(&self, hash: &Hash) -> Result<Option<ProposalView>, LedgerError> {
        match self.read_state(&proposal::key(hash), &HashMap::new())? {
            Some((_, b)) => {
                let r = Record::from_bytes(&b).map_err(|e| corrupt("proposal record", e))?;
                Ok(Some(self.view(r)))
            }
            None => Ok(None),
        }
    }

    fn view(&self, r: Record) -> ProposalView {
        let in_force = self.in_force();
        let now = Now {
            sequence: in_force.sequence,
            config_hash: &in_force.hash,
            block_ts_ms: self.tip().timestamp_ms,
        };
        ProposalView::new(r, now, &in_force.config)
    }
}
