//! Running the `tally-operator` binary against a [`ControlPlane`](crate::ControlPlane) and
//! polling what it makes: shared by the operator suites.

use crate::{free_loopback_port, node_bin, ControlPlane};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

pub fn operator_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TALLY_OPERATOR_BIN") {
        return PathBuf::from(p);
    }
    let p = node_bin().with_file_name("tally-operator");
    assert!(
        p.is_file(),
        "{} not found: build it with `cargo build -p tally-operator` or set TALLY_OPERATOR_BIN",
        p.display()
    );
    p
}

/// One `tally-operator` process; killed on drop.
pub struct Operator {
    child: Child,
    /// URL of its `/metrics`.
    pub metrics: String,
    log: PathBuf,
}

impl Operator {
    pub fn start(cp: &ControlPlane, identity: &str) -> Operator {
        Operator::start_with_env(cp, identity, &[])
    }

    /// [`Operator::start`] with more environment (e.g. `TALLY_HOSTS_FILE`, for an operator
    /// that reaches another cluster's nodes by name).
    pub fn start_with_env(cp: &ControlPlane, identity: &str, env: &[(&str, &str)]) -> Operator {
        let port = free_loopback_port();
        let log = cp.dir().join(format!("operator-{identity}.log"));
        let out = std::fs::File::create(&log).expect("operator log");
        let child = Command::new(operator_bin())
            .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
            .arg(format!("--metrics-addr=127.0.0.1:{port}"))
            .arg("--lease-namespace=default")
            .arg(format!("--identity={identity}"))
            .arg("--node-image=example.org/tally-node")
            .arg("--log-format=json")
            .env("RUST_LOG", "info,tally_operator=debug,kube=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start tally-operator");
        Operator {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
            log,
        }
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = http_get(&self.metrics)?;
        crate::metric_value(&text, name, labels)
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (SIGSTOP pauses the process as a frozen VM would, SIGCONT resumes it).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is shared.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits up to `timeout` for the process to end by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL after 15 s.
    pub fn stop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log_tail());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of a successful GET, from a thread outside any async runtime (the operator
/// steps run on blocking threads).
pub fn http_get(url: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    match rt.block_on(crate::http::get(url)) {
        Ok((200, body)) => Some(String::from_utf8_lossy(&body).into_owned()),
        _ => None,
    }
}

pub fn get_json(cp: &ControlPlane, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&cp.kubectl_ok(&a)).expect("kubectl json")
}

pub fn ready(obj: &Value) -> Option<(String, String)> {
    let c = obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?;
    Some((
        c["status"].as_str().unwrap_or_default().to_string(),
        c["message"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Polls until `check` returns `Ok`, or panics with its last `Err` after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("timed out waiting for {what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// A control plane with kube-controller-manager and Tally's CRDs established; `None` where
/// the Kubernetes binaries cannot be had and `TALLY_SKIP_K8S=1` says to skip.
pub fn control_plane_with_crds(name: &str) -> Option<ControlPlane> {
    let bin = crate::k8s_bin_dir()?;
    let cp = ControlPlane::start_with_controller_manager(name, &bin);
    let crds = repo().join("crds");
    cp.kubectl_ok(&["apply", "--server-side", "-f", &crds.display().to_string()]);
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=60s",
    ]);
    Some(cp)
}

/// A pod runner for `cp`, giving pods addresses under `ip_prefix` (distinct per suite).
pub async fn start_runner(cp: &ControlPlane, ip_prefix: &str) -> crate::podrunner::PodRunner {
    crate::podrunner::PodRunner::start(
        cp.client().await,
        crate::podrunner::RunnerOptions {
            node_name: "runner-0".into(),
            root_dir: cp.dir().join("runner"),
            ip_prefix: ip_prefix.into(),
            node_bin: node_bin(),
            public_dns_from: Vec::new(),
        },
    )
    .await
    .expect("pod runner")
}

/// Whether every Consortium, Peer and Channel of `ns` is Ready, and there are `count` of
/// them; otherwise which are not.
pub fn all_ready(cp: &ControlPlane, ns: &str, count: usize) -> Result<(), String> {
    let list = get_json(cp, &["-n", ns, "get", "consortia,peers,channels"]);
    let items = list["items"].as_array().cloned().unwrap_or_default();
    if items.len() != count {
        return Err(format!("{} resources", items.len()));
    }
    let not: Vec<String> = items
        .iter()
        .filter_map(|o| match ready(o) {
            Some((s, _)) if s == "True" => None,
            r => Some(format!("{}/{}: {:?}", o["kind"], o["metadata"]["name"], r)),
        })
        .collect();
    if not.is_empty() {
        Ok(())
    } else {
        Err(not.join("; "))
    }
}

/// `tallyctl --data-dir DIR ARGS`: its output, or an error with both streams.
pub fn tallyctl_in(dir: &Path, args: &[&str]) -> Result<String, String> {
    tallyctl_run(Some(dir), args)
}

/// tallyctl without a profile: what an organization runs on its own machine, with its own
/// `--identity`.
pub fn tallyctl_plain(args: &[&str]) -> Result<String, String> {
    tallyctl_run(None, args)
}

fn tallyctl_run(dir: Option<&Path>, args: &[&str]) -> Result<String, String> {
    let out = Command::new(crate::tallyctl_bin())
        .args(dir.map(|d| format!("--data-dir={}", d.display())))
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "tallyctl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Exports the profile of consortium `consortium` of `ns` into `dir`, nodes by pod IP.
pub fn export_profile(
    cp: &ControlPlane,
    dir: &Path,
    ns: &str,
    consortium: &str,
) -> Result<(), String> {
    tallyctl_in(
        dir,
        &[
            "profile",
            "export",
            "--namespace",
            ns,
            "--consortium",
            consortium,
            "--address",
            "pod-ip",
            &format!("--kubeconfig={}", cp.kubeconfig.display()),
        ],
    )
    .map(drop)
}

/// The certificate node pod `node` of namespace `ns` serves on its client API (DER), read in a
/// handshake that checks nothing (what is served is the question). A pod between its old and
/// new self (no pod, no IP yet) is an error to retry.
pub fn served_cert(cp: &ControlPlane, ns: &str, node: &str) -> Result<Vec<u8>, String> {
    let r = cp.kubectl(&["-n", ns, "get", "pod", node, "-o", "json"]);
    let pod: Value = serde_json::from_str(&r.stdout).map_err(|_| format!("{node}: no pod"))?;
    let ip = pod["status"]["podIP"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or(format!("{node}: no pod IP"))?
        .to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect((ip.as_str(), tally_planner::API_PORT))
            .await
            .map_err(|e| format!("{node} at {ip}: {e}"))?;
        let name =
            rustls_pki_types::ServerName::try_from("tally-node").map_err(|e| e.to_string())?;
        let tls = crate::http::unverified_tls()
            .connect(name, tcp)
            .await
            .map_err(|e| format!("{node}: handshake: {e}"))?;
        tls.get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or(format!("{node}: no certificate"))
    })
}

/// `kubectl apply --server-side` of `yaml` in namespace `ns`; panics with the API server's
/// answer and the manifest when refused.
pub fn apply(cp: &ControlPlane, ns: &str, yaml: &str) {
    let r = cp.kubectl_stdin(&["-n", ns, "apply", "--server-side", "-f", "-"], Some(yaml));
    assert!(r.ok, "apply: {}\n{yaml}", r.stderr);
}

/// Every Secret a pod (as JSON) names: its `secret` and projected volumes, and the `envFrom`
/// and `secretKeyRef` of each container and init container.
pub fn secrets_of_pod(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &pod["spec"];
    let name = |v: &Value| v.as_str().map(str::to_string);
    for vol in spec["volumes"].as_array().into_iter().flatten() {
        out.extend(name(&vol["secret"]["secretName"]));
        for src in vol["projected"]["sources"].as_array().into_iter().flatten() {
            out.extend(name(&src["secret"]["name"]));
        }
    }
    let containers = spec["containers"].as_array().into_iter().flatten();
    let inits = spec["initContainers"].as_array().into_iter().flatten();
    for c in containers.chain(inits) {
        for e in c["envFrom"].as_array().into_iter().flatten() {
            out.extend(name(&e["secretRef"]["name"]));
        }
        for e in c["env"].as_array().into_iter().flatten() {
            out.extend(name(&e["valueFrom"]["secretKeyRef"]["name"]));
        }
    }
    out
}

/// The files under `dir`, as paths relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort_unstable();
    out
}

/// Issue 13's least privilege, attacked: every `tally-node` pod in `ns` names exactly one
/// Secret, its own node's, as the API server holds its spec; and what the pod runner
/// materialized under its `tls` mount (`<pods_root>/<pod>/volumes/tls`) is that node's
/// certificate and key only, while the sibling nodes' Secrets exist. A pod that could read a
/// sibling's key could vote in Raft as it. Returns the pods checked.
pub fn assert_pods_hold_only_their_own_secret(
    cp: &ControlPlane,
    ns: &str,
    pods_root: &Path,
) -> Vec<String> {
    let pods = get_json(
        cp,
        &[
            "-n",
            ns,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=tally-node",
        ],
    );
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = items
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    for p in &items {
        let node = p["metadata"]["name"].as_str().unwrap_or_default();
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["kind"], "Peer",
            "{node}"
        );
        assert_eq!(
            secrets_of_pod(p),
            [format!("{node}-tls")],
            "{node} names another Secret than its own"
        );
        let tls = pods_root.join(node).join("volumes").join("tls");
        assert_eq!(
            files_under(&tls),
            [format!("{node}/tls.crt"), format!("{node}/tls.key")],
            "{node} sees other files under its tls mount ({})",
            tls.display()
        );
        for other in names.iter().filter(|o| o.as_str() != node) {
            // The sibling's key is there to steal in the API, not in this pod.
            cp.kubectl_ok(&["-n", ns, "get", "secret", &format!("{other}-tls")]);
            assert!(!tls.join(other).exists(), "{node} can read {other}'s key");
        }
    }
    names
}
