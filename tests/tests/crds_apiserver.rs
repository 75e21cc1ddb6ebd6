//! The CRDs in `crds/` on a real kube-apiserver (with etcd): they are accepted and become
//! Established, the examples apply, the printer columns print, the OpenAPI and CEL validation
//! rules are enforced server-side (with the messages the operator's docs promise), transition
//! rules refuse changes of immutable fields, and the status and scale subresources work.
//!
//! Needs etcd, kube-apiserver and kubectl: see `tally_tests::k8s_bin_dir` (scripts/test.sh
//! builds them with scripts/k8s-bins.sh and exports TALLY_K8S_BIN). `TALLY_SKIP_K8S=1` skips
//! this suite where they cannot be had.

use std::path::PathBuf;

use tally_tests::{k8s_bin_dir, ControlPlane};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The value in column `column` of the row whose first cell is `name`, in kubectl's table
/// output (cells are aligned under their headers; an empty cell gives "").
fn cell(table: &str, name: &str, column: &str) -> String {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let mut at = None;
    let mut offset = 0;
    for word in header.split(' ') {
        if word == column {
            at = Some(offset);
        }
        offset += word.len() + 1;
    }
    let at = at.unwrap_or_else(|| panic!("no column {column} in:\n{table}"));
    let row = lines
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"));
    let rest = row.get(at..).unwrap_or("");
    if rest.starts_with(' ') {
        return String::new();
    }
    rest.split_whitespace().next().unwrap_or("").to_string()
}

/// The invalid objects the apiserver must refuse, each with a part of the message it must give.
/// All are in the namespace `invalid`; the references they make need not exist.
const INVALID: &[(&str, &str, &str)] = &[
    (
        "Channel with a Peer both consenter and observer",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Channel","metadata":{"name":"both"},
            "spec":{"consortium":"c","members":["org1"],"consenters":["p1","p2"],"observers":["p2"]}}"#,
        "a Peer is either a consenter or an observer of a channel, not both",
    ),
    (
        "Channel whose policies.writers names a non-member",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Channel","metadata":{"name":"writers"},
            "spec":{"consortium":"c","members":["org1","org2"],"consenters":["p1"],
                    "policies":{"writers":["org1","org3"]}}}"#,
        "policies may only name member organizations of the channel",
    ),
    (
        "Channel whose chaincodeLifecycle count exceeds its members",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Channel","metadata":{"name":"lifecycle"},
            "spec":{"consortium":"c","members":["org1","org2"],"consenters":["p1"],
                    "policies":{"chaincodeLifecycle":{"rule":"AtLeast","count":3}}}}"#,
        "policies.chaincodeLifecycle.count cannot exceed the number of members",
    ),
    (
        "Channel whose name is not a DNS label",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Channel","metadata":{"name":"a.b"},
            "spec":{"consortium":"c","members":["org1"],"consenters":["p1"]}}"#,
        "a channel name is a DNS label",
    ),
    (
        "Channel without consenters",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Channel","metadata":{"name":"none"},
            "spec":{"consortium":"c","members":["org1"],"consenters":[]}}"#,
        "spec.consenters: Invalid value: 0: spec.consenters in body should have at least 1 items",
    ),
    (
        "Chaincode approval AtLeast without count",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Chaincode","metadata":{"name":"atleast"},
            "spec":{"channel":"main","name":"cc","version":"1",
                    "source":{"configMap":{"name":"cm","key":"cc.wasm"},
                              "sha256":"0000000000000000000000000000000000000000000000000000000000000000"},
                    "approval":{"rule":"AtLeast"}}}"#,
        "count is required when rule is AtLeast",
    ),
    (
        "Chaincode approval count without AtLeast",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Chaincode","metadata":{"name":"count"},
            "spec":{"channel":"main","name":"cc","version":"1",
                    "source":{"configMap":{"name":"cm","key":"cc.wasm"},
                              "sha256":"0000000000000000000000000000000000000000000000000000000000000000"},
                    "approval":{"rule":"Majority","count":2}}}"#,
        "count is only used with rule AtLeast",
    ),
    (
        "Chaincode sha256 of 63 hex digits",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Chaincode","metadata":{"name":"short"},
            "spec":{"channel":"main","name":"cc","version":"1",
                    "source":{"configMap":{"name":"cm","key":"cc.wasm"},
                              "sha256":"000000000000000000000000000000000000000000000000000000000000000"}}}"#,
        "spec.source.sha256 in body should match '^[0-9a-f]{64}$'",
    ),
    (
        "Consortium membershipApproval AtLeast without count",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Consortium","metadata":{"name":"approval"},
            "spec":{"organizations":[{"name":"org1"}],
                    "policies":{"membershipApproval":{"rule":"AtLeast"}}}}"#,
        "count is required when rule is AtLeast",
    ),
    (
        "Consortium organization with externalPeers and a generated CA",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Consortium","metadata":{"name":"external"},
            "spec":{"organizations":[{"name":"org1","ca":{"mode":"Generate"},
                    "externalPeers":[{"name":"far-0","apiUrl":"https://far.example:8443",
                                      "peerAddress":"far.example:7051"}]}]}}"#,
        "an organization with externalPeers brings its CA by Secret",
    ),
    (
        "Consortium organization with ca.mode Secret and no secretRef",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Consortium","metadata":{"name":"secret"},
            "spec":{"organizations":[{"name":"org1","ca":{"mode":"Secret"}}]}}"#,
        "ca.secretRef is required when ca.mode is Secret",
    ),
    (
        "Consortium organization rotating a CA it brings by Secret",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Consortium","metadata":{"name":"rotate"},
            "spec":{"organizations":[{"name":"org1","ca":{"mode":"Secret",
                    "secretRef":{"name":"org1-ca"},"rotate":"2026-12-03"}}]}}"#,
        "ca.rotate is only for ca.mode Generate",
    ),
    (
        "Consortium whose channelCreators names a non-member",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Consortium","metadata":{"name":"creators"},
            "spec":{"organizations":[{"name":"org1"}],"policies":{"channelCreators":["org2"]}}}"#,
        "policies.channelCreators may only name member organizations",
    ),
    (
        "Consortium with a 41-character name",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Consortium",
            "metadata":{"name":"a2345678901234567890123456789012345678901"},
            "spec":{"organizations":[{"name":"org1"}]}}"#,
        "a consortium name has at most 40 characters",
    ),
    (
        "Peer with a read-only restore from a URL that names no channel",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Peer","metadata":{"name":"audit"},
            "spec":{"consortium":"c","organization":"org1",
                    "restore":{"url":"s3://backups/x","readOnly":true}}}"#,
        "a read-only restore from url names its channels",
    ),
    (
        "Peer with 10 replicas",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Peer","metadata":{"name":"ten"},
            "spec":{"consortium":"c","organization":"org1","replicas":10}}"#,
        "spec.replicas in body should be less than or equal to 9",
    ),
    (
        "Peer with an unknown role",
        r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Peer","metadata":{"name":"role"},
            "spec":{"consortium":"c","organization":"org1","role":"leader"}}"#,
        r#"spec.role: Unsupported value: "leader""#,
    ),
];

#[test]
fn crds_are_accepted_and_enforced_by_a_real_apiserver() {
    let Some(bin) = k8s_bin_dir() else { return };
    let started = std::time::Instant::now();
    let cp = ControlPlane::start("crds_apiserver", &bin);
    eprintln!(
        "control plane ready at {} in {:.1}s (folder {})",
        cp.server,
        started.elapsed().as_secs_f64(),
        cp.dir().display()
    );
    let crds = repo().join("crds");
    let crds = crds.to_str().expect("UTF-8 path");

    // The CRDs are accepted (a CEL rule that does not compile, or exceeds the cost budget, is
    // refused here) and become Established.
    let r = cp.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=tally-test",
        "-f",
        crds,
    ]);
    assert!(
        r.ok,
        "the apiserver refused the CRDs:\n{}{}",
        r.stdout, r.stderr
    );
    assert!(
        !r.stderr.contains("Warning"),
        "the apiserver warned about the CRDs:\n{}",
        r.stderr
    );
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "-f",
        crds,
    ]);
    let names = cp.kubectl_ok(&["get", "crd", "-o", "name"]);
    for crd in [
        "consortia.tally.dev",
        "peers.tally.dev",
        "channels.tally.dev",
        "chaincodes.tally.dev",
    ] {
        assert!(
            names.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{crd}"
            )),
            "{crd} is not served: {names}"
        );
    }

    // Every example applies, each into its own namespace.
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/examples"))
        .expect("deploy/examples")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    examples.sort();
    assert!(!examples.is_empty(), "no examples in deploy/examples");
    for ex in &examples {
        let ns = ex.file_stem().unwrap().to_str().unwrap();
        cp.kubectl_ok(&["create", "namespace", ns]);
        let r = cp.kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=tally-test",
            "-n",
            ns,
            "-f",
            ex.to_str().unwrap(),
        ]);
        assert!(
            r.ok && !r.stderr.contains("Warning"),
            "{} does not apply cleanly:\n{}{}",
            ex.display(),
            r.stdout,
            r.stderr
        );
    }

    // The printer columns print (status columns are empty without an operator).
    let all = cp.kubectl_ok(&["get", "consortia,peers,channels", "-A"]);
    eprintln!("{all}");
    for header in [
        "ORGS", "STATUS", "AGE", "ORG", "ROLE", "REPLICAS", "READY", "MEMBERS", "HEIGHT", "LEADER",
        "AGREE", "DEGRADED",
    ] {
        assert!(
            all.lines()
                .any(|l| l.split_whitespace().any(|h| h == header)),
            "no {header} column in:\n{all}"
        );
    }
    for object in [
        "consortium.tally.dev/quickstart",
        "peer.tally.dev/org1-peer",
        "channel.tally.dev/main",
        "channel.tally.dev/receivables",
    ] {
        assert!(all.contains(object), "{object} is not listed:\n{all}");
    }
    let peers = cp.kubectl_ok(&["get", "peers", "-n", "quickstart"]);
    assert_eq!(cell(&peers, "org1-peer", "ORG"), "org1", "{peers}");
    assert_eq!(cell(&peers, "org1-peer", "ROLE"), "consenter", "{peers}");
    assert_eq!(cell(&peers, "org1-peer", "REPLICAS"), "2", "{peers}");
    // The `tally` category lists every kind.
    let r = cp.kubectl(&["get", "tally", "-A", "-o", "name"]);
    assert!(
        r.ok && r.stdout.contains("consortium.tally.dev/notarization"),
        "the `tally` category lists the kinds: {r:?}"
    );

    // Invalid objects are refused with the documented messages.
    cp.kubectl_ok(&["create", "namespace", "invalid"]);
    let mut wrong = Vec::new();
    for (case, json, expected) in INVALID {
        let r = cp.kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--field-manager=tally-test",
                "-n",
                "invalid",
                "-f",
                "-",
            ],
            Some(json),
        );
        eprintln!("{case}: {}", r.stderr.trim());
        if r.ok {
            wrong.push(format!("{case}: accepted ({})", r.stdout.trim()));
        } else if !r.stderr.contains(expected) {
            wrong.push(format!(
                "{case}: refused, but without {expected:?}:\n{}",
                r.stderr.trim()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    let left = cp.kubectl_ok(&["get", "tally", "-n", "invalid", "-o", "name"]);
    assert!(left.trim().is_empty(), "refused objects exist: {left}");

    // Transition rules: immutable fields stay; replicas change.
    let patch = |kind: &str, name: &str, ns: &str, spec: &str| {
        cp.kubectl(&[
            "patch",
            kind,
            name,
            "-n",
            ns,
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{spec}}}"#),
        ])
    };
    for (kind, name, spec, expected) in [
        (
            "channel",
            "main",
            r#"{"consortium":"other"}"#,
            "consortium cannot change; create a new Channel",
        ),
        (
            "peer",
            "org2-peer",
            r#"{"organization":"org1"}"#,
            "organization cannot change: node certificates are issued by its CA",
        ),
        (
            "peer",
            "org2-peer",
            r#"{"consortium":"other"}"#,
            "consortium cannot change; create a new Peer",
        ),
        (
            "peer",
            "org2-peer",
            r#"{"role":"observer"}"#,
            "role cannot change",
        ),
    ] {
        let r = patch(kind, name, "quickstart", spec);
        assert!(
            !r.ok && r.stderr.contains(expected),
            "changing {kind} {name} with {spec}: expected a refusal with {expected:?}, got {r:?}"
        );
    }
    let r = patch("peer", "org2-peer", "quickstart", r#"{"replicas":3}"#);
    assert!(r.ok, "changing replicas was refused: {r:?}");
    let replicas = cp.kubectl_ok(&[
        "get",
        "peer",
        "org2-peer",
        "-n",
        "quickstart",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "3");

    // A Chaincode's channel and ledger name cannot change either.
    let chaincode = r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Chaincode","metadata":{"name":"notes"},
        "spec":{"channel":"main","name":"notes","version":"1",
                "source":{"configMap":{"name":"notes-wasm","key":"notes.wasm"},
                          "sha256":"00000000000000000000000000000000000000000000000000000000000000ff"}}}"#;
    let r = cp.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=tally-test",
            "-n",
            "quickstart",
            "-f",
            "-",
        ],
        Some(chaincode),
    );
    assert!(r.ok, "a valid Chaincode was refused: {r:?}");
    for (spec, expected) in [
        (
            r#"{"channel":"other"}"#,
            "channel cannot change; create a new Chaincode",
        ),
        (r#"{"name":"other"}"#, "name cannot change"),
    ] {
        let r = patch("chaincode", "notes", "quickstart", spec);
        assert!(
            !r.ok && r.stderr.contains(expected),
            "changing the chaincode with {spec}: expected {expected:?}, got {r:?}"
        );
    }
    assert!(patch("chaincode", "notes", "quickstart", r#"{"version":"2"}"#).ok);

    // The status subresource: status is written through it (and only through it) and shows in
    // the printer columns.
    cp.kubectl_ok(&[
        "patch",
        "channel",
        "main",
        "-n",
        "quickstart",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"height":42,"memberCount":2,"leader":"org1-peer-0","stateRootsAgree":true,"conditions":[{"type":"Degraded","status":"True","reason":"NodeDegraded","message":"stopped serving channel main: org2-peer-0 (first differing height 7: differs)","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#,
    ]);
    // Through the main resource a status is ignored.
    cp.kubectl_ok(&[
        "patch",
        "channel",
        "main",
        "-n",
        "quickstart",
        "--type=merge",
        "-p",
        r#"{"status":{"height":7}}"#,
    ]);
    let table = cp.kubectl_ok(&["get", "channel", "main", "-n", "quickstart"]);
    eprintln!("{table}");
    assert_eq!(cell(&table, "main", "HEIGHT"), "42", "{table}");
    assert_eq!(cell(&table, "main", "MEMBERS"), "2", "{table}");
    assert_eq!(cell(&table, "main", "LEADER"), "org1-peer-0", "{table}");
    assert_eq!(cell(&table, "main", "AGREE"), "true", "{table}");
    assert_eq!(cell(&table, "main", "DEGRADED"), "True", "{table}");
    // The status schema is enforced too.
    let r = cp.kubectl(&[
        "patch",
        "channel",
        "main",
        "-n",
        "quickstart",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"Maybe","reason":"X","lastTransitionTime":"2024-01-01T00:00:00Z"}]}}"#,
    ]);
    assert!(
        !r.ok && r.stderr.contains("Unsupported value: \"Maybe\""),
        "a status with an invalid condition was accepted: {r:?}"
    );

    // The scale subresource.
    cp.kubectl_ok(&[
        "scale",
        "peer",
        "org2-peer",
        "-n",
        "quickstart",
        "--replicas=2",
    ]);
    let scale = cp.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/tally.dev/v1alpha1/namespaces/quickstart/peers/org2-peer/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).expect("Scale JSON");
    assert_eq!(scale["kind"], "Scale", "{scale}");
    assert_eq!(scale["spec"]["replicas"], 2, "{scale}");
    let peers = cp.kubectl_ok(&["get", "peers", "-n", "quickstart"]);
    assert_eq!(cell(&peers, "org2-peer", "REPLICAS"), "2", "{peers}");
    let r = cp.kubectl(&[
        "scale",
        "peer",
        "org2-peer",
        "-n",
        "quickstart",
        "--replicas=10",
    ]);
    assert!(
        !r.ok && r.stderr.contains("less than or equal to 9"),
        "scaling to 10 through the scale subresource was accepted: {r:?}"
    );
    eprintln!(
        "crds_apiserver: done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
