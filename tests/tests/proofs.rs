//! A committed transaction's receipt carries an inclusion proof that a third party checks
//! offline against a block hash it trusts; any tampering makes the check fail.

use std::time::Duration;

use tally_client::txs::{put, sign_writes};
use tally_protocol::receipt::ProofError;
use tally_protocol::{Hash, ProvenReceipt, Role};
use tally_tests::TestCluster;

const CH: &str = "notary";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_prove_inclusion_offline_and_tampering_is_caught() {
    let tc = TestCluster::start("proofs", 3, &[CH], |_| {}).await;
    let signer = tc.identity("org2", Role::Client);
    let c1 = tc.client("node1-0");

    // Several transactions at once, so that blocks hold more than one and the proofs have paths.
    let txs: Vec<_> = (0..9)
        .map(|i| {
            sign_writes(
                &signer,
                CH,
                vec![put(
                    &format!("evidence-{i}"),
                    format!("sha256 of document {i}").as_bytes(),
                )],
                false,
            )
        })
        .collect();
    let receipts = futures_util::future::join_all(txs.iter().map(|t| c1.submit_wait(t))).await;
    let receipts: Vec<_> = receipts.into_iter().map(|r| r.expect("submit")).collect();
    assert!(
        receipts.iter().all(|r| r.status.is_committed()),
        "{receipts:?}"
    );
    tc.wait_converged(CH, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut multi_leaf = false;
    for (k, (tx, receipt)) in txs.iter().zip(&receipts).enumerate() {
        let id = tx.id();
        // The proof as node2 serves it, moved through JSON as a third party would store it...
        let proven = tc
            .client("node2-0")
            .receipt(CH, &id)
            .await
            .expect("GET receipt")
            .expect("receipt exists");
        let json = serde_json::to_string(&proven).unwrap();
        let proven: ProvenReceipt = serde_json::from_str(&json).unwrap();
        assert_eq!(proven.receipt.tx_id, id);
        assert_eq!(
            (proven.receipt.block, proven.receipt.index),
            (receipt.block, receipt.index)
        );
        // ...checked against the block hash taken from another node's chain.
        let trusted = tc
            .client("node3-0")
            .block(CH, Some(receipt.block))
            .await
            .expect("block")
            .header
            .hash();
        assert_eq!(
            trusted, receipt.block_hash,
            "the receipt's block hash is the chain's"
        );
        assert_eq!(
            proven
                .verify(&trusted)
                .expect("an untampered proof verifies"),
            &tally_protocol::TxStatus::Committed,
            "the proof proves the transaction committed"
        );
        // The same outcome claimed as rejected does not verify.
        let mut bad = proven.clone();
        bad.proof.status = tally_protocol::TxStatus::Rejected {
            code: tally_protocol::RejectCode::Forbidden,
            reason: "x".into(),
        };
        assert_eq!(bad.proof.verify(&id, &trusted), Err(ProofError::BadPath));
        multi_leaf |= proven.proof.merkle.leaves > 1;

        let p = &proven.proof;
        // Another transaction id.
        let other_id = txs[(k + 1) % txs.len()].id();
        assert_eq!(p.verify(&other_id, &trusted), Err(ProofError::WrongTx));
        // A trusted hash of another block.
        assert_eq!(
            p.verify(&id, &Hash::tagged(b"elsewhere", &[b"x"])),
            Err(ProofError::WrongHeader)
        );
        // A header with another state root (the header no longer hashes to the trusted hash).
        let mut bad = p.clone();
        bad.header.state_root = Hash::ZERO;
        assert_eq!(bad.verify(&id, &trusted), Err(ProofError::WrongHeader));
        // A header with another results root, trusted as it is: the path no longer leads there.
        let mut bad = p.clone();
        bad.header.results_root = Hash::tagged(b"forged", &[b"root"]);
        let forged_hash = bad.header.hash();
        assert_eq!(bad.verify(&id, &forged_hash), Err(ProofError::BadPath));
        // The proof's own id swapped with the claim.
        let mut bad = p.clone();
        bad.tx_id = Hash::ZERO;
        assert_eq!(bad.verify(&id, &trusted), Err(ProofError::WrongTx));
        if p.merkle.leaves > 1 {
            // A sibling changed.
            let mut bad = p.clone();
            bad.merkle.path[0].sibling.0[0] ^= 1;
            assert_eq!(bad.verify(&id, &trusted), Err(ProofError::BadPath));
            // The leaf moved.
            let mut bad = p.clone();
            bad.merkle.index = (bad.merkle.index + 1) % bad.merkle.leaves;
            assert_eq!(bad.verify(&id, &trusted), Err(ProofError::BadPath));
            // A step dropped.
            let mut bad = p.clone();
            bad.merkle.path.pop();
            assert_eq!(bad.verify(&id, &trusted), Err(ProofError::BadPath));
        }
    }
    assert!(
        multi_leaf,
        "no block held more than one of 9 concurrent transactions; the paths went untested"
    );

    // An unknown transaction has no receipt.
    let missing = tc
        .client("node1-0")
        .receipt(CH, &Hash::tagged(b"never", &[b"submitted"]))
        .await
        .expect("GET receipt");
    assert!(missing.is_none());
    tc.assert_healthy();
}
