//! HTTPS for the console in a cluster: a certificate and key from a Secret, and optionally a
//! CA whose client certificates the console requires (mutual TLS).

use crate::error::ConsoleError;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate issued by this CA.
    pub client_ca: Option<PathBuf>,
}

fn bad(path: &Path, why: impl std::fmt::Display) -> ConsoleError {
    ConsoleError::Config(format!("{}: {why}", path.display()))
}

fn pems(path: &Path) -> Result<Vec<pem::Pem>, ConsoleError> {
    let text = std::fs::read(path).map_err(|e| bad(path, e))?;
    let all = pem::parse_many(&text).map_err(|e| bad(path, e))?;
    if all.is_empty() {
        return Err(bad(path, "no PEM block"));
    }
    Ok(all)
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConsoleError> {
    let certs: Vec<_> = pems(path)?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| CertificateDer::from(p.into_contents()))
        .collect();
    if certs.is_empty() {
        return Err(bad(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, ConsoleError> {
    for p in pems(path)? {
        let tag = p.tag().to_string();
        let der = p.into_contents();
        match tag.as_str() {
            "PRIVATE KEY" => return Ok(PrivatePkcs8KeyDer::from(der).into()),
            "RSA PRIVATE KEY" => return Ok(PrivatePkcs1KeyDer::from(der).into()),
            "EC PRIVATE KEY" => return Ok(PrivateSec1KeyDer::from(der).into()),
            _ => {}
        }
    }
    Err(bad(path, "no private key block"))
}

pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, ConsoleError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConsoleError::Config(format!("TLS: {e}")))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|e| bad(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs(&files.cert)?, key(&files.key)?)
        .map_err(|e| ConsoleError::Config(format!("TLS certificate and key: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
