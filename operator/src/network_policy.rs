//! The NetworkPolicy of a Peer's pods: each port admits only who needs it. The client API
//! (7051) is for clients, consoles and Prometheus wherever they run, and checks signatures
//! and TLS itself; the peer port (7052) is for the consortium's own nodes; the admin port
//! (7053) is for the operator. Every other port, and every other source, is refused, so a
//! pod elsewhere in the cluster cannot even open a connection to the Raft or admin port.

use crate::names;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use tally_planner::{ADMIN_PORT, API_PORT, PEER_PORT};

/// Labels the chart gives the operator's pods (charts/tally-operator/templates/_helpers.tpl).
const OPERATOR_POD: [(&str, &str); 2] = [
    ("app.kubernetes.io/component", "operator"),
    ("app.kubernetes.io/part-of", "tally"),
];

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn selector(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels(pairs)),
        ..LabelSelector::default()
    }
}

fn port(n: u16) -> Option<Vec<NetworkPolicyPort>> {
    Some(vec![NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(n))),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }])
}

/// Where the policy of Peer `peer` goes and what it names.
pub struct PolicyInputs<'a> {
    pub peer: &'a str,
    pub namespace: &'a str,
    pub consortium: &'a str,
    /// The namespace the operator runs in (its pods reach the admin port).
    pub operator_namespace: &'a str,
    pub labels: BTreeMap<String, String>,
    pub owner: &'a OwnerReference,
}

pub fn network_policy(i: &PolicyInputs) -> NetworkPolicy {
    let consortium_nodes = NetworkPolicyPeer {
        pod_selector: Some(selector(&[
            (names::LABEL_NAME, "tally-node"),
            (names::LABEL_CONSORTIUM, i.consortium),
        ])),
        ..NetworkPolicyPeer::default()
    };
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(selector(&[(
            "kubernetes.io/metadata.name",
            i.operator_namespace,
        )])),
        pod_selector: Some(selector(&OPERATOR_POD)),
        ..NetworkPolicyPeer::default()
    };
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(i.peer.to_string()),
            namespace: Some(i.namespace.to_string()),
            labels: Some(i.labels.clone()),
            owner_references: Some(vec![i.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(names::peer_selector(i.peer)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: None,
                    ports: port(API_PORT),
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![consortium_nodes]),
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
    use serde_json::{json, Value};

    #[test]
    fn each_port_admits_only_who_needs_it() {
        let owner = OwnerReference {
            api_version: "tally.dev/v1alpha1".into(),
            kind: "Peer".into(),
            name: "p1".into(),
            uid: "u1".into(),
            ..OwnerReference::default()
        };
        let p = network_policy(&PolicyInputs {
            peer: "p1",
            namespace: "t1",
            consortium: "c1",
            operator_namespace: "tally-system",
            labels: BTreeMap::new(),
            owner: &owner,
        });
        let v: Value = serde_json::to_value(&p).expect("serializes");
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
    }
}
