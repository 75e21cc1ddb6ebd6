//! Certificates that renew themselves on a real control plane: a consortium whose certificates
//! last four minutes, under a steady writer. Every node, admin and client identity is issued
//! afresh once it falls due; each node's pod is replaced one at a time (leadership handed
//! over first) and comes back serving its new certificate; nothing acknowledged is lost and
//! the nodes agree on height and state.
//!
//! Run alone: build tally-node, tallyctl and tally-operator, then
//! `cargo test -p tally-tests --test operator_renewal -- --nocapture`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_tests::operator::{
    all_ready, control_plane_with_crds, get_json, start_runner, tallyctl_in as tallyctl, wait_for,
    Operator,
};
use tally_tests::ControlPlane;

/// The profile as the cluster holds it now: renewed client certificates are picked up by
/// exporting again, as a tenant's tooling would.
fn export_profile(cp: &ControlPlane, dir: &Path) -> Result<(), String> {
    tally_tests::operator::export_profile(cp, dir, NS, CONSORTIUM)
}

const NS: &str = "renew";
const CONSORTIUM: &str = "short-lived";
const NODES: [&str; 3] = ["org1-peer-0", "org1-peer-1", "org2-peer-0"];

const MANIFEST: &str = "\
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {name: short-lived}
spec:
  organizations: [{name: org1}, {name: org2}]
  certificates: {validity: 4m, renewBefore: 2m30s}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: org1-peer}
spec: {consortium: short-lived, organization: org1, replicas: 2}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: org2-peer}
spec: {consortium: short-lived, organization: org2, replicas: 1}
---
apiVersion: tally.dev/v1alpha1
kind: Channel
metadata: {name: ledger}
spec:
  consortium: short-lived
  members: [org1, org2]
  consenters: [org1-peer, org2-peer]
";

/// Each identity's `notAfter` in the Consortium status, by `org/role/name`.
fn identities(cp: &ControlPlane) -> BTreeMap<String, i64> {
    let c = get_json(cp, &["-n", NS, "get", "consortium", CONSORTIUM]);
    c["status"]["identities"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|i| {
            let name = i["name"].as_str()?.to_string();
            let t: jiff::Timestamp = i["notAfter"].as_str()?.parse().ok()?;
            Some((name, t.as_second()))
        })
        .collect()
}

/// The `notAfter` of the certificate a node serves on its client API, read in a handshake.
fn served_not_after(cp: &ControlPlane, node: &str) -> Result<i64, String> {
    let der = tally_tests::operator::served_cert(cp, NS, node)?;
    let info = tally_protocol::identity::inspect(&der).map_err(|e| e.to_string())?;
    Ok(info.not_after)
}

/// Writes `k-<i>` as org1's client until told to stop, exporting the profile again when a
/// write fails (a node moved to a new pod, or the client certificate was renewed).
struct Writer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<String>, usize)>,
}

impl Writer {
    fn start(cp: Arc<ControlPlane>, dir: PathBuf) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut acked, mut failed) = (Vec::new(), 0);
            let mut i = 0;
            while !s.load(Ordering::Relaxed) {
                let k = format!("k-{i}");
                let put = ["--org", "org1", "tx", "put", "--channel", "ledger", &k, "v"];
                match tallyctl(&dir, &put) {
                    Ok(_) => acked.push(k),
                    Err(_) => {
                        failed += 1;
                        std::thread::sleep(Duration::from_millis(300));
                        let _ = export_profile(&cp, &dir);
                    }
                }
                i += 1;
            }
            (acked, failed)
        });
        Writer { stop, thread }
    }

    fn finish(self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("writer")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renew_one_node_at_a_time_under_a_writer() {
    let cp = match tokio::task::spawn_blocking(|| control_plane_with_crds("operator-renewal")).await
    {
        Ok(Some(cp)) => Arc::new(cp),
        Ok(None) => return,
        Err(e) => panic!("control plane: {e}"),
    };
    cp.kubectl_ok(&["create", "namespace", NS]);
    let mut runner = start_runner(&cp, "127.64").await;
    let c = cp.clone();
    tokio::task::spawn_blocking(move || steps(c))
        .await
        .expect("renewal steps");
    runner.shutdown().await;
}

fn steps(cp: Arc<ControlPlane>) {
    let mut op = Operator::start(&cp, "op-1");
    let r = cp.kubectl_stdin(
        &["-n", NS, "apply", "--server-side", "-f", "-"],
        Some(MANIFEST),
    );
    assert!(r.ok, "apply: {}", r.stderr);
    wait_for("every resource Ready", Duration::from_secs(240), || {
        all_ready(&cp, NS, 4)
    });

    // What each identity holds before any renewal: 2 admins, 2 clients, 3 nodes.
    let first = wait_for("identities in status", Duration::from_secs(30), || {
        let ids = identities(&cp);
        if ids.len() == 7 {
            Ok(ids)
        } else {
            Err(format!("{ids:?}"))
        }
    });
    eprintln!("first certificates: {first:?}");
    let served_first: BTreeMap<&str, i64> = NODES
        .iter()
        .map(|n| (*n, served_not_after(&cp, n).expect("served certificate")))
        .collect();

    let dir = cp.dir().join("profile");
    export_profile(&cp, &dir).expect("profile export");
    let writer = Writer::start(cp.clone(), dir.clone());

    // Every identity renewed at least once, and every node back serving a renewed one.
    let t = Instant::now();
    let renewed = wait_for(
        "every certificate renewed and served",
        Duration::from_secs(480),
        || {
            let now = identities(&cp);
            let stale: Vec<&String> = first
                .iter()
                .filter(|(k, before)| now.get(*k).is_none_or(|after| after <= before))
                .map(|(k, _)| k)
                .collect();
            if !stale.is_empty() {
                return Err(format!("not renewed yet: {stale:?}"));
            }
            for n in NODES {
                let served = served_not_after(&cp, n)?;
                if served <= served_first[n] {
                    return Err(format!("{n} still serves its first certificate"));
                }
            }
            Ok(now)
        },
    );
    eprintln!(
        "renewed after {:.0}s: {renewed:?}",
        t.elapsed().as_secs_f64()
    );
    wait_for(
        "every resource Ready again",
        Duration::from_secs(180),
        || all_ready(&cp, NS, 4),
    );
    let (acked, failed) = writer.finish();
    assert!(
        acked.len() > 20,
        "writes acknowledged through the renewals: {} ({failed} failed)",
        acked.len()
    );

    // Nothing acknowledged is lost, read as the other organization with a fresh profile.
    export_profile(&cp, &dir).expect("profile export");
    for k in &acked {
        let v = tallyctl(
            &dir,
            &["--org", "org2", "tx", "get", "--channel", "ledger", k],
        )
        .unwrap_or_else(|e| panic!("{k}: {e}"));
        assert!(v.contains('v'), "{k}: {v}");
    }
    // Heights and state roots agree, and the channel still has its three voters.
    wait_for("the nodes to agree", Duration::from_secs(60), || {
        let s = tallyctl(
            &dir,
            &[
                "--org",
                "org1",
                "--output",
                "json",
                "status",
                "--channel",
                "ledger",
            ],
        )?;
        let nodes: Value = serde_json::from_str(&s).map_err(|e| e.to_string())?;
        let heights: Vec<u64> = nodes["nodes"]
            .as_array()
            .map(|a| a.iter().filter_map(|n| n["height"].as_u64()).collect())
            .unwrap_or_default();
        let ch = get_json(&cp, &["-n", NS, "get", "channel", "ledger"]);
        if heights.len() != 3 || heights.iter().any(|h| *h != heights[0]) {
            return Err(format!("heights {heights:?}"));
        }
        if ch["status"]["stateRootsAgree"] != true {
            return Err(format!(
                "stateRootsAgree {}",
                ch["status"]["stateRootsAgree"]
            ));
        }
        let voters = ch["status"]["voters"].as_array().map_or(0, Vec::len);
        if voters != 3 {
            return Err(format!("voters {}", ch["status"]["voters"]));
        }
        Ok(())
    });
    eprintln!(
        "{} writes acknowledged during the renewals ({failed} refused or retried), all read back",
        acked.len()
    );
    op.stop();
}
