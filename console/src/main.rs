//! `tally-console`: serves the console for one organization.

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tally_console::{Options, TlsFiles, DEFAULT_LISTEN};

/// Tally's read-only web console and block explorer, reading as one organization.
#[derive(Parser, Debug)]
#[command(name = "tally-console", version)]
struct Args {
    /// A data directory written by `tallyctl up` or `tallyctl profile export`: nodes and
    /// identities come from its profile.json.
    #[arg(long, env = "TALLY_DATA_DIR", requires = "org")]
    data_dir: Option<PathBuf>,
    /// With --data-dir: the organization to read as.
    #[arg(long, env = "TALLY_ORG")]
    org: Option<String>,
    /// With --data-dir: which identity of the organization (a client's).
    #[arg(long = "as", default_value = "client")]
    as_identity: String,
    /// Client API of a node; repeat or separate by commas. The organization's own nodes first.
    #[arg(long, env = "TALLY_NODE", value_delimiter = ',')]
    node: Vec<String>,
    /// Folder with cert.pem and key.pem of the organization's client identity.
    #[arg(long, env = "TALLY_IDENTITY")]
    identity: Option<PathBuf>,
    /// Address to serve on. Off loopback, a token or client certificates are required.
    #[arg(long, env = "TALLY_CONSOLE_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// File holding the bearer token (e.g. a mounted Secret).
    #[arg(long, env = "TALLY_CONSOLE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate (PEM, chain first) ...
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// ... and this private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With TLS: require client certificates issued by this CA (PEM).
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Title of every page (default: the consortium's name from the profile, else "Tally").
    #[arg(long)]
    title: Option<String>,
    /// CA certificate (PEM) to verify nodes with, with --identity (the identity's own ca.pem
    /// is always trusted); repeat or separate by commas.
    #[arg(long = "node-ca", value_delimiter = ',')]
    ca: Vec<PathBuf>,
    /// Limit of each read from a node, in seconds.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
    /// Log format on stderr.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn options(a: &Args) -> anyhow::Result<Options> {
    let mut opts = match (&a.data_dir, &a.identity) {
        (Some(dir), _) => {
            let org = a.org.as_deref().context("--data-dir needs --org")?;
            let mut o = Options::from_profile(dir, org, &a.as_identity)?;
            if !a.node.is_empty() {
                o.nodes = a.node.clone();
            }
            o
        }
        (None, Some(id)) => {
            anyhow::ensure!(
                !a.node.is_empty(),
                "--identity needs --node (a node's client API URL)"
            );
            let mut pems = Vec::new();
            for f in a.ca.iter().cloned().chain([id.join("ca.pem")]) {
                pems.push(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?,
                );
            }
            Options {
                identity: tally_protocol::Identity::load(id)
                    .with_context(|| format!("reading the identity in {}", id.display()))?,
                nodes: a.node.clone(),
                trust: tally_client::ApiTrust::from_ca_pems(&pems)?,
                listen: a.listen,
                token: None,
                tls: None,
                title: "Tally".into(),
                timeout: Duration::from_secs(5),
            }
        }
        (None, None) => anyhow::bail!(
            "say whom to read as: --data-dir DIR --org ORG, or --node URL --identity DIR"
        ),
    };
    opts.listen = a.listen;
    opts.timeout = Duration::from_secs(a.timeout.max(1));
    if let Some(t) = &a.title {
        opts.title = t.clone();
    }
    if let Some(f) = &a.token_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        opts.token = Some(text);
    }
    if let (Some(cert), Some(key)) = (&a.tls_cert, &a.tls_key) {
        opts.tls = Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: a.client_ca.clone(),
        });
    }
    Ok(opts)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tally_monitoring::logging::init(
        tally_monitoring::logging::Style::from_format(&args.log_format),
        "TALLY_LOG",
        "info",
    );
    let opts = options(&args)?;
    let org = opts.identity.info.org.clone();
    let running = tally_console::start(opts).await?;
    // One line on stdout, for people and for scripts that start the console on port 0.
    println!("console of {org} at {}", running.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    running.stop().await;
    Ok(())
}
