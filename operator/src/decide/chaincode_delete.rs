//! What deleting a `Chaincode` comes to: with `deletionPolicy: Retire` its active definition
//! is retired on the ledger by an approved proposal, and the finalizer goes only once every
//! node reached shows the retirement (so a call made after the object is gone is refused
//! wherever it lands). The object is released at once when there is nothing to retire (never
//! committed, `Retain`), and released with a warning when the operator can no longer act on
//! the channel (the Channel, its plan or the channel itself is going), rather than hanging.

use super::channel::Awaiting;
use super::Verdict;
use tally_api::chaincode::ChaincodeDeletionPolicy;

/// One node's view of the chaincode being deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeChaincode {
    pub node: String,
    /// The sequence of the committed definition the node knows, if any.
    pub active: Option<u64>,
    /// The sequence of the definition the node has seen retired, if any.
    pub retired: Option<u64>,
    /// The node has applied the retirement of the whole channel.
    pub channel_retired: bool,
}

/// What the operator sees while a Chaincode is being deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetireObserved {
    pub policy: ChaincodeDeletionPolicy,
    /// Why the operator cannot act on the channel any more (the Channel is gone or being
    /// deleted, its consortium does not plan); `None` when it can.
    pub channel_gone: Option<String>,
    /// Nodes of the channel that answered.
    pub nodes: Vec<NodeChaincode>,
    /// Nodes of the channel that could not be asked (no ready pod, no answer), with why.
    pub unreachable: Vec<String>,
}

/// Why the finalizer may go without (further) waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    /// `deletionPolicy: Retain`: the ledger keeps the chaincode active.
    Retained,
    /// No committed definition exists on the ledger: nothing to retire.
    NeverDefined,
    /// Every node reached shows the definition retired.
    Retired,
    /// The operator cannot act on the channel (why); the chaincode is left as the ledger has it.
    Abandoned(String),
}

/// The next step of a Chaincode's deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetireStep {
    /// Remove the finalizer.
    Release(Release),
    /// Propose (or approve) the retirement of definition `sequence`.
    Retire { sequence: u64 },
    /// Wait, with this verdict.
    Wait(Verdict),
}

/// The next step, given what the nodes say about chaincode `name` on `channel`.
pub fn next_step(o: &RetireObserved, channel: &str, name: &str) -> RetireStep {
    if o.policy == ChaincodeDeletionPolicy::Retain {
        return RetireStep::Release(Release::Retained);
    }
    if let Some(why) = &o.channel_gone {
        return RetireStep::Release(Release::Abandoned(why.clone()));
    }
    if o.nodes.iter().any(|n| n.channel_retired) {
        // A retired channel takes no proposal, and refuses every call already.
        return RetireStep::Release(Release::Abandoned(format!("channel {channel} is retired")));
    }
    if o.nodes.is_empty() {
        if o.unreachable.is_empty() {
            return RetireStep::Release(Release::Abandoned(format!(
                "no node of channel {channel} runs in this cluster"
            )));
        }
        return RetireStep::Wait(Verdict::progressing(
            "Deleting",
            format!(
                "chaincode {name} is being deleted: waiting to reach a node of channel {channel} ({})",
                o.unreachable.join(", ")
            ),
        ));
    }
    // The most advanced node decides what is committed; one that lags catches up.
    let Some(sequence) = o.nodes.iter().filter_map(|n| n.active).max() else {
        return RetireStep::Release(Release::NeverDefined);
    };
    let retired_here = |n: &NodeChaincode| n.retired.is_some_and(|r| r >= sequence);
    if o.nodes.iter().all(retired_here) {
        return RetireStep::Release(Release::Retired);
    }
    if o.nodes.iter().any(retired_here) {
        let lagging: Vec<&str> = o
            .nodes
            .iter()
            .filter(|n| !retired_here(n))
            .map(|n| n.node.as_str())
            .collect();
        return RetireStep::Wait(Verdict::progressing(
            "Deleting",
            format!(
                "chaincode {name} is retired (definition {sequence}); waiting for {} to apply it",
                lagging.join(", ")
            ),
        ));
    }
    RetireStep::Retire { sequence }
}

/// The verdict while the retirement waits for approvals.
pub fn awaiting_verdict(channel: &str, name: &str, a: &Awaiting) -> Verdict {
    a.retirement_verdict(
        &format!("chaincode {name}"),
        channel,
        &format!("tallyctl chaincode retire --channel {channel} --name {name} --propose"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::State;

    fn node(name: &str, active: Option<u64>, retired: Option<u64>) -> NodeChaincode {
        NodeChaincode {
            node: name.into(),
            active,
            retired,
            channel_retired: false,
        }
    }

    fn observed(nodes: Vec<NodeChaincode>) -> RetireObserved {
        RetireObserved {
            nodes,
            ..RetireObserved::default()
        }
    }

    #[test]
    fn an_active_definition_is_retired_at_the_most_advanced_nodes_sequence() {
        let o = observed(vec![node("a", Some(1), None), node("b", Some(2), None)]);
        assert_eq!(
            next_step(&o, "ch", "cc"),
            RetireStep::Retire { sequence: 2 }
        );
    }

    #[test]
    fn the_finalizer_goes_only_once_every_node_shows_the_retirement() {
        let o = observed(vec![node("a", Some(2), Some(2)), node("b", Some(2), None)]);
        match next_step(&o, "ch", "cc") {
            RetireStep::Wait(v) => {
                assert_eq!(v.state, State::Progressing);
                assert!(v.message.contains("waiting for b"), "{}", v.message);
            }
            s => panic!("{s:?}"),
        }
        let o = observed(vec![
            node("a", Some(2), Some(2)),
            node("b", Some(2), Some(2)),
        ]);
        assert_eq!(
            next_step(&o, "ch", "cc"),
            RetireStep::Release(Release::Retired)
        );
    }

    #[test]
    fn an_older_retirement_does_not_cover_a_newer_definition() {
        // Definition 1 was retired, then definition 2 made the name callable again.
        let o = observed(vec![node("a", Some(2), Some(1))]);
        assert_eq!(
            next_step(&o, "ch", "cc"),
            RetireStep::Retire { sequence: 2 }
        );
    }

    #[test]
    fn a_chaincode_never_committed_is_released_at_once() {
        let o = observed(vec![node("a", None, None), node("b", None, None)]);
        assert_eq!(
            next_step(&o, "ch", "cc"),
            RetireStep::Release(Release::NeverDefined)
        );
    }

    #[test]
    fn retain_leaves_the_ledger_alone() {
        let o = RetireObserved {
            policy: ChaincodeDeletionPolicy::Retain,
            ..observed(vec![node("a", Some(1), None)])
        };
        assert_eq!(
            next_step(&o, "ch", "cc"),
            RetireStep::Release(Release::Retained)
        );
    }

    #[test]
    fn a_channel_going_away_releases_instead_of_hanging() {
        let o = RetireObserved {
            channel_gone: Some("Channel ns/ch does not exist".into()),
            ..observed(vec![])
        };
        assert!(matches!(
            next_step(&o, "ch", "cc"),
            RetireStep::Release(Release::Abandoned(m)) if m.contains("does not exist")
        ));
        let mut n = node("a", Some(1), None);
        n.channel_retired = true;
        assert!(matches!(
            next_step(&observed(vec![n]), "ch", "cc"),
            RetireStep::Release(Release::Abandoned(m)) if m.contains("retired")
        ));
    }

    #[test]
    fn no_node_answering_waits_and_no_node_at_all_releases() {
        let o = RetireObserved {
            unreachable: vec!["a (no ready pod)".into()],
            ..observed(vec![])
        };
        match next_step(&o, "ch", "cc") {
            RetireStep::Wait(v) => assert!(v.message.contains("a (no ready pod)"), "{}", v.message),
            s => panic!("{s:?}"),
        }
        assert!(matches!(
            next_step(&observed(vec![]), "ch", "cc"),
            RetireStep::Release(Release::Abandoned(_))
        ));
    }

    #[test]
    fn an_awaited_retirement_says_who_approved_and_who_is_missing() {
        let a = Awaiting {
            proposal: "cd".repeat(32),
            needed: 2,
            approved: vec!["org1".into()],
            missing: vec!["org2".into()],
        };
        let v = awaiting_verdict("ch", "cc", &a);
        assert_eq!(
            (v.state, v.reason.as_str()),
            (State::Progressing, "AwaitingApprovals")
        );
        assert!(
            v.message.contains("1/2")
                && v.message.contains("approved: org1")
                && v.message.contains("missing: org2")
                && v.message
                    .contains("tallyctl proposal approve --channel ch cdcdcdcdcdcd"),
            "{}",
            v.message
        );
        let none = Awaiting {
            proposal: String::new(),
            needed: 2,
            approved: vec![],
            missing: vec!["org1".into(), "org2".into()],
        };
        let v = awaiting_verdict("ch", "cc", &none);
        assert!(v.message.contains("--propose"), "{}", v.message);
    }
}
