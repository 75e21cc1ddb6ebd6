//! A node that lost its Raft state never votes with it (node/src/channel/rejoin.rs).
//!
//! The case that loses committed blocks without the defence: one node lags (it was down while
//! the other two committed), the leader goes down, and the third node is wiped and rejoins.
//! The lagging node asks the wiped one for its vote; a wiped node that granted it (its empty
//! log is behind anyone's) would make the lagging node leader, and the blocks only the old
//! leader still holds would be overwritten. Here the wiped node withholds its vote, the two
//! cannot elect anyone, and once the old leader is back it leads, the wiped node catches up,
//! and every acknowledged write is on every node, including those of a writer that runs
//! throughout (the wipe happens under load).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tally_client::txs::{put, sign_writes};
use tally_client::Client;
use tally_protocol::api::RaftRole;
use tally_protocol::{Identity, Role};
use tally_tests::{assert_identical_chains, metric_value, metrics, TestCluster};

const CHANNEL: &str = "rejoin";
const WITHHELD: &str = "tally_votes_withheld_total";

async fn write(clients: &[Client], signer: &Identity, prefix: &str, count: usize) {
    tally_tests::write_keys(clients, signer, CHANNEL, prefix, count).await
}

/// A writer that keeps submitting new keys to whichever node commits them, from before the
/// wipe until after the wiped node rejoined: the load the wipe happens under. Keeps the keys
/// whose commit a node acknowledged.
struct Load {
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(clients: Vec<Client>, signer: Identity) -> Load {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acked.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut i = 0usize;
            while !s.load(Ordering::Relaxed) {
                let key = format!("load-{i:05}");
                let tx = sign_writes(&signer, CHANNEL, vec![put(&key, b"v")], false);
                let c = &clients[i % clients.len()];
                match c.submit_wait_for(&tx, Duration::from_secs(1)).await {
                    Ok(r) if r.status.is_committed() => a.lock().expect("acked").push(key),
                    // Not acknowledged: nothing is promised about it.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                i += 1;
            }
        });
        Load { acked, stop, task }
    }

    fn acked(&self) -> usize {
        self.acked.lock().expect("acked").len()
    }

    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the writer");
        let acked = self.acked.lock().expect("acked").clone();
        acked
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_voter_withholds_its_vote_until_caught_up_and_nothing_committed_is_lost() {
    let tc = TestCluster::start("rejoin", 3, &[CHANNEL], |_| {}).await;
    let signer = tc.identity("org1", Role::Client);
    let (keeper, lagger, wiped) = ("node1-0", "node2-0", "node3-0");

    write(&tc.clients(), &signer, "all", 10).await;
    let load = Load::start(tc.clients(), signer.clone());
    // The lagging node misses blocks that the other two commit.
    tc.kill(lagger).await.expect("kill the lagging node");
    write(
        &[tc.client(keeper), tc.client(wiped)],
        &signer,
        "without-lagger",
        20,
    )
    .await;
    let committed = tc.client(keeper).status(CHANNEL).await.expect("status");

    // The node holding them goes down; the third loses its data and rejoins; the lagging
    // node comes back. Two of three are up, one of them wiped.
    tc.kill(keeper).await.expect("kill the keeper");
    tc.wipe(wiped).await.expect("wipe");
    tc.start_node(lagger)
        .await
        .expect("restart the lagging node");

    // The lagging node campaigns; the wiped one withholds its vote each time it is asked, so
    // the lagging node never leads.
    let w = tc.client(wiped);
    let lc = tc.client(lagger);
    let mut asked = 0.0;
    for _ in 0..600 {
        if let Ok(ls) = lc.status(CHANNEL).await {
            assert_ne!(
                ls.role,
                RaftRole::Leader,
                "{lagger} became leader at height {} without the blocks up to {} that the \
                 channel committed: {wiped} voted with its lost Raft state",
                ls.height,
                committed.height
            );
        }
        asked = metric_value(
            &metrics(&tc.api_url(wiped)).await,
            WITHHELD,
            &[("channel", CHANNEL)],
        )
        .unwrap_or(0.0);
        if asked >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(asked >= 3.0, "{wiped} was asked for its vote {asked} times");
    let ws = w.status(CHANNEL).await.expect("wiped node status");
    assert!(ws.rejoining, "{wiped} must report that it rejoins: {ws:?}");
    let ls = lc.status(CHANNEL).await.expect("lagger status");
    assert_ne!(ls.role, RaftRole::Leader, "{lagger} must not lead: {ls:?}");
    assert_ne!(ws.role, RaftRole::Leader, "{wiped} must not lead: {ws:?}");
    assert!(
        ls.height < committed.height,
        "{lagger} lags ({} < {})",
        ls.height,
        committed.height
    );
    eprintln!(
        "{wiped} withheld its vote {asked} times; {lagger} at height {} of {} stayed a {:?}",
        ls.height, committed.height, ls.role
    );

    // The keeper returns and leads; the wiped node catches up and votes again.
    tc.start_node(keeper).await.expect("restart the keeper");
    write(&tc.clients(), &signer, "after", 10).await;
    tc.wait_converged(CHANNEL, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rejoined = false;
    for _ in 0..300 {
        if !w.status(CHANNEL).await.expect("status").rejoining {
            rejoined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(rejoined, "{wiped} never finished rejoining");
    // The load goes on while the rejoined node takes part again.
    let base = load.acked();
    for _ in 0..300 {
        if load.acked() >= base + 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let loaded = load.stop().await;
    assert!(
        loaded.len() >= base + 20,
        "the writer got only {} commits acknowledged ({base} before the rejoin)",
        loaded.len()
    );
    tc.wait_converged(CHANNEL, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Nothing committed is lost: every key on every node, and the chains are identical.
    assert_identical_chains(&tc, CHANNEL).await;
    for n in tc.node_names() {
        let c = tc.client(&n);
        for key in &loaded {
            c.get(CHANNEL, key)
                .await
                .unwrap_or_else(|e| panic!("{n}: get {key}: {e}"))
                .unwrap_or_else(|| panic!("{n}: {key}, acknowledged under load, is lost"));
        }
    }
    eprintln!(
        "{} writes acknowledged under load, all on every node",
        loaded.len()
    );
    for n in tc.node_names() {
        let c = tc.client(&n);
        for key in [
            "all-009",
            "without-lagger-000",
            "without-lagger-019",
            "after-009",
        ] {
            let kv = c
                .get(CHANNEL, key)
                .await
                .unwrap_or_else(|e| panic!("{n}: get {key}: {e}"))
                .unwrap_or_else(|| panic!("{n}: {key} lost"));
            assert!(kv.value_utf8.is_some());
        }
    }
    // The rejoined node takes part in elections again: with the keeper gone once more, it
    // and the formerly lagging node elect a leader and commit.
    tc.kill(keeper).await.expect("kill the keeper again");
    write(&[tc.client(lagger), w.clone()], &signer, "two-left", 5).await;
    tc.assert_healthy();
}
