//! tally-bench: committed throughput, latency and CPU cost of Tally against etcd and CometBFT,
//! with the same closed-loop load shape, one after the other in one run; how that cost grows
//! with consenters, channels and value size (`--sweep`); reads (`--workload read`); and the
//! idle cost of many channels (`--workload idle`); and how fast a wiped node catches up
//! (`--workload catchup`). See docs/benchmarks.md.

mod backup;
mod base64;
mod catchup;
mod cluster;
mod cometbft;
mod etcd;
mod etcd_tls;
mod hist;
mod http;
mod idle;
mod load;
mod procstat;
mod reads;
mod report;
mod servers;
mod sweep;
mod tally;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Compare {
    Etcd,
    Cometbft,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Signed key/value writes, counted when committed.
    Write,
    /// Signed key reads and proof fetches (Tally) next to linearizable range reads (etcd).
    Read,
    /// No load: CPU and memory of the nodes holding `--channels` channels.
    Idle,
    /// A node wiped after `--catchup-mb` MiB of state: time to catch up by snapshot.
    Catchup,
    /// Backups of a channel filled with `--backup-mb` MiB: their speed, the writers' latency
    /// while they run next to without, an incremental backup, and a restore.
    Backup,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Write => "write",
            Workload::Read => "read",
            Workload::Idle => "idle",
            Workload::Catchup => "catchup",
            Workload::Backup => "backup",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// Benchmark signed key/value transactions on a local Tally cluster against etcd and CometBFT.
#[derive(Parser, Debug, Clone)]
#[command(version)]
struct Args {
    /// Baselines to run after Tally with the same load shape, comma-separated (etcd,cometbft),
    /// or none.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "etcd")]
    compare: Vec<Compare>,
    /// What the clients do.
    #[arg(long, value_enum, default_value = "write")]
    workload: Workload,
    /// Length of the measured window, per system.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Load before the measured window starts, per system (idle: settling time).
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
    /// Tally nodes (consenters of every channel), etcd members and CometBFT validators.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Tally channels on the same nodes; the clients are spread over them.
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Repeat the run over the points of one dimension and print one table.
    #[arg(long, value_enum)]
    sweep: Option<sweep::Dimension>,
    /// The sweep's points, comma-separated (default: 3,5,7 nodes; 1,10,50 channels;
    /// 256,4096,65536 bytes).
    #[arg(long, value_delimiter = ',')]
    points: Vec<usize>,
    /// Read workload: keys each client writes before the reads (the keys read at random).
    #[arg(long, default_value_t = 20)]
    read_keys_per_client: usize,
    /// Catch-up workload: MiB of values written before a node is wiped (keys of
    /// `--value-size` bytes).
    #[arg(long, default_value_t = 64)]
    catchup_mb: usize,
    /// Backup workload: MiB of values written (16 KiB each) before the backups.
    #[arg(long, default_value_t = 64)]
    backup_mb: usize,
    /// Run the Tally nodes without fsync (exploration only; labelled in the output).
    #[arg(long)]
    no_fsync: bool,
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    /// tally-node binary (default: next to this binary).
    #[arg(long)]
    node_bin: Option<PathBuf>,
    /// Skip Tally and measure only the `--compare` baselines (exploration; "tally" is null).
    #[arg(long, hide = true, alias = "etcd-only")]
    baselines_only: bool,
    /// The receivables contract (receivables.wasm, from chaincode/build.sh): after the
    /// key/value load, the same Tally cluster runs a load of chaincode transfers, reported in
    /// its own column.
    #[arg(long)]
    chaincode: Option<PathBuf>,
    /// etcd binary (Debian's etcd-server 3.4).
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// Run etcd on plain HTTP, without TLS on its client and peer ports (as the bench did before
    /// 2026-12-05; Tally has no such mode); labelled.
    #[arg(long)]
    etcd_plain: bool,
    /// cometbft binary (default: the one scripts/cometbft-bin.sh builds and caches).
    #[arg(long)]
    cometbft_bin: Option<PathBuf>,
    /// CometBFT's consensus.timeout_commit in ms (default: CometBFT's own, 1 s); labelled.
    #[arg(long)]
    cometbft_timeout_commit_ms: Option<u64>,
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

/// The cometbft binary: `--cometbft-bin`, else what scripts/cometbft-bin.sh of this source
/// tree builds (once; later runs find it in the cache).
fn cometbft_bin(args: &Args) -> Result<PathBuf> {
    if let Some(p) = &args.cometbft_bin {
        return Ok(p.clone());
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cometbft-bin.sh");
    if !script.exists() {
        bail!(
            "no --cometbft-bin and no {} to build one; build cometbft v1.0.1 and pass its path",
            script.display()
        );
    }
    cometbft::bin_from_script(&script)
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Between two systems: the previous one's processes are gone, but the kernel may still be
/// writing back their data; let it finish so that the next one's fsyncs do not pay for it.
async fn settle_disk() {
    eprintln!("[bench] flushing the page cache before the next phase");
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    tokio::time::sleep(Duration::from_secs(3)).await;
}

fn tally_params(args: &Args, node_bin: PathBuf, chaincode: Option<Vec<u8>>) -> tally::TallyParams {
    tally::TallyParams {
        node_bin,
        nodes: args.nodes,
        channels: args.channels,
        fsync: !args.no_fsync,
        batch_max_txs: args.batch_max_txs,
        batch_timeout_ms: args.batch_timeout_ms,
        clients: args.clients,
        value_size: args.value_size,
        warmup: Duration::from_secs(args.warmup_seconds),
        measure: Duration::from_secs(args.seconds),
        run_id: format!("{:08x}", rand::random::<u32>()),
        chaincode,
    }
}

/// The read workload on Tally: preload, key reads, proof fetches.
async fn tally_reads(
    p: &tally::TallyParams,
    per_client: usize,
) -> Result<(report::SystemReport, report::SystemReport)> {
    let running = tally::start(p, "tally reads").await?;
    let data = match reads::preload(p, &running, per_client).await {
        Ok(d) => Arc::new(d),
        Err(e) => return Err(running.fail(format!("{e:#}")).await),
    };
    eprintln!("[tally reads] preloaded {} keys", data.keys.len());
    let keys = reads::run(p, &running, &data, reads::ReadKind::Key).await;
    let proofs = match &keys {
        Ok(_) => reads::run(p, &running, &data, reads::ReadKind::Proof).await,
        Err(_) => Err(anyhow::anyhow!("skipped")),
    };
    running.cluster.stop().await;
    Ok((keys?, proofs?))
}

/// One run of the write or read workload: Tally, then each baseline.
async fn run_load(
    args: &Args,
    node_bin: PathBuf,
    chaincode: Option<Vec<u8>>,
) -> Result<report::Report> {
    let p = tally_params(args, node_bin, chaincode);
    let read = args.workload == Workload::Read;
    let mut m = report::Measured::default();
    if !args.baselines_only {
        if read {
            let (keys, proofs) = tally_reads(&p, args.read_keys_per_client)
                .await
                .context("tally reads")?;
            m.tally = Some(keys);
            m.tally_proof = Some(proofs);
        } else {
            let (kv, cc) = tally::run(&p).await.context("tally run")?;
            m.tally = Some(kv);
            m.tally_chaincode = cc;
        }
    }
    let baselines = args.channels <= 1 || args.baselines_only;
    if baselines && args.compare.contains(&Compare::Etcd) {
        if m.tally.is_some() {
            settle_disk().await;
        }
        let e = etcd::EtcdParams {
            bin: args.etcd_bin.clone(),
            members: args.nodes,
            tls: !args.etcd_plain,
            clients: args.clients,
            value_size: args.value_size,
            warmup: p.warmup,
            measure: p.measure,
            run_id: p.run_id.clone(),
            reads_after: read.then_some(args.read_keys_per_client),
        };
        m.etcd = Some(etcd::run(&e).await.context("etcd run")?);
    }
    if baselines && args.compare.contains(&Compare::Cometbft) && !read {
        settle_disk().await;
        let c = cometbft::CometParams {
            bin: cometbft_bin(args)?,
            validators: args.nodes,
            clients: args.clients,
            value_size: args.value_size,
            warmup: p.warmup,
            measure: p.measure,
            run_id: p.run_id.clone(),
            timeout_commit: args.cometbft_timeout_commit_ms.map(Duration::from_millis),
        };
        m.cometbft = Some(cometbft::run(&c).await.context("cometbft run")?);
    }
    Ok(report::Report::new(
        m,
        report::RunConfig {
            workload: args.workload.name(),
            clients: args.clients,
            value_size: args.value_size,
            nodes: args.nodes,
            channels: args.channels,
            seconds: args.seconds,
            warmup_seconds: args.warmup_seconds,
            batch_max_txs: args.batch_max_txs,
            batch_timeout_ms: args.batch_timeout_ms,
            cometbft_timeout_commit_ms: args.cometbft_timeout_commit_ms,
            etcd_tls: !args.etcd_plain,
            cores: cores(),
        },
    ))
}

/// One point: the load run or the idle measurement.
async fn run_point(
    args: &Args,
    node_bin: PathBuf,
    chaincode: Option<Vec<u8>>,
) -> Result<sweep::PointResult> {
    if args.workload == Workload::Idle {
        let p = tally_params(args, node_bin, None);
        return Ok(sweep::PointResult::Idle(idle::run(&p, cores()).await?));
    }
    Ok(sweep::PointResult::Load(Box::new(
        run_load(args, node_bin, chaincode).await?,
    )))
}

enum Finished {
    Point(sweep::PointResult),
    Catchup(catchup::CatchupReport),
    Backup(Box<backup::BackupReport>),
    Sweep(sweep::SweepReport),
}

fn check(args: &Args) -> Result<()> {
    if args.clients == 0 || args.seconds == 0 || args.nodes == 0 || args.channels == 0 {
        bail!("--clients, --seconds, --nodes and --channels must be positive");
    }
    if args.compare.contains(&Compare::None) && args.compare.len() > 1 {
        bail!("--compare none cannot be combined with a baseline");
    }
    if args.workload != Workload::Write && args.chaincode.is_some() {
        bail!("--chaincode goes with the write workload");
    }
    if args.workload == Workload::Read && args.compare.contains(&Compare::Cometbft) {
        bail!("CometBFT is compared on writes only (its kvstore has no signed reads or proofs to compare)");
    }
    if args.workload == Workload::Catchup && (args.sweep.is_some() || args.catchup_mb == 0) {
        bail!("--workload catchup runs one point (no --sweep) of a positive --catchup-mb");
    }
    if args.workload == Workload::Backup && (args.sweep.is_some() || args.backup_mb == 0) {
        bail!("--workload backup runs one point (no --sweep) of a positive --backup-mb");
    }
    if args.workload == Workload::Read && args.read_keys_per_client == 0 {
        bail!("--read-keys-per-client must be positive");
    }
    let baselines = args.compare.iter().any(|c| *c != Compare::None);
    if args.channels > 1 && baselines && args.workload != Workload::Idle && !args.baselines_only {
        eprintln!(
            "[bench] note: the baselines have no channels; with --channels > 1 only Tally runs"
        );
    }
    Ok(())
}

async fn run(args: Args) -> Result<Finished> {
    check(&args)?;
    let node_bin = match &args.node_bin {
        Some(p) => p.clone(),
        None => default_node_bin()?,
    };
    if !args.baselines_only && !node_bin.exists() {
        bail!(
            "tally-node binary not found at {} (build it with `cargo build --release -p tally-node --no-default-features --features tail-call-dispatch`, as the node image is, or pass --node-bin)",
            node_bin.display()
        );
    }
    let run_etcd = args.compare.contains(&Compare::Etcd);
    if run_etcd
        && !matches!(
            args.workload,
            Workload::Idle | Workload::Catchup | Workload::Backup
        )
        && !args.etcd_bin.exists()
    {
        bail!(
            "etcd not found at {} (Debian package etcd-server; or pass --etcd-bin, or --compare none)",
            args.etcd_bin.display()
        );
    }
    let chaincode = match &args.chaincode {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("--chaincode {}", p.display()))?),
        None => None,
    };
    if args.workload == Workload::Catchup {
        let p = catchup::CatchupParams {
            node_bin,
            nodes: args.nodes,
            fsync: !args.no_fsync,
            value_size: args.value_size,
            mb: args.catchup_mb,
            timeout: Duration::from_secs(args.seconds.max(600)),
        };
        return Ok(Finished::Catchup(catchup::run(&p).await?));
    }
    if args.workload == Workload::Backup {
        let p = backup::BackupParams {
            tally: tally_params(&args, node_bin, None),
            mb: args.backup_mb,
        };
        return Ok(Finished::Backup(Box::new(backup::run(&p).await?)));
    }
    let Some(dim) = args.sweep else {
        return Ok(Finished::Point(
            run_point(&args, node_bin, chaincode).await?,
        ));
    };
    let points = if args.points.is_empty() {
        dim.default_points()
    } else {
        args.points.clone()
    };
    let mut first = true;
    let report = sweep::run(dim, &points, |value| {
        let mut a = args.clone();
        match dim {
            sweep::Dimension::Nodes => a.nodes = value,
            sweep::Dimension::Channels => a.channels = value,
            sweep::Dimension::ValueSize => a.value_size = value,
        }
        let (node_bin, chaincode) = (node_bin.clone(), chaincode.clone());
        let settle = !std::mem::take(&mut first);
        async move {
            if settle {
                settle_disk().await;
            }
            check(&a)?;
            run_point(&a, node_bin, chaincode).await
        }
    })
    .await?;
    Ok(Finished::Sweep(report))
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
    let (json, table) = match result {
        Ok(Finished::Point(sweep::PointResult::Load(r))) => (r.to_json(), r.to_table()),
        Ok(Finished::Point(sweep::PointResult::Idle(r))) => (
            serde_json::to_string(&r).expect("idle report serializes"),
            r.to_table(),
        ),
        Ok(Finished::Sweep(r)) => (r.to_json(), r.to_table()),
        Ok(Finished::Catchup(r)) => (
            serde_json::to_string(&r).expect("catch-up report serializes"),
            r.to_table(),
        ),
        Ok(Finished::Backup(r)) => (
            serde_json::to_string(&r).expect("backup report serializes"),
            r.to_table(),
        ),
        Err(e) => {
            eprintln!("tally-bench: {e:#}");
            std::process::exit(1);
        }
    };
    match output {
        Output::Json => println!("{json}"),
        Output::Text => print!("{table}"),
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
        assert_eq!(a.compare, [Compare::Etcd]);
        assert_eq!(a.output, Output::Text);
        assert_eq!((a.workload, a.channels), (Workload::Write, 1));
        assert!(a.sweep.is_none() && a.points.is_empty());
        assert!(!a.etcd_plain);
        assert!(Args::parse_from(["tally-bench", "--etcd-plain"]).etcd_plain);
        let a = Args::parse_from([
            "tally-bench",
            "--compare",
            "none",
            "--output",
            "json",
            "--no-fsync",
        ]);
        assert_eq!(a.compare, [Compare::None]);
        assert_eq!(a.output, Output::Json);
        assert!(a.no_fsync);
        assert!(check(&a).is_ok());
    }

    #[test]
    fn baselines_sweeps_and_workloads_parse_and_conflicts_are_refused() {
        let a = Args::parse_from([
            "tally-bench",
            "--compare",
            "etcd,cometbft",
            "--sweep",
            "value-size",
            "--points",
            "256,4096",
        ]);
        assert_eq!(a.compare, [Compare::Etcd, Compare::Cometbft]);
        assert_eq!(a.sweep, Some(sweep::Dimension::ValueSize));
        assert_eq!(a.points, [256, 4096]);
        assert!(check(&a).is_ok());
        let bad = |argv: &[&str]| {
            let mut all = vec!["tally-bench"];
            all.extend_from_slice(argv);
            check(&Args::parse_from(all)).is_err()
        };
        assert!(bad(&["--compare", "none,etcd"]));
        assert!(bad(&["--workload", "read", "--compare", "cometbft"]));
        assert!(bad(&["--workload", "idle", "--chaincode", "x.wasm"]));
        assert!(bad(&["--channels", "0"]));
        assert!(!bad(&["--workload", "read"]));
        assert!(!bad(&["--workload", "catchup", "--catchup-mb", "8"]));
        assert!(bad(&["--workload", "catchup", "--sweep", "nodes"]));
        assert!(bad(&["--workload", "catchup", "--catchup-mb", "0"]));
        assert!(!bad(&["--workload", "backup", "--backup-mb", "8"]));
        assert!(bad(&["--workload", "backup", "--backup-mb", "0"]));
        assert!(bad(&["--workload", "backup", "--sweep", "nodes"]));
    }

    #[test]
    fn values_are_sized_and_differ_per_seed() {
        assert_eq!(value_bytes(256, "a").len(), 256);
        assert_ne!(value_bytes(32, "a"), value_bytes(32, "b"));
        assert_eq!(value_bytes(32, "a"), value_bytes(32, "a"));
    }
}
