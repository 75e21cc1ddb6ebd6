//! The supply-chain-finance example split in two, as the suites that run one consortium over
//! two sides use it: cluster A hosts the core enterprise and both suppliers (every Peer
//! exposed), the other side (a second cluster, or `tallyctl up` on a laptop) hosts the bank.
//! What both sides do the same way lives here: applying, the plugin's bundle export and
//! import, the published genesis and approvals, and writes and reads through a profile.

use crate::operator::{get_json, ready, tallyctl_in as tallyctl, wait_for};
use crate::{tallyctl_bin, ControlPlane};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const NS: &str = "scf";
pub const CONSORTIUM: &str = "supply-chain-finance";
pub const CHANNEL: &str = "receivables";

/// Cluster A: the core enterprise (two voters), the tier-1 supplier's observer and the
/// tier-2 supplier (no node). Membership changes need every member: the bank too.
pub const SIDE_A: &str = "\
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {name: supply-chain-finance}
spec:
  organizations:
    - {name: core-enterprise}
    - {name: supplier-tier1}
    - {name: supplier-tier2}
  policies:
    membershipApproval: {rule: All}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: core-enterprise-peer}
spec:
  consortium: supply-chain-finance
  organization: core-enterprise
  replicas: 2
  exposure: {type: LoadBalancer, domain: a.scf.example}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: supplier-tier1-observer}
spec:
  consortium: supply-chain-finance
  organization: supplier-tier1
  replicas: 1
  role: observer
  exposure: {type: LoadBalancer, domain: a.scf.example}
";

/// The channel as both sides describe it: the same members and nodes in the same order (a
/// Peer of this cluster stands for its nodes; the other cluster's nodes are named).
pub fn channel(side_a: bool, members: &[&str]) -> String {
    let (consenters, observers) = if side_a {
        (
            "[core-enterprise-peer, bank-peer-0]",
            "[supplier-tier1-observer]",
        )
    } else {
        (
            "[core-enterprise-peer-0, core-enterprise-peer-1, bank-peer]",
            "[supplier-tier1-observer-0]",
        )
    };
    format!(
        "apiVersion: tally.dev/v1alpha1
kind: Channel
metadata: {{name: {CHANNEL}}}
spec:
  consortium: {CONSORTIUM}
  members: [{}]
  consenters: {consenters}
  observers: {observers}
",
        members.join(", ")
    )
}

pub const MEMBERS: [&str; 4] = [
    "core-enterprise",
    "supplier-tier1",
    "supplier-tier2",
    "bank",
];

pub fn apply(cp: &ControlPlane, yaml: &str) {
    let r = cp.kubectl_stdin(&["-n", NS, "apply", "-f", "-"], Some(yaml));
    assert!(r.ok, "kubectl apply: {}{}", r.stdout, r.stderr);
}

/// `kubectl tally ARGS` against `cp`, the plugin found on the PATH as a user installs it.
pub fn plugin(cp: &ControlPlane, args: &[&str]) -> Result<String, String> {
    let dir = tallyctl_bin()
        .parent()
        .expect("the binaries' folder")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(dir.join("kubectl-tally"))
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "kubectl tally {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub fn the_channel(cp: &ControlPlane) -> Value {
    get_json(cp, &["-n", NS, "get", "channel", CHANNEL])
}

pub fn reason(obj: &Value) -> String {
    ready(obj).map(|r| r.0 + "/" + &r.1).unwrap_or_default()
}

/// Exports `org` from `from` (once its nodes report their addresses) into `dir`.
pub fn export(from: &ControlPlane, org: &str, dir: &Path) -> PathBuf {
    let file = dir.join(format!("{org}.bundle.yaml"));
    let file_s = file.display().to_string();
    wait_for(&format!("{org}'s bundle"), Duration::from_secs(180), || {
        plugin(from, &["-n", NS, "org", "export", org, "--out", &file_s])
    });
    let text = std::fs::read_to_string(&file).expect("the bundle");
    assert!(
        !text.contains("PRIVATE KEY"),
        "a bundle carries no key: {text}"
    );
    file
}

pub fn import(into: &ControlPlane, bundle: &Path) {
    plugin(
        into,
        &["-n", NS, "org", "import", &bundle.display().to_string()],
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The genesis each side publishes, by hash, once both have planned the channel.
pub fn genesis_hash(cp: &ControlPlane) -> Result<String, String> {
    let cm = cp.kubectl(&[
        "-n",
        NS,
        "get",
        "configmap",
        &format!("{CHANNEL}-genesis"),
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&cm.stdout).map_err(|_| "no genesis ConfigMap yet")?;
    v["metadata"]["annotations"]["tally.dev/genesis-hash"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "no hash yet".into())
}

/// The approvals an operator made for its own organizations, as published beside the genesis.
pub fn published_approvals(cp: &ControlPlane) -> Vec<Value> {
    let cm = get_json(
        cp,
        &["-n", NS, "get", "configmap", &format!("{CHANNEL}-genesis")],
    );
    let text = cm["data"]["approvals.yaml"].as_str().unwrap_or("[]");
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("approvals.yaml: {e}: {text}"))
}

pub fn give_approvals(cp: &ControlPlane, approvals: &[Value]) {
    cp.kubectl_ok(&[
        "-n",
        NS,
        "patch",
        "channel",
        CHANNEL,
        "--type=merge",
        "-p",
        &serde_json::json!({"spec": {"genesisApprovals": approvals}}).to_string(),
    ]);
}

/// The channel's status on one side once it is Ready with every node at some height, the
/// other side's node listed as remote.
pub fn formed(cp: &ControlPlane, remote: &[&str]) -> Value {
    wait_for("the channel Ready", Duration::from_secs(300), || {
        let ch = the_channel(cp);
        let nodes = ch["status"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let remote_ok = remote.iter().all(|r| {
            nodes.iter().any(|n| {
                n["name"] == *r && n["remote"] == true && n["height"].as_u64().unwrap_or(0) > 0
            })
        });
        if reason(&ch).starts_with("True/") && remote_ok && nodes.len() == 4 {
            Ok(ch)
        } else {
            Err(format!("{}: nodes {}", reason(&ch), ch["status"]["nodes"]))
        }
    })
}

pub fn put(profile: &Path, org: &str, key: &str, value: &str) {
    wait_for(
        &format!("{org} writes {key}"),
        Duration::from_secs(120),
        || {
            tallyctl(
                profile,
                &["--org", org, "tx", "put", "--channel", CHANNEL, key, value],
            )
        },
    );
}

pub fn get(profile: &Path, org: &str, key: &str, value: &str) {
    wait_for(
        &format!("{org} reads {key}"),
        Duration::from_secs(120),
        || {
            let out = tallyctl(
                profile,
                &["--org", org, "tx", "get", "--channel", CHANNEL, key],
            )?;
            if out.contains(value) {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
}
