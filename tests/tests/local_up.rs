//! `tallyctl up` on every example consortium of `deploy/examples/`, driven only through the
//! `tallyctl` command line, as a user would: start it, read `profile.json`, write and read keys
//! as each organization, check that non-members and members outside `writers` are refused,
//! check `status` agreement, stop it with SIGINT (no node left listening), resume the same
//! ledger with a second `up`, and remove it with `down`.
//!
//! Needs both executables: `cargo build -p tallyctl -p tally-node` (see `tallyctl_bin` and
//! `node_bin`). When a test fails, its folder is kept and `up`'s output and the node logs are
//! printed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tally_api::manifest::Resources;
use tally_tests::{console_bin, http, node_bin, tallyctl_bin};

/// How long `up` may take to print `Ready.` (a loaded 2-core machine, 6 debug-build nodes).
const READY_DEADLINE: Duration = Duration::from_secs(120);
/// How long `up` may take to exit after SIGINT.
const EXIT_DEADLINE: Duration = Duration::from_secs(60);
/// How long one other tallyctl command may run.
const CLI_DEADLINE: Duration = Duration::from_secs(90);
/// How long to poll for a condition that must come (a key reaching a node, equal heights).
const POLL_DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn quickstart() {
    run_example("quickstart");
}

#[test]
fn supply_chain_finance() {
    run_example("supply-chain-finance");
}

#[test]
fn smart_city() {
    run_example("smart-city");
}

#[test]
fn notarization() {
    run_example("notarization");
}

/// What the manifests say about one channel.
#[derive(Debug)]
struct ChannelFacts {
    name: String,
    members: Vec<String>,
    /// Members that may write (`policies.writers`, every member when empty).
    writers: Vec<String>,
}

/// What the manifests say, read independently of `tallyctl`.
#[derive(Debug)]
struct Facts {
    consortium: String,
    orgs: Vec<String>,
    channels: Vec<ChannelFacts>,
    /// Node name -> (organization, role), from the Peers' replicas.
    nodes: BTreeMap<String, (String, String)>,
}

/// Certificates that last 90 s and fall due 60 s before their end: `up` renews every node,
/// admin and client certificate while it runs, restarting one node at a time, under a steady
/// writer that loses nothing; a stopped `up` resumed after they fell due renews them before the
/// nodes start. (The local mode runs the planner's renewal rule, as docs/local-mode.md says.)
#[test]
fn certificates_renew_while_running_and_at_resume() {
    let mut ex = Example::new("quickstart");
    let text = std::fs::read_to_string(&ex.manifest).expect("the quickstart manifest");
    let short = text.replacen(
        "  displayName: Tally quickstart\n",
        "  displayName: Tally quickstart\n  certificates: {validity: 90s, renewBefore: 60s}\n",
        1,
    );
    assert_ne!(short, text, "the quickstart manifest changed shape");
    let manifest = ex
        .root
        .as_ref()
        .expect("root")
        .path()
        .join("short-lived.yaml");
    std::fs::write(&manifest, short).expect("write the manifest");
    ex.manifest = manifest;
    let nodes: BTreeSet<String> = ["org1-peer-0", "org1-peer-1", "org2-peer-0"]
        .map(String::from)
        .into();
    let identities: Vec<PathBuf> = nodes
        .iter()
        .map(|n| {
            let org = &n[..4];
            PathBuf::from(format!("orgs/{org}/nodes/{n}/cert.pem"))
        })
        .chain(["org1", "org2"].iter().flat_map(|o| {
            [
                PathBuf::from(format!("orgs/{o}/admins/admin/cert.pem")),
                PathBuf::from(format!("orgs/{o}/clients/client/cert.pem")),
            ]
        }))
        .collect();
    let certs = |ex: &Example| -> Vec<Vec<u8>> {
        identities
            .iter()
            .map(|p| std::fs::read(ex.data.join(p)).unwrap_or_default())
            .collect()
    };

    ex.up();
    let first = certs(&ex);
    // Write until every certificate was replaced and every node restarted on its new one.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut acknowledged = Vec::new();
    let mut i = 0u32;
    loop {
        let key = format!("renewal-{i}");
        let org = if i.is_multiple_of(2) { "org1" } else { "org2" };
        if ex.put(org, "main", &key, &format!("v{i}")).code == Some(0) {
            acknowledged.push(key);
        }
        i += 1;
        let now = certs(&ex);
        let renewed = first.iter().zip(&now).all(|(a, b)| a != b);
        let restarted = {
            let up = ex.up.as_ref().expect("up");
            let seen = up.seen.lock().unwrap();
            nodes.iter().all(|n| {
                seen.iter()
                    .any(|l| l.ends_with(&format!("{n} restarted on its renewed certificate")))
            })
        };
        if renewed && restarted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "quickstart: certificates were not all renewed and their nodes restarted within 180s \
             (renewed: {:?}; acknowledged writes: {})",
            first
                .iter()
                .zip(&now)
                .map(|(a, b)| a != b)
                .collect::<Vec<_>>(),
            acknowledged.len()
        );
    }
    assert!(!acknowledged.is_empty(), "no write was acknowledged");
    // Nothing acknowledged was lost, and the nodes agree.
    ex.settled_heights("main", &nodes);
    for key in &acknowledged {
        let out = ex.get("org2", "main", key);
        assert_eq!(
            out.code,
            Some(0),
            "quickstart: acknowledged {key} is not readable after the renewals: {}",
            out.describe()
        );
    }
    eprintln!(
        "quickstart: {} writes acknowledged across the renewals, none lost",
        acknowledged.len()
    );
    ex.interrupt();

    // Stopped past the next renewal point, `up` renews before the nodes start.
    let before = certs(&ex);
    std::thread::sleep(Duration::from_secs(32));
    ex.up();
    let stderr = std::fs::read_to_string(ex.up_stderr.last().expect("stderr of the resumed up"))
        .unwrap_or_default();
    for n in &nodes {
        assert!(
            stderr.contains(&format!("renewed the certificate of {}/node/{n}", &n[..4])),
            "quickstart: the resumed up did not renew {n}'s certificate:\n{stderr}"
        );
    }
    assert!(
        before.iter().zip(certs(&ex)).all(|(a, b)| *a != b),
        "quickstart: a certificate file was not renewed at resume"
    );
    ex.settled_heights("main", &nodes);
    ex.get_eventually("org1", "main", &acknowledged[0], "v0");
    ex.interrupt();
}

fn read_facts(manifest: &Path) -> Facts {
    let res = Resources::read_files(&[manifest.to_path_buf()])
        .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    assert_eq!(
        res.consortia.len(),
        1,
        "{}: one Consortium expected",
        manifest.display()
    );
    let cons = &res.consortia[0];
    let consortium = cons.metadata.name.clone().expect("a consortium name");
    let orgs = cons
        .spec
        .organizations
        .iter()
        .map(|o| o.name.clone())
        .collect();
    let channels = res
        .channels
        .iter()
        .map(|c| {
            let members = c.spec.members.clone();
            let policy = c
                .spec
                .policies
                .as_ref()
                .map(|p| p.writers.clone())
                .unwrap_or_default();
            let writers = if policy.is_empty() {
                members.clone()
            } else {
                members
                    .iter()
                    .filter(|m| policy.contains(m))
                    .cloned()
                    .collect()
            };
            ChannelFacts {
                name: c.metadata.name.clone().expect("a channel name"),
                members,
                writers,
            }
        })
        .collect();
    let mut nodes = BTreeMap::new();
    for p in &res.peers {
        let name = p.metadata.name.clone().expect("a peer name");
        for i in 0..p.spec.replicas {
            nodes.insert(
                format!("{name}-{i}"),
                (
                    p.spec.organization.clone(),
                    p.spec.role.as_str().to_string(),
                ),
            );
        }
    }
    Facts {
        consortium,
        orgs,
        channels,
        nodes,
    }
}

/// The outcome of one tallyctl command.
#[derive(Debug)]
struct CliOut {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl CliOut {
    fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// A running `tallyctl up`.
struct UpProcess {
    child: Child,
    /// Lines of its stdout as they come; disconnected at its end.
    lines: mpsc::Receiver<String>,
    /// Every stdout line so far, for the report of a failure.
    seen: Arc<Mutex<Vec<String>>>,
}

/// One example under test: its folder (kept when the test fails), the running `up` if any.
/// Dropping it stops `up` (and with it its nodes), and kills any node left behind.
struct Example {
    name: &'static str,
    tallyctl: PathBuf,
    node: PathBuf,
    console: PathBuf,
    manifest: PathBuf,
    root: Option<tempfile::TempDir>,
    data: PathBuf,
    up: Option<UpProcess>,
    /// stderr files of every `up` run, in order.
    up_stderr: Vec<PathBuf>,
    /// stdout lines of the finished `up` runs.
    up_stdout: Vec<Vec<String>>,
}

impl Example {
    fn new(name: &'static str) -> Example {
        // Found first, so that a missing executable leaves no folder behind.
        let (tallyctl, node, console) = (tallyctl_bin(), node_bin(), console_bin());
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/examples")
            .join(format!("{name}.yaml"));
        let manifest = manifest
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let root = tempfile::Builder::new()
            .prefix(&format!("tally-up-{name}-"))
            .tempdir()
            .expect("create a temporary folder");
        let data = root.path().join("data");
        Example {
            name,
            tallyctl,
            node,
            console,
            manifest,
            root: Some(root),
            data,
            up: None,
            up_stderr: Vec::new(),
            up_stdout: Vec::new(),
        }
    }

    /// Starts `tallyctl up` and waits for its `Ready.` line.
    fn up(&mut self) {
        assert!(self.up.is_none(), "up is already running");
        let run = self.up_stderr.len() + 1;
        let stderr_path = self
            .root
            .as_ref()
            .expect("root")
            .path()
            .join(format!("up-{run}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("create the stderr file");
        self.up_stderr.push(stderr_path);
        let started = Instant::now();
        let mut child = Command::new(&self.tallyctl)
            .arg("up")
            .arg("-f")
            .arg(&self.manifest)
            .arg("--data-dir")
            .arg(&self.data)
            // Suites run in parallel: each console on a port of its own.
            .args(["--console-addr", "127.0.0.1:0"])
            .env("TALLY_NODE_BIN", &self.node)
            .env("TALLY_CONSOLE_BIN", &self.console)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start tallyctl up");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        // Drains stdout to its end, so that `up` never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                seen2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        self.up = Some(UpProcess {
            child,
            lines: rx,
            seen,
        });
        let deadline = started + READY_DEADLINE;
        loop {
            let up = self.up.as_mut().expect("up");
            let left = deadline.saturating_duration_since(Instant::now());
            match up.lines.recv_timeout(left) {
                Ok(line) if line.starts_with("Ready.") => break,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{}: `tallyctl up` (run {run}) printed no `Ready.` line within {}s",
                    self.name,
                    READY_DEADLINE.as_secs()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = wait_exit(&mut up.child, EXIT_DEADLINE);
                    panic!(
                        "{}: `tallyctl up` (run {run}) closed its stdout before `Ready.` ({status:?})",
                        self.name
                    );
                }
            }
        }
        eprintln!(
            "{}: up (run {run}) ready after {:.1}s",
            self.name,
            started.elapsed().as_secs_f64()
        );
    }

    /// Sends SIGINT to `up` and asserts that it exits with status 0.
    fn interrupt(&mut self) {
        let mut up = self.up.take().expect("up is running");
        let started = Instant::now();
        signal(&up.child, libc::SIGINT);
        let status = wait_exit(&mut up.child, EXIT_DEADLINE);
        self.up_stdout.push(up.seen.lock().unwrap().clone());
        match status {
            Some(s) => assert!(
                s.success(),
                "{}: `tallyctl up` exited with {s} after SIGINT",
                self.name
            ),
            None => {
                // Put it back, so that the drop kills it and reports.
                self.up = Some(up);
                panic!(
                    "{}: `tallyctl up` did not exit within {}s of SIGINT",
                    self.name,
                    EXIT_DEADLINE.as_secs()
                );
            }
        }
        eprintln!(
            "{}: up stopped {:.1}s after SIGINT",
            self.name,
            started.elapsed().as_secs_f64()
        );
    }

    /// The web console's URL, from the line the running `up` printed.
    fn console_url(&self) -> String {
        let up = self.up.as_ref().expect("up is running");
        let lines = up.seen.lock().unwrap();
        lines
            .iter()
            .find_map(|l| l.strip_prefix("web console"))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{}: `up` printed no web console line: {lines:?}", self.name))
    }

    /// Runs `tallyctl --data-dir DATA ARGS...`.
    fn ctl(&self, args: &[&str]) -> CliOut {
        let mut cmd = Command::new(&self.tallyctl);
        cmd.arg("--data-dir").arg(&self.data).args(args);
        run_cli(cmd, &format!("{}: tallyctl {}", self.name, args.join(" ")))
    }

    fn put(&self, org: &str, channel: &str, key: &str, value: &str) -> CliOut {
        self.ctl(&[
            "--org",
            org,
            "tx",
            "put",
            "--channel",
            channel,
            "--timeout",
            "60",
            "--output",
            "json",
            key,
            value,
        ])
    }

    fn get(&self, org: &str, channel: &str, key: &str) -> CliOut {
        self.ctl(&["--org", org, "tx", "get", "--channel", channel, key])
    }

    /// `org` writes `key`; the channel commits it.
    fn put_ok(&self, org: &str, channel: &str, key: &str, value: &str) {
        let out = self.put(org, channel, key, value);
        assert_eq!(
            out.code,
            Some(0),
            "{}: {org} may write to {channel}, but `tx put {key}` failed: {}",
            self.name,
            out.describe()
        );
        let receipt: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: `tx put --output json` printed no JSON ({e}): {}",
                self.name,
                out.describe()
            )
        });
        assert_eq!(
            receipt["status"], "committed",
            "{}: {org} put {key} on {channel}: {receipt}",
            self.name
        );
        assert_eq!(receipt["channel"], channel, "{}: {receipt}", self.name);
    }

    /// `org` is refused when writing `key` to `channel`, with `code`, and nothing is written.
    ///
    /// A node refuses such a transaction before ordering it (HTTP 403, exit status 1, see
    /// docs/tallyctl.md); a refusal inside a block would be exit status 3. Either is a refusal.
    fn put_refused(&self, org: &str, channel: &str, key: &str, code: &str, reader: &str) {
        let out = self.put(org, channel, key, "must-not-be-written");
        assert!(
            matches!(out.code, Some(1) | Some(3)),
            "{}: {org} must be refused on {channel} ({code}), `tx put {key}` gave: {}",
            self.name,
            out.describe()
        );
        assert!(
            out.stderr.contains(code) || out.stdout.contains(code),
            "{}: the refusal of {org} on {channel} does not name {code}: {}",
            self.name,
            out.describe()
        );
        let got = self.get(reader, channel, key);
        assert!(
            got.code != Some(0) && got.stderr.contains("does not exist"),
            "{}: {key}, refused to {org}, was written to {channel} anyway: {}",
            self.name,
            got.describe()
        );
        eprintln!(
            "{}: {org} refused on {channel} (exit {:?}, {code})",
            self.name, out.code
        );
    }

    /// Reads `key` as `org` until it has `value` (the node asked may not have the block yet).
    fn get_eventually(&self, org: &str, channel: &str, key: &str, value: &str) {
        let deadline = Instant::now() + POLL_DEADLINE;
        loop {
            let out = self.get(org, channel, key);
            if out.code == Some(0) {
                assert_eq!(
                    out.stdout.trim_end_matches('\n'),
                    value,
                    "{}: {org} reads {key} on {channel}",
                    self.name
                );
                return;
            }
            assert!(
                out.stderr.contains("does not exist") && Instant::now() < deadline,
                "{}: {org} cannot read {key} on {channel}: {}",
                self.name,
                out.describe()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `status --output json` of a channel.
    fn status(&self, channel: &str) -> Value {
        let out = self.ctl(&["status", "--channel", channel, "--output", "json"]);
        assert_eq!(
            out.code,
            Some(0),
            "{}: status of {channel}: {}",
            self.name,
            out.describe()
        );
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: status --output json is not JSON ({e}): {}",
                self.name,
                out.describe()
            )
        })
    }

    /// Polls `status` until every node of the channel is reachable, at the same height, and
    /// they agree; returns the height of each node.
    fn settled_heights(&self, channel: &str, nodes: &BTreeSet<String>) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + POLL_DEADLINE;
        loop {
            let st = self.status(channel);
            assert_eq!(st["channel"], channel, "{}: {st}", self.name);
            let list = st["nodes"].as_array().cloned().unwrap_or_default();
            let names: BTreeSet<String> = list
                .iter()
                .map(|n| n["name"].as_str().unwrap_or_default().to_string())
                .collect();
            assert_eq!(
                &names, nodes,
                "{}: status of {channel} lists other nodes than the profile",
                self.name
            );
            let heights: BTreeMap<String, u64> = list
                .iter()
                .map(|n| {
                    (
                        n["name"].as_str().unwrap_or_default().to_string(),
                        n["height"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            let reachable = list.iter().all(|n| n["reachable"] == true);
            let equal = heights.values().collect::<BTreeSet<_>>().len() == 1;
            if reachable && equal && st["agree"] == true {
                return heights;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the nodes of {channel} did not settle (all reachable, same height, agree) within {}s; last status:\n{st:#}",
                self.name,
                POLL_DEADLINE.as_secs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Stops `up` on drop: SIGTERM, then SIGKILL; then kills any node of this folder that is
    /// still there.
    fn stop_everything(&mut self) {
        if let Some(mut up) = self.up.take() {
            signal(&up.child, libc::SIGTERM);
            if wait_exit(&mut up.child, Duration::from_secs(20)).is_none() {
                let _ = up.child.kill();
                let _ = up.child.wait();
            }
            self.up_stdout.push(up.seen.lock().unwrap().clone());
        }
        for pid in nodes_of(&self.data) {
            eprintln!("{}: killing node process {pid} left behind", self.name);
            // SAFETY: plain kill(2) of a process that runs a node of this test's folder.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    fn report(&self) {
        for (i, lines) in self.up_stdout.iter().enumerate() {
            eprintln!(
                "--- {}: stdout of up run {} ---\n{}",
                self.name,
                i + 1,
                lines.join("\n")
            );
        }
        for p in &self.up_stderr {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            // The spinner redraws with carriage returns.
            let text = text.replace('\r', "\n");
            eprintln!(
                "--- {}: {} ---\n{}",
                self.name,
                p.display(),
                tail(&text, 60)
            );
        }
        if let Ok(entries) = std::fs::read_dir(self.data.join("nodes")) {
            let mut logs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            logs.sort();
            for d in logs {
                let log = d.join("node.log");
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                eprintln!(
                    "--- {}: {} ---\n{}",
                    self.name,
                    log.display(),
                    tail(&text, 40)
                );
            }
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        self.stop_everything();
        let failing = std::thread::panicking();
        if failing {
            self.report();
        }
        if let Some(root) = self.root.take() {
            if failing || std::env::var_os("TALLY_E2E_KEEP").is_some() {
                let p = root.keep();
                eprintln!("{}: folder kept at {}", self.name, p.display());
            }
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: plain kill(2) of our own child (not yet reaped: we hold its Child).
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Waits up to `limit` for the child's exit; `None` when it still runs.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => return None,
            Err(e) => panic!("waiting for a child: {e}"),
        }
    }
}

/// Runs a command to its end (killed after [`CLI_DEADLINE`]), capturing its output.
fn run_cli(mut cmd: Command, what: &str) -> CliOut {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = match wait_exit(&mut child, CLI_DEADLINE) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after {}s (killed); stderr:\n{}",
                CLI_DEADLINE.as_secs(),
                err_t.join().unwrap_or_default()
            );
        }
    };
    CliOut {
        code: status.code(),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// Processes whose command line names a folder under `data/nodes/`: the nodes of this test.
fn nodes_of(data: &Path) -> Vec<libc::pid_t> {
    let needle = format!("{}/nodes/", data.display());
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Some(pid) = e
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .split(|b| *b == 0)
            .any(|a| String::from_utf8_lossy(a).starts_with(&needle))
        {
            pids.push(pid);
        }
    }
    pids
}

/// `host:port` of `http://host:port[/...]` or of a plain `host:port`.
fn host_port(addr: &str) -> String {
    addr.split("://")
        .nth(1)
        .unwrap_or(addr)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn listening(hostport: &str) -> bool {
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

/// After `up` exited: no node process of the folder remains and nothing listens at any
/// node's client API or admin address.
fn assert_all_stopped(ex: &Example, profile: &Value) {
    let left = nodes_of(&ex.data);
    assert!(
        left.is_empty(),
        "{}: node processes still run after `up` exited: {left:?}",
        ex.name
    );
    for n in profile["nodes"].as_array().expect("nodes") {
        for field in ["api_url", "admin_addr"] {
            let Some(addr) = n[field].as_str().filter(|a| !a.is_empty()) else {
                continue;
            };
            let hp = host_port(addr);
            assert!(
                !listening(&hp),
                "{}: something still listens at {hp} ({} of {}) after `up` exited",
                ex.name,
                field,
                n["name"]
            );
        }
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks `profile.json` against the manifests; returns each channel's node names.
fn check_profile(
    ex: &Example,
    facts: &Facts,
    profile: &Value,
) -> BTreeMap<String, BTreeSet<String>> {
    let name = ex.name;
    assert_eq!(
        profile["consortium"],
        facts.consortium.as_str(),
        "{name}: consortium"
    );
    let orgs: BTreeSet<String> = profile["organizations"]
        .as_array()
        .expect("organizations")
        .iter()
        .map(|o| {
            o["name"]
                .as_str()
                .expect("an organization name")
                .to_string()
        })
        .collect();
    assert_eq!(
        orgs,
        facts.orgs.iter().cloned().collect::<BTreeSet<_>>(),
        "{name}: the profile's organizations"
    );
    for o in profile["organizations"].as_array().expect("organizations") {
        let ca = o["ca"].as_str().expect("ca");
        assert!(ex.data.join(ca).is_file(), "{name}: {ca} is not a file");
        for id in o["identities"].as_array().expect("identities") {
            let dir = ex.data.join(id["dir"].as_str().expect("dir"));
            assert!(
                dir.join("cert.pem").is_file() && dir.join("key.pem").is_file(),
                "{name}: identity folder {} lacks cert.pem or key.pem",
                dir.display()
            );
        }
        let roles: BTreeSet<String> = o["identities"]
            .as_array()
            .expect("identities")
            .iter()
            .map(|i| i["role"].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(
            roles.contains("admin") && roles.contains("client"),
            "{name}: {} has identities {roles:?}",
            o["name"]
        );
    }
    let nodes: BTreeMap<String, (String, String)> = profile["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().expect("name").to_string(),
                (
                    n["org"].as_str().expect("org").to_string(),
                    n["role"].as_str().expect("role").to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(
        nodes, facts.nodes,
        "{name}: the profile's nodes (org, role)"
    );
    let mut by_channel = BTreeMap::new();
    let channels = profile["channels"].as_array().expect("channels");
    assert_eq!(
        channels
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_string())
            .collect::<BTreeSet<_>>(),
        facts
            .channels
            .iter()
            .map(|c| c.name.clone())
            .collect::<BTreeSet<_>>(),
        "{name}: the profile's channels"
    );
    for c in channels {
        let ch = c["name"].as_str().expect("channel name");
        let f = facts
            .channels
            .iter()
            .find(|f| f.name == ch)
            .expect("a channel of the manifest");
        assert_eq!(
            strings(&c["members"]).into_iter().collect::<BTreeSet<_>>(),
            f.members.iter().cloned().collect::<BTreeSet<_>>(),
            "{name}: members of {ch}"
        );
        let ch_nodes: BTreeSet<String> = strings(&c["nodes"]).into_iter().collect();
        assert!(!ch_nodes.is_empty(), "{name}: channel {ch} has no nodes");
        // The nodes' own channel lists agree with the channel's node list.
        for n in profile["nodes"].as_array().expect("nodes") {
            let n_name = n["name"].as_str().unwrap_or_default();
            assert_eq!(
                strings(&n["channels"]).iter().any(|x| x == ch),
                ch_nodes.contains(n_name),
                "{name}: node {n_name} and channel {ch} disagree on whether it serves it"
            );
        }
        by_channel.insert(ch.to_string(), ch_nodes);
    }
    by_channel
}

fn run_example(name: &'static str) {
    let started = Instant::now();
    let mut ex = Example::new(name);
    let facts = read_facts(&ex.manifest);
    let nonce = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos()
    );

    // 1-2. up, then the profile against the manifests.
    ex.up();
    let profile_text = std::fs::read_to_string(ex.data.join("profile.json"))
        .unwrap_or_else(|e| panic!("{name}: profile.json: {e}"));
    let profile: Value = serde_json::from_str(&profile_text)
        .unwrap_or_else(|e| panic!("{name}: profile.json is not JSON: {e}"));
    let channel_nodes = check_profile(&ex, &facts, &profile);

    // The web console reads as the first organization, on loopback.
    let console = host_port(&ex.console_url());
    assert!(
        console.starts_with("127."),
        "{name}: the console listens on {console}"
    );
    let first_org = profile["organizations"][0]["name"]
        .as_str()
        .expect("an organization");
    let (status, page) = tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(http::raw(&format!("http://{console}/"), "GET", "", ""));
    assert_eq!(status, 200, "{name}: the console's consortium page: {page}");
    assert!(
        page.contains(&format!("<span class=\"dot\"></span>{first_org} ")),
        "{name}: the console reads as {first_org}: {}",
        tail(&page, 5)
    );

    // Every Chaincode of the manifests was installed, approved and committed by `up`.
    let res = Resources::read_files(&[ex.manifest.clone()]).expect("manifests");
    for cc in &res.chaincodes {
        let ch = &cc.spec.channel;
        let member = &facts
            .channels
            .iter()
            .find(|c| &c.name == ch)
            .expect("the chaincode's channel")
            .members[0];
        let out = ex.ctl(&[
            "--org",
            member,
            "--output",
            "json",
            "chaincode",
            "list",
            "-c",
            ch,
        ]);
        assert_eq!(
            out.code,
            Some(0),
            "{name}: chaincode list: {}",
            out.describe()
        );
        let list: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: chaincode list is not JSON ({e}): {}", out.stdout));
        let entry = list
            .as_array()
            .and_then(|l| l.iter().find(|c| c["name"] == cc.spec.name.as_str()))
            .unwrap_or_else(|| panic!("{name}: chaincode {} not listed: {list}", cc.spec.name));
        assert_eq!(
            entry["active"]["version"],
            cc.spec.version.as_str(),
            "{name}: {entry}"
        );
        assert_eq!(
            entry["active"]["module_hash"],
            cc.spec.source.sha256.as_str(),
            "{name}: {entry}"
        );
    }

    // 3. writes, reads, refusals and agreement on every channel.
    let mut written: Vec<(String, String, String)> = Vec::new(); // (channel, key, value)
    let mut heights_before: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for ch in &facts.channels {
        let c = ch.name.as_str();
        assert!(!ch.writers.is_empty(), "{name}: channel {c} has no writer");
        for w in &ch.writers {
            let key = format!("e2e/{c}/{w}/{nonce}");
            let value = format!("written by {w} on {c} ({nonce})");
            ex.put_ok(w, c, &key, &value);
            // Another member reads it back (the writer itself when it is alone).
            let reader = ch.members.iter().find(|m| *m != w).unwrap_or(w);
            ex.get_eventually(reader, c, &key, &value);
            written.push((c.to_string(), key, value));
        }
        let reader = &ch.writers[0];
        for outsider in facts.orgs.iter().filter(|o| !ch.members.contains(o)) {
            let key = format!("e2e/{c}/outsider/{outsider}/{nonce}");
            ex.put_refused(outsider, c, &key, "not_member", reader);
            // Nor may it read what the members wrote.
            let (_, member_key, _) = written
                .iter()
                .find(|(wc, _, _)| wc == c)
                .expect("a write on the channel");
            let got = ex.get(outsider, c, member_key);
            assert!(
                got.code == Some(1) && got.stderr.contains("not_member"),
                "{name}: {outsider}, not a member of {c}, read {member_key}: {}",
                got.describe()
            );
        }
        for reader_only in ch.members.iter().filter(|m| !ch.writers.contains(m)) {
            let key = format!("e2e/{c}/reader-only/{reader_only}/{nonce}");
            ex.put_refused(reader_only, c, &key, "forbidden", reader);
        }
        let heights = ex.settled_heights(c, &channel_nodes[c]);
        let h = *heights.values().next().expect("a node");
        assert!(
            h > ch.writers.len() as u64,
            "{name}: {c} has height {h} after {} committed writes",
            ch.writers.len()
        );
        heights_before.insert(c.to_string(), heights);
    }

    // 4. SIGINT: up exits 0 and takes every node, and the console, with it.
    ex.interrupt();
    assert_all_stopped(&ex, &profile);
    assert!(
        !listening(&console),
        "{name}: the console still listens at {console} after `up` exited"
    );

    // 5. A second up resumes the same ledger.
    ex.up();
    let again: Value = serde_json::from_str(
        &std::fs::read_to_string(ex.data.join("profile.json")).expect("profile.json"),
    )
    .expect("profile.json is JSON");
    assert_eq!(again, profile, "{name}: the resumed profile differs");
    let down = ex.ctl(&["down"]);
    assert_ne!(
        down.code,
        Some(0),
        "{name}: `down` must refuse while the nodes run: {}",
        down.describe()
    );
    assert!(
        ex.data.join("profile.json").is_file(),
        "{name}: `down` removed the folder of a running consortium"
    );
    for ch in &facts.channels {
        let c = ch.name.as_str();
        let heights = ex.settled_heights(c, &channel_nodes[c]);
        for (node, h) in &heights {
            let before = heights_before[c][node];
            assert!(
                *h >= before,
                "{name}: {node} has height {h} on {c} after the restart, {before} before"
            );
        }
    }
    for (c, key, value) in &written {
        let ch = facts
            .channels
            .iter()
            .find(|f| &f.name == c)
            .expect("channel");
        for m in &ch.members {
            ex.get_eventually(m, c, key, value);
        }
    }
    // The resumed ledger still commits.
    for ch in &facts.channels {
        let w = &ch.writers[0];
        let key = format!("e2e/{}/after-restart/{nonce}", ch.name);
        ex.put_ok(w, &ch.name, &key, "still committing");
        ex.get_eventually(w, &ch.name, &key, "still committing");
    }
    ex.interrupt();
    assert_all_stopped(&ex, &profile);

    // 6. down removes the folder.
    let down = ex.ctl(&["down"]);
    assert_eq!(down.code, Some(0), "{name}: down: {}", down.describe());
    assert!(
        !ex.data.exists(),
        "{name}: {} still exists after `down`",
        ex.data.display()
    );
    eprintln!("{name}: passed in {:.1}s", started.elapsed().as_secs_f64());
}
