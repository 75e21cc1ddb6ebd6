//! The `Peer` controller's choices: which of the Peer's nodes keep a pod (a scale-down waits
//! until the departing nodes have left every channel), which pods to create, which pod a
//! rollout restarts next (one at a time, only while every node is ready, its Raft leadership
//! handed over first) and which pods to remove.

use super::Verdict;
use serde::{Deserialize, Serialize};

/// What the Peer controller sees before it acts.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerObserved {
    /// The Peer's name: its nodes are `<name>-0`, `<name>-1`, ...
    pub peer: String,
    /// `spec.replicas`.
    pub want: i32,
    /// The nodes that have a pod: the highest ordinal among the Peer's pods plus one (0
    /// without pods). Above `want` while a scale-down waits.
    #[serde(default)]
    pub running: i32,
    /// Pods that are ready and not going away.
    #[serde(default)]
    pub ready: i32,
    /// The revision pods are built at now (empty: none known, no rollout).
    #[serde(default)]
    pub update_revision: String,
    /// The Peer's pods.
    #[serde(default)]
    pub pods: Vec<PodView>,
    /// Another Peer of the consortium whose rollout or readiness comes first: while set, no
    /// pod of this Peer is replaced.
    #[serde(default)]
    pub waiting_for: Option<String>,
    /// During a scale-down, for each channel of this Peer that keeps a node: what a node that
    /// stays reports of its membership.
    #[serde(default)]
    pub channels: Vec<ChannelMembership>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodView {
    pub name: String,
    /// Its `tally.dev/revision` annotation (empty on a pod a StatefulSet made).
    #[serde(default)]
    pub revision: String,
    /// It has a deletion timestamp.
    #[serde(default)]
    pub terminating: bool,
    /// Its phase is `Failed` or `Succeeded`: its containers will not run again.
    #[serde(default)]
    pub finished: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelMembership {
    pub channel: String,
    /// `None`: no node that stays in the channel answered.
    #[serde(default)]
    pub answer: Option<Membership>,
}

/// A channel's membership as one of its nodes reports it, by node name.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Membership {
    /// The nodes its configuration lists (consenters and observers).
    #[serde(default)]
    pub configured: Vec<String>,
    /// Raft's voters and learners.
    #[serde(default)]
    pub voters: Vec<String>,
    #[serde(default)]
    pub learners: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase", deny_unknown_fields)]
pub enum PeerAction {
    /// Create the node's pod (and its ledger claim when missing) at the update revision.
    CreatePod { pod: String },
    /// Ask the pod's node to hand its Raft leaderships over (best effort).
    HandOverLeadership { pod: String },
    /// Delete an outdated pod; the next reconcile creates it again at the update revision.
    DeletePod { pod: String },
    /// Delete a pod whose containers finished (`Failed`, `Succeeded`, an eviction); the next
    /// reconcile creates it again.
    ReplacePod { pod: String },
    /// Delete the pod of a node the scale-down removes (its claim stays).
    RemovePod { pod: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerDecision {
    /// The nodes that keep a pod: ordinals `0..replicas`.
    pub replicas: i32,
    /// Done in order after the Peer's ConfigMap, Secrets and Services are applied.
    pub actions: Vec<PeerAction>,
    pub verdict: Verdict,
}

/// The nodes a scale-down from `running` to `want` removes.
pub fn departing(peer: &str, want: i32, running: i32) -> Vec<String> {
    (want.max(0)..running)
        .map(|i| format!("{peer}-{i}"))
        .collect()
}

/// Why the departing nodes cannot go yet, one line per channel that holds them; empty when
/// they may go.
fn held(o: &PeerObserved) -> Vec<String> {
    if o.running <= o.want {
        return Vec::new();
    }
    let going = departing(&o.peer, o.want, o.running);
    let mut held = Vec::new();
    for ch in &o.channels {
        let Some(m) = &ch.answer else {
            held.push(format!("no node of channel {} answers yet", ch.channel));
            continue;
        };
        let listed: Vec<&str> = going
            .iter()
            .filter(|d| m.configured.contains(d) || m.voters.contains(d) || m.learners.contains(d))
            .map(String::as_str)
            .collect();
        if !listed.is_empty() {
            held.push(format!(
                "{} still in channel {}",
                listed.join(", "),
                ch.channel
            ));
        }
    }
    held
}

/// The ordinal of `pod` if it is one of `peer`'s nodes (`<peer>-<ordinal>`).
pub fn ordinal(peer: &str, pod: &str) -> Option<i32> {
    let rest = pod.strip_prefix(peer)?.strip_prefix('-')?;
    // Not another Peer's node whose name extends this one's (`p-1` vs `p-1-0`).
    if rest.is_empty()
        || !rest.bytes().all(|b| b.is_ascii_digit())
        || (rest.starts_with('0') && rest.len() > 1)
    {
        return None;
    }
    rest.parse().ok()
}

pub fn decide(o: &PeerObserved) -> PeerDecision {
    let held = held(o);
    let want = o.want;
    let replicas = if held.is_empty() {
        want
    } else {
        o.running.max(want)
    };
    let mut actions = Vec::new();
    // Missing nodes get a pod, whatever else is going on: a pod that is gone (deleted,
    // evicted, restarted by the rollout) is a node down until it is back.
    for k in 0..replicas.max(0) {
        let node = format!("{}-{k}", o.peer);
        if !o.pods.iter().any(|p| p.name == node) {
            actions.push(PeerAction::CreatePod { pod: node });
        }
    }
    let mut pods: Vec<&PodView> = o
        .pods
        .iter()
        .filter(|p| ordinal(&o.peer, &p.name).is_some_and(|k| k < replicas))
        .collect();
    // The highest ordinal first, as a StatefulSet rolls and scales down.
    pods.sort_by_key(|p| std::cmp::Reverse(ordinal(&o.peer, &p.name)));
    for p in &pods {
        if p.finished && !p.terminating {
            actions.push(PeerAction::ReplacePod {
                pod: p.name.clone(),
            });
        }
    }
    let mut going: Vec<&PodView> = o
        .pods
        .iter()
        .filter(|p| ordinal(&o.peer, &p.name).is_some_and(|k| k >= replicas) && !p.terminating)
        .collect();
    going.sort_by_key(|p| std::cmp::Reverse(ordinal(&o.peer, &p.name)));
    for p in going {
        actions.push(PeerAction::RemovePod {
            pod: p.name.clone(),
        });
    }
    let outdated: Vec<&PodView> = pods
        .iter()
        .copied()
        .filter(|p| p.revision != o.update_revision)
        .collect();
    let terminating = pods.iter().any(|p| p.terminating || p.finished);
    let verdict = if !o.update_revision.is_empty() && !outdated.is_empty() {
        // One pod at a time and only while every node is ready, so that a channel never loses
        // two voters to a rollout.
        let mine_ready = o.ready == want && !terminating && pods.len() as i32 == want;
        if mine_ready && o.waiting_for.is_none() && o.running <= want {
            let pod = outdated[0].name.clone();
            actions.push(PeerAction::HandOverLeadership { pod: pod.clone() });
            actions.push(PeerAction::DeletePod { pod });
        }
        let waiting = match &o.waiting_for {
            Some(other) => format!(" (after Peer {other}, which goes first)"),
            None => String::new(),
        };
        Verdict::progressing(
            "RollingUpdate",
            format!(
                "{} of {} nodes run an older revision; replacing one at a time{waiting}",
                outdated.len(),
                pods.len()
            ),
        )
    } else if !held.is_empty() {
        Verdict::progressing(
            "LeavingChannels",
            format!(
                "scaling from {} to {want} nodes once the departing nodes have left their channels: {}",
                o.running,
                held.join("; ")
            ),
        )
    } else if o.ready < want {
        Verdict::progressing("Starting", format!("{} of {want} nodes ready", o.ready))
    } else {
        Verdict::ready("Ready", format!("{} of {want} nodes ready", o.ready))
    };
    PeerDecision {
        replicas,
        actions,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::ordinal;

    #[test]
    fn ordinals_are_the_peers_own() {
        assert_eq!(ordinal("p", "p-0"), Some(0));
        assert_eq!(ordinal("p", "p-12"), Some(12));
        assert_eq!(ordinal("p", "p-1-0"), None, "another Peer's (p-1) node");
        assert_eq!(ordinal("p", "px-0"), None);
        assert_eq!(ordinal("p", "p-"), None);
        assert_eq!(ordinal("p", "p-01"), None);
    }
}
