//! The state root: a digest of the whole world state that does not depend on the order in
//! which it was built.
//!
//! Each live entry contributes H(key, version, value) to a sum modulo 2^256; a write subtracts
//! the old entry's term and adds the new one, so updating the root costs O(1) per write and two
//! nodes with equal state have equal roots however they got there (including through a
//! snapshot). The sum is a divergence detector between honest nodes, not a proof system.

use crate::codec::Encode;
use crate::hash::Hash;
use crate::tx::Version;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateDigest(pub [u64; 4]);

fn term(key: &str, version: &Version, value: &[u8]) -> [u64; 4] {
    let h = Hash::tagged(
        b"tally-state-entry",
        &[
            &(key.len() as u32).to_be_bytes(),
            key.as_bytes(),
            &version.to_bytes(),
            value,
        ],
    );
    let mut limbs = [0u64; 4];
    for (i, l) in limbs.iter_mut().enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(&h.0[i * 8..i * 8 + 8]);
        *l = u64::from_be_bytes(a);
    }
    limbs
}

impl StateDigest {
    pub fn add(&mut self, key: &str, version: &Version, value: &[u8]) {
        let t = term(key, version, value);
        let mut carry = false;
        for i in (0..4).rev() {
            let (s1, c1) = self.0[i].overflowing_add(t[i]);
            let (s2, c2) = s1.overflowing_add(carry as u64);
            self.0[i] = s2;
            carry = c1 || c2;
        }
    }

    pub fn remove(&mut self, key: &str, version: &Version, value: &[u8]) {
        let t = term(key, version, value);
        let mut borrow = false;
        for i in (0..4).rev() {
            let (s1, b1) = self.0[i].overflowing_sub(t[i]);
            let (s2, b2) = s1.overflowing_sub(borrow as u64);
            self.0[i] = s2;
            borrow = b1 || b2;
        }
    }

    pub fn root(&self) -> Hash {
        Hash::tagged(b"tally-state-root", &[&self.to_bytes()])
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, l) in self.0.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&l.to_be_bytes());
        }
        b
    }

    pub fn from_bytes(b: &[u8; 32]) -> StateDigest {
        let mut d = StateDigest::default();
        for (i, l) in d.0.iter_mut().enumerate() {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *l = u64::from_be_bytes(a);
        }
        d
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
        assert_eq!(StateDigest::from_bytes(&a.to_bytes()), a);
    }
}
