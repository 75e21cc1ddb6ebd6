//! Listeners: client API (HTTP), admin API and peer transport (mutual TLS), and the orderly
//! stop on SIGTERM.

use crate::node::Node;
use crate::tls;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tally_protocol::identity;
use tokio::net::TcpListener;
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

/// Serves until `stop` turns true.
pub async fn serve(
    node: Arc<Node>,
    l: Listeners,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let n = node.clone();
    let inbox: crate::transport::Inbox =
        Arc::new(move |ch, bytes, info| n.deliver(ch, bytes, info));
    let peer = tokio::spawn(node.transport.clone().serve(l.peer, inbox));
    let admin_cfg = tls::server_config(&node.identity, std::slice::from_ref(&node.org_ca.der))?;
    let admin = tokio::spawn(serve_admin(
        node.clone(),
        l.admin,
        TlsAcceptor::from(admin_cfg),
    ));
    info!(api = %l.api.local_addr()?, "serving");
    loop {
        tokio::select! {
            accepted = l.api.accept() => {
                let (stream, _) = match accepted {
                    Ok(x) => x,
                    Err(e) => { warn!(error = %e, "accept failed"); continue; }
                };
                let _ = stream.set_nodelay(true);
                let node = node.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let node = node.clone();
                        async move { Ok::<_, std::convert::Infallible>(crate::api::handle(node, req).await) }
                    });
                    if let Err(e) = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc).await {
                        debug!(error = %e, "client connection ended");
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    peer.abort();
    admin.abort();
    Ok(())
}

async fn serve_admin(node: Arc<Node>, listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let node = node.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(t) => t,
                Err(e) => {
                    debug!(%remote, error = %e, "admin TLS handshake failed");
                    return;
                }
            };
            let caller = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| identity::inspect(c.as_ref()).ok());
            let Some(caller) = caller else { return };
            let svc = service_fn(move |req| {
                let node = node.clone();
                let caller = caller.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(crate::admin::handle(node, caller, req).await)
                }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await
            {
                debug!(error = %e, "admin connection ended");
            }
        });
    }
}
