//! Pure builders: a Peer (with its plan) in, the Kubernetes objects that run it out, as typed
//! k8s-openapi objects for server-side apply. Nothing here talks to the API server, so every rule
//! about the pods (security, probes, volumes) is unit-tested.

use crate::names::{self, headless_service};
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, Secret, SecretEnvSource, SecretProjection,
    SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount, VolumeProjection,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
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
pub fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub(crate) fn meta(
    name: &str,
    ns: &str,
    labels: &BTreeMap<String, String>,
    owner: &OwnerReference,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

pub(crate) fn strings<'a>(
    kv: impl IntoIterator<Item = (&'a str, String)>,
) -> BTreeMap<String, String> {
    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// What the Peer builders need beyond the Peer itself.
pub struct PeerInputs<'a> {
    pub peer: &'a Peer,
    pub namespace: &'a str,
    pub owner: OwnerReference,
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
    /// Digest of the nodes' certificates: in the pod template, so that a renewed certificate
    /// makes a new revision, which the Peer controller rolls out one node at a time.
    pub certificates: String,
    /// Ledgers restored before the node starts (`spec.restore`, a Backup's name resolved).
    pub restore: Option<RestoreSource>,
}

/// Where a Peer's nodes restore missing ledgers from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreSource {
    pub url: String,
    /// One manifest (a Backup's); otherwise the newest backup of each channel, at or below
    /// `height` when set.
    pub manifest: Option<String>,
    pub height: Option<u64>,
    pub credentials_secret: Option<String>,
    pub channels: Vec<String>,
    /// Restored read-only at the backup's point in time (`Peer.spec.restore.readOnly`).
    pub read_only: bool,
}

impl PeerInputs<'_> {
    pub(crate) fn name(&self) -> String {
        self.peer.metadata.name.clone().unwrap_or_default()
    }

    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
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
pub fn config_map(i: &PeerInputs) -> ConfigMap {
    ConfigMap {
        metadata: meta(
            &names::peer_config(&i.name()),
            i.namespace,
            &i.labels(),
            &i.owner,
        ),
        data: Some(strings([("org-ca.pem", i.org_ca_pem.to_string())])),
        ..ConfigMap::default()
    }
}

/// A `kubernetes.io/tls` Secret holding `data` (written as `stringData`).
fn tls_secret(metadata: ObjectMeta, data: BTreeMap<String, String>) -> Secret {
    Secret {
        metadata,
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(data),
        ..Secret::default()
    }
}

/// Secret with one node's certificate and key.
pub fn node_secret(i: &PeerInputs, node: &str, id: &Identity) -> Secret {
    let mut labels = i.labels();
    labels.insert("tally.dev/node".into(), node.into());
    tls_secret(
        meta(&names::node_secret(node), i.namespace, &labels, &i.owner),
        strings([
            ("tls.crt", id.cert_pem()),
            ("tls.key", id.key_pem()),
            ("ca.crt", i.org_ca_pem.to_string()),
        ]),
    )
}

fn service_port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: port.into(),
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

fn ports() -> Vec<ServicePort> {
    vec![
        service_port("api", API_PORT),
        service_port("peer", PEER_PORT),
        service_port("admin", ADMIN_PORT),
    ]
}

/// Headless Service that gives every node a stable DNS name, published before the node is
/// ready: Raft peers must find each other to become ready at all.
pub fn headless(i: &PeerInputs) -> Service {
    Service {
        metadata: meta(
            &headless_service(&i.name()),
            i.namespace,
            &i.labels(),
            &i.owner,
        ),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names::peer_selector(&i.name())),
            ports: Some(ports()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Service through which clients reach the Peer's ready nodes.
pub fn client_service(i: &PeerInputs) -> Service {
    let type_ = match i.peer.spec.service.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Service {
        metadata: meta(&i.name(), i.namespace, &i.labels(), &i.owner),
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(names::peer_selector(&i.name())),
            ports: Some(vec![service_port("api", API_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn env_value(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port.into(),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn http_probe(path: &str) -> Option<HTTPGetAction> {
    Some(HTTPGetAction {
        path: Some(path.into()),
        port: IntOrString::String("api".into()),
        // The client API speaks only TLS; the kubelet does not verify the certificate.
        scheme: Some("HTTPS".into()),
        ..HTTPGetAction::default()
    })
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn runtime_default() -> Option<SeccompProfile> {
    Some(SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    })
}

/// The node's container: restricted (non-root, read-only root filesystem, no privilege
/// escalation, no capabilities, seccomp `RuntimeDefault`).
/// A node's container when the Peer names no resources: requested enough to be scheduled
/// where it can keep up, memory capped well above its steady use (RocksDB's caches and write
/// buffers, a snapshot in flight) so a leak or a flood ends in a restart rather than a starved
/// machine, and no CPU limit (throttling a Raft thread costs elections).
fn default_node_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), q("250m")),
            ("memory".to_string(), q("512Mi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), q("4Gi"))])),
        ..ResourceRequirements::default()
    }
}

fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        seccomp_profile: runtime_default(),
        ..SecurityContext::default()
    }
}

/// One init container per channel to restore: `tally-node restore` verifies the backup and
/// installs it only when the node's volume has no ledger of that channel, so a pod that
/// restarts, or a node that kept its volume, starts from its own ledger.
fn restore_containers(i: &PeerInputs) -> Vec<Container> {
    let Some(r) = &i.restore else {
        return Vec::new();
    };
    r.channels
        .iter()
        .enumerate()
        .map(|(k, ch)| {
            let mut args = vec![
                "restore".to_string(),
                "--from".into(),
                r.url.clone(),
                "--data-dir".into(),
                format!("{DATA_DIR}/data"),
                "--channel".into(),
                ch.clone(),
                "--if-missing".into(),
            ];
            if let Some(m) = &r.manifest {
                args.extend(["--manifest".into(), m.clone()]);
            } else if let Some(h) = r.height {
                args.extend(["--height".into(), h.to_string()]);
            }
            if r.read_only {
                args.push("--read-only".into());
            }
            Container {
                name: format!("restore-{k}"),
                image: Some(i.image_ref()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(vec!["tally-node".into()]),
                args: Some(args),
                env: Some(vec![env_value("TALLY_LOG_FORMAT", "json".into())]),
                env_from: r.credentials_secret.as_ref().map(|name| {
                    vec![EnvFromSource {
                        secret_ref: Some(SecretEnvSource {
                            name: name.clone(),
                            optional: Some(false),
                        }),
                        ..EnvFromSource::default()
                    }]
                }),
                volume_mounts: Some(vec![
                    mount("data", DATA_DIR, false),
                    mount("tmp", "/tmp", false),
                ]),
                security_context: Some(restricted()),
                resources: Some(
                    i.peer
                        .spec
                        .resources
                        .clone()
                        .unwrap_or_else(default_node_resources),
                ),
                ..Container::default()
            }
        })
        .collect()
}

fn node_container(i: &PeerInputs) -> Container {
    let spec = &i.peer.spec;
    Container {
        name: "node".into(),
        image: Some(i.image_ref()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["tally-node".into()]),
        env: Some(vec![
            env_field("POD_NAME", "metadata.name"),
            env_field("POD_IP", "status.podIP"),
            env_value("TALLY_NODE_NAME", "$(POD_NAME)".into()),
            env_value("TALLY_DATA_DIR", format!("{DATA_DIR}/data")),
            env_value("TALLY_LISTEN_API", format!("$(POD_IP):{API_PORT}")),
            env_value("TALLY_LISTEN_PEER", format!("$(POD_IP):{PEER_PORT}")),
            env_value("TALLY_LISTEN_ADMIN", format!("$(POD_IP):{ADMIN_PORT}")),
            env_value("TALLY_CERT", format!("{TLS_DIR}/$(POD_NAME)/tls.crt")),
            env_value("TALLY_KEY", format!("{TLS_DIR}/$(POD_NAME)/tls.key")),
            env_value("TALLY_ORG_CA", format!("{CONFIG_DIR}/org-ca.pem")),
            env_value("TALLY_LOG_FORMAT", "json".into()),
            // The `consortium` label of the node's metrics.
            env_value("TALLY_CONSORTIUM", spec.consortium.clone()),
        ]),
        ports: Some(vec![
            container_port("api", API_PORT),
            container_port("peer", PEER_PORT),
            container_port("admin", ADMIN_PORT),
        ]),
        readiness_probe: Some(Probe {
            http_get: http_probe("/readyz"),
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        liveness_probe: Some(Probe {
            http_get: http_probe("/healthz"),
            initial_delay_seconds: Some(10),
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        volume_mounts: Some(vec![
            mount("data", DATA_DIR, false),
            mount("config", CONFIG_DIR, true),
            mount("tls", TLS_DIR, true),
            mount("tmp", "/tmp", false),
        ]),
        security_context: Some(restricted()),
        resources: Some(
            spec.resources
                .clone()
                .unwrap_or_else(default_node_resources),
        ),
        ..Container::default()
    }
}

/// The pod's volumes: the shared ConfigMap, every possible node's Secret (optional, so that the
/// template stays the same when scaling and each pod reads only its own folder), a small tmp.
fn volumes(name: &str) -> Vec<Volume> {
    let tls_sources: Vec<VolumeProjection> = (0..MAX_REPLICAS)
        .map(|ord| {
            let node = tally_planner::node_name(name, ord);
            VolumeProjection {
                secret: Some(SecretProjection {
                    name: names::node_secret(&node),
                    optional: Some(true),
                    items: Some(vec![
                        KeyToPath {
                            key: "tls.crt".into(),
                            path: format!("{node}/tls.crt"),
                            ..KeyToPath::default()
                        },
                        KeyToPath {
                            key: "tls.key".into(),
                            path: format!("{node}/tls.key"),
                            mode: Some(0o400),
                        },
                    ]),
                }),
                ..VolumeProjection::default()
            }
        })
        .collect();
    vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::peer_config(name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tls".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(tls_sources),
                default_mode: Some(0o440),
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("64Mi".into())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

/// The StatefulSet: one pod and volume per node. Pods are replaced by the operator
/// (`OnDelete`), one at a time and only once the others are caught up, never by the
/// StatefulSet controller on its own.
pub fn stateful_set(i: &PeerInputs) -> StatefulSet {
    let name = i.name();
    let spec = &i.peer.spec;
    let storage_class = &spec.storage.storage_class_name;
    let annotations = strings([
        ("prometheus.io/scrape", "true".to_string()),
        ("prometheus.io/port", API_PORT.to_string()),
        ("prometheus.io/path", "/metrics".to_string()),
        ("prometheus.io/scheme", "https".to_string()),
        ("tally.dev/version", i.version.clone()),
        (names::ANNOTATION_CERTIFICATES, i.certificates.clone()),
    ]);
    let pod = PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(30),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: runtime_default(),
            ..PodSecurityContext::default()
        }),
        affinity: Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: PodAffinityTerm {
                            topology_key: "kubernetes.io/hostname".into(),
                            label_selector: Some(LabelSelector {
                                match_labels: Some(strings([(
                                    names::LABEL_CONSORTIUM,
                                    spec.consortium.clone(),
                                )])),
                                ..LabelSelector::default()
                            }),
                            ..PodAffinityTerm::default()
                        },
                    },
                ]),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        }),
        init_containers: Some(restore_containers(i)).filter(|c| !c.is_empty()),
        containers: vec![node_container(i)],
        volumes: Some(volumes(&name)),
        ..PodSpec::default()
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(names::peer_selector(&name)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    spec.storage.size.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name: (!storage_class.is_empty()).then(|| storage_class.clone()),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    StatefulSet {
        metadata: meta(&name, i.namespace, &i.labels(), &i.owner),
        spec: Some(StatefulSetSpec {
            replicas: Some(i.replicas),
            service_name: Some(headless_service(&name)),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            selector: LabelSelector {
                match_labels: Some(names::peer_selector(&name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(i.pod_labels()),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// The ConfigMap `name` with a channel's genesis as `genesis.json`: what each member
/// organization reviews and signs (`tallyctl channel approve-genesis --genesis genesis.json`).
pub fn genesis_config_map(
    name: &str,
    namespace: &str,
    genesis: &tally_protocol::ChannelConfig,
    owner: &OwnerReference,
) -> crate::context::Result<ConfigMap> {
    let json = serde_json::to_string_pretty(genesis)
        .map_err(|e| crate::context::Error::Internal(e.to_string()))?;
    let labels = strings([(names::LABEL_MANAGED_BY, names::FIELD_MANAGER.to_string())]);
    let mut annotations = BTreeMap::new();
    annotations.insert(
        names::ANNOTATION_GENESIS_HASH.to_string(),
        genesis.hash().to_hex(),
    );
    Ok(ConfigMap {
        metadata: ObjectMeta {
            annotations: Some(annotations),
            ..meta(name, namespace, &labels, owner)
        },
        data: Some(strings([("genesis.json", json)])),
        ..ConfigMap::default()
    })
}

/// Budget that keeps a channel's Raft quorum: at most a minority of its voting nodes may be
/// voluntarily disrupted (drains, evictions) at once.
pub fn quorum_budget(
    channel: &str,
    consortium: &str,
    namespace: &str,
    voters: usize,
    owner: &OwnerReference,
) -> PodDisruptionBudget {
    let labels = strings([
        (names::LABEL_CONSORTIUM, consortium.to_string()),
        (names::LABEL_MANAGED_BY, names::FIELD_MANAGER.to_string()),
    ]);
    let consents = names::consents_label(channel);
    PodDisruptionBudget {
        metadata: meta(&names::quorum_budget(channel), namespace, &labels, owner),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int((voters / 2 + 1) as i32)),
            selector: Some(LabelSelector {
                match_labels: Some(strings([
                    (names::LABEL_CONSORTIUM, consortium.to_string()),
                    (consents.as_str(), "true".to_string()),
                ])),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// Where a consortium-owned Secret goes and whose it is.
pub struct OrgSecret<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub org: &'a str,
    pub consortium: &'a str,
    pub owner: &'a OwnerReference,
}

impl OrgSecret<'_> {
    fn meta(&self) -> ObjectMeta {
        meta(
            self.name,
            self.namespace,
            &names::consortium_labels(self.consortium, self.org),
            self.owner,
        )
    }
}

/// Secret with an organization's CA, created once.
pub fn ca_secret(at: &OrgSecret, cert_pem: &str, key_pem: &str, issued_at: i64) -> Secret {
    let mut m = at.meta();
    m.annotations = Some(strings([(
        names::ANNOTATION_ISSUED_AT,
        issued_at.to_string(),
    )]));
    tls_secret(
        m,
        strings([
            ("tls.crt", cert_pem.to_string()),
            ("tls.key", key_pem.to_string()),
        ]),
    )
}

/// Secret with an identity (admin or client) of an organization.
pub fn identity_secret(at: &OrgSecret, id: &Identity, ca_pem: &str) -> Secret {
    tls_secret(
        at.meta(),
        strings([
            ("tls.crt", id.cert_pem()),
            ("tls.key", id.key_pem()),
            ("ca.crt", ca_pem.to_string()),
        ]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use tally_api::peer::PeerSpec;

    fn v<T: serde::Serialize>(obj: T) -> Value {
        serde_json::to_value(obj).expect("serializes")
    }

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
            certificates: "c0ffee".into(),
            restore: None,
        }
    }

    #[test]
    fn pods_run_restricted() {
        let p = peer("consenter");
        let s = v(stateful_set(&inputs(&p)));
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
    fn a_restore_runs_first_restricted_and_only_on_a_missing_ledger() {
        let p = peer("consenter");
        let plain = v(stateful_set(&inputs(&p)));
        assert!(plain["spec"]["template"]["spec"]["initContainers"].is_null());
        let mut i = inputs(&p);
        i.restore = Some(RestoreSource {
            url: "s3://backups/bank".into(),
            manifest: Some("manifests/trade/00000000000000000042-1.json".into()),
            height: None,
            credentials_secret: Some("s3-creds".into()),
            channels: vec!["trade".into(), "audit".into()],
            read_only: false,
        });
        let s = v(stateful_set(&i));
        let inits = &s["spec"]["template"]["spec"]["initContainers"];
        assert_eq!(inits.as_array().map(Vec::len), Some(2));
        let c = &inits[1];
        assert_eq!(c["name"], "restore-1");
        assert_eq!(c["image"], "ghcr.io/tally-dev/tally-node:0.1.0");
        assert_eq!(
            c["args"],
            json!([
                "restore",
                "--from",
                "s3://backups/bank",
                "--data-dir",
                "/var/lib/tally/data",
                "--channel",
                "audit",
                "--if-missing",
                "--manifest",
                "manifests/trade/00000000000000000042-1.json"
            ])
        );
        assert_eq!(c["envFrom"][0]["secretRef"]["name"], "s3-creds");
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        // The restore writes the node's volume; it sees no node Secret.
        let mounts: Vec<&str> = c["volumeMounts"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(mounts, ["data", "tmp"]);
        if let Some(r) = i.restore.as_mut() {
            r.read_only = true;
        }
        let s = v(stateful_set(&i));
        let args = &s["spec"]["template"]["spec"]["initContainers"][0]["args"];
        assert_eq!(
            args.as_array().and_then(|a| a.last()),
            Some(&json!("--read-only"))
        );
    }

    #[test]
    fn nodes_get_default_resources() {
        let p = peer("consenter");
        let s = v(stateful_set(&inputs(&p)));
        let r = &s["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(r["requests"]["memory"], "512Mi");
        assert_eq!(r["limits"]["memory"], "4Gi");
        assert!(r["limits"].get("cpu").is_none());
    }

    #[test]
    fn stateful_set_shape() {
        let p = peer("consenter");
        let s = v(stateful_set(&inputs(&p)));
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
        assert_eq!(ann["prometheus.io/scheme"], "https");
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
        let s = v(stateful_set(&inputs(&p)));
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
            let b = v(quorum_budget("trade", "scf", "t1", voters, &o));
            assert_eq!(b["spec"]["minAvailable"], min, "{voters} voters");
        }
        let b = v(quorum_budget("trade", "scf", "t1", 3, &o));
        assert_eq!(
            b["spec"]["selector"]["matchLabels"]["consents.tally.dev/trade"],
            "true"
        );
    }

    #[test]
    fn services() {
        let p = peer("consenter");
        let h = v(headless(&inputs(&p)));
        assert_eq!(h["spec"]["clusterIP"], "None");
        assert_eq!(h["spec"]["publishNotReadyAddresses"], true);
        assert_eq!(h["metadata"]["ownerReferences"][0]["controller"], true);
        let c = v(client_service(&inputs(&p)));
        assert_eq!(c["spec"]["type"], "ClusterIP");
        assert_eq!(c["spec"]["ports"][0]["port"], API_PORT);
    }
}
