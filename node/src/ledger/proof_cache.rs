//! The proof material of recently read blocks. A proof fetch otherwise reads and decodes its
//! whole block and hashes every transaction of it twice over (ids, result leaves, the Merkle
//! tree) to prove one; clients fetch the proofs of what they just wrote, so the same few
//! recent blocks are asked for again and again.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use tally_protocol::block::{effects_hash, result_leaves};
use tally_protocol::merkle::Tree;
use tally_protocol::{Block, BlockHeader, Hash, TxEffects, TxStatus};

/// Bytes kept per channel, about: a block of 500 key/value writes weighs some 100 KiB, so
/// this holds the blocks of the last tens of thousands of transactions, what clients fetch
/// proofs of. Chaincode effects with large values weigh more and fewer blocks stay. A channel
/// nobody asks for proofs keeps nothing.
const BUDGET: usize = 8 << 20;

/// What proving any transaction of one block needs.
pub(crate) struct BlockProofs {
    pub header: BlockHeader,
    pub block_hash: Hash,
    pub tree: Tree,
    pub results: Vec<TxStatus>,
    pub effects: Vec<Option<TxEffects>>,
    pub effects_hashes: Vec<Hash>,
    /// About how much memory this holds.
    weight: usize,
}

impl BlockProofs {
    /// `None` when the block's results or effects do not match its transactions.
    pub fn of(block: Block) -> Option<BlockProofs> {
        let ids = block.tx_ids();
        if block.results.len() != ids.len() || block.effects.len() != ids.len() {
            return None;
        }
        let tree = Tree::new(&result_leaves(&ids, &block.results, &block.effects));
        let effects_bytes: usize = block
            .effects
            .iter()
            .flatten()
            .map(|e| {
                e.writes
                    .iter()
                    .map(|w| w.key.len() + w.value.as_ref().map_or(0, Vec::len))
                    .sum::<usize>()
                    + e.reads.iter().map(|r| r.key.len()).sum::<usize>()
                    + e.events
                        .iter()
                        .map(|v| v.name.len() + v.payload.len())
                        .sum::<usize>()
                    + e.result.len()
            })
            .sum();
        let n = ids.len();
        let weight = std::mem::size_of::<BlockProofs>()
            + 2 * n * std::mem::size_of::<Hash>() // the tree's levels
            + n * std::mem::size_of::<Hash>() // the effects' hashes
            + n * std::mem::size_of::<TxStatus>()
            + n * std::mem::size_of::<Option<TxEffects>>()
            + effects_bytes;
        Some(BlockProofs {
            weight,
            block_hash: block.header.hash(),
            header: block.header,
            tree,
            effects_hashes: block.effects.iter().map(effects_hash).collect(),
            results: block.results,
            effects: block.effects,
        })
    }
}

/// Least recently used first out. A block's contents never change under its number, except
/// when a snapshot replaces the chain, which clears the cache.
#[derive(Default)]
pub(crate) struct ProofCache {
    blocks: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// Most recently used first.
    order: VecDeque<(u64, Arc<BlockProofs>)>,
    weight: usize,
}

impl ProofCache {
    pub fn get(&self, number: u64) -> Option<Arc<BlockProofs>> {
        let mut kept = self.blocks.lock();
        let at = kept.order.iter().position(|(n, _)| *n == number)?;
        let hit = kept.order.remove(at)?;
        let proofs = hit.1.clone();
        kept.order.push_front(hit);
        Some(proofs)
    }

    pub fn insert(&self, number: u64, proofs: Arc<BlockProofs>) {
        let mut kept = self.blocks.lock();
        if kept.order.iter().any(|(n, _)| *n == number) {
            return;
        }
        kept.weight += proofs.weight;
        kept.order.push_front((number, proofs));
        // The newest block always stays, even one heavier than the budget alone.
        while kept.weight > BUDGET && kept.order.len() > 1 {
            if let Some((_, old)) = kept.order.pop_back() {
                kept.weight -= old.weight;
            }
        }
    }

    pub fn clear(&self) {
        *self.blocks.lock() = Kept::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::block::HEADER_VERSION;

    fn proofs(number: u64, weight: usize) -> Arc<BlockProofs> {
        let header = BlockHeader {
            version: HEADER_VERSION,
            channel: "ch".into(),
            number,
            prev_hash: Hash::ZERO,
            tx_root: Hash::ZERO,
            results_root: Hash::ZERO,
            state_root: Hash::ZERO,
            timestamp_ms: 0,
            raft_term: 1,
            raft_index: number,
        };
        Arc::new(BlockProofs {
            block_hash: header.hash(),
            header,
            tree: Tree::new(&[]),
            results: Vec::new(),
            effects: Vec::new(),
            effects_hashes: Vec::new(),
            weight,
        })
    }

    #[test]
    fn the_least_recently_used_blocks_leave_beyond_the_budget() {
        let cache = ProofCache::default();
        let quarter = BUDGET / 4;
        for n in 0..4 {
            cache.insert(n, proofs(n, quarter));
        }
        assert!(cache.get(0).is_some(), "four quarters fit");
        // Block 0 was just used, so block 1 is the one that makes room.
        cache.insert(4, proofs(4, quarter));
        assert!(cache.get(1).is_none());
        for n in [0, 2, 3, 4] {
            assert_eq!(cache.get(n).map(|p| p.header.number), Some(n));
        }
        // One block heavier than the whole budget stays alone.
        cache.insert(9, proofs(9, BUDGET * 2));
        assert!(cache.get(9).is_some());
        assert!((0..5).all(|n| cache.get(n).is_none()));
        cache.clear();
        assert!(cache.get(9).is_none());
    }
}
