//! What the chart renders: CRD copies, lint, each values combination, a console per
//! organization.

use super::support::*;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

#[test]
fn crd_copies_match_crds() {
    let source = files(&repo().join("crds"));
    assert!(source.len() >= 4, "crds/ has {:?}", source.keys());
    for copy in ["charts/tally-operator/crds", "deploy/operator/crds"] {
        let got = files(&repo().join(copy));
        let stale: Vec<&String> = source
            .keys()
            .chain(got.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|f| source.get(*f) != got.get(*f))
            .collect();
        assert!(
            stale.is_empty(),
            "{copy}/ differs from crds/ in {stale:?}; crds/ is the source of truth: run \
             `rm {copy}/*.yaml && cp crds/*.yaml {copy}/` (after `cargo run -p tally-api \
             --bin tally-crdgen` if the CRD types changed)"
        );
    }
}

#[test]
fn chart_lints_and_renders() {
    let Some((helm, _)) = Helm::find() else {
        return;
    };
    let ns = "tally-system";
    let version = app_version();

    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8 path");
    for extra in [
        &[][..],
        &["--set", "watchNamespaces={a,b}"][..],
        &["--set", "replicaCount=1,tenantRoles.enabled=false"][..],
    ] {
        let mut a = vec!["lint", "--strict", chart];
        a.extend_from_slice(extra);
        let out = helm.run(&a);
        assert!(
            out.ok && !out.stdout.contains("[WARNING]") && !out.stdout.contains("[ERROR]"),
            "helm lint --strict {extra:?}:\n{}{}",
            out.stdout,
            out.stderr
        );
    }

    // Default values: least privilege (the operator may act in its own namespace only, through
    // a Role), no monitors (no monitoring API).
    let objs = helm.render("ops", ns, &[]);
    let full = "ops-tally-operator";
    assert_eq!(
        inventory(&objs),
        [
            "ClusterRole /tally-tenant-edit",
            "ClusterRole /tally-tenant-view",
            "Deployment tally-system/ops-tally-operator",
            "PodDisruptionBudget tally-system/ops-tally-operator",
            "Role tally-system/ops-tally-operator",
            "Role tally-system/ops-tally-operator-leader-election",
            "RoleBinding tally-system/ops-tally-operator",
            "RoleBinding tally-system/ops-tally-operator-leader-election",
            "Service tally-system/ops-tally-operator-metrics",
            "ServiceAccount tally-system/ops-tally-operator",
        ],
        "default render"
    );
    assert_eq!(rule_perms(get(&objs, "Role", ns, full)), operator_perms());
    let rb = get(&objs, "RoleBinding", ns, full);
    assert_eq!(rb["roleRef"]["kind"], "Role");
    assert_eq!(
        rb["subjects"],
        json!([{"kind": "ServiceAccount", "name": full, "namespace": ns}])
    );
    let default_args = args(&container(&objs, ns, full));
    assert!(
        default_args
            .iter()
            .any(|a| a == "--watch-namespaces=tally-system"),
        "by default the operator watches its own namespace: {default_args:?}"
    );

    // Cluster-wide only when asked: a ClusterRole and its binding, no --watch-namespaces.
    let objs = helm.render("ops", ns, &["--set", "rbac.clusterWide=true"]);
    assert_eq!(
        rule_perms(get(&objs, "ClusterRole", "", full)),
        operator_perms()
    );
    assert_eq!(
        count(&objs, "Role"),
        1,
        "only the lease's Role: {:#?}",
        inventory(&objs)
    );
    let out = helm.run(&[
        "template",
        "x",
        chart,
        "--set",
        "rbac.clusterWide=true,watchNamespaces={a}",
    ]);
    assert!(
        !out.ok && out.stderr.contains("not both"),
        "clusterWide with a list is refused: {}",
        out.stderr
    );
    assert_eq!(
        rule_perms(get(&objs, "Role", ns, "ops-tally-operator-leader-election")),
        lease_perms()
    );
    assert_eq!(
        rule_perms(get(&objs, "ClusterRole", "", "tally-tenant-edit")),
        tenant_edit_perms()
    );
    assert_eq!(
        rule_perms(get(&objs, "ClusterRole", "", "tally-tenant-view")),
        tenant_view_perms()
    );
    let crb = get(&objs, "ClusterRoleBinding", "", full);
    assert_eq!(crb["roleRef"]["name"], full);
    assert_eq!(
        crb["subjects"],
        json!([{"kind": "ServiceAccount", "name": full, "namespace": ns}])
    );
    let tenant = get(&objs, "ClusterRole", "", "tally-tenant-edit");
    assert!(
        !tenant["metadata"]["labels"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to")),
        "no aggregation by default: {tenant}"
    );

    let d = get(&objs, "Deployment", ns, full);
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], full);
    assert_eq!(
        d["spec"]["selector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "tally-operator", "app.kubernetes.io/instance": "ops"})
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = container(&objs, ns, full);
    assert_eq!(
        c["image"],
        format!("ghcr.io/tally-dev/tally-operator:{version}")
    );
    assert_eq!(
        c["securityContext"],
        json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    );
    assert_eq!(
        args(&c),
        [
            "--log-format=json".to_string(),
            "--metrics-addr=0.0.0.0:8080".to_string(),
            format!("--lease-name={full}"),
            "--node-image=ghcr.io/tally-dev/tally-node".to_string(),
            format!("--node-version={version}"),
        ],
        "watching all namespaces: no --watch-namespaces"
    );
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                &e["valueFrom"]["fieldRef"]["fieldPath"],
            )
        })
        .collect();
    assert_eq!(env["POD_NAMESPACE"], "metadata.namespace");
    assert_eq!(env["POD_NAME"], "metadata.name");
    assert_eq!(
        c["ports"],
        json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"})
    );
    let svc = get(&objs, "Service", ns, "ops-tally-operator-metrics");
    assert_eq!(
        svc["spec"]["selector"],
        d["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
    let pdb = get(&objs, "PodDisruptionBudget", ns, full);
    assert_eq!(pdb["spec"]["selector"], d["spec"]["selector"]);

    // A list of namespaces: a Role and RoleBinding in each, nothing cluster-wide but the tenant
    // roles; the operator is told which.
    let objs = helm.render("scoped", "c", &["--set", "watchNamespaces={a,b}"]);
    assert_eq!(
        inventory(&objs)
            .into_iter()
            .filter(|o| o.starts_with("Cluster"))
            .collect::<Vec<_>>(),
        [
            "ClusterRole /tally-tenant-edit",
            "ClusterRole /tally-tenant-view"
        ],
        "nothing cluster-wide for the operator when it watches a list"
    );
    assert_eq!(count(&objs, "Role"), 3, "{:#?}", inventory(&objs));
    for watched in ["a", "b"] {
        let role = get(&objs, "Role", watched, "scoped-tally-operator");
        assert_eq!(rule_perms(role), operator_perms());
        let rb = get(&objs, "RoleBinding", watched, "scoped-tally-operator");
        assert_eq!(
            rb["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "scoped-tally-operator"})
        );
        assert_eq!(
            rb["subjects"],
            json!([{"kind": "ServiceAccount", "name": "scoped-tally-operator", "namespace": "c"}])
        );
    }
    assert_eq!(
        rule_perms(get(
            &objs,
            "Role",
            "c",
            "scoped-tally-operator-leader-election"
        )),
        lease_perms()
    );
    assert_eq!(
        args(&container(&objs, "c", "scoped-tally-operator"))[0],
        "--watch-namespaces=a,b"
    );

    // Monitors: only where the monitoring API exists, unless switched off.
    let mon = ["--api-versions", "monitoring.coreos.com/v1"];
    let objs = helm.render("ops", ns, &mon);
    let sm = get(&objs, "ServiceMonitor", ns, full);
    let svc = get(&objs, "Service", ns, "ops-tally-operator-metrics");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "the ServiceMonitor selects the Service"
        );
    }
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        svc["spec"]["ports"][0]["name"]
    );
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(sm["spec"]["namespaceSelector"], json!({"matchNames": [ns]}));
    let pm = get(&objs, "PodMonitor", ns, "ops-tally-operator-nodes");
    assert_eq!(
        pm["spec"]["selector"],
        json!({"matchLabels": {"app.kubernetes.io/name": "tally-node"}})
    );
    // The nodes are looked for where the operator manages resources: by default its namespace.
    assert_eq!(pm["spec"]["namespaceSelector"], json!({"matchNames": [ns]}));
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], "api");
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["path"], "/metrics");

    let objs = helm.render(
        "scoped",
        "c",
        &["--set", "watchNamespaces={a,b}", mon[0], mon[1]],
    );
    let pm = get(&objs, "PodMonitor", "c", "scoped-tally-operator-nodes");
    assert_eq!(
        pm["spec"]["namespaceSelector"],
        json!({"matchNames": ["a", "b"]})
    );

    for (why, extra) in [
        (
            "the monitoring API is absent",
            &[
                "--set",
                "serviceMonitor.enabled=true,podMonitor.enabled=true",
            ][..],
        ),
        (
            "both are switched off",
            &[
                "--set",
                "serviceMonitor.enabled=false,podMonitor.enabled=false",
                mon[0],
                mon[1],
            ][..],
        ),
    ] {
        let objs = helm.render("ops", ns, extra);
        assert_eq!(
            count(&objs, "ServiceMonitor") + count(&objs, "PodMonitor"),
            0,
            "no monitors when {why}"
        );
    }
    let objs = helm.render(
        "ops",
        ns,
        &["--set", "podMonitor.enabled=false", mon[0], mon[1]],
    );
    assert_eq!(
        (count(&objs, "ServiceMonitor"), count(&objs, "PodMonitor")),
        (1, 0)
    );

    // The alert rules: the same groups as deploy/monitoring's plain rule file (both generated
    // by tally-monitoring), with Prometheus' own templates surviving Helm's.
    let objs = helm.render(
        "ops",
        ns,
        &["--set", "prometheusRule.labels.release=kps", mon[0], mon[1]],
    );
    let rule = get(&objs, "PrometheusRule", ns, full);
    assert_eq!(rule["metadata"]["labels"]["release"], "kps");
    let plain: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("deploy/monitoring/tally-alerts.rules.yaml"))
            .expect("the plain rule file"),
    )
    .expect("YAML");
    assert_eq!(rule["spec"]["groups"], plain["groups"]);
    assert!(
        rule["spec"]["groups"][0]["rules"][0]["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("{{ $labels.channel }}")),
        "{}",
        rule["spec"]["groups"][0]["rules"][0]
    );
    for (why, extra) in [
        (
            "the monitoring API is absent",
            &["--set", "prometheusRule.enabled=true"][..],
        ),
        (
            "it is switched off",
            &["--set", "prometheusRule.enabled=false", mon[0], mon[1]][..],
        ),
    ] {
        let objs = helm.render("ops", ns, extra);
        assert_eq!(
            count(&objs, "PrometheusRule"),
            0,
            "no PrometheusRule when {why}"
        );
    }

    // Other switches.
    let objs = helm.render(
        "ops",
        ns,
        &[
            "--set",
            "replicaCount=1,tenantRoles.aggregateToDefaultRoles=true,logFormat=text",
            "--set",
            "image.tag=1.2.3,nodeImage.repository=registry.example/node,nodeImage.tag=9.9.9",
        ],
    );
    assert_eq!(
        count(&objs, "PodDisruptionBudget"),
        0,
        "no PDB for one replica"
    );
    let c = container(&objs, ns, full);
    assert_eq!(c["image"], "ghcr.io/tally-dev/tally-operator:1.2.3");
    let a = args(&c);
    for want in [
        "--log-format=text",
        "--node-image=registry.example/node",
        "--node-version=9.9.9",
    ] {
        assert!(a.iter().any(|x| x == want), "{want} in {a:?}");
    }
    let labels = |n: &str| get(&objs, "ClusterRole", "", n)["metadata"]["labels"].clone();
    assert_eq!(
        labels("tally-tenant-edit")["rbac.authorization.k8s.io/aggregate-to-edit"],
        "true"
    );
    assert_eq!(
        labels("tally-tenant-edit")["rbac.authorization.k8s.io/aggregate-to-admin"],
        "true"
    );
    assert_eq!(
        labels("tally-tenant-view")["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    let objs = helm.render(
        "ops",
        ns,
        &["--set", "tenantRoles.enabled=false,rbac.create=false"],
    );
    assert_eq!(
        count(&objs, "ClusterRole") + count(&objs, "Role") + count(&objs, "ClusterRoleBinding"),
        0,
        "{:#?}",
        inventory(&objs)
    );

    // The values schema refuses what the chart cannot render sensibly.
    for (bad, field) in [
        ("logFormat=xml", "logFormat"),
        ("serviceMonitor.enabled=maybe", "serviceMonitor"),
        ("watchNamespaces={Not_A_Namespace}", "watchNamespaces"),
        ("imageTypo.tag=1", "imageTypo"),
    ] {
        let out = helm.run(&["template", "x", chart, "--set", bad]);
        assert!(
            !out.ok && out.stderr.contains(field),
            "--set {bad} must be refused naming {field}:\n{}",
            out.stderr
        );
    }
}

/// `consoles` renders, per organization, a Deployment that reads the ledger with the
/// organization's client identity Secret and serves only with a token, a ClusterIP Service, and
/// the token's Secret (unless one is named), in the consortium's namespace; the schema refuses a
/// console without nodes.
#[test]
fn chart_renders_a_console_per_organization() {
    use base64::Engine;
    let Some((helm, _)) = Helm::find() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary folder");
    let values = dir.path().join("consoles.yaml");
    std::fs::write(
        &values,
        "consoles:\n\
         - organization: bank\n\
         \x20 consortium: scf\n\
         \x20 namespace: tenant\n\
         \x20 nodes: [http://bank-peer-0.bank-peer-nodes.tenant.svc:7051, http://core-peer-0.core-peer-nodes.tenant.svc:7051]\n\
         - organization: supplier\n\
         \x20 consortium: scf\n\
         \x20 namespace: tenant\n\
         \x20 nodes: [http://core-peer-0.core-peer-nodes.tenant.svc:7051]\n\
         \x20 tokenSecret: supplier-console-token\n\
         \x20 tlsSecret: supplier-console-tls\n\
         \x20 service: {port: 9443}\n",
    )
    .expect("write values");
    let values = values.to_str().expect("utf-8 path");
    let chart = chart_dir();
    let out = helm.run(&[
        "lint",
        "--strict",
        chart.to_str().expect("utf-8"),
        "-f",
        values,
    ]);
    assert!(
        out.ok && !out.stdout.contains("[WARNING]"),
        "helm lint --strict with consoles:\n{}{}",
        out.stdout,
        out.stderr
    );
    let objs = helm.render("ops", "tally-system", &["-f", values]);
    let consoles: Vec<String> = inventory(&objs)
        .into_iter()
        .filter(|o| o.contains("console"))
        .collect();
    assert_eq!(
        consoles,
        [
            "Deployment tenant/ops-tally-operator-console-bank",
            "Deployment tenant/ops-tally-operator-console-supplier",
            "Secret tenant/ops-tally-operator-console-bank-token",
            "Service tenant/ops-tally-operator-console-bank",
            "Service tenant/ops-tally-operator-console-supplier",
        ],
        "one console per organization, a generated token only where none is named"
    );

    let bank = "ops-tally-operator-console-bank";
    let c = container(&objs, "tenant", bank);
    let a = args(&c);
    for want in [
        "--node=http://bank-peer-0.bank-peer-nodes.tenant.svc:7051",
        "--node=http://core-peer-0.core-peer-nodes.tenant.svc:7051",
        "--identity=/var/run/tally/identity",
        "--listen=0.0.0.0:8080",
        "--token-file=/var/run/tally/token/token",
        "--title=scf",
    ] {
        assert!(a.contains(&want.to_string()), "{want} in {a:?}");
    }
    assert!(!a.iter().any(|x| x.starts_with("--tls")), "{a:?}");
    let pod = &get(&objs, "Deployment", "tenant", bank)["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], json!(false));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], json!(true));
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"],
        json!(false)
    );
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("volume {name}: {pod}"))
            .clone()
    };
    let identity = volume("identity");
    assert_eq!(
        identity["secret"]["secretName"], "scf-bank-client",
        "the operator's client identity"
    );
    assert_eq!(
        identity["secret"]["items"],
        json!([{"key": "tls.crt", "path": "cert.pem"}, {"key": "tls.key", "path": "key.pem"}])
    );
    assert_eq!(
        volume("token")["secret"]["secretName"],
        format!("{bank}-token")
    );
    let svc = get(&objs, "Service", "tenant", bank);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], json!(8080));
    let labels =
        &get(&objs, "Deployment", "tenant", bank)["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().expect("a selector") {
        assert_eq!(
            &labels[k], v,
            "the Service selects the console's pods ({k})"
        );
    }
    let secret = get(&objs, "Secret", "tenant", &format!("{bank}-token"));
    let token = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["token"].as_str().expect("a token"))
        .expect("base64");
    assert_eq!(token.len(), 48, "a generated token of 48 characters");
    assert_eq!(
        secret["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );

    let supplier = "ops-tally-operator-console-supplier";
    let c = container(&objs, "tenant", supplier);
    let a = args(&c);
    for want in [
        "--listen=0.0.0.0:9443",
        "--tls-cert=/var/run/tally/tls/tls.crt",
        "--tls-key=/var/run/tally/tls/tls.key",
    ] {
        assert!(a.contains(&want.to_string()), "{want} in {a:?}");
    }
    assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
    let pod = &get(&objs, "Deployment", "tenant", supplier)["spec"]["template"]["spec"];
    let token = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "token")
        .expect("token volume");
    assert_eq!(token["secret"]["secretName"], "supplier-console-token");

    for (bad, field) in [
        ("consoles[0].organization=bank,consoles[0].consortium=scf", "nodes"),
        (
            "consoles[0].organization=bank,consoles[0].consortium=scf,consoles[0].nodes={ftp://x}",
            "consoles",
        ),
        (
            "consoles[0].organization=Bank,consoles[0].consortium=scf,consoles[0].nodes={http://x:7051}",
            "organization",
        ),
    ] {
        let out = helm.run(&["template", "x", chart.to_str().expect("utf-8"), "--set", bad]);
        assert!(
            !out.ok && out.stderr.contains(field),
            "--set {bad} must be refused naming {field}:\n{}",
            out.stderr
        );
    }
}
