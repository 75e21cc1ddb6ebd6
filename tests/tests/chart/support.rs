//! What the packaging tests share: running helm and kubectl, reading rendered YAML, and the
//! RBAC permissions the operator and tenants should have.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tally_tests::k8s_bin_dir;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

pub fn chart_dir() -> PathBuf {
    repo().join("charts/tally-operator")
}

/// What a command returned.
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Out {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Looks for an executable: `env` names it, else `dirs` (in order), else `PATH`.
pub fn find_exe(env: &str, name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    dirs.iter()
        .cloned()
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// helm, with its cache, configuration and data folders in a temporary folder (nothing of the
/// user's is read or written).
pub struct Helm {
    pub bin: PathBuf,
    pub home: tempfile::TempDir,
}

impl Helm {
    /// `None` (skip) only when the Kubernetes binaries are missing and `TALLY_SKIP_K8S=1`.
    pub fn find() -> Option<(Helm, PathBuf)> {
        let k8s = k8s_bin_dir()?;
        let bin = find_exe("TALLY_HELM", "helm", std::slice::from_ref(&k8s));
        let Some(bin) = bin else {
            if std::env::var("TALLY_SKIP_K8S").is_ok_and(|v| v == "1") {
                eprintln!(
                    "skipping: no helm in {} nor on PATH and TALLY_SKIP_K8S=1",
                    k8s.display()
                );
                return None;
            }
            panic!(
                "helm was not found in {} nor on PATH: run `scripts/k8s-bins.sh` (it builds helm \
                 next to kube-apiserver) and export TALLY_K8S_BIN=<the folder it prints>, or set \
                 TALLY_HELM=/path/to/helm",
                k8s.display()
            );
        };
        let home = tempfile::Builder::new()
            .prefix("tally-helm-")
            .tempdir()
            .expect("temporary folder");
        Some((Helm { bin, home }, k8s))
    }

    pub fn run(&self, args: &[&str]) -> Out {
        let h = self.home.path();
        run(Command::new(&self.bin)
            .args(args)
            .env("HELM_CACHE_HOME", h.join("cache"))
            .env("HELM_CONFIG_HOME", h.join("config"))
            .env("HELM_DATA_HOME", h.join("data"))
            .env_remove("KUBECONFIG"))
    }

    /// `helm template <release> charts/tally-operator -n <namespace> <args>`: the YAML.
    pub fn template(&self, release: &str, namespace: &str, args: &[&str]) -> String {
        let chart = chart_dir();
        let chart = chart.to_str().expect("utf-8 path");
        let mut all = vec!["template", release, chart, "--namespace", namespace];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            out.ok,
            "helm {} failed:\n{}{}",
            all.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// [`template`](Self::template), parsed.
    pub fn render(&self, release: &str, namespace: &str, args: &[&str]) -> Vec<Value> {
        parse_yaml(&self.template(release, namespace, args))
    }
}

/// The documents of a multi-document YAML stream (empty ones left out).
pub fn parse_yaml(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("bad YAML ({e}):\n{text}")))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

pub fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn namespace(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// `kind namespace/name` of every object, sorted.
pub fn inventory(objs: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = objs
        .iter()
        .map(|o| format!("{} {}/{}", kind(o), namespace(o), name(o)))
        .collect();
    v.sort();
    v
}

pub fn get<'a>(objs: &'a [Value], k: &str, ns: &str, n: &str) -> &'a Value {
    objs.iter()
        .find(|o| kind(o) == k && namespace(o) == ns && name(o) == n)
        .unwrap_or_else(|| panic!("no {k} {ns}/{n} among {:#?}", inventory(objs)))
}

pub fn count(objs: &[Value], k: &str) -> usize {
    objs.iter().filter(|o| kind(o) == k).count()
}

/// The permissions of a (Cluster)Role as (API group, resource, verb).
pub type Perms = BTreeSet<(String, String, String)>;

pub fn rule_perms(role: &Value) -> Perms {
    let mut out = Perms::new();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .iter()
            .map(|s| s.as_str().expect("string").to_string())
            .collect()
    };
    for rule in role["rules"].as_array().expect("rules") {
        assert!(
            rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
            "unexpected rule {rule}"
        );
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    assert!(
                        g != "*" && r != "*" && v != "*",
                        "wildcard in rule {rule} of {}",
                        name(role)
                    );
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

pub fn perms(table: &[(&str, &[&str], &[&str])]) -> Perms {
    let mut out = Perms::new();
    for (group, resources, verbs) in table {
        for r in *resources {
            for v in *verbs {
                out.insert((group.to_string(), r.to_string(), v.to_string()));
            }
        }
    }
    out
}

pub const KINDS: &[&str] = &[
    "consortia",
    "peers",
    "channels",
    "chaincodes",
    "backups",
    "backupschedules",
];
pub const STATUS: &[&str] = &[
    "consortia/status",
    "peers/status",
    "channels/status",
    "chaincodes/status",
    "backups/status",
    "backupschedules/status",
];
pub const FINALIZERS: &[&str] = &[
    "consortia/finalizers",
    "peers/finalizers",
    "channels/finalizers",
    "chaincodes/finalizers",
    "backups/finalizers",
    "backupschedules/finalizers",
];
pub const CRUD: &[&str] = &[
    "get", "list", "watch", "create", "patch", "update", "delete",
];

/// Exactly what the operator may do in a watched namespace.
pub fn operator_perms() -> Perms {
    perms(&[
        (
            "tally.dev",
            KINDS,
            &["get", "list", "watch", "patch", "update"],
        ),
        ("tally.dev", STATUS, &["get", "patch", "update"]),
        ("tally.dev", FINALIZERS, &["update"]),
        ("tally.dev", &["backups"], &["create", "delete"]),
        // Only to retire a Peer's StatefulSet from before the operator ran pods itself.
        ("apps", &["statefulsets"], &["delete"]),
        ("", &["services", "configmaps", "secrets"], CRUD),
        (
            "",
            &["pods"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        ("", &["persistentvolumeclaims"], &["list", "create"]),
        ("", &["events"], &["create", "patch"]),
        ("events.k8s.io", &["events"], &["create", "patch"]),
        ("policy", &["poddisruptionbudgets"], CRUD),
        ("networking.k8s.io", &["networkpolicies"], CRUD),
    ])
}

/// What the operator may do in its own namespace on top: the leader-election Lease.
pub fn lease_perms() -> Perms {
    perms(&[(
        "coordination.k8s.io",
        &["leases"],
        &["get", "list", "watch", "create", "update", "patch"],
    )])
}

pub fn tenant_edit_perms() -> Perms {
    perms(&[
        (
            "tally.dev",
            KINDS,
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        ),
        ("tally.dev", STATUS, &["get"]),
        ("tally.dev", &["peers/scale"], &["get", "update", "patch"]),
    ])
}

pub fn tenant_view_perms() -> Perms {
    perms(&[
        ("tally.dev", KINDS, &["get", "list", "watch"]),
        ("tally.dev", STATUS, &["get"]),
        ("tally.dev", &["peers/scale"], &["get"]),
    ])
}

pub fn container(objs: &[Value], ns: &str, deployment: &str) -> Value {
    let d = get(objs, "Deployment", ns, deployment);
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container: {d}");
    containers[0].clone()
}

pub fn args(c: &Value) -> Vec<String> {
    c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

pub fn app_version() -> String {
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    chart["appVersion"]
        .as_str()
        .expect("appVersion")
        .to_string()
}

/// The names of the files in `dir` with their contents.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect()
}
