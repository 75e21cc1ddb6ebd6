//! What the node gives a call (context, state) and what it gets back (outcome).

use crate::error::HostError;
use std::collections::BTreeMap;

/// Where the last write of a key happened, as the ledger numbers it (block, index in block).
/// The same shape as the ledger's version, kept here so that this crate does not depend on
/// `tally-protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub block: u64,
    pub tx: u32,
}

/// Who calls and when: everything a contract may know about its transaction. There is no
/// clock: `timestamp_ms` is the block's ordered time, the same on every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallContext {
    /// The chaincode's name; its state lives under [`namespace`]`(chaincode)`.
    pub chaincode: String,
    /// The signer's organization (the certificate's `O`).
    pub org: String,
    /// The signer's certificate subject (its common name).
    pub subject: String,
    /// The signer's role (the certificate's `OU`: `client`, `admin`, ...).
    pub role: String,
    /// The transaction id.
    pub tx_id: [u8; 32],
    /// The block time in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// One key and value of committed state, with its version.
pub type Entry = (String, Version, Vec<u8>);

/// The node's world state as a call sees it: committed state as of this transaction's place in
/// its block (the node layers the block's earlier writes over its database). Keys passed here
/// are full ledger keys, already namespaced by the runtime.
///
/// Reads happen during the call; `put` and `delete` are only called by [`Outcome::apply`]
/// after a call succeeded, so a host never sees the writes of a failed call.
pub trait StateHost {
    fn get(&mut self, key: &str) -> Result<Option<(Version, Vec<u8>)>, HostError>;
    /// Up to `limit` entries in ascending byte order of key, each starting with `prefix`, not
    /// before `start` and, if `end` is given, before `end`. `start` always starts with `prefix`.
    fn scan(
        &mut self,
        prefix: &str,
        start: &str,
        end: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, HostError>;
    fn put(&mut self, key: &str, value: Vec<u8>) -> Result<(), HostError>;
    fn delete(&mut self, key: &str) -> Result<(), HostError>;
}

/// The separator of the state namespace; chaincode names cannot contain it.
const SEP: char = '~';

/// The prefix of every ledger key written by chaincode. Plain key/value transactions must not
/// write under it, or they could forge a contract's state.
pub const RESERVED_PREFIX: &str = "cc~";

/// The ledger key prefix of one chaincode's state: `cc~<name>~`.
pub fn namespace(chaincode: &str) -> String {
    format!("{RESERVED_PREFIX}{chaincode}{SEP}")
}

/// The ledger key of a contract's key.
pub fn namespaced_key(chaincode: &str, key: &str) -> String {
    format!("{RESERVED_PREFIX}{chaincode}{SEP}{key}")
}

/// Chaincode names: 1 to 64 of `a-z`, `0-9`, `-`, `_`, starting with a letter. Short and plain
/// so they read well in keys, metrics and Kubernetes names, and never contain the separator.
pub fn valid_chaincode_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

/// An event a contract emitted; kept only if the call succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub payload: Vec<u8>,
}

/// A key the call read from committed state and the version it saw (`None`: absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadEntry {
    pub key: String,
    pub version: Option<Version>,
}

/// A key the call wrote: `Some(value)` for a put, `None` for a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteEntry {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// The result of a successful call. Keys in the read and write sets are full ledger keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// What the contract passed to `set_result` (empty if it never did).
    pub result: Vec<u8>,
    /// Events in the order they were emitted.
    pub events: Vec<Event>,
    /// Fuel the call consumed, including instantiation and host calls.
    pub fuel_used: u64,
    /// Each key read from committed state, once, in the order of first read.
    pub read_set: Vec<ReadEntry>,
    /// The last write of each key, in ascending key order.
    pub write_set: Vec<WriteEntry>,
}

impl Outcome {
    /// Writes the write set into `host`. The node may instead apply `write_set` itself (with
    /// versions, history and the state root); this is for in-memory hosts and tests.
    pub fn apply(&self, host: &mut dyn StateHost) -> Result<(), HostError> {
        for w in &self.write_set {
            match &w.value {
                Some(v) => host.put(&w.key, v.clone())?,
                None => host.delete(&w.key)?,
            }
        }
        Ok(())
    }
}

/// A world state in memory, for tests, the off-chain contract harness and benchmarks. Each
/// applied write gets the next version, as if every write were its own transaction.
#[derive(Clone, Debug, Default)]
pub struct MemoryHost {
    entries: BTreeMap<String, (Version, Vec<u8>)>,
    next: u64,
    /// How many `get` and `scan` calls reached this host (the runtime's own buffer answers the
    /// rest); lets tests see that reads of the call's own writes never reach the host.
    pub reads: u64,
}

impl MemoryHost {
    pub fn new() -> MemoryHost {
        MemoryHost::default()
    }

    /// All entries, for assertions.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Vec<u8>)> {
        self.entries.iter().map(|(k, (_, v))| (k, v))
    }

    pub fn value(&self, key: &str) -> Option<&[u8]> {
        self.entries.get(key).map(|(_, v)| v.as_slice())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl StateHost for MemoryHost {
    fn get(&mut self, key: &str) -> Result<Option<(Version, Vec<u8>)>, HostError> {
        self.reads += 1;
        Ok(self.entries.get(key).cloned())
    }

    fn scan(
        &mut self,
        prefix: &str,
        start: &str,
        end: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, HostError> {
        self.reads += 1;
        Ok(self
            .entries
            .range(start.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix) && end.is_none_or(|e| k.as_str() < e))
            .take(limit)
            .map(|(k, (ver, v))| (k.clone(), *ver, v.clone()))
            .collect())
    }

    fn put(&mut self, key: &str, value: Vec<u8>) -> Result<(), HostError> {
        self.next += 1;
        let version = Version {
            block: self.next,
            tx: 0,
        };
        self.entries.insert(key.to_string(), (version, value));
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<(), HostError> {
        self.entries.remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_namespaces() {
        assert!(valid_chaincode_name("receivables"));
        assert!(valid_chaincode_name("e-invoice_2"));
        assert!(!valid_chaincode_name(""));
        assert!(!valid_chaincode_name("9lives"));
        assert!(!valid_chaincode_name("a~b"));
        assert!(!valid_chaincode_name("Upper"));
        assert_eq!(namespaced_key("notary", "h/ab"), "cc~notary~h/ab");
        // One chaincode's namespace is never a prefix of another's.
        assert!(!namespace("ab").starts_with(&namespace("a")));
    }

    #[test]
    fn memory_host_scan_bounds() {
        let mut h = MemoryHost::new();
        for k in ["a/1", "a/2", "a/3", "b/1"] {
            h.put(k, k.as_bytes().to_vec()).unwrap();
        }
        let keys = |v: Vec<Entry>| v.into_iter().map(|e| e.0).collect::<Vec<_>>();
        assert_eq!(
            keys(h.scan("a/", "a/", None, 10).unwrap()),
            ["a/1", "a/2", "a/3"]
        );
        assert_eq!(keys(h.scan("a/", "a/2", None, 10).unwrap()), ["a/2", "a/3"]);
        assert_eq!(
            keys(h.scan("", "a/", Some("a/3"), 10).unwrap()),
            ["a/1", "a/2"]
        );
        assert_eq!(keys(h.scan("", "", None, 2).unwrap()), ["a/1", "a/2"]);
    }
}
