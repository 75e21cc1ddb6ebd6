//! A chaincode definition as a proposal (`Change::DefineChaincode`): decided by the channel's
//! chaincode rule over the members, applied exactly as a commit, and never otherwise.

use super::governance::tests::{config, node, org, rejected, Chain};
use tally_protocol::chaincode::ChaincodeDefinition;
use tally_protocol::config::MembershipRule;
use tally_protocol::proposal::{self, Change, Proposal};
use tally_protocol::{InitCall, Payload, RejectCode};

/// A chaincode whose `put` (also exported as `setup`, its init) writes `k1` = `v1`.
fn module() -> Vec<u8> {
    wat::parse_str(
        r#"(module
          (import "tally" "state_put" (func $put (param i32 i32 i32 i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "k1v1")
          (func (export "tally_alloc") (param i32) (result i32) (i32.const 1024))
          (func (export "put") (export "setup") (param i32 i32) (result i32)
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
        init: Some(InitCall {
            function: "setup".into(),
            args: vec![],
        }),
    }
}

fn install(def: &ChaincodeDefinition, wasm: &[u8]) -> Payload {
    Payload::ChaincodeInstall {
        definition: def.clone(),
        module: wasm.to_vec(),
    }
}

fn propose(chain: &Chain, def: &ChaincodeDefinition, ttl_ms: u64) -> Proposal {
    let f = chain.ledger.in_force();
    Proposal::other(
        &f.config,
        f.sequence,
        Change::DefineChaincode(def.clone()),
        chain.ts + ttl_ms,
        "define kv",
    )
}

fn invoke() -> Payload {
    Payload::Invoke {
        chaincode: "kv".into(),
        function: "put".into(),
        args: vec![],
        fuel: 0,
    }
}

fn committed(a: &crate::ledger::Applied, i: usize) {
    assert!(
        a.receipts[i].status.is_committed(),
        "transaction {i}: {:?}",
        a.receipts[i].status
    );
}

/// Under an all-members chaincode rule, two of three approvals never make a definition
/// active, whatever else is sent (a commit, calls); the third organization's own approval
/// does, in its block, with the init call's writes; a proposal for a module not installed,
/// for a definition other than the installed one, or for a sequence that is not the next one
/// is refused; an expired one never applies.
#[test]
fn a_definition_proposal_applies_only_when_the_chaincode_rule_is_met() {
    let (a, b, c) = (org("a"), org("b"), org("c"));
    let mut genesis = config(&[&a, &b, &c], vec![node(1, "a")]);
    genesis.policies.chaincode = MembershipRule::All;
    // Only `a` is an admin organization: a definition is still the members' to approve.
    genesis.policies.admins = vec!["a".into()];
    let mut chain = Chain::new(genesis);
    let wasm = module();
    let def = definition(1, &wasm);

    let early = chain.block(&[(
        &a.admin,
        Payload::Propose(Box::new(propose(&chain, &def, 60_000))),
    )]);
    let (code, reason) = rejected(&early, 0);
    assert_eq!(code, RejectCode::UnknownChaincode, "{reason}");
    assert!(reason.contains("install its module first"), "{reason}");

    let mut other = def.clone();
    other.version = "forged".into();
    let mut later = def.clone();
    later.sequence = 2;
    let installed = chain.block(&[
        (&a.admin, install(&def, &wasm)),
        (
            &a.admin,
            Payload::Propose(Box::new(propose(&chain, &other, 60_000))),
        ),
        (
            &a.admin,
            Payload::Propose(Box::new(propose(&chain, &later, 60_000))),
        ),
    ]);
    committed(&installed, 0);
    assert_eq!(rejected(&installed, 1).0, RejectCode::ReadConflict);
    assert_eq!(rejected(&installed, 2).0, RejectCode::ReadConflict);

    let p = propose(&chain, &def, 60_000);
    let hash = p.hash();
    let opened = chain.block(&[
        (&a.admin, Payload::Propose(Box::new(p))),
        (&b.admin, Payload::ProposalApprove { hash }),
        // The old path counts its own approvals, not the proposal's: none here.
        (
            &a.admin,
            Payload::ChaincodeCommit {
                name: "kv".into(),
                sequence: 1,
            },
        ),
        (&a.client, invoke()),
    ]);
    committed(&opened, 0);
    committed(&opened, 1);
    assert_eq!(rejected(&opened, 2).0, RejectCode::NotApproved);
    assert_eq!(rejected(&opened, 3).0, RejectCode::UnknownChaincode);
    let view = chain.ledger.proposal(&hash).unwrap().unwrap();
    assert_eq!(view.status, proposal::Status::Open);
    assert_eq!(view.tally.approved, ["a", "b"]);
    assert_eq!(
        (view.tally.needed, view.tally.missing.clone()),
        (3, vec!["c".to_string()])
    );
    let info = &chain.ledger.chaincodes().unwrap()[0];
    assert!(info.active.is_none(), "two of three: not active");
    assert!(
        chain.ledger.get("cc~kv~k1").unwrap().is_none(),
        "init did not run"
    );

    let applied = chain.block(&[
        (&c.admin, Payload::ProposalApprove { hash }),
        (&c.client, invoke()),
    ]);
    committed(&applied, 0);
    committed(&applied, 1);
    let fx = applied.receipts[0].effects.as_deref().expect("effects");
    assert_eq!(fx.chaincode, proposal::GOVERNANCE_EFFECTS);
    assert!(fx.events.iter().any(|e| e.name == "proposal.applied"));
    assert!(
        fx.writes.iter().any(|w| w.key == "cc~kv~k1"),
        "the init call's writes are in the effects: {fx:?}"
    );
    let info = &chain.ledger.chaincodes().unwrap()[0];
    assert_eq!(info.active.as_ref(), Some(&def));
    assert_eq!(chain.ledger.get("cc~kv~k1").unwrap().unwrap().1, b"v1");
    let view = chain.ledger.proposal(&hash).unwrap().unwrap();
    assert_eq!(view.status, proposal::Status::Applied);
    assert_eq!(
        chain.ledger.in_force().sequence,
        0,
        "no configuration moved"
    );

    // An expired definition proposal never applies, even with every approval sent.
    let def2 = definition(2, &wasm);
    let p2 = propose(&chain, &def2, 1_500);
    let hash2 = p2.hash();
    let opened = chain.block(&[
        (&b.admin, install(&def2, &wasm)),
        (&b.admin, Payload::Propose(Box::new(p2))),
        (&a.admin, Payload::ProposalApprove { hash: hash2 }),
    ]);
    for i in 0..3 {
        committed(&opened, i);
    }
    chain.ts += 5_000;
    let late = chain.block(&[(&c.admin, Payload::ProposalApprove { hash: hash2 })]);
    assert_eq!(rejected(&late, 0).0, RejectCode::Expired);
    let info = &chain.ledger.chaincodes().unwrap()[0];
    assert_eq!(info.active.as_ref().map(|d| d.sequence), Some(1));
    let view = chain.ledger.proposal(&hash2).unwrap().unwrap();
    assert_eq!(view.status, proposal::Status::Expired);
}

/// The old two-step path still works and is decided by the same count: once it committed
/// the definition, a proposal of the same one can no longer apply.
#[test]
fn the_commit_path_still_works_and_closes_the_race_with_a_proposal() {
    let (a, b) = (org("a"), org("b"));
    let genesis = config(&[&a, &b], vec![node(1, "a")]);
    let mut chain = Chain::new(genesis);
    let wasm = module();
    let def = definition(1, &wasm);
    let p = propose(&chain, &def, 60_000);
    let hash = p.hash();
    let approve = || Payload::ChaincodeApprove {
        name: "kv".into(),
        sequence: 1,
        module_hash: def.module_hash,
    };
    let done = chain.block(&[
        (&a.admin, install(&def, &wasm)),
        (&a.admin, Payload::Propose(Box::new(p))),
        (&a.admin, approve()),
        (&b.admin, approve()),
        (
            &b.admin,
            Payload::ChaincodeCommit {
                name: "kv".into(),
                sequence: 1,
            },
        ),
        (&b.admin, Payload::ProposalApprove { hash }),
    ]);
    for i in 0..5 {
        committed(&done, i);
    }
    let (code, reason) = rejected(&done, 5);
    assert_eq!(code, RejectCode::ReadConflict, "{reason}");
    assert!(reason.contains("next definition is sequence 2"), "{reason}");
    let info = &chain.ledger.chaincodes().unwrap()[0];
    assert_eq!(info.active.as_ref(), Some(&def));
}
