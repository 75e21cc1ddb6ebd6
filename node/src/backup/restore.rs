//! Offline work on a repository: listing backups, verifying one into a scratch database, and
//! restoring one into a stopped node's data directory.
//!
//! A restore verifies everything first, into the channel's staging prefix (the ledger as it
//! was stays untouched), and only then swaps the records in with the crash-safe install a
//! peer's snapshot uses (`ledger::snapshot_install`). In the install's first, synced write
//! the channel's Raft state becomes new — an empty log starting after the backup's Raft index
//! and term, no vote, the backup's membership — and the rejoining and restored markers are
//! set, so the node votes only once it has caught up and shown its chain to be the channel's
//! (`channel/rejoin.rs`). A refused backup leaves the data directory as it was.

use super::manifest::{self, Manifest, MAX_MANIFEST_BYTES};
use super::repo::Repo;
use super::verify::{check_into, genesis_of, Checked};
use super::BackupError;
use crate::keys::{self, Keys, LEDGER_KINDS};
use crate::ledger::Ledger;
use protobuf::Message as _;
use raft::prelude::{ConfState, HardState};
use rocksdb::{WriteBatch, WriteOptions, DB};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tally_protocol::codec::{Decode, Encode};
use tally_protocol::ChannelConfig;

/// One backup in a repository, as its manifest's name gives it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    pub channel: String,
    pub height: u64,
    pub created_unix: u64,
    /// The manifest's object path below the repository root.
    pub manifest: String,
}

/// Backups in the repository, of one channel or all, by channel then height.
pub fn list(repo: &Repo, channel: Option<&str>) -> Result<Vec<Listed>, BackupError> {
    let channels = match channel {
        Some(c) => vec![c.to_string()],
        None => repo.folders("manifests")?,
    };
    let mut out = Vec::new();
    for ch in channels {
        for name in repo.list(&manifest::manifest_dir(&ch))? {
            if let Some((height, created_unix)) = manifest::parse_name(&name) {
                out.push(Listed {
                    manifest: format!("{}/{name}", manifest::manifest_dir(&ch)),
                    channel: ch.clone(),
                    height,
                    created_unix,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.channel, a.height, a.created_unix).cmp(&(&b.channel, b.height, b.created_unix))
    });
    Ok(out)
}

/// The newest backup of `channel` (or of the repository's only channel), at or below
/// `height` when given, with its manifest read and checked to be of that channel.
pub fn pick(
    repo: &Repo,
    channel: Option<&str>,
    height: Option<u64>,
) -> Result<Manifest, BackupError> {
    let all = list(repo, channel)?;
    let channel = match channel {
        Some(c) => c.to_string(),
        None => {
            let mut names: Vec<&str> = all.iter().map(|l| l.channel.as_str()).collect();
            names.dedup();
            match names.as_slice() {
                [one] => one.to_string(),
                [] => {
                    return Err(BackupError::NotFound(format!(
                        "no backup in {}",
                        repo.url()
                    )))
                }
                many => {
                    return Err(BackupError::Url(format!(
                        "{} holds backups of several channels ({}): say which with --channel",
                        repo.url(),
                        many.join(", ")
                    )))
                }
            }
        }
    };
    let chosen = all
        .iter()
        .rev()
        .find(|l| l.channel == channel && height.is_none_or(|h| l.height <= h))
        .ok_or_else(|| {
            BackupError::NotFound(match height {
                Some(h) => format!(
                    "no backup of channel {channel} at or below height {h} in {}",
                    repo.url()
                ),
                None => format!("no backup of channel {channel} in {}", repo.url()),
            })
        })?;
    read_manifest(repo, &chosen.manifest, &channel)
}

/// Whether the node's data directory holds a ledger of `channel` (read without taking the
/// database's lock from anyone: a missing database holds none).
pub fn has_ledger(data_dir: &Path, channel: &str) -> Result<bool, BackupError> {
    let path = data_dir.join("ledger");
    if !path.join("CURRENT").exists() {
        return Ok(false);
    }
    let db = DB::open_for_read_only(&rocksdb::Options::default(), &path, false).map_err(db_err)?;
    let k = Keys::new(channel);
    Ok(db.get(k.kind(keys::TIP)).map_err(db_err)?.is_some())
}

/// Reads a manifest and checks that it is of `channel`.
pub fn read_manifest(repo: &Repo, path: &str, channel: &str) -> Result<Manifest, BackupError> {
    let b = repo.get(path, MAX_MANIFEST_BYTES as u64)?;
    let m = Manifest::from_json(&b).map_err(|e| BackupError::Refused(format!("{path}: {e}")))?;
    if m.channel != channel {
        return Err(BackupError::Refused(format!(
            "{path} is a backup of channel {}, not of channel {channel}",
            m.channel
        )));
    }
    Ok(m)
}

fn db_err(e: impl std::fmt::Display) -> BackupError {
    BackupError::Ledger(e.to_string())
}

fn engine() -> Arc<tally_runtime::Engine> {
    Arc::new(tally_runtime::Engine::new(tally_runtime::Limits::default()))
}

/// A folder of its own under the system's temporary folder, removed when dropped.
struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Verifies a backup completely, in a scratch database that is removed afterwards.
pub fn verify(
    repo: &Repo,
    m: &Manifest,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Checked, BackupError> {
    let genesis = genesis_of(repo, m)?;
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "tally-backup-verify-{}-{}",
        std::process::id(),
        tally_protocol::now_ms()
    )));
    let db = Arc::new(DB::open_default(&scratch.0).map_err(db_err)?);
    let ledger = Ledger::open(db.clone(), genesis, engine()).map_err(db_err)?;
    let mut write = |wb: WriteBatch| db.write(wb).map_err(|e| e.to_string());
    let checked = check_into(&ledger, repo, m, &mut write, progress);
    drop(ledger);
    drop(db);
    checked
}

/// What a restore did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Restored {
    pub channel: String,
    pub height: u64,
    pub last_block_hash: String,
    pub raft_index: u64,
    pub records: u64,
    pub manifest: String,
}

/// Restores the backup `m` as channel `m.channel` of the node whose data directory is
/// `data_dir` (the node must not be running: RocksDB's lock refuses a second opener).
/// `expected_genesis`, when given, is the channel's genesis configuration as the caller knows
/// it; the backup must start from the same one.
/// With `read_only`, the channel is restored for investigation at the backup's point in
/// time (`keys::frozen`): the node serves its reads as restored and never joins its Raft.
pub fn restore(
    data_dir: &Path,
    repo: &Repo,
    m: &Manifest,
    expected_genesis: Option<&ChannelConfig>,
    read_only: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Restored, BackupError> {
    let genesis = genesis_of(repo, m)?;
    if let Some(g) = expected_genesis {
        if g.hash() != genesis.hash() {
            return Err(BackupError::Refused(format!(
                "the backup's channel {} has another genesis configuration than the one given",
                m.channel
            )));
        }
    }
    std::fs::create_dir_all(data_dir).map_err(db_err)?;
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    let db = Arc::new(DB::open(&opts, data_dir.join("ledger")).map_err(|e| {
        BackupError::Ledger(format!(
            "cannot open the node's database in {} (is the node still running?): {e}",
            data_dir.display()
        ))
    })?);
    let ch = m.channel.as_str();
    if let Some(b) = db.get(keys::joined(ch)).map_err(db_err)? {
        let joined = ChannelConfig::from_bytes(&b).map_err(db_err)?;
        if joined.hash() != genesis.hash() {
            return Err(BackupError::Refused(format!(
                "this node's channel {ch} was created from another genesis configuration than the backup's"
            )));
        }
    }
    let k = Keys::new(ch);
    let had_ledger = db.get(k.kind(keys::TIP)).map_err(db_err)?.is_some();
    let ledger = Ledger::open(db.clone(), genesis.clone(), engine()).map_err(db_err)?;
    let mut write = |wb: WriteBatch| db.write(wb).map_err(|e| e.to_string());
    let checked = match check_into(&ledger, repo, m, &mut write, progress) {
        Ok(c) => c,
        Err(e) => {
            // Nothing half installed: the staged records go, and a ledger that opening it
            // created (the genesis block of a wiped node) goes with them.
            let mut wb = WriteBatch::default();
            for kind in [keys::STAGED, keys::STAGED_AUX] {
                let (lo, hi) = k.range(kind);
                wb.delete_range(lo, hi);
            }
            if !had_ledger {
                for kind in LEDGER_KINDS {
                    let (lo, hi) = k.range(kind);
                    wb.delete_range(lo, hi);
                }
            }
            db.write(wb).map_err(db_err)?;
            return Err(e);
        }
    };
    drop(ledger);
    let mut wb = WriteBatch::default();
    crate::ledger::snapshot_install::begin_install(&k, &mut wb);
    new_raft_state(&k, m, &mut wb)?;
    wb.put(keys::joined(ch), genesis.to_bytes());
    wb.delete(keys::join_hint(ch));
    wb.put(keys::rejoining(ch), []);
    wb.put(
        keys::restored(ch),
        restored_marker(m.height, &m.last_block_hash)?,
    );
    if read_only {
        wb.put(keys::frozen(ch), []);
    } else {
        wb.delete(keys::frozen(ch));
    }
    let mut write = |wb: WriteBatch, sync: bool| {
        let mut o = WriteOptions::default();
        o.set_sync(sync);
        db.write_opt(wb, &o).map_err(|e| e.to_string())
    };
    write(wb, true).map_err(db_err)?;
    crate::ledger::snapshot_install::finish_install(&db, &k, &mut write).map_err(db_err)?;
    db.flush().map_err(db_err)?;
    Ok(Restored {
        channel: m.channel.clone(),
        height: checked.height,
        last_block_hash: m.last_block_hash.clone(),
        raft_index: m.raft.index,
        records: checked.records,
        manifest: m.path(),
    })
}

/// The channel's Raft state as a backup leaves it: the log empty after the backup's index and
/// term (as if a snapshot there had been installed), no vote, the backup's membership.
fn new_raft_state(k: &Keys, m: &Manifest, wb: &mut WriteBatch) -> Result<(), BackupError> {
    let (lo, hi) = k.range(keys::LOG);
    wb.delete_range(lo, hi);
    let hs = HardState {
        term: m.raft.term,
        vote: 0,
        commit: m.raft.index,
        ..HardState::default()
    };
    let cs = ConfState {
        voters: m.raft.voters.clone(),
        learners: m.raft.learners.clone(),
        voters_outgoing: m.raft.voters_outgoing.clone(),
        learners_next: m.raft.learners_next.clone(),
        auto_leave: m.raft.auto_leave,
        ..ConfState::default()
    };
    wb.put(
        k.kind(keys::HARD_STATE),
        hs.write_to_bytes().map_err(db_err)?,
    );
    wb.put(
        k.kind(keys::CONF_STATE),
        cs.write_to_bytes().map_err(db_err)?,
    );
    let mut meta = m.raft.index.to_be_bytes().to_vec();
    meta.extend_from_slice(&m.raft.term.to_be_bytes());
    wb.put(k.kind(keys::SNAP_META), meta);
    Ok(())
}

/// The restored marker's value: the backup's height and last block hash.
fn restored_marker(height: u64, hash_hex: &str) -> Result<Vec<u8>, BackupError> {
    let hash = hex::decode(hash_hex)
        .ok()
        .filter(|h| h.len() == 32)
        .ok_or_else(|| {
            BackupError::Refused("the manifest's last block hash is not a hash".into())
        })?;
    let mut v = height.to_be_bytes().to_vec();
    v.extend_from_slice(&hash);
    Ok(v)
}

/// Reads a restored marker: (height, last block hash).
pub fn parse_restored_marker(v: &[u8]) -> Option<(u64, tally_protocol::Hash)> {
    if v.len() != 40 {
        return None;
    }
    let h = u64::from_be_bytes(v[..8].try_into().ok()?);
    let hash: [u8; 32] = v[8..].try_into().ok()?;
    Some((h, tally_protocol::Hash(hash)))
}
