use anyhow::Context as _;
use clap::Parser;
use kube::runtime::events::{Recorder, Reporter};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_operator::fence::{Fence, FenceLayer};
use tally_operator::leader::LeaseLock;
use tally_operator::metrics::Metrics;
use tally_operator::server::{self, Health};
use tally_operator::{run_controllers, Context, Settings};

/// The Tally operator: turns Consortium, Peer, Channel and Chaincode resources into ledger
/// pods and channels.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Namespaces to watch, comma-separated; empty watches all.
    #[arg(
        long,
        env = "TALLY_WATCH_NAMESPACES",
        default_value = "",
        value_delimiter = ','
    )]
    watch_namespaces: Vec<String>,
    #[arg(long, env = "TALLY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "TALLY_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "tally-system")]
    lease_namespace: String,
    #[arg(long, env = "TALLY_LEASE_NAME", default_value = "tally-operator")]
    lease_name: String,
    /// This replica's name in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Image of ledger nodes (without tag) for Peers that name none.
    #[arg(
        long,
        env = "TALLY_NODE_IMAGE",
        default_value = "ghcr.io/tally-dev/tally-node"
    )]
    node_image: String,
    /// Tag of ledger node images for Peers that name none; this operator's version by default.
    #[arg(long, env = "TALLY_NODE_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    node_version: String,
    #[arg(long, env = "TALLY_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// A static host table (`/etc/hosts` format) consulted before the system resolver when
    /// reaching nodes that run outside this cluster by name (air-gapped hosts, tests).
    #[arg(long, env = "TALLY_HOSTS_FILE")]
    hosts_file: Option<std::path::PathBuf>,
    /// Kubeconfig to use instead of the in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,
}

fn main() {
    let args = Args::parse();
    // The backup store's HTTP client (reqwest) takes the process's TLS provider: the same
    // ring as every other TLS connection here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tally_monitoring::logging::init(
        tally_monitoring::logging::Style::from_format(&args.log_format),
        "RUST_LOG",
        "info,kube=warn",
    );
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tally-operator: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        tracing::error!("{e:#}");
        eprintln!("tally-operator: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(p) = &args.hosts_file {
        tally_protocol::hosts::install(p.clone());
    }
    // The lease is renewed through a client of its own; everything else goes through one
    // whose writes pass the fence.
    let config = tally_api::cluster::config(args.kubeconfig.as_deref()).await?;
    let lease_client = kube::Client::try_from(config.clone())?;
    let fence = Arc::new(Fence::new());
    let client = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&FenceLayer(fence.clone()))
        .build();
    let metrics = Arc::new(Metrics::new()?);
    let health = Arc::new(Health {
        ready: Default::default(),
    });
    server::serve(args.metrics_addr, metrics.clone(), health.clone())
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings: Settings {
            node_image: args.node_image.clone(),
            node_version: args.node_version.clone(),
            cluster_domain: args.cluster_domain.clone(),
            node_timeout: Duration::from_secs(10),
            operator_namespace: args.lease_namespace.clone(),
        },
        metrics: metrics.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "tally-operator".into(),
                instance: Some(identity.clone()),
            },
        ),
        failures: Default::default(),
        parked: Default::default(),
        shared: Default::default(),
        applied: Default::default(),
        fence: fence.clone(),
    });
    let lock = LeaseLock::new(
        lease_client,
        &args.lease_namespace,
        &args.lease_name,
        &identity,
    );
    health.ready.store(true, Ordering::Relaxed);
    tracing::info!(identity, lease = %format!("{}/{}", args.lease_namespace, args.lease_name), "waiting for the leader lease");
    let mut signals = Signals::new()?;
    // Stand by until this replica holds the lease.
    loop {
        let started = Instant::now();
        match lock.try_acquire().await {
            Ok(true) => {
                fence.renewed(started, lock.duration);
                break;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the leader lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = signals.recv() => return Ok(()),
        }
    }
    metrics.leader.set(1);
    tracing::info!(identity, "leading");
    let namespaces: Vec<Option<String>> = {
        let list: Vec<String> = args
            .watch_namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if list.is_empty() {
            vec![None]
        } else {
            list.into_iter().map(Some).collect()
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for ns in namespaces.clone() {
        let mut rx = stop_rx.clone();
        let ctx = ctx.clone();
        tasks.spawn(async move {
            run_controllers(ctx, ns, async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
        });
    }
    let counter = tokio::spawn(tally_operator::count_resources(ctx.clone(), namespaces));
    // Renew the lease; lose it, or go without a renewal until the fence closes, and stop
    // acting at once.
    let renew = lock.duration / 3;
    let mut lost = None;
    loop {
        let wait = renew.min(fence.remaining());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                let started = Instant::now();
                match lock.try_acquire().await {
                    Ok(true) => fence.renewed(started, lock.duration),
                    Ok(false) => {
                        lost = Some("lost the leader lease to another replica".to_string());
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew the leader lease"),
                }
                if let Err(e) = fence.check() {
                    lost = Some(e.to_string());
                    break;
                }
            }
            _ = signals.recv() => break,
        }
    }
    let _ = stop_tx.send(true);
    counter.abort();
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    metrics.leader.set(0);
    if let Some(why) = lost {
        anyhow::bail!("{why}; stopping so that only one replica acts");
    }
    lock.release().await;
    tracing::info!("stopped");
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "tally-operator".into())
}

/// SIGINT and SIGTERM.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }
    async fn recv(&mut self) {
        tokio::select! { _ = self.int.recv() => {}, _ = self.term.recv() => {} }
    }
}
