//! A developer joins a cluster's consortium from a laptop: cluster A (control plane, operator,
//! pod runner) hosts the core enterprise and both suppliers of the supply-chain-finance
//! example, every Peer exposed; the bank runs on the "laptop", `tallyctl up` in a data
//! directory of its own, its node on a loopback address.
//!
//! - The laptop's first `up` names the organizations it waits for; it exports the bank's
//!   bundle, which `kubectl tally org import` makes an External member of the cluster's
//!   Consortium; the cluster's bundles (`kubectl tally org export`) go to the laptop's `up`.
//! - Both sides plan the same genesis: the hash the bank approves on the laptop is the one the
//!   operator publishes. The bank's approval goes into the Channel's `spec.genesisApprovals`,
//!   the operator's published `approvals.yaml` entries are the laptop's `--approval` files.
//! - The laptop's `up` completes; writes on either side read back on the other; the cluster's
//!   Channel status lists the laptop's node as remote with its height.
//! - The laptop stops (Ctrl-C): the cluster reports its node unreachable and commits on.
//!
//! Run alone: build tally-node, tallyctl (with kubectl-tally) and tally-operator, then
//! `cargo test -p tally-tests --test cluster_and_laptop -- --nocapture`.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use tally_tests::operator::{
    control_plane_with_crds, export_profile, start_runner, tallyctl_in, wait_for, Operator,
};
use tally_tests::scf_split::*;
use tally_tests::tallyctl_up::Up;
use tally_tests::{node_bin, tallyctl_bin};

/// The laptop's manifest: the same consortium, channel and node names as the cluster's; the
/// Peers of the cluster's organizations stand for the nodes their bundles list.
const LAPTOP: &str = "\
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {name: supply-chain-finance}
spec:
  organizations:
    - {name: core-enterprise}
    - {name: supplier-tier1}
    - {name: supplier-tier2}
    - {name: bank}
  policies:
    membershipApproval: {rule: All}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: core-enterprise-peer}
spec: {consortium: supply-chain-finance, organization: core-enterprise, replicas: 2}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: supplier-tier1-observer}
spec: {consortium: supply-chain-finance, organization: supplier-tier1, role: observer}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: bank-peer}
spec: {consortium: supply-chain-finance, organization: bank}
---
apiVersion: tally.dev/v1alpha1
kind: Channel
metadata: {name: receivables}
spec:
  consortium: supply-chain-finance
  members: [core-enterprise, supplier-tier1, supplier-tier2, bank]
  consenters: [core-enterprise-peer, bank-peer]
  observers: [supplier-tier1-observer]
";

/// `tallyctl ARGS` on the laptop: its exit code and both streams. The laptop's nodes resolve
/// the cluster's exposed names through `hosts` (its public DNS).
fn laptop(hosts: &Path, args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(tallyctl_bin())
        .args(args)
        .env("TALLY_NODE_BIN", node_bin())
        .env("TALLY_HOSTS_FILE", hosts)
        .stdin(Stdio::null())
        .output()
        .expect("run tallyctl");
    (
        o.status.code(),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_laptop_joins_a_clusters_consortium() {
    let Some(cp) = control_plane_with_crds("laptop") else {
        eprintln!("skipping: no Kubernetes binaries (TALLY_SKIP_K8S=1)");
        return;
    };
    let runner = start_runner(&cp, "127.74").await;
    let hosts = runner.hosts_path();
    let _op = Operator::start_with_env(&cp, "op", &[("TALLY_HOSTS_FILE", &s(&hosts))]);
    cp.kubectl_ok(&["create", "namespace", NS]);
    apply(&cp, SIDE_A);

    let work = tempfile::tempdir().expect("work dir");
    let root = work.path();
    let manifest = root.join("laptop.yaml");
    std::fs::write(&manifest, LAPTOP).expect("laptop manifest");
    let data = root.join("laptop");
    let (m, d) = (s(&manifest), s(&data));

    // The laptop comes up with the bank's node and waits for the cluster's bundles.
    let (code, out) = laptop(
        &hosts,
        &[
            "up",
            "-f",
            &m,
            "--data-dir",
            &d,
            "--no-console",
            "--external",
            "core-enterprise,supplier-tier1,supplier-tier2",
        ],
    );
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains("waits for the bundle"), "{out}");
    let bank = root.join("bank.bundle.yaml");
    let (code, out) = laptop(
        &hosts,
        &[
            "--data-dir",
            &d,
            "org",
            "export",
            "bank",
            "--out",
            &s(&bank),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    import(&cp, &bank);

    // The cluster's organizations go to the laptop; its `up` now waits for their approvals.
    let mut up: Vec<String> = ["up", "-f", &m].map(String::from).to_vec();
    for org in ["core-enterprise", "supplier-tier1", "supplier-tier2"] {
        up.extend(["-f".into(), s(&export(&cp, org, root))]);
    }
    up.extend(["--data-dir", &d, "--no-console"].map(String::from));
    let args: Vec<&str> = up.iter().map(String::as_str).collect();
    let (code, out) = laptop(&hosts, &args);
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains("needs the approval of its genesis"), "{out}");

    // The cluster plans the channel; the genesis is the laptop's, byte for byte.
    apply(&cp, &channel(true, &MEMBERS));
    let hash = wait_for(
        "the published genesis",
        std::time::Duration::from_secs(120),
        || genesis_hash(&cp),
    );
    let genesis = data.join("genesis").join(format!("{CHANNEL}.json"));
    let approval = root.join("bank-approval.json");
    let (code, out) = laptop(
        &hosts,
        &[
            "--data-dir",
            &d,
            "--org",
            "bank",
            "--as",
            "admin",
            "channel",
            "approve-genesis",
            "--genesis",
            &s(&genesis),
            "--out",
            &s(&approval),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    let bank_approval: Value =
        serde_json::from_str(&std::fs::read_to_string(&approval).expect("approval"))
            .expect("approval JSON");
    assert_eq!(
        bank_approval["genesis"], hash,
        "the laptop and the cluster must plan the same genesis"
    );
    give_approvals(&cp, &[bank_approval]);
    // The operator's approvals.yaml, as published, is the laptop's `--approval` file.
    assert_eq!(
        published_approvals(&cp).len(),
        3,
        "one per organization of the cluster"
    );
    let cm = tally_tests::operator::get_json(
        &cp,
        &["-n", NS, "get", "configmap", &format!("{CHANNEL}-genesis")],
    );
    let from_cluster = root.join("cluster-approvals.yaml");
    std::fs::write(
        &from_cluster,
        cm["data"]["approvals.yaml"]
            .as_str()
            .expect("approvals.yaml"),
    )
    .expect("write");
    up.extend(["--approval".into(), s(&from_cluster)]);

    // The laptop's `up` completes, the channel forms with the laptop's node in it.
    let side = Up::spawn_with_env(
        &up,
        root.join("up.stderr"),
        &[("TALLY_HOSTS_FILE", &s(&hosts))],
    )
    .ready();
    formed(&cp, &["bank-peer-0"]);
    let profile = root.join("profile");
    export_profile(&cp, &profile, NS, CONSORTIUM).expect("the cluster's profile");
    put(
        &profile,
        "core-enterprise",
        "voucher/V-1/issued",
        "issued-in-the-cluster",
    );
    get(&data, "bank", "voucher/V-1/issued", "issued-in-the-cluster");
    put(&data, "bank", "credit/line-1", "granted-on-the-laptop");
    get(
        &profile,
        "supplier-tier1",
        "credit/line-1",
        "granted-on-the-laptop",
    );
    let status = tallyctl_in(&data, &["--org", "bank", "status", "--channel", CHANNEL])
        .expect("the laptop's status");
    assert!(status.contains("core-enterprise-peer-0"), "{status}");

    // The laptop goes away: the cluster says so and commits with its two voters of three.
    assert_eq!(side.stop(), Some(0));
    wait_for(
        "the laptop's node reported unreachable",
        std::time::Duration::from_secs(120),
        || {
            let ch = the_channel(&cp);
            let r = reason(&ch);
            if r.contains("remote nodes unreachable: bank-peer-0") {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
    put(
        &profile,
        "core-enterprise",
        "voucher/V-2/issued",
        "while-the-laptop-sleeps",
    );
    get(
        &profile,
        "supplier-tier1",
        "voucher/V-2/issued",
        "while-the-laptop-sleeps",
    );
    drop(runner);
}
