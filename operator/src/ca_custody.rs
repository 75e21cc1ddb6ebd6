//! What becomes of an organization's CA when its Secret goes missing or its Consortium is
//! deleted. Every node, admin and client identity of an organization chains to its CA, and the
//! CA certificate is written into every channel configuration the organization is a member
//! of: a new CA made in place of a lost one would cut the organization's nodes off their own
//! ledger. So a lost CA is reported with the way back, never replaced, and a deleted
//! consortium's CAs stay while ledger volumes that may need them remain.

use std::collections::BTreeSet;
use tally_api::consortium::OrganizationStatus;

/// What to do when the Secret of an operator-generated CA is not there.
#[derive(Debug, PartialEq, Eq)]
pub enum MissingCa {
    /// The organization never had a CA: make one.
    Generate,
    /// The organization had one (its fingerprint is in the status): say so and make none.
    Refuse(String),
}

/// Decides from the consortium's status whether `org` ever had a CA.
pub fn when_missing(org: &str, ns: &str, sname: &str, known: &[OrganizationStatus]) -> MissingCa {
    let Some(had) = known
        .iter()
        .find(|o| o.name == org && !o.ca_fingerprint.is_empty())
    else {
        return MissingCa::Generate;
    };
    MissingCa::Refuse(format!(
        "the CA Secret {ns}/{sname} of organization {org} (CA fingerprint {fp}) is gone; no \
         new CA is made, as one would cut {org}'s nodes off their ledger. Restore the Secret \
         from your backup (`kubectl apply -f` the saved Secret; its tls.crt must have that \
         fingerprint). If the key is lost for good, remove {org}'s nodes from its channels, \
         delete its Peers and their volumes, and add the organization again under a new name",
        fp = had.ca_fingerprint
    ))
}

/// The ledger volumes in a namespace that no live Peer holds, by name: the claims of
/// `tally-node` pods (`(claim, its tally.dev/peer label)`) whose Peer is gone. Such a
/// volume may be a deleted consortium's ledger, which its CA must outlive; a claim without
/// a peer label counts too, as nothing says whose it is.
pub fn orphan_volumes(
    claims: &[(String, Option<String>)],
    live_peers: &BTreeSet<String>,
) -> Vec<String> {
    claims
        .iter()
        .filter(|(_, peer)| peer.as_ref().is_none_or(|p| !live_peers.contains(p)))
        .map(|(claim, _)| claim.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(org: &str, fp: &str) -> OrganizationStatus {
        OrganizationStatus {
            name: org.into(),
            ca_fingerprint: fp.into(),
            ca_secret: format!("c1-{org}-ca"),
            ca_not_after: String::new(),
            ca_rotation: None,
        }
    }

    #[test]
    fn a_ca_is_made_only_for_an_organization_that_never_had_one() {
        let known = [status("org1", "ab12"), status("org2", "")];
        assert_eq!(
            when_missing("org3", "t1", "c1-org3-ca", &known),
            MissingCa::Generate
        );
        assert_eq!(
            when_missing("org2", "t1", "c1-org2-ca", &known),
            MissingCa::Generate,
            "an entry without a fingerprint never had a CA"
        );
        match when_missing("org1", "t1", "c1-org1-ca", &known) {
            MissingCa::Refuse(m) => {
                assert!(m.contains("t1/c1-org1-ca"), "{m}");
                assert!(m.contains("ab12"), "{m}");
                assert!(m.contains("Restore the Secret"), "{m}");
            }
            other => panic!("a lost CA was replaced: {other:?}"),
        }
    }

    #[test]
    fn volumes_of_peers_that_are_gone_keep_the_cas() {
        let live = BTreeSet::from(["p2".to_string()]);
        let claims = [
            ("data-p1-0".to_string(), Some("p1".to_string())),
            ("data-p2-0".to_string(), Some("p2".to_string())),
            ("data-x-0".to_string(), None),
        ];
        assert_eq!(orphan_volumes(&claims, &live), ["data-p1-0", "data-x-0"]);
        assert!(orphan_volumes(&claims[1..2], &live).is_empty());
    }
}
