//! Whether deleting a Peer would take a channel's quorum with it. A Peer's pods go with the
//! Peer; if they are most of a live channel's Raft voters, the channel stops committing, and
//! if they are all of them, its ledger exists only on volumes nobody runs. The Peer's
//! finalizer holds the deletion until the channel's consenters no longer need those nodes
//! (the Channel's spec changed, so its voters changed) or the Channel itself is deleted.

use tally_planner::node_name;

/// What the guard needs of one Channel of the Peer's consortium.
pub struct ChannelVoters {
    pub channel: String,
    /// The channel's Raft voters as its status last reported them (node names).
    pub voters: Vec<String>,
    /// The Channel is being deleted: its quorum is not worth keeping.
    pub deleting: bool,
}

/// Whether `node` is one of `peer`'s nodes (`<peer>-<ordinal>`).
fn of_peer(peer: &str, node: &str) -> bool {
    node.strip_prefix(peer)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|ordinal| ordinal.parse::<u32>().ok())
        .is_some_and(|ordinal| node_name(peer, ordinal) == node)
}

/// Why `peer` may not go yet: one line per live channel in which it has a voter and whose
/// voters left standing would be fewer than a quorum; empty when it may go. Left standing
/// are the nodes of `others` (the Peers that exist and are not being deleted, this one
/// excluded) and the consortium's `external` nodes; a node of a Peer that is already gone,
/// or going too, does not count, so deleting several Peers at once is judged as a whole.
pub fn blocked_by(
    peer: &str,
    channels: &[ChannelVoters],
    others: &[String],
    external: &[String],
) -> Vec<String> {
    let standing = |v: &String| external.contains(v) || others.iter().any(|o| of_peer(o, v));
    channels
        .iter()
        .filter(|c| !c.deleting && c.voters.iter().any(|v| of_peer(peer, v)))
        .filter_map(|c| {
            let n = c.voters.len();
            let kept = c.voters.iter().filter(|v| standing(v)).count();
            let quorum = n / 2 + 1;
            (kept < quorum).then(|| {
                format!(
                    "channel {} would keep {kept} of its {n} voters, and needs {quorum} to commit",
                    c.channel
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(name: &str, voters: &[&str], deleting: bool) -> ChannelVoters {
        ChannelVoters {
            channel: name.into(),
            voters: voters.iter().map(|v| v.to_string()).collect(),
            deleting,
        }
    }

    #[test]
    fn a_peer_goes_only_if_every_live_channel_keeps_a_quorum() {
        let peers = |p: &[&str]| p.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let three = ["org1-peer-0", "org2-peer-0", "org3-peer-0"];
        let others = peers(&["org2-peer", "org3-peer"]);
        assert!(blocked_by("org1-peer", &[ch("a", &three, false)], &others, &[]).is_empty());
        let two_of_three = ["org1-peer-0", "org1-peer-1", "org2-peer-0"];
        let why = blocked_by("org1-peer", &[ch("a", &two_of_three, false)], &others, &[]);
        assert_eq!(
            why,
            ["channel a would keep 1 of its 3 voters, and needs 2 to commit"]
        );
        assert!(
            blocked_by("org1-peer", &[ch("a", &two_of_three, true)], &others, &[]).is_empty(),
            "a channel being deleted holds nothing"
        );
        assert_eq!(
            blocked_by("solo", &[ch("b", &["solo-0"], false)], &[], &[]).len(),
            1,
            "the only voter"
        );
        assert!(
            blocked_by("org1", &[ch("a", &two_of_three, false)], &others, &[]).is_empty(),
            "org1-peer-0 is not a node of Peer org1: org1 has no voter there"
        );
        assert!(
            blocked_by("org1-peer", &[ch("c", &[], false)], &others, &[]).is_empty(),
            "a channel with no voters reported yet"
        );
    }

    #[test]
    fn peers_deleted_together_or_one_after_another_are_judged_as_a_whole() {
        let three = ["org1-peer-0", "org2-peer-0", "org3-peer-0"];
        // All three deleted at once: for each, the other two are going too.
        let why = blocked_by("org1-peer", &[ch("a", &three, false)], &[], &[]);
        assert_eq!(why.len(), 1, "{why:?}");
        // org2-peer went first; its node is still a voter on the ledger.
        let why = blocked_by(
            "org1-peer",
            &[ch("a", &three, false)],
            &["org3-peer".to_string()],
            &[],
        );
        assert_eq!(
            why,
            ["channel a would keep 1 of its 3 voters, and needs 2 to commit"]
        );
        // An external organization's node stands.
        assert!(blocked_by(
            "org1-peer",
            &[ch("a", &three, false)],
            &["org3-peer".to_string()],
            &["org2-peer-0".to_string()],
        )
        .is_empty());
    }
}
