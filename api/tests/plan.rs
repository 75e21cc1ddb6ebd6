//! The planner on the kinds as tenants write them: YAML manifests read by `tally-api`, turned
//! into the planner's plain specs, planned.

use std::collections::{BTreeMap, BTreeSet};
use tally_api::manifest::Resources;
use tally_planner::spec;
use tally_planner::spec::PeerRole;
use tally_planner::*;
use tally_protocol::identity::now_unix;
use tally_protocol::{OrgCa, Role};

const BASE: &str = r#"
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {name: demo}
spec:
  organizations: [{name: org1}, {name: org2}, {name: org3}]
  ordering: {batchMaxTransactions: 100, batchMaxBytes: 1048576, batchTimeoutMs: 50, snapshotInterval: 200}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: org1-nodes}
spec: {consortium: demo, organization: org1, replicas: 2}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: org2-nodes}
spec: {consortium: demo, organization: org2}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: org3-audit}
spec: {consortium: demo, organization: org3, role: observer}
---
apiVersion: tally.dev/v1alpha1
kind: Channel
metadata: {name: main}
spec:
  consortium: demo
  members: [org1, org2, org3]
  consenters: [org1-nodes, org2-nodes]
  observers: [org3-audit]
  policies: {writers: [org1, org2]}
---
apiVersion: tally.dev/v1alpha1
kind: Channel
metadata: {name: private}
spec:
  consortium: demo
  members: [org1, org2]
  consenters: [org1-nodes]
  batch: {maxTransactions: 10, maxBytes: 65536, timeoutMs: 5}
---
apiVersion: tally.dev/v1alpha1
kind: Chaincode
metadata: {name: notary-v1}
spec:
  channel: main
  name: notary
  version: "1.0"
  source: {configMap: {name: notary-wasm, key: notary.wasm}, sha256: "0000000000000000000000000000000000000000000000000000000000000000"}
"#;

struct Fixture {
    resources: spec::Resources,
    cas: BTreeMap<String, CaInput>,
    issued_at: i64,
}

fn cas(orgs: &[&str]) -> BTreeMap<String, CaInput> {
    orgs.iter()
        .map(|o| {
            (
                o.to_string(),
                CaInput::Full(Box::new(OrgCa::generate(o).unwrap())),
            )
        })
        .collect()
}

fn fixture(yaml: &str) -> Fixture {
    Fixture {
        resources: Resources::from_yaml("test.yaml", yaml).unwrap().to_plan(),
        cas: cas(&["org1", "org2", "org3"]),
        issued_at: now_unix() - 60,
    }
}

fn loopback() -> Addressing {
    Addressing::Loopback {
        prefix: "127.9.9".into(),
    }
}

fn run(f: &Fixture, addressing: &Addressing) -> Result<Plan, PlanErrors> {
    plan(&PlanInput {
        resources: &f.resources,
        namespace: "default",
        consortium: "demo",
        cas: &f.cas,
        addressing,
        issued_at: f.issued_at,
        held: &tally_planner::NOTHING_HELD,
        now: None,
    })
}

fn errors(yaml: &str) -> PlanErrors {
    run(&fixture(yaml), &loopback()).unwrap_err()
}

#[test]
fn plans_nodes_identities_and_channels() {
    let f = fixture(BASE);
    let plan = run(&f, &loopback()).unwrap();
    let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "org1-nodes-0",
            "org1-nodes-1",
            "org2-nodes-0",
            "org3-audit-0"
        ]
    );
    let hosts: Vec<&str> = plan.nodes.iter().map(|n| n.address.host.as_str()).collect();
    assert_eq!(hosts, ["127.9.9.1", "127.9.9.2", "127.9.9.3", "127.9.9.4"]);
    let ids: BTreeSet<u64> = plan.nodes.iter().map(|n| n.raft_id).collect();
    assert_eq!(ids.len(), 4);

    // Identities chain to their organization's CA and name the node and its address.
    let now = Some(now_unix());
    for n in &plan.nodes {
        let Some(CaInput::Full(ca)) = f.cas.get(&n.org) else {
            panic!()
        };
        let id = n.identity.as_ref().unwrap();
        let info = ca.trusted().verify(&id.cert_der, now).unwrap();
        assert_eq!(info.common_name, n.name);
        assert_eq!(info.role, Role::Node);
        let text = String::from_utf8_lossy(&id.cert_der).to_string();
        assert!(!text.is_empty());
        assert!(n.address.sans.contains(&n.address.host));
    }
    for o in &plan.organizations {
        let Some(CaInput::Full(ca)) = f.cas.get(&o.name) else {
            panic!()
        };
        assert_eq!(
            ca.trusted()
                .verify(&o.admin.as_ref().unwrap().cert_der, now)
                .unwrap()
                .role,
            Role::Admin
        );
        assert_eq!(
            ca.trusted()
                .verify(&o.client.as_ref().unwrap().cert_der, now)
                .unwrap()
                .role,
            Role::Client
        );
        assert_eq!(o.ca_fingerprint, ca.trusted().fingerprint());
    }

    let main = plan.channel("main").unwrap();
    let g = &main.genesis;
    assert_eq!(
        g.consenters
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        ["org1-nodes-0", "org1-nodes-1", "org2-nodes-0"]
    );
    assert_eq!(
        g.observers
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        ["org3-audit-0"]
    );
    assert_eq!(g.policies.writers, ["org1", "org2"]);
    assert_eq!(g.batch.max_txs, 100, "consortium ordering is the default");
    assert_eq!(g.snapshot_interval, 200);
    assert!(g.validate().is_ok());
    let private = plan.channel("private").unwrap();
    assert_eq!(
        private.genesis.batch.max_txs, 10,
        "the channel's own batch wins"
    );
    assert_eq!(private.genesis.members.len(), 2);

    assert_eq!(
        plan.node("org1-nodes-0").unwrap().channels,
        ["main", "private"]
    );
    assert_eq!(plan.node("org3-audit-0").unwrap().channels, ["main"]);
    assert_eq!(plan.node("org3-audit-0").unwrap().role, PeerRole::Observer);

    let cc = &plan.chaincodes[0];
    assert_eq!((cc.channel.as_str(), cc.name.as_str()), ("main", "notary"));
    assert_eq!(cc.approvers, ["org1", "org2", "org3"]);
    assert_eq!(cc.approvals_needed, 2, "a majority of three");
}

#[test]
fn the_same_input_gives_the_same_plan_whatever_the_order() {
    let f = fixture(BASE);
    let a = run(&f, &loopback()).unwrap();
    let b = run(&f, &loopback()).unwrap();
    let mut shuffled = f.resources.clone();
    shuffled.peers.reverse();
    shuffled.channels.reverse();
    let g = Fixture {
        resources: shuffled,
        cas: f.cas,
        issued_at: f.issued_at,
    };
    let c = run(&g, &loopback()).unwrap();
    for other in [&b, &c] {
        assert_eq!(a.channels.len(), other.channels.len());
        for (x, y) in a.channels.iter().zip(&other.channels) {
            assert_eq!(x.genesis, y.genesis);
            assert_eq!(x.genesis.hash(), y.genesis.hash());
        }
        for (x, y) in a.nodes.iter().zip(&other.nodes) {
            assert_eq!(x.name, y.name);
            assert_eq!(x.address, y.address);
            assert_eq!(
                x.identity.as_ref().unwrap().cert_der,
                y.identity.as_ref().unwrap().cert_der
            );
        }
    }
}

#[test]
fn kubernetes_addressing_uses_stable_pod_names() {
    let f = fixture(BASE);
    let k8s = Addressing::Kubernetes {
        cluster_domain: "cluster.local".into(),
    };
    let plan = run(&f, &k8s).unwrap();
    let n = plan.node("org1-nodes-1").unwrap();
    assert_eq!(
        n.address.host,
        "org1-nodes-1.org1-nodes-nodes.default.svc.cluster.local"
    );
    assert_eq!(
        n.address.peer_addr,
        format!("{}:{PEER_PORT}", n.address.host)
    );
    assert!(n
        .address
        .sans
        .iter()
        .any(|s| s == "org1-nodes-1.org1-nodes-nodes"));
    // Raft ids do not depend on the addressing or on other Peers.
    let local = run(&f, &loopback()).unwrap();
    assert_eq!(local.node("org1-nodes-1").unwrap().raft_id, n.raft_id);
}

#[test]
fn a_peer_of_a_non_member_organization_is_refused_by_name() {
    let yaml = BASE.replace(
        "spec: {consortium: demo, organization: org2}",
        "spec: {consortium: demo, organization: org9}",
    );
    let e = errors(&yaml);
    assert!(e.has("Peer", "org2-nodes", "spec.organization"), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("Peer default/org2-nodes: spec.organization: \"org9\" is not a member of Consortium \"demo\""), "{msg}");
}

#[test]
fn channel_problems_name_the_field() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "members: [org1, org2]\n  consenters: [org1-nodes]\n  batch",
            "members: [org1, org7]\n  consenters: [org1-nodes]\n  batch",
            "spec.members[1]",
            "not an organization",
        ),
        (
            "consenters: [org1-nodes]\n",
            "consenters: [nope]\n",
            "spec.consenters[0]",
            "neither a Peer",
        ),
        (
            "consenters: [org1-nodes, org2-nodes]",
            "consenters: [org1-nodes, org3-audit]",
            "spec.consenters[1]",
            "role observer",
        ),
        (
            "members: [org1, org2]\n  consenters: [org1-nodes]\n  batch",
            "members: [org1]\n  consenters: [org1-nodes, org2-nodes]\n  batch",
            "spec.consenters[1]",
            "not a member of the channel",
        ),
        (
            "observers: [org3-audit]",
            "observers: [org3-audit, org1-nodes]",
            "spec.observers",
            "both as a consenter and as an observer",
        ),
        (
            "policies: {writers: [org1, org2]}",
            "policies: {writers: [org1, org5]}",
            "spec.policies.writers[1]",
            "not a member of the channel",
        ),
        (
            "policies: {writers: [org1, org2]}",
            "policies: {chaincodeLifecycle: {rule: AtLeast, count: 4}}",
            "spec.policies.chaincodeLifecycle.count",
            "not between 1 and the 3",
        ),
    ];
    for (from, to, field, needle) in cases {
        assert!(BASE.contains(from), "fixture lacks {from:?}");
        let e = errors(&BASE.replacen(from, to, 1));
        let hit =
            e.0.iter()
                .find(|x| x.kind == "Channel" && x.field == *field);
        let Some(hit) = hit else {
            panic!("no Channel error at {field} for {to:?}: {e}")
        };
        assert!(hit.message.contains(needle), "{field}: {}", hit.message);
    }
}

#[test]
fn a_channel_whose_consenters_have_no_nodes_is_refused() {
    let yaml = BASE.replace(
        "spec: {consortium: demo, organization: org1, replicas: 2}",
        "spec: {consortium: demo, organization: org1, replicas: 0}",
    );
    let e = errors(&yaml);
    assert!(e.has("Channel", "private", "spec.consenters"), "{e}");
    // `main` still has org2's node.
    assert!(!e.has("Channel", "main", "spec.consenters"), "{e}");
}

#[test]
fn a_channel_without_a_channel_creator_among_its_members_is_refused() {
    let yaml = BASE.replace(
        "  organizations: [{name: org1}, {name: org2}, {name: org3}]",
        "  organizations: [{name: org1}, {name: org2}, {name: org3}]\n  policies: {channelCreators: [org3]}",
    );
    let e = errors(&yaml);
    // `private` has org1 and org2 only; `main` counts org3 among its members.
    assert!(e.has("Channel", "private", "spec.members"), "{e}");
    assert!(e.to_string().contains("channel creator"), "{e}");
    assert!(!e.has("Channel", "main", "spec.members"), "{e}");
    let allowed = yaml.replace("channelCreators: [org3]", "channelCreators: [org3, org2]");
    run(&fixture(&allowed), &loopback()).unwrap();
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = BASE
        .replace("organization: org2}", "organization: org8}")
        .replace("replicas: 2}", "replicas: 12}")
        .replace("name: notary\n", "name: Not Ary\n");
    let e = errors(&yaml);
    assert!(e.has("Peer", "org2-nodes", "spec.organization"), "{e}");
    assert!(e.has("Peer", "org1-nodes", "spec.replicas"), "{e}");
    assert!(e.0.len() >= 3, "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{} problems", e.0.len())),
        "{e}"
    );
}

#[test]
fn chaincode_problems() {
    let dup = format!(
        "{BASE}---\napiVersion: tally.dev/v1alpha1\nkind: Chaincode\nmetadata: {{name: notary-copy}}\nspec:\n  channel: main\n  name: notary\n  version: \"2\"\n  approval: {{rule: AtLeast, count: 9}}\n  source: {{configMap: {{name: x, key: y}}, sha256: \"abc\"}}\n"
    );
    let e = errors(&dup);
    for field in ["spec.approval.count", "spec.source.sha256"] {
        assert!(e.has("Chaincode", "notary-copy", field), "{field}: {e}");
    }
    // Whichever comes second in name order is the duplicate.
    assert!(e.has("Chaincode", "notary-v1", "spec.name"), "{e}");
    assert!(
        e.to_string()
            .contains("\"notary-copy\" already defines \"notary\" on channel \"main\""),
        "{e}"
    );
}

#[test]
fn ca_problems() {
    let mut f = fixture(BASE);
    f.cas.insert(
        "org2".into(),
        CaInput::Full(Box::new(OrgCa::generate("someone-else").unwrap())),
    );
    let e = run(&f, &loopback()).unwrap_err();
    assert!(
        e.has("Consortium", "demo", "spec.organizations[1].ca"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("names organization \"someone-else\""),
        "{e}"
    );

    let mut f = fixture(BASE);
    f.cas.remove("org3");
    assert!(run(&f, &loopback()).unwrap_err().has(
        "Consortium",
        "demo",
        "spec.organizations[2].ca"
    ));

    let mut f = fixture(BASE);
    let pem = OrgCa::generate("org2").unwrap().cert_pem();
    f.cas.insert("org2".into(), CaInput::CertOnly(pem));
    let e = run(&f, &loopback()).unwrap_err();
    assert!(e.has("Peer", "org2-nodes", "spec.organization"), "{e}");
    assert!(e.to_string().contains("without the key"), "{e}");
}

#[test]
fn external_peers_join_channels_at_their_own_address() {
    let yaml = BASE
        .replace(
            "organizations: [{name: org1}, {name: org2}, {name: org3}]",
            "organizations:\n  - {name: org1}\n  - {name: org2}\n  - name: org3\n    ca: {mode: Secret, secretRef: {name: org3-ca}}\n    externalPeers: [{name: org3-dc, peerAddress: \"ledger.org3.example:7052\", apiUrl: \"https://ledger.org3.example:7051/\"}]",
        )
        .replace("consenters: [org1-nodes, org2-nodes]", "consenters: [org1-nodes, org2-nodes, org3-dc]");
    let mut f = fixture(&yaml);
    let pem = match f.cas.get("org3") {
        Some(CaInput::Full(ca)) => ca.cert_pem(),
        _ => unreachable!(),
    };
    f.cas.insert("org3".into(), CaInput::CertOnly(pem));
    // org3's hosted observer Peer cannot get a certificate without the CA key.
    let e = run(&f, &loopback()).unwrap_err();
    assert!(e.has("Peer", "org3-audit", "spec.organization"), "{e}");
    f.resources.peers.retain(|p| p.meta.name != "org3-audit");
    for c in &mut f.resources.channels {
        c.observers.clear();
    }
    let plan = run(&f, &loopback()).unwrap();
    let ext = plan.node("org3-dc").unwrap();
    assert!(!ext.hosted());
    assert!(ext.identity.is_none());
    assert_eq!(ext.address.api_url, "https://ledger.org3.example:7051");
    let g = &plan.channel("main").unwrap().genesis;
    assert!(g
        .consenters
        .iter()
        .any(|n| n.name == "org3-dc" && n.peer_addr == "ledger.org3.example:7052"));
    assert!(plan.org("org3").unwrap().admin.is_none());
    assert_eq!(plan.hosted_nodes().count(), 3);
}

/// A node of another cluster's plan keeps the Raft id that plan gave it (its namespace and
/// consortium name may differ from ours, and every member must know the node by one id); an
/// id that another node already has is refused.
#[test]
fn an_external_peer_keeps_the_raft_id_its_own_cluster_gave_it() {
    let with_id = |id: u64| {
        BASE.replace(
            "organizations: [{name: org1}, {name: org2}, {name: org3}]",
            &format!("organizations:\n  - {{name: org1}}\n  - {{name: org2}}\n  - name: org3\n    ca: {{mode: Secret, secretRef: {{name: org3-ca}}}}\n    externalPeers: [{{name: org3-dc, peerAddress: \"ledger.org3.example:7052\", apiUrl: \"https://ledger.org3.example:7051/\", raftId: {id}}}]"),
        )
        .replace("consenters: [org1-nodes, org2-nodes]", "consenters: [org1-nodes, org2-nodes, org3-dc]")
    };
    let prepare = |yaml: &str| {
        let mut f = fixture(yaml);
        let pem = match f.cas.get("org3") {
            Some(CaInput::Full(ca)) => ca.cert_pem(),
            _ => unreachable!(),
        };
        f.cas.insert("org3".into(), CaInput::CertOnly(pem));
        f.resources.peers.retain(|p| p.meta.name != "org3-audit");
        for c in &mut f.resources.channels {
            c.observers.clear();
        }
        f
    };
    let plan = run(&prepare(&with_id(4242)), &loopback()).unwrap();
    assert_eq!(plan.node("org3-dc").unwrap().raft_id, 4242);
    let g = &plan.channel("main").unwrap().genesis;
    assert!(g
        .consenters
        .iter()
        .any(|n| n.name == "org3-dc" && n.id == 4242));

    let taken = plan
        .nodes
        .iter()
        .find(|n| n.hosted())
        .map(|n| n.raft_id)
        .unwrap();
    let e = run(&prepare(&with_id(taken)), &loopback()).unwrap_err();
    assert!(e.to_string().contains("the same Raft id"), "{e}");
}

#[test]
fn resources_of_other_namespaces_and_consortia_are_left_out() {
    let yaml = format!(
        "{BASE}---\napiVersion: tally.dev/v1alpha1\nkind: Peer\nmetadata: {{name: elsewhere, namespace: other}}\nspec: {{consortium: demo, organization: org1}}\n---\napiVersion: tally.dev/v1alpha1\nkind: Peer\nmetadata: {{name: stray}}\nspec: {{consortium: ghost, organization: org1}}\n"
    );
    let f = fixture(&yaml);
    let plan = run(&f, &loopback()).unwrap();
    assert!(plan
        .nodes
        .iter()
        .all(|n| n.peer.as_deref() != Some("elsewhere") && n.peer.as_deref() != Some("stray")));
    let d = dangling(&f.resources);
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d
        .iter()
        .any(|e| e.name == "stray" && e.field == "spec.consortium"));
    assert!(d
        .iter()
        .any(|e| e.name == "elsewhere" && e.namespace == "other"));
}

#[test]
fn a_missing_consortium_is_an_error() {
    let f = fixture(BASE);
    let e = plan(&PlanInput {
        resources: &f.resources,
        namespace: "default",
        consortium: "nope",
        cas: &f.cas,
        addressing: &loopback(),
        issued_at: f.issued_at,
        held: &tally_planner::NOTHING_HELD,
        now: None,
    })
    .unwrap_err();
    assert!(e.has("Consortium", "nope", "metadata.name"), "{e}");
}

/// Every identity the plan issues, by `identity_key`.
fn identities(plan: &Plan) -> BTreeMap<String, tally_protocol::Identity> {
    let mut out = BTreeMap::new();
    for o in &plan.organizations {
        for (role, name, id) in [
            ("admin", ADMIN_NAME, &o.admin),
            ("client", CLIENT_NAME, &o.client),
        ] {
            if let Some(id) = id {
                out.insert(identity_key(&o.name, role, name), id.clone());
            }
        }
    }
    for n in plan.hosted_nodes() {
        if let Some(id) = &n.identity {
            out.insert(identity_key(&n.org, "node", &n.name), id.clone());
        }
    }
    out
}

#[test]
fn certificates_keep_their_window_until_due_then_renew_with_the_same_key() {
    let yaml = BASE.replacen(
        "  organizations: [{name: org1}, {name: org2}, {name: org3}]\n",
        "  organizations: [{name: org1}, {name: org2}, {name: org3}]\n  certificates: {validity: 100m, renewBefore: 30m}\n",
        1,
    );
    let f = fixture(&yaml);
    let plan_at = |held: &Held, now: Option<i64>| {
        plan(&PlanInput {
            resources: &f.resources,
            namespace: "default",
            consortium: "demo",
            cas: &f.cas,
            addressing: &loopback(),
            issued_at: f.issued_at,
            held,
            now,
        })
        .unwrap()
    };
    let first = plan_at(&NOTHING_HELD, None);
    assert_eq!(first.lifetimes.validity_s, 6_000);
    assert!(first.renewed.is_empty());
    let ids = identities(&first);
    assert_eq!(
        ids.len(),
        3 * 2 + 4,
        "admin and client per org, and every node"
    );
    for (key, id) in &ids {
        assert_eq!(id.info.not_before, f.issued_at, "{key}");
        assert_eq!(id.info.not_after, f.issued_at + 6_000, "{key}");
    }
    assert_eq!(first.next_renewal, Some(f.issued_at + 6_000 - 1_800));
    let held: Held = ids
        .iter()
        .map(|(k, id)| {
            (
                k.clone(),
                Window {
                    not_before: id.info.not_before,
                    not_after: id.info.not_after,
                },
            )
        })
        .collect();

    // Before the renewal point: byte-identical certificates, nothing renewed.
    let calm = plan_at(&held, Some(f.issued_at + 4_000));
    assert!(calm.renewed.is_empty());
    for (key, id) in identities(&calm) {
        assert_eq!(
            id.cert_pem(),
            ids[&key].cert_pem(),
            "{key} changed before it was due"
        );
    }

    // Past it: every identity renewed, from now, with the key it had.
    let now = f.issued_at + 4_300;
    let due = plan_at(&held, Some(now));
    let renewed: BTreeSet<&String> = due.renewed.iter().collect();
    assert_eq!(renewed, ids.keys().collect::<BTreeSet<_>>());
    for (key, id) in identities(&due) {
        assert_ne!(id.cert_pem(), ids[&key].cert_pem(), "{key}");
        assert_eq!(
            id.info.public_key, ids[&key].info.public_key,
            "{key} kept its key"
        );
        assert_eq!(id.info.not_after, now + 6_000, "{key}");
        assert!(id.info.not_before <= now, "{key}");
    }
    assert_eq!(due.next_renewal, Some(now + 6_000 - 1_800));

    // One identity held with a later window is left alone while the rest renew.
    let mut mixed = held.clone();
    let key = identity_key("org2", "node", "org2-nodes-0");
    let fresh = identities(&due)[&key].info.clone();
    mixed.insert(
        key.clone(),
        Window {
            not_before: fresh.not_before,
            not_after: fresh.not_after,
        },
    );
    let partly = plan_at(&mixed, Some(now + 10));
    assert!(!partly.renewed.contains(&key));
    assert_eq!(partly.renewed.len(), ids.len() - 1);
}

#[test]
fn bad_certificate_settings_name_their_field() {
    for (settings, field) in [
        ("{validity: 30s}", "spec.certificates.validity"),
        (
            "{validity: 10m, renewBefore: 10m}",
            "spec.certificates.renewBefore",
        ),
    ] {
        let yaml = BASE.replacen(
            "  organizations: [{name: org1}, {name: org2}, {name: org3}]\n",
            &format!("  organizations: [{{name: org1}}, {{name: org2}}, {{name: org3}}]\n  certificates: {settings}\n"),
            1,
        );
        let e = errors(&yaml);
        assert!(
            e.0.iter().any(|p| p.field == field),
            "{settings}: no problem on {field}: {e}"
        );
    }
}

/// A consortium across two clusters: side A hosts org1 and org2, side B hosts org3, each
/// imports the other's organizations from their exported bundles. The same Channel must plan
/// the same genesis on both sides, or neither side's approvals cover the other's.
#[test]
fn two_clusters_plan_the_same_genesis_from_each_others_bundles() {
    use tally_api::{BundleNode, OrganizationBundle};
    let k8s = Addressing::Kubernetes {
        cluster_domain: "cluster.local".into(),
    };
    let all = cas(&["org1", "org2", "org3"]);
    let pem = |o: &str| match all.get(o) {
        Some(CaInput::Full(ca)) => ca.cert_pem(),
        _ => unreachable!(),
    };
    let side = |hosted: &str, imported: &[OrganizationBundle], peers: &str, consenters: &str| {
        let mut orgs = hosted.to_string();
        for b in imported {
            let o = serde_json::to_string(&b.to_organization(&format!("{}-ca", b.organization)))
                .unwrap();
            orgs.push_str(&format!("\n    - {o}"));
        }
        format!(
            "apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {{name: demo}}
spec:
  organizations:
{orgs}
  policies: {{membershipApproval: {{rule: All}}}}
{peers}
---
apiVersion: tally.dev/v1alpha1
kind: Channel
metadata: {{name: main}}
spec:
  consortium: demo
  members: [org1, org2, org3]
  consenters: {consenters}
"
        )
    };
    let plan_of = |yaml: &str, ns: &str, imported: &[OrganizationBundle]| {
        let mut cas: BTreeMap<String, CaInput> = all
            .iter()
            .map(|(o, c)| {
                let CaInput::Full(ca) = c else { unreachable!() };
                let copy = OrgCa::from_pem(o, &ca.cert_pem(), &ca.key_pem()).unwrap();
                (o.clone(), CaInput::Full(Box::new(copy)))
            })
            .collect();
        for b in imported {
            cas.insert(b.organization.clone(), CaInput::CertOnly(b.ca_secret_pem()));
        }
        let resources = Resources::from_yaml("side.yaml", yaml).unwrap().to_plan();
        plan(&PlanInput {
            resources: &resources,
            namespace: ns,
            consortium: "demo",
            cas: &cas,
            addressing: &k8s,
            issued_at: now_unix() - 60,
            held: &tally_planner::NOTHING_HELD,
            now: None,
        })
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    };
    let bundle = |plan: &Plan, org: &str| {
        let mut b = OrganizationBundle::new(org);
        b.ca_certificates.push(pem(org));
        for n in plan.nodes.iter().filter(|n| n.org == org && n.hosted()) {
            b.nodes.push(BundleNode {
                name: n.name.clone(),
                raft_id: n.raft_id,
                role: tally_api::PeerRole::Consenter,
                peer_address: n.address.peer_addr.clone(),
                api_url: n.address.api_url.clone(),
            });
        }
        b
    };
    let exposed = |org: &str, domain: &str| {
        format!(
            "---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {{name: {org}-peer}}
spec: {{consortium: demo, organization: {org}, exposure: {{domain: {domain}}}}}"
        )
    };
    // Side B first plans alone (its own organization) to export org3's bundle.
    let b_alone = plan_of(
        &side(
            "    - {name: org3}",
            &[],
            &exposed("org3", "b.example"),
            "[org3-peer]",
        )
        .replace("members: [org1, org2, org3]", "members: [org3]"),
        "default",
        &[],
    );
    let org3 = bundle(&b_alone, "org3");
    assert_eq!(org3.nodes[0].peer_address, "org3-peer-0.b.example:7052");
    let a_peers = format!(
        "{}\n{}",
        exposed("org1", "a.example"),
        exposed("org2", "a.example")
    );
    let a = plan_of(
        &side(
            "    - {name: org1}\n    - {name: org2}",
            std::slice::from_ref(&org3),
            &a_peers,
            "[org1-peer, org2-peer, org3-peer-0]",
        ),
        "default",
        std::slice::from_ref(&org3),
    );
    let (org1, org2) = (bundle(&a, "org1"), bundle(&a, "org2"));
    let b = plan_of(
        &side(
            "    - {name: org3}",
            &[org1.clone(), org2.clone()],
            &exposed("org3", "b.example"),
            "[org1-peer-0, org2-peer-0, org3-peer]",
        ),
        "default",
        &[org1, org2],
    );
    let ga = &a.channel("main").unwrap().genesis;
    let gb = &b.channel("main").unwrap().genesis;
    assert_eq!(
        serde_json::to_value(ga).unwrap(),
        serde_json::to_value(gb).unwrap()
    );
    assert_eq!(ga.hash(), gb.hash());
    assert_eq!(ga.consenters[2].peer_addr, "org3-peer-0.b.example:7052");
}
