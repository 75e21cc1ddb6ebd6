//! Merkle tree over transaction hashes and inclusion proofs.
//!
//! Leaves and inner nodes are hashed under different prefixes (as in RFC 6962), so an inner
//! node can never be passed off as a leaf; an odd node is promoted unchanged to the next level.

use crate::hash::Hash;
use serde::{Deserialize, Serialize};

fn leaf(h: &Hash) -> Hash {
    Hash::tagged(b"tally-merkle-leaf", &[&h.0])
}

fn node(l: &Hash, r: &Hash) -> Hash {
    Hash::tagged(b"tally-merkle-node", &[&l.0, &r.0])
}

/// The level above `level`: pairs hashed together, an odd last node promoted unchanged.
fn up(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|c| {
            if c.len() == 2 {
                node(&c[0], &c[1])
            } else {
                c[0]
            }
        })
        .collect()
}

/// Root over `items`; the empty tree has the all-zero root.
pub fn root(items: &[Hash]) -> Hash {
    if items.is_empty() {
        return Hash::ZERO;
    }
    let mut level: Vec<Hash> = items.iter().map(leaf).collect();
    while level.len() > 1 {
        level = up(&level);
    }
    level[0]
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofStep {
    pub sibling: Hash,
    /// True when the sibling is on the left of the running hash.
    pub left: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleProof {
    pub index: u32,
    pub leaves: u32,
    pub path: Vec<ProofStep>,
}

/// Proof that `items[index]` is under `root(items)`.
pub fn prove(items: &[Hash], index: usize) -> Option<MerkleProof> {
    Tree::new(items).prove(index)
}

/// Every level of the tree over some items, leaves first. Built once, it proves any item in
/// O(log n) without hashing the tree again (what a node keeps for its recent blocks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn new(items: &[Hash]) -> Tree {
        let mut levels = vec![items.iter().map(leaf).collect::<Vec<_>>()];
        while let Some(top) = levels.last().filter(|l| l.len() > 1) {
            let next = up(top);
            levels.push(next);
        }
        Tree { levels }
    }

    /// How many items the tree is over.
    pub fn len(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same as [`root`] over the items.
    pub fn root(&self) -> Hash {
        match self.levels.last() {
            Some(top) if top.len() == 1 => top[0],
            _ => Hash::ZERO,
        }
    }

    /// Proof that item `index` is under [`Tree::root`].
    pub fn prove(&self, index: usize) -> Option<MerkleProof> {
        if index >= self.len() {
            return None;
        }
        let mut i = index;
        let mut path = Vec::with_capacity(self.levels.len());
        for level in &self.levels[..self.levels.len() - 1] {
            let sib = i ^ 1;
            if sib < level.len() {
                path.push(ProofStep {
                    sibling: level[sib],
                    left: sib < i,
                });
            }
            i /= 2;
        }
        Some(MerkleProof {
            index: index as u32,
            leaves: self.len() as u32,
            path,
        })
    }
}

/// Checks that `item` sits at the proof's position under `expected_root`. The sides of each step
/// are recomputed from the index and the tree size, so a proof cannot move a leaf elsewhere.
pub fn verify(item: &Hash, proof: &MerkleProof, expected_root: &Hash) -> bool {
    if proof.index >= proof.leaves {
        return false;
    }
    let mut i = proof.index as usize;
    let mut n = proof.leaves as usize;
    let mut acc = leaf(item);
    let mut steps = proof.path.iter();
    while n > 1 {
        let sib = i ^ 1;
        if sib < n {
            let Some(step) = steps.next() else {
                return false;
            };
            if step.left != (sib < i) {
                return false;
            }
            acc = if step.left {
                node(&step.sibling, &acc)
            } else {
                node(&acc, &step.sibling)
            };
        }
        i /= 2;
        n = n.div_ceil(2);
    }
    steps.next().is_none() && acc == *expected_root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| Hash::tagged(b"t", &[&(i as u64).to_be_bytes()]))
            .collect()
    }

    #[test]
    fn every_leaf_proves_for_many_sizes() {
        for n in 1..40 {
            let it = items(n);
            let r = root(&it);
            for i in 0..n {
                let p = prove(&it, i).unwrap();
                assert!(verify(&it[i], &p, &r), "n={n} i={i}");
            }
        }
    }

    #[test]
    fn a_kept_tree_has_the_same_root_and_proofs() {
        for n in 0..40 {
            let it = items(n);
            let t = Tree::new(&it);
            assert_eq!(t.root(), root(&it), "n={n}");
            assert_eq!(t.len(), n);
            assert!(t.prove(n).is_none());
            for i in 0..n {
                let p = t.prove(i).unwrap();
                assert!(verify(&it[i], &p, &root(&it)), "n={n} i={i}");
            }
        }
    }

    #[test]
    fn forged_proofs_are_rejected() {
        let it = items(11);
        let r = root(&it);
        let p = prove(&it, 6).unwrap();
        // another item with a valid path
        assert!(!verify(&it[5], &p, &r));
        // tampered sibling
        let mut q = p.clone();
        q.path[0].sibling = Hash::ZERO;
        assert!(!verify(&it[6], &q, &r));
        // flipped side
        let mut q = p.clone();
        q.path[1].left = !q.path[1].left;
        assert!(!verify(&it[6], &q, &r));
        // moved index
        let mut q = p.clone();
        q.index = 7;
        assert!(!verify(&it[6], &q, &r));
        // truncated and extended paths
        let mut q = p.clone();
        q.path.pop();
        assert!(!verify(&it[6], &q, &r));
        let mut q = p.clone();
        q.path.push(ProofStep {
            sibling: Hash::ZERO,
            left: false,
        });
        assert!(!verify(&it[6], &q, &r));
        // wrong root
        assert!(!verify(&it[6], &p, &root(&it[..10])));
        // an inner node presented as a leaf
        let inner = node(&leaf(&it[0]), &leaf(&it[1]));
        let p2 = prove(&it, 0).unwrap();
        let short = MerkleProof {
            index: 0,
            leaves: 6,
            path: p2.path[1..].to_vec(),
        };
        assert!(!verify(&inner, &short, &r));
    }

    #[test]
    fn empty_and_out_of_range() {
        assert_eq!(root(&[]), Hash::ZERO);
        assert!(prove(&items(3), 3).is_none());
    }
}
