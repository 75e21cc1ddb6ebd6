//! `/metrics`, `/healthz` and `/readyz` of the operator. Ready means: this replica can serve
//! (leading or standing by); the Lease decides who acts.

use crate::metrics::Metrics;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

pub struct Health {
    pub ready: AtomicBool,
}

fn respond(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn route(path: &str, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    match path {
        "/metrics" => {
            let mut buf = Vec::new();
            let enc = prometheus::TextEncoder::new();
            match prometheus::Encoder::encode(&enc, &metrics.registry.gather(), &mut buf) {
                Ok(()) => respond(StatusCode::OK, "text/plain; version=0.0.4", buf),
                Err(e) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    e.to_string(),
                ),
            }
        }
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" if health.ready.load(Ordering::Relaxed) => {
            respond(StatusCode::OK, "text/plain", "ok\n")
        }
        "/readyz" => respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n"),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// Binds `addr` and serves until the process ends.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (m, h) = (metrics.clone(), health.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let r = route(req.uri().path(), &m, &h);
                    async move { Ok::<_, std::convert::Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }))
}
