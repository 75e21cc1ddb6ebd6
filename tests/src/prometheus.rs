//! A real Prometheus (Debian's package) scraping given tally-node processes over TLS and
//! evaluating the repository's generated alert rules, for suites that check that an alert fires
//! on a real condition rather than on promtool's synthetic series.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Prometheus binary (`TALLY_PROMETHEUS`, else `prometheus` on `PATH`); `None` where it is
/// missing and this is not CI (the caller skips that part, saying so). Under `CI=true` a
/// missing binary fails.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TALLY_PROMETHEUS") {
        return Some(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let why = "prometheus not found on PATH (nor TALLY_PROMETHEUS): scripts/setup.sh installs Debian's prometheus package";
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "{why}; under CI=true it must run"
        );
        eprintln!("skipping the Prometheus check: {why}");
    }
    found
}

/// A running Prometheus, killed on drop.
pub struct RulesPrometheus {
    child: Child,
    url: String,
    log: PathBuf,
}

impl RulesPrometheus {
    /// Starts `bin` in `dir` scraping `targets` (`host:port` of node client APIs) every second
    /// over TLS verified against `cas_pem`, with `deploy/monitoring/tally-alerts.rules.yaml`
    /// evaluated every second.
    pub async fn start(bin: &Path, dir: &Path, targets: &[String], cas_pem: &str) -> Self {
        std::fs::create_dir_all(dir).expect("prometheus folder");
        let ca = dir.join("cas.pem");
        std::fs::write(&ca, cas_pem).expect("write the CAs");
        let rules = crate::operator::repo().join("deploy/monitoring/tally-alerts.rules.yaml");
        let config = serde_json::json!({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [rules.display().to_string()],
            "scrape_configs": [{
                "job_name": "tally-node",
                "metrics_path": "/metrics",
                "scheme": "https",
                "tls_config": {"ca_file": ca.display().to_string()},
                "static_configs": [{"targets": targets, "labels": {"namespace": "local"}}],
            }],
        });
        // JSON is YAML: Prometheus reads it as its configuration.
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config.to_string()).expect("write the configuration");
        let port = crate::free_loopback_port();
        let log = dir.join("prometheus.log");
        let child = spawn_dying(
            Command::new(bin)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log")),
        );
        let p = RulesPrometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        for _ in 0..600 {
            if let Ok((200, _)) = crate::http::get(&format!("{}/-/ready", p.url)).await {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Prometheus never became ready:\n{}", p.log_text());
    }

    /// The active alerts named `name` (pending or firing), each as Prometheus lists it.
    pub async fn alerts(&self, name: &str) -> Vec<serde_json::Value> {
        let (code, body) = crate::http::get(&format!("{}/api/v1/alerts", self.url))
            .await
            .unwrap_or_else(|e| panic!("GET /api/v1/alerts: {e}"));
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("the API answers JSON");
        v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == name)
            .cloned()
            .collect()
    }

    /// The instant vector of `expr`, as Prometheus returns it.
    pub async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let url = format!("{}/api/v1/query?query={}", self.url, urlencode(expr));
        let (_, body) = crate::http::get(&url)
            .await
            .unwrap_or_else(|e| panic!("query {expr}: {e}"));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("the API answers JSON");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RulesPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Starts `cmd` as a child that dies with this process should the test binary be killed.
fn spawn_dying(cmd: &mut Command) -> Child {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().expect("start prometheus")
}
