//! Tally's web console and block explorer: a read-only view of the ledger served with one
//! organization's client identity. Every read is signed with that identity, so the nodes show
//! the console exactly what the organization may read (the channel's readers policy); pages
//! are rendered on the server, and the few scripts (embedded, no network) verify inclusion
//! proofs in the browser and follow new blocks live.
//!
//! Who may look: on a loopback address, anyone on this machine (the local mode); anywhere
//! else, only with a bearer token or a client certificate (a cluster). See docs/console.md.

mod agreement;
mod app;
mod assets;
pub mod auth;
mod error;
mod format;
mod history;
mod html;
mod ledger;
mod live;
mod pages;
mod probe;
mod query;
mod routes;
mod server;
mod tls;

pub use error::ConsoleError;
pub use tls::TlsFiles;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tally_client::{ApiTrust, Profile};
use tally_protocol::Identity;
use tokio::sync::watch;

/// Default address: loopback, so that a console without a token reaches no one else.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7080";

/// What a console needs.
#[derive(Clone)]
pub struct Options {
    /// The organization's client identity: every read is signed with it.
    pub identity: Identity,
    /// Client API URLs of nodes to start from (the organization's own first).
    pub nodes: Vec<String>,
    /// The CA certificates nodes' TLS certificates are verified against.
    pub trust: ApiTrust,
    pub listen: SocketAddr,
    /// The text of the bearer token; required (or a client CA) off loopback.
    pub token: Option<String>,
    pub tls: Option<TlsFiles>,
    /// Shown on every page, e.g. the consortium's name.
    pub title: String,
    /// Limit of one read from a node.
    pub timeout: Duration,
}

impl Options {
    /// Options for organization `org` of a data directory written by `tallyctl up` (or by
    /// `tallyctl profile export`): its `identity` (`client`) and every node, its own first.
    pub fn from_profile(dir: &Path, org: &str, identity: &str) -> Result<Options, ConsoleError> {
        let profile = Profile::load(dir)?;
        let identity = profile.identity(dir, org, identity)?;
        let nodes = profile.api_urls(None, Some(org));
        Ok(Options {
            identity,
            nodes,
            trust: profile.trust(dir)?,
            listen: DEFAULT_LISTEN
                .parse()
                .map_err(|_| ConsoleError::Config("default address".into()))?,
            token: None,
            tls: None,
            title: profile.consortium.clone(),
            timeout: Duration::from_secs(5),
        })
    }
}

/// A console serving in the background.
pub struct Running {
    addr: SocketAddr,
    url: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:7080/` (or `https://`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops accepting, ends open connections (live streams included) and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Checks the options, binds the address and serves in the background.
pub async fn start(opts: Options) -> Result<Running, ConsoleError> {
    let auth = match &opts.token {
        Some(t) => auth::Auth::Token(auth::Token::new(t).map_err(ConsoleError::Config)?),
        None => auth::Auth::Loopback,
    };
    let client_certs = opts.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    if matches!(auth, auth::Auth::Loopback) && !opts.listen.ip().is_loopback() && !client_certs {
        return Err(ConsoleError::Config(format!(
            "refusing to serve on {} without a token or client certificates: whoever reached it \
             would read the ledger as organization {} (give a token file, or listen on loopback)",
            opts.listen, opts.identity.info.org
        )));
    }
    let acceptor = match &opts.tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(files)?)),
        None => None,
    };
    // With client certificates the TLS layer has already checked who asks.
    let auth = match (auth, client_certs) {
        (auth::Auth::Loopback, true) => auth::Auth::Open,
        (a, _) => a,
    };
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| ConsoleError::Config(format!("cannot listen on {}: {e}", opts.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ConsoleError::Config(e.to_string()))?;
    let app = Arc::new(app::App {
        ledger: ledger::Ledger::new(opts.identity, opts.nodes, opts.trust, opts.timeout)?,
        probe: probe::Probe::new(opts.timeout),
        title: opts.title,
        auth,
        tls: acceptor.is_some(),
        history: history::Histories::default(),
    });
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}/");
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(server::serve(app, listener, acceptor, stopped));
    tracing::info!(%url, "console serving");
    Ok(Running {
        addr,
        url,
        stop,
        task,
    })
}
