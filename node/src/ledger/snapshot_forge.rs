//! Test-only: a node that serves forged snapshots, so that the end-to-end suites can attack a
//! catching-up node from a real peer process. Debug builds (the ones the suites run) honour
//! [`FORGE_SNAPSHOT_VAR`]; release builds (every image and package) ignore it and say so, so a
//! stray variable in production cannot make a node lie to its peers.

use super::snapshots::{encode_records, records};
use crate::keys;
use std::sync::OnceLock;

/// Test-only: `state` (one state value changed, headers kept), `foreign` (a Raft hard-state
/// record added) or `truncate` (the stream cut short); debug builds only.
pub const FORGE_SNAPSHOT_VAR: &str = "TALLY_TEST_ONLY_FORGE_SNAPSHOT";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forgery {
    State,
    Foreign,
    Truncate,
}

fn forgery() -> Option<Forgery> {
    static MODE: OnceLock<Option<Forgery>> = OnceLock::new();
    *MODE.get_or_init(|| {
        let raw = std::env::var(FORGE_SNAPSHOT_VAR).ok()?;
        if !cfg!(debug_assertions) {
            tracing::error!(
                variable = FORGE_SNAPSHOT_VAR,
                "ignored: forged snapshots exist only in debug builds"
            );
            return None;
        }
        let mode = match raw.trim() {
            "state" => Forgery::State,
            "foreign" => Forgery::Foreign,
            "truncate" => Forgery::Truncate,
            other => {
                tracing::error!(variable = FORGE_SNAPSHOT_VAR, value = %other, "ignored: not state, foreign or truncate");
                return None;
            }
        };
        tracing::warn!(?mode, variable = FORGE_SNAPSHOT_VAR, "TEST BUILD: this node serves forged snapshots");
        Some(mode)
    })
}

/// The snapshot this node sends: `data` itself, or a forgery of it when the test variable
/// asks for one.
pub fn forge_snapshot(data: Vec<u8>) -> Vec<u8> {
    let Some(mode) = forgery() else {
        return data;
    };
    if mode == Forgery::Truncate {
        let mut data = data;
        data.truncate(data.len() * 2 / 3);
        return data;
    }
    let Ok(recs) = records(&data) else {
        return data;
    };
    let mut recs: Vec<(Vec<u8>, Vec<u8>)> = recs
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    match mode {
        Forgery::State => {
            if let Some((_, v)) = recs.iter_mut().find(|(k, _)| k[0] == keys::STATE) {
                if let Some(last) = v.last_mut() {
                    *last ^= 1;
                } else {
                    v.push(0);
                }
            }
        }
        Forgery::Foreign => {
            // What a forger would want to plant: this node's Raft vote and term.
            recs.push((vec![keys::HARD_STATE], vec![8, 99, 16, 2, 24, 0]));
        }
        Forgery::Truncate => {}
    }
    tracing::warn!(?mode, "TEST BUILD: sending a forged snapshot");
    encode_records(recs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
}
