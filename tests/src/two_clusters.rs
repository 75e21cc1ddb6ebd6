//! Two clusters on one machine, for consortia whose members live in different clusters: two
//! control planes (with controller-manager and Tally's CRDs), each with its own pod runner,
//! whose public DNS is cross-linked — each runner merges the other's `public-hosts`, so a node
//! exposed in one (a LoadBalancer or NodePort Service with the external-dns hostname
//! annotation) resolves by name in the other, as through public DNS between two real clusters.
//! No operator is started here.

use std::path::PathBuf;

use crate::podrunner::{PodRunner, RunnerOptions};
use crate::ControlPlane;

/// One of the two clusters.
pub struct Cluster {
    pub cp: ControlPlane,
    pub runner: PodRunner,
}

impl Cluster {
    /// A client for its API server.
    pub async fn client(&self) -> kube::Client {
        self.cp.client().await
    }
}

/// Two clusters whose runners publish to each other; see the [module](self) documentation.
pub struct TwoClusters {
    pub a: Cluster,
    pub b: Cluster,
}

/// The pod address prefixes [`TwoClusters::start`] uses; suites that run at the same time as
/// another two-cluster suite pass their own to [`TwoClusters::start_with`].
pub const DEFAULT_IP_PREFIXES: [&str; 2] = ["127.71", "127.72"];

impl TwoClusters {
    /// Starts both clusters (`<name>-a`, `<name>-b`) with pod addresses under
    /// [`DEFAULT_IP_PREFIXES`]; `None` where kube-apiserver and friends cannot be had (see
    /// [`crate::k8s_bin_dir`]).
    ///
    /// # Panics
    /// When a control plane or a runner does not start.
    pub async fn start(name: &str) -> Option<TwoClusters> {
        Self::start_with(name, DEFAULT_IP_PREFIXES).await
    }

    /// [`start`](Self::start) with the two runners' `ip_prefix`es.
    ///
    /// # Panics
    /// When a control plane or a runner does not start.
    pub async fn start_with(name: &str, ip_prefixes: [&str; 2]) -> Option<TwoClusters> {
        let (cp_a, cp_b) = tokio::task::block_in_place(|| {
            let a = crate::operator::control_plane_with_crds(&format!("{name}-a"))?;
            let b = crate::operator::control_plane_with_crds(&format!("{name}-b"))?;
            Some((a, b))
        })?;
        let root = |cp: &ControlPlane| cp.dir().join("runner");
        let (root_a, root_b) = (root(&cp_a), root(&cp_b));
        let runner_a =
            start_runner(&cp_a, "runner-a", root_a.clone(), ip_prefixes[0], &root_b).await;
        let runner_b = start_runner(&cp_b, "runner-b", root_b, ip_prefixes[1], &root_a).await;
        Some(TwoClusters {
            a: Cluster {
                cp: cp_a,
                runner: runner_a,
            },
            b: Cluster {
                cp: cp_b,
                runner: runner_b,
            },
        })
    }

    /// Stops both runners' processes (the control planes stop when dropped).
    pub async fn shutdown(&mut self) {
        self.a.runner.shutdown().await;
        self.b.runner.shutdown().await;
    }
}

async fn start_runner(
    cp: &ControlPlane,
    node_name: &str,
    root_dir: PathBuf,
    ip_prefix: &str,
    other_root: &std::path::Path,
) -> PodRunner {
    PodRunner::start(
        cp.client().await,
        RunnerOptions {
            node_name: node_name.to_string(),
            root_dir,
            ip_prefix: ip_prefix.to_string(),
            node_bin: crate::node_bin(),
            public_dns_from: vec![other_root.join("public-hosts")],
        },
    )
    .await
    .unwrap_or_else(|e| panic!("pod runner {node_name}: {e:#}"))
}
