//! The kubelet: one worker per pod bound here.

use super::*;

pub(super) async fn kubelet(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.node()));
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Apply(p)) => on_pod(&shared, p),
            Ok(watcher::Event::InitApply(p)) => {
                if let Some(uid) = &p.metadata.uid {
                    listed.insert(uid.clone());
                }
                on_pod(&shared, p);
            }
            Ok(watcher::Event::Delete(p)) => {
                if let Some(uid) = &p.metadata.uid {
                    pod_gone(&shared, uid);
                }
            }
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitDone) => {
                let gone: Vec<String> = shared
                    .state()
                    .workers
                    .keys()
                    .filter(|u| !listed.contains(*u))
                    .cloned()
                    .collect();
                for uid in gone {
                    pod_gone(&shared, &uid);
                }
            }
            Err(e) => eprintln!("podrunner {}: watching its pods: {e}", shared.node()),
        }
    }
}

pub(super) fn pod_gone(shared: &Shared, uid: &str) {
    if let Some(tx) = shared.state().workers.get(uid) {
        tx.send_replace(None);
    }
}

pub(super) fn on_pod(shared: &Arc<Shared>, pod: Pod) {
    let (Some(uid), Some(ns), Some(name)) = (
        pod.metadata.uid.clone(),
        pod.metadata.namespace.clone(),
        pod.metadata.name.clone(),
    ) else {
        return;
    };
    let mut st = shared.state();
    if st.stopped || st.finished.contains(&uid) {
        return;
    }
    if let Some(tx) = st.workers.get(&uid) {
        tx.send_replace(Some(Arc::new(pod)));
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        // Finished before this runner saw it: nothing runs; let a deletion complete.
        if pod.metadata.deletion_timestamp.is_some() {
            st.finished.insert(uid.clone());
            drop(st);
            let s = shared.clone();
            shared.spawn(async move { delete_now(&s, &ns, &name, &uid).await });
        }
        return;
    }
    let pod = Arc::new(pod);
    let (tx, rx) = watch::channel(Some(pod.clone()));
    let (done_tx, done_rx) = watch::channel(false);
    let prev = st.last_by_name.insert((ns, name), done_rx);
    st.workers.insert(uid, tx);
    drop(st);
    let s = shared.clone();
    shared.spawn(async move { run_pod(s, pod, rx, prev, done_tx).await });
}

/// Deletes the pod from the API with grace period 0 (what the kubelet does once its
/// containers are gone), if it is still the same pod.
pub(super) async fn delete_now(shared: &Shared, ns: &str, name: &str, uid: &str) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {}
        Err(e) if matches!(api_code(&e), Some(404 | 409)) => {}
        Err(e) => eprintln!("podrunner {}: deleting pod {ns}/{name}: {e}", shared.node()),
    }
}

/// An optional ConfigMap or Secret that a volume mounts or a container's environment reads and
/// that this runner's watch did not have, so its files or variables were left out. A pod
/// created right after its Secrets can reach the runner before them (they come on another
/// watch); if the API server has the source, the container waits for the watch instead of
/// starting without them.
pub(super) enum Skipped {
    ConfigMap(String),
    Secret(String),
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::ConfigMap(name) => write!(f, "configmap {name:?}"),
            Skipped::Secret(name) => write!(f, "secret {name:?}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum CState {
    Waiting { reason: String, message: String },
    Running { started_at: String },
    Terminated(Term),
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Term {
    pub(super) exit_code: i32,
    pub(super) signal: Option<i32>,
    pub(super) reason: String,
    pub(super) message: Option<String>,
    pub(super) started_at: String,
    pub(super) finished_at: String,
    pub(super) container_id: String,
}

impl Term {
    pub(super) fn json(&self) -> Value {
        let mut t = json!({
            "exitCode": self.exit_code, "reason": self.reason,
            "startedAt": self.started_at, "finishedAt": self.finished_at,
            "containerID": self.container_id,
        });
        if let Some(s) = self.signal {
            t["signal"] = json!(s);
        }
        if let Some(m) = &self.message {
            t["message"] = json!(m);
        }
        json!({ "terminated": t })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Container1 {
    pub(super) state: CState,
    pub(super) last: Option<Term>,
    pub(super) restart_count: i32,
    pub(super) ready: bool,
    pub(super) started: bool,
    pub(super) ever_ran: bool,
    /// Terminated and not to be restarted.
    pub(super) done: bool,
    pub(super) pid: Option<u32>,
    pub(super) container_id: String,
}

/// One pod's worker state, shared by its container loops.
pub(super) struct PodCtx {
    pub(super) shared: Arc<Shared>,
    pub(super) ns: String,
    pub(super) name: String,
    pub(super) uid: String,
    pub(super) ip: Ipv4Addr,
    pub(super) dir: PathBuf,
    /// The pod's spec as first seen: it does not change in ways that matter here.
    pub(super) spec: k8s_openapi::api::core::v1::PodSpec,
    /// The pod as last seen (labels and annotations may change).
    pub(super) latest: Mutex<Arc<Pod>>,
    pub(super) containers: Vec<Container>,
    pub(super) n_init: usize,
    pub(super) start_time: String,
    pub(super) states: Mutex<Vec<Container1>>,
    pub(super) initialized: Mutex<bool>,
    pub(super) failed: Mutex<Option<(String, String)>>,
    pub(super) cond_times: Mutex<HashMap<&'static str, (bool, String)>>,
    pub(super) volumes_lock: tokio::sync::Mutex<()>,
    pub(super) changed: Notify,
    /// `Some(grace)`: stop every container with that grace period.
    pub(super) stop: watch::Sender<Option<Duration>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) enum Outcome {
    Succeeded,
    Failed,
    Stopped,
}

pub(super) enum RunEnd {
    Exited(Term),
    Stopped(Term),
}

pub(super) struct Waiting {
    pub(super) reason: &'static str,
    pub(super) message: String,
}

impl Waiting {
    pub(super) fn config(message: String) -> Waiting {
        Waiting {
            reason: "CreateContainerConfigError",
            message,
        }
    }
    pub(super) fn mount(message: String) -> Waiting {
        Waiting {
            reason: "ContainerCreating",
            message,
        }
    }
}

pub(super) struct Launch {
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) cwd: PathBuf,
}

pub(super) async fn run_pod(
    shared: Arc<Shared>,
    pod: Arc<Pod>,
    mut rx: watch::Receiver<Option<Arc<Pod>>>,
    prev: Option<watch::Receiver<bool>>,
    done: watch::Sender<bool>,
) {
    if let Some(mut prev) = prev {
        let _ = prev.wait_for(|d| *d).await;
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    match PodCtx::new(shared.clone(), pod) {
        Ok(ctx) => {
            let ctx = Arc::new(ctx);
            ctx.lifecycle(&mut rx).await;
            ctx.cleanup();
        }
        Err(e) => {
            eprintln!("podrunner {}: pod {ns}/{name}: {e:#}", shared.node());
            // Wait for its deletion all the same.
            loop {
                let current = rx.borrow_and_update().clone();
                match current {
                    None => break,
                    Some(p) if p.metadata.deletion_timestamp.is_some() => {
                        delete_now(&shared, &ns, &name, &uid).await;
                        break;
                    }
                    Some(_) => {}
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
    }
    {
        let mut st = shared.state();
        st.workers.remove(&uid);
        st.finished.insert(uid);
    }
    let _ = done.send(true);
}

impl PodCtx {
    pub(super) fn new(shared: Arc<Shared>, pod: Arc<Pod>) -> anyhow::Result<PodCtx> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().context("the pod has no spec")?;
        let ip = shared.ip_for(&ns, &name)?;
        let dir = shared.pod_dir(&ns, &name);
        std::fs::create_dir_all(dir.join("volumes"))
            .with_context(|| format!("create {}", dir.display()))?;
        let inits = spec.init_containers.clone().unwrap_or_default();
        let n_init = inits.len();
        let containers: Vec<Container> = inits
            .into_iter()
            .chain(spec.containers.iter().cloned())
            .collect();
        let states = containers
            .iter()
            .enumerate()
            .map(|(i, c)| Container1 {
                state: CState::Waiting {
                    reason: if i < n_init {
                        "PodInitializing"
                    } else {
                        "ContainerCreating"
                    }
                    .to_string(),
                    message: String::new(),
                },
                last: None,
                restart_count: 0,
                ready: false,
                started: false,
                ever_ran: false,
                done: false,
                pid: None,
                container_id: format!("podrunner://{uid}/{}", c.name),
            })
            .collect();
        {
            let mut st = shared.state();
            let key = (ns.clone(), name.clone());
            if let Some(first) = spec.containers.first() {
                st.logs
                    .insert(key.clone(), dir.join(format!("{}.log", first.name)));
            }
            st.pods.insert(
                key,
                PodInfo {
                    uid: uid.clone(),
                    ip,
                    hostname: spec.hostname.clone(),
                    subdomain: spec.subdomain.clone(),
                    labels: pod.metadata.labels.clone().unwrap_or_default(),
                    ports: container_ports(&spec),
                    ready: false,
                    pids: Vec::new(),
                },
            );
        }
        shared.hosts_dirty.notify_one();
        Ok(PodCtx {
            ns,
            name,
            uid,
            ip,
            dir,
            latest: Mutex::new(pod),
            spec,
            containers,
            n_init,
            start_time: rfc3339(Timestamp::now()),
            states: Mutex::new(states),
            initialized: Mutex::new(n_init == 0),
            failed: Mutex::new(None),
            cond_times: Mutex::new(HashMap::new()),
            volumes_lock: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
            stop: watch::channel(None).0,
            shared,
        })
    }

    pub(super) fn spec(&self) -> &k8s_openapi::api::core::v1::PodSpec {
        &self.spec
    }

    pub(super) fn set(&self, idx: usize, f: impl FnOnce(&mut Container1)) {
        if let Some(s) = lock(&self.states).get_mut(idx) {
            f(s);
        }
        self.changed.notify_one();
    }

    pub(super) fn grace(&self, pod: &Pod) -> Duration {
        let secs = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    /// Runs the pod until it is deleted or gone.
    pub(super) async fn lifecycle(self: &Arc<Self>, rx: &mut watch::Receiver<Option<Arc<Pod>>>) {
        let unsupported = self
            .containers
            .iter()
            .find(|c| !c.image.as_deref().unwrap_or("").contains("tally-node"));
        let driver = match unsupported {
            Some(c) => {
                let message = format!(
                    "the tally-tests pod runner runs only tally-node images: container {:?} has image {:?}",
                    c.name,
                    c.image.as_deref().unwrap_or("")
                );
                for i in 0..self.containers.len() {
                    self.set(i, |s| {
                        s.state = CState::Waiting {
                            reason: "UnsupportedImage".to_string(),
                            message: message.clone(),
                        }
                    });
                }
                *lock(&self.failed) = Some(("UnsupportedImage".to_string(), message));
                None
            }
            None => {
                let ctx = self.clone();
                Some(self.shared.spawn(async move { ctx.drive().await }))
            }
        };
        let mut objects = self.shared.objects_changed.subscribe();
        let mut reported: Option<Value> = None;
        let mut retry_at: Option<tokio::time::Instant> = None;
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.ns);
        loop {
            let current = rx.borrow_and_update().clone();
            match current {
                None => {
                    // Gone from the API (force-deleted): stop with the shortest grace.
                    self.stop.send_replace(Some(Duration::from_secs(2)));
                    if let Some(d) = driver {
                        let _ = d.await;
                    }
                    return;
                }
                Some(p) if p.metadata.deletion_timestamp.is_some() => {
                    self.stop.send_replace(Some(self.grace(&p)));
                    if let Some(d) = driver {
                        let _ = d.await;
                    }
                    delete_now(&self.shared, &self.ns, &self.name, &self.uid).await;
                    return;
                }
                Some(p) => *lock(&self.latest) = p,
            }
            let status = self.status_json();
            self.publish_info();
            let due = retry_at.is_some_and(|t| t <= tokio::time::Instant::now());
            if reported.as_ref() != Some(&status) || due {
                retry_at = None;
                match api
                    .patch_status(
                        &self.name,
                        &PatchParams::default(),
                        &Patch::Strategic(json!({ "status": status })),
                    )
                    .await
                {
                    Ok(_) => reported = Some(status),
                    Err(e) if api_code(&e) == Some(404) => {}
                    Err(e) => {
                        eprintln!(
                            "podrunner {}: status of pod {}/{}: {e}",
                            self.shared.node(),
                            self.ns,
                            self.name
                        );
                        retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                }
            }
            let retry = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = rx.changed() => {
                    if r.is_err() {
                        // The runner is stopping.
                        self.stop.send_replace(Some(Duration::ZERO));
                        return;
                    }
                }
                _ = self.changed.notified() => {}
                r = objects.changed() => {
                    if r.is_ok() {
                        if let Err(w) = self.materialize().await {
                            eprintln!(
                                "podrunner {}: refreshing the volumes of {}/{}: {}",
                                self.shared.node(), self.ns, self.name, w.message
                            );
                        }
                    }
                }
                _ = retry => {}
            }
        }
    }

    /// Runs the init containers in order, then all containers.
    pub(super) async fn drive(self: Arc<Self>) {
        let _ = self.shared.configmaps.wait_until_ready().await;
        let _ = self.shared.secrets.wait_until_ready().await;
        for i in 0..self.n_init {
            match self.clone().run_container(i).await {
                Outcome::Succeeded => {}
                Outcome::Failed => {
                    *lock(&self.failed) = Some((
                        "InitContainerFailed".to_string(),
                        format!("init container {:?} failed", self.containers[i].name),
                    ));
                    self.changed.notify_one();
                    return;
                }
                Outcome::Stopped => return,
            }
        }
        *lock(&self.initialized) = true;
        self.changed.notify_one();
        let runs = (self.n_init..self.containers.len()).map(|i| self.clone().run_container(i));
        futures_util::future::join_all(runs).await;
    }

    /// One container: start, supervise, restart per the restart policy, until stopped.
    pub(super) async fn run_container(self: Arc<Self>, idx: usize) -> Outcome {
        let c = self.containers[idx].clone();
        let init = idx < self.n_init;
        let policy = self
            .spec()
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".to_string());
        let mut stop = self.stop.subscribe();
        let mut objects = self.shared.objects_changed.subscribe();
        let mut backoff = Duration::from_secs(1);
        loop {
            if stop.borrow_and_update().is_some() {
                return Outcome::Stopped;
            }
            let launch = match self.materialize().await {
                Ok(()) => self.launch_checked(&c).await,
                Err(w) => Err(w),
            };
            let launch = match launch {
                Ok(l) => l,
                Err(w) => {
                    self.set(idx, |s| {
                        s.state = CState::Waiting {
                            reason: w.reason.to_string(),
                            message: w.message,
                        }
                    });
                    tokio::select! {
                        _ = stop.changed() => return Outcome::Stopped,
                        _ = objects.changed() => {}
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                    continue;
                }
            };
            let t0 = Instant::now();
            let started_at = rfc3339(Timestamp::now());
            let container_id = {
                let n = lock(&self.states)
                    .get(idx)
                    .map(|s| s.restart_count)
                    .unwrap_or(0);
                format!("podrunner://{}/{}/{n}", self.uid, c.name)
            };
            let end = match self.spawn_process(&c, &launch) {
                Ok(child) => {
                    self.supervise(idx, &c, child, &started_at, &container_id, &mut stop)
                        .await
                }
                Err(e) => RunEnd::Exited(Term {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".to_string(),
                    message: Some(format!(
                        "cannot start {}: {e}",
                        self.shared.opts.node_bin.display()
                    )),
                    started_at: started_at.clone(),
                    finished_at: rfc3339(Timestamp::now()),
                    container_id: container_id.clone(),
                }),
            };
            let term = match end {
                RunEnd::Stopped(term) => {
                    self.set(idx, |s| {
                        s.state = CState::Terminated(term);
                        s.ready = false;
                        s.pid = None;
                        s.done = true;
                    });
                    return Outcome::Stopped;
                }
                RunEnd::Exited(term) => term,
            };
            let success = term.exit_code == 0 && term.reason == "Completed";
            let restart = match policy.as_str() {
                "Never" => false,
                "OnFailure" => !success,
                _ => !(init && success),
            };
            if !restart {
                self.set(idx, |s| {
                    s.state = CState::Terminated(term);
                    s.ready = false;
                    s.pid = None;
                    s.done = true;
                });
                return if success {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed
                };
            }
            if t0.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_secs(1);
            }
            let message = format!(
                "back-off {}s restarting failed container={} pod={}_{}({})",
                backoff.as_secs(),
                c.name,
                self.name,
                self.ns,
                self.uid
            );
            self.set(idx, |s| {
                s.last = Some(term);
                s.restart_count += 1;
                s.state = CState::Waiting {
                    reason: "CrashLoopBackOff".to_string(),
                    message,
                };
                s.ready = false;
                s.started = false;
                s.pid = None;
            });
            tokio::select! {
                _ = stop.changed() => return Outcome::Stopped,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    pub(super) fn spawn_process(
        &self,
        c: &Container,
        l: &Launch,
    ) -> std::io::Result<tokio::process::Child> {
        use std::io::Write;
        let log = self.dir.join(format!("{}.log", c.name));
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        writeln!(
            out,
            "--- podrunner: {} {}",
            rfc3339(Timestamp::now()),
            l.args.join(" ")
        )?;
        let err = out.try_clone()?;
        let mut cmd = tokio::process::Command::new(&self.shared.opts.node_bin);
        cmd.args(&l.args)
            .env_clear()
            .envs(l.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&l.cwd)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.spawn()
    }

    /// Watches a started process: its exit, a stop request, its probes.
    pub(super) async fn supervise(
        &self,
        idx: usize,
        c: &Container,
        mut child: tokio::process::Child,
        started_at: &str,
        container_id: &str,
        stop: &mut watch::Receiver<Option<Duration>>,
    ) -> RunEnd {
        let pid = child.id();
        let key = {
            let mut st = self.shared.state();
            st.next_proc += 1;
            let key = st.next_proc;
            if let Some(pid) = pid {
                st.procs.insert(key, pid as i32);
            }
            key
        };
        let has_startup = c.startup_probe.is_some();
        let has_readiness = c.readiness_probe.is_some();
        self.set(idx, |s| {
            s.state = CState::Running {
                started_at: started_at.to_string(),
            };
            s.pid = pid;
            s.ever_ran = true;
            s.started = !has_startup;
            s.ready = !has_startup && !has_readiness;
            s.container_id = container_id.to_string();
        });
        let term = |status: std::io::Result<std::process::ExitStatus>, message: Option<String>| {
            use std::os::unix::process::ExitStatusExt;
            let (exit_code, signal) = match &status {
                Ok(st) => match (st.code(), st.signal()) {
                    (Some(code), _) => (code, None),
                    (None, Some(sig)) => (128 + sig, Some(sig)),
                    (None, None) => (255, None),
                },
                Err(_) => (255, None),
            };
            let message = match (message, &status) {
                (Some(m), _) => Some(m),
                (None, Err(e)) => Some(format!("waiting for the process: {e}")),
                (None, Ok(_)) => None,
            };
            Term {
                exit_code,
                signal,
                reason: if exit_code == 0 { "Completed" } else { "Error" }.to_string(),
                message,
                started_at: started_at.to_string(),
                finished_at: rfc3339(Timestamp::now()),
                container_id: container_id.to_string(),
            }
        };
        let mut probes = Probes::new(c);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            tokio::select! {
                st = child.wait() => break RunEnd::Exited(term(st, None)),
                r = stop.changed() => {
                    let grace = match r {
                        Ok(()) => stop.borrow_and_update().unwrap_or(Duration::ZERO),
                        Err(_) => Duration::ZERO,
                    };
                    let st = terminate(&mut child, pid, grace).await;
                    break RunEnd::Stopped(term(st, None));
                }
                _ = tick.tick() => {
                    let v = probes.step(c, self.ip).await;
                    if let Some(why) = v.kill {
                        let grace = self.grace(&lock(&self.latest));
                        let st = terminate(&mut child, pid, grace).await;
                        let mut t = term(st, Some(why));
                        t.reason = "Error".to_string();
                        break RunEnd::Exited(t);
                    }
                    let (started, ready) = (probes.started, probes.started && probes.ready);
                    let changed = lock(&self.states)
                        .get(idx)
                        .is_some_and(|s| s.started != started || s.ready != ready);
                    if changed {
                        self.set(idx, |s| {
                            s.started = started;
                            s.ready = ready;
                        });
                    }
                }
            }
        };
        self.shared.state().procs.remove(&key);
        end
    }

    /// Writes every volume's files (configMap, secret, projected, downwardAPI) and makes the
    /// folders of the others.
    ///
    /// Nothing is written until every volume's files are known and no optional source was
    /// skipped that the API server has (see [`Skipped`]).
    pub(super) async fn materialize(&self) -> Result<(), Waiting> {
        let _guard = self.volumes_lock.lock().await;
        let mut skipped = Vec::new();
        let mut planned = Vec::new();
        for v in self.spec().volumes.iter().flatten() {
            let dir = self.volume_dir(&v.name);
            let files = if let Some(cm) = &v.config_map {
                self.configmap_files(
                    &cm.name,
                    cm.items.as_deref(),
                    cm.optional.unwrap_or(false),
                    cm.default_mode.unwrap_or(0o644),
                    &mut skipped,
                )?
            } else if let Some(s) = &v.secret {
                self.secret_files(
                    s.secret_name.as_deref().unwrap_or(""),
                    s.items.as_deref(),
                    s.optional.unwrap_or(false),
                    s.default_mode.unwrap_or(0o644),
                    &mut skipped,
                )?
            } else if let Some(p) = &v.projected {
                let mode = p.default_mode.unwrap_or(0o644);
                let mut files = Vec::new();
                for src in p.sources.iter().flatten() {
                    if let Some(cm) = &src.config_map {
                        files.extend(self.configmap_files(
                            &cm.name,
                            cm.items.as_deref(),
                            cm.optional.unwrap_or(false),
                            mode,
                            &mut skipped,
                        )?);
                    } else if let Some(s) = &src.secret {
                        files.extend(self.secret_files(
                            &s.name,
                            s.items.as_deref(),
                            s.optional.unwrap_or(false),
                            mode,
                            &mut skipped,
                        )?);
                    } else if let Some(d) = &src.downward_api {
                        files.extend(self.downward_files(d.items.as_deref(), mode)?);
                    }
                    // serviceAccountToken and clusterTrustBundle sources are not simulated.
                }
                files
            } else if let Some(d) = &v.downward_api {
                self.downward_files(d.items.as_deref(), d.default_mode.unwrap_or(0o644))?
            } else if v.empty_dir.is_some()
                || v.ephemeral.is_some()
                || v.persistent_volume_claim.is_some()
            {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Waiting::mount(format!("volume {:?}: {}: {e}", v.name, dir.display()))
                })?;
                continue;
            } else if v.host_path.is_some() {
                continue;
            } else {
                return Err(Waiting::mount(format!(
                    "volume {:?}: the tally-tests pod runner supports configMap, secret, projected, \
                     downwardAPI, emptyDir, ephemeral, persistentVolumeClaim and hostPath volumes",
                    v.name
                )));
            };
            planned.push((&v.name, dir, files));
        }
        self.none_on_api_server(&skipped, Waiting::mount).await?;
        for (name, dir, files) in planned {
            write_files(&dir, &files)
                .map_err(|e| Waiting::mount(format!("volume {name:?}: {e}")))?;
        }
        Ok(())
    }

    /// Waits (as `waiting` says) if the API server has a source this runner's watch did not.
    async fn none_on_api_server(
        &self,
        skipped: &[Skipped],
        waiting: fn(String) -> Waiting,
    ) -> Result<(), Waiting> {
        for s in skipped {
            let there = match s {
                Skipped::ConfigMap(name) => self.api_has::<ConfigMap>(name).await,
                Skipped::Secret(name) => self.api_has::<Secret>(name).await,
            };
            if there {
                return Err(waiting(format!(
                    "{s} exists but has not reached this runner yet"
                )));
            }
        }
        Ok(())
    }

    async fn api_has<K>(&self, name: &str) -> bool
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api = Api::<K>::namespaced(self.shared.client.clone(), &self.ns);
        matches!(api.get_opt(name).await, Ok(Some(_)))
    }

    /// The folder that stands for a volume.
    pub(super) fn volume_dir(&self, name: &str) -> PathBuf {
        for v in self.spec().volumes.iter().flatten() {
            if v.name != name {
                continue;
            }
            if let Some(pvc) = &v.persistent_volume_claim {
                return self.shared.pvc_dir(&self.ns, &pvc.claim_name);
            }
            if let Some(h) = &v.host_path {
                return PathBuf::from(&h.path);
            }
        }
        self.dir.join("volumes").join(name)
    }

    pub(super) fn configmap_files(
        &self,
        name: &str,
        items: Option<&[KeyToPath]>,
        optional: bool,
        mode: i32,
        skipped: &mut Vec<Skipped>,
    ) -> Result<Vec<VolFile>, Waiting> {
        let key = ObjectRef::new(name).within(&self.ns);
        let Some(cm) = self.shared.configmaps.get(&key) else {
            return if optional {
                skipped.push(Skipped::ConfigMap(name.to_string()));
                Ok(Vec::new())
            } else {
                Err(Waiting::mount(format!("configmap {name:?} not found")))
            };
        };
        let mut all: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (k, v) in cm.data.iter().flatten() {
            all.insert(k.clone(), v.clone().into_bytes());
        }
        for (k, v) in cm.binary_data.iter().flatten() {
            all.insert(k.clone(), v.0.clone());
        }
        select_items(all, items, optional, mode)
            .map_err(|k| Waiting::mount(format!("configmap {name:?} has no key {k:?}")))
    }

    pub(super) fn secret_files(
        &self,
        name: &str,
        items: Option<&[KeyToPath]>,
        optional: bool,
        mode: i32,
        skipped: &mut Vec<Skipped>,
    ) -> Result<Vec<VolFile>, Waiting> {
        let key = ObjectRef::new(name).within(&self.ns);
        let Some(secret) = self.shared.secrets.get(&key) else {
            return if optional {
                skipped.push(Skipped::Secret(name.to_string()));
                Ok(Vec::new())
            } else {
                Err(Waiting::mount(format!("secret {name:?} not found")))
            };
        };
        let all: BTreeMap<String, Vec<u8>> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        select_items(all, items, optional, mode)
            .map_err(|k| Waiting::mount(format!("secret {name:?} has no key {k:?}")))
    }

    pub(super) fn downward_files(
        &self,
        items: Option<&[DownwardAPIVolumeFile]>,
        mode: i32,
    ) -> Result<Vec<VolFile>, Waiting> {
        let mut out = Vec::new();
        for it in items.into_iter().flatten() {
            let value = if let Some(f) = &it.field_ref {
                self.field_value(&f.field_path).map_err(Waiting::mount)?
            } else if let Some(r) = &it.resource_field_ref {
                self.resource_value(&r.resource, r.container_name.as_deref())
            } else {
                continue;
            };
            out.push(VolFile {
                path: it.path.clone(),
                data: value.into_bytes(),
                mode: it.mode.unwrap_or(mode),
            });
        }
        Ok(out)
    }

    /// A `fieldRef` value (env vars and downwardAPI files).
    pub(super) fn field_value(&self, path: &str) -> Result<String, String> {
        let pod = lock(&self.latest).clone();
        let meta = &pod.metadata;
        let map_text = |m: Option<&BTreeMap<String, String>>| {
            m.into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v:?}\n"))
                .collect::<String>()
        };
        let subscript = |prefix: &str| {
            path.strip_prefix(prefix)
                .and_then(|r| r.strip_prefix("['"))
                .and_then(|r| r.strip_suffix("']"))
                .map(str::to_string)
        };
        Ok(match path {
            "metadata.name" => self.name.clone(),
            "metadata.namespace" => self.ns.clone(),
            "metadata.uid" => self.uid.clone(),
            "metadata.labels" => map_text(meta.labels.as_ref()),
            "metadata.annotations" => map_text(meta.annotations.as_ref()),
            "spec.nodeName" => self.shared.node().to_string(),
            "spec.serviceAccountName" => self
                .spec()
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            "status.podIP" | "status.podIPs" => self.ip.to_string(),
            "status.hostIP" | "status.hostIPs" => self.shared.node_ip().to_string(),
            _ => {
                if let Some(k) = subscript("metadata.labels") {
                    meta.labels
                        .as_ref()
                        .and_then(|l| l.get(&k))
                        .cloned()
                        .unwrap_or_default()
                } else if let Some(k) = subscript("metadata.annotations") {
                    meta.annotations
                        .as_ref()
                        .and_then(|l| l.get(&k))
                        .cloned()
                        .unwrap_or_default()
                } else {
                    return Err(format!("unsupported fieldRef {path:?}"));
                }
            }
        })
    }

    /// A `resourceFieldRef` value: the container's own limit or request, else the node's
    /// capacity (limits) or 0 (requests). Divisors are not applied.
    pub(super) fn resource_value(&self, resource: &str, container: Option<&str>) -> String {
        let c = self
            .containers
            .iter()
            .find(|c| container.is_none_or(|n| n == c.name));
        let (kind, name) = resource.split_once('.').unwrap_or(("limits", resource));
        let r = c.and_then(|c| c.resources.as_ref());
        let v = match kind {
            "limits" => r.and_then(|r| r.limits.as_ref()),
            _ => r.and_then(|r| r.requests.as_ref()),
        }
        .and_then(|m| m.get(name))
        .map(|q| q.0.clone());
        v.unwrap_or_else(|| match (kind, name) {
            ("limits", "cpu") => "16".to_string(),
            ("limits", "memory") => (64u64 << 30).to_string(),
            _ => "0".to_string(),
        })
    }

    /// [`Self::launch`], unless an optional source it left out is on the API server.
    async fn launch_checked(&self, c: &Container) -> Result<Launch, Waiting> {
        let mut skipped = Vec::new();
        let launch = self.launch(c, &mut skipped)?;
        self.none_on_api_server(&skipped, Waiting::config).await?;
        Ok(launch)
    }

    /// The command line, environment and working folder of a container, as the kubelet would
    /// build them, with mount paths rewritten to their folders. Optional sources absent from
    /// this runner's watch are left out and recorded in `skipped`.
    pub(super) fn launch(
        &self,
        c: &Container,
        skipped: &mut Vec<Skipped>,
    ) -> Result<Launch, Waiting> {
        let mut env = Env::default();
        env.set(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string()),
        );
        env.set(
            "HOSTNAME",
            self.spec()
                .hostname
                .clone()
                .unwrap_or_else(|| self.name.clone()),
        );
        env.set(
            "TALLY_HOSTS_FILE",
            self.shared.hosts_path().display().to_string(),
        );
        for ef in c.env_from.iter().flatten() {
            let prefix = ef.prefix.clone().unwrap_or_default();
            let data: Option<BTreeMap<String, String>> = if let Some(r) = &ef.config_map_ref {
                match self
                    .shared
                    .configmaps
                    .get(&ObjectRef::new(&r.name).within(&self.ns))
                {
                    Some(cm) => Some(cm.data.clone().unwrap_or_default()),
                    None if r.optional.unwrap_or(false) => {
                        skipped.push(Skipped::ConfigMap(r.name.clone()));
                        None
                    }
                    None => {
                        return Err(Waiting::config(format!("configmap {:?} not found", r.name)))
                    }
                }
            } else if let Some(r) = &ef.secret_ref {
                match self
                    .shared
                    .secrets
                    .get(&ObjectRef::new(&r.name).within(&self.ns))
                {
                    Some(s) => Some(
                        s.data
                            .iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                            .collect(),
                    ),
                    None if r.optional.unwrap_or(false) => {
                        skipped.push(Skipped::Secret(r.name.clone()));
                        None
                    }
                    None => return Err(Waiting::config(format!("secret {:?} not found", r.name))),
                }
            } else {
                None
            };
            for (k, v) in data.into_iter().flatten() {
                env.set(&format!("{prefix}{k}"), v);
            }
        }
        for e in c.env.iter().flatten() {
            let value = if let Some(v) = &e.value {
                Some(expand(v, &env.map))
            } else if let Some(src) = &e.value_from {
                if let Some(f) = &src.field_ref {
                    Some(self.field_value(&f.field_path).map_err(Waiting::config)?)
                } else if let Some(r) = &src.resource_field_ref {
                    Some(self.resource_value(&r.resource, r.container_name.as_deref()))
                } else if let Some(r) = &src.secret_key_ref {
                    let s = self
                        .shared
                        .secrets
                        .get(&ObjectRef::new(&r.name).within(&self.ns));
                    match s.as_ref().and_then(|s| s.data.as_ref()?.get(&r.key)) {
                        Some(v) => Some(String::from_utf8_lossy(&v.0).into_owned()),
                        None if r.optional.unwrap_or(false) => {
                            if s.is_none() {
                                skipped.push(Skipped::Secret(r.name.clone()));
                            }
                            None
                        }
                        None if s.is_none() => {
                            return Err(Waiting::config(format!("secret {:?} not found", r.name)))
                        }
                        None => {
                            return Err(Waiting::config(format!(
                                "couldn't find key {} in Secret {}/{}",
                                r.key, self.ns, r.name
                            )))
                        }
                    }
                } else if let Some(r) = &src.config_map_key_ref {
                    let cm = self
                        .shared
                        .configmaps
                        .get(&ObjectRef::new(&r.name).within(&self.ns));
                    match cm.as_ref().and_then(|c| c.data.as_ref()?.get(&r.key)) {
                        Some(v) => Some(v.clone()),
                        None if r.optional.unwrap_or(false) => {
                            if cm.is_none() {
                                skipped.push(Skipped::ConfigMap(r.name.clone()));
                            }
                            None
                        }
                        None if cm.is_none() => {
                            return Err(Waiting::config(format!(
                                "configmap {:?} not found",
                                r.name
                            )))
                        }
                        None => {
                            return Err(Waiting::config(format!(
                                "couldn't find key {} in ConfigMap {}/{}",
                                r.key, self.ns, r.name
                            )))
                        }
                    }
                } else {
                    Some(String::new())
                }
            } else {
                Some(String::new())
            };
            if let Some(v) = value {
                env.set(&e.name, v);
            }
        }

        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            if !self
                .spec()
                .volumes
                .iter()
                .flatten()
                .any(|v| v.name == m.name)
            {
                return Err(Waiting::config(format!(
                    "volume mount {:?} names no volume of the pod",
                    m.name
                )));
            }
            let mut target = self.volume_dir(&m.name);
            let sub = match (&m.sub_path, &m.sub_path_expr) {
                (Some(s), _) if !s.is_empty() => Some(s.clone()),
                (_, Some(e)) if !e.is_empty() => Some(expand(e, &env.map)),
                _ => None,
            };
            if let Some(sub) = sub {
                if Path::new(&sub)
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
                {
                    return Err(Waiting::config(format!("bad subPath {sub:?}")));
                }
                target = target.join(&sub);
                if !target.exists() {
                    let _ = std::fs::create_dir_all(&target);
                }
            }
            mounts.push((m.mount_path.trim_end_matches('/').to_string(), target));
        }
        mounts.retain(|(p, _)| !p.is_empty());
        mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));

        let mut args: Vec<String> = c.command.iter().flatten().skip(1).cloned().collect();
        args.extend(c.args.iter().flatten().cloned());
        let args = args
            .iter()
            .map(|a| rewrite_paths(&expand(a, &env.map), &mounts))
            .collect();
        let env_out = env
            .order
            .iter()
            .map(|k| {
                let v = env.map.get(k).cloned().unwrap_or_default();
                // The runner's own paths are host paths already, whatever the pod mounts.
                if k == "TALLY_HOSTS_FILE" || k == "PATH" {
                    return (k.clone(), v);
                }
                (k.clone(), rewrite_paths(&v, &mounts))
            })
            .collect();
        let cwd = c
            .working_dir
            .as_deref()
            .map(|w| PathBuf::from(rewrite_paths(w, &mounts)))
            .filter(|p| p.is_dir())
            .unwrap_or_else(|| self.dir.clone());
        Ok(Launch {
            args,
            env: env_out,
            cwd,
        })
    }

    pub(super) fn condition(&self, kind: &'static str, ok: bool) -> Value {
        let mut times = lock(&self.cond_times);
        let entry = times
            .entry(kind)
            .or_insert_with(|| (ok, rfc3339(Timestamp::now())));
        if entry.0 != ok {
            *entry = (ok, rfc3339(Timestamp::now()));
        }
        json!({"type": kind, "status": if ok { "True" } else { "False" },
               "lastTransitionTime": entry.1, "lastProbeTime": null})
    }

    pub(super) fn status_json(&self) -> Value {
        let states = lock(&self.states).clone();
        let initialized = *lock(&self.initialized);
        let failed = lock(&self.failed).clone();
        let (inits, mains) = states.split_at(self.n_init.min(states.len()));
        let ready = initialized && failed.is_none() && mains.iter().all(|s| s.ready);
        let phase = if failed.is_some() {
            "Failed"
        } else if !initialized {
            "Pending"
        } else if mains.iter().all(|s| s.done) {
            let ok = mains.iter().all(|s| {
                matches!(&s.state, CState::Terminated(t) if t.exit_code == 0 && t.reason == "Completed")
            });
            if ok {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if mains.iter().all(|s| s.ever_ran) {
            "Running"
        } else {
            "Pending"
        };
        let cstatus = |i: usize, s: &Container1| {
            let c = &self.containers[i];
            let state = match &s.state {
                CState::Waiting { reason, message } => {
                    let mut w = json!({"reason": reason});
                    if !message.is_empty() {
                        w["message"] = json!(message);
                    }
                    json!({ "waiting": w, "running": null, "terminated": null })
                }
                CState::Running { started_at } => json!({
                    "waiting": null, "running": {"startedAt": started_at}, "terminated": null
                }),
                CState::Terminated(t) => {
                    let mut v = t.json();
                    v["waiting"] = Value::Null;
                    v["running"] = Value::Null;
                    v
                }
            };
            let image = c.image.clone().unwrap_or_default();
            let mut v = json!({
                "name": c.name, "image": image,
                "imageID": format!("podrunner://{}", self.shared.opts.node_bin.display()),
                "ready": s.ready, "started": s.started, "restartCount": s.restart_count,
                "state": state, "lastState": s.last.as_ref().map(Term::json).unwrap_or(json!({})),
            });
            if s.ever_ran {
                v["containerID"] = json!(s.container_id);
            }
            v
        };
        let ip = self.ip.to_string();
        let host_ip = self.shared.node_ip().to_string();
        let mut status = json!({
            "phase": phase,
            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": self.start_time,
            "conditions": [
                self.condition("PodScheduled", true),
                self.condition("Initialized", initialized),
                self.condition("ContainersReady", ready),
                self.condition("Ready", ready),
            ],
            "containerStatuses": mains.iter().enumerate()
                .map(|(i, s)| cstatus(self.n_init + i, s)).collect::<Vec<_>>(),
        });
        if !inits.is_empty() {
            status["initContainerStatuses"] = inits
                .iter()
                .enumerate()
                .map(|(i, s)| cstatus(i, s))
                .collect();
        }
        if let Some((reason, message)) = failed {
            status["reason"] = json!(reason);
            status["message"] = json!(message);
        }
        status
    }

    /// Updates what the runner knows of the pod (readiness, labels, processes) for the hosts
    /// file and the accessors; pokes the hosts writer when readiness or labels changed.
    pub(super) fn publish_info(&self) {
        let states = lock(&self.states).clone();
        let ready = *lock(&self.initialized)
            && lock(&self.failed).is_none()
            && states[self.n_init.min(states.len())..]
                .iter()
                .all(|s| s.ready);
        let labels = lock(&self.latest)
            .metadata
            .labels
            .clone()
            .unwrap_or_default();
        let pids: Vec<u32> = states[self.n_init.min(states.len())..]
            .iter()
            .filter_map(|s| s.pid)
            .collect();
        let mut poke = false;
        {
            let mut st = self.shared.state();
            if let Some(info) = st.pods.get_mut(&(self.ns.clone(), self.name.clone())) {
                if info.uid == self.uid {
                    poke = info.ready != ready || info.labels != labels;
                    info.ready = ready;
                    info.labels = labels;
                    info.pids = pids;
                }
            }
        }
        if poke {
            self.shared.hosts_dirty.notify_one();
        }
    }

    /// After the pod's processes are gone: keeps its logs under `<root>/logs`, removes its
    /// folder and forgets it.
    pub(super) fn cleanup(&self) {
        let key = (self.ns.clone(), self.name.clone());
        let archive = self
            .shared
            .opts
            .root_dir
            .join("logs")
            .join(&self.ns)
            .join(&self.name);
        let mut first_log = None;
        if std::fs::create_dir_all(&archive).is_ok() {
            for (i, c) in self.containers.iter().enumerate() {
                let from = self.dir.join(format!("{}.log", c.name));
                let to = archive.join(format!("{}-{}.log", self.uid, c.name));
                if std::fs::rename(&from, &to).is_ok() && i == self.n_init {
                    first_log = Some(to);
                }
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "podrunner {}: removing {}: {e}",
                    self.shared.node(),
                    self.dir.display()
                );
            }
        }
        {
            let mut st = self.shared.state();
            if st.pods.get(&key).is_some_and(|p| p.uid == self.uid) {
                st.pods.remove(&key);
                if let Some(l) = first_log {
                    st.logs.insert(key, l);
                }
            }
        }
        self.shared.hosts_dirty.notify_one();
    }
}

/// SIGTERM to the process group, SIGKILL after `grace`; the exit status.
pub(super) async fn terminate(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    let signal = |sig| {
        if let Some(pid) = pid {
            // SAFETY: kill(2) on the child's process group; the child is not reaped yet, so
            // its id is not reused.
            unsafe {
                libc::kill(-(pid as i32), sig);
            }
        }
    };
    signal(libc::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(r) => r,
        Err(_) => {
            signal(libc::SIGKILL);
            child.wait().await
        }
    }
}
