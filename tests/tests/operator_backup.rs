//! Backups on the real control plane, to a real S3-compatible server (Versity Gateway):
//! a `Backup` of a channel while a writer runs; then every node of the channel loses its
//! volume, the Peers restore from that Backup (`spec.restore`), and the channel comes back
//! with every write acknowledged before the backup and commits again; a Peer made for an
//! investigation restores the Backup read-only and serves the past beside it; meanwhile a
//! `BackupSchedule` makes a backup every minute and prunes by retention, in the store too.
//!
//! Run alone: build tally-node, tallyctl and tally-operator, then
//! `cargo test -p tally-tests --test operator_backup -- --nocapture`.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tally_tests::operator::{
    all_ready, control_plane_with_crds, export_profile, get_json, start_runner,
    tallyctl_in as tallyctl, wait_for, Operator,
};
use tally_tests::s3::S3Server;
use tally_tests::ControlPlane;

const NS: &str = "vault";
const CONSORTIUM: &str = "evidence";
const BUCKET: &str = "tally-backups";
const NODES: [&str; 3] = ["org1-peer-0", "org1-peer-1", "org2-peer-0"];

const MANIFEST: &str = "\
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {name: evidence}
spec:
  organizations:
    - {name: org1}
    - {name: org2}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: org1-peer}
spec: {consortium: evidence, organization: org1, replicas: 2}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: org2-peer}
spec: {consortium: evidence, organization: org2, replicas: 1}
---
apiVersion: tally.dev/v1alpha1
kind: Channel
metadata: {name: ledger}
spec:
  consortium: evidence
  members: [org1, org2]
  consenters: [org1-peer, org2-peer]
";

fn apply(cp: &ControlPlane, yaml: &str) {
    tally_tests::operator::apply(cp, NS, yaml)
}

fn backup(cp: &ControlPlane, name: &str) -> Value {
    get_json(cp, &["-n", NS, "get", "backup", name])
}

/// Keys a writer had acknowledged, in order.
struct Writer {
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(profile: &Path) -> Writer {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s, dir) = (acked.clone(), stop.clone(), profile.to_path_buf());
        let thread = std::thread::spawn(move || {
            let mut i = 0u32;
            while !s.load(Ordering::Relaxed) {
                let key = format!("k{i:05}");
                let put = [
                    "--org",
                    "org1",
                    "tx",
                    "put",
                    "--channel",
                    "ledger",
                    &key,
                    "v",
                ];
                if tallyctl(&dir, &put).is_ok() {
                    a.lock().expect("acked").push(key);
                    i += 1;
                }
            }
        });
        Writer {
            acked,
            stop,
            thread: Some(thread),
        }
    }

    fn acked(&self) -> Vec<String> {
        self.acked.lock().expect("acked").clone()
    }

    fn stop(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("writer");
        }
        self.acked()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_lost_on_every_node_comes_back_from_its_backup() {
    let cp = match tokio::task::spawn_blocking(|| control_plane_with_crds("operator-backup")).await
    {
        Ok(Some(cp)) => Arc::new(cp),
        Ok(None) => return,
        Err(e) => panic!("control plane: {e}"),
    };
    cp.kubectl_ok(&["create", "namespace", NS]);
    let mut runner = start_runner(&cp, "127.67").await;
    let volumes: Vec<PathBuf> = NODES
        .iter()
        .map(|n| runner.pvc_dir(NS, &format!("data-{n}")))
        .collect();
    let c = cp.clone();
    tokio::task::spawn_blocking(move || steps(&c, &volumes))
        .await
        .expect("backup steps");
    runner.shutdown().await;
}

fn steps(cp: &ControlPlane, volumes: &[PathBuf]) {
    let s3 = S3Server::start(&cp.dir().join("s3"), &[BUCKET]);
    let mut op = Operator::start(cp, "op-1");
    apply(cp, MANIFEST);
    wait_for("every resource Ready", Duration::from_secs(240), || {
        all_ready(cp, NS, 4)
    });
    let mut secret = vec!["-n", NS, "create", "secret", "generic", "s3-creds"];
    let literals: Vec<String> = s3
        .env()
        .into_iter()
        .map(|(k, v)| format!("--from-literal={k}={v}"))
        .collect();
    secret.extend(literals.iter().map(String::as_str));
    cp.kubectl_ok(&secret);

    // A schedule from the start: a backup every minute, two kept.
    apply(
        cp,
        &format!(
            "apiVersion: tally.dev/v1alpha1
kind: BackupSchedule
metadata: {{name: every-minute}}
spec:
  channel: ledger
  schedule: '* * * * *'
  destination: {{url: 's3://{BUCKET}/scheduled', credentialsSecret: s3-creds}}
  retention: {{count: 2}}
"
        ),
    );

    let profile = cp.dir().join("profile");
    export_profile(cp, &profile, NS, CONSORTIUM).expect("profile export");
    let writer = Writer::start(&profile);
    wait_for("20 acknowledged writes", Duration::from_secs(120), || {
        let n = writer.acked().len();
        if n >= 20 {
            Ok(())
        } else {
            Err(format!("{n} so far"))
        }
    });
    // Every write acknowledged before the Backup exists is at or below its height.
    let before = writer.acked();
    apply(
        cp,
        &format!(
            "apiVersion: tally.dev/v1alpha1
kind: Backup
metadata: {{name: before-disaster}}
spec:
  channel: ledger
  destination: {{url: 's3://{BUCKET}/main', credentialsSecret: s3-creds}}
"
        ),
    );
    let done = wait_for("the Backup Succeeded", Duration::from_secs(180), || {
        let b = backup(cp, "before-disaster");
        match b["status"]["phase"].as_str() {
            Some("Succeeded") => Ok(b),
            Some("Failed") => panic!("the backup failed: {}", b["status"]),
            _ => Err(format!("{}", b["status"])),
        }
    });
    let during = writer.stop();
    let st = &done["status"];
    let height = st["height"].as_u64().expect("height");
    assert!(height >= 2, "{st}");
    assert!(st["bytesStored"].as_u64().unwrap_or(0) > 0, "{st}");
    assert!(
        !st["manifest"].as_str().unwrap_or_default().is_empty(),
        "{st}"
    );
    assert!(
        during.len() > before.len(),
        "the writer kept writing during the backup ({} then {})",
        before.len(),
        during.len()
    );
    let cols = cp.kubectl_ok(&["-n", NS, "get", "backup", "before-disaster"]);
    assert!(
        cols.contains("Succeeded") && cols.contains("ledger"),
        "{cols}"
    );
    assert_eq!(
        s3.objects(BUCKET, "main", "manifests/").len(),
        1,
        "one manifest in the repository"
    );

    // The disaster: every node of the channel loses its volume.
    op.stop();
    // With the operator stopped, nothing brings the node pods back.
    cp.kubectl_ok(&[
        "-n",
        NS,
        "delete",
        "pods",
        "-l",
        "app.kubernetes.io/name=tally-node",
        "--wait=false",
    ]);
    wait_for("every node pod gone", Duration::from_secs(120), || {
        let pods = get_json(cp, &["-n", NS, "get", "pods"]);
        match pods["items"].as_array().map(Vec::len) {
            Some(0) => Ok(()),
            n => Err(format!("{n:?} pods")),
        }
    });
    for v in volumes {
        assert!(v.is_dir(), "{} should be a node's volume", v.display());
        std::fs::remove_dir_all(v).expect("wipe the volume");
    }
    for peer in ["org1-peer", "org2-peer"] {
        cp.kubectl_ok(&[
            "-n",
            NS,
            "patch",
            "peer",
            peer,
            "--type=merge",
            "-p",
            r#"{"spec":{"restore":{"backup":"before-disaster"}}}"#,
        ]);
    }
    let mut op = Operator::start(cp, "op-2");
    // The resources' conditions still say Ready from before: what counts is the nodes.
    wait_for(
        "the three node pods Ready after the restore",
        Duration::from_secs(300),
        || {
            let pods = get_json(cp, &["-n", NS, "get", "pods"]);
            let ready: Vec<String> = pods["items"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|p| {
                            p["status"]["conditions"].as_array().is_some_and(|cs| {
                                cs.iter()
                                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
                            })
                        })
                        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if ready.len() == NODES.len() {
                Ok(())
            } else {
                Err(format!("ready: {ready:?}"))
            }
        },
    );
    wait_for(
        "the channel serving reads again",
        Duration::from_secs(180),
        || {
            tallyctl(
                &profile,
                &[
                    "--org",
                    "org2",
                    "tx",
                    "get",
                    "--channel",
                    "ledger",
                    &before[0],
                ],
            )
        },
    );
    wait_for(
        "every resource Ready after the restore",
        Duration::from_secs(180),
        || all_ready(cp, NS, 4),
    );
    let pod = get_json(cp, &["-n", NS, "get", "pod", NODES[0]]);
    let init = &pod["spec"]["initContainers"][0];
    let args: Vec<&str> = init["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        args.first() == Some(&"restore") && args.contains(&"ledger"),
        "{init}"
    );
    for key in &before {
        let v = tallyctl(
            &profile,
            &["--org", "org2", "tx", "get", "--channel", "ledger", key],
        )
        .unwrap_or_else(|e| panic!("{key} after the restore: {e}"));
        assert!(v.contains('v'), "{key}: {v}");
    }
    tallyctl(
        &profile,
        &[
            "--org",
            "org1",
            "tx",
            "put",
            "--channel",
            "ledger",
            "after",
            "restore",
        ],
    )
    .expect("the restored channel commits");
    let v = tallyctl(
        &profile,
        &["--org", "org2", "tx", "get", "--channel", "ledger", "after"],
    )
    .expect("read the new write");
    assert!(v.contains("restore"), "{v}");

    // Point in time: a Peer made for an investigation, listed by no channel, restores the
    // Backup read-only; its node serves the channel as it was at the backup's height (the
    // write above is not there), takes no writes, and the channel goes on beside it.
    apply(
        cp,
        "apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: audit}
spec:
  consortium: evidence
  organization: org2
  role: observer
  replicas: 1
  restore: {backup: before-disaster, readOnly: true}
",
    );
    let audit = wait_for(
        "the investigation node Ready",
        Duration::from_secs(240),
        || {
            let got = cp.kubectl(&["-n", NS, "get", "pod", "audit-0", "-o", "json"]);
            if !got.ok {
                return Err(got.stderr);
            }
            let pod: Value = serde_json::from_str(&got.stdout).map_err(|e| e.to_string())?;
            let ready = pod["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            match pod["status"]["podIP"].as_str() {
                Some(ip) if ready => Ok(format!("https://{ip}:{}", tally_planner::API_PORT)),
                _ => Err(format!("{}", pod["status"])),
            }
        },
    );
    let init_args = get_json(cp, &["-n", NS, "get", "pod", "audit-0"])["spec"]["initContainers"][0]
        ["args"]
        .to_string();
    assert!(init_args.contains("--read-only"), "{init_args}");
    // A profile exported now lists the investigation node, with the name its certificate
    // carries.
    let audit_profile = cp.dir().join("profile-audit");
    export_profile(cp, &audit_profile, NS, CONSORTIUM).expect("profile export");
    let listed = tally_client::Profile::load(&audit_profile).expect("profile");
    let audit = listed
        .nodes
        .iter()
        .find(|n| n.name == "audit-0")
        .map(|n| n.api_url.clone())
        .unwrap_or_else(|| panic!("audit-0 not in the profile (pod at {audit})"));
    let at_audit = |args: &[&str]| {
        let mut all = vec!["--node", audit.as_str(), "--org", "org2"];
        all.extend_from_slice(args);
        tallyctl(&audit_profile, &all)
    };
    let v = at_audit(&["tx", "get", "--channel", "ledger", &before[0]])
        .expect("read at the point in time");
    assert!(v.contains('v'), "{v}");
    let e = at_audit(&["tx", "get", "--channel", "ledger", "after"])
        .expect_err("a write after the backup is not there");
    assert!(e.contains("does not exist"), "{e}");
    let e = at_audit(&["tx", "put", "--channel", "ledger", "to-audit", "x"])
        .expect_err("the investigation node takes no writes");
    assert!(e.contains("read_only") || e.contains("read-only"), "{e}");
    tallyctl(
        &profile,
        &[
            "--org",
            "org1",
            "tx",
            "put",
            "--channel",
            "ledger",
            "beside",
            "audit",
        ],
    )
    .expect("the channel commits beside the investigation");

    // The schedule: more than two backups made over the run, at most two successful ones
    // kept, and the store holds exactly the manifests of the kept ones.
    let mut made = BTreeSet::new();
    wait_for("retention to prune", Duration::from_secs(240), || {
        let list = get_json(
            cp,
            &[
                "-n",
                NS,
                "get",
                "backups",
                "-l",
                "tally.dev/backup-schedule=every-minute",
            ],
        );
        let items = list["items"].as_array().cloned().unwrap_or_default();
        for b in &items {
            made.insert(
                b["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        let kept: Vec<&Value> = items
            .iter()
            .filter(|b| b["status"]["phase"] == "Succeeded")
            .filter(|b| b["metadata"]["deletionTimestamp"].is_null())
            .collect();
        let manifests = s3.objects(BUCKET, "scheduled", "manifests/").len();
        if made.len() >= 3 && kept.len() == 2 && manifests == 2 {
            Ok(())
        } else {
            Err(format!(
                "{} made, {} kept, {manifests} manifests stored",
                made.len(),
                kept.len()
            ))
        }
    });
    let sched = get_json(cp, &["-n", NS, "get", "backupschedule", "every-minute"]);
    assert_eq!(sched["status"]["kept"], 2, "{}", sched["status"]);
    assert!(
        op.metric(
            "tally_operator_backup_schedule_last_success_timestamp_seconds",
            &[("schedule", "every-minute")]
        )
        .unwrap_or(0.0)
            > 0.0
    );
    op.stop();
}
