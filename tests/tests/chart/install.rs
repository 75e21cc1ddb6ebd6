//! The chart and the kustomize base applied to a real kube-apiserver, with least privilege
//! checked by `kubectl auth can-i`.

use super::support::*;
use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{json, Value};
use tally_tests::{kubectl_bin, ControlPlane};

/// Every row of `kubectl auth can-i --list` as (API group, resource, verb), less what every
/// authenticated user may do (self-reviews, discovery).
fn can_i_list(cp: &ControlPlane, user: &str, ns: &str) -> Perms {
    let table = cp.kubectl_ok(&["auth", "can-i", "--list", "--as", user, "-n", ns]);
    let mut out = Perms::new();
    for line in table.lines().skip(1) {
        let Some(resource) = line.split_whitespace().next() else {
            continue;
        };
        if resource.starts_with('[') {
            continue; // a non-resource URL
        }
        let verbs = &line[line.rfind('[').expect("verbs") + 1..line.rfind(']').expect("verbs")];
        // `peers.tally.dev/status`, `networkpolicies.networking.k8s.io`, `pods`.
        let (res, sub) = resource.split_once('/').unwrap_or((resource, ""));
        let (res, group) = res.split_once('.').unwrap_or((res, ""));
        if group == "authorization.k8s.io" || group == "authentication.k8s.io" {
            continue;
        }
        let res = if sub.is_empty() {
            res.to_string()
        } else {
            format!("{res}/{sub}")
        };
        for v in verbs.split_whitespace() {
            out.insert((group.to_string(), res.clone(), v.to_string()));
        }
    }
    out
}

fn can_i(cp: &ControlPlane, user: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i", "--as", user];
    all.extend_from_slice(args);
    let r = cp.kubectl(&all);
    match r.stdout.trim() {
        "yes" => true,
        "no" => false,
        _ => panic!("kubectl {}: {}{}", all.join(" "), r.stdout, r.stderr),
    }
}

fn assert_can(cp: &ControlPlane, user: &str, checks: &[(bool, &[&str])]) {
    let wrong: Vec<String> = checks
        .iter()
        .filter(|(want, args)| can_i(cp, user, args) != *want)
        .map(|(want, args)| {
            format!(
                "{} {}",
                if *want { "can" } else { "cannot" },
                args.join(" ")
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{user} should but does not: {wrong:#?}");
}

/// Applies `yaml` server-side and checks that the apiserver gave no warning (a Pod Security
/// warning under `restricted` among them).
fn apply(cp: &ControlPlane, what: &str, yaml: &str) {
    let r = cp.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(yaml));
    assert!(r.ok, "{what} refused:\n{}{}", r.stdout, r.stderr);
    assert!(
        !r.stderr.contains("Warning"),
        "{what}: the apiserver warned:\n{}",
        r.stderr
    );
}

/// Minimal stand-ins for the Prometheus Operator's ServiceMonitor, PodMonitor and
/// PrometheusRule CRDs (any spec accepted), so that the rendered monitors and rules can be
/// applied; their fields are checked in `chart_lints_and_renders`.
fn monitor_crds() -> String {
    [
        ("ServiceMonitor", "servicemonitors"),
        ("PodMonitor", "podmonitors"),
        ("PrometheusRule", "prometheusrules"),
    ]
    .iter()
    .map(|(kind, plural)| {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
            "spec": {
                "group": "monitoring.coreos.com",
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "type": "object", "x-kubernetes-preserve-unknown-fields": true,
                    }},
                }],
            },
        })
        .to_string()
    })
    .collect::<Vec<_>>()
    .join("\n---\n")
}

const PEER: &str = r#"{"apiVersion":"tally.dev/v1alpha1","kind":"Peer","metadata":{"name":"org1-peer"},
  "spec":{"consortium":"c1","organization":"org1","replicas":1}}"#;

#[test]
fn chart_installs_with_least_privilege() {
    let Some((helm, k8s)) = Helm::find() else {
        return;
    };
    let cp = ControlPlane::start("chart_installs_with_least_privilege", &k8s);
    for ns in ["ops", "a", "b", "c", "t1", "t2"] {
        cp.kubectl_ok(&["create", "namespace", ns]);
        // Warn (on Deployments too, not only Pods) where the restricted profile is not met.
        cp.kubectl_ok(&[
            "label",
            "namespace",
            ns,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted",
        ]);
    }

    // The warning `apply` looks for is given: a Deployment that is not restricted gets it.
    let loose = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"loose","namespace":"ops"},
      "spec":{"selector":{"matchLabels":{"app":"loose"}},"template":{"metadata":{"labels":{"app":"loose"}},
      "spec":{"containers":[{"name":"c","image":"busybox:1"}]}}}}"#;
    let r = cp.kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(loose));
    assert!(
        r.ok && r.stderr.contains("would violate PodSecurity \"restricted"),
        "a loose Deployment is warned about: {}{}",
        r.stdout,
        r.stderr
    );
    cp.kubectl_ok(&["delete", "deployment", "-n", "ops", "loose"]);

    // The chart with its CRDs, watching every namespace (asked for), and the monitoring API
    // present.
    apply(&cp, "monitor CRDs", &monitor_crds());
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "--all",
    ]);
    let ops = helm.template(
        "ops",
        "ops",
        &[
            "--include-crds",
            "--api-versions",
            "monitoring.coreos.com/v1",
            "--set",
            "rbac.clusterWide=true",
        ],
    );
    assert!(ops.contains("kind: CustomResourceDefinition") && ops.contains("kind: PodMonitor"));
    apply(&cp, "the chart (release ops)", &ops);
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "--all",
    ]);
    // A second install watching a and b only (the tenant roles belong to the first).
    let scoped = helm.template(
        "scoped",
        "c",
        &["--set", "watchNamespaces={a,b},tenantRoles.enabled=false"],
    );
    apply(&cp, "the chart (release scoped)", &scoped);

    let served = cp.kubectl_ok(&["api-resources", "--api-group=tally.dev", "-o", "name"]);
    let served: BTreeSet<&str> = served.lines().collect();
    assert_eq!(
        served,
        [
            "backups.tally.dev",
            "backupschedules.tally.dev",
            "chaincodes.tally.dev",
            "channels.tally.dev",
            "consortia.tally.dev",
            "peers.tally.dev"
        ]
        .into_iter()
        .collect(),
    );
    // Accepted, and unavailable (no scheduler, no kubelet here).
    let d: Value = serde_json::from_str(&cp.kubectl_ok(&[
        "get",
        "deployment",
        "-n",
        "ops",
        "ops-tally-operator",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert!(
        d["status"]["availableReplicas"].is_null(),
        "{}",
        d["status"]
    );
    cp.kubectl_ok(&[
        "get",
        "servicemonitor,podmonitor,prometheusrule,pdb,service",
        "-n",
        "ops",
    ]);

    // The operator, watching everything: exactly its rules in any namespace, and the Lease
    // in its own.
    let op = "system:serviceaccount:ops:ops-tally-operator";
    assert_eq!(can_i_list(&cp, op, "t1"), operator_perms(), "{op} in t1");
    let mut own = operator_perms();
    own.extend(lease_perms());
    assert_eq!(can_i_list(&cp, op, "ops"), own, "{op} in ops");
    assert_can(
        &cp,
        op,
        &[
            (true, &["create", "pods", "--all-namespaces"]),
            (false, &["patch", "statefulsets.apps", "--all-namespaces"]),
            (true, &["delete", "statefulsets.apps", "--all-namespaces"]),
            (false, &["delete", "persistentvolumeclaims", "-n", "t1"]),
            (true, &["delete", "secrets", "-n", "t2"]),
            (
                true,
                &[
                    "update",
                    "peers.tally.dev",
                    "--subresource=status",
                    "-n",
                    "t1",
                ],
            ),
            (true, &["update", "leases.coordination.k8s.io", "-n", "ops"]),
            (false, &["update", "leases.coordination.k8s.io", "-n", "t1"]),
            (false, &["delete", "nodes"]),
            (false, &["create", "clusterroles.rbac.authorization.k8s.io"]),
            (
                false,
                &[
                    "create",
                    "rolebindings.rbac.authorization.k8s.io",
                    "-n",
                    "t1",
                ],
            ),
            (
                false,
                &["create", "customresourcedefinitions.apiextensions.k8s.io"],
            ),
            // `pods/exec` would name a pod called "exec": the subresource is a flag.
            (false, &["create", "pods", "--subresource=exec", "-n", "t1"]),
            (false, &["create", "peers.tally.dev", "-n", "t1"]),
            (false, &["delete", "consortia.tally.dev", "-n", "t1"]),
        ],
    );

    // The operator watching a and b: its rules there, nothing elsewhere.
    let sc = "system:serviceaccount:c:scoped-tally-operator";
    assert_eq!(can_i_list(&cp, sc, "a"), operator_perms(), "{sc} in a");
    assert_eq!(can_i_list(&cp, sc, "c"), lease_perms(), "{sc} in c");
    assert_eq!(can_i_list(&cp, sc, "t1"), Perms::new(), "{sc} in t1");
    assert_can(
        &cp,
        sc,
        &[
            (true, &["get", "secrets", "-n", "a"]),
            (true, &["patch", "pods", "-n", "b"]),
            (false, &["get", "secrets", "-n", "c"]),
            (false, &["get", "secrets", "-n", "t1"]),
            (false, &["list", "pods", "--all-namespaces"]),
            (false, &["list", "peers.tally.dev", "--all-namespaces"]),
        ],
    );

    // Tenants: alice edits Tally resources in t1, bob reads them there.
    cp.kubectl_ok(&[
        "create",
        "rolebinding",
        "alice",
        "-n",
        "t1",
        "--clusterrole=tally-tenant-edit",
        "--user=alice",
    ]);
    cp.kubectl_ok(&[
        "create",
        "rolebinding",
        "bob",
        "-n",
        "t1",
        "--clusterrole=tally-tenant-view",
        "--user=bob",
    ]);
    let created = cp.kubectl_stdin(
        &["--as", "alice", "-n", "t1", "create", "-f", "-"],
        Some(PEER),
    );
    assert!(created.ok, "alice creates a Peer in t1: {}", created.stderr);
    let refused = cp.kubectl_stdin(
        &["--as", "alice", "-n", "t2", "create", "-f", "-"],
        Some(PEER),
    );
    assert!(
        !refused.ok && refused.stderr.contains("forbidden"),
        "alice cannot create a Peer in t2: {}{}",
        refused.stdout,
        refused.stderr
    );
    let listed = cp.kubectl(&["--as", "bob", "-n", "t1", "get", "peers", "-o", "name"]);
    assert_eq!(
        listed.stdout.trim(),
        "peer.tally.dev/org1-peer",
        "{}",
        listed.stderr
    );
    let deleted = cp.kubectl(&["--as", "bob", "-n", "t1", "delete", "peer", "org1-peer"]);
    assert!(
        !deleted.ok && deleted.stderr.contains("forbidden"),
        "bob cannot delete: {}",
        deleted.stderr
    );
    assert_eq!(
        can_i_list(&cp, "alice", "t1"),
        tenant_edit_perms(),
        "alice in t1"
    );
    assert_eq!(can_i_list(&cp, "alice", "t2"), Perms::new(), "alice in t2");
    assert_eq!(
        can_i_list(&cp, "bob", "t1"),
        tenant_view_perms(),
        "bob in t1"
    );
    assert_can(
        &cp,
        "alice",
        &[
            (
                true,
                &[
                    "patch",
                    "peers.tally.dev",
                    "--subresource=scale",
                    "-n",
                    "t1",
                ],
            ),
            (
                true,
                &[
                    "get",
                    "channels.tally.dev",
                    "--subresource=status",
                    "-n",
                    "t1",
                ],
            ),
            (
                false,
                &[
                    "update",
                    "channels.tally.dev",
                    "--subresource=status",
                    "-n",
                    "t1",
                ],
            ),
            (false, &["get", "secrets", "-n", "t1"]),
            (false, &["get", "pods", "-n", "t1"]),
            (false, &["list", "peers.tally.dev", "--all-namespaces"]),
        ],
    );
}

/// Whole numbers as integers: kustomize writes the CRDs' `64.0` as `64`.
fn whole_numbers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && !n.is_i64() && !n.is_u64())
            {
                *v = json!(f as i64);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(whole_numbers),
        Value::Object(m) => m.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// Drops what only Helm adds (and what the base adds: its Namespace).
fn without_helm_labels(objs: Vec<Value>) -> Vec<Value> {
    objs.into_iter()
        .filter(|o| kind(o) != "Namespace")
        .map(|mut o| {
            whole_numbers(&mut o);
            if let Some(labels) = o["metadata"]["labels"].as_object_mut() {
                labels.remove("helm.sh/chart");
                labels.remove("app.kubernetes.io/managed-by");
            }
            o
        })
        .collect()
}

#[test]
fn kustomize_base_is_the_chart_and_installs() {
    let Some((helm, k8s)) = Helm::find() else {
        return;
    };
    let base = repo().join("deploy/operator");
    let base = base.to_str().expect("utf-8 path");
    let kubectl = kubectl_bin(&k8s);
    let rendered = run(Command::new(&kubectl).args(["kustomize", base]));
    assert!(rendered.ok, "kubectl kustomize {base}: {}", rendered.stderr);
    let objs = parse_yaml(&rendered.stdout);
    let ns = get(&objs, "Namespace", "", "tally-system");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );

    // The same objects as the chart's cluster-wide rendering, field for field.
    let chart = without_helm_labels(helm.render(
        "tally-operator",
        "tally-system",
        &["--include-crds", "--set", "rbac.clusterWide=true"],
    ));
    let objs = without_helm_labels(objs);
    assert_eq!(inventory(&objs), inventory(&chart));
    for o in &chart {
        let b = get(&objs, kind(o), namespace(o), name(o));
        assert!(
            b == o,
            "deploy/operator differs from the chart's cluster-wide rendering in {} {}: render \
             deploy/operator/operator.yaml again as its header says (CRDs: copy crds/). \
             Chart:\n{}\nBase:\n{}",
            kind(o),
            name(o),
            serde_json::to_string_pretty(o).unwrap(),
            serde_json::to_string_pretty(b).unwrap()
        );
    }

    let cp = ControlPlane::start("kustomize_base_is_the_chart_and_installs", &k8s);
    let r = cp.kubectl(&["apply", "--server-side", "-k", base]);
    assert!(r.ok, "kubectl apply -k {base}:\n{}{}", r.stdout, r.stderr);
    assert!(
        !r.stderr.contains("Warning"),
        "the apiserver warned:\n{}",
        r.stderr
    );
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "--all",
    ]);
    for (what, name) in [
        ("deployment", "tally-operator"),
        ("pdb", "tally-operator"),
        ("serviceaccount", "tally-operator"),
        ("service", "tally-operator-metrics"),
    ] {
        cp.kubectl_ok(&["get", what, "-n", "tally-system", name]);
    }
    let op = "system:serviceaccount:tally-system:tally-operator";
    assert_eq!(can_i_list(&cp, op, "default"), operator_perms());
    assert_can(
        &cp,
        op,
        &[
            (true, &["patch", "pods", "--all-namespaces"]),
            (
                true,
                &["create", "leases.coordination.k8s.io", "-n", "tally-system"],
            ),
            (
                false,
                &["create", "leases.coordination.k8s.io", "-n", "default"],
            ),
            (false, &["delete", "nodes"]),
        ],
    );
}
