//! Changes to whom an organization vouches for: revoking one of its certificates, and the two
//! ledger steps of a CA rotation (add the new CA beside the old one, later remove the old one).
//!
//! Each function only builds the next channel configuration from the one in force; how it is
//! approved (a configuration transaction today, a proposal on the ledger later) is the
//! caller's business. The result is validated, so a change that the nodes would refuse is
//! refused here first with the same reason.

use crate::config::{ChannelConfig, ConfigError, OrgMember};
use crate::hash::Hash;
use crate::identity::{self, IdentityError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrustChangeError {
    #[error("organization {org:?} is not a member of channel {channel}")]
    NotMember { channel: String, org: String },
    #[error("organization {org:?} already revokes certificate {fingerprint}")]
    AlreadyRevoked { org: String, fingerprint: Hash },
    #[error("organization {org:?} already lists this CA")]
    AlreadyListed { org: String },
    #[error("organization {org:?} lists no CA with fingerprint {fingerprint}")]
    NoSuchCa { org: String, fingerprint: Hash },
    #[error("CA {fingerprint} is the only CA of organization {org:?}; add its successor first")]
    LastCa { org: String, fingerprint: Hash },
    #[error("certificate names organization {named:?}, not {org:?}")]
    WrongOrg { org: String, named: String },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("the changed configuration is invalid: {0}")]
    Invalid(#[from] ConfigError),
}

fn member_mut<'a>(
    config: &'a mut ChannelConfig,
    org: &str,
) -> Result<&'a mut OrgMember, TrustChangeError> {
    let channel = config.name.clone();
    config
        .members
        .iter_mut()
        .find(|m| m.name == org)
        .ok_or_else(|| TrustChangeError::NotMember {
            channel,
            org: org.to_string(),
        })
}

fn checked(next: ChannelConfig) -> Result<ChannelConfig, TrustChangeError> {
    next.validate()?;
    Ok(next)
}

/// `config` with the certificate of this [`identity::fingerprint`] revoked by `org`.
pub fn revoke(
    config: &ChannelConfig,
    org: &str,
    fingerprint: Hash,
) -> Result<ChannelConfig, TrustChangeError> {
    let mut next = config.clone();
    let m = member_mut(&mut next, org)?;
    if m.revoked.contains(&fingerprint) {
        return Err(TrustChangeError::AlreadyRevoked {
            org: org.to_string(),
            fingerprint,
        });
    }
    m.revoked.push(fingerprint);
    checked(next)
}

/// `config` with `der` (a certificate of `org`) revoked. The certificate's organization is
/// checked, so that a file from the wrong folder is not revoked in the wrong place.
pub fn revoke_cert(
    config: &ChannelConfig,
    org: &str,
    der: &[u8],
) -> Result<ChannelConfig, TrustChangeError> {
    let named = identity::inspect(der)?.org;
    if named != org {
        return Err(TrustChangeError::WrongOrg {
            org: org.to_string(),
            named,
        });
    }
    revoke(config, org, identity::fingerprint(der))
}

/// `config` with `ca_pem` listed as a further CA of `org`: the first step of a rotation.
pub fn add_ca(
    config: &ChannelConfig,
    org: &str,
    ca_pem: &str,
) -> Result<ChannelConfig, TrustChangeError> {
    let new = identity::fingerprint(&identity::pem_to_der(ca_pem)?);
    let mut next = config.clone();
    let m = member_mut(&mut next, org)?;
    for pem in m.ca_pems() {
        if identity::fingerprint(&identity::pem_to_der(pem)?) == new {
            return Err(TrustChangeError::AlreadyListed {
                org: org.to_string(),
            });
        }
    }
    m.extra_cas.push(ca_pem.to_string());
    checked(next)
}

/// `config` without the CA of this fingerprint in `org`: the last step of a rotation. When
/// it is the current CA, the first further CA becomes the current one.
pub fn remove_ca(
    config: &ChannelConfig,
    org: &str,
    ca_fingerprint: Hash,
) -> Result<ChannelConfig, TrustChangeError> {
    let mut next = config.clone();
    let m = member_mut(&mut next, org)?;
    let mut pems: Vec<String> = m.ca_pems().cloned().collect();
    let mut index = None;
    for (i, pem) in pems.iter().enumerate() {
        if identity::fingerprint(&identity::pem_to_der(pem)?) == ca_fingerprint {
            index = Some(i);
        }
    }
    let Some(i) = index else {
        return Err(TrustChangeError::NoSuchCa {
            org: org.to_string(),
            fingerprint: ca_fingerprint,
        });
    };
    if pems.len() == 1 {
        return Err(TrustChangeError::LastCa {
            org: org.to_string(),
            fingerprint: ca_fingerprint,
        });
    }
    pems.remove(i);
    m.ca_pem = pems.remove(0);
    m.extra_cas = pems;
    checked(next)
}

/// `planned` with the revocations of `in_force` kept for every organization both list.
/// A planner (the operator's, `tallyctl up`'s) knows nothing of revocations, which are made on
/// the ledger; a planned configuration proposed without them would quietly undo them.
pub fn keep_revocations(planned: &ChannelConfig, in_force: &ChannelConfig) -> ChannelConfig {
    let mut next = planned.clone();
    for m in &mut next.members {
        if let Some(current) = in_force.member(&m.name) {
            for fp in &current.revoked {
                if !m.revoked.contains(fp) {
                    m.revoked.push(*fp);
                }
            }
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeRef;
    use crate::identity::{verify_against, OrgCa, Role};
    use crate::Decode;
    use crate::Encode;

    fn config(a: &OrgCa, b: &OrgCa) -> ChannelConfig {
        ChannelConfig::new(
            "ch",
            vec![
                OrgMember::new("a", &a.cert_pem()),
                OrgMember::new("b", &b.cert_pem()),
            ],
            vec![NodeRef {
                id: 1,
                name: "n1".into(),
                org: "a".into(),
                peer_addr: "127.0.0.1:1".into(),
                api_url: "https://127.0.0.1:2".into(),
            }],
            vec![],
        )
    }

    fn now() -> Option<i64> {
        Some(identity::now_unix())
    }

    #[test]
    fn a_revoked_certificate_is_refused_and_its_siblings_are_not() {
        let (a, b) = (
            OrgCa::generate("a").expect("ca"),
            OrgCa::generate("b").expect("ca"),
        );
        let c = config(&a, &b);
        let lost = a.issue(Role::Client, "lost", &[]).expect("issue");
        let kept = a.issue(Role::Client, "kept", &[]).expect("issue");
        let before = c.validate().expect("valid");
        verify_against(&before, &lost.cert_der, now()).expect("trusted before");

        let next = revoke_cert(&c, "a", &lost.cert_der).expect("revoked");
        assert_eq!(next.member("a").expect("a").revoked.len(), 1);
        let cas = next.validate().expect("valid");
        match verify_against(&cas, &lost.cert_der, now()) {
            Err(IdentityError::Revoked(fp)) => {
                assert_eq!(fp, identity::fingerprint(&lost.cert_der))
            }
            other => panic!("revoked certificate: {other:?}"),
        }
        verify_against(&cas, &kept.cert_der, now()).expect("a sibling stays trusted");
        // Twice is refused; so is a certificate of another organization under this one.
        assert!(matches!(
            revoke_cert(&next, "a", &lost.cert_der),
            Err(TrustChangeError::AlreadyRevoked { .. })
        ));
        let theirs = b.issue(Role::Client, "x", &[]).expect("issue");
        assert!(matches!(
            revoke_cert(&c, "a", &theirs.cert_der),
            Err(TrustChangeError::WrongOrg { .. })
        ));
        assert!(matches!(
            revoke(&c, "nobody", Hash([1; 32])),
            Err(TrustChangeError::NotMember { .. })
        ));
        // Organization b listing a's certificate does not revoke it: a revocation speaks
        // for the organization that issued the certificate.
        let mut odd = c.clone();
        odd.members[1]
            .revoked
            .push(identity::fingerprint(&kept.cert_der));
        let cas = odd.validate().expect("valid");
        verify_against(&cas, &kept.cert_der, now()).expect("only a revokes a's certificates");
    }

    #[test]
    fn a_rotation_adds_the_new_ca_then_removes_the_old() {
        let (a, b) = (
            OrgCa::generate("a").expect("ca"),
            OrgCa::generate("b").expect("ca"),
        );
        // Same organization, same subject name, another key.
        let a2 = OrgCa::generate("a").expect("ca");
        let c = config(&a, &b);
        let old = a.issue(Role::Client, "old", &[]).expect("issue");
        let new = a2.issue(Role::Client, "new", &[]).expect("issue");
        let cas = c.validate().expect("valid");
        assert!(verify_against(&cas, &new.cert_der, now()).is_err());

        let both = add_ca(&c, "a", &a2.cert_pem()).expect("added");
        let cas = both.validate().expect("valid");
        verify_against(&cas, &old.cert_der, now()).expect("old CA still trusted");
        verify_against(&cas, &new.cert_der, now()).expect("new CA trusted");
        assert!(matches!(
            add_ca(&both, "a", &a2.cert_pem()),
            Err(TrustChangeError::AlreadyListed { .. })
        ));
        // Another organization's CA cannot be slipped in.
        assert!(matches!(
            add_ca(&c, "a", &b.cert_pem()),
            Err(TrustChangeError::Invalid(ConfigError::BadCa { .. }))
        ));

        let old_fp = identity::fingerprint(&a.cert_der);
        let rotated = remove_ca(&both, "a", old_fp).expect("removed");
        let m = rotated.member("a").expect("a");
        assert_eq!(m.ca_pem, a2.cert_pem());
        assert!(m.extra_cas.is_empty());
        let cas = rotated.validate().expect("valid");
        assert!(verify_against(&cas, &old.cert_der, now()).is_err());
        verify_against(&cas, &new.cert_der, now()).expect("new CA trusted");
        assert!(matches!(
            remove_ca(&rotated, "a", identity::fingerprint(&a2.cert_der)),
            Err(TrustChangeError::LastCa { .. })
        ));
        assert!(matches!(
            remove_ca(&rotated, "a", old_fp),
            Err(TrustChangeError::NoSuchCa { .. })
        ));
    }

    fn member() -> impl proptest::strategy::Strategy<Value = OrgMember> {
        use proptest::collection::vec;
        use proptest::prelude::*;
        (
            "[a-z]{1,6}",
            ".{0,12}",
            vec(".{0,12}", 0..3),
            vec(any::<[u8; 32]>().prop_map(Hash), 0..4),
        )
            .prop_map(|(name, ca_pem, extra_cas, revoked)| OrgMember {
                name,
                ca_pem,
                extra_cas,
                revoked,
            })
    }

    proptest::proptest! {
        /// Any configuration, with or without trust lists, encodes in the one format that
        /// fits it and decodes back to itself (the hash is consensus: one encoding only).
        #[test]
        fn configurations_with_any_trust_lists_round_trip(
            members in proptest::collection::vec(member(), 0..4),
        ) {
            let c = ChannelConfig::new("ch", members, vec![], vec![]);
            let bytes = c.to_bytes();
            let trust = c
                .members
                .iter()
                .any(|m| !m.extra_cas.is_empty() || !m.revoked.is_empty());
            proptest::prop_assert_eq!(bytes[0], if trust { 2 } else { 1 });
            let back = ChannelConfig::from_bytes(&bytes).expect("decodes");
            proptest::prop_assert_eq!(back.to_bytes(), bytes);
            proptest::prop_assert_eq!(back, c);
        }
    }

    #[test]
    fn a_planned_configuration_keeps_the_ledgers_revocations() {
        let (a, b) = (
            OrgCa::generate("a").expect("ca"),
            OrgCa::generate("b").expect("ca"),
        );
        let planned = config(&a, &b);
        let in_force = revoke(&planned, "a", Hash([3; 32])).expect("revoked");
        let kept = keep_revocations(&planned, &in_force);
        assert_eq!(kept, in_force);
        assert_eq!(keep_revocations(&kept, &in_force), in_force, "idempotent");
        // An organization the plan drops takes its revocations with it.
        let mut fewer = planned.clone();
        fewer.members.retain(|m| m.name == "b");
        assert_eq!(keep_revocations(&fewer, &in_force), fewer);
    }

    #[test]
    fn validation_refuses_malformed_trust_lists() {
        let (a, b) = (
            OrgCa::generate("a").expect("ca"),
            OrgCa::generate("b").expect("ca"),
        );
        let c = config(&a, &b);
        let mut dup_ca = c.clone();
        dup_ca.members[0].extra_cas.push(a.cert_pem());
        assert!(matches!(
            dup_ca.validate(),
            Err(ConfigError::DuplicateCa { .. })
        ));
        let mut dup = c.clone();
        dup.members[0].revoked = vec![Hash([7; 32]), Hash([7; 32])];
        assert!(matches!(
            dup.validate(),
            Err(ConfigError::DuplicateRevoked { .. })
        ));
        let mut own_ca = c.clone();
        own_ca.members[0].revoked = vec![identity::fingerprint(&a.cert_der)];
        assert!(matches!(
            own_ca.validate(),
            Err(ConfigError::RevokedCa { .. })
        ));
        let mut many = c.clone();
        for _ in 0..crate::config::MAX_ORG_CAS {
            let extra = OrgCa::generate("a").expect("ca");
            many.members[0].extra_cas.push(extra.cert_pem());
        }
        assert!(matches!(
            many.validate(),
            Err(ConfigError::TooManyCas { .. })
        ));
        let mut garbage = c.clone();
        garbage.members[0].extra_cas.push("not a pem".into());
        assert!(matches!(garbage.validate(), Err(ConfigError::BadCa { .. })));
    }

    #[test]
    fn the_encoding_stays_format_1_until_trust_changes_and_round_trips_after() {
        let (a, b) = (
            OrgCa::generate("a").expect("ca"),
            OrgCa::generate("b").expect("ca"),
        );
        let c = config(&a, &b);
        let plain = c.to_bytes();
        assert_eq!(
            plain[0], 1,
            "a configuration without trust changes keeps format 1"
        );
        let revoked = revoke(&c, "b", Hash([9; 32])).expect("revoked");
        let both =
            add_ca(&revoked, "a", &OrgCa::generate("a").expect("ca").cert_pem()).expect("added");
        let bytes = both.to_bytes();
        assert_eq!(bytes[0], 2);
        assert_eq!(ChannelConfig::from_bytes(&bytes).expect("decodes"), both);
        assert_ne!(both.hash(), c.hash());
        // Format 2 with nothing in it is not canonical.
        let mut forged = plain.clone();
        forged[0] = 2;
        for _ in &c.members {
            forged.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        }
        assert!(ChannelConfig::from_bytes(&forged).is_err());
        // JSON without the new fields (every configuration written before them) still loads.
        let mut json = serde_json::to_value(&c).expect("json");
        assert!(json["members"][0].get("revoked").is_none());
        json["members"][0]
            .as_object_mut()
            .expect("object")
            .remove("extra_cas");
        let back: ChannelConfig = serde_json::from_value(json).expect("old JSON loads");
        assert_eq!(back, c);
        let json = serde_json::to_string(&both).expect("json");
        assert_eq!(
            serde_json::from_str::<ChannelConfig>(&json).expect("back"),
            both
        );
    }
}
