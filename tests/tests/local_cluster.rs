//! The launcher itself: graceful stop and restart of one node, a whole cluster shut down and
//! opened again on the same data, and crash detection.

use std::time::Duration;

use tally_client::txs::{put, sign_writes};
use tally_client::{AdminClient, ClientError};
use tally_protocol::api::RaftRole;
use tally_protocol::{Approval, ChannelConfig, OrgCa, Role};
use tally_tests::{node_bin, TestCluster};
use tallyctl::LocalCluster;

const CH: &str = "ledger";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_stop_restart_and_the_cluster_reopens_on_its_data() {
    // Three consenters and node4 as an observer (Raft learner).
    let mut tc = TestCluster::start("local-cluster", 4, &[CH], |spec| {
        let ch = spec.channel_mut(CH).unwrap();
        ch.consenters.retain(|n| n != "node4");
        ch.observers = vec!["node4".into()];
    })
    .await;
    let signer = tc.identity("org3", Role::Client);
    assert_eq!(
        tc.node_names(),
        ["node1-0", "node2-0", "node3-0", "node4-0"]
    );
    let cfg = tc.config(CH);
    assert_eq!((cfg.consenters.len(), cfg.observers.len()), (3, 1));
    assert_eq!(
        tc.client("node4-0").config(CH).await.expect("GET config"),
        cfg,
        "the node serves the genesis configuration it was given"
    );
    let leader = tc.leader(CH).await.expect("a leader");
    assert_ne!(leader, "node4-0", "an observer cannot lead");
    let st4 = tc.client("node4-0").status(CH).await.unwrap();
    assert_eq!(st4.role, RaftRole::Learner, "{st4:?}");

    // The admin API: creating the same channel again is a no-op, a different one under the
    // same name a conflict; only the node organization's admins get in.
    let admin = AdminClient::new(
        &tc.admin_addr("node1-0"),
        &tc.ca_pem("org1"),
        &tc.identity("org1", Role::Admin),
    )
    .unwrap();
    admin
        .create_channel(&cfg, &approvals(&tc, &cfg))
        .await
        .expect("creating the same channel again is a no-op");
    let mut changed = cfg.clone();
    changed.batch.max_txs += 1;
    match admin
        .create_channel(&changed, &approvals(&tc, &changed))
        .await
    {
        Err(ClientError::Api { status: 409, .. }) => {}
        other => {
            panic!("a different configuration under the same name: expected 409, got {other:?}")
        }
    }
    let as_client = AdminClient::new(
        &tc.admin_addr("node1-0"),
        &tc.ca_pem("org1"),
        &tc.identity("org1", Role::Client),
    )
    .unwrap();
    match as_client.create_channel(&cfg, &approvals(&tc, &cfg)).await {
        Err(ClientError::Api { status: 403, .. }) => {}
        other => panic!("a client certificate on the admin API: expected 403, got {other:?}"),
    }
    let foreign = AdminClient::new(
        &tc.admin_addr("node1-0"),
        &tc.ca_pem("org1"),
        &tc.identity("org2", Role::Admin),
    )
    .unwrap();
    assert!(
        foreign
            .create_channel(&cfg, &approvals(&tc, &cfg))
            .await
            .is_err(),
        "another organization's admin got into node1's admin API"
    );

    organizations_are_never_placed_in_a_channel_without_their_approval(&tc, &admin).await;

    let tx = sign_writes(&signer, CH, vec![put("first", b"1")], false);
    let first = tc.client("node1-0").submit_wait(&tx).await.expect("submit");
    assert!(first.status.is_committed());

    // Graceful stop and restart of one node: it exits 0 on SIGTERM and comes back by itself.
    let pid = tc.pid("node2-0").expect("node2 runs");
    tc.stop("node2-0")
        .await
        .unwrap_or_else(|e| panic!("stop node2: {e}"));
    assert!(!tc.is_running("node2-0") && tc.pid("node2-0").is_none());
    tc.restart("node2-0")
        .await
        .unwrap_or_else(|e| panic!("restart node2: {e}"));
    assert_ne!(tc.pid("node2-0"), Some(pid));
    tc.wait_node_ready("node2-0", Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let again = tc
        .client("node2-0")
        .submit_wait(&tx)
        .await
        .expect("replay through node2");
    assert_eq!(again, first);
    // Transactions submitted through the observer commit too.
    let via_observer = sign_writes(&signer, CH, vec![put("via-observer", b"4")], false);
    let r = tc
        .client("node4-0")
        .submit_wait(&via_observer)
        .await
        .expect("submit through the observer");
    assert!(r.status.is_committed(), "{r:?}");

    // A crash nobody asked for is noticed.
    let victim = tc.pid("node3-0").expect("node3 runs");
    // SAFETY: kill(2) on a child process of ours.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tc.exited_on_its_own("node3-0").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the launcher did not notice node3's death"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tc.problems().len(), 1, "{:?}", tc.problems());
    tc.start_node("node3-0")
        .await
        .unwrap_or_else(|e| panic!("start node3: {e}"));
    tc.wait_ready(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let st = tc
        .wait_converged(CH, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // The whole cluster down and up again from cluster.json and the data directories.
    let dir = tc.dir().to_path_buf();
    let cluster = tc.take_cluster();
    cluster
        .shutdown()
        .await
        .unwrap_or_else(|e| panic!("shutdown: {e}"));
    let reopened = LocalCluster::open(&dir, node_bin())
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    tc.put_cluster(reopened);
    let st2 = tc
        .wait_converged(CH, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        st2.height >= st.height,
        "height went back from {} to {}",
        st.height,
        st2.height
    );
    for n in tc.node_names() {
        let r = tc
            .client(&n)
            .receipt(CH, &tx.id())
            .await
            .expect("receipt")
            .expect("still committed after reopening");
        assert_eq!(r.receipt, first);
    }
    let tx2 = sign_writes(&signer, CH, vec![put("second", b"2")], false);
    assert!(tc
        .client("node3-0")
        .submit_wait(&tx2)
        .await
        .expect("submit after reopening")
        .status
        .is_committed());
    assert!(tc.problems().is_empty(), "{:?}", tc.problems());
    assert!(!tc.panicked("node1-0"));
}

/// Every member organization's approval of `genesis`, signed by its admin.
fn approvals(tc: &TestCluster, genesis: &ChannelConfig) -> Vec<Approval> {
    genesis
        .members
        .iter()
        .map(|m| tally_protocol::genesis::approve(genesis, &tc.identity(&m.name, Role::Admin)))
        .collect()
}

/// org1's admin, alone, tries to put org2 in a new channel served by org1's node: without
/// org2's approval, with an approval forged from a CA of its own naming itself org2, with
/// org2's approval of another genesis, with a client of org2, and with the genesis alone.
/// The node refuses each and never serves the channel; with org2's real approval it does.
async fn organizations_are_never_placed_in_a_channel_without_their_approval(
    tc: &TestCluster,
    org1_admin: &AdminClient,
) {
    let base = tc.config(CH);
    let node1 = base.node("node1-0").expect("node1 in the channel").clone();
    let side = ChannelConfig::new(
        "side",
        base.members
            .iter()
            .filter(|m| m.name == "org1" || m.name == "org2")
            .cloned()
            .collect(),
        vec![node1],
        vec![],
    );
    side.validate().expect("a valid genesis");
    let org1 = tally_protocol::genesis::approve(&side, &tc.identity("org1", Role::Admin));
    let refused = |what: &'static str, r: Result<_, ClientError>, code: u16, needle: &str| match r {
        Err(ClientError::Api {
            status, message, ..
        }) if status == code => assert!(
            message.contains(needle),
            "{what}: the refusal does not say {needle:?}: {message}"
        ),
        other => panic!("{what}: expected {code}, got {other:?}"),
    };
    refused(
        "org1's approval alone",
        org1_admin
            .create_channel(&side, std::slice::from_ref(&org1))
            .await
            .map(drop),
        403,
        "not approved by [\"org2\"]",
    );
    let impostor = OrgCa::generate("org2").expect("a CA");
    let forged = impostor
        .issue(Role::Admin, "admin", &[])
        .expect("an admin of the impostor CA");
    refused(
        "an org2 admin forged by org1",
        org1_admin
            .create_channel(
                &side,
                &[
                    org1.clone(),
                    tally_protocol::genesis::approve(&side, &forged),
                ],
            )
            .await
            .map(drop),
        403,
        "certificate rejected",
    );
    let mut other = side.clone();
    other.batch.max_txs += 1;
    let elsewhere = tally_protocol::genesis::approve(&other, &tc.identity("org2", Role::Admin));
    refused(
        "org2's approval of another genesis",
        org1_admin
            .create_channel(&side, &[org1.clone(), elsewhere])
            .await
            .map(drop),
        403,
        "does not cover this genesis",
    );
    let client = tally_protocol::genesis::approve(&side, &tc.identity("org2", Role::Client));
    refused(
        "an org2 client's approval",
        org1_admin
            .create_channel(&side, &[org1.clone(), client])
            .await
            .map(drop),
        403,
        "only an organization's admins",
    );
    let bare = org1_admin
        .post_json(
            "/v1/admin/channels",
            &serde_json::to_value(&side).expect("json"),
        )
        .await;
    refused("the genesis alone", bare.map(drop), 400, "not enough");
    assert!(
        org1_admin.channel("side").await.expect("GET").is_none(),
        "node1 serves a channel org2 never approved"
    );
    org1_admin
        .create_channel(&side, &approvals(tc, &side))
        .await
        .expect("with every member's approval the channel is created");
    let info = org1_admin
        .channel("side")
        .await
        .expect("GET")
        .expect("node1 serves side");
    assert_eq!(
        info.approvals.len(),
        2,
        "the node keeps the approvals it was created with, for later joiners"
    );
}
