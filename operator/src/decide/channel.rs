//! The `Channel` controller's choices: create a new channel on every node from the planner's
//! genesis; once it exists, let the nodes a change adds join first (from the channel's real
//! genesis), then propose the one configuration change that moves the channel to the plan,
//! then wait for Raft's membership to follow; and the verdict of what the nodes report.

use super::Verdict;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the Channel controller sees before it acts: each hosted node the plan puts in the
/// channel, and what it knows of the channel. Configurations are named by their hash.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelObserved {
    #[serde(default)]
    pub nodes: Vec<NodeView>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeView {
    pub name: String,
    /// Why the node could not be asked (no pod yet, an error); `None` when it answered.
    #[serde(default)]
    pub unreachable: Option<String>,
    /// The channel as the node knows it; `None` when it does not serve it.
    #[serde(default)]
    pub channel: Option<ChannelView>,
}

/// One node's view of the channel.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelView {
    pub config_sequence: u64,
    #[serde(default)]
    pub height: u64,
    /// Hashes of the channel's genesis and current configuration.
    pub genesis: String,
    pub config: String,
    /// The nodes the current configuration lists (consenters and observers).
    #[serde(default)]
    pub configured: Vec<String>,
    /// Raft's voters and learners, by node name.
    #[serde(default)]
    pub voters: Vec<String>,
    #[serde(default)]
    pub learners: Vec<String>,
}

/// The configuration the planner makes of the channel.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelTarget {
    /// Hash of the planned configuration (the genesis of a new channel).
    pub config: String,
    #[serde(default)]
    pub consenters: Vec<String>,
    #[serde(default)]
    pub observers: Vec<String>,
}

/// Which configuration a joining node starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JoinAt {
    /// The configuration to join at is the channel's genesis: the node creates the channel
    /// from it.
    Genesis,
    /// The channel's current configuration (which lists the node).
    Current,
    /// The planned configuration, about to be proposed.
    Planned,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase", deny_unknown_fields)]
pub enum ChannelAction {
    /// Create the channel on `node` from the planned genesis.
    Create { node: String },
    /// Join `node` from the genesis of the channel as `source` knows it.
    Join {
        node: String,
        source: String,
        at: JoinAt,
    },
    /// Propose the planned configuration in place of the one at `sequence`, through the nodes
    /// that serve the channel, approved by the admins the operator holds.
    Propose { source: String, sequence: u64 },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelDecision {
    /// Done in order; a failed one does not stop the others.
    pub actions: Vec<ChannelAction>,
    /// The node that speaks for the channel: the one furthest along in configuration changes.
    pub source: Option<String>,
    /// Nodes not asked, with why.
    pub waiting: Vec<String>,
    /// Raft's membership is still moving to the configuration (the message says where it is).
    pub moving: Option<String>,
}

fn sorted(v: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = v.iter().map(String::as_str).collect();
    v.sort_unstable();
    v
}

pub fn decide(o: &ChannelObserved, target: &ChannelTarget) -> ChannelDecision {
    let mut d = ChannelDecision::default();
    let mut reached = Vec::new();
    for n in &o.nodes {
        match &n.unreachable {
            Some(why) => d.waiting.push(format!("{} ({why})", n.name)),
            None => reached.push(n),
        }
    }
    // The node furthest along speaks for the channel (the last of equals, as max_by_key).
    let source = reached
        .iter()
        .filter_map(|n| n.channel.as_ref().map(|c| (n, c)))
        .max_by_key(|(_, c)| (c.config_sequence, c.height));
    let Some((src_node, src)) = source else {
        // A new channel: every node starts from the planner's genesis.
        d.actions = reached
            .iter()
            .map(|n| ChannelAction::Create {
                node: n.name.clone(),
            })
            .collect();
        return d;
    };
    d.source = Some(src_node.name.clone());
    let changes = target.config != src.config;
    // Nodes the channel (or the change about to be made) adds join first, from the channel's
    // real genesis, so that they listen when the leader starts sending.
    for n in &reached {
        let listed = if changes {
            target.consenters.contains(&n.name) || target.observers.contains(&n.name)
        } else {
            src.configured.contains(&n.name)
        };
        if n.channel.is_some() || !listed {
            continue;
        }
        let to = if changes { &target.config } else { &src.config };
        let at = if *to == src.genesis {
            JoinAt::Genesis
        } else if changes {
            JoinAt::Planned
        } else {
            JoinAt::Current
        };
        d.actions.push(ChannelAction::Join {
            node: n.name.clone(),
            source: src_node.name.clone(),
            at,
        });
    }
    if changes {
        d.actions.push(ChannelAction::Propose {
            source: src_node.name.clone(),
            sequence: src.config_sequence,
        });
    } else if sorted(&src.voters) != sorted(&target.consenters)
        || sorted(&src.learners) != sorted(&target.observers)
    {
        d.moving = Some(format!(
            "Raft membership is moving to the configuration: voters [{}], learners [{}] now",
            src.voters.join(", "),
            src.learners.join(", ")
        ));
    }
    d
}

/// What acting on a decision came to.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outcome {
    /// Nodes that failed an action or a status read, with why.
    #[serde(default)]
    pub waiting: Vec<String>,
    /// The sequence a proposed configuration was committed as.
    #[serde(default)]
    pub reconfigured: Option<u64>,
    /// Why the channel refused the proposed change (the tenant's to fix).
    #[serde(default)]
    pub rejected: Option<String>,
    /// The change is proposed on the ledger and waits for organizations the operator does
    /// not sign for.
    #[serde(default)]
    pub awaiting: Option<Awaiting>,
    /// The channel's genesis waits for member organizations' approvals (`proposal` is the
    /// genesis hash): no node creates it before every member approved.
    #[serde(default)]
    pub genesis: Option<Awaiting>,
    /// What each node reports after acting.
    #[serde(default)]
    pub reports: Vec<NodeReport>,
    /// Nodes outside this cluster that could not be read, with why: reported, never waited
    /// for (their cluster's operator runs them).
    #[serde(default)]
    pub remote_unreachable: Vec<String>,
}

/// A proposed configuration change and its votes so far.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Awaiting {
    /// The proposal's hash (hex); empty when nobody could propose it (no organization lets
    /// the operator sign for it).
    #[serde(default)]
    pub proposal: String,
    pub needed: usize,
    #[serde(default)]
    pub approved: Vec<String>,
    #[serde(default)]
    pub missing: Vec<String>,
}

impl Awaiting {
    /// `n/m`, as the printer column shows it.
    pub fn count(&self) -> String {
        format!("{}/{}", self.approved.len(), self.needed)
    }

    /// Who approved, for a message: their names, or "none yet".
    pub fn approved_text(&self) -> String {
        if self.approved.is_empty() {
            "none yet".to_string()
        } else {
            self.approved.join(", ")
        }
    }

    /// The first 12 hex digits of the proposal's hash, as messages and commands show it.
    pub fn short(&self) -> &str {
        &self.proposal[..self.proposal.len().min(12)]
    }

    /// What a status's `pendingChange` shows of it.
    pub fn pending_change(&self) -> tally_api::channel::PendingChange {
        tally_api::channel::PendingChange {
            proposal: self.proposal.clone(),
            approvals: self.count(),
            approved: self.approved.clone(),
            missing: self.missing.clone(),
            expires: String::new(),
        }
    }

    /// The verdict while the retirement of `what` (`channel ch`, `chaincode cc`) waits for
    /// approvals; `propose` is the command that proposes it when the operator signs for
    /// nobody who may.
    pub fn retirement_verdict(&self, what: &str, channel: &str, propose: &str) -> Verdict {
        if self.proposal.is_empty() {
            return Verdict::progressing(
                "AwaitingApprovals",
                format!(
                    "{what} is being deleted: its retirement needs {} approvals and the operator signs for none of the organizations that may give them ({}): propose it with `{propose}`",
                    self.needed,
                    self.missing.join(", ")
                ),
            );
        }
        let short = self.short();
        Verdict::progressing(
            "AwaitingApprovals",
            format!(
                "{what} is being deleted: its retirement, proposed as {short}, waits for approvals: {} (approved: {}; missing: {}); approve with `tallyctl proposal approve --channel {channel} {short}`",
                self.count(),
                self.approved_text(),
                self.missing.join(", "),
            ),
        )
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeReport {
    pub name: String,
    pub height: u64,
    pub state_root: String,
    /// The leader it follows, by name (empty when it knows none).
    #[serde(default)]
    pub leader: String,
    /// Why the node stopped serving the channel (its ledger differs from the majority's, or
    /// its channel thread died); `None` while it serves.
    #[serde(default)]
    pub degraded: Option<String>,
    /// The first height at which its ledger was found to differ (0 for a dead thread).
    #[serde(default)]
    pub first_differing_height: Option<u64>,
}

/// The nodes that stopped serving the channel, each with the first height found to differ and
/// its reason, in one sentence; `None` when every reporting node serves.
pub fn degraded_nodes(reports: &[NodeReport]) -> Option<String> {
    let parts: Vec<String> = reports
        .iter()
        .filter_map(|r| {
            let why = r.degraded.as_deref()?;
            Some(match r.first_differing_height {
                Some(h) if h > 0 => {
                    format!("{} (first differing height {h}: {why})", r.name)
                }
                _ => format!("{} ({why})", r.name),
            })
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The heights at which nodes report different state roots are none.
pub fn roots_agree(reports: &[NodeReport]) -> bool {
    let mut roots: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for r in reports {
        roots.entry(r.height).or_default().push(&r.state_root);
    }
    roots.values().all(|r| r.windows(2).all(|p| p[0] == p[1]))
}

/// The leader the last reporting node that knows one follows.
pub fn leader(reports: &[NodeReport]) -> &str {
    reports
        .iter()
        .rev()
        .find(|r| !r.leader.is_empty())
        .map_or("", |r| r.leader.as_str())
}

/// The channel's conditions after acting on `d`.
pub fn verdict(channel: &str, d: &ChannelDecision, out: &Outcome) -> Verdict {
    let leader = leader(&out.reports);
    let height = out.reports.iter().map(|r| r.height).max().unwrap_or(0);
    let waiting: Vec<&str> = d
        .waiting
        .iter()
        .chain(&out.waiting)
        .map(String::as_str)
        .collect();
    let changing = match (out.reconfigured, &d.moving) {
        (Some(seq), _) => Some(format!(
            "configuration {seq} committed; waiting for the nodes to apply it"
        )),
        (None, Some(m)) => Some(m.clone()),
        (None, None) => None,
    };
    if let Some(why) = &out.rejected {
        Verdict::degraded("ConfigurationRejected", why.clone())
    } else if let Some(nodes) = degraded_nodes(&out.reports) {
        // Before a change in progress: the change may wait on the very node that stopped.
        Verdict::degraded(
            "NodeDegraded",
            format!("stopped serving channel {channel}: {nodes}"),
        )
    } else if let Some(a) = &out.awaiting {
        let approved = a.approved_text();
        let message = if a.proposal.is_empty() {
            format!(
                "the configuration change needs {} approvals and the operator signs for none of \
                 the organizations that may give them ({}): propose it with `tallyctl proposal create`",
                a.needed,
                a.missing.join(", ")
            )
        } else {
            format!(
                "configuration change proposed as {} waits for approvals: {} (approved: {approved}; \
                 missing: {}); approve with `tallyctl proposal approve --channel {channel} {}`",
                a.short(),
                a.count(),
                a.missing.join(", "),
                a.short(),
            )
        };
        Verdict::progressing("AwaitingApprovals", message)
    } else if let Some(g) = &out.genesis {
        let approved = g.approved_text();
        let problems = if out.waiting.is_empty() {
            String::new()
        } else {
            format!("; {}", out.waiting.join("; "))
        };
        Verdict::progressing(
            "AwaitingApprovals",
            format!(
                "the genesis of channel {channel} ({}) waits for its members' approvals: {} (approved: {approved}; missing: {}); \
                 each missing organization's admin runs `tallyctl channel approve-genesis --genesis genesis.json` on the \
                 genesis.json of ConfigMap {channel}-genesis and adds the output to spec.genesisApprovals{problems}",
                g.short(),
                g.count(),
                g.missing.join(", "),
            ),
        )
    } else if let Some(what) = changing {
        Verdict::progressing("Reconfiguring", what)
    } else if !roots_agree(&out.reports) {
        Verdict::degraded(
            "StateRootsDisagree",
            format!("nodes of channel {channel} report different state roots at the same height"),
        )
    } else if !waiting.is_empty() {
        Verdict::progressing(
            "WaitingForNodes",
            format!("waiting for {}", waiting.join(", ")),
        )
    } else if leader.is_empty() {
        Verdict::progressing(
            "ElectingLeader",
            "the channel's consenters have no leader yet",
        )
    } else {
        let remote = if out.remote_unreachable.is_empty() {
            String::new()
        } else {
            format!(
                "; remote nodes unreachable: {}",
                out.remote_unreachable.join(", ")
            )
        };
        Verdict::ready(
            "Ready",
            format!(
                "{} nodes at height {height}, led by {leader}{remote}",
                out.reports.len()
            ),
        )
    }
}
