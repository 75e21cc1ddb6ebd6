//! Test-only: a node that serves forged snapshots, or stops in the middle of installing one,
//! so that the end-to-end suites can attack a catching-up node from a real peer process and
//! crash one at the worst moment. Debug builds (the ones the suites run) honour
//! [`FORGE_SNAPSHOT_VAR`] and [`CRASH_IN_INSTALL_VAR`]; release builds (every image and
//! package) ignore them and say so, so a stray variable in production cannot make a node lie
//! to its peers or stop.

use crate::keys;
use std::sync::OnceLock;

/// Test-only: `state` (one state value changed, headers kept), `foreign` (a Raft hard-state
/// record added), `truncate` (the stream ends early) or `stall` (the first chunk comes, then
/// chunk requests are never answered); debug builds only.
pub const FORGE_SNAPSHOT_VAR: &str = "TALLY_TEST_ONLY_FORGE_SNAPSHOT";
/// Test-only: when set (to anything but empty or `0`), the node aborts in the middle of its next snapshot install, after
/// the staged records were moved in and before the install's marker is deleted.
pub const CRASH_IN_INSTALL_VAR: &str = "TALLY_TEST_ONLY_CRASH_IN_INSTALL";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forgery {
    State,
    Foreign,
    Truncate,
    Stall,
}

fn test_only(var: &str) -> Option<String> {
    let raw = std::env::var(var).ok()?;
    if !cfg!(debug_assertions) {
        tracing::error!(
            variable = var,
            "ignored: test hooks exist only in debug builds"
        );
        return None;
    }
    Some(raw)
}

pub fn forgery() -> Option<Forgery> {
    static MODE: OnceLock<Option<Forgery>> = OnceLock::new();
    *MODE.get_or_init(|| {
        let raw = test_only(FORGE_SNAPSHOT_VAR)?;
        let mode = match raw.trim() {
            "state" => Forgery::State,
            "foreign" => Forgery::Foreign,
            "truncate" => Forgery::Truncate,
            "stall" => Forgery::Stall,
            other => {
                tracing::error!(variable = FORGE_SNAPSHOT_VAR, value = %other, "ignored: not state, foreign, truncate or stall");
                return None;
            }
        };
        tracing::warn!(?mode, variable = FORGE_SNAPSHOT_VAR, "TEST BUILD: this node serves forged snapshots");
        Some(mode)
    })
}

/// A chunk of records this node is about to serve, forged when the test variable asks:
/// `end` is the record count the end marker gives (when this chunk is the last one), `sent`
/// the records served before this chunk. False: do not answer at all.
pub fn forge_chunk(
    records: &mut Vec<(Vec<u8>, Vec<u8>)>,
    end: &mut Option<u64>,
    sent: u64,
) -> bool {
    let Some(mode) = forgery() else {
        return true;
    };
    match mode {
        Forgery::Stall => {
            // Mid-stream: the first chunk comes (half of it, the stream not over), then
            // nothing more.
            if sent == 0 && records.len() > 1 {
                records.truncate(records.len() / 2);
                *end = None;
            } else {
                tracing::warn!("TEST BUILD: leaving a snapshot chunk request unanswered");
                return false;
            }
        }
        Forgery::State => {
            if let Some((_, v)) = records.iter_mut().find(|(k, _)| k[0] == keys::STATE) {
                match v.last_mut() {
                    Some(last) => *last ^= 1,
                    None => v.push(0),
                }
            }
        }
        Forgery::Foreign => {
            if let Some(n) = end.as_mut() {
                // What a forger would want to plant: this node's Raft vote and term.
                records.push((vec![keys::HARD_STATE], vec![8, 99, 16, 2, 24, 0]));
                *n += 1;
            }
        }
        Forgery::Truncate => {
            // The first chunk ends the stream with half its records, its count still claiming
            // the whole.
            if sent == 0 {
                let whole = end.unwrap_or(records.len() as u64 + 1);
                records.truncate(records.len() / 2);
                *end = Some(whole.max(records.len() as u64 + 1));
            }
        }
    }
    tracing::warn!(?mode, "TEST BUILD: sending a forged snapshot chunk");
    true
}

/// Aborts the process when [`CRASH_IN_INSTALL_VAR`] is set (debug builds only).
pub fn crash_in_install() {
    static ARMED: OnceLock<bool> = OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        test_only(CRASH_IN_INSTALL_VAR).is_some_and(|v| !v.trim().is_empty() && v.trim() != "0")
    });
    if *armed {
        tracing::error!(
            variable = CRASH_IN_INSTALL_VAR,
            "TEST BUILD: aborting in the middle of a snapshot install"
        );
        std::process::abort();
    }
}
