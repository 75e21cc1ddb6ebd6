//! [`TestCluster`]: a [`LocalCluster`] in a temporary folder that is kept, with the node logs
//! printed, when a test fails.

use std::ops::Deref;

use crate::bins::*;
use tallyctl::local::{LocalClusterSpec, LocalLayout};
use tallyctl::LocalCluster;

/// A local cluster in a temporary folder. On drop the nodes are killed; the folder is deleted,
/// unless the test is failing (or `TALLY_E2E_KEEP` is set), in which case it is kept and the
/// tail of every node's log is printed.
pub struct TestCluster {
    // Field order matters: the cluster (its processes) goes before its folder.
    cluster: Option<LocalCluster>,
    dir: Option<tempfile::TempDir>,
    test: String,
}

impl TestCluster {
    /// Runs tallyctl against node1-0 as the identity in folder `identity` (other
    /// organizations' identities trust node1-0's CA explicitly); returns (exit code, stdout,
    /// stderr).
    pub fn tallyctl_as(&self, identity: &std::path::Path, args: &[&str]) -> (i32, String, String) {
        let out = std::process::Command::new(crate::tallyctl_bin())
            .arg("--node")
            .arg(self.api_url("node1-0"))
            .arg("--node-ca")
            .arg(self.dir().join("orgs/org1/ca.pem"))
            .arg("--identity")
            .arg(identity)
            .args(args)
            .output()
            .expect("run tallyctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `n_nodes` nodes in their own organizations, every node a consenter of every channel
    /// ([`LocalClusterSpec::simple`]); `tweak` adjusts the spec before the start.
    pub async fn start(
        test: &str,
        n_nodes: usize,
        channels: &[&str],
        tweak: impl FnOnce(&mut LocalClusterSpec),
    ) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tally-e2e-{test}-"))
            .tempdir()
            .expect("create a temporary folder");
        let mut spec = LocalClusterSpec::simple(dir.path(), node_bin(), n_nodes, channels);
        tweak(&mut spec);
        TestCluster::started(test, dir, LocalCluster::start(spec)).await
    }

    /// A cluster planned elsewhere (`layout.dir` inside `dir`), started by
    /// [`LocalCluster::launch`]; e.g. one whose nodes run through a wrapper executable.
    pub async fn launch(test: &str, dir: tempfile::TempDir, layout: LocalLayout) -> TestCluster {
        TestCluster::started(test, dir, LocalCluster::launch(layout)).await
    }

    async fn started(
        test: &str,
        dir: tempfile::TempDir,
        start: impl std::future::Future<Output = Result<LocalCluster, tally_client::ClientError>>,
    ) -> TestCluster {
        let mut tc = TestCluster {
            cluster: None,
            dir: Some(dir),
            test: test.to_string(),
        };
        match start.await {
            Ok(c) => tc.cluster = Some(c),
            Err(e) => {
                let path = tc.dir.take().map(|d| d.keep()).unwrap_or_default();
                panic!(
                    "{test}: the local cluster did not start: {e}\n(cluster folder kept: {})",
                    path.display()
                );
            }
        }
        tc
    }

    pub fn cluster(&self) -> &LocalCluster {
        self.cluster.as_ref().expect("started")
    }

    /// Takes the cluster out, e.g. to shut it down and open it again; the folder stays until
    /// this value is dropped.
    pub fn take_cluster(&mut self) -> LocalCluster {
        self.cluster.take().expect("a cluster")
    }

    /// Puts a cluster (opened on this folder) back.
    pub fn put_cluster(&mut self, c: LocalCluster) {
        self.cluster = Some(c);
    }

    /// Asserts that no node exited on its own and no node log shows a panic.
    pub fn assert_healthy(&self) {
        let problems = self.cluster().problems();
        if !problems.is_empty() {
            let mut msg = format!("{}: node problems:\n  {}", self.test, problems.join("\n  "));
            for n in self.cluster().node_names() {
                if self.cluster().panicked(&n) || self.cluster().exited_on_its_own(&n).is_some() {
                    msg += &format!(
                        "\n--- {n}: {}\n{}",
                        self.cluster().log_path(&n).display(),
                        panic_excerpt(self.cluster(), &n)
                    );
                }
            }
            panic!("{msg}");
        }
    }
}

/// The lines around the first panic in a node's log, or its tail.
pub fn panic_excerpt(c: &LocalCluster, node: &str) -> String {
    let text = std::fs::read_to_string(c.log_path(node)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    match lines.iter().position(|l| l.contains("panicked")) {
        Some(i) => lines[i.saturating_sub(5)..(i + 15).min(lines.len())].join("\n"),
        None => c.log_tail(node, 20),
    }
}

impl Deref for TestCluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        self.cluster()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        let keep = failing || std::env::var_os("TALLY_E2E_KEEP").is_some();
        if failing {
            if let Some(c) = &self.cluster {
                for n in c.node_names() {
                    eprintln!(
                        "--- {}: last lines of {} ---\n{}",
                        self.test,
                        c.log_path(&n).display(),
                        c.log_tail(&n, 25)
                    );
                }
            }
        }
        drop(self.cluster.take());
        if let Some(d) = self.dir.take() {
            if keep {
                let p = d.keep();
                eprintln!("{}: cluster folder kept at {}", self.test, p.display());
            }
        }
    }
}
