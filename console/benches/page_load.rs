//! Page loads of the console on a channel with many blocks (a benchmark, not a test: it prints
//! figures and asserts nothing about speed).
//!
//! ```sh
//! cargo build --release -p tally-node
//! cargo bench -p tally-console --bench page_load -- --blocks 100000 --keep /tmp/tally-console-bench
//! ```
//!
//! It starts a local three-node consortium whose channel cuts a block per transaction, fills it
//! to `--blocks` blocks with signed key/value writes (`--keep DIR` keeps the consortium there
//! and reuses it on the next run, which then only measures), starts the console in this process
//! as org1, and loads each main page `--loads` times in turn over HTTP, timing each load from the
//! request to the last byte of the page (every node read the page needs included). Environment:
//! `TALLY_NODE_BIN` names the node (default: the release build, else the debug build).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_client::txs::{put, sign_writes};
use tally_protocol::{BatchConfig, Role};
use tallyctl::local::LocalCluster;
use tallyctl::local::LocalClusterSpec;

const CHANNEL: &str = "main";

struct Args {
    blocks: u64,
    loads: usize,
    keep: Option<PathBuf>,
    writers: usize,
}

fn args() -> Args {
    let mut a = Args {
        blocks: 100_000,
        loads: 100,
        keep: None,
        writers: 48,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--blocks" => a.blocks = value().parse().expect("--blocks N"),
            "--loads" => a.loads = value().parse().expect("--loads N"),
            "--keep" => a.keep = Some(PathBuf::from(value())),
            "--writers" => a.writers = value().parse().expect("--writers N"),
            "--bench" => {} // cargo bench passes it
            other => {
                panic!("unknown argument {other} (--blocks N, --loads N, --keep DIR, --writers N)")
            }
        }
    }
    a
}

fn node_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TALLY_NODE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    for profile in ["release", "debug"] {
        let p = target.join(profile).join("tally-node");
        if p.is_file() {
            return p;
        }
    }
    panic!("no tally-node found under {}: `cargo build --release -p tally-node`, or set TALLY_NODE_BIN", target.display());
}

async fn cluster(dir: &std::path::Path) -> LocalCluster {
    if dir.join("cluster.json").is_file() {
        eprintln!("==> reopening the consortium in {}", dir.display());
        return LocalCluster::open(dir, node_bin())
            .await
            .expect("reopen the consortium");
    }
    let mut spec = LocalClusterSpec::simple(dir, node_bin(), 3, &[CHANNEL]);
    // One transaction per block: the chain grows as fast as transactions commit.
    if let Some(ch) = spec.channel_mut(CHANNEL) {
        ch.batch = BatchConfig {
            max_txs: 1,
            max_bytes: 1 << 20,
            timeout_ms: 1,
        };
        ch.snapshot_interval = 10_000;
    }
    LocalCluster::start(spec)
        .await
        .expect("start the consortium")
}

async fn channel_height(c: &LocalCluster) -> u64 {
    c.client("node1-0")
        .status(CHANNEL)
        .await
        .expect("status")
        .height
}

/// Writes until the channel has `blocks` blocks.
async fn fill(c: &LocalCluster, a: &Args) {
    let started = Instant::now();
    loop {
        let height = channel_height(c).await;
        if height >= a.blocks {
            eprintln!(
                "==> channel {CHANNEL} has {height} blocks ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        // A block may carry more than one transaction when submissions race, so write what
        // is missing and look again.
        write(c, a, a.blocks - height).await;
    }
}

/// Writes `want` transactions with `a.writers` concurrent writers.
async fn write(c: &LocalCluster, a: &Args, want: u64) {
    eprintln!("==> writing {want} transactions ({} writers)", a.writers);
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let clients = c.clients();
    let id = c.identity("org1", Role::Client);
    let tasks: Vec<_> = (0..a.writers)
        .map(|w| {
            let client = clients[w % clients.len()].clone();
            let id = id.clone();
            let done = done.clone();
            tokio::spawn(async move {
                loop {
                    let n = done.fetch_add(1, Ordering::Relaxed);
                    if n >= want {
                        return;
                    }
                    let key = format!("bench/{}", n % 1000);
                    let value = format!("value {n}");
                    let tx = sign_writes(&id, CHANNEL, vec![put(&key, value.as_bytes())], false);
                    // Resubmitting the same transaction is safe: it commits at most once.
                    while client.submit_wait(&tx).await.is_err() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if n.is_multiple_of(10_000) && n > 0 {
                        eprintln!(
                            "    {n} written, {:.0} tx/s",
                            n as f64 / started.elapsed().as_secs_f64()
                        );
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a writer");
    }
}

/// Loads `url` once; the time to the last byte, and the page's size.
async fn load(url: &str) -> (Duration, usize) {
    let started = Instant::now();
    let (status, body) = get(url).await;
    assert!(
        (200..400).contains(&status),
        "{url}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    (started.elapsed(), body.len())
}

async fn get(url: &str) -> (u16, Vec<u8>) {
    use http_body_util::BodyExt;
    let uri: hyper::Uri = url.parse().expect("a URL");
    let authority = uri.authority().expect("a host").clone();
    let stream = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::get(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(hyper::header::HOST, authority.as_str())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("a request");
    let resp = sender.send_request(req).await.expect("an answer");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    (status, body.to_vec())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let tmp;
    let dir = match &a.keep {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("tally-console-bench-")
                .tempdir()
                .expect("a folder");
            tmp.path().to_path_buf()
        }
    };
    let c = cluster(&dir).await;
    fill(&c, &a).await;

    let reader = c
        .client("node1-0")
        .with_reader(c.identity("org1", Role::Client));
    let latest = reader.block(CHANNEL, None).await.expect("the latest block");
    let height = latest.header.number + 1;
    let mid = height / 2;
    let tx_id = reader
        .block(CHANNEL, Some(mid))
        .await
        .expect("a block")
        .txs
        .first()
        .map(|t| t.id().to_hex())
        .expect("a transaction in the middle block");
    let urls: Vec<String> = c.node_names().iter().map(|n| c.api_url(n)).collect();
    let opts = tally_console::Options {
        identity: c.identity("org1", Role::Client),
        nodes: urls,
        trust: c.api_trust(),
        listen: "127.0.0.1:0".parse().expect("an address"),
        token: None,
        tls: None,
        title: "bench".into(),
        timeout: Duration::from_secs(5),
    };
    let console = tally_console::start(opts)
        .await
        .expect("the console starts");
    let base = console.url().trim_end_matches('/').to_string();
    let pages = [
        ("consortium", "/".to_string()),
        ("channel (latest 25 blocks)", format!("/channels/{CHANNEL}")),
        (
            "block in the middle",
            format!("/channels/{CHANNEL}/blocks/{mid}"),
        ),
        (
            "transaction with proof",
            format!("/channels/{CHANNEL}/tx/{tx_id}"),
        ),
        (
            "older blocks (page)",
            format!("/channels/{CHANNEL}/blocks?before={mid}"),
        ),
        (
            "key with history",
            format!("/channels/{CHANNEL}/key?k=bench%2F7"),
        ),
        (
            "search: block number",
            format!("/search?q={mid}&channel={CHANNEL}"),
        ),
    ];
    // Warm the connection pools and the topology once.
    for (_, p) in &pages {
        let _ = get(&format!("{base}{p}")).await;
    }
    println!("console page loads, channel {CHANNEL} with {height} blocks, {} loads each (ms, request to last byte)", a.loads);
    println!(
        "{:<30} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "page", "KiB", "p50", "p95", "p99", "max"
    );
    for (name, p) in &pages {
        let url = format!("{base}{p}");
        let mut t: Vec<Duration> = Vec::with_capacity(a.loads);
        let mut size = 0;
        for _ in 0..a.loads {
            let (took, bytes) = load(&url).await;
            t.push(took);
            size = bytes;
        }
        t.sort();
        let q = |f: f64| ms(t[((t.len() as f64 * f) as usize).min(t.len() - 1)]);
        println!(
            "{name:<30} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            size as f64 / 1024.0,
            q(0.50),
            q(0.95),
            q(0.99),
            ms(*t.last().expect("loads"))
        );
    }
    console.stop().await;
    if a.keep.is_some() {
        c.shutdown().await.expect("stop the nodes");
    }
}
