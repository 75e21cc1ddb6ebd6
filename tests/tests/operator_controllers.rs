//! The controllers one behaviour at a time against a real API server: the CA Secrets a
//! Consortium gets (and keeps across operator restarts), a tenant's own CA, planner errors as
//! conditions, the finalizer that holds a consortium's deletion, and an operator killed in the
//! middle of bringing a consortium up.

use serde_json::Value;
use std::time::Duration;
use tally_tests::operator::{
    control_plane_with_crds, get_json, ready, repo, start_runner, wait_for, Operator,
};
use tally_tests::podrunner::PodRunner;
use tally_tests::ControlPlane;

use tally_tests::operator::apply;

fn condition(
    cp: &ControlPlane,
    ns: &str,
    what: &str,
    want: &str,
    contains: &str,
) -> Result<Value, String> {
    let o = get_json(cp, &["-n", ns, "get", what]);
    match ready(&o) {
        Some((s, m)) if s == want && m.contains(contains) => Ok(o),
        r => Err(format!("{what}: Ready {r:?}")),
    }
}

const CONSORTIUM: &str = r#"
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {name: c1}
spec:
  organizations:
    - name: org1
    - name: org2
"#;

#[test]
fn consortium_cas_conditions_and_finalizer() {
    let Some(cp) = control_plane_with_crds("operator-controllers") else {
        return;
    };
    cp.kubectl_ok(&["create", "namespace", "t1"]);
    let mut op = Operator::start(&cp, "op-a");
    apply(&cp, "t1", CONSORTIUM);

    // Generated CAs: one Secret per organization, owned by the consortium, fingerprints in status.
    let c1 = wait_for("c1 Ready", Duration::from_secs(60), || {
        condition(&cp, "t1", "consortium/c1", "True", "")
    });
    let orgs = c1["status"]["organizations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(orgs.len(), 2, "{c1}");
    // Each identity the operator issued, with its expiry and renewal time.
    let ids = c1["status"]["identities"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = ids.iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "org1/admin/admin",
            "org1/client/client",
            "org2/admin/admin",
            "org2/client/client"
        ],
        "{c1}"
    );
    for id in &ids {
        let at = |f: &str| {
            id[f]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .unwrap_or_else(|| panic!("{f} of {id} is not a time"))
        };
        let (not_after, renew_at) = (at("notAfter"), at("renewAt"));
        assert!(renew_at < not_after, "{id}");
        assert!(renew_at > jiff::Timestamp::now(), "due at once: {id}");
    }
    let ca = get_json(&cp, &["-n", "t1", "get", "secret", "c1-org1-ca"]);
    assert_eq!(ca["metadata"]["ownerReferences"][0]["kind"], "Consortium");
    assert!(ca["data"]["tls.key"].is_string(), "the CA key is kept");
    for id in [
        "c1-org1-admin",
        "c1-org1-client",
        "c1-org2-admin",
        "c1-org2-client",
    ] {
        cp.kubectl_ok(&["-n", "t1", "get", "secret", id]);
    }
    let events = cp.kubectl_ok(&["-n", "t1", "get", "events", "-o", "json"]);
    assert!(events.contains("CaCreated"), "an event per created CA");
    assert!(
        op.metric(
            "tally_operator_reconciles_total",
            &[("kind", "Consortium"), ("result", "ok")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );

    // A restarted operator never replaces a CA.
    op.kill();
    let mut op = Operator::start(&cp, "op-b");
    apply(
        &cp,
        "t1",
        &CONSORTIUM.replace("org2\n", "org2\n      displayName: Org Two\n"),
    );
    wait_for("c1 reconciled by op-b", Duration::from_secs(60), || {
        let c = get_json(&cp, &["-n", "t1", "get", "consortium", "c1"]);
        match c["status"]["observedGeneration"].as_i64() {
            Some(2) => Ok(()),
            g => Err(format!("observedGeneration {g:?}")),
        }
    });
    let again = get_json(&cp, &["-n", "t1", "get", "secret", "c1-org1-ca"]);
    assert_eq!(again["data"], ca["data"], "the CA Secret is unchanged");
    assert_eq!(
        again["metadata"]["resourceVersion"],
        ca["metadata"]["resourceVersion"]
    );

    // A generated CA whose Secret is lost is reported, never replaced: a new CA would cut the
    // organization's nodes off their ledger. Restoring the Secret heals it.
    let ca2 = get_json(&cp, &["-n", "t1", "get", "secret", "c1-org2-ca"]);
    cp.kubectl_ok(&["-n", "t1", "delete", "secret", "c1-org2-ca"]);
    let lost = wait_for(
        "c1 Degraded for its lost CA",
        Duration::from_secs(60),
        || {
            condition(
                &cp,
                "t1",
                "consortium/c1",
                "False",
                "c1-org2-ca of organization org2",
            )
        },
    );
    let reason = lost["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["reason"].clone());
    assert_eq!(reason, Some(Value::from("CaMissing")), "{lost}");
    assert!(
        !cp.kubectl(&["-n", "t1", "get", "secret", "c1-org2-ca"]).ok,
        "the operator made a new CA for org2 in place of the lost one"
    );
    assert_eq!(
        lost["status"]["organizations"], c1["status"]["organizations"],
        "the status still knows org2's CA"
    );
    let restored = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": ca2["type"],
        "metadata": {"name": "c1-org2-ca", "labels": ca2["metadata"]["labels"]},
        "data": ca2["data"],
    });
    apply(&cp, "t1", &restored.to_string());
    wait_for(
        "c1 Ready with its CA restored",
        Duration::from_secs(90),
        || condition(&cp, "t1", "consortium/c1", "True", ""),
    );
    let healed = get_json(&cp, &["-n", "t1", "get", "consortium", "c1"]);
    assert_eq!(
        healed["status"]["organizations"], c1["status"]["organizations"],
        "the same CAs as before"
    );

    // A tenant's own CA: missing first (Degraded, naming the Secret), then given.
    apply(
        &cp,
        "t1",
        r#"
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {name: c2}
spec:
  organizations:
    - name: org1
      ca: {mode: Secret, secretRef: {name: byo-ca}}
"#,
    );
    wait_for(
        "c2 Degraded for its missing Secret",
        Duration::from_secs(60),
        || {
            condition(
                &cp,
                "t1",
                "consortium/c2",
                "False",
                "Secret t1/byo-ca, which does not exist",
            )
        },
    );
    let cert = ca["data"]["tls.crt"].as_str().unwrap_or_default();
    apply(
        &cp,
        "t1",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: byo-ca}}\ndata: {{tls.crt: {cert}}}\n"
        ),
    );
    let c2 = wait_for("c2 Ready", Duration::from_secs(60), || {
        condition(&cp, "t1", "consortium/c2", "True", "")
    });
    assert_eq!(
        c2["status"]["organizations"][0]["caFingerprint"], orgs[0]["caFingerprint"],
        "the same certificate, the same fingerprint"
    );

    // A planner error is a condition that names the resource and the field.
    apply(
        &cp,
        "t1",
        r#"
apiVersion: tally.dev/v1alpha1
kind: Channel
metadata: {name: ch1}
spec: {consortium: c1, members: [org1], consenters: [nope]}
"#,
    );
    wait_for(
        "ch1 Degraded by the planner",
        Duration::from_secs(60),
        || {
            condition(
                &cp,
                "t1",
                "channel/ch1",
                "False",
                "Channel t1/ch1: spec.consenters",
            )
        },
    );
    let ch1 = get_json(&cp, &["-n", "t1", "get", "channel", "ch1"]);
    let degraded = ch1["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == "Degraded").cloned());
    assert_eq!(
        degraded.map(|d| d["reason"].clone()),
        Some(Value::from("InvalidSpec"))
    );
    cp.kubectl_ok(&["-n", "t1", "delete", "channel", "ch1"]);

    // An upgrade from an operator that ran Peers as StatefulSets: p1's StatefulSet and its pod
    // are there before the Peer is reconciled (no pod runner here, so the pod stays Pending).
    apply(
        &cp,
        "t1",
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: p1
  labels: {app.kubernetes.io/name: tally-node, app.kubernetes.io/instance: p1, tally.dev/peer: p1, tally.dev/consortium: c1}
spec:
  replicas: 1
  serviceName: p1-nodes
  updateStrategy: {type: OnDelete}
  selector:
    matchLabels: {app.kubernetes.io/name: tally-node, app.kubernetes.io/instance: p1, tally.dev/peer: p1}
  template:
    metadata:
      labels: {app.kubernetes.io/name: tally-node, app.kubernetes.io/instance: p1, tally.dev/peer: p1, tally.dev/consortium: c1}
    spec:
      containers: [{name: node, image: "ghcr.io/tally-dev/tally-node:0.0.1"}]
  volumeClaimTemplates:
    - metadata: {name: data}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
"#,
    );
    let old_uid = wait_for(
        "the StatefulSet's pod p1-0",
        Duration::from_secs(60),
        || {
            let r = cp.kubectl(&[
                "-n",
                "t1",
                "get",
                "pod",
                "p1-0",
                "-o",
                "jsonpath={.metadata.uid}",
            ]);
            if r.ok && !r.stdout.trim().is_empty() {
                Ok(r.stdout.trim().to_string())
            } else {
                Err(r.stderr)
            }
        },
    );
    // The finalizer holds c1 while a Peer uses it, and lets go once it is gone.
    apply(
        &cp,
        "t1",
        r#"
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: p1}
spec: {consortium: c1, organization: org1, replicas: 1}
"#,
    );
    // The Peer retires the StatefulSet without its pod and makes the pod its own: same pod
    // (same uid, the node keeps running), the Peer as owner, the node's label; the claim stays.
    wait_for(
        "p1-0 adopted, the StatefulSet gone",
        Duration::from_secs(60),
        || {
            let pod = get_json(&cp, &["-n", "t1", "get", "pod", "p1-0"]);
            let sts = cp.kubectl(&["-n", "t1", "get", "statefulset", "p1"]);
            let owners = &pod["metadata"]["ownerReferences"];
            if !sts.ok
                && pod["metadata"]["uid"] == old_uid.as_str()
                && owners.as_array().map(Vec::len) == Some(1)
                && owners[0]["kind"] == "Peer"
                && pod["metadata"]["labels"]["tally.dev/node"] == "p1-0"
            {
                Ok(())
            } else {
                Err(format!(
                    "statefulset there: {}; pod: {}",
                    sts.ok, pod["metadata"]
                ))
            }
        },
    );
    cp.kubectl_ok(&["-n", "t1", "get", "pvc", "data-p1-0"]);
    // Each port of p1's pods admits only who needs it (operator/src/network_policy.rs).
    let np = get_json(&cp, &["-n", "t1", "get", "networkpolicy", "p1"]);
    assert_eq!(np["metadata"]["ownerReferences"][0]["kind"], "Peer", "{np}");
    let rules = np["spec"]["ingress"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let from = |port: u64| {
        rules
            .iter()
            .find(|r| r["ports"][0]["port"] == port)
            .map(|r| r["from"].clone())
            .unwrap_or_else(|| panic!("no rule for port {port}: {np}"))
    };
    assert!(
        from(7051).is_null(),
        "the client API is open to clients: {np}"
    );
    assert_eq!(
        from(7052)[0]["podSelector"]["matchLabels"]["tally.dev/consortium"],
        "c1"
    );
    assert_eq!(
        from(7053)[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "operator"
    );
    assert_eq!(rules.len(), 3, "{np}");
    cp.kubectl_ok(&["-n", "t1", "delete", "consortium", "c1", "--wait=false"]);
    wait_for("c1's deletion held", Duration::from_secs(60), || {
        condition(
            &cp,
            "t1",
            "consortium/c1",
            "False",
            "still used by peers [p1]",
        )
    });
    cp.kubectl_ok(&["-n", "t1", "delete", "peer", "p1"]);
    // p1's ledger volume stays (its claim has no owner), so c1's CAs stay too:
    // disowned, while the identity Secrets go with the consortium.
    wait_for("c1 gone, its CAs kept", Duration::from_secs(90), || {
        let left = cp.kubectl_ok(&[
            "-n",
            "t1",
            "get",
            "consortia,pods,secrets",
            "-l",
            "tally.dev/consortium=c1",
            "-o",
            "name",
        ]);
        let c = cp.kubectl(&["-n", "t1", "get", "consortium", "c1"]);
        let mut left: Vec<&str> = left.lines().collect();
        left.sort_unstable();
        if left == ["secret/c1-org1-ca", "secret/c1-org2-ca"] && !c.ok {
            Ok(())
        } else {
            Err(format!("left: {left:?}"))
        }
    });
    let claims = cp.kubectl_ok(&["-n", "t1", "get", "pvc", "-o", "name"]);
    assert!(claims.contains("data-p1-0"), "{claims}");
    for sname in ["c1-org1-ca", "c1-org2-ca"] {
        let kept = get_json(&cp, &["-n", "t1", "get", "secret", sname]);
        assert!(
            kept["metadata"]["ownerReferences"].is_null(),
            "{sname} is still owned by the deleted consortium: {kept}"
        );
    }
    let events = cp.kubectl_ok(&["-n", "t1", "get", "events", "-o", "json"]);
    assert!(events.contains("CaKept"), "an event says the CAs are kept");
    op.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_while_bringing_a_consortium_up() {
    let cp = match tokio::task::spawn_blocking(|| control_plane_with_crds("operator-restart")).await
    {
        Ok(Some(cp)) => std::sync::Arc::new(cp),
        Ok(None) => return,
        Err(e) => panic!("control plane: {e}"),
    };
    cp.kubectl_ok(&["create", "namespace", "qs"]);
    let mut runner = start_runner(&cp, "127.63").await;
    let c = cp.clone();
    tokio::task::spawn_blocking(move || {
        let cp = &c;
        let mut op = Operator::start(cp, "op-1");
        let example = repo().join("deploy/examples/quickstart.yaml");
        cp.kubectl_ok(&[
            "-n",
            "qs",
            "apply",
            "--server-side",
            "-f",
            &example.display().to_string(),
        ]);
        // Kill it while it creates CAs, node pods and channels.
        std::thread::sleep(Duration::from_millis(1500));
        op.kill();
        let mut op = Operator::start(cp, "op-2");
        wait_for(
            "quickstart Ready after the restart",
            Duration::from_secs(180),
            || {
                for what in [
                    "consortium/quickstart",
                    "peer/org1-peer",
                    "peer/org2-peer",
                    "channel/main",
                ] {
                    condition(cp, "qs", what, "True", "")?;
                }
                Ok(())
            },
        );
        let main = get_json(cp, &["-n", "qs", "get", "channel", "main"]);
        assert_eq!(
            main["status"]["nodes"].as_array().map(|a| a.len()),
            Some(3),
            "{main}"
        );
        assert_eq!(main["status"]["stateRootsAgree"], true);
        cp.kubectl_ok(&[
            "-n",
            "qs",
            "delete",
            "-f",
            &example.display().to_string(),
            "--wait=false",
        ]);
        wait_for("quickstart deleted", Duration::from_secs(120), || {
            let left = cp.kubectl_ok(&[
                "-n",
                "qs",
                "get",
                "consortia,peers,channels,pods",
                "-o",
                "name",
            ]);
            if left.trim().is_empty() {
                Ok(())
            } else {
                Err(left)
            }
        });
        op.stop();
    })
    .await
    .expect("steps");
    wait_for_pods_gone(&runner).await;
    runner.shutdown().await;
}

async fn wait_for_pods_gone(runner: &PodRunner) {
    for _ in 0..120 {
        if runner.running_pids().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("node processes left: {:?}", runner.running_pids());
}
