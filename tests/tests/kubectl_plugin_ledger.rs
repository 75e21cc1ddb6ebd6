//! The kubectl plugin's ledger commands on a real control plane with real nodes: `kubectl
//! tally tx put/get` through the API server's pod proxy, a proposal made with tallyctl (through
//! the plugin's passthrough) listed by `kubectl tally proposals` as 1/2 and in `status`,
//! `kubectl tally approve` as the second organization applying it (the Channel's configuration
//! sequence moves), `reject` with an organization's own key folder, and clear errors.
//!
//! The API server refuses to proxy to loopback pod addresses, so the suite runs in a private
//! network namespace whose `lo` also carries 10.66.0.0/16, and the pod runner hands out those
//! addresses. Needs root for the namespace (skips without, fails under `CI`).
//!
//! Run alone: build tally-node, tallyctl and tally-operator, then
//! `cargo test -p tally-tests --test kubectl_plugin_ledger -- --nocapture`.

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tally_tests::operator::{control_plane_with_crds, get_json, start_runner, wait_for, Operator};
use tally_tests::{tallyctl_bin, ControlPlane};

const NS: &str = "ledger";
const PREFIX: &str = "10.66";

const MANIFEST: &str = "\
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {name: trade}
spec:
  organizations: [{name: org1}, {name: org2}]
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: org1-peer}
spec: {consortium: trade, organization: org1, replicas: 1}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: org2-peer}
spec: {consortium: trade, organization: org2, replicas: 1}
---
apiVersion: tally.dev/v1alpha1
kind: Channel
metadata: {name: invoices}
spec:
  consortium: trade
  members: [org1, org2]
  consenters: [org1-peer, org2-peer]
";

/// `kubectl tally ARGS` as a user who put the plugin on the PATH: (success, stdout, stderr).
fn plugin(cp: &ControlPlane, args: &[&str]) -> (bool, String, String) {
    let dir = tallyctl_bin()
        .parent()
        .expect("the binaries' folder")
        .to_path_buf();
    assert!(
        dir.join("kubectl-tally").exists(),
        "kubectl-tally is not built next to tallyctl: cargo build -p tallyctl --bins"
    );
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl =
        tally_tests::kubectl_bin(&tally_tests::k8s_bin_dir().expect("Kubernetes binaries"));
    let out = Command::new(kubectl)
        .arg("tally")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .expect("kubectl runs");
    let r = (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("$ kubectl tally {}\n{}{}", args.join(" "), r.1, r.2);
    r
}

fn plugin_ok(cp: &ControlPlane, args: &[&str]) -> String {
    let (ok, out, err) = plugin(cp, args);
    assert!(ok, "kubectl tally {} failed:\n{out}{err}", args.join(" "));
    out
}

fn all_ready(cp: &ControlPlane) -> Result<(), String> {
    tally_tests::operator::all_ready(cp, NS, 4)
}

fn config_sequence(cp: &ControlPlane) -> u64 {
    let c: Value = get_json(cp, &["-n", NS, "get", "channel", "invoices"]);
    c["status"]["configSequence"].as_u64().unwrap_or(0)
}

/// The hash of the channel's open proposal with `description`, from `proposals -o json`.
fn proposal_hash(cp: &ControlPlane, description: &str) -> String {
    let out = plugin_ok(cp, &["proposals", "invoices", "-n", NS, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    v["invoices"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["description"] == description))
        .and_then(|p| p["hash"].as_str())
        .unwrap_or_else(|| panic!("no proposal {description:?} in {out}"))
        .to_string()
}

/// Proposes the channel's configuration with `max_txs` as org1's admin, through the
/// plugin's passthrough to tallyctl with an exported profile.
fn propose(cp: &ControlPlane, profile: &Path, max_txs: u64, description: &str) {
    let data = format!("--data-dir={}", profile.display());
    let config = plugin_ok(
        cp,
        &[
            "channel",
            "config",
            "--channel",
            "invoices",
            &data,
            "--org",
            "org1",
        ],
    );
    let mut next: Value = serde_json::from_str(&config).expect("configuration JSON");
    next["batch"]["max_txs"] = Value::from(max_txs);
    let file = profile.join(format!("next-{max_txs}.json"));
    std::fs::write(&file, next.to_string()).expect("write the configuration");
    plugin_ok(
        cp,
        &[
            "proposal",
            "create",
            "--channel",
            "invoices",
            "--config",
            file.to_str().expect("UTF-8"),
            "--description",
            description,
            &data,
            "--org",
            "org1",
            "--as",
            "admin",
        ],
    );
}

#[test]
fn kubectl_tally_reaches_the_ledger_through_the_api_server() {
    tally_tests::netns::in_private_netns("kubectl_plugin_ledger", || async {
        // lo is down in a new namespace; 10.66/16 on lo is local as 127/8 is, but not
        // "loopback" to the API server's proxy check.
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", &format!("{PREFIX}.0.254/16"), "dev", "lo"][..],
        ] {
            let st = Command::new("ip").args(args).status().expect("ip runs");
            assert!(st.success(), "ip {args:?}");
        }
        let cp =
            match tokio::task::spawn_blocking(|| control_plane_with_crds("kubectl-ledger")).await {
                Ok(Some(cp)) => Arc::new(cp),
                Ok(None) => return,
                Err(e) => panic!("control plane: {e}"),
            };
        cp.kubectl_ok(&["create", "namespace", NS]);
        let mut runner = start_runner(&cp, PREFIX).await;
        let c = cp.clone();
        tokio::task::spawn_blocking(move || steps(c))
            .await
            .expect("plugin steps");
        runner.shutdown().await;
    });
}

fn steps(cp: Arc<ControlPlane>) {
    let _op = Operator::start(&cp, "op-1");
    let r = cp.kubectl_stdin(
        &["-n", NS, "apply", "--server-side", "-f", "-"],
        Some(MANIFEST),
    );
    assert!(r.ok, "apply: {}", r.stderr);
    wait_for("every resource Ready", Duration::from_secs(240), || {
        all_ready(&cp)
    });

    // A write and a read through the API server, signed by each organization's identity
    // from the cluster.
    let out = plugin_ok(
        &cp,
        &[
            "tx", "put", "invoices", "inv-1", "100 EUR", "--org", "org1", "-n", NS,
        ],
    );
    assert!(out.starts_with("committed tx "), "{out}");
    let out = plugin_ok(
        &cp,
        &["tx", "get", "invoices", "inv-1", "--org", "org2", "-n", NS],
    );
    assert_eq!(out.trim(), "100 EUR");

    // The signed read covers the path and query the node sees: a key that needs
    // percent-encoding crosses the proxy unchanged.
    let odd = "inv 2/é?&=";
    plugin_ok(
        &cp,
        &[
            "tx", "put", "invoices", odd, "50 EUR", "--org", "org2", "-n", NS,
        ],
    );
    let out = plugin_ok(&cp, &["tx", "get", "invoices", odd, "-n", NS]);
    assert_eq!(out.trim(), "50 EUR");

    // Errors say what is there and what is missing.
    let (ok, _, err) = plugin(&cp, &["tx", "get", "payments", "inv-1", "-n", NS]);
    assert!(!ok);
    assert!(
        err.contains("no Channel \"payments\" in namespace ledger (there: invoices)"),
        "{err}"
    );
    let (ok, _, err) = plugin(
        &cp,
        &["tx", "put", "invoices", "k", "v", "--org", "bank", "-n", NS],
    );
    assert!(!ok);
    assert!(
        err.contains("no client identity for organization \"bank\" in the cluster")
            && err.contains("--identity DIR"),
        "{err}"
    );
    let (ok, _, err) = plugin(&cp, &["tx", "get", "invoices", "nothing", "-n", NS]);
    assert!(!ok);
    assert!(err.contains("key \"nothing\" does not exist"), "{err}");

    // A proposal made with tallyctl through the passthrough shows as 1 of 2.
    let profile = cp.dir().join("profile");
    plugin_ok(
        &cp,
        &[
            "profile",
            "export",
            &format!("--data-dir={}", profile.display()),
            "-n",
            NS,
            "--consortium",
            "trade",
            "--address",
            "pod-ip",
        ],
    );
    // tallyctl's other tx commands pass through, with the profile.
    let out = plugin_ok(
        &cp,
        &[
            "tx",
            "history",
            "--channel",
            "invoices",
            "inv-1",
            &format!("--data-dir={}", profile.display()),
            "--org",
            "org2",
        ],
    );
    assert!(out.contains("100 EUR"), "{out}");
    let before = config_sequence(&cp);
    propose(&cp, &profile, 100, "smaller blocks");
    let hash = proposal_hash(&cp, "smaller blocks");
    let out = plugin_ok(&cp, &["proposals", "invoices", "-n", NS]);
    assert!(
        out.contains(&format!(
            "{}  open     approvals 1/2 (by org1), missing org2  proposed by org1: smaller blocks",
            &hash[..12]
        )),
        "{out}"
    );
    let out = plugin_ok(&cp, &["status", "trade", "-n", NS]);
    assert!(out.contains("1 pending proposal"), "{out}");
    assert!(
        out.contains(&format!("{} approvals 1/2, missing org2", &hash[..12])),
        "{out}"
    );
    assert!(out.contains("org1/admin/admin  expires "), "{out}");

    // Approving with an unknown prefix says which proposals there are.
    let (ok, _, err) = plugin(
        &cp,
        &["approve", "invoices", "ffff", "--org", "org2", "-n", NS],
    );
    assert!(!ok);
    assert!(
        err.contains("no proposal ffff in the channel (there: "),
        "{err}"
    );

    // org2's admin approves: the change applies and the configuration sequence moves.
    let out = plugin_ok(
        &cp,
        &[
            "approve",
            "invoices",
            &hash[..12],
            "--org",
            "org2",
            "-n",
            NS,
        ],
    );
    assert!(out.starts_with("approved in block "), "{out}");
    assert!(
        out.contains("applied  approvals 2/2 (by org1, org2)"),
        "{out}"
    );
    wait_for(
        "the Channel's configuration sequence to move",
        Duration::from_secs(120),
        || {
            let now = config_sequence(&cp);
            if now > before {
                Ok(())
            } else {
                Err(format!("configSequence still {now}"))
            }
        },
    );
    let out = plugin_ok(&cp, &["status", "trade", "-n", NS]);
    assert!(out.contains("no pending proposals"), "{out}");

    // An organization that keeps its own key rejects with it: the proposal can no longer be
    // met and is rejected.
    propose(&cp, &profile, 50, "even smaller blocks");
    let hash = proposal_hash(&cp, "even smaller blocks");
    let own_key = profile.join("orgs/org2/admins/admin");
    // A folder of one organization does not sign for another.
    let (ok, _, err) = plugin(
        &cp,
        &[
            "approve",
            "invoices",
            &hash,
            "--org",
            "org1",
            "--identity",
            own_key.to_str().expect("UTF-8"),
            "-n",
            NS,
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("belongs to organization \"org2\", not \"org1\""),
        "{err}"
    );
    let out = plugin_ok(
        &cp,
        &[
            "reject",
            "invoices",
            &hash,
            "--identity",
            own_key.to_str().expect("UTF-8"),
            "-n",
            NS,
        ],
    );
    assert!(out.starts_with("rejected in block "), "{out}");
    assert!(
        out.contains("rejected approvals 1/2 (by org1), rejected by org2"),
        "{out}"
    );
}
