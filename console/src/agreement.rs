//! Whether the nodes of a channel hold the same chain: nodes at the same height must have the
//! same last block hash and state root; when heights differ (a node is catching up), the
//! highest block that every node has must hash the same everywhere.

use std::collections::BTreeMap;
use tally_protocol::api::ChannelStatus;
use tally_protocol::Hash;

/// What the tips of the nodes say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tips {
    /// Every node answered with the same height, block hash and state root.
    Same { height: u64 },
    /// Nodes at equal heights agree, but heights differ: compare block `common`, the highest
    /// every node has.
    Behind { common: u64 },
    /// Two nodes at the same height hold different chains.
    Split(String),
    /// No node answered.
    Unknown,
}

pub fn tips(statuses: &[(&str, &ChannelStatus)]) -> Tips {
    let mut by_height: BTreeMap<u64, Vec<(&str, &ChannelStatus)>> = BTreeMap::new();
    for (n, s) in statuses {
        by_height.entry(s.height).or_default().push((n, s));
    }
    for (h, group) in &by_height {
        let (first, s0) = group[0];
        for (n, s) in &group[1..] {
            if (s.last_block_hash, s.state_root) != (s0.last_block_hash, s0.state_root) {
                return Tips::Split(format!(
                    "at height {h}, {first} has block {} and state root {}, {n} has block {} and state root {}",
                    short(&s0.last_block_hash),
                    short(&s0.state_root),
                    short(&s.last_block_hash),
                    short(&s.state_root)
                ));
            }
        }
    }
    let mut heights = by_height.keys();
    match (heights.next(), heights.next_back()) {
        (None, _) => Tips::Unknown,
        (Some(&h), None) => Tips::Same { height: h },
        // Height counts blocks from 0, so the lowest node has block `lowest - 1`.
        (Some(&lowest), Some(_)) => Tips::Behind {
            common: lowest.saturating_sub(1),
        },
    }
}

/// The verdict on block `block`'s hash as each node reports it.
pub fn headers(block: u64, hashes: &[(&str, Hash)]) -> Result<(), String> {
    let Some((first, h0)) = hashes.first() else {
        return Err(format!("no node returned block {block}"));
    };
    for (n, h) in &hashes[1..] {
        if h != h0 {
            return Err(format!(
                "block {block} is {} on {first} but {} on {n}",
                short(h0),
                short(h)
            ));
        }
    }
    Ok(())
}

fn short(h: &Hash) -> String {
    h.to_hex()[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::api::RaftRole;

    fn st(height: u64, block: u8, root: u8) -> ChannelStatus {
        ChannelStatus {
            channel: "main".into(),
            node: "n".into(),
            node_id: 1,
            org: "o".into(),
            role: RaftRole::Follower,
            leader_id: 1,
            term: 1,
            height,
            last_block_hash: Hash([block; 32]),
            state_root: Hash([root; 32]),
            applied_index: 0,
            commit_index: 0,
            ready: true,
            config_hash: Hash::ZERO,
            config_sequence: 0,
            member: true,
            voters: vec![],
            learners: vec![],
            degraded: None,
            rejoining: false,
        }
    }

    #[test]
    fn tips_agree_lag_split_or_are_unknown() {
        let (a, b, c) = (st(5, 1, 1), st(5, 1, 1), st(3, 9, 9));
        assert_eq!(tips(&[("a", &a), ("b", &b)]), Tips::Same { height: 5 });
        assert_eq!(
            tips(&[("a", &a), ("b", &b), ("c", &c)]),
            Tips::Behind { common: 2 }
        );
        let forked = st(5, 2, 1);
        match tips(&[("a", &a), ("x", &forked)]) {
            Tips::Split(why) => assert!(why.contains("at height 5") && why.contains('x'), "{why}"),
            other => panic!("{other:?}"),
        }
        let other_state = st(5, 1, 7);
        assert!(matches!(
            tips(&[("a", &a), ("y", &other_state)]),
            Tips::Split(_)
        ));
        assert_eq!(tips(&[]), Tips::Unknown);
    }

    #[test]
    fn headers_must_all_hash_the_same() {
        assert!(headers(2, &[("a", Hash([1; 32])), ("b", Hash([1; 32]))]).is_ok());
        let e = headers(2, &[("a", Hash([1; 32])), ("b", Hash([2; 32]))]).unwrap_err();
        assert!(e.contains("block 2") && e.contains("on b"), "{e}");
        assert!(headers(2, &[]).is_err());
    }
}
