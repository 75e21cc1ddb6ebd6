//! Objects Degraded for a reason their tenant must fix are parked: they wait for a change
//! (and look again only every five minutes) instead of being planned again every few seconds
//! to the same answer. The fix may be in the object itself (its own watch wakes it) or elsewhere in its
//! namespace: a Peer or Channel that a plan error names, a tenant's CA Secret, a chaincode's
//! ConfigMap. So a change of any Tally object's spec, or of any Secret or ConfigMap, in a
//! namespace wakes the objects parked there. The watches are metadata-only and keep no store.

use crate::decide::Verdict;
use crate::Context;
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Resource, ResourceExt};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use tally_api::{chaincode::Chaincode, channel::Channel, consortium::Consortium, peer::Peer};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// How often a parked object is looked at anyway.
pub const PARKED_LOOK: std::time::Duration = std::time::Duration::from_secs(300);

/// How long a wake waits, so that the controllers' stores (fed by their own watches) have
/// seen the change that caused it.
const WAKE_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// The parked objects, by namespace: (kind, name).
#[derive(Default)]
pub struct Parked(Mutex<HashMap<String, BTreeSet<(&'static str, String)>>>);

impl Parked {
    /// What follows a reconcile of `obj` that reached `verdict`: parked until a change when
    /// the tenant must fix something, otherwise looked at again after the verdict's interval.
    pub fn after<K: Resource<DynamicType = ()>>(&self, obj: &K, verdict: &Verdict) -> Action {
        self.after_until(obj, verdict, None)
    }

    /// [`Parked::after`], coming back no later than `due` when the object is not parked (the
    /// time an identity of its consortium falls due for renewal).
    pub fn after_until<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        verdict: &Verdict,
        due: Option<std::time::Duration>,
    ) -> Action {
        let ns = obj.namespace().unwrap_or_default();
        let key = (kind_of::<K>(), obj.name_any());
        let mut parked = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if verdict.parks() {
            parked.entry(ns).or_default().insert(key);
            // Woken by a change; the long look is for a wake that came before the
            // controller's store saw the change that caused it.
            Action::requeue(PARKED_LOOK)
        } else {
            if let Some(set) = parked.get_mut(&ns) {
                set.remove(&key);
            }
            let every = verdict.requeue();
            Action::requeue(due.map_or(every, |d| d.min(every)))
        }
    }

    /// Takes the objects parked in `ns` (every namespace when `None`).
    fn take(&self, ns: Option<&str>) -> Vec<(String, &'static str, String)> {
        let mut parked = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let namespaces: Vec<String> = match ns {
            Some(ns) => vec![ns.to_string()],
            None => parked.keys().cloned().collect(),
        };
        let mut out = Vec::new();
        for ns in namespaces {
            for (kind, name) in parked.remove(&ns).unwrap_or_default() {
                out.push((ns.clone(), kind, name));
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        let parked = self.0.lock().unwrap_or_else(|e| e.into_inner());
        parked.values().map(BTreeSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "Consortium" => "Consortium",
        "Peer" => "Peer",
        "Channel" => "Channel",
        "Chaincode" => "Chaincode",
        _ => "Other",
    }
}

/// The channels through which parked objects are woken, one per kind.
pub struct Wakers {
    consortia: UnboundedSender<ObjectRef<Consortium>>,
    peers: UnboundedSender<ObjectRef<Peer>>,
    channels: UnboundedSender<ObjectRef<Channel>>,
    chaincodes: UnboundedSender<ObjectRef<Chaincode>>,
}

/// Where each controller hears that a parked object of its kind woke (`Controller::reconcile_on`).
pub struct Alarms {
    pub consortia: UnboundedReceiver<ObjectRef<Consortium>>,
    pub peers: UnboundedReceiver<ObjectRef<Peer>>,
    pub channels: UnboundedReceiver<ObjectRef<Channel>>,
    pub chaincodes: UnboundedReceiver<ObjectRef<Chaincode>>,
}

pub fn wakers() -> (Wakers, Alarms) {
    let (a, ar) = unbounded_channel();
    let (b, br) = unbounded_channel();
    let (c, cr) = unbounded_channel();
    let (d, dr) = unbounded_channel();
    (
        Wakers {
            consortia: a,
            peers: b,
            channels: c,
            chaincodes: d,
        },
        Alarms {
            consortia: ar,
            peers: br,
            channels: cr,
            chaincodes: dr,
        },
    )
}

/// A receiver as a stream, for `Controller::reconcile_on`.
pub fn stream<T: Send + 'static>(rx: UnboundedReceiver<T>) -> impl Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}

impl Wakers {
    fn wake(&self, parked: &Parked, ns: Option<&str>) {
        for (ns, kind, name) in parked.take(ns) {
            let ns = Some(ns.as_str());
            // A controller that stopped is not listening: nothing to wake.
            let _ = match kind {
                "Consortium" => self
                    .consortia
                    .send(ObjectRef::new(&name).within_opt(ns))
                    .map_err(drop),
                "Peer" => self
                    .peers
                    .send(ObjectRef::new(&name).within_opt(ns))
                    .map_err(drop),
                "Channel" => self
                    .channels
                    .send(ObjectRef::new(&name).within_opt(ns))
                    .map_err(drop),
                "Chaincode" => self
                    .chaincodes
                    .send(ObjectRef::new(&name).within_opt(ns))
                    .map_err(drop),
                _ => Ok(()),
            };
        }
    }
}

trait WithinOpt {
    fn within_opt(self, ns: Option<&str>) -> Self;
}

impl<K: Resource<DynamicType = ()>> WithinOpt for ObjectRef<K> {
    fn within_opt(self, ns: Option<&str>) -> Self {
        match ns {
            Some(ns) => self.within(ns),
            None => self,
        }
    }
}

/// Metadata-only access to the objects of kind `K` in `ns` (all namespaces when `None`).
fn meta<K>(client: &kube::Client, ns: Option<&str>) -> Api<PartialObjectMeta<K>>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A namespace in which something changed that may fix a parked object; `None`: the watch
/// started over, so anything may have changed.
type Touched = Option<String>;

/// Namespaces in which objects of kind `K` changed: for Tally kinds only spec changes
/// (`generation`) and deletions count, since status writes fix nothing.
fn touched<K>(
    api: Api<PartialObjectMeta<K>>,
    by_generation: bool,
) -> impl Stream<Item = Touched> + Send
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
{
    let mut seen: HashMap<(String, String), Option<i64>> = HashMap::new();
    watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(move |ev| {
            let out = match ev {
                Ok(Event::Apply(m)) => {
                    let key = (m.namespace().unwrap_or_default(), m.name_any());
                    let gen = m.metadata.generation;
                    let changed = !by_generation || seen.insert(key.clone(), gen) != Some(gen);
                    changed.then_some(Some(key.0))
                }
                Ok(Event::Delete(m)) => {
                    let key = (m.namespace().unwrap_or_default(), m.name_any());
                    seen.remove(&key);
                    Some(Some(key.0))
                }
                Ok(Event::InitApply(m)) => {
                    let key = (m.namespace().unwrap_or_default(), m.name_any());
                    seen.insert(key, m.metadata.generation);
                    None
                }
                Ok(Event::InitDone) => Some(None),
                Ok(Event::Init) | Err(_) => None,
            };
            std::future::ready(out)
        })
}

/// Wakes the objects parked in a namespace whenever something there changes; runs until
/// aborted.
pub async fn wake_on_changes(ctx: Arc<Context>, ns: Option<String>, wakers: Wakers) {
    let c = &ctx.client;
    let scoped = ns.as_deref();
    let mut touches = futures_util::stream::select_all(vec![
        touched(meta::<Consortium>(c, scoped), true).boxed(),
        touched(meta::<Peer>(c, scoped), true).boxed(),
        touched(meta::<Channel>(c, scoped), true).boxed(),
        touched(meta::<Chaincode>(c, scoped), true).boxed(),
        touched(meta::<Secret>(c, scoped), false).boxed(),
        touched(meta::<ConfigMap>(c, scoped), false).boxed(),
    ]);
    while let Some(t) = touches.next().await {
        if ctx.parked.is_empty() {
            continue;
        }
        tokio::time::sleep(WAKE_DELAY).await;
        wakers.wake(&ctx.parked, t.as_deref().or(scoped));
    }
}
