//! Tally's client SDK: sign, submit, wait, query, verify proofs, follow blocks, and the
//! mutual-TLS admin client. Protocol plus HTTP, nothing of Kubernetes: the command line and
//! the local mode live in the `tallyctl` crate.

pub mod admin;
pub mod client;
pub mod error;
pub mod lifecycle;
pub mod profile;
pub mod txs;

pub use admin::{AdminClient, BackupStatus};
pub use client::{ApiTrust, Client, SubmitOutcome};
pub use error::ClientError;
pub use profile::Profile;
