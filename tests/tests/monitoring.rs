//! What SREs watch, checked against the real thing.
//!
//! - `generated_files_are_current`: `dashboards/*.json`, `deploy/monitoring/*` and the chart's
//!   PrometheusRule are what `cargo run -p tally-monitoring` writes, and every alert has its
//!   runbook.
//! - `promtool_checks_and_tests_the_rules`: `promtool check rules`, `promtool test rules` (a
//!   case that fires each alert and one that keeps it silent) and `promtool check config` of
//!   the local scrape configuration.
//! - `dashboards_and_alerts_on_a_real_prometheus`: `tallyctl up` runs the quickstart
//!   consortium; a real Prometheus (Debian's package) scrapes its nodes with
//!   `deploy/monitoring/prometheus-local.yml` (intervals shortened to 1 s) and evaluates
//!   `tally-alerts.rules.yaml`; the `tally-operator` binary runs against a real control plane
//!   (etcd, kube-apiserver) with the same manifests, scraped too. After some traffic, every
//!   dashboard variable and panel query must return data, every metric a dashboard or alert
//!   names must be among what the nodes and the operator export, every rule must evaluate
//!   without error and none may fire. Then the channel's leader is killed: the leader-change
//!   panel moves, a new leader is elected before TallyChannelNoLeader's `for:` runs out (it
//!   never fires), and with one of three consenters gone TallyQuorumAtRisk fires. Last, the
//!   overview dashboard is rendered to PNG from that Prometheus (`scripts/render-dashboards.py`;
//!   `TALLY_UPDATE_DOCS_PNG=1` also writes `docs/images/overview.png`).
//!
//! Needs `prometheus` and `promtool` (`scripts/setup.sh` installs Debian's `prometheus`;
//! `TALLY_PROMETHEUS` and `TALLY_PROMTOOL` override), matplotlib for the picture (Debian's
//! `python3-matplotlib`; `TALLY_PYTHON` names the interpreter), the binaries
//! (`cargo build -p tally-node -p tallyctl -p tally-operator`) and the Kubernetes binaries
//! of the operator suites (`TALLY_SKIP_K8S=1` leaves the operator out). Without a tool the test
//! skips with a message, except under `CI=true`, where it fails. No step is timed: every wait
//! is for a condition, with a generous deadline.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tally_monitoring::{alerts, dashboards, files, names};
use tally_tests::operator::{repo, Operator};
use tally_tests::{free_loopback_port, node_bin, tallyctl_bin, ControlPlane};

/// How long `tallyctl up` may take to print `Ready.` (a loaded 2-core machine).
const READY_DEADLINE: Duration = Duration::from_secs(180);
/// How long to wait for a condition that must come (scrapes, elections, rule evaluations).
const WAIT: Duration = Duration::from_secs(120);
/// How long one tallyctl command may run.
const CLI_DEADLINE: Duration = Duration::from_secs(90);
/// Puts per writer thread, and writer threads.
const PUTS: usize = 10;
const WRITERS: [&str; 3] = ["org1", "org2", "org1"];
/// What the test substitutes for Grafana's `$__rate_interval`: longer than the whole test, so
/// that rates cover all its traffic.
const RATE_WINDOW: &str = "5m";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A tool from `env` or `PATH`; `None` (skip, with a message) where it is missing and this is
/// not CI. Under `CI=true` a missing tool fails the test.
fn tool(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let why = format!(
            "{name} not found on PATH (nor {env}): scripts/setup.sh installs Debian's prometheus package"
        );
        assert!(!ci(), "{why}; under CI=true this test must run");
        eprintln!("skipping: {why}");
    }
    found
}

fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"))
}

fn expect_ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn generated_files_are_current() {
    if let Err(e) = files::check(&repo()) {
        panic!("{e}");
    }
}

#[test]
fn promtool_checks_and_tests_the_rules() {
    let Some(promtool) = tool("TALLY_PROMTOOL", "promtool") else {
        return;
    };
    let dir = repo().join("deploy/monitoring");
    let rules = expect_ok(
        &run(
            Command::new(&promtool).current_dir(&dir).args([
                "check",
                "rules",
                "tally-alerts.rules.yaml",
            ]),
            "promtool check rules",
        ),
        "promtool check rules",
    );
    let n = alerts::all().len();
    assert!(
        rules.contains(&format!("SUCCESS: {n} rules found")),
        "promtool check rules: {rules}"
    );
    let tests = expect_ok(
        &run(
            Command::new(&promtool).current_dir(&dir).args([
                "test",
                "rules",
                "tally-alerts.test.yaml",
            ]),
            "promtool test rules",
        ),
        "promtool test rules",
    );
    assert!(tests.contains("SUCCESS"), "promtool test rules: {tests}");
    // One case that fires and one that stays silent per alert, and nothing else.
    let text = std::fs::read_to_string(dir.join("tally-alerts.test.yaml")).expect("test file");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    let cases: Vec<(String, usize)> = doc["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .map(|t| {
            let test = &t["alert_rule_test"][0];
            (
                test["alertname"].as_str().unwrap_or_default().to_string(),
                test["exp_alerts"].as_sequence().map_or(0, |s| s.len()),
            )
        })
        .collect();
    for a in alerts::all() {
        let mine: Vec<usize> = cases
            .iter()
            .filter(|(name, _)| name == a.name)
            .map(|(_, n)| *n)
            .collect();
        assert!(
            mine.len() == 2 && mine.contains(&0) && mine.iter().any(|n| *n > 0),
            "{}: expected one firing and one silent promtool case, got {mine:?}",
            a.name
        );
    }
    // The local scrape configuration (Debian's promtool lacks Kubernetes discovery, so the
    // cluster one is checked by the fields below instead).
    let config = expect_ok(
        &run(
            Command::new(&promtool).current_dir(&dir).args([
                "check",
                "config",
                "prometheus-local.yml",
            ]),
            "promtool check config",
        ),
        "promtool check config",
    );
    assert!(config.contains("SUCCESS"), "{config}");
    let k8s = std::fs::read_to_string(dir.join("prometheus-kubernetes.yml")).expect("read");
    for annotation in ["scrape", "port", "path", "scheme"] {
        assert!(
            k8s.contains(&format!(
                "__meta_kubernetes_pod_annotation_prometheus_io_{annotation}"
            )),
            "prometheus-kubernetes.yml does not use the prometheus.io/{annotation} annotation"
        );
    }
}

// ----- the consortium ------------------------------------------------------------------------

/// A folder kept when the test fails (or with `TALLY_E2E_KEEP=1`), removed otherwise.
struct Folder(PathBuf);

impl Drop for Folder {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var("TALLY_E2E_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("kept {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Dies with the test binary, should that be killed.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A process stopped on drop: SIGINT (so that `tallyctl up` stops its nodes), then SIGKILL.
struct Proc {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!(
                "--- last lines of {} ({}) ---",
                self.name,
                self.log.display()
            );
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
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

/// Runs `tallyctl up` on the quickstart example until `Ready.`.
fn up(root: &Path) -> (Proc, PathBuf) {
    let data = root.join("data");
    let manifest = repo().join("deploy/examples/quickstart.yaml");
    let log = root.join("up.log");
    let mut cmd = Command::new(tallyctl_bin());
    cmd.arg("up")
        .arg("-f")
        .arg(&manifest)
        .arg("--data-dir")
        .arg(&data)
        .env("TALLY_NODE_BIN", node_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("up log"));
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().expect("start tallyctl up");
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc {
        child,
        name: "tallyctl up",
        log,
    };
    let (tx, rx) = mpsc::channel();
    // Drains stdout to its end, so that `up` never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.starts_with("Ready.") => break,
            Ok(_) => {}
            Err(e) => panic!("`tallyctl up` printed no `Ready.` line: {e}"),
        }
    }
    (proc, data)
}

/// `tallyctl ARGS...`, killed after [`CLI_DEADLINE`].
fn tallyctl(args: &[&str]) -> Output {
    let mut child = Command::new(tallyctl_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tallyctl");
    // Read both pipes to their ends on threads, so that a chatty command never blocks.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + CLI_DEADLINE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tallyctl {} still runs after {CLI_DEADLINE:?}",
                    args.join(" ")
                );
            }
        }
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// The pid of node `name` of the consortium in `data`, from /proc.
fn node_pid(data: &Path, name: &str) -> Option<libc::pid_t> {
    let prefix = format!("{}/nodes/", data.display());
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let ours = args.iter().any(|a| a.starts_with(&prefix));
        let named = args.windows(2).any(|w| w[0] == "--name" && w[1] == name);
        if ours && named {
            return Some(pid);
        }
    }
    None
}

// ----- Prometheus ----------------------------------------------------------------------------

struct Prometheus {
    url: String,
    _proc: Proc,
    rt: tokio::runtime::Runtime,
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Prometheus {
    /// Starts Prometheus with the repository's local configuration, intervals shortened, the
    /// targets file `targets`, and `extra_jobs` appended.
    fn start(bin: &Path, root: &Path, extra_jobs: Vec<serde_yaml::Value>) -> Prometheus {
        let dir = root.join("prometheus");
        std::fs::create_dir_all(dir.join("targets")).expect("prometheus folder");
        let src = repo().join("deploy/monitoring/prometheus-local.yml");
        let mut config: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&src).expect("read the scrape config"))
                .expect("the scrape config is YAML");
        let g = &mut config["global"];
        g["scrape_interval"] = "1s".into();
        g["scrape_timeout"] = "1s".into();
        g["evaluation_interval"] = "1s".into();
        config["rule_files"] = serde_yaml::Value::Sequence(vec![repo()
            .join("deploy/monitoring/tally-alerts.rules.yaml")
            .display()
            .to_string()
            .into()]);
        let jobs = config["scrape_configs"]
            .as_sequence_mut()
            .expect("scrape_configs");
        let node_job = jobs
            .iter_mut()
            .find(|j| j["job_name"] == "tally-node")
            .expect("a tally-node job");
        node_job["file_sd_configs"][0]["files"] = serde_yaml::Value::Sequence(vec![dir
            .join("targets/*.json")
            .display()
            .to_string()
            .into()]);
        node_job["tls_config"]["ca_file"] = dir.join("tally-cas.pem").display().to_string().into();
        jobs.extend(extra_jobs);
        let config_path = dir.join("prometheus.yml");
        std::fs::write(
            &config_path,
            serde_yaml::to_string(&config).expect("encode"),
        )
        .expect("write the config");
        let port = free_loopback_port();
        let log = dir.join("prometheus.log");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"));
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start prometheus");
        let p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            _proc: Proc {
                child,
                name: "prometheus",
                log,
            },
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        };
        wait_for("Prometheus ready", WAIT, || {
            p.get("/-/ready").map(|_| ()).ok_or("not ready".into())
        });
        p
    }

    fn targets_dir(&self, root: &Path) -> PathBuf {
        root.join("prometheus/targets")
    }

    fn get(&self, path: &str) -> Option<String> {
        match self
            .rt
            .block_on(tally_tests::http::get(&format!("{}{path}", self.url)))
        {
            Ok((200, body)) => Some(String::from_utf8_lossy(&body).into_owned()),
            _ => None,
        }
    }

    /// `data` of an API answer.
    fn api(&self, path: &str) -> Value {
        let body = self
            .get(path)
            .unwrap_or_else(|| panic!("GET {path} failed"));
        let v: Value = serde_json::from_str(&body).expect("API answers JSON");
        assert_eq!(v["status"], "success", "{path}: {v}");
        v["data"].clone()
    }

    /// An instant query at now: the result vector.
    fn query(&self, expr: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", urlencode(expr));
        let body = match self
            .rt
            .block_on(tally_tests::http::get(&format!("{}{path}", self.url)))
        {
            Ok((_, body)) => String::from_utf8_lossy(&body).into_owned(),
            Err(e) => panic!("query {expr}: {e}"),
        };
        let v: Value = serde_json::from_str(&body).expect("API answers JSON");
        assert_eq!(v["status"], "success", "query {expr}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The values of an instant query's samples.
    fn values(&self, expr: &str) -> Vec<f64> {
        self.query(expr)
            .iter()
            .filter_map(|s| s["value"][1].as_str().and_then(|v| v.parse().ok()))
            .collect()
    }
}

fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => {
                eprintln!("{what}: after {:.1}s", start.elapsed().as_secs_f64());
                return v;
            }
            Err(e) if start.elapsed() > timeout => {
                panic!("timed out after {timeout:?} waiting for {what}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// A query with the dashboards' variables set to "All" and Grafana's rate interval fixed.
fn instantiate(expr: &str) -> String {
    let mut e = expr.replace("$__rate_interval", RATE_WINDOW);
    for var in ["namespace", "consortium", "channel", "node", "kind"] {
        e = e.replace(&format!("${var}"), ".*");
    }
    e
}

/// `label_values(SELECTOR, LABEL)` as a query that returns one series per value.
fn label_values_query(q: &str) -> String {
    let inner = q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{q} is not label_values(...)"));
    let (selector, label) = inner
        .rsplit_once(',')
        .unwrap_or_else(|| panic!("{q} has no label"));
    format!("count by ({}) ({})", label.trim(), instantiate(selector))
}

/// Whether `name` (possibly with a histogram suffix) is one of `exported`.
fn exported(name: &str, exported: &BTreeSet<String>) -> bool {
    exported.contains(name)
        || ["_bucket", "_sum", "_count"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| exported.contains(&format!("{base}{s}")))
        })
}

/// The operator against a real control plane, given the quickstart manifests to reconcile;
/// `None` where the Kubernetes binaries cannot be had and `TALLY_SKIP_K8S=1`.
fn start_operator() -> Option<(ControlPlane, Operator)> {
    let cp = tally_tests::operator::control_plane_with_crds("monitoring")?;
    cp.kubectl_ok(&["create", "namespace", "mon"]);
    let manifest = repo().join("deploy/examples/quickstart.yaml");
    cp.kubectl_ok(&[
        "apply",
        "-n",
        "mon",
        "--server-side",
        "-f",
        &manifest.display().to_string(),
    ]);
    // A backup schedule, so that the operator exports its series (the alert
    // TallyBackupOverdue reads them); without nodes here its Backups only wait.
    let schedule = "apiVersion: tally.dev/v1alpha1
kind: BackupSchedule
metadata: {name: nightly}
spec:
  channel: main
  schedule: '0 2 * * *'
  destination: {url: 'file:///var/backups/tally'}
";
    let r = cp.kubectl_stdin(
        &["apply", "-n", "mon", "--server-side", "-f", "-"],
        Some(schedule),
    );
    assert!(r.ok, "apply the BackupSchedule: {}", r.stderr);
    let op = Operator::start(&cp, "monitoring");
    Some((cp, op))
}

/// [`PUTS`] writes from each of [`WRITERS`], at once, a little apart so that the curves show
/// them; every one must commit.
fn traffic(data: &Path, phase: &str) {
    let writers: Vec<_> = WRITERS
        .iter()
        .enumerate()
        .map(|(w, org)| {
            let data = data.display().to_string();
            let org = org.to_string();
            let phase = phase.to_string();
            std::thread::spawn(move || {
                for i in 0..PUTS {
                    let key = format!("monitoring/{phase}/{w}/{i}");
                    let out = tallyctl(&[
                        "--data-dir",
                        &data,
                        "--org",
                        &org,
                        "tx",
                        "put",
                        "--channel",
                        "main",
                        "--timeout",
                        "60",
                        &key,
                        "value",
                    ]);
                    expect_ok(&out, &format!("{org} tx put {key}"));
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("a writer panicked");
    }
}

/// One writer putting a key every half second until stopped; every put must commit.
struct Background {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Background {
    fn start(data: &Path) -> Background {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let data = data.display().to_string();
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("monitoring/background/{n}");
                let out = tallyctl(&[
                    "--data-dir",
                    &data,
                    "--org",
                    "org2",
                    "tx",
                    "put",
                    "--channel",
                    "main",
                    "--timeout",
                    "60",
                    &key,
                    "value",
                ]);
                expect_ok(&out, &format!("org2 tx put {key}"));
                n += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            n
        });
        Background {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the writer; how many writes committed.
    fn stop(mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(n)) => n,
            Some(Err(_)) => panic!("the background writer failed"),
            None => 0,
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[test]
fn dashboards_and_alerts_on_a_real_prometheus() {
    let Some(prometheus_bin) = tool("TALLY_PROMETHEUS", "prometheus") else {
        return;
    };
    let started = Instant::now();
    let root = Folder(
        tempfile::Builder::new()
            .prefix("tally-monitoring-")
            .tempdir()
            .expect("temporary folder")
            .keep(),
    );
    let root_path = root.0.clone();

    // 1. The consortium, the operator, Prometheus.
    let (_up, data) = up(&root_path);
    eprintln!("up ready after {:.1}s", started.elapsed().as_secs_f64());
    let profile: Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("profile.json")).expect("profile.json"),
    )
    .expect("profile.json is JSON");
    let nodes: BTreeMap<String, String> = profile["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().expect("name").to_string(),
                n["api_url"].as_str().expect("api_url").to_string(),
            )
        })
        .collect();
    assert_eq!(nodes.len(), 3, "the quickstart runs three nodes");
    let operator = start_operator();
    let mut extra_jobs = Vec::new();
    if let Some((_, op)) = &operator {
        let target = op
            .metrics
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .to_string();
        extra_jobs.push(
            serde_yaml::from_str(&format!(
                "{{job_name: tally-operator, static_configs: [{{targets: ['{target}'], labels: {{namespace: tally-system}}}}]}}"
            ))
            .expect("operator job"),
        );
    } else {
        eprintln!("no operator (TALLY_SKIP_K8S=1): the operator dashboard's queries are not run; operator/src/metrics.rs checks its names");
    }
    // The organizations' CAs in one file, as a user writes it from the data directory
    // (docs/monitoring.md): Prometheus verifies each node's TLS certificate against them.
    let mut cas = String::new();
    for org in profile["organizations"].as_array().expect("organizations") {
        let ca = org["ca"].as_str().expect("ca path");
        cas.push_str(&std::fs::read_to_string(data.join(ca)).expect("an organization's CA"));
    }
    std::fs::create_dir_all(root_path.join("prometheus")).expect("prometheus folder");
    std::fs::write(root_path.join("prometheus/tally-cas.pem"), cas).expect("write the CAs");
    let prom = Prometheus::start(&prometheus_bin, &root_path, extra_jobs);
    let t0 = now_unix();
    // The targets file, as a user writes it from profile.json (docs/monitoring.md).
    let targets: Vec<String> = nodes
        .values()
        .map(|u| {
            u.trim_start_matches("https://")
                .trim_end_matches('/')
                .to_string()
        })
        .collect();
    std::fs::write(
        prom.targets_dir(&root_path).join("quickstart.json"),
        serde_json::json!([{"targets": targets, "labels": {"namespace": "local"}}]).to_string(),
    )
    .expect("write targets");
    wait_for("every node scraped", WAIT, || {
        let up = prom.values(r#"up{job="tally-node"} == 1"#).len();
        (up == nodes.len())
            .then_some(())
            .ok_or(format!("{up} of {} nodes up", nodes.len()))
    });

    // 2. Labels: consortium, org and node on every node series, channel on per-channel ones.
    for label in [names::L_CONSORTIUM, names::L_ORG, names::L_NODE] {
        let missing = prom.query(&format!(
            r#"count by (__name__) ({{job="tally-node",__name__=~"tally_.*|process_.*",{label}=""}})"#
        ));
        assert!(missing.is_empty(), "series without {label}: {missing:?}");
    }
    let wrong = prom.query(
        r#"count by (__name__) ({job="tally-node",__name__=~"tally_.*",consortium!="quickstart"})"#,
    );
    assert!(wrong.is_empty(), "series of another consortium: {wrong:?}");
    let per_channel = [
        names::CHANNEL_HEIGHT,
        names::CHANNEL_READY,
        names::CHANNEL_CONSENTERS,
        names::RAFT_TERM,
        names::RAFT_ROLE,
        names::RAFT_LEADER_CHANGES,
        names::COMMITTED_TXS,
        names::STATE_ROOT,
        names::SNAPSHOTS_SENT,
    ]
    .join("|");
    let no_channel = prom.query(&format!(
        r#"count by (__name__) ({{__name__=~"{per_channel}",channel!="main"}})"#
    ));
    assert!(
        no_channel.is_empty(),
        "per-channel series without channel=main: {no_channel:?}"
    );

    // 3. Traffic: writes from both organizations, and one refused transaction.
    traffic(&data, "before");
    let outsider = root_path.join("outsider");
    expect_ok(
        &tallyctl(&[
            "org",
            "create",
            "--name",
            "outsider",
            "--out",
            &outsider.display().to_string(),
        ]),
        "org create outsider",
    );
    let node_url = nodes.values().next().expect("a node").clone();
    // The outsider trusts the members' CAs for TLS, so that its transaction reaches a node
    // and is refused there (and counted) rather than never leaving tallyctl.
    let mut args: Vec<String> = vec!["--node".into(), node_url];
    for org in std::fs::read_dir(data.join("orgs")).expect("the organizations' folders") {
        let ca = org.expect("an organization's folder").path().join("ca.pem");
        args.extend(["--node-ca".into(), ca.display().to_string()]);
    }
    args.extend(
        [
            "--identity",
            &outsider.join("clients/client").display().to_string(),
            "tx",
            "put",
            "--channel",
            "main",
            "monitoring/outsider",
            "must-not-be-written",
        ]
        .map(String::from),
    );
    let refused = tallyctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !refused.status.success(),
        "a transaction signed by an outside CA was accepted: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !said.contains("invalid peer certificate"),
        "the outsider's transaction was stopped by TLS, not by the node: {said}"
    );
    let total = (PUTS * WRITERS.len()) as f64;
    wait_for("Prometheus sees the traffic", WAIT, || {
        let committed = prom.values(&format!(
            r#"min({}{{channel="main"}})"#,
            names::COMMITTED_TXS
        ));
        let rejected = prom.values(&format!("sum({})", names::REJECTED_TXS));
        match (committed.first(), rejected.first()) {
            (Some(c), Some(r)) if *c >= total && *r >= 1.0 => Ok(()),
            other => Err(format!("committed on every node, rejected: {other:?}")),
        }
    });
    if operator.is_some() {
        wait_for("the operator reconciled and is scraped", WAIT, || {
            let leader = prom.values(&format!("sum({})", names::OP_LEADER));
            let reconciles = prom.values(&format!("sum({}_count)", names::OP_DURATION));
            match (leader.first(), reconciles.first()) {
                (Some(l), Some(r)) if *l >= 1.0 && *r >= 1.0 => Ok(()),
                other => Err(format!("leader, reconciles: {other:?}")),
            }
        });
    }
    // A few more scrapes after the last commit, so that every rate has two samples with it.
    let last = prom.values("max(timestamp(tally_channel_height))");
    wait_for("two more scrapes", WAIT, || {
        let now = prom.values("min(timestamp(tally_channel_height))");
        match (last.first(), now.first()) {
            (Some(a), Some(b)) if *b >= a + 2.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    // 4. Every variable and panel query returns data.
    let exported_names: BTreeSet<String> = prom
        .api("/api/v1/label/__name__/values")
        .as_array()
        .expect("names")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    for d in dashboards::all() {
        if d.uid == "tally-operator" && operator.is_none() {
            continue;
        }
        for v in &d.variables {
            let q = label_values_query(&v.query);
            if prom.query(&q).is_empty() {
                failures.push(format!(
                    "{} variable {}: {q} returns nothing",
                    d.title, v.name
                ));
            }
            checked += 1;
        }
        for p in &d.panels {
            for q in &p.queries {
                let expr = instantiate(&q.expr);
                let finite = prom.values(&expr).iter().filter(|v| v.is_finite()).count();
                checked += 1;
                match (finite, q.may_be_empty) {
                    (0, Some(why)) => {
                        eprintln!("{} / {}: no data, as allowed: {why}", d.title, p.title)
                    }
                    (0, None) => failures.push(format!(
                        "{} / {}: `{expr}` returns no finite value",
                        d.title, p.title
                    )),
                    _ => {}
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "dashboard queries without data:\n  {}",
        failures.join("\n  ")
    );
    eprintln!("{checked} dashboard queries and variables return data");

    // 5. Every metric a dashboard or alert names is exported.
    let mut used: BTreeSet<String> = BTreeSet::new();
    // Names only queries that may be empty use: a family without series is not in the text
    // format at all (operator/src/metrics.rs's unit test checks those of the operator).
    let mut optional: BTreeSet<String> = BTreeSet::new();
    for d in dashboards::all() {
        for p in &d.panels {
            for q in &p.queries {
                if q.may_be_empty.is_some() {
                    optional.extend(names::metrics_in(&q.expr));
                } else {
                    used.extend(names::metrics_in(&q.expr));
                }
            }
        }
        for v in &d.variables {
            used.extend(names::metrics_in(&v.query));
        }
    }
    for a in alerts::all() {
        used.extend(names::metrics_in(&a.expr));
    }
    let optional: BTreeSet<String> = optional.difference(&used).cloned().collect();
    used.extend(optional.iter().cloned());
    let declared: BTreeSet<String> = names::NODE_METRICS
        .iter()
        .chain(names::OPERATOR_METRICS)
        .map(|s| s.to_string())
        .collect();
    for name in &used {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| declared.contains(*b))
            .unwrap_or(name);
        assert!(
            declared.contains(base),
            "{name} is used by a dashboard or alert but is not in tally_monitoring::names"
        );
        let is_operator = names::OPERATOR_METRICS.contains(&base);
        if is_operator && operator.is_none() {
            continue; // checked by operator/src/metrics.rs's unit test
        }
        if optional.contains(name) && !exported(name, &exported_names) {
            eprintln!("{name}: no series yet, only used by a query that may be empty");
            continue;
        }
        assert!(
            exported(name, &exported_names),
            "{name} is used by a dashboard or alert but no node or operator exports it"
        );
    }
    eprintln!("{} metric names used, all exported", used.len());

    // 6. Every rule evaluates without error, and none fires on a healthy consortium.
    let groups = prom.api("/api/v1/rules");
    let rules = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["rules"].as_array().map_or(0, |r| r.len()))
        .sum::<usize>();
    assert_eq!(rules, alerts::all().len(), "rules loaded: {groups}");
    wait_for("every rule evaluated", WAIT, || {
        let groups = prom.api("/api/v1/rules");
        let bad: Vec<String> = groups["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["health"] != "ok")
            .map(|r| format!("{}: {} {}", r["name"], r["health"], r["lastError"]))
            .collect();
        bad.is_empty().then_some(()).ok_or(bad.join("; "))
    });
    let firing = prom.query(r#"ALERTS{alertstate="firing"}"#);
    assert!(
        firing.is_empty(),
        "alerts fire on a healthy consortium: {firing:?}"
    );

    // 7. The leader dies: the leader-change panel moves, a new leader comes before
    //    TallyChannelNoLeader's `for:` runs out, and TallyQuorumAtRisk fires.
    let leader_changes_panel = dashboards::overview()
        .panels
        .into_iter()
        .find(|p| p.title == "Leader changes")
        .expect("the overview has a leader-change panel");
    let leader_changes = instantiate(&leader_changes_panel.queries[0].expr);
    let changes_before = prom.values(&leader_changes).into_iter().fold(0.0, f64::max);
    let leader = prom.query(&format!(r#"{}{{channel="main"}} == 2"#, names::RAFT_ROLE));
    assert_eq!(leader.len(), 1, "one leader of main: {leader:?}");
    let leader = leader[0]["metric"]["node"]
        .as_str()
        .expect("node label")
        .to_string();
    let pid = node_pid(&data, &leader).unwrap_or_else(|| panic!("no process for {leader}"));
    let killed_at = now_unix();
    // SAFETY: kill(2) on a node process this test started (through `tallyctl up`).
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGKILL) },
        0,
        "kill {leader}"
    );
    eprintln!("killed leader {leader} (pid {pid})");
    let no_leader = alerts::all()
        .into_iter()
        .find(|a| a.name == "TallyChannelNoLeader")
        .expect("the no-leader alert");
    wait_for(
        "a new leader, and TallyChannelNoLeader inactive",
        WAIT,
        || {
            let leaders = prom.query(&format!(r#"{}{{channel="main"}} == 2"#, names::RAFT_ROLE));
            let new_leader = leaders
                .iter()
                .any(|l| l["metric"]["node"].as_str() != Some(leader.as_str()));
            let active = prom.query(r#"ALERTS{alertname="TallyChannelNoLeader"}"#);
            (new_leader && active.is_empty())
                .then_some(())
                .ok_or(format!("leaders {leaders:?}, alert {active:?}"))
        },
    );
    // Writes go on while the alert's `for:` runs: the channel commits with two of its three
    // consenters, and the picture shows it.
    let background = Background::start(&data);
    wait_for("the leader-change panel to move", WAIT, || {
        let now = prom.values(&leader_changes).into_iter().fold(0.0, f64::max);
        (now > changes_before)
            .then_some(())
            .ok_or(format!("{now} (was {changes_before})"))
    });
    wait_for(
        "TallyQuorumAtRisk firing",
        WAIT + Duration::from_secs(60),
        || {
            let f = prom.query(r#"ALERTS{alertname="TallyQuorumAtRisk",alertstate="firing"}"#);
            match f.first() {
                Some(a)
                    if a["metric"]["consortium"] == "quickstart"
                        && a["metric"]["channel"] == "main" =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        },
    );
    // Cleared within its `for:`: it never fired, over the whole time since the kill.
    let since = format!("{}s", (now_unix() - killed_at).ceil() as u64 + 5);
    let fired = prom.query(&format!(
        r#"max_over_time(ALERTS{{alertname="TallyChannelNoLeader",alertstate="firing"}}[{since}])"#
    ));
    assert!(
        fired.is_empty(),
        "TallyChannelNoLeader fired (its for: is {}) after the leader was killed: {fired:?}",
        no_leader.for_
    );

    let written = background.stop();
    assert!(
        written > 0,
        "no write committed after the leader was killed"
    );
    eprintln!("{written} writes committed while one of three consenters was down");

    // 8. The overview, rendered from this Prometheus.
    render_overview(&prom, &root_path, t0);
    eprintln!("passed in {:.1}s", started.elapsed().as_secs_f64());
    drop(operator);
}

/// The Python that has matplotlib: `TALLY_PYTHON`, Debian's, or the first on PATH.
fn python_with_matplotlib() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("TALLY_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/usr/bin/python3"), PathBuf::from("python3")])
        .collect();
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import matplotlib"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn render_overview(prom: &Prometheus, root: &Path, start: f64) {
    let Some(python) = python_with_matplotlib() else {
        let why = "no Python with matplotlib (scripts/setup.sh installs python3-matplotlib)";
        assert!(!ci(), "{why}; under CI=true the picture must be rendered");
        eprintln!("skipping the picture: {why}");
        return;
    };
    let png = root.join("overview.png");
    let out = run(
        Command::new(&python)
            .arg(repo().join("scripts/render-dashboards.py"))
            .arg("--prometheus")
            .arg(&prom.url)
            .arg("--dashboard")
            .arg(repo().join("dashboards/overview.json"))
            .arg("--start")
            .arg(format!("{start:.0}"))
            .arg("--out")
            .arg(&png),
        "render-dashboards.py",
    );
    expect_ok(&out, "scripts/render-dashboards.py");
    let bytes = std::fs::read(&png).expect("the PNG was written");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} is no PNG worth the name ({} bytes)",
        png.display(),
        bytes.len()
    );
    if std::env::var("TALLY_UPDATE_DOCS_PNG").is_ok_and(|v| v == "1") {
        let dest = repo().join("docs/images/overview.png");
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("docs/images");
        std::fs::copy(&png, &dest).expect("copy the PNG");
        eprintln!("wrote {}", dest.display());
    }
}
