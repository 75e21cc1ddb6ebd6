//! Shared harness of the end-to-end suites in `tests/tests/`: finding the `tally-node`
//! executable, starting a [`LocalCluster`](tallyctl::LocalCluster) in a temporary folder that is kept (with the node
//! logs printed) when a test fails, submitting with retries, walking and checking chains, raw
//! HTTP requests and Prometheus text.
//!
//! Environment:
//! - `TALLY_NODE_BIN`: the tally-node executable (default: next to the test binary, i.e.
//!   `$CARGO_TARGET_DIR/debug/tally-node`).
//! - `TALLY_E2E_KEEP=1`: keep every test's folder, not only those of failed tests.
//! - `TALLY_E2E_TXS`, `TALLY_E2E_ROUNDS`: scale of the cluster suite (default 3000, 3).
//! - `TALLY_E2E_CRASHES`: crash-restart cycles of the crash suite (default 20).
//! - `TALLY_K8S_BIN`: folder with `etcd` and `kube-apiserver` (and `kube-controller-manager`)
//!   for [`ControlPlane`] (default: `KUBEBUILDER_ASSETS`, else what `scripts/k8s-bins.sh`
//!   prints); `TALLY_SKIP_K8S=1` skips the suites that need them when they cannot be had;
//!   `TALLY_KUBECTL`: the kubectl to run.
//!
//! [`netns`] runs a cluster's nodes in network namespaces of their own, for partition tests.
//!
//! [`podrunner`] plays the scheduler and the kubelet for pods on such a control plane.
//!
//! [`prometheus`] runs a real Prometheus with the repository's alert rules against given nodes.
//!
//! [`s3`] runs a real S3-compatible server (Versity Gateway) for the backup suites.
//!
//! [`two_clusters`] runs two control planes whose pod runners publish exposed nodes to each
//! other, as public DNS between two clusters would.
//!
//! By module (all re-exported here but [`http`], [`podrunner`], [`operator`], [`browser`],
//! [`prometheus`], [`two_clusters`]):
//! `bins` finds the executables, `cluster` holds [`TestCluster`], `chain` submits with
//! retries and checks chains, [`http`] sends raw requests, `api_checks` reads API errors and
//! Prometheus text, `control_plane` runs etcd, kube-apiserver and kube-controller-manager.

pub mod adversary;
mod api_checks;
mod bins;
pub mod browser;
mod chain;
mod cluster;
mod control_plane;
pub mod http;
pub mod netns;
pub mod operator;
pub mod podrunner;
pub mod prometheus;
pub mod s3;
pub mod scf_split;
pub mod tallyctl_up;
pub mod two_clusters;

pub use api_checks::*;
pub use bins::*;
pub use chain::*;
pub use cluster::*;
pub use control_plane::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_are_found_by_name_and_labels() {
        let text = "# HELP x y\n# TYPE tally_snapshots_applied_total counter\n\
                    tally_snapshots_applied_total{channel=\"a\"} 0\n\
                    tally_snapshots_applied_total{channel=\"snap\"} 2\n\
                    tally_snapshots_applied_total_extra 9\nplain 1.5\n";
        assert_eq!(
            metric_value(
                text,
                "tally_snapshots_applied_total",
                &[("channel", "snap")]
            ),
            Some(2.0)
        );
        assert_eq!(
            metric_value(text, "tally_snapshots_applied_total", &[("channel", "b")]),
            None
        );
        assert_eq!(metric_value(text, "plain", &[]), Some(1.5));
    }
}
