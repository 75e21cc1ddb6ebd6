//! Which client API servers a client believes: nodes whose certificate chains to one of the
//! consortium's organization CAs (from the connection profile, or given by hand) and names the
//! host dialled. Optionally the client also presents a certificate of its own.

use crate::error::ClientError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use tally_protocol::identity::pem_to_der;
use tally_protocol::Identity;

/// The CA certificates a client verifies nodes against, and the certificate it presents, if
/// any. Cheap to clone.
#[derive(Clone, Default)]
pub struct ApiTrust {
    roots: Vec<Vec<u8>>,
    client_cert: Option<Arc<Identity>>,
}

impl std::fmt::Debug for ApiTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ApiTrust({} CAs, client certificate: {})",
            self.roots.len(),
            self.client_cert.is_some()
        )
    }
}

impl ApiTrust {
    /// Trusts the CA certificates in `pems` (each a PEM file's content: one certificate).
    pub fn from_ca_pems<S: AsRef<str>>(pems: &[S]) -> Result<ApiTrust, ClientError> {
        let mut roots = Vec::new();
        for p in pems {
            roots.push(pem_to_der(p.as_ref())?);
        }
        ApiTrust::from_ca_ders(roots)
    }

    /// Trusts the CA certificates given as DER.
    pub fn from_ca_ders(roots: Vec<Vec<u8>>) -> Result<ApiTrust, ClientError> {
        let t = ApiTrust {
            roots,
            client_cert: None,
        };
        t.client_config()?;
        Ok(t)
    }

    /// Also trusts `other`'s CAs.
    pub fn and(mut self, other: &ApiTrust) -> ApiTrust {
        self.roots.extend(other.roots.iter().cloned());
        self
    }

    /// The same trust, presenting `id` as a TLS client certificate. Nodes accept it only if
    /// it chains to a member organization's CA.
    pub fn with_client_cert(&self, id: &Identity) -> ApiTrust {
        ApiTrust {
            roots: self.roots.clone(),
            client_cert: Some(Arc::new(id.clone())),
        }
    }

    /// How many CA certificates are trusted.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The rustls configuration (ring provider, TLS 1.3 as the nodes speak it).
    pub fn client_config(&self) -> Result<rustls::ClientConfig, ClientError> {
        let tls = |e: &dyn std::fmt::Display| ClientError::Tls(e.to_string());
        if self.roots.is_empty() {
            return Err(ClientError::Tls(
                "no CA certificate to verify nodes with: give the consortium's organization CAs \
                 (a profile, or --ca FILE)"
                    .into(),
            ));
        }
        let mut store = rustls::RootCertStore::empty();
        for der in &self.roots {
            store
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| ClientError::Tls(format!("CA certificate: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls(&e))?
            .with_root_certificates(store);
        // No ALPN here: the HTTPS connector sets it (and refuses a configuration that has it).
        let cfg = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some(id) => {
                let key_der = pem_to_der(&id.key_pem())?;
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der));
                builder
                    .with_client_auth_cert(vec![CertificateDer::from(id.cert_der.clone())], key)
                    .map_err(|e| ClientError::Tls(format!("client certificate or key: {e}")))?
            }
        };
        Ok(cfg)
    }
}
