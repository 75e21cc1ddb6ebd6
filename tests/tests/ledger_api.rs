//! The ledger as a client sees it: versions and read checks, key history, prefix listing,
//! signing with a recorded certificate's hash, the block stream, and observers (Raft learners)
//! that follow a channel without voting.

use std::time::Duration;
use tally_client::txs::{delete, put, read_absent, read_at, sign_kv, sign_writes};
use tally_protocol::api::RaftRole;
use tally_protocol::{RejectCode, Role, TxStatus};
use tally_tests::{assert_identical_chains, TestCluster};
use tallyctl::local::LocalChannelSpec;

const CH: &str = "ledger";

fn rejected_with(status: &TxStatus, want: RejectCode) -> bool {
    matches!(status, TxStatus::Rejected { code, .. } if *code == want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_history_prefixes_and_read_checks() {
    let tc = TestCluster::start("ledger-api", 3, &[CH], |_| {}).await;
    tc.wait_converged(CH, Duration::from_secs(30))
        .await
        .unwrap();
    let me = tc.identity("org1", Role::Client);
    let c = tc.client("node2-0");

    let r1 = c
        .submit_wait(&sign_writes(
            &me,
            CH,
            vec![put("acct/alice", b"100")],
            false,
        ))
        .await
        .unwrap();
    assert!(r1.status.is_committed());
    let v1 = c
        .get(CH, "acct/alice")
        .await
        .unwrap()
        .expect("alice is set");
    assert_eq!(v1.value, b"100");
    assert_eq!(v1.value_utf8.as_deref(), Some("100"));
    assert_eq!((v1.version.block, v1.version.tx), (r1.block, r1.index));

    // A write conditioned on the version it read commits...
    let r2 = c
        .submit_wait(&sign_kv(
            &me,
            CH,
            vec![read_at("acct/alice", v1.version)],
            vec![put("acct/alice", b"90")],
            false,
        ))
        .await
        .unwrap();
    assert!(r2.status.is_committed(), "{:?}", r2.status);
    // ...and a second one that read the same, now stale, version is refused with nothing written.
    let r3 = c
        .submit_wait(&sign_kv(
            &me,
            CH,
            vec![read_at("acct/alice", v1.version)],
            vec![put("acct/alice", b"0")],
            false,
        ))
        .await
        .unwrap();
    assert!(
        rejected_with(&r3.status, RejectCode::ReadConflict),
        "{:?}",
        r3.status
    );
    assert_eq!(c.get(CH, "acct/alice").await.unwrap().unwrap().value, b"90");
    // "Must not exist" checks.
    let r4 = c
        .submit_wait(&sign_kv(
            &me,
            CH,
            vec![read_absent("acct/alice")],
            vec![put("acct/alice", b"1")],
            false,
        ))
        .await
        .unwrap();
    assert!(
        rejected_with(&r4.status, RejectCode::ReadConflict),
        "{:?}",
        r4.status
    );
    let r5 = c
        .submit_wait(&sign_kv(
            &me,
            CH,
            vec![read_absent("acct/bob")],
            vec![put("acct/bob", b"5")],
            false,
        ))
        .await
        .unwrap();
    assert!(r5.status.is_committed(), "{:?}", r5.status);

    // Delete, then the history shows every change in order, the delete as no value.
    let r6 = c
        .submit_wait(&sign_writes(&me, CH, vec![delete("acct/alice")], false))
        .await
        .unwrap();
    assert!(r6.status.is_committed());
    assert!(c.get(CH, "acct/alice").await.unwrap().is_none());
    let h = c.history(CH, "acct/alice", None).await.unwrap();
    let values: Vec<Option<Vec<u8>>> = h.entries.iter().map(|e| e.value.clone()).collect();
    assert_eq!(
        values,
        vec![Some(b"100".to_vec()), Some(b"90".to_vec()), None]
    );
    assert_eq!(h.entries[0].tx_id, r1.tx_id);
    assert_eq!(h.entries[2].tx_id, r6.tx_id);
    assert!(h.entries.windows(2).all(|w| w[0].version < w[1].version));
    // The history of "acct/alice" does not include keys that merely start with it.
    c.submit_wait(&sign_writes(&me, CH, vec![put("acct/alice2", b"x")], false))
        .await
        .unwrap();
    assert_eq!(
        c.history(CH, "acct/alice", None)
            .await
            .unwrap()
            .entries
            .len(),
        3
    );

    // Prefix listing in key order, live keys only.
    for k in ["acct/carol", "acct/dave", "other/x"] {
        c.submit_wait(&sign_writes(&me, CH, vec![put(k, b"1")], false))
            .await
            .unwrap();
    }
    let keys: Vec<String> = c
        .keys(CH, "acct/", None)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.key)
        .collect();
    assert_eq!(
        keys,
        vec!["acct/alice2", "acct/bob", "acct/carol", "acct/dave"]
    );
    let two: Vec<String> = c
        .keys(CH, "acct/", Some(2))
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.key)
        .collect();
    assert_eq!(two, vec!["acct/alice2", "acct/bob"]);

    // The certificate is recorded now, so the client may sign with its hash alone.
    assert!(c.knows_cert(CH, &me.cert_hash).await.unwrap());
    let r7 = c
        .submit_wait(&sign_writes(&me, CH, vec![put("by-hash", b"1")], true))
        .await
        .unwrap();
    assert!(r7.status.is_committed(), "{:?}", r7.status);
    // Another organization's client, never seen, must send its certificate first.
    let other = tc.identity("org3", Role::Client);
    assert!(!c.knows_cert(CH, &other.cert_hash).await.unwrap());
    assert!(c
        .submit_wait(&sign_writes(&other, CH, vec![put("by-hash-2", b"1")], true))
        .await
        .is_err());

    tc.wait_converged(CH, Duration::from_secs(30))
        .await
        .unwrap();
    assert_identical_chains(&tc, CH).await;
    tc.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_stream_and_observers() {
    let tc = TestCluster::start("ledger-observer", 4, &[], |spec| {
        let orgs = spec.orgs.clone();
        let consenters: Vec<String> = ["node1", "node2", "node3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut ch = LocalChannelSpec::new(CH, &orgs, &consenters);
        ch.observers = vec!["node4".to_string()];
        spec.channels = vec![ch];
    })
    .await;
    tc.wait_converged(CH, Duration::from_secs(30))
        .await
        .unwrap();
    let observer = tc.client("node4-0");
    let st = observer.status(CH).await.unwrap();
    assert_eq!(st.role, RaftRole::Learner);

    // Follow from the observer while writing through a consenter.
    let from = st.height;
    let mut stream = observer.follow(CH, from).await.unwrap();
    let me = tc.identity("org4", Role::Client);
    let c = tc.client("node1-0");
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = c
            .submit_wait(&sign_writes(
                &me,
                CH,
                vec![put(&format!("obs{i}"), b"v")],
                false,
            ))
            .await
            .unwrap();
        assert!(r.status.is_committed());
        ids.push(r.tx_id);
    }
    let mut seen = Vec::new();
    let mut next = from;
    while seen.len() < ids.len() {
        let b = tokio::time::timeout(Duration::from_secs(20), stream.recv())
            .await
            .expect("a block within 20 s")
            .expect("stream open")
            .expect("a block");
        assert_eq!(b.header.number, next, "blocks arrive in order without gaps");
        next += 1;
        seen.extend(b.tx_ids());
    }
    assert_eq!(seen, ids);
    // The observer serves reads of what it followed.
    assert_eq!(observer.get(CH, "obs4").await.unwrap().unwrap().value, b"v");
    // With the leader down the channel still orders (2 of 3 voters); the observer does not
    // count toward the quorum but keeps following. The write goes to a surviving consenter,
    // which may first forward it to the dead leader: it must still commit, without a retry.
    let leader = tc.leader(CH).await.expect("a leader");
    tc.kill(&leader).await.unwrap();
    let survivor = ["node1-0", "node2-0", "node3-0"]
        .into_iter()
        .find(|n| *n != leader)
        .unwrap();
    let c = tc.client(survivor);
    let r = c
        .submit_wait(&sign_writes(&me, CH, vec![put("after", b"1")], false))
        .await
        .unwrap();
    assert!(r.status.is_committed());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while observer.get(CH, "after").await.unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the observer did not follow"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tc.assert_healthy();
}
