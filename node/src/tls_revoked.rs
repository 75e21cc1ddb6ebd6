//! A client-certificate verifier that refuses revoked certificates at the handshake, so that a
//! certificate its organization revoked in a channel's configuration cannot even open a
//! connection to the client or admin listener. The chain itself is checked by the wrapped
//! verifier (webpki against the member CAs).

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::collections::BTreeSet;
use std::sync::Arc;
use tally_protocol::identity::fingerprint;
use tally_protocol::Hash;

#[derive(Debug)]
pub struct RefuseRevoked {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: BTreeSet<Hash>,
}

impl RefuseRevoked {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, revoked: BTreeSet<Hash>) -> Arc<Self> {
        Arc::new(RefuseRevoked { inner, revoked })
    }
}

impl ClientCertVerifier for RefuseRevoked {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if self.revoked.contains(&fingerprint(end_entity.as_ref())) {
            tracing::debug!("TLS client certificate refused: revoked by its organization");
            return Err(Error::InvalidCertificate(CertificateError::Revoked));
        }
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
