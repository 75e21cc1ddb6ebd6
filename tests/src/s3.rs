//! A real S3-compatible server for the backup suites: Versity Gateway over a folder
//! (`versitygw posix`), on a free loopback port. Buckets are folders under its root and
//! objects are files under them, so a test can see (and damage) what a backup stored.
//!
//! `TALLY_VERSITYGW_BIN` names the binary (scripts/test.sh exports what
//! `scripts/versitygw-bin.sh` builds); otherwise the script is run to build or find it.

use crate::free_loopback_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "tally-test";
pub const SECRET_KEY: &str = "tally-test-secret";
pub const REGION: &str = "us-east-1";

pub fn versitygw_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TALLY_VERSITYGW_BIN") {
        return PathBuf::from(p);
    }
    let script = crate::operator::repo().join("scripts/versitygw-bin.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: set TALLY_VERSITYGW_BIN or run the script by hand",
        script.display()
    );
    // The script's last line is the executable's path.
    let bin = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    PathBuf::from(bin)
}

/// One `versitygw` process; killed on drop.
pub struct S3Server {
    child: Child,
    pub root: PathBuf,
    pub endpoint: String,
    log: PathBuf,
}

impl S3Server {
    /// Serves the folder `root` (created), with `buckets` made as folders in it.
    pub fn start(root: &Path, buckets: &[&str]) -> S3Server {
        std::fs::create_dir_all(root).expect("s3 root");
        for b in buckets {
            std::fs::create_dir_all(root.join(b)).expect("bucket folder");
        }
        let port = free_loopback_port();
        let log = root.with_extension("log");
        let out = std::fs::File::create(&log).expect("versitygw log");
        let child = Command::new(versitygw_bin())
            .args([
                "--access", ACCESS_KEY, "--secret", SECRET_KEY, "--region", REGION,
            ])
            .arg(format!("--port=127.0.0.1:{port}"))
            .arg("--quiet")
            .arg("posix")
            .arg(root)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start versitygw");
        let s = S3Server {
            child,
            root: root.to_path_buf(),
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "versitygw did not listen: {}",
                std::fs::read_to_string(&s.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    /// The store settings as environment variables (what the CLIs and a credentials
    /// Secret take).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// The files under `bucket/prefix` whose path contains `part`, e.g. the manifests of a
    /// repository.
    pub fn objects(&self, bucket: &str, prefix: &str, part: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.join(bucket).join(prefix)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else if p.to_string_lossy().contains(part) {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
