//! Governance by proposals on the ledger: a change that needs approvals (the channel's admin
//! majority, its membership rule, or its chaincode rule for a chaincode definition; see
//! [`Change::voters`]) is first recorded as a proposal (its exact content and hash, who
//! proposed it, the configuration it applies to and an expiry), then each organization that
//! votes on it approves or rejects it with a transaction of its own, signed from its own keys,
//! whenever and wherever it holds them. Every node counts the votes at apply time with
//! [`Record::vote`], so the change applies in the block where the policy becomes met, on
//! every node alike, and never otherwise.
//!
//! The one-transaction [`crate::ConfigUpdate`] (all approvals attached) stays: it is the same
//! policy decided at once, for whoever holds every admin key (the operator with custody, the
//! local mode). A change applied either way moves the configuration sequence, so every other
//! open proposal on the old base becomes stale.

use crate::chaincode::{ChaincodeDefinition, ChaincodeEvent, TxEffects};
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::config::ChannelConfig;
use crate::hash::Hash;
use crate::tx::{Payload, Transaction};
use crate::TxStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use thiserror::Error;

/// World-state keys of proposals start with this; only governance transactions write there.
pub const GOVERNANCE_PREFIX: &str = "_governance/";

/// The `chaincode` field of the effects a governance transaction leaves in its block. Not a
/// valid chaincode name (those start with a letter), so no contract can forge it.
pub const GOVERNANCE_EFFECTS: &str = "_governance";

/// The event of a governance transaction that installed a configuration; its payload is an
/// encoded [`Installed`]. Block readers (snapshot checks, a node finding when it was added)
/// learn configuration changes from it as from a committed `Payload::Config`.
pub const CONFIG_INSTALLED: &str = "config_installed";

/// Longest a proposal may stay open, in block time.
pub const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 1024;

/// The world-state key of the proposal with this hash.
pub fn key(hash: &Hash) -> String {
    format!("{GOVERNANCE_PREFIX}proposals/{}", hash.to_hex())
}

/// What a proposal changes. Tags are only ever appended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Replace the channel configuration with this one (members, consenters, observers,
    /// policies, batch and limits).
    Config(Box<ChannelConfig>),
    /// Make this definition the active one of its chaincode, exactly as a `ChaincodeCommit`
    /// would (init call included). Its module must already be installed under the same
    /// name, sequence and definition, and its sequence must be the next one. Decided by the
    /// channel's chaincode rule (`policies.chaincode`) over the member organizations, not by
    /// the admin majority.
    DefineChaincode(ChaincodeDefinition),
    // Tag 2 is kept for certificate revocations (the revocation list lives in the channel
    // configuration; see the `revoke` work), decided by the same votes.
    /// Retire the active definition `sequence` of chaincode `name`: calls are refused from
    /// then on, its state stays readable, and only a later approved definition (a higher
    /// sequence) makes the name callable again. See [`crate::retirement`].
    RetireChaincode { name: String, sequence: u64 },
    /// Retire the whole channel: every node refuses new transactions on it from then on and
    /// keeps serving reads; its nodes may then leave it (delete its data).
    RetireChannel,
}

impl Change {
    /// Whether applying the change installs a new configuration (and so moves the
    /// configuration sequence, making other open proposals stale).
    pub fn is_config(&self) -> bool {
        matches!(self, Change::Config(_))
    }

    /// Who votes on the change under `current` (the configuration in force) and how many
    /// of them must approve: a chaincode definition is decided by the members under the
    /// chaincode rule; a membership change by the admin organizations under the membership
    /// rule; anything else by a majority of the admin organizations.
    pub fn voters(&self, current: &ChannelConfig) -> (Vec<String>, usize) {
        match self {
            Change::DefineChaincode(_) => (
                current.chaincode_orgs(),
                current.chaincode_approvals_needed(),
            ),
            Change::Config(next) => (current.admin_orgs(), current.approvals_needed_for(next)),
            Change::RetireChaincode { .. } | Change::RetireChannel => {
                (current.admin_orgs(), current.approvals_needed())
            }
        }
    }

    /// Organizations whose own approval the change needs besides the count: the members
    /// whose CAs a configuration change replaces ([`crate::config_update::own_approval_needed`]).
    pub fn required(&self, current: &ChannelConfig) -> Vec<String> {
        match self {
            Change::Config(next) => crate::config_update::own_approval_needed(current, next),
            _ => Vec::new(),
        }
    }

    /// A one-line summary for people.
    pub fn summary(&self) -> String {
        match self {
            Change::Config(_) => "configuration change".into(),
            Change::DefineChaincode(d) => format!(
                "define chaincode {} version {} as sequence {} (module sha256 {}{})",
                d.name,
                d.version,
                d.sequence,
                d.module_hash,
                match &d.init {
                    Some(i) => format!(", init call {}", i.function),
                    None => String::new(),
                }
            ),
            Change::RetireChaincode { name, sequence } => {
                format!("retire chaincode {name} (definition sequence {sequence})")
            }
            Change::RetireChannel => "retire the channel".into(),
        }
    }
}

impl Encode for Change {
    fn encode(&self, w: &mut Writer) {
        match self {
            Change::Config(c) => {
                w.u8(0);
                c.encode(w);
            }
            Change::DefineChaincode(d) => {
                w.u8(1);
                d.encode(w);
            }
            Change::RetireChaincode { name, sequence } => {
                w.u8(3);
                w.str(name);
                w.u64(*sequence);
            }
            Change::RetireChannel => w.u8(4),
        }
    }
}
impl Decode for Change {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("change")? {
            0 => Ok(Change::Config(Box::new(ChannelConfig::decode(r)?))),
            1 => Ok(Change::DefineChaincode(ChaincodeDefinition::decode(r)?)),
            3 => Ok(Change::RetireChaincode {
                name: r.str("change.chaincode")?,
                sequence: r.u64("change.sequence")?,
            }),
            4 => Ok(Change::RetireChannel),
            tag => Err(DecodeError::BadTag {
                what: "change",
                tag,
            }),
        }
    }
}

/// A proposed change, exactly as proposed; its [`Proposal::hash`] names it in votes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub channel: String,
    /// How many configuration changes the channel had made when this was proposed, and the
    /// hash of the configuration then in force: the proposal applies to that one only.
    pub base_sequence: u64,
    pub base: Hash,
    /// Block time (Unix milliseconds) after which the proposal can no longer apply.
    pub expires_at_ms: u64,
    /// Why, for the people who review it.
    #[serde(default)]
    pub description: String,
    pub change: Change,
}

impl Proposal {
    /// A configuration change from `current` (in force after `sequence` changes) to `next`.
    pub fn config(
        current: &ChannelConfig,
        sequence: u64,
        next: ChannelConfig,
        expires_at_ms: u64,
        description: &str,
    ) -> Proposal {
        Self::other(
            current,
            sequence,
            Change::Config(Box::new(next)),
            expires_at_ms,
            description,
        )
    }

    /// Any change decided by the admins of the configuration in force (after `sequence`
    /// changes); it is stale once that moves.
    pub fn other(
        current: &ChannelConfig,
        sequence: u64,
        change: Change,
        expires_at_ms: u64,
        description: &str,
    ) -> Proposal {
        Proposal {
            channel: current.name.clone(),
            base_sequence: sequence,
            base: current.hash(),
            expires_at_ms,
            description: description.to_string(),
            change,
        }
    }

    pub fn hash(&self) -> Hash {
        Hash::tagged(b"tally-proposal", &[&self.to_bytes()])
    }
}

impl Encode for Proposal {
    fn encode(&self, w: &mut Writer) {
        w.u8(1); // format version
        w.str(&self.channel);
        w.u64(self.base_sequence);
        self.base.encode(w);
        w.u64(self.expires_at_ms);
        w.str(&self.description);
        self.change.encode(w);
    }
}
impl Decode for Proposal {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.format("proposal format", 1)?;
        Ok(Proposal {
            channel: r.str("proposal.channel")?,
            base_sequence: r.u64("proposal.base_sequence")?,
            base: Hash::decode(r)?,
            expires_at_ms: r.u64("proposal.expires_at")?,
            description: r.str("proposal.description")?,
            change: Change::decode(r)?,
        })
    }
}

/// One organization's vote (or the proposal itself, which is its proposer's approval), as
/// the ledger recorded it: who signed and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub org: String,
    /// Hash of the signing admin's certificate.
    pub cert_hash: Hash,
    /// The certificate's subject (common name), for people.
    pub subject: String,
    pub block: u64,
    pub tx_id: Hash,
}

impl Encode for Vote {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.org);
        self.cert_hash.encode(w);
        w.str(&self.subject);
        w.u64(self.block);
        self.tx_id.encode(w);
    }
}
impl Decode for Vote {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Vote {
            org: r.str("vote.org")?,
            cert_hash: Hash::decode(r)?,
            subject: r.str("vote.subject")?,
            block: r.u64("vote.block")?,
            tx_id: Hash::decode(r)?,
        })
    }
}

/// What the ledger has decided about a proposal. Expired and stale are not stored: they
/// follow from block time and the configuration in force (see [`Record::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Open,
    /// Applied in `block`; `sequence` is the configuration sequence in force after it (one
    /// more than the base for a configuration change, the base itself for a retirement).
    Applied {
        block: u64,
        sequence: u64,
    },
    /// Rejected by so many organizations in `block` that the policy could no longer be met.
    Rejected {
        block: u64,
    },
}

impl Encode for Outcome {
    fn encode(&self, w: &mut Writer) {
        match self {
            Outcome::Open => w.u8(0),
            Outcome::Applied { block, sequence } => {
                w.u8(1);
                w.u64(*block);
                w.u64(*sequence);
            }
            Outcome::Rejected { block } => {
                w.u8(2);
                w.u64(*block);
            }
        }
    }
}
impl Decode for Outcome {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("outcome")? {
            0 => Ok(Outcome::Open),
            1 => Ok(Outcome::Applied {
                block: r.u64("outcome.block")?,
                sequence: r.u64("outcome.sequence")?,
            }),
            2 => Ok(Outcome::Rejected {
                block: r.u64("outcome.block")?,
            }),
            tag => Err(DecodeError::BadTag {
                what: "outcome",
                tag,
            }),
        }
    }
}

/// A proposal as world state keeps it under [`key`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub hash: Hash,
    pub proposal: Proposal,
    pub proposer: Vote,
    /// Block time of the block that recorded it.
    pub proposed_at_ms: u64,
    /// Organizations of the base configuration that vote ([`Change::voters`]: the admin
    /// organizations, or the members for a chaincode definition), and how many must approve:
    /// fixed for the proposal's life, since it can only apply while its base is in force.
    pub eligible: Vec<String>,
    pub needed: u32,
    /// Organizations whose own approval the change needs besides the count: each member
    /// that stays but whose CAs the change replaces ([`crate::config_update::own_approval_needed`]).
    /// They vote even when they are not admin organizations; their approval counts towards
    /// `needed` only if they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<String>,
    /// Approvals in ledger order; the proposer's comes first.
    pub approvals: Vec<Vote>,
    pub rejections: Vec<Vote>,
    pub outcome: Outcome,
}

impl Encode for Record {
    fn encode(&self, w: &mut Writer) {
        // Format 2 only when some organization's own approval is required, so that every
        // other record keeps the bytes (and the state commitment) it always had.
        w.u8(if self.required.is_empty() { 1 } else { 2 });
        self.hash.encode(w);
        self.proposal.encode(w);
        self.proposer.encode(w);
        w.u64(self.proposed_at_ms);
        w.seq(&self.eligible);
        w.u32(self.needed);
        w.seq(&self.approvals);
        w.seq(&self.rejections);
        self.outcome.encode(w);
        if !self.required.is_empty() {
            w.seq(&self.required);
        }
    }
}
impl Decode for Record {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let format = match r.u8("proposal record format")? {
            f @ (1 | 2) => f,
            tag => {
                return Err(DecodeError::BadTag {
                    what: "proposal record format",
                    tag,
                })
            }
        };
        let mut record = Record {
            hash: Hash::decode(r)?,
            proposal: Proposal::decode(r)?,
            proposer: Vote::decode(r)?,
            proposed_at_ms: r.u64("record.proposed_at")?,
            eligible: r.seq("record.eligible")?,
            needed: r.u32("record.needed")?,
            required: Vec::new(),
            approvals: r.seq("record.approvals")?,
            rejections: r.seq("record.rejections")?,
            outcome: Outcome::decode(r)?,
        };
        if format == 2 {
            record.required = r.seq("record.required")?;
            if record.required.is_empty() {
                return Err(DecodeError::BadTag {
                    what: "proposal record format (2 without required organizations)",
                    tag: 2,
                });
            }
        }
        Ok(record)
    }
}

/// Where the votes stand, counted once per eligible organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub eligible: Vec<String>,
    /// Organizations that must approve, besides the count (see [`Record::required`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<String>,
    pub needed: usize,
    /// Eligible organizations that approved, in name order.
    pub approved: Vec<String>,
    /// Eligible organizations that rejected (and had not approved first).
    pub rejected: Vec<String>,
    /// Eligible organizations that have not voted.
    pub missing: Vec<String>,
}

/// What the votes decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Undecided,
    /// Enough organizations approved: the change applies.
    Met,
    /// So many rejected that the rest can no longer make the policy: the proposal closes.
    Defeated,
}

/// Counts `approvals` and `rejections` among `eligible`: an organization counts once (its
/// first vote), and a vote from outside `eligible` not at all.
pub fn tally(
    eligible: &[String],
    required: &[String],
    needed: usize,
    approvals: &[Vote],
    rejections: &[Vote],
) -> Tally {
    let eligible_set: BTreeSet<&str> = eligible.iter().map(String::as_str).collect();
    let required_set: BTreeSet<&str> = required.iter().map(String::as_str).collect();
    let voters: BTreeSet<&str> = eligible_set.union(&required_set).copied().collect();
    let approved: BTreeSet<&str> = approvals
        .iter()
        .map(|v| v.org.as_str())
        .filter(|o| voters.contains(o))
        .collect();
    let rejected: BTreeSet<&str> = rejections
        .iter()
        .map(|v| v.org.as_str())
        .filter(|o| voters.contains(o) && !approved.contains(o))
        .collect();
    let missing = voters
        .iter()
        .filter(|o| !approved.contains(*o) && !rejected.contains(*o))
        .map(|o| o.to_string())
        .collect();
    Tally {
        eligible: eligible_set.iter().map(|o| o.to_string()).collect(),
        required: required_set.iter().map(|o| o.to_string()).collect(),
        needed,
        approved: approved.iter().map(|o| o.to_string()).collect(),
        rejected: rejected.iter().map(|o| o.to_string()).collect(),
        missing,
    }
}

impl Tally {
    pub fn decision(&self) -> Decision {
        let counted = |set: &[String]| set.iter().filter(|o| self.eligible.contains(o)).count();
        let required_approved = self.required.iter().all(|o| self.approved.contains(o));
        let required_rejected = self.required.iter().any(|o| self.rejected.contains(o));
        if counted(&self.approved) >= self.needed && required_approved {
            Decision::Met
        } else if required_rejected || self.eligible.len() - counted(&self.rejected) < self.needed {
            Decision::Defeated
        } else {
            Decision::Undecided
        }
    }
}

/// How a proposal stands for people and tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Applied,
    Rejected,
    /// Still open on the ledger, but past its expiry: it can no longer apply.
    Expired,
    /// Still open on the ledger, but the configuration it applies to is no longer in force.
    Stale,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Applied => "applied",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Stale => "stale",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The configuration in force and the block time a vote is decided against.
#[derive(Clone, Copy, Debug)]
pub struct Now<'a> {
    pub sequence: u64,
    pub config_hash: &'a Hash,
    pub block_ts_ms: u64,
}

/// Why a vote (or a proposal) is refused. Refusals change nothing.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum VoteError {
    #[error("proposal {0} is already {1}")]
    Closed(Hash, &'static str),
    #[error("proposal {hash} expired at {expires_at_ms} (block time {now_ms})")]
    Expired {
        hash: Hash,
        expires_at_ms: u64,
        now_ms: u64,
    },
    #[error("proposal {hash} applies to configuration {base_sequence} ({base}); configuration {current} is in force, so it can no longer apply")]
    Stale {
        hash: Hash,
        base_sequence: u64,
        base: Hash,
        current: u64,
    },
    #[error("organization {0:?} does not vote on this proposal (not an admin organization of the channel, or not a member for a chaincode definition)")]
    NotEligible(String),
    #[error("organization {0:?} has already voted on proposal {1}")]
    AlreadyVoted(String, Hash),
}

impl Record {
    /// A new proposal with its proposer's approval counted, as the ledger records it at
    /// block time `now`. The caller checks the proposer's certificate and role.
    pub fn open(
        proposal: Proposal,
        proposer: Vote,
        eligible: Vec<String>,
        required: Vec<String>,
        needed: usize,
        now: Now<'_>,
    ) -> Result<(Record, Decision), VoteError> {
        let hash = proposal.hash();
        let mut r = Record {
            hash,
            proposal,
            proposer: proposer.clone(),
            proposed_at_ms: now.block_ts_ms,
            eligible,
            needed: needed as u32,
            required,
            approvals: Vec::new(),
            rejections: Vec::new(),
            outcome: Outcome::Open,
        };
        let d = r.vote(proposer, true, now)?;
        Ok((r, d))
    }

    /// Records `vote` (an approval when `approve`) if the proposal may still be decided, and
    /// returns what the votes now decide; a met or defeated proposal is closed here. The
    /// caller installs the change when this returns [`Decision::Met`]. Deterministic: every
    /// node gets the same from the same record, vote and `now`.
    pub fn vote(&mut self, vote: Vote, approve: bool, now: Now<'_>) -> Result<Decision, VoteError> {
        self.may_change(now)?;
        if !self.eligible.contains(&vote.org) && !self.required.contains(&vote.org) {
            return Err(VoteError::NotEligible(vote.org));
        }
        if self
            .approvals
            .iter()
            .chain(&self.rejections)
            .any(|v| v.org == vote.org)
        {
            return Err(VoteError::AlreadyVoted(vote.org, self.hash));
        }
        let block = vote.block;
        if approve {
            self.approvals.push(vote);
        } else {
            self.rejections.push(vote);
        }
        let d = self.tally().decision();
        self.outcome = match d {
            Decision::Met => Outcome::Applied {
                block,
                sequence: self.proposal.base_sequence + u64::from(self.proposal.change.is_config()),
            },
            Decision::Defeated => Outcome::Rejected { block },
            Decision::Undecided => Outcome::Open,
        };
        Ok(d)
    }

    /// Refuses any change to a proposal that is closed, expired or stale.
    fn may_change(&self, now: Now<'_>) -> Result<(), VoteError> {
        match self.status(now) {
            Status::Open => Ok(()),
            Status::Expired => Err(VoteError::Expired {
                hash: self.hash,
                expires_at_ms: self.proposal.expires_at_ms,
                now_ms: now.block_ts_ms,
            }),
            Status::Stale => Err(VoteError::Stale {
                hash: self.hash,
                base_sequence: self.proposal.base_sequence,
                base: self.proposal.base,
                current: now.sequence,
            }),
            s => Err(VoteError::Closed(self.hash, s.as_str())),
        }
    }

    pub fn tally(&self) -> Tally {
        tally(
            &self.eligible,
            &self.required,
            self.needed as usize,
            &self.approvals,
            &self.rejections,
        )
    }

    /// The proposal's status given the configuration in force and the time (block time at
    /// apply; the last block's time when a node answers a read).
    pub fn status(&self, now: Now<'_>) -> Status {
        match self.outcome {
            Outcome::Applied { .. } => Status::Applied,
            Outcome::Rejected { .. } => Status::Rejected,
            Outcome::Open if now.block_ts_ms > self.proposal.expires_at_ms => Status::Expired,
            Outcome::Open
                if now.sequence != self.proposal.base_sequence
                    || *now.config_hash != self.proposal.base =>
            {
                Status::Stale
            }
            Outcome::Open => Status::Open,
        }
    }
}

/// A configuration a governance transaction installed: the event payload of
/// [`CONFIG_INSTALLED`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub sequence: u64,
    pub config: ChannelConfig,
}

impl Encode for Installed {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.sequence);
        self.config.encode(w);
    }
}
impl Decode for Installed {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Installed {
            sequence: r.u64("installed.sequence")?,
            config: ChannelConfig::decode(r)?,
        })
    }
}

/// The effects a committed governance transaction leaves in its block: an event saying what
/// became of the proposal (`proposal.open`, `proposal.applied`, `proposal.rejected`, with the
/// proposal hash as payload) and, when it applied a configuration, [`CONFIG_INSTALLED`].
pub fn effects(hash: &Hash, outcome: &Outcome, installed: Option<&Installed>) -> TxEffects {
    let name = match outcome {
        Outcome::Open => "proposal.open",
        Outcome::Applied { .. } => "proposal.applied",
        Outcome::Rejected { .. } => "proposal.rejected",
    };
    let mut events = vec![ChaincodeEvent {
        name: name.to_string(),
        payload: hash.0.to_vec(),
    }];
    if let Some(i) = installed {
        events.push(ChaincodeEvent {
            name: CONFIG_INSTALLED.to_string(),
            payload: i.to_bytes(),
        });
    }
    TxEffects {
        chaincode: GOVERNANCE_EFFECTS.to_string(),
        reads: Vec::new(),
        writes: Vec::new(),
        events,
        result: Vec::new(),
        fuel_used: 0,
    }
}

/// The configuration (and its sequence) a transaction of a block installed, if it did:
/// a committed one-transaction update, or a committed governance transaction whose effects
/// say so. What every reader of blocks uses to follow configuration changes.
pub fn installed_config(
    tx: &Transaction,
    status: &TxStatus,
    effects: Option<&TxEffects>,
) -> Result<Option<Installed>, DecodeError> {
    if !status.is_committed() {
        return Ok(None);
    }
    match &tx.body.payload {
        Payload::Config(u) => Ok(Some(Installed {
            sequence: u.sequence,
            config: u.config.clone(),
        })),
        Payload::Propose(_) | Payload::ProposalApprove { .. } => {
            let Some(fx) = effects.filter(|fx| fx.chaincode == GOVERNANCE_EFFECTS) else {
                return Ok(None);
            };
            match fx.events.iter().find(|e| e.name == CONFIG_INSTALLED) {
                Some(e) => Installed::from_bytes(&e.payload).map(Some),
                None => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// A proposal as a node reports it (`GET /v1/channels/{ch}/proposals[/{hash}]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalView {
    pub hash: Hash,
    pub status: Status,
    pub proposal: Proposal,
    pub proposer: Vote,
    pub proposed_at_ms: u64,
    pub approvals: Vec<Vote>,
    pub rejections: Vec<Vote>,
    pub outcome: Outcome,
    pub tally: Tally,
    /// The configuration the proposal applies to, while it is the one in force (so that a
    /// reviewer sees exactly what changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_config: Option<ChannelConfig>,
}

impl ProposalView {
    pub fn new(r: Record, now: Now<'_>, in_force: &ChannelConfig) -> ProposalView {
        let base_config = (r.proposal.base == *now.config_hash).then(|| in_force.clone());
        ProposalView {
            hash: r.hash,
            status: r.status(now),
            tally: r.tally(),
            proposal: r.proposal,
            proposer: r.proposer,
            proposed_at_ms: r.proposed_at_ms,
            approvals: r.approvals,
            rejections: r.rejections,
            outcome: r.outcome,
            base_config,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalList {
    pub proposals: Vec<ProposalView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(org: &str, block: u64) -> Vote {
        Vote {
            org: org.into(),
            cert_hash: Hash([block as u8; 32]),
            subject: format!("admin of {org}"),
            block,
            tx_id: Hash([block as u8 + 100; 32]),
        }
    }

    fn orgs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn proposal(expires_at_ms: u64) -> Proposal {
        let cfg = ChannelConfig::new("ch", vec![], vec![], vec![]);
        Proposal {
            channel: "ch".into(),
            base_sequence: 3,
            base: Hash([7; 32]),
            expires_at_ms,
            description: "add org c".into(),
            change: Change::Config(Box::new(cfg)),
        }
    }

    fn now(ts: u64) -> Now<'static> {
        static BASE: Hash = Hash([7; 32]);
        Now {
            sequence: 3,
            config_hash: &BASE,
            block_ts_ms: ts,
        }
    }

    #[test]
    fn organizations_count_once_and_outsiders_not_at_all() {
        let e = orgs(&["a", "b", "c"]);
        let t = tally(
            &e,
            &[],
            2,
            &[vote("a", 1), vote("a", 2), vote("x", 3)],
            &[vote("a", 4)],
        );
        assert_eq!(t.approved, ["a"]);
        assert!(t.rejected.is_empty(), "a approved first");
        assert_eq!(t.missing, ["b", "c"]);
        assert_eq!(t.decision(), Decision::Undecided);
        let t = tally(&e, &[], 2, &[vote("a", 1), vote("c", 2)], &[]);
        assert_eq!(t.decision(), Decision::Met);
    }

    #[test]
    fn enough_rejections_defeat_a_proposal() {
        let e = orgs(&["a", "b", "c", "d"]);
        // 3 of 4 needed: two rejections leave two possible approvals.
        let t = tally(&e, &[], 3, &[vote("a", 1)], &[vote("b", 2)]);
        assert_eq!(t.decision(), Decision::Undecided);
        let t = tally(&e, &[], 3, &[vote("a", 1)], &[vote("b", 2), vote("c", 3)]);
        assert_eq!(t.decision(), Decision::Defeated);
    }

    #[test]
    fn a_proposal_applies_when_the_last_needed_approval_arrives() {
        let e = orgs(&["a", "b", "c"]);
        let (mut r, d) = Record::open(proposal(1000), vote("a", 1), e, vec![], 2, now(10)).unwrap();
        assert_eq!(d, Decision::Undecided);
        assert_eq!(r.status(now(10)), Status::Open);
        assert_eq!(
            r.vote(vote("a", 2), true, now(20)),
            Err(VoteError::AlreadyVoted("a".into(), r.hash))
        );
        assert_eq!(
            r.vote(vote("x", 2), true, now(20)),
            Err(VoteError::NotEligible("x".into()))
        );
        assert_eq!(r.vote(vote("c", 5), true, now(30)), Ok(Decision::Met));
        assert_eq!(
            r.outcome,
            Outcome::Applied {
                block: 5,
                sequence: 4
            }
        );
        assert_eq!(r.status(now(30)), Status::Applied);
        assert!(matches!(
            r.vote(vote("b", 6), true, now(40)),
            Err(VoteError::Closed(_, "applied"))
        ));
    }

    #[test]
    fn expired_and_stale_proposals_take_no_votes() {
        let e = orgs(&["a", "b"]);
        let (mut r, _) = Record::open(proposal(1000), vote("a", 1), e, vec![], 2, now(10)).unwrap();
        let before = r.clone();
        assert!(matches!(
            r.vote(vote("b", 2), true, now(1001)),
            Err(VoteError::Expired { .. })
        ));
        assert_eq!(r.status(now(1001)), Status::Expired);
        let moved = Hash([8; 32]);
        let later = Now {
            sequence: 4,
            config_hash: &moved,
            block_ts_ms: 20,
        };
        assert!(matches!(
            r.vote(vote("b", 2), true, later),
            Err(VoteError::Stale { .. })
        ));
        assert_eq!(r.status(later), Status::Stale);
        assert_eq!(r, before, "refused votes change nothing");
    }

    #[test]
    fn a_rejection_that_makes_the_policy_unreachable_closes_the_proposal() {
        let e = orgs(&["a", "b"]);
        let (mut r, _) = Record::open(proposal(1000), vote("a", 1), e, vec![], 2, now(10)).unwrap();
        assert_eq!(r.vote(vote("b", 3), false, now(20)), Ok(Decision::Defeated));
        assert_eq!(r.outcome, Outcome::Rejected { block: 3 });
        assert_eq!(r.status(now(20)), Status::Rejected);
    }

    #[test]
    fn a_single_admin_organization_applies_at_once() {
        let (r, d) = Record::open(
            proposal(1000),
            vote("a", 1),
            orgs(&["a"]),
            vec![],
            1,
            now(10),
        )
        .unwrap();
        assert_eq!(d, Decision::Met);
        assert_eq!(r.status(now(10)), Status::Applied);
    }

    #[test]
    fn definitions_and_retirements_keep_the_configuration_sequence_and_round_trip() {
        for change in [
            Change::DefineChaincode(ChaincodeDefinition {
                name: "notary".into(),
                version: "1.1".into(),
                sequence: 2,
                module_hash: Hash([9; 32]),
                init: Some(crate::InitCall {
                    function: "setup".into(),
                    args: b"x".to_vec(),
                }),
            }),
            Change::RetireChaincode {
                name: "notary".into(),
                sequence: 2,
            },
            Change::RetireChannel,
        ] {
            let mut p = proposal(1000);
            p.change = change;
            assert_eq!(Proposal::from_bytes(&p.to_bytes()).unwrap(), p);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Proposal>(&json).unwrap(), p);
            let (r, d) = Record::open(p, vote("a", 1), orgs(&["a"]), vec![], 1, now(10)).unwrap();
            assert_eq!(d, Decision::Met);
            assert_eq!(
                r.outcome,
                Outcome::Applied {
                    block: 1,
                    sequence: 3
                },
                "a retirement or a chaincode definition installs no configuration"
            );
        }
        // The reserved tag stays unknown, as do tags never given out.
        for tag in [2u8, 5] {
            assert!(Change::from_bytes(&[tag]).is_err());
        }
    }

    /// A chaincode definition is the members' vote under the chaincode rule, whoever the
    /// admin organizations are; the other changes stay the admins'.
    #[test]
    fn a_chaincode_definition_is_voted_by_the_members_under_the_chaincode_rule() {
        use crate::config::{MembershipRule, OrgMember};
        let members = ["a", "b", "c"]
            .iter()
            .map(|o| OrgMember::new(o, ""))
            .collect();
        let mut cfg = ChannelConfig::new("ch", members, vec![], vec![]);
        cfg.policies.admins = vec!["a".into()];
        let def = Change::DefineChaincode(ChaincodeDefinition {
            name: "kv".into(),
            version: "1".into(),
            sequence: 1,
            module_hash: Hash([1; 32]),
            init: None,
        });
        assert_eq!(def.voters(&cfg), (orgs(&["a", "b", "c"]), 2));
        cfg.policies.chaincode = MembershipRule::All;
        assert_eq!(def.voters(&cfg), (orgs(&["a", "b", "c"]), 3));
        assert_eq!(Change::RetireChannel.voters(&cfg), (orgs(&["a"]), 1));
        assert!(def
            .summary()
            .contains("define chaincode kv version 1 as sequence 1"));
    }

    #[test]
    fn an_organization_whose_cas_change_must_approve_itself() {
        // a and b are the admin organizations (a majority of 2 needed); c's CAs change.
        let (mut r, d) = Record::open(
            proposal(1000),
            vote("a", 1),
            orgs(&["a", "b"]),
            orgs(&["c"]),
            2,
            now(10),
        )
        .unwrap();
        assert_eq!(d, Decision::Undecided);
        // The majority alone does not apply it...
        assert_eq!(r.vote(vote("b", 2), true, now(11)), Ok(Decision::Undecided));
        assert_eq!(r.tally().missing, ["c"]);
        // ...c's own approval does (it votes though not an admin organization).
        assert_eq!(r.vote(vote("c", 3), true, now(12)), Ok(Decision::Met));
        // c's approval never stands in for the count, and c's rejection defeats it.
        let (mut r, _) = Record::open(
            proposal(1000),
            vote("c", 1),
            orgs(&["a", "b"]),
            orgs(&["c"]),
            2,
            now(10),
        )
        .unwrap();
        assert_eq!(r.vote(vote("a", 2), true, now(11)), Ok(Decision::Undecided));
        assert_eq!(r.vote(vote("b", 3), true, now(12)), Ok(Decision::Met));
        let (mut r, _) = Record::open(
            proposal(1000),
            vote("a", 1),
            orgs(&["a", "b"]),
            orgs(&["c"]),
            2,
            now(10),
        )
        .unwrap();
        assert_eq!(r.vote(vote("c", 2), false, now(11)), Ok(Decision::Defeated));
    }

    #[test]
    fn records_and_proposals_round_trip() {
        let (mut r, _) = Record::open(
            proposal(1000),
            vote("a", 1),
            orgs(&["a", "b"]),
            vec![],
            2,
            now(1),
        )
        .unwrap();
        r.rejections.push(vote("b", 2));
        assert_eq!(Record::from_bytes(&r.to_bytes()).unwrap(), r);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
        // Format 1 unless an organization's own approval is required.
        assert_eq!(r.to_bytes()[0], 1);
        let (mut req, _) = Record::open(
            proposal(1000),
            vote("a", 1),
            orgs(&["a", "b"]),
            orgs(&["c"]),
            2,
            now(1),
        )
        .unwrap();
        req.approvals.push(vote("c", 2));
        assert_eq!(req.to_bytes()[0], 2);
        assert_eq!(Record::from_bytes(&req.to_bytes()).unwrap(), req);
        let p = proposal(5);
        assert_eq!(Proposal::from_bytes(&p.to_bytes()).unwrap(), p);
        let mut other = p.clone();
        other.expires_at_ms = 6;
        assert_ne!(p.hash(), other.hash(), "the hash covers every field");
    }
}
