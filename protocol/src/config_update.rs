//! Configuration transactions: a channel's membership, nodes and policies change only through
//! a transaction that carries the whole next configuration and the approvals of enough
//! member organizations' admins. Every node checks them at apply time against the
//! configuration in force, so a leader or a single organization cannot change a channel alone.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::config::ChannelConfig;
use crate::hash::{hex_bytes, Hash};
use crate::identity::{self, Identity, Role, TrustedCa};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use thiserror::Error;

/// One admin's consent to a configuration change, bound to the channel, the change's sequence
/// number, the configuration it replaces and the one it installs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// DER of the approving admin's certificate.
    #[serde(with = "hex_bytes")]
    pub certificate: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigUpdate {
    /// The number of configuration changes the channel will have made once this one applies:
    /// an approval given for one change can never be replayed onto a later one.
    pub sequence: u64,
    /// Hash of the configuration this update replaces.
    pub base: Hash,
    pub config: ChannelConfig,
    pub approvals: Vec<Approval>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UpdateError {
    #[error("the update is for sequence {got}; the channel is at configuration {current}, so the next is {}", current + 1)]
    StaleSequence { got: u64, current: u64 },
    #[error("the update replaces configuration {got}, but configuration {current} is in force")]
    StaleBase { got: Hash, current: Hash },
    #[error("the new configuration renames channel {from:?} to {to:?}")]
    Renamed { from: String, to: String },
    #[error("the new configuration is invalid: {0}")]
    Invalid(String),
    #[error("node {name} changes its Raft id from {from} to {to}; remove it and add it under a new name instead")]
    IdChanged { name: String, from: u64, to: u64 },
    #[error("no consenter of the current configuration stays a consenter, so nobody could order the change")]
    NoContinuity,
    #[error("approval {index}: {reason}")]
    BadApproval { index: usize, reason: String },
    #[error(
        "the change replaces organization {org}'s CAs, which only {org}'s own admin may approve"
    )]
    OwnApprovalMissing { org: String },
    #[error("approved by {got:?}; the channel's admin policy needs {need} of {eligible:?} for this change")]
    NotEnoughApprovals {
        got: Vec<String>,
        need: usize,
        eligible: Vec<String>,
    },
}

impl ChannelConfig {
    /// Organizations whose admins may approve configuration changes.
    pub fn admin_orgs(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| m.name.clone())
            .filter(|o| self.policies.admins.is_empty() || self.policies.admins.contains(o))
            .collect()
    }

    /// How many distinct admin organizations must approve a change: a majority.
    pub fn approvals_needed(&self) -> usize {
        self.admin_orgs().len() / 2 + 1
    }

    /// Organizations whose approvals count for a chaincode definition: every member (a
    /// definition is the members' agreement on what runs, not an admin decision).
    pub fn chaincode_orgs(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    /// How many members must approve a chaincode definition: the channel's chaincode rule
    /// (`policies.chaincode`), never fewer than a majority. The one count both ways of
    /// defining a chaincode (a proposal, or `ChaincodeApprove` + `ChaincodeCommit`) use.
    pub fn chaincode_approvals_needed(&self) -> usize {
        self.policies.chaincode.needed(self.members.len())
    }

    /// Whether `next` admits or removes a member organization, or changes the membership
    /// rule itself.
    pub fn changes_membership(&self, next: &ChannelConfig) -> bool {
        let names = |c: &ChannelConfig| -> BTreeSet<String> {
            c.members.iter().map(|m| m.name.clone()).collect()
        };
        names(self) != names(next) || self.policies.membership != next.policies.membership
    }

    /// How many distinct admin organizations must approve replacing this configuration by
    /// `next`: a majority, or what this configuration's membership rule asks when `next`
    /// changes the members (the rule in force decides, so a change cannot lower the bar it
    /// is judged by).
    pub fn approvals_needed_for(&self, next: &ChannelConfig) -> usize {
        let majority = self.approvals_needed();
        if self.changes_membership(next) {
            self.policies
                .membership
                .needed(self.admin_orgs().len())
                .max(majority)
        } else {
            majority
        }
    }
}

impl ConfigUpdate {
    /// An update to `next` from `current` (the configuration in force after `applied`
    /// changes), with no approvals yet.
    pub fn new(current: &ChannelConfig, applied: u64, next: ChannelConfig) -> ConfigUpdate {
        ConfigUpdate {
            sequence: applied + 1,
            base: current.hash(),
            config: next,
            approvals: Vec::new(),
        }
    }

    /// What each approving admin signs.
    pub fn digest(&self) -> Hash {
        Hash::tagged(
            b"tally-config-approval",
            &[
                self.config.name.as_bytes(),
                &self.sequence.to_be_bytes(),
                &self.base.0,
                &self.config.hash().0,
            ],
        )
    }

    /// Adds `admin`'s approval.
    pub fn approve(&mut self, admin: &Identity) {
        let signature = admin.sign(&self.digest().0).to_vec();
        self.approvals.push(Approval {
            certificate: admin.cert_der.clone(),
            signature,
        });
    }

    /// Checks the update against the configuration in force (`current`, after `applied`
    /// changes, whose member CAs are `cas`) at time `now_s`. Deterministic, so every node
    /// decides alike.
    pub fn check(
        &self,
        current: &ChannelConfig,
        applied: u64,
        cas: &[TrustedCa],
        now_s: i64,
    ) -> Result<(), UpdateError> {
        if self.sequence != applied + 1 {
            return Err(UpdateError::StaleSequence {
                got: self.sequence,
                current: applied,
            });
        }
        let current_hash = current.hash();
        if self.base != current_hash {
            return Err(UpdateError::StaleBase {
                got: self.base,
                current: current_hash,
            });
        }
        check_transition(current, &self.config)?;
        let eligible = current.admin_orgs();
        let required = own_approval_needed(current, &self.config);
        let digest = self.digest();
        let mut approved = BTreeSet::new();
        for (index, a) in self.approvals.iter().enumerate() {
            let bad = |reason: String| UpdateError::BadApproval { index, reason };
            let info = identity::verify_against(cas, &a.certificate, Some(now_s))
                .map_err(|e| bad(format!("certificate rejected: {e}")))?;
            if info.role != Role::Admin {
                return Err(bad(format!(
                    "{} is a {} certificate; only admins approve configuration changes",
                    info.subject, info.role
                )));
            }
            if !eligible.contains(&info.org) && !required.contains(&info.org) {
                return Err(bad(format!(
                    "organization {} is not an admin of the channel",
                    info.org
                )));
            }
            let key = crate::sig::public_key(&info.public_key)
                .ok_or_else(|| bad("certificate key is not a valid Ed25519 key".into()))?;
            if !crate::sig::verify(&key, &a.signature, &digest.0) {
                return Err(bad(format!(
                    "signature of {} does not cover this change",
                    info.subject
                )));
            }
            approved.insert(info.org);
        }
        let need = current.approvals_needed_for(&self.config);
        if approved.iter().filter(|o| eligible.contains(o)).count() < need {
            return Err(UpdateError::NotEnoughApprovals {
                got: approved.into_iter().collect(),
                need,
                eligible,
            });
        }
        if let Some(org) = required.into_iter().find(|o| !approved.contains(o)) {
            return Err(UpdateError::OwnApprovalMissing { org });
        }
        Ok(())
    }
}

/// Organizations whose own approval replacing `current` by `next` needs, whatever the policy:
/// each member that stays but whose CAs change. An organization's CAs decide who speaks in
/// its name (its admins, clients and nodes), so the others may remove it from a channel by
/// the policy, never change who it is.
pub fn own_approval_needed(current: &ChannelConfig, next: &ChannelConfig) -> Vec<String> {
    next.members
        .iter()
        .filter(|m| {
            current.member(&m.name).is_some_and(|old| {
                old.ca_pems().collect::<Vec<_>>() != m.ca_pems().collect::<Vec<_>>()
            })
        })
        .map(|m| m.name.clone())
        .collect()
}

/// Whether `current` may be replaced by `next` at all, whoever approves: same channel, a valid
/// configuration, stable Raft ids and a consenter that stays to order the change. Shared by
/// one-transaction updates and proposals (`crate::proposal`).
pub fn check_transition(current: &ChannelConfig, next: &ChannelConfig) -> Result<(), UpdateError> {
    if next.name != current.name {
        return Err(UpdateError::Renamed {
            from: current.name.clone(),
            to: next.name.clone(),
        });
    }
    next.validate()
        .map_err(|e| UpdateError::Invalid(e.to_string()))?;
    for n in next.nodes() {
        if let Some(old) = current.node(&n.name) {
            if old.id != n.id {
                return Err(UpdateError::IdChanged {
                    name: n.name.clone(),
                    from: old.id,
                    to: n.id,
                });
            }
        }
    }
    if !current.consenters.iter().any(|c| next.is_consenter(c.id)) {
        return Err(UpdateError::NoContinuity);
    }
    Ok(())
}

impl Encode for Approval {
    fn encode(&self, w: &mut Writer) {
        w.bytes(&self.certificate);
        w.bytes(&self.signature);
    }
}
impl Decode for Approval {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Approval {
            certificate: r.bytes("approval.certificate")?,
            signature: r.bytes("approval.signature")?,
        })
    }
}

impl Encode for ConfigUpdate {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.sequence);
        self.base.encode(w);
        self.config.encode(w);
        w.seq(&self.approvals);
    }
}
impl Decode for ConfigUpdate {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ConfigUpdate {
            sequence: r.u64("config.sequence")?,
            base: Hash::decode(r)?,
            config: ChannelConfig::decode(r)?,
            approvals: r.seq("config.approvals")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NodeRef, OrgMember};
    use crate::identity::OrgCa;

    struct Org {
        ca: OrgCa,
        admin: Identity,
        client: Identity,
    }

    fn org(name: &str) -> Org {
        let ca = OrgCa::generate(name).expect("ca");
        let admin = ca.issue(Role::Admin, "admin", &[]).expect("admin");
        let client = ca.issue(Role::Client, "client", &[]).expect("client");
        Org { ca, admin, client }
    }

    fn node(id: u64, org: &str) -> NodeRef {
        NodeRef {
            id,
            name: format!("{org}-n{id}"),
            org: org.into(),
            peer_addr: format!("127.0.0.1:{}", 7000 + id),
            api_url: format!("http://127.0.0.1:{}", 8000 + id),
        }
    }

    fn config(orgs: &[&Org], consenters: Vec<NodeRef>) -> ChannelConfig {
        let members = orgs
            .iter()
            .map(|o| OrgMember::new(&o.ca.org, &o.ca.cert_pem()))
            .collect();
        ChannelConfig::new("ch", members, consenters, vec![])
    }

    fn now() -> i64 {
        identity::now_unix()
    }

    #[test]
    fn a_majority_of_admin_organizations_is_needed() {
        let (a, b, c) = (org("a"), org("b"), org("c"));
        let current = config(&[&a, &b, &c], vec![node(1, "a"), node(2, "b")]);
        let cas = current.validate().expect("valid");
        let next = config(
            &[&a, &b, &c],
            vec![node(1, "a"), node(2, "b"), node(3, "c")],
        );
        let mut u = ConfigUpdate::new(&current, 0, next);
        u.approve(&a.admin);
        let err = u.check(&current, 0, &cas, now()).unwrap_err();
        assert!(
            matches!(&err, UpdateError::NotEnoughApprovals { need: 2, got, .. } if got == &["a".to_string()]),
            "{err}"
        );
        // The same organization twice is still one organization.
        u.approve(&a.admin);
        assert!(u.check(&current, 0, &cas, now()).is_err());
        u.approve(&b.admin);
        u.check(&current, 0, &cas, now()).expect("a and b approve");
    }

    #[test]
    fn a_majority_cannot_replace_another_organizations_ca() {
        let (a, b, c) = (org("a"), org("b"), org("c"));
        let mut current = config(&[&a, &b, &c], vec![node(1, "a"), node(2, "b")]);
        // Only a and b administer the channel; c is a member.
        current.policies.admins = vec!["a".into(), "b".into()];
        let cas = current.validate().expect("valid");
        // a and b put a CA of their own making in c's place: they could then sign as c.
        let rogue = OrgCa::generate("c").expect("ca");
        let mut next = current.clone();
        next.members[2].ca_pem = rogue.cert_pem();
        assert_eq!(own_approval_needed(&current, &next), ["c"]);
        let mut u = ConfigUpdate::new(&current, 0, next.clone());
        u.approve(&a.admin);
        u.approve(&b.admin);
        let err = u.check(&current, 0, &cas, now()).unwrap_err();
        assert_eq!(err, UpdateError::OwnApprovalMissing { org: "c".into() });
        // With c's own approval (c is not an admin organization, yet votes on its own CA)...
        u.approve(&c.admin);
        u.check(&current, 0, &cas, now())
            .expect("c approves its own CA");
        // ...which never stands in for the majority.
        let mut alone = ConfigUpdate::new(&current, 0, next);
        alone.approve(&c.admin);
        alone.approve(&a.admin);
        assert!(matches!(
            alone.check(&current, 0, &cas, now()),
            Err(UpdateError::NotEnoughApprovals { .. })
        ));
        // Removing c, or adding a CA beside a's with a's approval, is the policy's as before.
        let mut without_c = current.clone();
        without_c.members.pop();
        without_c.policies.admins = vec!["a".into(), "b".into()];
        assert!(own_approval_needed(&current, &without_c).is_empty());
        let mut extra = current.clone();
        extra.members[0]
            .extra_cas
            .push(OrgCa::generate("a").expect("ca").cert_pem());
        assert_eq!(own_approval_needed(&current, &extra), ["a"]);
    }

    #[test]
    fn a_membership_rule_of_all_holds_member_changes_and_only_them() {
        let (a, b, c, d) = (org("a"), org("b"), org("c"), org("d"));
        let mut current = config(&[&a, &b, &c], vec![node(1, "a"), node(2, "b")]);
        current.policies.membership = crate::config::MembershipRule::All;
        let cas = current.validate().expect("valid");
        // Admitting d needs a, b and c: a majority is not enough.
        let mut admit = config(&[&a, &b, &c, &d], vec![node(1, "a"), node(2, "b")]);
        admit.policies.membership = crate::config::MembershipRule::All;
        assert_eq!(current.approvals_needed_for(&admit), 3);
        let mut u = ConfigUpdate::new(&current, 0, admit);
        u.approve(&a.admin);
        u.approve(&b.admin);
        let err = u.check(&current, 0, &cas, now()).unwrap_err();
        assert!(
            matches!(&err, UpdateError::NotEnoughApprovals { need: 3, .. }),
            "{err}"
        );
        u.approve(&c.admin);
        u.check(&current, 0, &cas, now())
            .expect("every member approves");
        // Lowering the rule is itself judged by the rule in force.
        let mut lower = current.clone();
        lower.policies.membership = crate::config::MembershipRule::Majority;
        assert_eq!(current.approvals_needed_for(&lower), 3);
        // Other changes still need a majority.
        let mut consenters = current.clone();
        consenters.consenters.push(node(3, "c"));
        assert_eq!(current.approvals_needed_for(&consenters), 2);
    }

    #[test]
    fn membership_rules_never_ask_less_than_a_majority_or_more_than_all() {
        use crate::config::MembershipRule as R;
        assert_eq!(R::Majority.needed(4), 3);
        assert_eq!(R::All.needed(4), 4);
        assert_eq!(R::AtLeast(1).needed(4), 3);
        assert_eq!(R::AtLeast(4).needed(4), 4);
        assert_eq!(R::AtLeast(9).needed(4), 4);
        assert_eq!(R::AtLeast(0).needed(1), 1);
    }

    #[test]
    fn approvals_are_bound_to_sequence_base_and_content() {
        let (a, b) = (org("a"), org("b"));
        let current = config(&[&a, &b], vec![node(1, "a")]);
        let cas = current.validate().expect("valid");
        let next = config(&[&a, &b], vec![node(1, "a"), node(2, "b")]);
        let mut u = ConfigUpdate::new(&current, 4, next);
        u.approve(&a.admin);
        u.approve(&b.admin);
        u.check(&current, 4, &cas, now()).expect("fresh update");
        assert!(matches!(
            u.check(&current, 5, &cas, now()),
            Err(UpdateError::StaleSequence { got: 5, current: 5 })
        ));
        // Swapping in another configuration invalidates the signatures.
        let mut swapped = u.clone();
        swapped.config.consenters.push(node(3, "b"));
        assert!(matches!(
            swapped.check(&current, 4, &cas, now()),
            Err(UpdateError::BadApproval { index: 0, .. })
        ));
        let other = config(&[&a, &b], vec![node(1, "a"), node(9, "b")]);
        assert!(matches!(
            u.check(&other, 4, &cas, now()),
            Err(UpdateError::StaleBase { .. })
        ));
    }

    #[test]
    fn only_admins_of_eligible_members_count() {
        let (a, b, x) = (org("a"), org("b"), org("x"));
        let current = config(&[&a, &b], vec![node(1, "a")]);
        let cas = current.validate().expect("valid");
        let next = config(&[&a, &b], vec![node(1, "a"), node(2, "b")]);
        let mut u = ConfigUpdate::new(&current, 0, next.clone());
        u.approve(&a.client);
        assert!(matches!(
            u.check(&current, 0, &cas, now()),
            Err(UpdateError::BadApproval { index: 0, ref reason }) if reason.contains("only admins")
        ));
        let mut u = ConfigUpdate::new(&current, 0, next);
        u.approve(&x.admin);
        assert!(matches!(
            u.check(&current, 0, &cas, now()),
            Err(UpdateError::BadApproval { index: 0, .. })
        ));
    }

    #[test]
    fn changes_that_would_break_the_channel_are_refused() {
        let (a, b) = (org("a"), org("b"));
        let current = config(&[&a, &b], vec![node(1, "a")]);
        let cas = current.validate().expect("valid");
        let approve = |next: ChannelConfig| {
            let mut u = ConfigUpdate::new(&current, 0, next);
            u.approve(&a.admin);
            u.approve(&b.admin);
            u.check(&current, 0, &cas, now())
        };
        let replaced = config(&[&a, &b], vec![node(2, "b")]);
        assert_eq!(approve(replaced), Err(UpdateError::NoContinuity));
        let mut renumbered = config(&[&a, &b], vec![node(1, "a")]);
        renumbered.consenters[0].id = 7;
        assert!(matches!(
            approve(renumbered),
            Err(UpdateError::IdChanged { from: 1, to: 7, .. })
        ));
        let mut renamed = config(&[&a, &b], vec![node(1, "a")]);
        renamed.name = "other".into();
        assert!(matches!(approve(renamed), Err(UpdateError::Renamed { .. })));
        let orphan = config(&[&a], vec![node(1, "a"), node(2, "b")]);
        assert!(matches!(approve(orphan), Err(UpdateError::Invalid(_))));
    }

    #[test]
    fn an_approval_by_a_revoked_admin_does_not_count() {
        let (a, b, c) = (org("a"), org("b"), org("c"));
        let mut current = config(&[&a, &b, &c], vec![node(1, "a")]);
        current.members[1]
            .revoked
            .push(identity::fingerprint(&b.admin.cert_der));
        let cas = current.validate().expect("valid");
        let mut next = current.clone();
        next.consenters.push(node(2, "c"));
        let mut u = ConfigUpdate::new(&current, 0, next);
        u.approve(&a.admin);
        u.approve(&b.admin);
        match u.check(&current, 0, &cas, now()) {
            Err(UpdateError::BadApproval { index: 1, reason }) => {
                assert!(reason.contains("revoked"), "{reason}")
            }
            other => panic!("a revoked admin's approval: {other:?}"),
        }
    }

    #[test]
    fn updates_round_trip() {
        let (a, b) = (org("a"), org("b"));
        let current = config(&[&a, &b], vec![node(1, "a")]);
        let mut u = ConfigUpdate::new(&current, 2, config(&[&a, &b], vec![node(1, "a")]));
        u.approve(&b.admin);
        let back = ConfigUpdate::from_bytes(&u.to_bytes()).expect("decodes");
        assert_eq!(back, u);
        let json = serde_json::to_string(&u).expect("json");
        assert_eq!(
            serde_json::from_str::<ConfigUpdate>(&json).expect("json back"),
            u
        );
    }
}
