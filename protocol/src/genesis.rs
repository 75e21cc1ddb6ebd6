//! A channel's creation: no organization becomes a member of a channel without its own admin's
//! signature over the channel's genesis configuration. A node creates or joins a channel only
//! when the request carries an approval from every member organization of its genesis, so an
//! operator, or a member, holding some organizations' keys cannot place another organization's
//! nodes (or name) in a channel that organization never agreed to.
//!
//! The approval signs the genesis hash, so it holds for exactly that genesis: its members,
//! consenters, policies and batch settings. It is checked again whenever a node joins the
//! channel, possibly years later, so the admin certificate's validity period is not: like a
//! signature on a contract, it speaks for the day it was given (a certificate the genesis
//! revokes still does not count). Ed25519 signatures are deterministic: an operator signing
//! again for the same genesis produces the same approval.

use crate::codec::{DecodeError, Reader, Writer};
use crate::config::ChannelConfig;
use crate::config_update::Approval;
use crate::hash::Hash;
use crate::identity::{self, Identity, Role, TrustedCa};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use thiserror::Error;

/// What a node receives to create or join a channel: its genesis, the organizations'
/// approvals of it and, to join a channel that has changed since, the configuration in force.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChannelCreation {
    pub genesis: ChannelConfig,
    #[serde(default)]
    pub approvals: Vec<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ChannelConfig>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GenesisError {
    #[error("approval {index}: {reason}")]
    BadApproval { index: usize, reason: String },
    #[error("the genesis of channel {channel} (hash {hash}) is not approved by {missing:?}: every member organization's admin must sign it (`tallyctl channel approve-genesis`)")]
    NotApproved {
        channel: String,
        hash: Hash,
        missing: Vec<String>,
    },
}

/// What an admin signs to approve creating the channel of `genesis`.
pub fn digest(genesis: &ChannelConfig) -> Hash {
    Hash::tagged(
        b"tally-genesis-approval",
        &[genesis.name.as_bytes(), &genesis.hash().0],
    )
}

/// `admin`'s approval of `genesis`.
pub fn approve(genesis: &ChannelConfig, admin: &Identity) -> Approval {
    Approval {
        certificate: admin.cert_der.clone(),
        signature: admin.sign(&digest(genesis).0).to_vec(),
    }
}

/// The organization whose admin gave `approval` of `genesis` (member CAs `cas`), or why it
/// does not count.
pub fn approver(
    genesis: &ChannelConfig,
    cas: &[TrustedCa],
    approval: &Approval,
) -> Result<String, String> {
    let info = identity::verify_against(cas, &approval.certificate, None)
        .map_err(|e| format!("certificate rejected: {e}"))?;
    if info.role != Role::Admin {
        return Err(format!(
            "{} is a {} certificate; only an organization's admins approve a channel's genesis",
            info.subject, info.role
        ));
    }
    if genesis.member(&info.org).is_none() {
        return Err(format!(
            "organization {} is not a member of channel {}",
            info.org, genesis.name
        ));
    }
    let key = crate::sig::public_key(&info.public_key)
        .ok_or_else(|| "certificate key is not a valid Ed25519 key".to_string())?;
    if !crate::sig::verify(&key, &approval.signature, &digest(genesis).0) {
        return Err(format!(
            "the signature of {} ({}) does not cover this genesis (hash {})",
            info.subject,
            info.org,
            genesis.hash()
        ));
    }
    Ok(info.org)
}

/// Members of `genesis` that have not approved it, in order; an approval that does not verify
/// is an error, so that a forged or misdirected one is reported rather than ignored.
pub fn missing(
    genesis: &ChannelConfig,
    cas: &[TrustedCa],
    approvals: &[Approval],
) -> Result<Vec<String>, GenesisError> {
    let mut approved = BTreeSet::new();
    for (index, a) in approvals.iter().enumerate() {
        let org = approver(genesis, cas, a)
            .map_err(|reason| GenesisError::BadApproval { index, reason })?;
        approved.insert(org);
    }
    Ok(genesis
        .members
        .iter()
        .map(|m| m.name.clone())
        .filter(|m| !approved.contains(m))
        .collect())
}

/// Checks that every member organization of `genesis` approved it.
pub fn check(
    genesis: &ChannelConfig,
    cas: &[TrustedCa],
    approvals: &[Approval],
) -> Result<(), GenesisError> {
    let missing = missing(genesis, cas, approvals)?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(GenesisError::NotApproved {
            channel: genesis.name.clone(),
            hash: genesis.hash(),
            missing,
        })
    }
}

/// The canonical bytes of a list of approvals, as a node keeps them beside the genesis.
pub fn approvals_to_bytes(approvals: &[Approval]) -> Vec<u8> {
    let mut w = Writer::default();
    w.seq(approvals);
    w.into_inner()
}

pub fn approvals_from_bytes(bytes: &[u8]) -> Result<Vec<Approval>, DecodeError> {
    let mut r = Reader::new(bytes);
    let v = r.seq("genesis.approvals")?;
    r.finish()?;
    Ok(v)
}

/// `approvals` with at most one per organization (the first that verifies), dropping those
/// that do not verify for `genesis`: merging approvals gathered from several places.
pub fn merge(
    genesis: &ChannelConfig,
    cas: &[TrustedCa],
    approvals: impl IntoIterator<Item = Approval>,
) -> Vec<Approval> {
    let mut seen = BTreeSet::new();
    approvals
        .into_iter()
        .filter(|a| match approver(genesis, cas, a) {
            Ok(org) => seen.insert(org),
            Err(_) => false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NodeRef, OrgMember};
    use crate::identity::OrgCa;

    struct Org {
        ca: OrgCa,
        admin: Identity,
    }

    fn org(name: &str) -> Org {
        let ca = OrgCa::generate(name).unwrap();
        let admin = ca.issue(Role::Admin, "admin", &[]).unwrap();
        Org { ca, admin }
    }

    fn genesis(orgs: &[&Org]) -> ChannelConfig {
        let members = orgs
            .iter()
            .map(|o| OrgMember::new(&o.ca.org, &o.ca.cert_pem()))
            .collect();
        let consenters = orgs
            .iter()
            .enumerate()
            .map(|(i, o)| NodeRef {
                id: i as u64 + 1,
                name: format!("n{i}"),
                org: o.ca.org.clone(),
                peer_addr: format!("127.0.0.1:{}", 7000 + i),
                api_url: format!("https://127.0.0.1:{}", 8000 + i),
            })
            .collect();
        ChannelConfig::new("ledger", members, consenters, vec![])
    }

    #[test]
    fn every_member_must_approve() {
        let (a, b) = (org("a"), org("b"));
        let g = genesis(&[&a, &b]);
        let cas = g.validate().unwrap();
        let only_a = [approve(&g, &a.admin)];
        match check(&g, &cas, &only_a) {
            Err(GenesisError::NotApproved { missing, .. }) => assert_eq!(missing, ["b"]),
            other => panic!("{other:?}"),
        }
        let both = [approve(&g, &a.admin), approve(&g, &b.admin)];
        check(&g, &cas, &both).unwrap();
        // The same organization twice is still one organization.
        let twice = [approve(&g, &a.admin), approve(&g, &a.admin)];
        assert!(check(&g, &cas, &twice).is_err());
    }

    #[test]
    fn an_approval_of_another_genesis_does_not_count() {
        let (a, b) = (org("a"), org("b"));
        let g = genesis(&[&a, &b]);
        let mut other = g.clone();
        other.batch.max_txs += 1;
        let cas = g.validate().unwrap();
        let approvals = [approve(&g, &a.admin), approve(&other, &b.admin)];
        match check(&g, &cas, &approvals) {
            Err(GenesisError::BadApproval { index: 1, reason }) => {
                assert!(reason.contains("does not cover"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_client_or_a_forged_admin_cannot_approve_for_an_organization() {
        let (a, b) = (org("a"), org("b"));
        let g = genesis(&[&a, &b]);
        let cas = g.validate().unwrap();
        let client = b.ca.issue(Role::Client, "c", &[]).unwrap();
        let err = check(&g, &cas, &[approve(&g, &a.admin), approve(&g, &client)]);
        assert!(
            matches!(&err, Err(GenesisError::BadApproval { index: 1, reason }) if reason.contains("only an organization's admins")),
            "{err:?}"
        );
        // A CA of the same name that is not b's: a's admin minting an admin of "b".
        let impostor = org("b");
        let err = check(
            &g,
            &cas,
            &[approve(&g, &a.admin), approve(&g, &impostor.admin)],
        );
        assert!(
            matches!(&err, Err(GenesisError::BadApproval { index: 1, reason }) if reason.contains("certificate rejected")),
            "{err:?}"
        );
        // An admin of an organization outside the channel.
        let c = org("c");
        let mut with_c = cas.clone();
        with_c.push(c.ca.trusted());
        let err = check(&g, &with_c, &[approve(&g, &c.admin)]);
        assert!(
            matches!(&err, Err(GenesisError::BadApproval { reason, .. }) if reason.contains("not a member")),
            "{err:?}"
        );
    }

    #[test]
    fn merging_keeps_one_valid_approval_per_organization() {
        let (a, b) = (org("a"), org("b"));
        let g = genesis(&[&a, &b]);
        let mut other = g.clone();
        other.batch.max_txs += 1;
        let cas = g.validate().unwrap();
        let merged = merge(
            &g,
            &cas,
            [
                approve(&g, &a.admin),
                approve(&other, &b.admin),
                approve(&g, &a.admin),
                approve(&g, &b.admin),
            ],
        );
        assert_eq!(merged.len(), 2);
        check(&g, &cas, &merged).unwrap();
        let bytes = approvals_to_bytes(&merged);
        assert_eq!(approvals_from_bytes(&bytes).unwrap(), merged);
        assert!(approvals_from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
}
