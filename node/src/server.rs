//! Listeners: client API (HTTPS, client certificates optional), admin API and peer transport
//! (mutual TLS), and the orderly stop on SIGTERM. No listener speaks plain HTTP: a client that
//! does not start a TLS handshake is disconnected.

use crate::limits::AcceptBackoff;
use crate::listener::{serve_http, Gate, Limits};
use crate::node::Node;
use std::net::SocketAddr;
use std::sync::Arc;
use tally_protocol::identity;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

pub struct Listeners {
    pub api: TcpListener,
    pub peer: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(
        api: SocketAddr,
        peer: SocketAddr,
        admin: SocketAddr,
    ) -> std::io::Result<Listeners> {
        let bind = |a: SocketAddr, what: &'static str| async move {
            TcpListener::bind(a).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen for {what} on {a}: {e}"))
            })
        };
        Ok(Listeners {
            api: bind(api, "the client API").await?,
            peer: bind(peer, "peers").await?,
            admin: bind(admin, "the admin API").await?,
        })
    }
}

/// The bounds of the client and admin listeners.
#[derive(Clone, Debug)]
pub struct ServeLimits {
    pub api: Limits,
    pub admin: Limits,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            api: Limits::default(),
            // Operators, not the public: a few connections suffice.
            admin: Limits {
                max_connections: 64,
                max_per_address: 16,
                ..Limits::default()
            },
        }
    }
}

/// Serves until `stop` turns true.
pub async fn serve(
    node: Arc<Node>,
    l: Listeners,
    limits: ServeLimits,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let n = node.clone();
    let inbox: crate::transport::Inbox =
        Arc::new(move |ch, bytes, sender| n.deliver(ch, bytes, sender));
    let n = node.clone();
    let responder: crate::transport::Responder =
        Arc::new(move |route, body, sender| n.serve_snapshot_chunk(route, body, sender));
    let peer = tokio::spawn(node.transport.clone().serve(l.peer, inbox, responder));
    let admin = tokio::spawn(serve_admin(node.clone(), l.admin, Gate::new(limits.admin)));
    info!(api = %l.api.local_addr()?, "serving");
    let gate = Gate::new(limits.api);
    let mut accept_errors = AcceptBackoff::new("api");
    loop {
        tokio::select! {
            (stream, remote) = accept_errors.accept(&l.api) => {
                let admitted = match gate.admit(remote.ip()) {
                    Ok(a) => a,
                    Err(full) => {
                        debug!(%remote, ?full, "client connection over the limit; closing");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let node = node.clone();
                let gate = gate.clone();
                // The configuration of the moment: member CAs change with the channels.
                let acceptor = TlsAcceptor::from(node.api_tls.read().clone());
                tokio::spawn(async move {
                    let _admitted = admitted;
                    let limits = gate.limits();
                    let Some(tls) = handshake(&acceptor, stream, limits.header_timeout, remote, "client").await else {
                        return;
                    };
                    let ended = serve_http(tls, limits, move |req| {
                        crate::api::handle(node.clone(), req)
                    })
                    .await;
                    debug!(%remote, ?ended, "client connection ended");
                });
            }
            _ = stop.changed() => break,
        }
    }
    peer.abort();
    admin.abort();
    Ok(())
}

async fn serve_admin(node: Arc<Node>, listener: TcpListener, gate: Arc<Gate>) {
    let mut accept_errors = AcceptBackoff::new("admin");
    loop {
        let (stream, remote) = accept_errors.accept(&listener).await;
        let Ok(admitted) = gate.admit(remote.ip()) else {
            debug!(%remote, "admin connection over the limit; closing");
            continue;
        };
        // The accepted CAs follow the channels (`Node::admin_cas`).
        let acceptor = TlsAcceptor::from(node.admin_tls.read().clone());
        let node = node.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            let limits = gate.limits();
            let Some(tls) =
                handshake(&acceptor, stream, limits.header_timeout, remote, "admin").await
            else {
                return;
            };
            // The verifier accepted only certificates from this node's own organization's
            // CAs; one that a channel of this node revokes is turned away here, and on a
            // connection opened before the revocation, at each request.
            let Some(der) = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec())
            else {
                return;
            };
            if node.revokes(&der) {
                warn!(%remote, "admin connection refused: its certificate is revoked");
                return;
            }
            let Ok(caller) = identity::inspect(&der) else {
                return;
            };
            let der = Arc::new(der);
            let ended = serve_http(tls, limits, move |req| {
                let (node, caller, der) = (node.clone(), caller.clone(), der.clone());
                async move {
                    if node.revokes(&der) {
                        return crate::http::error(
                            hyper::StatusCode::FORBIDDEN,
                            "revoked",
                            "the admin certificate is revoked in a channel configuration",
                        );
                    }
                    crate::admin::handle(node, caller, req).await
                }
            })
            .await;
            debug!(%remote, ?ended, "admin connection ended");
        });
    }
}

/// A TLS handshake within `timeout` (a client that opens a connection and says nothing must
/// not hold its place); `None` when it failed, which includes plain HTTP.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: std::time::Duration,
    remote: SocketAddr,
    listener: &'static str,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            debug!(%remote, error = %e, listener, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!(%remote, listener, "TLS handshake timed out");
            None
        }
    }
}
