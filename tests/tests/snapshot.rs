//! With a small snapshot interval the Raft log is compacted often. A node that slept through
//! many blocks restarts and catches up; a node that lost its data rejoins and can only catch
//! up through a snapshot (`tally_snapshots_applied_total` says it did). Both must end with
//! exactly the chain and state of the others, and take part again.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tally_client::txs::{put, sign_writes};
use tally_client::Client;
use tally_protocol::{Identity, Role};
use tally_tests::{assert_identical_chains, metric_value, metrics, submit_retry, TestCluster};

const CHANNEL: &str = "snap";
const SNAPSHOT_METRIC: &str = "tally_snapshots_applied_total";

/// Writes `count` keys `prefix-N` with 8 concurrent submitters; all must commit.
async fn write(clients: &[Client], signer: &Identity, prefix: &str, count: usize) {
    let clients = Arc::new(clients.to_vec());
    let results: Vec<Result<(), String>> = futures_util::stream::iter(0..count)
        .map(|i| {
            let clients = clients.clone();
            let tx = sign_writes(
                signer,
                CHANNEL,
                vec![put(
                    &format!("{prefix}-{i:04}"),
                    format!("{prefix} {i}").as_bytes(),
                )],
                false,
            );
            async move {
                match submit_retry(&clients, i, &tx, Duration::from_secs(60)).await {
                    Ok(r) if r.status.is_committed() => Ok(()),
                    Ok(r) => Err(format!("{prefix}-{i}: {:?}", r.status)),
                    Err(e) => Err(format!("{prefix}-{i}: {e}")),
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        errors.is_empty(),
        "{} writes failed; first ones:\n  {}",
        errors.len(),
        errors[..errors.len().min(10)].join("\n  ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_and_wiped_nodes_catch_up_and_match_the_others() {
    let tc = TestCluster::start("snapshot", 3, &[CHANNEL], |spec| {
        let ch = spec.channel_mut(CHANNEL).unwrap();
        ch.snapshot_interval = 20;
        ch.batch.max_txs = 4;
    })
    .await;
    let signer = tc.identity("org1", Role::Client);
    let clients_but = |name: &str| -> Vec<Client> {
        tc.node_names()
            .iter()
            .filter(|n| n.as_str() != name)
            .map(|n| tc.client(n))
            .collect()
    };

    // Enough blocks for several snapshot points while everyone is up.
    write(&tc.clients(), &signer, "before", 100).await;

    // A node that is down while the others move on and compact, then restarts with its old
    // data: it catches up (through the log or a snapshot, whichever the leader still has).
    let sleeper = "node2-0";
    tc.kill(sleeper).await.unwrap();
    write(&clients_but(sleeper), &signer, "asleep", 150).await;
    tc.start_node(sleeper)
        .await
        .unwrap_or_else(|e| panic!("restart {sleeper}: {e}"));
    write(&tc.clients(), &signer, "woken", 40).await;
    tc.wait_node_ready(sleeper, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{sleeper} after its restart: {e}"));
    tc.wait_converged(CHANNEL, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = metrics(&tc.api_url(sleeper)).await;
    eprintln!(
        "{sleeper} restarted with stale data and caught up; {SNAPSHOT_METRIC} = {:?}",
        metric_value(&text, SNAPSHOT_METRIC, &[("channel", CHANNEL)])
    );

    // A node that loses everything while the others move on and compact: the only way back
    // is a snapshot.
    let victim = "node3-0";
    let survivors = clients_but(victim);
    tc.kill(victim).await.unwrap();
    write(&survivors, &signer, "down", 150).await;
    let height_before_wipe = survivors[0].status(CHANNEL).await.unwrap().height;
    assert!(
        height_before_wipe > 100,
        "expected many blocks with max_txs 4, got height {height_before_wipe}"
    );

    tc.wipe(victim)
        .await
        .unwrap_or_else(|e| panic!("wipe {victim}: {e}"));
    // Keep writing while it catches up.
    write(&survivors, &signer, "after", 60).await;

    tc.wait_node_ready(victim, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{victim} after the wipe: {e}"));
    let st = tc
        .wait_converged(CHANNEL, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(st.height >= height_before_wipe);

    let text = metrics(&tc.api_url(victim)).await;
    let applied = metric_value(&text, SNAPSHOT_METRIC, &[("channel", CHANNEL)]);
    assert!(
        applied.unwrap_or(0.0) > 0.0,
        "{victim} caught up, but {SNAPSHOT_METRIC}{{channel=\"{CHANNEL}\"}} is {applied:?}: it did not apply a snapshot. Snapshot lines of its /metrics:\n{}",
        text.lines().filter(|l| l.contains("snapshot")).collect::<Vec<_>>().join("\n")
    );

    eprintln!(
        "{victim} rejoined at height {height_before_wipe} and converged at {}; {SNAPSHOT_METRIC} = {applied:?}",
        st.height
    );

    // The rejoined node holds the whole chain, identical to the others', and the state.
    assert_identical_chains(&tc, CHANNEL).await;
    let c = tc.client(victim);
    for key in [
        "before-0000",
        "before-0099",
        "asleep-0149",
        "woken-0039",
        "down-0000",
        "down-0149",
        "after-0059",
    ] {
        let kv = c
            .get(CHANNEL, key)
            .await
            .unwrap_or_else(|e| panic!("{victim}: get {key}: {e}"))
            .unwrap_or_else(|| panic!("{victim}: key {key} missing after the snapshot"));
        assert!(kv.value_utf8.is_some());
    }

    // And it takes part again: a transaction submitted through it commits everywhere.
    let tx = sign_writes(
        &signer,
        CHANNEL,
        vec![put("through-the-rejoined-node", b"yes")],
        false,
    );
    let r = c
        .submit_wait(&tx)
        .await
        .unwrap_or_else(|e| panic!("submit through {victim}: {e}"));
    assert!(r.status.is_committed(), "{r:?}");
    tc.wait_converged(CHANNEL, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tc.assert_healthy();
}
