//! Reading a backup back and checking all of it, chunk by chunk, with the checks a snapshot
//! from a peer gets (`ledger::Intake`: one hash chain from the channel's genesis, every header
//! committing to its transactions and results, the state recomputed to the last header's
//! commitment, the derived records agreeing with the blocks), plus what the repository adds:
//! each chunk's bytes hash to its name, decompress to the size its manifest lists and hold the
//! records it lists; and the manifest's own claims (channel, height, last block hash, state
//! commitment, configuration, Raft position) are those of the records. Memory holds a chunk at
//! a time; the records are staged in the ledger's staging prefix, as a peer's snapshot is.

use super::chunking::{decode_records, Record};
use super::manifest::{self, Manifest};
use super::repo::Repo;
use super::BackupError;
use crate::keys;
use crate::ledger::{InForce, Intake, IntakeError, Ledger, StageWrite, Tip};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use tally_protocol::codec::Decode;
use tally_protocol::ChannelConfig;

/// A chunk's raw size is refused beyond this before it is decompressed.
const MAX_RAW: u64 = 256 * 1024 * 1024;

/// What a checked backup holds.
#[derive(Clone, Debug)]
pub struct Checked {
    pub height: u64,
    pub records: u64,
    pub bytes_raw: u64,
    pub bytes_stored: u64,
}

fn refused(m: impl Into<String>) -> BackupError {
    BackupError::Refused(m.into())
}

/// The records of chunk `i` of `m`, checked against its manifest entry.
pub fn chunk_records(repo: &Repo, m: &Manifest, i: usize) -> Result<Vec<Record>, BackupError> {
    let c = &m.chunks[i];
    if c.raw > MAX_RAW {
        return Err(refused(format!(
            "chunk {} claims {} raw bytes, more than a chunk may hold",
            c.hash, c.raw
        )));
    }
    let stored = repo.get(&manifest::chunk_path(&c.hash), c.stored)?;
    let hash = hex::encode(Sha256::digest(&stored));
    if hash != c.hash || stored.len() as u64 != c.stored {
        return Err(refused(format!(
            "chunk {} is corrupted: its bytes hash to {hash} ({} bytes, {} listed)",
            c.hash,
            stored.len(),
            c.stored
        )));
    }
    let raw = zstd::bulk::decompress(&stored, c.raw as usize)
        .map_err(|e| refused(format!("chunk {} does not decompress: {e}", c.hash)))?;
    if raw.len() as u64 != c.raw {
        return Err(refused(format!(
            "chunk {} holds {} raw bytes, its manifest lists {}",
            c.hash,
            raw.len(),
            c.raw
        )));
    }
    decode_records(&raw, c.records).map_err(|e| refused(format!("chunk {}: {e}", c.hash)))
}

/// The genesis configuration a backup starts with (its first record), checked to be of the
/// manifest's channel.
pub fn genesis_of(repo: &Repo, m: &Manifest) -> Result<ChannelConfig, BackupError> {
    if m.chunks.is_empty() {
        return Err(refused("the manifest lists no chunks"));
    }
    let recs = chunk_records(repo, m, 0)?;
    let Some((_, v)) = recs.first().filter(|(k, _)| k.as_slice() == [keys::CONFIG]) else {
        return Err(refused(
            "the backup does not start with a genesis configuration",
        ));
    };
    let g = ChannelConfig::from_bytes(v)
        .map_err(|e| refused(format!("its genesis configuration does not decode: {e}")))?;
    if g.name != m.channel {
        return Err(refused(format!(
            "its records are of channel {}, its manifest says {}",
            g.name, m.channel
        )));
    }
    if g.hash().to_string() != m.genesis_hash {
        return Err(refused(
            "its genesis configuration is not the one its manifest names",
        ));
    }
    Ok(g)
}

/// Streams every record of `m` through the intake checks into `ledger`'s staging prefix. On
/// success the staged records are the backup, verified, ready to install.
pub fn check_into(
    ledger: &Ledger,
    repo: &Repo,
    m: &Manifest,
    write: &mut StageWrite<'_>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Checked, BackupError> {
    let intake_err = |e: IntakeError| match e {
        IntakeError::Refused(r) => refused(format!("{r}")),
        IntakeError::Storage(s) => BackupError::Ledger(s),
    };
    let mut intake = Intake::begin(ledger, BTreeMap::new(), write).map_err(intake_err)?;
    let mut tip: Option<Tip> = None;
    let mut in_force: Option<Vec<u8>> = None;
    let (mut records, mut raw, mut stored) = (0u64, 0u64, 0u64);
    for i in 0..m.chunks.len() {
        for (k, v) in chunk_records(repo, m, i)? {
            match k.first() {
                Some(&keys::TIP) => tip = Tip::decode_bytes(&v),
                Some(&keys::CONFIG_IN_FORCE) => in_force = Some(v.clone()),
                _ => {}
            }
            intake.record(&k, &v, write).map_err(intake_err)?;
            records += 1;
        }
        raw += m.chunks[i].raw;
        stored += m.chunks[i].stored;
        progress(i as u64 + 1, m.chunks.len() as u64);
    }
    let v = intake
        .finish(records, m.raft.index, write)
        .map_err(intake_err)?;
    let tip = tip.ok_or_else(|| refused("no tip record"))?;
    if v.height != m.height || v.last_hash.to_string() != m.last_block_hash {
        return Err(refused(format!(
            "the records end at height {} ({}), the manifest says {} ({})",
            v.height, v.last_hash, m.height, m.last_block_hash
        )));
    }
    if tip.state_root().to_string() != m.state_root {
        return Err(refused(
            "the manifest's state commitment is not the records'",
        ));
    }
    if tip.applied_term != m.raft.term {
        return Err(refused(format!(
            "the records are at Raft term {}, the manifest says {}",
            tip.applied_term, m.raft.term
        )));
    }
    let (seq, hash, config) = match in_force {
        Some(b) => {
            let f = InForce::decode(&b).map_err(|e| refused(format!("configuration: {e}")))?;
            (f.sequence, f.hash, f.config)
        }
        None => (0, ledger.genesis_hash, ledger.genesis.clone()),
    };
    if seq != m.config_sequence || hash.to_string() != m.config_hash {
        return Err(refused(
            "the manifest's configuration sequence or hash is not the records'",
        ));
    }
    // The Raft membership cannot be derived from the records exactly (a change may be under
    // way), but every id in it must be a node of the configuration in force.
    let known: Vec<u64> = config.nodes().map(|n| n.id).collect();
    let r = &m.raft;
    let ids = r
        .voters
        .iter()
        .chain(&r.learners)
        .chain(&r.voters_outgoing)
        .chain(&r.learners_next);
    if r.voters.is_empty() || ids.clone().any(|id| !known.contains(id)) {
        return Err(refused(
            "the manifest's Raft membership names a node that the channel configuration does not",
        ));
    }
    Ok(Checked {
        height: v.height,
        records,
        bytes_raw: raw,
        bytes_stored: stored,
    })
}
