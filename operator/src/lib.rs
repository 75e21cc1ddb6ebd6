//! The Tally operator: one kube-rs `Controller` per kind (`Consortium`, `Peer`, `Channel`,
//! `Chaincode`, `Backup`, `BackupSchedule`) sharing one [`Context`]. Planning is the `tally-operator` crate's planner, the
//! same one `tallyctl up` runs; this crate applies its plan to a cluster.

pub mod applied;
pub mod backup;
pub mod backup_schedule;
pub mod backup_store;
pub mod builders;
pub mod ca_custody;
pub mod ca_rotation;
pub mod chaincode;
pub mod chaincode_delete;
pub mod channel;
pub mod channel_delete;
pub mod consortium;
pub mod context;
pub mod cron;
pub mod decide;
pub mod exposure;
pub mod fence;
pub mod genesis_approvals;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod network_policy;
pub mod park;
pub mod peer;
pub mod pods;
pub mod quorum_guard;
pub mod reach;
pub mod restore;
pub mod retire_proposal;
pub mod server;
pub mod stores;
pub mod world;

pub use context::{Conditioned, Context, Error, Settings};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tally_api::backup::{Backup, BackupSchedule};
use tally_api::{chaincode::Chaincode, channel::Channel, consortium::Consortium, peer::Peer};

fn api<K>(client: &kube::Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// `Kind/namespace/name`: how logs and the error backoff name an object.
fn object_key<K: Resource<DynamicType = ()>>(kind: &str, obj: &K) -> String {
    format!(
        "{kind}/{}/{}",
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Requeue after a failed reconcile: 1 s doubling to 256 s (about four minutes) per object,
/// reset by a success.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(8)).min(Duration::from_secs(300))
}

async fn instrumented<K, Fut>(
    kind: &'static str,
    obj: Arc<K>,
    ctx: Arc<Context>,
    fut: Fut,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    Fut: Future<Output = Result<Action, Error>>,
{
    let timer = ctx.metrics.start(kind);
    let key = object_key(kind, obj.as_ref());
    let r = fut.await;
    match &r {
        Ok(_) => {
            timer.finish(None);
            ctx.failures
                .lock()
                .map(|mut f| {
                    f.remove(&key);
                    ctx.metrics.set_retry_queue(f.keys());
                })
                .ok();
        }
        Err(e) => {
            timer.finish(Some(e.metric_label()));
            tracing::warn!(kind, object = %key, error = %e, "reconcile failed");
            ctx.event(obj.as_ref(), true, e.reason(), "Reconcile", e.to_string())
                .await;
        }
    }
    r
}

fn error_policy<K: Resource<DynamicType = ()>>(
    kind: &'static str,
) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |obj, _err, ctx| {
        let key = object_key(kind, obj.as_ref());
        let n = ctx
            .failures
            .lock()
            .map(|mut f| {
                let n = {
                    let n = f.entry(key).or_insert(0);
                    *n += 1;
                    *n
                };
                ctx.metrics.set_retry_queue(f.keys());
                n
            })
            .unwrap_or(1);
        Action::requeue(backoff(n - 1))
    }
}

fn log_result<T: Debug, E: std::fmt::Display>(
    kind: &'static str,
) -> impl Fn(Result<T, E>) -> std::future::Ready<()> {
    move |r| {
        if let Err(e) = r {
            tracing::debug!(kind, error = %e, "controller stream");
        }
        std::future::ready(())
    }
}

/// A watch of the children of kind `K` kept in a store (without their managed fields, which
/// are most of an object's size and which nothing here reads), and the stream of changed or
/// deleted objects that triggers their owners' reconciles.
fn reflected<K: stores::Child>(
    api: Api<K>,
    wc: watcher::Config,
) -> (
    kube::runtime::reflector::Store<K>,
    impl futures_util::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) {
    use kube::runtime::WatchStreamExt;
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = kube::runtime::reflector(
        writer,
        watcher(api, wc)
            .default_backoff()
            .modify(|o: &mut K| o.meta_mut().managed_fields = None),
    )
    .touched_objects();
    (reader, stream)
}

/// Runs the controllers for one namespace (`None`: all) until `shutdown` resolves.
pub async fn run_controllers(
    ctx: Arc<Context>,
    ns: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let c = &ctx.client;
    let ns = ns.as_deref();
    let wc = watcher::Config::default;
    let shutdown = futures_util::future::FutureExt::shared(Box::pin(shutdown));
    let (wakers, alarms) = park::wakers();
    let waker = tokio::spawn(park::wake_on_changes(
        ctx.clone(),
        ns.map(str::to_string),
        wakers,
    ));
    let consortium_controller = Controller::new(api::<Consortium>(c, ns), wc());
    let peer_controller = Controller::new(api::<Peer>(c, ns), wc());
    let channel_controller = Controller::new(api::<Channel>(c, ns), wc());
    let chaincode_controller = Controller::new(api::<Chaincode>(c, ns), wc());
    let scope = ns.map(str::to_string);
    let managed = format!("{}={}", names::LABEL_MANAGED_BY, names::FIELD_MANAGER);
    let (secrets, secret_changes) = reflected(api::<Secret>(c, ns), wc().labels(&managed));
    // The node pods wake their Peer (ready, gone, failed); the Peer lists them itself when it
    // decides, so no store is kept.
    let pod_changes = {
        use kube::runtime::WatchStreamExt;
        let node_pods = format!("{}=tally-node", names::LABEL_NAME);
        watcher(api::<Pod>(c, ns), wc().labels(&node_pods))
            .default_backoff()
            .touched_objects()
    };
    let (services, service_changes) = reflected(api::<Service>(c, ns), wc());
    let (config_maps, config_map_changes) = reflected(api::<ConfigMap>(c, ns), wc());
    let (pdbs, pdb_changes) = reflected(api::<PodDisruptionBudget>(c, ns), wc());
    let (network_policies, network_policy_changes) = reflected(api::<NetworkPolicy>(c, ns), wc());
    ctx.shared.register(stores::Stores {
        children: stores::Children {
            services,
            config_maps,
            secrets,
            pdbs,
            network_policies,
        },
        scope: scope.clone(),
        consortia: consortium_controller.store(),
        peers: peer_controller.store(),
        channels: channel_controller.store(),
        chaincodes: chaincode_controller.store(),
    });
    let consortia = consortium_controller
        .reconcile_on(park::stream(alarms.consortia))
        .owns_stream(secret_changes)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |o, ctx| {
                instrumented(
                    "Consortium",
                    o.clone(),
                    ctx.clone(),
                    consortium::reconcile(o, ctx),
                )
            },
            error_policy("Consortium"),
            ctx.clone(),
        )
        .for_each(log_result("Consortium"));
    let peers = peer_controller
        .reconcile_on(park::stream(alarms.peers))
        .owns_stream(pod_changes)
        .owns_stream(service_changes)
        .owns_stream(config_map_changes)
        .owns_stream(network_policy_changes)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |o, ctx| instrumented("Peer", o.clone(), ctx.clone(), peer::reconcile(o, ctx)),
            error_policy("Peer"),
            ctx.clone(),
        )
        .for_each(log_result("Peer"));
    let known_channels = channel_controller.store();
    let channels = channel_controller
        .reconcile_on(park::stream(alarms.channels))
        .owns_stream(pdb_changes)
        // A Peer scaled or started changes its channels' configuration or lets a new node
        // join: those channels act at once instead of at their next resync.
        .watches(api::<Peer>(c, ns), wc(), move |peer| {
            channels_of_peer(&known_channels.state(), &peer)
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |o, ctx| {
                instrumented(
                    "Channel",
                    o.clone(),
                    ctx.clone(),
                    channel::reconcile(o, ctx),
                )
            },
            error_policy("Channel"),
            ctx.clone(),
        )
        .for_each(log_result("Channel"));
    let chaincodes = chaincode_controller
        .reconcile_on(park::stream(alarms.chaincodes))
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |o, ctx| {
                instrumented(
                    "Chaincode",
                    o.clone(),
                    ctx.clone(),
                    chaincode::reconcile(o, ctx),
                )
            },
            error_policy("Chaincode"),
            ctx.clone(),
        )
        .for_each(log_result("Chaincode"));
    let backups = Controller::new(api::<Backup>(c, ns), wc())
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |o, ctx| instrumented("Backup", o.clone(), ctx.clone(), backup::reconcile(o, ctx)),
            error_policy("Backup"),
            ctx.clone(),
        )
        .for_each(log_result("Backup"));
    let schedules = Controller::new(api::<BackupSchedule>(c, ns), wc())
        // A Backup finishing lets retention and the next backup go on at once.
        .owns(api::<Backup>(c, ns), wc())
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |o, ctx| {
                instrumented(
                    "BackupSchedule",
                    o.clone(),
                    ctx.clone(),
                    backup_schedule::reconcile(o, ctx),
                )
            },
            error_policy("BackupSchedule"),
            ctx.clone(),
        )
        .for_each(log_result("BackupSchedule"));
    tokio::join!(consortia, peers, channels, chaincodes, backups, schedules);
    waker.abort();
    ctx.shared.unregister(&scope);
}

/// The Channels of the Peer's namespace that list it as a consenter or observer.
fn channels_of_peer(
    channels: &[Arc<Channel>],
    peer: &Peer,
) -> Vec<kube::runtime::reflector::ObjectRef<Channel>> {
    let name = peer.metadata.name.clone().unwrap_or_default();
    channels
        .iter()
        .filter(|c| c.metadata.namespace == peer.metadata.namespace)
        .filter(|c| c.spec.consenters.contains(&name) || c.spec.observers.contains(&name))
        .map(|c| kube::runtime::reflector::ObjectRef::from_obj(c.as_ref()))
        .collect()
}

fn ready_of(conds: &[tally_api::common::Condition]) -> &'static str {
    use tally_api::common::ConditionStatus as S;
    match conds.iter().find(|c| c.type_ == "Ready").map(|c| c.status) {
        Some(S::True) => "True",
        Some(S::False) => "False",
        _ => "Unknown",
    }
}

async fn count<K>(ctx: &Context, ns: Option<&str>) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Conditioned
        + Clone
        + DeserializeOwned
        + Debug,
{
    let items = api::<K>(&ctx.client, ns)
        .list(&ListParams::default())
        .await?
        .items;
    for state in ["True", "False", "Unknown"] {
        let n = items
            .iter()
            .filter(|o| ready_of(o.conditions()) == state)
            .count();
        ctx.metrics
            .resources
            .with_label_values(&[&K::kind(&()), state])
            .set(n as i64);
    }
    Ok(())
}

/// Refreshes `tally_operator_resources` every 15 s.
pub async fn count_resources(ctx: Arc<Context>, namespaces: Vec<Option<String>>) {
    loop {
        for ns in &namespaces {
            let ns = ns.as_deref();
            let r = async {
                count::<Consortium>(&ctx, ns).await?;
                count::<Peer>(&ctx, ns).await?;
                count::<Channel>(&ctx, ns).await?;
                count::<Chaincode>(&ctx, ns).await?;
                count::<Backup>(&ctx, ns).await?;
                count::<BackupSchedule>(&ctx, ns).await
            }
            .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "cannot count resources");
            }
        }
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_up_to_about_four_minutes() {
        assert_eq!(super::backoff(0).as_secs(), 1);
        assert_eq!(super::backoff(3).as_secs(), 8);
        assert_eq!(super::backoff(20).as_secs(), 256);
    }
}
