//! An organization's generated CA rotated by the operator on a real control plane: setting
//! `ca.rotate` adds a new CA to the channel beside the old one, re-issues every identity of the
//! organization from it (nodes restarted one at a time), then removes the old CA. Afterwards
//! every node of the organization serves a certificate of the new CA, its admin and client
//! chain to it, the channel lists only the new CA for the organization, a client of the old CA
//! is refused, and the channel keeps committing, during the rotation as after it. The operator
//! is killed while re-issuing and a second one takes over: it finishes with the same new CA.
//!
//! Run alone: build tally-node, tallyctl and tally-operator, then
//! `cargo test -p tally-tests --test operator_ca_rotation -- --nocapture`.

use base64::Engine;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tally_client::txs::{put, sign_writes};
use tally_client::{ApiTrust, Client};
use tally_protocol::identity::{pem_to_der, TrustedCa};
use tally_protocol::Identity;
use tally_tests::operator::{
    all_ready, control_plane_with_crds, get_json, start_runner, tallyctl_in as tallyctl, wait_for,
    Operator,
};
use tally_tests::ControlPlane;

const NS: &str = "carotate";
const CONSORTIUM: &str = "rotating";
const ORG1_NODES: [&str; 2] = ["org1-peer-0", "org1-peer-1"];
const TOKEN: &str = "2026-12-03";

fn manifest(rotate: Option<&str>) -> String {
    let ca = rotate.map_or(String::new(), |r| format!(", ca: {{rotate: \"{r}\"}}"));
    format!(
        "\
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {{name: rotating}}
spec:
  organizations: [{{name: org1{ca}}}, {{name: org2}}]
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {{name: org1-peer}}
spec: {{consortium: rotating, organization: org1, replicas: 2}}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {{name: org2-peer}}
spec: {{consortium: rotating, organization: org2, replicas: 1}}
---
apiVersion: tally.dev/v1alpha1
kind: Channel
metadata: {{name: ledger}}
spec:
  consortium: rotating
  members: [org1, org2]
  consenters: [org1-peer, org2-peer]
"
    )
}

fn apply(cp: &ControlPlane, body: &str) {
    tally_tests::operator::apply(cp, NS, body)
}

fn export_profile(cp: &ControlPlane, dir: &Path) -> Result<(), String> {
    tally_tests::operator::export_profile(cp, dir, NS, CONSORTIUM)
}

/// A key of a Secret as text (`None` when the key is absent).
fn secret_key(cp: &ControlPlane, name: &str, key: &str) -> Option<String> {
    let s = get_json(cp, &["-n", NS, "get", "secret", name]);
    let b64 = s["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

/// The certificate a node serves on its client API (DER), read in a handshake.
fn served_cert(cp: &ControlPlane, node: &str) -> Result<Vec<u8>, String> {
    tally_tests::operator::served_cert(cp, NS, node)
}

/// org1's entry in the channel's configuration in force, as org2 reads it.
fn org1_in_channel(dir: &Path) -> Result<Value, String> {
    let out = tallyctl(
        dir,
        &["--org", "org2", "channel", "config", "--channel", "ledger"],
    )?;
    let config: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    config["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "org1"))
        .cloned()
        .ok_or(format!("org1 is not a member: {config}"))
}

/// Writes `k-<i>` as org2's client until told to stop, exporting the profile again when a
/// write fails (a node moved to a new pod or a new CA).
struct Writer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Writer {
    fn start(cp: Arc<ControlPlane>, dir: PathBuf) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut i = 0;
            while !s.load(Ordering::Relaxed) {
                let k = format!("during-{i}");
                let put = ["--org", "org2", "tx", "put", "--channel", "ledger", &k, "v"];
                match tallyctl(&dir, &put) {
                    Ok(_) => acked.push(k),
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(500));
                        let _ = export_profile(&cp, &dir);
                    }
                }
                i += 1;
            }
            acked
        });
        Writer { stop, thread }
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("writer")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_rotates_an_organizations_ca() {
    let cp =
        match tokio::task::spawn_blocking(|| control_plane_with_crds("operator-carotate")).await {
            Ok(Some(cp)) => Arc::new(cp),
            Ok(None) => return,
            Err(e) => panic!("control plane: {e}"),
        };
    cp.kubectl_ok(&["create", "namespace", NS]);
    let mut runner = start_runner(&cp, "127.66").await;
    let c = cp.clone();
    tokio::task::spawn_blocking(move || steps(c))
        .await
        .expect("rotation steps");
    runner.shutdown().await;
}

/// What a write signed by `id` through org2's node comes to: `ok`, or the error.
fn old_client_writes(cp: &ControlPlane, id: &Identity, org2_ca: &str) -> String {
    let pod = get_json(cp, &["-n", NS, "get", "pod", "org2-peer-0"]);
    let ip = pod["status"]["podIP"].as_str().expect("org2's pod IP");
    let dns = format!(
        "org2-peer-0.{}.{NS}.svc.cluster.local",
        tally_planner::headless_service("org2-peer")
    );
    let trust = ApiTrust::from_ca_pems(&[org2_ca]).expect("org2's CA");
    let url = format!("https://{ip}:{}", tally_planner::API_PORT);
    let client = Client::reaching(&url, Some(&dns), &trust).expect("client");
    let tx = sign_writes(id, "ledger", vec![put("old-ca", b"x")], false);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(client.submit_wait(&tx)) {
        Ok(r) => format!("ok: {:?}", r.status),
        Err(e) => e.to_string(),
    }
}

fn org1_status(cp: &ControlPlane) -> Value {
    let c = get_json(cp, &["-n", NS, "get", "consortium", CONSORTIUM]);
    c["status"]["organizations"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == "org1"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn steps(cp: Arc<ControlPlane>) {
    let mut op = Operator::start(&cp, "op-1");
    apply(&cp, &manifest(None));
    wait_for("every resource Ready", Duration::from_secs(240), || {
        all_ready(&cp, NS, 4)
    });
    let ca_secret = format!("{CONSORTIUM}-org1-ca");
    let old_ca = secret_key(&cp, &ca_secret, "tls.crt").expect("org1's CA");
    let org2_ca = secret_key(&cp, &format!("{CONSORTIUM}-org2-ca"), "tls.crt").expect("org2's CA");
    let dir = cp.dir().join("profile");
    export_profile(&cp, &dir).expect("profile export");
    // The old CA's client, kept to show it is refused once its CA is gone.
    let client_secret = format!("{CONSORTIUM}-org1-client");
    let old_client = Identity::from_pem(
        &secret_key(&cp, &client_secret, "tls.crt").expect("org1's client"),
        &secret_key(&cp, &client_secret, "tls.key").expect("org1's client key"),
    )
    .expect("org1's client identity");
    tallyctl(
        &dir,
        &[
            "--org",
            "org1",
            "tx",
            "put",
            "--channel",
            "ledger",
            "before",
            "v",
        ],
    )
    .expect("a write before the rotation");
    let before = org1_in_channel(&dir).expect("channel configuration");
    assert!(
        before["extra_cas"].as_array().is_none_or(Vec::is_empty),
        "{before}"
    );

    // ---- rotate, under a writer -----------------------------------------------------------
    let writer_dir = cp.dir().join("profile-writer");
    export_profile(&cp, &writer_dir).expect("profile export");
    let writer = Writer::start(cp.clone(), writer_dir);
    apply(&cp, &manifest(Some(TOKEN)));
    let mut phases: Vec<String> = Vec::new();
    // The operator is killed in the middle (once re-issuing started) and another replica takes
    // over: the rotation must resume from the CA Secret, not start again with another CA.
    let mut next_at_kill: Option<String> = None; // the new CA, when the operator was killed
    wait_for("the CA rotation Done", Duration::from_secs(900), || {
        let st = org1_status(&cp);
        let r = &st["caRotation"];
        if let Some(p) = r["phase"].as_str() {
            if phases.last().map(String::as_str) != Some(p) {
                eprintln!("caRotation: {r}");
                phases.push(p.to_string());
            }
            // While re-issuing, the new CA issues (`tls.crt`) and the old one waits in
            // `previous.crt`.
            if p == "Reissuing" && next_at_kill.is_none() {
                next_at_kill = secret_key(&cp, &ca_secret, "previous.crt")
                    .and_then(|_| secret_key(&cp, &ca_secret, "tls.crt"));
                if next_at_kill.is_some() {
                    eprintln!("killing the operator while re-issuing; op-2 takes over");
                    op.kill();
                    op = Operator::start(&cp, "op-2");
                }
            }
        }
        if r["requested"] == TOKEN && r["phase"] == "Done" {
            Ok(())
        } else {
            Err(format!("{r}"))
        }
    });
    let during = writer.finish();
    eprintln!(
        "phases seen: {phases:?}; {} writes acknowledged during the rotation",
        during.len()
    );
    assert!(!during.is_empty(), "no write committed during the rotation");

    // ---- the CA Secret holds the new CA alone ----------------------------------------------
    let new_ca = secret_key(&cp, &ca_secret, "tls.crt").expect("org1's CA");
    assert_ne!(new_ca.trim(), old_ca.trim(), "the CA was not replaced");
    assert_eq!(
        Some(new_ca.trim()),
        next_at_kill.as_deref().map(str::trim),
        "the operator that took over did not finish the rotation it found (another CA)"
    );
    let order = ["AddingCa", "Reissuing", "RemovingOldCa", "Done"];
    let ranks: Vec<usize> = phases
        .iter()
        .filter_map(|p| order.iter().position(|o| o == p))
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] < w[1]) && ranks.contains(&1),
        "the rotation went back after the takeover: {phases:?}"
    );
    for key in ["next.crt", "next.key", "previous.crt"] {
        assert!(
            secret_key(&cp, &ca_secret, key).is_none(),
            "{key} left in the CA Secret"
        );
    }
    let new_trust = TrustedCa::from_pem("org1", &new_ca).expect("new CA");
    let old_trust = TrustedCa::from_pem("org1", &old_ca).expect("old CA");
    assert_eq!(
        org1_status(&cp)["caFingerprint"],
        new_trust.fingerprint().to_string(),
        "the status names the new CA"
    );

    // ---- every node of org1 serves a certificate of the new CA; org2's is untouched -------
    wait_for(
        "org1's nodes on the new CA",
        Duration::from_secs(60),
        || {
            for n in ORG1_NODES {
                let der = served_cert(&cp, n)?;
                new_trust
                    .verify(&der, None)
                    .map_err(|e| format!("{n}: {e}"))?;
                if old_trust.verify(&der, None).is_ok() {
                    return Err(format!("{n} still serves a certificate of the old CA"));
                }
            }
            Ok(())
        },
    );
    let org2_der = served_cert(&cp, "org2-peer-0").expect("org2's node");
    TrustedCa::from_pem("org2", &org2_ca)
        .expect("org2's CA")
        .verify(&org2_der, None)
        .expect("org2's node keeps its CA");

    // ---- org1's admin and client chain to the new CA ---------------------------------------
    for role in ["admin", "client"] {
        let sname = format!("{CONSORTIUM}-org1-{role}");
        let cert = secret_key(&cp, &sname, "tls.crt").expect("identity");
        let der = pem_to_der(&cert).expect("certificate");
        new_trust
            .verify(&der, None)
            .unwrap_or_else(|e| panic!("org1 {role} does not chain to the new CA: {e}"));
        assert_eq!(
            secret_key(&cp, &sname, "ca.crt").map(|s| s.trim().to_string()),
            Some(new_ca.trim().to_string()),
            "{sname}: ca.crt"
        );
    }

    // ---- the channel lists only the new CA for org1 ----------------------------------------
    export_profile(&cp, &dir).expect("profile export");
    let after = wait_for("org1's CA in the channel", Duration::from_secs(60), || {
        org1_in_channel(&dir)
    });
    assert_eq!(
        after["ca_pem"].as_str().map(str::trim),
        Some(new_ca.trim()),
        "{after}"
    );
    assert!(
        after["extra_cas"].as_array().is_none_or(Vec::is_empty),
        "the old CA is still listed: {after}"
    );

    // ---- the channel keeps committing; the old CA's client is refused ----------------------
    wait_for(
        "a write after the rotation",
        Duration::from_secs(60),
        || {
            tallyctl(
                &dir,
                &[
                    "--org",
                    "org1",
                    "tx",
                    "put",
                    "--channel",
                    "ledger",
                    "after",
                    "v",
                ],
            )
        },
    );
    let v = tallyctl(
        &dir,
        &["--org", "org2", "tx", "get", "--channel", "ledger", "after"],
    )
    .expect("read back");
    assert!(v.contains('v'), "{v}");
    for k in during.iter().take(5).chain(["before".to_string()].iter()) {
        let v = tallyctl(
            &dir,
            &["--org", "org1", "tx", "get", "--channel", "ledger", k],
        )
        .unwrap_or_else(|e| panic!("{k}: {e}"));
        assert!(v.contains('v'), "{k}: {v}");
    }
    // org1's client of the old CA writes through org2's node (whose certificate it can still
    // check): the channel no longer lists its CA, so the write is refused.
    let refused = old_client_writes(&cp, &old_client, &org2_ca);
    assert!(
        refused.contains("403") && refused.contains("not_member"),
        "a client of the removed CA: {refused}"
    );
    wait_for(
        "every resource Ready again",
        Duration::from_secs(180),
        || all_ready(&cp, NS, 4),
    );
    op.stop();
}
