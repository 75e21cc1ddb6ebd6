//! The kubectl plugin (`kubectl-tally`, built with tallyctl) run by a real kubectl against a
//! real kube-apiserver: kubectl finds it on the PATH, `kubectl tally status` tells the
//! quickstart consortium's story from the objects' status (plain when piped, JSON with `-o
//! json`), `backup create|list` make and show Backup objects, errors name what exists,
//! `org export|import` carry an organization's bundle (no key) from one Consortium to another,
//! and tallyctl's commands pass through.
//!
//! Needs etcd, kube-apiserver and kubectl as crds_apiserver.rs does (`TALLY_SKIP_K8S=1` skips).

use std::path::{Path, PathBuf};
use std::process::Command;

use tally_tests::{k8s_bin_dir, tallyctl_bin, ControlPlane};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubectl ARGS` with the plugin's folder first on the PATH, as a user who installed it.
fn kubectl_plugin(cp: &ControlPlane, kubectl: &Path, args: &[&str]) -> (bool, String, String) {
    let plugin_dir = tallyctl_bin()
        .parent()
        .expect("the binaries' folder")
        .to_path_buf();
    assert!(
        plugin_dir.join("kubectl-tally").exists(),
        "kubectl-tally is not built next to tallyctl ({}): cargo build -p tallyctl --bins",
        plugin_dir.display()
    );
    let path = format!(
        "{}:{}",
        plugin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(kubectl)
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", &cp.kubeconfig)
        .env_remove("NO_COLOR")
        .output()
        .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status_patch(cp: &ControlPlane, kind: &str, name: &str, status: &str) {
    cp.kubectl_ok(&[
        "patch",
        kind,
        name,
        "-n",
        "quickstart",
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(r#"{{"status":{status}}}"#),
    ]);
}

const READY: &str = r#"[{"type":"Ready","status":"True","reason":"Ready","message":"","lastTransitionTime":"2026-12-02T10:00:00Z"}]"#;

#[test]
fn kubectl_tally_tells_a_consortiums_story() {
    let Some(bin) = k8s_bin_dir() else { return };
    let cp = ControlPlane::start("kubectl_plugin", &bin);
    let kubectl = bin.join("kubectl");
    let crds = repo().join("crds");
    cp.kubectl_ok(&[
        "apply",
        "--server-side",
        "-f",
        crds.to_str().expect("UTF-8"),
    ]);
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "-f",
        crds.to_str().expect("UTF-8"),
    ]);
    cp.kubectl_ok(&["create", "namespace", "quickstart"]);
    let example = repo().join("deploy/examples/quickstart.yaml");
    cp.kubectl_ok(&[
        "apply",
        "--server-side",
        "-n",
        "quickstart",
        "-f",
        example.to_str().expect("UTF-8"),
    ]);

    // Before the operator reported anything, status says what is not known yet.
    let (ok, out, err) = kubectl_plugin(&cp, &kubectl, &["tally", "status", "-n", "quickstart"]);
    assert!(ok, "kubectl tally status failed:\n{out}{err}");
    eprintln!("{out}");
    for line in [
        "Consortium quickstart/quickstart  Unknown",
        "org1  CA not reported yet",
        "Peer org1-peer (consenter, 0/2 ready)  Unknown",
        "main  height 0, no leader, agreement unknown",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }

    // The statuses an operator writes.
    status_patch(
        &cp,
        "consortium",
        "quickstart",
        &format!(
            r#"{{"organizationCount":2,"organizations":[{{"name":"org1","caFingerprint":"0123456789abcdef0123","caSecret":"quickstart-org1-ca","caNotAfter":"2036-11-29T00:00:00Z"}}],"conditions":{READY}}}"#
        ),
    );
    status_patch(
        &cp,
        "peer",
        "org1-peer",
        r#"{"replicas":2,"readyReplicas":2,"nodes":[{"name":"org1-peer-0","ready":true,"channels":[{"name":"main","height":17,"role":"leader"}]},{"name":"org1-peer-1","ready":true,"channels":[{"name":"main","height":15,"role":"follower"}]}]}"#,
    );
    status_patch(
        &cp,
        "channel",
        "main",
        &format!(
            r#"{{"height":17,"leader":"org1-peer-0","memberCount":2,"members":["org1","org2"],"stateRootsAgree":true,"configSequence":2,"nodes":[{{"name":"org1-peer-0","organization":"org1","role":"consenter","height":17}},{{"name":"org1-peer-1","organization":"org1","role":"consenter","height":15}}],"conditions":{READY}}}"#
        ),
    );
    let (ok, out, err) = kubectl_plugin(
        &cp,
        &kubectl,
        &["tally", "status", "quickstart", "-n", "quickstart"],
    );
    assert!(ok, "kubectl tally status failed:\n{out}{err}");
    eprintln!("{out}");
    for line in [
        "Consortium quickstart/quickstart  Ready",
        "org1  CA 0123456789ab, expires 2036-11-29T00:00:00Z",
        "org1-peer-0 ready  main@17 leader",
        "org1-peer-1 ready  main@15 follower",
        "main  height 17, nodes at 15..17, leader org1-peer-0, nodes agree, config #2  Ready",
        "consenters: org1-peer, org2-peer",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains('\x1b'), "piped output has no colour:\n{out}");

    let (ok, out, err) = kubectl_plugin(
        &cp,
        &kubectl,
        &[
            "tally",
            "status",
            "quickstart",
            "-n",
            "quickstart",
            "-o",
            "json",
        ],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["channels"][0]["height"], 17);
    assert_eq!(v["channels"][0]["agree"], true);
    assert_eq!(
        v["organizations"][0]["peers"][0]["nodes"][0]["name"],
        "org1-peer-0"
    );

    // Backups: `backup create` makes a Backup object for the operator to run; `backup list`
    // and `status` show what the operator reports of it.
    let (ok, out, err) = kubectl_plugin(
        &cp,
        &kubectl,
        &[
            "tally",
            "backup",
            "create",
            "main",
            "--to",
            "s3://tally-backups/quickstart",
            "--credentials-secret",
            "s3-creds",
            "--name",
            "main-first",
            "-n",
            "quickstart",
        ],
    );
    assert!(ok, "backup create failed:\n{out}{err}");
    assert!(
        out.contains("backup quickstart/main-first of channel main created"),
        "{out}"
    );
    let b: serde_json::Value = serde_json::from_str(&cp.kubectl_ok(&[
        "get",
        "backup",
        "main-first",
        "-n",
        "quickstart",
        "-o",
        "json",
    ]))
    .expect("Backup JSON");
    assert_eq!(b["spec"]["channel"], "main");
    assert_eq!(
        b["spec"]["destination"]["url"],
        "s3://tally-backups/quickstart"
    );
    assert_eq!(b["spec"]["destination"]["credentialsSecret"], "s3-creds");
    assert_eq!(b["spec"]["deletionPolicy"], "Retain");
    // A channel that does not match the schema is refused by the API server, with its reason.
    let (ok, _, err) = kubectl_plugin(
        &cp,
        &kubectl,
        &[
            "tally",
            "backup",
            "create",
            "Main_",
            "--to",
            "s3://b/p",
            "-n",
            "quickstart",
        ],
    );
    assert!(!ok && err.contains("spec.channel"), "{err}");
    status_patch(
        &cp,
        "backup",
        "main-first",
        r#"{"phase":"Succeeded","node":"org1-peer-1","height":16,"storedSize":"1.2 MiB","manifest":"manifests/main/00000000000000000016-1796000000.json","completedAt":"2026-12-03T10:00:00Z"}"#,
    );
    let (ok, out, err) = kubectl_plugin(
        &cp,
        &kubectl,
        &["tally", "backup", "list", "-n", "quickstart"],
    );
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("main-first"))
        .unwrap_or_default();
    for cell in ["main", "Succeeded", "16", "1.2 MiB", "org1-peer-1"] {
        assert!(row.contains(cell), "missing {cell:?} in {row:?}:\n{out}");
    }
    let (ok, out, err) = kubectl_plugin(
        &cp,
        &kubectl,
        &["tally", "status", "quickstart", "-n", "quickstart"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("last backup main-first at height 16 (2026-12-03T10:00:00Z)"),
        "{out}"
    );

    // Errors name what is there.
    let (ok, _, err) = kubectl_plugin(
        &cp,
        &kubectl,
        &["tally", "status", "nosuch", "-n", "quickstart"],
    );
    assert!(!ok);
    assert!(
        err.contains("no Consortium \"nosuch\" in namespace quickstart (there: quickstart)"),
        "{err}"
    );
    let (ok, _, err) = kubectl_plugin(
        &cp,
        &kubectl,
        &["tally", "logs", "org9-peer-0", "-n", "quickstart"],
    );
    assert!(!ok);
    assert!(
        err.contains("no node \"org9-peer-0\" in namespace quickstart")
            && err.contains("org1-peer-0, org1-peer-1"),
        "{err}"
    );

    // tallyctl's commands pass through: profile export reads the same cluster and says what
    // it lacks (no operator has made the CA Secrets here).
    let data = cp.dir().join("profile");
    let (ok, _, err) = kubectl_plugin(
        &cp,
        &kubectl,
        &[
            "tally",
            "profile",
            "export",
            "--data-dir",
            data.to_str().expect("UTF-8"),
            "-n",
            "quickstart",
            "--consortium",
            "quickstart",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("quickstart-org1-ca") || err.contains("with the CA of org1"),
        "{err}"
    );
}

/// The krew package: the archive holds the plugin, and the manifest's SHA-256 is the archive's
/// (krew refuses to install otherwise).
#[test]
fn krew_package_matches_its_manifest() {
    use sha2::Digest;
    let plugin = tallyctl_bin().with_file_name("kubectl-tally");
    let out = tempfile::tempdir().expect("a folder");
    let run = Command::new("bash")
        .arg(repo().join("scripts/krew-package.sh"))
        .arg("--bin")
        .arg(&plugin)
        .arg(out.path())
        .output()
        .expect("krew-package.sh runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let archive = out.path().join("kubectl-tally-linux-amd64.tar.gz");
    let bytes = std::fs::read(&archive).expect("the archive");
    let sum = hex::encode(sha2::Sha256::digest(&bytes));
    let manifest = std::fs::read_to_string(out.path().join("tally.yaml")).expect("the manifest");
    assert!(
        manifest.contains(&format!("sha256: {sum}")),
        "the manifest does not carry the archive's SHA-256 {sum}:\n{manifest}"
    );
    assert!(manifest.contains("bin: kubectl-tally"));
    let unpacked = out.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).expect("folder");
    let tar = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .expect("tar runs");
    assert!(tar.success());
    let version = Command::new(unpacked.join("kubectl-tally"))
        .arg("--version")
        .output()
        .expect("the packaged plugin runs");
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("kubectl-tally"),
        "{version:?}"
    );
}

/// `kubectl tally org export|import` on one API server, two namespaces standing for two
/// clusters: `east` hosts the organization `bank`, `west` imports its bundle. No operator runs:
/// the CA Secret and the Peers' status an operator would write are put in place by hand.
#[test]
fn kubectl_tally_org_exports_and_imports_a_bundle() {
    let Some(bin) = k8s_bin_dir() else { return };
    let cp = ControlPlane::start("kubectl_plugin_org", &bin);
    let kubectl = bin.join("kubectl");
    let crds = repo().join("crds");
    let crds = crds.to_str().expect("UTF-8");
    cp.kubectl_ok(&["apply", "--server-side", "-f", crds]);
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "-f",
        crds,
    ]);
    let apply = |ns: &str, yaml: &str| {
        let out = cp.kubectl_stdin(&["apply", "-n", ns, "-f", "-"], Some(yaml));
        assert!(out.ok, "kubectl apply failed: {}{}", out.stdout, out.stderr);
    };
    let plugin = |args: &[&str]| kubectl_plugin(&cp, &kubectl, args);
    for ns in ["east", "west"] {
        cp.kubectl_ok(&["create", "namespace", ns]);
    }
    let ca = tally_protocol::identity::OrgCa::generate("bank").expect("a CA");
    let (cert, key) = (ca.cert_pem(), ca.key_pem());
    apply(
        "east",
        &format!(
            r#"
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {{name: c1}}
spec:
  organizations:
    - {{name: bank, displayName: Bank of Example}}
    - {{name: org1}}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {{name: bank-peer}}
spec:
  consortium: c1
  organization: bank
  replicas: 2
  exposure: {{type: LoadBalancer, domain: bank.example.org}}
---
apiVersion: tally.dev/v1alpha1
kind: Peer
metadata: {{name: org1-peer}}
spec: {{consortium: c1, organization: org1, replicas: 1}}
---
apiVersion: v1
kind: Secret
metadata: {{name: c1-bank-ca}}
type: kubernetes.io/tls
stringData:
  tls.crt: {cert:?}
  tls.key: {key:?}
"#
        ),
    );

    // No addresses reported yet: the export says what to wait for.
    let (ok, out, err) = plugin(&["tally", "org", "export", "bank", "-n", "east"]);
    assert!(!ok, "exported before the nodes had addresses:\n{out}");
    assert!(
        err.contains("node bank-peer-0 of Peer bank-peer has no reported Raft id and address yet")
            && err.contains("export again"),
        "{err}"
    );
    let patch_status = |ns: &str, peer: &str, status: &str| {
        cp.kubectl_ok(&[
            "patch",
            "peer",
            peer,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(r#"{{"status":{status}}}"#),
        ]);
    };
    let node = |i: u32, raft: u64| {
        format!(
            r#"{{"name":"bank-peer-{i}","ready":true,"raftId":{raft},"peerAddress":"bank-peer-{i}.bank.example.org:7052","apiUrl":"https://bank-peer-{i}.bank.example.org:7051","channels":[]}}"#
        )
    };
    patch_status(
        "east",
        "bank-peer",
        &format!(r#"{{"nodes":[{},{}]}}"#, node(0, 1001), node(1, 1002)),
    );

    // The bundle: the Secret's certificate, the nodes with their Raft ids, never a key.
    let (ok, yaml, err) = plugin(&["tally", "org", "export", "bank", "-n", "east"]);
    assert!(ok, "export failed: {err}");
    eprintln!("{yaml}");
    assert!(
        !yaml.contains("PRIVATE KEY") && !yaml.contains(key.trim()),
        "the bundle holds a key:\n{yaml}"
    );
    let bundle: tally_api::bundle::OrganizationBundle =
        serde_yaml::from_str(&yaml).expect("the export parses as a bundle");
    bundle.check().expect("the export passes check()");
    assert_eq!(bundle.organization, "bank");
    assert_eq!(bundle.display_name, "Bank of Example");
    assert_eq!(bundle.ca_certificates, vec![cert.clone()]);
    let ids: Vec<(String, u64)> = bundle
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.raft_id))
        .collect();
    assert_eq!(
        ids,
        vec![("bank-peer-0".into(), 1001), ("bank-peer-1".into(), 1002)]
    );
    assert_eq!(
        bundle.nodes[1].peer_address,
        "bank-peer-1.bank.example.org:7052"
    );
    let dir = tempfile::tempdir().expect("a folder");
    let file = dir.path().join("bank.yaml");
    let file_s = file.to_str().expect("UTF-8");
    let (ok, out, err) = plugin(&[
        "tally",
        "org",
        "export",
        "bank",
        "-n",
        "east",
        "--consortium",
        "c1",
        "-o",
        "json",
        "--out",
        file_s,
    ]);
    assert!(ok, "export --out failed: {err}");
    assert!(out.contains("2 node(s)"), "{out}");
    let text = std::fs::read_to_string(&file).expect("the bundle file");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    let from_json: tally_api::bundle::OrganizationBundle =
        serde_json::from_str(&text).expect("JSON bundle");
    assert_eq!(from_json, bundle);

    // A Peer without exposure has cluster-internal addresses: refused unless allowed.
    patch_status(
        "east",
        "org1-peer",
        r#"{"nodes":[{"name":"org1-peer-0","ready":true,"raftId":7,"peerAddress":"org1-peer-0.org1-peer.east.svc.cluster.local:7052","apiUrl":"https://org1-peer-0.org1-peer.east.svc.cluster.local:7051","channels":[]}]}"#,
    );
    let ca1 = tally_protocol::identity::OrgCa::generate("org1").expect("a CA");
    cp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "c1-org1-ca",
        "-n",
        "east",
        &format!("--from-literal=tls.crt={}", ca1.cert_pem()),
        &format!("--from-literal=tls.key={}", ca1.key_pem()),
    ]);
    let (ok, _, err) = plugin(&["tally", "org", "export", "org1", "-n", "east"]);
    assert!(!ok);
    assert!(
        err.contains("Peer org1-peer has no spec.exposure") && err.contains("--allow-internal"),
        "{err}"
    );
    let (ok, out, err) = plugin(&[
        "tally",
        "org",
        "export",
        "org1",
        "-n",
        "east",
        "--allow-internal",
    ]);
    assert!(ok, "export --allow-internal failed: {err}");
    assert!(out.contains("svc.cluster.local:7052") && !out.contains("PRIVATE KEY"));

    // Import into another Consortium ("the other cluster"): dry run first changes nothing.
    apply(
        "west",
        r#"
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {name: c2}
spec:
  organizations:
    - {name: shop}
"#,
    );
    let (ok, out, err) = plugin(&["tally", "org", "import", file_s, "-n", "west", "--dry-run"]);
    assert!(ok, "dry run failed: {err}");
    assert!(
        out.contains("c2-bank-ca-public")
            && out.contains("raftId: 1001")
            && out.contains("External"),
        "{out}"
    );
    let secret_missing = cp.kubectl(&["get", "secret", "c2-bank-ca-public", "-n", "west"]);
    assert!(!secret_missing.ok, "the dry run wrote the Secret");
    assert_eq!(
        organizations(&cp, "west", "c2").len(),
        1,
        "the dry run changed c2"
    );

    let (ok, out, err) = plugin(&["tally", "org", "import", file_s, "-n", "west"]);
    assert!(ok, "import failed: {err}");
    assert!(out.contains("organization bank added"), "{out}");
    let orgs = organizations(&cp, "west", "c2");
    let bank = orgs
        .iter()
        .find(|o| o["name"] == "bank")
        .expect("bank imported");
    assert_eq!(bank["approvals"], "External");
    assert_eq!(bank["ca"]["mode"], "Secret");
    assert_eq!(bank["ca"]["secretRef"]["name"], "c2-bank-ca-public");
    let raft: Vec<u64> = bank["externalPeers"]
        .as_array()
        .expect("externalPeers")
        .iter()
        .filter_map(|p| p["raftId"].as_u64())
        .collect();
    assert_eq!(raft, vec![1001, 1002]);
    let secret: serde_json::Value = serde_json::from_str(&cp.kubectl_ok(&[
        "get",
        "secret",
        "c2-bank-ca-public",
        "-n",
        "west",
        "-o",
        "json",
    ]))
    .expect("JSON");
    let keys: Vec<&String> = secret["data"].as_object().expect("data").keys().collect();
    assert_eq!(
        keys,
        vec!["tls.crt"],
        "the imported Secret holds more than the certificate"
    );

    // A re-export after a change is re-imported in place.
    let changed = text.replace(
        "bank-peer-1.bank.example.org:7052",
        "bank-peer-1.moved.example.org:7052",
    );
    let file2 = dir.path().join("bank-2.json");
    std::fs::write(&file2, changed).expect("write");
    let (ok, out, err) = plugin(&[
        "tally",
        "org",
        "import",
        file2.to_str().expect("UTF-8"),
        "-n",
        "west",
    ]);
    assert!(ok, "re-import failed: {err}");
    assert!(out.contains("organization bank replaced"), "{out}");
    let orgs = organizations(&cp, "west", "c2");
    assert_eq!(orgs.len(), 2, "{orgs:?}");
    let bank = orgs.iter().find(|o| o["name"] == "bank").expect("bank");
    assert_eq!(
        bank["externalPeers"][1]["peerAddress"],
        "bank-peer-1.moved.example.org:7052"
    );

    // Over the organization's own home it is refused, with the reason.
    let (ok, _, err) = plugin(&["tally", "org", "import", file_s, "-n", "east"]);
    assert!(!ok, "imported over a hosted organization");
    assert!(
        err.contains("hosted in this cluster") && err.contains("Peers bank-peer run its nodes"),
        "{err}"
    );
    // ... and so is one the operator approves for, without Peers.
    apply(
        "west",
        r#"
apiVersion: tally.dev/v1alpha1
kind: Consortium
metadata: {name: c3}
spec:
  organizations:
    - name: bank
      ca: {mode: Secret, secretRef: {name: own-bank-ca}}
"#,
    );
    let (ok, _, err) = plugin(&[
        "tally",
        "org",
        "import",
        file_s,
        "-n",
        "west",
        "--consortium",
        "c3",
    ]);
    assert!(!ok);
    assert!(err.contains("approvals Operator"), "{err}");
    // Several Consortia and none named: the error lists them.
    let (ok, _, err) = plugin(&["tally", "org", "import", file_s, "-n", "west"]);
    assert!(!ok);
    assert!(
        err.contains("c2, c3") && err.contains("--consortium"),
        "{err}"
    );

    // A malformed bundle is refused naming the field.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, yaml.replace("raftId: 1002", "raftId: 0")).expect("write");
    let (ok, _, err) = plugin(&[
        "tally",
        "org",
        "import",
        bad.to_str().expect("UTF-8"),
        "-n",
        "west",
        "--consortium",
        "c2",
    ]);
    assert!(!ok);
    assert!(err.contains("raftId"), "{err}");
    std::fs::write(
        &bad,
        yaml.replace("kind: OrganizationBundle", "kind: Secret"),
    )
    .expect("write");
    let (ok, _, err) = plugin(&[
        "tally",
        "org",
        "import",
        bad.to_str().expect("UTF-8"),
        "-n",
        "west",
        "--consortium",
        "c2",
    ]);
    assert!(!ok);
    assert!(err.contains("kind"), "{err}");

    // tallyctl's own org commands still pass through.
    let (ok, out, err) = plugin(&["tally", "org", "--help"]);
    assert!(ok, "{err}");
    assert!(out.contains("export") && out.contains("import"), "{out}");
}

/// `spec.organizations` of a Consortium.
fn organizations(cp: &ControlPlane, ns: &str, name: &str) -> Vec<serde_json::Value> {
    let c: serde_json::Value =
        serde_json::from_str(&cp.kubectl_ok(&["get", "consortium", name, "-n", ns, "-o", "json"]))
            .expect("JSON");
    c["spec"]["organizations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}
