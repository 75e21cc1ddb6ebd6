//! Two replicas of the operator and a leader that freezes: the other replica takes the lease,
//! and the frozen one, once it runs again, writes nothing and stops (operator/src/fence.rs).

use serde_json::Value;
use std::time::{Duration, Instant};
use tally_tests::operator::{control_plane_with_crds, get_json, ready, wait_for, Operator};

fn holder(cp: &tally_tests::ControlPlane) -> Option<String> {
    let r = cp.kubectl(&[
        "-n",
        "default",
        "get",
        "lease",
        "tally-operator",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&r.stdout).ok()?;
    v["spec"]["holderIdentity"].as_str().map(str::to_string)
}

use tally_tests::operator::apply;

fn consortium_ready(cp: &tally_tests::ControlPlane, name: &str) -> Result<(), String> {
    let c = get_json(cp, &["-n", "t1", "get", "consortium", name]);
    match ready(&c) {
        Some((s, _)) if s == "True" => Ok(()),
        r => Err(format!("{name}: Ready {r:?}")),
    }
}

#[test]
fn a_frozen_leader_is_fenced_and_the_other_replica_takes_over() {
    let Some(cp) = control_plane_with_crds("operator-fencing") else {
        return;
    };
    cp.kubectl_ok(&["create", "namespace", "t1"]);
    let mut op1 = Operator::start(&cp, "op-1");
    wait_for("op-1 leads", Duration::from_secs(60), || {
        match holder(&cp).as_deref() {
            Some("op-1") => Ok(()),
            h => Err(format!("holder {h:?}")),
        }
    });
    let mut op2 = Operator::start(&cp, "op-2");
    apply(
        &cp,
        "t1",
        "apiVersion: tally.dev/v1alpha1\nkind: Consortium\nmetadata: {name: c1}\nspec:\n  organizations: [{name: org1}]\n",
    );
    wait_for("c1 Ready under op-1", Duration::from_secs(60), || {
        consortium_ready(&cp, "c1")
    });

    // op-1 freezes; op-2 takes the lease once it runs out.
    op1.signal(libc::SIGSTOP);
    let frozen = Instant::now();
    wait_for("op-2 leads", Duration::from_secs(90), || {
        match holder(&cp).as_deref() {
            Some("op-2") => Ok(()),
            h => Err(format!("holder {h:?}")),
        }
    });
    eprintln!(
        "op-2 took the lease {:.1}s after op-1 froze",
        frozen.elapsed().as_secs_f64()
    );
    // Work op-1's watches will hand it when it runs again: a new consortium and a Peer.
    apply(
        &cp,
        "t1",
        "apiVersion: tally.dev/v1alpha1\nkind: Consortium\nmetadata: {name: c2}\nspec:\n  organizations: [{name: org1}]\n---\napiVersion: tally.dev/v1alpha1\nkind: Peer\nmetadata: {name: p1}\nspec: {consortium: c1, organization: org1, replicas: 1}\n",
    );
    wait_for("c2 Ready under op-2", Duration::from_secs(60), || {
        consortium_ready(&cp, "c2")
    });
    // A frozen process writes nothing: what its log holds now came before it ran again.
    let before = op1.log_text().len();
    op1.signal(libc::SIGCONT);

    // op-1 stops by itself, saying why, without a successful reconcile after it ran again.
    let status = op1.wait_exit(Duration::from_secs(60)).unwrap_or_else(|| {
        panic!(
            "op-1 kept running after losing the lease:\n{}",
            op1.log_tail()
        )
    });
    assert!(!status.success(), "op-1 exited {status}");
    let log = op1.log_text();
    assert!(
        log.contains("stopping so that only one replica acts"),
        "op-1 did not say why it stopped:\n{}",
        op1.log_tail()
    );
    let after: Vec<&str> = log.get(before..).unwrap_or_default().lines().collect();
    let acted: Vec<&&str> = after
        .iter()
        .filter(|l| l.contains("\"reconciled\"") || l.contains("CaCreated"))
        .collect();
    assert!(
        acted.is_empty(),
        "op-1 reconciled after it lost the lease: {acted:?}"
    );
    eprintln!(
        "op-1 after it ran again ({} lines):\n{}",
        after.len(),
        after.join("\n")
    );

    // op-2 goes on leading and acting.
    assert_eq!(holder(&cp).as_deref(), Some("op-2"));
    wait_for("p1's node pod from op-2", Duration::from_secs(60), || {
        let r = cp.kubectl(&["-n", "t1", "get", "pod", "p1-0"]);
        if r.ok {
            Ok(())
        } else {
            Err(r.stderr)
        }
    });
    op2.stop();
}
