//! Replay protection for signed reads: a node remembers each (signer key, nonce) it accepted
//! for as long as the read's time could still pass the window check, and refuses the pair a
//! second time. Someone who captured a signed read (off a log, a proxy, a client's memory)
//! therefore cannot make the node answer it again.
//!
//! Memory is bounded: accepted nonces sit in one bucket per second of the reads' own times,
//! whole buckets are dropped once their second is out of the window, and both the total and
//! each signer's share are capped. When a cap is reached the node refuses new reads (the client
//! retries later) rather than forget a nonce early, which would reopen the replay.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use tally_protocol::read_auth::{NONCE_LEN, READ_WINDOW_MS};
use tally_protocol::Hash;

/// Nonces remembered at once by one node. At roughly 30 bytes each this bounds the cache to a
/// few tens of MiB, and allows about 35,000 reads per second in a 30 s window.
pub const MAX_REMEMBERED: usize = 1 << 20;
/// Nonces remembered at once for one signing key: one reader cannot take the whole cache and
/// lock every other reader out.
pub const MAX_PER_SIGNER: usize = MAX_REMEMBERED / 4;

/// Why a read was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The (signer, nonce) pair was already used.
    Replayed,
    /// The node remembers as many nonces as it may, or as many of this signer's.
    Full,
}

#[derive(Default)]
struct Bucket {
    seen: HashSet<u128>,
    per_signer: HashMap<u64, u32>,
}

#[derive(Default)]
struct Inner {
    /// By the second of the reads' own times (Unix seconds).
    buckets: BTreeMap<u64, Bucket>,
    per_signer: HashMap<u64, usize>,
    total: usize,
}

/// The nonces a node has accepted, within the read window.
pub struct SeenReads {
    inner: Mutex<Inner>,
    max_total: usize,
    max_per_signer: usize,
}

impl Default for SeenReads {
    fn default() -> Self {
        SeenReads::with_limits(MAX_REMEMBERED, MAX_PER_SIGNER)
    }
}

/// A short fingerprint of the pair: a collision can only refuse an honest read, never admit a
/// replay, and 128 bits make even that out of reach.
fn fingerprint(signer_key: &[u8], nonce: &[u8; NONCE_LEN]) -> (u64, u128) {
    let signer = Hash::tagged(b"tally-read-signer", &[signer_key]);
    let pair = Hash::tagged(b"tally-read-nonce", &[&signer.0, nonce]);
    let s = u64::from_be_bytes(signer.0[..8].try_into().unwrap_or_default());
    let p = u128::from_be_bytes(pair.0[..16].try_into().unwrap_or_default());
    (s, p)
}

impl SeenReads {
    pub fn with_limits(max_total: usize, max_per_signer: usize) -> SeenReads {
        SeenReads {
            inner: Mutex::new(Inner::default()),
            max_total,
            max_per_signer,
        }
    }

    /// Records the nonce of a read signed at `time_ms` (already checked to be within
    /// [`READ_WINDOW_MS`] of `now_ms`) by `signer_key`; refuses a pair seen before.
    pub fn admit(
        &self,
        signer_key: &[u8],
        nonce: &[u8; NONCE_LEN],
        time_ms: u64,
        now_ms: u64,
    ) -> Result<(), Refused> {
        let (signer, pair) = fingerprint(signer_key, nonce);
        let second = time_ms / 1000;
        let mut g = self.inner.lock();
        let inner = &mut *g;
        // A bucket is dropped once every read it holds would fail the window check anyway.
        while let Some((&s, _)) = inner.buckets.first_key_value() {
            if (s + 1) * 1000 + READ_WINDOW_MS >= now_ms {
                break;
            }
            if let Some(b) = inner.buckets.remove(&s) {
                inner.total -= b.seen.len();
                for (k, n) in b.per_signer {
                    if let Some(c) = inner.per_signer.get_mut(&k) {
                        *c = c.saturating_sub(n as usize);
                        if *c == 0 {
                            inner.per_signer.remove(&k);
                        }
                    }
                }
            }
        }
        // The pair can only sit in the bucket of its own time: the time is signed with it.
        if inner
            .buckets
            .get(&second)
            .is_some_and(|b| b.seen.contains(&pair))
        {
            return Err(Refused::Replayed);
        }
        let mine = inner.per_signer.get(&signer).copied().unwrap_or(0);
        if inner.total >= self.max_total || mine >= self.max_per_signer {
            return Err(Refused::Full);
        }
        let b = inner.buckets.entry(second).or_default();
        b.seen.insert(pair);
        *b.per_signer.entry(signer).or_default() += 1;
        *inner.per_signer.entry(signer).or_default() += 1;
        inner.total += 1;
        Ok(())
    }

    /// Nonces remembered now.
    pub fn len(&self) -> usize {
        self.inner.lock().total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn a_pair_is_accepted_once_and_forgotten_after_the_window() {
        let seen = SeenReads::default();
        let n = [1u8; NONCE_LEN];
        assert_eq!(seen.admit(b"alice", &n, NOW, NOW), Ok(()));
        assert_eq!(
            seen.admit(b"alice", &n, NOW, NOW + 5),
            Err(Refused::Replayed)
        );
        // Another signer, or another nonce, is another read.
        assert_eq!(seen.admit(b"bob", &n, NOW, NOW), Ok(()));
        assert_eq!(seen.admit(b"alice", &[2; NONCE_LEN], NOW, NOW), Ok(()));
        assert_eq!(seen.len(), 3);
        // Still remembered at the very end of the window ...
        let edge = NOW + READ_WINDOW_MS;
        assert_eq!(seen.admit(b"carol", &n, edge, edge), Ok(()));
        assert_eq!(seen.admit(b"alice", &n, NOW, edge), Err(Refused::Replayed));
        // ... and dropped once the window check would refuse the read by itself.
        let later = NOW + READ_WINDOW_MS + 2_000;
        assert_eq!(seen.admit(b"carol", &[3; NONCE_LEN], later, later), Ok(()));
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn caps_refuse_rather_than_forget() {
        let seen = SeenReads::with_limits(4, 2);
        let nonce = |i: u8| [i; NONCE_LEN];
        assert_eq!(seen.admit(b"a", &nonce(1), NOW, NOW), Ok(()));
        assert_eq!(seen.admit(b"a", &nonce(2), NOW, NOW), Ok(()));
        assert_eq!(seen.admit(b"a", &nonce(3), NOW, NOW), Err(Refused::Full));
        assert_eq!(seen.admit(b"b", &nonce(1), NOW, NOW), Ok(()));
        assert_eq!(seen.admit(b"c", &nonce(1), NOW, NOW), Ok(()));
        assert_eq!(seen.admit(b"d", &nonce(1), NOW, NOW), Err(Refused::Full));
        // A replay is still named as one when the cache is full.
        assert_eq!(
            seen.admit(b"a", &nonce(1), NOW, NOW),
            Err(Refused::Replayed)
        );
        let later = NOW + READ_WINDOW_MS + 2_000;
        assert_eq!(seen.admit(b"a", &nonce(3), later, later), Ok(()));
        assert_eq!(seen.len(), 1);
    }
}
