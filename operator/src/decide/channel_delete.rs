//! What deleting a `Channel` comes to, one step per reconcile: the channel is retired by an
//! approved proposal (so no node takes another transaction on it), then every node that
//! holds it leaves it (deletes its data), and only then is the finalizer removed. Nothing is
//! deleted while a retirement waits for organizations the operator does not sign for, nor
//! while a node holding the channel cannot be reached.

use super::channel::Awaiting;
use super::Verdict;

/// One node's answer about the channel being deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub node: String,
    /// The node's ledger has applied the channel's retirement.
    pub retired: bool,
}

/// What the operator sees while a Channel is being deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletionObserved {
    /// Nodes that hold the channel.
    pub holders: Vec<Holder>,
    /// Nodes of the consortium that could not be asked (no pod, no answer), with why.
    pub unreachable: Vec<String>,
}

/// The next step of a Channel's deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeletionStep {
    /// No node holds the channel any more: remove the finalizer.
    Done,
    /// Propose (or approve) the channel's retirement.
    Retire,
    /// The retirement applied: these nodes leave the channel.
    Leave(Vec<String>),
    /// Wait, with this verdict.
    Wait(Verdict),
}

/// The next step, given what the nodes say.
pub fn next_step(o: &DeletionObserved, channel: &str) -> DeletionStep {
    if !o.unreachable.is_empty() {
        return DeletionStep::Wait(Verdict::progressing(
            "Deleting",
            format!(
                "channel {channel} is being deleted: waiting to reach {} before retiring it or deleting its data",
                o.unreachable.join(", ")
            ),
        ));
    }
    if o.holders.is_empty() {
        return DeletionStep::Done;
    }
    if o.holders.iter().any(|h| h.retired) {
        // Nodes that have not applied the retirement yet refuse to leave; they are asked
        // again on the next reconcile.
        return DeletionStep::Leave(
            o.holders
                .iter()
                .filter(|h| h.retired)
                .map(|h| h.node.clone())
                .collect(),
        );
    }
    DeletionStep::Retire
}

/// The verdict while the retirement waits for approvals.
pub fn awaiting_verdict(channel: &str, a: &Awaiting) -> Verdict {
    a.retirement_verdict(
        &format!("channel {channel}"),
        channel,
        &format!("tallyctl channel retire --channel {channel} --propose"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::State;

    fn holder(node: &str, retired: bool) -> Holder {
        Holder {
            node: node.into(),
            retired,
        }
    }

    #[test]
    fn nothing_is_deleted_before_the_retirement_applies() {
        let o = DeletionObserved {
            holders: vec![holder("a", false), holder("b", false)],
            unreachable: vec![],
        };
        assert_eq!(next_step(&o, "ch"), DeletionStep::Retire);
    }

    #[test]
    fn retired_holders_leave_and_the_rest_are_asked_again() {
        let o = DeletionObserved {
            holders: vec![holder("a", true), holder("b", false)],
            unreachable: vec![],
        };
        assert_eq!(next_step(&o, "ch"), DeletionStep::Leave(vec!["a".into()]));
    }

    #[test]
    fn an_unreachable_node_holds_the_deletion_and_no_holder_ends_it() {
        let o = DeletionObserved {
            holders: vec![],
            unreachable: vec!["c (no pod)".into()],
        };
        match next_step(&o, "ch") {
            DeletionStep::Wait(v) => {
                assert_eq!(v.state, State::Progressing);
                assert!(v.message.contains("c (no pod)"), "{}", v.message);
            }
            s => panic!("{s:?}"),
        }
        assert_eq!(
            next_step(&DeletionObserved::default(), "ch"),
            DeletionStep::Done
        );
    }

    #[test]
    fn an_awaited_retirement_says_who_is_missing() {
        let a = Awaiting {
            proposal: "ab".repeat(32),
            needed: 2,
            approved: vec!["org1".into()],
            missing: vec!["org2".into()],
        };
        let v = awaiting_verdict("ch", &a);
        assert_eq!(v.reason, "AwaitingApprovals");
        assert!(v.message.contains("1/2") && v.message.contains("missing: org2"));
    }
}
