//! The Tally objects as the controllers' own watches hold them (their reflector stores), so
//! that planning a consortium reads memory instead of listing its Peers, Channels and
//! Chaincodes from the API server on every reconcile; and the last plan of each consortium,
//! reused while the objects and CA Secrets it was made from are unchanged (planning issues
//! certificates, which costs signatures).

use crate::world::World;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use tally_api::{chaincode::Chaincode, channel::Channel, consortium::Consortium, peer::Peer};

/// The stores of one `run_controllers` (one namespace, or all when `scope` is `None`).
#[derive(Clone)]
pub struct Stores {
    pub scope: Option<String>,
    pub consortia: Store<Consortium>,
    pub peers: Store<Peer>,
    pub channels: Store<Channel>,
    pub chaincodes: Store<Chaincode>,
    /// The objects the controllers make (watched anyway, as owned children that trigger
    /// reconciles): a reconcile reads them here instead of a GET, and an apply whose object
    /// the store shows as last applied is skipped.
    pub children: Children,
}

/// Reflector stores of the operator's children.
#[derive(Clone)]
pub struct Children {
    pub services: Store<Service>,
    pub config_maps: Store<ConfigMap>,
    /// Only Secrets labelled as managed by the operator: a tenant's own CA Secret is not
    /// in it and is read from the API server.
    pub secrets: Store<Secret>,
    pub pdbs: Store<PodDisruptionBudget>,
    pub network_policies: Store<NetworkPolicy>,
}

/// A kind the operator applies, and the store that holds it.
pub trait Child:
    kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    fn store(c: &Children) -> &Store<Self>;
}

macro_rules! child {
    ($($k:ty => $f:ident),*) => {$(
        impl Child for $k {
            fn store(c: &Children) -> &Store<Self> {
                &c.$f
            }
        }
    )*};
}
child!(
    Service => services,
    ConfigMap => config_maps,
    Secret => secrets,
    PodDisruptionBudget => pdbs,
    NetworkPolicy => network_policies
);

impl Children {
    /// The object `ns`/`name` of kind `K` as its store holds it; `None` when it is not there
    /// or the store has not made its first list yet (then absence means nothing).
    pub fn get<K: Child>(&self, ns: &str, name: &str) -> Option<Arc<K>> {
        if !self.ready::<K>() {
            return None;
        }
        K::store(self).get(&ObjectRef::new(name).within(ns))
    }

    /// Whether the object `kind` `ns`/`name` may still exist: false only when the store of
    /// that kind has made its first list and does not hold it.
    pub fn holds(&self, kind: &str, ns: &str, name: &str) -> bool {
        fn check<K: Child>(c: &Children, ns: &str, name: &str) -> bool {
            !c.ready::<K>() || c.get::<K>(ns, name).is_some()
        }
        match kind {
            "Service" => check::<Service>(self, ns, name),
            "ConfigMap" => check::<ConfigMap>(self, ns, name),
            "Secret" => check::<Secret>(self, ns, name),
            "PodDisruptionBudget" => check::<PodDisruptionBudget>(self, ns, name),
            "NetworkPolicy" => check::<NetworkPolicy>(self, ns, name),
            _ => true,
        }
    }

    /// Whether the store of `K` has made its first list, so that absence from it is real.
    pub fn ready<K: Child>(&self) -> bool {
        use futures_util::FutureExt;
        matches!(
            K::store(self).wait_until_ready().now_or_never(),
            Some(Ok(()))
        )
    }
}

/// What a consortium's plan was made from, in namespace `ns`.
pub struct Snapshot {
    pub consortium: Consortium,
    pub peers: Vec<Peer>,
    pub channels: Vec<Channel>,
    pub chaincodes: Vec<Chaincode>,
}

fn owned<K: Clone>(v: Vec<Arc<K>>) -> Vec<K> {
    v.into_iter().map(|a| a.as_ref().clone()).collect()
}

fn in_ns<K: kube::Resource>(ns: &str) -> impl Fn(&K) -> bool + '_ {
    move |o: &K| o.meta().namespace.as_deref() == Some(ns)
}

impl Stores {
    /// Whether every store has made its first list: before, a store is empty or partial, and
    /// planning from it would drop objects. Not waited for: a reconcile may run before the
    /// other kinds' stores are filled, and blocking it there could hold up the very
    /// controller whose store is awaited.
    pub fn ready(&self) -> bool {
        use futures_util::FutureExt;
        let now = |f: Option<Result<(), _>>| matches!(f, Some(Ok(())));
        now(self.consortia.wait_until_ready().now_or_never())
            && now(self.peers.wait_until_ready().now_or_never())
            && now(self.channels.wait_until_ready().now_or_never())
            && now(self.chaincodes.wait_until_ready().now_or_never())
    }

    /// The consortium `name` of `ns` and its resources; `None` when the consortium is not in
    /// the store. Only once [`Stores::ready`].
    pub fn snapshot(&self, ns: &str, name: &str) -> Option<Snapshot> {
        let consortium = self
            .consortia
            .state_filter(|c| in_ns(ns)(c) && c.name_any() == name)
            .first()
            .map(|c| c.as_ref().clone())?;
        let peers: Vec<Peer> = owned(
            self.peers
                .state_filter(|p| in_ns(ns)(p) && p.spec.consortium == name),
        );
        let channels: Vec<Channel> = owned(
            self.channels
                .state_filter(|c| in_ns(ns)(c) && c.spec.consortium == name),
        );
        let names: Vec<String> = channels.iter().map(|c| c.name_any()).collect();
        let chaincodes: Vec<Chaincode> = owned(
            self.chaincodes
                .state_filter(|c| in_ns(ns)(c) && names.contains(&c.spec.channel)),
        );
        Some(Snapshot {
            consortium,
            peers,
            channels,
            chaincodes,
        })
    }
}

/// A plan and the versions it was made from.
type Cached = (String, Arc<World>);

#[derive(Default)]
pub struct Shared {
    stores: RwLock<Vec<Stores>>,
    /// The last plan of each consortium (namespace, name), with the versions it was made from.
    plans: Mutex<HashMap<(String, String), Cached>>,
}

impl Shared {
    pub fn register(&self, s: Stores) {
        self.stores
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }

    pub fn unregister(&self, scope: &Option<String>) {
        self.stores
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| &s.scope != scope);
        self.plans.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The stores that hold namespace `ns`.
    pub fn for_ns(&self, ns: &str) -> Option<Stores> {
        self.stores
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|s| s.scope.as_deref().is_none_or(|x| x == ns))
            .cloned()
    }

    /// The cached plan of `key` if it was made from `versions`.
    pub fn plan(&self, key: &(String, String), versions: &str) -> Option<Arc<World>> {
        let plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        plans
            .get(key)
            .filter(|(v, _)| v == versions)
            .map(|(_, w)| w.clone())
    }

    pub fn keep_plan(&self, key: (String, String), versions: String, w: Arc<World>) {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        plans.insert(key, (versions, w));
    }
}

/// The resource versions a plan depends on, in a stable order.
pub fn versions<'a>(
    objs: impl IntoIterator<Item = (&'a str, &'a kube::core::ObjectMeta)>,
) -> String {
    let mut v: Vec<String> = objs
        .into_iter()
        .map(|(kind, m)| {
            format!(
                "{kind}/{}@{}",
                m.name.as_deref().unwrap_or_default(),
                m.resource_version.as_deref().unwrap_or_default()
            )
        })
        .collect();
    v.sort_unstable();
    v.join(",")
}
