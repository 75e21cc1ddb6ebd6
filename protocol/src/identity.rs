//! X.509 identities: an organization is a CA; nodes, admins and clients hold Ed25519
//! certificates issued by it. The organizational unit of a certificate names its role.

use crate::hash::Hash;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier, VerifyingKey};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, PKCS_ED25519,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use thiserror::Error;
use x509_parser::prelude::*;

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
    #[error("invalid private key: {0}")]
    BadKey(String),
    #[error("certificate is not issued by any member organization of the channel (issuer {0:?})")]
    UnknownIssuer(String),
    #[error("certificate signature does not verify against the CA of organization {0:?}")]
    BadChain(String),
    #[error("certificate is outside its validity period")]
    Expired,
    #[error("certificate {0} is revoked by its organization in the channel configuration")]
    Revoked(Hash),
    #[error("certificate has no role (organizational unit node, admin or client)")]
    NoRole,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Pem(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Node,
    Admin,
    Client,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Admin => "admin",
            Role::Client => "client",
        }
    }
    /// Folder under an organization directory that holds identities of this role.
    pub fn folder(&self) -> &'static str {
        match self {
            Role::Node => "nodes",
            Role::Admin => "admins",
            Role::Client => "clients",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "node" => Ok(Role::Node),
            "admin" => Ok(Role::Admin),
            "client" => Ok(Role::Client),
            o => Err(format!(
                "unknown role {o:?}: expected node, admin or client"
            )),
        }
    }
}

/// What a verified certificate says about its holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    pub org: String,
    pub role: Role,
    pub subject: String,
    pub public_key: [u8; 32],
    pub not_before: i64,
    pub not_after: i64,
    pub issuer: String,
    /// The common name alone (the node, admin or client name).
    #[serde(default)]
    pub common_name: String,
}

impl CertInfo {
    pub fn subject_cn(&self) -> String {
        self.common_name.clone()
    }
}

fn bad(e: impl fmt::Display) -> IdentityError {
    IdentityError::BadCertificate(e.to_string())
}

pub fn cert_hash(der: &[u8]) -> Hash {
    Hash::tagged(b"tally-cert", &[der])
}

/// The plain SHA-256 of a certificate's DER: what `openssl x509 -noout -fingerprint -sha256`
/// prints (without the colons), and how a channel configuration names a revoked certificate.
/// Untagged on purpose, so that an operator can compute it with the tools at hand.
pub fn fingerprint(der: &[u8]) -> Hash {
    use sha2::{Digest, Sha256};
    Hash(Sha256::digest(der).into())
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, IdentityError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(bad)?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the certificate"));
    }
    Ok(cert)
}

fn ed25519_key(cert: &X509Certificate<'_>) -> Result<[u8; 32], IdentityError> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return Err(bad("only Ed25519 keys are accepted"));
    }
    spki.subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| bad("Ed25519 key is not 32 bytes"))
}

fn first_attr<'a>(it: impl Iterator<Item = &'a AttributeTypeAndValue<'a>>) -> Option<String> {
    it.filter_map(|a| a.as_str().ok())
        .next()
        .map(str::to_string)
}

/// Parses a certificate without checking who issued it.
pub fn inspect(der: &[u8]) -> Result<CertInfo, IdentityError> {
    let cert = parse(der)?;
    let subject = cert.subject();
    let org = first_attr(subject.iter_organization()).ok_or_else(|| bad("no organization"))?;
    let role = first_attr(subject.iter_organizational_unit())
        .and_then(|ou| ou.parse().ok())
        .ok_or(IdentityError::NoRole)?;
    Ok(CertInfo {
        org,
        role,
        subject: subject.to_string(),
        public_key: ed25519_key(&cert)?,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        issuer: cert.issuer().to_string(),
        common_name: first_attr(subject.iter_common_name()).unwrap_or_default(),
    })
}

/// An organization's CA certificate as a channel member knows it, with the fingerprints of
/// the certificates the organization has revoked (shared by all of its CAs).
#[derive(Clone, Debug)]
pub struct TrustedCa {
    pub org: String,
    pub der: Vec<u8>,
    subject_raw: Vec<u8>,
    key: VerifyingKey,
    revoked: Arc<BTreeSet<Hash>>,
}

impl TrustedCa {
    pub fn from_der(org: &str, der: &[u8]) -> Result<TrustedCa, IdentityError> {
        let cert = parse(der)?;
        let key = VerifyingKey::from_bytes(&ed25519_key(&cert)?).map_err(bad)?;
        if !cert.is_ca() {
            return Err(bad("CA certificate lacks the CA basic constraint"));
        }
        Ok(TrustedCa {
            org: org.to_string(),
            der: der.to_vec(),
            subject_raw: cert.subject().as_raw().to_vec(),
            key,
            revoked: Arc::default(),
        })
    }

    /// The same CA refusing the certificates whose [`fingerprint`]s are in `revoked`.
    pub fn with_revoked(mut self, revoked: Arc<BTreeSet<Hash>>) -> TrustedCa {
        self.revoked = revoked;
        self
    }

    /// The fingerprints this CA's organization has revoked.
    pub fn revoked(&self) -> &Arc<BTreeSet<Hash>> {
        &self.revoked
    }

    /// Whether the certificate with this [`fingerprint`] is revoked.
    pub fn revokes(&self, fingerprint: &Hash) -> bool {
        self.revoked.contains(fingerprint)
    }

    pub fn from_pem(org: &str, pem: &str) -> Result<TrustedCa, IdentityError> {
        Self::from_der(org, &pem_to_der(pem)?)
    }

    pub fn fingerprint(&self) -> Hash {
        cert_hash(&self.der)
    }

    /// Verifies that `der` was issued by this CA, is valid at `now_s` (Unix seconds; `None`
    /// skips the validity period, for callers that check it against their own clock), belongs
    /// to this CA's organization and is not revoked by it.
    pub fn verify(&self, der: &[u8], now_s: Option<i64>) -> Result<CertInfo, IdentityError> {
        let cert = parse(der)?;
        if cert.issuer().as_raw() != self.subject_raw.as_slice() {
            return Err(IdentityError::UnknownIssuer(cert.issuer().to_string()));
        }
        if cert.signature_algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
            return Err(bad("certificate is not signed with Ed25519"));
        }
        let sig = Signature::from_slice(cert.signature_value.data.as_ref()).map_err(bad)?;
        self.key
            .verify(cert.tbs_certificate.as_ref(), &sig)
            .map_err(|_| IdentityError::BadChain(self.org.clone()))?;
        let info = inspect(der)?;
        if let Some(now_s) = now_s {
            if now_s < info.not_before || now_s > info.not_after {
                return Err(IdentityError::Expired);
            }
        }
        if info.org != self.org {
            return Err(bad(format!(
                "certificate names organization {:?} but was issued by the CA of {:?}",
                info.org, self.org
            )));
        }
        // Last, so that only certificates the organization really issued can be refused as
        // revoked: the reason then speaks for the organization.
        let fp = fingerprint(der);
        if self.revokes(&fp) {
            return Err(IdentityError::Revoked(fp));
        }
        Ok(info)
    }
}

/// Finds the member CA that issued `der` and verifies it. Several CAs may carry the issuer's
/// name (an organization rotating to a new CA of the same name): each is tried, and the
/// certificate is accepted if one of them verifies it.
pub fn verify_against(
    cas: &[TrustedCa],
    der: &[u8],
    now_s: Option<i64>,
) -> Result<CertInfo, IdentityError> {
    let cert = parse(der)?;
    let issuer = cert.issuer().as_raw();
    let mut refusal = None;
    for ca in cas.iter().filter(|ca| ca.subject_raw.as_slice() == issuer) {
        match ca.verify(der, now_s) {
            Ok(info) => return Ok(info),
            // A CA of the same name whose key did not sign it says the least: keep looking,
            // and report any more telling reason another CA gave.
            Err(e @ IdentityError::BadChain(_)) => {
                refusal.get_or_insert(e);
            }
            Err(e) => refusal = Some(e),
        }
    }
    Err(refusal.unwrap_or_else(|| IdentityError::UnknownIssuer(cert.issuer().to_string())))
}

pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, IdentityError> {
    let p = ::pem::parse(pem).map_err(|e| IdentityError::Pem(e.to_string()))?;
    Ok(p.into_contents())
}

pub fn der_to_pem(der: &[u8]) -> String {
    ::pem::encode(&::pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// A certificate with its private key: what a node, admin or client signs with.
#[derive(Clone)]
pub struct Identity {
    pub cert_der: Vec<u8>,
    pub key: SigningKey,
    pub info: CertInfo,
    pub cert_hash: Hash,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Identity({} {} {})",
            self.info.org, self.info.role, self.info.subject
        )
    }
}

impl Identity {
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Identity, IdentityError> {
        let cert_der = pem_to_der(cert_pem)?;
        let key = SigningKey::from_pkcs8_pem(key_pem)
            .map_err(|e| IdentityError::BadKey(e.to_string()))?;
        let info = inspect(&cert_der)?;
        if info.public_key != key.verifying_key().to_bytes() {
            return Err(IdentityError::BadKey(
                "key does not match the certificate".into(),
            ));
        }
        let cert_hash = cert_hash(&cert_der);
        Ok(Identity {
            cert_der,
            key,
            info,
            cert_hash,
        })
    }

    /// Loads `cert.pem` and `key.pem` from a folder written by [`OrgCa::issue_into`].
    pub fn load(dir: &Path) -> Result<Identity, IdentityError> {
        let cert = read(&dir.join("cert.pem"))?;
        let key = read(&dir.join("key.pem"))?;
        Self::from_pem(&cert, &key)
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    pub fn cert_pem(&self) -> String {
        der_to_pem(&self.cert_der)
    }

    pub fn key_pem(&self) -> String {
        ed25519_key_pem(&self.key)
    }

    /// Writes `cert.pem`, `key.pem` (owner-only) and the issuing CA's `ca.pem` into `dir`:
    /// the folder [`Identity::load`] reads.
    pub fn save(&self, dir: &Path, ca_pem: &str) -> Result<(), IdentityError> {
        write_pem(&dir.join("cert.pem"), &self.cert_pem(), false)?;
        write_pem(&dir.join("key.pem"), &self.key_pem(), true)?;
        write_pem(&dir.join("ca.pem"), ca_pem, false)
    }
}

/// An Ed25519 private key as PKCS#8 v1 PEM (RFC 8410: the seed alone). The v2 form with the
/// public key, which the pkcs8 and ring crates write by default, is refused by OpenSSL 3.0
/// (`openssl pkey`: "unsupported"), and keys should open in the tools operators already use.
/// Every reader here (ed25519-dalek, rcgen, rustls) accepts both forms.
pub fn ed25519_key_pem(key: &SigningKey) -> String {
    let seed = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    seed.to_pkcs8_pem(Default::default())
        .map(|z| z.to_string())
        .unwrap_or_default()
}

fn read(p: &Path) -> Result<String, IdentityError> {
    std::fs::read_to_string(p).map_err(|source| IdentityError::Io {
        path: p.to_path_buf(),
        source,
    })
}

/// Writes a PEM file, creating its folder; `private` files are readable by the owner only.
pub fn write_pem(p: &Path, s: &str, private: bool) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: p.to_path_buf(),
        source,
    };
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(io)?;
    }
    std::fs::write(p, s).map_err(io)?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

/// Validity of issued certificates; the CA lives longer than what it issues.
pub const LEAF_VALIDITY_DAYS: i64 = 365;
pub const CA_VALIDITY_DAYS: i64 = 3650;

/// An organization's certificate authority.
pub struct OrgCa {
    pub org: String,
    pub cert_der: Vec<u8>,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl OrgCa {
    pub fn generate(org: &str) -> Result<OrgCa, IdentityError> {
        let key = KeyPair::generate_for(&PKCS_ED25519)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, org);
        dn.push(DnType::CommonName, format!("{org} CA"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = ::time::OffsetDateTime::now_utc();
        params.not_before = now - ::time::Duration::minutes(5);
        params.not_after = now + ::time::Duration::days(CA_VALIDITY_DAYS);
        let cert = params.self_signed(&key)?;
        Ok(OrgCa {
            org: org.to_string(),
            cert_der: cert.der().to_vec(),
            cert,
            key,
        })
    }

    pub fn from_pem(org: &str, cert_pem: &str, key_pem: &str) -> Result<OrgCa, IdentityError> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert_der = pem_to_der(cert_pem)?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)?;
        // rcgen needs a Certificate value as the issuer; re-signing keeps subject and key, which
        // is all that issued certificates refer to.
        let cert = params.self_signed(&key)?;
        Ok(OrgCa {
            org: org.to_string(),
            cert_der,
            cert,
            key,
        })
    }

    /// Reads `ca.pem` and `ca-key.pem` from an organization folder.
    pub fn load(dir: &Path) -> Result<OrgCa, IdentityError> {
        let cert = read(&dir.join("ca.pem"))?;
        let key = read(&dir.join("ca-key.pem"))?;
        let org = inspect_ca_org(&pem_to_der(&cert)?)?;
        Self::from_pem(&org, &cert, &key)
    }

    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        write_pem(&dir.join("ca.pem"), &self.cert_pem(), false)?;
        write_pem(&dir.join("ca-key.pem"), &self.key_pem(), true)
    }

    pub fn cert_pem(&self) -> String {
        der_to_pem(&self.cert_der)
    }

    /// The CA's private key (PKCS#8 PEM, the form OpenSSL reads), for keeping it in a Secret.
    pub fn key_pem(&self) -> String {
        match self.ed25519_key() {
            Some(k) => ed25519_key_pem(&k),
            // Not an Ed25519 key (a brought CA of another kind): as it was given.
            None => self.key.serialize_pem(),
        }
    }

    /// The CA's key as Ed25519, whichever PKCS#8 form it was read from; `None` for a brought
    /// CA of another kind.
    fn ed25519_key(&self) -> Option<SigningKey> {
        SigningKey::from_pkcs8_der(&self.key.serialize_der()).ok()
    }

    pub fn trusted(&self) -> TrustedCa {
        TrustedCa::from_der(&self.org, &self.cert_der).expect("own CA certificate parses")
    }

    /// Issues a certificate for `name` in `role`. `hosts` become subject alternative names
    /// (IP addresses or DNS names) for TLS servers.
    pub fn issue(
        &self,
        role: Role,
        name: &str,
        hosts: &[String],
    ) -> Result<Identity, IdentityError> {
        let key = KeyPair::generate_for(&PKCS_ED25519)?;
        let now = ::time::OffsetDateTime::now_utc();
        let mut params = self.leaf_params(role, name, hosts)?;
        params.not_before = now - ::time::Duration::minutes(5);
        params.not_after = now + ::time::Duration::days(LEAF_VALIDITY_DAYS);
        self.sign_leaf(params, key)
    }

    /// Issues `name` in `role` as a pure function of this CA and the arguments: the key is
    /// derived from the CA's key and the name, the serial number from the certificate's
    /// contents, and validity runs for [`LEAF_VALIDITY_DAYS`] from `not_before` (Unix seconds).
    /// Planning the same resources twice thus gives byte-identical identities, which is what
    /// lets a reconcile loop or a resumed `tallyctl up` compare plans instead of re-issuing.
    pub fn issue_derived(
        &self,
        role: Role,
        name: &str,
        hosts: &[String],
        not_before: i64,
    ) -> Result<Identity, IdentityError> {
        let not_after = not_before + LEAF_VALIDITY_DAYS * 86_400;
        self.issue_derived_until(role, name, hosts, not_before, not_after)
    }

    /// [`issue_derived`](Self::issue_derived) with the end of validity given (Unix seconds),
    /// for certificates whose lifetime the consortium chooses. The key is the same as for any
    /// other window: renewing a certificate keeps the holder's key.
    pub fn issue_derived_until(
        &self,
        role: Role,
        name: &str,
        hosts: &[String],
        not_before: i64,
        not_after: i64,
    ) -> Result<Identity, IdentityError> {
        if not_after <= not_before {
            return Err(bad(format!(
                "certificate for {name} would end ({not_after}) before it starts ({not_before})"
            )));
        }
        // Length-prefixed fields, so that no two (role, name) pairs share an input.
        let mut input = Vec::new();
        let ca_key = self.derivation_key_der();
        for field in [ca_key.as_slice(), role.as_str().as_bytes(), name.as_bytes()] {
            input.extend_from_slice(&(field.len() as u32).to_be_bytes());
            input.extend_from_slice(field);
        }
        let seed = Hash::tagged(b"tally-derived-key-v1", &[&input]);
        let signing = SigningKey::from_bytes(&seed.0);
        let pkcs8 = signing
            .to_pkcs8_pem(Default::default())
            .map_err(|e| IdentityError::BadKey(e.to_string()))?;
        let key = KeyPair::from_pem(&pkcs8)?;
        let start = ::time::OffsetDateTime::from_unix_timestamp(not_before)
            .map_err(|e| bad(format!("not_before {not_before}: {e}")))?;
        let end = ::time::OffsetDateTime::from_unix_timestamp(not_after)
            .map_err(|e| bad(format!("not_after {not_after}: {e}")))?;
        let mut params = self.leaf_params(role, name, hosts)?;
        params.not_before = start;
        params.not_after = end;
        let mut serial_parts: Vec<&[u8]> = vec![&self.cert_der, &seed.0];
        let nb = not_before.to_be_bytes();
        serial_parts.push(&nb);
        // The default lifetime leaves the end out, so certificates issued before lifetimes
        // were configurable keep their serial numbers.
        let na = not_after.to_be_bytes();
        if not_after != not_before + LEAF_VALIDITY_DAYS * 86_400 {
            serial_parts.push(&na);
        }
        for h in hosts {
            serial_parts.push(h.as_bytes());
        }
        let serial = Hash::tagged(b"tally-derived-serial-v1", &serial_parts);
        // A positive 16-byte serial: the top bit clear keeps the DER integer unsigned.
        let mut sn = serial.0[..16].to_vec();
        sn[0] &= 0x7f;
        sn[0] |= 0x01;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&sn));
        self.sign_leaf(params, key)
    }

    /// The CA key's bytes that derived identities are computed from: always the PKCS#8 v2
    /// document (seed and public key) that a generated CA key starts as, however the key was
    /// stored since (OpenSSL-readable v1 files hold the seed alone). Re-saving a CA in another
    /// encoding must never re-key every node.
    fn derivation_key_der(&self) -> Vec<u8> {
        let der = self.key.serialize_der();
        let Some(k) = self.ed25519_key() else {
            return der;
        };
        let pair = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: k.to_bytes(),
            public_key: Some(ed25519_dalek::pkcs8::PublicKeyBytes(
                k.verifying_key().to_bytes(),
            )),
        };
        match pair.to_pkcs8_der() {
            Ok(doc) => doc.as_bytes().to_vec(),
            Err(_) => der,
        }
    }

    fn leaf_params(
        &self,
        role: Role,
        name: &str,
        hosts: &[String],
    ) -> Result<CertificateParams, IdentityError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, self.org.as_str());
        dn.push(DnType::OrganizationalUnitName, role.as_str());
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        for h in hosts {
            params
                .subject_alt_names
                .push(match h.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(h.clone().try_into()?),
                });
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    fn sign_leaf(
        &self,
        params: CertificateParams,
        key: KeyPair,
    ) -> Result<Identity, IdentityError> {
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Identity::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// Writes an identity issued by this CA as `cert.pem`, `key.pem` and `ca.pem` into
    /// `org_dir/<role folder>/<name>/`.
    pub fn save_identity(&self, org_dir: &Path, id: &Identity) -> Result<(), IdentityError> {
        let dir = org_dir
            .join(id.info.role.folder())
            .join(&id.info.common_name);
        id.save(&dir, &self.cert_pem())
    }

    /// Issues an identity and writes `cert.pem`, `key.pem` and the CA's `ca.pem` into
    /// `org_dir/<role folder>/<name>/`.
    pub fn issue_into(
        &self,
        org_dir: &Path,
        role: Role,
        name: &str,
        hosts: &[String],
    ) -> Result<Identity, IdentityError> {
        let id = self.issue(role, name, hosts)?;
        self.save_identity(org_dir, &id)?;
        Ok(id)
    }
}

fn inspect_ca_org(der: &[u8]) -> Result<String, IdentityError> {
    let cert = parse(der)?;
    first_attr(cert.subject().iter_organization()).ok_or_else(|| bad("CA has no organization"))
}

/// Organization name of a CA certificate in PEM.
pub fn ca_org(pem: &str) -> Result<String, IdentityError> {
    inspect_ca_org(&pem_to_der(pem)?)
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_verify_against_their_ca_only() {
        let a = OrgCa::generate("org-a").unwrap();
        let b = OrgCa::generate("org-b").unwrap();
        let id = a.issue(Role::Client, "alice", &[]).unwrap();
        let now = Some(now_unix());
        let info = a.trusted().verify(&id.cert_der, now).unwrap();
        assert_eq!(info.org, "org-a");
        assert_eq!(info.role, Role::Client);
        assert!(matches!(
            b.trusted().verify(&id.cert_der, now),
            Err(IdentityError::UnknownIssuer(_))
        ));
        assert!(matches!(
            verify_against(&[b.trusted()], &id.cert_der, now),
            Err(IdentityError::UnknownIssuer(_))
        ));
        assert!(verify_against(&[b.trusted(), a.trusted()], &id.cert_der, now).is_ok());
        assert!(matches!(
            a.trusted()
                .verify(&id.cert_der, Some(now_unix() + 400 * 86400)),
            Err(IdentityError::Expired)
        ));
    }

    #[test]
    fn a_ca_with_the_same_name_but_another_key_is_not_trusted() {
        let a = OrgCa::generate("org-a").unwrap();
        let impostor = OrgCa::generate("org-a").unwrap();
        let id = impostor.issue(Role::Admin, "mallory", &[]).unwrap();
        assert!(matches!(
            a.trusted().verify(&id.cert_der, Some(now_unix())),
            Err(IdentityError::BadChain(_))
        ));
    }

    #[test]
    fn tampered_certificate_fails() {
        let a = OrgCa::generate("org-a").unwrap();
        let id = a.issue(Role::Node, "n1", &["127.0.0.1".into()]).unwrap();
        let mut der = id.cert_der.clone();
        let n = der.len();
        der[n - 80] ^= 1;
        assert!(a.trusted().verify(&der, Some(now_unix())).is_err());
    }

    #[test]
    fn derived_identities_are_reproducible_and_verify() {
        let a = OrgCa::generate("org-a").unwrap();
        let t = now_unix() - 60;
        let hosts = vec!["127.0.0.1".to_string(), "node1.example".to_string()];
        let x = a.issue_derived(Role::Node, "node1", &hosts, t).unwrap();
        let y = a.issue_derived(Role::Node, "node1", &hosts, t).unwrap();
        assert_eq!(x.cert_der, y.cert_der);
        assert_eq!(x.key.to_bytes(), y.key.to_bytes());
        let info = a.trusted().verify(&x.cert_der, Some(now_unix())).unwrap();
        assert_eq!(info.common_name, "node1");
        assert_eq!(info.not_before, t);
        // Another name, role, time or CA gives another key or certificate.
        let other = a.issue_derived(Role::Node, "node2", &hosts, t).unwrap();
        assert_ne!(other.key.to_bytes(), x.key.to_bytes());
        let admin = a.issue_derived(Role::Admin, "node1", &[], t).unwrap();
        assert_ne!(admin.key.to_bytes(), x.key.to_bytes());
        let later = a.issue_derived(Role::Node, "node1", &hosts, t + 1).unwrap();
        assert_ne!(later.cert_der, x.cert_der);
        let b = OrgCa::generate("org-a").unwrap();
        let from_b = b.issue_derived(Role::Node, "node1", &hosts, t).unwrap();
        assert_ne!(from_b.key.to_bytes(), x.key.to_bytes());
        // The derivation input is the generated key's own encoding (identities derived before
        // keys were written as PKCS#8 v1 stay the same).
        assert_eq!(a.derivation_key_der(), a.key.serialize_der());
        // A reloaded CA derives the same identities.
        let dir = std::env::temp_dir().join(format!("tally-derived-{}", rand::random::<u64>()));
        a.save(&dir).unwrap();
        let again = OrgCa::load(&dir).unwrap();
        let z = again.issue_derived(Role::Node, "node1", &hosts, t).unwrap();
        assert_eq!(z.key.to_bytes(), x.key.to_bytes());
        assert!(a.trusted().verify(&z.cert_der, Some(now_unix())).is_ok());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn identities_round_trip_through_disk() {
        let dir = std::env::temp_dir().join(format!("tally-id-{}", rand::random::<u64>()));
        let a = OrgCa::generate("org-a").unwrap();
        a.save(&dir).unwrap();
        let loaded = OrgCa::load(&dir).unwrap();
        let id = loaded.issue_into(&dir, Role::Client, "c1", &[]).unwrap();
        let back = Identity::load(&dir.join("clients/c1")).unwrap();
        assert_eq!(back.cert_der, id.cert_der);
        // issued by the reloaded CA, verified by the original
        assert!(a.trusted().verify(&back.cert_der, Some(now_unix())).is_ok());
        std::fs::remove_dir_all(&dir).ok();
    }
}
