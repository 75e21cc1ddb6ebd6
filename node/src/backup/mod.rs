//! Backups of channel ledgers to object storage, and their verified restore.
//!
//! A *repository* is an object store location (`file:///abs/dir`, `s3://bucket/prefix`) that
//! holds `chunks/<sha256 of the stored bytes>` (zstd-compressed batches of ledger records, cut
//! at content-defined boundaries so that an incremental backup finds most chunks stored
//! already) and `manifests/<channel>/<height>-<unix seconds>.json`. `make` backs a running
//! channel up from one RocksDB snapshot; `verify` checks a backup with the checks a peer's
//! snapshot gets; `restore` installs one into a stopped node's data directory, verified
//! first, with new Raft state that keeps the node from voting until it has caught up.
//! docs/backup.md describes the format, the commands and the guarantees.

pub mod chunking;
pub mod jobs;
pub mod make;
pub mod manifest;
pub mod repo;
pub mod restore;
pub mod verify;

pub use jobs::{Jobs, Phase, StartError, Status};
pub use manifest::Manifest;
pub use repo::{Options, Repo};
pub use restore::{has_ledger, list, pick, read_manifest, restore, verify, Listed, Restored};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The URL or the options cannot name a repository.
    #[error("{0}")]
    Url(String),
    #[error("object storage: {0}")]
    Store(String),
    #[error("ledger: {0}")]
    Ledger(String),
    /// The backup does not verify.
    #[error("backup refused: {0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
}

#[cfg(test)]
mod tests;
