//! A real Kubernetes control plane (etcd + kube-apiserver, and kube-controller-manager when
//! asked) for the operator's suites.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The folder holding `etcd` and `kube-apiserver` (and `kube-controller-manager` when built):
/// `TALLY_K8S_BIN`, else `KUBEBUILDER_ASSETS`, else what `scripts/k8s-bins.sh` prints (it
/// builds them from Go modules once and caches them outside the clone).
///
/// `None` only when none can be had and `TALLY_SKIP_K8S=1` is set; the caller then skips.
///
/// # Panics
/// When the binaries can be neither found nor built and `TALLY_SKIP_K8S` is not set.
pub fn k8s_bin_dir() -> Option<PathBuf> {
    static DIR: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let found = DIR.get_or_init(find_k8s_bin_dir);
    match found {
        Ok(d) => Some(d.clone()),
        Err(why) if std::env::var("TALLY_SKIP_K8S").is_ok_and(|v| v == "1") => {
            eprintln!("skipping: no Kubernetes binaries and TALLY_SKIP_K8S=1 ({why})");
            None
        }
        Err(why) => panic!(
            "the Kubernetes control-plane binaries are not available: {why}\n\
             Run `scripts/k8s-bins.sh` (it builds etcd and kube-apiserver from Go modules; needs Go \
             and the module proxy) and export TALLY_K8S_BIN=<the folder it prints>, or point \
             KUBEBUILDER_ASSETS at a folder with etcd and kube-apiserver, or set TALLY_SKIP_K8S=1 \
             to skip the suites that need them."
        ),
    }
}

/// [`k8s_bin_dir`], for suites that also need `kube-controller-manager` there (prebuilt envtest
/// assets lack it; `scripts/k8s-bins.sh` builds it).
///
/// `None` when the suite is to be skipped (`TALLY_SKIP_K8S=1` and no such folder).
///
/// # Panics
/// As [`k8s_bin_dir`] does, and when the folder has no kube-controller-manager and
/// `TALLY_SKIP_K8S` is not set.
pub fn k8s_bin_dir_with_controller_manager() -> Option<PathBuf> {
    let dir = k8s_bin_dir()?;
    if dir.join("kube-controller-manager").is_file() {
        return Some(dir);
    }
    let why = format!("{} has no kube-controller-manager", dir.display());
    if std::env::var("TALLY_SKIP_K8S").is_ok_and(|v| v == "1") {
        eprintln!("skipping: {why} and TALLY_SKIP_K8S=1");
        return None;
    }
    panic!(
        "{why}: point TALLY_K8S_BIN at a folder that has it (scripts/k8s-bins.sh builds it with \
         the others), or set TALLY_SKIP_K8S=1 to skip the suites that need it"
    );
}

pub(crate) fn find_k8s_bin_dir() -> Result<PathBuf, String> {
    let has_bins = |d: &Path| d.join("etcd").is_file() && d.join("kube-apiserver").is_file();
    for var in ["TALLY_K8S_BIN", "KUBEBUILDER_ASSETS"] {
        if let Some(d) = std::env::var_os(var).filter(|d| !d.is_empty()) {
            let d = PathBuf::from(d);
            return if has_bins(&d) {
                Ok(d)
            } else {
                Err(format!(
                    "{var}={} holds no etcd and kube-apiserver",
                    d.display()
                ))
            };
        }
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/k8s-bins.sh");
    eprintln!(
        "TALLY_K8S_BIN is not set; running {} (a cold build takes minutes)",
        script.display()
    );
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(&script);
    if std::env::var("TALLY_SKIP_K8S").is_ok_and(|v| v == "1") {
        // Only what is already built is used; nothing is built.
        cmd.env("TALLY_K8S_NO_BUILD", "1");
    }
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let d = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
    if has_bins(&d) {
        Ok(d)
    } else {
        Err(format!(
            "{} printed {:?}, which holds no etcd and kube-apiserver",
            script.display(),
            d
        ))
    }
}

/// The kubectl executable: `TALLY_KUBECTL`, else `kubectl` in the Kubernetes bin folder, else
/// `kubectl` on `PATH`.
pub fn kubectl_bin(k8s_bin: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("TALLY_KUBECTL") {
        return PathBuf::from(p);
    }
    let local = k8s_bin.join("kubectl");
    if local.is_file() {
        return local;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join("kubectl").is_file() {
                return d.join("kubectl");
            }
        }
    }
    panic!(
        "kubectl was not found on PATH nor in {}; install it or set TALLY_KUBECTL",
        k8s_bin.display()
    );
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// What [`kubectl`](ControlPlane::kubectl) returned.
#[derive(Debug)]
pub struct Kubectl {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// A throwaway Kubernetes control plane on loopback: etcd with its data in a temporary folder
/// and kube-apiserver in front of it, serving TLS with certificates generated for the test
/// (a CA, a serving certificate for 127.0.0.1, an admin client certificate in
/// `system:masters`, a service-account key). [`kubeconfig`](Self::kubeconfig) reaches it as
/// that admin, and so does [`client`](Self::client). Optionally kube-controller-manager too
/// ([`start_controller_manager`](Self::start_controller_manager)); pods then need a
/// [`PodRunner`](crate::podrunner::PodRunner) to run.
///
/// Its processes are killed when this is dropped (also while a failing test unwinds) and die
/// with the thread that started them should the test binary itself be killed. When a test fails
/// the folder is kept and the last lines of every log are printed; `TALLY_E2E_KEEP=1` keeps it
/// always.
pub struct ControlPlane {
    name: String,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    etcd: Option<std::process::Child>,
    apiserver: Option<std::process::Child>,
    controller_manager: Option<std::process::Child>,
    bin: PathBuf,
    kubectl: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// A kubeconfig for the admin (`system:masters`) user.
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver from `bin` and waits until `/readyz` answers `ok`.
    /// `name` labels messages (the test's name).
    ///
    /// # Panics
    /// When a process fails to start or the apiserver is not ready within 120 s; the logs'
    /// last lines are printed.
    pub fn start(name: &str, bin: &Path) -> ControlPlane {
        let dir = tempfile::Builder::new()
            .prefix("tally-k8s-")
            .tempdir()
            .expect("temporary folder");
        let root = dir.path().to_path_buf();
        let pki = root.join("pki");
        std::fs::create_dir_all(&pki).expect("pki folder");
        write_control_plane_pki(&pki);

        let etcd_port = free_loopback_port();
        let etcd_peer_port = free_loopback_port();
        let api_port = free_loopback_port();
        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = root.join("kubeconfig");
        std::fs::write(&kubeconfig, admin_kubeconfig(&server, &pki)).expect("write kubeconfig");

        let mut cp = ControlPlane {
            name: name.to_string(),
            dir: Some(dir),
            root: root.clone(),
            etcd: None,
            apiserver: None,
            controller_manager: None,
            bin: bin.to_path_buf(),
            kubectl: kubectl_bin(bin),
            server: server.clone(),
            kubeconfig,
        };

        let etcd_client = format!("http://127.0.0.1:{etcd_port}");
        let etcd_peer = format!("http://127.0.0.1:{etcd_peer_port}");
        cp.etcd = Some(spawn_logged(
            &bin.join("etcd"),
            &[
                "--name=default".to_string(),
                format!("--data-dir={}", root.join("etcd").display()),
                format!("--listen-client-urls={etcd_client}"),
                format!("--advertise-client-urls={etcd_client}"),
                format!("--listen-peer-urls={etcd_peer}"),
                format!("--initial-advertise-peer-urls={etcd_peer}"),
                format!("--initial-cluster=default={etcd_peer}"),
                "--log-level=warn".to_string(),
            ],
            &root.join("etcd.log"),
        ));

        let p = |f: &str| pki.join(f).display().to_string();
        cp.apiserver = Some(spawn_logged(
            &bin.join("kube-apiserver"),
            &[
                format!("--etcd-servers={etcd_client}"),
                "--bind-address=127.0.0.1".to_string(),
                "--advertise-address=127.0.0.1".to_string(),
                format!("--secure-port={api_port}"),
                format!("--cert-dir={}", root.join("apiserver-certs").display()),
                format!("--tls-cert-file={}", p("apiserver.crt")),
                format!("--tls-private-key-file={}", p("apiserver.key")),
                format!("--client-ca-file={}", p("ca.crt")),
                format!("--service-account-issuer={server}"),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                // Room for thousands of Services: the scale benchmark makes two per Peer.
                "--service-cluster-ip-range=10.96.0.0/16".to_string(),
                "--authorization-mode=RBAC".to_string(),
                // No controller-manager creates service-account tokens here.
                "--disable-admission-plugins=ServiceAccount".to_string(),
                // A loopback address is not a valid endpoint of the `kubernetes` Service.
                "--endpoint-reconciler-type=none".to_string(),
                "--allow-privileged=true".to_string(),
            ],
            &root.join("kube-apiserver.log"),
        ));

        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = cp.kubectl(&["get", "--raw=/readyz"]);
            if r.ok && r.stdout.trim() == "ok" {
                break;
            }
            for (what, child) in [
                ("etcd", &mut cp.etcd),
                ("kube-apiserver", &mut cp.apiserver),
            ] {
                if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    panic!("{name}: {what} exited ({status}) before the apiserver was ready");
                }
            }
            assert!(
                Instant::now() < deadline,
                "{name}: kube-apiserver not ready within 120 s: {} {}",
                r.stdout.trim(),
                r.stderr.trim()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        cp
    }

    /// [`start`](Self::start), then [`start_controller_manager`](Self::start_controller_manager).
    pub fn start_with_controller_manager(name: &str, bin: &Path) -> ControlPlane {
        let mut cp = ControlPlane::start(name, bin);
        cp.start_controller_manager();
        cp
    }

    /// Starts kube-controller-manager (from the same bin folder) against this apiserver and
    /// waits until its controllers work (the service-account controller has created the
    /// `default` ServiceAccount of the `default` namespace). Does nothing when it runs already.
    ///
    /// It runs as its own client certificate (CN `tally-controller-manager`, group
    /// `system:masters`) from `controller-manager.kubeconfig`, on loopback with a free port,
    /// without leader election, with its own credentials for every controller, and with the
    /// controllers that need a kubelet, a cloud or node CIDRs turned off
    /// ([`CONTROLLER_MANAGER_CONTROLLERS`]): StatefulSets, ReplicaSets, Deployments, Jobs, the
    /// garbage collector (owner references, cascading deletion), the disruption controller
    /// (PodDisruptionBudget status), namespace deletion, ServiceAccounts and their tokens, PVC
    /// protection and the root CA ConfigMap work. Nodes are not watched for health (no
    /// node-lifecycle or taint eviction), so pods stay where a pod runner put them. The
    /// Endpoints and EndpointSlice controllers run too, but the apiserver refuses endpoint
    /// addresses in 127.0.0.0/8, so pods on loopback addresses
    /// ([`podrunner`](crate::podrunner)) get none. Its log is `kube-controller-manager.log` in
    /// [`dir`](Self::dir).
    ///
    /// # Panics
    /// When the binary is missing, it exits, or its controllers do not work within 120 s.
    pub fn start_controller_manager(&mut self) {
        if self.controller_manager.is_some() {
            return;
        }
        let exe = self.bin.join("kube-controller-manager");
        assert!(
            exe.is_file(),
            "{}: {} is missing (scripts/k8s-bins.sh builds it with the others)",
            self.name,
            exe.display()
        );
        let pki = self.root.join("pki");
        let kubeconfig = self.root.join("controller-manager.kubeconfig");
        std::fs::write(
            &kubeconfig,
            client_kubeconfig(&self.server, &pki, "controller-manager"),
        )
        .expect("write the controller-manager's kubeconfig");
        let p = |f: &str| pki.join(f).display().to_string();
        let k = kubeconfig.display().to_string();
        self.controller_manager = Some(spawn_logged(
            &exe,
            &[
                // No authentication/authorization kubeconfig: nothing calls its port but
                // the always-allowed health paths, and the delegated authenticator would
                // complain every few seconds about the apiserver's missing front-proxy CA.
                format!("--kubeconfig={k}"),
                "--bind-address=127.0.0.1".to_string(),
                format!("--secure-port={}", free_loopback_port()),
                format!(
                    "--cert-dir={}",
                    self.root.join("controller-manager-certs").display()
                ),
                format!("--service-account-private-key-file={}", p("sa.key")),
                format!("--root-ca-file={}", p("ca.crt")),
                "--use-service-account-credentials=false".to_string(),
                "--leader-elect=false".to_string(),
                format!("--controllers={CONTROLLER_MANAGER_CONTROLLERS}"),
                // Pods, not nodes, are what the tests create: react at once.
                "--concurrent-statefulset-syncs=5".to_string(),
                "--concurrent-gc-syncs=5".to_string(),
            ],
            &self.root.join("kube-controller-manager.log"),
        ));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.kubectl(&[
                "get",
                "serviceaccount",
                "default",
                "-n",
                "default",
                "-o",
                "name",
            ]);
            if r.ok && r.stdout.trim() == "serviceaccount/default" {
                break;
            }
            if let Some(status) = self
                .controller_manager
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{}: kube-controller-manager exited ({status}):\n{}",
                    self.name,
                    log_tail(&self.root.join("kube-controller-manager.log"), 30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: kube-controller-manager did not create the default ServiceAccount within 120 s:\n{}",
                self.name,
                log_tail(&self.root.join("kube-controller-manager.log"), 30)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Whether kube-controller-manager was started.
    pub fn has_controller_manager(&self) -> bool {
        self.controller_manager.is_some()
    }

    /// A kube-rs client for the admin user of [`kubeconfig`](Self::kubeconfig).
    ///
    /// # Panics
    /// When the kubeconfig this control plane wrote cannot be loaded.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("{}: {}: {e}", self.name, self.kubeconfig.display()));
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("{}: {}: {e}", self.name, self.kubeconfig.display()));
        kube::Client::try_from(config)
            .unwrap_or_else(|e| panic!("{}: a client from the kubeconfig: {e}", self.name))
    }

    /// The folder with certificates, logs, etcd's data and the kubeconfig.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Runs kubectl against this control plane.
    pub fn kubectl(&self, args: &[&str]) -> Kubectl {
        self.kubectl_stdin(args, None)
    }

    /// Runs kubectl against this control plane with `stdin` as its input (for `-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Kubectl {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--request-timeout=60s")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.kubectl.display()));
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write kubectl's stdin");
        }
        let out = child.wait_with_output().expect("kubectl output");
        Kubectl {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl and returns its stdout.
    ///
    /// # Panics
    /// When kubectl fails; the message has its stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let r = self.kubectl(args);
        assert!(
            r.ok,
            "{}: kubectl {} failed:\n{}{}",
            self.name,
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r.stdout
    }

    /// The last `lines` lines of the apiserver's log.
    pub fn apiserver_log_tail(&self, lines: usize) -> String {
        log_tail(&self.root.join("kube-apiserver.log"), lines)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in [
            self.controller_manager.take(),
            self.apiserver.take(),
            self.etcd.take(),
        ]
        .into_iter()
        .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let failing = std::thread::panicking();
        if failing {
            for log in [
                "etcd.log",
                "kube-apiserver.log",
                "kube-controller-manager.log",
            ] {
                let p = self.root.join(log);
                if !p.exists() {
                    continue;
                }
                eprintln!(
                    "--- {}: last lines of {} ---\n{}",
                    self.name,
                    p.display(),
                    log_tail(&p, 30)
                );
            }
        }
        if let Some(d) = self.dir.take() {
            if failing || std::env::var_os("TALLY_E2E_KEEP").is_some() {
                let p = d.keep();
                eprintln!(
                    "{}: control-plane folder kept at {}",
                    self.name,
                    p.display()
                );
            }
        }
    }
}

pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// Makes the process `cmd` starts get SIGKILL when the thread that started it dies, so that a
/// killed test binary leaves nothing running.
pub fn die_with_parent(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// Starts `bin` with stdout and stderr in `log`; the child gets SIGKILL when the thread that
/// started it dies.
pub(crate) fn spawn_logged(bin: &Path, args: &[String], log: &Path) -> std::process::Child {
    let out = std::fs::File::create(log).expect("create log file");
    let err = out.try_clone().expect("clone log file");
    let mut cmd = std::process::Command::new(bin);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    die_with_parent(&mut cmd)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}

/// Writes ca.crt, apiserver.crt/.key (for 127.0.0.1 and localhost), admin.crt/.key (CN
/// tally-admin, O system:masters) and sa.key/sa.pub into `pki`.
pub(crate) fn write_control_plane_pki(pki: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let write = |f: &str, s: String| std::fs::write(pki.join(f), s).expect("write pki file");

    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name
        .push(DnType::CommonName, "tally-test-kubernetes-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    write("ca.crt", ca_cert.pem());

    let leaf = |cn: &str, org: Option<&str>, sans: Vec<SanType>, eku: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        if let Some(o) = org {
            p.distinguished_name.push(DnType::OrganizationName, o);
        }
        p.subject_alt_names = sans;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![eku];
        let cert = p.signed_by(&key, &ca_cert, &ca_key).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (crt, key) = leaf(
        "kube-apiserver",
        None,
        vec![
            SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
            SanType::DnsName("localhost".try_into().expect("DNS name")),
        ],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    write("apiserver.crt", crt);
    write("apiserver.key", key);
    let (crt, key) = leaf(
        "tally-admin",
        Some("system:masters"),
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    write("admin.crt", crt);
    write("admin.key", key);
    let (crt, key) = leaf(
        "tally-controller-manager",
        Some("system:masters"),
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    write("controller-manager.crt", crt);
    write("controller-manager.key", key);

    let sa = KeyPair::generate().expect("service-account key");
    write("sa.key", sa.serialize_pem());
    write("sa.pub", sa.public_key_pem());
}

pub(crate) fn admin_kubeconfig(server: &str, pki: &Path) -> String {
    client_kubeconfig(server, pki, "admin")
}

/// A kubeconfig for the client certificate `<cert>.crt`/`<cert>.key` in `pki`.
pub(crate) fn client_kubeconfig(server: &str, pki: &Path, cert: &str) -> String {
    let p = |f: &str| pki.join(f).display().to_string();
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: tally-test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n- name: tally-{cert}\n  user:\n    client-certificate: {crt}\n    client-key: {key}\n\
         contexts:\n- name: tally-test\n  context:\n    cluster: tally-test\n    user: tally-{cert}\n\
         current-context: tally-test\n",
        ca = p("ca.crt"),
        crt = p(&format!("{cert}.crt")),
        key = p(&format!("{cert}.key")),
    )
}

/// The `--controllers` of [`ControlPlane::start_controller_manager`]: every default controller
/// but those that watch node health or need a kubelet, a cloud provider, node CIDRs or a
/// certificate signer.
pub const CONTROLLER_MANAGER_CONTROLLERS: &str = "*,\
     -node-lifecycle-controller,-taint-eviction-controller,-device-taint-eviction-controller,\
     -pod-garbage-collector-controller,-node-ipam-controller,-cloud-node-lifecycle-controller,\
     -service-lb-controller,-node-route-controller,-persistentvolume-attach-detach-controller,\
     -certificatesigningrequest-signing-controller,-ttl-controller";
