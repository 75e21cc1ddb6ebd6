//! A backup's manifest: what it is of (channel, height, last block hash, state commitment,
//! configuration, Raft position) and the chunks that hold its records, in order. Stored as JSON
//! under `manifests/<channel>/<height, 20 digits>-<unix seconds>.json`, so that a listing sorts
//! by height. Nothing in it is trusted on its own: a restore checks every field it uses against
//! the records (see `verify.rs`).

use serde::{Deserialize, Serialize};

/// The manifest format this node writes and reads.
pub const FORMAT: u32 = 1;
/// Manifests larger than this are refused before they are parsed.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub channel: String,
    /// Blocks in the backup, genesis included.
    pub height: u64,
    /// Hash of the last block (hex).
    pub last_block_hash: String,
    /// The state commitment after the last block (hex): the last header's state root.
    pub state_root: String,
    /// Hash of the channel's genesis configuration (hex).
    pub genesis_hash: String,
    /// Configuration changes applied up to the backup, and the hash of the one in force.
    pub config_sequence: u64,
    pub config_hash: String,
    pub raft: RaftPosition,
    pub created_unix: u64,
    /// The node that made the backup.
    pub node: String,
    pub chunks: Vec<ChunkRef>,
    pub totals: Totals,
}

/// Where the backup stands in the channel's Raft log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftPosition {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    #[serde(default)]
    pub voters_outgoing: Vec<u64>,
    #[serde(default)]
    pub learners_next: Vec<u64>,
    #[serde(default)]
    pub auto_leave: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// SHA-256 of the stored (compressed) bytes, hex: also the object's name.
    pub hash: String,
    pub stored: u64,
    pub raw: u64,
    pub records: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub records: u64,
    pub raw: u64,
    pub stored: u64,
    pub chunks: u64,
}

/// Object path of a chunk, below the repository's root.
pub fn chunk_path(hash: &str) -> String {
    format!("chunks/{hash}")
}

/// Folder of a channel's manifests, below the repository's root.
pub fn manifest_dir(channel: &str) -> String {
    format!("manifests/{channel}")
}

/// Object path of a manifest, below the repository's root.
pub fn manifest_path(channel: &str, height: u64, created_unix: u64) -> String {
    format!("{}/{height:020}-{created_unix}.json", manifest_dir(channel))
}

/// Height and creation time from a manifest's file name, if it is one.
pub fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".json")?;
    let (h, t) = stem.split_once('-')?;
    if h.len() != 20 {
        return None;
    }
    Some((h.parse().ok()?, t.parse().ok()?))
}

impl Manifest {
    pub fn path(&self) -> String {
        manifest_path(&self.channel, self.height, self.created_unix)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses a manifest and checks what it says of itself: its format, and totals that add
    /// up.
    pub fn from_json(b: &[u8]) -> Result<Manifest, String> {
        let m: Manifest =
            serde_json::from_slice(b).map_err(|e| format!("not a backup manifest: {e}"))?;
        if m.format != FORMAT {
            return Err(format!(
                "manifest format {} (this node reads {FORMAT})",
                m.format
            ));
        }
        let sum = |f: fn(&ChunkRef) -> u64| m.chunks.iter().map(f).fold(0u64, u64::saturating_add);
        let totals = Totals {
            records: sum(|c| c.records),
            raw: sum(|c| c.raw),
            stored: sum(|c| c.stored),
            chunks: m.chunks.len() as u64,
        };
        if totals != m.totals {
            return Err("the manifest's totals are not the sum of its chunks".into());
        }
        if m.chunks.iter().any(|c| !is_hash(&c.hash)) {
            return Err("a chunk hash is not 64 hex digits".into());
        }
        Ok(m)
    }
}

fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let chunks = vec![
            ChunkRef {
                hash: "a".repeat(64),
                stored: 10,
                raw: 20,
                records: 1,
            },
            ChunkRef {
                hash: "b".repeat(64),
                stored: 5,
                raw: 7,
                records: 3,
            },
        ];
        Manifest {
            format: FORMAT,
            channel: "main".into(),
            height: 42,
            last_block_hash: "c".repeat(64),
            state_root: "d".repeat(64),
            genesis_hash: "e".repeat(64),
            config_sequence: 0,
            config_hash: "e".repeat(64),
            raft: RaftPosition {
                index: 50,
                term: 2,
                voters: vec![1, 2, 3],
                ..RaftPosition::default()
            },
            created_unix: 1_700_000_000,
            node: "n1".into(),
            totals: Totals {
                records: 4,
                raw: 27,
                stored: 15,
                chunks: 2,
            },
            chunks,
        }
    }

    #[test]
    fn round_trips_and_names_sort_by_height() {
        let m = sample();
        assert_eq!(Manifest::from_json(&m.to_json()).expect("parses"), m);
        assert_eq!(
            m.path(),
            "manifests/main/00000000000000000042-1700000000.json"
        );
        assert_eq!(
            parse_name("00000000000000000042-1700000000.json"),
            Some((42, 1_700_000_000))
        );
        assert!(manifest_path("main", 9, 5) < manifest_path("main", 10, 1));
        assert_eq!(parse_name("42-1.json"), None);
    }

    #[test]
    fn inconsistent_manifests_are_refused() {
        let mut m = sample();
        m.totals.records += 1;
        assert!(Manifest::from_json(&m.to_json()).is_err());
        let mut m = sample();
        m.chunks[0].hash = "../../etc/passwd".into();
        m.totals = Totals {
            records: 4,
            raw: 27,
            stored: 15,
            chunks: 2,
        };
        assert!(Manifest::from_json(&m.to_json()).is_err());
        let mut m = sample();
        m.format = 2;
        assert!(Manifest::from_json(&m.to_json()).is_err());
        assert!(Manifest::from_json(b"{").is_err());
    }
}
