//! What an operator relies on: health and readiness, the metrics the dashboards read, and a
//! SIGTERM that loses nothing a client was told is committed.

use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_client::txs::{put, sign_writes};
use tally_protocol::{Hash, Role};
use tally_tests::{
    all_blocks, assert_identical_chains, committed_counts, http, metric_value, metrics,
    submit_retry, TestCluster,
};

const CHANNELS: [&str; 2] = ["orders", "audit"];

/// Every per-channel metric the node promises in docs/node.md.
const CHANNEL_METRICS: [&str; 14] = [
    "tally_channel_height",
    "tally_raft_term",
    "tally_raft_role",
    "tally_raft_leader_id",
    "tally_raft_applied_index",
    "tally_raft_commit_index",
    "tally_committed_transactions_total",
    "tally_committed_blocks_total",
    "tally_proposal_commit_seconds_count",
    "tally_batch_size_count",
    "tally_state_root_fingerprint",
    "tally_channel_ready",
    "tally_raft_leader_changes_total",
    "tally_raft_quiet",
];

async fn get_status(url: &str) -> u16 {
    http::get(url).await.map(|(s, _)| s).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let tc = TestCluster::start("ops-metrics", 3, &CHANNELS, |_| {}).await;
    for ch in CHANNELS {
        tc.wait_converged(ch, Duration::from_secs(30))
            .await
            .unwrap();
    }
    let signer = tc.identity("org2", Role::Client);
    let clients = tc.clients();
    for ch in CHANNELS {
        for i in 0..20 {
            let tx = sign_writes(&signer, ch, vec![put(&format!("k{i}"), b"v")], false);
            let r = submit_retry(&clients, i, &tx, Duration::from_secs(30))
                .await
                .unwrap();
            assert!(r.status.is_committed(), "{ch}/k{i}: {:?}", r.status);
        }
        tc.wait_converged(ch, Duration::from_secs(30))
            .await
            .unwrap();
    }
    let mut fingerprints = Vec::new();
    for n in tc.node_names() {
        let url = tc.api_url(&n);
        assert_eq!(
            get_status(&format!("{url}/healthz")).await,
            200,
            "{n} /healthz"
        );
        assert_eq!(
            get_status(&format!("{url}/readyz")).await,
            200,
            "{n} /readyz"
        );
        let text = metrics(&url).await;
        for ch in CHANNELS {
            for m in CHANNEL_METRICS {
                assert!(
                    metric_value(&text, m, &[("channel", ch), ("node", &n)]).is_some(),
                    "{n}: {m}{{channel={ch}}} missing"
                );
            }
            let height = metric_value(&text, "tally_channel_height", &[("channel", ch)]).unwrap();
            assert!(height >= 2.0, "{n}/{ch}: height {height}");
            assert!(
                metric_value(
                    &text,
                    "tally_committed_transactions_total",
                    &[("channel", ch)]
                )
                .unwrap()
                    >= 20.0
            );
            fingerprints.push((
                ch,
                metric_value(&text, "tally_state_root_fingerprint", &[("channel", ch)]).unwrap(),
            ));
        }
        for m in [
            "tally_rocksdb_size_bytes",
            "tally_raft_persist_seconds_count",
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
        ] {
            assert!(metric_value(&text, m, &[]).is_some(), "{n}: {m} missing");
        }
    }
    // The state-root fingerprint agrees across nodes per channel.
    for ch in CHANNELS {
        let v: Vec<f64> = fingerprints
            .iter()
            .filter(|(c, _)| *c == ch)
            .map(|(_, f)| *f)
            .collect();
        assert!(
            v.windows(2).all(|w| w[0] == w[1]),
            "{ch}: fingerprints differ: {v:?}"
        );
    }
    // Rejections are counted by reason: a transaction for a channel in the wrong path.
    let tx = sign_writes(&signer, "orders", vec![put("x", b"y")], false);
    let err = clients[0].submit(&tx, true).await;
    assert!(err.is_ok(), "a good transaction: {err:?}");
    let bad = sign_writes(&signer, "nope", vec![put("x", b"y")], false);
    let url = format!("{}/v1/channels/orders/transactions", tc.api_url("node1-0"));
    let body = tally_protocol::Encode::to_bytes(&bad);
    let (status, _) = http::request("POST", &url, Some("application/octet-stream"), body)
        .await
        .unwrap();
    assert_eq!(status, 400);
    let text = metrics(&tc.api_url("node1-0")).await;
    assert_eq!(
        metric_value(
            &text,
            "tally_rejected_transactions_total",
            &[("channel", "orders"), ("reason", "wrong_channel")]
        ),
        Some(1.0)
    );

    // Without a quorum a node stops being ready.
    tc.kill("node2-0").await.unwrap();
    tc.kill("node3-0").await.unwrap();
    let url = format!("{}/readyz", tc.api_url("node1-0"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_status(&url).await != 503 {
        assert!(
            Instant::now() < deadline,
            "node1 still ready 20 s after losing its quorum"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        get_status(&format!("{}/healthz", tc.api_url("node1-0"))).await,
        200
    );
    tc.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_loses_nothing_acknowledged() {
    let tc = TestCluster::start("ops-sigterm", 3, &["orders"], |spec| spec.fsync = true).await;
    tc.wait_converged("orders", Duration::from_secs(30))
        .await
        .unwrap();
    let signer = Arc::new(tc.identity("org1", Role::Client));
    let clients = Arc::new(tc.clients());
    let stop = Arc::new(AtomicBool::new(false));
    // Writers keep going while each node in turn is stopped with SIGTERM and started again.
    let writers = {
        let (signer, clients, stop) = (signer.clone(), clients.clone(), stop.clone());
        tokio::spawn(async move {
            futures_util::stream::iter(0..8usize)
                .map(|w| {
                    let (signer, clients, stop) = (signer.clone(), clients.clone(), stop.clone());
                    async move {
                        let mut acked = Vec::new();
                        let mut i = 0;
                        while !stop.load(Ordering::Relaxed) {
                            let tx = sign_writes(
                                &signer,
                                "orders",
                                vec![put(&format!("w{w}-{i}"), b"x")],
                                false,
                            );
                            if let Ok(r) =
                                submit_retry(&clients, w + i, &tx, Duration::from_secs(30)).await
                            {
                                if r.status.is_committed() {
                                    acked.push(r.tx_id);
                                }
                            }
                            i += 1;
                        }
                        acked
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<Vec<Hash>>>()
                .await
        })
    };
    for n in tc.node_names() {
        tokio::time::sleep(Duration::from_millis(700)).await;
        tc.stop(&n).await.unwrap();
        assert!(
            tc.log_contains(&n, "stopped cleanly"),
            "{n} did not log a clean stop:\n{}",
            tc.log_tail(&n, 20)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        tc.start_node(&n).await.unwrap();
        tc.wait_node_ready(&n, Duration::from_secs(30))
            .await
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Hash> = writers.await.unwrap().into_iter().flatten().collect();
    assert!(
        acked.len() > 50,
        "only {} transactions were acknowledged",
        acked.len()
    );
    tc.wait_converged("orders", Duration::from_secs(30))
        .await
        .unwrap();
    assert_identical_chains(&tc, "orders").await;
    for n in tc.node_names() {
        let counts = committed_counts(&all_blocks(&tc.client(&n), "orders").await.unwrap());
        for id in &acked {
            assert_eq!(
                counts.get(id),
                Some(&1),
                "{n}: acknowledged {id} committed {:?} times",
                counts.get(id)
            );
        }
    }
    tc.assert_healthy();
}
