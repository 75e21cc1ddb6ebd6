//! Submitting with retries, and walking and checking chains.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tally_client::{Client, ClientError};
use tally_protocol::block::tx_root;
use tally_protocol::{Block, Hash, Receipt, Transaction};
use tallyctl::LocalCluster;

/// Whether an error from submitting may go away by retrying (on this or another node): the
/// node is down, has no leader, timed out, or answered something unexpected. 4xx answers are
/// final.
pub fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Api { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        ClientError::Transport { .. }
        | ClientError::Timeout(_)
        | ClientError::BadResponse { .. } => true,
        _ => false,
    }
}

/// Submits the same signed transaction with `wait=true` until a node returns a receipt,
/// moving to the next node after each retryable failure. Returns the receipt (committed or
/// rejected), or the last error when it is final or `timeout` passed.
pub async fn submit_retry(
    clients: &[Client],
    first: usize,
    tx: &Transaction,
    timeout: Duration,
) -> Result<Receipt, String> {
    submit_retry_counted(clients, first, tx, timeout).await.0
}

/// Writes `count` keys `<prefix>-000`... on `channel`, one committed transaction each, spread
/// over `clients`; panics on the first that does not commit.
pub async fn write_keys(
    clients: &[Client],
    signer: &tally_protocol::Identity,
    channel: &str,
    prefix: &str,
    count: usize,
) {
    for i in 0..count {
        let tx = tally_client::txs::sign_writes(
            signer,
            channel,
            vec![tally_client::txs::put(&format!("{prefix}-{i:03}"), b"v")],
            false,
        );
        let r = submit_retry(clients, i, &tx, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{prefix}-{i}: {e}"));
        assert!(r.status.is_committed(), "{prefix}-{i}: {:?}", r.status);
    }
}

/// [`submit_retry`], also returning how many submissions it took and the errors that caused
/// the retries (at most the first few).
pub async fn submit_retry_counted(
    clients: &[Client],
    first: usize,
    tx: &Transaction,
    timeout: Duration,
) -> (Result<Receipt, String>, u32, Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut i = first;
    let mut attempts = 0;
    let mut errors = Vec::new();
    loop {
        attempts += 1;
        let c = &clients[i % clients.len()];
        match c.submit_wait(tx).await {
            Ok(r) => return (Ok(r), attempts, errors),
            Err(e) if retryable(&e) && Instant::now() < deadline => {
                if errors.len() < 4 {
                    errors.push(format!("{}: {e}", c.url()));
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return (
                    Err(format!(
                        "after {attempts} attempts, last at {}: {e}",
                        c.url()
                    )),
                    attempts,
                    errors,
                )
            }
        }
    }
}

/// Every block of the channel on one node, from genesis to its current height.
pub async fn all_blocks(c: &Client, channel: &str) -> Result<Vec<Block>, ClientError> {
    let height = c.status(channel).await?.height;
    let results: Vec<Result<Block, ClientError>> = futures_util::stream::iter(0..height)
        .map(|n| c.block(channel, Some(n)))
        .buffered(8)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Checks a chain's internal consistency: numbering, hash links, transaction roots, one result
/// per transaction, channel names.
pub fn verify_chain(who: &str, channel: &str, blocks: &[Block]) {
    for (i, b) in blocks.iter().enumerate() {
        let h = &b.header;
        assert_eq!(
            h.number, i as u64,
            "{who}/{channel}: block at position {i} says number {}",
            h.number
        );
        assert_eq!(
            h.channel, channel,
            "{who}/{channel}: block {i} names channel {:?}",
            h.channel
        );
        if i > 0 {
            let prev = blocks[i - 1].header.hash();
            assert_eq!(
                h.prev_hash,
                prev,
                "{who}/{channel}: block {i} does not link to block {}",
                i - 1
            );
            assert!(
                h.timestamp_ms >= blocks[i - 1].header.timestamp_ms,
                "{who}/{channel}: block {i} is older than block {}",
                i - 1
            );
        }
        assert_eq!(
            b.results.len(),
            b.txs.len(),
            "{who}/{channel}: block {i} has {} txs but {} results",
            b.txs.len(),
            b.results.len()
        );
        assert_eq!(
            h.tx_root,
            tx_root(&b.tx_ids()),
            "{who}/{channel}: block {i}: transaction root does not match its transactions"
        );
        assert_eq!(
            h.results_root,
            tally_protocol::block::results_root(&b.tx_ids(), &b.results, &b.effects),
            "{who}/{channel}: block {i}: results root does not match its statuses and effects"
        );
    }
}

/// How many times each transaction id is marked committed in the blocks.
pub fn committed_counts(blocks: &[Block]) -> HashMap<Hash, usize> {
    let mut m = HashMap::new();
    for b in blocks {
        for (tx, r) in b.txs.iter().zip(&b.results) {
            if r.is_committed() {
                *m.entry(tx.id()).or_insert(0) += 1;
            }
        }
    }
    m
}

/// Fetches every node's copy of the channel, checks each chain, and asserts that all nodes hold
/// identical blocks (hence identical hashes and state roots at every height). Returns the chain.
pub async fn assert_identical_chains(c: &LocalCluster, channel: &str) -> Vec<Block> {
    let mut reference: Option<(String, Vec<Block>)> = None;
    for n in c.channel_nodes(channel) {
        let blocks = all_blocks(&c.client(&n), channel)
            .await
            .unwrap_or_else(|e| panic!("reading the blocks of {channel} from {n}: {e}"));
        verify_chain(&n, channel, &blocks);
        match &reference {
            None => reference = Some((n, blocks)),
            Some((rn, rb)) => {
                assert_eq!(
                    blocks.len(),
                    rb.len(),
                    "{channel}: {n} has {} blocks, {rn} has {}",
                    blocks.len(),
                    rb.len()
                );
                for (a, b) in rb.iter().zip(&blocks) {
                    assert_eq!(
                        a.header.hash(),
                        b.header.hash(),
                        "{channel}: block {} differs between {rn} and {n}:\n{rn}: {:?}\n{n}: {:?}",
                        a.header.number,
                        a.header,
                        b.header
                    );
                    assert_eq!(a, b, "{channel}: block {} has equal headers but different bodies on {rn} and {n}", a.header.number);
                }
            }
        }
    }
    reference.map(|(_, b)| b).unwrap_or_default()
}
