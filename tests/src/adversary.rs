//! Tools for attacking running nodes the way a hostile member or outsider would: forged
//! certificates, a rogue peer that speaks the Raft transport, raw connections that stall, and
//! the node's memory as the kernel reports it.

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tally_protocol::{Identity, OrgCa, Role};
use tallyctl::local::LocalCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A node certificate issued by `issuing_org`'s own CA (whose key a member holds) that names
/// `claimed_org` and node `name`.
pub fn forge_node_identity(
    cluster: &LocalCluster,
    issuing_org: &str,
    claimed_org: &str,
    name: &str,
) -> Identity {
    let dir = cluster.dir().join("orgs").join(issuing_org);
    let mut ca = OrgCa::load(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    ca.org = claimed_org.to_string();
    ca.issue(Role::Node, name, &[])
        .unwrap_or_else(|e| panic!("issue {name}: {e}"))
}

/// The peer transport's largest frame (node/src/transport.rs `MAX_FRAME`).
pub const MAX_FRAME: u32 = 512 * 1024 * 1024;

/// A frame as the peer transport writes it:
/// `u32 length | u8 channel-name length | channel name | message`.
pub fn frame(channel: &str, msg: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(5 + channel.len() + msg.len());
    b.extend_from_slice(&((1 + channel.len() + msg.len()) as u32).to_be_bytes());
    b.push(channel.len() as u8);
    b.extend_from_slice(channel.as_bytes());
    b.extend_from_slice(msg);
    b
}

/// A TLS client that presents `id` and trusts servers issued by one of `cas`.
fn client_config(id: &Identity, cas: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, String> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let mut roots = rustls::RootCertStore::empty();
    for der in cas {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| e.to_string())?;
    }
    let key = id.key.to_pkcs8_der().map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.as_bytes().to_vec()));
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_client_auth_cert(vec![CertificateDer::from(id.cert_der.clone())], key)
    .map_err(|e| e.to_string())?;
    Ok(Arc::new(cfg))
}

/// The route of a node's list of the channels it leads quietly (node/src/quiescence.rs).
pub const QUIET_ROUTE: &str = "quiet:";

/// A quiet-channel list as a leader's node sends it, framed: a count, then per channel its
/// name's length (2 bytes), the name, the leader's Raft id, the term and the commit index (8
/// bytes each).
pub fn quiet_listing(channels: &[(&str, u64, u64, u64)]) -> Vec<u8> {
    let mut body = (channels.len() as u32).to_be_bytes().to_vec();
    for (name, leader, term, commit) in channels {
        body.extend_from_slice(&(name.len() as u16).to_be_bytes());
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(&leader.to_be_bytes());
        body.extend_from_slice(&term.to_be_bytes());
        body.extend_from_slice(&commit.to_be_bytes());
    }
    frame(QUIET_ROUTE, &body)
}

/// A heartbeat as a leader sends it.
pub fn heartbeat(from: u64, to: u64, term: u64, commit: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = from;
    m.to = to;
    m.term = term;
    m.commit = commit;
    m
}

/// A mutual-TLS connection to a node's peer port, holding whatever certificate it was given.
pub struct RoguePeer {
    tls: TlsStream<TcpStream>,
}

impl RoguePeer {
    /// Connects to `node`'s peer listener as `id`, trusting every organization CA of the
    /// cluster. Err when the TLS handshake itself fails.
    pub async fn connect(
        cluster: &LocalCluster,
        node: &str,
        id: &Identity,
    ) -> Result<Self, String> {
        let cas: Vec<Vec<u8>> = cluster
            .org_names()
            .iter()
            .map(|o| {
                tally_protocol::identity::pem_to_der(&cluster.ca_pem(o))
                    .unwrap_or_else(|e| panic!("CA of {o}: {e}"))
            })
            .collect();
        let cfg = client_config(id, &cas)?;
        let addr = cluster.node_ref(node).peer_addr;
        let stream = TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(&addr);
        let name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?,
        };
        let tls = TlsConnector::from(cfg)
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS to {addr}: {e}"))?;
        Ok(RoguePeer { tls })
    }

    /// Sends one Raft message for `channel`, framed as the transport frames it.
    pub async fn send(&mut self, channel: &str, msg: &Message) -> std::io::Result<()> {
        let bytes = msg.write_to_bytes().map_err(std::io::Error::other)?;
        self.send_raw(&frame(channel, &bytes)).await
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes).await?;
        self.tls.flush().await
    }

    /// Whether the node closed the connection within `wait` (a read ends or fails).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut b = [0u8; 64];
        matches!(
            tokio::time::timeout(wait, self.tls.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// The node's resident memory in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for {pid}"))
}

/// How many lines of the node's log contain `needle`.
pub fn log_count(cluster: &LocalCluster, node: &str, needle: &str) -> usize {
    std::fs::read_to_string(cluster.log_path(node))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// The host:port of a node's client API.
pub fn api_addr(cluster: &LocalCluster, node: &str) -> String {
    let url = cluster.api_url(node);
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string()
}

/// Reads from `s` until the peer closes it or `wait` passes; the bytes read, and whether it
/// was closed.
pub async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    wait: Duration,
) -> (Vec<u8>, bool) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&b[..n]),
        }
    }
}

/// A TLS connection to a node's client API at `addr` (IP:port), for writing HTTP by hand;
/// the server's certificate is not checked (see `tally_tests::http`).
pub async fn api_tls(addr: &str) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let ip: std::net::IpAddr = addr
        .rsplit_once(':')
        .and_then(|(h, _)| h.parse().ok())
        .unwrap_or_else(|| panic!("{addr} is not IP:port"));
    crate::http::unverified_tls()
        .connect(ServerName::IpAddress(ip.into()), tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"))
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
}

/// A process's open-file limits (soft, hard), from /proc/PID/limits.
pub fn file_limit(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/limits: {e}"));
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open-file limit for {pid}"));
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

/// Sets a running process's soft open-file limit with prlimit(1) (raising the hard limit
/// would need privileges a sandbox may not grant).
pub fn set_file_limit(pid: u32, soft: u64) {
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
        .output()
        .unwrap_or_else(|e| panic!("prlimit: {e} (util-linux)"));
    assert!(
        out.status.success(),
        "prlimit --pid {pid} --nofile={soft}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the repository's contracts and fixtures (chaincode/build.sh) into `out`; `None` when
/// clang or wasm-ld is missing outside CI (with `CI` set that fails the test instead).
pub fn build_contracts(out: &std::path::Path) -> Option<std::path::PathBuf> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../chaincode/build.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(out)
        .status()
        .expect("bash runs chaincode/build.sh");
    match status.code() {
        Some(0) => Some(out.to_path_buf()),
        Some(2) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "SKIPPED: no clang/wasm-ld to build chaincode (run scripts/setup.sh); with CI set this fails"
            );
            None
        }
        _ => panic!("chaincode/build.sh failed: {status}"),
    }
}

/// Installs `module` as chaincode `name` (sequence 1) on `channel`, approved by every
/// organization of the cluster, and commits the definition.
pub async fn deploy_chaincode(cluster: &LocalCluster, channel: &str, name: &str, module: &[u8]) {
    use tally_client::txs::{chaincode_definition, sign_approve, sign_commit, sign_install};
    let orgs = cluster.org_names();
    let client = cluster.client(&cluster.channel_nodes(channel)[0]);
    let first = cluster.identity(&orgs[0], Role::Admin);
    let def = chaincode_definition(name, "1", 1, module, None);
    let hash = def.module_hash;
    let mut txs = vec![sign_install(&first, channel, def, module.to_vec())];
    for org in &orgs {
        let admin = cluster.identity(org, Role::Admin);
        txs.push(sign_approve(&admin, channel, name, 1, hash));
    }
    txs.push(sign_commit(&first, channel, name, 1));
    for tx in txs {
        let r = client
            .submit_wait_for(&tx, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("deploying {name}: {e}"));
        assert!(r.status.is_committed(), "deploying {name}: {:?}", r.status);
    }
}
