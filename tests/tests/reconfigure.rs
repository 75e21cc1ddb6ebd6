//! Configuration transactions on real nodes: a node joins a running channel (as a learner,
//! then a voter), the channel's leader is removed from it, and an update without enough
//! approvals is refused by every node, and a leader asked to step aside hands over. Writes go on throughout; afterwards every node of the
//! channel holds the same chain and no acknowledged write is missing.

use std::time::{Duration, Instant};
use tally_client::txs::{put, sign_config, sign_writes};
use tally_client::{AdminClient, Client};
use tally_protocol::api::ChannelInfo;
use tally_protocol::{ChannelConfig, RejectCode, Role, TxStatus};
use tally_tests::{submit_retry, TestCluster};

const CH: &str = "ledger";
const WAIT: Duration = Duration::from_secs(60);

fn admin(tc: &TestCluster, node: &str) -> AdminClient {
    let org = tc.node_org(node);
    AdminClient::new(
        &tc.admin_addr(node),
        &tc.ca_pem(&org),
        &tc.identity(&org, Role::Admin),
    )
    .expect("admin client")
}

async fn info(tc: &TestCluster, node: &str) -> ChannelInfo {
    admin(tc, node)
        .channel(CH)
        .await
        .expect("admin API answers")
        .expect("node serves the channel")
}

/// Waits until `node` reports `cond` on its channel status.
async fn wait_for(
    tc: &TestCluster,
    node: &str,
    what: &str,
    cond: impl Fn(&ChannelInfo) -> bool,
) -> ChannelInfo {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(Some(i)) = admin(tc, node).channel(CH).await {
            if cond(&i) {
                return i;
            }
            if Instant::now() > deadline {
                panic!(
                    "{node}: {what} did not happen within {WAIT:?}; last status {:?}",
                    i.status
                );
            }
        } else if Instant::now() > deadline {
            panic!("{node}: {what} did not happen within {WAIT:?}; channel not served");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn write(tc: &TestCluster, via: &[Client], from: usize, n: usize) -> Vec<String> {
    let id = tc.identity("org1", Role::Client);
    let mut keys = Vec::new();
    for i in from..from + n {
        let key = format!("k{i:04}");
        let tx = sign_writes(&id, CH, vec![put(&key, format!("v{i}").as_bytes())], false);
        let r = submit_retry(via, 0, &tx, WAIT)
            .await
            .expect("write acknowledged");
        assert_eq!(r.status, TxStatus::Committed, "{key}");
        keys.push(key);
    }
    keys
}

/// Submits a configuration change approved by the admins of `approvers` and returns its
/// receipt status.
async fn change(
    tc: &TestCluster,
    via: &[Client],
    current: &ChannelInfo,
    next: ChannelConfig,
    approvers: &[&str],
) -> TxStatus {
    let ids: Vec<_> = approvers
        .iter()
        .map(|o| tc.identity(o, Role::Admin))
        .collect();
    let refs: Vec<_> = ids.iter().collect();
    let tx = sign_config(
        &tc.identity(approvers[0], Role::Admin),
        &current.config,
        current.status.config_sequence,
        next,
        &refs,
    );
    submit_retry(via, 0, &tx, WAIT)
        .await
        .expect("configuration transaction ordered")
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_and_leave_a_running_channel() {
    let tc = TestCluster::start("reconfigure", 4, &[CH], |spec| {
        let three: Vec<String> = ["node1", "node2", "node3"].map(String::from).to_vec();
        spec.channels[0].consenters = three;
    })
    .await;
    let orig: Vec<Client> = ["node1-0", "node2-0", "node3-0"]
        .iter()
        .map(|n| tc.client(n))
        .collect();
    let mut keys = write(&tc, &orig, 0, 20).await;

    // ---- a majority is needed ---------------------------------------------------------------
    let before = info(&tc, "node1-0").await;
    assert_eq!(before.status.config_sequence, 0);
    assert_eq!(before.status.voters.len(), 3);
    let mut with4 = before.config.clone();
    with4.consenters.push(tc.node_ref("node4-0"));
    match change(&tc, &orig, &before, with4.clone(), &["org1", "org2"]).await {
        TxStatus::Rejected { code, reason } => {
            assert_eq!(code, RejectCode::Forbidden, "{reason}");
            assert!(reason.contains("needs 3 of"), "{reason}");
        }
        s => panic!("two of four organizations changed the channel: {s:?}"),
    }

    // ---- node4 joins: learner first, then voter ---------------------------------------------
    // The node is told the genesis and the configuration that lists it before the change
    // commits, so it is listening when the leader starts sending.
    admin(&tc, "node4-0")
        .join_channel(&before.genesis, &with4, &before.approvals)
        .await
        .expect("node4 joins");
    let st = change(
        &tc,
        &orig,
        &before,
        with4.clone(),
        &["org1", "org2", "org4"],
    )
    .await;
    assert_eq!(st, TxStatus::Committed);
    let id4 = tc.node_id("node4-0");
    let all: Vec<Client> = ["node1-0", "node2-0", "node3-0", "node4-0"]
        .iter()
        .map(|n| tc.client(n))
        .collect();
    keys.extend(write(&tc, &all, 20, 20).await);
    let i4 = wait_for(&tc, "node4-0", "becoming a voter and catching up", |i| {
        i.status.voters.contains(&id4) && i.status.config_sequence == 1 && i.status.ready
    })
    .await;
    assert_eq!(
        i4.config.hash(),
        with4.hash(),
        "node4 replayed to the new configuration"
    );
    let seq1 = info(&tc, "node1-0").await;
    assert_eq!(seq1.status.voters.len(), 4, "{:?}", seq1.status);
    assert!(
        tc.log_contains("node1-0", "proposing a Raft membership change")
            || tc.log_contains("node2-0", "proposing a Raft membership change")
            || tc.log_contains("node3-0", "proposing a Raft membership change")
    );

    // ---- the leader leaves -------------------------------------------------------------------
    let leader_id = info(&tc, "node4-0").await.status.leader_id;
    let leader = tc.node_name(leader_id).expect("a known leader");
    let current = info(&tc, "node4-0").await;
    let mut without = current.config.clone();
    without.consenters.retain(|n| n.id != leader_id);
    let stay: Vec<Client> = ["node1-0", "node2-0", "node3-0", "node4-0"]
        .iter()
        .filter(|n| **n != leader)
        .map(|n| tc.client(n))
        .collect();
    let st = change(
        &tc,
        &stay,
        &current,
        without.clone(),
        &["org1", "org2", "org3"],
    )
    .await;
    assert_eq!(st, TxStatus::Committed);
    let remaining: Vec<&str> = ["node1-0", "node2-0", "node3-0", "node4-0"]
        .into_iter()
        .filter(|n| *n != leader)
        .collect();
    for n in &remaining {
        wait_for(&tc, n, "the old leader leaving the voters", |i| {
            i.status.voters.len() == 3
                && !i.status.voters.contains(&leader_id)
                && i.status.leader_id != 0
                && i.status.leader_id != leader_id
        })
        .await;
    }
    keys.extend(write(&tc, &stay, 40, 20).await);
    let gone = info(&tc, &leader).await;
    assert!(!gone.status.member, "{leader} still thinks it is a member");
    // A removed node does not hold its pod's readiness hostage.
    assert!(tc.client(&leader).ready().await.expect("readyz answers"));

    // ---- a planned restart hands leadership over first ----------------------------------------
    let lead = tc
        .node_name(info(&tc, remaining[0]).await.status.leader_id)
        .expect("a leader among the remaining nodes");
    let answer = admin(&tc, &lead)
        .release_leadership()
        .await
        .expect("leadership released");
    assert_eq!(answer["channels"][0]["leading"], false, "{answer}");
    let new_leader = answer["channels"][0]["leader_id"].as_u64().unwrap_or(0);
    assert!(
        new_leader != 0 && new_leader != tc.node_id(&lead),
        "{answer}"
    );
    keys.extend(write(&tc, &stay, 60, 10).await);

    // ---- every remaining node holds the same chain and every write ---------------------------
    let deadline = Instant::now() + WAIT;
    loop {
        let mut tips = Vec::new();
        for n in &remaining {
            let s = tc.client(n).status(CH).await.expect("status");
            tips.push((s.height, s.last_block_hash, s.state_root));
        }
        if tips.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not converge: {tips:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reader = tc
        .client(remaining[0])
        .with_reader(tc.identity("org2", Role::Client));
    for k in &keys {
        assert!(
            reader.get(CH, k).await.expect("read").is_some(),
            "acknowledged write {k} is missing"
        );
    }
    tc.assert_healthy();
}
