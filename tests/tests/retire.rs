//! Retiring chaincodes and channels, and nodes leaving channels, on real nodes.
//!
//! - A node asked to leave a channel whose configuration still lists it refuses (409, naming
//!   the configuration change that must come first); once an approved membership change
//!   removed it, it stops the channel, deletes its data and its metric series, keeps serving
//!   its other channels, and does not bring the channel back after a restart.
//! - A chaincode retirement proposed by one organization never applies without the second
//!   one (calls keep committing); once approved, a call ordered into a block anyway, and one
//!   signed before the retirement, are refused by every node naming the retirement, while the
//!   contract's state stays readable. A channel retirement then makes every node refuse new
//!   transactions at submission while reads go on, and lets each node leave it; a node that
//!   crashes in the middle of leaving comes back with the channel whole or gone, never half.
//!
//! Needs both executables: `cargo build -p tallyctl -p tally-node` (see `tallyctl_bin` and
//! `node_bin`); the chaincode part builds the example contracts with clang (see
//! `build_contracts`).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tally_client::txs::{fields, put, sign_config, sign_invoke, sign_vote, sign_writes};
use tally_client::{AdminClient, Client, ClientError};
use tally_protocol::{Hash, RejectCode, Role, Transaction, TxStatus};
use tally_tests::adversary::{build_contracts, deploy_chaincode};
use tally_tests::{metrics, submit_retry, TestCluster};

const CH: &str = "ledger";
const KEEP: &str = "keep";
const WAIT: Duration = Duration::from_secs(60);
/// `tally_node::leave::CRASH_IN_LEAVE_VAR`: where a debug build aborts while leaving.
const CRASH_IN_LEAVE: &str = "TALLY_TEST_ONLY_CRASH_IN_LEAVE";

fn admin(tc: &TestCluster, node: &str) -> AdminClient {
    let org = tc.node_org(node);
    AdminClient::new(
        &tc.admin_addr(node),
        &tc.ca_pem(&org),
        &tc.identity(&org, Role::Admin),
    )
    .expect("admin client")
}

/// Identity folders (certificate, key and CA) of the cluster's organizations, for tallyctl.
struct Folders {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Folders {
    fn new(tc: &TestCluster) -> Folders {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        for org in tc.org_names() {
            for role in [Role::Admin, Role::Client] {
                tc.identity(&org, role)
                    .save(&root.join(format!("{org}-{role}")), &tc.ca_pem(&org))
                    .expect("save identity");
            }
        }
        Folders { _dir: dir, root }
    }

    fn of(&self, org: &str, role: Role) -> PathBuf {
        self.root.join(format!("{org}-{role}"))
    }
}

/// Runs tallyctl against node1-0 with an identity folder; returns (exit code, stdout, stderr).
fn tallyctl(tc: &TestCluster, identity: &Path, args: &[&str]) -> (i32, String, String) {
    tc.tallyctl_as(identity, args)
}

#[track_caller]
fn ctl_json(tc: &TestCluster, identity: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let (code, out, err) = tallyctl(tc, identity, &all);
    assert_eq!(code, 0, "tallyctl {args:?}: {out}\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("tallyctl {args:?}: {e}: {out}"))
}

async fn write(tc: &TestCluster, via: &[Client], channel: &str, key: &str) {
    let id = tc.identity("org1", Role::Client);
    let tx = sign_writes(&id, channel, vec![put(key, b"v")], false);
    let r = submit_retry(via, 0, &tx, WAIT)
        .await
        .expect("write acknowledged");
    assert_eq!(r.status, TxStatus::Committed, "{key}");
}

/// Waits until `cond` holds, polling.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !cond().await {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the node's /metrics still has a series labelled with `channel`.
async fn has_series(tc: &TestCluster, node: &str, channel: &str) -> bool {
    metrics(&tc.api_url(node))
        .await
        .contains(&format!("channel=\"{channel}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_leaves_a_channel_only_after_a_membership_change_removed_it() {
    let tc = TestCluster::start("retire-leave", 3, &[CH, KEEP], |_| {}).await;
    tc.wait_ready(WAIT).await.expect("cluster ready");
    let f = Folders::new(&tc);
    let stay: Vec<Client> = ["node1-0", "node2-0"]
        .iter()
        .map(|n| tc.client(n))
        .collect();
    write(&tc, &stay, CH, "before").await;

    // Still a consenter: refused, saying what must come first; nothing is deleted.
    match admin(&tc, "node3-0").leave_channel(CH).await {
        Err(ClientError::Api {
            status, message, ..
        }) => {
            assert_eq!(status, 409, "{message}");
            assert!(
                message.contains("still a consenter") && message.contains("configuration change"),
                "{message}"
            );
        }
        other => panic!("a member's leave must be refused: {other:?}"),
    }
    let (code, out, err) = tallyctl(
        &tc,
        &f.of("org3", Role::Admin),
        &[
            "channel",
            "leave",
            "--channel",
            CH,
            "--admin-addr",
            &tc.admin_addr("node3-0"),
        ],
    );
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        out.contains("REFUSED") && out.contains("still a consenter"),
        "{out}{err}"
    );
    assert!(admin(&tc, "node3-0")
        .channel(CH)
        .await
        .expect("admin")
        .is_some());

    // An approved configuration change takes node3-0 out of the channel.
    let info = admin(&tc, "node1-0")
        .channel(CH)
        .await
        .expect("admin")
        .expect("served");
    let mut next = info.config.clone();
    next.consenters.retain(|n| n.name != "node3-0");
    let (a1, a2) = (
        tc.identity("org1", Role::Admin),
        tc.identity("org2", Role::Admin),
    );
    let tx = sign_config(
        &a1,
        &info.config,
        info.status.config_sequence,
        next,
        &[&a1, &a2],
    );
    let r = submit_retry(&stay, 0, &tx, WAIT).await.expect("ordered");
    assert_eq!(r.status, TxStatus::Committed);
    eventually("node3-0 sees it was removed", || async {
        matches!(admin(&tc, "node3-0").channel(CH).await, Ok(Some(i)) if !i.status.member)
    })
    .await;
    assert!(has_series(&tc, "node3-0", CH).await);

    // Now it leaves: the channel, its data and its metric series are gone; KEEP stays.
    let left = ctl_json(
        &tc,
        &f.of("org3", Role::Admin),
        &[
            "channel",
            "leave",
            "--channel",
            CH,
            "--admin-addr",
            &tc.admin_addr("node3-0"),
        ],
    );
    assert_eq!(left["results"][0]["ok"], true, "{left:#}");
    assert!(
        left["results"][0]["left"]["height"].as_u64().unwrap_or(0) > 1,
        "{left:#}"
    );
    assert!(admin(&tc, "node3-0")
        .channel(CH)
        .await
        .expect("admin")
        .is_none());
    assert!(
        !has_series(&tc, "node3-0", CH).await,
        "series of a left channel"
    );
    assert!(has_series(&tc, "node3-0", KEEP).await);
    write(&tc, &[tc.client("node3-0")], KEEP, "still-served").await;
    write(&tc, &stay, CH, "after").await;

    // A restart does not bring it back, and leaving again finds nothing to do.
    // (The local cluster's own readiness wait expects every channel it planned.)
    tc.restart("node3-0").await.expect("restart");
    eventually("node3-0 serves KEEP again", || async {
        matches!(admin(&tc, "node3-0").channel(KEEP).await, Ok(Some(i)) if i.status.ready)
    })
    .await;
    assert!(admin(&tc, "node3-0")
        .channel(CH)
        .await
        .expect("admin")
        .is_none());
    assert!(admin(&tc, "node3-0")
        .leave_channel(CH)
        .await
        .expect("admin")
        .is_none());
    tc.assert_healthy();
}

/// The status of transaction `id` as node `node` recorded it in its block.
async fn status_on(tc: &TestCluster, node: &str, id: &Hash) -> TxStatus {
    let c = tc
        .client(node)
        .with_reader(tc.identity("org2", Role::Client));
    let mut last = None;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match c.receipt(CH, id).await {
            Ok(Some(r)) => return r.receipt.status,
            other => last = Some(format!("{other:?}")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{node}: no receipt for {id}: {last:?}");
}

#[track_caller]
fn retired(status: &TxStatus, says: &str) {
    match status {
        TxStatus::Rejected { code, reason } => {
            assert_eq!(*code, RejectCode::Retired, "{reason}");
            assert!(reason.contains(says), "{reason:?} lacks {says:?}");
        }
        s => panic!("expected a refusal for retirement, got {s:?}"),
    }
}

fn anchor(tc: &TestCluster, org: &str, hash: &str) -> Transaction {
    sign_invoke(
        &tc.identity(org, Role::Client),
        CH,
        "notary",
        "anchor",
        fields(&[hash, "deed"]),
        0,
        false,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retirements_apply_only_when_approved_and_are_refused_by_every_node() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("retire-contracts");
    let Some(wasm_dir) = build_contracts(&out) else {
        return;
    };
    let notary = std::fs::read(wasm_dir.join("notary.wasm")).expect("notary.wasm");
    let tc = TestCluster::start("retire", 3, &[CH], |_| {}).await;
    tc.wait_ready(WAIT).await.expect("cluster ready");
    let f = Folders::new(&tc);
    let nodes = tc.channel_nodes(CH);
    let clients: Vec<Client> = nodes.iter().map(|n| tc.client(n)).collect();
    deploy_chaincode(&tc, CH, "notary", &notary).await;
    let h1 = "ab".repeat(32);
    let r = submit_retry(&clients, 0, &anchor(&tc, "org1", &h1), WAIT)
        .await
        .expect("anchor");
    assert!(r.status.is_committed(), "{:?}", r.status);
    // Signed now, sent after the retirement: the late copy must not run either.
    let held = anchor(&tc, "org2", &"cd".repeat(32));

    // ---- chaincode: proposed by org1, not applied until org2 approves ----------------------
    let (admin1, admin2) = (f.of("org1", Role::Admin), f.of("org2", Role::Admin));
    let made = ctl_json(
        &tc,
        &admin1,
        &[
            "chaincode",
            "retire",
            "--channel",
            CH,
            "--name",
            "notary",
            "--propose",
        ],
    );
    assert_eq!(made["proposal"]["status"], "open", "{made:#}");
    assert_eq!(made["proposal"]["tally"]["needed"], 2, "{made:#}");
    let hash = made["hash"].as_str().expect("hash").to_string();
    let h = Hash::from_hex(&hash).expect("hex");
    // A client's approval and a lone proposer never make it apply: calls go on.
    let forged = submit_retry(
        &clients,
        0,
        &sign_vote(&tc.identity("org2", Role::Client), CH, h, true),
        WAIT,
    )
    .await;
    match forged {
        Ok(r) => assert!(!r.status.is_committed(), "{:?}", r.status),
        Err(e) => assert!(e.to_string().contains("admin"), "{e}"),
    }
    let r = submit_retry(&clients, 0, &anchor(&tc, "org3", &"ef".repeat(32)), WAIT)
        .await
        .expect("anchor");
    assert!(r.status.is_committed(), "{:?}", r.status);
    let (code, shown, err) = tallyctl(&tc, &admin2, &["proposal", "show", "-c", CH, &hash]);
    assert_eq!(code, 0, "{err}");
    assert!(
        shown.contains("retire chaincode notary (definition sequence 1)"),
        "{shown}"
    );

    let voted = ctl_json(&tc, &admin2, &["proposal", "approve", "-c", CH, &hash]);
    assert_eq!(voted["proposal"]["status"], "applied", "{voted:#}");
    let at = voted["receipt"]["block"].as_u64().expect("block");
    let says = format!("retired at block {at}");

    // A call ordered anyway is refused by every node, in its block, naming the retirement;
    // so is the copy signed before it.
    let late = anchor(&tc, "org1", &"12".repeat(32));
    for tx in [&late, &held] {
        let r = submit_retry(&clients, 0, tx, WAIT).await.expect("ordered");
        retired(&r.status, &says);
        for n in &nodes {
            retired(&status_on(&tc, n, &tx.id()).await, &says);
        }
    }
    // Its state stays readable, on every node, and the lifecycle says it is retired.
    for c in &clients {
        let reader = c.with_reader(tc.identity("org3", Role::Client));
        let kv = reader
            .get(CH, &format!("cc~notary~h/{h1}"))
            .await
            .expect("read");
        assert!(kv.is_some(), "the retired contract's record is gone");
        let listed = reader.chaincodes(CH).await.expect("chaincodes");
        let n = listed.iter().find(|c| c.name == "notary").expect("listed");
        assert_eq!(n.retired.map(|r| r.block), Some(at));
    }
    let (_, list, _) = tallyctl(&tc, &admin2, &["chaincode", "list", "-c", CH]);
    assert!(list.contains("notary  RETIRED sequence 1"), "{list}");

    // ---- channel: one shot with both admins ----------------------------------------------
    let admin2_dir = admin2.to_str().expect("utf-8");
    let done = ctl_json(
        &tc,
        &admin1,
        &[
            "channel",
            "retire",
            "--channel",
            CH,
            "--approver",
            admin2_dir,
        ],
    );
    assert_eq!(done["proposal"]["status"], "applied", "{done:#}");
    let at = done["receipt"]["block"].as_u64().expect("block");
    // Every node refuses new transactions at submission, saying why; reads go on.
    let w = sign_writes(
        &tc.identity("org1", Role::Client),
        CH,
        vec![put("after", b"v")],
        false,
    );
    for (n, c) in nodes.iter().zip(&clients) {
        match c.submit_wait(&w).await {
            Err(ClientError::Api {
                status,
                code,
                message,
                ..
            }) => {
                assert_eq!((status, code.as_str()), (410, "retired"), "{n}: {message}");
                assert!(
                    message.contains(&format!("retired at block {at}")),
                    "{message}"
                );
            }
            other => panic!("{n}: a write to a retired channel: {other:?}"),
        }
        let reader = c.with_reader(tc.identity("org2", Role::Client));
        assert!(reader
            .get(CH, &format!("cc~notary~h/{h1}"))
            .await
            .expect("read")
            .is_some());
        let i = admin(&tc, n)
            .channel(CH)
            .await
            .expect("admin")
            .expect("served");
        assert_eq!(i.retired.map(|r| r.block), Some(at), "{n}");
    }

    // ---- leaving a retired channel, crash-safe ------------------------------------------
    let height = admin(&tc, "node3-0")
        .channel(CH)
        .await
        .expect("admin")
        .expect("served")
        .status
        .height;
    // A crash after the worker stopped and before the deletion: the channel comes back whole.
    tc.set_node_env("node3-0", CRASH_IN_LEAVE, "before");
    tc.restart("node3-0").await.expect("restart");
    tc.wait_node_ready("node3-0", WAIT).await.expect("ready");
    assert!(admin(&tc, "node3-0").leave_channel(CH).await.is_err());
    tc.kill("node3-0").await.expect("reap");
    tc.set_node_env("node3-0", CRASH_IN_LEAVE, "");
    tc.start_node("node3-0").await.expect("start");
    tc.wait_node_ready("node3-0", WAIT).await.expect("ready");
    let whole = admin(&tc, "node3-0")
        .channel(CH)
        .await
        .expect("admin")
        .expect("the channel is whole after a crash before the deletion");
    assert_eq!(whole.status.height, height);
    let reader = tc
        .client("node3-0")
        .with_reader(tc.identity("org3", Role::Client));
    assert!(reader
        .get(CH, &format!("cc~notary~h/{h1}"))
        .await
        .expect("read")
        .is_some());
    // A crash right after the deletion was written: the channel is gone, nothing half left.
    tc.set_node_env("node2-0", CRASH_IN_LEAVE, "after");
    tc.restart("node2-0").await.expect("restart");
    tc.wait_node_ready("node2-0", WAIT).await.expect("ready");
    assert!(admin(&tc, "node2-0").leave_channel(CH).await.is_err());
    tc.kill("node2-0").await.expect("reap");
    tc.set_node_env("node2-0", CRASH_IN_LEAVE, "");
    tc.start_node("node2-0").await.expect("start");
    eventually("node2-0 answers its admin API", || async {
        admin(&tc, "node2-0").channels().await.is_ok()
    })
    .await;
    assert!(admin(&tc, "node2-0")
        .channel(CH)
        .await
        .expect("admin")
        .is_none());
    // The others leave through tallyctl.
    for n in ["node3-0", "node1-0"] {
        let org = tc.node_org(n);
        let left = ctl_json(
            &tc,
            &f.of(&org, Role::Admin),
            &[
                "channel",
                "leave",
                "--channel",
                CH,
                "--admin-addr",
                &tc.admin_addr(n),
            ],
        );
        assert_eq!(left["results"][0]["ok"], true, "{left:#}");
        assert!(admin(&tc, n).channel(CH).await.expect("admin").is_none());
    }
}

/// `tallyctl up` running the quickstart example, its stdout lines drained in a thread.
struct Up {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for Up {
    fn drop(&mut self) {
        // A failing test must not leave `up` and its nodes behind: SIGINT stops them.
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: plain kill(2) on the child this test spawned.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
            let _ = self.child.wait();
        }
    }
}

impl Up {
    fn start(data: &Path) -> Up {
        use std::io::BufRead;
        let manifest =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/quickstart.yaml");
        let mut child = Command::new(tally_tests::tallyctl_bin())
            .arg("up")
            .arg("-f")
            .arg(&manifest)
            .arg("--data-dir")
            .arg(data)
            .args(["--console-addr", "127.0.0.1:0"])
            .env("TALLY_NODE_BIN", tally_tests::node_bin())
            .env("TALLY_CONSOLE_BIN", tally_tests::console_bin())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(data.with_extension("stderr")).expect("stderr file"))
            .spawn()
            .expect("start tallyctl up");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut up = Up { child, lines };
        up.wait_for("Ready.");
        up
    }

    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) if l.contains(needle) => return,
                Ok(l) => seen.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        panic!("tallyctl up never printed {needle:?}:\n{}", seen.join("\n"));
    }

    fn stop(mut self) {
        // SIGINT, as a user's Ctrl-C: `up` stops its nodes and exits.
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on the child this test spawned.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("tallyctl up did not exit after SIGINT");
    }
}

/// Runs tallyctl on the local consortium in `data`; returns (exit code, stdout, stderr).
fn local(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(tally_tests::tallyctl_bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("run tallyctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// In local mode: a channel retired with the profile's admins (one shot) and left by every
/// node of the profile stays gone when the consortium is stopped and started again.
#[test]
fn in_local_mode_a_retired_channel_is_left_and_stays_gone_after_a_restart() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("quickstart");
    let up = Up::start(&data);
    let ok = |args: &[&str]| {
        let (code, out, err) = local(&data, args);
        assert_eq!(code, 0, "tallyctl {args:?}: {out}\n{err}");
        out
    };
    ok(&[
        "--org",
        "org1",
        "tx",
        "put",
        "--channel",
        "main",
        "kept",
        "v",
    ]);
    // Still a member everywhere: every node refuses to leave.
    let (code, out, err) = local(&data, &["channel", "leave", "--channel", "main"]);
    assert_ne!(code, 0, "{out}");
    assert_eq!(out.matches("REFUSED").count(), 3, "{out}\n{err}");
    let retired = ok(&[
        "--org",
        "org1",
        "--as",
        "admin",
        "channel",
        "retire",
        "--channel",
        "main",
    ]);
    assert!(retired.contains("applied"), "{retired}");
    let (code, _, err) = local(
        &data,
        &[
            "--org",
            "org2",
            "tx",
            "put",
            "--channel",
            "main",
            "late",
            "v",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("retired"), "{err}");
    let read = ok(&["--org", "org2", "tx", "get", "--channel", "main", "kept"]);
    assert!(read.contains('v'), "{read}");
    let left = ok(&["channel", "leave", "--channel", "main"]);
    assert_eq!(left.matches("left channel main").count(), 3, "{left}");
    up.stop();

    let up = Up::start(&data);
    let (code, _, err) = local(
        &data,
        &["--org", "org1", "tx", "get", "--channel", "main", "kept"],
    );
    assert_ne!(code, 0, "the channel came back after a restart");
    assert!(
        err.contains("unknown_channel") || err.contains("no channel"),
        "{err}"
    );
    up.stop();
}
