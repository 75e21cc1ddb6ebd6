//! One consortium across two clusters, each with its own control plane, operator and pod
//! runner, on one machine: the supply-chain-finance example split so that the bank runs in
//! cluster B and everyone else in cluster A. Neither operator holds the other cluster's keys.
//!
//! - Every Peer is exposed (`spec.exposure`, a Service per node named for external-dns:
//!   LoadBalancers in cluster A, NodePorts in cluster B); the pod runners stand in for
//!   external-dns, the load balancers and the node ports, so each cluster's nodes (and
//!   operator) reach the other's by name, and TLS checks those names.
//! - Each side exports its organizations (`kubectl tally org export`) and imports the
//!   other's (`kubectl tally org import`): External organizations with their CA certificate
//!   only and their nodes as `externalPeers` with the Raft ids their own cluster gave them.
//! - The same Channel applied on both sides plans the same genesis (the published hashes are
//!   equal). Each operator signs for its own organizations only, so each side waits for the
//!   other's approvals; they are exchanged through the published `approvals.yaml` and
//!   `spec.genesisApprovals`. Then each operator starts its own nodes of the channel.
//! - Both sides commit and read each other's writes; each Channel's status lists the other
//!   cluster's node as `remote` with its height.
//! - Admitting a new member (rule `All`) waits for the bank: cluster A's operator proposes
//!   and approves for its three organizations; it applies once cluster B's Channel lists the
//!   member too and its operator approves the same proposal for the bank.
//! - Cluster B goes down whole (operator, pods, control plane): cluster A reports the bank's
//!   node unreachable and keeps committing with its two voters of three.
//!
//! Run alone: build tally-node, tallyctl (with kubectl-tally) and tally-operator, then
//! `cargo test -p tally-tests --test multi_cluster -- --nocapture`.

use serde_json::Value;
use std::time::Duration;
use tally_tests::operator::{export_profile, get_json, wait_for, Operator};
use tally_tests::scf_split::*;
use tally_tests::two_clusters::TwoClusters;
use tally_tests::ControlPlane;

/// Cluster B: the bank's voter.
const SIDE_B: &str = "\
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {name: supply-chain-finance}
spec:
  organizations:
    - {name: bank}
  policies:
    membershipApproval: {rule: All}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: bank-peer}
spec:
  consortium: supply-chain-finance
  organization: bank
  replicas: 1
  exposure: {type: NodePort, domain: b.scf.example, nodePortBase: 31700}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_consortium_across_two_clusters() {
    let Some(two) = TwoClusters::start("mc").await else {
        eprintln!("skipping: no Kubernetes binaries (TALLY_SKIP_K8S=1)");
        return;
    };
    let (a, b) = (&two.a, &two.b);
    let hosts_a = a.runner.hosts_path().display().to_string();
    let hosts_b = b.runner.hosts_path().display().to_string();
    let op_a = Operator::start_with_env(&a.cp, "op-a", &[("TALLY_HOSTS_FILE", &hosts_a)]);
    let mut op_b = Operator::start_with_env(&b.cp, "op-b", &[("TALLY_HOSTS_FILE", &hosts_b)]);
    let work = tempfile::tempdir().expect("work dir");
    for cp in [&a.cp, &b.cp] {
        cp.kubectl_ok(&["create", "namespace", NS]);
    }
    apply(&a.cp, SIDE_A);
    apply(&b.cp, SIDE_B);

    // Each side imports the other's organizations.
    let bundles = work.path();
    let bank = export(&b.cp, "bank", bundles);
    for org in ["core-enterprise", "supplier-tier1", "supplier-tier2"] {
        import(&b.cp, &export(&a.cp, org, bundles));
    }
    import(&a.cp, &bank);
    let imported = get_json(&a.cp, &["-n", NS, "get", "consortium", CONSORTIUM]);
    let bank_org = imported["spec"]["organizations"]
        .as_array()
        .and_then(|os| os.iter().find(|o| o["name"] == "bank"))
        .cloned()
        .expect("bank imported into cluster A");
    assert_eq!(bank_org["approvals"], "External", "{bank_org}");
    assert_eq!(bank_org["ca"]["mode"], "Secret", "{bank_org}");
    assert_eq!(
        bank_org["externalPeers"][0]["peerAddress"], "bank-peer-0.b.scf.example:31701",
        "{bank_org}"
    );

    // The same channel on both sides: the same genesis, each side waiting for the other.
    apply(&a.cp, &channel(true, &MEMBERS));
    apply(&b.cp, &channel(false, &MEMBERS));
    let hash_a = wait_for("A's genesis", Duration::from_secs(120), || {
        genesis_hash(&a.cp)
    });
    let hash_b = wait_for("B's genesis", Duration::from_secs(120), || {
        genesis_hash(&b.cp)
    });
    assert_eq!(
        hash_a, hash_b,
        "both clusters must plan the same genesis for the same channel"
    );
    let waiting = |cp: &ControlPlane, approvals: &str, missing: Value| {
        wait_for(
            "the genesis awaiting approvals",
            Duration::from_secs(120),
            || {
                let ch = the_channel(cp);
                let p = &ch["status"]["pendingChange"];
                if p["approvals"] == approvals && p["missing"] == missing {
                    Ok(())
                } else {
                    Err(format!("{}: {p}", reason(&ch)))
                }
            },
        )
    };
    waiting(&a.cp, "3/4", serde_json::json!(["bank"]));
    waiting(
        &b.cp,
        "1/4",
        serde_json::json!(["core-enterprise", "supplier-tier1", "supplier-tier2"]),
    );
    assert_eq!(the_channel(&a.cp)["status"]["height"], 0);
    let from_a = published_approvals(&a.cp);
    let from_b = published_approvals(&b.cp);
    assert_eq!(from_a.len(), 3, "A signs for its three organizations only");
    assert_eq!(from_b.len(), 1, "B signs for the bank only");
    assert_eq!(from_b[0]["organization"], "bank");
    give_approvals(&a.cp, &from_b);
    give_approvals(&b.cp, &from_a);

    // Both sides form the one channel, each reporting the other's node.
    let st_a = formed(&a.cp, &["bank-peer-0"]);
    let st_b = formed(
        &b.cp,
        &[
            "core-enterprise-peer-0",
            "core-enterprise-peer-1",
            "supplier-tier1-observer-0",
        ],
    );
    eprintln!("A: {}\nB: {}", reason(&st_a), reason(&st_b));
    // `kubectl tally status` on A shows the bank's node among the organizations.
    let tree = plugin(&a.cp, &["-n", NS, "status"]).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{tree}");
    assert!(
        tree.contains("remote node bank-peer-0 at bank-peer-0.b.scf.example:31701  receivables@"),
        "{tree}"
    );

    // Each side writes through its own nodes and reads the other's write.
    let (pa, pb) = (work.path().join("profile-a"), work.path().join("profile-b"));
    export_profile(&a.cp, &pa, NS, CONSORTIUM).expect("profile of A");
    export_profile(&b.cp, &pb, NS, CONSORTIUM).expect("profile of B");
    put(
        &pa,
        "core-enterprise",
        "voucher/V-1/issued",
        "core-enterprise-owes-100000",
    );
    put(&pb, "bank", "credit/line-1", "bank-lends-80000");
    get(
        &pb,
        "bank",
        "voucher/V-1/issued",
        "core-enterprise-owes-100000",
    );
    get(&pa, "supplier-tier1", "credit/line-1", "bank-lends-80000");

    // A new member needs every member's approval, the bank's in cluster B too.
    a.cp.kubectl_ok(&[
        "-n",
        NS,
        "patch",
        "consortium",
        CONSORTIUM,
        "--type=json",
        "-p",
        r#"[{"op": "add", "path": "/spec/organizations/-", "value": {"name": "supplier-tier3"}}]"#,
    ]);
    let mut with_tier3 = MEMBERS.to_vec();
    with_tier3.push("supplier-tier3");
    apply(&a.cp, &channel(true, &with_tier3));
    wait_for(
        "A's proposal waiting for the bank",
        Duration::from_secs(180),
        || {
            let ch = the_channel(&a.cp);
            let p = &ch["status"]["pendingChange"];
            if p["approvals"] == "3/4" && p["missing"] == serde_json::json!(["bank"]) {
                Ok(())
            } else {
                Err(format!("{}: {p}", reason(&ch)))
            }
        },
    );
    put(&pa, "core-enterprise", "voucher/V-2/issued", "meanwhile");
    assert_eq!(the_channel(&a.cp)["status"]["memberCount"], 4);
    import(&b.cp, &export(&a.cp, "supplier-tier3", bundles));
    apply(&b.cp, &channel(false, &with_tier3));
    for cp in [&a.cp, &b.cp] {
        wait_for(
            "five members on the ledger",
            Duration::from_secs(180),
            || {
                let ch = the_channel(cp);
                if ch["status"]["memberCount"] == 5 && reason(&ch).starts_with("True/") {
                    Ok(())
                } else {
                    Err(format!(
                        "{}: members {}",
                        reason(&ch),
                        ch["status"]["members"]
                    ))
                }
            },
        );
    }

    // Cluster B goes down whole: A reports the bank's node unreachable and commits on.
    op_b.stop();
    let mut gone = two.b;
    gone.runner.shutdown().await;
    drop(gone);
    wait_for(
        "A reporting the bank's node unreachable",
        Duration::from_secs(120),
        || {
            let ch = the_channel(&a.cp);
            let bank = ch["status"]["nodes"]
                .as_array()
                .and_then(|ns| ns.iter().find(|n| n["name"] == "bank-peer-0"))
                .cloned()
                .unwrap_or_default();
            if bank["remote"] == true && bank["unreachable"].is_string() {
                Ok(())
            } else {
                Err(format!("{}: {bank}", reason(&ch)))
            }
        },
    );
    let tree = plugin(&a.cp, &["-n", NS, "status"]).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{tree}");
    assert!(tree.contains("receivables unreachable ("), "{tree}");
    put(
        &pa,
        "core-enterprise",
        "voucher/V-3/issued",
        "without-cluster-b",
    );
    get(
        &pa,
        "supplier-tier1",
        "voucher/V-3/issued",
        "without-cluster-b",
    );
    let ch = the_channel(&a.cp);
    assert!(
        reason(&ch).contains("remote nodes unreachable: bank-peer-0"),
        "{}",
        reason(&ch)
    );
    drop(op_a);
}
