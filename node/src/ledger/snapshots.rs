//! Raft snapshots of a channel: every ledger record at the applied index, their verification
//! when one arrives from a peer, and their installation in place of the current ledger.
//!
//! A snapshot is `(key, value)*` followed by an end marker (an empty key) and the record
//! count, so that a stream cut short at a record boundary is told from a complete one. Peers
//! stream it in chunks (`crate::snapshot_stream`); a peer's snapshot is checked record by
//! record as it is staged, and installed only once every check passed (see
//! `snapshot_intake.rs`, `snapshot_install.rs` and docs/security.md).

use super::snapshot_intake::{Intake, IntakeError};
use super::{corrupt, Ledger, LedgerError, Tip};
use crate::keys::{self, LEDGER_KINDS};
use rocksdb::{Direction, IteratorMode, WriteBatch};
use std::collections::BTreeMap;
use tally_protocol::codec::{Writer, MAX_LEN};
use tally_protocol::Hash;

/// Why a peer's snapshot was refused. The label names the check for the metric.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotRefused {
    #[error("truncated snapshot: {0}")]
    Truncated(String),
    #[error("snapshot carries a record of kind {0:#04x}, which is not a ledger record")]
    ForeignKind(u8),
    #[error("malformed snapshot record: {0}")]
    Malformed(String),
    #[error("snapshot's block chain does not check: {0}")]
    Chain(String),
    #[error("snapshot's state does not match its block header: {0}")]
    State(String),
    #[error("snapshot's derived records do not match its blocks: {0}")]
    Derived(String),
    #[error("snapshot differs from the channel's majority checkpoint: {0}")]
    Checkpoint(String),
}

impl SnapshotRefused {
    /// Value of the `reason` label of `tally_snapshots_refused_total`.
    pub fn label(&self) -> &'static str {
        match self {
            SnapshotRefused::Truncated(_) => "truncated",
            SnapshotRefused::ForeignKind(_) => "foreign_kind",
            SnapshotRefused::Malformed(_) => "malformed",
            SnapshotRefused::Chain(_) => "chain",
            SnapshotRefused::State(_) => "state",
            SnapshotRefused::Derived(_) => "derived",
            SnapshotRefused::Checkpoint(_) => "checkpoint",
        }
    }
}

/// What a verified snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSnapshot {
    pub height: u64,
    pub last_hash: Hash,
    /// Highest height at which a majority checkpoint of the channel's consenters vouched
    /// for the snapshot's chain, if the node had one.
    pub anchored_at: Option<u64>,
}

/// One snapshot record: key (kind byte first, no channel prefix) and value.
pub(crate) type Record<'a> = (&'a [u8], &'a [u8]);

/// Splits a snapshot into its records, checking the end marker and count. Records borrow
/// from `data`; a length beyond what is left is refused before anything is reserved.
pub(crate) fn records(data: &[u8]) -> Result<Vec<Record<'_>>, SnapshotRefused> {
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if buf.len() < n {
            return None;
        }
        let (a, b) = buf.split_at(n);
        *buf = b;
        Some(a)
    }
    fn field<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(take(buf, 4)?.try_into().ok()?) as usize;
        if len > MAX_LEN {
            return None;
        }
        take(buf, len)
    }
    let mut buf = data;
    let mut out = Vec::new();
    loop {
        if buf.is_empty() {
            return Err(SnapshotRefused::Truncated(format!(
                "ended after {} records without its end marker",
                out.len()
            )));
        }
        let k = field(&mut buf).ok_or_else(|| {
            SnapshotRefused::Truncated(format!("cut inside record {}", out.len()))
        })?;
        if k.is_empty() {
            let count = take(&mut buf, 8)
                .and_then(be_u64)
                .ok_or_else(|| SnapshotRefused::Truncated("cut inside the end marker".into()))?;
            if count != out.len() as u64 {
                return Err(SnapshotRefused::Truncated(format!(
                    "{} records where the end marker says {count}",
                    out.len()
                )));
            }
            if !buf.is_empty() {
                return Err(SnapshotRefused::Malformed(format!(
                    "{} bytes after the end marker",
                    buf.len()
                )));
            }
            return Ok(out);
        }
        let v = field(&mut buf).ok_or_else(|| {
            SnapshotRefused::Truncated(format!("cut inside record {}", out.len()))
        })?;
        out.push((k, v));
    }
}

/// Encodes records as a snapshot (with its end marker).
#[cfg(test)]
pub(crate) fn encode_records<'a>(
    records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Vec<u8> {
    let mut w = Writer::default();
    let mut n = 0u64;
    for (k, v) in records {
        w.bytes(k);
        w.bytes(v);
        n += 1;
    }
    w.bytes(&[]);
    w.u64(n);
    w.into_inner()
}

impl Ledger {
    /// Every ledger record of the channel, for a Raft snapshot. Called on the channel's own
    /// thread, the only writer, so the records are consistent with the tip.
    pub fn dump(&self) -> Result<Vec<u8>, LedgerError> {
        let snap = self.db.snapshot();
        Ok(self.dump_at(&snap)?.0)
    }

    /// The tip as of one RocksDB snapshot.
    pub fn tip_at(&self, snap: &rocksdb::Snapshot<'_>) -> Result<Tip, LedgerError> {
        let tip = snap
            .get(self.keys.kind(keys::TIP))?
            .ok_or_else(|| corrupt("tip", "missing"))?;
        Tip::decode(&tip).map_err(|e| corrupt("tip", e))
    }

    /// The database, for a thread that holds a snapshot of it.
    pub fn db_arc(&self) -> std::sync::Arc<rocksdb::DB> {
        self.db.clone()
    }

    /// Every ledger record as of one RocksDB snapshot, with the tip they are at: consistent
    /// whatever the channel's thread writes meanwhile.
    pub fn dump_at(&self, snap: &rocksdb::Snapshot<'_>) -> Result<(Vec<u8>, Tip), LedgerError> {
        let skip = self.keys.state_prefix_len() - 1;
        let mut w = Writer::default();
        let mut n = 0u64;
        for kind in LEDGER_KINDS {
            let (lo, hi) = self.keys.range(kind);
            for item in snap.iterator(IteratorMode::From(&lo, Direction::Forward)) {
                let (k, v) = item?;
                if k.as_ref() >= hi.as_slice() {
                    break;
                }
                w.bytes(&k[skip..]);
                w.bytes(&v);
                n += 1;
            }
        }
        w.bytes(&[]);
        w.u64(n);
        let tip = snap
            .get(self.keys.kind(keys::TIP))?
            .ok_or_else(|| corrupt("tip", "missing"))?;
        let tip = Tip::decode(&tip).map_err(|e| corrupt("tip", e))?;
        Ok((w.into_inner(), tip))
    }

    /// Checks a whole snapshot a peer sent, staging its records as
    /// [`super::snapshot_intake::Intake`] does for a streamed one (the streamed path and this
    /// one run the same checks): every record is of a kind a snapshot may carry; the blocks
    /// form one hash chain from this node's own genesis block, each header committing to its
    /// transactions and their results; the state records recompute to the last header's
    /// state commitment; the tip, the configuration in force, the transaction index and the
    /// certificate registry agree with the blocks; the stream is complete; and the chain
    /// holds every block that a strict majority of the consenters vouched for in signed
    /// checkpoints (`anchors`: height → (block hash, state root)) up to its height.
    /// `raft_index` is the Raft index the snapshot claims to be at.
    pub fn verify_snapshot(
        &self,
        data: &[u8],
        raft_index: u64,
        anchors: &BTreeMap<u64, (Hash, Hash)>,
    ) -> Result<VerifiedSnapshot, SnapshotRefused> {
        let storage = |e: IntakeError| match e {
            IntakeError::Refused(r) => r,
            IntakeError::Storage(s) => SnapshotRefused::Malformed(format!("storage: {s}")),
        };
        let recs = records(data)?;
        let mut write = |wb: WriteBatch| self.db.write(wb).map_err(|e| e.to_string());
        let mut intake = Intake::begin(self, anchors.clone(), &mut write).map_err(storage)?;
        // Foreign kinds first: whatever else is wrong, that one is the worst.
        for (k, _) in &recs {
            if let Some(kind) = k.first().filter(|k| !LEDGER_KINDS.contains(k)) {
                return Err(SnapshotRefused::ForeignKind(*kind));
            }
        }
        for (k, v) in &recs {
            intake.record(k, v, &mut write).map_err(storage)?;
        }
        intake
            .finish(recs.len() as u64, raft_index, &mut write)
            .map_err(storage)
    }

    /// Reloads what the ledger keeps in memory after a snapshot was installed under it.
    pub fn after_restore(&self) -> Result<(), LedgerError> {
        self.reload_config()?;
        self.reload_retirement()?;
        self.reload_tip()
    }
}

pub(super) fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::super::tests::ledger_with_member;
    use super::*;
    use crate::ledger::InForce;
    use crate::sim::Rng;
    use rocksdb::WriteBatch;
    use tally_protocol::codec::Encode;
    use tally_protocol::{Signer, Transaction, TxBody, Write};

    /// A ledger with a few blocks of state (and a certificate), and its honest snapshot. The
    /// last transaction of block 2 is block 0's first again: ordered twice and refused the
    /// second time as a duplicate, so the chain holds it in two places (the index names the
    /// first).
    fn ledger_with_blocks() -> (tempfile::TempDir, Ledger, Vec<u8>) {
        let (dir, ledger, client) = ledger_with_member();
        let now = tally_protocol::now_ms();
        for b in 0..3u64 {
            let raws: Vec<Vec<u8>> = (0..4u64)
                .map(|i| {
                    let (b, i) = if (b, i) == (2, 3) { (0, 0) } else { (b, i) };
                    let body = TxBody {
                        channel: "ch".into(),
                        nonce: b * 10 + i,
                        timestamp_ms: now,
                        signer: Signer::Certificate(client.cert_der.clone()),
                        payload: tally_protocol::Payload::KvWrite {
                            reads: vec![],
                            writes: vec![Write {
                                key: format!("k{}", i % 3),
                                value: Some(format!("v{b}-{i}").into_bytes()),
                            }],
                        },
                    };
                    Transaction::sign(body, &client).to_bytes()
                })
                .collect();
            let data = tally_protocol::write_batch(now, raws.iter().map(Vec::as_slice));
            let mut wb = WriteBatch::default();
            let (_, tip) = ledger
                .apply_batch(&data, 1, b + 1, &|_: &Hash, _: &[u8]| false, &mut wb)
                .expect("apply")
                .expect("a batch");
            ledger.db().write(wb).expect("write");
            ledger.commit_tip(tip);
        }
        let snap = ledger.dump().expect("dump");
        (dir, ledger, snap)
    }

    /// Re-encodes a snapshot's records after `edit`, with a correct end marker: a forger's
    /// snapshot that is well-formed and complete.
    fn forged(snap: &[u8], edit: impl FnOnce(&mut Vec<(Vec<u8>, Vec<u8>)>)) -> Vec<u8> {
        let mut recs: Vec<(Vec<u8>, Vec<u8>)> = records(snap)
            .expect("records")
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        edit(&mut recs);
        encode_records(recs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
    }

    fn refusal(ledger: &Ledger, snap: &[u8]) -> SnapshotRefused {
        let index = ledger.tip().applied_index;
        ledger
            .verify_snapshot(snap, index, &BTreeMap::new())
            .expect_err("a forged snapshot verified")
    }

    #[test]
    fn an_honest_snapshot_verifies_and_restores() {
        let (_dir, ledger, snap) = ledger_with_blocks();
        let last = ledger.block(3).expect("read").expect("block 3");
        assert!(
            matches!(
                last.results[3],
                tally_protocol::TxStatus::Rejected {
                    code: tally_protocol::RejectCode::Duplicate,
                    ..
                }
            ),
            "the fixture's duplicate: {:?}",
            last.results[3]
        );
        let tip = ledger.tip();
        let v = ledger
            .verify_snapshot(&snap, tip.applied_index, &BTreeMap::new())
            .expect("verifies");
        assert_eq!(
            (v.height, v.last_hash, v.anchored_at),
            (4, tip.last_hash, None)
        );
        // With the majority's checkpoint at height 2, it is anchored there.
        let h1 = ledger.header(1).expect("read").expect("block 1");
        let anchors = BTreeMap::from([(2, (h1.hash(), h1.state_root))]);
        let v = ledger
            .verify_snapshot(&snap, tip.applied_index, &anchors)
            .expect("verifies");
        assert_eq!(v.anchored_at, Some(2));
        // Staged and swapped in over a ledger emptied meanwhile: the same ledger again.
        let before = ledger.dump().expect("dump");
        let mut wb = WriteBatch::default();
        super::super::snapshot_install::begin_install(&ledger.keys, &mut wb);
        ledger.db().write(wb).expect("write");
        assert!(
            ledger.dump_at(&ledger.db().snapshot()).is_err(),
            "the old ledger is gone"
        );
        let mut write =
            |wb: WriteBatch, _sync: bool| ledger.db().write(wb).map_err(|e| e.to_string());
        let moved =
            super::super::snapshot_install::finish_install(ledger.db(), &ledger.keys, &mut write)
                .expect("install");
        assert_eq!(moved, records(&snap).expect("records").len() as u64);
        ledger.after_restore().expect("reload");
        assert_eq!(ledger.dump().expect("dump"), before);
        assert_eq!(ledger.tip(), tip);
    }

    /// A node stopped anywhere inside an install (before the records were moved, after, or
    /// between) opens a whole ledger: the new one, finished when the ledger is opened. Staged
    /// records without the install's marker (a pull cut short) are dropped and the old ledger
    /// kept.
    #[test]
    fn an_install_cut_short_is_finished_when_the_ledger_opens() {
        use super::super::snapshot_install::{begin_install, finish_install};
        for stop_at in 0..2 {
            let (_dir, ledger, snap) = ledger_with_blocks();
            let tip = ledger.tip();
            let whole = ledger.dump().expect("dump");
            ledger
                .verify_snapshot(&snap, tip.applied_index, &BTreeMap::new())
                .expect("verifies and stages");
            let db = ledger.db_arc();
            let mut wb = WriteBatch::default();
            begin_install(&ledger.keys, &mut wb);
            db.write(wb).expect("first write");
            let mut writes = 0;
            let mut write = |wb: WriteBatch, _sync: bool| {
                if writes == stop_at {
                    return Err("the process stops here".to_string());
                }
                writes += 1;
                db.write(wb).map_err(|e| e.to_string())
            };
            assert!(finish_install(&db, &ledger.keys, &mut write).is_err());
            let (genesis, engine) = ((*ledger.genesis).clone(), ledger.engine.clone());
            drop(ledger);
            let reopened = Ledger::open(db.clone(), genesis, engine).expect("reopen");
            assert!(reopened.resumed_install, "stopped after {stop_at} writes");
            assert_eq!(
                reopened.dump().expect("dump"),
                whole,
                "stopped after {stop_at}"
            );
            assert_eq!(reopened.tip(), tip);
            assert_eq!(reopened.verify_state().expect("check"), None);
        }
        // Staged records and no marker: dropped, the ledger as it was.
        let (_dir, ledger, snap) = ledger_with_blocks();
        let tip = ledger.tip();
        let whole = ledger.dump().expect("dump");
        ledger
            .verify_snapshot(&snap, tip.applied_index, &BTreeMap::new())
            .expect("stages");
        let (db, genesis, engine) = (
            ledger.db_arc(),
            (*ledger.genesis).clone(),
            ledger.engine.clone(),
        );
        let keys = ledger.keys.clone();
        drop(ledger);
        let reopened = Ledger::open(db.clone(), genesis, engine).expect("reopen");
        assert!(!reopened.resumed_install);
        assert_eq!(reopened.dump().expect("dump"), whole);
        let (lo, hi) = keys.range(keys::STAGED);
        let left = db
            .iterator(IteratorMode::From(&lo, Direction::Forward))
            .next()
            .and_then(Result::ok)
            .is_some_and(|(k, _)| *k < *hi.as_slice());
        assert!(!left, "staged records were left behind");
    }

    #[test]
    fn a_changed_state_value_under_the_same_header_is_refused() {
        let (_dir, ledger, snap) = ledger_with_blocks();
        let bad = forged(&snap, |recs| {
            let (_, v) = recs
                .iter_mut()
                .find(|(k, _)| k[0] == keys::STATE)
                .expect("a state record");
            *v.last_mut().expect("a value") ^= 1;
        });
        assert_eq!(refusal(&ledger, &bad).label(), "state");
        // A key removed: the same.
        let bad = forged(&snap, |recs| {
            let i = recs
                .iter()
                .position(|(k, _)| k[0] == keys::STATE)
                .expect("state");
            recs.remove(i);
        });
        assert_eq!(refusal(&ledger, &bad).label(), "state");
    }

    #[test]
    fn foreign_key_kinds_are_refused() {
        let (_dir, ledger, snap) = ledger_with_blocks();
        for kind in [
            keys::LOG,
            keys::HARD_STATE,
            keys::CONF_STATE,
            keys::SNAP_META,
            0,
            0xff,
        ] {
            let bad = forged(&snap, |recs| recs.push((vec![kind, 1, 2], vec![3])));
            assert!(
                matches!(refusal(&ledger, &bad), SnapshotRefused::ForeignKind(k) if k == kind),
                "kind {kind:#04x}"
            );
        }
    }

    #[test]
    fn truncated_streams_are_refused() {
        let (_dir, ledger, snap) = ledger_with_blocks();
        // Cut at every record boundary and inside records alike.
        for cut in (0..snap.len()).step_by(97) {
            let r = refusal(&ledger, &snap[..cut]);
            assert_eq!(r.label(), "truncated", "cut at {cut}: {r}");
        }
        // A well-formed stream that lost its last records (end marker recomputed) still
        // fails on what the lost records carried.
        let bad = forged(&snap, |recs| {
            recs.pop();
        });
        assert!(ledger.verify_snapshot(&bad, 3, &BTreeMap::new()).is_err());
    }

    #[test]
    fn edited_blocks_and_derived_records_are_refused() {
        let (_dir, ledger, snap) = ledger_with_blocks();
        // A block replaced by another block's bytes: the chain breaks.
        let bad = forged(&snap, |recs| {
            let blocks: Vec<usize> = (0..recs.len())
                .filter(|&i| recs[i].0[0] == keys::BLOCK)
                .collect();
            let v = recs[blocks[1]].1.clone();
            recs[blocks[2]].1 = v;
        });
        assert_eq!(refusal(&ledger, &bad).label(), "chain");
        // The transaction index pointing elsewhere.
        let bad = forged(&snap, |recs| {
            let (_, v) = recs
                .iter_mut()
                .find(|(k, _)| k[0] == keys::TX_INDEX)
                .expect("index");
            v[11] ^= 1;
        });
        assert_eq!(refusal(&ledger, &bad).label(), "derived");
        // A configuration in force the chain never committed.
        let bad = forged(&snap, |recs| {
            let cfg = InForce::new(1, (*ledger.genesis).clone()).expect("config");
            recs.insert(1, (vec![keys::CONFIG_IN_FORCE], cfg.encode()));
        });
        assert_eq!(refusal(&ledger, &bad).label(), "derived");
        // A majority checkpoint that disagrees with the chain.
        let tip = ledger.tip();
        let anchors = BTreeMap::from([(2, (Hash([7; 32]), Hash([8; 32])))]);
        let r = ledger
            .verify_snapshot(&snap, tip.applied_index, &anchors)
            .expect_err("against the majority");
        assert_eq!(r.label(), "checkpoint");
        // The wrong Raft index.
        let r = ledger
            .verify_snapshot(&snap, tip.applied_index + 1, &BTreeMap::new())
            .expect_err("another index");
        assert_eq!(r.label(), "derived");
    }

    /// A snapshot comes from a peer: mutated, truncated or lying about its lengths, it is
    /// refused or read, never a panic, and a length beyond the input is refused before
    /// anything of that size is reserved.
    #[test]
    fn hostile_snapshot_bytes_are_refused_without_panicking() {
        let (_dir, ledger, good) = ledger_with_blocks();
        let index = ledger.tip().applied_index;
        let none = BTreeMap::new();
        for len in [
            u32::MAX,
            MAX_LEN as u32,
            MAX_LEN as u32 + 1,
            good.len() as u32,
        ] {
            let mut b = good.clone();
            b[..4].copy_from_slice(&len.to_be_bytes());
            assert!(
                ledger.verify_snapshot(&b, index, &none).is_err(),
                "a first key of {len} bytes"
            );
        }
        let mut rng = Rng::new(12);
        let mut verified = 0;
        for _ in 0..3000 {
            let mut b = good.clone();
            match rng.below(4) {
                0 => {
                    let i = rng.below(b.len() as u64) as usize;
                    b[i] ^= 1 << rng.below(8);
                }
                1 => b.truncate(rng.below(b.len() as u64) as usize),
                2 if b.len() > 4 => {
                    let i = rng.below(b.len() as u64 - 3) as usize;
                    b[i..i + 4].copy_from_slice(&(rng.next_u64() as u32).to_be_bytes());
                }
                _ => b.push(rng.next_u64() as u8),
            }
            if ledger.verify_snapshot(&b, index, &none).is_ok() {
                verified += 1;
            }
        }
        // What a mutation may leave verifiable is what no header commits to: the tip's Raft
        // term and the history records' values (docs/security.md says so).
        assert!(
            verified < 300,
            "{verified} of 3000 mutated snapshots verified"
        );
    }
}
