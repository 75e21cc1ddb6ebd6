//! Three nodes, two channels, thousands of transactions, and the leader of each channel killed
//! (SIGKILL) and restarted several times while the load runs. Afterwards every acknowledged
//! transaction is committed exactly once on every node, and all nodes hold identical chains.
//!
//! Scale with `TALLY_E2E_TXS` (default 3000 transactions in all) and `TALLY_E2E_ROUNDS`
//! (default 3 rounds; each kills the leader of each channel once).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tally_client::txs::{put, sign_writes};
use tally_protocol::{Hash, Receipt, Role, TxStatus};
use tally_tests::{
    assert_identical_chains, committed_counts, env_usize, submit_retry_counted, TestCluster,
};

const CHANNELS: [&str; 2] = ["alpha", "beta"];
const WORKERS: usize = 16;
/// How long one transaction is retried before the test gives up on it.
const TX_TIMEOUT: Duration = Duration::from_secs(120);

struct Record {
    i: usize,
    channel: &'static str,
    key: String,
    tx_id: Hash,
    outcome: Result<Receipt, String>,
    attempts: u32,
    retry_errors: Vec<String>,
    latency: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_leaders_under_load_loses_and_duplicates_nothing() {
    let total = env_usize("TALLY_E2E_TXS", 3000);
    let rounds = env_usize("TALLY_E2E_ROUNDS", 3);
    let tc = TestCluster::start("cluster", 3, &CHANNELS, |_| {}).await;
    let clients = Arc::new(tc.clients());
    let signers: Arc<Vec<_>> = Arc::new(
        tc.org_names()
            .iter()
            .map(|o| tc.identity(o, Role::Client))
            .collect(),
    );

    // ---- load ----------------------------------------------------------------------------
    let done = Arc::new(AtomicUsize::new(0));
    let records = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (clients, signers, done, records) = (
            clients.clone(),
            signers.clone(),
            done.clone(),
            records.clone(),
        );
        workers.push(tokio::spawn(async move {
            for i in (w..total).step_by(WORKERS) {
                let channel = CHANNELS[i % CHANNELS.len()];
                let key = format!("key-{i:06}");
                let signer = &signers[i % signers.len()];
                let tx = sign_writes(
                    signer,
                    channel,
                    vec![put(&key, format!("value-{i}").as_bytes())],
                    false,
                );
                let tx_id = tx.id();
                let t0 = Instant::now();
                let (outcome, attempts, retry_errors) =
                    submit_retry_counted(&clients, i, &tx, TX_TIMEOUT).await;
                let latency = t0.elapsed();
                done.fetch_add(1, Ordering::Relaxed);
                records.lock().unwrap().push(Record {
                    i,
                    channel,
                    key,
                    tx_id,
                    outcome,
                    attempts,
                    retry_errors,
                    latency,
                });
            }
        }));
    }

    // ---- chaos, spread over the load by progress -----------------------------------------
    let steps = rounds * CHANNELS.len();
    for step in 0..steps {
        let channel = CHANNELS[step % CHANNELS.len()];
        let threshold = total * (step + 1) / (steps + 1);
        let wait_until = Instant::now() + Duration::from_secs(180);
        while done.load(Ordering::Relaxed) < threshold && Instant::now() < wait_until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let leader = wait_leader(&tc, channel, Duration::from_secs(30)).await;
        eprintln!(
            "[{:>6.1}s] round {} ({} of {total} done): killing {leader}, leader of {channel}",
            started.elapsed().as_secs_f64(),
            step / CHANNELS.len() + 1,
            done.load(Ordering::Relaxed)
        );
        tc.kill(&leader).await.expect("kill the leader");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tc.start_node(&leader)
            .await
            .unwrap_or_else(|e| panic!("restart {leader}: {e}"));
        tc.wait_node_ready(&leader, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{leader} after its restart: {e}"));
        let new_leader = tc.leader(channel).await;
        eprintln!(
            "[{:>6.1}s] {leader} is back and ready; {channel} is led by {new_leader:?}",
            started.elapsed().as_secs_f64()
        );
    }
    for w in workers {
        w.await.expect("load worker");
    }
    let records = std::mem::take(&mut *records.lock().unwrap());
    eprintln!(
        "[{:>6.1}s] load finished: {} transactions",
        started.elapsed().as_secs_f64(),
        records.len()
    );
    assert_eq!(records.len(), total);
    report_latency(&records);

    // ---- every submission got a committed receipt ----------------------------------------
    let failed: Vec<String> = records
        .iter()
        .filter_map(|r| {
            r.outcome
                .as_ref()
                .err()
                .map(|e| format!("tx #{} {}: {e}", r.i, r.tx_id))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {total} transactions got no receipt within {TX_TIMEOUT:?}; first ones:\n  {}",
        failed.len(),
        failed[..failed.len().min(10)].join("\n  ")
    );
    let rejected: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.outcome {
            Ok(Receipt {
                status: TxStatus::Rejected { code, reason },
                ..
            }) => Some(format!(
                "tx #{} {}: rejected {code:?}: {reason}",
                r.i, r.tx_id
            )),
            _ => None,
        })
        .collect();
    assert!(
        rejected.is_empty(),
        "{} receipts say rejected (a resubmitted transaction must get its committed receipt back); first ones:\n  {}",
        rejected.len(),
        rejected[..rejected.len().min(10)].join("\n  ")
    );

    // ---- all nodes agree, every acknowledged tx is committed exactly once -----------------
    tc.wait_ready(Duration::from_secs(60))
        .await
        .expect("all nodes ready after the chaos");
    for channel in CHANNELS {
        let st = tc
            .wait_converged(channel, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let blocks = assert_identical_chains(&tc, channel).await;
        assert_eq!(blocks.len() as u64, st.height);
        let counts = committed_counts(&blocks);
        let twice: Vec<String> = counts
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, n)| format!("{id} committed {n} times"))
            .collect();
        assert!(
            twice.is_empty(),
            "{channel}: transactions committed more than once:\n  {}",
            twice.join("\n  ")
        );
        let mine: Vec<&Record> = records.iter().filter(|r| r.channel == channel).collect();
        for r in &mine {
            assert_eq!(
                counts.get(&r.tx_id).copied().unwrap_or(0),
                1,
                "{channel}: acknowledged tx #{} {} is committed {} times in the chain",
                r.i,
                r.tx_id,
                counts.get(&r.tx_id).copied().unwrap_or(0)
            );
            let receipt = r.outcome.as_ref().unwrap();
            let b = &blocks[receipt.block as usize];
            assert_eq!(
                b.header.hash(),
                receipt.block_hash,
                "tx #{}: the receipt's block hash is not block {}'s",
                r.i,
                receipt.block
            );
            let idx = receipt.index as usize;
            assert!(
                idx < b.txs.len() && b.txs[idx].id() == r.tx_id && b.results[idx].is_committed(),
                "tx #{}: block {} index {idx} is not this committed transaction",
                r.i,
                receipt.block
            );
        }
        let committed_here: usize = counts.values().sum();
        eprintln!(
            "{channel}: {} blocks, {committed_here} committed transactions, {} acknowledged by this test",
            blocks.len(),
            mine.len()
        );

        // Every node answers for every acknowledged transaction, with the same place.
        for node in tc.channel_nodes(channel) {
            let c = tc.client(&node);
            let wrong: Vec<String> = futures_util::stream::iter(mine.iter().map(|r| {
                let c = c.clone();
                async move {
                    let want = r.outcome.as_ref().unwrap();
                    match c.receipt(channel, &r.tx_id).await {
                        Ok(Some(p))
                            if p.receipt.status.is_committed()
                                && (p.receipt.block, p.receipt.index)
                                    == (want.block, want.index) =>
                        {
                            None
                        }
                        Ok(Some(p)) => Some(format!("tx #{}: {:?}", r.i, p.receipt)),
                        Ok(None) => Some(format!("tx #{}: not found", r.i)),
                        Err(e) => Some(format!("tx #{}: {e}", r.i)),
                    }
                }
            }))
            .buffer_unordered(32)
            .filter_map(|x| async move { x })
            .collect()
            .await;
            assert!(
                wrong.is_empty(),
                "{channel}: {node} does not report {} acknowledged transactions as committed where their receipts say; first ones:\n  {}",
                wrong.len(),
                wrong[..wrong.len().min(10)].join("\n  ")
            );
        }

        // A sample of the written keys reads back on every node.
        for node in tc.channel_nodes(channel) {
            let c = tc.client(&node);
            for r in mine.iter().step_by(25) {
                let kv = c
                    .get(channel, &r.key)
                    .await
                    .unwrap_or_else(|e| panic!("{node}: get {}: {e}", r.key))
                    .unwrap_or_else(|| {
                        panic!(
                            "{node}: key {} of acknowledged tx #{} is missing",
                            r.key, r.i
                        )
                    });
                assert_eq!(
                    kv.value,
                    format!("value-{}", r.i).into_bytes(),
                    "{node}: value of {}",
                    r.key
                );
            }
        }
    }

    // Same state roots on every node (also implied by the identical headers above).
    for channel in CHANNELS {
        let roots: HashMap<String, Hash> = tc
            .statuses(channel)
            .await
            .into_iter()
            .map(|(n, s)| (n, s.expect("status").state_root))
            .collect();
        let first = roots.values().next().copied();
        assert!(
            roots.values().all(|r| Some(*r) == first),
            "{channel}: state roots differ: {roots:?}"
        );
    }
    tc.assert_healthy();
    eprintln!(
        "[{:>6.1}s] all checks passed",
        started.elapsed().as_secs_f64()
    );
}

/// Prints how long acknowledgements took and why submissions were retried (information only:
/// the suite asserts no timings).
fn report_latency(records: &[Record]) {
    let mut lat: Vec<Duration> = records.iter().map(|r| r.latency).collect();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    let retried: Vec<&Record> = records.iter().filter(|r| r.attempts > 1).collect();
    let slow = lat.iter().filter(|l| **l > Duration::from_secs(5)).count();
    eprintln!(
        "latency to a receipt: p50 {:?} p90 {:?} p99 {:?} max {:?}; {} of {} transactions needed more than one submission, {slow} took over 5 s",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        retried.len(),
        records.len()
    );
    let mut reasons: HashMap<String, usize> = HashMap::new();
    for r in &retried {
        for e in &r.retry_errors {
            // group by the error without the URL
            let kind = e.split_once(": ").map(|(_, k)| k).unwrap_or(e);
            let kind: Vec<&str> = kind
                .split(' ')
                .map(|w| {
                    if w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()) {
                        "<tx>"
                    } else {
                        w
                    }
                })
                .collect();
            let kind: String = kind.join(" ").chars().take(100).collect();
            *reasons.entry(kind).or_insert(0) += 1;
        }
    }
    let mut reasons: Vec<_> = reasons.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    for (k, n) in reasons.iter().take(8) {
        eprintln!("  retried {n} times after: {k}");
    }
}

/// The channel's current leader, waiting for an election to finish.
async fn wait_leader(tc: &TestCluster, channel: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = tc.leader(channel).await {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "{channel} has no leader after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
