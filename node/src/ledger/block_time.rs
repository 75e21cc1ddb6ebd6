//! The block time a committed batch gets, decided from the batch's bytes and the previous
//! block alone, so that every node reaches the same verdict.
//!
//! The leader stamps each batch with its clock. A leader whose clock runs fast could otherwise
//! move the ledger's time ahead for good: block time never goes back, and transactions from
//! correct clocks would then be refused as expired. So a block time may run at most one step
//! (the channel's transaction window) ahead of the previous block's, unless the block's own
//! transactions vouch for it: the median of their signed timestamps lies within one step
//! below it. A long idle period is thus no problem (the first transactions after it carry the
//! present time), while a leader alone cannot invent a later time: it holds no client keys.
//! A leader and a client sharing a fast clock can pass this rule; the followers' clock check
//! (`channel::clock_check`) stops that block from being acknowledged by correct clocks.

/// Why a block's proposed time was refused, for the rejection of each of its transactions.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refused(pub String);

/// The block time for a batch stamped `proposed_ms` after a block at `prev_ms`, or why it is
/// refused. `tx_times` are the signed timestamps of the batch's transactions.
pub(super) fn decide(
    prev_ms: u64,
    proposed_ms: u64,
    tx_times: impl Iterator<Item = u64>,
    step_ms: u64,
) -> Result<u64, Refused> {
    // A leader whose clock is behind the ledger cannot take time back.
    let ts = prev_ms.max(proposed_ms);
    if ts <= prev_ms.saturating_add(step_ms) {
        return Ok(ts);
    }
    let mut times: Vec<u64> = tx_times.collect();
    times.sort_unstable();
    let median = times.get(times.len().saturating_sub(1) / 2).copied();
    if median.is_some_and(|m| ts <= m.saturating_add(step_ms)) {
        return Ok(ts);
    }
    Err(Refused(format!(
        "block time refused: the leader stamped {proposed_ms} ms, {} s after the previous \
         block ({prev_ms} ms) and {} after its transactions' median time, more than the \
         channel's {} s step; the leader's clock is probably ahead, resubmit",
        (ts - prev_ms) / 1000,
        median.map_or_else(
            || "(no transactions)".to_string(),
            |m| format!("{} s", ts.saturating_sub(m) / 1000)
        ),
        step_ms / 1000
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: u64 = 600_000;
    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn time_never_goes_back() {
        assert_eq!(decide(T0, T0 - 5_000, [T0].into_iter(), STEP), Ok(T0));
    }

    #[test]
    fn a_step_within_the_window_needs_no_witness() {
        assert_eq!(
            decide(T0, T0 + STEP, std::iter::empty(), STEP),
            Ok(T0 + STEP)
        );
    }

    #[test]
    fn after_a_long_idle_period_the_transactions_vouch_for_the_jump() {
        let now = T0 + 30 * 86_400_000;
        let txs = [now - 40, now - 10, now - 700_000];
        assert_eq!(decide(T0, now, txs.into_iter(), STEP), Ok(now));
    }

    #[test]
    fn a_fast_leader_alone_is_refused() {
        let now = T0 + 5_000;
        let fast = now + 3_600_000;
        let txs = [now - 30, now - 20, now - 10];
        let e = decide(T0, fast, txs.into_iter(), STEP).unwrap_err();
        assert!(e.0.contains("block time refused"), "{}", e.0);
        assert!(decide(T0, fast, std::iter::empty(), STEP).is_err());
    }

    #[test]
    fn one_fast_client_among_correct_ones_does_not_vouch() {
        let now = T0 + 5_000;
        let fast = now + 3_600_000;
        let txs = [now - 30, fast, now - 10];
        assert!(decide(T0, fast, txs.into_iter(), STEP).is_err());
    }
}
