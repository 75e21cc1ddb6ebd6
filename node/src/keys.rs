//! Key layout of the one RocksDB instance a node keeps for all its channels.
//!
//! Every key of a channel starts with `c`, the channel name and a NUL byte (channel names never
//! contain NUL, so no channel's keys are a prefix of another's), then one byte for the kind of
//! record. Numbers are big-endian so that RocksDB's byte order is log and block order.

pub const LOG: u8 = b'l';
pub const HARD_STATE: u8 = b'h';
pub const CONF_STATE: u8 = b'f';
pub const SNAP_META: u8 = b's';
/// The genesis configuration.
pub const CONFIG: u8 = b'g';
/// The configuration in force with its sequence number; absent until the first change.
pub const CONFIG_IN_FORCE: u8 = b'k';
pub const BLOCK: u8 = b'B';
pub const TX_INDEX: u8 = b'T';
pub const STATE: u8 = b'S';
pub const HISTORY: u8 = b'H';
pub const CERT: u8 = b'C';
pub const TIP: u8 = b't';
/// A snapshot being received: each record under its own key (kind byte first), before it is
/// installed in place of the ledger.
pub const STAGED: u8 = b'x';
/// What checking a snapshot being received needs to look up later in the stream (where each
/// transaction sits, which certificates signed), kept on disk instead of in memory.
pub const STAGED_AUX: u8 = b'y';
/// Present while a verified snapshot is being swapped in: the install is finished on restart.
pub const INSTALLING: u8 = b'i';

/// Records that make up the ledger (what a snapshot carries), as opposed to the Raft log.
pub const LEDGER_KINDS: [u8; 8] = [
    CONFIG,
    CONFIG_IN_FORCE,
    BLOCK,
    TX_INDEX,
    STATE,
    HISTORY,
    CERT,
    TIP,
];

/// Key of the node-wide record listing a channel this node serves.
pub fn joined(channel: &str) -> Vec<u8> {
    let mut k = b"n/channel/".to_vec();
    k.extend_from_slice(channel.as_bytes());
    k
}
pub const JOINED_PREFIX: &[u8] = b"n/channel/";

/// Key of the member organizations' approvals of the channel's genesis that the node was
/// created or joined with (`tally_protocol::genesis`), for the next node to join with.
pub fn genesis_approvals(channel: &str) -> Vec<u8> {
    let mut k = b"n/genesis-approvals/".to_vec();
    k.extend_from_slice(channel.as_bytes());
    k
}

/// Present while the node's Raft state for `channel` is new and it has not caught up with a
/// leader (`channel/rejoin.rs`).
pub fn rejoining(channel: &str) -> Vec<u8> {
    let mut k = b"n/rejoining/".to_vec();
    k.extend_from_slice(channel.as_bytes());
    k
}

/// Present after a restore from a backup until the node has seen its chain confirmed by the
/// channel's consenters: the backup's height (8 bytes) and last block hash (`channel/rejoin.rs`).
pub fn restored(channel: &str) -> Vec<u8> {
    let mut k = b"n/restored/".to_vec();
    k.extend_from_slice(channel.as_bytes());
    k
}

/// Present on a channel restored read-only at a point in time for investigation
/// (`tally-node restore --read-only`): the node serves its reads as restored, takes no writes,
/// and takes no part in the channel's Raft or checkpoints.
pub fn frozen(channel: &str) -> Vec<u8> {
    let mut k = b"n/frozen/".to_vec();
    k.extend_from_slice(channel.as_bytes());
    k
}

/// Key of the configuration an admin gave when this node joined a channel already changed
/// since genesis (see `Node::join`).
pub fn join_hint(channel: &str) -> Vec<u8> {
    let mut k = b"n/hint/".to_vec();
    k.extend_from_slice(channel.as_bytes());
    k
}

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: Vec<u8>,
}

impl Keys {
    pub fn new(channel: &str) -> Keys {
        let mut prefix = Vec::with_capacity(channel.len() + 2);
        prefix.push(b'c');
        prefix.extend_from_slice(channel.as_bytes());
        prefix.push(0);
        Keys { prefix }
    }

    pub fn kind(&self, kind: u8) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 41);
        k.extend_from_slice(&self.prefix);
        k.push(kind);
        k
    }

    /// Start and end (exclusive) of all keys of one kind.
    pub fn range(&self, kind: u8) -> (Vec<u8>, Vec<u8>) {
        let mut end = self.prefix.clone();
        end.push(kind + 1);
        (self.kind(kind), end)
    }

    pub fn log(&self, index: u64) -> Vec<u8> {
        let mut k = self.kind(LOG);
        k.extend_from_slice(&index.to_be_bytes());
        k
    }

    pub fn block(&self, number: u64) -> Vec<u8> {
        let mut k = self.kind(BLOCK);
        k.extend_from_slice(&number.to_be_bytes());
        k
    }

    pub fn tx(&self, id: &[u8; 32]) -> Vec<u8> {
        let mut k = self.kind(TX_INDEX);
        k.extend_from_slice(id);
        k
    }

    pub fn state(&self, key: &str) -> Vec<u8> {
        let mut k = self.kind(STATE);
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// History records of a key sort by version under a length-prefixed key, so that the
    /// history of "a" never interleaves with that of "ab".
    pub fn history_prefix(&self, key: &str) -> Vec<u8> {
        let mut k = self.kind(HISTORY);
        k.extend_from_slice(&(key.len() as u32).to_be_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    pub fn history(&self, key: &str, block: u64, tx: u32) -> Vec<u8> {
        let mut k = self.history_prefix(key);
        k.extend_from_slice(&block.to_be_bytes());
        k.extend_from_slice(&tx.to_be_bytes());
        k
    }

    pub fn cert(&self, hash: &[u8; 32]) -> Vec<u8> {
        let mut k = self.kind(CERT);
        k.extend_from_slice(hash);
        k
    }

    pub fn state_prefix_len(&self) -> usize {
        self.prefix.len() + 1
    }
}

/// The exclusive upper bound of all keys starting with `prefix`, if any.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_do_not_share_prefixes() {
        let a = Keys::new("a").state("x");
        let ab = Keys::new("ab").state("x");
        assert!(!ab.starts_with(&Keys::new("a").kind(STATE)));
        assert!(!a.starts_with(&Keys::new("ab").kind(STATE)));
    }

    #[test]
    fn log_keys_sort_by_index() {
        let k = Keys::new("ch");
        assert!(k.log(255) < k.log(256));
        assert!(k.block(9) < k.block(10));
        let (lo, hi) = k.range(LOG);
        assert!(lo <= k.log(0) && k.log(u64::MAX) < hi);
    }

    #[test]
    fn history_of_a_prefix_key_is_separate() {
        let k = Keys::new("ch");
        let a = k.history("a", 5, 0);
        assert!(!a.starts_with(&k.history_prefix("ab")));
        assert!(!k.history("ab", 1, 0).starts_with(&k.history_prefix("a")));
    }

    #[test]
    fn prefix_end_bounds() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
    }
}
