//! Pure builders: a Peer (with its plan) in, the Kubernetes objects that run it out, as the
//! JSON bodies of server-side applies. Nothing here talks to the API server, so every rule
//! about the pods (security, probes, volumes) is unit-tested.

use crate::names::{self, headless_service};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tally_api::peer::{Peer, PeerRole, ServiceType, MAX_REPLICAS};
use tally_planner::{ADMIN_PORT, API_PORT, PEER_PORT};
use tally_protocol::Identity;

/// Where a node's pod finds its files; the pod runner of the tests rewrites these paths.
pub const CONFIG_DIR: &str = "/etc/tally/config";
pub const TLS_DIR: &str = "/etc/tally/tls";
pub const DATA_DIR: &str = "/var/lib/tally";
/// The runtime image's non-root user.
pub const RUN_AS: i64 = 65532;

/// The owner of an object: `ownerReferences[0]` with `controller: true`.
pub fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
        "controller": true, "blockOwnerDeletion": true,
    })
}

fn meta(name: &str, ns: &str, labels: &BTreeMap<String, String>, owner: &Value) -> Value {
    json!({"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner]})
}

/// What the Peer builders need beyond the Peer itself.
pub struct PeerInputs<'a> {
    pub peer: &'a Peer,
    pub namespace: &'a str,
    pub owner: Value,
    /// Image (without tag) and tag the nodes run.
    pub image: String,
    pub version: String,
    /// PEM of the organization's CA.
    pub org_ca_pem: &'a str,
    /// Channels in which this Peer's nodes vote: their pods carry the quorum-budget label.
    pub consents: Vec<String>,
    /// Pods to run: the spec's replicas, or more while departing nodes still belong to a
    /// channel.
    pub replicas: i32,
}

impl PeerInputs<'_> {
    fn name(&self) -> String {
        self.peer.metadata.name.clone().unwrap_or_default()
    }

    fn labels(&self) -> BTreeMap<String, String> {
        names::peer_labels(
            &self.peer.spec.consortium,
            &self.peer.spec.organization,
            &self.name(),
        )
    }

    /// Labels of the pods: the Peer's, plus one per channel the nodes vote in.
    pub fn pod_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels();
        if self.peer.spec.role == PeerRole::Consenter {
            for ch in &self.consents {
                l.insert(names::consents_label(ch), "true".into());
            }
        }
        l
    }

    pub fn image_ref(&self) -> String {
        format!("{}:{}", self.image, self.version)
    }
}

/// ConfigMap with what every node of the Peer shares: its organization's CA.
pub fn config_map(i: &PeerInputs) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": meta(&names::peer_config(&i.name()), i.namespace, &i.labels(), &i.owner),
        "data": {"org-ca.pem": i.org_ca_pem},
    })
}

/// Secret with one node's certificate and key.
pub fn node_secret(i: &PeerInputs, node: &str, id: &Identity) -> Value {
    let mut labels = i.labels();
    labels.insert("tally.dev/node".into(), node.into());
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": meta(&names::node_secret(node), i.namespace, &labels, &i.owner),
        "stringData": {"tls.crt": id.cert_pem(), "tls.key": id.key_pem(), "ca.crt": i.org_ca_pem},
    })
}

fn ports() -> Value {
    json!([
        {"name": "api", "port": API_PORT, "targetPort": "api", "protocol": "TCP"},
        {"name": "peer", "port": PEER_PORT, "targetPort": "peer", "protocol": "TCP"},
        {"name": "admin", "port": ADMIN_PORT, "targetPort": "admin", "protocol": "TCP"},
    ])
}

/// Headless Service that gives every node a stable DNS name, published before the node is
/// ready: Raft peers must find each other to become ready at all.
pub fn headless(i: &PeerInputs) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": meta(&headless_service(&i.name()), i.namespace, &i.labels(), &i.owner),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": true,
            "selector": names::peer_selector(&i.name()),
            "ports": ports(),
        },
    })
}

/// Service through which clients reach the Peer's ready nodes.
pub fn client_service(i: &PeerInputs) -> Value {
    let type_ = match i.peer.spec.service.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": meta(&i.name(), i.namespace, &i.labels(), &i.owner),
        "spec": {
            "type": type_,
            "selector": names::peer_selector(&i.name()),
            "ports": [{"name": "api", "port": API_PORT, "targetPort": "api", "protocol": "TCP"}],
        },
    })
}

/// The StatefulSet: one pod and volume per node. Pods are replaced by the operator
/// (`OnDelete`), one at a time and only once the others are caught up, never by the
/// StatefulSet controller on its own.
pub fn stateful_set(i: &PeerInputs) -> Value {
    let name = i.name();
    let spec = &i.peer.spec;
    // Every possible node's Secret, optional: the template stays the same when scaling, and
    // each pod reads only its own folder.
    let tls_sources: Vec<Value> = (0..MAX_REPLICAS)
        .map(|ord| {
            let node = format!("{name}-{ord}");
            json!({"secret": {
                "name": names::node_secret(&node),
                "optional": true,
                "items": [
                    {"key": "tls.crt", "path": format!("{node}/tls.crt")},
                    {"key": "tls.key", "path": format!("{node}/tls.key"), "mode": 0o400},
                ],
            }})
        })
        .collect();
    let env = json!([
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "TALLY_NODE_NAME", "value": "$(POD_NAME)"},
        {"name": "TALLY_DATA_DIR", "value": format!("{DATA_DIR}/data")},
        {"name": "TALLY_LISTEN_API", "value": format!("$(POD_IP):{API_PORT}")},
        {"name": "TALLY_LISTEN_PEER", "value": format!("$(POD_IP):{PEER_PORT}")},
        {"name": "TALLY_LISTEN_ADMIN", "value": format!("$(POD_IP):{ADMIN_PORT}")},
        {"name": "TALLY_CERT", "value": format!("{TLS_DIR}/$(POD_NAME)/tls.crt")},
        {"name": "TALLY_KEY", "value": format!("{TLS_DIR}/$(POD_NAME)/tls.key")},
        {"name": "TALLY_ORG_CA", "value": format!("{CONFIG_DIR}/org-ca.pem")},
        {"name": "TALLY_LOG_FORMAT", "value": "json"},
        // The `consortium` label of the node's metrics.
        {"name": "TALLY_CONSORTIUM", "value": spec.consortium},
    ]);
    let mut container = json!({
        "name": "node",
        "image": i.image_ref(),
        "imagePullPolicy": "IfNotPresent",
        "command": ["tally-node"],
        "env": env,
        "ports": [
            {"name": "api", "containerPort": API_PORT, "protocol": "TCP"},
            {"name": "peer", "containerPort": PEER_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "api"}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "api"}, "initialDelaySeconds": 10, "periodSeconds": 10, "failureThreshold": 6},
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": true},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": true},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    });
    container["resources"] = match &spec.resources {
        Some(r) => serde_json::to_value(r).unwrap_or(Value::Null),
        None => default_node_resources(),
    };
    let mut claim_spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage.size.0}},
    });
    if !spec.storage.storage_class_name.is_empty() {
        claim_spec["storageClassName"] = json!(spec.storage.storage_class_name);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": meta(&name, i.namespace, &i.labels(), &i.owner),
        "spec": {
            "replicas": i.replicas,
            "serviceName": headless_service(&name),
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "selector": {"matchLabels": names::peer_selector(&name)},
            "template": {
                "metadata": {
                    "labels": i.pod_labels(),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": API_PORT.to_string(),
                        "prometheus.io/path": "/metrics",
                        "prometheus.io/scheme": "http",
                        "tally.dev/version": i.version,
                    },
                },
                "spec": {
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "fsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {(names::LABEL_CONSORTIUM): spec.consortium}},
                        },
                    }]}},
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": names::peer_config(&name)}},
                        {"name": "tls", "projected": {"sources": tls_sources, "defaultMode": 0o440}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data", "labels": names::peer_selector(&name)},
                "spec": claim_spec,
            }],
        },
    })
}

/// Budget that keeps a channel's Raft quorum: at most a minority of its voting nodes may be
/// voluntarily disrupted (drains, evictions) at once.
pub fn quorum_budget(
    channel: &str,
    consortium: &str,
    namespace: &str,
    voters: usize,
    owner: &Value,
) -> Value {
    let labels = BTreeMap::from([
        (names::LABEL_CONSORTIUM.to_string(), consortium.to_string()),
        (
            names::LABEL_MANAGED_BY.to_string(),
            names::FIELD_MANAGER.to_string(),
        ),
    ]);
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": meta(&names::quorum_budget(channel), namespace, &labels, owner),
        "spec": {
            "minAvailable": voters / 2 + 1,
            "selector": {"matchLabels": {
                (names::LABEL_CONSORTIUM): consortium,
                (names::consents_label(channel)): "true",
            }},
        },
    })
}

/// Where a consortium-owned Secret goes and whose it is.
pub struct OrgSecret<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub org: &'a str,
    pub consortium: &'a str,
    pub owner: &'a Value,
}

impl OrgSecret<'_> {
    fn meta(&self) -> Value {
        meta(
            self.name,
            self.namespace,
            &names::consortium_labels(self.consortium, self.org),
            self.owner,
        )
    }
}

/// Secret with an organization's CA, created once.
pub fn ca_secret(at: &OrgSecret, cert_pem: &str, key_pem: &str, issued_at: i64) -> Value {
    let mut m = at.meta();
    m["annotations"] = json!({(names::ANNOTATION_ISSUED_AT): issued_at.to_string()});
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": m,
        "stringData": {"tls.crt": cert_pem, "tls.key": key_pem},
    })
}

/// Secret with an identity (admin or client) of an organization.
pub fn identity_secret(at: &OrgSecret, id: &Identity, ca_pem: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": at.meta(),
        "stringData": {"tls.crt": id.cert_pem(), "tls.key": id.key_pem(), "ca.crt": ca_pem},
    })
}

/// A node's container when the Peer names no resources: requested enough to be scheduled
/// where it can keep up, memory capped well above its steady use (RocksDB's caches and write
/// buffers, a snapshot in flight) so a leak or a flood ends in a restart rather than a starved
/// machine, and no CPU limit (throttling a Raft thread costs elections).
fn default_node_resources() -> Value {
    json!({
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"memory": "4Gi"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_api::peer::PeerSpec;

    fn peer(role: &str) -> Peer {
        let spec: PeerSpec = serde_json::from_value(json!({
            "consortium": "scf", "organization": "bank", "replicas": 3, "role": role,
            "storage": {"size": "2Gi", "storageClassName": "fast"},
        }))
        .expect("spec");
        let mut p = Peer::new("bank-nodes", spec);
        p.metadata.namespace = Some("t1".into());
        p
    }

    fn inputs(p: &Peer) -> PeerInputs<'_> {
        PeerInputs {
            peer: p,
            namespace: "t1",
            owner: owner("tally.dev/v1alpha1", "Peer", "bank-nodes", "u1"),
            image: "ghcr.io/tally-dev/tally-node".into(),
            version: "0.1.0".into(),
            org_ca_pem: "CA",
            consents: vec!["trade".into()],
            replicas: p.spec.replicas,
        }
    }

    #[test]
    fn pods_run_restricted() {
        let p = peer("consenter");
        let s = stateful_set(&inputs(&p));
        let pod = &s["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let c = &pod["containers"][0]["securityContext"];
        assert_eq!(c["readOnlyRootFilesystem"], true);
        assert_eq!(c["allowPrivilegeEscalation"], false);
        assert_eq!(c["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(pod["automountServiceAccountToken"], false);
    }

    #[test]
    fn nodes_get_default_resources() {
        let p = peer("consenter");
        let s = stateful_set(&inputs(&p));
        let r = &s["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(r["requests"]["memory"], "512Mi");
        assert_eq!(r["limits"]["memory"], "4Gi");
        assert!(r["limits"].get("cpu").is_none());
    }

    #[test]
    fn stateful_set_shape() {
        let p = peer("consenter");
        let s = stateful_set(&inputs(&p));
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["spec"]["serviceName"], "bank-nodes-nodes");
        assert_eq!(s["spec"]["podManagementPolicy"], "Parallel");
        assert_eq!(s["spec"]["updateStrategy"]["type"], "OnDelete");
        assert_eq!(
            s["spec"]["template"]["spec"]["containers"][0]["image"],
            "ghcr.io/tally-dev/tally-node:0.1.0"
        );
        let claim = &s["spec"]["volumeClaimTemplates"][0]["spec"];
        assert_eq!(claim["resources"]["requests"]["storage"], "2Gi");
        assert_eq!(claim["storageClassName"], "fast");
        let sources = &s["spec"]["template"]["spec"]["volumes"][1]["projected"]["sources"];
        assert_eq!(
            sources.as_array().map(|a| a.len()),
            Some(MAX_REPLICAS as usize)
        );
        assert_eq!(sources[2]["secret"]["name"], "bank-nodes-2-tls");
        // The selector must be a subset of the pod labels, and never name a channel.
        let sel = s["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("selector");
        let labels = &s["spec"]["template"]["metadata"]["labels"];
        for (k, v) in sel {
            assert_eq!(&labels[k], v, "{k}");
            assert!(!k.starts_with(names::LABEL_CONSENTS_PREFIX));
        }
        assert_eq!(labels["consents.tally.dev/trade"], "true");
        // Plain Prometheus finds the metrics by annotation; the node labels them by consortium.
        let ann = &s["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(ann["prometheus.io/scrape"], "true");
        assert_eq!(ann["prometheus.io/port"], API_PORT.to_string());
        assert_eq!(ann["prometheus.io/path"], "/metrics");
        assert_eq!(ann["prometheus.io/scheme"], "http");
        let env = &s["spec"]["template"]["spec"]["containers"][0]["env"];
        let consortium = env
            .as_array()
            .and_then(|e| e.iter().find(|v| v["name"] == "TALLY_CONSORTIUM"))
            .expect("TALLY_CONSORTIUM");
        assert_eq!(consortium["value"], json!(p.spec.consortium));
    }

    #[test]
    fn observers_do_not_count_for_quorum() {
        let p = peer("observer");
        let s = stateful_set(&inputs(&p));
        let labels = s["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .expect("labels");
        assert!(!labels
            .keys()
            .any(|k| k.starts_with(names::LABEL_CONSENTS_PREFIX)));
    }

    #[test]
    fn quorum_budget_keeps_a_majority() {
        let o = owner("tally.dev/v1alpha1", "Channel", "trade", "u2");
        for (voters, min) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)] {
            let b = quorum_budget("trade", "scf", "t1", voters, &o);
            assert_eq!(b["spec"]["minAvailable"], min, "{voters} voters");
        }
        let b = quorum_budget("trade", "scf", "t1", 3, &o);
        assert_eq!(
            b["spec"]["selector"]["matchLabels"]["consents.tally.dev/trade"],
            "true"
        );
    }

    #[test]
    fn services() {
        let p = peer("consenter");
        let h = headless(&inputs(&p));
        assert_eq!(h["spec"]["clusterIP"], "None");
        assert_eq!(h["spec"]["publishNotReadyAddresses"], true);
        assert_eq!(h["metadata"]["ownerReferences"][0]["controller"], true);
        let c = client_service(&inputs(&p));
        assert_eq!(c["spec"]["type"], "ClusterIP");
        assert_eq!(c["spec"]["ports"][0]["port"], API_PORT);
    }
}
