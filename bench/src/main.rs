//! tally-bench: committed throughput, latency and CPU cost of Tally against etcd, with the
//! same closed-loop load shape, one after the other in one run. See docs/benchmarks.md.

mod cluster;
mod etcd;
mod hist;
mod http;
mod load;
mod procstat;
mod report;
mod tally;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Compare {
    Etcd,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// Benchmark signed key/value transactions on a local Tally cluster against etcd.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Baseline to run after Tally with the same load shape.
    #[arg(long, value_enum, default_value = "etcd")]
    compare: Compare,
    /// Length of the measured window, per system.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Load before the measured window starts, per system.
    #[arg(long, default_value_t = 5)]
    warmup_seconds: u64,
    /// Concurrent closed-loop clients (each has one request in flight).
    #[arg(long, default_value_t = 256)]
    clients: usize,
    /// Bytes of each value; every operation puts one new key.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Channel batch setting: cut a block at this many transactions (channel default if unset).
    #[arg(long)]
    batch_max_txs: Option<u32>,
    /// Channel batch setting: cut a block this long after its first transaction.
    #[arg(long)]
    batch_timeout_ms: Option<u32>,
    /// Tally nodes (consenters of the channel) and etcd members.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Run the Tally nodes without fsync (exploration only; labelled in the output).
    #[arg(long)]
    no_fsync: bool,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    /// tally-node binary (default: next to this binary).
    #[arg(long)]
    node_bin: Option<PathBuf>,
    /// Skip Tally and measure only the etcd baseline (exploration; "tally" is null).
    #[arg(long, hide = true)]
    etcd_only: bool,
    /// The receivables contract (receivables.wasm, from chaincode/build.sh): after the
    /// key/value load, the same Tally cluster runs a load of chaincode transfers, reported in
    /// its own column.
    #[arg(long)]
    chaincode: Option<PathBuf>,
    /// etcd binary (Debian's etcd-server 3.4).
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
}

/// Incompressible value bytes, fixed per client.
pub fn value_bytes(size: usize, seed: &str) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut s = [0u8; 32];
    for (i, b) in seed.bytes().enumerate() {
        s[i % 32] ^= b;
    }
    let mut v = vec![0u8; size];
    rand::rngs::StdRng::from_seed(s).fill_bytes(&mut v);
    v
}

fn default_node_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this binary")?;
    Ok(exe.with_file_name("tally-node"))
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

async fn run(args: Args) -> Result<report::Report> {
    if args.clients == 0 || args.seconds == 0 || args.nodes == 0 {
        bail!("--clients, --seconds and --nodes must be positive");
    }
    let node_bin = match &args.node_bin {
        Some(p) => p.clone(),
        None => default_node_bin()?,
    };
    if !args.etcd_only && !node_bin.exists() {
        bail!(
            "tally-node binary not found at {} (build it with `cargo build --release -p tally-node` or pass --node-bin)",
            node_bin.display()
        );
    }
    let run_etcd = args.compare == Compare::Etcd || args.etcd_only;
    if run_etcd && !args.etcd_bin.exists() {
        bail!(
            "etcd not found at {} (Debian package etcd-server; or pass --etcd-bin, or --compare none)",
            args.etcd_bin.display()
        );
    }
    let chaincode = match &args.chaincode {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("--chaincode {}", p.display()))?),
        None => None,
    };
    let run_id = format!("{:08x}", rand::random::<u32>());
    let warmup = Duration::from_secs(args.warmup_seconds);
    let measure = Duration::from_secs(args.seconds);

    let tally = if args.etcd_only {
        None
    } else {
        Some(
            tally::run(&tally::TallyParams {
                node_bin,
                nodes: args.nodes,
                fsync: !args.no_fsync,
                batch_max_txs: args.batch_max_txs,
                batch_timeout_ms: args.batch_timeout_ms,
                clients: args.clients,
                value_size: args.value_size,
                warmup,
                measure,
                run_id: run_id.clone(),
                chaincode,
            })
            .await
            .context("tally run")?,
        )
    };
    let (tally, tally_chaincode) = match tally {
        Some((kv, cc)) => (Some(kv), cc),
        None => (None, None),
    };

    if tally.is_some() && run_etcd {
        // Tally's nodes are gone, but the kernel may still be writing back their data; let
        // it finish so that etcd's fsyncs do not pay for Tally's writes.
        eprintln!("[bench] flushing the page cache before the etcd phase");
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let etcd = if run_etcd {
        eprintln!(
            "[etcd] starting {} members from {}",
            args.nodes,
            args.etcd_bin.display()
        );
        let mut cluster = etcd::EtcdCluster::start(&args.etcd_bin, args.nodes)?;
        cluster.wait_healthy(Duration::from_secs(30)).await?;
        eprintln!(
            "[etcd] healthy; {} clients over {} members",
            args.clients, args.nodes
        );
        let workers = (0..args.clients)
            .map(|i| {
                let addr = cluster.client_addrs[i % cluster.client_addrs.len()];
                etcd::EtcdWorker::new(addr, format!("bench/{run_id}/{i}/"), args.value_size)
            })
            .collect();
        let params = load::LoadParams {
            label: "etcd".into(),
            warmup,
            measure,
            server_pids: cluster.pids(),
        };
        let r = load::run(params, workers).await;
        let pids = cluster.pids();
        drop(cluster);
        procstat::wait_gone(&pids, Duration::from_secs(10)).await;
        if !r.gone_pids.is_empty() {
            bail!("etcd members exited during the run: {:?}", r.gone_pids);
        }
        Some(report::SystemReport::from_load(&r, args.nodes, true))
    } else {
        None
    };

    Ok(report::Report::new(
        tally,
        tally_chaincode,
        etcd,
        report::RunConfig {
            clients: args.clients,
            value_size: args.value_size,
            nodes: args.nodes,
            seconds: args.seconds,
            warmup_seconds: args.warmup_seconds,
            batch_max_txs: args.batch_max_txs,
            batch_timeout_ms: args.batch_timeout_ms,
            cores: cores(),
        },
    ))
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "terminated",
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let output = args.output;
    // Dropping the run future kills every child process (clusters kill them in Drop).
    let result = tokio::select! {
        r = run(args) => r,
        why = interrupted() => Err(anyhow::anyhow!("{why}; child processes stopped")),
    };
    match result {
        Ok(report) => match output {
            Output::Json => println!("{}", report.to_json()),
            Output::Text => print!("{}", report.to_table()),
        },
        Err(e) => {
            eprintln!("tally-bench: {e:#}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_defaults_match_the_documented_ones() {
        let a = Args::parse_from(["tally-bench"]);
        assert_eq!(
            (
                a.clients,
                a.value_size,
                a.nodes,
                a.seconds,
                a.warmup_seconds
            ),
            (256, 256, 3, 60, 5)
        );
        assert_eq!(a.compare, Compare::Etcd);
        assert_eq!(a.output, Output::Text);
        let a = Args::parse_from([
            "tally-bench",
            "--compare",
            "none",
            "--output",
            "json",
            "--no-fsync",
        ]);
        assert_eq!(a.compare, Compare::None);
        assert_eq!(a.output, Output::Json);
        assert!(a.no_fsync);
    }

    #[test]
    fn values_are_sized_and_differ_per_seed() {
        assert_eq!(value_bytes(256, "a").len(), 256);
        assert_ne!(value_bytes(32, "a"), value_bytes(32, "b"));
        assert_eq!(value_bytes(32, "a"), value_bytes(32, "a"));
    }
}
