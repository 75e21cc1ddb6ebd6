//! The operator end to end on a real control plane: etcd, kube-apiserver and
//! kube-controller-manager on loopback, the [`PodRunner`] playing the kubelet (tally-node
//! processes on their own loopback addresses), and the `tally-operator` binary.
//!
//! `supply-chain-finance.yaml` applied to the cluster ends with every resource Ready,
//! transactions committed on both channels through `tallyctl` with a profile exported from
//! the cluster, channel status that matches the nodes, the example's `Chaincode` (the
//! receivables contract in a ConfigMap, pinned by sha256) installed and its definition
//! proposed and approved on the ledger, then invoked and queried, then deleted (retired on the
//! ledger before the object goes, calls refused after), a consenter pod deleted under load
//! with nothing acknowledged lost, a version rollout one pod at a time, a consenter Peer
//! scaled up and down under load (configuration transactions, Raft learners promoted,
//! departing nodes removed before their pods go), two operator replicas with one leading,
//! a member added to a channel, an observer Peer taken out of a channel (removed from its
//! configuration, then its node deletes the channel's data), and deletion that leaves only the
//! retained volumes.
//!
//! Run alone: `scripts/test.sh --operator` (or build tally-node, tallyctl and tally-operator,
//! then `cargo test -p tally-tests --test operator_e2e`).

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tally_tests::operator::{
    assert_pods_hold_only_their_own_secret, control_plane_with_crds, get_json, ready, repo,
    start_runner, tallyctl_in as tallyctl, wait_for, Operator,
};
use tally_tests::{tallyctl_bin, ControlPlane};

const NS: &str = "scf";
const CONSORTIUM: &str = "supply-chain-finance";

fn all_ready(cp: &ControlPlane) -> Result<(), String> {
    tally_tests::operator::all_ready(cp, NS, 6)
}

fn put(dir: &Path, org: &str, channel: &str, key: &str, value: &str) -> Result<String, String> {
    tallyctl(
        dir,
        &["--org", org, "tx", "put", "--channel", channel, key, value],
    )
}

fn get(dir: &Path, org: &str, channel: &str, key: &str) -> Result<String, String> {
    tallyctl(dir, &["--org", org, "tx", "get", "--channel", channel, key])
}

fn channel_status(dir: &Path, org: &str, channel: &str) -> Value {
    let s = tallyctl(
        dir,
        &[
            "--org",
            org,
            "--output",
            "json",
            "status",
            "--channel",
            channel,
        ],
    )
    .expect("tallyctl status");
    serde_json::from_str(&s).expect("status json")
}

fn export_profile(cp: &ControlPlane, dir: &Path) {
    let out = Command::new(tallyctl_bin())
        .arg(format!("--data-dir={}", dir.display()))
        .args([
            "profile",
            "export",
            "--namespace",
            NS,
            "--consortium",
            CONSORTIUM,
        ])
        .args(["--address", "pod-ip"])
        .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
        .output()
        .expect("tallyctl profile export");
    assert!(
        out.status.success(),
        "profile export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `<prefix>-<i>` keys to `receivables` as the bank, one after another, until told to
/// stop; remembers which were acknowledged.
struct Writer {
    dir: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Writer {
    fn start(dir: &Path, prefix: &'static str) -> Writer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (d, s) = (dir.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut i = 0;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let k = format!("{prefix}-{i}");
                if put(&d, "bank", "receivables", &k, "v").is_ok() {
                    acked.push(k);
                }
                i += 1;
            }
            acked
        });
        Writer {
            dir: dir.to_path_buf(),
            stop,
            thread,
        }
    }

    /// Stops writing and reads every acknowledged key back, through a fresh profile.
    fn finish(self, cp: &ControlPlane, during: &str) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let acked = self.thread.join().expect("writer");
        assert!(
            acked.len() > 3,
            "writes acknowledged {during}: {}",
            acked.len()
        );
        export_profile(cp, &self.dir);
        for k in &acked {
            let v = get(&self.dir, "core-enterprise", "receivables", k)
                .unwrap_or_else(|e| panic!("{k}: {e}"));
            assert!(v.contains('v'), "{k}: {v}");
        }
        eprintln!(
            "{} writes acknowledged {during}, all read back",
            acked.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supply_chain_finance_end_to_end() {
    let cp = match tokio::task::spawn_blocking(|| control_plane_with_crds("operator-e2e")).await {
        Ok(Some(cp)) => cp,
        Ok(None) => return,
        Err(e) => panic!("control plane: {e}"),
    };
    cp.kubectl_ok(&["create", "namespace", NS]);
    let mut runner = start_runner(&cp, "127.62").await;

    let cp = std::sync::Arc::new(cp);
    let c = cp.clone();
    let pods_root = runner.root_dir().join("pods").join(NS);
    tokio::task::spawn_blocking(move || e2e_steps(&c, &pods_root))
        .await
        .expect("e2e steps");
    assert!(
        runner.running_pids().is_empty(),
        "node processes left: {:?}",
        runner.running_pids()
    );
    runner.shutdown().await;
}

/// `pods_root`: where the pod runner keeps the namespace's pods (`<root>/pods/<ns>`).
fn e2e_steps(cp: &ControlPlane, pods_root: &Path) {
    let mut op1 = Operator::start(cp, "op-1");
    let example = repo().join("deploy/examples/supply-chain-finance.yaml");
    cp.kubectl_ok(&[
        "-n",
        NS,
        "apply",
        "--server-side",
        "-f",
        &example.display().to_string(),
    ]);

    // 1. Everything Ready.
    let t = Instant::now();
    wait_for("every resource Ready", Duration::from_secs(240), || {
        all_ready(cp)
    });
    eprintln!("all Ready after {:.1}s", t.elapsed().as_secs_f64());
    let op2 = Operator::start(cp, "op-2");

    // CAs in Secrets, fingerprints in status; node Secrets, Services, node pods, budgets.
    let cons = get_json(cp, &["-n", NS, "get", "consortium", CONSORTIUM]);
    let orgs = cons["status"]["organizations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(orgs.len(), 4, "{cons}");
    for o in &orgs {
        assert_eq!(o["caFingerprint"].as_str().map(str::len), Some(64), "{o}");
    }
    for name in [
        "core-enterprise-peer-0",
        "core-enterprise-peer-1",
        "bank-peer-0",
        "supplier-tier1-observer-0",
    ] {
        cp.kubectl_ok(&["-n", NS, "get", "secret", &format!("{name}-tls")]);
    }
    // One pod per node, each holding its own node's key and no sibling's (issue 13).
    let pod = get_json(cp, &["-n", NS, "get", "pod", "core-enterprise-peer-1"]);
    assert_eq!(
        pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    assert_eq!(pod["spec"]["hostname"], "core-enterprise-peer-1");
    assert_eq!(pod["spec"]["subdomain"], "core-enterprise-peer-nodes");
    let checked = assert_pods_hold_only_their_own_secret(cp, NS, pods_root);
    assert_eq!(checked.len(), 4, "the example runs four nodes: {checked:?}");
    assert!(
        cp.kubectl(&["-n", NS, "get", "statefulsets", "-o", "name"])
            .stdout
            .trim()
            .is_empty(),
        "no StatefulSet"
    );
    let pdb = get_json(cp, &["-n", NS, "get", "pdb", "receivables-quorum"]);
    assert_eq!(
        pdb["spec"]["minAvailable"], 2,
        "3 voters keep a quorum of 2"
    );
    let voters = cp.kubectl_ok(&[
        "-n",
        NS,
        "get",
        "pods",
        "-l",
        "consents.tally.dev/receivables=true",
        "-o",
        "name",
    ]);
    assert_eq!(
        voters.lines().count(),
        3,
        "the budget selects the 3 voters: {voters}"
    );

    // 2. Transactions on both channels through a profile exported from the cluster.
    let dir = cp.dir().join("profile");
    export_profile(cp, &dir);
    put(
        &dir,
        "core-enterprise",
        "receivables",
        "invoice-1",
        "issued",
    )
    .expect("put receivables");
    put(&dir, "bank", "financing", "loan-1", "granted").expect("put financing");
    let v = get(&dir, "supplier-tier2", "receivables", "invoice-1").expect("get receivables");
    assert!(v.contains("issued"), "{v}");
    let v = get(&dir, "core-enterprise", "financing", "loan-1").expect("get financing");
    assert!(v.contains("granted"), "{v}");
    let refused = put(&dir, "supplier-tier2", "financing", "loan-2", "x");
    assert!(
        refused.is_err_and(|e| e.contains("not_member")),
        "a non-member must be refused"
    );

    // 3. Channel status matches the nodes.
    for ch in ["receivables", "financing"] {
        wait_for(
            &format!("{ch} status to match the nodes"),
            Duration::from_secs(60),
            || {
                let nodes = channel_status(&dir, "core-enterprise", ch);
                let res = get_json(cp, &["-n", NS, "get", "channel", ch]);
                let st = &res["status"];
                let heights: Vec<u64> = nodes["nodes"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|n| n["height"].as_u64()).collect())
                    .unwrap_or_default();
                let max = heights.iter().copied().max().unwrap_or(0);
                let leader = nodes["nodes"]
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .find_map(|n| n["leader"].as_str().map(str::to_string))
                    })
                    .unwrap_or_default();
                if st["height"].as_u64() != Some(max) || max < 2 {
                    return Err(format!(
                        "status height {} vs nodes {heights:?} in {nodes}",
                        st["height"]
                    ));
                }
                if st["leader"].as_str() != Some(leader.as_str()) {
                    return Err(format!("status leader {} vs nodes {leader}", st["leader"]));
                }
                if st["stateRootsAgree"] != true {
                    return Err(format!("stateRootsAgree {}", st["stateRootsAgree"]));
                }
                Ok(())
            },
        );
    }

    // 3b. The Chaincode: the module from its ConfigMap pinned by sha256, installed, its
    // definition proposed and approved for the organizations whose admins the operator holds
    // until it applies; then invoked and queried.
    chaincode_step(cp, &dir);
    // 3c. Deleting the Chaincode retires it on the ledger before the object goes.
    chaincode_deletion_step(cp, &dir);

    // 4. Only one operator leads; the other stands by.
    let lease = get_json(cp, &["-n", "default", "get", "lease", "tally-operator"]);
    assert_eq!(lease["spec"]["holderIdentity"], "op-1", "{lease}");
    wait_for("op-2 serving metrics", Duration::from_secs(20), || {
        op2.metric("tally_operator_leader", &[])
            .ok_or("no metrics".to_string())
    });
    assert_eq!(op1.metric("tally_operator_leader", &[]), Some(1.0));
    assert_eq!(op2.metric("tally_operator_leader", &[]), Some(0.0));
    let ok = op1
        .metric(
            "tally_operator_reconciles_total",
            &[("kind", "Channel"), ("result", "ok")],
        )
        .unwrap_or(0.0);
    assert!(ok >= 2.0, "channel reconciles counted: {ok}");
    let events = cp.kubectl_ok(&["-n", NS, "get", "events", "-o", "json"]);
    assert!(events.contains("CaCreated"), "CA creation events recorded");

    // 5. A consenter pod deleted under load: nothing acknowledged is lost.
    let writer = Writer::start(&dir, "load");
    std::thread::sleep(Duration::from_secs(2));
    cp.kubectl_ok(&[
        "-n",
        NS,
        "delete",
        "pod",
        "core-enterprise-peer-0",
        "--wait=false",
    ]);
    std::thread::sleep(Duration::from_secs(3));
    wait_for(
        "Ready again after the pod deletion",
        Duration::from_secs(120),
        || all_ready(cp),
    );
    std::thread::sleep(Duration::from_secs(2));
    writer.finish(cp, "under a pod deletion");

    // 6. Operator restart: a new leader takes over and keeps converging.
    op1.stop();
    wait_for("op-2 to lead", Duration::from_secs(60), || {
        match op2.metric("tally_operator_leader", &[]) {
            Some(1.0) => Ok(()),
            v => Err(format!("{v:?}")),
        }
    });

    // 7. Version change rolls one pod at a time, keeping the data.
    cp.kubectl_ok(&[
        "-n",
        NS,
        "patch",
        "peer",
        "bank-peer",
        "--type=merge",
        "-p",
        r#"{"spec":{"version":"0.1.1"}}"#,
    ]);
    wait_for(
        "bank-peer rolled to 0.1.1",
        Duration::from_secs(180),
        || {
            let pods = get_json(
                cp,
                &["-n", NS, "get", "pods", "-l", "tally.dev/peer=bank-peer"],
            );
            let images: Vec<String> = pods["items"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| {
                            p["spec"]["containers"][0]["image"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string()
                        })
                        .collect()
                })
                .unwrap_or_default();
            if images.len() != 1 || !images.iter().all(|i| i.ends_with(":0.1.1")) {
                return Err(format!("images {images:?}"));
            }
            all_ready(cp)
        },
    );
    export_profile(cp, &dir);
    let v =
        get(&dir, "core-enterprise", "financing", "loan-1").expect("data kept across the rollout");
    assert!(v.contains("granted"), "{v}");

    // 8. Scaling a consenter Peer up and down under load: each new node joins both channels
    //    (a configuration transaction, then Raft learner to voter); scaling down removes the
    //    departing nodes from the channels before their pods go. Nothing acknowledged is lost.
    let writer = Writer::start(&dir, "scale");
    let voters_of = |ch: &str| -> Vec<String> {
        let c = get_json(cp, &["-n", NS, "get", "channel", ch]);
        let mut v: Vec<String> = c["status"]["voters"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let scale = |n: u32| {
        cp.kubectl_ok(&[
            "-n",
            NS,
            "patch",
            "peer",
            "core-enterprise-peer",
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"replicas":{n}}}}}"#),
        ]);
    };
    let t = Instant::now();
    scale(3);
    let four = [
        "bank-peer-0",
        "core-enterprise-peer-0",
        "core-enterprise-peer-1",
        "core-enterprise-peer-2",
    ];
    wait_for(
        "core-enterprise-peer-2 voting in both channels",
        Duration::from_secs(180),
        || {
            for ch in ["receivables", "financing"] {
                let v = voters_of(ch);
                if v != four {
                    return Err(format!("{ch} voters {v:?}"));
                }
            }
            all_ready(cp)
        },
    );
    eprintln!("scaled up to 3 in {:.1}s", t.elapsed().as_secs_f64());
    let pdb = get_json(cp, &["-n", NS, "get", "pdb", "receivables-quorum"]);
    assert_eq!(
        pdb["spec"]["minAvailable"], 3,
        "4 voters keep a quorum of 3"
    );
    let c = get_json(cp, &["-n", NS, "get", "channel", "receivables"]);
    assert_eq!(c["status"]["configSequence"], 1, "{}", c["status"]);
    assert_eq!(c["status"]["stateRootsAgree"], true, "{}", c["status"]);
    let t = Instant::now();
    scale(1);
    wait_for(
        "core-enterprise-peer down to one node, out of both channels",
        Duration::from_secs(180),
        || {
            for ch in ["receivables", "financing"] {
                let v = voters_of(ch);
                if v != ["bank-peer-0", "core-enterprise-peer-0"] {
                    return Err(format!("{ch} voters {v:?}"));
                }
            }
            let pods = cp.kubectl_ok(&[
                "-n",
                NS,
                "get",
                "pods",
                "-l",
                "tally.dev/peer=core-enterprise-peer",
                "-o",
                "name",
            ]);
            if pods.lines().count() != 1 {
                return Err(format!("pods {pods}"));
            }
            all_ready(cp)
        },
    );
    eprintln!("scaled down to 1 in {:.1}s", t.elapsed().as_secs_f64());
    let events = cp.kubectl_ok(&["-n", NS, "get", "events", "-o", "json"]);
    assert!(
        events.contains("Reconfigured"),
        "configuration changes recorded as events"
    );
    std::thread::sleep(Duration::from_secs(1));
    writer.finish(cp, "while scaling up and down");

    // 9. A member added to a Channel: a configuration transaction approved by the channel's
    //    admin organizations, after which the new member writes where it was refused.
    let seq = |ch: &str| {
        get_json(cp, &["-n", NS, "get", "channel", ch])["status"]["configSequence"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = seq("financing");
    cp.kubectl_ok(&[
        "-n",
        NS,
        "patch",
        "channel",
        "financing",
        "--type=merge",
        "-p",
        r#"{"spec":{"members":["core-enterprise","bank","supplier-tier2"]}}"#,
    ]);
    wait_for(
        "supplier-tier2 a member of financing",
        Duration::from_secs(60),
        || {
            let c = get_json(cp, &["-n", NS, "get", "channel", "financing"]);
            let members = c["status"]["members"].to_string();
            if seq("financing") == before + 1 && members.contains("supplier-tier2") {
                all_ready(cp)
            } else {
                Err(format!("status {}", c["status"]))
            }
        },
    );
    export_profile(cp, &dir);
    put(&dir, "supplier-tier2", "financing", "loan-2", "requested")
        .expect("the new member writes to financing");

    // 9b. An observer Peer taken out of a Channel: the configuration change removes its node,
    //     then the node leaves the channel (deletes its data), seen as a NodeLeft event.
    cp.kubectl_ok(&[
        "-n",
        NS,
        "patch",
        "channel",
        "receivables",
        "--type=merge",
        "-p",
        r#"{"spec":{"observers":[]}}"#,
    ]);
    wait_for(
        "supplier-tier1-observer-0 out of receivables and its data deleted",
        Duration::from_secs(120),
        || {
            let c = get_json(cp, &["-n", NS, "get", "channel", "receivables"]);
            let learners = c["status"]["learners"].to_string();
            if learners.contains("supplier-tier1-observer-0") {
                return Err(format!("learners {learners}"));
            }
            let events = cp.kubectl_ok(&[
                "-n",
                NS,
                "get",
                "events",
                "--field-selector",
                "reason=NodeLeft",
                "-o",
                "json",
            ]);
            if events.contains("supplier-tier1-observer-0 left channel receivables") {
                Ok(())
            } else {
                Err("no NodeLeft event yet".into())
            }
        },
    );

    // 10. Deleting the consortium first is held while peers and channels remain.
    cp.kubectl_ok(&["-n", NS, "delete", "consortium", CONSORTIUM, "--wait=false"]);
    wait_for(
        "the deletion held with a message",
        Duration::from_secs(30),
        || {
            let c = get_json(cp, &["-n", NS, "get", "consortium", CONSORTIUM]);
            match ready(&c) {
                Some((s, m)) if s == "False" && m.contains("still used by peers") => Ok(()),
                r => Err(format!("{r:?}")),
            }
        },
    );
    // 11. Deleting the Peer that holds most of the channels' voters is held too: its nodes
    // would take both channels' quorum with them. The channels keep committing meanwhile.
    cp.kubectl_ok(&[
        "-n",
        NS,
        "delete",
        "peer",
        "core-enterprise-peer",
        "--wait=false",
    ]);
    wait_for(
        "the Peer's deletion held with a message",
        Duration::from_secs(60),
        || {
            let p = get_json(cp, &["-n", NS, "get", "peer", "core-enterprise-peer"]);
            match ready(&p) {
                Some((s, m)) if s == "False" && m.contains("would stop channels") => Ok(m),
                r => Err(format!("{r:?}")),
            }
        },
    );
    let pods = cp.kubectl_ok(&[
        "-n",
        NS,
        "get",
        "pods",
        "-l",
        "tally.dev/peer=core-enterprise-peer",
        "-o",
        "name",
    ]);
    assert!(!pods.trim().is_empty(), "the held Peer's pods went: {pods}");
    put(&dir, "bank", "financing", "loan-3", "requested")
        .expect("the channel commits while the Peer's deletion is held");

    // 12. Deleting everything together (the channels too) lets every Peer go.
    cp.kubectl_ok(&[
        "-n",
        NS,
        "delete",
        "-f",
        &example.display().to_string(),
        "--wait=false",
        // The Chaincode went in step 3c.
        "--ignore-not-found",
    ]);
    wait_for(
        "everything but the volumes gone",
        Duration::from_secs(120),
        || {
            let left = cp.kubectl_ok(&[
                "-n",
                NS,
                "get",
                "consortia,peers,channels,pods,services,secrets,configmaps,pdb",
                "-l",
                "app.kubernetes.io/managed-by=tally-operator",
                "-o",
                "name",
            ]);
            // The organizations' CAs stay while the retained volumes do (CaKept).
            let left: String = left
                .lines()
                .filter(|l| !(l.starts_with("secret/") && l.ends_with("-ca")))
                .collect();
            let tally = cp.kubectl_ok(&["-n", NS, "get", "consortia,peers,channels", "-o", "name"]);
            let pods = cp.kubectl_ok(&["-n", NS, "get", "pods", "-o", "name"]);
            let all = format!("{left}{tally}{pods}");
            if all.trim().is_empty() {
                Ok(())
            } else {
                Err(all)
            }
        },
    );
    let pvcs = cp.kubectl_ok(&["-n", NS, "get", "pvc", "-o", "name"]);
    assert_eq!(
        pvcs.lines().count(),
        5,
        "the retained volumes, the scaled-up node's included: {pvcs}"
    );
    let cas = cp.kubectl_ok(&[
        "-n",
        NS,
        "get",
        "secrets",
        "-l",
        &format!("tally.dev/consortium={CONSORTIUM}"),
        "-o",
        "json",
    ]);
    let cas: serde_json::Value = serde_json::from_str(&cas).expect("secrets as JSON");
    let kept: Vec<&serde_json::Value> = cas["items"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    assert!(
        !kept.is_empty(),
        "the CAs went with the consortium though its volumes remain"
    );
    for s in kept {
        let name = s["metadata"]["name"].as_str().unwrap_or_default();
        assert!(name.ends_with("-ca"), "only CAs are kept, not {name}");
        assert!(
            s["metadata"]["ownerReferences"].is_null(),
            "{name} is still owned by the deleted consortium"
        );
    }
    drop(op2);
}

/// The example's Chaincode (the receivables contract, its module embedded in a ConfigMap and
/// pinned by sha256) is installed, proposed on the ledger and approved for the organizations
/// whose admins the operator holds (every one here) until the channel's rule is met, which
/// makes it active; then a transaction and a query run it.
fn chaincode_step(cp: &ControlPlane, dir: &Path) {
    let cc = wait_for("the Chaincode committed", Duration::from_secs(120), || {
        let cc = get_json(cp, &["-n", NS, "get", "chaincode", "receivables"]);
        match ready(&cc) {
            Some((s, _)) if s == "True" => Ok(cc),
            r => Err(format!("{r:?}: {}", cc["status"])),
        }
    });
    assert_eq!(cc["status"]["sequence"], 1, "{cc}");
    assert_eq!(cc["status"]["committedVersion"], "1.0", "{cc}");
    let approvals = cc["status"]["approvals"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(approvals.len(), 4, "one entry per member: {cc}");
    // The definition applies with the approval that meets the channel's rule (a majority,
    // three of four); the operator does not vote on a proposal already applied.
    let approved = approvals.iter().filter(|a| a["approved"] == true).count();
    assert!(approved >= 3, "{cc}");
    // The ledger agrees, and the contract runs: the core enterprise issues, a supplier reads.
    let listed = tallyctl(
        dir,
        &[
            "--org",
            "core-enterprise",
            "--output",
            "json",
            "chaincode",
            "list",
            "-c",
            "receivables",
        ],
    )
    .expect("chaincode list");
    let v: Value = serde_json::from_str(&listed).expect("JSON");
    assert_eq!(
        v[0]["active"]["module_hash"], cc["spec"]["source"]["sha256"],
        "{v}"
    );
    let maturity = (tally_protocol::now_ms() + 86_400_000).to_string();
    let out = tallyctl(
        dir,
        &[
            "--org",
            "core-enterprise",
            "chaincode",
            "invoke",
            "-c",
            "receivables",
            "receivables",
            "issue",
            "R1",
            "supplier-tier1",
            "1000",
            &maturity,
        ],
    )
    .expect("invoke issue");
    assert!(out.contains("committed tx"), "{out}");
    let out = tallyctl(
        dir,
        &[
            "--org",
            "supplier-tier2",
            "chaincode",
            "query",
            "-c",
            "receivables",
            "receivables",
            "get",
            "R1",
        ],
    )
    .expect("query");
    assert!(out.contains("\"holder\":\"supplier-tier1\""), "{out}");
}

/// Deleting the example's Chaincode (`deletionPolicy` defaults to `Retire`): the finalizer
/// holds the object until the ledger shows the chaincode retired (every organization's view
/// says so as soon as it is gone), then a call is refused as retired while its state stays
/// readable.
fn chaincode_deletion_step(cp: &ControlPlane, dir: &Path) {
    let cc = get_json(cp, &["-n", NS, "get", "chaincode", "receivables"]);
    assert_eq!(
        cc["metadata"]["finalizers"],
        serde_json::json!(["tally.dev/cleanup"]),
        "{cc}"
    );
    let list = |org: &str| -> Value {
        let out = tallyctl(
            dir,
            &[
                "--org",
                org,
                "--output",
                "json",
                "chaincode",
                "list",
                "-c",
                "receivables",
            ],
        )
        .expect("chaincode list");
        serde_json::from_str(&out).expect("JSON")
    };
    assert!(
        list("core-enterprise")[0]["retired"].is_null(),
        "retired before the deletion"
    );
    cp.kubectl_ok(&[
        "-n",
        NS,
        "delete",
        "chaincode",
        "receivables",
        "--wait=false",
    ]);
    wait_for(
        "the deleted Chaincode to go",
        Duration::from_secs(120),
        || {
            let left = cp.kubectl_ok(&[
                "-n",
                NS,
                "get",
                "chaincode",
                "receivables",
                "--ignore-not-found",
                "-o",
                "name",
            ]);
            if left.trim().is_empty() {
                Ok(())
            } else {
                Err(left)
            }
        },
    );
    // The object is gone: every member's nodes already list the definition retired.
    for org in [
        "core-enterprise",
        "supplier-tier1",
        "supplier-tier2",
        "bank",
    ] {
        let v = list(org);
        assert_eq!(v[0]["name"], "receivables", "{org}: {v}");
        assert_eq!(v[0]["retired"]["sequence"], 1, "{org}: {v}");
    }
    let events = cp.kubectl_ok(&[
        "-n",
        NS,
        "get",
        "events",
        "--field-selector",
        "reason=Retired",
        "-o",
        "json",
    ]);
    assert!(
        events.contains("chaincode receivables is retired on channel receivables"),
        "{events}"
    );
    let maturity = (tally_protocol::now_ms() + 86_400_000).to_string();
    let refused = tallyctl(
        dir,
        &[
            "--org",
            "core-enterprise",
            "chaincode",
            "invoke",
            "-c",
            "receivables",
            "receivables",
            "issue",
            "R2",
            "supplier-tier1",
            "500",
            &maturity,
        ],
    );
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("rejected") && e.contains("retired")),
        "a call of the retired chaincode: {refused:?}"
    );
    let out = tallyctl(
        dir,
        &[
            "--org",
            "supplier-tier2",
            "chaincode",
            "query",
            "-c",
            "receivables",
            "receivables",
            "get",
            "R1",
        ],
    );
    assert!(
        out.as_ref()
            .is_ok_and(|o| o.contains("\"holder\":\"supplier-tier1\"")),
        "its state stays readable: {out:?}"
    );
}
