//! What every controller shares: the API client, settings, metrics and the event recorder;
//! and the few API calls every reconciler makes (server-side apply of objects and of status,
//! events).

pub use crate::decide::{State, Verdict};
use crate::metrics::Metrics;
use crate::names::FIELD_MANAGER;
use crate::stores::Child;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use tally_api::common::Condition;
use tally_api::{chaincode::Chaincode, channel::Channel, consortium::Consortium, peer::Peer};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The resources do not plan: the message names the resource and field.
    #[error("{0}")]
    Plan(String),
    /// Something the tenant must fix (a missing or bad Secret, ConfigMap...).
    #[error("{0}")]
    Invalid(String),
    /// A node did not answer or refused.
    #[error("{0}")]
    Node(String),
    #[error("{0}")]
    Internal(String),
    /// Deletion waits for something else to go first.
    #[error("{0}")]
    Held(String),
    /// An organization's CA Secret is gone after its identities were issued
    /// ([`crate::ca_custody`]): restored by a person, never replaced.
    #[error("{0}")]
    CaLost(String),
    /// This replica's leader lease ran out: it must not act ([`crate::fence`]).
    #[error(transparent)]
    Fenced(#[from] crate::fence::FencedOut),
}

/// The reconciler's own error, out of the finalizer helper's wrapping.
pub fn from_finalizer(e: kube::runtime::finalizer::Error<Error>) -> Error {
    use kube::runtime::finalizer::Error as F;
    match e {
        F::ApplyFailed(e) | F::CleanupFailed(e) => e,
        other => Error::Internal(other.to_string()),
    }
}

impl Error {
    /// The `reason` label of `tally_operator_reconcile_errors_total`: the same word as the
    /// condition reason and event the error leaves, so that an alert and the object agree.
    pub fn metric_label(&self) -> &'static str {
        self.reason()
    }

    /// Whether the tenant must fix it (a resource, Secret or ConfigMap), rather than the
    /// cluster or a node recovering by itself.
    pub fn tenant_must_fix(&self) -> bool {
        matches!(self, Error::Plan(_) | Error::Invalid(_) | Error::CaLost(_))
    }

    /// Short CamelCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "ApiError",
            Error::Plan(_) => "InvalidSpec",
            Error::Invalid(_) => "InvalidReference",
            Error::Node(_) => "NodeUnreachable",
            Error::Internal(_) => "InternalError",
            Error::Held(_) => "DeletionBlocked",
            Error::CaLost(_) => "CaMissing",
            Error::Fenced(_) => "NotLeader",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Image (without tag) and tag of ledger nodes when a Peer names none.
    pub node_image: String,
    pub node_version: String,
    pub cluster_domain: String,
    /// How long node API calls may take.
    pub node_timeout: Duration,
    /// Where the operator runs: its pods are the ones a node's admin port admits.
    pub operator_namespace: String,
}

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Consecutive failed reconciles per object, for the error backoff.
    pub failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// Objects waiting for a change that may fix them.
    pub parked: crate::park::Parked,
    /// The controllers' stores and the last plan of each consortium.
    pub shared: crate::stores::Shared,
    /// What this operator last applied to each child, so that an identical apply can be
    /// skipped.
    pub applied: std::sync::Mutex<crate::applied::AppliedLog>,
    /// Open while this replica surely holds the leader lease; the client's writes pass it.
    pub fence: Arc<crate::fence::Fence>,
}

impl Context {
    /// Server-side apply of an object this operator owns; skipped, returning the stored
    /// object, when this operator last applied the very same body to it and the store shows
    /// the object unchanged since. Most reconciles want what is already there, and each
    /// apply is a write the API server (and etcd) must answer.
    pub async fn apply<K: Child>(&self, ns: &str, name: &str, body: &K) -> Result<K> {
        let key = (K::kind(&()).into_owned(), ns.to_string(), name.to_string());
        let digest = crate::applied::digest(body).map_err(|e| Error::Internal(e.to_string()))?;
        let stored = self
            .shared
            .for_ns(ns)
            .and_then(|s| s.children.get::<K>(ns, name));
        if let Some(cur) = &stored {
            let log = self.applied.lock().unwrap_or_else(|e| e.into_inner());
            if log.is_current(&key, digest, cur.meta()) {
                return Ok(cur.as_ref().clone());
            }
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let out = api.patch(name, &pp, &Patch::Apply(body)).await?;
        let mut log = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        log.record(key, digest, out.meta(), |(kind, ns, name)| {
            self.shared
                .for_ns(ns)
                .is_none_or(|s| s.children.holds(kind, ns, name))
        });
        Ok(out)
    }

    /// Publishes an event about `obj`; failures to publish are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }

    /// Writes `status` with the conditions `verdict` makes of the object's current ones, by
    /// server-side apply on the status subresource under the operator's field manager.
    /// Callers start from the object's current status, so fields a reconcile did not look at
    /// keep their values.
    pub async fn report<K>(&self, obj: &K, verdict: &Verdict, mut status: K::Status) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Reported
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let mut conditions = obj.conditions().to_vec();
        verdict.apply_to(&mut conditions, obj.meta().generation, &now());
        K::set_conditions(&mut status, conditions);
        // The status the object already holds needs no write. (Compared as JSON, what the
        // API server stores; the conditions keep their transition times while they hold.)
        if let (Some(Ok(held)), Ok(new)) = (
            obj.held_status().map(serde_json::to_value),
            serde_json::to_value(&status),
        ) {
            if held == new {
                return Ok(());
            }
        }
        let ns = obj.namespace().unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
        let body = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {"name": obj.name_any(), "namespace": ns},
            "status": status,
        });
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        api.patch_status(&obj.name_any(), &pp, &Patch::Apply(&body))
            .await?;
        Ok(())
    }
}

/// RFC 3339 now, for condition transition times.
pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The owner reference of a Tally resource, for the objects made from it.
pub fn owner_of<K: Resource<DynamicType = ()>>(
    obj: &K,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
    crate::builders::owner(
        &K::api_version(&()),
        &K::kind(&()),
        obj.meta().name.as_deref().unwrap_or_default(),
        obj.meta().uid.as_deref().unwrap_or_default(),
    )
}

/// The status conditions of a Tally kind.
pub trait Conditioned {
    fn conditions(&self) -> &[Condition];
}

/// A Tally kind's typed status, which [`Context::report`] writes.
pub trait Reported: Conditioned {
    type Status: serde::Serialize + Clone + Default;
    /// The status as the object holds it now (the default when it has none).
    fn current_status(&self) -> Self::Status;
    /// The status exactly as the object holds it.
    fn held_status(&self) -> Option<&Self::Status>;
    fn set_conditions(status: &mut Self::Status, conditions: Vec<Condition>);
}

macro_rules! reported {
    ($($k:ty => $s:ty),*) => {$(
        impl Conditioned for $k {
            fn conditions(&self) -> &[Condition] {
                self.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or(&[])
            }
        }
        impl Reported for $k {
            type Status = $s;
            fn current_status(&self) -> $s {
                let mut s = self.status.clone().unwrap_or_default();
                s.observed_generation = self.metadata.generation;
                s
            }
            fn held_status(&self) -> Option<&$s> {
                self.status.as_ref()
            }
            fn set_conditions(status: &mut $s, conditions: Vec<Condition>) {
                status.conditions = conditions;
            }
        }
    )*};
}
reported!(
    Consortium => tally_api::consortium::ConsortiumStatus,
    Peer => tally_api::peer::PeerStatus,
    Channel => tally_api::channel::ChannelStatus,
    Chaincode => tally_api::chaincode::ChaincodeStatus,
    tally_api::backup::Backup => tally_api::backup::BackupStatus,
    tally_api::backup::BackupSchedule => tally_api::backup::BackupScheduleStatus
);
