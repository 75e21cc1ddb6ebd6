//! TLS for the etcd baseline, as production etcd runs (and as Tally always runs): a throwaway
//! CA, one certificate for the loopback address that every member serves its client port with
//! and presents to its peers (peers check each other's: mutual TLS, like Tally's nodes), and
//! the bench's client configuration trusting that CA. Clients authenticate to neither system
//! with a certificate: Tally's sign their transactions, etcd's are anonymous.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tally_client::ApiTrust;

/// Where the members find their certificate files, and how the bench connects.
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client: Arc<rustls::ClientConfig>,
}

impl EtcdTls {
    /// Writes `ca.pem`, `member.pem` and `member-key.pem` into `dir`.
    pub fn create(dir: &Path) -> Result<EtcdTls> {
        let ca_key = KeyPair::generate().context("CA key")?;
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tally-bench etcd CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).context("CA certificate")?;

        let key = KeyPair::generate().context("member key")?;
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .context("member certificate names")?;
        params
            .distinguished_name
            .push(DnType::CommonName, "tally-bench etcd member");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        // The same certificate serves clients and dials peers.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .context("member certificate")?;

        let files = EtcdTls {
            ca: dir.join("ca.pem"),
            cert: dir.join("member.pem"),
            key: dir.join("member-key.pem"),
            // The same client configuration as for Tally's nodes (ring, TLS 1.3), trusting
            // this CA: both systems are dialled alike.
            client: Arc::new(
                ApiTrust::from_ca_ders(vec![ca.der().to_vec()])
                    .and_then(|t| t.client_config())
                    .context("the etcd CA as a trust root")?,
            ),
        };
        for (path, pem) in [
            (&files.ca, ca.pem()),
            (&files.cert, cert.pem()),
            (&files.key, key.serialize_pem()),
        ] {
            std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    #[test]
    fn writes_a_chain_the_bench_accepts_for_loopback_only() {
        let dir = tempfile::tempdir().unwrap();
        let tls = EtcdTls::create(dir.path()).unwrap();
        let ca = CertificateDer::from_pem_file(&tls.ca).unwrap();
        let cert = CertificateDer::from_pem_file(&tls.cert).unwrap();
        assert!(rustls::pki_types::PrivateKeyDer::from_pem_file(&tls.key).is_ok());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        let now = UnixTime::now();
        let loopback = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
        assert!(verifier
            .verify_server_cert(&cert, &[], &loopback, &[], now)
            .is_ok());
        let other = ServerName::try_from("etcd.example").unwrap();
        assert!(verifier
            .verify_server_cert(&cert, &[], &other, &[], now)
            .is_err());
    }
}
