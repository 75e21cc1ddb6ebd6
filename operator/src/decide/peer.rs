//! The `Peer` controller's choices: how many replicas the StatefulSet gets (a scale-down waits
//! until the departing nodes have left every channel), and which pod a rollout restarts next
//! (one at a time, only while every node is ready, its Raft leadership handed over first).

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
    /// The StatefulSet's replicas as the cluster holds it (0 before it exists).
    #[serde(default)]
    pub running: i32,
    /// The StatefulSet's ready replicas.
    #[serde(default)]
    pub ready: i32,
    /// The StatefulSet's update revision (empty until its controller set one).
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
    /// Its `controller-revision-hash` label.
    #[serde(default)]
    pub revision: String,
    /// It has a deletion timestamp.
    #[serde(default)]
    pub terminating: bool,
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
    /// Ask the pod's node to hand its Raft leaderships over (best effort).
    HandOverLeadership { pod: String },
    /// Delete the pod: its StatefulSet recreates it at the update revision.
    DeletePod { pod: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerDecision {
    /// The replicas the StatefulSet is applied with.
    pub replicas: i32,
    /// Done in order after the StatefulSet is applied.
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

pub fn decide(o: &PeerObserved) -> PeerDecision {
    let held = held(o);
    let want = o.want;
    let replicas = if held.is_empty() { want } else { o.running };
    let mut pods: Vec<&PodView> = o.pods.iter().collect();
    // The highest ordinal first, as the StatefulSet controller itself rolls.
    pods.sort_by(|a, b| b.name.cmp(&a.name));
    let outdated: Vec<&PodView> = pods
        .iter()
        .copied()
        .filter(|p| p.revision != o.update_revision)
        .collect();
    let terminating = pods.iter().any(|p| p.terminating);
    let mut actions = Vec::new();
    let verdict = if !o.update_revision.is_empty() && !outdated.is_empty() {
        // One pod at a time and only while every node is ready, so that a channel never loses
        // two voters to a rollout.
        let mine_ready = o.ready == want && !terminating && pods.len() as i32 == want;
        if mine_ready && o.waiting_for.is_none() {
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
