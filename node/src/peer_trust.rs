//! Who may speak for which node on the peer port.
//!
//! TLS alone only proves that a peer's certificate chains to *some* CA this node trusts (the
//! union over its channels). Any member organization can issue a certificate naming another
//! organization or another organization's node, so three more checks bind a message to its
//! sender: the certificate must be issued by the CA of the organization it names (checked per
//! connection), and for each Raft message the certificate's node name and organization must be
//! those of the node whose Raft id the message claims, in the channel's configuration in force,
//! with that channel's CA for the organization.
//!
//! A certificate its organization revoked in a channel's configuration is refused on every
//! connection while any channel this node serves revokes it, and for each message of a channel
//! that revokes it (so a connection opened before the revocation stops speaking at once).

use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tally_protocol::identity::{self, now_unix, CertInfo, IdentityError, Role, TrustedCa};
use tally_protocol::{Hash, NodeRef};

/// An organization CA with its fingerprint, the key of the per-connection verification cache.
#[derive(Clone, Debug)]
pub struct Ca {
    pub fingerprint: Hash,
    pub ca: TrustedCa,
}

impl Ca {
    pub fn new(ca: TrustedCa) -> Ca {
        Ca {
            fingerprint: ca.fingerprint(),
            ca,
        }
    }
}

/// The certificate a peer connection presented, with the CAs it was found to be issued by.
pub struct PeerCert {
    pub der: Vec<u8>,
    pub info: CertInfo,
    /// What revocations name it by (see [`identity::fingerprint`]).
    pub fingerprint: Hash,
    /// CAs (by fingerprint) that verified this certificate: checking a signature per Raft
    /// message would cost more than the message.
    verified: Mutex<Vec<Hash>>,
    warned: AtomicBool,
}

impl PeerCert {
    /// Reads a certificate that TLS already chained to a trusted CA; it must be a node's.
    pub fn new(der: Vec<u8>) -> Result<PeerCert, IdentityError> {
        let info = identity::inspect(&der)?;
        if info.role != Role::Node {
            return Err(IdentityError::BadCertificate(format!(
                "peer certificate has role {}, not node",
                info.role
            )));
        }
        Ok(PeerCert {
            fingerprint: identity::fingerprint(&der),
            der,
            info,
            verified: Mutex::new(Vec::new()),
            warned: AtomicBool::new(false),
        })
    }

    /// Whether `ca` issued this certificate, for the organization the certificate names, and
    /// it is valid now.
    pub fn issued_by(&self, ca: &Ca) -> bool {
        if self.verified.lock().contains(&ca.fingerprint) {
            return true;
        }
        if ca.ca.org != self.info.org || ca.ca.verify(&self.der, Some(now_unix())).is_err() {
            return false;
        }
        self.verified.lock().push(ca.fingerprint);
        true
    }

    /// Whether one of `cas` (none when absent) issued this certificate.
    fn issued_by_any(&self, cas: Option<&Vec<Ca>>) -> bool {
        cas.is_some_and(|cas| cas.iter().any(|ca| self.issued_by(ca)))
    }

    /// Whether the organization behind `cas` revoked this certificate. Not cached: a
    /// revocation must reach connections that were verified before it.
    fn revoked_by(&self, cas: Option<&Vec<Ca>>) -> bool {
        cas.is_some_and(|cas| cas.iter().any(|ca| ca.ca.revokes(&self.fingerprint)))
    }

    /// True the first time it is asked: one warning per connection, not one per message.
    pub fn first_refusal(&self) -> bool {
        !self.warned.swap(true, Ordering::Relaxed)
    }
}

/// The organization CAs of every channel a node serves.
#[derive(Clone, Debug, Default)]
pub struct TrustMap {
    /// channel → organization → CAs (the configuration in force and the join hint may differ).
    channels: HashMap<String, HashMap<String, Vec<Ca>>>,
}

impl TrustMap {
    /// Builds the map from each channel's member CAs (every CA of each organization, each
    /// knowing what the organization revoked). An organization that left a channel keeps its
    /// last CAs: Raft still talks to a departing node until the change completes, and which
    /// node ids are accepted at all is decided by the channel, not here.
    pub fn build(
        previous: &TrustMap,
        channels: impl IntoIterator<Item = (String, Vec<TrustedCa>)>,
    ) -> TrustMap {
        let mut out = TrustMap::default();
        for (channel, members) in channels {
            let mut orgs: HashMap<String, Vec<Ca>> = HashMap::new();
            for ca in members {
                add_ca(orgs.entry(ca.org.clone()).or_default(), Ca::new(ca));
            }
            if let Some(old) = previous.channels.get(&channel) {
                for (org, cas) in old {
                    orgs.entry(org.clone()).or_insert_with(|| cas.clone());
                }
            }
            out.channels.insert(channel, orgs);
        }
        out
    }

    /// Every CA by organization, over all channels: what a connection is checked against.
    /// A CA listed by several channels refuses what any of them revokes.
    pub fn by_org(&self) -> HashMap<String, Vec<Ca>> {
        let mut out: HashMap<String, Vec<Ca>> = HashMap::new();
        for orgs in self.channels.values() {
            for (org, cas) in orgs {
                let list = out.entry(org.clone()).or_default();
                for ca in cas {
                    add_ca(list, ca.clone());
                }
            }
        }
        out
    }

    /// Fingerprints of every certificate revoked in any channel this node serves: the client
    /// and admin listeners refuse them at the handshake.
    pub fn revoked(&self) -> BTreeSet<Hash> {
        self.channels
            .values()
            .flat_map(|orgs| orgs.values().flatten())
            .flat_map(|ca| ca.ca.revoked().iter().copied())
            .collect()
    }

    /// Every CA certificate (DER), for the TLS handshake.
    pub fn all_der(&self) -> Vec<Vec<u8>> {
        self.by_org()
            .into_values()
            .flatten()
            .map(|c| c.ca.der)
            .collect()
    }

    /// Whether `sender` may speak for `node` on `channel`: same node name, same organization,
    /// and issued by the channel's CA for that organization.
    pub fn admit(&self, channel: &str, node: &NodeRef, sender: &PeerCert) -> Result<(), String> {
        if sender.info.common_name != node.name || sender.info.org != node.org {
            return Err(format!(
                "certificate of node {:?} ({}) claims the Raft id {} of node {:?} ({})",
                sender.info.common_name, sender.info.org, node.id, node.name, node.org
            ));
        }
        let cas = self.channels.get(channel).and_then(|o| o.get(&node.org));
        if sender.revoked_by(cas) {
            return Err(format!(
                "certificate {} of node {:?} is revoked by organization {} in channel {channel}",
                sender.fingerprint, node.name, node.org
            ));
        }
        if sender.issued_by_any(cas) {
            Ok(())
        } else {
            Err(format!(
                "certificate of node {:?} is not issued by the CA that channel {channel} knows for organization {}",
                node.name, node.org
            ))
        }
    }
}

/// Adds `ca` to an organization's list; the same CA from another channel adds that
/// channel's revocations to it.
fn add_ca(list: &mut Vec<Ca>, ca: Ca) {
    match list.iter_mut().find(|c| c.fingerprint == ca.fingerprint) {
        None => list.push(ca),
        Some(c) if c.ca.revoked() != ca.ca.revoked() => {
            let union: BTreeSet<Hash> =
                c.ca.revoked()
                    .iter()
                    .chain(ca.ca.revoked().iter())
                    .copied()
                    .collect();
            c.ca = c.ca.clone().with_revoked(Arc::new(union));
        }
        Some(_) => {}
    }
}

/// Checks a connection's certificate against the CA of the organization it names, and
/// against what that organization revoked.
pub fn check_org(cert: &PeerCert, by_org: &HashMap<String, Vec<Ca>>) -> Result<(), String> {
    let cas = by_org.get(&cert.info.org);
    if cert.revoked_by(cas) {
        return Err(format!(
            "certificate {} of {:?} is revoked by organization {}",
            cert.fingerprint, cert.info.common_name, cert.info.org
        ));
    }
    if cert.issued_by_any(cas) {
        Ok(())
    } else {
        Err(format!(
            "certificate of {:?} names organization {:?} but is not issued by that organization's CA (issuer {})",
            cert.info.common_name, cert.info.org, cert.info.issuer
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::OrgCa;

    fn node(id: u64, name: &str, org: &str) -> NodeRef {
        NodeRef {
            id,
            name: name.into(),
            org: org.into(),
            peer_addr: String::new(),
            api_url: String::new(),
        }
    }

    #[test]
    fn binds_certificates_to_their_org_ca_and_node() {
        let a = OrgCa::generate("a").expect("ca");
        let b = OrgCa::generate("b").expect("ca");
        let map = TrustMap::build(
            &TrustMap::default(),
            [("ch".to_string(), vec![a.trusted(), b.trusted()])],
        );
        let by_org = map.by_org();
        let honest =
            PeerCert::new(a.issue(Role::Node, "na", &[]).expect("issue").cert_der).expect("cert");
        assert!(check_org(&honest, &by_org).is_ok());
        assert!(map.admit("ch", &node(1, "na", "a"), &honest).is_ok());
        // Another node's Raft id, same organization.
        assert!(map.admit("ch", &node(2, "na2", "a"), &honest).is_err());
        // Not a channel this map knows.
        assert!(map.admit("other", &node(1, "na", "a"), &honest).is_err());

        // Organization a's CA issuing a certificate that says O=b, CN=nb.
        let mut forger = OrgCa::from_pem("a", &a.cert_pem(), &a.key_pem()).expect("ca");
        forger.org = "b".into();
        let forged = PeerCert::new(forger.issue(Role::Node, "nb", &[]).expect("issue").cert_der)
            .expect("cert");
        assert_eq!(forged.info.org, "b");
        assert!(check_org(&forged, &by_org).is_err());
        assert!(map.admit("ch", &node(2, "nb", "b"), &forged).is_err());

        let admin = a.issue(Role::Admin, "adm", &[]).expect("issue").cert_der;
        assert!(PeerCert::new(admin).is_err());
    }

    #[test]
    fn a_departed_org_keeps_its_ca_until_restart() {
        let a = OrgCa::generate("a").expect("ca");
        let first = TrustMap::build(
            &TrustMap::default(),
            [("ch".to_string(), vec![a.trusted()])],
        );
        let later = TrustMap::build(&first, [("ch".to_string(), vec![])]);
        assert_eq!(later.all_der().len(), 1);
    }

    #[test]
    fn a_revoked_node_certificate_is_refused_per_connection_and_per_message() {
        let a = OrgCa::generate("a").expect("ca");
        let cert = a.issue(Role::Node, "na", &[]).expect("issue").cert_der;
        let open = TrustMap::build(
            &TrustMap::default(),
            [
                ("ch".to_string(), vec![a.trusted()]),
                ("other".to_string(), vec![a.trusted()]),
            ],
        );
        // Verified (and cached) before the revocation, as a live connection would be.
        let peer = PeerCert::new(cert.clone()).expect("cert");
        assert!(check_org(&peer, &open.by_org()).is_ok());
        assert!(open.admit("ch", &node(1, "na", "a"), &peer).is_ok());

        let revoked = Arc::new(BTreeSet::from([identity::fingerprint(&cert)]));
        let map = TrustMap::build(
            &open,
            [
                ("ch".to_string(), vec![a.trusted().with_revoked(revoked)]),
                ("other".to_string(), vec![a.trusted()]),
            ],
        );
        let why = map
            .admit("ch", &node(1, "na", "a"), &peer)
            .expect_err("revoked in ch");
        assert!(why.contains("revoked"), "{why}");
        // A channel that does not revoke it still hears it; a new connection is refused,
        // since one channel of this node revokes it.
        assert!(map.admit("other", &node(1, "na", "a"), &peer).is_ok());
        let why = check_org(&peer, &map.by_org()).expect_err("refused at connection");
        assert!(why.contains("revoked"), "{why}");
        assert_eq!(map.revoked().len(), 1);
        // A sibling certificate of the same organization is untouched.
        let sibling =
            PeerCert::new(a.issue(Role::Node, "nb", &[]).expect("issue").cert_der).expect("cert");
        assert!(check_org(&sibling, &map.by_org()).is_ok());
    }
}
