//! The status view and its text from objects as the API server returns them.

use super::{consortium_view, render, Paint};
use serde_json::json;
use tally_api::chaincode::Chaincode;
use tally_api::channel::Channel;
use tally_api::consortium::Consortium;
use tally_api::peer::Peer;

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

fn ready(status: &str, reason: &str, message: &str) -> serde_json::Value {
    json!([{"type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-02T10:00:00Z"}])
}

struct Fixture {
    cons: Consortium,
    peers: Vec<Peer>,
    channels: Vec<Channel>,
    chaincodes: Vec<Chaincode>,
}

fn fixture() -> Fixture {
    let cons = obj(json!({
        "apiVersion": "tally.dev/v1alpha1", "kind": "Consortium",
        "metadata": {"name": "scf", "namespace": "finance"},
        "spec": {"organizations": [{"name": "core"}, {"name": "bank"}]},
        "status": {"organizationCount": 2, "organizations": [
            {"name": "core", "caFingerprint": "aabbccddeeff00112233", "caSecret": "scf-core-ca",
             "caNotAfter": "2036-12-01T00:00:00Z"}],
            "conditions": ready("True", "Ready", "")}
    }));
    let peers = vec![
        obj(json!({
            "apiVersion": "tally.dev/v1alpha1", "kind": "Peer",
            "metadata": {"name": "core-nodes", "namespace": "finance"},
            "spec": {"consortium": "scf", "organization": "core", "replicas": 2},
            "status": {"replicas": 2, "readyReplicas": 1, "nodes": [
                {"name": "core-nodes-0", "ready": true, "channels": [{"name": "trade", "height": 42, "role": "leader"}]},
                {"name": "core-nodes-1", "ready": false, "channels": [{"name": "trade", "height": 40, "role": "follower"}]}],
                "conditions": ready("False", "NodesNotReady", "1 of 2 nodes ready")}
        })),
        obj(json!({
            "apiVersion": "tally.dev/v1alpha1", "kind": "Peer",
            "metadata": {"name": "bank-nodes", "namespace": "finance"},
            "spec": {"consortium": "scf", "organization": "bank", "replicas": 1}
        })),
        obj(json!({
            "apiVersion": "tally.dev/v1alpha1", "kind": "Peer",
            "metadata": {"name": "elsewhere", "namespace": "finance"},
            "spec": {"consortium": "other", "organization": "core", "replicas": 1}
        })),
    ];
    let channels = vec![obj(json!({
        "apiVersion": "tally.dev/v1alpha1", "kind": "Channel",
        "metadata": {"name": "trade", "namespace": "finance"},
        "spec": {"consortium": "scf", "members": ["core", "bank"], "consenters": ["core-nodes", "bank-nodes"]},
        "status": {"height": 42, "leader": "core-nodes-0", "memberCount": 2, "members": ["core", "bank"],
                   "stateRootsAgree": false, "configSequence": 3,
                   "nodes": [{"name": "core-nodes-0", "organization": "core", "role": "consenter", "height": 42},
                             {"name": "core-nodes-1", "organization": "core", "role": "consenter", "height": 40}],
                   "conditions": ready("True", "Ready", "")}
    }))];
    let chaincodes = vec![obj(json!({
        "apiVersion": "tally.dev/v1alpha1", "kind": "Chaincode",
        "metadata": {"name": "receivables", "namespace": "finance"},
        "spec": {"channel": "trade", "name": "receivables", "version": "1.1",
                 "source": {"configMap": {"name": "m", "key": "r.wasm"}, "sha256": "00"}},
        "status": {"sequence": 1, "committedVersion": "1.0",
                   "approvals": [{"organization": "core", "approved": true, "version": "1.1"},
                                 {"organization": "bank", "approved": false}],
                   "conditions": ready("False", "AwaitingApprovals", "bank has not approved 1.1")}
    }))];
    Fixture {
        cons,
        peers,
        channels,
        chaincodes,
    }
}

#[test]
fn the_tree_tells_the_consortiums_story() {
    let f = fixture();
    let v = consortium_view(&f.cons, &f.peers, &f.channels, &f.chaincodes);
    let text = render(&v, Paint::Plain);
    let expect = [
        "Consortium finance/scf  Ready",
        "core  CA aabbccddeeff, expires 2036-12-01T00:00:00Z",
        "Peer core-nodes (consenter, 1/2 ready)  NotReady (NodesNotReady: 1 of 2 nodes ready)",
        "core-nodes-0 ready  trade@42 leader",
        "core-nodes-1 not ready  trade@40 follower",
        "bank  CA not reported yet",
        "Peer bank-nodes (consenter, 0/1 ready)  Unknown",
        "trade  height 42, nodes at 40..42, leader core-nodes-0, STATE ROOTS DIFFER, config #3  Ready",
        "members: core, bank",
        "receivables on trade: wants 1.1, committed 1.0 (sequence 1), approved by core, awaiting bank",
    ];
    for line in expect {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(
        !text.contains("elsewhere"),
        "another consortium's Peer is not shown:\n{text}"
    );
    assert!(!text.contains('\x1b'), "plain text has no escapes");
    // core's nodes nest under its Peer, which nests under core
    let core = text.find("core  CA").expect("core");
    let peer = text.find("Peer core-nodes").expect("peer");
    let bank = text.find("bank  CA").expect("bank");
    assert!(core < peer && peer < bank, "{text}");
}

#[test]
fn colour_only_when_asked_and_json_keeps_every_field() {
    let f = fixture();
    let v = consortium_view(&f.cons, &f.peers, &f.channels, &f.chaincodes);
    let coloured = render(&v, Paint::Colour);
    assert!(coloured.contains("\x1b[31mSTATE ROOTS DIFFER\x1b[0m"));
    let json = serde_json::to_value(&v).expect("json");
    assert_eq!(json["channels"][0]["agree"], json!(false));
    assert_eq!(json["channels"][0]["node_heights"], json!([40, 42]));
    assert_eq!(json["chaincodes"][0]["awaiting"], json!(["bank"]));
    assert_eq!(
        json["organizations"][0]["peers"][0]["nodes"][1]["ready"],
        json!(false)
    );
    assert_eq!(json["ready"]["state"], json!("ready"));
}

#[test]
fn a_new_consortium_says_what_is_not_there_yet() {
    let cons: Consortium = obj(json!({
        "apiVersion": "tally.dev/v1alpha1", "kind": "Consortium",
        "metadata": {"name": "fresh", "namespace": "ns"},
        "spec": {"organizations": [{"name": "a"}]}
    }));
    let text = render(&consortium_view(&cons, &[], &[], &[]), Paint::Plain);
    for line in [
        "Consortium ns/fresh  Unknown",
        "a  CA not reported yet",
        "no Peers",
        "Channels",
        "(none)",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(!text.contains("Chaincodes"), "{text}");
}

#[test]
fn pending_proposals_and_certificates_show_under_their_channel() {
    use super::view::{IdentityView, Pending, PendingProposal};
    let f = fixture();
    let mut v = consortium_view(&f.cons, &f.peers, &f.channels, &f.chaincodes);
    v.channels[0].pending = Some(Pending::Read(vec![PendingProposal {
        hash: "0968e9d5f541a1a6a642".into(),
        approvals: 1,
        needed: 2,
        missing: vec!["bank".into()],
        description: "smaller blocks".into(),
    }]));
    v.identities = vec![IdentityView {
        name: "core/admin/admin".into(),
        not_after: "2027-12-03T07:33:33Z".into(),
        renew_at: "2027-08-03T15:33:33Z".into(),
    }];
    let text = render(&v, Paint::Plain);
    assert!(text.contains("1 pending proposal\n"), "{text}");
    assert!(
        text.contains("└─ 0968e9d5f541 approvals 1/2, missing bank: smaller blocks"),
        "{text}"
    );
    assert!(
        text.contains("└─ core/admin/admin  expires 2027-12-03T07:33:33Z"),
        "{text}"
    );
    // The section after the channels is the last: the tree closes there.
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("   └─ core/admin")),
        "{text}"
    );

    v.channels[0].pending = Some(Pending::Unknown("no node answered".into()));
    let text = render(&v, Paint::Plain);
    assert!(
        text.contains("proposals unknown: no node answered"),
        "{text}"
    );
    let json = serde_json::to_value(&v).expect("JSON");
    assert_eq!(
        json["channels"][0]["pending"]["unknown"],
        "no node answered"
    );
    assert_eq!(json["identities"][0]["name"], "core/admin/admin");
}

#[test]
fn nodes_of_another_cluster_show_under_their_organization() {
    let cons: Consortium = obj(json!({
        "apiVersion": "tally.dev/v1alpha1", "kind": "Consortium",
        "metadata": {"name": "scf", "namespace": "finance"},
        "spec": {"organizations": [{"name": "core"}, {"name": "bank", "approvals": "External",
            "ca": {"mode": "Secret", "secretName": "scf-bank-ca-public"},
            "externalPeers": [{"name": "bank-peer-0", "raftId": 7,
                "peerAddress": "bank-peer-0.b.example:31701",
                "apiUrl": "https://bank-peer-0.b.example:31700"}]}]}
    }));
    let channel = |name: &str, bank: serde_json::Value| -> Channel {
        obj(json!({
            "apiVersion": "tally.dev/v1alpha1", "kind": "Channel",
            "metadata": {"name": name, "namespace": "finance"},
            "spec": {"consortium": "scf", "members": ["core", "bank"], "consenters": ["core-nodes"]},
            "status": {"height": 9, "nodes": [
                {"name": "core-nodes-0", "organization": "core", "role": "consenter", "height": 9},
                bank]}
        }))
    };
    let channels = vec![
        channel(
            "trade",
            json!({"name": "bank-peer-0", "organization": "bank", "role": "consenter",
                   "height": 8, "remote": true}),
        ),
        channel(
            "audit",
            json!({"name": "bank-peer-0", "organization": "bank", "role": "consenter",
                   "height": 0, "remote": true, "unreachable": "connection refused"}),
        ),
    ];
    let v = consortium_view(&cons, &[], &channels, &[]);
    let text = render(&v, Paint::Plain);
    assert!(
        text.contains(
            "remote node bank-peer-0 at bank-peer-0.b.example:31701  \
             audit unreachable (connection refused), trade@8"
        ),
        "{text}"
    );
    let bank = text.find("bank  CA").expect("bank");
    assert!(
        !text[bank..].contains("no Peers"),
        "an organization with remote nodes has some:\n{text}"
    );
    // The unreachable node's zero height is not taken as a lagging node.
    let json = serde_json::to_value(&v).expect("json");
    let audit = json["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "audit"))
        .expect("audit");
    assert_eq!(audit["node_heights"], json!([9, 9]), "{json}");
    assert_eq!(
        json["organizations"][1]["remote"][0]["channels"][0]["unreachable"],
        json!("connection refused")
    );
}
