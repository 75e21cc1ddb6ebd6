//! Shared harness of the end-to-end suites in `tests/tests/`: finding the `tally-node`
//! executable, starting a [`LocalCluster`] in a temporary folder that is kept (with the node
//! logs printed) when a test fails, submitting with retries, walking and checking chains, raw
//! HTTP requests and Prometheus text.
//!
//! Environment:
//! - `TALLY_NODE_BIN`: the tally-node executable (default: next to the test binary, i.e.
//!   `$CARGO_TARGET_DIR/debug/tally-node`).
//! - `TALLY_E2E_KEEP=1`: keep every test's folder, not only those of failed tests.
//! - `TALLY_E2E_TXS`, `TALLY_E2E_ROUNDS`: scale of the cluster suite (default 3000, 3).
//! - `TALLY_E2E_CRASHES`: crash-restart cycles of the crash suite (default 20).
//! - `TALLY_K8S_BIN`: folder with `etcd` and `kube-apiserver` (and `kube-controller-manager`)
//!   for [`ControlPlane`] (default: `KUBEBUILDER_ASSETS`, else what `scripts/k8s-bins.sh`
//!   prints); `TALLY_SKIP_K8S=1` skips the suites that need them when they cannot be had;
//!   `TALLY_KUBECTL`: the kubectl to run.
//!
//! [`podrunner`] plays the scheduler and the kubelet for pods on such a control plane.

pub mod browser;
pub mod operator;
pub mod podrunner;

use std::collections::HashMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tally_client::{Client, ClientError};
use tally_protocol::api::ApiError;
use tally_protocol::block::tx_root;
use tally_protocol::{Block, Hash, Receipt, Transaction};
use tallyctl::local::LocalClusterSpec;
use tallyctl::LocalCluster;

/// The tally-node executable: `TALLY_NODE_BIN`, else the one cargo built next to this test
/// binary, else under `$CARGO_TARGET_DIR` or the workspace's `target/`.
///
/// # Panics
/// With a hint to build it when none is found.
pub fn node_bin() -> PathBuf {
    static ONCE: std::sync::Once = std::sync::Once::new();
    workspace_bin(
        "tally-node",
        "TALLY_NODE_BIN",
        "tally-node",
        &["node/src", "node/src/ledger", "protocol/src", "runtime/src"],
        &ONCE,
    )
}

/// The tallyctl executable: `TALLY_CTL_BIN`, else found as [`node_bin`] finds tally-node.
///
/// # Panics
/// With a hint to build it when none is found.
pub fn tallyctl_bin() -> PathBuf {
    static ONCE: std::sync::Once = std::sync::Once::new();
    workspace_bin(
        "tallyctl",
        "TALLY_CTL_BIN",
        "tallyctl",
        &[
            "tallyctl/src",
            "tallyctl/src/cli",
            "client/src",
            "planner/src",
            "api/src",
            "protocol/src",
        ],
        &ONCE,
    )
}

/// The tally-console executable: `TALLY_CONSOLE_BIN`, else found as [`node_bin`] finds
/// tally-node.
///
/// # Panics
/// With a hint to build it when none is found.
pub fn console_bin() -> PathBuf {
    static ONCE: std::sync::Once = std::sync::Once::new();
    workspace_bin(
        "tally-console",
        "TALLY_CONSOLE_BIN",
        "tally-console",
        &[
            "console/src",
            "console/src/pages",
            "console/assets",
            "client/src",
            "protocol/src",
        ],
        &ONCE,
    )
}

/// An executable of the workspace: `$env`, else the one cargo built next to this test binary,
/// else under `$CARGO_TARGET_DIR` or the workspace's `target/`. Warns once (through `once`)
/// when a file in `sources` changed after it was built: the suites would test old code.
fn workspace_bin(
    name: &str,
    env: &str,
    package: &str,
    sources: &[&str],
    once: &'static std::sync::Once,
) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env}={} is not a file", p.display());
        return p;
    }
    let mut candidates = Vec::new();
    // target/debug/deps/<test binary> -> target/debug/<name>
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(|deps| deps.parent()) {
            candidates.push(profile_dir.join(name));
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("debug").join(name));
    }
    candidates.push(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/debug")
            .join(name),
    );
    for c in &candidates {
        if c.is_file() {
            once.call_once(|| warn_if_stale(c, package, sources));
            return c.clone();
        }
    }
    panic!(
        "the {name} executable was not found (looked at {}).\n\
         Build it first: `cargo build -p tally-node -p tallyctl -p tally-console`, or set {env}.",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn warn_if_stale(bin: &Path, package: &str, sources: &[&str]) {
    let Ok(built) = bin.metadata().and_then(|m| m.modified()) else {
        return;
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for dir in sources {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                    newest = Some((t, e.path()));
                }
            }
        }
    }
    if let Some((t, p)) = newest {
        if t > built {
            eprintln!(
                "warning: {} is older than {}; run `cargo build -p {package}` to test the current code",
                bin.display(),
                p.display()
            );
        }
    }
}

/// A number from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// A local cluster in a temporary folder. On drop the nodes are killed; the folder is deleted,
/// unless the test is failing (or `TALLY_E2E_KEEP` is set), in which case it is kept and the
/// tail of every node's log is printed.
pub struct TestCluster {
    // Field order matters: the cluster (its processes) goes before its folder.
    cluster: Option<LocalCluster>,
    dir: Option<tempfile::TempDir>,
    test: String,
}

impl TestCluster {
    /// `n_nodes` nodes in their own organizations, every node a consenter of every channel
    /// ([`LocalClusterSpec::simple`]); `tweak` adjusts the spec before the start.
    pub async fn start(
        test: &str,
        n_nodes: usize,
        channels: &[&str],
        tweak: impl FnOnce(&mut LocalClusterSpec),
    ) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tally-e2e-{test}-"))
            .tempdir()
            .expect("create a temporary folder");
        let mut spec = LocalClusterSpec::simple(dir.path(), node_bin(), n_nodes, channels);
        tweak(&mut spec);
        let mut tc = TestCluster {
            cluster: None,
            dir: Some(dir),
            test: test.to_string(),
        };
        match LocalCluster::start(spec).await {
            Ok(c) => tc.cluster = Some(c),
            Err(e) => {
                let path = tc.dir.take().map(|d| d.keep()).unwrap_or_default();
                panic!(
                    "{test}: the local cluster did not start: {e}\n(cluster folder kept: {})",
                    path.display()
                );
            }
        }
        tc
    }

    pub fn cluster(&self) -> &LocalCluster {
        self.cluster.as_ref().expect("started")
    }

    /// Takes the cluster out, e.g. to shut it down and open it again; the folder stays until
    /// this value is dropped.
    pub fn take_cluster(&mut self) -> LocalCluster {
        self.cluster.take().expect("a cluster")
    }

    /// Puts a cluster (opened on this folder) back.
    pub fn put_cluster(&mut self, c: LocalCluster) {
        self.cluster = Some(c);
    }

    /// Asserts that no node exited on its own and no node log shows a panic.
    pub fn assert_healthy(&self) {
        let problems = self.cluster().problems();
        if !problems.is_empty() {
            let mut msg = format!("{}: node problems:\n  {}", self.test, problems.join("\n  "));
            for n in self.cluster().node_names() {
                if self.cluster().panicked(&n) || self.cluster().exited_on_its_own(&n).is_some() {
                    msg += &format!(
                        "\n--- {n}: {}\n{}",
                        self.cluster().log_path(&n).display(),
                        panic_excerpt(self.cluster(), &n)
                    );
                }
            }
            panic!("{msg}");
        }
    }
}

/// The lines around the first panic in a node's log, or its tail.
pub fn panic_excerpt(c: &LocalCluster, node: &str) -> String {
    let text = std::fs::read_to_string(c.log_path(node)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    match lines.iter().position(|l| l.contains("panicked")) {
        Some(i) => lines[i.saturating_sub(5)..(i + 15).min(lines.len())].join("\n"),
        None => c.log_tail(node, 20),
    }
}

impl Deref for TestCluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        self.cluster()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        let keep = failing || std::env::var_os("TALLY_E2E_KEEP").is_some();
        if failing {
            if let Some(c) = &self.cluster {
                for n in c.node_names() {
                    eprintln!(
                        "--- {}: last lines of {} ---\n{}",
                        self.test,
                        c.log_path(&n).display(),
                        c.log_tail(&n, 25)
                    );
                }
            }
        }
        drop(self.cluster.take());
        if let Some(d) = self.dir.take() {
            if keep {
                let p = d.keep();
                eprintln!("{}: cluster folder kept at {}", self.test, p.display());
            }
        }
    }
}

/// Whether an error from submitting may go away by retrying (on this or another node): the
/// node is down, has no leader, timed out, or answered something unexpected. 4xx answers are
/// final.
pub fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Api { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        ClientError::Transport { .. }
        | ClientError::Timeout(_)
        | ClientError::BadResponse { .. } => true,
        _ => false,
    }
}

/// Submits the same signed transaction with `wait=true` until a node returns a receipt,
/// moving to the next node after each retryable failure. Returns the receipt (committed or
/// rejected), or the last error when it is final or `timeout` passed.
pub async fn submit_retry(
    clients: &[Client],
    first: usize,
    tx: &Transaction,
    timeout: Duration,
) -> Result<Receipt, String> {
    submit_retry_counted(clients, first, tx, timeout).await.0
}

/// [`submit_retry`], also returning how many submissions it took and the errors that caused
/// the retries (at most the first few).
pub async fn submit_retry_counted(
    clients: &[Client],
    first: usize,
    tx: &Transaction,
    timeout: Duration,
) -> (Result<Receipt, String>, u32, Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut i = first;
    let mut attempts = 0;
    let mut errors = Vec::new();
    loop {
        attempts += 1;
        let c = &clients[i % clients.len()];
        match c.submit_wait(tx).await {
            Ok(r) => return (Ok(r), attempts, errors),
            Err(e) if retryable(&e) && Instant::now() < deadline => {
                if errors.len() < 4 {
                    errors.push(format!("{}: {e}", c.url()));
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return (
                    Err(format!(
                        "after {attempts} attempts, last at {}: {e}",
                        c.url()
                    )),
                    attempts,
                    errors,
                )
            }
        }
    }
}

/// Every block of the channel on one node, from genesis to its current height.
pub async fn all_blocks(c: &Client, channel: &str) -> Result<Vec<Block>, ClientError> {
    let height = c.status(channel).await?.height;
    let results: Vec<Result<Block, ClientError>> = futures_util::stream::iter(0..height)
        .map(|n| c.block(channel, Some(n)))
        .buffered(8)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Checks a chain's internal consistency: numbering, hash links, transaction roots, one result
/// per transaction, channel names.
pub fn verify_chain(who: &str, channel: &str, blocks: &[Block]) {
    for (i, b) in blocks.iter().enumerate() {
        let h = &b.header;
        assert_eq!(
            h.number, i as u64,
            "{who}/{channel}: block at position {i} says number {}",
            h.number
        );
        assert_eq!(
            h.channel, channel,
            "{who}/{channel}: block {i} names channel {:?}",
            h.channel
        );
        if i > 0 {
            let prev = blocks[i - 1].header.hash();
            assert_eq!(
                h.prev_hash,
                prev,
                "{who}/{channel}: block {i} does not link to block {}",
                i - 1
            );
            assert!(
                h.timestamp_ms >= blocks[i - 1].header.timestamp_ms,
                "{who}/{channel}: block {i} is older than block {}",
                i - 1
            );
        }
        assert_eq!(
            b.results.len(),
            b.txs.len(),
            "{who}/{channel}: block {i} has {} txs but {} results",
            b.txs.len(),
            b.results.len()
        );
        assert_eq!(
            h.tx_root,
            tx_root(&b.tx_ids()),
            "{who}/{channel}: block {i}: transaction root does not match its transactions"
        );
    }
}

/// How many times each transaction id is marked committed in the blocks.
pub fn committed_counts(blocks: &[Block]) -> HashMap<Hash, usize> {
    let mut m = HashMap::new();
    for b in blocks {
        for (tx, r) in b.txs.iter().zip(&b.results) {
            if r.is_committed() {
                *m.entry(tx.id()).or_insert(0) += 1;
            }
        }
    }
    m
}

/// Fetches every node's copy of the channel, checks each chain, and asserts that all nodes hold
/// identical blocks (hence identical hashes and state roots at every height). Returns the chain.
pub async fn assert_identical_chains(c: &LocalCluster, channel: &str) -> Vec<Block> {
    let mut reference: Option<(String, Vec<Block>)> = None;
    for n in c.channel_nodes(channel) {
        let blocks = all_blocks(&c.client(&n), channel)
            .await
            .unwrap_or_else(|e| panic!("reading the blocks of {channel} from {n}: {e}"));
        verify_chain(&n, channel, &blocks);
        match &reference {
            None => reference = Some((n, blocks)),
            Some((rn, rb)) => {
                assert_eq!(
                    blocks.len(),
                    rb.len(),
                    "{channel}: {n} has {} blocks, {rn} has {}",
                    blocks.len(),
                    rb.len()
                );
                for (a, b) in rb.iter().zip(&blocks) {
                    assert_eq!(
                        a.header.hash(),
                        b.header.hash(),
                        "{channel}: block {} differs between {rn} and {n}:\n{rn}: {:?}\n{n}: {:?}",
                        a.header.number,
                        a.header,
                        b.header
                    );
                    assert_eq!(a, b, "{channel}: block {} has equal headers but different bodies on {rn} and {n}", a.header.number);
                }
            }
        }
    }
    reference.map(|(_, b)| b).unwrap_or_default()
}

/// Raw HTTP/1.1 requests, for what the client library would refuse to send.
pub mod http {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    use std::time::Duration;

    /// Sends one request on a fresh connection; returns the status and the body.
    pub async fn request(
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Result<(u16, Vec<u8>), String> {
        request_with(method, url, content_type, &[], body).await
    }

    /// [`request`] with extra headers.
    pub async fn request_with(
        method: &str,
        url: &str,
        content_type: Option<&str>,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> Result<(u16, Vec<u8>), String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url}: no host"))?
            .clone();
        let fut = async {
            let stream = tokio::net::TcpStream::connect(authority.as_str())
                .await
                .map_err(|e| format!("connect {authority}: {e}"))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(conn);
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
                .header(hyper::header::HOST, authority.as_str());
            if let Some(ct) = content_type {
                req = req.header(hyper::header::CONTENT_TYPE, ct);
            }
            for (name, value) in headers {
                req = req.header(*name, value.as_str());
            }
            let req = req
                .body(Full::new(body.into()))
                .map_err(|e| e.to_string())?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("{method} {url}: {e}"))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{method} {url}: reading the body: {e}"))?
                .to_bytes();
            Ok((status, body.to_vec()))
        };
        tokio::time::timeout(Duration::from_secs(30), fut)
            .await
            .map_err(|_| format!("{method} {url}: no answer within 30 s"))?
    }

    pub async fn get(url: &str) -> Result<(u16, Vec<u8>), String> {
        request("GET", url, None, Bytes::new()).await
    }

    /// One request written by hand on a bare socket (a form body, `host` as the Host header,
    /// the URL's when empty): the status and the response as text, head and body, for what
    /// [`request`] hides (headers) or refuses to send (another Host).
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn raw(url: &str, method: &str, host: &str, body: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rest = url.strip_prefix("http://").expect("an http URL");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let host = if host.is_empty() { authority } else { host };
        let mut s = tokio::net::TcpStream::connect(authority)
            .await
            .unwrap_or_else(|e| panic!("connect {authority}: {e}"));
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())
            .await
            .expect("write the request");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out).replace("\r\n", "\n");
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }
}

/// Asserts that an answer is the documented API error: this status, a JSON `ApiError` body
/// with this code and a non-empty message. Returns the error.
pub fn assert_api_error(case: &str, got: (u16, &[u8]), status: u16, code: &str) -> ApiError {
    let (st, body) = got;
    let text = String::from_utf8_lossy(body);
    assert_eq!(
        st, status,
        "{case}: expected status {status} ({code}), got {st} with body {text}"
    );
    let err: ApiError = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!("{case}: the error body is not {{\"error\", \"code\"}} JSON ({e}): {text}")
    });
    assert_eq!(
        err.code, code,
        "{case}: expected code {code:?}, got {:?} ({})",
        err.code, err.error
    );
    assert!(
        !err.error.trim().is_empty(),
        "{case}: the error message is empty"
    );
    err
}

/// Same check for an error the client library returned.
pub fn assert_client_api_error(case: &str, e: &ClientError, status: u16, code: &str) {
    match e {
        ClientError::Api {
            status: s,
            code: c,
            message,
        } => {
            assert_eq!(
                (*s, c.as_str()),
                (status, code),
                "{case}: expected {status} {code}, got {s} {c}: {message}"
            );
            assert!(
                !message.trim().is_empty(),
                "{case}: the error message is empty"
            );
        }
        other => panic!("{case}: expected API error {status} {code}, got {other}"),
    }
}

/// The node's `/metrics` text.
pub async fn metrics(api_url: &str) -> String {
    let (status, body) = http::get(&format!("{api_url}/metrics"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "GET {api_url}/metrics answered {status}");
    String::from_utf8(body).expect("metrics are UTF-8")
}

/// The value of the sample `name{labels}` in Prometheus text (labels given must all match;
/// others are ignored). `None` when absent.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(r) = rest.strip_prefix('{') {
            match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            }
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue; // another metric whose name starts with `name`
        };
        let all = labels.iter().all(|(k, v)| {
            label_text
                .split(',')
                .any(|kv| kv.trim() == format!("{k}=\"{v}\""))
        });
        if all {
            return value.split_whitespace().next().and_then(|v| v.parse().ok());
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// A real Kubernetes control plane (etcd + kube-apiserver) for the operator's suites.
// ---------------------------------------------------------------------------------------------

/// The folder holding `etcd` and `kube-apiserver` (and `kube-controller-manager` when built):
/// `TALLY_K8S_BIN`, else `KUBEBUILDER_ASSETS`, else what `scripts/k8s-bins.sh` prints (it
/// builds them from Go modules once and caches them outside the clone).
///
/// `None` only when none can be had and `TALLY_SKIP_K8S=1` is set; the caller then skips.
///
/// # Panics
/// When the binaries can be neither found nor built and `TALLY_SKIP_K8S` is not set.
pub fn k8s_bin_dir() -> Option<PathBuf> {
    static DIR: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let found = DIR.get_or_init(find_k8s_bin_dir);
    match found {
        Ok(d) => Some(d.clone()),
        Err(why) if std::env::var("TALLY_SKIP_K8S").is_ok_and(|v| v == "1") => {
            eprintln!("skipping: no Kubernetes binaries and TALLY_SKIP_K8S=1 ({why})");
            None
        }
        Err(why) => panic!(
            "the Kubernetes control-plane binaries are not available: {why}\n\
             Run `scripts/k8s-bins.sh` (it builds etcd and kube-apiserver from Go modules; needs Go \
             and the module proxy) and export TALLY_K8S_BIN=<the folder it prints>, or point \
             KUBEBUILDER_ASSETS at a folder with etcd and kube-apiserver, or set TALLY_SKIP_K8S=1 \
             to skip the suites that need them."
        ),
    }
}

/// [`k8s_bin_dir`], for suites that also need `kube-controller-manager` there (prebuilt envtest
/// assets lack it; `scripts/k8s-bins.sh` builds it).
///
/// `None` when the suite is to be skipped (`TALLY_SKIP_K8S=1` and no such folder).
///
/// # Panics
/// As [`k8s_bin_dir`] does, and when the folder has no kube-controller-manager and
/// `TALLY_SKIP_K8S` is not set.
pub fn k8s_bin_dir_with_controller_manager() -> Option<PathBuf> {
    let dir = k8s_bin_dir()?;
    if dir.join("kube-controller-manager").is_file() {
        return Some(dir);
    }
    let why = format!("{} has no kube-controller-manager", dir.display());
    if std::env::var("TALLY_SKIP_K8S").is_ok_and(|v| v == "1") {
        eprintln!("skipping: {why} and TALLY_SKIP_K8S=1");
        return None;
    }
    panic!(
        "{why}: point TALLY_K8S_BIN at a folder that has it (scripts/k8s-bins.sh builds it with \
         the others), or set TALLY_SKIP_K8S=1 to skip the suites that need it"
    );
}

fn find_k8s_bin_dir() -> Result<PathBuf, String> {
    let has_bins = |d: &Path| d.join("etcd").is_file() && d.join("kube-apiserver").is_file();
    for var in ["TALLY_K8S_BIN", "KUBEBUILDER_ASSETS"] {
        if let Some(d) = std::env::var_os(var).filter(|d| !d.is_empty()) {
            let d = PathBuf::from(d);
            return if has_bins(&d) {
                Ok(d)
            } else {
                Err(format!(
                    "{var}={} holds no etcd and kube-apiserver",
                    d.display()
                ))
            };
        }
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/k8s-bins.sh");
    eprintln!(
        "TALLY_K8S_BIN is not set; running {} (a cold build takes minutes)",
        script.display()
    );
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(&script);
    if std::env::var("TALLY_SKIP_K8S").is_ok_and(|v| v == "1") {
        // Only what is already built is used; nothing is built.
        cmd.env("TALLY_K8S_NO_BUILD", "1");
    }
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let d = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
    if has_bins(&d) {
        Ok(d)
    } else {
        Err(format!(
            "{} printed {:?}, which holds no etcd and kube-apiserver",
            script.display(),
            d
        ))
    }
}

/// The kubectl executable: `TALLY_KUBECTL`, else `kubectl` in the Kubernetes bin folder, else
/// `kubectl` on `PATH`.
pub fn kubectl_bin(k8s_bin: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("TALLY_KUBECTL") {
        return PathBuf::from(p);
    }
    let local = k8s_bin.join("kubectl");
    if local.is_file() {
        return local;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join("kubectl").is_file() {
                return d.join("kubectl");
            }
        }
    }
    panic!(
        "kubectl was not found on PATH nor in {}; install it or set TALLY_KUBECTL",
        k8s_bin.display()
    );
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// What [`kubectl`](ControlPlane::kubectl) returned.
#[derive(Debug)]
pub struct Kubectl {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// A throwaway Kubernetes control plane on loopback: etcd with its data in a temporary folder
/// and kube-apiserver in front of it, serving TLS with certificates generated for the test
/// (a CA, a serving certificate for 127.0.0.1, an admin client certificate in
/// `system:masters`, a service-account key). [`kubeconfig`](Self::kubeconfig) reaches it as
/// that admin, and so does [`client`](Self::client). Optionally kube-controller-manager too
/// ([`start_controller_manager`](Self::start_controller_manager)); pods then need a
/// [`podrunner::PodRunner`] to run.
///
/// Its processes are killed when this is dropped (also while a failing test unwinds) and die
/// with the thread that started them should the test binary itself be killed. When a test fails
/// the folder is kept and the last lines of every log are printed; `TALLY_E2E_KEEP=1` keeps it
/// always.
pub struct ControlPlane {
    name: String,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    etcd: Option<std::process::Child>,
    apiserver: Option<std::process::Child>,
    controller_manager: Option<std::process::Child>,
    bin: PathBuf,
    kubectl: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// A kubeconfig for the admin (`system:masters`) user.
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver from `bin` and waits until `/readyz` answers `ok`.
    /// `name` labels messages (the test's name).
    ///
    /// # Panics
    /// When a process fails to start or the apiserver is not ready within 120 s; the logs'
    /// last lines are printed.
    pub fn start(name: &str, bin: &Path) -> ControlPlane {
        let dir = tempfile::Builder::new()
            .prefix("tally-k8s-")
            .tempdir()
            .expect("temporary folder");
        let root = dir.path().to_path_buf();
        let pki = root.join("pki");
        std::fs::create_dir_all(&pki).expect("pki folder");
        write_control_plane_pki(&pki);

        let etcd_port = free_loopback_port();
        let etcd_peer_port = free_loopback_port();
        let api_port = free_loopback_port();
        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = root.join("kubeconfig");
        std::fs::write(&kubeconfig, admin_kubeconfig(&server, &pki)).expect("write kubeconfig");

        let mut cp = ControlPlane {
            name: name.to_string(),
            dir: Some(dir),
            root: root.clone(),
            etcd: None,
            apiserver: None,
            controller_manager: None,
            bin: bin.to_path_buf(),
            kubectl: kubectl_bin(bin),
            server: server.clone(),
            kubeconfig,
        };

        let etcd_client = format!("http://127.0.0.1:{etcd_port}");
        let etcd_peer = format!("http://127.0.0.1:{etcd_peer_port}");
        cp.etcd = Some(spawn_logged(
            &bin.join("etcd"),
            &[
                "--name=default".to_string(),
                format!("--data-dir={}", root.join("etcd").display()),
                format!("--listen-client-urls={etcd_client}"),
                format!("--advertise-client-urls={etcd_client}"),
                format!("--listen-peer-urls={etcd_peer}"),
                format!("--initial-advertise-peer-urls={etcd_peer}"),
                format!("--initial-cluster=default={etcd_peer}"),
                "--log-level=warn".to_string(),
            ],
            &root.join("etcd.log"),
        ));

        let p = |f: &str| pki.join(f).display().to_string();
        cp.apiserver = Some(spawn_logged(
            &bin.join("kube-apiserver"),
            &[
                format!("--etcd-servers={etcd_client}"),
                "--bind-address=127.0.0.1".to_string(),
                "--advertise-address=127.0.0.1".to_string(),
                format!("--secure-port={api_port}"),
                format!("--cert-dir={}", root.join("apiserver-certs").display()),
                format!("--tls-cert-file={}", p("apiserver.crt")),
                format!("--tls-private-key-file={}", p("apiserver.key")),
                format!("--client-ca-file={}", p("ca.crt")),
                format!("--service-account-issuer={server}"),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                // Room for thousands of Services: the scale benchmark makes two per Peer.
                "--service-cluster-ip-range=10.96.0.0/16".to_string(),
                "--authorization-mode=RBAC".to_string(),
                // No controller-manager creates service-account tokens here.
                "--disable-admission-plugins=ServiceAccount".to_string(),
                // A loopback address is not a valid endpoint of the `kubernetes` Service.
                "--endpoint-reconciler-type=none".to_string(),
                "--allow-privileged=true".to_string(),
            ],
            &root.join("kube-apiserver.log"),
        ));

        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = cp.kubectl(&["get", "--raw=/readyz"]);
            if r.ok && r.stdout.trim() == "ok" {
                break;
            }
            for (what, child) in [
                ("etcd", &mut cp.etcd),
                ("kube-apiserver", &mut cp.apiserver),
            ] {
                if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    panic!("{name}: {what} exited ({status}) before the apiserver was ready");
                }
            }
            assert!(
                Instant::now() < deadline,
                "{name}: kube-apiserver not ready within 120 s: {} {}",
                r.stdout.trim(),
                r.stderr.trim()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        cp
    }

    /// [`start`](Self::start), then [`start_controller_manager`](Self::start_controller_manager).
    pub fn start_with_controller_manager(name: &str, bin: &Path) -> ControlPlane {
        let mut cp = ControlPlane::start(name, bin);
        cp.start_controller_manager();
        cp
    }

    /// Starts kube-controller-manager (from the same bin folder) against this apiserver and
    /// waits until its controllers work (the service-account controller has created the
    /// `default` ServiceAccount of the `default` namespace). Does nothing when it runs already.
    ///
    /// It runs as its own client certificate (CN `tally-controller-manager`, group
    /// `system:masters`) from `controller-manager.kubeconfig`, on loopback with a free port,
    /// without leader election, with its own credentials for every controller, and with the
    /// controllers that need a kubelet, a cloud or node CIDRs turned off
    /// ([`CONTROLLER_MANAGER_CONTROLLERS`]): StatefulSets, ReplicaSets, Deployments, Jobs, the
    /// garbage collector (owner references, cascading deletion), the disruption controller
    /// (PodDisruptionBudget status), namespace deletion, ServiceAccounts and their tokens, PVC
    /// protection and the root CA ConfigMap work. Nodes are not watched for health (no
    /// node-lifecycle or taint eviction), so pods stay where a pod runner put them. The
    /// Endpoints and EndpointSlice controllers run too, but the apiserver refuses endpoint
    /// addresses in 127.0.0.0/8, so pods on loopback addresses
    /// ([`podrunner`](crate::podrunner)) get none. Its log is `kube-controller-manager.log` in
    /// [`dir`](Self::dir).
    ///
    /// # Panics
    /// When the binary is missing, it exits, or its controllers do not work within 120 s.
    pub fn start_controller_manager(&mut self) {
        if self.controller_manager.is_some() {
            return;
        }
        let exe = self.bin.join("kube-controller-manager");
        assert!(
            exe.is_file(),
            "{}: {} is missing (scripts/k8s-bins.sh builds it with the others)",
            self.name,
            exe.display()
        );
        let pki = self.root.join("pki");
        let kubeconfig = self.root.join("controller-manager.kubeconfig");
        std::fs::write(
            &kubeconfig,
            client_kubeconfig(&self.server, &pki, "controller-manager"),
        )
        .expect("write the controller-manager's kubeconfig");
        let p = |f: &str| pki.join(f).display().to_string();
        let k = kubeconfig.display().to_string();
        self.controller_manager = Some(spawn_logged(
            &exe,
            &[
                // No authentication/authorization kubeconfig: nothing calls its port but
                // the always-allowed health paths, and the delegated authenticator would
                // complain every few seconds about the apiserver's missing front-proxy CA.
                format!("--kubeconfig={k}"),
                "--bind-address=127.0.0.1".to_string(),
                format!("--secure-port={}", free_loopback_port()),
                format!(
                    "--cert-dir={}",
                    self.root.join("controller-manager-certs").display()
                ),
                format!("--service-account-private-key-file={}", p("sa.key")),
                format!("--root-ca-file={}", p("ca.crt")),
                "--use-service-account-credentials=false".to_string(),
                "--leader-elect=false".to_string(),
                format!("--controllers={CONTROLLER_MANAGER_CONTROLLERS}"),
                // Pods, not nodes, are what the tests create: react at once.
                "--concurrent-statefulset-syncs=5".to_string(),
                "--concurrent-gc-syncs=5".to_string(),
            ],
            &self.root.join("kube-controller-manager.log"),
        ));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.kubectl(&[
                "get",
                "serviceaccount",
                "default",
                "-n",
                "default",
                "-o",
                "name",
            ]);
            if r.ok && r.stdout.trim() == "serviceaccount/default" {
                break;
            }
            if let Some(status) = self
                .controller_manager
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{}: kube-controller-manager exited ({status}):\n{}",
                    self.name,
                    log_tail(&self.root.join("kube-controller-manager.log"), 30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: kube-controller-manager did not create the default ServiceAccount within 120 s:\n{}",
                self.name,
                log_tail(&self.root.join("kube-controller-manager.log"), 30)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Whether kube-controller-manager was started.
    pub fn has_controller_manager(&self) -> bool {
        self.controller_manager.is_some()
    }

    /// A kube-rs client for the admin user of [`kubeconfig`](Self::kubeconfig).
    ///
    /// # Panics
    /// When the kubeconfig this control plane wrote cannot be loaded.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("{}: {}: {e}", self.name, self.kubeconfig.display()));
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("{}: {}: {e}", self.name, self.kubeconfig.display()));
        kube::Client::try_from(config)
            .unwrap_or_else(|e| panic!("{}: a client from the kubeconfig: {e}", self.name))
    }

    /// The folder with certificates, logs, etcd's data and the kubeconfig.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Runs kubectl against this control plane.
    pub fn kubectl(&self, args: &[&str]) -> Kubectl {
        self.kubectl_stdin(args, None)
    }

    /// Runs kubectl against this control plane with `stdin` as its input (for `-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Kubectl {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--request-timeout=60s")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.kubectl.display()));
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write kubectl's stdin");
        }
        let out = child.wait_with_output().expect("kubectl output");
        Kubectl {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl and returns its stdout.
    ///
    /// # Panics
    /// When kubectl fails; the message has its stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let r = self.kubectl(args);
        assert!(
            r.ok,
            "{}: kubectl {} failed:\n{}{}",
            self.name,
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r.stdout
    }

    /// The last `lines` lines of the apiserver's log.
    pub fn apiserver_log_tail(&self, lines: usize) -> String {
        log_tail(&self.root.join("kube-apiserver.log"), lines)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in [
            self.controller_manager.take(),
            self.apiserver.take(),
            self.etcd.take(),
        ]
        .into_iter()
        .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let failing = std::thread::panicking();
        if failing {
            for log in [
                "etcd.log",
                "kube-apiserver.log",
                "kube-controller-manager.log",
            ] {
                let p = self.root.join(log);
                if !p.exists() {
                    continue;
                }
                eprintln!(
                    "--- {}: last lines of {} ---\n{}",
                    self.name,
                    p.display(),
                    log_tail(&p, 30)
                );
            }
        }
        if let Some(d) = self.dir.take() {
            if failing || std::env::var_os("TALLY_E2E_KEEP").is_some() {
                let p = d.keep();
                eprintln!(
                    "{}: control-plane folder kept at {}",
                    self.name,
                    p.display()
                );
            }
        }
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// Makes the process `cmd` starts get SIGKILL when the thread that started it dies, so that a
/// killed test binary leaves nothing running.
pub fn die_with_parent(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// Starts `bin` with stdout and stderr in `log`; the child gets SIGKILL when the thread that
/// started it dies.
fn spawn_logged(bin: &Path, args: &[String], log: &Path) -> std::process::Child {
    let out = std::fs::File::create(log).expect("create log file");
    let err = out.try_clone().expect("clone log file");
    let mut cmd = std::process::Command::new(bin);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    die_with_parent(&mut cmd)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}

/// Writes ca.crt, apiserver.crt/.key (for 127.0.0.1 and localhost), admin.crt/.key (CN
/// tally-admin, O system:masters) and sa.key/sa.pub into `pki`.
fn write_control_plane_pki(pki: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let write = |f: &str, s: String| std::fs::write(pki.join(f), s).expect("write pki file");

    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name
        .push(DnType::CommonName, "tally-test-kubernetes-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    write("ca.crt", ca_cert.pem());

    let leaf = |cn: &str, org: Option<&str>, sans: Vec<SanType>, eku: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        if let Some(o) = org {
            p.distinguished_name.push(DnType::OrganizationName, o);
        }
        p.subject_alt_names = sans;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![eku];
        let cert = p.signed_by(&key, &ca_cert, &ca_key).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (crt, key) = leaf(
        "kube-apiserver",
        None,
        vec![
            SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
            SanType::DnsName("localhost".try_into().expect("DNS name")),
        ],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    write("apiserver.crt", crt);
    write("apiserver.key", key);
    let (crt, key) = leaf(
        "tally-admin",
        Some("system:masters"),
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    write("admin.crt", crt);
    write("admin.key", key);
    let (crt, key) = leaf(
        "tally-controller-manager",
        Some("system:masters"),
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    write("controller-manager.crt", crt);
    write("controller-manager.key", key);

    let sa = KeyPair::generate().expect("service-account key");
    write("sa.key", sa.serialize_pem());
    write("sa.pub", sa.public_key_pem());
}

fn admin_kubeconfig(server: &str, pki: &Path) -> String {
    client_kubeconfig(server, pki, "admin")
}

/// A kubeconfig for the client certificate `<cert>.crt`/`<cert>.key` in `pki`.
fn client_kubeconfig(server: &str, pki: &Path, cert: &str) -> String {
    let p = |f: &str| pki.join(f).display().to_string();
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: tally-test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n- name: tally-{cert}\n  user:\n    client-certificate: {crt}\n    client-key: {key}\n\
         contexts:\n- name: tally-test\n  context:\n    cluster: tally-test\n    user: tally-{cert}\n\
         current-context: tally-test\n",
        ca = p("ca.crt"),
        crt = p(&format!("{cert}.crt")),
        key = p(&format!("{cert}.key")),
    )
}

/// The `--controllers` of [`ControlPlane::start_controller_manager`]: every default controller
/// but those that watch node health or need a kubelet, a cloud provider, node CIDRs or a
/// certificate signer.
pub const CONTROLLER_MANAGER_CONTROLLERS: &str = "*,\
     -node-lifecycle-controller,-taint-eviction-controller,-device-taint-eviction-controller,\
     -pod-garbage-collector-controller,-node-ipam-controller,-cloud-node-lifecycle-controller,\
     -service-lb-controller,-node-route-controller,-persistentvolume-attach-detach-controller,\
     -certificatesigningrequest-signing-controller,-ttl-controller";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_are_found_by_name_and_labels() {
        let text = "# HELP x y\n# TYPE tally_snapshots_applied_total counter\n\
                    tally_snapshots_applied_total{channel=\"a\"} 0\n\
                    tally_snapshots_applied_total{channel=\"snap\"} 2\n\
                    tally_snapshots_applied_total_extra 9\nplain 1.5\n";
        assert_eq!(
            metric_value(
                text,
                "tally_snapshots_applied_total",
                &[("channel", "snap")]
            ),
            Some(2.0)
        );
        assert_eq!(
            metric_value(text, "tally_snapshots_applied_total", &[("channel", "b")]),
            None
        );
        assert_eq!(metric_value(text, "plain", &[]), Some(1.5));
    }
}
