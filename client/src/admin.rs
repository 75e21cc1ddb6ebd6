//! Mutual-TLS client of a node's admin API.

use crate::client::{api_error, error_chain};
use crate::error::ClientError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tally_protocol::api::{ChannelInfo, ChannelStatus};
use tally_protocol::genesis::ChannelCreation;
use tally_protocol::identity::pem_to_der;
use tally_protocol::{Approval, ChannelConfig, Identity};
use tokio_rustls::TlsConnector;

/// A backup as a node's admin API reports it (`GET v1/admin/channels/{ch}/backups/{id}`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupStatus {
    pub id: String,
    pub channel: String,
    /// `Running`, `Succeeded` or `Failed`.
    pub phase: String,
    pub url: String,
    /// The manifest's object path below the repository root, once the backup succeeded.
    #[serde(default)]
    pub manifest: Option<String>,
    pub height: u64,
    pub bytes_raw: u64,
    pub bytes_stored: u64,
    pub chunks: u64,
    pub chunks_reused: u64,
    pub started_unix: u64,
    #[serde(default)]
    pub finished_unix: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

pub struct AdminClient {
    addr: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    timeout: Duration,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminClient({})", self.addr)
    }
}

/// The host part of `host:port` (`[v6]:port` too), without brackets.
pub fn host_of(addr: &str) -> Result<&str, ClientError> {
    let bad = || ClientError::BadUrl(format!("{addr} (expected HOST:PORT)"));
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        (h, p)
    } else {
        addr.rsplit_once(':').ok_or_else(bad)?
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(host)
}

/// A rustls client configuration (ring provider) that trusts `ca_pem` and presents `id`.
pub fn tls_client_config(ca_pem: &str, id: &Identity) -> Result<rustls::ClientConfig, ClientError> {
    let tls = |e: &dyn std::fmt::Display| ClientError::Tls(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    let ca_der = pem_to_der(ca_pem)?;
    roots
        .add(CertificateDer::from(ca_der))
        .map_err(|e| ClientError::Tls(format!("CA certificate: {e}")))?;
    let key_der = pem_to_der(&id.key_pem())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![CertificateDer::from(id.cert_der.clone())], key)
        .map_err(|e| ClientError::Tls(format!("admin certificate or key: {e}")))
}

impl AdminClient {
    /// `addr` = host:port of the admin listener; `ca_pem` = the node organization's CA;
    /// `admin` = an identity with role admin from that organization.
    pub fn new(addr: &str, ca_pem: &str, admin: &Identity) -> Result<AdminClient, ClientError> {
        AdminClient::reaching(addr, None, ca_pem, admin)
    }

    /// Dials `addr` but checks the node's certificate for `server_name` (when given): how the
    /// operator reaches a pod by IP while the certificate names its stable DNS name.
    pub fn reaching(
        addr: &str,
        server_name: Option<&str>,
        ca_pem: &str,
        admin: &Identity,
    ) -> Result<AdminClient, ClientError> {
        let addr = addr.trim();
        let addr = addr
            .strip_prefix("https://")
            .unwrap_or(addr)
            .trim_end_matches('/');
        let host = match server_name {
            Some(n) => n,
            None => host_of(addr)?,
        };
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|e| ClientError::BadUrl(format!("{addr}: {e}")))?;
        let config = tls_client_config(ca_pem, admin)?;
        Ok(AdminClient {
            addr: addr.to_string(),
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
            timeout: Duration::from_secs(30),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn with_timeout(mut self, timeout: Duration) -> AdminClient {
        self.timeout = timeout;
        self
    }

    fn transport(&self, message: String) -> ClientError {
        ClientError::Transport {
            url: format!("https://{}", self.addr),
            message,
        }
    }

    /// One request on a fresh mutual-TLS connection; returns status and body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let fut = async {
            let tcp = tokio::net::TcpStream::connect(&self.addr)
                .await
                .map_err(|e| self.transport(error_chain(&e)))?;
            let _ = tcp.set_nodelay(true);
            let tls = self
                .connector
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|e| self.transport(format!("TLS handshake: {}", error_chain(&e))))?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tls))
                    .await
                    .map_err(|e| self.transport(error_chain(&e)))?;
            let conn_task = tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "admin connection ended");
                }
            });
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header(
                    HOST,
                    HeaderValue::from_str(&self.addr)
                        .unwrap_or(HeaderValue::from_static("localhost")),
                )
                .header(ACCEPT, HeaderValue::from_static("application/json"));
            let body = match body {
                Some(b) => {
                    req = req.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    Full::new(b)
                }
                None => Full::new(Bytes::new()),
            };
            let req = req
                .body(body)
                .map_err(|e| ClientError::Other(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| self.transport(error_chain(&e)))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.transport(format!("reading the response: {}", error_chain(&e))))?
                .to_bytes();
            drop(sender);
            conn_task.abort();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| {
            ClientError::Timeout(format!("an answer from https://{}{}", self.addr, path))
        })?
    }

    /// POSTs any JSON `body` to `path` of the admin API: for requests the typed methods do
    /// not make (a tool's own, or a test's malformed one).
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.call_json(Method::POST, path, Some(body)).await
    }

    /// Sends `body` (if any) and decodes a successful answer as `T`.
    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T, ClientError> {
        let body = match body {
            Some(b) => Some(Bytes::from(
                serde_json::to_vec(b).map_err(|e| ClientError::Other(e.to_string()))?,
            )),
            None => None,
        };
        let (status, bytes) = self.call(method, path, body).await?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse {
            url: format!("https://{}{path}", self.addr),
            message: format!(
                "{e} in {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
        })
    }

    /// Creates the channel of `genesis` on the node (idempotent for the same genesis), with
    /// every member organization's approval of it.
    pub async fn create_channel(
        &self,
        genesis: &ChannelConfig,
        approvals: &[Approval],
    ) -> Result<ChannelStatus, ClientError> {
        let req = ChannelCreation {
            genesis: genesis.clone(),
            approvals: approvals.to_vec(),
            config: None,
        };
        self.call_json(Method::POST, "/v1/admin/channels", Some(&req))
            .await
    }

    /// Joins the node to a channel that has changed since `genesis`; `config` is the
    /// configuration in force (or about to be), which lists the node.
    pub async fn join_channel(
        &self,
        genesis: &ChannelConfig,
        config: &ChannelConfig,
        approvals: &[Approval],
    ) -> Result<ChannelStatus, ClientError> {
        let req = ChannelCreation {
            genesis: genesis.clone(),
            approvals: approvals.to_vec(),
            config: Some(config.clone()),
        };
        self.call_json(Method::POST, "/v1/admin/channels", Some(&req))
            .await
    }

    /// The channel's genesis, the configuration in force and the node's status; `None` when
    /// the node does not serve the channel.
    pub async fn channel(&self, name: &str) -> Result<Option<ChannelInfo>, ClientError> {
        let path = format!("/v1/admin/channels/{}", crate::client::percent_encode(name));
        match self.call_json(Method::GET, &path, None::<&()>).await {
            Ok(info) => Ok(Some(info)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks the node to leave `name`: stop serving it and delete its data. The node refuses
    /// (409) while the configuration in force still lists it, unless the channel was retired.
    /// `Ok(None)` when the node does not hold the channel (already left).
    pub async fn leave_channel(
        &self,
        name: &str,
    ) -> Result<Option<serde_json::Value>, ClientError> {
        let path = format!("/v1/admin/channels/{}", crate::client::percent_encode(name));
        match self.call_json(Method::DELETE, &path, None::<&()>).await {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks the node to hand leadership of every channel it leads to another caught-up
    /// voter; fails with a conflict when some channel could not be handed over in time.
    pub async fn release_leadership(&self) -> Result<serde_json::Value, ClientError> {
        self.call_json(Method::POST, "/v1/admin/leadership/release", None::<&()>)
            .await
    }

    /// Starts a backup of `channel` to the repository `to` (`file:///abs/dir`,
    /// `s3://bucket/prefix`) with storage `options` (e.g. `aws_endpoint`); the node answers at
    /// once with the backup's id and phase `Running`. A conflict: one is running already.
    pub async fn start_backup(
        &self,
        channel: &str,
        to: &str,
        options: &std::collections::BTreeMap<String, String>,
    ) -> Result<BackupStatus, ClientError> {
        let path = format!(
            "/v1/admin/channels/{}/backups",
            crate::client::percent_encode(channel)
        );
        let body = serde_json::json!({ "to": to, "options": options });
        self.call_json(Method::POST, &path, Some(&body)).await
    }

    /// Where a backup started with [`AdminClient::start_backup`] stands; `None` when the node
    /// does not know it (it restarted since: start another).
    pub async fn backup(
        &self,
        channel: &str,
        id: &str,
    ) -> Result<Option<BackupStatus>, ClientError> {
        let path = format!(
            "/v1/admin/channels/{}/backups/{}",
            crate::client::percent_encode(channel),
            crate::client::percent_encode(id)
        );
        match self.call_json(Method::GET, &path, None::<&()>).await {
            Ok(s) => Ok(Some(s)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The channels the node serves with their configuration hashes, as the node reports them.
    pub async fn channels(&self) -> Result<serde_json::Value, ClientError> {
        self.call_json(Method::GET, "/v1/admin/channels", None::<&()>)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::{OrgCa, Role};

    #[test]
    fn hosts_are_split_from_ports() {
        assert_eq!(host_of("127.0.0.1:7053").unwrap(), "127.0.0.1");
        assert_eq!(host_of("node-1.example:443").unwrap(), "node-1.example");
        assert_eq!(host_of("[::1]:7053").unwrap(), "::1");
        assert!(host_of("127.0.0.1").is_err());
        assert!(host_of(":7053").is_err());
        assert!(host_of("h:port").is_err());
    }

    #[test]
    fn tls_config_builds_from_an_issued_identity() {
        let ca = OrgCa::generate("org-a").unwrap();
        let admin = ca.issue(Role::Admin, "admin", &[]).unwrap();
        let c = AdminClient::new("127.0.0.1:7053", &ca.cert_pem(), &admin).unwrap();
        assert!(matches!(c.server_name, ServerName::IpAddress(_)));
        let c = AdminClient::new("localhost:7053", &ca.cert_pem(), &admin).unwrap();
        assert!(matches!(c.server_name, ServerName::DnsName(_)));
        assert!(AdminClient::new("localhost:7053", "not pem", &admin).is_err());
    }

    #[tokio::test]
    async fn mutual_tls_round_trip_against_a_test_server() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ca = OrgCa::generate("org-a").unwrap();
        let node = ca.issue(Role::Node, "n1", &["127.0.0.1".into()]).unwrap();
        let admin = ca.issue(Role::Admin, "admin", &[]).unwrap();
        // server side: rustls with client auth against the same CA
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.cert_der.clone()))
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            pem_to_der(&node.key_pem()).unwrap(),
        ));
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![CertificateDer::from(node.cert_der.clone())], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let status = ChannelStatus {
            channel: "ch".into(),
            node: "n1".into(),
            node_id: 1,
            org: "org-a".into(),
            role: tally_protocol::api::RaftRole::Leader,
            leader_id: 1,
            term: 1,
            height: 1,
            last_block_hash: tally_protocol::Hash::ZERO,
            state_root: tally_protocol::Hash::ZERO,
            applied_index: 1,
            commit_index: 1,
            ready: true,
            config_hash: tally_protocol::Hash::ZERO,
            config_sequence: 0,
            member: true,
            voters: vec![1],
            learners: vec![],
            degraded: None,
            rejoining: false,
        };
        let answer = serde_json::to_string(&status).unwrap();
        let srv = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let (_, conn) = tls.get_ref();
            assert!(conn.peer_certificates().is_some_and(|c| !c.is_empty()));
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            // read the head and the body (Content-Length)
            loop {
                let n = tls.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if got.len() >= i + 4 + len {
                        break;
                    }
                }
            }
            let head = String::from_utf8_lossy(&got).to_string();
            let resp = format!(
                "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
                answer.len(),
                answer
            );
            tls.write_all(resp.as_bytes()).await.unwrap();
            tls.shutdown().await.ok();
            head
        });
        let client = AdminClient::new(&addr, &ca.cert_pem(), &admin).unwrap();
        let cfg = ChannelConfig {
            name: "ch".into(),
            members: vec![],
            consenters: vec![],
            observers: vec![],
            batch: Default::default(),
            policies: Default::default(),
            snapshot_interval: 10,
            max_tx_bytes: 1000,
            tx_window_s: 60,
        };
        let got = client.create_channel(&cfg, &[]).await.unwrap();
        assert_eq!(got, status);
        let head = srv.await.unwrap();
        assert!(
            head.starts_with("POST /v1/admin/channels HTTP/1.1"),
            "{head}"
        );
        assert!(head.contains("\"name\":\"ch\""));
    }
}
