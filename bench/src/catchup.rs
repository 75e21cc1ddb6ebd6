//! Catch-up: how fast a node that lost its data gets the ledger back from its peers. The
//! channel is filled with `--catchup-mb` MiB of state, one node is wiped (killed, its data
//! deleted, started again and given the channel), and the time until it holds the height the
//! others had is measured. A trickle of small writes runs meanwhile (a leader notices a wiped
//! node when its next append is refused). The node can only come back through a Raft snapshot:
//! the log is compacted every `SNAPSHOT_INTERVAL` blocks, far below what the fill writes.

use crate::procstat;
use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_client::txs::{put, sign_writes};
use tally_protocol::Role;
use tallyctl::{LocalCluster, LocalClusterSpec};

const CHANNEL: &str = "catchup";
const SNAPSHOT_INTERVAL: u64 = 10;
const FILL_IN_FLIGHT: usize = 32;
const MIB: f64 = 1024.0 * 1024.0;

pub struct CatchupParams {
    pub node_bin: PathBuf,
    pub nodes: usize,
    pub fsync: bool,
    pub value_size: usize,
    pub mb: usize,
    pub timeout: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct CatchupReport {
    pub nodes: usize,
    pub fsync: bool,
    pub value_size: usize,
    /// Keys written by the fill, one transaction each.
    pub keys: usize,
    /// Value bytes the fill wrote, in MiB.
    pub state_mib: f64,
    /// Height the others had when the node was wiped.
    pub height: u64,
    /// Size of the snapshot the wiped node installed, in MiB (from its log).
    pub snapshot_mib: f64,
    /// From the wipe to the node's height reaching `height`, process start included.
    pub seconds: f64,
    /// `snapshot_mib / seconds`.
    pub mib_per_s: f64,
    /// Highest resident memory of the wiped node and of the leader while it caught up.
    pub catching_up_peak_rss_mib: f64,
    pub leader_peak_rss_mib: f64,
}

impl CatchupReport {
    pub fn to_table(&self) -> String {
        format!(
            "catch-up: {} nodes{}, {} keys of {} bytes ({:.0} MiB of values), height {}\n\
             a wiped node installed a {:.1} MiB snapshot and reached the height in {:.2} s: {:.1} MiB/s of ledger\n\
             peak resident memory while it caught up: {:.0} MiB (catching-up node), {:.0} MiB (leader)\n",
            self.nodes,
            if self.fsync { "" } else { " (no fsync)" },
            self.keys,
            self.value_size,
            self.state_mib,
            self.height,
            self.snapshot_mib,
            self.seconds,
            self.mib_per_s,
            self.catching_up_peak_rss_mib,
            self.leader_peak_rss_mib
        )
    }
}

/// The `bytes=` of the last "snapshot verified" line of a node's log.
fn installed_snapshot_bytes(log: &str) -> Option<u64> {
    let line = log.lines().rfind(|l| l.contains("snapshot verified"))?;
    let rest = &line[line.find("bytes=")? + "bytes=".len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn peak(pid: Option<u32>, seen: &mut u64) {
    if let Some(Ok((rss, _))) = pid.map(procstat::memory_and_threads) {
        *seen = (*seen).max(rss);
    }
}

pub async fn run(p: &CatchupParams) -> Result<CatchupReport> {
    if p.value_size == 0 || p.mb == 0 {
        bail!("--value-size and --catchup-mb must be positive");
    }
    let dir = tempfile::Builder::new()
        .prefix("tally-bench-catchup-")
        .tempdir()?;
    let mut spec = LocalClusterSpec::simple(dir.path(), &p.node_bin, p.nodes, &[CHANNEL]);
    spec.fsync = p.fsync;
    if let Some(ch) = spec.channel_mut(CHANNEL) {
        ch.snapshot_interval = SNAPSHOT_INTERVAL;
    }
    let c = LocalCluster::start(spec)
        .await
        .with_context(|| format!("starting the cluster (logs under {})", dir.path().display()))?;
    c.wait_ready(Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("cluster not ready: {e}"))?;
    let names = c.node_names();
    let keys = (p.mb * 1024 * 1024).div_ceil(p.value_size);
    eprintln!(
        "[catchup] filling {CHANNEL} with {keys} keys of {} bytes",
        p.value_size
    );
    let value = crate::value_bytes(p.value_size, "catchup");
    let ids: Vec<_> = c
        .org_names()
        .iter()
        .map(|o| c.identity(o, Role::Client))
        .collect();
    let clients: Vec<_> = names.iter().map(|n| c.client(n)).collect();
    let failures = futures_util::stream::iter(0..keys)
        .map(|i| {
            let tx = sign_writes(
                &ids[i % ids.len()],
                CHANNEL,
                vec![put(&format!("k{i:09}"), &value)],
                false,
            );
            let client = clients[i % clients.len()].clone();
            async move {
                match client.submit_wait(&tx).await {
                    Ok(r) if r.status.is_committed() => None,
                    Ok(r) => Some(format!("{:?}", r.status)),
                    Err(e) => Some(e.to_string()),
                }
            }
        })
        .buffer_unordered(FILL_IN_FLIGHT)
        .filter_map(|r| async move { r })
        .collect::<Vec<_>>()
        .await;
    if let Some(first) = failures.first() {
        bail!("{} fill writes failed; first: {first}", failures.len());
    }
    c.wait_converged(CHANNEL, Duration::from_secs(120))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let leader = c
        .leader(CHANNEL)
        .await
        .context("the channel has no leader")?;
    let victim = names
        .iter()
        .rev()
        .find(|n| **n != leader)
        .context("no node but the leader")?
        .clone();
    let writer = c.client(&leader);
    let height = writer
        .status(CHANNEL)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .height;

    eprintln!("[catchup] height {height}; wiping {victim}");
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        let id = ids[0].clone();
        let writer = writer.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let tx = sign_writes(&id, CHANNEL, vec![put(&format!("t{i}"), b"t")], false);
                let _ = writer.submit_wait(&tx).await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let start = Instant::now();
    c.wipe(&victim)
        .await
        .map_err(|e| anyhow::anyhow!("wiping {victim}: {e}"))?;
    let victim_client = c.client(&victim);
    let (mut victim_rss, mut leader_rss) = (0u64, 0u64);
    let caught_up = loop {
        peak(c.pid(&victim), &mut victim_rss);
        peak(c.pid(&leader), &mut leader_rss);
        if let Ok(s) = victim_client.status(CHANNEL).await {
            if s.height >= height {
                break Some(start.elapsed());
            }
        }
        if start.elapsed() > p.timeout {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let _ = trickle.await;
    let Some(took) = caught_up else {
        bail!(
            "{victim} did not catch up within {:?}; its log:\n{}",
            p.timeout,
            c.log_tail(&victim, 30)
        );
    };
    let log = std::fs::read_to_string(c.log_path(&victim)).unwrap_or_default();
    let bytes = installed_snapshot_bytes(&log).with_context(|| {
        format!(
            "{victim} caught up without installing a snapshot; its log:\n{}",
            c.log_tail(&victim, 30)
        )
    })?;
    // Where the time went: the snapshot's steps as both nodes logged them.
    for (who, text) in [
        (
            &leader,
            std::fs::read_to_string(c.log_path(&leader)).unwrap_or_default(),
        ),
        (&victim, log.clone()),
    ] {
        for l in text.lines().filter(|l| {
            l.contains("snapshot held")
                || l.contains("pulling a snapshot")
                || l.contains("snapshot verified")
                || l.contains("installed snapshot")
        }) {
            eprintln!("[catchup] {who}: {l}");
        }
    }
    let _ = c.shutdown().await;
    let seconds = took.as_secs_f64();
    let snapshot_mib = bytes as f64 / MIB;
    Ok(CatchupReport {
        nodes: p.nodes,
        fsync: p.fsync,
        value_size: p.value_size,
        keys,
        state_mib: (keys * p.value_size) as f64 / MIB,
        height,
        snapshot_mib,
        seconds,
        mib_per_s: snapshot_mib / seconds,
        catching_up_peak_rss_mib: victim_rss as f64 / MIB,
        leader_peak_rss_mib: leader_rss as f64 / MIB,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_snapshot_size_is_read_from_the_log() {
        let log = "x\n2026 INFO snapshot verified: one hash chain channel=c from=1 height=9 index=12 bytes=123456 anchored_at=None\n";
        assert_eq!(installed_snapshot_bytes(log), Some(123456));
        assert_eq!(installed_snapshot_bytes("nothing"), None);
    }
}
