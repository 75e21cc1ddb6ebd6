//! The Tally objects as the controllers' own watches hold them (their reflector stores), so
//! that planning a consortium reads memory instead of listing its Peers, Channels and
//! Chaincodes from the API server on every reconcile; and the last plan of each consortium,
//! reused while the objects and CA Secrets it was made from are unchanged (planning issues
//! certificates, which costs signatures).

use crate::world::World;
use kube::runtime::reflector::Store;
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
