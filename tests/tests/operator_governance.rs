//! Governance on the real control plane: one organization approves for itself
//! (`approvals: External`), so the operator neither holds its admin Secret nor votes for it. A
//! membership change to a Channel becomes a proposal on the ledger that waits, reported as
//! `AwaitingApprovals` with 1/2 approvals, while the channel keeps committing; it applies only
//! once that organization's own admin approves with `tallyctl proposal approve`. Deleting a
//! second Channel proposes its retirement, which waits the same way (the Channel stays,
//! held by its finalizer) until org2 approves; then its nodes leave it and the Channel goes.
//! A `Chaincode` is installed and its definition proposed on the ledger, approved for org1 by
//! the operator; it waits as `AwaitingApprovals` 1/2 (calls refused) until org2 signs its
//! approval offline (`proposal approve --sign-only`, then `proposal submit`), and then runs.
//!
//! Run alone: build tally-node, tallyctl and tally-operator, then
//! `cargo test -p tally-tests --test operator_governance -- --nocapture`.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tally_tests::operator::{
    all_ready, control_plane_with_crds, export_profile, get_json, ready, start_runner,
    tallyctl_in as tallyctl, tallyctl_plain, wait_for, Operator,
};
use tally_tests::ControlPlane;

const NS: &str = "gov";
const CONSORTIUM: &str = "two-keys";

const MANIFEST: &str = "\
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {name: two-keys}
spec:
  organizations:
    - {name: org1}
    - {name: org2, approvals: External}
    - {name: org3}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: org1-peer}
spec: {consortium: two-keys, organization: org1, replicas: 2}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {name: org2-peer}
spec: {consortium: two-keys, organization: org2, replicas: 1}
---
apiVersion: tally.dev/v1alpha1
kind: Channel
metadata: {name: ledger}
spec:
  consortium: two-keys
  members: [org1, org2]
  consenters: [org1-peer, org2-peer]
---
apiVersion: tally.dev/v1alpha1
kind: Channel
metadata: {name: archive}
spec:
  consortium: two-keys
  members: [org1, org2]
  consenters: [org1-peer, org2-peer]
";

fn channel(cp: &ControlPlane) -> Value {
    get_json(cp, &["-n", NS, "get", "channel", "ledger"])
}

/// The reason of the object's Ready condition.
fn ready_reason(obj: &Value) -> String {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// org2's admin as the organization itself would issue it, from its CA outside the cluster
/// (here read from the CA Secret the operator generated), into
/// `profile/external/org2/admins/ext-admin`.
fn external_admin(cp: &ControlPlane, profile: &Path) -> std::path::PathBuf {
    let ca = get_json(cp, &["-n", NS, "get", "secret", "two-keys-org2-ca"]);
    let org = profile.join("external").join("org2");
    std::fs::create_dir_all(&org).expect("org folder");
    for (key, file) in [("tls.crt", "ca.pem"), ("tls.key", "ca-key.pem")] {
        let b64 = ca["data"][key].as_str().expect("CA Secret data");
        let pem = base64_decode(b64);
        std::fs::write(org.join(file), pem).expect("write CA");
    }
    let org_dir = org.display().to_string();
    tallyctl_plain(&[
        "org",
        "issue",
        "--dir",
        &org_dir,
        "--role",
        "admin",
        "--name",
        "ext-admin",
    ])
    .expect("issue org2's admin");
    org.join("admins").join("ext-admin")
}

/// Where [`external_admin`] put org2's admin.
fn org2_admin(profile: &Path) -> std::path::PathBuf {
    profile
        .join("external")
        .join("org2")
        .join("admins")
        .join("ext-admin")
}

fn base64_decode(s: &str) -> Vec<u8> {
    let out = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .expect("base64 -d");
    out.stdout
}

/// Both channels list org2, whose admin key the operator does not hold: no node creates
/// either until org2 approves its genesis. An approval of the other channel's genesis does not
/// count, and the status says why; org2's own approvals, made with `tallyctl channel
/// approve-genesis` from the genesis the operator publishes, let both form.
fn genesis_waits_for_the_external_organization(cp: &ControlPlane, profile: &Path) {
    let awaiting = |name: &str| {
        let name = name.to_string();
        move || {
            let ch = get_json(cp, &["-n", NS, "get", "channel", &name]);
            let p = ch["status"]["pendingChange"].clone();
            if ready_reason(&ch) == "AwaitingApprovals" && p["approvals"] == "1/2" {
                Ok(ch)
            } else {
                Err(format!("Ready {:?}, pendingChange {p}", ready(&ch)))
            }
        }
    };
    for name in ["ledger", "archive"] {
        let ch = wait_for(
            &format!("{name}'s genesis AwaitingApprovals"),
            Duration::from_secs(180),
            awaiting(name),
        );
        let p = &ch["status"]["pendingChange"];
        assert_eq!(p["approved"], serde_json::json!(["org1"]), "{p}");
        assert_eq!(p["missing"], serde_json::json!(["org2"]), "{p}");
        assert_eq!(ch["status"]["height"], 0, "no node may serve {name} yet");
    }
    let admin = external_admin(cp, profile).display().to_string();
    let approve = |name: &str| -> Value {
        let cm = get_json(
            cp,
            &["-n", NS, "get", "configmap", &format!("{name}-genesis")],
        );
        let file = profile.join(format!("{name}-genesis.json"));
        std::fs::write(
            &file,
            cm["data"]["genesis.json"].as_str().expect("genesis.json"),
        )
        .expect("write the genesis");
        let out = tallyctl_plain(&[
            "--identity",
            &admin,
            "--output",
            "json",
            "channel",
            "approve-genesis",
            "--genesis",
            &file.display().to_string(),
        ])
        .expect("org2 approves the genesis");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let patch = |name: &str, approval: &Value| {
        cp.kubectl_ok(&[
            "-n",
            NS,
            "patch",
            "channel",
            name,
            "--type=merge",
            "-p",
            &serde_json::json!({"spec": {"genesisApprovals": [approval]}}).to_string(),
        ]);
    };
    let for_archive = approve("archive");
    assert_eq!(for_archive["organization"], "org2", "{for_archive}");
    // The wrong channel's approval: refused, named, and nothing is created.
    patch("ledger", &for_archive);
    wait_for(
        "the misdirected approval reported",
        Duration::from_secs(60),
        || {
            let ch = channel(cp);
            let msg = ready(&ch).map(|r| r.1).unwrap_or_default();
            if msg.contains("spec.genesisApprovals[0] (org2)")
                && msg.contains("does not cover this genesis")
            {
                Ok(())
            } else {
                Err(msg)
            }
        },
    );
    assert_eq!(channel(cp)["status"]["height"], 0);
    patch("archive", &for_archive);
    patch("ledger", &approve("ledger"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_waits_for_the_external_organizations_own_approval() {
    let cp = match tokio::task::spawn_blocking(|| control_plane_with_crds("operator-governance"))
        .await
    {
        Ok(Some(cp)) => std::sync::Arc::new(cp),
        Ok(None) => return,
        Err(e) => panic!("control plane: {e}"),
    };
    cp.kubectl_ok(&["create", "namespace", NS]);
    let mut runner = start_runner(&cp, "127.65").await;
    let c = cp.clone();
    tokio::task::spawn_blocking(move || steps(&c))
        .await
        .expect("governance steps");
    runner.shutdown().await;
}

fn steps(cp: &ControlPlane) {
    let mut op = Operator::start(cp, "op-1");
    let r = cp.kubectl_stdin(
        &["-n", NS, "apply", "--server-side", "-f", "-"],
        Some(MANIFEST),
    );
    assert!(r.ok, "apply: {}", r.stderr);
    let dir = cp.dir().join("profile");
    genesis_waits_for_the_external_organization(cp, &dir);
    wait_for("every resource Ready", Duration::from_secs(240), || {
        all_ready(cp, NS, 5)
    });

    // The operator holds org1's admin, not org2's.
    cp.kubectl_ok(&["-n", NS, "get", "secret", "two-keys-org1-admin"]);
    let missing = cp.kubectl(&["-n", NS, "get", "secret", "two-keys-org2-admin"]);
    assert!(
        !missing.ok,
        "an External organization's admin Secret must not exist"
    );

    export_profile(cp, &dir, NS, CONSORTIUM).expect("profile export");
    let admin = org2_admin(&dir).display().to_string();
    chaincode_waits_for_org2(cp, &dir, &admin);

    // A membership change: org3 joins the channel. It needs 2 of 2 admin organizations.
    cp.kubectl_ok(&[
        "-n",
        NS,
        "patch",
        "channel",
        "ledger",
        "--type=merge",
        "-p",
        r#"{"spec":{"members":["org1","org2","org3"]}}"#,
    ]);
    let pending = wait_for("AwaitingApprovals", Duration::from_secs(120), || {
        let ch = channel(cp);
        if ready_reason(&ch) != "AwaitingApprovals" {
            return Err(format!("Ready {:?}", ready(&ch)));
        }
        let p = ch["status"]["pendingChange"].clone();
        if p["approvals"] == "1/2" {
            Ok(p)
        } else {
            Err(format!("pendingChange {p}"))
        }
    });
    assert_eq!(
        pending["approved"],
        serde_json::json!(["org1"]),
        "{pending}"
    );
    assert_eq!(pending["missing"], serde_json::json!(["org2"]), "{pending}");
    let hash = pending["proposal"]
        .as_str()
        .expect("proposal hash")
        .to_string();
    let cols = cp.kubectl_ok(&["-n", NS, "get", "channel", "ledger"]);
    assert!(cols.contains("APPROVALS") && cols.contains("1/2"), "{cols}");

    // Meanwhile the channel commits, and the change has not applied on the ledger.
    tallyctl(
        &dir,
        &[
            "--org",
            "org1",
            "tx",
            "put",
            "--channel",
            "ledger",
            "k1",
            "v1",
        ],
    )
    .expect("a write while the change waits");
    let shown = tallyctl(
        &dir,
        &[
            "--org",
            "org1",
            "proposal",
            "show",
            "--channel",
            "ledger",
            &hash,
        ],
    )
    .expect("proposal show");
    assert!(
        shown.contains("open") && shown.contains("+ member org3"),
        "{shown}"
    );
    assert_eq!(channel(cp)["status"]["configSequence"], 0);

    // org2 approves with its own admin, whose key the cluster never held.
    let out = tallyctl(
        &dir,
        &[
            "--identity",
            &admin,
            "proposal",
            "approve",
            "--channel",
            "ledger",
            &hash,
        ],
    )
    .expect("org2 approves");
    assert!(out.contains("applied"), "{out}");

    wait_for(
        "the change applied and Ready",
        Duration::from_secs(120),
        || {
            let ch = channel(cp);
            let st = &ch["status"];
            if st["configSequence"] != 1 {
                return Err(format!("configSequence {}", st["configSequence"]));
            }
            if !st["pendingChange"].is_null() {
                return Err(format!("pendingChange {}", st["pendingChange"]));
            }
            if st["members"] != serde_json::json!(["org1", "org2", "org3"]) {
                return Err(format!("members {}", st["members"]));
            }
            match ready(&ch) {
                Some((s, _)) if s == "True" => Ok(()),
                r => Err(format!("Ready {r:?}")),
            }
        },
    );
    let v = tallyctl(
        &dir,
        &["--org", "org1", "tx", "get", "--channel", "ledger", "k1"],
    )
    .expect("read back");
    assert!(v.contains("v1"), "{v}");

    // Deleting a Channel retires it first, as its policy requires: org2 must approve.
    tallyctl(
        &dir,
        &[
            "--org",
            "org1",
            "tx",
            "put",
            "--channel",
            "archive",
            "old",
            "record",
        ],
    )
    .expect("a write to the channel to be deleted");
    cp.kubectl_ok(&["-n", NS, "delete", "channel", "archive", "--wait=false"]);
    let pending = wait_for(
        "the retirement AwaitingApprovals",
        Duration::from_secs(120),
        || {
            let ch = get_json(cp, &["-n", NS, "get", "channel", "archive"]);
            let p = ch["status"]["pendingChange"].clone();
            if ready_reason(&ch) == "AwaitingApprovals" && p["approvals"] == "1/2" {
                Ok(p)
            } else {
                Err(format!("Ready {:?}, pendingChange {p}", ready(&ch)))
            }
        },
    );
    assert_eq!(pending["missing"], serde_json::json!(["org2"]), "{pending}");
    let hash = pending["proposal"].as_str().expect("hash").to_string();
    let shown = tallyctl(
        &dir,
        &[
            "--org",
            "org1",
            "proposal",
            "show",
            "--channel",
            "archive",
            &hash,
        ],
    )
    .expect("proposal show");
    assert!(shown.contains("retire the channel"), "{shown}");
    // Not approved: the channel still takes writes, and the Channel is still there.
    tallyctl(
        &dir,
        &[
            "--org",
            "org1",
            "tx",
            "put",
            "--channel",
            "archive",
            "k2",
            "v2",
        ],
    )
    .expect("a write while the retirement waits");
    let out = tallyctl(
        &dir,
        &[
            "--identity",
            &admin,
            "proposal",
            "approve",
            "--channel",
            "archive",
            &hash,
        ],
    )
    .expect("org2 approves the retirement");
    assert!(out.contains("applied"), "{out}");
    wait_for(
        "the Channel gone once its nodes left it",
        Duration::from_secs(120),
        || {
            let r = cp.kubectl(&["-n", NS, "get", "channel", "archive"]);
            if r.ok {
                Err("still there".to_string())
            } else {
                Ok(())
            }
        },
    );
    let gone = tallyctl(
        &dir,
        &["--org", "org1", "tx", "get", "--channel", "archive", "old"],
    );
    assert!(
        gone.is_err(),
        "a node still serves the deleted channel: {gone:?}"
    );
    op.stop();
}

/// The notary contract of the notarization example (its module embedded in the manifest), as
/// a Chaincode of channel `ledger`: installed, proposed and approved for org1 by the operator,
/// it waits for org2 (External), which signs its approval offline; then it is active and runs.
fn chaincode_waits_for_org2(cp: &ControlPlane, dir: &Path, admin: &str) {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/notarization.yaml");
    let res = tally_api::manifest::Resources::read_files(&[example]).expect("the example");
    let module = res
        .config_map_key("notary-wasm", "notary.wasm")
        .expect("the embedded module");
    let sha = hex::encode(tally_runtime::module_hash(&module));
    let file = cp.dir().join("notary.wasm");
    std::fs::write(&file, &module).expect("write the module");
    let from = format!("--from-file=notary.wasm={}", file.display());
    cp.kubectl_ok(&["-n", NS, "create", "configmap", "notary-wasm", &from]);
    let manifest = format!(
        "apiVersion: tally.dev/v1alpha1
kind: Chaincode
metadata: {{name: notary}}
spec:
  channel: ledger
  name: notary
  version: \"1.0\"
  source:
    configMap: {{name: notary-wasm, key: notary.wasm}}
    sha256: \"{sha}\"
"
    );
    let r = cp.kubectl_stdin(
        &["-n", NS, "apply", "--server-side", "-f", "-"],
        Some(&manifest),
    );
    assert!(r.ok, "apply the Chaincode: {}", r.stderr);
    let pending = wait_for(
        "the definition AwaitingApprovals",
        Duration::from_secs(120),
        || {
            let cc = get_json(cp, &["-n", NS, "get", "chaincode", "notary"]);
            let p = cc["status"]["pendingChange"].clone();
            if ready_reason(&cc) == "AwaitingApprovals" && p["approvals"] == "1/2" {
                Ok(p)
            } else {
                Err(format!("Ready {:?}, status {}", ready(&cc), cc["status"]))
            }
        },
    );
    assert_eq!(
        pending["approved"],
        serde_json::json!(["org1"]),
        "{pending}"
    );
    assert_eq!(pending["missing"], serde_json::json!(["org2"]), "{pending}");
    let hash = pending["proposal"].as_str().expect("hash").to_string();
    let shown = tallyctl(
        dir,
        &[
            "--org",
            "org1",
            "proposal",
            "show",
            "--channel",
            "ledger",
            &hash,
        ],
    )
    .expect("proposal show");
    assert!(
        shown.contains("define chaincode notary") && shown.contains(&sha),
        "{shown}"
    );
    let doc = "cd".repeat(32);
    let anchor = [
        "--org",
        "org1",
        "chaincode",
        "invoke",
        "-c",
        "ledger",
        "notary",
        "anchor",
        doc.as_str(),
        "deed",
    ];
    let refused = tallyctl(dir, &anchor).expect_err("a call before the definition applies");
    assert!(refused.contains("unknown_chaincode"), "{refused}");

    // org2 signs offline, from its own admin folder, and the vote is sent later.
    let signed = tallyctl(
        dir,
        &[
            "--identity",
            admin,
            "proposal",
            "approve",
            "--channel",
            "ledger",
            "--sign-only",
            &hash,
        ],
    )
    .expect("org2 signs its approval");
    let vote = cp.dir().join("org2-vote.json");
    std::fs::write(&vote, signed).expect("write the vote");
    let vote = vote.display().to_string();
    let out = tallyctl(
        dir,
        &[
            "--org",
            "org1",
            "proposal",
            "submit",
            "--channel",
            "ledger",
            &vote,
        ],
    )
    .expect("the vote submitted");
    assert!(out.contains("applied"), "{out}");
    let cc = wait_for("the Chaincode Ready", Duration::from_secs(60), || {
        let cc = get_json(cp, &["-n", NS, "get", "chaincode", "notary"]);
        match ready(&cc) {
            Some((s, _)) if s == "True" => Ok(cc),
            r => Err(format!("{r:?}: {}", cc["status"])),
        }
    });
    assert_eq!(cc["status"]["sequence"], 1, "{cc}");
    assert!(cc["status"]["pendingChange"].is_null(), "{cc}");
    let out = tallyctl(dir, &anchor).expect("the call once active");
    assert!(out.contains("committed tx"), "{out}");
}
