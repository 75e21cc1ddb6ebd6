//! Attacks on real tally-node processes, each by someone the threat model does not trust
//! (docs/security.md): a member organization forging another's identity, an outsider, an
//! insider flooding a listener. Each test starts its own cluster and checks that the attack is
//! refused and the channel carries on. Shared tools live in tally_tests::adversary.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::collections::{BTreeMap, BTreeSet};

use tally_client::txs::{put, sign_config, sign_writes};
use tally_monitoring::names::{CHECKPOINTS_SENT, RAFT_QUIET};
use tally_protocol::api::ChannelStatus;
use tally_protocol::config::MAX_BATCH_BYTES;
use tally_protocol::{Encode, RejectCode, Role, TxStatus};
use tally_tests::adversary::{
    api_addr, api_tls, build_contracts, deploy_chaincode, file_limit, forge_node_identity,
    heartbeat, log_count, open_fds, quiet_listing, read_until_closed, rss_kib, set_file_limit,
    RoguePeer, MAX_FRAME,
};
use tally_tests::TestCluster;
use tallyctl::local::LocalCluster;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CH: &str = "alpha";
/// Time for a node to act on what it was sent (not asserted: the checks after it are).
const SETTLE: Duration = Duration::from_secs(3);

async fn start(test: &str, channels: &[&str]) -> TestCluster {
    start_with(test, channels, |_| {}).await
}

async fn start_with(
    test: &str,
    channels: &[&str],
    tweak: impl FnOnce(&mut tallyctl::local::LocalClusterSpec),
) -> TestCluster {
    let c = TestCluster::start(test, 3, channels, tweak).await;
    c.wait_ready(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{test}: cluster not ready: {e}"));
    c
}

/// The leader's name and its status.
async fn leader(c: &LocalCluster, channel: &str) -> (String, ChannelStatus) {
    for _ in 0..100 {
        if let Some(name) = c.leader(channel).await {
            if let Ok(s) = c.client(&name).status(channel).await {
                return (name, s);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("channel {channel} has no leader");
}

/// Commits one write through `node` (a plain put, signed by the node's organization client).
async fn commit_one(c: &LocalCluster, node: &str, channel: &str, key: &str) {
    let id = c.identity(&c.node_org(node), Role::Client);
    let tx = sign_writes(&id, channel, vec![put(key, b"v")], false);
    let r = c
        .client(node)
        .submit_wait(&tx)
        .await
        .unwrap_or_else(|e| panic!("write {key} through {node}: {e}"));
    assert!(r.status.is_committed(), "write {key}: {:?}", r.status);
}

/// Checks that the leader and its term did not move since `before`.
async fn assert_leader_unmoved(
    c: &LocalCluster,
    channel: &str,
    before: &(String, ChannelStatus),
    what: &str,
) {
    let after = leader(c, channel).await;
    assert_eq!(
        (&after.0, after.1.term),
        (&before.0, before.1.term),
        "{what}: the leader or its term moved (before {} in term {}, after {} in term {})",
        before.0,
        before.1.term,
        after.0,
        after.1.term
    );
}

/// The two nodes other than `leader`.
fn others(c: &LocalCluster, channel: &str, leader: &str) -> (String, String) {
    let rest: Vec<String> = c
        .channel_nodes(channel)
        .into_iter()
        .filter(|n| n != leader)
        .collect();
    (rest[0].clone(), rest[1].clone())
}

/// A member organization uses its own CA to issue a certificate that names another
/// organization and that organization's node, and sends the leader a heartbeat in that node's
/// name with a far higher term. The connection is refused and the term does not move; the
/// same heartbeat with the real node's certificate does move it (so the attack would work if
/// the check were missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_org_certificate_claiming_another_org_is_refused() {
    let c = start("adv-forged-org", &[CH]).await;
    let before = leader(&c, CH).await;
    let (victim, attacker) = others(&c, CH, &before.0);
    let victim_org = c.node_org(&victim);
    let forged = forge_node_identity(&c, &c.node_org(&attacker), &victim_org, &victim);
    assert_eq!(forged.info.org, victim_org);

    let hb = heartbeat(
        c.node_id(&victim),
        before.1.node_id,
        before.1.term + 1000,
        0,
    );
    let mut rogue = RoguePeer::connect(&c, &before.0, &forged)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The write may or may not reach the node before it closes the connection.
    let _ = rogue.send(CH, &hb).await;
    assert!(
        rogue.closed_within(Duration::from_secs(10)).await,
        "the leader kept a connection with a forged certificate open"
    );
    tokio::time::sleep(SETTLE).await;
    assert_leader_unmoved(&c, CH, &before, "forged organization").await;
    assert!(
        log_count(&c, &before.0, "peer connection refused") > 0,
        "the leader did not log the refusal:\n{}",
        c.log_tail(&before.0, 20)
    );
    commit_one(&c, &before.0, CH, "after-forged-org").await;

    // The control: the victim's genuine certificate carries the same heartbeat through.
    let genuine = c.node_identity(&victim).unwrap_or_else(|e| panic!("{e}"));
    let mut real = RoguePeer::connect(&c, &before.0, &genuine)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    real.send(CH, &hb).await.unwrap_or_else(|e| panic!("{e}"));
    let mut moved = false;
    for _ in 0..50 {
        if let Ok(s) = c.client(&before.0).status(CH).await {
            if s.term > before.1.term {
                moved = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(moved, "the control heartbeat with the genuine certificate had no effect: the test's attack does not reach Raft");
    c.assert_healthy();
}

/// A certificate genuinely issued by an organization's CA, for a node name that is not the
/// node whose Raft id it claims, is refused per message; so is a leader's heartbeat whose
/// commit index lies beyond the follower's log, which raft-rs would otherwise treat as fatal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_org_certificate_claiming_another_nodes_raft_id_is_refused() {
    let c = start("adv-raft-id", &[CH]).await;
    let before = leader(&c, CH).await;
    let (victim, follower) = others(&c, CH, &before.0);
    let org = c.node_org(&victim);
    let intruder = forge_node_identity(&c, &org, &org, "intruder");
    let mut rogue = RoguePeer::connect(&c, &before.0, &intruder)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let hb = heartbeat(
        c.node_id(&victim),
        before.1.node_id,
        before.1.term + 1000,
        0,
    );
    rogue.send(CH, &hb).await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(SETTLE).await;
    assert_leader_unmoved(&c, CH, &before, "another node's Raft id").await;
    assert!(
        log_count(&c, &before.0, "raft message refused") > 0,
        "the leader did not log the refusal:\n{}",
        c.log_tail(&before.0, 20)
    );

    // The leader's own certificate, in its own term, announcing a commit index far beyond
    // what the follower holds.
    let leader_id = c.node_identity(&before.0).unwrap_or_else(|e| panic!("{e}"));
    let mut insider = RoguePeer::connect(&c, &follower, &leader_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let beyond = heartbeat(
        before.1.node_id,
        c.node_id(&follower),
        before.1.term,
        1 << 40,
    );
    insider
        .send(CH, &beyond)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(SETTLE).await;
    c.assert_healthy();
    commit_one(&c, &follower, CH, "after-commit-beyond-log").await;
    // Nor does the follower wait forever for a commit index nobody will reach.
    c.wait_node_ready(&follower, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{follower} after a commit index beyond its log: {e}"));
}

/// A node that serves a channel's members but is not one of its nodes cannot speak for the
/// channel, neither under its own Raft id nor under a channel node's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_the_channel_is_refused() {
    const BETA: &str = "beta";
    let c = start_with("adv-outsider", &[CH, BETA], |spec| {
        let two: Vec<String> = spec.peers[..2].iter().map(|p| p.name.clone()).collect();
        if let Some(ch) = spec.channel_mut(BETA) {
            ch.consenters = two;
        }
    })
    .await;
    let members = c.channel_nodes(BETA);
    assert_eq!(members.len(), 2, "beta should have two nodes: {members:?}");
    let outsider = c
        .node_names()
        .into_iter()
        .find(|n| !members.contains(n))
        .expect("a node outside beta");
    let before = leader(&c, BETA).await;
    let own = c.node_identity(&outsider).unwrap_or_else(|e| panic!("{e}"));
    let mut peer = RoguePeer::connect(&c, &before.0, &own)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let term = before.1.term + 1000;
    let other_member = members
        .iter()
        .find(|n| **n != before.0)
        .expect("a second member");
    for from in [c.node_id(&outsider), c.node_id(other_member)] {
        peer.send(BETA, &heartbeat(from, before.1.node_id, term, 0))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    tokio::time::sleep(SETTLE).await;
    assert_leader_unmoved(&c, BETA, &before, "a node outside the channel").await;
    commit_one(&c, &before.0, BETA, "after-outsider").await;
    c.assert_healthy();
}

/// Frames announced at the limit cost memory only as their bytes arrive; a frame over the
/// limit closes its connection with a log line. Each connection holds a genuine node
/// certificate: this is what an insider can do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_close_the_connection_without_costing_memory() {
    let c = start("adv-frames", &[CH]).await;
    let (target, _) = leader(&c, CH).await;
    let (insider, _) = others(&c, CH, &target);
    let id = c.node_identity(&insider).unwrap_or_else(|e| panic!("{e}"));
    let pid = c.pid(&target).expect("the target runs");
    let rss_before = rss_kib(pid);

    let limit = MAX_FRAME;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut p = RoguePeer::connect(&c, &target, &id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut start = limit.to_be_bytes().to_vec();
        start.extend_from_slice(&[0u8; 1024]);
        p.send_raw(&start).await.unwrap_or_else(|e| panic!("{e}"));
        held.push(p);
    }
    let mut over = RoguePeer::connect(&c, &target, &id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    over.send_raw(&(limit + 1).to_be_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        over.closed_within(Duration::from_secs(10)).await,
        "a frame over the limit did not close its connection"
    );
    tokio::time::sleep(SETTLE).await;
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 100 * 1024,
        "four frames announced at {limit} bytes grew the node from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(
        log_count(&c, &target, &format!("frame of {} bytes", limit as u64 + 1)) > 0,
        "the oversized frame was not logged:\n{}",
        c.log_tail(&target, 20)
    );
    commit_one(&c, &target, CH, "after-frames").await;
    drop(held);
    c.assert_healthy();
}

/// 200 connections that never finish a request (idle, header trickled then silent, a short
/// body then silence) are closed by the node's timeouts, while plain writes keep committing
/// through the same node and its leadership holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_and_writes_continue() {
    let c = start("adv-slow-conns", &[CH]).await;
    let before = leader(&c, CH).await;
    let addr = api_addr(&c, &before.0);
    let mut idle = Vec::new();
    let mut slow_header = Vec::new();
    let mut short_body = Vec::new();
    let mut idle_tls = Vec::new();
    for i in 0..200 {
        // Idle connections without a TLS handshake, and idle after one.
        if i % 3 == 0 {
            let s = TcpStream::connect(&addr)
                .await
                .unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}"));
            idle.push(s);
            idle_tls.push(api_tls(&addr).await);
            continue;
        }
        let mut s = api_tls(&addr).await;
        match i % 3 {
            1 => {
                s.write_all(b"GET /v1/channels HTTP/1.1\r\nHost: x\r\n")
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                slow_header.push(s);
            }
            _ => {
                let head = format!(
                    "POST /v1/channels/{CH}/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
                );
                s.write_all(head.as_bytes())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                s.write_all(&[0u8; 10])
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                short_body.push(s);
            }
        }
    }
    for i in 0..20 {
        commit_one(&c, &before.0, CH, &format!("during-slow-{i}")).await;
    }
    // The node's timeouts: 30 s for a header (idle connections included) and for a body;
    // generous margins.
    let wait = Duration::from_secs(90);
    let no_handshake = idle.into_iter().map(|mut s| async move {
        let (_, closed) = read_until_closed(&mut s, wait).await;
        closed
    });
    for closed in futures_util::future::join_all(no_handshake).await {
        assert!(
            closed,
            "a connection without a TLS handshake was still open after {wait:?}"
        );
    }
    let checks = idle_tls
        .into_iter()
        .map(|s| (s, "idle"))
        .chain(slow_header.into_iter().map(|s| (s, "slow header")))
        .chain(short_body.into_iter().map(|s| (s, "short body")))
        .map(|(mut s, kind)| async move {
            let (got, closed) = read_until_closed(&mut s, wait).await;
            (kind, got, closed)
        });
    let results = futures_util::future::join_all(checks).await;
    for (kind, got, closed) in &results {
        assert!(closed, "a {kind} connection was still open after {wait:?}");
        if *kind == "short body" {
            let text = String::from_utf8_lossy(got);
            assert!(
                text.starts_with("HTTP/1.1 408"),
                "a short body then silence got {text:?}, not 408"
            );
        }
    }
    assert_leader_unmoved(&c, CH, &before, "slow connections").await;
    commit_one(&c, &before.0, CH, "after-slow").await;
    c.assert_healthy();
}

/// A body over the channel's transaction limit is refused with 413 and a message, whether
/// its length is announced or streamed; announcing gigabytes costs the node nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_without_costing_memory() {
    let c = start("adv-bodies", &[CH]).await;
    let (target, _) = leader(&c, CH).await;
    let addr = api_addr(&c, &target);
    let pid = c.pid(&target).expect("the target runs");
    let rss_before = rss_kib(pid);
    let url = format!("{}/v1/channels/{CH}/transactions", c.api_url(&target));
    let max = c.config(CH).max_tx_bytes as usize;
    let (status, body) = tally_tests::http::request(
        "POST",
        &url,
        Some("application/octet-stream"),
        vec![0u8; max + 1],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    tally_tests::assert_api_error(
        "a body one byte over the limit",
        (status, &body),
        413,
        "too_large",
    );

    let mut streams = Vec::new();
    for _ in 0..8 {
        let mut s = api_tls(&addr).await;
        let head = format!(
            "POST /v1/channels/{CH}/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            4u64 << 30
        );
        s.write_all(head.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Past the limit, then the node answers; later writes may fail once it has closed.
        let chunk = vec![7u8; 256 * 1024];
        for _ in 0..(max / chunk.len() + 2) {
            if s.write_all(&chunk).await.is_err() {
                break;
            }
        }
        streams.push(s);
    }
    for mut s in streams {
        let (got, _) = read_until_closed(&mut s, Duration::from_secs(20)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 413"),
            "a 4 GiB announced body got {text:?}"
        );
    }
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 100 * 1024,
        "oversized bodies grew the node from {rss_before} KiB to {rss_after} KiB"
    );
    commit_one(&c, &target, CH, "after-bodies").await;
    c.assert_healthy();
}

/// Proposes `next` in place of `current` (in force after `applied` changes), approved by the
/// admins of every member organization, and returns what the channel made of it.
async fn change_config(
    c: &LocalCluster,
    via: &tally_client::Client,
    current: &tally_protocol::ChannelConfig,
    applied: u64,
    next: tally_protocol::ChannelConfig,
) -> TxStatus {
    let admins: Vec<_> = current
        .members
        .iter()
        .map(|m| c.identity(&m.name, Role::Admin))
        .collect();
    let approvers: Vec<_> = admins.iter().collect();
    let tx = sign_config(&admins[0], current, applied, next, &approvers);
    via.submit_wait(&tx)
        .await
        .unwrap_or_else(|e| panic!("configuration transaction not ordered: {e}"))
        .status
}

/// Blocks are bounded in bytes as well as in count, and the bounds are themselves checked. On a
/// channel whose blocks hold at most 32 KiB of transactions: a configuration change asking for
/// blocks above 64 MiB (more than a peer frame carries), or for transactions larger than a
/// block, is refused with the bound in its reason and changes nothing on any node; a change
/// lowering `max_tx_bytes` to 4 KiB applies, and then a transaction one value too large is
/// refused at submission with 413 `too_large` naming the limit; and forty transactions just
/// under it, about five blocks' worth sent at once, commit in several blocks each within
/// 32 KiB (read back from the ledger).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_transactions_and_blocks_are_refused_or_cut_by_bytes() {
    const BLOCK_BYTES: u32 = 32 * 1024;
    const TX_BYTES: u32 = 4096;
    const BURST: usize = 40;
    let c = start_with("adv-blocks", &[CH], |spec| {
        // A long timeout, so that blocks are cut by their bytes rather than by time.
        spec.channels[0].batch = tally_protocol::BatchConfig {
            max_txs: 500,
            max_bytes: BLOCK_BYTES,
            timeout_ms: 1000,
        };
    })
    .await;
    let nodes = c.channel_nodes(CH);
    let clients: Vec<_> = nodes.iter().map(|n| c.client(n)).collect();
    let genesis = clients[0]
        .config(CH)
        .await
        .expect("the channel's configuration");
    assert_eq!(genesis.batch.max_bytes, BLOCK_BYTES);
    assert!(
        genesis.max_tx_bytes <= BLOCK_BYTES,
        "{}",
        genesis.max_tx_bytes
    );

    // ---- configurations beyond the bounds are refused and apply nothing ----------------------
    let mut huge_blocks = genesis.clone();
    huge_blocks.batch.max_bytes = MAX_BATCH_BYTES + 1;
    let mut tx_over_block = genesis.clone();
    tx_over_block.max_tx_bytes = BLOCK_BYTES + 1;
    for (what, next, names) in [
        (
            "blocks above 64 MiB",
            huge_blocks,
            MAX_BATCH_BYTES.to_string(),
        ),
        (
            "transactions above a block",
            tx_over_block,
            "max_tx_bytes".to_string(),
        ),
    ] {
        match change_config(&c, &clients[0], &genesis, 0, next).await {
            TxStatus::Rejected { code, reason } => {
                assert_eq!(code, RejectCode::Malformed, "{what}: {reason}");
                assert!(
                    reason.contains(&names),
                    "{what}: {reason:?} lacks {names:?}"
                );
                assert!(reason.contains("invalid"), "{what}: {reason:?}");
            }
            s => panic!("a configuration with {what} was applied: {s:?}"),
        }
    }
    c.wait_converged(CH, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (name, client) in nodes.iter().zip(&clients) {
        let s = client.status(CH).await.expect("status");
        assert_eq!(
            (s.config_sequence, s.config_hash),
            (0, genesis.hash()),
            "{name} applied a refused configuration"
        );
    }

    // ---- a smaller max_tx_bytes applies; a transaction over it is refused ---------------------
    let mut small_txs = genesis.clone();
    small_txs.max_tx_bytes = TX_BYTES;
    let st = change_config(&c, &clients[0], &genesis, 0, small_txs.clone()).await;
    assert!(st.is_committed(), "max_tx_bytes {TX_BYTES}: {st:?}");
    c.wait_converged(CH, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let org = c.node_org(&nodes[1]);
    let writer = c.identity(&org, Role::Client);
    let too_big = sign_writes(
        &writer,
        CH,
        vec![put("big", &[7u8; TX_BYTES as usize])],
        false,
    );
    for (name, client) in nodes.iter().zip(&clients) {
        match client.submit_wait(&too_big).await {
            Err(e) => {
                assert_eq!(
                    (e.status(), e.api_code()),
                    (Some(413), Some("too_large")),
                    "{name}: {e}"
                );
                assert!(e.to_string().contains(&TX_BYTES.to_string()), "{name}: {e}");
            }
            Ok(r) => panic!(
                "{name} took a {} byte transaction over a {TX_BYTES} byte limit: {:?}",
                too_big.to_bytes().len(),
                r.status
            ),
        }
    }

    // ---- a burst larger than a block is cut into blocks within the bytes ----------------------
    let overhead = sign_writes(&writer, CH, vec![put("burst-00", b"")], false)
        .to_bytes()
        .len();
    // A little slack for the encoding of a longer value's length.
    let value = vec![1u8; TX_BYTES as usize - overhead - 16];
    let burst: Vec<_> = (0..BURST)
        .map(|i| {
            sign_writes(
                &writer,
                CH,
                vec![put(&format!("burst-{i:02}"), &value)],
                false,
            )
        })
        .collect();
    let sizes: BTreeMap<_, _> = burst.iter().map(|t| (t.id(), t.to_bytes().len())).collect();
    assert!(sizes.values().all(|&n| n <= TX_BYTES as usize), "{sizes:?}");
    let total: usize = sizes.values().sum();
    assert!(
        total > 4 * BLOCK_BYTES as usize,
        "the burst is {total} bytes"
    );
    let mut sent = tokio::task::JoinSet::new();
    for (i, tx) in burst.into_iter().enumerate() {
        let client = clients[i % clients.len()].clone();
        sent.spawn(async move { client.submit_wait(&tx).await });
    }
    let mut blocks = BTreeSet::new();
    while let Some(r) = sent.join_next().await {
        let r = r
            .expect("submission task")
            .expect("a transaction within the limit");
        assert!(r.status.is_committed(), "{:?}", r.status);
        blocks.insert(r.block);
    }
    let mut most_of_ours = 0;
    for b in &blocks {
        let block = clients[0]
            .block(CH, Some(*b))
            .await
            .expect("read the block back");
        let bytes: usize = block.txs.iter().map(|t| t.to_bytes().len()).sum();
        assert!(
            bytes <= BLOCK_BYTES as usize,
            "block {b} holds {bytes} bytes of transactions, over {BLOCK_BYTES}"
        );
        let ours = block
            .txs
            .iter()
            .filter(|t| sizes.contains_key(&t.id()))
            .count();
        most_of_ours = most_of_ours.max(ours);
        eprintln!(
            "block {b}: {} transactions ({ours} of the burst), {bytes} bytes",
            block.txs.len()
        );
    }
    assert!(
        blocks.len() * BLOCK_BYTES as usize >= total,
        "{total} bytes in {} blocks",
        blocks.len()
    );
    // Several of the burst shared a block: the blocks were cut by bytes, not one per
    // transaction.
    assert!(
        most_of_ours > 1,
        "every block held one transaction of the burst"
    );
    commit_one(&c, &nodes[0], CH, "after-burst").await;
    c.assert_healthy();
}

/// When the node runs out of file descriptors, accepting fails; it backs off instead of
/// retrying at once (which logged millions of lines), and serves again once descriptors free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_does_not_spin_the_accept_loop() {
    let c = start("adv-emfile", &[CH]).await;
    let (target, _) = leader(&c, CH).await;
    let (other, _) = others(&c, CH, &target);
    let addr = api_addr(&c, &other);
    let pid = c.pid(&other).expect("the node runs");
    let before = log_count(&c, &other, "accept failed");
    let (soft, _) = file_limit(pid);
    set_file_limit(pid, open_fds(pid) as u64 + 50);
    let mut held = Vec::new();
    for _ in 0..2000 {
        // Once the listen backlog is full, a connect waits for SYN retries: stop there.
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => held.push(s),
            _ => break,
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let lines = log_count(&c, &other, "accept failed") - before;
    let n = held.len();
    drop(held);
    set_file_limit(pid, soft);
    assert!(
        lines > 0,
        "the node never ran out of descriptors ({n} connections held): the test did not test"
    );
    assert!(
        lines <= 10,
        "the accept loop logged {lines} failures in 10 s: it spins instead of backing off"
    );
    commit_one(&c, &other, CH, "after-emfile").await;
    c.assert_healthy();
}

/// Twenty clients querying a function that spins until it runs out of fuel, as fast as they
/// are answered, on the leader: queries run on a bounded pool off the async workers, so plain
/// writes through the same node keep committing and the leader stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_maximal_fuel_queries_leaves_writes_committing() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("adversarial-contracts");
    let Some(dir) = build_contracts(&out) else {
        return;
    };
    let module = std::fs::read(dir.join("runaway.wasm")).expect("runaway.wasm built");
    let c = start("adv-queries", &[CH]).await;
    deploy_chaincode(&c, CH, "runaway", &module).await;
    let before = leader(&c, CH).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ran = Arc::new(AtomicU32::new(0));
    let reader = c
        .client(&before.0)
        .with_reader(c.identity(&c.node_org(&before.0), Role::Client));
    let flood: Vec<_> = (0..20)
        .map(|_| {
            let (reader, stop, ran) = (reader.clone(), stop.clone(), ran.clone());
            tokio::spawn(async move {
                let (mut busy, mut other) = (0u32, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match reader.query_chaincode(CH, "runaway", "spin", &[]).await {
                        Err(e) if e.api_code() == Some("out_of_fuel") => {
                            ran.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.api_code() == Some("busy") => {
                            busy += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        r => other.push(format!("{r:?}")),
                    }
                }
                (busy, other)
            })
        })
        .collect();
    // Writes go on while the flood runs, until it has run a good number of full-fuel queries.
    let mut writes = 0;
    while ran.load(Ordering::Relaxed) < 20 && writes < 2000 {
        commit_one(&c, &before.0, CH, &format!("during-queries-{writes}")).await;
        writes += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let mut refused = 0;
    for f in flood {
        let (b, other) = f.await.expect("query task");
        assert!(other.is_empty(), "unexpected query answers: {other:?}");
        refused += b;
    }
    let ran = ran.load(Ordering::Relaxed);
    eprintln!(
        "{writes} writes committed while {ran} queries ran out of fuel ({refused} refused busy)"
    );
    assert!(ran > 0, "no query ran: the flood did not test anything");
    assert_leader_unmoved(&c, CH, &before, "a query flood").await;
    c.assert_healthy();
}

// ---- time and fuel (the leader's clock, the block's fuel) ------------------------------------

/// tally-node's test-only clock offset (debug builds only; see node/src/wall_clock.rs).
const CLOCK_OFFSET_VAR: &str = "TALLY_TEST_ONLY_CLOCK_OFFSET_MS";
const HOUR_MS: u64 = 3_600_000;
/// How far ahead of a follower's clock a block time may be (channel::clock_check).
const CLOCK_TOLERANCE_MS: u64 = 30_000;

fn admin(c: &LocalCluster, node: &str) -> tally_client::AdminClient {
    let org = c.node_org(node);
    tally_client::AdminClient::new(
        &c.admin_addr(node),
        &c.ca_pem(&org),
        &c.identity(&org, Role::Admin),
    )
    .expect("admin client")
}

/// A put signed `ahead_ms` ahead of the real clock: a client sharing a fast clock.
fn put_dated(
    c: &LocalCluster,
    node: &str,
    key: &str,
    ahead_ms: u64,
) -> tally_protocol::Transaction {
    let id = c.identity(&c.node_org(node), Role::Client);
    let now = tally_protocol::now_ms();
    let body = tally_protocol::TxBody {
        channel: CH.to_string(),
        nonce: now ^ 0x5eed,
        timestamp_ms: now + ahead_ms,
        signer: tally_client::txs::signer(&id, false),
        payload: tally_protocol::Payload::KvWrite {
            reads: vec![],
            writes: vec![put(key, b"v")],
        },
    };
    tally_client::txs::sign_body(&id, body)
}

/// Asks the leader to hand over until `want` leads (handing over picks the caught-up voter
/// with the lowest id, so the node with the lowest id is reached from any other).
async fn make_leader(c: &LocalCluster, want: &str) {
    for _ in 0..20 {
        let (l, _) = leader(c, CH).await;
        if l == want {
            return;
        }
        let _ = admin(c, &l).release_leadership().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{want} never became the leader");
}

/// Asks `node` to hand leadership over until another node leads.
async fn make_not_leader(c: &LocalCluster, node: &str) {
    for _ in 0..20 {
        let (l, _) = leader(c, CH).await;
        if l != node {
            return;
        }
        let _ = admin(c, &l).release_leadership().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{node} kept the leadership");
}

/// Every block on `node` is stamped no later than its reader's clock plus the tolerance.
async fn assert_no_block_from_the_future(c: &LocalCluster, node: &str) {
    let client = c.client(node);
    let top = client
        .block(CH, None)
        .await
        .expect("last block")
        .header
        .number;
    let now = tally_protocol::now_ms();
    for n in 0..=top {
        let b = client.block(CH, Some(n)).await.expect("block");
        assert!(
            b.header.timestamp_ms <= now + CLOCK_TOLERANCE_MS,
            "block {n} on {node} is stamped {} ms ahead of the real clock",
            b.header.timestamp_ms.saturating_sub(now)
        );
    }
}

/// A client sharing the fast clock: refused at a correct node as soon as it submits, and
/// ordered but rejected as from the future when it goes through the fast node.
async fn fast_client_is_refused(c: &LocalCluster, correct: &str, fast: &str, key: &str) {
    let tx = put_dated(c, correct, &format!("{key}-correct"), HOUR_MS);
    let e = c
        .client(correct)
        .submit_wait(&tx)
        .await
        .expect_err("a transaction from an hour ahead is refused at submission");
    assert_eq!(e.api_code(), Some("expired"), "{e}");
    assert!(e.to_string().contains("future"), "{e}");
    let tx = put_dated(c, fast, &format!("{key}-fast"), HOUR_MS);
    let r = c
        .client(fast)
        .submit_wait_for(&tx, Duration::from_secs(60))
        .await
        .expect("the fast node takes it; the ledger answers");
    match &r.status {
        tally_protocol::TxStatus::Rejected { code, reason } => {
            assert_eq!(*code, tally_protocol::RejectCode::Expired, "{reason}");
            assert!(reason.contains("future"), "{reason}");
        }
        s => panic!("a transaction from an hour ahead was not rejected: {s:?}"),
    }
}

/// One node runs an hour fast (a test clock offset), first as a follower, then as the
/// leader, with clients on correct clocks writing through the other nodes throughout, and a
/// client sharing the fast clock. As a follower the fast node changes nothing (the leader
/// stamps block time, also on the batches it forwards). As the leader its first stamped batch
/// is not accepted by the correct followers, which ignore it and elect one of themselves: the
/// writes commit, no block is stamped ahead, and the fast node follows again. The fast
/// client's transactions are refused as from the future; nobody else's are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_clock_an_hour_fast_does_not_stall_the_channel() {
    let c = start("adv-clock", &[CH]).await;
    let fast = c
        .channel_nodes(CH)
        .into_iter()
        .min_by_key(|n| c.node_id(n))
        .expect("nodes");
    commit_one(&c, &fast, CH, "before-skew").await;

    // The fast node as a follower.
    make_not_leader(&c, &fast).await;
    c.set_node_env(&fast, CLOCK_OFFSET_VAR, &HOUR_MS.to_string());
    c.restart(&fast).await.expect("restart the fast node");
    c.wait_node_ready(&fast, Duration::from_secs(60))
        .await
        .expect("the fast node rejoins");
    assert!(
        c.log_contains(&fast, "deliberately offset"),
        "the fast node did not take the test clock offset"
    );
    make_not_leader(&c, &fast).await;
    let (a, b) = others(&c, CH, &fast);
    for i in 0..5 {
        commit_one(&c, &a, CH, &format!("fast-follower-a-{i}")).await;
        commit_one(&c, &b, CH, &format!("fast-follower-b-{i}")).await;
    }
    fast_client_is_refused(&c, &a, &fast, "future-1").await;
    assert_no_block_from_the_future(&c, &a).await;

    // The fast node as the leader.
    make_leader(&c, &fast).await;
    for i in 0..5 {
        for n in [&a, &b] {
            // The first write waits out one election: given a minute, not asserted on.
            let id = c.identity(&c.node_org(n), Role::Client);
            let tx = sign_writes(
                &id,
                CH,
                vec![put(&format!("fast-leader-{n}-{i}"), b"v")],
                false,
            );
            let r = c
                .client(n)
                .submit_wait_for(&tx, Duration::from_secs(60))
                .await
                .unwrap_or_else(|e| panic!("write {i} through {n} with a fast leader: {e}"));
            assert!(
                r.status.is_committed(),
                "write {i} through {n}: {:?}",
                r.status
            );
        }
    }
    let (now_leader, _) = leader(&c, CH).await;
    assert_ne!(now_leader, fast, "the fast node still leads");
    assert!(
        c.log_contains(&a, "stamps blocks ahead") || c.log_contains(&b, "stamps blocks ahead"),
        "no correct node saw the fast leader's stamp: the leader phase tested nothing"
    );
    fast_client_is_refused(&c, &a, &fast, "future-2").await;
    c.wait_converged(CH, Duration::from_secs(60))
        .await
        .expect("the fast node follows the others again");
    for n in [&a, &b, &fast] {
        assert_no_block_from_the_future(&c, n).await;
    }
    c.assert_healthy();
}

/// Clients flood the channel with invokes of a function that spins until it runs out of fuel.
/// Each block spends at most its fuel budget: at most two invokes per block run to the
/// per-call limit, the rest of the block's invokes are rejected out_of_fuel saying the block's
/// budget is spent; plain writes keep committing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_spinning_invokes_is_bounded_per_block_and_writes_commit() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("adversarial-contracts");
    let Some(dir) = build_contracts(&out) else {
        return;
    };
    let module = std::fs::read(dir.join("runaway.wasm")).expect("runaway.wasm built");
    let c = start("adv-block-fuel", &[CH]).await;
    deploy_chaincode(&c, CH, "runaway", &module).await;
    let (l, _) = leader(&c, CH).await;
    let (a, _) = others(&c, CH, &l);
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..6)
        .map(|k| {
            let client = c.client(&a);
            let id = c.identity(&c.node_org(&a), Role::Client);
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut receipts = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 40 {
                    let tx = tally_client::txs::sign_invoke(
                        &id,
                        CH,
                        "runaway",
                        "spin",
                        vec![],
                        0,
                        false,
                    );
                    n += 1;
                    match client.submit_wait_for(&tx, Duration::from_secs(120)).await {
                        Ok(r) => receipts.push(r),
                        Err(e) if e.api_code() == Some("busy") => {
                            tokio::time::sleep(Duration::from_millis(100)).await
                        }
                        Err(e) => panic!("flood {k}: {e}"),
                    }
                }
                receipts
            })
        })
        .collect();
    for i in 0..10 {
        commit_one(&c, &l, CH, &format!("during-spin-{i}")).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut per_block: std::collections::BTreeMap<u64, (u32, u32)> = Default::default();
    for f in flood {
        for r in f.await.expect("flood task") {
            let tally_protocol::TxStatus::Rejected { code, reason } = &r.status else {
                panic!("a spinning invoke committed: {:?}", r.status);
            };
            assert_eq!(*code, tally_protocol::RejectCode::OutOfFuel, "{reason}");
            let e = per_block.entry(r.block).or_default();
            if reason.contains("fuel budget") {
                e.1 += 1;
            } else {
                e.0 += 1;
            }
        }
    }
    let ran: u32 = per_block.values().map(|v| v.0).sum();
    let cut: u32 = per_block.values().map(|v| v.1).sum();
    eprintln!("{} blocks of spinning invokes: {ran} ran to the call limit, {cut} refused by the block budget", per_block.len());
    for (block, (ran, _)) in &per_block {
        assert!(
            *ran <= 2,
            "block {block} ran {ran} invokes to the per-call limit"
        );
    }
    assert!(ran > 0, "no invoke ran: the flood tested nothing");
    assert!(
        cut > 0,
        "no block held more invokes than its budget: the flood tested nothing"
    );
    c.assert_healthy();
}

/// Key of a channel's record of `kind` in a node's RocksDB (node/src/keys.rs): `c`, the
/// channel, NUL, the kind byte, then the rest.
fn ledger_key(channel: &str, kind: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = vec![b'c'];
    k.extend_from_slice(channel.as_bytes());
    k.push(0);
    k.push(kind);
    k.extend_from_slice(rest);
    k
}

/// Someone with access to a stopped node's disk edits a state value in its RocksDB and keeps
/// the node's own books straight: the tip's state commitment is updated homomorphically for the
/// edit, exactly as the node would have updated it, so the node's startup self-check (which
/// recomputes the commitment from the state records) finds nothing wrong. Before, such a node
/// served the edited value and only a metric alert could fire. Now the signed checkpoints of
/// the two honest nodes disagree with its state root at its height: it reports Degraded with
/// that height (status, /readyz, metrics) and refuses the channel's reads and writes, while the
/// others keep serving the true value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_edited_behind_a_nodes_back_is_detected_and_that_node_stops_serving() {
    use tally_protocol::codec::{Decode, Reader};
    use tally_protocol::state::{StateDigest, DIGEST_BYTES};
    use tally_protocol::Version;

    let c = start("tampered-db", &[CH]).await;
    let (lead, _) = leader(&c, CH).await;
    let (victim, honest) = others(&c, CH, &lead);
    let org = c.node_org(&lead);
    let writer = c.identity(&org, Role::Client);
    let tx = sign_writes(&writer, CH, vec![put("balance", b"100")], false);
    let r = c.client(&lead).submit_wait(&tx).await.expect("write");
    assert!(r.status.is_committed(), "{:?}", r.status);
    c.wait_converged(CH, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    c.stop(&victim).await.expect("stop the victim");
    let stopped_at = {
        let db = rocksdb::DB::open_default(c.data_dir(&victim).join("ledger")).expect("open db");
        let state_key = ledger_key(CH, b'S', b"balance");
        let old = db
            .get(&state_key)
            .expect("read")
            .expect("balance is stored");
        let version = Version::decode(&mut Reader::new(&old[..12])).expect("version");
        assert_eq!(&old[12..], b"100");
        let mut edited = old[..12].to_vec();
        edited.extend_from_slice(b"999999");
        db.put(&state_key, &edited).expect("edit the value");
        // The tip: height, last block hash, then the state commitment.
        let tip_key = ledger_key(CH, b't', b"");
        let mut tip = db.get(&tip_key).expect("read").expect("tip");
        let height = u64::from_be_bytes(tip[..8].try_into().expect("8 bytes"));
        let at = 8 + 32;
        let mut digest = StateDigest::from_bytes(&tip[at..at + DIGEST_BYTES]).expect("commitment");
        digest.remove("balance", &version, b"100");
        digest.add("balance", &version, b"999999");
        tip[at..at + DIGEST_BYTES].copy_from_slice(&digest.to_bytes());
        db.put(&tip_key, &tip).expect("compensate the tip");
        height
    };
    c.start_node(&victim).await.expect("restart the victim");

    // The victim sends its checkpoints within a second of starting; the honest nodes answer
    // those that differ from theirs (their own periodic ones pause while the channel is
    // quiet), and the verdict comes with the answers.
    let victim_client = c.client(&victim);
    let mut degraded = None;
    for _ in 0..300 {
        if let Ok(s) = victim_client.status(CH).await {
            if s.degraded.is_some() {
                degraded = s.degraded;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = degraded.unwrap_or_else(|| {
        panic!(
            "{victim} never reported Degraded; its log:\n{}",
            c.log_tail(&victim, 30)
        )
    });
    assert_eq!(
        d.first_differing_height, stopped_at,
        "the first differing height is where the edit was made: {d:?}"
    );
    assert!(d.reason.contains("differs"), "{d:?}");
    assert!(
        !victim_client.ready().await.expect("GET /readyz"),
        "a degraded node is not ready"
    );
    // The metrics follow the status (set right after it, or by the next periodic pass).
    let degraded_metric = |text: &str| {
        text.lines().any(|l| {
            l.starts_with("tally_channel_degraded{")
                && l.contains(&format!("channel=\"{CH}\""))
                && l.ends_with(" 1")
        })
    };
    let mut metrics = String::new();
    for _ in 0..100 {
        let (code, body) = tally_tests::http::get(&format!("{}/metrics", victim_client.url()))
            .await
            .expect("GET /metrics");
        assert_eq!(code, 200);
        metrics = String::from_utf8_lossy(&body).into_owned();
        if degraded_metric(&metrics) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        degraded_metric(&metrics),
        "tally_channel_degraded is not 1:\n{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tally_channel_first_differing_height{")
                && l.ends_with(&format!(" {stopped_at}"))),
        "tally_channel_first_differing_height is not {stopped_at}"
    );

    // What an SRE is told: a real Prometheus with the repository's alert rules, scraping the
    // three nodes, fires TallyChannelDegraded for the victim and for no one else.
    if let Some(bin) = tally_tests::prometheus::binary() {
        let nodes = c.channel_nodes(CH);
        let targets: Vec<String> = nodes
            .iter()
            .map(|n| {
                c.api_url(n)
                    .trim_start_matches("https://")
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect();
        let orgs: BTreeSet<String> = nodes.iter().map(|n| c.node_org(n)).collect();
        let cas: String = orgs.iter().map(|o| c.ca_pem(o)).collect();
        let prom = tally_tests::prometheus::RulesPrometheus::start(
            &bin,
            &c.dir().join("prometheus"),
            &targets,
            &cas,
        )
        .await;
        let mut firing = Vec::new();
        for _ in 0..1200 {
            firing = prom.alerts("TallyChannelDegraded").await;
            if firing.iter().any(|a| a["state"] == "firing") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let scraped = prom.query("up").await;
        assert_eq!(
            firing.len(),
            1,
            "TallyChannelDegraded for exactly the victim; active: {firing:?}; scrapes: {scraped:?}\n{}",
            prom.log_text()
        );
        let a = &firing[0];
        assert_eq!(a["state"], "firing", "{a}");
        assert_eq!(a["labels"]["node"], victim.as_str(), "{a}");
        assert_eq!(a["labels"]["channel"], CH, "{a}");
        assert_eq!(a["labels"]["severity"], "critical", "{a}");
        assert_eq!(
            a["annotations"]["runbook"], "docs/runbooks/TallyChannelDegraded.md",
            "{a}"
        );
    }

    // The victim refuses the channel's reads and writes, with a reason.
    let reader = victim_client.with_reader(c.identity(&org, Role::Client));
    let read = reader.get(CH, "balance").await;
    assert!(
        read.as_ref()
            .is_err_and(|e| e.to_string().contains("degraded")),
        "a read on the degraded node: {read:?}"
    );
    let tx = sign_writes(&writer, CH, vec![put("after", b"x")], false);
    let write = victim_client.submit_wait(&tx).await;
    assert!(
        write
            .as_ref()
            .is_err_and(|e| e.to_string().contains("degraded")),
        "a write on the degraded node: {write:?}"
    );

    // The others keep serving the true value and committing.
    commit_one(&c, &honest, CH, "still-serving").await;
    let kv = c
        .client(&honest)
        .with_reader(c.identity(&org, Role::Client))
        .get(CH, "balance")
        .await
        .expect("read on an honest node")
        .expect("balance");
    assert_eq!(kv.value, b"100");
    assert!(c.client(&honest).ready().await.expect("GET /readyz"));
}

/// The client API speaks only TLS, and a client believes only the CA of the node's own
/// organization: plain HTTP gets no answer, a client trusting another CA refuses the node, a
/// valid server certificate of another member organization does not pass for this node, and a
/// client certificate from a CA outside the consortium is refused by the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_api_is_tls_only_and_both_sides_verify() {
    use tally_client::{ApiTrust, Client};
    let c = start("adv-client-tls", &[CH]).await;
    let names = c.node_names();
    let (n1, n2) = (&names[0], &names[1]);
    let (org1, org2) = (c.node_org(n1), c.node_org(n2));
    assert_ne!(org1, org2, "the test needs two organizations");
    let addr = api_addr(&c, n1);

    // Plain HTTP: the node waits for a TLS ClientHello and drops what is not one.
    let plain = tally_tests::http::get(&format!("http://{addr}/healthz")).await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    let mut s = TcpStream::connect(&addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.write_all(b"GET /v1/channels HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(30)).await;
    assert!(closed, "a plain HTTP connection stayed open");
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1.1"),
        "plain HTTP got an HTTP answer"
    );
    // The SDK will not even try.
    let own = ApiTrust::from_ca_pems(&[c.ca_pem(&org1)]).expect("org1 trust");
    let e = Client::new(&format!("http://{addr}"), &own).expect_err("http:// refused");
    assert!(e.to_string().contains("only TLS"), "{e}");

    // A client trusting an unrelated CA refuses the node.
    let stranger = tally_protocol::OrgCa::generate(&org1).expect("a CA");
    let wrong = ApiTrust::from_ca_pems(&[stranger.cert_pem()]).expect("trust");
    let e = Client::new(&c.api_url(n1), &wrong)
        .expect("client")
        .healthy()
        .await
        .expect_err("a node certified by another CA was believed");
    assert!(
        e.is_transport() && e.to_string().contains("certificate"),
        "{e}"
    );

    // Node 2's certificate is valid, from a member CA, but not from org1's: a client that
    // expects an org1 node (its traffic redirected to node 2) refuses it ...
    let e = Client::new(&c.api_url(n2), &own)
        .expect("client")
        .healthy()
        .await
        .expect_err("another organization's node passed for an org1 node");
    assert!(e.to_string().contains("certificate"), "{e}");
    // ... while the same client trusting org2 accepts node 2, and org1's node is fine.
    let theirs = ApiTrust::from_ca_pems(&[c.ca_pem(&org2)]).expect("org2 trust");
    Client::new(&c.api_url(n2), &theirs)
        .expect("client")
        .healthy()
        .await
        .expect("node 2 verified against its own organization's CA");

    // Client certificates are optional; a member's is accepted ...
    let member = own.with_client_cert(&c.identity(&org1, Role::Client));
    let ok = Client::new(&c.api_url(n1), &member)
        .expect("client")
        .status(CH)
        .await
        .expect("a member's client certificate is accepted");
    assert!(ok.height >= 1);
    // ... one from a CA outside the consortium is not.
    let outsider = stranger
        .issue(Role::Client, "mallory", &[])
        .expect("outsider identity");
    let e = Client::new(&c.api_url(n1), &own.with_client_cert(&outsider))
        .expect("client")
        .status(CH)
        .await
        .expect_err("a client certificate from a non-member CA was accepted");
    assert!(e.is_transport(), "{e}");
    commit_one(&c, n1, CH, "after-tls-checks").await;
    c.assert_healthy();
}

/// A signed read captured on its way (a log, a proxy) and sent again is refused: every read
/// carries a nonce the node remembers for the read window, keyed by the signer's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_signed_read_is_refused() {
    use tally_protocol::read_auth;
    let c = start("adv-read-replay", &[CH]).await;
    let n1 = c.node_names()[0].clone();
    commit_one(&c, &n1, CH, "secret").await;
    let reader = c.identity(&c.node_org(&n1), Role::Client);
    let path = format!("/v1/channels/{CH}/state?key=secret");
    let url = format!("{}{path}", c.api_url(&n1));
    let send = |cert: String, auth: String| {
        let url = url.clone();
        async move {
            tally_tests::http::request_with(
                "GET",
                &url,
                None,
                &[
                    (read_auth::CERT_HEADER, cert),
                    (read_auth::AUTH_HEADER, auth),
                ],
                Vec::new(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let (cert, auth) = read_auth::sign(&reader, "GET", &path, tally_protocol::now_ms());
    let first = send(cert.clone(), auth.clone()).await;
    assert_eq!(first.0, 200, "{}", String::from_utf8_lossy(&first.1));
    let again = send(cert.clone(), auth.clone()).await;
    tally_tests::assert_api_error("a replayed read", (again.0, &again.1), 401, "replayed");
    // On another connection, too: the node remembers, not the connection.
    let third = send(cert, auth).await;
    tally_tests::assert_api_error(
        "a replay on a new connection",
        (third.0, &third.1),
        401,
        "replayed",
    );
    // The same read signed afresh (a new nonce) is served: the refusal was for the replay.
    let (cert, auth) = read_auth::sign(&reader, "GET", &path, tally_protocol::now_ms());
    let fresh = send(cert, auth).await;
    assert_eq!(fresh.0, 200, "{}", String::from_utf8_lossy(&fresh.1));
    c.assert_healthy();
}

const FORGE_SNAPSHOT_VAR: &str = "TALLY_TEST_ONLY_FORGE_SNAPSHOT";
const CRASH_IN_INSTALL_VAR: &str = "TALLY_TEST_ONLY_CRASH_IN_INSTALL";
const SNAPSHOTS_REFUSED: &str = "tally_snapshots_refused_total";

/// Commits `count` puts `prefix-N` through `node`, one after the other.
async fn commit_many(c: &LocalCluster, node: &str, prefix: &str, count: usize) {
    for i in 0..count {
        commit_one(c, node, CH, &format!("{prefix}-{i:03}")).await;
    }
}

/// The value of `tally_snapshots_refused_total` for `reason` on `node` (0 when absent).
async fn refused(c: &LocalCluster, node: &str, reason: &str) -> f64 {
    let text = tally_tests::metrics(&c.api_url(node)).await;
    tally_tests::metric_value(
        &text,
        SNAPSHOTS_REFUSED,
        &[("channel", CH), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

/// One node of the channel serves forged snapshots (a debug-build test hook on a real
/// tally-node process): one state value changed under the same block headers, a Raft
/// hard-state record smuggled in among the ledger records, the stream ended early, or chunk
/// requests left unanswered (the puller gives up after its stall timeout). Each time a
/// wiped node needs a snapshot while the forger leads, it refuses every one it gets, with the
/// reason in its log and metrics, and its ledger stays empty (height 1, the genesis block);
/// once an honest node leads it catches up from that node's snapshot, block for block and
/// state for state the same as the others'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_truncated_snapshots_are_refused_and_the_node_catches_up_from_an_honest_peer() {
    let c = start_with("forged-snapshot", &[CH], |spec| {
        let ch = spec.channel_mut(CH).expect("channel");
        ch.snapshot_interval = 10;
        ch.batch.max_txs = 4;
    })
    .await;
    // The forger has the lowest id: handing leadership over reaches it from any node.
    let mut nodes = c.channel_nodes(CH);
    nodes.sort_by_key(|n| c.node_id(n));
    let (forger, honest, victim) = (nodes[0].clone(), nodes[1].clone(), nodes[2].clone());
    commit_many(&c, &honest, "before", 30).await;
    c.wait_converged(CH, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    for (mode, reason) in [
        ("state", "state"),
        ("foreign", "foreign_kind"),
        ("truncate", "truncated"),
        ("stall", "stalled"),
    ] {
        c.set_node_env(&forger, FORGE_SNAPSHOT_VAR, mode);
        c.restart(&forger).await.expect("restart the forger");
        c.wait_node_ready(&forger, Duration::from_secs(60))
            .await
            .expect("the forger rejoins");
        make_leader(&c, &forger).await;
        // Past a few compactions, so that a wiped node can only catch up by snapshot.
        commit_many(&c, &forger, &format!("{mode}-lead"), 30).await;

        let logged_before = log_count(&c, &victim, "snapshot refused");
        c.wipe(&victim).await.expect("wipe the victim");
        // The leader finds the wiped node behind when its next append is refused: keep writing.
        let mut count = 0.0;
        for i in 0..300 {
            commit_one(&c, &forger, CH, &format!("{mode}-wiped-{i:03}")).await;
            count = refused(&c, &victim, reason).await;
            if count > 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            count > 0.0,
            "{mode}: {victim} never refused a forged snapshot ({SNAPSHOTS_REFUSED} reason={reason} is {count}); its log:\n{}\nthe forger's snapshot metrics:\n{}",
            c.log_tail(&victim, 30),
            tally_tests::metrics(&c.api_url(&forger))
                .await
                .lines()
                .filter(|l| l.contains("snapshot") || l.contains("compaction"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(
            c.log_contains(&forger, "serves forged snapshots"),
            "{mode}: the forger did not take the test hook"
        );
        assert!(
            log_count(&c, &victim, "snapshot refused") > logged_before,
            "{mode}: the refusal is not logged"
        );
        if let Some(line) = std::fs::read_to_string(c.log_path(&victim))
            .unwrap_or_default()
            .lines()
            .rfind(|l| l.contains("snapshot refused"))
        {
            eprintln!("{mode}: {victim} says: {line}");
        }
        let st = c
            .client(&victim)
            .status(CH)
            .await
            .expect("the victim's status");
        assert_eq!(
            st.height, 1,
            "{mode}: a refused snapshot left the victim's ledger at height {}",
            st.height
        );
        let text = tally_tests::metrics(&c.api_url(&victim)).await;
        let installed =
            tally_tests::metric_value(&text, "tally_snapshots_applied_total", &[("channel", CH)]);
        assert_eq!(
            installed.unwrap_or(0.0),
            0.0,
            "{mode}: the victim installed a snapshot from the forger"
        );

        // An honest leader: its snapshot is accepted and the victim catches up.
        make_not_leader(&c, &forger).await;
        commit_one(&c, &honest, CH, &format!("{mode}-honest")).await;
        c.wait_node_ready(&victim, Duration::from_secs(120))
            .await
            .unwrap_or_else(|e| panic!("{mode}: {victim} never caught up: {e}"));
        c.wait_converged(CH, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let text = tally_tests::metrics(&c.api_url(&victim)).await;
        let installed =
            tally_tests::metric_value(&text, "tally_snapshots_applied_total", &[("channel", CH)]);
        assert!(
            installed.unwrap_or(0.0) >= 1.0,
            "{mode}: the victim caught up without a snapshot ({installed:?}); the test did not test"
        );
        tally_tests::assert_identical_chains(&c, CH).await;
        let kv = c
            .client(&victim)
            .with_reader(c.identity(&c.node_org(&victim), Role::Client))
            .get(CH, &format!("{mode}-lead-029"))
            .await
            .expect("read on the victim")
            .expect("the key written while the forger led");
        assert_eq!(kv.value, b"v");
    }
    c.assert_healthy();
}

/// A node killed in the middle of installing a snapshot (a debug-build hook aborts the process
/// after the staged records were moved in and before the install's marker is deleted) opens
/// its ledger again into a whole one: it finishes the install on start, its state matches its
/// tip's commitment (a half-installed ledger would start degraded), and it catches up with the
/// others, block for block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_in_the_middle_of_a_snapshot_install_restarts_whole_and_catches_up() {
    let c = start_with("install-crash", &[CH], |spec| {
        let ch = spec.channel_mut(CH).expect("channel");
        ch.snapshot_interval = 10;
        ch.batch.max_txs = 4;
    })
    .await;
    let (leader, _) = leader(&c, CH).await;
    let victim = c
        .channel_nodes(CH)
        .into_iter()
        .find(|n| *n != leader)
        .expect("a follower");
    commit_many(&c, &leader, "before", 30).await;
    c.wait_converged(CH, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    c.set_node_env(&victim, CRASH_IN_INSTALL_VAR, "1");
    c.wipe(&victim).await.expect("wipe the victim");
    // The leader finds the wiped node behind when its next append is refused: keep writing
    // until the victim dies in its install.
    let mut died = false;
    for i in 0..300 {
        commit_one(&c, &leader, CH, &format!("wiped-{i:03}")).await;
        if c.exited_on_its_own(&victim).is_some() {
            died = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        died,
        "{victim} never died in a snapshot install; its log:\n{}",
        c.log_tail(&victim, 30)
    );
    assert!(
        c.log_contains(&victim, "aborting in the middle of a snapshot install"),
        "{victim} died of something else:\n{}",
        c.log_tail(&victim, 30)
    );

    c.set_node_env(&victim, CRASH_IN_INSTALL_VAR, "0");
    c.start_node(&victim).await.expect("start the victim again");
    c.wait_node_ready(&victim, Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{victim} never caught up after the crash: {e}"));
    assert!(
        c.log_contains(&victim, "resumed snapshot install finished"),
        "{victim} did not finish the interrupted install on start:\n{}",
        c.log_tail(&victim, 30)
    );
    commit_one(&c, &leader, CH, "after").await;
    c.wait_converged(CH, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tally_tests::assert_identical_chains(&c, CH).await;
    let st = c.client(&victim).status(CH).await.expect("status");
    assert!(
        st.degraded.is_none(),
        "{victim} is degraded: {:?}",
        st.degraded
    );
    let kv = c
        .client(&victim)
        .with_reader(c.identity(&c.node_org(&victim), Role::Client))
        .get(CH, "before-029")
        .await
        .expect("read on the victim")
        .expect("a key from before the wipe");
    assert_eq!(kv.value, b"v");
    // The only problem is the abort the test caused.
    let problems = c.problems();
    assert_eq!(
        problems.len(),
        1,
        "unexpected trouble besides the test's abort: {problems:?}"
    );
    assert!(problems[0].contains(&victim), "{problems:?}");
}

// ---- checkpoints under load ---------------------------------------------------------------------

/// Writes keep every node's tip moving while checkpoints are in flight, so each node finds
/// the others' checkpoints behind its tip and answers them. An answer must not be answered:
/// before, two nodes bounced one checkpoint between them for as long as the load lasted (one
/// more such exchange every second, each a signature check and a signing), which cost a
/// loaded node a tenth of its CPU after a minute. Each periodic checkpoint a node receives
/// draws at most one answer, so over the whole channel answers never outnumber periodic
/// checkpoints; with the echo they outnumbered them many times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_answers_are_not_answered_under_load() {
    let c = start("adv-checkpoint-echo", &[CH]).await;
    let nodes = c.node_names();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let node = nodes[w % nodes.len()].clone();
            let client = c.client(&node);
            let signer = c.identity(&c.node_org(&node), Role::Client);
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut committed = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let tx = sign_writes(
                        &signer,
                        CH,
                        vec![put(&format!("load-{w}-{committed}"), b"v")],
                        false,
                    );
                    if let Ok(r) = client.submit_wait(&tx).await {
                        committed += u32::from(r.status.is_committed());
                    }
                }
                committed
            })
        })
        .collect();
    // Long enough for several rounds of periodic checkpoints (one a second) under load.
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    let mut committed = 0;
    for w in writers {
        committed += w.await.expect("writer");
    }
    let (mut periodic, mut answers) = (0.0, 0.0);
    for node in &nodes {
        let text = tally_tests::metrics(&c.api_url(node)).await;
        let sent = |kind| {
            tally_tests::metric_value(&text, CHECKPOINTS_SENT, &[("channel", CH), ("kind", kind)])
                .unwrap_or_else(|| panic!("{node} exports no {CHECKPOINTS_SENT}{{kind={kind}}}"))
        };
        periodic += sent("periodic");
        answers += sent("answer");
    }
    eprintln!("{committed} writes; checkpoints sent: {periodic} periodic, {answers} answers");
    assert!(committed > 0, "no write committed: the load did not run");
    assert!(periodic > 0.0, "no periodic checkpoint was sent");
    assert!(
        answers <= periodic,
        "{answers} checkpoint answers for {periodic} periodic checkpoints: answers were answered"
    );
    c.assert_healthy();
}

/// Whether `node` reports `channel`'s Raft clock stopped (`tally_raft_quiet`).
async fn is_quiet(c: &LocalCluster, node: &str, channel: &str) -> bool {
    let text = tally_tests::metrics(&c.api_url(node)).await;
    tally_tests::metric_value(&text, RAFT_QUIET, &[("channel", channel)]) == Some(1.0)
}

/// Waits until every node in `nodes` reports the channel quiet.
async fn wait_quiet(c: &LocalCluster, nodes: &[String], channel: &str, what: &str) {
    for _ in 0..300 {
        let mut all = true;
        for n in nodes {
            all &= is_quiet(c, n, channel).await;
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut states = Vec::new();
    for n in nodes {
        states.push(format!("{n}: quiet {}", is_quiet(c, n, channel).await));
    }
    panic!("{what}: the channel did not go quiet everywhere: {states:?}");
}

async fn periodic_checkpoints(c: &LocalCluster, nodes: &[String], channel: &str) -> f64 {
    let mut sum = 0.0;
    for n in nodes {
        let text = tally_tests::metrics(&c.api_url(n)).await;
        sum += tally_tests::metric_value(
            &text,
            CHECKPOINTS_SENT,
            &[("channel", channel), ("kind", "periodic")],
        )
        .unwrap_or_else(|| panic!("{n} exports no {CHECKPOINTS_SENT}"));
    }
    sum
}

/// An idle channel stops its Raft clock on every node: no heartbeat arrives to wake it, and
/// its checkpoints stop going out. A write through a follower wakes it and commits; a
/// follower wiped while the channel is quiet rejoins; killed while quiet, the leader is
/// replaced by the two others, which notice its silence through the node-level listings that
/// replace the heartbeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_channel_goes_quiet_wakes_for_a_write_and_fails_over_from_quiet() {
    let c = start("adv-quiet", &[CH]).await;
    let nodes = c.node_names();
    let (lead, before) = leader(&c, CH).await;
    let (follower, _) = others(&c, CH, &lead);
    commit_one(&c, &lead, CH, "before-quiet").await;
    wait_quiet(&c, &nodes, CH, "after a write").await;

    // Quiet means asleep: any Raft message (a heartbeat) would wake a node.
    let sent = periodic_checkpoints(&c, &nodes, CH).await;
    tokio::time::sleep(SETTLE + Duration::from_secs(1)).await;
    for n in &nodes {
        assert!(is_quiet(&c, n, CH).await, "{n} woke up with nothing to do");
    }
    let sent_after = periodic_checkpoints(&c, &nodes, CH).await;
    assert_eq!(
        sent, sent_after,
        "a quiet channel kept sending its unchanged checkpoints"
    );
    assert_leader_unmoved(&c, CH, &(lead.clone(), before), "while quiet").await;

    commit_one(&c, &follower, CH, "wakes-the-channel").await;
    wait_quiet(&c, &nodes, CH, "after the second write").await;

    // A follower that loses its data while the channel is quiet never campaigns (it rejoins):
    // the leader's listing reaches it, it follows no one yet, and it pokes the leader awake.
    c.wipe(&follower).await.expect("wipe a follower");
    c.wait_node_ready(&follower, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{follower} wiped under a quiet leader: {e}"));
    commit_one(&c, &follower, CH, "after-the-wipe").await;
    wait_quiet(&c, &nodes, CH, "after the wiped follower rejoined").await;

    c.kill(&lead).await.expect("kill the quiet leader");
    let killed = std::time::Instant::now();
    let survivors: Vec<String> = nodes.iter().filter(|n| **n != lead).cloned().collect();
    let mut next = None;
    for _ in 0..600 {
        if let Some(l) = c.leader(CH).await.filter(|l| *l != lead) {
            next = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let next = next.unwrap_or_else(|| {
        panic!(
            "no new leader after the quiet leader {lead} was killed: {:?}",
            survivors
        )
    });
    // Printed for docs/node.md's failover figure, not asserted (no timing in tests).
    eprintln!(
        "a new leader {next} {:.1} s after the quiet leader {lead} was killed",
        killed.elapsed().as_secs_f64()
    );
    commit_one(&c, &next, CH, "after-failover").await;
    c.start_node(&lead).await.expect("restart the old leader");
    c.wait_converged(CH, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c.assert_healthy();
}

/// The node-level listing of quiet channels is believed only from the node that leads the
/// channel in the receiver's own view. With the leader and the other follower killed, the
/// leader's genuine certificate replaying the listing keeps the last follower asleep (so the
/// attack reaches the mechanism); the other follower's genuine certificate sending the same
/// listing does not, and the follower wakes and campaigns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_listing_from_a_node_that_does_not_lead_does_not_keep_a_follower_asleep() {
    let c = start("adv-quiet-forged", &[CH]).await;
    let nodes = c.node_names();
    let (lead, _) = leader(&c, CH).await;
    let (victim, other) = others(&c, CH, &lead);
    commit_one(&c, &lead, CH, "before-quiet").await;
    wait_quiet(&c, &nodes, CH, "after a write").await;
    let st = c.client(&victim).status(CH).await.expect("victim status");
    let listing = quiet_listing(&[(CH, c.node_id(&lead), st.term, st.commit_index)]);
    c.kill(&lead).await.expect("kill the leader");
    c.kill(&other).await.expect("kill the other follower");

    // Control: the leader's own certificate keeps the victim asleep.
    let leader_id = c.node_identity(&lead).unwrap_or_else(|e| panic!("{e}"));
    let mut genuine = RoguePeer::connect(&c, &victim, &leader_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..25 {
        genuine
            .send_raw(&listing)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        is_quiet(&c, &victim, CH).await,
        "the leader's genuine listing did not keep {victim} asleep: the test's attack does not reach the mechanism"
    );
    drop(genuine);

    // The attack: the other follower's genuine certificate, same listing.
    let other_id = c.node_identity(&other).unwrap_or_else(|e| panic!("{e}"));
    let mut rogue = RoguePeer::connect(&c, &victim, &other_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut woke = false;
    for _ in 0..100 {
        rogue
            .send_raw(&listing)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if !is_quiet(&c, &victim, CH).await {
            woke = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        woke,
        "{other}'s listing kept {victim} asleep under the dead leader {lead}"
    );
    assert!(
        log_count(&c, &victim, "quiet listing refused") > 0,
        "the victim did not log the refusal:\n{}",
        c.log_tail(&victim, 20)
    );
    drop(rogue);

    c.start_node(&lead).await.expect("restart the leader");
    c.start_node(&other)
        .await
        .expect("restart the other follower");
    c.wait_ready(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    commit_one(&c, &victim, CH, "after-the-attack").await;
    c.assert_healthy();
}
