//! Pure builders: a Peer (with its plan) in, the Kubernetes objects that run it out, as typed
//! k8s-openapi objects for server-side apply. Nothing here talks to the API server, so every rule
//! about the pods (security, probes, volumes) is unit-tested.

use crate::names::{self, headless_service};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Pod, PodAffinityTerm, PodAntiAffinity, PodSecurityContext,
    PodSpec, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile, Secret,
    SecretEnvSource, SecretProjection, SecurityContext, Service, ServicePort, ServiceSpec, Volume,
    VolumeMount, VolumeProjection, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use tally_api::peer::{ExposureType, Peer, PeerRole, ServiceType};
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
    labels.insert(names::LABEL_NODE.into(), node.into());
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

/// Label of the Services that expose one node outside the cluster.
pub const LABEL_EXPOSED: &str = "tally.dev/exposed";
/// The annotation external-dns reads for the names it publishes.
pub const ANNOTATION_HOSTNAME: &str = "external-dns.alpha.kubernetes.io/hostname";

/// The Service that exposes node `node` (ordinal `ordinal`) outside the cluster, when the
/// Peer has `spec.exposure`: only its client API and peer listener, selecting its pod alone
/// (Raft peers dial one node, not any of them), under the name the node is advertised by.
pub fn public_service(i: &PeerInputs, node: &str, ordinal: u32) -> Option<Service> {
    let e = i.peer.spec.exposure.as_ref()?;
    let mut labels = i.labels();
    labels.insert(LABEL_EXPOSED.into(), "true".into());
    labels.insert(names::LABEL_NODE.into(), node.into());
    let mut m = meta(&names::public_service(node), i.namespace, &labels, &i.owner);
    m.annotations = Some(strings([(
        ANNOTATION_HOSTNAME,
        format!("{node}.{}", e.domain),
    )]));
    let mut selector = names::peer_selector(&i.name());
    selector.insert(names::LABEL_NODE.into(), node.into());
    let mut ports = vec![
        service_port("api", API_PORT),
        service_port("peer", PEER_PORT),
    ];
    let type_ = match (e.type_, e.node_port_base) {
        (ExposureType::NodePort, Some(base)) => {
            let api = i32::from(base) + 2 * ordinal as i32;
            ports[0].node_port = Some(api);
            ports[1].node_port = Some(api + 1);
            "NodePort"
        }
        _ => "LoadBalancer",
    };
    Some(Service {
        metadata: m,
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(selector),
            ports: Some(ports),
            // Raft needs every node's own pod behind its name, ready or not: peers must
            // reach one another to become ready at all.
            publish_not_ready_addresses: Some(true),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
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

/// The pod's volumes: the shared ConfigMap, the node's own Secret and nothing else (a pod that
/// could read a sibling's key could speak for it in Raft), its ledger claim, a small tmp.
fn volumes(peer: &str, node: &str) -> Vec<Volume> {
    let own_secret = VolumeProjection {
        secret: Some(SecretProjection {
            name: names::node_secret(node),
            // Not optional: a node without its key must not start under another's.
            optional: Some(false),
            // Under the node's own folder, the path the node has always read.
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
    };
    vec![
        Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names::data_claim(node),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::peer_config(peer),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tls".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![own_secret]),
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

/// Annotations every node pod carries, before its revision.
fn pod_annotations(i: &PeerInputs) -> BTreeMap<String, String> {
    strings([
        ("prometheus.io/scrape", "true".to_string()),
        ("prometheus.io/port", API_PORT.to_string()),
        ("prometheus.io/path", "/metrics".to_string()),
        ("prometheus.io/scheme", "https".to_string()),
        ("tally.dev/version", i.version.clone()),
        (names::ANNOTATION_CERTIFICATES, i.certificates.clone()),
    ])
}

/// The spec of node `node`'s pod. Only its name, the claim and the Secret differ between
/// the nodes of a Peer.
fn pod_spec(i: &PeerInputs, node: &str) -> PodSpec {
    let name = i.name();
    let spec = &i.peer.spec;
    PodSpec {
        // `N.<peer>-nodes.<ns>.svc`: the address every channel configuration holds.
        hostname: Some(node.to_string()),
        subdomain: Some(headless_service(&name)),
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
        volumes: Some(volumes(&name, node)),
        ..PodSpec::default()
    }
}

/// The revision of the Peer's pods: a digest of everything a pod is built from except its
/// ordinal and its labels (labels are patched in place; anything else needs a new pod). A
/// pod whose `tally.dev/revision` differs is outdated and is replaced by the rollout.
pub fn pod_revision(i: &PeerInputs) -> String {
    // Node 0 stands for all: the other nodes' pods differ from its only by their ordinal.
    let spec = pod_spec(i, &tally_planner::node_name(&i.name(), 0));
    let bytes = serde_json::to_vec(&(spec, pod_annotations(i))).unwrap_or_default();
    let hex =
        tally_protocol::hash::Hash::tagged(b"tally/operator/pod-revision", &[bytes.as_slice()])
            .to_hex();
    hex[..16].to_string()
}

/// The labels of node `node`'s pod: the Peer's pod labels plus the node's name.
pub fn node_pod_labels(i: &PeerInputs, node: &str) -> BTreeMap<String, String> {
    let mut labels = i.pod_labels();
    labels.insert(names::LABEL_NODE.into(), node.into());
    labels
}

/// The pod of node `node` (`<peer>-<ordinal>`), at revision `revision` ([`pod_revision`]).
/// The operator creates, restarts and removes these pods itself, one per node rather than
/// a StatefulSet's shared template, so that each pod mounts its own node's Secret only.
pub fn node_pod(i: &PeerInputs, node: &str, revision: &str) -> Pod {
    let mut annotations = pod_annotations(i);
    annotations.insert(names::ANNOTATION_REVISION.into(), revision.to_string());
    let mut metadata = meta(node, i.namespace, &node_pod_labels(i, node), &i.owner);
    metadata.annotations = Some(annotations);
    Pod {
        metadata,
        spec: Some(pod_spec(i, node)),
        ..Pod::default()
    }
}

/// The ledger volume of node `node`, `data-<node>` (the name a StatefulSet gave it, so that
/// volumes made before the operator managed pods itself stay the nodes'). No owner: a claim
/// outlives its pod, a scale-down and the Peer itself (the ledger may be needed again, and
/// its organization's CA is kept while it remains).
pub fn data_claim(i: &PeerInputs, node: &str) -> PersistentVolumeClaim {
    let spec = &i.peer.spec;
    let storage_class = &spec.storage.storage_class_name;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(names::data_claim(node)),
            namespace: Some(i.namespace.into()),
            labels: Some(names::peer_selector(&i.name())),
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
    }
}

/// The ConfigMap `name` with a channel's genesis as `genesis.json`: what each member
/// organization reviews and signs (`tallyctl channel approve-genesis --genesis genesis.json`).
pub fn genesis_config_map(
    name: &str,
    namespace: &str,
    genesis: &tally_protocol::ChannelConfig,
    approvals: &[tally_api::channel::GenesisApproval],
    owner: &OwnerReference,
) -> crate::context::Result<ConfigMap> {
    let json = serde_json::to_string_pretty(genesis)
        .map_err(|e| crate::context::Error::Internal(e.to_string()))?;
    let approvals = serde_yaml::to_string(approvals)
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
        data: Some(strings([
            ("genesis.json", json),
            ("approvals.yaml", approvals),
        ])),
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
    use tally_api::peer::{PeerSpec, MAX_REPLICAS};

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

    /// Node `k`'s pod, as JSON.
    fn pod(i: &PeerInputs, k: i32) -> Value {
        let node = tally_planner::node_name(&i.name(), k);
        v(node_pod(i, &node, &pod_revision(i)))
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
            certificates: "c0ffee".into(),
            restore: None,
        }
    }

    #[test]
    fn pods_run_restricted() {
        let p = peer("consenter");
        let s = pod(&inputs(&p), 0);
        let pod = &s["spec"];
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
        let plain = pod(&inputs(&p), 0);
        assert!(plain["spec"]["initContainers"].is_null());
        let mut i = inputs(&p);
        i.restore = Some(RestoreSource {
            url: "s3://backups/bank".into(),
            manifest: Some("manifests/trade/00000000000000000042-1.json".into()),
            height: None,
            credentials_secret: Some("s3-creds".into()),
            channels: vec!["trade".into(), "audit".into()],
            read_only: false,
        });
        let s = pod(&i, 1);
        let inits = &s["spec"]["initContainers"];
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
        let s = pod(&i, 1);
        let args = &s["spec"]["initContainers"][0]["args"];
        assert_eq!(
            args.as_array().and_then(|a| a.last()),
            Some(&json!("--read-only"))
        );
    }

    #[test]
    fn nodes_get_default_resources() {
        let p = peer("consenter");
        let s = pod(&inputs(&p), 0);
        let r = &s["spec"]["containers"][0]["resources"];
        assert_eq!(r["requests"]["memory"], "512Mi");
        assert_eq!(r["limits"]["memory"], "4Gi");
        assert!(r["limits"].get("cpu").is_none());
    }

    #[test]
    fn node_pod_shape() {
        let p = peer("consenter");
        let i = inputs(&p);
        let s = pod(&i, 2);
        assert_eq!(s["metadata"]["name"], "bank-nodes-2");
        assert_eq!(s["metadata"]["namespace"], "t1");
        assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "Peer");
        assert_eq!(s["metadata"]["ownerReferences"][0]["controller"], true);
        // `bank-nodes-2.bank-nodes-nodes.t1.svc`, the address the channel configurations hold.
        assert_eq!(s["spec"]["hostname"], "bank-nodes-2");
        assert_eq!(s["spec"]["subdomain"], "bank-nodes-nodes");
        assert_eq!(
            s["spec"]["containers"][0]["image"],
            "ghcr.io/tally-dev/tally-node:0.1.0"
        );
        // The ledger claim keeps the name the StatefulSet gave it, and its template's fields.
        let data = s["spec"]["volumes"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == "data"))
            .expect("data volume");
        assert_eq!(
            data["persistentVolumeClaim"]["claimName"],
            "data-bank-nodes-2"
        );
        let claim = v(data_claim(&i, "bank-nodes-2"));
        assert_eq!(claim["metadata"]["name"], "data-bank-nodes-2");
        assert!(
            claim["metadata"]["ownerReferences"].is_null(),
            "a claim outlives its Peer"
        );
        assert_eq!(claim["metadata"]["labels"][names::LABEL_PEER], "bank-nodes");
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "2Gi");
        assert_eq!(claim["spec"]["storageClassName"], "fast");
        assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
        // The Services select the pods by the Peer's selector; the pod names its node.
        let labels = &s["metadata"]["labels"];
        for (k, val) in names::peer_selector("bank-nodes") {
            assert_eq!(labels[&k], json!(val), "{k}");
        }
        assert_eq!(labels[names::LABEL_NODE], "bank-nodes-2");
        assert_eq!(labels["consents.tally.dev/trade"], "true");
        // Plain Prometheus finds the metrics by annotation; the node labels them by consortium.
        let ann = &s["metadata"]["annotations"];
        assert_eq!(ann["prometheus.io/scrape"], "true");
        assert_eq!(ann["prometheus.io/port"], API_PORT.to_string());
        assert_eq!(ann["prometheus.io/path"], "/metrics");
        assert_eq!(ann["prometheus.io/scheme"], "https");
        assert_eq!(ann[names::ANNOTATION_REVISION], json!(pod_revision(&i)));
        let env = &s["spec"]["containers"][0]["env"];
        let consortium = env
            .as_array()
            .and_then(|e| e.iter().find(|v| v["name"] == "TALLY_CONSORTIUM"))
            .expect("TALLY_CONSORTIUM");
        assert_eq!(consortium["value"], json!(p.spec.consortium));
    }

    /// Every Secret a pod could read: volumes (secret, projected), env and envFrom of every
    /// container.
    fn secrets_of(pod: &Value) -> Vec<String> {
        let mut out = Vec::new();
        let spec = &pod["spec"];
        for vol in spec["volumes"].as_array().into_iter().flatten() {
            if let Some(n) = vol["secret"]["secretName"].as_str() {
                out.push(n.to_string());
            }
            for src in vol["projected"]["sources"].as_array().into_iter().flatten() {
                if let Some(n) = src["secret"]["name"].as_str() {
                    out.push(n.to_string());
                }
            }
        }
        let containers = spec["containers"].as_array().into_iter().flatten();
        let inits = spec["initContainers"].as_array().into_iter().flatten();
        for c in containers.chain(inits) {
            for e in c["envFrom"].as_array().into_iter().flatten() {
                if let Some(n) = e["secretRef"]["name"].as_str() {
                    out.push(n.to_string());
                }
            }
            for e in c["env"].as_array().into_iter().flatten() {
                if let Some(n) = e["valueFrom"]["secretKeyRef"]["name"].as_str() {
                    out.push(n.to_string());
                }
            }
        }
        out
    }

    #[test]
    fn each_pod_mounts_only_its_own_node_secret() {
        let p = peer("consenter");
        let i = inputs(&p);
        for k in 0..MAX_REPLICAS {
            let node = tally_planner::node_name("bank-nodes", k);
            let s = pod(&i, k);
            assert_eq!(secrets_of(&s), [names::node_secret(&node)], "{node}");
            let tls = s["spec"]["volumes"]
                .as_array()
                .and_then(|vs| vs.iter().find(|v| v["name"] == "tls"))
                .expect("tls volume");
            let src = &tls["projected"]["sources"][0]["secret"];
            assert_eq!(
                src["optional"], false,
                "{node}: a node never starts keyless"
            );
            let paths: Vec<&str> = src["items"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["path"].as_str()).collect())
                .unwrap_or_default();
            assert_eq!(
                paths,
                [format!("{node}/tls.crt"), format!("{node}/tls.key")]
            );
        }
        // A restore's credentials are the one other Secret, and only in its init container.
        let mut r = inputs(&p);
        r.restore = Some(RestoreSource {
            url: "s3://b".into(),
            manifest: None,
            height: None,
            credentials_secret: Some("s3-creds".into()),
            channels: vec!["trade".into()],
            read_only: false,
        });
        let s = pod(&r, 1);
        assert_eq!(secrets_of(&s), ["bank-nodes-1-tls", "s3-creds"]);
    }

    #[test]
    fn the_revision_follows_what_needs_a_new_pod_and_not_the_labels() {
        let p = peer("consenter");
        let base = pod_revision(&inputs(&p));
        assert_eq!(base.len(), 16);
        assert_eq!(pod_revision(&inputs(&p)), base, "deterministic");
        let mut i = inputs(&p);
        i.consents = vec!["trade".into(), "audit".into()];
        assert_eq!(
            pod_revision(&i),
            base,
            "a channel label is patched in place"
        );
        let mut i = inputs(&p);
        i.certificates = "renewed".into();
        assert_ne!(
            pod_revision(&i),
            base,
            "renewed certificates roll the nodes"
        );
        let mut i = inputs(&p);
        i.version = "0.2.0".into();
        assert_ne!(pod_revision(&i), base, "a new image rolls the nodes");
    }

    #[test]
    fn observers_do_not_count_for_quorum() {
        let p = peer("observer");
        let s = pod(&inputs(&p), 0);
        let labels = s["metadata"]["labels"].as_object().expect("labels");
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
        assert!(public_service(&inputs(&p), "bank-nodes-0", 0).is_none());
    }

    #[test]
    fn an_exposed_node_has_a_service_of_its_own_without_the_admin_port() {
        let mut p = peer("consenter");
        p.spec.exposure = Some(
            serde_json::from_value(json!({"domain": "peers.bank.example"})).expect("exposure"),
        );
        let s = v(public_service(&inputs(&p), "bank-nodes-2", 2).expect("exposed"));
        assert_eq!(s["metadata"]["name"], "bank-nodes-2-public");
        assert_eq!(s["spec"]["type"], "LoadBalancer");
        assert_eq!(
            s["metadata"]["annotations"][ANNOTATION_HOSTNAME],
            "bank-nodes-2.peers.bank.example"
        );
        assert_eq!(s["spec"]["selector"][names::LABEL_NODE], "bank-nodes-2");
        assert_eq!(s["spec"]["selector"][names::LABEL_PEER], "bank-nodes");
        let ports: Vec<_> = s["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| p["port"].clone())
            .collect();
        assert_eq!(
            ports,
            vec![json!(API_PORT), json!(PEER_PORT)],
            "the admin port stays inside"
        );

        p.spec.exposure = Some(
            serde_json::from_value(
                json!({"type": "NodePort", "domain": "peers.bank.example", "nodePortBase": 31000}),
            )
            .expect("exposure"),
        );
        let s = v(public_service(&inputs(&p), "bank-nodes-2", 2).expect("exposed"));
        assert_eq!(s["spec"]["type"], "NodePort");
        assert_eq!(s["spec"]["ports"][0]["nodePort"], 31004);
        assert_eq!(s["spec"]["ports"][1]["nodePort"], 31005);
    }
}
