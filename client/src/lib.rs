//! Tally client library: sign, submit, wait, query, verify proofs, follow blocks; and the
//! launcher of local clusters that `tallyctl`, the benchmark and the end-to-end suites share.
//!
//! Module ownership while the first version is written: `client.rs`, `txs.rs`, `admin.rs`,
//! `error.rs` and `main.rs` (tallyctl) belong to the client work; `local.rs` to the local
//! cluster launcher.

pub mod admin;
pub mod client;
pub mod error;
pub mod lifecycle;
pub mod local;
pub mod profile;
pub mod txs;

pub use admin::AdminClient;
pub use client::{Client, SubmitOutcome};
pub use error::ClientError;
pub use local::{LocalCluster, LocalClusterSpec, LocalLayout, LocalNode, LocalOrg};
pub use profile::Profile;
