//! The state commitment: a collision-resistant digest of the whole world state that does not
//! depend on the order in which the state was built.
//!
//! It is a lattice multiset hash (LtHash): each live entry `(key, version, value)` is expanded
//! (SHA-256 of the entry seeding ChaCha20) into a vector of [`LANES`] 16-bit lanes, and the commitment is
//! the lane-wise sum of those vectors modulo 2^16. A write subtracts the old entry's vector and
//! adds the new one, so an update costs O(changed keys), two nodes with equal state reach equal
//! commitments however they got there (a snapshot included), and the commitment lives in one
//! record per block. Finding two different states with the same sum is a short-vector problem
//! in a 1024-dimensional lattice, out of reach; the single 256-bit sum used before was not (a
//! generalized-birthday search finds compensating entries with about 2^31 hashes).
//! docs/architecture.md explains the choice and its measured cost.

use crate::codec::{DecodeError, Encode};
use crate::hash::Hash;
use crate::tx::Version;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::sync::{Arc, OnceLock};

/// Number of 16-bit lanes of the commitment.
pub const LANES: usize = 1024;
/// Size of a commitment in bytes (lanes little-endian).
pub const DIGEST_BYTES: usize = LANES * 2;

#[derive(Clone)]
pub struct StateDigest {
    /// Shared until changed: a node's tip, read often, is cloned without copying 2 KiB.
    lanes: Arc<[u16; LANES]>,
    /// The root, once asked for: hashing 2 KiB on every read of a node's status (the channel
    /// publishes it after each Ready) cost more than the rest of its bookkeeping. Cleared by
    /// every change.
    root: OnceLock<Hash>,
}

impl Default for StateDigest {
    fn default() -> Self {
        StateDigest {
            lanes: Arc::new([0u16; LANES]),
            root: OnceLock::new(),
        }
    }
}

impl PartialEq for StateDigest {
    fn eq(&self, other: &Self) -> bool {
        self.lanes == other.lanes
    }
}

impl Eq for StateDigest {}

impl std::fmt::Debug for StateDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateDigest({:?})", self.root())
    }
}

/// The lattice vector of one entry: a SHA-256 digest of the entry seeds ChaCha20, whose
/// keystream gives the lanes (a hash-then-stream-cipher extendable output). Every field is
/// length-prefixed or fixed-size, so no two entries share an input.
fn element(key: &str, version: &Version, value: &[u8]) -> [u16; LANES] {
    let seed = Hash::tagged(
        b"tally-state-entry-v2",
        &[
            &(key.len() as u32).to_be_bytes(),
            key.as_bytes(),
            &version.to_bytes(),
            &(value.len() as u64).to_be_bytes(),
            value,
        ],
    );
    let mut bytes = [0u8; DIGEST_BYTES];
    ChaCha20Rng::from_seed(seed.0).fill_bytes(&mut bytes);
    let mut lanes = [0u16; LANES];
    for (l, b) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
        *l = u16::from_le_bytes([b[0], b[1]]);
    }
    lanes
}

impl StateDigest {
    pub fn add(&mut self, key: &str, version: &Version, value: &[u8]) {
        let e = element(key, version, value);
        self.root = OnceLock::new();
        for (a, b) in Arc::make_mut(&mut self.lanes).iter_mut().zip(e.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    pub fn remove(&mut self, key: &str, version: &Version, value: &[u8]) {
        let e = element(key, version, value);
        self.root = OnceLock::new();
        for (a, b) in Arc::make_mut(&mut self.lanes).iter_mut().zip(e.iter()) {
            *a = a.wrapping_sub(*b);
        }
    }

    /// The 32-byte root that block headers carry: a hash of the whole vector.
    pub fn root(&self) -> Hash {
        *self
            .root
            .get_or_init(|| Hash::tagged(b"tally-state-root-v2", &[&self.to_bytes()]))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; DIGEST_BYTES];
        for (c, l) in b.chunks_exact_mut(2).zip(self.lanes.iter()) {
            c.copy_from_slice(&l.to_le_bytes());
        }
        b
    }

    pub fn from_bytes(b: &[u8]) -> Result<StateDigest, DecodeError> {
        if b.len() != DIGEST_BYTES {
            return Err(DecodeError::Truncated("state commitment"));
        }
        let mut lanes = [0u16; LANES];
        for (l, c) in lanes.iter_mut().zip(b.chunks_exact(2)) {
            *l = u16::from_le_bytes([c[0], c[1]]);
        }
        Ok(StateDigest {
            lanes: Arc::new(lanes),
            root: OnceLock::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_and_reversible() {
        let v1 = Version { block: 1, tx: 0 };
        let v2 = Version { block: 2, tx: 3 };
        let mut a = StateDigest::default();
        a.add("x", &v1, b"1");
        a.add("y", &v2, b"2");
        let mut b = StateDigest::default();
        b.add("y", &v2, b"2");
        b.add("x", &v1, b"1");
        assert_eq!(a.root(), b.root());
        b.remove("x", &v1, b"1");
        assert_ne!(a.root(), b.root());
        b.add("x", &v1, b"1");
        assert_eq!(a, b);
        b.remove("x", &v1, b"1");
        b.remove("y", &v2, b"2");
        assert_eq!(b, StateDigest::default());
        assert_eq!(StateDigest::from_bytes(&a.to_bytes()).unwrap(), a);
        assert!(StateDigest::from_bytes(&a.to_bytes()[1..]).is_err());
    }

    #[test]
    fn every_field_of_an_entry_counts() {
        let v = Version { block: 1, tx: 0 };
        let root = |k: &str, v: &Version, val: &[u8]| {
            let mut d = StateDigest::default();
            d.add(k, v, val);
            d.root()
        };
        let base = root("ab", &v, b"c");
        assert_ne!(base, root("a", &v, b"bc"));
        assert_ne!(base, root("ab", &Version { block: 1, tx: 1 }, b"c"));
        assert_ne!(base, root("ab", &v, b"d"));
    }
}
