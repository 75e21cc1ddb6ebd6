//! One side of a consortium: the organizations `tallyctl up` does not host.
//!
//! An organization is external when the manifests carry its `OrganizationBundle` (what
//! `tallyctl org export` or `kubectl tally org export` writes on the other side) or when
//! `--external ORG` names it. The local mode then holds only its CA certificate, runs none of
//! its nodes and signs nothing for it: its Peers in the manifests are replaced by the nodes
//! its bundle lists (same names, Raft ids and addresses), so that both sides plan the same
//! genesis from the same manifests. An external organization whose bundle has not arrived yet
//! leaves out the channels it is a member of until it does.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use tally_api::bundle::{self, OrganizationBundle};
use tally_planner::spec;

/// The external organizations of one run: each with its bundle, or `None` while it has not
/// arrived.
pub type Externals = BTreeMap<String, Option<OrganizationBundle>>;

/// Every `OrganizationBundle` document of the files.
pub fn read_bundles(files: &[PathBuf]) -> Result<Vec<OrganizationBundle>> {
    use serde::Deserialize as _;
    let mut out: Vec<OrganizationBundle> = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let at = || format!("{}, document {}", f.display(), i + 1);
            let value = serde_yaml::Value::deserialize(doc).with_context(at)?;
            if value.get("kind").and_then(|k| k.as_str()) != Some(bundle::KIND) {
                continue;
            }
            let b: OrganizationBundle = serde_yaml::from_value(value).with_context(at)?;
            b.check().with_context(at)?;
            if out.iter().any(|o| o.organization == b.organization) {
                bail!("{}: a second bundle of {}", at(), b.organization);
            }
            out.push(b);
        }
    }
    Ok(out)
}

/// A channel left out because an external member's bundle has not arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub channel: String,
    pub orgs: Vec<String>,
}

/// Turns the consortium's resources into this side's: each external organization with a
/// bundle gets the bundle's nodes as its external peers and loses its Peers, which channels
/// then name by those nodes (a Peer `P` becomes its nodes `P-0`, `P-1`, ... in ordinal
/// order, as the other side planned them); one without a bundle leaves the consortium, with
/// the channels it is a member of (returned).
pub fn apply(
    res: &mut spec::Resources,
    namespace: &str,
    consortium: &str,
    externals: &Externals,
) -> Result<Vec<Waiting>> {
    let ours = |m: &spec::Meta| m.namespace == namespace;
    let cons = res
        .consortia
        .iter_mut()
        .find(|c| ours(&c.meta) && c.meta.name == consortium)
        .ok_or_else(|| anyhow!("no Consortium {namespace}/{consortium} in the manifests"))?;
    for org in externals.keys() {
        if !cons.organizations.iter().any(|o| &o.name == org) {
            bail!(
                "organization {org} (an external organization: its bundle or --external) is not an organization of Consortium {consortium} (organizations: {})",
                cons.organizations
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let absent: BTreeSet<&str> = externals
        .iter()
        .filter(|(_, b)| b.is_none())
        .map(|(o, _)| o.as_str())
        .collect();
    for o in &mut cons.organizations {
        if let Some(Some(b)) = externals.get(&o.name) {
            o.external_peers = b
                .nodes
                .iter()
                .map(|n| spec::ExternalPeer {
                    name: n.name.clone(),
                    peer_address: n.peer_address.clone(),
                    api_url: n.api_url.clone(),
                    role: n.role,
                    raft_id: Some(n.raft_id),
                })
                .collect();
        }
    }
    cons.organizations
        .retain(|o| !absent.contains(o.name.as_str()));
    cons.policies
        .channel_creators
        .retain(|c| !absent.contains(c.as_str()));

    // Peer name -> the nodes the other side runs for it.
    let mut replaced: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in res
        .peers
        .iter()
        .filter(|p| ours(&p.meta) && p.consortium == consortium)
    {
        let Some(b) = externals.get(&p.organization) else {
            continue;
        };
        let mut nodes: Vec<(u32, String)> = b
            .iter()
            .flat_map(|b| &b.nodes)
            .filter_map(|n| {
                let ordinal = n.name.strip_prefix(&format!("{}-", p.meta.name))?;
                Some((ordinal.parse().ok()?, n.name.clone()))
            })
            .collect();
        nodes.sort();
        if b.is_some() && nodes.is_empty() && p.replicas > 0 {
            bail!(
                "Peer {} of organization {}: the organization's bundle lists no node {}-0 ... (its nodes: {}); \
                 export the bundle again from the side that runs it",
                p.meta.name,
                p.organization,
                p.meta.name,
                b.iter()
                    .flat_map(|b| &b.nodes)
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        replaced.insert(
            p.meta.name.clone(),
            nodes.into_iter().map(|(_, n)| n).collect(),
        );
    }
    res.peers.retain(|p| {
        !(ours(&p.meta) && p.consortium == consortium && replaced.contains_key(&p.meta.name))
    });

    let mut waiting = Vec::new();
    let swap = |list: &mut Vec<String>| {
        *list = list
            .iter()
            .flat_map(|item| match replaced.get(item) {
                Some(nodes) => nodes.clone(),
                None => vec![item.clone()],
            })
            .collect();
    };
    res.channels.retain_mut(|c| {
        if !(ours(&c.meta) && c.consortium == consortium) {
            return true;
        }
        let missing: Vec<String> = c
            .members
            .iter()
            .filter(|m| absent.contains(m.as_str()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            waiting.push(Waiting {
                channel: c.meta.name.clone(),
                orgs: missing,
            });
            return false;
        }
        swap(&mut c.consenters);
        swap(&mut c.observers);
        true
    });
    let gone: BTreeSet<String> = waiting.iter().map(|w| w.channel.clone()).collect();
    res.chaincodes
        .retain(|cc| !(ours(&cc.meta) && gone.contains(&cc.channel)));
    Ok(waiting)
}

/// The CA certificate of each external organization with a bundle, as the channels list it
/// (the bundle's first, the one that issues).
pub fn external_cas(externals: &Externals) -> BTreeMap<String, tally_planner::CaInput> {
    externals
        .iter()
        .filter_map(|(o, b)| {
            let pem = b.as_ref()?.ca_certificates.first()?.clone();
            Some((o.clone(), tally_planner::CaInput::CertOnly(pem)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_api::bundle::BundleNode;
    use tally_planner::{Addressing, CaInput, Plan, PlanInput};
    use tally_protocol::OrgCa;

    const NS: &str = "default";
    const CONS: &str = "supply-chain-finance";
    const SIDE_A: [&str; 3] = ["core-enterprise", "supplier-tier1", "supplier-tier2"];

    fn example() -> spec::Resources {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/examples/supply-chain-finance.yaml");
        tally_api::manifest::Resources::read_files(&[path])
            .expect("the example reads")
            .to_plan()
    }

    /// Plans one side: `hosted` with their CAs (keys), the others from `externals`.
    fn plan_side(
        hosted: &BTreeMap<String, OrgCa>,
        externals: &Externals,
        prefix: &str,
    ) -> (Plan, Vec<Waiting>) {
        let mut res = example();
        let waiting = apply(&mut res, NS, CONS, externals).expect("applies");
        let mut cas = external_cas(externals);
        for (o, ca) in hosted {
            let copy = OrgCa::from_pem(o, &ca.cert_pem(), &ca.key_pem()).expect("the CA reads");
            cas.insert(o.clone(), CaInput::Full(Box::new(copy)));
        }
        let plan = tally_planner::plan(&PlanInput {
            resources: &res,
            namespace: NS,
            consortium: CONS,
            cas: &cas,
            addressing: &Addressing::Loopback {
                prefix: prefix.to_string(),
            },
            issued_at: 1_700_000_000,
            held: &tally_planner::NOTHING_HELD,
            now: None,
        })
        .expect("plans");
        (plan, waiting)
    }

    /// What `tallyctl org export` writes for `org`, from a plan.
    fn bundle(plan: &Plan, org: &str) -> OrganizationBundle {
        let mut b = OrganizationBundle::new(org);
        b.ca_certificates
            .push(plan.org(org).expect("org").ca_pem.clone());
        for n in plan.hosted_nodes().filter(|n| n.org == org) {
            b.nodes.push(BundleNode {
                name: n.name.clone(),
                raft_id: n.raft_id,
                role: n.role,
                peer_address: n.address.peer_addr.clone(),
                api_url: n.address.api_url.clone(),
            });
        }
        // Through YAML, as it travels.
        OrganizationBundle::parse(&serde_yaml::to_string(&b).expect("yaml")).expect("parses")
    }

    fn cas(orgs: &[&str]) -> BTreeMap<String, OrgCa> {
        orgs.iter()
            .map(|o| (o.to_string(), OrgCa::generate(o).expect("CA")))
            .collect()
    }

    #[test]
    fn both_sides_plan_the_same_genesis_bytes() {
        let a_cas = cas(&SIDE_A);
        let b_cas = cas(&["bank"]);
        // B first, without A's bundles: the bank's node, every channel waiting.
        let none: Externals = SIDE_A.iter().map(|o| (o.to_string(), None)).collect();
        let (b0, waiting) = plan_side(&b_cas, &none, "127.2.2");
        assert!(b0.channels.is_empty());
        assert_eq!(
            waiting,
            [
                Waiting {
                    channel: "receivables".into(),
                    orgs: SIDE_A.map(String::from).to_vec()
                },
                Waiting {
                    channel: "financing".into(),
                    orgs: vec!["core-enterprise".into()]
                }
            ]
        );
        let bank = bundle(&b0, "bank");
        let ext_a: Externals = [("bank".to_string(), Some(bank))].into();
        let (a, waiting) = plan_side(&a_cas, &ext_a, "127.1.1");
        assert!(waiting.is_empty());
        let ext_b: Externals = SIDE_A
            .iter()
            .map(|o| (o.to_string(), Some(bundle(&a, o))))
            .collect();
        let (b, _) = plan_side(&b_cas, &ext_b, "127.2.2");
        assert_eq!(a.channels.len(), 2);
        for ca in &a.channels {
            let cb = b.channel(&ca.name).expect("B plans it too");
            assert_eq!(
                serde_json::to_vec(&ca.genesis).expect("json"),
                serde_json::to_vec(&cb.genesis).expect("json"),
                "channel {}",
                ca.name
            );
            assert_eq!(ca.genesis.hash(), cb.genesis.hash());
        }
        // Each side runs its own nodes only, and knows the others by their bundles.
        let hosted = |p: &Plan| p.hosted_nodes().map(|n| n.name.clone()).collect::<Vec<_>>();
        assert_eq!(hosted(&b), ["bank-peer-0"]);
        assert_eq!(
            hosted(&a),
            [
                "core-enterprise-peer-0",
                "core-enterprise-peer-1",
                "supplier-tier1-observer-0"
            ]
        );
        assert!(a.org("bank").expect("bank").admin.is_none());
    }

    #[test]
    fn a_bundle_that_does_not_fit_the_manifests_is_refused_with_the_reason() {
        let b_cas = cas(&["bank"]);
        let none: Externals = SIDE_A.iter().map(|o| (o.to_string(), None)).collect();
        let (b0, _) = plan_side(&b_cas, &none, "127.2.2");
        // Its nodes renamed: the Peer bank-peer has no node in it.
        let mut bank = bundle(&b0, "bank");
        bank.nodes[0].name = "vault-0".into();
        let mut res = example();
        let e = apply(
            &mut res,
            NS,
            CONS,
            &[("bank".to_string(), Some(bank))].into(),
        )
        .expect_err("refused")
        .to_string();
        assert!(e.contains("Peer bank-peer") && e.contains("vault-0"), "{e}");
        // An organization the consortium does not have.
        let mut res = example();
        let e = apply(&mut res, NS, CONS, &[("insurer".to_string(), None)].into())
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("insurer") && e.contains("not an organization"),
            "{e}"
        );
    }
}
