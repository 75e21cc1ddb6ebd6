//! The controllers' decisions, apart from their I/O. Each controller reconciles in three steps:
//!
//! 1. **observe**: read what the decision needs (the cluster's objects, what the nodes report)
//!    into a plain `…Observed` value, turning Raft ids into node names and configurations into
//!    their hashes, so that the value can be written by hand;
//! 2. **decide**: a pure function of the observation and the plan, here, returning the actions
//!    to take in order and the verdict (conditions) they lead to; no client, no clock, no I/O;
//! 3. **act**: carry the actions out one by one (the `act` functions of the controller
//!    modules), each a thin call of the Kubernetes API or a node's API.
//!
//! The decisions are tested from YAML fixtures (`operator/tests/fixtures/<controller>/*.yaml`:
//! observed state and plan in, actions and verdict out) by `operator/tests/decide.rs`. A new
//! decision (a certificate renewal rolling pods, a proposal awaiting approvals) is a new
//! action variant, its choice here, its execution in the controller, and a fixture.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use tally_api::common::{set_condition, Condition, ConditionStatus};

pub mod ca_rotation;
pub mod chaincode_define;
pub mod chaincode_delete;
pub mod channel;
pub mod channel_delete;
pub mod peer;

/// Degraded reasons that only the tenant can fix: a spec that does not plan, a missing or bad
/// Secret or ConfigMap, a change the channel refuses.
const TENANT_REASONS: [&str; 4] = [
    "InvalidSpec",
    "InvalidReference",
    "ConfigurationRejected",
    "CaMissing",
];

/// The conditions of a resource after one reconcile: `Ready`, `Progressing` and `Degraded`
/// set together so they never contradict each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub state: State,
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum State {
    Ready,
    Progressing,
    Degraded,
}

impl Verdict {
    pub fn ready(reason: &str, message: impl Into<String>) -> Verdict {
        Verdict {
            state: State::Ready,
            reason: reason.into(),
            message: message.into(),
        }
    }
    pub fn progressing(reason: &str, message: impl Into<String>) -> Verdict {
        Verdict {
            state: State::Progressing,
            reason: reason.into(),
            message: message.into(),
        }
    }
    pub fn degraded(reason: &str, message: impl Into<String>) -> Verdict {
        Verdict {
            state: State::Degraded,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Applies the verdict to `conditions` (keeping transition times of unchanged ones).
    pub fn apply_to(&self, conditions: &mut Vec<Condition>, generation: Option<i64>, now: &str) {
        let mk = |type_: &str, on: bool, reason: &str, message: &str| Condition {
            type_: type_.into(),
            status: if on {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            },
            reason: reason.into(),
            message: message.into(),
            last_transition_time: now.into(),
            observed_generation: generation,
        };
        let (r, m) = (self.reason.as_str(), self.message.as_str());
        let ready = self.state == State::Ready;
        set_condition(conditions, mk("Ready", ready, r, m));
        let progressing = self.state == State::Progressing;
        set_condition(
            conditions,
            mk(
                "Progressing",
                progressing,
                if progressing { r } else { "Settled" },
                if progressing { m } else { "" },
            ),
        );
        let degraded = self.state == State::Degraded;
        set_condition(
            conditions,
            mk(
                "Degraded",
                degraded,
                if degraded { r } else { "Healthy" },
                if degraded { m } else { "" },
            ),
        );
    }

    /// Whether the object waits for a change (parked) rather than a timer: Degraded for a
    /// reason its tenant must fix, which another look would only repeat, or waiting for a CA
    /// Secret. Nodes that disagree on state roots are not the tenant's to fix: they are looked
    /// at again.
    pub fn parks(&self) -> bool {
        match self.state {
            State::Degraded => TENANT_REASONS.contains(&self.reason.as_str()),
            // A CA Secret appearing wakes it (any Secret of the namespace does); polling for it
            // was most of the reconciles of a consortium coming up.
            State::Progressing => self.reason == "WaitingForCa",
            State::Ready => false,
        }
    }

    pub fn requeue(&self) -> Duration {
        match self.state {
            State::Ready => Duration::from_secs(60),
            State::Progressing => Duration::from_secs(3),
            State::Degraded => Duration::from_secs(15),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict;
    use tally_api::common::ConditionStatus;

    /// A degraded node makes `Degraded` True with its reason and message, and a later healthy
    /// verdict turns it False again (reason `Healthy`, no message).
    #[test]
    fn degraded_condition_follows_the_verdict() {
        let mut conditions = Vec::new();
        let why = "stopped serving channel main: n2 (first differing height 7: differs)";
        Verdict::degraded("NodeDegraded", why).apply_to(&mut conditions, Some(3), "t1");
        let get = |cs: &[tally_api::common::Condition], t: &str| {
            cs.iter()
                .find(|c| c.type_ == t)
                .cloned()
                .unwrap_or_else(|| panic!("no {t} condition"))
        };
        let d = get(&conditions, "Degraded");
        assert_eq!(
            (d.status, d.reason.as_str(), d.message.as_str()),
            (ConditionStatus::True, "NodeDegraded", why)
        );
        assert_eq!(get(&conditions, "Ready").status, ConditionStatus::False);
        Verdict::ready("Ready", "3 nodes").apply_to(&mut conditions, Some(3), "t2");
        let d = get(&conditions, "Degraded");
        assert_eq!(
            (d.status, d.reason.as_str(), d.message.as_str()),
            (ConditionStatus::False, "Healthy", "")
        );
    }

    #[test]
    fn only_what_the_tenant_must_fix_parks() {
        assert!(Verdict::degraded("InvalidSpec", "spec.replicas").parks());
        assert!(Verdict::degraded("InvalidReference", "no Secret").parks());
        assert!(Verdict::degraded("ConfigurationRejected", "refused").parks());
        assert!(!Verdict::degraded("StateRootsDisagree", "roots").parks());
        assert!(!Verdict::degraded("NodeDegraded", "n2 stopped").parks());
        assert!(!Verdict::progressing("InvalidSpec", "x").parks());
        assert!(Verdict::progressing("WaitingForCa", "no Secret yet").parks());
        assert!(!Verdict::progressing("Starting", "0 of 2").parks());
        assert!(!Verdict::ready("Ready", "x").parks());
    }
}
