//! The library half of `tallyctl`: local clusters of `tally-node` processes on loopback.
//!
//! [`local::LocalCluster`] is what `tallyctl up` and `tallyctl demo` run, and what the
//! end-to-end suites and the benchmark start; the command line itself lives in the binary.

pub mod local;

pub use local::{LocalCluster, LocalClusterSpec, LocalLayout, LocalNode, LocalOrg};
