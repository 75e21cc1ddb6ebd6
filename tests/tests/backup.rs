//! Backups of channel ledgers to real object storage and their verified restore
//! (node/src/backup, docs/backup.md).
//!
//! - The local mode, as a user drives it: `tallyctl up` the quickstart example, a writer
//!   running, `backup create` to a real S3 server (Versity Gateway on loopback, posix backend)
//!   and to a file repository, a second backup that reuses most chunks, `backup verify`; a
//!   corrupted chunk and a manifest of another channel are refused by verify and restore with
//!   nothing installed; then every node's ledger is deleted, `restore` puts the channel back,
//!   a second `up` resumes it, every write acknowledged up to the backup's height reads back
//!   and the channel commits new writes; beside it, `restore --observer` runs a new read-only
//!   node at the first backup's height, which serves earlier writes and not later ones.
//! - One node restored from an older backup while the others run: it withholds its vote (the
//!   channel cannot elect a leader without it while another node is down), catches up once a
//!   leader is back, checks its chain against the others' signed checkpoints, and loses
//!   nothing. The older backup restored read-only into a new node that the channel never
//!   listed serves the channel as it was, refuses writes, and the channel goes on beside it.
//!
//! Needs the tally-node and tallyctl executables (see `tally_tests::bins`) and versitygw
//! (`TALLY_VERSITYGW_BIN`, else `scripts/versitygw-bin.sh` builds or finds it).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tally_client::txs::{put, sign_writes};
use tally_client::{AdminClient, Client};
use tally_protocol::api::RaftRole;
use tally_protocol::{Identity, Role};
use tally_tests::s3::S3Server;
use tally_tests::{
    assert_identical_chains, metric_value, metrics, node_bin, tallyctl_bin, TestCluster,
};

const READY_DEADLINE: Duration = Duration::from_secs(150);
const CLI_DEADLINE: Duration = Duration::from_secs(180);
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.describe()))
    }
}

fn run(mut cmd: Command) -> Out {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut o = child.stdout.take().expect("stdout");
    let mut e = child.stderr.take().expect("stderr");
    let ot = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = o.read_to_string(&mut s);
        s
    });
    let et = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = e.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CLI_DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a command ran for more than {CLI_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Out {
        code: status.code(),
        stdout: ot.join().unwrap_or_default(),
        stderr: et.join().unwrap_or_default(),
    }
}

/// A local consortium of the quickstart example run by `tallyctl up`, in a folder of its own
/// (kept when the test fails).
struct Local {
    root: Option<tempfile::TempDir>,
    data: PathBuf,
    manifest: PathBuf,
    env: Vec<(String, String)>,
    up: Option<Child>,
    runs: usize,
}

impl Local {
    fn new(env: Vec<(String, String)>) -> Local {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/examples/quickstart.yaml")
            .canonicalize()
            .expect("the quickstart example");
        let root = tempfile::Builder::new()
            .prefix("tally-backup-")
            .tempdir()
            .expect("temporary folder");
        let data = root.path().join("data");
        Local {
            root: Some(root),
            data,
            manifest,
            env,
            up: None,
            runs: 0,
        }
    }

    fn root(&self) -> &Path {
        self.root.as_ref().expect("root").path()
    }

    fn ctl(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(tallyctl_bin());
        cmd.arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .env("TALLY_NODE_BIN", node_bin())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        run(cmd)
    }

    fn up(&mut self) {
        self.runs += 1;
        let out = self.root().join(format!("up-{}.out", self.runs));
        let err = self.root().join(format!("up-{}.err", self.runs));
        let child = Command::new(tallyctl_bin())
            .arg("up")
            .arg("-f")
            .arg(&self.manifest)
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--no-console")
            .env("TALLY_NODE_BIN", node_bin())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::fs::File::create(&err).expect("err"))
            .spawn()
            .expect("start tallyctl up");
        self.up = Some(child);
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if text.lines().any(|l| l.starts_with("Ready.")) {
                return;
            }
            if let Some(s) = self.up.as_mut().expect("up").try_wait().expect("wait") {
                panic!(
                    "`tallyctl up` exited with {s} before Ready:\n{}",
                    std::fs::read_to_string(&err).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "`tallyctl up` not ready in time");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn interrupt(&mut self) {
        let mut up = self.up.take().expect("up runs");
        let pid = libc::pid_t::try_from(up.id()).expect("pid");
        // SAFETY: kill(2) of our own child, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = up.try_wait().expect("wait") {
                assert!(s.success(), "`tallyctl up` exited with {s} after SIGINT");
                return;
            }
            assert!(Instant::now() < deadline, "`tallyctl up` did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Node data directories of the consortium.
    fn node_data_dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(self.data.join("nodes"))
            .expect("nodes folder")
            .flatten()
            .map(|e| e.path().join("data"))
            .collect();
        out.sort();
        out
    }

    /// `tx put` as org1; the block of the receipt when committed.
    fn put(&self, key: &str, value: &str) -> Option<u64> {
        let out = self.ctl(&[
            "--org",
            "org1",
            "tx",
            "put",
            "--channel",
            "main",
            "--timeout",
            "30",
            "--output",
            "json",
            key,
            value,
        ]);
        if out.code != Some(0) {
            return None;
        }
        let r = out.json();
        (r["status"] == "committed").then(|| r["block"].as_u64().expect("block"))
    }

    fn get(&self, key: &str) -> Out {
        self.ctl(&["--org", "org2", "tx", "get", "--channel", "main", key])
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(mut up) = self.up.take() {
            let _ = up.kill();
            let _ = up.wait();
        }
        if std::thread::panicking() {
            if let Some(root) = self.root.take() {
                let p = root.keep();
                for d in self.node_data_dirs_quiet() {
                    let log = d.with_file_name("node.log");
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    eprintln!(
                        "--- {} ---\n{}",
                        log.display(),
                        lines[lines.len().saturating_sub(30)..].join("\n")
                    );
                }
                eprintln!("folder kept at {}", p.display());
            }
        }
    }
}

impl Local {
    fn node_data_dirs_quiet(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.data.join("nodes"))
            .map(|r| r.flatten().map(|e| e.path().join("data")).collect())
            .unwrap_or_default()
    }
}

/// Nothing of channel `main` in a node's database: no join record, no ledger record.
fn nothing_installed(data: &Path) {
    let path = data.join("ledger");
    if !path.exists() {
        return;
    }
    let db = rocksdb::DB::open_for_read_only(&rocksdb::Options::default(), &path, false)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for prefix in [&b"n/channel/main"[..], b"cmain\0", b"n/rejoining/main"] {
        let found = db
            .prefix_iterator(prefix)
            .flatten()
            .any(|(k, _)| k.starts_with(prefix));
        assert!(
            !found,
            "{}: a refused restore left records under {:?}",
            path.display(),
            String::from_utf8_lossy(prefix)
        );
    }
}

#[test]
fn local_mode_backup_to_s3_and_restore_after_every_ledger_is_lost() {
    let root = tempfile::Builder::new()
        .prefix("tally-backup-s3-")
        .tempdir()
        .expect("folder");
    let s3 = S3Server::start(&root.path().join("s3"), &["backups"]);
    let mut env: Vec<(String, String)> = s3
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    // Small chunks, so that a small ledger has many and reuse shows.
    env.push(("TALLY_BACKUP_CHUNK_BYTES".into(), "1024".into()));
    let mut ex = Local::new(env);
    let s3_url = "s3://backups/quickstart";
    let file_repo = ex.root().join("file-repo");
    let file_url = format!("file://{}", file_repo.display());
    ex.up();

    // Writes before, during and after the first backup.
    let acked: Arc<Mutex<BTreeMap<String, u64>>> = Default::default();
    for i in 0..30 {
        let k = format!("before-{i:03}");
        let b = ex
            .put(&k, &format!("v{i}"))
            .expect("a write before the backup");
        acked.lock().unwrap().insert(k, b);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let (data, env) = (ex.data.clone(), ex.env.clone());
        std::thread::spawn(move || {
            let w = Local {
                root: None,
                data,
                manifest: PathBuf::new(),
                env,
                up: None,
                runs: 0,
            };
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("during-{i:04}");
                if let Some(b) = w.put(&k, &format!("w{i}")) {
                    acked.lock().unwrap().insert(k, b);
                }
                i += 1;
            }
        })
    };
    let first = ex.ctl(&[
        "--output",
        "json",
        "backup",
        "create",
        "--channel",
        "main",
        "--to",
        s3_url,
    ]);
    assert_eq!(first.code, Some(0), "first backup: {}", first.describe());
    let first = first.json();
    assert_eq!(first["phase"], "Succeeded", "{first}");
    let chunks1 = first["chunks"].as_u64().expect("chunks");
    assert!(chunks1 > 3, "a small ledger in small chunks: {first}");
    for (to, channel, says) in [
        ("ftp://nowhere/x", "main", "not supported"),
        (s3_url, "nosuch", "does not serve channel nosuch"),
    ] {
        let bad = ex.ctl(&[
            "backup",
            "create",
            "--channel",
            channel,
            "--to",
            to,
            "--from-node",
            "org1-peer-0",
        ]);
        assert_eq!(bad.code, Some(1), "{}", bad.describe());
        assert!(bad.stderr.contains(says), "{}", bad.describe());
    }
    let to_file = ex.ctl(&["backup", "create", "--channel", "main", "--to", &file_url]);
    assert_eq!(to_file.code, Some(0), "file backup: {}", to_file.describe());

    // More writes, then an incremental backup: most chunks are already stored.
    let target = acked.lock().unwrap().len() + 5;
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < target {
        assert!(Instant::now() < deadline, "the writer stalled");
        std::thread::sleep(Duration::from_millis(200));
    }
    let second = ex.ctl(&[
        "--output",
        "json",
        "backup",
        "create",
        "--channel",
        "main",
        "--to",
        s3_url,
    ]);
    assert_eq!(second.code, Some(0), "second backup: {}", second.describe());
    let second = second.json();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let (chunks2, reused2) = (
        second["chunks"].as_u64().expect("chunks"),
        second["chunks_reused"].as_u64().expect("reused"),
    );
    let height2 = second["height"].as_u64().expect("height");
    assert!(
        height2 > first["height"].as_u64().expect("height"),
        "{first} then {second}"
    );
    // Only what changed is stored again: the blocks appended, the tail of the state and
    // history, the transaction index chunks the new ids fall into, the tip.
    assert!(
        reused2 > 0 && chunks2 - reused2 < chunks1,
        "the incremental backup stored {} new chunks of {chunks2} ({reused2} reused; the first had {chunks1})",
        chunks2 - reused2
    );
    eprintln!(
        "backups: first {chunks1} chunks at height {}, second {chunks2} chunks ({reused2} reused) at height {height2}",
        first["height"]
    );

    let verified = ex.ctl(&["backup", "verify", s3_url]);
    assert_eq!(verified.code, Some(0), "verify: {}", verified.describe());
    assert!(verified.stdout.contains("OK"), "{}", verified.describe());
    let listed = ex
        .ctl(&["--output", "json", "backup", "list", s3_url])
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");

    // A restore is refused while the nodes run.
    let r = ex.ctl(&["restore", "--from", s3_url]);
    assert_ne!(r.code, Some(0), "restore while running: {}", r.describe());
    assert!(
        r.stderr.contains("stop `tallyctl up` first"),
        "{}",
        r.describe()
    );

    // Every node's ledger is lost.
    ex.interrupt();
    for d in ex.node_data_dirs() {
        std::fs::remove_dir_all(&d).expect("delete the node's data");
    }

    // A corrupted chunk: verify and restore refuse it, naming it, and nothing is installed.
    let chunk = std::fs::read_dir(file_repo.join("chunks"))
        .expect("chunks")
        .flatten()
        .map(|e| e.path())
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a chunk");
    let mut bytes = std::fs::read(&chunk).expect("chunk");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&chunk, &bytes).expect("corrupt the chunk");
    let name = chunk
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    let v = ex.ctl(&["backup", "verify", &file_url]);
    assert_eq!(
        v.code,
        Some(1),
        "verify of a corrupted backup: {}",
        v.describe()
    );
    assert!(
        v.stderr.contains("corrupted") && v.stderr.contains(&name),
        "{}",
        v.describe()
    );
    let r = ex.ctl(&["restore", "--from", &file_url]);
    assert_ne!(
        r.code,
        Some(0),
        "restore of a corrupted backup: {}",
        r.describe()
    );
    assert!(r.stderr.contains("corrupted"), "{}", r.describe());
    for d in ex.node_data_dirs_quiet() {
        nothing_installed(&d);
    }

    // A manifest of another channel where the channel's newest one would be.
    let dir = file_repo.join("manifests/main");
    let newest = std::fs::read_dir(&dir)
        .expect("manifests")
        .flatten()
        .map(|e| e.path())
        .max()
        .expect("a manifest");
    let mut m: Value =
        serde_json::from_slice(&std::fs::read(&newest).expect("read")).expect("json");
    m["channel"] = Value::from("other");
    std::fs::write(
        dir.join("00000000000099999999-1.json"),
        serde_json::to_vec(&m).expect("json"),
    )
    .expect("write");
    let r = ex.ctl(&["restore", "--from", &file_url]);
    assert_ne!(
        r.code,
        Some(0),
        "restore from another channel's manifest: {}",
        r.describe()
    );
    assert!(
        r.stderr
            .contains("is a backup of channel other, not of channel main"),
        "{}",
        r.describe()
    );
    for d in ex.node_data_dirs_quiet() {
        nothing_installed(&d);
    }

    // The real restore, then `up` resumes the channel.
    let r = ex.ctl(&["restore", "--from", s3_url]);
    assert_eq!(r.code, Some(0), "restore: {}", r.describe());
    ex.up();
    let acked = acked.lock().unwrap().clone();
    let mut checked = 0;
    for (k, block) in &acked {
        if *block >= height2 {
            continue;
        }
        let got = ex.get(k);
        assert_eq!(
            got.code,
            Some(0),
            "{k} (block {block}, acknowledged before the backup at height {height2}) is lost: {}",
            got.describe()
        );
        checked += 1;
    }
    assert!(
        checked >= 35,
        "only {checked} keys were below the backup's height"
    );
    assert!(
        ex.put("after-restore", "yes").is_some(),
        "the restored channel commits new writes"
    );
    eprintln!("{checked} acknowledged keys read back after the restore; new writes commit");

    // Point in time, beside the running consortium: the first backup restored read-only into
    // a new observer node, which serves what was written before that height and nothing after.
    let height1 = first["height"].as_u64().expect("height");
    let mut observer = Observer::start(&ex, s3_url, height1);
    let url = observer.api_url.clone();
    let at = |key: &str| {
        ex.ctl(&[
            "--org",
            "org2",
            "--node",
            &url,
            "tx",
            "get",
            "--channel",
            "main",
            key,
        ])
    };
    let early = acked
        .iter()
        .find(|(_, block)| **block < height1)
        .map(|(k, _)| k.clone())
        .expect("a key acknowledged before the first backup");
    let got = at(&early);
    assert_eq!(
        got.code,
        Some(0),
        "{early} at height {height1}: {}",
        got.describe()
    );
    let got = at("after-restore");
    assert_ne!(
        got.code,
        Some(0),
        "a later write at the observer: {}",
        got.describe()
    );
    assert!(got.stderr.contains("does not exist"), "{}", got.describe());
    assert_eq!(
        observer.info["height"].as_u64(),
        Some(height1),
        "{}",
        observer.info
    );
    observer.stop();
    ex.interrupt();
}

/// `tallyctl restore --observer audit`: a new read-only node at a backup's height, running
/// until interrupted.
struct Observer {
    child: Child,
    info: Value,
    api_url: String,
}

impl Observer {
    fn start(ex: &Local, url: &str, height: u64) -> Observer {
        let out = ex.root().join("observer.out");
        let err = ex.root().join("observer.err");
        let mut child = Command::new(tallyctl_bin())
            .arg("--data-dir")
            .arg(&ex.data)
            .args([
                "restore",
                "--from",
                url,
                "--channel",
                "main",
                "--observer",
                "audit",
            ])
            .args(["--height", &height.to_string(), "--output", "json"])
            .env("TALLY_NODE_BIN", node_bin())
            .envs(ex.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::fs::File::create(&err).expect("err"))
            .spawn()
            .expect("start tallyctl restore --observer");
        let deadline = Instant::now() + CLI_DEADLINE;
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Ok(info) = serde_json::from_str::<Value>(&text) {
                let api_url = info["api_url"].as_str().expect("api_url").to_string();
                return Observer {
                    child,
                    info,
                    api_url,
                };
            }
            if let Some(s) = child.try_wait().expect("wait") {
                panic!(
                    "`tallyctl restore --observer` exited with {s}:\n{}",
                    std::fs::read_to_string(&err).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the observer did not start in time"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop(&mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) of our own child, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        let s = self.child.wait().expect("wait");
        assert!(s.success(), "the observer exited with {s} after SIGINT");
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CHANNEL: &str = "restored";

async fn write(clients: &[Client], signer: &Identity, prefix: &str, count: usize) {
    tally_tests::write_keys(clients, signer, CHANNEL, prefix, count).await
}

/// A backup made through a node's admin API, polled to its end.
/// A backup by `node` through its admin API, followed to its end; also how many backups the
/// node made (two when the first was already done before a second start could be refused).
async fn backup_via_admin(
    tc: &TestCluster,
    node: &str,
    url: &str,
) -> (tally_client::BackupStatus, u32) {
    let org = tc.node_org(node);
    let admin = AdminClient::new(
        &tc.admin_addr(node),
        &tc.ca_pem(&org),
        &tc.identity(&org, Role::Admin),
    )
    .expect("admin client");
    let mut s = admin
        .start_backup(CHANNEL, url, &BTreeMap::new())
        .await
        .expect("start a backup");
    assert_eq!(s.phase, "Running", "{s:?}");
    // A second one while it runs is refused; a small ledger may be done already, and then
    // the second one runs too.
    let second = match admin.start_backup(CHANNEL, url, &BTreeMap::new()).await {
        Err(e) => {
            assert!(e.to_string().contains("already running"), "{e}");
            None
        }
        Ok(s2) => Some(s2.id),
    };
    let bad = admin
        .start_backup(CHANNEL, "ftp://nowhere/x", &BTreeMap::new())
        .await
        .expect_err("a bad URL");
    assert!(bad.to_string().contains("not supported"), "{bad}");
    for _ in 0..600 {
        if s.phase != "Running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = admin
            .backup(CHANNEL, &s.id)
            .await
            .expect("status")
            .expect("known");
    }
    assert_eq!(s.phase, "Succeeded", "{s:?}");
    let mut made = 1;
    if let Some(id) = second {
        for _ in 0..600 {
            let s2 = admin
                .backup(CHANNEL, &id)
                .await
                .expect("status")
                .expect("known");
            if s2.phase != "Running" {
                assert_eq!(s2.phase, "Succeeded", "{s2:?}");
                made = 2;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    (s, made)
}

/// One node restored from an older backup while the others run: it withholds its vote, so
/// with another node down nobody is elected; once that node is back it catches up, its chain
/// is confirmed by the others' checkpoints, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_an_older_backup_votes_only_once_caught_up() {
    let tc = TestCluster::start("backup-rejoin", 3, &[CHANNEL], |_| {}).await;
    let signer = tc.identity("org1", Role::Client);
    let restored = "node3-0";
    let repo = tempfile::tempdir().expect("repo");
    let url = format!("file://{}", repo.path().display());

    write(&tc.clients(), &signer, "before", 10).await;
    let (b, made) = backup_via_admin(&tc, restored, &url).await;
    let m = metrics(&tc.api_url(restored)).await;
    assert_eq!(
        metric_value(
            &m,
            "tally_backups_total",
            &[("channel", CHANNEL), ("result", "succeeded")]
        ),
        Some(f64::from(made))
    );
    assert!(metric_value(&m, "tally_backup_bytes", &[("channel", CHANNEL)]).unwrap_or(0.0) > 0.0);
    write(&tc.clients(), &signer, "after-backup", 20).await;

    // The restored node loses its data and comes back from the backup; the leader of the two
    // others (the keeper) is down, so the remaining one needs the restored node's vote.
    tc.kill(restored).await.expect("kill");
    let data = tc.cluster().data_dir(restored);
    std::fs::remove_dir_all(&data).expect("delete the node's data");
    let mut leader = None;
    for _ in 0..300 {
        for n in ["node1-0", "node2-0"] {
            if let Ok(s) = tc.client(n).status(CHANNEL).await {
                if s.role == RaftRole::Leader {
                    leader = Some(n);
                }
            }
        }
        if leader.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keeper = leader.expect("a leader of the two others");
    let other = if keeper == "node1-0" {
        "node2-0"
    } else {
        "node1-0"
    };
    let committed = tc.client(keeper).status(CHANNEL).await.expect("status");
    assert!(committed.height > b.height);
    let out = run({
        let mut c = Command::new(node_bin());
        c.args([
            "restore",
            "--from",
            &url,
            "--channel",
            CHANNEL,
            "--data-dir",
        ])
        .arg(&data);
        c
    });
    assert_eq!(out.code, Some(0), "restore: {}", out.describe());
    tc.kill(keeper).await.expect("kill the keeper");
    tc.start_node(restored)
        .await
        .expect("start the restored node");

    let r = tc.client(restored);
    let o = tc.client(other);
    let mut asked = 0.0;
    for _ in 0..600 {
        for (n, c) in [(restored, &r), (other, &o)] {
            if let Ok(s) = c.status(CHANNEL).await {
                assert_ne!(
                    s.role,
                    RaftRole::Leader,
                    "{n} leads with the keeper down: {restored} voted before catching up"
                );
            }
        }
        asked = metric_value(
            &metrics(&tc.api_url(restored)).await,
            "tally_votes_withheld_total",
            &[("channel", CHANNEL)],
        )
        .unwrap_or(0.0);
        if asked >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        asked >= 3.0,
        "{restored} was asked for its vote {asked} times"
    );
    let rs = r.status(CHANNEL).await.expect("status");
    assert!(rs.rejoining, "{rs:?}");
    assert_eq!(
        rs.height, b.height,
        "the restored node starts at the backup's height"
    );

    // The keeper returns: a leader, the restored node catches up and votes again.
    tc.start_node(keeper).await.expect("restart the keeper");
    write(&tc.clients(), &signer, "after-restore", 10).await;
    tc.wait_converged(CHANNEL, Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rejoined = false;
    for _ in 0..300 {
        if !r.status(CHANNEL).await.expect("status").rejoining {
            rejoined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(rejoined, "{restored} never finished rejoining");
    assert!(
        tc.cluster()
            .log_contains(restored, "the restored ledger is the channel's chain"),
        "{restored} did not confirm its chain against the checkpoints"
    );
    assert_identical_chains(&tc, CHANNEL).await;
    for key in ["before-009", "after-backup-019", "after-restore-009"] {
        r.get(CHANNEL, key)
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e}"))
            .unwrap_or_else(|| panic!("{key} lost on {restored}"));
    }

    // Point in time: a new node of org1, made for the investigation and never listed by the
    // channel, restored read-only from the older backup, serves the channel as it was at the
    // backup's height, takes no writes, and stays there while the channel goes on without
    // noticing it.
    let investigator = Investigator::start(&tc, &url, b.height);
    write(&tc.clients(), &signer, "while-read-only", 5).await;
    let i = investigator.client(&tc);
    let mut ready = false;
    for _ in 0..300 {
        if matches!(i.ready().await, Ok(true)) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "the investigation node never became ready:\n{}",
        investigator.log()
    );
    let ahead = tc.client(keeper).status(CHANNEL).await.expect("status");
    assert!(ahead.height > b.height + 5);
    assert!(i.get(CHANNEL, "before-009").await.expect("read").is_some());
    assert!(
        i.get(CHANNEL, "after-backup-000")
            .await
            .expect("read")
            .is_none(),
        "a point-in-time restore shows no later write"
    );
    let tx = sign_writes(&signer, CHANNEL, vec![put("to-read-only", b"v")], false);
    let e = i
        .submit(&tx, false)
        .await
        .expect_err("a write to a read-only channel");
    assert!(e.to_string().contains("read_only"), "{e}");
    let rs = i.status(CHANNEL).await.expect("status");
    assert_eq!(
        rs.height, b.height,
        "the read-only node stays at the backup's height while the others commit"
    );
    assert!(
        investigator
            .log()
            .contains("read-only: restored at a point in time"),
        "{}",
        investigator.log()
    );
    write(&tc.clients(), &signer, "beside-read-only", 5).await;
    tc.wait_converged(CHANNEL, Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(investigator);
    tc.assert_healthy();
}

/// A tally-node made for an investigation: a new identity of org1 (issued from its CA, as an
/// organization's admin would), restored read-only from a backup at a height, listening on
/// loopback ports of its own. Killed when dropped.
struct Investigator {
    child: Child,
    dir: tempfile::TempDir,
    api: String,
}

impl Investigator {
    const NAME: &str = "investigator";

    fn start(tc: &TestCluster, url: &str, height: u64) -> Investigator {
        let dir = tempfile::tempdir().expect("investigator dir");
        let org_dir = tc.dir().join("orgs").join("org1");
        let ca = tally_protocol::OrgCa::load(&org_dir).expect("org1's CA");
        let id = ca
            .issue(Role::Node, Self::NAME, &["127.0.0.1".to_string()])
            .expect("issue the investigation node");
        id.save(&dir.path().join("id"), &ca.cert_pem())
            .expect("save its identity");
        let data = dir.path().join("data");
        let out = run({
            let mut c = Command::new(node_bin());
            c.args([
                "restore",
                "--from",
                url,
                "--channel",
                CHANNEL,
                "--read-only",
            ])
            .args(["--height", &height.to_string(), "--data-dir"])
            .arg(&data);
            c
        });
        assert_eq!(out.code, Some(0), "read-only restore: {}", out.describe());
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        };
        let api = format!("127.0.0.1:{}", port());
        let log = std::fs::File::create(dir.path().join("node.log")).expect("log file");
        let child = Command::new(node_bin())
            .args(["--name", Self::NAME, "--data-dir"])
            .arg(&data)
            .args(["--listen-api", &api])
            .args(["--listen-peer", &format!("127.0.0.1:{}", port())])
            .args(["--listen-admin", &format!("127.0.0.1:{}", port())])
            .arg("--cert")
            .arg(dir.path().join("id/cert.pem"))
            .arg("--key")
            .arg(dir.path().join("id/key.pem"))
            .arg("--org-ca")
            .arg(org_dir.join("ca.pem"))
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the investigation node");
        Investigator { child, dir, api }
    }

    fn client(&self, tc: &TestCluster) -> Client {
        let ca = std::fs::read_to_string(tc.dir().join("orgs/org1/ca.pem")).expect("org1 CA");
        let trust = tally_client::ApiTrust::from_ca_pems(&[ca.as_str()]).expect("trust");
        Client::new(&format!("https://{}", self.api), &trust)
            .expect("client")
            .with_reader(tc.identity("org1", Role::Client))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }
}

impl Drop for Investigator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills `node`, deletes its data and restores channel [`CHANNEL`] into it from `url`.
async fn restore_node(tc: &TestCluster, node: &str, url: &str) {
    tc.kill(node).await.expect("kill");
    let data = tc.cluster().data_dir(node);
    if data.exists() {
        std::fs::remove_dir_all(&data).expect("delete the node's data");
    }
    let out = run({
        let mut c = Command::new(node_bin());
        c.args(["restore", "--from", url, "--channel", CHANNEL, "--data-dir"])
            .arg(&data);
        c
    });
    assert_eq!(out.code, Some(0), "restore on {node}: {}", out.describe());
}

/// The channel restored whole from an older backup (every node; they found a leader together)
/// goes another way than the backup made later of the old chain. A node restored from that
/// later backup holds a ledger of the same channel and genesis that is not the channel's chain:
/// the others' checkpoints at its height carry other blocks, and it refuses the channel, with a
/// message that says so, instead of voting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_another_chain_is_refused_before_it_votes() {
    let tc = TestCluster::start("backup-fork", 3, &[CHANNEL], |_| {}).await;
    let signer = tc.identity("org1", Role::Client);
    let old = tempfile::tempdir().expect("repo");
    let later = tempfile::tempdir().expect("repo");
    let (old_url, later_url) = (
        format!("file://{}", old.path().display()),
        format!("file://{}", later.path().display()),
    );
    write(&tc.clients(), &signer, "a", 5).await;
    let (b1, _) = backup_via_admin(&tc, "node1-0", &old_url).await;
    write(&tc.clients(), &signer, "b", 10).await;
    let (b2, _) = backup_via_admin(&tc, "node1-0", &later_url).await;
    assert!(b2.height > b1.height);

    // Every node back to the older backup: they found a leader and go on, another way.
    for n in tc.node_names() {
        restore_node(&tc, &n, &old_url).await;
    }
    for n in tc.node_names() {
        tc.start_node(&n).await.expect("start");
    }
    tc.wait_converged(CHANNEL, Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("the channel restored on every node: {e}"));
    write(&tc.clients(), &signer, "fork", 20).await;
    let fork = tc.client("node1-0").status(CHANNEL).await.expect("status");
    assert!(fork.height > b2.height, "{} <= {}", fork.height, b2.height);
    assert!(
        tc.client("node1-0")
            .get(CHANNEL, "b-009")
            .await
            .expect("get")
            .is_none(),
        "the fork does not have the later writes"
    );

    // One node restored from the backup of the old chain.
    let odd = "node3-0";
    restore_node(&tc, odd, &later_url).await;
    tc.start_node(odd).await.expect("start");
    let c = tc.client(odd);
    let mut refused = false;
    for _ in 0..300 {
        if let Ok(s) = c.status(CHANNEL).await {
            assert_ne!(s.role, RaftRole::Leader, "{odd} leads with another chain");
        }
        if tc.cluster().log_contains(odd, "is not the channel's chain") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(refused, "{odd} did not refuse a ledger of another chain");
    // A degraded channel may refuse even its status; when it answers, it says why.
    if let Ok(s) = c.status(CHANNEL).await {
        assert!(s.rejoining, "{odd} must still withhold its vote: {s:?}");
        assert!(
            s.degraded.is_some(),
            "{odd} must not serve the channel: {s:?}"
        );
    }
    // The channel goes on without it.
    write(
        &[tc.client("node1-0"), tc.client("node2-0")],
        &signer,
        "after",
        3,
    )
    .await;
}
