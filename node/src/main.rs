use anyhow::{bail, Context};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use tally_node::node::Node;
use tally_node::server::{serve, Listeners, ServeLimits};
use tally_protocol::genesis::ChannelCreation;
use tally_protocol::{ChannelConfig, Identity, TrustedCa};
use tracing::{error, info};

mod backup_cli;

/// Tally ledger node: serves the channels it has joined over a client API, an admin API and
/// a peer transport.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Node name; must match the certificate's common name and the channel configurations.
    #[arg(long, env = "TALLY_NODE_NAME")]
    name: String,
    /// Where the node keeps its RocksDB.
    #[arg(long, env = "TALLY_DATA_DIR")]
    data_dir: PathBuf,
    #[arg(long, env = "TALLY_LISTEN_API", default_value = "127.0.0.1:7051")]
    listen_api: SocketAddr,
    #[arg(long, env = "TALLY_LISTEN_PEER", default_value = "127.0.0.1:7052")]
    listen_peer: SocketAddr,
    #[arg(long, env = "TALLY_LISTEN_ADMIN", default_value = "127.0.0.1:7053")]
    listen_admin: SocketAddr,
    /// The node's certificate (PEM), issued by its organization CA with role node.
    #[arg(long, env = "TALLY_CERT")]
    cert: PathBuf,
    /// The node's private key (PKCS#8 PEM).
    #[arg(long, env = "TALLY_KEY")]
    key: PathBuf,
    /// The node organization's CA certificate (PEM): admins must hold a certificate from it.
    #[arg(long, env = "TALLY_ORG_CA")]
    org_ca: PathBuf,
    /// Join a channel at start-up: a JSON file `{"genesis": ..., "approvals": [...]}` with
    /// every member organization's approval of the genesis. Repeatable.
    #[arg(long)]
    genesis: Vec<PathBuf>,
    /// Log format.
    #[arg(long, env = "TALLY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// A static host table (`/etc/hosts` format) consulted before the system resolver when
    /// dialling peers, re-read when it changes: name resolution where cluster DNS is not
    /// available (tests, air-gapped hosts). TLS still verifies peers by the name dialled.
    #[arg(long, env = "TALLY_HOSTS_FILE")]
    hosts_file: Option<PathBuf>,
    /// The consortium this node belongs to: the `consortium` label of its metrics (set by the
    /// operator and by `tallyctl up`; without it the label is absent).
    #[arg(long, env = "TALLY_CONSORTIUM")]
    consortium: Option<String>,
    /// Do not fsync the Raft log (faster, loses acknowledged data on power loss). For tests.
    #[arg(long)]
    no_fsync: bool,
    /// Client API connections open at once; more are closed as they arrive.
    #[arg(long, env = "TALLY_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Client API connections open at once from one client address.
    #[arg(
        long,
        env = "TALLY_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 1024
    )]
    max_connections_per_address: usize,
    /// Seconds a request's header may take to arrive (client and admin APIs), counted on a
    /// kept-alive connection from the previous answer.
    #[arg(long, env = "TALLY_HEADER_TIMEOUT_S", default_value_t = 30)]
    header_timeout_s: u64,
    /// Seconds a client or admin connection may sit idle (no request, no bytes) before the
    /// node closes it.
    #[arg(long, env = "TALLY_IDLE_TIMEOUT_S", default_value_t = 60)]
    idle_timeout_s: u64,
}

impl Args {
    fn limits(&self) -> ServeLimits {
        let mut l = ServeLimits::default();
        l.api.max_connections = self.max_connections;
        l.api.max_per_address = self.max_connections_per_address;
        for x in [&mut l.api, &mut l.admin] {
            x.header_timeout = std::time::Duration::from_secs(self.header_timeout_s.max(1));
            x.idle_timeout = std::time::Duration::from_secs(self.idle_timeout_s.max(1));
        }
        l
    }
}

/// Raises the soft open-file limit to the hard one: connections, RocksDB files and peers all
/// take descriptors, and the listeners' own limits are meant to bind before this one.
fn raise_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn read(p: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
}

fn main() {
    // Object storage clients (reqwest) take the process's TLS provider: ring, as everywhere.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if backup_cli::wanted() {
        tally_monitoring::logging::init(
            tally_monitoring::logging::Style::from_format("text"),
            "RUST_LOG",
            "warn",
        );
        if let Err(e) = backup_cli::run() {
            eprintln!("tally-node: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let args = Args::parse();
    tally_monitoring::logging::init(
        tally_monitoring::logging::Style::from_format(&args.log_format),
        "RUST_LOG",
        "info,raft=warn",
    );
    raise_file_limit();
    // Read once at start, so that a test clock offset is logged before anything uses it.
    tally_node::wall_clock::now_ms();
    if let Err(e) = run(args) {
        error!("{e:#}");
        eprintln!("tally-node: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(p) = &args.hosts_file {
        if !p.exists() {
            tracing::warn!(path = %p.display(), "the hosts file does not exist (yet); names resolve through the system until it does");
        }
        tally_node::hosts::install(p.clone());
    }
    let identity =
        Identity::from_pem(&read(&args.cert)?, &read(&args.key)?).context("node identity")?;
    if identity.info.common_name != args.name {
        bail!(
            "--name {} does not match the certificate's common name {}",
            args.name,
            identity.info.common_name
        );
    }
    let ca_pem = read(&args.org_ca)?;
    let org_ca = TrustedCa::from_pem(&identity.info.org, &ca_pem).context("organization CA")?;
    org_ca
        .verify(
            &identity.cert_der,
            Some(tally_protocol::identity::now_unix()),
        )
        .context("the node certificate is not issued by --org-ca")?;
    // Before the node opens: its metrics registry takes the label at creation.
    if let Some(c) = &args.consortium {
        tally_node::metrics::set_consortium(c);
    }
    let cert_expiry = identity.info.not_after;
    let mut genesis = Vec::new();
    for g in &args.genesis {
        let text = read(g)?;
        let creation: ChannelCreation = serde_json::from_str(&text).with_context(|| {
            if serde_json::from_str::<ChannelConfig>(&text).is_ok() {
                format!("{} holds a channel configuration alone: a node joins only a genesis every member organization approved, so give {{\"genesis\": ..., \"approvals\": [...]}} (`tallyctl channel approve-genesis` makes an approval)", g.display())
            } else {
                format!("{} is not a channel creation request ({{genesis, approvals}})", g.display())
            }
        })?;
        genesis.push(creation);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?;
    rt.block_on(async move {
        let handle = tokio::runtime::Handle::current();
        let data_dir = args.data_dir.clone();
        let fsync = !args.no_fsync;
        let node = tokio::task::spawn_blocking(move || {
            Node::open(&data_dir, identity, org_ca, fsync, handle)
        })
        .await??;
        node.metrics.cert_expiry.set(cert_expiry as f64);
        node.metrics
            .register_data_dir(args.data_dir.clone())
            .context("registering the data directory's metrics")?;
        for creation in genesis {
            let name = creation.genesis.name.clone();
            let n = node.clone();
            tokio::task::spawn_blocking(move || n.join(creation))
                .await?
                .with_context(|| format!("joining channel {name}"))?;
        }
        // Listen only once the ledger is open: while a restarted node replays its log, clients
        // get a refused connection (and try another node) instead of a request nobody serves.
        let listeners =
            Listeners::bind(args.listen_api, args.listen_peer, args.listen_admin).await?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve(node.clone(), listeners, args.limits(), stop_rx));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => info!("interrupt: stopping"),
        }
        // Hand leadership over while the peer links still work, so the channels this node
        // leads elect nobody and lose no time to an election timeout.
        let n = node.clone();
        let released = tokio::task::spawn_blocking(move || {
            n.release_leadership(std::time::Duration::from_secs(2))
        })
        .await?;
        for r in released {
            info!(channel = %r.channel, still_leading = r.leading, leader = r.leader_id, "leadership handed over before stopping");
        }
        let _ = stop_tx.send(true);
        let _ = server.await;
        let n = node.clone();
        tokio::task::spawn_blocking(move || n.shutdown()).await?;
        info!("stopped cleanly");
        anyhow::Ok(())
    })?;
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}
