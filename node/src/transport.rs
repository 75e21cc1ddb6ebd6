//! Raft messages between nodes over mutual TLS.
//!
//! Each node dials every peer it sends to and keeps one connection per peer address, fed by a
//! bounded queue: Raft tolerates lost messages, so a slow or unreachable peer costs dropped
//! messages (and a counter), never a blocked channel thread. Frames are
//! `u32 length | u8 channel-name length | channel name | protobuf raft Message`.

use crate::metrics::Metrics;
use crate::tls;
use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tally_protocol::identity::{self, CertInfo, Role};
use tally_protocol::Identity;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, info, warn};

/// Largest frame accepted; snapshots travel as one frame.
pub const MAX_FRAME: usize = 512 * 1024 * 1024;
const QUEUE: usize = 8192;

pub fn frame(channel: &str, msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + channel.len() + msg.len());
    b.put_u32((1 + channel.len() + msg.len()) as u32);
    b.put_u8(channel.len() as u8);
    b.put_slice(channel.as_bytes());
    b.put_slice(msg);
    b.freeze()
}

/// Receives what peers send: (channel, raw message, sender's certificate).
pub type Inbox = Arc<dyn Fn(&str, &[u8], &CertInfo) + Send + Sync>;

pub struct Transport {
    identity: Identity,
    /// Shared with the peer tasks, which read it at every (re)connect.
    client: Arc<RwLock<Option<Arc<ClientConfig>>>>,
    server: RwLock<Option<Arc<ServerConfig>>>,
    peers: Mutex<HashMap<String, mpsc::Sender<Bytes>>>,
    runtime: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
}

impl Transport {
    pub fn new(
        identity: Identity,
        runtime: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
    ) -> Transport {
        Transport {
            identity,
            client: Arc::new(RwLock::new(None)),
            server: RwLock::new(None),
            peers: Mutex::new(HashMap::new()),
            runtime,
            metrics,
        }
    }

    /// Trusts exactly these CA certificates (DER) for peers from now on.
    pub fn set_trust(&self, cas: &[Vec<u8>]) -> Result<(), tls::TlsError> {
        let c = tls::client_config(&self.identity, cas)?;
        let s = tls::server_config(&self.identity, cas)?;
        *self.client.write() = Some(c);
        *self.server.write() = Some(s);
        Ok(())
    }

    /// Queues a frame for `addr`; false when it had to be dropped.
    pub fn send(&self, addr: &str, frame: Bytes) -> bool {
        let mut peers = self.peers.lock();
        let tx = peers.entry(addr.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let addr = addr.to_string();
            let metrics = self.metrics.clone();
            // The peer's drop counter at zero from the first frame: a rate of 0, not no data.
            metrics.peer_dropped.with_label_values(&[&addr]);
            self.runtime
                .spawn(peer_loop(addr, rx, self.client.clone(), metrics));
            tx
        });
        match tx.try_send(frame) {
            Ok(()) => true,
            Err(_) => {
                self.metrics.peer_dropped.with_label_values(&[addr]).inc();
                false
            }
        }
    }

    pub async fn serve(self: Arc<Self>, listener: TcpListener, inbox: Inbox) {
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "peer accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(cfg) = self.server.read().clone() else {
                debug!(%remote, "peer connection before any channel was joined; closing");
                continue;
            };
            let inbox = inbox.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_peer(stream, cfg, inbox).await {
                    debug!(%remote, error = %e, "peer connection closed");
                }
            });
        }
    }
}

async fn serve_peer(
    stream: TcpStream,
    cfg: Arc<ServerConfig>,
    inbox: Inbox,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut tls = TlsAcceptor::from(cfg).accept(stream).await?;
    let info = {
        let (_, conn) = tls.get_ref();
        let der = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .ok_or_else(|| std::io::Error::other("peer presented no certificate"))?;
        identity::inspect(&der).map_err(std::io::Error::other)?
    };
    if info.role != Role::Node {
        return Err(std::io::Error::other(format!(
            "peer certificate has role {}, not node",
            info.role
        )));
    }
    let mut buf = Vec::new();
    loop {
        let len = match tls.read_u32().await {
            Ok(n) => n as usize,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        if len == 0 || len > MAX_FRAME {
            return Err(std::io::Error::other(format!("bad frame length {len}")));
        }
        buf.resize(len, 0);
        tls.read_exact(&mut buf).await?;
        let n = buf[0] as usize;
        if 1 + n > len {
            return Err(std::io::Error::other("bad channel name length"));
        }
        let Ok(channel) = std::str::from_utf8(&buf[1..1 + n]) else {
            return Err(std::io::Error::other("channel name is not UTF-8"));
        };
        inbox(channel, &buf[1 + n..], &info);
    }
}

async fn peer_loop(
    addr: String,
    mut rx: mpsc::Receiver<Bytes>,
    client_cfg: Arc<RwLock<Option<Arc<ClientConfig>>>>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(client) = client_cfg.read().clone() else {
            if rx.recv().await.is_none() {
                return;
            }
            continue;
        };
        match connect(&addr, client).await {
            Ok(conn) => {
                backoff = Duration::from_millis(50);
                info!(peer = %addr, "connected to peer");
                let mut w = BufWriter::with_capacity(256 * 1024, conn);
                loop {
                    let Some(first) = rx.recv().await else { return };
                    if let Err(e) = w.write_all(&first).await {
                        debug!(peer = %addr, error = %e, "peer write failed");
                        break;
                    }
                    // Coalesce whatever else is queued into the same flush.
                    let mut ok = true;
                    while let Ok(more) = rx.try_recv() {
                        if w.write_all(&more).await.is_err() {
                            ok = false;
                            break;
                        }
                    }
                    if !ok || w.flush().await.is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                debug!(peer = %addr, error = %e, "cannot connect to peer");
                // Messages queued while the peer is down are stale by the time it is back.
                let mut dropped = 0u64;
                while rx.try_recv().is_ok() {
                    dropped += 1;
                }
                if dropped > 0 {
                    metrics
                        .peer_dropped
                        .with_label_values(&[&addr])
                        .inc_by(dropped);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn connect(
    addr: &str,
    client: Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    // A name listed in the hosts file (`--hosts-file`) is dialled at its address there; TLS
    // below still verifies the certificate against the name itself.
    let target = crate::hosts::resolve(addr);
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&target))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))??;
    stream.set_nodelay(true)?;
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?,
    };
    TlsConnector::from(client).connect(name, stream).await
}
