//! `raft::Storage` on RocksDB: the Raft log, hard state, configuration state and the snapshot
//! point of one channel. Snapshots are the channel's ledger itself at its applied index.

use crate::keys::{self, Keys};
use crate::ledger::Ledger;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use std::cell::Cell;
use std::sync::Arc;

fn store_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

pub struct RaftStore {
    db: Arc<DB>,
    keys: Keys,
    ledger: Arc<Ledger>,
    /// Index and term of the last entry removed by compaction (or of the applied snapshot).
    snap_index: Cell<u64>,
    snap_term: Cell<u64>,
    last_index: Cell<u64>,
    hard_state: std::cell::RefCell<HardState>,
    conf_state: std::cell::RefCell<ConfState>,
    /// Holds snapshots for peers to pull, off the channel's thread.
    builder: Option<crate::snapshot_builder::Builder>,
    /// Or builds them in line (the simulator).
    inline: Option<Arc<crate::snapshot_stream::InlineBuilds>>,
}

impl RaftStore {
    /// Opens the Raft state of a channel; a new channel starts from `initial` (its genesis
    /// voters and learners) at index 0.
    pub fn open(
        db: Arc<DB>,
        ledger: Arc<Ledger>,
        initial: ConfState,
    ) -> Result<RaftStore, raft::Error> {
        let keys = Keys::new(&ledger.name);
        let mut hs = match db.get(keys.kind(keys::HARD_STATE)).map_err(store_err)? {
            Some(b) => HardState::parse_from_bytes(&b).map_err(store_err)?,
            None => HardState::default(),
        };
        // Committed entries are applied before the Ready's hard state is written, so a crash in
        // between leaves the ledger applied past the stored commit index. What was applied was
        // committed (and is in the persisted log), so the commit index is raised to match.
        let applied = ledger.tip().applied_index;
        if hs.commit < applied {
            hs.commit = applied;
            db.put(
                keys.kind(keys::HARD_STATE),
                hs.write_to_bytes().map_err(store_err)?,
            )
            .map_err(store_err)?;
        }
        let cs = match db.get(keys.kind(keys::CONF_STATE)).map_err(store_err)? {
            Some(b) => ConfState::parse_from_bytes(&b).map_err(store_err)?,
            None => {
                db.put(
                    keys.kind(keys::CONF_STATE),
                    initial.write_to_bytes().map_err(store_err)?,
                )
                .map_err(store_err)?;
                initial
            }
        };
        let (si, st) = match db.get(keys.kind(keys::SNAP_META)).map_err(store_err)? {
            Some(b) if b.len() == 16 => (be(&b[..8]), be(&b[8..])),
            _ => (0, 0),
        };
        let store = RaftStore {
            db,
            keys,
            ledger,
            snap_index: Cell::new(si),
            snap_term: Cell::new(st),
            last_index: Cell::new(si),
            hard_state: std::cell::RefCell::new(hs),
            conf_state: std::cell::RefCell::new(cs),
            builder: None,
            inline: None,
        };
        let last = store.scan_last_index()?.unwrap_or(si).max(si);
        store.last_index.set(last);
        Ok(store)
    }

    fn scan_last_index(&self) -> Result<Option<u64>, raft::Error> {
        let (lo, hi) = self.keys.range(keys::LOG);
        let mut it = self
            .db
            .iterator(IteratorMode::From(&hi, Direction::Reverse));
        match it.next() {
            Some(Ok((k, _))) if k.as_ref() >= lo.as_slice() && k.len() == lo.len() + 8 => {
                Ok(Some(be(&k[lo.len()..])))
            }
            Some(Err(e)) => Err(store_err(e)),
            _ => Ok(None),
        }
    }

    /// Snapshots from now on are held on a thread of their own and served from `shelf`
    /// (see [`crate::snapshot_builder`]).
    pub fn build_snapshots_in_background(&mut self, shelf: crate::snapshot_builder::Shelf) {
        self.builder = Some(crate::snapshot_builder::Builder::new(
            self.ledger.clone(),
            shelf,
        ));
    }

    /// Snapshots from now on are built in line and kept in `builds`.
    pub fn build_snapshots_in_line(&mut self, builds: Arc<crate::snapshot_stream::InlineBuilds>) {
        self.inline = Some(builds);
    }

    /// The Raft index of the snapshot this node holds while peers are pulling it.
    pub fn pulled_snapshot_index(&self) -> Option<u64> {
        self.builder.as_ref().and_then(|b| b.pulled_index())
    }

    /// How long this node's held snapshot has gone without serving a chunk
    /// (`Duration::MAX` when it holds none).
    pub fn snapshot_idle(&self) -> std::time::Duration {
        self.builder
            .as_ref()
            .map_or(std::time::Duration::MAX, |b| b.idle_for())
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state.borrow().clone()
    }

    pub fn conf_state(&self) -> ConfState {
        self.conf_state.borrow().clone()
    }

    /// Adds new entries to `wb`, replacing any conflicting suffix of the log.
    pub fn append(&self, entries: &[Entry], wb: &mut WriteBatch) -> Result<(), raft::Error> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let last_new = last.index;
        // New entries overwrite their indexes; a longer conflicting suffix is deleted. Point
        // deletes throughout this file, not range deletes: a range tombstone in the memtable
        // makes every read of the ledger's keys slower until the next flush.
        for i in last_new + 1..=self.last_index.get() {
            wb.delete(self.keys.log(i));
        }
        for e in entries {
            wb.put(
                self.keys.log(e.index),
                e.write_to_bytes().map_err(store_err)?,
            );
        }
        self.last_index.set(last_new);
        Ok(())
    }

    pub fn set_hard_state(&self, hs: &HardState, wb: &mut WriteBatch) -> Result<(), raft::Error> {
        wb.put(
            self.keys.kind(keys::HARD_STATE),
            hs.write_to_bytes().map_err(store_err)?,
        );
        *self.hard_state.borrow_mut() = hs.clone();
        Ok(())
    }

    pub fn set_commit(&self, commit: u64, wb: &mut WriteBatch) -> Result<(), raft::Error> {
        let mut hs = self.hard_state();
        hs.commit = commit;
        self.set_hard_state(&hs, wb)
    }

    pub fn set_conf_state(&self, cs: &ConfState, wb: &mut WriteBatch) -> Result<(), raft::Error> {
        wb.put(
            self.keys.kind(keys::CONF_STATE),
            cs.write_to_bytes().map_err(store_err)?,
        );
        *self.conf_state.borrow_mut() = cs.clone();
        Ok(())
    }

    fn set_snap_meta(&self, index: u64, term: u64, wb: &mut WriteBatch) {
        let mut v = index.to_be_bytes().to_vec();
        v.extend_from_slice(&term.to_be_bytes());
        wb.put(self.keys.kind(keys::SNAP_META), v);
        self.snap_index.set(index);
        self.snap_term.set(term);
    }

    /// Drops log entries up to and including `index` (which must be applied).
    pub fn compact(&self, index: u64, wb: &mut WriteBatch) -> Result<bool, raft::Error> {
        if index <= self.snap_index.get() || index > self.last_index.get() {
            return Ok(false);
        }
        let term = raft::Storage::term(self, index)?;
        for i in self.snap_index.get() + 1..=index {
            wb.delete(self.keys.log(i));
        }
        self.set_snap_meta(index, term, wb);
        Ok(true)
    }

    /// Installs a snapshot received from the leader, whose records were pulled, verified and
    /// staged before Raft was given it: the ledger is swapped for the staged records and the
    /// log emptied, under the install marker (`ledger::snapshot_install`), the new Raft state
    /// written with the marker in the first, synced write.
    pub fn apply_snapshot(
        &self,
        snap: &Snapshot,
        write: &mut crate::ledger::InstallWrite<'_>,
    ) -> Result<u64, raft::Error> {
        let meta = snap.get_metadata();
        // Only a staged snapshot is ever handed to Raft; its tip must be the one Raft installs.
        let mut staged_tip = self.keys.kind(keys::STAGED);
        staged_tip.push(keys::TIP);
        let staged = self.db.get(&staged_tip).map_err(store_err)?;
        let at = staged
            .as_deref()
            .and_then(crate::ledger::Tip::decode_bytes)
            .map(|t| t.applied_index);
        if at != Some(meta.index) {
            return Err(store_err(format!(
                "Raft installs a snapshot at index {} but the staged one is at {at:?}",
                meta.index
            )));
        }
        let mut wb = WriteBatch::default();
        crate::ledger::snapshot_install::begin_install(&self.keys, &mut wb);
        for i in self.snap_index.get() + 1..=self.last_index.get() {
            wb.delete(self.keys.log(i));
        }
        self.set_snap_meta(meta.index, meta.term, &mut wb);
        self.last_index.set(meta.index);
        let mut hs = self.hard_state();
        hs.term = hs.term.max(meta.term);
        hs.commit = meta.index;
        self.set_hard_state(&hs, &mut wb)?;
        self.set_conf_state(meta.get_conf_state(), &mut wb)?;
        write(wb, true).map_err(store_err)?;
        crate::ledger::snapshot_install::finish_install(&self.db, &self.keys, write)
            .map_err(store_err)
    }

    pub fn first_index_now(&self) -> u64 {
        self.snap_index.get() + 1
    }
}

fn be(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl raft::Storage for RaftStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state(), self.conf_state()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        if low <= self.snap_index.get() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index.get() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        let start = self.keys.log(low);
        let end = self.keys.log(high);
        for item in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item.map_err(store_err)?;
            if k.as_ref() >= end.as_slice() {
                break;
            }
            let e = Entry::parse_from_bytes(&v).map_err(store_err)?;
            size += v.len() as u64;
            if let Some(max) = max_size {
                if !out.is_empty() && size > max {
                    break;
                }
            }
            out.push(e);
        }
        if out.is_empty() || out[0].index != low {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snap_index.get() {
            return Ok(self.snap_term.get());
        }
        if idx < self.snap_index.get() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index.get() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        match self.db.get_pinned(self.keys.log(idx)).map_err(store_err)? {
            Some(v) => Ok(Entry::parse_from_bytes(&v).map_err(store_err)?.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snap_index.get() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index.get())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let (descriptor, conf_state) = if let Some(builder) = &self.builder {
            // A snapshot older than the log's start would leave the receiver needing entries
            // that are gone: it must reach the last compacted index.
            let floor = request_index.max(self.snap_index.get()).max(1);
            let Some(held) = builder.get(floor) else {
                return Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ));
            };
            (held.descriptor.clone(), held.conf_state.clone())
        } else if let Some(builds) = &self.inline {
            let tip = self.ledger.tip();
            if tip.applied_index < request_index {
                return Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ));
            }
            let term = if tip.applied_index == self.snap_index.get() {
                self.snap_term.get()
            } else {
                self.term(tip.applied_index).unwrap_or(tip.applied_term)
            };
            let data = self.ledger.dump().map_err(store_err)?;
            let records: Vec<(Vec<u8>, Vec<u8>)> = crate::ledger::records(&data)
                .map_err(store_err)?
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            let descriptor = crate::snapshot_stream::Descriptor {
                build: builds.add(records),
                index: tip.applied_index,
                term,
                height: tip.height,
                last_hash: tip.last_hash,
                state_root: tip.state_root(),
            };
            (descriptor, self.conf_state())
        } else {
            return Err(store_err("no way to build snapshots"));
        };
        let mut meta = SnapshotMetadata {
            index: descriptor.index,
            term: descriptor.term,
            ..SnapshotMetadata::default()
        };
        meta.set_conf_state(conf_state);
        let mut snap = Snapshot {
            data: tally_protocol::codec::Encode::to_bytes(&descriptor).into(),
            ..Snapshot::default()
        };
        snap.set_metadata(meta);
        Ok(snap)
    }
}
