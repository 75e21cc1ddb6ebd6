//! Raw HTTP/1.1 requests, for what the client library would refuse to send. `https://` URLs
//! (every node's client API) go over TLS without checking the server's certificate: these
//! helpers attack or probe a node, they do not stand for a client that must know whom it
//! talks to (the SDK verifies, and tests/tests/adversarial.rs proves it does).

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
        let mut sender = if uri.scheme_str() == Some("https") {
            let tls = unverified_tls()
                .connect(server_name(authority.host())?, stream)
                .await
                .map_err(|e| format!("TLS handshake with {authority}: {e}"))?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(conn);
            sender
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(conn);
            sender
        };
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

fn server_name(host: &str) -> Result<rustls_pki_types::ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))
}

/// A TLS connector that accepts any server certificate (see the module's comment).
pub fn unverified_tls() -> tokio_rustls::TlsConnector {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("rustls protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
}

#[derive(Debug)]
struct AnyServer(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
