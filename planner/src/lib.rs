//! The one planning step: Tally resources in, everything needed to run them out.
//!
//! [`plan`] is a pure function. Given the resources of one consortium, the organizations'
//! CAs, an [`Addressing`] and an issue time, it returns every node with its address, Raft id
//! and identity, every organization's admin and client identity, every channel's genesis
//! configuration and every chaincode definition to approve, or every problem it found, each
//! naming the resource and the field. The operator runs it on each reconcile; `tallyctl up`
//! runs it once and starts the plan as local processes. Because identities are derived from
//! the CA (see [`OrgCa::issue_derived`]), the same input always gives the same plan.

mod addressing;
mod error;
pub mod lifetime;
pub mod spec;

pub use addressing::{
    headless_service, node_name, Addressing, NodeAddress, ADMIN_PORT, API_PORT, PEER_PORT,
};
pub use error::{PlanError, PlanErrors};
pub use lifetime::{identity_key, Held, Lifetimes, Window, NOTHING_HELD};

use error::Problems;
use lifetime::Issuing;
use spec::{
    Approval, CaMode, Chaincode, Channel, Consortium, InitCall, Meta, ModuleRef, Peer, PeerRole,
    Resources,
};
use std::collections::{BTreeMap, BTreeSet};
use tally_protocol::config::valid_name;
use tally_protocol::identity::{ca_org, cert_hash, pem_to_der};
use tally_protocol::{BatchConfig, ChannelConfig, Hash, Identity, NodeRef, OrgCa, OrgMember, Role};

/// Name of the admin identity the plan issues for every organization.
pub const ADMIN_NAME: &str = "admin";
/// Name of the client identity the plan issues for every organization.
pub const CLIENT_NAME: &str = "client";

/// An organization's CA as the caller has it.
pub enum CaInput {
    /// Certificate and key: the plan can issue identities for the organization.
    Full(Box<OrgCa>),
    /// The certificate alone (PEM), for an organization whose nodes all run elsewhere.
    CertOnly(String),
}

impl CaInput {
    fn cert_pem(&self) -> String {
        match self {
            CaInput::Full(ca) => ca.cert_pem(),
            CaInput::CertOnly(pem) => pem.clone(),
        }
    }
}

/// What [`plan`] reads.
pub struct PlanInput<'a> {
    pub resources: &'a Resources,
    /// Namespace and name of the consortium to plan.
    pub namespace: &'a str,
    pub consortium: &'a str,
    /// CA of every organization of the consortium, by organization name.
    pub cas: &'a BTreeMap<String, CaInput>,
    pub addressing: &'a Addressing,
    /// Start of the validity of certificates issued for the first time (Unix seconds): the
    /// consortium's creation, so that every planner run issues them alike.
    pub issued_at: i64,
    /// The windows identities already hold, by [`identity_key`]: kept until due.
    pub held: &'a Held,
    /// The time renewals are decided at; `None` keeps every identity's window (held, or
    /// from `issued_at`) and renews nothing.
    pub now: Option<i64>,
}

/// Everything needed to run one consortium.
#[derive(Debug)]
pub struct Plan {
    pub namespace: String,
    pub consortium: String,
    pub display_name: String,
    /// In the consortium's order.
    pub organizations: Vec<OrgPlan>,
    /// Hosted nodes in Peer name and ordinal order, then external peers.
    pub nodes: Vec<NodePlan>,
    /// In name order.
    pub channels: Vec<ChannelPlan>,
    /// In channel, then name order.
    pub chaincodes: Vec<ChaincodePlan>,
    /// The certificate lifetimes planned with.
    pub lifetimes: Lifetimes,
    /// Identities issued with a fresh window because theirs was due (by [`identity_key`]).
    pub renewed: Vec<String>,
    /// The earliest time an identity of this plan falls due for renewal (Unix seconds).
    pub next_renewal: Option<i64>,
}

#[derive(Debug)]
pub struct OrgPlan {
    pub name: String,
    pub display_name: String,
    pub ca_pem: String,
    /// Tagged SHA-256 of the CA certificate, as channels record it.
    pub ca_fingerprint: Hash,
    /// Admin and client identities; `None` when only the CA certificate is known.
    pub admin: Option<Identity>,
    pub client: Option<Identity>,
}

#[derive(Debug)]
pub struct NodePlan {
    /// `<peer>-<ordinal>` for hosted nodes, the declared name for external ones.
    pub name: String,
    /// The Peer resource (hosted nodes only).
    pub peer: Option<String>,
    pub ordinal: Option<u32>,
    pub org: String,
    /// Raft id, the same in every channel.
    pub raft_id: u64,
    pub role: PeerRole,
    pub address: NodeAddress,
    /// The node's certificate and key (hosted nodes only).
    pub identity: Option<Identity>,
    /// Channels the node serves, in name order.
    pub channels: Vec<String>,
}

impl NodePlan {
    pub fn hosted(&self) -> bool {
        self.peer.is_some()
    }

    pub fn node_ref(&self) -> NodeRef {
        NodeRef {
            id: self.raft_id,
            name: self.name.clone(),
            org: self.org.clone(),
            peer_addr: self.address.peer_addr.clone(),
            api_url: self.address.api_url.clone(),
        }
    }
}

#[derive(Debug)]
pub struct ChannelPlan {
    pub name: String,
    /// The genesis configuration every node of the channel starts from.
    pub genesis: ChannelConfig,
    /// Approvals a chaincode definition needs on this channel.
    pub chaincode_approval: Approval,
}

#[derive(Debug)]
pub struct ChaincodePlan {
    /// Name of the `Chaincode` resource.
    pub resource: String,
    pub channel: String,
    pub name: String,
    pub version: String,
    pub module: ModuleRef,
    pub init: Option<InitCall>,
    pub approval: Approval,
    /// Approvals needed out of `approvers`.
    pub approvals_needed: usize,
    /// The channel's member organizations, each of which may approve.
    pub approvers: Vec<String>,
}

impl Plan {
    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn org(&self, name: &str) -> Option<&OrgPlan> {
        self.organizations.iter().find(|o| o.name == name)
    }

    pub fn channel(&self, name: &str) -> Option<&ChannelPlan> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// Nodes this plan runs (not external ones).
    pub fn hosted_nodes(&self) -> impl Iterator<Item = &NodePlan> {
        self.nodes.iter().filter(|n| n.hosted())
    }
}

/// Most nodes one `Peer` runs. Raft groups beyond a handful of voters only slow commits down;
/// an organization that needs more read capacity adds observer Peers.
pub const MAX_REPLICAS: i32 = 9;

/// Raft id of a node: a hash of where it is, so that it never changes when other Peers come
/// and go. Zero is reserved by Raft.
pub fn raft_id(namespace: &str, consortium: &str, node: &str) -> u64 {
    let h = Hash::tagged(
        b"tally-raft-id",
        &[
            namespace.as_bytes(),
            b"/",
            consortium.as_bytes(),
            b"/",
            node.as_bytes(),
        ],
    );
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.0[..8]);
    (u64::from_be_bytes(b) >> 1).max(1)
}

/// Plans one consortium.
pub fn plan(input: &PlanInput<'_>) -> Result<Plan, PlanErrors> {
    let ns = input.namespace;
    let mut p = Problems::new(ns);
    let in_ns = |m: &Meta| m.namespace == ns;
    let Some(cons) = input
        .resources
        .consortia
        .iter()
        .find(|c| in_ns(&c.meta) && c.meta.name == input.consortium)
    else {
        p.add(
            "Consortium",
            input.consortium,
            "metadata.name",
            "no such Consortium in the resources",
        );
        return Err(PlanErrors(p.list));
    };

    let lifetimes = match Lifetimes::parse(
        cons.certificates.validity.as_deref(),
        cons.certificates.renew_before.as_deref(),
    ) {
        Ok(l) => l,
        Err((field, msg)) => {
            p.add(
                "Consortium",
                &cons.meta.name,
                format!("spec.certificates.{field}"),
                msg,
            );
            Lifetimes::default()
        }
    };
    let mut issuing = Issuing::new(lifetimes, input.held, input.issued_at, input.now);
    let orgs = plan_orgs(input, cons, &mut issuing, &mut p);
    let org_names: Vec<&str> = cons.organizations.iter().map(|o| o.name.as_str()).collect();

    let mut peers: Vec<&Peer> = input
        .resources
        .peers
        .iter()
        .filter(|r| in_ns(&r.meta) && r.consortium == input.consortium)
        .collect();
    peers.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
    let mut nodes = plan_nodes(input, cons, &peers, &org_names, &mut issuing, &mut p);

    let mut channels: Vec<&Channel> = input
        .resources
        .channels
        .iter()
        .filter(|r| in_ns(&r.meta) && r.consortium == input.consortium)
        .collect();
    channels.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
    let channel_plans = plan_channels(cons, &channels, &peers, &mut nodes, &orgs, &mut p);

    let names: BTreeSet<&str> = channels.iter().map(|c| c.meta.name.as_str()).collect();
    let mut chaincodes: Vec<&Chaincode> = input
        .resources
        .chaincodes
        .iter()
        .filter(|r| in_ns(&r.meta) && names.contains(r.channel.as_str()))
        .collect();
    chaincodes.sort_by_key(|r| (r.channel.clone(), r.name.clone(), r.meta.name.clone()));
    let chaincode_plans = plan_chaincodes(&chaincodes, &channel_plans, &mut p);

    for n in &mut nodes {
        n.channels.sort();
        n.channels.dedup();
    }
    p.into_result(Plan {
        namespace: ns.to_string(),
        consortium: input.consortium.to_string(),
        display_name: cons.display_name.clone(),
        organizations: orgs,
        nodes,
        channels: channel_plans,
        chaincodes: chaincode_plans,
        lifetimes,
        renewed: issuing.renewed,
        next_renewal: issuing.next_due,
    })
}

fn plan_orgs(
    input: &PlanInput<'_>,
    cons: &Consortium,
    issuing: &mut Issuing<'_>,
    p: &mut Problems,
) -> Vec<OrgPlan> {
    let cname = cons.meta.name.clone();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, o) in cons.organizations.iter().enumerate() {
        let field = format!("spec.organizations[{i}]");
        if !valid_name(&o.name) || o.name.len() > 40 {
            p.add(
                "Consortium",
                &cname,
                format!("{field}.name"),
                format!("{:?} is not a DNS label of at most 40 characters", o.name),
            );
            continue;
        }
        if !seen.insert(o.name.as_str()) {
            p.add(
                "Consortium",
                &cname,
                format!("{field}.name"),
                format!("organization {:?} is listed twice", o.name),
            );
            continue;
        }
        if o.ca_mode == CaMode::Secret && o.ca_secret.is_none() {
            p.add(
                "Consortium",
                &cname,
                format!("{field}.ca.secretRef"),
                "required when ca.mode is Secret",
            );
        }
        let Some(ca) = input.cas.get(&o.name) else {
            p.add(
                "Consortium",
                &cname,
                format!("{field}.ca"),
                format!("no CA was provided for organization {:?}", o.name),
            );
            continue;
        };
        let pem = ca.cert_pem();
        match ca_org(&pem) {
            Ok(named) if named == o.name => {}
            Ok(named) => {
                p.add(
                    "Consortium",
                    &cname,
                    format!("{field}.ca"),
                    format!(
                        "the CA certificate of {:?} names organization {named:?}; its subject O must be the organization name",
                        o.name
                    ),
                );
                continue;
            }
            Err(e) => {
                p.add("Consortium", &cname, format!("{field}.ca"), e.to_string());
                continue;
            }
        }
        let fingerprint = pem_to_der(&pem).map(|d| cert_hash(&d)).unwrap_or_default();
        let (admin, client) = match ca {
            CaInput::Full(ca) => {
                let mut issue = |role: Role, name: &str| {
                    let w = issuing.window(&o.name, role.as_str(), name);
                    ca.issue_derived_until(role, name, &[], w.not_before, w.not_after)
                        .map_err(|e| e.to_string())
                };
                match (
                    issue(Role::Admin, ADMIN_NAME),
                    issue(Role::Client, CLIENT_NAME),
                ) {
                    (Ok(a), Ok(c)) => (Some(a), Some(c)),
                    (Err(e), _) | (_, Err(e)) => {
                        p.add("Consortium", &cname, format!("{field}.ca"), e);
                        (None, None)
                    }
                }
            }
            CaInput::CertOnly(_) => (None, None),
        };
        out.push(OrgPlan {
            name: o.name.clone(),
            display_name: o.display_name.clone(),
            ca_pem: pem,
            ca_fingerprint: fingerprint,
            admin,
            client,
        });
    }
    for (i, c) in cons.policies.channel_creators.iter().enumerate() {
        if !seen.contains(c.as_str()) {
            p.add(
                "Consortium",
                &cname,
                format!("spec.policies.channelCreators[{i}]"),
                format!("{c:?} is not an organization of the consortium"),
            );
        }
    }
    check_approval(
        p,
        "Consortium",
        &cname,
        "spec.policies.membershipApproval",
        &cons.policies.membership_approval,
        seen.len(),
    );
    check_approval(
        p,
        "Consortium",
        &cname,
        "spec.policies.chaincodeApproval",
        &cons.policies.chaincode_approval,
        seen.len(),
    );
    out
}

fn check_approval(
    p: &mut Problems,
    kind: &'static str,
    name: &str,
    field: &str,
    a: &Approval,
    members: usize,
) {
    use spec::ApprovalRule::AtLeast;
    match (a.rule, a.count) {
        (AtLeast, None) => p.add(
            kind,
            name,
            format!("{field}.count"),
            "required with rule AtLeast",
        ),
        (AtLeast, Some(n)) if n == 0 || n as usize > members => p.add(
            kind,
            name,
            format!("{field}.count"),
            format!("{n} is not between 1 and the {members} member organizations"),
        ),
        (AtLeast, Some(_)) => {}
        (_, Some(_)) => p.add(
            kind,
            name,
            format!("{field}.count"),
            "only used with rule AtLeast",
        ),
        (_, None) => {}
    }
}

fn plan_nodes(
    input: &PlanInput<'_>,
    cons: &Consortium,
    peers: &[&Peer],
    org_names: &[&str],
    issuing: &mut Issuing<'_>,
    p: &mut Problems,
) -> Vec<NodePlan> {
    let ns = input.namespace;
    let mut nodes: Vec<NodePlan> = Vec::new();
    let mut names = BTreeSet::new();
    let mut hosted = 0usize;
    for r in peers {
        let name = r.meta.name.clone();
        let mut ok = true;
        if !valid_name(&name) || name.len() > 50 {
            p.add(
                "Peer",
                &name,
                "metadata.name",
                "a Peer name is a DNS label of at most 50 characters",
            );
            ok = false;
        }
        if !org_names.contains(&r.organization.as_str()) {
            p.add(
                "Peer",
                &name,
                "spec.organization",
                format!(
                    "{:?} is not a member of Consortium {:?} (members: {})",
                    r.organization,
                    input.consortium,
                    org_names.join(", ")
                ),
            );
            ok = false;
        }
        if !(0..=MAX_REPLICAS).contains(&r.replicas) {
            p.add(
                "Peer",
                &name,
                "spec.replicas",
                format!("{} is not between 0 and {}", r.replicas, MAX_REPLICAS),
            );
            ok = false;
        }
        if !ok {
            continue;
        }
        let ca = match input.cas.get(&r.organization) {
            Some(CaInput::Full(ca)) => Some(ca),
            Some(CaInput::CertOnly(_)) => {
                p.add(
                    "Peer",
                    &name,
                    "spec.organization",
                    format!(
                        "organization {:?} brings its CA without the key, so no certificates can be issued for nodes here",
                        r.organization
                    ),
                );
                None
            }
            None => None, // reported with the consortium
        };
        for ordinal in 0..r.replicas.max(0) as u32 {
            let node = node_name(&name, ordinal);
            if !names.insert(node.clone()) {
                p.add(
                    "Peer",
                    &name,
                    "metadata.name",
                    format!("node name {node:?} is used twice"),
                );
                continue;
            }
            let address = input.addressing.hosted(ns, &name, &node, hosted).exposed(
                r.exposure.as_ref(),
                &node,
                ordinal,
            );
            hosted += 1;
            let identity = ca.and_then(|ca| {
                let w = issuing.window(&r.organization, Role::Node.as_str(), &node);
                ca.issue_derived_until(Role::Node, &node, &address.sans, w.not_before, w.not_after)
                    .map_err(|e| {
                        p.add(
                            "Peer",
                            &name,
                            "metadata.name",
                            format!("cannot issue {node}: {e}"),
                        )
                    })
                    .ok()
            });
            nodes.push(NodePlan {
                raft_id: raft_id(ns, input.consortium, &node),
                name: node,
                peer: Some(name.clone()),
                ordinal: Some(ordinal),
                org: r.organization.clone(),
                role: r.role,
                address,
                identity,
                channels: Vec::new(),
            });
        }
    }
    if hosted > input.addressing.capacity() {
        p.add(
            "Consortium",
            input.consortium,
            "metadata.name",
            format!(
                "{hosted} nodes do not fit the {} addresses of this mode",
                input.addressing.capacity()
            ),
        );
    }
    let cname = cons.meta.name.clone();
    for (i, o) in cons.organizations.iter().enumerate() {
        for (j, e) in o.external_peers.iter().enumerate() {
            let field = format!("spec.organizations[{i}].externalPeers[{j}].name");
            if !valid_name(&e.name) {
                p.add(
                    "Consortium",
                    &cname,
                    field,
                    format!("{:?} is not a DNS label", e.name),
                );
                continue;
            }
            if !names.insert(e.name.clone()) {
                p.add(
                    "Consortium",
                    &cname,
                    field,
                    format!("node name {:?} is used twice", e.name),
                );
                continue;
            }
            nodes.push(NodePlan {
                raft_id: e
                    .raft_id
                    .unwrap_or_else(|| raft_id(ns, input.consortium, &e.name)),
                name: e.name.clone(),
                peer: None,
                ordinal: None,
                org: o.name.clone(),
                role: e.role,
                address: NodeAddress::external(e),
                identity: None,
                channels: Vec::new(),
            });
        }
    }
    let mut ids = BTreeMap::new();
    for n in &nodes {
        if let Some(other) = ids.insert(n.raft_id, n.name.clone()) {
            p.add(
                "Consortium",
                &cname,
                "metadata.name",
                format!(
                    "nodes {other:?} and {:?} have the same Raft id {}; rename one, or give the external peer the raftId its own cluster knows it by",
                    n.name, n.raft_id
                ),
            );
        }
    }
    nodes
}

/// What the nodes a channel lists are checked against.
struct NodeScope<'a> {
    members: &'a BTreeSet<&'a str>,
    peers: &'a [&'a Peer],
    nodes: &'a [NodePlan],
}

/// The nodes a channel names in `consenters` or `observers`, checked against the Peers and
/// external peers of the consortium.
fn resolve_nodes(
    ch: &Channel,
    field: &str,
    list: &[String],
    want: PeerRole,
    scope: &NodeScope<'_>,
    p: &mut Problems,
) -> Vec<usize> {
    let NodeScope {
        members,
        peers,
        nodes,
    } = *scope;
    let name = ch.meta.name.clone();
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let (org, role, idx): (String, PeerRole, Vec<usize>) = if let Some(peer) =
            peers.iter().find(|r| r.meta.name == *item)
        {
            let idx = nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.peer.as_deref() == Some(item.as_str()))
                .map(|(k, _)| k)
                .collect();
            (peer.organization.clone(), peer.role, idx)
        } else if let Some(k) = nodes.iter().position(|n| !n.hosted() && n.name == *item) {
            (nodes[k].org.clone(), nodes[k].role, vec![k])
        } else {
            let known: Vec<&str> = peers.iter().map(|r| r.meta.name.as_str()).collect();
            p.add(
                    "Channel",
                    &name,
                    at,
                    format!(
                        "{item:?} is neither a Peer of consortium {:?} nor one of its external peers (Peers: {})",
                        ch.consortium,
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ),
                );
            continue;
        };
        if want == PeerRole::Consenter && role == PeerRole::Observer {
            p.add(
                "Channel",
                &name,
                at,
                format!("{item:?} has role observer, so it can only be listed in spec.observers"),
            );
            continue;
        }
        if !members.contains(org.as_str()) {
            p.add(
                "Channel",
                &name,
                at,
                format!(
                    "{item:?} belongs to organization {org:?}, which is not a member of the channel (spec.members)"
                ),
            );
            continue;
        }
        out.extend(idx);
    }
    out
}

fn plan_channels(
    cons: &Consortium,
    channels: &[&Channel],
    peers: &[&Peer],
    nodes: &mut [NodePlan],
    orgs: &[OrgPlan],
    p: &mut Problems,
) -> Vec<ChannelPlan> {
    let ordering = &cons.ordering;
    let mut out = Vec::new();
    for ch in channels {
        let name = ch.meta.name.clone();
        let before = p.list.len();
        if !valid_name(&name) {
            p.add(
                "Channel",
                &name,
                "metadata.name",
                "a channel name is a DNS label",
            );
        }
        let mut members = BTreeSet::new();
        for (i, m) in ch.members.iter().enumerate() {
            if !cons.organizations.iter().any(|o| &o.name == m) {
                p.add(
                    "Channel",
                    &name,
                    format!("spec.members[{i}]"),
                    format!(
                        "{m:?} is not an organization of consortium {:?}",
                        ch.consortium
                    ),
                );
            } else if !members.insert(m.as_str()) {
                p.add(
                    "Channel",
                    &name,
                    format!("spec.members[{i}]"),
                    format!("{m:?} is listed twice"),
                );
            }
        }
        // A channel is created only with every member's approval of its genesis (each node
        // checks that); channelCreators then narrows who may take part in creating one: a
        // channel must count a creator among its members, whose admin approves it.
        let creators = &cons.policies.channel_creators;
        if !creators.is_empty()
            && !members.is_empty()
            && !creators.iter().any(|c| members.contains(c.as_str()))
        {
            p.add(
                "Channel",
                &name,
                "spec.members",
                format!(
                    "none of the members is a channel creator of consortium {:?} ({}): only a channel with one of them as a member may be created",
                    ch.consortium,
                    creators.join(", ")
                ),
            );
        }
        for c in &ch.consenters {
            if ch.observers.contains(c) {
                p.add(
                    "Channel",
                    &name,
                    "spec.observers",
                    format!("{c:?} is listed both as a consenter and as an observer"),
                );
            }
        }
        let scope = NodeScope {
            members: &members,
            peers,
            nodes,
        };
        let consenters = resolve_nodes(
            ch,
            "spec.consenters",
            &ch.consenters,
            PeerRole::Consenter,
            &scope,
            p,
        );
        let observers = resolve_nodes(
            ch,
            "spec.observers",
            &ch.observers,
            PeerRole::Observer,
            &scope,
            p,
        );
        if consenters.is_empty() && p.list.len() == before {
            p.add(
                "Channel",
                &name,
                "spec.consenters",
                "the listed Peers have no nodes (replicas 0); a channel needs at least one consenter node",
            );
        }
        let policies = &ch.policies;
        for (field, list) in [
            ("readers", &policies.readers),
            ("writers", &policies.writers),
            ("admins", &policies.admins),
        ] {
            for (i, o) in list.iter().enumerate() {
                if !members.contains(o.as_str()) {
                    p.add(
                        "Channel",
                        &name,
                        format!("spec.policies.{field}[{i}]"),
                        format!("{o:?} is not a member of the channel"),
                    );
                }
            }
        }
        let approval = policies
            .chaincode_lifecycle
            .unwrap_or(cons.policies.chaincode_approval);
        check_approval(
            p,
            "Channel",
            &name,
            "spec.policies.chaincodeLifecycle",
            &approval,
            members.len(),
        );
        if p.list.len() != before {
            continue;
        }
        let member_list: Vec<OrgMember> = ch
            .members
            .iter()
            .filter_map(|m| orgs.iter().find(|o| &o.name == m))
            .map(|o| OrgMember::new(&o.name, &o.ca_pem))
            .collect();
        if member_list.len() != ch.members.len() {
            continue; // an organization without a usable CA, reported with the consortium
        }
        let mut genesis = ChannelConfig::new(
            &name,
            member_list,
            consenters.iter().map(|&k| nodes[k].node_ref()).collect(),
            observers.iter().map(|&k| nodes[k].node_ref()).collect(),
        );
        genesis.batch = match &ch.batch {
            Some(b) => BatchConfig {
                max_txs: b.max_transactions,
                max_bytes: b.max_bytes,
                timeout_ms: b.timeout_ms,
            },
            None => BatchConfig {
                max_txs: ordering.batch_max_transactions,
                max_bytes: ordering.batch_max_bytes,
                timeout_ms: ordering.batch_timeout_ms,
            },
        };
        // A transaction never outgrows a block: small blocks bring a smaller transaction limit.
        genesis.max_tx_bytes = genesis.max_tx_bytes.min(genesis.batch.max_bytes);
        genesis.snapshot_interval = ch.snapshot_interval.unwrap_or(ordering.snapshot_interval);
        genesis.policies.readers = policies.readers.clone();
        genesis.policies.writers = policies.writers.clone();
        genesis.policies.admins = policies.admins.clone();
        genesis.policies.membership = membership_rule(&cons.policies.membership_approval);
        // The same shape of rule, counted over the members when a definition is committed.
        genesis.policies.chaincode = membership_rule(&approval);
        if let Err(e) = genesis.validate() {
            p.add("Channel", &name, "spec", e.to_string());
            continue;
        }
        for &k in consenters.iter().chain(&observers) {
            nodes[k].channels.push(name.clone());
        }
        out.push(ChannelPlan {
            name,
            genesis,
            chaincode_approval: approval,
        });
    }
    out
}

fn plan_chaincodes(
    chaincodes: &[&Chaincode],
    channels: &[ChannelPlan],
    p: &mut Problems,
) -> Vec<ChaincodePlan> {
    let mut out: Vec<ChaincodePlan> = Vec::new();
    let mut defined: BTreeMap<(String, String), String> = BTreeMap::new();
    for cc in chaincodes {
        let res = cc.meta.name.clone();
        let Some(ch) = channels.iter().find(|c| c.name == cc.channel) else {
            continue; // the channel has problems of its own, already reported
        };
        let before = p.list.len();
        if !valid_name(&cc.name.replace('_', "-")) {
            p.add(
                "Chaincode",
                &res,
                "spec.name",
                format!("{:?} is not a valid chaincode name", cc.name),
            );
        }
        if cc.version.is_empty() || cc.version.contains(char::is_whitespace) {
            p.add(
                "Chaincode",
                &res,
                "spec.version",
                "a version is a non-empty label without spaces",
            );
        }
        let sha = &cc.module.sha256;
        if sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            p.add(
                "Chaincode",
                &res,
                "spec.source.sha256",
                "64 lowercase hex digits of the module's SHA-256",
            );
        }
        if let Some(other) = defined.insert((ch.name.clone(), cc.name.clone()), res.clone()) {
            p.add(
                "Chaincode",
                &res,
                "spec.name",
                format!(
                    "Chaincode {other:?} already defines {:?} on channel {:?}",
                    cc.name, ch.name
                ),
            );
        }
        let approvers: Vec<String> = ch.genesis.members.iter().map(|m| m.name.clone()).collect();
        let approval = cc.approval.unwrap_or(ch.chaincode_approval);
        check_approval(
            p,
            "Chaincode",
            &res,
            "spec.approval",
            &approval,
            approvers.len(),
        );
        if p.list.len() != before {
            continue;
        }
        out.push(ChaincodePlan {
            resource: res,
            channel: ch.name.clone(),
            name: cc.name.clone(),
            version: cc.version.clone(),
            module: cc.module.clone(),
            init: cc.init.clone(),
            approvals_needed: approval.needed(approvers.len()),
            approval,
            approvers,
        });
    }
    out
}

/// References that lead nowhere in a set of resources: a Peer or Channel naming a consortium
/// that is not there, a Chaincode naming a channel that is not there. The operator waits for
/// such resources to appear; a local run reports them.
pub fn dangling(resources: &Resources) -> Vec<PlanError> {
    let consortia: BTreeSet<&Meta> = resources.consortia.iter().map(|c| &c.meta).collect();
    let channels: BTreeSet<&Meta> = resources.channels.iter().map(|c| &c.meta).collect();
    let peers = resources.peers.iter().filter_map(|r| {
        missing(
            "Peer",
            &r.meta,
            "spec.consortium",
            "Consortium",
            &r.consortium,
            &consortia,
        )
    });
    let chans = resources.channels.iter().filter_map(|r| {
        missing(
            "Channel",
            &r.meta,
            "spec.consortium",
            "Consortium",
            &r.consortium,
            &consortia,
        )
    });
    let codes = resources.chaincodes.iter().filter_map(|r| {
        missing(
            "Chaincode",
            &r.meta,
            "spec.channel",
            "Channel",
            &r.channel,
            &channels,
        )
    });
    peers.chain(chans).chain(codes).collect()
}

/// The error for the resource at `meta`, whose `field` names the `what` called `target`, when
/// no such resource is among `known`.
fn missing(
    kind: &'static str,
    meta: &Meta,
    field: &str,
    what: &str,
    target: &str,
    known: &BTreeSet<&Meta>,
) -> Option<PlanError> {
    if known.contains(&Meta::new(&meta.namespace, target)) {
        return None;
    }
    Some(PlanError {
        kind,
        message: format!("no {what} {target:?} in namespace {:?}", meta.namespace),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        field: field.to_string(),
    })
}

/// The consortium's `membershipApproval` as each channel's ledger enforces it: never less than
/// a majority of the channel's admin organizations (so `Any` is a majority there).
pub fn membership_rule(a: &spec::Approval) -> tally_protocol::config::MembershipRule {
    use tally_protocol::config::MembershipRule as R;
    match a.rule {
        spec::ApprovalRule::Majority | spec::ApprovalRule::Any => R::Majority,
        spec::ApprovalRule::All => R::All,
        spec::ApprovalRule::AtLeast => R::AtLeast(a.count.unwrap_or(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::config::MembershipRule as R;

    #[test]
    fn the_consortiums_membership_approval_becomes_each_channels_rule() {
        let rule = |rule, count| membership_rule(&spec::Approval { rule, count });
        assert_eq!(rule(spec::ApprovalRule::Majority, None), R::Majority);
        assert_eq!(rule(spec::ApprovalRule::Any, None), R::Majority);
        assert_eq!(rule(spec::ApprovalRule::All, None), R::All);
        assert_eq!(rule(spec::ApprovalRule::AtLeast, Some(3)), R::AtLeast(3));
    }
}
