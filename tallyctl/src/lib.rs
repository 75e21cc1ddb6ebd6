//! `tallyctl`, the command line of Tally, and the local clusters of `tally-node` processes on
//! loopback.
//!
//! [`local::LocalCluster`] is what `tallyctl up` and `tallyctl demo` run, and what the
//! end-to-end suites and the benchmark start. [`cli`] is the command line of both binaries:
//! `tallyctl` and the kubectl plugin `kubectl-tally` ([`cli::plugin`]).

pub mod cli;
pub mod local;

pub use local::{LocalCluster, LocalClusterSpec, LocalLayout, LocalNode, LocalOrg};
