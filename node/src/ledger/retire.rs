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

#[cfg(test)]
mod tests {
    use super::super::governance::tests::{config, node, org, put, rejected, Chain};
    use tally_protocol::chaincode::ChaincodeDefinition;
    use tally_protocol::proposal::{self, Change, Proposal};
    use tally_protocol::{Hash, Payload, RejectCode, TxStatus};

    /// A chaincode whose `put` writes `k1` = `v1` in its namespace.
    fn module() -> Vec<u8> {
        wat::parse_str(
            r#"(module
              (import "tally" "state_put" (func $put (param i32 i32 i32 i32)))
              (memory (export "memory") 1)
              (data (i32.const 0) "k1v1")
              (func (export "tally_alloc") (param i32) (result i32) (i32.const 1024))
              (func (export "put") (param i32 i32) (result i32)
                (call $put (i32.const 0) (i32.const 2) (i32.const 2) (i32.const 2))
                (i32.const 0)))"#,
        )
        .expect("test WAT parses")
    }

    fn definition(sequence: u64, wasm: &[u8]) -> ChaincodeDefinition {
        ChaincodeDefinition {
            name: "kv".into(),
            version: format!("v{sequence}"),
            sequence,
            module_hash: tally_protocol::chaincode::module_hash(wasm),
            init: None,
        }
    }

    fn invoke() -> Payload {
        Payload::Invoke {
            chaincode: "kv".into(),
            function: "put".into(),
            args: vec![],
            fuel: 0,
        }
    }

    fn retire_proposal(chain: &Chain, change: Change) -> Proposal {
        let f = chain.ledger.in_force();
        Proposal::other(&f.config, f.sequence, change, chain.ts + 60_000, "retire")
    }

    fn committed(a: &crate::ledger::Applied, i: usize) {
        assert!(
            a.receipts[i].status.is_committed(),
            "transaction {i}: {:?}",
            a.receipts[i].status
        );
    }

    /// Two of three organizations must approve a chaincode's retirement: until then calls
    /// commit; from the approving transaction on, a call is refused on apply (the leader put
    /// it in the very block, and in the next), naming the block; the chaincode's state stays
    /// readable; and only a new approved definition makes the name callable again.
    #[test]
    fn a_chaincode_retirement_applies_with_the_majority_and_refuses_calls_forced_into_blocks() {
        let (a, b, c) = (org("a"), org("b"), org("c"));
        let genesis = config(&[&a, &b, &c], vec![node(1, "a")]);
        let mut chain = Chain::new(genesis);
        let wasm = module();
        let def = definition(1, &wasm);
        let deployed = chain.block(&[
            (
                &a.admin,
                Payload::ChaincodeInstall {
                    definition: def.clone(),
                    module: wasm.clone(),
                },
            ),
            (
                &a.admin,
                Payload::ChaincodeApprove {
                    name: "kv".into(),
                    sequence: 1,
                    module_hash: def.module_hash,
                },
            ),
            (
                &b.admin,
                Payload::ChaincodeApprove {
                    name: "kv".into(),
                    sequence: 1,
                    module_hash: def.module_hash,
                },
            ),
            (
                &a.admin,
                Payload::ChaincodeCommit {
                    name: "kv".into(),
                    sequence: 1,
                },
            ),
            (&a.client, invoke()),
        ]);
        for i in 0..5 {
            committed(&deployed, i);
        }

        // Retiring a definition that is not the active one is refused when proposed.
        let wrong = retire_proposal(
            &chain,
            Change::RetireChaincode {
                name: "kv".into(),
                sequence: 2,
            },
        );
        let refused = chain.block(&[(&a.admin, Payload::Propose(Box::new(wrong)))]);
        assert_eq!(rejected(&refused, 0).0, RejectCode::ReadConflict);

        let p = retire_proposal(
            &chain,
            Change::RetireChaincode {
                name: "kv".into(),
                sequence: 1,
            },
        );
        let hash = p.hash();
        let opened = chain.block(&[
            (&a.admin, Payload::Propose(Box::new(p))),
            (&a.client, invoke()),
        ]);
        committed(&opened, 0);
        committed(&opened, 1);
        // A client, and the proposer's organization again, change nothing.
        let noise = chain.block(&[
            (&b.client, Payload::ProposalApprove { hash }),
            (&a.admin, Payload::ProposalApprove { hash }),
            (&c.admin, Payload::ProposalReject { hash }),
            (&a.client, invoke()),
        ]);
        assert_eq!(rejected(&noise, 0).0, RejectCode::Forbidden);
        assert_eq!(rejected(&noise, 1).0, RejectCode::Duplicate);
        committed(&noise, 2);
        committed(&noise, 3);
        assert!(chain.ledger.chaincodes().unwrap()[0].retired.is_none());

        let applied = chain.block(&[
            (&b.admin, Payload::ProposalApprove { hash }),
            (&a.client, invoke()),
        ]);
        committed(&applied, 0);
        let at = applied.header.number;
        let (code, reason) = rejected(&applied, 1);
        assert_eq!(code, RejectCode::Retired, "{reason}");
        assert!(
            reason.contains(&format!("retired at block {at}")),
            "{reason}"
        );
        let fx = applied.receipts[0].effects.as_deref().expect("effects");
        assert!(fx
            .events
            .iter()
            .any(|e| e.name == tally_protocol::retirement::CHAINCODE_RETIRED));
        let later = chain.block(&[(&b.client, invoke())]);
        assert_eq!(rejected(&later, 0).0, RejectCode::Retired);
        // The state it wrote stays, and its lifecycle says it is retired.
        let kept = chain.ledger.get("cc~kv~k1").unwrap().expect("state kept");
        assert_eq!(kept.1, b"v1");
        let info = &chain.ledger.chaincodes().unwrap()[0];
        let r = info.retired.expect("listed as retired");
        assert_eq!((r.sequence, r.block, r.proposal), (1, at, hash));
        let view = chain.ledger.proposal(&hash).unwrap().unwrap();
        assert_eq!(view.status, proposal::Status::Applied);
        assert_eq!(
            chain.ledger.in_force().sequence,
            0,
            "no configuration moved"
        );

        // A new definition, approved and committed as any, makes the name callable again.
        let def2 = definition(2, &wasm);
        let back = chain.block(&[
            (
                &a.admin,
                Payload::ChaincodeInstall {
                    definition: def2.clone(),
                    module: wasm.clone(),
                },
            ),
            (
                &a.admin,
                Payload::ChaincodeCommit {
                    name: "kv".into(),
                    sequence: 2,
                },
            ),
        ]);
        committed(&back, 0);
        assert_eq!(rejected(&back, 1).0, RejectCode::NotApproved);
        let approved = chain.block(&[
            (
                &a.admin,
                Payload::ChaincodeApprove {
                    name: "kv".into(),
                    sequence: 2,
                    module_hash: def2.module_hash,
                },
            ),
            (
                &c.admin,
                Payload::ChaincodeApprove {
                    name: "kv".into(),
                    sequence: 2,
                    module_hash: def2.module_hash,
                },
            ),
            (
                &a.admin,
                Payload::ChaincodeCommit {
                    name: "kv".into(),
                    sequence: 2,
                },
            ),
            (&c.client, invoke()),
        ]);
        for i in 0..4 {
            committed(&approved, i);
        }
        assert!(chain.ledger.chaincodes().unwrap()[0].retired.is_none());
    }

    /// A channel's retirement applies when its policy is met and not before; from the
    /// approving transaction on every transaction is refused at apply, whatever a leader
    /// orders (a write, a vote, another proposal), and at submission; reads keep working, and
    /// a ledger opened again (a restart) still knows.
    #[test]
    fn a_retired_channel_refuses_every_later_transaction_and_keeps_its_reads() {
        let (a, b) = (org("a"), org("b"));
        let genesis = config(&[&a, &b], vec![node(1, "a")]);
        let mut chain = Chain::new(genesis.clone());
        chain.block(&[(&a.client, put("k"))]);
        let p = retire_proposal(&chain, Change::RetireChannel);
        let hash = p.hash();
        let mut next = genesis.clone();
        next.batch.max_txs = 10;
        let f = chain.ledger.in_force();
        let other = Proposal::config(&f.config, f.sequence, next, chain.ts + 60_000, "other");
        let other_hash = other.hash();
        let opened = chain.block(&[
            (&a.admin, Payload::Propose(Box::new(p))),
            (&a.admin, Payload::Propose(Box::new(other))),
            (&a.client, put("k2")),
        ]);
        for i in 0..3 {
            committed(&opened, i);
        }
        assert!(chain.ledger.retired().is_none(), "one of two approvals");

        let applied = chain.block(&[
            (&b.admin, Payload::ProposalApprove { hash }),
            (&a.client, put("k3")),
            (&b.admin, Payload::ProposalApprove { hash: other_hash }),
        ]);
        committed(&applied, 0);
        let at = applied.header.number;
        for i in [1, 2] {
            let (code, reason) = rejected(&applied, i);
            assert_eq!(code, RejectCode::Retired, "{reason}");
            assert!(
                reason.contains(&format!("retired at block {at}")),
                "{reason}"
            );
        }
        let r = chain.ledger.retired().expect("retired");
        assert_eq!((r.block, r.proposal), (at, hash));
        let later = chain.block(&[(&a.client, put("k4"))]);
        assert_eq!(rejected(&later, 0).0, RejectCode::Retired);
        assert_eq!(
            chain.ledger.in_force().config.batch.max_txs,
            genesis.batch.max_txs
        );

        // Refused at submission too.
        let body = tally_protocol::TxBody {
            channel: "ch".into(),
            nonce: 1,
            timestamp_ms: chain.ts,
            signer: tally_protocol::Signer::Certificate(a.client.cert_der.clone()),
            payload: put("k5"),
        };
        let tx = tally_protocol::Transaction::sign(body, &a.client);
        let raw = tally_protocol::Encode::to_bytes(&tx);
        match chain.ledger.precheck(&tx, raw.len(), chain.ts) {
            Err((RejectCode::Retired, _)) => {}
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
        // Reads stay.
        assert!(chain.ledger.get("k2").unwrap().is_some());
        assert!(chain.ledger.get("k3").unwrap().is_none());

        // A restart reads the retirement back from state.
        let reopened = crate::ledger::Ledger::open(
            chain.ledger.db_arc(),
            genesis,
            std::sync::Arc::new(tally_runtime::Engine::new(tally_runtime::Limits::default())),
        )
        .unwrap();
        assert_eq!(reopened.retired(), Some(r));
        let _ = Hash::ZERO;
        let _ = TxStatus::Committed;
    }
}
