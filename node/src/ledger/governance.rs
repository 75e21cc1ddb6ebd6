//! Proposals on the ledger (see `tally_protocol::proposal`): recording a proposal, counting
//! the approvals and rejections that admin organizations send, and installing the change in
//! the block where the channel's admin majority is met. Records live in world state under
//! `_governance/`, so they are covered by the state commitment and travel with snapshots;
//! what each transaction decided is also in its block, as effects.

use super::chaincode::At;
use super::{corrupt, InForce, Ledger, LedgerError, Scratch};
use rocksdb::WriteBatch;
use std::collections::HashMap;
use tally_protocol::codec::{Decode, Encode};
use tally_protocol::config_update::check_transition;
use tally_protocol::identity::cert_hash;
use tally_protocol::proposal::{
    self, Change, Decision, Installed, Now, Proposal, ProposalView, Record, Vote, VoteError,
    MAX_DESCRIPTION, MAX_TTL_MS,
};
use tally_protocol::retirement::{self, Retirement};
use tally_protocol::state::StateDigest;
use tally_protocol::{ChaincodeEvent, Hash, Payload, RejectCode, Signer, Transaction, TxStatus};

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
            Change::Config(_) | Change::RetireChannel => Ok(()),
            Change::DefineChaincode(def) => {
                // The same checks an install of this definition passed.
                if !tally_runtime::valid_chaincode_name(&def.name) {
                    return Err((
                        RejectCode::Malformed,
                        format!("chaincode name {:?} is invalid", def.name),
                    ));
                }
                if def.sequence == 0 {
                    return Err((
                        RejectCode::Malformed,
                        "chaincode sequences start at 1".to_string(),
                    ));
                }
                if def.init.as_ref().is_some_and(|i| i.function.is_empty()) {
                    return Err((RejectCode::Malformed, "empty init function name".into()));
                }
                Ok(())
            }
            Change::RetireChaincode { name, sequence } => {
                if !tally_runtime::valid_chaincode_name(name) {
                    return Err((
                        RejectCode::Malformed,
                        format!("chaincode name {name:?} is invalid"),
                    ));
                }
                if *sequence == 0 {
                    return Err((
                        RejectCode::Malformed,
                        "chaincode sequences start at 1".to_string(),
                    ));
                }
                Ok(())
            }
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
        let mut retired = None;
        let mut init = None;
        if decision == Decision::Met {
            match &record.proposal.change {
                Change::DefineChaincode(def) => {
                    // Checked when proposed; checked again since the chaincode may have moved
                    // on (another definition committed, a different one installed).
                    if let Some((code, why)) = self.why_not_definable(def, scratch)? {
                        return Ok(reject(code, why));
                    }
                    match self.activate(def, at, scratch, digest, wb)? {
                        TxStatus::Committed => init = scratch.effects.take(),
                        // The init call failed: the approval is refused, and the proposal
                        // stays open (a later approval, or a new definition, may follow).
                        refused => return Ok(refused),
                    }
                }
                Change::Config(next) => {
                    // Checked when proposed against the same base; checked again so that
                    // nothing but a valid transition is ever installed.
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
                Change::RetireChaincode { name, sequence } => {
                    // A definition committed or retired since the proposal was made.
                    if let Some(why) = self.why_not_retirable(name, *sequence, scratch)? {
                        return Ok(reject(RejectCode::ReadConflict, why));
                    }
                    let r = Retirement {
                        sequence: *sequence,
                        block: at.version.block,
                        proposal: record.hash,
                    };
                    self.write_key(
                        &retirement::chaincode_key(name),
                        Some(&r.to_bytes()),
                        at.version,
                        &at.tx_id,
                        at.block_ts,
                        &mut scratch.overlay,
                        digest,
                        wb,
                    )?;
                    let mut payload = tally_protocol::codec::Writer::with_capacity(64);
                    payload.str(name);
                    r.encode(&mut payload);
                    retired = Some((retirement::CHAINCODE_RETIRED, payload.into_inner()));
                }
                Change::RetireChannel => {
                    let r = Retirement {
                        sequence: current.sequence,
                        block: at.version.block,
                        proposal: record.hash,
                    };
                    self.write_key(
                        &retirement::channel_key(),
                        Some(&r.to_bytes()),
                        at.version,
                        &at.tx_id,
                        at.block_ts,
                        &mut scratch.overlay,
                        digest,
                        wb,
                    )?;
                    scratch.retired = Some(r);
                    retired = Some((retirement::CHANNEL_RETIRED, r.to_bytes()));
                }
            }
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
        let mut fx = proposal::effects(&record.hash, &record.outcome, installed.as_ref());
        if let Some(i) = init {
            // What the init call of an applied definition did, as a commit's effects show it.
            // Its events are named under the chaincode (`name/event`), so that none can pass
            // for a governance event such as `config_installed`.
            fx.reads = i.reads;
            fx.writes = i.writes;
            fx.result = i.result;
            fx.fuel_used = i.fuel_used;
            fx.events
                .extend(i.events.into_iter().map(|e| ChaincodeEvent {
                    name: format!("{}/{}", i.chaincode, e.name),
                    payload: e.payload,
                }));
        }
        if let Some((name, payload)) = retired {
            fx.events.push(ChaincodeEvent {
                name: name.to_string(),
                payload,
            });
        }
        scratch.effects = Some(fx);
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
        if p.base_sequence == current.sequence && p.base == current.hash {
            match &p.change {
                Change::Config(next) => {
                    if let Err(e) = check_transition(&current.config, next) {
                        return Ok(Err(reject(RejectCode::Malformed, e.to_string())));
                    }
                }
                Change::RetireChaincode { name, sequence } => {
                    if let Some(why) = self.why_not_retirable(name, *sequence, scratch)? {
                        return Ok(Err(reject(RejectCode::ReadConflict, why)));
                    }
                }
                Change::DefineChaincode(def) => {
                    if let Some((code, why)) = self.why_not_definable(def, scratch)? {
                        return Ok(Err(reject(code, why)));
                    }
                }
                Change::RetireChannel => {}
            }
        }
        // A chaincode definition is the members' under the chaincode rule; a membership
        // change needs what the membership rule asks; anything else an admin majority. A
        // member whose CAs change must approve itself besides.
        let (eligible, needed) = p.change.voters(&current.config);
        let required = p.change.required(&current.config);
        Ok(Record::open(p.clone(), proposer, eligible, required, needed, now).map_err(vote_reject))
    }

    /// Every proposal of the channel, oldest first, with its status as of the last block.
    pub fn proposals(&self, limit: usize) -> Result<Vec<ProposalView>, LedgerError> {
        let prefix = format!("{}proposals/", proposal::GOVERNANCE_PREFIX);
        let mut records = Vec::new();
        self.scan_state(&prefix, |_, _, value| {
            records.push(Record::from_bytes(&value).map_err(|e| corrupt("proposal record", e))?);
            Ok(true)
        })?;
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::ledger::Applied;
    use std::sync::Arc;
    use tally_protocol::identity::Role;
    use tally_protocol::{ChannelConfig, Identity, NodeRef, OrgCa, OrgMember, TxBody, Write};

    pub(crate) struct Org {
        pub(crate) ca: OrgCa,
        pub(crate) admin: Identity,
        pub(crate) client: Identity,
    }

    pub(crate) fn org(name: &str) -> Org {
        let ca = OrgCa::generate(name).unwrap();
        let admin = ca.issue(Role::Admin, "admin", &[]).unwrap();
        let client = ca.issue(Role::Client, "client", &[]).unwrap();
        Org { ca, admin, client }
    }

    pub(crate) fn node(id: u64, org: &str) -> NodeRef {
        NodeRef {
            id,
            name: format!("{org}-n{id}"),
            org: org.into(),
            peer_addr: format!("127.0.0.1:{}", 7000 + id),
            api_url: format!("https://127.0.0.1:{}", 8000 + id),
        }
    }

    pub(crate) fn config(orgs: &[&Org], consenters: Vec<NodeRef>) -> ChannelConfig {
        let members = orgs
            .iter()
            .map(|o| OrgMember::new(&o.ca.org, &o.ca.cert_pem()))
            .collect();
        ChannelConfig::new("ch", members, consenters, vec![])
    }

    pub(crate) struct Chain {
        pub(crate) _dir: tempfile::TempDir,
        pub(crate) ledger: Ledger,
        /// Block time of the next block.
        pub(crate) ts: u64,
        /// Raft index of the next block.
        index: u64,
    }

    impl Chain {
        pub(crate) fn new(genesis: ChannelConfig) -> Chain {
            let dir = tempfile::tempdir().unwrap();
            let db = Arc::new(rocksdb::DB::open_default(dir.path()).unwrap());
            let engine = Arc::new(tally_runtime::Engine::new(tally_runtime::Limits::default()));
            let ledger = Ledger::open(db, genesis, engine).unwrap();
            Chain {
                _dir: dir,
                ledger,
                ts: tally_protocol::now_ms(),
                index: 1,
            }
        }

        /// Orders `payloads` (each signed by its identity, dated at the block's time) as one
        /// block, written and installed as the channel thread does.
        pub(crate) fn block(&mut self, txs: &[(&Identity, Payload)]) -> Applied {
            let raws: Vec<Vec<u8>> = txs
                .iter()
                .enumerate()
                .map(|(i, (id, p))| {
                    let body = TxBody {
                        channel: "ch".into(),
                        nonce: self.ts + i as u64,
                        timestamp_ms: self.ts,
                        signer: Signer::Certificate(id.cert_der.clone()),
                        payload: p.clone(),
                    };
                    Transaction::sign(body, id).to_bytes()
                })
                .collect();
            let data = tally_protocol::write_batch(self.ts, raws.iter().map(Vec::as_slice));
            let mut wb = WriteBatch::default();
            let (applied, tip) = self
                .ledger
                .apply_batch(&data, 1, self.index, &|_: &Hash, _: &[u8]| false, &mut wb)
                .unwrap()
                .unwrap();
            self.index += 1;
            self.ledger.db().write(wb).unwrap();
            self.ledger.commit_tip(tip);
            if let Some(next) = applied.config.clone() {
                self.ledger.install_config(next);
            }
            if let Some(r) = applied.retired {
                self.ledger.install_retirement(r);
            }
            self.ts += 1000;
            applied
        }

        fn proposal(&self, next: ChannelConfig, ttl_ms: u64) -> Proposal {
            let f = self.ledger.in_force();
            Proposal::config(&f.config, f.sequence, next, self.ts + ttl_ms, "test")
        }
    }

    pub(crate) fn rejected(a: &Applied, i: usize) -> (RejectCode, String) {
        match &a.receipts[i].status {
            TxStatus::Rejected { code, reason } => (*code, reason.clone()),
            s => panic!("transaction {i} should be rejected: {s:?}"),
        }
    }

    pub(crate) fn put(k: &str) -> Payload {
        Payload::KvWrite {
            reads: vec![],
            writes: vec![Write {
                key: k.into(),
                value: Some(b"v".to_vec()),
            }],
        }
    }

    /// Two of three organizations must approve: the proposer's approval leaves it open,
    /// writes go on, and the second approval installs the change in its own block; the
    /// block's effects say so, which is how block readers follow configuration changes.
    #[test]
    fn a_change_applies_in_the_block_where_the_majority_is_met() {
        let (a, b, c) = (org("a"), org("b"), org("c"));
        let genesis = config(&[&a, &b, &c], vec![node(1, "a")]);
        let mut chain = Chain::new(genesis.clone());
        let mut next = genesis.clone();
        next.observers.push(node(2, "b"));
        let p = chain.proposal(next.clone(), 60_000);
        let hash = p.hash();
        let opened = chain.block(&[(&a.admin, Payload::Propose(Box::new(p)))]);
        assert!(opened.receipts[0].status.is_committed());
        assert!(
            opened.config.is_none(),
            "one of two approvals: nothing applies"
        );
        let view = chain.ledger.proposal(&hash).unwrap().unwrap();
        assert_eq!(view.status, proposal::Status::Open);
        assert_eq!(view.tally.approved, ["a"]);
        assert_eq!(view.tally.missing, ["b", "c"]);
        assert_eq!(view.base_config.as_ref(), Some(&genesis));

        let writes = chain.block(&[(&a.client, put("k1"))]);
        assert!(writes.receipts[0].status.is_committed());

        // A client certificate of b and a second admin vote of a change nothing.
        let refused = chain.block(&[
            (&b.client, Payload::ProposalApprove { hash }),
            (&a.admin, Payload::ProposalApprove { hash }),
        ]);
        assert_eq!(rejected(&refused, 0).0, RejectCode::Forbidden);
        assert_eq!(rejected(&refused, 1).0, RejectCode::Duplicate);
        assert!(refused.config.is_none());

        let applied = chain.block(&[(&b.admin, Payload::ProposalApprove { hash })]);
        assert!(applied.receipts[0].status.is_committed());
        let installed = applied.config.as_ref().expect("the change applies here");
        assert_eq!((installed.sequence, &*installed.config), (1, &next));
        assert_eq!(*chain.ledger.config(), next);
        let fx = applied.receipts[0].effects.as_deref();
        let block = chain.ledger.block(applied.header.number).unwrap().unwrap();
        let from_block = proposal::installed_config(&block.txs[0], &block.results[0], fx)
            .unwrap()
            .expect("the block says what it installed");
        assert_eq!((from_block.sequence, from_block.config), (1, next));
        let view = chain.ledger.proposal(&hash).unwrap().unwrap();
        assert_eq!(view.status, proposal::Status::Applied);
        assert_eq!(view.tally.approved, ["a", "b"]);
        // Too late for c.
        let late = chain.block(&[(&c.admin, Payload::ProposalApprove { hash })]);
        assert_eq!(rejected(&late, 0).0, RejectCode::ReadConflict);

        // A snapshot of this ledger verifies on a node that starts from the same genesis: the
        // configuration in force is derived from the blocks, the approving one included.
        let snap = chain.ledger.dump().unwrap();
        let fresh = Chain::new(genesis);
        let tip = chain.ledger.tip();
        let v = fresh
            .ledger
            .verify_snapshot(&snap, tip.applied_index, &Default::default())
            .expect("the snapshot verifies");
        assert_eq!(v.height, tip.height);
        // Verified records are staged; installing moves them in (`snapshot_install.rs`).
        use super::super::snapshot_install::{begin_install, finish_install};
        let mut wb = WriteBatch::default();
        begin_install(&fresh.ledger.keys, &mut wb);
        fresh.ledger.db().write(wb).unwrap();
        let db = fresh.ledger.db_arc();
        let mut write = |wb: WriteBatch, _sync: bool| db.write(wb).map_err(|e| e.to_string());
        finish_install(&db, &fresh.ledger.keys, &mut write).unwrap();
        fresh.ledger.after_restore().unwrap();
        assert_eq!(fresh.ledger.in_force().sequence, 1);
        assert_eq!(
            fresh.ledger.proposal(&hash).unwrap().unwrap().status,
            proposal::Status::Applied
        );
    }

    #[test]
    fn an_expired_proposal_cannot_be_approved_into_applying() {
        let (a, b) = (org("a"), org("b"));
        let genesis = config(&[&a, &b], vec![node(1, "a")]);
        let mut chain = Chain::new(genesis.clone());
        let mut next = genesis.clone();
        next.batch.max_txs = 10;
        let p = chain.proposal(next, 1500);
        let hash = p.hash();
        chain.block(&[(&a.admin, Payload::Propose(Box::new(p)))]);
        chain.block(&[(&a.client, put("k"))]);
        // Block time is now past the expiry.
        let late = chain.block(&[(&b.admin, Payload::ProposalApprove { hash })]);
        let (code, reason) = rejected(&late, 0);
        assert_eq!(code, RejectCode::Expired, "{reason}");
        assert!(late.config.is_none());
        assert_eq!(chain.ledger.in_force().sequence, 0);
        let view = chain.ledger.proposal(&hash).unwrap().unwrap();
        assert_eq!(view.status, proposal::Status::Expired);
    }

    #[test]
    fn rejections_close_and_other_changes_make_a_proposal_stale() {
        let (a, b) = (org("a"), org("b"));
        let genesis = config(&[&a, &b], vec![node(1, "a")]);
        let mut chain = Chain::new(genesis.clone());
        let mut next = genesis.clone();
        next.batch.max_txs = 10;
        let p1 = chain.proposal(next.clone(), 60_000);
        next.batch.max_txs = 11;
        let p2 = chain.proposal(next.clone(), 60_000);
        let (h1, h2) = (p1.hash(), p2.hash());
        chain.block(&[
            (&a.admin, Payload::Propose(Box::new(p1))),
            (&a.admin, Payload::Propose(Box::new(p2.clone()))),
        ]);
        // The same proposal twice is one proposal.
        let again = chain.block(&[(&a.admin, Payload::Propose(Box::new(p2)))]);
        assert_eq!(rejected(&again, 0).0, RejectCode::Duplicate);
        let closed = chain.block(&[(&b.admin, Payload::ProposalReject { hash: h1 })]);
        assert!(closed.receipts[0].status.is_committed());
        assert_eq!(
            chain.ledger.proposal(&h1).unwrap().unwrap().status,
            proposal::Status::Rejected
        );
        // A one-transaction update moves the base: the other proposal can no longer apply.
        let mut other = genesis.clone();
        other.batch.max_txs = 12;
        let mut u = tally_protocol::ConfigUpdate::new(&genesis, 0, other);
        u.approve(&a.admin);
        u.approve(&b.admin);
        let moved = chain.block(&[(&a.admin, Payload::Config(Box::new(u)))]);
        assert!(moved.config.is_some());
        assert_eq!(
            chain.ledger.proposal(&h2).unwrap().unwrap().status,
            proposal::Status::Stale
        );
        let stale = chain.block(&[(&b.admin, Payload::ProposalApprove { hash: h2 })]);
        assert_eq!(rejected(&stale, 0).0, RejectCode::ReadConflict);
        assert_eq!(chain.ledger.config().batch.max_txs, 12);
        assert_eq!(chain.ledger.proposals(100).unwrap().len(), 2);
    }

    #[test]
    fn unknown_proposals_outsiders_and_plain_writes_to_records_are_refused() {
        let (a, b, x) = (org("a"), org("b"), org("x"));
        let genesis = config(&[&a, &b], vec![node(1, "a")]);
        let mut chain = Chain::new(genesis.clone());
        let mut next = genesis.clone();
        next.batch.max_txs = 10;
        let p = chain.proposal(next, 60_000);
        let hash = p.hash();
        chain.block(&[(&a.admin, Payload::Propose(Box::new(p)))]);
        let r = chain.block(&[
            (
                &b.admin,
                Payload::ProposalApprove {
                    hash: Hash([9; 32]),
                },
            ),
            (&x.admin, Payload::ProposalApprove { hash }),
            (&a.client, put(&proposal::key(&hash))),
        ]);
        assert_eq!(rejected(&r, 0).0, RejectCode::Malformed);
        assert_eq!(rejected(&r, 1).0, RejectCode::NotMember);
        assert_eq!(rejected(&r, 2).0, RejectCode::Forbidden);
        assert_eq!(
            chain
                .ledger
                .proposal(&hash)
                .unwrap()
                .unwrap()
                .tally
                .approved,
            ["a"]
        );
    }
}
