//! Swapping a verified, staged snapshot in for the ledger.
//!
//! RocksDB cannot rename keys, and one write batch of the whole ledger is what streaming is
//! there to avoid, so the swap takes several writes, made crash-safe by a marker
//! ([`keys::INSTALLING`]): the first (synced) write deletes the old ledger records, writes the
//! marker and, from the caller, the new Raft state; then the staged records are moved under
//! their own keys in batches of a few MiB (each batch puts the records and deletes their
//! staged copies, so what is left staged is exactly what is left to move); the last (synced)
//! write deletes the marker. A node stopped anywhere in between finds the marker when it opens
//! the ledger and finishes the move before anything reads the ledger
//! ([`recover_install`]); a node stopped before the first write finds no marker and drops
//! the staged records. The ledger is therefore either the old one or the new one, whole.

use super::LedgerError;
use crate::keys::{self, Keys, LEDGER_KINDS};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use tracing::{info, warn};

/// Records are moved in batches of about this size.
const MOVE_BYTES: usize = 4 * 1024 * 1024;

/// Where the install's writes go, with whether each must be synced.
pub type InstallWrite<'w> = dyn FnMut(WriteBatch, bool) -> Result<(), String> + 'w;

/// Adds to `wb` the first write of an install: the old ledger records and the staging
/// lookups deleted, the marker written.
pub(crate) fn begin_install(keys: &Keys, wb: &mut WriteBatch) {
    for kind in LEDGER_KINDS.into_iter().chain([keys::STAGED_AUX]) {
        let (lo, hi) = keys.range(kind);
        wb.delete_range(lo, hi);
    }
    wb.put(keys.kind(keys::INSTALLING), b"1");
}

/// Moves every staged record under its own key, then deletes the marker. Returns the number
/// of records moved.
pub(crate) fn finish_install(
    db: &DB,
    keys: &Keys,
    write: &mut InstallWrite<'_>,
) -> Result<u64, LedgerError> {
    let (lo, hi) = keys.range(keys::STAGED);
    let prefix_len = lo.len() - 1;
    // Moved records are deleted from the staging prefix, so each batch starts where the
    // last one ended without seeing them again.
    let mut cursor = lo.clone();
    let mut moved = 0u64;
    loop {
        let mut wb = WriteBatch::default();
        let mut bytes = 0usize;
        let mut last: Option<Vec<u8>> = None;
        for item in db.iterator(IteratorMode::From(&cursor, Direction::Forward)) {
            let (k, v) = item?;
            if k.as_ref() >= hi.as_slice() || bytes >= MOVE_BYTES {
                break;
            }
            // The staged key is the channel prefix, the staging kind, then the record's key.
            let mut key = lo[..prefix_len].to_vec();
            key.extend_from_slice(&k[prefix_len + 1..]);
            wb.put(&key, &v);
            wb.delete(&k);
            bytes += k.len() + v.len();
            moved += 1;
            last = Some(k.to_vec());
        }
        let Some(last) = last else { break };
        write(wb, false).map_err(|e| super::corrupt("snapshot install", e))?;
        cursor = last;
    }
    crate::ledger::snapshot_forge::crash_in_install();
    let mut wb = WriteBatch::default();
    let (lo, hi) = keys.range(keys::STAGED);
    wb.delete_range(lo, hi);
    wb.delete(keys.kind(keys::INSTALLING));
    write(wb, true).map_err(|e| super::corrupt("snapshot install", e))?;
    Ok(moved)
}

/// Run before a channel's ledger is opened: finishes an install a stop interrupted, or drops
/// the records of a snapshot that was still arriving. True when an install was finished.
pub(crate) fn recover_install(db: &DB, keys: &Keys) -> Result<bool, LedgerError> {
    if db.get(keys.kind(keys::INSTALLING))?.is_some() {
        warn!(channel_prefix = ?String::from_utf8_lossy(&keys.kind(0)), "finishing a snapshot install that a stop interrupted");
        let mut write = |wb: WriteBatch, sync: bool| {
            let mut opts = rocksdb::WriteOptions::default();
            opts.set_sync(sync);
            db.write_opt(wb, &opts).map_err(|e| e.to_string())
        };
        let moved = finish_install(db, keys, &mut write)?;
        info!(records = moved, "resumed snapshot install finished");
        return Ok(true);
    }
    let mut any = false;
    for kind in [keys::STAGED, keys::STAGED_AUX] {
        let (lo, hi) = keys.range(kind);
        if let Some(item) = db
            .iterator(IteratorMode::From(&lo, Direction::Forward))
            .next()
        {
            let (k, _) = item?;
            any |= k.as_ref() < hi.as_slice();
        }
    }
    if any {
        info!("dropping the records of a snapshot that was still arriving at the last stop");
        let mut wb = WriteBatch::default();
        for kind in [keys::STAGED, keys::STAGED_AUX] {
            let (lo, hi) = keys.range(kind);
            wb.delete_range(lo, hi);
        }
        db.write(wb)?;
    }
    Ok(false)
}
