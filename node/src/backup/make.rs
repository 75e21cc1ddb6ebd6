//! Making a backup of a channel on a running node: one RocksDB snapshot (the ledger records,
//! tip, configuration and Raft position of one instant, while the channel goes on writing),
//! its records cut into chunks, each compressed, named by its hash and uploaded unless the
//! repository has it already; the manifest last, so that a backup cut short leaves no
//! manifest, only chunks a later backup may reuse.

use super::chunking::{Chunker, Cuts, RawChunk};
use super::manifest::{self, ChunkRef, Manifest, RaftPosition, Totals};
use super::repo::Repo;
use super::BackupError;
use crate::keys;
use crate::ledger::{InForce, Ledger};
use protobuf::Message as _;
use raft::prelude::ConfState;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// zstd level: fast enough not to be the bottleneck, and blocks and state compress well.
const ZSTD_LEVEL: i32 = 3;

/// Counts published while a backup runs.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub height: u64,
    pub bytes_raw: u64,
    pub bytes_stored: u64,
    pub chunks: u64,
    pub chunks_reused: u64,
}

fn ledger_err(e: impl std::fmt::Display) -> BackupError {
    BackupError::Ledger(e.to_string())
}

/// Backs up `ledger` as of now into `repo`; `progress` is called after each chunk.
pub fn make(
    ledger: &Arc<Ledger>,
    node: &str,
    repo: &Repo,
    cuts: Cuts,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Manifest, BackupError> {
    let db = ledger.db_arc();
    let snap = db.snapshot();
    let k = keys::Keys::new(&ledger.name);
    let tip = ledger.tip_at(&snap).map_err(ledger_err)?;
    let conf = match snap.get(k.kind(keys::CONF_STATE)).map_err(ledger_err)? {
        Some(b) => ConfState::parse_from_bytes(&b).map_err(ledger_err)?,
        None => return Err(BackupError::Ledger("no Raft configuration state".into())),
    };
    let (config_sequence, config_hash) = match snap
        .get(k.kind(keys::CONFIG_IN_FORCE))
        .map_err(ledger_err)?
    {
        Some(b) => {
            let f = InForce::decode(&b).map_err(ledger_err)?;
            (f.sequence, f.hash)
        }
        None => (0, ledger.genesis_hash),
    };
    let mut p = Progress {
        height: tip.height,
        ..Progress::default()
    };
    progress(&p);
    let mut chunks = Vec::new();
    let mut store = |raw: RawChunk, p: &mut Progress| -> Result<(), BackupError> {
        let c = upload(repo, raw)?;
        p.chunks += 1;
        p.bytes_raw += c.0.raw;
        p.bytes_stored += c.0.stored;
        p.chunks_reused += u64::from(c.1);
        chunks.push(c.0);
        progress(p);
        Ok(())
    };
    let mut chunker = Chunker::new(cuts);
    for item in crate::snapshot_builder::records_after(ledger, &snap, &[]) {
        let (key, value) = item.map_err(ledger_err)?;
        if let Some(raw) = chunker.push(&key, &value) {
            store(raw, &mut p)?;
        }
    }
    if let Some(raw) = chunker.finish() {
        store(raw, &mut p)?;
    }
    let totals = Totals {
        records: chunks.iter().map(|c| c.records).sum(),
        raw: p.bytes_raw,
        stored: p.bytes_stored,
        chunks: chunks.len() as u64,
    };
    let m = Manifest {
        format: manifest::FORMAT,
        channel: ledger.name.clone(),
        height: tip.height,
        last_block_hash: tip.last_hash.to_string(),
        state_root: tip.state_root().to_string(),
        genesis_hash: ledger.genesis_hash.to_string(),
        config_sequence,
        config_hash: config_hash.to_string(),
        raft: RaftPosition {
            index: tip.applied_index,
            term: tip.applied_term,
            voters: conf.voters.clone(),
            learners: conf.learners.clone(),
            voters_outgoing: conf.voters_outgoing.clone(),
            learners_next: conf.learners_next.clone(),
            auto_leave: conf.auto_leave,
        },
        created_unix: tally_protocol::identity::now_unix().max(0) as u64,
        node: node.to_string(),
        chunks,
        totals,
    };
    repo.put(&m.path(), m.to_json())?;
    Ok(m)
}

/// Compresses and stores one chunk unless the repository holds it already (same name, same
/// size: a damaged copy of another size is written again). True when it was there.
fn upload(repo: &Repo, raw: RawChunk) -> Result<(ChunkRef, bool), BackupError> {
    let stored = zstd::bulk::compress(&raw.bytes, ZSTD_LEVEL)
        .map_err(|e| BackupError::Ledger(format!("compressing a chunk: {e}")))?;
    let hash = hex::encode(Sha256::digest(&stored));
    let c = ChunkRef {
        hash,
        stored: stored.len() as u64,
        raw: raw.bytes.len() as u64,
        records: raw.records,
    };
    let path = manifest::chunk_path(&c.hash);
    if repo.size(&path)? == Some(c.stored) {
        return Ok((c, true));
    }
    repo.put(&path, stored)?;
    Ok((c, false))
}
