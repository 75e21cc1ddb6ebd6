//! Channel configuration: who is a member, who orders, who observes, and how blocks are cut.
//! The genesis block commits to its hash, so every node of a channel starts from the same one.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::Hash;
use crate::identity::{self, IdentityError, TrustedCa};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgMember {
    pub name: String,
    /// PEM of the organization's CA certificate.
    pub ca_pem: String,
    /// PEMs of further CAs whose certificates are the organization's too: during a CA
    /// rotation the new CA is listed here beside the old one, identities are re-issued from
    /// it, then the old one is removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_cas: Vec<String>,
    /// Certificates of this organization that no node accepts any more, by the SHA-256 of
    /// their DER (see [`identity::fingerprint`]). A fingerprint, not a serial number: it names
    /// one exact certificate whichever of the organization's CAs issued it, and a client can
    /// compute it from the certificate alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<Hash>,
}

impl OrgMember {
    /// A member with one CA and nothing revoked.
    pub fn new(name: &str, ca_pem: &str) -> OrgMember {
        OrgMember {
            name: name.to_string(),
            ca_pem: ca_pem.to_string(),
            extra_cas: Vec::new(),
            revoked: Vec::new(),
        }
    }

    /// Every CA certificate of the organization, the current one first.
    pub fn ca_pems(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.ca_pem).chain(self.extra_cas.iter())
    }

    /// The organization's CAs as trust anchors, each refusing the revoked certificates.
    pub fn trusted(&self) -> Result<Vec<TrustedCa>, IdentityError> {
        let revoked: Arc<BTreeSet<Hash>> = Arc::new(self.revoked.iter().copied().collect());
        self.ca_pems()
            .map(|pem| {
                TrustedCa::from_pem(&self.name, pem).map(|ca| ca.with_revoked(revoked.clone()))
            })
            .collect()
    }

    /// Whether anything beyond the one CA is set (what format 1 of the encoding cannot carry).
    fn has_trust_changes(&self) -> bool {
        !self.extra_cas.is_empty() || !self.revoked.is_empty()
    }
}

/// A node of the channel. `id` is the node's Raft id in every channel it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRef {
    pub id: u64,
    pub name: String,
    pub org: String,
    /// host:port of the node's mutual-TLS peer listener.
    pub peer_addr: String,
    /// Base URL of the node's client API, for clients and status.
    pub api_url: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchConfig {
    /// Cut a block at this many transactions...
    pub max_txs: u32,
    /// ...or this many bytes...
    pub max_bytes: u32,
    /// ...or this long after the first pending transaction arrived.
    pub timeout_ms: u32,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_txs: 500,
            max_bytes: 2 * 1024 * 1024,
            timeout_ms: 20,
        }
    }
}

/// Which organizations may do what. Empty lists mean "every member".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policies {
    #[serde(default)]
    pub writers: Vec<String>,
    #[serde(default)]
    pub readers: Vec<String>,
    #[serde(default)]
    pub admins: Vec<String>,
    /// Admin organizations that must approve a change of the member organizations (one
    /// admitted or removed), or of this rule itself; other changes need a majority. Never
    /// fewer than a majority.
    #[serde(default, skip_serializing_if = "MembershipRule::is_majority")]
    pub membership: MembershipRule,
    /// Member organizations that must approve a chaincode definition before it is committed
    /// (the consortium's `chaincodeApproval`, or the Channel's `chaincodeLifecycle`). Never
    /// fewer than a majority of the members.
    #[serde(default, skip_serializing_if = "MembershipRule::is_majority")]
    pub chaincode: MembershipRule,
}

/// How many organizations a change needs: a membership change (of the admin organizations),
/// a chaincode definition (of the members).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipRule {
    #[default]
    Majority,
    All,
    AtLeast(u32),
}

impl MembershipRule {
    pub fn is_majority(&self) -> bool {
        *self == MembershipRule::Majority
    }

    /// Approvals needed out of `eligible` admin organizations: at least a majority, at most
    /// all of them.
    pub fn needed(self, eligible: usize) -> usize {
        let majority = eligible / 2 + 1;
        let asked = match self {
            MembershipRule::Majority => majority,
            MembershipRule::All => eligible,
            MembershipRule::AtLeast(n) => n as usize,
        };
        asked.clamp(majority.min(eligible), eligible)
    }
}

impl std::fmt::Display for MembershipRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MembershipRule::Majority => write!(f, "a majority"),
            MembershipRule::All => write!(f, "all"),
            MembershipRule::AtLeast(n) => write!(f, "at least {n}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelConfig {
    pub name: String,
    pub members: Vec<OrgMember>,
    pub consenters: Vec<NodeRef>,
    #[serde(default)]
    pub observers: Vec<NodeRef>,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub policies: Policies,
    /// Compact the Raft log and make a snapshot point every this many blocks.
    #[serde(default = "default_snapshot_interval")]
    pub snapshot_interval: u64,
    /// Largest accepted transaction, in bytes of its canonical encoding.
    #[serde(default = "default_max_tx_bytes")]
    pub max_tx_bytes: u32,
    /// A transaction whose timestamp is further than this from the block time is refused.
    #[serde(default = "default_tx_window")]
    pub tx_window_s: u32,
}

fn default_snapshot_interval() -> u64 {
    1000
}
fn default_max_tx_bytes() -> u32 {
    1024 * 1024
}
fn default_tx_window() -> u32 {
    600
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("channel name {0:?} is invalid: use 1-63 characters of a-z, 0-9 and '-'")]
    BadName(String),
    #[error("channel {0} has no consenters")]
    NoConsenters(String),
    #[error(
        "channel {channel}: node {node} belongs to organization {org:?}, which is not a member"
    )]
    NodeOrgNotMember {
        channel: String,
        node: String,
        org: String,
    },
    #[error("channel {channel}: node id {id} is used twice")]
    DuplicateNodeId { channel: String, id: u64 },
    #[error("channel {channel}: node id 0 is reserved")]
    ZeroNodeId { channel: String },
    #[error("channel {channel}: organization {org:?} is listed twice")]
    DuplicateOrg { channel: String, org: String },
    #[error("channel {channel}: CA of organization {org:?}: {source}")]
    BadCa {
        channel: String,
        org: String,
        source: IdentityError,
    },
    #[error("channel {channel}: organization {org:?} lists the same CA certificate twice")]
    DuplicateCa { channel: String, org: String },
    #[error("channel {channel}: organization {org:?} has {got} CA certificates; at most {max} may be listed at once")]
    TooManyCas {
        channel: String,
        org: String,
        got: usize,
        max: usize,
    },
    #[error("channel {channel}: organization {org:?} revokes certificate {fingerprint} twice")]
    DuplicateRevoked {
        channel: String,
        org: String,
        fingerprint: Hash,
    },
    #[error("channel {channel}: organization {org:?} revokes {fingerprint}, which is one of its own listed CAs; remove the CA instead")]
    RevokedCa {
        channel: String,
        org: String,
        fingerprint: Hash,
    },
    #[error("channel {channel}: organization {org:?} revokes {got} certificates; at most {max} may be listed")]
    TooManyRevoked {
        channel: String,
        org: String,
        got: usize,
        max: usize,
    },
    #[error("channel {channel}: policy {policy} names {org:?}, which is not a member")]
    PolicyNotMember {
        channel: String,
        policy: &'static str,
        org: String,
    },
    #[error("channel {channel}: batch settings must be positive")]
    BadBatch { channel: String },
    #[error(
        "channel {channel}: a block may hold at most {max} transactions (batch max_txs is {got})"
    )]
    BatchTooManyTxs { channel: String, got: u32, max: u32 },
    #[error("channel {channel}: batch max_bytes is {got}; blocks must stay within {max} bytes so that they fit a peer frame")]
    BatchTooLarge { channel: String, got: u32, max: u32 },
    #[error("channel {channel}: max_tx_bytes is {got}; it must be at least {min} and at most the batch max_bytes ({batch})")]
    BadMaxTxBytes {
        channel: String,
        got: u32,
        min: u32,
        batch: u32,
    },
    #[error("channel {channel}: tx_window_s is {got}; it must be between 1 and {max} seconds")]
    BadTxWindow { channel: String, got: u32, max: u32 },
}

/// Most transactions in one block.
pub const MAX_BATCH_TXS: u32 = 10_000;
/// Most bytes of transactions in one block: a Raft entry carries one block's batch, and a peer
/// frame must hold it (the node checks its frame limit against this at compile time).
pub const MAX_BATCH_BYTES: u32 = 64 * 1024 * 1024;
/// Smallest `max_tx_bytes`: below it not even a transaction signed by certificate hash fits.
pub const MIN_MAX_TX_BYTES: u32 = 64;
/// Most CA certificates an organization lists at once: the current one and those being
/// rotated in or out.
pub const MAX_ORG_CAS: usize = 4;
/// Most revoked certificates an organization lists; revoking more than this means the CA
/// itself is compromised, and it should be rotated out instead.
pub const MAX_REVOKED_PER_ORG: usize = 10_000;
/// Widest transaction window (which is also how far one block's time may step ahead of the
/// previous block's without its transactions vouching for it).
pub const MAX_TX_WINDOW_S: u32 = 86_400;

pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-')
}

impl ChannelConfig {
    /// A configuration with these members and nodes and every other setting at its default.
    pub fn new(
        name: &str,
        members: Vec<OrgMember>,
        consenters: Vec<NodeRef>,
        observers: Vec<NodeRef>,
    ) -> ChannelConfig {
        ChannelConfig {
            name: name.to_string(),
            members,
            consenters,
            observers,
            batch: BatchConfig::default(),
            policies: Policies::default(),
            snapshot_interval: default_snapshot_interval(),
            max_tx_bytes: default_max_tx_bytes(),
            tx_window_s: default_tx_window(),
        }
    }

    /// Checks the configuration and returns the member CAs it trusts.
    pub fn validate(&self) -> Result<Vec<TrustedCa>, ConfigError> {
        let ch = || self.name.clone();
        if !valid_name(&self.name) {
            return Err(ConfigError::BadName(self.name.clone()));
        }
        if self.consenters.is_empty() {
            return Err(ConfigError::NoConsenters(ch()));
        }
        if self.batch.max_txs == 0 || self.batch.max_bytes == 0 || self.batch.timeout_ms == 0 {
            return Err(ConfigError::BadBatch { channel: ch() });
        }
        self.validate_bounds()?;
        let mut orgs = BTreeSet::new();
        let mut cas = Vec::new();
        for m in &self.members {
            if !orgs.insert(m.name.as_str()) {
                return Err(ConfigError::DuplicateOrg {
                    channel: ch(),
                    org: m.name.clone(),
                });
            }
            cas.extend(self.validate_member(m)?);
        }
        let mut ids = BTreeSet::new();
        for n in self.nodes() {
            if n.id == 0 {
                return Err(ConfigError::ZeroNodeId { channel: ch() });
            }
            if !ids.insert(n.id) {
                return Err(ConfigError::DuplicateNodeId {
                    channel: ch(),
                    id: n.id,
                });
            }
            if !orgs.contains(n.org.as_str()) {
                return Err(ConfigError::NodeOrgNotMember {
                    channel: ch(),
                    node: n.name.clone(),
                    org: n.org.clone(),
                });
            }
        }
        for (policy, list) in [
            ("writers", &self.policies.writers),
            ("readers", &self.policies.readers),
            ("admins", &self.policies.admins),
        ] {
            if let Some(o) = list.iter().find(|o| !orgs.contains(o.as_str())) {
                return Err(ConfigError::PolicyNotMember {
                    channel: ch(),
                    policy,
                    org: o.clone(),
                });
            }
        }
        Ok(cas)
    }

    /// One organization's CAs and revocations; returns its CAs.
    fn validate_member(&self, m: &OrgMember) -> Result<Vec<TrustedCa>, ConfigError> {
        let ch = || self.name.clone();
        let org = || m.name.clone();
        let bad = |source| ConfigError::BadCa {
            channel: ch(),
            org: org(),
            source,
        };
        let count = 1 + m.extra_cas.len();
        if count > MAX_ORG_CAS {
            return Err(ConfigError::TooManyCas {
                channel: ch(),
                org: org(),
                got: count,
                max: MAX_ORG_CAS,
            });
        }
        for pem in m.ca_pems() {
            let named = identity::ca_org(pem).map_err(bad)?;
            if named != m.name {
                return Err(bad(IdentityError::BadCertificate(format!(
                    "CA certificate names organization {named:?}"
                ))));
            }
        }
        let cas = m.trusted().map_err(bad)?;
        let mut ca_prints = BTreeSet::new();
        for ca in &cas {
            if !ca_prints.insert(identity::fingerprint(&ca.der)) {
                return Err(ConfigError::DuplicateCa {
                    channel: ch(),
                    org: org(),
                });
            }
        }
        if m.revoked.len() > MAX_REVOKED_PER_ORG {
            return Err(ConfigError::TooManyRevoked {
                channel: ch(),
                org: org(),
                got: m.revoked.len(),
                max: MAX_REVOKED_PER_ORG,
            });
        }
        let mut seen = BTreeSet::new();
        for fp in &m.revoked {
            if !seen.insert(*fp) {
                return Err(ConfigError::DuplicateRevoked {
                    channel: ch(),
                    org: org(),
                    fingerprint: *fp,
                });
            }
            if ca_prints.contains(fp) {
                return Err(ConfigError::RevokedCa {
                    channel: ch(),
                    org: org(),
                    fingerprint: *fp,
                });
            }
        }
        Ok(cas)
    }

    /// The member entry of `org`.
    pub fn member(&self, org: &str) -> Option<&OrgMember> {
        self.members.iter().find(|m| m.name == org)
    }

    /// The sizes and times every node relies on: a block fits a peer frame, a transaction
    /// fits a block, and the transaction window (the block-time step) is sane.
    fn validate_bounds(&self) -> Result<(), ConfigError> {
        let ch = || self.name.clone();
        if self.batch.max_txs > MAX_BATCH_TXS {
            return Err(ConfigError::BatchTooManyTxs {
                channel: ch(),
                got: self.batch.max_txs,
                max: MAX_BATCH_TXS,
            });
        }
        if self.batch.max_bytes > MAX_BATCH_BYTES {
            return Err(ConfigError::BatchTooLarge {
                channel: ch(),
                got: self.batch.max_bytes,
                max: MAX_BATCH_BYTES,
            });
        }
        if self.max_tx_bytes < MIN_MAX_TX_BYTES || self.max_tx_bytes > self.batch.max_bytes {
            return Err(ConfigError::BadMaxTxBytes {
                channel: ch(),
                got: self.max_tx_bytes,
                min: MIN_MAX_TX_BYTES,
                batch: self.batch.max_bytes,
            });
        }
        if self.tx_window_s == 0 || self.tx_window_s > MAX_TX_WINDOW_S {
            return Err(ConfigError::BadTxWindow {
                channel: ch(),
                got: self.tx_window_s,
                max: MAX_TX_WINDOW_S,
            });
        }
        Ok(())
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeRef> {
        self.consenters.iter().chain(self.observers.iter())
    }

    pub fn node(&self, name: &str) -> Option<&NodeRef> {
        self.nodes().find(|n| n.name == name)
    }

    pub fn is_consenter(&self, id: u64) -> bool {
        self.consenters.iter().any(|n| n.id == id)
    }

    /// Whether members of `org` may read the channel's data (keys, blocks, receipts).
    pub fn may_read(&self, org: &str) -> bool {
        self.members.iter().any(|m| m.name == org)
            && (self.policies.readers.is_empty() || self.policies.readers.iter().any(|o| o == org))
    }

    pub fn may_write(&self, org: &str) -> bool {
        self.members.iter().any(|m| m.name == org)
            && (self.policies.writers.is_empty() || self.policies.writers.iter().any(|o| o == org))
    }

    pub fn hash(&self) -> Hash {
        Hash::tagged(b"tally-config", &[&self.to_bytes()])
    }
}

/// The format-1 part of a member; extra CAs and revocations follow the whole configuration.
impl Encode for OrgMember {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.name);
        w.str(&self.ca_pem);
    }
}
impl Decode for OrgMember {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OrgMember {
            name: r.str("org")?,
            ca_pem: r.str("ca")?,
            extra_cas: Vec::new(),
            revoked: Vec::new(),
        })
    }
}
impl Encode for NodeRef {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.id);
        w.str(&self.name);
        w.str(&self.org);
        w.str(&self.peer_addr);
        w.str(&self.api_url);
    }
}
impl Decode for NodeRef {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(NodeRef {
            id: r.u64("node id")?,
            name: r.str("node name")?,
            org: r.str("node org")?,
            peer_addr: r.str("peer addr")?,
            api_url: r.str("api url")?,
        })
    }
}

/// Format 1 carries one CA per organization and no revocations; format 2 adds, after every
/// format-1 field, each member's extra CAs and revoked fingerprints (in member order); format
/// 3 is format 2 followed by the membership rule; format 4 is format 3 followed by the
/// chaincode rule. Each is written only when the later fields say something (extra CAs or
/// revocations; a rule other than a majority), so the hash of every configuration written
/// before a format existed stays what its genesis block commits to, and each configuration
/// has one encoding.
const CONFIG_FORMAT_TRUST: u8 = 2;
const CONFIG_FORMAT_MEMBERSHIP: u8 = 3;
const CONFIG_FORMAT_CHAINCODE: u8 = 4;

fn write_rule(w: &mut Writer, rule: MembershipRule) {
    match rule {
        MembershipRule::Majority => w.u8(0),
        MembershipRule::All => w.u8(1),
        MembershipRule::AtLeast(n) => {
            w.u8(2);
            w.u32(n);
        }
    }
}

/// A rule; a majority (tag 0) only where `majority_allowed` (a membership rule written before
/// a chaincode rule), since elsewhere it has an earlier format, the only canonical one.
fn read_rule(
    r: &mut Reader<'_>,
    what: &'static str,
    majority_allowed: bool,
) -> Result<MembershipRule, DecodeError> {
    match r.u8(what)? {
        0 if majority_allowed => Ok(MembershipRule::Majority),
        1 => Ok(MembershipRule::All),
        2 => Ok(MembershipRule::AtLeast(r.u32(what)?)),
        tag => Err(DecodeError::BadTag { what, tag }),
    }
}

impl Encode for ChannelConfig {
    fn encode(&self, w: &mut Writer) {
        let trust = self.members.iter().any(OrgMember::has_trust_changes);
        let membership = !self.policies.membership.is_majority();
        let chaincode = !self.policies.chaincode.is_majority();
        let format = if chaincode {
            CONFIG_FORMAT_CHAINCODE
        } else if membership {
            CONFIG_FORMAT_MEMBERSHIP
        } else if trust {
            CONFIG_FORMAT_TRUST
        } else {
            1
        };
        w.u8(format);
        w.str(&self.name);
        w.seq(&self.members);
        w.seq(&self.consenters);
        w.seq(&self.observers);
        w.u32(self.batch.max_txs);
        w.u32(self.batch.max_bytes);
        w.u32(self.batch.timeout_ms);
        w.seq(&self.policies.writers);
        w.seq(&self.policies.readers);
        w.seq(&self.policies.admins);
        w.u64(self.snapshot_interval);
        w.u32(self.max_tx_bytes);
        w.u32(self.tx_window_s);
        if format >= CONFIG_FORMAT_TRUST {
            for m in &self.members {
                w.seq(&m.extra_cas);
                w.seq(&m.revoked);
            }
        }
        if format >= CONFIG_FORMAT_MEMBERSHIP {
            write_rule(w, self.policies.membership);
        }
        if chaincode {
            write_rule(w, self.policies.chaincode);
        }
    }
}
impl Decode for ChannelConfig {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let format = r.u8("config format")?;
        if !(1..=CONFIG_FORMAT_CHAINCODE).contains(&format) {
            return Err(DecodeError::BadTag {
                what: "config format",
                tag: format,
            });
        }
        let mut c = ChannelConfig {
            name: r.str("name")?,
            members: r.seq("members")?,
            consenters: r.seq("consenters")?,
            observers: r.seq("observers")?,
            batch: BatchConfig {
                max_txs: r.u32("max_txs")?,
                max_bytes: r.u32("max_bytes")?,
                timeout_ms: r.u32("timeout_ms")?,
            },
            policies: Policies {
                writers: r.seq("writers")?,
                readers: r.seq("readers")?,
                admins: r.seq("admins")?,
                membership: MembershipRule::Majority,
                chaincode: MembershipRule::Majority,
            },
            snapshot_interval: r.u64("snapshot_interval")?,
            max_tx_bytes: r.u32("max_tx_bytes")?,
            tx_window_s: r.u32("tx_window_s")?,
        };
        if format >= CONFIG_FORMAT_TRUST {
            for m in &mut c.members {
                m.extra_cas = r.seq("extra CAs")?;
                m.revoked = r.seq("revoked certificates")?;
            }
        }
        if format >= CONFIG_FORMAT_MEMBERSHIP {
            c.policies.membership =
                read_rule(r, "membership rule", format == CONFIG_FORMAT_CHAINCODE)?;
        }
        if format == CONFIG_FORMAT_CHAINCODE {
            c.policies.chaincode = read_rule(r, "chaincode rule", false)?;
        }
        if format == CONFIG_FORMAT_TRUST {
            // Format 2 with nothing in it has a format-1 encoding, the only canonical one.
            if !c.members.iter().any(OrgMember::has_trust_changes) {
                return Err(DecodeError::BadTag {
                    what: "config format (2 without extra CAs or revocations)",
                    tag: format,
                });
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ChannelConfig {
        let ca = crate::OrgCa::generate("org1").expect("ca");
        ChannelConfig::new(
            "ch",
            vec![OrgMember::new("org1", &ca.cert_pem())],
            vec![NodeRef {
                id: 1,
                name: "n1".into(),
                org: "org1".into(),
                peer_addr: "127.0.0.1:1".into(),
                api_url: "http://127.0.0.1:2".into(),
            }],
            vec![],
        )
    }

    #[test]
    fn a_membership_rule_has_one_encoding_and_keeps_older_hashes() {
        use crate::codec::{Decode, Encode};
        let plain = config();
        let before = plain.hash();
        assert_eq!(plain.to_bytes()[0], 1, "a majority writes format 1");
        for rule in [MembershipRule::All, MembershipRule::AtLeast(2)] {
            let mut c = plain.clone();
            c.policies.membership = rule;
            let bytes = c.to_bytes();
            assert_eq!(bytes[0], CONFIG_FORMAT_MEMBERSHIP);
            assert_eq!(ChannelConfig::from_bytes(&bytes).expect("decodes"), c);
            assert_ne!(c.hash(), before);
        }
        // A majority spelled out in format 3 is not canonical.
        let mut c = plain.clone();
        c.policies.membership = MembershipRule::All;
        let mut bytes = c.to_bytes();
        let last = bytes.len() - 1;
        bytes[last] = 0;
        assert!(ChannelConfig::from_bytes(&bytes).is_err());
        assert_eq!(plain.hash(), before);
        // JSON leaves the default out and reads it back.
        let json = serde_json::to_value(&plain).expect("json");
        assert!(json["policies"].get("membership").is_none(), "{json}");
        let mut all = plain.clone();
        all.policies.membership = MembershipRule::AtLeast(2);
        let back: ChannelConfig =
            serde_json::from_value(serde_json::to_value(&all).expect("json")).expect("read");
        assert_eq!(back, all);
    }

    #[test]
    fn a_chaincode_rule_has_one_encoding_and_keeps_older_hashes() {
        use crate::codec::{Decode, Encode};
        let plain = config();
        let before = plain.hash();
        for membership in [MembershipRule::Majority, MembershipRule::All] {
            for rule in [MembershipRule::All, MembershipRule::AtLeast(2)] {
                let mut c = plain.clone();
                c.policies.membership = membership;
                c.policies.chaincode = rule;
                let bytes = c.to_bytes();
                assert_eq!(bytes[0], CONFIG_FORMAT_CHAINCODE);
                assert_eq!(ChannelConfig::from_bytes(&bytes).expect("decodes"), c);
                assert_ne!(c.hash(), before);
            }
        }
        // A majority spelled out as the chaincode rule is not canonical.
        let mut c = plain.clone();
        c.policies.chaincode = MembershipRule::All;
        let mut bytes = c.to_bytes();
        let last = bytes.len() - 1;
        bytes[last] = 0;
        assert!(ChannelConfig::from_bytes(&bytes).is_err());
        assert_eq!(plain.to_bytes()[0], 1);
        assert_eq!(plain.hash(), before);
        let json = serde_json::to_value(&plain).expect("json");
        assert!(json["policies"].get("chaincode").is_none(), "{json}");
    }

    #[test]
    fn defaults_are_within_bounds() {
        config().validate().expect("defaults validate");
    }

    type Change = fn(&mut ChannelConfig);

    #[test]
    fn sizes_and_window_out_of_bounds_are_refused_with_the_setting_named() {
        let cases: Vec<(Change, &str)> = vec![
            (|c| c.batch.max_bytes = MAX_BATCH_BYTES + 1, "peer frame"),
            (|c| c.batch.max_txs = MAX_BATCH_TXS + 1, "at most"),
            (|c| c.max_tx_bytes = c.batch.max_bytes + 1, "max_tx_bytes"),
            (|c| c.max_tx_bytes = 10, "max_tx_bytes"),
            (|c| c.tx_window_s = 0, "tx_window_s"),
            (|c| c.tx_window_s = MAX_TX_WINDOW_S + 1, "tx_window_s"),
        ];
        for (change, says) in cases {
            let mut c = config();
            change(&mut c);
            let e = c.validate().expect_err("out of bounds").to_string();
            assert!(e.contains(says), "{e:?} should mention {says:?}");
        }
        let mut c = config();
        c.batch.max_bytes = MAX_BATCH_BYTES;
        c.max_tx_bytes = MAX_BATCH_BYTES;
        c.validate().expect("the bounds themselves are allowed");
    }
}
