//! Raft snapshots of a channel: every ledger record at the applied index, and their
//! installation in place of the current ledger.

use super::{corrupt, Ledger, LedgerError};
use crate::keys::LEDGER_KINDS;
use rocksdb::{Direction, IteratorMode, WriteBatch};
use tally_protocol::codec::{Reader, Writer};

impl Ledger {
    /// Every ledger record of the channel, for a Raft snapshot. Called on the channel's own
    /// thread, the only writer, so the records are consistent with the tip.
    pub fn dump(&self) -> Result<Vec<u8>, LedgerError> {
        let skip = self.keys.state_prefix_len() - 1;
        let mut w = Writer::default();
        for kind in LEDGER_KINDS {
            let (lo, hi) = self.keys.range(kind);
            for item in self
                .db
                .iterator(IteratorMode::From(&lo, Direction::Forward))
            {
                let (k, v) = item?;
                if k.as_ref() >= hi.as_slice() {
                    break;
                }
                w.bytes(&k[skip..]);
                w.bytes(&v);
            }
        }
        Ok(w.into_inner())
    }

    /// Replaces the channel's ledger with a snapshot's records, in `wb`.
    pub fn restore(&self, data: &[u8], wb: &mut WriteBatch) -> Result<(), LedgerError> {
        for kind in LEDGER_KINDS {
            let (lo, hi) = self.keys.range(kind);
            wb.delete_range(lo, hi);
        }
        let base = self.keys.kind(0);
        let base = &base[..base.len() - 1];
        let mut r = Reader::new(data);
        while r.remaining() > 0 {
            let k = r
                .bytes("snapshot key")
                .map_err(|e| corrupt("snapshot", e))?;
            let v = r
                .bytes("snapshot value")
                .map_err(|e| corrupt("snapshot", e))?;
            let mut key = base.to_vec();
            key.extend_from_slice(&k);
            wb.put(key, v);
        }
        Ok(())
    }

    pub fn after_restore(&self) -> Result<(), LedgerError> {
        self.reload_config()?;
        self.reload_tip()
    }
}
