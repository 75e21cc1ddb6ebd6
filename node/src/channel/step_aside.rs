//! A leader that some member cannot address steps aside.
//!
//! A member that missed the configuration change adding a node does not know that node: its
//! peer port refuses the node's messages (they come from outside the member's configuration)
//! and it cannot address replies to it. While such a node leads, the member never catches up,
//! and it would learn the change only from the leader it cannot hear. So a leader that was
//! added by a configuration change watches Raft's progress: once it has led for an election
//! timeout and a member of the configuration in force still has not acknowledged the entry
//! that added it, it hands leadership to a caught-up voter of the configuration before that
//! change, which the member knows if it missed only that change. That voter applies the same
//! rule for the change that added it, which is older, so the hand-overs end at a voter the
//! member knows. The peer port's admission is not loosened: no node is admitted on anything
//! but the configuration its receiver has applied (or was given when it joined).
//!
//! Costs and limits: a leader that is new to the channel hands over once per term while a
//! member is down (it cannot tell a lagging member from a stopped one). Finding the change
//! that added the leader reads blocks back from the tip, at most [`MAX_SCAN`] of them, once per
//! configuration in force; a leader added longer ago, or one of the genesis configuration
//! (even if removed and added again since), is taken as known to every member and never steps
//! aside for this reason.

use super::Worker;
use raft::StateRole;
use std::collections::BTreeSet;
use tally_protocol::proposal::installed_config;
use tally_protocol::ChannelConfig;
use tracing::{info, warn};

/// How many blocks back from the tip the search for the change that added this node reads;
/// a node added longer ago than that is treated as known to every member.
pub(super) const MAX_SCAN: u64 = 2_000;

/// The change that last added this node to the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Added {
    /// Raft index of the entry whose block installed the change.
    pub index: u64,
    /// Consenters of the configuration before it: the voters a member that missed the change
    /// still knows.
    pub known_before: BTreeSet<u64>,
}

/// Walking configurations from the newest back: `later` installed at `later_index`, `earlier`
/// the one in force before it. The change added `name` if the later lists it and the earlier
/// does not.
fn added_by(
    name: &str,
    later: &ChannelConfig,
    later_index: u64,
    earlier: &ChannelConfig,
) -> Option<Added> {
    (later.node(name).is_some() && earlier.node(name).is_none()).then(|| Added {
        index: later_index,
        known_before: earlier.consenters.iter().map(|n| n.id).collect(),
    })
}

impl Worker {
    /// The change that last added this node, if it was not in the genesis configuration and
    /// the change lies within [`MAX_SCAN`] blocks of the tip. Cached per configuration in
    /// force.
    pub(super) fn added(&mut self) -> Option<Added> {
        let sequence = self.chan.ledger.in_force().sequence;
        if let Some((s, a)) = &self.added {
            if *s == sequence {
                return a.clone();
            }
        }
        let found = self.find_added();
        self.added = Some((sequence, found.clone()));
        found
    }

    fn find_added(&self) -> Option<Added> {
        let ledger = &self.chan.ledger;
        let name = self.chan.node_name.as_str();
        // A node of the genesis configuration is known to every member; reading the whole
        // chain back to make sure it was never removed and added again would cost too much.
        if ledger.genesis.node(name).is_some() {
            return None;
        }
        let height = ledger.tip().height;
        // The newest configuration seen so far going back, with the index that installed it.
        let mut later: Option<(ChannelConfig, u64)> = None;
        for h in (height.saturating_sub(MAX_SCAN)..height).rev() {
            let block = match ledger.block(h) {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => {
                    warn!(channel = %self.ch, height = h, error = %e, "reading a block back");
                    return None;
                }
            };
            // One-transaction updates and proposals whose policy was met in this block.
            let updates: Vec<ChannelConfig> = block
                .txs
                .iter()
                .zip(&block.results)
                .zip(&block.effects)
                .filter_map(|((t, s), fx)| installed_config(t, s, fx.as_ref()).ok().flatten())
                .map(|i| i.config)
                .collect();
            for c in updates.into_iter().rev() {
                if let Some((l, at)) = &later {
                    if let Some(a) = added_by(name, l, *at, &c) {
                        return Some(a);
                    }
                }
                later = Some((c, block.header.raft_index));
            }
            if h == 0 {
                let (l, at) = later?;
                return added_by(name, &l, at, &ledger.genesis);
            }
        }
        None
    }

    /// Members of the configuration in force, other than this node, that Raft's progress shows
    /// below `index`.
    fn lagging(&self, index: u64) -> Vec<u64> {
        let prs = self.raw.raft.prs();
        self.chan
            .ledger
            .config()
            .nodes()
            .map(|n| n.id)
            .filter(|id| *id != self.chan.node_id)
            .filter(|id| prs.get(*id).is_some_and(|p| p.matched < index))
            .collect()
    }

    /// On the leader, each tick: counts the ticks it has led, and hands leadership over when a
    /// member still lags behind the change that added it (see the module's documentation).
    pub(super) fn step_aside_for_laggards(&mut self) {
        let r = &self.raw.raft;
        if r.state != StateRole::Leader {
            self.led = None;
            return;
        }
        let term = r.term;
        let ticks = match self.led {
            Some((t, n)) if t == term => n + 1,
            _ => 0,
        };
        self.led = Some((term, ticks));
        if ticks < r.election_timeout() as u64 || r.lead_transferee.is_some() {
            return;
        }
        // Cheap first: nothing to look up while every member has acknowledged the commit
        // index.
        if self.lagging(r.raft_log.committed).is_empty() {
            return;
        }
        let Some(added) = self.added() else {
            return;
        };
        let behind = self.lagging(added.index);
        if behind.is_empty() {
            return;
        }
        let r = &self.raw.raft;
        let voters: BTreeSet<u64> = r.prs().conf().voters().ids().iter().collect();
        let known: BTreeSet<u64> = added.known_before.intersection(&voters).copied().collect();
        if self.hand_over(
            &known,
            "a member lags behind the change that added this leader",
        ) {
            info!(channel = %self.ch, behind = ?behind, added_at = added.index, "stepping aside");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::NodeRef;

    fn cfg(consenters: &[u64], observers: &[u64]) -> ChannelConfig {
        let node = |id: &u64| NodeRef {
            id: *id,
            name: format!("n{id}"),
            org: "o".into(),
            peer_addr: String::new(),
            api_url: String::new(),
        };
        ChannelConfig {
            name: "c".into(),
            members: vec![],
            consenters: consenters.iter().map(node).collect(),
            observers: observers.iter().map(node).collect(),
            batch: tally_protocol::BatchConfig {
                max_txs: 1,
                max_bytes: 1,
                timeout_ms: 1,
            },
            policies: Default::default(),
            snapshot_interval: 1,
            max_tx_bytes: 1,
            tx_window_s: 1,
        }
    }

    #[test]
    fn a_change_adds_a_node_the_earlier_configuration_lacks() {
        let before = cfg(&[1, 2, 3], &[]);
        let after = cfg(&[1, 2, 3], &[4]);
        assert_eq!(
            added_by("n4", &after, 40, &before),
            Some(Added {
                index: 40,
                known_before: [1, 2, 3].into()
            })
        );
        // Promoted from observer to consenter: known before, so not added by this change.
        assert_eq!(added_by("n4", &cfg(&[1, 2, 3, 4], &[]), 50, &after), None);
        assert_eq!(added_by("n1", &after, 40, &before), None);
    }
}
