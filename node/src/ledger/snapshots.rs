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

#[cfg(test)]
mod tests {
    use super::super::tests::ledger_with_member;
    use crate::sim::Rng;
    use rocksdb::WriteBatch;
    use tally_protocol::codec::MAX_LEN;

    /// A snapshot comes from a peer: mutated, truncated or lying about its lengths, it is
    /// refused or read, never a panic, and a length beyond the input is refused before
    /// anything of that size is reserved (the reader checks it against the input first).
    #[test]
    fn hostile_snapshot_bytes_are_refused_without_panicking() {
        let (_dir, ledger, _client) = ledger_with_member();
        let good = ledger.dump().expect("dump");
        assert!(good.len() > 8, "an empty snapshot");
        let mut wb = WriteBatch::default();
        ledger
            .restore(&good, &mut wb)
            .expect("a real snapshot reads");
        for len in [
            u32::MAX,
            MAX_LEN as u32,
            MAX_LEN as u32 + 1,
            good.len() as u32,
        ] {
            let mut b = good.clone();
            b[..4].copy_from_slice(&len.to_be_bytes());
            let mut wb = WriteBatch::default();
            assert!(
                ledger.restore(&b, &mut wb).is_err(),
                "a first key of {len} bytes in a {}-byte snapshot was read",
                b.len()
            );
        }
        let mut rng = Rng::new(12);
        for _ in 0..5000 {
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
            let mut wb = WriteBatch::default();
            let _ = ledger.restore(&b, &mut wb);
        }
    }
}
