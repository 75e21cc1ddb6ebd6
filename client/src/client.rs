//! HTTP client of one node's client API (see docs/api.md).

use crate::error::ClientError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tally_protocol::api::{
    ApiError, ChannelList, ChannelStatus, History, KeyEntry, KeyList, KeyValue, Pending,
};
use tally_protocol::{
    Block, BlockHeader, ChannelConfig, Encode, Hash, Identity, ProvenReceipt, Receipt, Transaction,
};

/// Result of a submission: a receipt when the caller waited, else the pending id.
#[derive(Debug, Clone)]
pub enum SubmitOutcome {
    Pending(Hash),
    Receipt(Receipt),
}

impl SubmitOutcome {
    pub fn tx_id(&self) -> Hash {
        match self {
            SubmitOutcome::Pending(h) => *h,
            SubmitOutcome::Receipt(r) => r.tx_id,
        }
    }
}

/// Default limit of one request (a commit wait included; the node waits 10 s by default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest response body read into memory.
const MAX_BODY: usize = 256 * 1024 * 1024;

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
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:7051`.
    url: String,
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({})", self.inner.url)
    }
}

/// Accepts `http://host:port[/]` or a bare `host:port`; returns the base URL without a
/// trailing slash.
pub fn normalize_url(url: &str) -> Result<String, ClientError> {
    let url = url.trim();
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let base = with_scheme.trim_end_matches('/').to_string();
    let uri: Uri = base
        .parse()
        .map_err(|_| ClientError::BadUrl(url.to_string()))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(ClientError::BadUrl(format!(
                "{url} (scheme {other}: the client API is plain HTTP, use http://)"
            )))
        }
        None => return Err(ClientError::BadUrl(url.to_string())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ClientError::BadUrl(url.to_string()));
    }
    if uri.query().is_some() || (uri.path() != "/" && !uri.path().is_empty()) {
        return Err(ClientError::BadUrl(format!(
            "{url} (give the base URL, without a path)"
        )));
    }
    Ok(base)
}

/// Percent-encodes a query value or a path segment: everything but the unreserved characters
/// of RFC 3986 (`A-Z a-z 0-9 - . _ ~`) becomes `%XX` of its UTF-8 bytes.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

/// Builds `?a=1&b=2` from pairs (values percent-encoded); empty when there are none.
pub fn query_string(pairs: &[(&str, String)]) -> String {
    let mut q = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        q.push(if i == 0 { '?' } else { '&' });
        q.push_str(k);
        q.push('=');
        q.push_str(&percent_encode(v));
    }
    q
}

/// Checks a proven receipt offline: the proof is for the receipt's transaction, the header
/// in the proof hashes to the receipt's block hash and is the receipt's block of its channel,
/// and the Merkle path leads from the transaction id to the header's transaction root.
///
/// This shows that the node that signed nothing but served the receipt could not have made
/// the inclusion up *given* the block hash; to trust the block hash itself, compare it with
/// another node ([`Client::cross_check_receipt`]) or with a copy of the chain.
pub fn verify_receipt(proven: &ProvenReceipt) -> Result<(), ClientError> {
    let r = &proven.receipt;
    let h = &proven.proof.header;
    if h.number != r.block {
        return Err(ClientError::Proof(format!(
            "the proof's header is block {} but the receipt names block {}",
            h.number, r.block
        )));
    }
    if h.channel != r.channel {
        return Err(ClientError::Proof(format!(
            "the proof's header is of channel {:?} but the receipt names {:?}",
            h.channel, r.channel
        )));
    }
    proven
        .proof
        .verify(&r.tx_id, &r.block_hash)
        .map_err(|e| ClientError::Proof(e.to_string()))
}

impl Client {
    /// `url` like `http://127.0.0.1:7051`.
    pub fn new(url: &str) -> Result<Client, ClientError> {
        let url = normalize_url(url)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            // Well below the node's 30 s wait for the next request on a kept-alive connection:
            // a connection the node is closing must not be picked for a request.
            .pool_idle_timeout(Duration::from_secs(20))
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Client {
            inner: Arc::new(Inner { url, http }),
            timeout: DEFAULT_TIMEOUT,
            reader: None,
        })
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

    fn transport(&self, e: impl std::error::Error) -> ClientError {
        ClientError::Transport {
            url: self.inner.url.clone(),
            message: error_chain(&e),
        }
    }

    fn bad_response(&self, message: impl Into<String>) -> ClientError {
        ClientError::BadResponse {
            url: self.inner.url.clone(),
            message: message.into(),
        }
    }

    fn channel_path(channel: &str, rest: &str) -> String {
        format!("/v1/channels/{}{}", percent_encode(channel), rest)
    }

    /// Sends a request and returns the response head with its body stream.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<Response<Incoming>, ClientError> {
        let uri = format!("{}{}", self.inner.url, path_and_query);
        let mut req = Request::builder().method(method.clone()).uri(&uri);
        req = req.header(ACCEPT, HeaderValue::from_static("application/json"));
        if let (true, Some(id)) = (method == Method::GET, &self.reader) {
            let (cert, auth) = tally_protocol::read_auth::sign(
                id,
                method.as_str(),
                path_and_query,
                tally_protocol::now_ms(),
            );
            req = req
                .header(tally_protocol::read_auth::CERT_HEADER, cert)
                .header(tally_protocol::read_auth::AUTH_HEADER, auth);
        }
        let body = match body {
            Some((ct, b)) => {
                req = req.header(CONTENT_TYPE, HeaderValue::from_static(ct));
                Full::new(b)
            }
            None => Full::new(Bytes::new()),
        };
        let req = req
            .body(body)
            .map_err(|e| ClientError::BadUrl(format!("{uri}: {e}")))?;
        tracing::debug!(%uri, method = %req.method(), "request");
        self.inner
            .http
            .request(req)
            .await
            .map_err(|e| self.transport(e))
    }

    /// Sends a request and reads the whole answer, within the client's time limit.
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Bytes)>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        self.call_full(method, path_and_query, body, timeout)
            .await
            .map(|(s, _, b)| (s, b))
    }

    /// [`Client::call`], with the wait the node asked for before a retry (`Retry-After`, in
    /// seconds).
    async fn call_full(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Bytes)>,
        timeout: Duration,
    ) -> Result<(StatusCode, Option<Duration>, Bytes), ClientError> {
        let fut = async {
            let resp = self.send(method, path_and_query, body).await?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(60)));
            let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| ClientError::Transport {
                    url: self.inner.url.clone(),
                    message: format!("reading the response: {e}"),
                })?
                .to_bytes();
            Ok((status, retry_after, body))
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(format!(
                "an answer from {}{} ({} ms)",
                self.inner.url,
                path_and_query,
                timeout.as_millis()
            ))),
        }
    }

    fn parse<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(body).map_err(|e| {
            self.bad_response(format!(
                "{e} in {}",
                String::from_utf8_lossy(truncate(body, 200))
            ))
        })
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (status, body) = self.call(Method::GET, path, None, self.timeout).await?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        self.parse(&body)
    }

    /// Like [`get_json`], but a 404 that is not about the channel itself is `None`.
    async fn get_json_opt<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, ClientError> {
        let (status, body) = self.call(Method::GET, path, None, self.timeout).await?;
        if status == StatusCode::NOT_FOUND {
            let e = api_error(status, &body);
            return match e.api_code() {
                Some("unknown_channel") => Err(e),
                _ => Ok(None),
            };
        }
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        self.parse(&body).map(Some)
    }

    /// Submits the canonical bytes; with `wait`, returns the receipt once committed.
    pub async fn submit(&self, tx: &Transaction, wait: bool) -> Result<SubmitOutcome, ClientError> {
        self.submit_inner(tx, wait, None).await
    }

    /// Submits and waits for the receipt (committed or rejected).
    pub async fn submit_wait(&self, tx: &Transaction) -> Result<Receipt, ClientError> {
        match self.submit(tx, true).await? {
            SubmitOutcome::Receipt(r) => Ok(r),
            SubmitOutcome::Pending(id) => self
                .wait_receipt(&tx.body.channel, &id, self.timeout)
                .await
                .map(|p| p.receipt),
        }
    }

    /// Submits and waits up to `wait` for the commit: the node is asked to wait that long
    /// (`timeout_ms`), and a node-side timeout is answered by submitting the same transaction
    /// again (safe: a transaction commits at most once) until `wait` has passed.
    pub async fn submit_wait_for(
        &self,
        tx: &Transaction,
        wait: Duration,
    ) -> Result<Receipt, ClientError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(format!(
                    "the commit of transaction {}",
                    tx.id()
                )));
            }
            match self.submit_inner(tx, true, Some(left)).await {
                Ok(SubmitOutcome::Receipt(r)) => return Ok(r),
                Ok(SubmitOutcome::Pending(id)) => {
                    return self
                        .wait_receipt(&tx.body.channel, &id, left)
                        .await
                        .map(|p| p.receipt)
                }
                Err(ClientError::Timeout(_)) => continue,
                Err(e) if matches!(e.api_code(), Some("no_leader" | "busy")) => {
                    // an election is under way, or the node is saturated: the same
                    // transaction may be offered again, after the wait the node asked for
                    let pause = e.retry_after().unwrap_or(Duration::from_millis(200));
                    tokio::time::sleep(pause.min(left)).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn submit_inner(
        &self,
        tx: &Transaction,
        wait: bool,
        wait_for: Option<Duration>,
    ) -> Result<SubmitOutcome, ClientError> {
        let mut q: Vec<(&str, String)> = Vec::new();
        let mut limit = self.timeout;
        if wait {
            q.push(("wait", "true".into()));
            if let Some(w) = wait_for {
                let ms = w.as_millis().max(1) as u64;
                q.push(("timeout_ms", ms.to_string()));
                // leave the node time to answer 504 itself
                limit = w + Duration::from_secs(5);
            }
        }
        let path = Self::channel_path(
            &tx.body.channel,
            &format!("/transactions{}", query_string(&q)),
        );
        let body = Bytes::from(tx.to_bytes());
        let (status, retry_after, body) = self
            .call_full(
                Method::POST,
                &path,
                Some(("application/octet-stream", body)),
                limit,
            )
            .await?;
        match status {
            StatusCode::OK => Ok(SubmitOutcome::Receipt(self.parse(&body)?)),
            StatusCode::ACCEPTED => {
                // a node may answer 202 with the receipt of an already committed transaction
                if let Ok(r) = serde_json::from_slice::<Receipt>(&body) {
                    return Ok(SubmitOutcome::Receipt(r));
                }
                let p: Pending = self.parse(&body)?;
                Ok(SubmitOutcome::Pending(p.tx_id))
            }
            StatusCode::GATEWAY_TIMEOUT => Err(ClientError::Timeout(format!(
                "the commit of transaction {}",
                tx.id()
            ))),
            s if s.is_success() => Ok(SubmitOutcome::Receipt(self.parse(&body)?)),
            s => Err(match api_error(s, &body) {
                ClientError::Api {
                    status,
                    code,
                    message,
                    ..
                } => ClientError::Api {
                    status,
                    code,
                    message,
                    retry_after,
                },
                e => e,
            }),
        }
    }

    /// Polls for a transaction's receipt until it appears or `wait` has passed.
    pub async fn wait_receipt(
        &self,
        channel: &str,
        tx_id: &Hash,
        wait: Duration,
    ) -> Result<ProvenReceipt, ClientError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(20);
        loop {
            if let Some(r) = self.receipt(channel, tx_id).await? {
                return Ok(r);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ClientError::Timeout(format!(
                    "the commit of transaction {tx_id}"
                )));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    pub async fn receipt(
        &self,
        channel: &str,
        tx_id: &Hash,
    ) -> Result<Option<ProvenReceipt>, ClientError> {
        self.get_json_opt(&Self::channel_path(
            channel,
            &format!("/transactions/{}", tx_id.to_hex()),
        ))
        .await
    }

    /// Fetches the receipt's block header from this node and checks that it hashes to the
    /// receipt's block hash, then checks the proof against it. Use a node other than the one
    /// that served the receipt, ideally of another organization.
    pub async fn cross_check_receipt(&self, proven: &ProvenReceipt) -> Result<(), ClientError> {
        verify_receipt(proven)?;
        let r = &proven.receipt;
        let block = self.block(&r.channel, Some(r.block)).await?;
        let hash = block.header.hash();
        if hash != r.block_hash {
            return Err(ClientError::Proof(format!(
                "{} has block {} with hash {hash}, the receipt says {}",
                self.url(),
                r.block,
                r.block_hash
            )));
        }
        proven
            .proof
            .verify(&r.tx_id, &hash)
            .map_err(|e| ClientError::Proof(e.to_string()))
    }

    /// `None` = latest block.
    pub async fn block(&self, channel: &str, number: Option<u64>) -> Result<Block, ClientError> {
        let n = number.map_or_else(|| "latest".to_string(), |n| n.to_string());
        self.get_json(&Self::channel_path(channel, &format!("/blocks/{n}")))
            .await
    }

    /// The header of block `number` (fetched with its block).
    /// A block's header alone (open to anyone, unlike the block).
    pub async fn header(&self, channel: &str, number: u64) -> Result<BlockHeader, ClientError> {
        self.get_json(&Self::channel_path(
            channel,
            &format!("/blocks/{number}/header"),
        ))
        .await
    }

    pub async fn get(&self, channel: &str, key: &str) -> Result<Option<KeyValue>, ClientError> {
        let q = query_string(&[("key", key.to_string())]);
        self.get_json_opt(&Self::channel_path(channel, &format!("/state{q}")))
            .await
    }

    pub async fn history(
        &self,
        channel: &str,
        key: &str,
        limit: Option<u32>,
    ) -> Result<History, ClientError> {
        let mut q = vec![("key", key.to_string())];
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        let path = Self::channel_path(channel, &format!("/history{}", query_string(&q)));
        match self.get_json_opt(&path).await? {
            Some(h) => Ok(h),
            None => Ok(History {
                key: key.to_string(),
                entries: Vec::new(),
            }),
        }
    }

    pub async fn keys(
        &self,
        channel: &str,
        prefix: &str,
        limit: Option<u32>,
    ) -> Result<Vec<KeyEntry>, ClientError> {
        let mut q = vec![("prefix", prefix.to_string())];
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        let path = Self::channel_path(channel, &format!("/keys{}", query_string(&q)));
        let list: KeyList = self.get_json(&path).await?;
        Ok(list.keys)
    }

    /// Chaincode definitions of the channel: committed, pending and their approvals.
    pub async fn chaincodes(
        &self,
        channel: &str,
    ) -> Result<Vec<tally_protocol::chaincode::ChaincodeInfo>, ClientError> {
        let list: tally_protocol::chaincode::ChaincodeList = self
            .get_json(&Self::channel_path(channel, "/chaincodes"))
            .await?;
        Ok(list.chaincodes)
    }

    /// Runs `function` of chaincode `name` read-only against the node's committed state, as
    /// this client's identity (a signed read).
    pub async fn query_chaincode(
        &self,
        channel: &str,
        name: &str,
        function: &str,
        args: &[u8],
    ) -> Result<tally_protocol::chaincode::QueryResult, ClientError> {
        let q = query_string(&[
            ("function", function.to_string()),
            ("args", hex::encode(args)),
        ]);
        let path = Self::channel_path(
            channel,
            &format!("/chaincodes/{}/query{q}", percent_encode(name)),
        );
        self.get_json(&path).await
    }

    pub async fn status(&self, channel: &str) -> Result<ChannelStatus, ClientError> {
        self.get_json(&Self::channel_path(channel, "/status")).await
    }

    pub async fn channels(&self) -> Result<ChannelList, ClientError> {
        self.get_json("/v1/channels").await
    }

    pub async fn config(&self, channel: &str) -> Result<ChannelConfig, ClientError> {
        self.get_json(&Self::channel_path(channel, "/config")).await
    }

    /// True when the channel has recorded this certificate, so that transactions may be
    /// signed with [`tally_protocol::Signer::CertHash`].
    pub async fn knows_cert(&self, channel: &str, cert_hash: &Hash) -> Result<bool, ClientError> {
        let path = Self::channel_path(channel, &format!("/certs/{}", cert_hash.to_hex()));
        let (status, body) = self.call(Method::GET, &path, None, self.timeout).await?;
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => {
                let e = api_error(status, &body);
                match e.api_code() {
                    Some("unknown_channel") => Err(e),
                    _ => Ok(false),
                }
            }
            s => Err(api_error(s, &body)),
        }
    }

    /// Streams committed blocks from height `from` (server-sent events), in order.
    ///
    /// The receiver gets `Ok(block)` for each block; when the stream breaks (the node went
    /// away, a malformed event) it gets one `Err` and then the channel closes. Dropping the
    /// receiver ends the stream.
    pub async fn follow(
        &self,
        channel: &str,
        from: u64,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Block, ClientError>>, ClientError> {
        let path = Self::channel_path(channel, &format!("/blocks/stream?from={from}"));
        let resp = tokio::time::timeout(self.timeout, self.send(Method::GET, &path, None))
            .await
            .map_err(|_| ClientError::Timeout(format!("{}{}", self.inner.url, path)))??;
        let status = resp.status();
        if !status.is_success() {
            let body = tokio::time::timeout(self.timeout, resp.into_body().collect())
                .await
                .ok()
                .and_then(|r| r.ok())
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(api_error(status, &body));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let url = self.inner.url.clone();
        tokio::spawn(async move {
            // The stream ends with at most one error, sent after the blocks before it.
            if let Err(e) = pump_blocks(resp.into_body(), from, &url, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(rx)
    }

    /// GET /readyz: Ok(true) on 200.
    pub async fn ready(&self) -> Result<bool, ClientError> {
        let (status, _) = self
            .call(Method::GET, "/readyz", None, self.timeout)
            .await?;
        Ok(status.is_success())
    }

    /// GET /healthz: Ok(true) on 200.
    pub async fn healthy(&self) -> Result<bool, ClientError> {
        let (status, _) = self
            .call(Method::GET, "/healthz", None, self.timeout)
            .await?;
        Ok(status.is_success())
    }
}

/// Maps an error answer to [`ClientError::Api`], from its `ApiError` body when it has one.
pub(crate) fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => ClientError::Api {
            status: status.as_u16(),
            code: e.code,
            message: e.error,
            retry_after: None,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(truncate(body, 300))
                .trim()
                .to_string();
            let code = status
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase()
                .replace(' ', "_");
            let message = if text.is_empty() {
                status.to_string()
            } else {
                text
            };
            ClientError::Api {
                status: status.as_u16(),
                code,
                message,
                retry_after: None,
            }
        }
    }
}

fn truncate(b: &[u8], n: usize) -> &[u8] {
    &b[..b.len().min(n)]
}

/// An error with its sources, `a: b: c`, without repeats.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// One server-sent event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    pub id: Option<String>,
}

/// Incremental parser of a `text/event-stream` body; chunks may split lines, UTF-8
/// sequences and `\r\n` pairs anywhere.
#[derive(Default, Debug)]
pub struct SseParser {
    line: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
    /// The previous chunk ended in `\r`: a `\n` that starts the next one belongs to it.
    after_cr: bool,
}

/// Longest accepted line (a block's JSON is one `data:` line).
const MAX_SSE_LINE: usize = 128 * 1024 * 1024;

impl SseParser {
    /// Feeds a chunk; returns the events it completed.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        let mut out = Vec::new();
        if self.after_cr {
            self.after_cr = false;
            if chunk.first() == Some(&b'\n') {
                chunk = &chunk[1..];
            }
        }
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&chunk[..pos]);
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut out);
            let mut next = pos + 1;
            if chunk[pos] == b'\r' {
                match chunk.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            chunk = &chunk[next..];
        }
        self.line.extend_from_slice(chunk);
        if self.line.len() > MAX_SSE_LINE {
            return Err(format!(
                "event stream line longer than {MAX_SSE_LINE} bytes"
            ));
        }
        Ok(out)
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            // dispatch
            let event = self.event.take();
            if let Some(data) = self.data.take() {
                out.push(SseEvent {
                    event: event
                        .filter(|e| !e.is_empty())
                        .unwrap_or_else(|| "message".into()),
                    data,
                    id: self.id.clone(),
                });
            }
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {} // retry and unknown fields
        }
    }
}

/// Feeds the blocks of a server-sent-event stream into `tx`, in order, from height `next`.
/// Returns when the receiver is gone (Ok) or the stream breaks, skips or lies (Err).
async fn pump_blocks(
    mut body: hyper::body::Incoming,
    mut next: u64,
    url: &str,
    tx: &tokio::sync::mpsc::Sender<Result<Block, ClientError>>,
) -> Result<(), ClientError> {
    let transport = |message: String| ClientError::Transport {
        url: url.to_string(),
        message,
    };
    let bad = |message: String| ClientError::BadResponse {
        url: url.to_string(),
        message,
    };
    let mut parser = SseParser::default();
    loop {
        let frame = tokio::select! {
            _ = tx.closed() => return Ok(()),
            f = body.frame() => f,
        };
        let chunk = match frame {
            None => return Err(transport("the node closed the block stream".into())),
            Some(Err(e)) => {
                return Err(transport(format!(
                    "block stream broke: {}",
                    error_chain(&e)
                )))
            }
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue, // trailers
            },
        };
        for ev in parser.push(&chunk).map_err(bad)? {
            if ev.event != "block" && ev.event != "message" {
                continue; // keep-alives and future event kinds
            }
            let block: Block = serde_json::from_str(&ev.data)
                .map_err(|e| bad(format!("block event is not a block: {e}")))?;
            let n = block.header.number;
            if n < next {
                continue; // already delivered
            }
            if n > next {
                return Err(bad(format!(
                    "block stream skipped from block {next} to {n}"
                )));
            }
            next = n + 1;
            if tx.send(Ok(block)).await.is_err() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_unreserved_and_encodes_utf8() {
        assert_eq!(percent_encode("abc-XYZ_0.9~"), "abc-XYZ_0.9~");
        assert_eq!(
            percent_encode("a b&c=d/e?f#g%h+"),
            "a%20b%26c%3Dd%2Fe%3Ff%23g%25h%2B"
        );
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode("货"), "%E8%B4%A7");
        assert_eq!(percent_encode(""), "");
        assert_eq!(
            query_string(&[("key", "a b".into()), ("limit", "5".into())]),
            "?key=a%20b&limit=5"
        );
        assert_eq!(query_string(&[]), "");
    }

    #[test]
    fn urls_are_normalized() {
        assert_eq!(
            normalize_url("http://127.0.0.1:7051/").unwrap(),
            "http://127.0.0.1:7051"
        );
        assert_eq!(
            normalize_url("127.0.0.1:7051").unwrap(),
            "http://127.0.0.1:7051"
        );
        assert_eq!(
            normalize_url(" http://node-1:80 ").unwrap(),
            "http://node-1:80"
        );
        assert!(normalize_url("https://x:1").is_err());
        assert!(normalize_url("http://x:1/v1").is_err());
        assert!(normalize_url("http://").is_err());
        assert!(normalize_url("not a url").is_err());
    }

    #[test]
    fn api_errors_are_mapped() {
        let e = api_error(
            StatusCode::NOT_FOUND,
            br#"{"error":"no such channel","code":"unknown_channel"}"#,
        );
        match e {
            ClientError::Api {
                status,
                code,
                message,
                ..
            } => {
                assert_eq!(
                    (status, code.as_str(), message.as_str()),
                    (404, "unknown_channel", "no such channel")
                );
            }
            other => panic!("{other:?}"),
        }
        let e = api_error(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(e.api_code(), Some("bad_gateway"));
        assert!(e.to_string().contains("upstream down"));
        assert!(e.is_retryable());
    }

    fn feed(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(p.push(c).unwrap());
        }
        out
    }

    #[test]
    fn sse_events_survive_any_chunking() {
        let stream = "retry: 1000\n: keep-alive\n\nevent: block\nid: 0\ndata: {\"n\":0}\n\n\
                      event: block\r\nid: 1\r\ndata: {\"n\":\r\ndata: \"é\"}\r\n\r\n\
                      data:plain\rid:2\r\r";
        let expect = vec![
            SseEvent {
                event: "block".into(),
                data: "{\"n\":0}".into(),
                id: Some("0".into()),
            },
            SseEvent {
                event: "block".into(),
                data: "{\"n\":\n\"é\"}".into(),
                id: Some("1".into()),
            },
            SseEvent {
                event: "message".into(),
                data: "plain".into(),
                id: Some("2".into()),
            },
        ];
        let bytes = stream.as_bytes();
        assert_eq!(feed(&[bytes]), expect);
        // every split point, including inside "\r\n" and inside the two-byte "é"
        for i in 0..=bytes.len() {
            assert_eq!(feed(&[&bytes[..i], &bytes[i..]]), expect, "split at {i}");
        }
        // one byte at a time
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(feed(&singles), expect);
    }

    #[test]
    fn sse_incomplete_event_is_held_back() {
        let mut p = SseParser::default();
        assert!(p.push(b"event: block\ndata: x\n").unwrap().is_empty());
        let ev = p.push(b"\n").unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].data, "x");
        // an event without data is dropped, and its name does not leak into the next one
        assert!(p.push(b"event: ping\n\n").unwrap().is_empty());
        assert_eq!(p.push(b"data: y\n\n").unwrap()[0].event, "message");
    }

    /// A node that answers every submission 429 `busy` with `Retry-After: 2`.
    /// Returns its URL and the count of requests it answered.
    async fn busy_node() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let count = count.clone();
                let svc = hyper::service::service_fn(move |_req| {
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    async {
                        Response::builder()
                            .status(StatusCode::TOO_MANY_REQUESTS)
                            .header("retry-after", "2")
                            .body(Full::new(Bytes::from_static(
                                br#"{"error":"queue full","code":"busy"}"#,
                            )))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
                );
            }
        });
        (format!("http://{addr}"), seen)
    }

    #[tokio::test]
    async fn honours_retry_after() {
        let ca = tally_protocol::OrgCa::generate("o").expect("ca");
        let id = ca
            .issue(tally_protocol::Role::Client, "c", &[])
            .expect("client identity");
        let tx = crate::txs::sign_writes(&id, "ch", vec![crate::txs::put("k", b"v")], false);
        let (url, seen) = busy_node().await;
        let client = Client::new(&url).expect("client");
        let e = client.submit(&tx, false).await.expect_err("busy");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert!(e.is_retryable(), "{e}");
        // Within 3 s, waiting 2 s between offers makes two more; the SDK's own 200 ms pause
        // would have made about fifteen.
        let r = client.submit_wait_for(&tx, Duration::from_secs(3)).await;
        assert!(matches!(r, Err(ClientError::Timeout(_))), "{r:?}");
        let offers = seen.load(std::sync::atomic::Ordering::Relaxed) - 1;
        assert!(offers <= 2, "{offers} offers in 3 s despite Retry-After: 2");
    }
}
