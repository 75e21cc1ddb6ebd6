//! Idle cost: a cluster whose nodes hold many channels (every node a consenter of each) and
//! get no load. Per node: CPU time over the window as a percentage of one core, and resident
//! memory (the highest of one sample a second), with its thread count.

use crate::procstat;
use crate::tally::TallyParams;
use anyhow::{bail, Result};
use serde::Serialize;
use std::time::Duration;

#[derive(Clone, Debug, Serialize)]
pub struct NodeIdle {
    pub pid: u32,
    /// CPU seconds over the window / its length, in percent of one core.
    pub cpu_pct: f64,
    /// Highest resident set size seen in the window.
    pub rss_mib: f64,
    pub threads: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct IdleReport {
    pub nodes: usize,
    pub channels: usize,
    /// Time given to the cluster after it is ready, before the window (elections, first
    /// snapshots, allocator warm-up).
    pub settle_seconds: u64,
    pub seconds: u64,
    pub per_node: Vec<NodeIdle>,
    pub max_cpu_pct: f64,
    pub max_rss_mib: f64,
    /// Cores' worth of CPU the rest of the machine used in the window (other processes).
    pub other_cores: f64,
    pub cores: usize,
}

const MIB: f64 = 1024.0 * 1024.0;

pub async fn run(p: &TallyParams, cores: usize) -> Result<IdleReport> {
    eprintln!(
        "[tally idle] starting {} nodes with {} channel(s) from {}",
        p.nodes,
        p.channels,
        p.node_bin.display()
    );
    let cluster = crate::cluster::start(p).await?;
    let pids = cluster.pids.clone();
    eprintln!(
        "[tally idle] ready; settling {} s, then measuring {} s",
        p.warmup.as_secs(),
        p.measure.as_secs()
    );
    tokio::time::sleep(p.warmup).await;
    let start = std::time::Instant::now();
    let (machine0, bench0) = (
        procstat::machine_busy_seconds(),
        procstat::self_cpu_seconds(),
    );
    let cpu0: Vec<u64> = pids
        .iter()
        .map(|&pid| procstat::cpu_ticks(pid).unwrap_or(0))
        .collect();
    let mut peak = vec![(0u64, 0u64); pids.len()];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while start.elapsed() < p.measure {
        tick.tick().await;
        for (i, &pid) in pids.iter().enumerate() {
            match procstat::memory_and_threads(pid) {
                Ok((rss, threads)) => {
                    peak[i] = (peak[i].0.max(rss), threads);
                }
                Err(_) => {
                    let logs = cluster.log_tails(30);
                    cluster.stop().await;
                    bail!("tally node {pid} exited while idle\n{logs}");
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let (machine1, bench1) = (
        procstat::machine_busy_seconds(),
        procstat::self_cpu_seconds(),
    );
    let tps = procstat::ticks_per_second() as f64;
    let per_node: Vec<NodeIdle> = pids
        .iter()
        .enumerate()
        .map(|(i, &pid)| {
            let used = procstat::cpu_ticks(pid).unwrap_or(cpu0[i]) - cpu0[i];
            NodeIdle {
                pid,
                cpu_pct: 100.0 * used as f64 / tps / seconds,
                rss_mib: peak[i].0 as f64 / MIB,
                threads: peak[i].1,
            }
        })
        .collect();
    cluster.stop().await;
    let nodes_cpu_s: f64 = per_node.iter().map(|n| n.cpu_pct / 100.0 * seconds).sum();
    let others = (machine1 - machine0) - (bench1 - bench0) - nodes_cpu_s;
    Ok(IdleReport {
        other_cores: (others / seconds).max(0.0),
        nodes: p.nodes,
        channels: p.channels,
        settle_seconds: p.warmup.as_secs(),
        seconds: p.measure.as_secs(),
        max_cpu_pct: per_node.iter().map(|n| n.cpu_pct).fold(0.0, f64::max),
        max_rss_mib: per_node.iter().map(|n| n.rss_mib).fold(0.0, f64::max),
        per_node,
        cores,
    })
}

impl IdleReport {
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "idle: {} nodes, {} channel(s) each (every node a consenter), {} s measured after {} s settling, {} cores\n",
            self.nodes, self.channels, self.seconds, self.settle_seconds, self.cores
        );
        out += &format!(
            "{:<8}{:>10}{:>16}{:>12}{:>10}\n",
            "node", "pid", "CPU % of 1 core", "RSS MiB", "threads"
        );
        for (i, n) in self.per_node.iter().enumerate() {
            out += &format!(
                "{:<8}{:>10}{:>16.2}{:>12.1}{:>10}\n",
                format!("node{}", i + 1),
                n.pid,
                n.cpu_pct,
                n.rss_mib,
                n.threads
            );
        }
        out += &format!(
            "highest: {:.2} % of one core, {:.1} MiB (target: under 5 % and 200 MiB); other processes used {:.2} cores meanwhile\n",
            self.max_cpu_pct, self.max_rss_mib, self.other_cores
        );
        out
    }
}
