//! One HTTP/1.1 keep-alive connection per benchmark client, the same code for every system;
//! over TLS for Tally (whose client API speaks nothing else), in clear for the baselines as
//! they are usually run on loopback. A request that fails at the transport drops the
//! connection; the next one dials again (a new TLS handshake included).

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where a connection goes, and whether over TLS (verifying the server by its IP address).
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Target {
    pub fn tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Target {
        Target {
            addr,
            tls: Some(tokio_rustls::TlsConnector::from(config)),
        }
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target { addr, tls: None }
    }
}

pub struct Conn {
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// How many times this connection was (re)established.
    pub dials: u64,
}

pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Conn {
    pub fn new(target: impl Into<Target>) -> Conn {
        let Target { addr, tls } = target.into();
        Conn {
            addr,
            tls,
            host: addr.to_string(),
            sender: None,
            dials: 0,
        }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        let usable = matches!(&self.sender, Some(s) if !s.is_closed());
        if !usable {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            stream.set_nodelay(true).ok();
            let sender = match &self.tls {
                None => {
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .context("HTTP handshake")?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    sender
                }
                Some(tls) => {
                    let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
                    let stream = tls
                        .connect(name, stream)
                        .await
                        .with_context(|| format!("TLS handshake with {}", self.addr))?;
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .context("HTTP handshake")?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    sender
                }
            };
            self.dials += 1;
            self.sender = Some(sender);
        }
        let s = self.sender.as_mut().expect("sender set above");
        s.ready().await.context("connection not ready")?;
        Ok(s)
    }

    pub async fn post(&mut self, path: &str, content_type: &str, body: Bytes) -> Result<Response> {
        let req = hyper::Request::post(path)
            .header(hyper::header::HOST, self.host.as_str())
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| anyhow!("building request: {e}"))?;
        self.send(req).await
    }

    pub async fn get(&mut self, path: &str) -> Result<Response> {
        self.get_with(path, &[]).await
    }

    /// A GET with extra headers (Tally's signed reads carry the signature in two).
    pub async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
        let mut req = hyper::Request::get(path).header(hyper::header::HOST, self.host.as_str());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| anyhow!("building request: {e}"))?;
        self.send(req).await
    }

    async fn send(&mut self, req: hyper::Request<Full<Bytes>>) -> Result<Response> {
        let result = async {
            let s = self.sender().await?;
            let resp = s.send_request(req).await.context("sending request")?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .context("reading response")?
                .to_bytes();
            Ok(Response { status, body })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}
