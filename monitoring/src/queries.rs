//! PromQL expressions that a dashboard panel and an alert share, so that what an SRE sees on
//! the panel is what the alert fires on.

use crate::names::*;

/// The labels that identify one channel across namespaces and consortia.
pub const CHANNEL_KEY: &str = "namespace, consortium, channel";

/// `metric{selector}`, or the bare metric when the selector is empty.
pub fn m(metric: &str, selector: &str) -> String {
    if selector.is_empty() {
        metric.to_string()
    } else {
        format!("{metric}{{{selector}}}")
    }
}

/// Per channel: how many different state roots the nodes at the channel's tip report. 1 when
/// they agree. Nodes behind the tip are left out: they legitimately report an older root.
pub fn distinct_tip_roots(sel: &str) -> String {
    let height = m(CHANNEL_HEIGHT, sel);
    format!(
        "count by ({CHANNEL_KEY}) (count_values by ({CHANNEL_KEY}) (\"root\", \
         {root} and on ({CHANNEL_KEY}, node) \
         ({height} == on ({CHANNEL_KEY}) group_left max by ({CHANNEL_KEY}) ({height}))))",
        root = m(STATE_ROOT, sel),
    )
}

/// Per channel: 1 when some node that is scraped is the channel's Raft leader, else 0.
pub fn has_leader(sel: &str) -> String {
    format!(
        "max by ({CHANNEL_KEY}) ({} == bool {ROLE_LEADER})",
        m(RAFT_ROLE, sel)
    )
}

/// Per channel: voting nodes (not learners) that Prometheus scrapes, i.e. that are up.
pub fn voters_up(sel: &str) -> String {
    format!(
        "count by ({CHANNEL_KEY}) ({} != {ROLE_LEARNER})",
        m(RAFT_ROLE, sel)
    )
}

/// Per channel: the votes a Raft quorum needs, from the configured consenters.
pub fn quorum(sel: &str) -> String {
    format!(
        "(floor(max by ({CHANNEL_KEY}) ({}) / 2) + 1)",
        m(CHANNEL_CONSENTERS, sel)
    )
}

/// Per node and channel: blocks the node is behind the highest node of its channel.
pub fn blocks_behind(sel: &str) -> String {
    let height = m(CHANNEL_HEIGHT, sel);
    format!("(max by ({CHANNEL_KEY}) ({height}) - on ({CHANNEL_KEY}) group_right {height})")
}

/// Per channel: the q-quantile of proposal-to-commit latency over `window`.
pub fn commit_latency(q: f64, sel: &str, window: &str) -> String {
    format!(
        "histogram_quantile({q}, sum by ({CHANNEL_KEY}, le) (rate({}[{window}])))",
        m(&format!("{PROPOSAL_COMMIT_SECONDS}_bucket"), sel)
    )
}
