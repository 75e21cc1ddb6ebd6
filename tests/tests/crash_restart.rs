//! Crash-restart cycles: under steady load, one node after another is killed with SIGKILL at
//! an arbitrary moment and started again at once. Whatever instant the kill hits (between
//! applying a block and persisting the Raft state, in the middle of a snapshot...), the node
//! must come back, catch up, and agree with the others; nothing acknowledged is lost or
//! committed twice.
//!
//! `TALLY_E2E_CRASHES` sets the number of cycles (default 20).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_client::txs::{put, sign_writes};
use tally_protocol::{Hash, Role};
use tally_tests::{
    assert_identical_chains, committed_counts, env_usize, submit_retry, TestCluster,
};

const CH: &str = "crash";
const WORKERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_killed_at_any_moment_come_back_and_agree() {
    let cycles = env_usize("TALLY_E2E_CRASHES", 20);
    // Frequent snapshots, so that kills also land around compactions.
    let tc = TestCluster::start("crash-restart", 3, &[CH], |spec| {
        spec.channel_mut(CH).unwrap().snapshot_interval = 25;
    })
    .await;
    let clients = Arc::new(tc.clients());
    let signer = Arc::new(tc.identity("org1", Role::Client));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<Vec<(usize, Hash)>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (clients, signer, stop, next, acked) = (
            clients.clone(),
            signer.clone(),
            stop.clone(),
            next.clone(),
            acked.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let tx = sign_writes(
                    &signer,
                    CH,
                    vec![put(&format!("crash-{i:06}"), b"v")],
                    false,
                );
                match submit_retry(&clients, i, &tx, Duration::from_secs(60)).await {
                    Ok(r) if r.status.is_committed() => acked.lock().unwrap().push((i, tx.id())),
                    Ok(r) => failures.push(format!("tx #{i}: {:?}", r.status)),
                    Err(e) => failures.push(format!("tx #{i}: {e}")),
                }
            }
            failures
        }));
    }

    let started = Instant::now();
    let names = tc.node_names();
    for cycle in 0..cycles {
        // Let some blocks commit, then kill a node at whatever point it is in.
        let before = acked.lock().unwrap().len();
        let until = Instant::now() + Duration::from_secs(10);
        while acked.lock().unwrap().len() < before + 40 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let victim = &names[cycle % names.len()];
        tc.kill(victim).await.expect("kill");
        tc.start_node(victim)
            .await
            .unwrap_or_else(|e| panic!("cycle {cycle}: restart {victim}: {e}"));
        tc.wait_node_ready(victim, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("cycle {cycle}: {victim} after a SIGKILL: {e}"));
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.expect("worker"));
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    eprintln!(
        "{cycles} crash-restart cycles in {:.1} s, {} transactions acknowledged",
        started.elapsed().as_secs_f64(),
        acked.len()
    );
    assert!(
        failures.is_empty(),
        "{} submissions failed; first ones:\n  {}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n  ")
    );

    tc.wait_converged(CH, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let blocks = assert_identical_chains(&tc, CH).await;
    let counts = committed_counts(&blocks);
    for (i, id) in &acked {
        let n = counts.get(id).copied().unwrap_or(0);
        assert_eq!(n, 1, "acknowledged tx #{i} {id} is committed {n} times");
    }
    assert!(
        counts.values().all(|n| *n == 1),
        "a transaction is committed twice"
    );
    tc.assert_healthy();
}
