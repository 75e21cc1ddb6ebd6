//! TLS for every listener: mutual TLS for the peer and admin listeners, server TLS with
//! optional client certificates for the client API. Node-to-node trust follows the channels a
//! node serves: the set of member CAs grows as channels are joined, and new connections use it.

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::BTreeSet;
use std::sync::Arc;
use tally_protocol::{Hash, Identity};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS client verifier: {0}")]
    Verifier(String),
    #[error("no trusted CA certificates")]
    NoRoots,
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(cas: &[Vec<u8>]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for der in cas {
        store.add(CertificateDer::from(der.clone()))?;
    }
    if store.is_empty() {
        return Err(TlsError::NoRoots);
    }
    Ok(Arc::new(store))
}

fn key(id: &Identity) -> PrivateKeyDer<'static> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let der = id
        .key
        .to_pkcs8_der()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default();
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der))
}

/// A server that requires a client certificate issued by one of `cas`.
pub fn server_config(id: &Identity, cas: &[Vec<u8>]) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(cas)?, provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![CertificateDer::from(id.cert_der.clone())], key(id))?;
    Ok(Arc::new(cfg))
}

/// The client API's server: TLS 1.3 only, presenting the node's certificate (issued by its
/// organization CA, naming the node's DNS names and addresses). A client certificate is
/// optional; one that is presented must chain to one of `cas` (the member organizations of
/// the channels the node serves) and not be `revoked` (by fingerprint), or the handshake fails.
pub fn api_server_config(
    id: &Identity,
    cas: &[Vec<u8>],
    revoked: BTreeSet<Hash>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let webpki = WebPkiClientVerifier::builder_with_provider(roots(cas)?, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let verifier = crate::tls_revoked::RefuseRevoked::new(webpki, revoked);
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![CertificateDer::from(id.cert_der.clone())], key(id))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A client that presents `id` and trusts servers issued by one of `cas`.
pub fn client_config(id: &Identity, cas: &[Vec<u8>]) -> Result<Arc<ClientConfig>, TlsError> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(cas)?)
        .with_client_auth_cert(vec![CertificateDer::from(id.cert_der.clone())], key(id))?;
    Ok(Arc::new(cfg))
}
