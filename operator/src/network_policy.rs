//! The NetworkPolicy of a Peer's pods: each port admits only who needs it. The client API
//! (7051) is for clients, consoles and Prometheus wherever they run, and checks signatures
//! and TLS itself; the peer port (7052) is for the consortium's own nodes; the admin port
//! (7053) is for the operator. Every other port, and every other source, is refused, so a
//! pod elsewhere in the cluster cannot even open a connection to the Raft or admin port. A
//! Peer with `spec.exposure` opens its peer port to every source (its members in other
//! clusters), which then meet the peer listener's mutual TLS.

use crate::builders::{meta, strings, PeerInputs};
use crate::names;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tally_planner::{ADMIN_PORT, API_PORT, PEER_PORT};

/// Labels the chart gives the operator's pods (charts/tally-operator/templates/_helpers.tpl).
const OPERATOR_POD: [(&str, &str); 2] = [
    ("app.kubernetes.io/component", "operator"),
    ("app.kubernetes.io/part-of", "tally"),
];

fn selector<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some(strings(pairs.into_iter().map(|(k, v)| (k, v.to_string())))),
        ..LabelSelector::default()
    })
}

fn port(n: u16) -> Option<Vec<NetworkPolicyPort>> {
    Some(vec![NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(n))),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }])
}

/// The policy of the Peer `i` builds; `operator_namespace` is where the operator's pods run.
pub fn network_policy(i: &PeerInputs, operator_namespace: &str) -> NetworkPolicy {
    let name = i.name();
    let consortium_nodes = NetworkPolicyPeer {
        pod_selector: selector([
            (names::LABEL_NAME, "tally-node"),
            (names::LABEL_CONSORTIUM, i.peer.spec.consortium.as_str()),
        ]),
        ..NetworkPolicyPeer::default()
    };
    let operator = NetworkPolicyPeer {
        namespace_selector: selector([("kubernetes.io/metadata.name", operator_namespace)]),
        pod_selector: selector(OPERATOR_POD),
        ..NetworkPolicyPeer::default()
    };
    NetworkPolicy {
        metadata: meta(&name, i.namespace, &i.labels(), &i.owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(names::peer_selector(&name)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: None,
                    ports: port(API_PORT),
                },
                NetworkPolicyIngressRule {
                    // An exposed Peer's nodes are dialled by members in other clusters,
                    // whose addresses no policy here can name; mutual TLS against the
                    // channels' CAs is what keeps everyone else out.
                    from: match i.peer.spec.exposure {
                        Some(_) => None,
                        None => Some(vec![consortium_nodes]),
                    },
                    ports: port(PEER_PORT),
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![operator]),
                    ports: port(ADMIN_PORT),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use serde_json::{json, Value};
    use tally_api::peer::{Peer, PeerSpec};

    #[test]
    fn each_port_admits_only_who_needs_it() {
        let spec: PeerSpec = serde_json::from_value(json!({
            "consortium": "c1", "organization": "org1", "replicas": 1,
        }))
        .expect("spec");
        let peer = Peer::new("p1", spec);
        let owner = OwnerReference {
            api_version: "tally.dev/v1alpha1".into(),
            kind: "Peer".into(),
            name: "p1".into(),
            uid: "u1".into(),
            ..OwnerReference::default()
        };
        let inputs = PeerInputs {
            peer: &peer,
            namespace: "t1",
            owner,
            image: String::new(),
            version: String::new(),
            org_ca_pem: "CA",
            consents: Vec::new(),
            certificates: String::new(),
            restore: None,
        };
        let p = network_policy(&inputs, "tally-system");
        let v: Value = serde_json::to_value(&p).expect("serializes");
        assert_eq!(v["metadata"]["ownerReferences"][0]["name"], "p1");
        assert_eq!(v["metadata"]["labels"]["tally.dev/consortium"], "c1");
        let spec = &v["spec"];
        assert_eq!(spec["policyTypes"], json!(["Ingress"]));
        assert_eq!(
            spec["podSelector"]["matchLabels"],
            serde_json::to_value(names::peer_selector("p1")).expect("labels")
        );
        let rules = spec["ingress"].as_array().expect("ingress rules");
        let rule = |port: u16| {
            rules
                .iter()
                .find(|r| r["ports"][0]["port"] == json!(port))
                .unwrap_or_else(|| panic!("no rule for {port}: {v}"))
        };
        assert!(
            rule(API_PORT).get("from").is_none(),
            "clients come from anywhere"
        );
        assert_eq!(
            rule(PEER_PORT)["from"],
            json!([{"podSelector": {"matchLabels": {
                "app.kubernetes.io/name": "tally-node", "tally.dev/consortium": "c1"}}}])
        );
        let admin = &rule(ADMIN_PORT)["from"][0];
        assert_eq!(
            admin["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "tally-system"
        );
        assert_eq!(
            admin["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
            "operator"
        );
        assert_eq!(rules.len(), 3, "no other port is open: {v}");

        // Exposed to other clusters, the peer port takes any source (mutual TLS decides).
        let mut exposed = peer.clone();
        exposed.spec.exposure =
            Some(serde_json::from_value(json!({"domain": "peers.example"})).expect("exposure"));
        let inputs = PeerInputs {
            peer: &exposed,
            ..inputs
        };
        let v: Value = serde_json::to_value(network_policy(&inputs, "tally-system")).expect("json");
        let rules = v["spec"]["ingress"].as_array().expect("ingress rules");
        let peer_rule = rules
            .iter()
            .find(|r| r["ports"][0]["port"] == json!(PEER_PORT))
            .expect("peer rule");
        assert!(peer_rule.get("from").is_none(), "{v}");
        let admin_rule = rules
            .iter()
            .find(|r| r["ports"][0]["port"] == json!(ADMIN_PORT))
            .expect("admin rule");
        assert!(
            admin_rule.get("from").is_some(),
            "the admin port stays the operator's: {v}"
        );
    }
}
