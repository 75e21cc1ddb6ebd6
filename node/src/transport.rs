//! Raft messages between nodes over mutual TLS.
//!
//! Each node dials every peer it sends to and keeps one connection per peer address, fed by a
//! bounded queue: Raft tolerates lost messages, so a slow or unreachable peer costs dropped
//! messages (and a counter), never a blocked channel thread. Frames are
//! `u32 length | u8 channel-name length | channel name | protobuf raft Message`. The one
//! exception to one-way traffic is a snapshot pull (route `snapshot-pull:<channel>`): the
//! puller dials a connection of its own, and each chunk request on it is answered on it
//! (see [`Puller`] and `crate::snapshot_stream`).
//!
//! Every connection is bounded: a handshake, a frame that stops arriving and a write that
//! does not drain each time out; an announced frame length costs memory only as its bytes
//! arrive; TCP keepalive and `TCP_USER_TIMEOUT` notice a dead path within seconds, so a healed
//! node is talked to again without waiting for TCP's backed-off retransmissions.

use crate::metrics::Metrics;
use crate::peer_trust::{self, Ca, PeerCert, TrustMap};
use crate::tls;
use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tally_protocol::Identity;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, info, warn};

/// Largest frame accepted. Snapshots travel in chunks of a few MiB
/// (`crate::snapshot_stream`); the largest frames are batches of Raft entries.
pub const MAX_FRAME: usize = 512 * 1024 * 1024;
const QUEUE: usize = 8192;
/// Frames are read in pieces of at most this size, so memory follows the bytes received.
const READ_CHUNK: usize = 256 * 1024;
/// A TLS handshake must finish within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A frame whose next bytes do not arrive within this time closes the connection.
const FRAME_STALL: Duration = Duration::from_secs(30);
/// A connection with no frame for this long is closed (the sender reconnects when it has
/// something to say; heartbeats keep live Raft connections far busier than this).
const IDLE: Duration = Duration::from_secs(300);
/// A write to a peer that does not drain within this time drops the connection; it is redialled.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Inbound peer connections at once: a few per peer node is all Raft needs.
pub const MAX_PEER_CONNECTIONS: usize = 256;
/// Unacknowledged data or failed keepalives for this long mark a connection dead.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_RETRIES: u32 = 3;
/// A dial that does not connect within this time is retried: on a cut path the SYN (or the
/// ARP request before it) is simply lost.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Redials back off from this to [`RECONNECT_MAX`]: a healed peer is found again within about
/// `RECONNECT_MAX + CONNECT_TIMEOUT`.
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(1);

pub fn frame(channel: &str, msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + channel.len() + msg.len());
    b.put_u32((1 + channel.len() + msg.len()) as u32);
    b.put_u8(channel.len() as u8);
    b.put_slice(channel.as_bytes());
    b.put_slice(msg);
    b.freeze()
}

/// Receives what peers send: (channel, raw message, sender's certificate).
pub type Inbox = Arc<dyn Fn(&str, &[u8], &PeerCert) + Send + Sync>;
/// Answers a peer's snapshot chunk request: (channel, request, requester's certificate) to
/// the response, or None for no answer. Called on a blocking thread.
pub type Responder = Arc<dyn Fn(&str, &[u8], &PeerCert) -> Option<Vec<u8>> + Send + Sync>;

/// Organization CAs by organization name, as connections are checked against them.
type OrgCas = Arc<RwLock<Arc<HashMap<String, Vec<Ca>>>>>;

pub struct Transport {
    identity: Identity,
    /// Shared with the peer tasks, which read it at every (re)connect.
    client: Arc<RwLock<Option<Arc<ClientConfig>>>>,
    server: RwLock<Option<Arc<ServerConfig>>>,
    orgs: OrgCas,
    connections: Arc<Semaphore>,
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
            orgs: Arc::new(RwLock::new(Arc::new(HashMap::new()))),
            connections: Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS)),
            peers: Mutex::new(HashMap::new()),
            runtime,
            metrics,
        }
    }

    /// Trusts exactly these organization CAs for peers from now on: a peer's certificate must
    /// be issued by the CA of the organization it names.
    pub fn set_trust(&self, trust: &TrustMap) -> Result<(), tls::TlsError> {
        let cas = trust.all_der();
        let c = tls::client_config(&self.identity, &cas)?;
        let s = tls::server_config(&self.identity, &cas)?;
        *self.client.write() = Some(c);
        *self.server.write() = Some(s);
        *self.orgs.write() = Arc::new(trust.by_org());
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
            self.runtime.spawn(peer_loop(
                addr,
                rx,
                self.client.clone(),
                self.orgs.clone(),
                metrics,
            ));
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

    /// A source of snapshot chunks from the peer at `addr`, for a pull thread.
    pub fn puller(&self, addr: &str, channel: &str) -> Puller {
        Puller {
            addr: addr.to_string(),
            route: format!("{}{channel}", crate::snapshot_stream::ROUTE),
            client: self.client.clone(),
            orgs: self.orgs.clone(),
            runtime: self.runtime.clone(),
            ahead: None,
        }
    }

    pub async fn serve(self: Arc<Self>, listener: TcpListener, inbox: Inbox, responder: Responder) {
        let mut accept_errors = crate::limits::AcceptBackoff::new("peer");
        loop {
            let (stream, remote) = accept_errors.accept(&listener).await;
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                debug!(%remote, "too many peer connections; closing");
                continue;
            };
            let Some(cfg) = self.server.read().clone() else {
                debug!(%remote, "peer connection before any channel was joined; closing");
                continue;
            };
            let inbox = inbox.clone();
            let responder = responder.clone();
            let orgs = self.orgs.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match serve_peer(stream, cfg, orgs, inbox, responder).await {
                    Ok(()) => {}
                    Err(PeerError::Refused(why)) => {
                        warn!(%remote, "peer connection refused: {why}")
                    }
                    Err(PeerError::Io(e)) => debug!(%remote, error = %e, "peer connection closed"),
                }
            });
        }
    }
}

/// Why a peer connection ended.
#[derive(Debug)]
enum PeerError {
    /// The peer broke a rule (identity, frame size): worth a warning.
    Refused(String),
    /// The connection failed or timed out.
    Io(std::io::Error),
}

impl From<std::io::Error> for PeerError {
    fn from(e: std::io::Error) -> Self {
        PeerError::Io(e)
    }
}

/// Keepalive probes and a bound on unacknowledged data, so that a dead path is noticed in
/// seconds rather than after TCP's minutes of retransmissions.
fn tune(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let sock = socket2::SockRef::from(stream);
    let ka = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    sock.set_tcp_keepalive(&ka)?;
    sock.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT))
}

fn peer_cert(der: Option<&rustls_pki_types::CertificateDer<'_>>) -> Result<PeerCert, PeerError> {
    let der = der.ok_or_else(|| PeerError::Refused("peer presented no certificate".into()))?;
    PeerCert::new(der.as_ref().to_vec()).map_err(|e| PeerError::Refused(e.to_string()))
}

async fn serve_peer(
    stream: TcpStream,
    cfg: Arc<ServerConfig>,
    orgs: OrgCas,
    inbox: Inbox,
    responder: Responder,
) -> Result<(), PeerError> {
    tune(&stream)?;
    let mut tls = timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(cfg).accept(stream))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
    let cert = Arc::new(peer_cert(
        tls.get_ref().1.peer_certificates().and_then(|c| c.first()),
    )?);
    let by_org = orgs.read().clone();
    peer_trust::check_org(&cert, &by_org).map_err(PeerError::Refused)?;
    let mut buf = Vec::new();
    loop {
        let len = match timeout(IDLE, tls.read_u32()).await {
            Err(_) => return Err(std::io::Error::other("idle peer connection").into()),
            Ok(Ok(n)) => n as usize,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e.into()),
        };
        if len == 0 || len > MAX_FRAME {
            return Err(PeerError::Refused(format!(
                "frame of {len} bytes from {} (limit {MAX_FRAME}); closing the connection",
                cert.info.common_name
            )));
        }
        read_body(&mut tls, len, &mut buf).await?;
        let n = buf[0] as usize;
        if 1 + n > len {
            return Err(PeerError::Refused("bad channel name length".into()));
        }
        let Ok(channel) = std::str::from_utf8(&buf[1..1 + n]) else {
            return Err(PeerError::Refused("channel name is not UTF-8".into()));
        };
        if channel.starts_with(crate::snapshot_stream::ROUTE) {
            // A chunk request, answered on this connection; reading the held RocksDB
            // snapshot is blocking work.
            let route = channel.to_string();
            let body = buf[1 + n..].to_vec();
            let (r, c) = (responder.clone(), cert.clone());
            let rt = route.clone();
            let answer: Option<Vec<u8>> = tokio::task::spawn_blocking(move || r(&rt, &body, &c))
                .await
                .map_err(std::io::Error::other)?;
            if let Some(answer) = answer {
                timeout(WRITE_TIMEOUT, tls.write_all(&frame(&route, &answer)))
                    .await
                    .map_err(|_| std::io::Error::other("chunk write stalled"))??;
                tls.flush().await?;
            }
        } else {
            inbox(channel, &buf[1 + n..], &cert);
        }
        // A snapshot-sized buffer is not kept for the heartbeats that follow.
        if buf.capacity() > 4 * READ_CHUNK {
            buf = Vec::new();
        }
    }
}

/// Reads `len` bytes into `buf`, growing it only as bytes arrive: a peer that announces a
/// large frame and sends little costs little.
async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    buf.clear();
    while buf.len() < len {
        let start = buf.len();
        buf.resize(start + (len - start).min(READ_CHUNK), 0);
        let got = timeout(FRAME_STALL, r.read(&mut buf[start..]))
            .await
            .map_err(|_| std::io::Error::other("peer frame stalled"))??;
        if got == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.truncate(start + got);
    }
    Ok(())
}

/// Pulls snapshot chunks from one peer over a connection of its own, for a blocking thread.
/// A task on the runtime reads ahead: it asks for the next chunk as soon as one arrived, so
/// that the transfer and the sender's reading overlap the puller's checks; at most
/// [`AHEAD`] chunks wait, so memory stays a few chunks.
pub struct Puller {
    addr: String,
    route: String,
    client: Arc<RwLock<Option<Arc<ClientConfig>>>>,
    orgs: OrgCas,
    runtime: tokio::runtime::Handle,
    /// Chunks read ahead, each with the key the request for it named.
    ahead: Option<(u64, mpsc::Receiver<AheadChunk>)>,
}

type AheadChunk = (
    Vec<u8>,
    Result<crate::snapshot_stream::Chunk, crate::snapshot_stream::PullError>,
);

/// Chunks read ahead of the puller.
const AHEAD: usize = 2;

struct ChunkStream {
    conn: tokio_rustls::client::TlsStream<TcpStream>,
    route: String,
    buf: Vec<u8>,
}

impl ChunkStream {
    async fn exchange(
        &mut self,
        body: &[u8],
    ) -> Result<crate::snapshot_stream::Chunk, crate::snapshot_stream::PullError> {
        use crate::snapshot_stream::{PullError, PULL_STALL};
        let unavailable = |e: std::io::Error| PullError::Unavailable(e.to_string());
        let conn = &mut self.conn;
        let sent = timeout(WRITE_TIMEOUT, async {
            conn.write_all(&frame(&self.route, body)).await?;
            conn.flush().await
        })
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(unavailable(e)),
            Err(_) => return Err(PullError::Stalled(WRITE_TIMEOUT)),
        }
        let len = match timeout(PULL_STALL, conn.read_u32()).await {
            Err(_) => return Err(PullError::Stalled(PULL_STALL)),
            Ok(Err(e)) => return Err(unavailable(e)),
            Ok(Ok(n)) => n as usize,
        };
        if len == 0 || len > MAX_FRAME {
            return Err(PullError::Unavailable(format!(
                "a chunk frame of {len} bytes"
            )));
        }
        match timeout(PULL_STALL, read_body(conn, len, &mut self.buf)).await {
            Err(_) => return Err(PullError::Stalled(PULL_STALL)),
            Ok(Err(e)) => return Err(unavailable(e)),
            Ok(Ok(())) => {}
        }
        let n = self.buf[0] as usize;
        if 1 + n > len || self.buf[1..1 + n] != *self.route.as_bytes() {
            return Err(PullError::Unavailable("a chunk on another route".into()));
        }
        let chunk = crate::snapshot_stream::decode_chunk(&self.buf[1 + n..]);
        if self.buf.capacity() > 2 * crate::snapshot_stream::CHUNK_BYTES {
            self.buf = Vec::new();
        }
        chunk
    }

    /// Asks for chunk after chunk of `build` from `after` on, until the last one, an error,
    /// or the puller stops listening.
    async fn run(mut self, build: u64, mut after: Vec<u8>, tx: mpsc::Sender<AheadChunk>) {
        use crate::snapshot_stream::Chunk;
        loop {
            let got = self
                .exchange(&crate::snapshot_stream::request(build, &after))
                .await;
            let next = match &got {
                Ok(Chunk::Records { records, end: None }) => records.last().map(|(k, _)| k.clone()),
                _ => None,
            };
            if tx.send((after, got)).await.is_err() {
                return;
            }
            match next {
                Some(k) => after = k,
                None => return,
            }
        }
    }
}

impl crate::snapshot_stream::ChunkSource for Puller {
    fn fetch(
        &mut self,
        build: u64,
        after: &[u8],
    ) -> Result<crate::snapshot_stream::Chunk, crate::snapshot_stream::PullError> {
        use crate::snapshot_stream::{PullError, PULL_STALL};
        let rt = self.runtime.clone();
        if !matches!(&self.ahead, Some((b, _)) if *b == build) {
            let client =
                self.client.read().clone().ok_or_else(|| {
                    PullError::Unavailable("no peer TLS configuration yet".into())
                })?;
            let by_org = self.orgs.read().clone();
            let conn = rt
                .block_on(connect(&self.addr, client, &by_org))
                .map_err(|e| PullError::Unavailable(e.to_string()))?;
            let (tx, rx) = mpsc::channel(AHEAD);
            let stream = ChunkStream {
                conn,
                route: self.route.clone(),
                buf: Vec::new(),
            };
            rt.spawn(stream.run(build, after.to_vec(), tx));
            self.ahead = Some((build, rx));
        }
        let Some((_, rx)) = self.ahead.as_mut() else {
            return Err(PullError::Unavailable("no chunk stream".into()));
        };
        // The stream applies the stall timeout to each chunk; this one only guards against
        // a stream that ended without a word.
        let got = rt.block_on(async { timeout(2 * PULL_STALL, rx.recv()).await });
        let out = match got {
            Ok(Some((at, chunk))) if at == after => chunk,
            Ok(Some(_)) => Err(PullError::Unavailable(
                "chunks read ahead do not follow the records taken".into(),
            )),
            Ok(None) => Err(PullError::Unavailable("the chunk stream ended".into())),
            Err(_) => Err(PullError::Stalled(2 * PULL_STALL)),
        };
        if out.is_err() {
            // A stream in an unknown state is not reused.
            self.ahead = None;
        }
        out
    }
}

/// What ended a connection to a peer.
enum Ended {
    /// The queue's sender is gone: the transport is shutting down.
    Closed,
    /// A write failed or stalled; `carried` says whether anything was written before.
    Broken { carried: bool },
}

async fn peer_loop(
    addr: String,
    mut rx: mpsc::Receiver<Bytes>,
    client_cfg: Arc<RwLock<Option<Arc<ClientConfig>>>>,
    orgs: OrgCas,
    metrics: Arc<Metrics>,
) {
    let mut backoff = RECONNECT_MIN;
    loop {
        let Some(client) = client_cfg.read().clone() else {
            if rx.recv().await.is_none() {
                return;
            }
            continue;
        };
        let by_org = orgs.read().clone();
        match connect(&addr, client, &by_org).await {
            Ok(conn) => {
                info!(peer = %addr, "connected to peer");
                match carry(&addr, conn, &mut rx, WRITE_TIMEOUT).await {
                    Ended::Closed => return,
                    // Only a connection that worked earns a quick redial: one that connects
                    // and then stalls at once (a half-dead path) backs off like a failed dial.
                    Ended::Broken { carried: true } => backoff = RECONNECT_MIN,
                    Ended::Broken { carried: false } => {}
                }
            }
            Err(e) => debug!(peer = %addr, error = %e, "cannot connect to peer"),
        }
        // Messages queued while the peer was unreachable are stale by the time it is back;
        // Raft resends what still matters.
        drop_queued(&addr, &mut rx, &metrics);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// Writes queued frames to `conn` until a write fails or does not drain within `stall` (a
/// peer that stopped reading, or a path that died without a reset).
async fn carry<S: tokio::io::AsyncWrite + Unpin>(
    addr: &str,
    conn: S,
    rx: &mut mpsc::Receiver<Bytes>,
    stall: Duration,
) -> Ended {
    let mut w = BufWriter::with_capacity(256 * 1024, conn);
    let mut carried = false;
    loop {
        let Some(first) = rx.recv().await else {
            return Ended::Closed;
        };
        let written = timeout(stall, async {
            w.write_all(&first).await?;
            // Coalesce whatever else is queued into the same flush.
            while let Ok(more) = rx.try_recv() {
                w.write_all(&more).await?;
            }
            w.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => carried = true,
            Ok(Err(e)) => {
                debug!(peer = %addr, error = %e, "peer write failed; reconnecting");
                return Ended::Broken { carried };
            }
            Err(_) => {
                warn!(peer = %addr, "peer write stalled for {stall:?}; reconnecting");
                return Ended::Broken { carried };
            }
        }
    }
}

fn drop_queued(addr: &str, rx: &mut mpsc::Receiver<Bytes>, metrics: &Metrics) {
    let mut dropped = 0u64;
    while rx.try_recv().is_ok() {
        dropped += 1;
    }
    if dropped > 0 {
        metrics
            .peer_dropped
            .with_label_values(&[addr])
            .inc_by(dropped);
    }
}

async fn connect(
    addr: &str,
    client: Arc<ClientConfig>,
    by_org: &HashMap<String, Vec<Ca>>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    // A name listed in the hosts file (`--hosts-file`) is dialled at its address there; TLS
    // below still verifies the certificate against the name itself.
    let target = crate::hosts::resolve(addr);
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(&target))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))??;
    tune(&stream)?;
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?,
    };
    let tls = timeout(
        HANDSHAKE_TIMEOUT,
        TlsConnector::from(client).connect(name, stream),
    )
    .await
    .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
    // The server, too, must hold a certificate from the CA of the organization it names.
    let checked = match peer_cert(tls.get_ref().1.peer_certificates().and_then(|c| c.first())) {
        Ok(cert) => peer_trust::check_org(&cert, by_org),
        Err(PeerError::Refused(why)) => Err(why),
        Err(PeerError::Io(e)) => return Err(e),
    };
    checked.map_err(|why| std::io::Error::other(format!("peer {addr} refused: {why}")))?;
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_announced_frame_costs_only_what_arrives() {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            a.write_all(&[7u8; 1000]).await.expect("write");
            drop(a);
        });
        let mut buf = Vec::new();
        let r = read_body(&mut b, MAX_FRAME, &mut buf).await;
        writer.await.expect("writer");
        assert_eq!(
            r.expect_err("the peer went away").kind(),
            std::io::ErrorKind::UnexpectedEof
        );
        assert!(buf.capacity() <= 2 * READ_CHUNK, "{}", buf.capacity());

        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move { a.write_all(&[1u8; 300_000]).await });
        read_body(&mut b, 300_000, &mut buf).await.expect("read");
        assert_eq!(buf.len(), 300_000);
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_is_dropped_and_one_that_reads_is_kept() {
        // The far end never reads: once its buffer is full the write stalls and the
        // connection is given up, although nothing was written before.
        let (near, _far) = tokio::io::duplex(4096);
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(frame("c", &[0u8; 64 * 1024])).await.expect("queue");
        let ended = carry("peer", near, &mut rx, Duration::from_millis(200)).await;
        assert!(matches!(ended, Ended::Broken { carried: false }));

        // A reading peer gets every frame; the loop ends only when the queue closes.
        let (near, mut far) = tokio::io::duplex(4096);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            far.read_to_end(&mut all).await.map(|_| all.len())
        });
        let (tx, mut rx) = mpsc::channel(16);
        for _ in 0..4 {
            tx.send(frame("c", &[1u8; 10_000])).await.expect("queue");
        }
        drop(tx);
        let ended = carry("peer", near, &mut rx, Duration::from_secs(60)).await;
        assert!(matches!(ended, Ended::Closed));
        let got = reader.await.expect("reader").expect("read");
        assert_eq!(got, 4 * (5 + 1 + 10_000));
    }

    #[tokio::test]
    async fn a_peer_that_resets_the_connection_ends_it_after_what_was_carried() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let (tx, mut rx) = mpsc::channel(16);
        let peer = tokio::spawn(async move {
            tx.send(frame("c", b"first")).await.expect("queue");
            // Once the first frame has arrived, hang up; then more is queued.
            let mut first = [0u8; 5 + 1 + 5];
            far.read_exact(&mut first).await.expect("the first frame");
            drop(far);
            tx.send(frame("c", b"second")).await.expect("queue");
            tx
        });
        let ended = carry("peer", near, &mut rx, Duration::from_secs(60)).await;
        let _tx = peer.await.expect("peer");
        assert!(matches!(ended, Ended::Broken { carried: true }));
    }
}
