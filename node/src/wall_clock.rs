//! The node's wall clock: block times a leader assigns, the submission window and the clock
//! check a follower applies to a leader's entries all read it here.
//!
//! Tests of clock skew need one node whose clock is wrong while the others' are right, on one
//! machine. Debug builds (the ones the end-to-end suites run) honour
//! [`TEST_OFFSET_VAR`], a signed number of milliseconds added to the system clock; release
//! builds (every image and package) ignore it and say so, so a stray variable in a production
//! environment cannot move a node's clock.

use std::sync::OnceLock;

/// Test-only: milliseconds (may be negative) added to this node's wall clock, debug builds
/// only.
pub const TEST_OFFSET_VAR: &str = "TALLY_TEST_ONLY_CLOCK_OFFSET_MS";

fn offset_ms() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        let Ok(raw) = std::env::var(TEST_OFFSET_VAR) else {
            return 0;
        };
        if !cfg!(debug_assertions) {
            tracing::error!(
                variable = TEST_OFFSET_VAR,
                "ignored: the test clock offset works only in debug builds"
            );
            return 0;
        }
        match raw.trim().parse::<i64>() {
            Ok(ms) => {
                tracing::warn!(
                    offset_ms = ms,
                    variable = TEST_OFFSET_VAR,
                    "TEST BUILD: this node's wall clock is deliberately offset"
                );
                ms
            }
            Err(e) => {
                tracing::error!(variable = TEST_OFFSET_VAR, value = %raw, error = %e, "ignored: not a number of milliseconds");
                0
            }
        }
    })
}

/// Wall time in Unix milliseconds as this node sees it.
pub fn now_ms() -> u64 {
    let real = tally_protocol::now_ms();
    real.saturating_add_signed(offset_ms())
}
