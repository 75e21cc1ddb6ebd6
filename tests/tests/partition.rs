//! Network partitions on real tally-node processes, each node in a network namespace of its own
//! (tally_tests::netns): the leader cut off, a follower cut off, and every node cut off from
//! every other, each under a steady writer, then healed.
//!
//! What must hold, whatever was cut:
//! - every write acknowledged to a client (by any node, before, during or after the partition)
//!   is on every node exactly once, and no transaction is committed twice;
//! - heights, block hashes and state roots agree on every node after healing;
//! - nothing is acknowledged by a node on the minority side while it is cut off: a writer kept
//!   inside the cut node's namespace submits to it the whole time and must get no receipt;
//! - a healed node catches up within a generous liveness deadline ([`REJOIN_DEADLINE`]). The
//!   time from heal to caught up is printed, not asserted (docs/security.md, "Partitions").
//!
//! Needs root and `ip netns`; elsewhere each test prints why and passes without running.
//! `TALLY_PARTITION_CUT_S` sets how long each partition lasts (default 20 s: longer than the
//! peer transport's TCP_USER_TIMEOUT, so the connections across the cut really die).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_client::txs::{put, sign_writes};
use tally_client::Client;
use tally_protocol::api::{ChannelStatus, RaftRole};
use tally_protocol::{Hash, Identity, Role};
use tally_tests::netns::{in_private_netns, NetCluster};
use tally_tests::{assert_identical_chains, committed_counts, env_usize, submit_retry};
use tallyctl::LocalCluster;

const CH: &str = "part";
const WORKERS: usize = 4;
/// A healed node must be caught up within this time: generous (the transport aims at a few
/// seconds), yet shorter than the ~50 s that TCP's backed-off retransmissions used to take.
const REJOIN_DEADLINE: Duration = Duration::from_secs(30);
/// Client time limit for status polls and minority-side writes.
const SHORT: Duration = Duration::from_secs(3);

fn cut_for() -> Duration {
    Duration::from_secs(env_usize("TALLY_PARTITION_CUT_S", 20) as u64)
}

/// A client of `node` with connections of its own (not the cluster's pool, whose connections
/// may sit stalled on a path that was cut), signing reads as the node's organization.
fn fresh_client(c: &LocalCluster, node: &str) -> Client {
    Client::new(&c.api_url(node), &c.api_trust())
        .expect("a client")
        .with_timeout(SHORT)
        .with_reader(c.identity(&c.node_org(node), Role::Client))
}

/// The steady writer, from the test's own side of the network: workers submit puts with
/// retries across all nodes and record every acknowledged transaction.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(usize, Hash)>>>,
    workers: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Writer {
    fn start(c: &LocalCluster, tag: &str) -> Writer {
        let clients: Arc<Vec<Client>> = Arc::new(
            c.node_names()
                .iter()
                .map(|n| fresh_client(c, n).with_timeout(Duration::from_secs(5)))
                .collect(),
        );
        let signer = Arc::new(c.identity("org1", Role::Client));
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicUsize::new(0));
        let acked: Arc<Mutex<Vec<(usize, Hash)>>> = Arc::default();
        let mut workers = Vec::new();
        for w in 0..WORKERS {
            let (clients, signer, stop, next, acked) = (
                clients.clone(),
                signer.clone(),
                stop.clone(),
                next.clone(),
                acked.clone(),
            );
            let tag = tag.to_string();
            workers.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let key = format!("{tag}-{i:06}");
                    let tx = sign_writes(&signer, CH, vec![put(&key, b"v")], false);
                    match submit_retry(&clients, w + i, &tx, Duration::from_secs(90)).await {
                        Ok(r) if r.status.is_committed() => {
                            acked.lock().unwrap().push((i, tx.id()))
                        }
                        Ok(r) => failures.push(format!("tx #{i}: {:?}", r.status)),
                        Err(e) => failures.push(format!("tx #{i}: {e}")),
                    }
                }
                failures
            }));
        }
        Writer {
            stop,
            acked,
            workers,
        }
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `more` further writes were acknowledged (or `within` passed); true if so.
    async fn progress(&self, more: usize, within: Duration) -> bool {
        let target = self.acked_count() + more;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.acked_count() >= target {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    async fn finish(self) -> Vec<(usize, Hash)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for w in self.workers {
            failures.extend(w.await.expect("writer worker"));
        }
        assert!(
            failures.is_empty(),
            "{} writes failed; first ones:\n  {}",
            failures.len(),
            failures[..failures.len().min(10)].join("\n  ")
        );
        std::mem::take(&mut *self.acked.lock().unwrap())
    }
}

/// What a writer on the minority side saw: how many submissions it made, and the transactions
/// acknowledged to it with the time of the acknowledgement.
struct MinorityLog {
    node: String,
    attempts: usize,
    acked: Vec<(Hash, Instant)>,
    heights: (u64, u64),
}

/// Starts a writer inside `node`'s namespace that submits to that node alone until `stop`,
/// and reads the node's height when it starts and when it stops.
fn minority_writer(
    nc: &NetCluster,
    node: &str,
    stop: Arc<AtomicBool>,
) -> impl std::future::Future<Output = MinorityLog> {
    let url = nc.api_url(node);
    let trust = nc.api_trust();
    let org = nc.node_org(node);
    let signer: Identity = nc.identity(&org, Role::Client);
    let node = node.to_string();
    let name = node.clone();
    nc.lab.run_in(&name, move || async move {
        let client = Client::new(&url, &trust)
            .expect("a client")
            .with_timeout(SHORT)
            .with_reader(signer.clone());
        let height = |c: Client| async move { c.status(CH).await.map(|s| s.height).unwrap_or(0) };
        let first = height(client.clone()).await;
        let mut log = MinorityLog {
            node: node.clone(),
            attempts: 0,
            acked: Vec::new(),
            heights: (first, first),
        };
        while !stop.load(Ordering::Relaxed) {
            let key = format!("minority-{node}-{}", log.attempts);
            let tx = sign_writes(&signer, CH, vec![put(&key, b"v")], false);
            log.attempts += 1;
            match client.submit_wait(&tx).await {
                Ok(r) if r.status.is_committed() => log.acked.push((tx.id(), Instant::now())),
                // Refused, timed out, no leader: not acknowledged, which is what must happen.
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        log.heights.1 = height(client).await;
        log
    })
}

/// Statuses of the channel on `nodes`, through fresh clients; nodes that do not answer are
/// left out.
async fn statuses(c: &LocalCluster, nodes: &[String]) -> Vec<(String, ChannelStatus)> {
    let mut out = Vec::new();
    for n in nodes {
        if let Ok(s) = fresh_client(c, n).status(CH).await {
            out.push((n.clone(), s));
        }
    }
    out
}

/// Waits until the nodes in `majority` agree on a leader among themselves other than
/// `not`; returns its name.
async fn majority_leader(c: &LocalCluster, majority: &[String], not: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = statuses(c, majority).await;
        if let Some((name, _)) = st.iter().find(|(n, s)| {
            s.role == RaftRole::Leader
                && Some(n.as_str()) != not
                && st.iter().all(|(_, o)| o.leader_id == s.node_id)
        }) {
            return name.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the majority {majority:?} elected no leader within 30 s: {:?}",
            st.iter()
                .map(|(n, s)| (n, s.role, s.leader_id, s.term))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `node` follows the leader that `others` follow and holds at least the height
/// they had when it was healed; returns the time this took since `healed_at`.
async fn wait_caught_up(
    c: &LocalCluster,
    node: &str,
    others: &[String],
    healed_at: Instant,
) -> Duration {
    let target = statuses(c, others)
        .await
        .iter()
        .map(|(_, s)| s.height)
        .max()
        .expect("the majority answers");
    let client = fresh_client(c, node);
    loop {
        let leader = statuses(c, others).await.first().map(|(_, s)| s.leader_id);
        if let (Ok(s), Some(leader)) = (client.status(CH).await, leader) {
            if leader != 0 && s.leader_id == leader && s.height >= target {
                return healed_at.elapsed();
            }
        }
        assert!(
            healed_at.elapsed() < REJOIN_DEADLINE,
            "{node} was not caught up (height {target}, the majority's leader) {REJOIN_DEADLINE:?} after healing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Nothing acknowledged on the minority side before the heal.
fn assert_no_minority_acks(log: &MinorityLog, healed_at: Instant) {
    let early: Vec<&(Hash, Instant)> = log.acked.iter().filter(|(_, t)| *t < healed_at).collect();
    assert!(
        early.is_empty(),
        "{} acknowledged {} of {} writes while cut off from the majority (first: {})",
        log.node,
        early.len(),
        log.attempts,
        early[0].0
    );
    assert!(
        log.attempts > 0,
        "the minority writer on {} never submitted",
        log.node
    );
}

/// After healing: the chains converge and agree, and every acknowledged write is on them once.
async fn assert_safe(nc: &NetCluster, acked: &[(usize, Hash)], minority: &[MinorityLog]) -> u64 {
    let st = nc
        .wait_converged(CH, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let blocks = assert_identical_chains(nc, CH).await;
    let counts = committed_counts(&blocks);
    for (i, id) in acked {
        let n = counts.get(id).copied().unwrap_or(0);
        assert_eq!(n, 1, "acknowledged write #{i} {id} is committed {n} times");
    }
    for log in minority {
        for (id, _) in &log.acked {
            let n = counts.get(id).copied().unwrap_or(0);
            assert_eq!(
                n, 1,
                "write {id} acknowledged by {} is committed {n} times",
                log.node
            );
        }
    }
    assert!(
        counts.values().all(|n| *n == 1),
        "a transaction is committed twice"
    );
    nc.assert_healthy();
    st.height
}

/// One node (the leader, or a follower) cut off under the steady writer, then healed.
async fn one_node_cut(test: &'static str, cut_leader: bool) {
    let nc = NetCluster::start(test, 3, &[CH], |_| {}).await;
    let names = nc.node_names();
    let writer = Writer::start(&nc, test);
    assert!(
        writer.progress(30, Duration::from_secs(30)).await,
        "{test}: no writes commit before the partition"
    );
    let leader = majority_leader(&nc, &names, None).await;
    let victim = if cut_leader {
        leader.clone()
    } else {
        names
            .iter()
            .find(|n| **n != leader)
            .expect("a follower")
            .clone()
    };
    let majority: Vec<String> = names.iter().filter(|n| **n != victim).cloned().collect();

    nc.lab.cut(&victim);
    let cut_at = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let inside = minority_writer(&nc, &victim, stop.clone());
    let new_leader = majority_leader(&nc, &majority, Some(&victim)).await;
    let elected_after = cut_at.elapsed();
    assert!(
        writer.progress(20, Duration::from_secs(30)).await,
        "{test}: the majority {majority:?} commits nothing while {victim} is cut off"
    );
    if let Some(rest) = cut_for().checked_sub(cut_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    stop.store(true, Ordering::Relaxed);
    let log = inside.await;
    nc.lab.heal(&victim);
    let healed_at = Instant::now();
    assert_no_minority_acks(&log, healed_at);

    let rejoin = wait_caught_up(&nc, &victim, &majority, healed_at).await;
    assert!(
        writer.progress(20, Duration::from_secs(30)).await,
        "{test}: writes stop after the heal"
    );
    let acked = writer.finish().await;
    let height = assert_safe(&nc, &acked, std::slice::from_ref(&log)).await;
    eprintln!(
        "{test}: {} {victim} cut off for {:.1} s (majority leader {new_leader} after {:.1} s); \
         rejoin: caught up {:.2} s after heal; {} writes acknowledged, \
         {} submissions on the minority side, 0 acknowledged there; height {height}",
        if cut_leader { "leader" } else { "follower" },
        (healed_at - cut_at).as_secs_f64(),
        elected_after.as_secs_f64(),
        rejoin.as_secs_f64(),
        acked.len(),
        log.attempts,
    );
}

#[test]
fn leader_cut_off_then_healed() {
    in_private_netns("partition-leader", || {
        one_node_cut("partition-leader", true)
    });
}

#[test]
fn follower_cut_off_then_healed() {
    in_private_netns("partition-follower", || {
        one_node_cut("partition-follower", false)
    });
}

/// Every node alone: nothing commits and nothing is acknowledged anywhere; after healing the
/// channel elects a leader and the writer's pending writes commit.
#[test]
fn every_node_isolated_then_healed() {
    const TEST: &str = "partition-all";
    in_private_netns(TEST, || async {
        let nc = NetCluster::start(TEST, 3, &[CH], |_| {}).await;
        let names = nc.node_names();
        let writer = Writer::start(&nc, TEST);
        assert!(
            writer.progress(30, Duration::from_secs(30)).await,
            "{TEST}: no writes commit before the partition"
        );
        for n in &names {
            nc.lab.cut(n);
        }
        let cut_at = Instant::now();
        let before = writer.acked_count();
        // Blocks already on their way when the links went down may still land; give them a
        // moment, so that the heights the minority writers start from are final.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let inside: Vec<_> = names
            .iter()
            .map(|n| minority_writer(&nc, n, stop.clone()))
            .collect();
        if let Some(rest) = cut_for().checked_sub(cut_at.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        stop.store(true, Ordering::Relaxed);
        let logs = futures_util::future::join_all(inside).await;
        let acked_while_cut = writer.acked_count() - before;
        for n in &names {
            nc.lab.heal(n);
        }
        let healed_at = Instant::now();
        for log in &logs {
            assert_no_minority_acks(log, healed_at);
            assert_eq!(
                log.heights.0, log.heights.1,
                "{}: the height moved from {} to {} while every node was alone",
                log.node, log.heights.0, log.heights.1
            );
        }

        let leader = majority_leader(&nc, &names, None).await;
        let elected = healed_at.elapsed();
        assert!(
            writer.progress(1, REJOIN_DEADLINE).await,
            "{TEST}: nothing commits within {REJOIN_DEADLINE:?} of healing"
        );
        let first_commit = healed_at.elapsed();
        assert!(
            writer.progress(20, Duration::from_secs(30)).await,
            "{TEST}: writes stop after the heal"
        );
        let acked = writer.finish().await;
        let height = assert_safe(&nc, &acked, &logs).await;
        eprintln!(
            "{TEST}: every node alone for {:.1} s: {} writes acknowledged to the writer while cut \
             (answers already on their way), {} submissions inside the namespaces, 0 acknowledged; \
             after heal: leader {leader} in {:.2} s, first commit in {:.2} s; \
             {} writes acknowledged in all; height {height}",
            (healed_at - cut_at).as_secs_f64(),
            acked_while_cut,
            logs.iter().map(|l| l.attempts).sum::<usize>(),
            elected.as_secs_f64(),
            first_commit.as_secs_f64(),
            acked.len(),
        );
    });
}
