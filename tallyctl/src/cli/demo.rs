//! `tallyctl demo`: a local 3-node consortium on loopback, a short signed load, and a live view
//! of committed blocks until Ctrl-C. The zero-set-up way to see a Tally ledger work.

use super::Ctx;
use crate::{LocalCluster, LocalClusterSpec};
use anyhow::{Context, Result};
use clap::Args;
use futures_util::StreamExt;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_client::client::verify_receipt;
use tally_client::txs::{put, sign_writes};
use tally_protocol::{Hash, Role};

const CHANNEL: &str = "demo";

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The tally-node executable (default: next to tallyctl).
    #[arg(long, env = "TALLY_NODE_BIN")]
    pub node_bin: Option<PathBuf>,
    /// Transactions in the demo load.
    #[arg(long, default_value_t = 500)]
    pub txs: usize,
    /// Concurrent submitters.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Exit after the demo load instead of following blocks until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
}

fn step(msg: &str) {
    eprintln!("==> {msg}");
}

fn node_bin(args: &DemoArgs) -> Result<PathBuf> {
    if let Some(p) = &args.node_bin {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().context("locating tallyctl")?;
    Ok(me.with_file_name("tally-node"))
}

pub async fn run(ctx: &Ctx, args: DemoArgs) -> Result<()> {
    let bin = node_bin(&args)?;
    let dir = &ctx
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".tally/demo"));
    let cluster = if dir.join("cluster.json").exists() {
        step(&format!("resuming the consortium in {}", dir.display()));
        LocalCluster::open(dir.clone(), bin).await?
    } else {
        step(&format!(
            "creating 3 organizations, their CAs and identities in {}",
            dir.display()
        ));
        let mut spec = LocalClusterSpec::simple(dir.clone(), bin, 3, &[CHANNEL]);
        spec.fsync = true;
        step("starting 3 tally-node processes on loopback and creating channel 'demo'");
        LocalCluster::start(spec).await?
    };
    let status = cluster
        .wait_converged(CHANNEL, Duration::from_secs(30))
        .await?;
    let leader = cluster.leader(CHANNEL).await.unwrap_or_else(|| "?".into());
    step(&format!(
        "channel '{CHANNEL}' has leader {leader} at height {}",
        status.height
    ));

    let summary = load(&cluster, &args).await?;
    let st = cluster
        .wait_converged(CHANNEL, Duration::from_secs(30))
        .await?;
    let first = cluster.node_names().into_iter().next().unwrap_or_default();
    let nodes: Vec<serde_json::Value> = cluster
        .node_names()
        .iter()
        .map(|n| {
            serde_json::json!({"name": n, "org": cluster.node_org(n), "api_url": cluster.api_url(n),
                "admin_addr": cluster.admin_addr(n)})
        })
        .collect();
    let report = serde_json::json!({
        "channel": CHANNEL, "data_dir": dir, "nodes": nodes, "load": summary,
        "height": st.height, "state_root": st.state_root, "agree": true,
    });
    ctx.show(&report, || {
        println!();
        println!(
            "{:<8} {:<6} {:<26} {:<22}",
            "NODE", "ORG", "CLIENT API", "ADMIN API (mTLS)"
        );
        for n in cluster.node_names() {
            println!(
                "{:<8} {:<6} {:<26} {:<22}",
                n,
                cluster.node_org(&n),
                cluster.api_url(&n),
                cluster.admin_addr(&n)
            );
        }
        println!();
        println!(
            "demo load: {} committed, {} rejected, {} failed in {:.2} s ({:.0} tx/s)",
            summary["committed"],
            summary["rejected"],
            summary["failed"],
            summary["seconds"].as_f64().unwrap_or(0.0),
            summary["tx_per_sec"].as_f64().unwrap_or(0.0)
        );
        println!(
            "receipt of {} verified offline against block {}",
            summary["sample_tx"].as_str().unwrap_or(""),
            summary["sample_block"]
        );
        println!(
            "all nodes agree: height {}, state root {}",
            st.height,
            &st.state_root.to_hex()[..16]
        );
        let ctl = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "tallyctl".into());
        let client_dir = dir.join("orgs/org1/clients/client");
        let api = cluster.api_url(&first);
        println!();
        println!("try next (in another terminal):");
        println!(
            "  {ctl} --node {api} --identity {} tx put --channel {CHANNEL} greeting hello",
            client_dir.display()
        );
        println!(
            "  {ctl} --node {api} --identity {} tx get --channel {CHANNEL} greeting",
            client_dir.display()
        );
        println!("  {ctl} --node {api} status --channel {CHANNEL}");
        println!(
            "  {ctl} --node {api} --identity {} blocks follow --channel {CHANNEL}",
            client_dir.display()
        );
        println!();
    })?;

    if args.exit {
        step("stopping the nodes");
        cluster.shutdown().await?;
        return Ok(());
    }
    step("following committed blocks; Ctrl-C stops the consortium");
    let client = cluster.client(&first);
    let mut blocks = client.follow(CHANNEL, st.height).await?;
    loop {
        tokio::select! {
            b = blocks.recv() => match b {
                Some(Ok(b)) => println!(
                    "block {:>6}  {:>4} txs  {}",
                    b.header.number,
                    b.txs.len(),
                    &b.header.hash().to_hex()[..16]
                ),
                Some(Err(e)) => { eprintln!("block stream: {e}"); break; }
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    step("stopping the nodes");
    cluster.shutdown().await?;
    Ok(())
}

async fn load(cluster: &LocalCluster, args: &DemoArgs) -> Result<serde_json::Value> {
    let signer = cluster.identity("org1", Role::Client);
    let clients = Arc::new(cluster.clients());
    let started = Instant::now();
    let progress = std::io::stderr().is_terminal();
    // Keys unique to this run, so a resumed demo writes new keys rather than new versions.
    let run = tally_protocol::now_ms();
    let results: Vec<_> = futures_util::stream::iter(0..args.txs)
        .map(|i| {
            let clients = clients.clone();
            let tx = sign_writes(
                &signer,
                CHANNEL,
                vec![put(
                    &format!("demo/{run:x}/{i:05}"),
                    format!("reading {i}").as_bytes(),
                )],
                false,
            );
            async move {
                let c = &clients[i % clients.len()];
                c.submit_wait_for(&tx, Duration::from_secs(30)).await
            }
        })
        .buffer_unordered(args.clients.max(1))
        .enumerate()
        .map(|(done, r)| {
            if progress && done % 50 == 0 {
                eprint!("\r    {done}/{} transactions", args.txs);
            }
            r
        })
        .collect()
        .await;
    if progress {
        eprintln!("\r    {}/{} transactions", args.txs, args.txs);
    }
    let secs = started.elapsed().as_secs_f64();
    let mut committed = 0;
    let mut rejected = 0;
    let mut failed = 0;
    let mut sample: Option<Hash> = None;
    for r in &results {
        match r {
            Ok(rc) if rc.status.is_committed() => {
                committed += 1;
                sample.get_or_insert(rc.tx_id);
            }
            Ok(_) => rejected += 1,
            Err(_) => failed += 1,
        }
    }
    let sample = sample.context("no transaction of the demo load committed")?;
    let proven = cluster.clients()[1]
        .receipt(CHANNEL, &sample)
        .await?
        .context("receipt of a committed transaction is missing")?;
    verify_receipt(&proven)?;
    Ok(serde_json::json!({
        "committed": committed, "rejected": rejected, "failed": failed,
        "seconds": secs, "tx_per_sec": committed as f64 / secs.max(1e-9),
        "sample_tx": sample, "sample_block": proven.receipt.block,
    }))
}
