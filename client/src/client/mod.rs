//! HTTP client of one node's client API (see docs/api.md).
//!
//! The [`Client`] type lives here with its construction; each room of the API it speaks is
//! a file of its own, every one an `impl Client` block over the same connection pool:
//!
//! - `transport`: requests and answers (the signed GET, time limits, body limits, `Retry-After`,
//!   JSON decoding, error mapping), the plumbing the other files call;
//! - `url`: base-URL checking and percent-encoding of paths and queries;
//! - `trust`: the CA certificates nodes are verified against (TLS), and an optional client
//!   certificate;
//! - `submit`: submitting transactions and waiting for their receipts, with the retries;
//! - `governance`: proposals, approvals and rejections, and reading proposals;
//! - `reads`: reads of receipts, blocks, keys, history, chaincodes, channel status and health;
//! - `relay`: reaching a node through a go-between (the Kubernetes API server's pod proxy);
//! - `proof`: checking a proven receipt offline and against another node;
//! - `follow`: following committed blocks as a stream;
//! - `sse`: the incremental parser of server-sent events that the stream is read with.
//!
//! The public paths under `tally_client::client` are re-exported from the files below.

mod follow;
mod governance;
mod proof;
mod reads;
mod relay;
mod sse;
mod submit;
mod transport;
mod trust;
mod url;

pub use proof::verify_receipt;
pub use relay::{Relay, RelayBody, RelayError};
pub use sse::{SseEvent, SseParser};
pub use submit::SubmitOutcome;
pub(crate) use transport::{api_error, error_chain};
pub use trust::ApiTrust;
pub use url::{normalize_url, percent_encode, query_string};

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tally_protocol::Identity;

use crate::error::ClientError;

/// Default limit of one request (a commit wait included; the node waits 10 s by default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection pool to one node's client API. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    timeout: Duration,
    /// Signs every GET (see `tally_protocol::read_auth`): nodes serve a channel's data only
    /// to its readers.
    reader: Option<Arc<Identity>>,
}

struct Inner {
    /// Base URL without a trailing slash, e.g. `https://127.0.0.1:7051`.
    url: String,
    http: Http,
}

/// How requests travel: a TLS connection pool of our own, or a [`Relay`].
enum Http {
    // Boxed: with the features other crates of the workspace enable (reqwest's, through the
    // backup storage client), hyper-util's client is several hundred bytes.
    Direct(Box<hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>>),
    Relayed(Arc<dyn Relay>),
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({})", self.inner.url)
    }
}

impl Client {
    /// `url` like `https://127.0.0.1:7051`; the node's certificate must chain to one of the
    /// CAs of `trust` and name the URL's host.
    pub fn new(url: &str, trust: &ApiTrust) -> Result<Client, ClientError> {
        Client::reaching(url, None, trust)
    }

    /// Dials `url` but checks the node's certificate for `server_name` (when given): how the
    /// operator reaches a pod by IP while the certificate names its stable DNS name.
    pub fn reaching(
        url: &str,
        server_name: Option<&str>,
        trust: &ApiTrust,
    ) -> Result<Client, ClientError> {
        let url = normalize_url(url)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        connector.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(trust.client_config()?)
            .https_only();
        let https = match server_name {
            Some(name) => {
                let name = rustls::pki_types::ServerName::try_from(name.to_string())
                    .map_err(|e| ClientError::BadUrl(format!("{name}: {e}")))?;
                https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
            }
            None => https,
        };
        let connector = https.enable_http1().wrap_connector(connector);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            // Well below the node's 30 s wait for the next request on a kept-alive connection:
            // a connection the node is closing must not be picked for a request.
            .pool_idle_timeout(Duration::from_secs(20))
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Client {
            inner: Arc::new(Inner {
                url,
                http: Http::Direct(Box::new(http)),
            }),
            timeout: DEFAULT_TIMEOUT,
            reader: None,
        })
    }

    /// A client whose requests `relay` carries; `label` names the node in messages (e.g.
    /// `k8s:NAMESPACE/POD`). No TLS of ours: what the relay does to reach the node is its
    /// own affair, and the signatures on transactions and reads are what the node checks.
    pub fn relayed(label: &str, relay: Arc<dyn Relay>) -> Client {
        Client {
            inner: Arc::new(Inner {
                url: label.to_string(),
                http: Http::Relayed(relay),
            }),
            timeout: DEFAULT_TIMEOUT,
            reader: None,
        }
    }

    /// The same pool with another per-request time limit (streams are not limited).
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            timeout,
            ..self.clone()
        }
    }

    /// The same pool, signing reads as `id`.
    pub fn with_reader(&self, id: Identity) -> Client {
        Client {
            reader: Some(Arc::new(id)),
            ..self.clone()
        }
    }

    /// The identity reads are signed with, if any.
    pub fn reader(&self) -> Option<&Identity> {
        self.reader.as_deref()
    }

    pub fn url(&self) -> &str {
        &self.inner.url
    }
}
