//! The node's side of quiet channels (see `channel/quiet.rs`): one frame per peer every
//! [`PERIOD`] listing the channels this node leads quietly, the reception of those frames,
//! and the wake-up of quiet followers whose leader stopped listing them.
//!
//! The frame replaces every quiet channel's heartbeats between two nodes, so its cost does not
//! grow with the number of idle channels. It is believed only from the node the receiver's
//! own Raft state names as the channel's leader, checked by the connection's certificate as a
//! Raft message is: any other node can list a channel, but cannot put it to sleep.

use crate::node::Node;
use crate::peer_trust::PeerCert;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// The route of the frame.
pub const ROUTE: &str = "quiet:";
/// How often each node lists its quiet channels to its peers.
pub const PERIOD: Duration = Duration::from_millis(500);
/// A quiet follower whose leader has not listed the channel for this long wakes up.
pub const WAKE_AFTER: Duration = Duration::from_millis(1500);

/// One listed channel: its name, the Raft id of the node that leads it (the sender), the
/// leader's term and commit index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub channel: String,
    pub leader: u64,
    pub term: u64,
    pub commit: u64,
}

/// The frame's body: a count, then per channel its name's length (2 bytes), the name, the
/// leader's Raft id, the term and the commit index (8 bytes each, big-endian).
pub fn encode(listed: &[Listed]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + listed.len() * 40);
    out.extend_from_slice(&(listed.len() as u32).to_be_bytes());
    for l in listed {
        out.extend_from_slice(&(l.channel.len() as u16).to_be_bytes());
        out.extend_from_slice(l.channel.as_bytes());
        out.extend_from_slice(&l.leader.to_be_bytes());
        out.extend_from_slice(&l.term.to_be_bytes());
        out.extend_from_slice(&l.commit.to_be_bytes());
    }
    out
}

/// The listed channels, or None for a body that is not one [`encode`] makes.
pub fn decode(mut body: &[u8]) -> Option<Vec<Listed>> {
    fn take<'a>(body: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if body.len() < n {
            return None;
        }
        let (head, rest) = body.split_at(n);
        *body = rest;
        Some(head)
    }
    let u64_of = |b: &[u8]| b.try_into().ok().map(u64::from_be_bytes);
    let count = u32::from_be_bytes(take(&mut body, 4)?.try_into().ok()?) as usize;
    // Each entry takes at least 26 bytes: a count beyond that is a lie, not an allocation.
    if count > body.len() / 26 {
        return None;
    }
    let mut listed = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u16::from_be_bytes(take(&mut body, 2)?.try_into().ok()?) as usize;
        let channel = std::str::from_utf8(take(&mut body, len)?).ok()?.to_string();
        let leader = u64_of(take(&mut body, 8)?)?;
        let term = u64_of(take(&mut body, 8)?)?;
        let commit = u64_of(take(&mut body, 8)?)?;
        listed.push(Listed {
            channel,
            leader,
            term,
            commit,
        });
    }
    body.is_empty().then_some(listed)
}

/// Lists this node's quiet (and ready to be quiet) leaderships to each peer, then lets the
/// idle leaders stop their clocks.
fn announce(node: &Node) {
    let mut per_peer: BTreeMap<String, Vec<Listed>> = BTreeMap::new();
    let mut offered = Vec::new();
    for ch in node.channels() {
        let Some((term, commit, offer)) = ch.listing() else {
            continue;
        };
        if offer {
            offered.push((ch.clone(), term, commit));
        }
        for peer in ch.ledger.config().nodes() {
            if peer.name != ch.node_name {
                per_peer
                    .entry(peer.peer_addr.clone())
                    .or_default()
                    .push(Listed {
                        channel: ch.ledger.name.clone(),
                        leader: ch.node_id,
                        term,
                        commit,
                    });
            }
        }
    }
    for (addr, listed) in per_peer {
        node.transport
            .send(&addr, crate::transport::frame(ROUTE, &encode(&listed)));
    }
    for (ch, term, commit) in offered {
        ch.quiet_announced(term, commit);
    }
}

/// A peer's list. Each channel this node follows the sender in, at the listed term, goes
/// quiet; a channel where this node does not follow it (it knows no leader yet, as after a
/// restart or a wiped volume, or another one, or a newer term) pokes the sender, which
/// wakes and heartbeats instead of waiting for a campaign that a rejoining node never starts.
pub fn receive(node: &Node, body: &[u8], sender: &PeerCert) {
    let Some(listed) = decode(body) else {
        debug!(sender = %sender.info.common_name, "undecodable quiet-channel list from a peer");
        return;
    };
    let now = Instant::now();
    for l in listed {
        if node.is_frozen(&l.channel) {
            continue;
        }
        let Some(ch) = node.channel(&l.channel) else {
            continue;
        };
        if l.leader == ch.node_id {
            continue;
        }
        let Some(lister) = ch.peer(l.leader) else {
            continue;
        };
        if let Err(why) = node.admit(&l.channel, &lister, sender) {
            if sender.first_refusal() {
                warn!(channel = %l.channel, "quiet listing refused: {why}");
            } else {
                debug!(channel = %l.channel, "quiet listing refused: {why}");
            }
            continue;
        }
        ch.listed_by(l.leader, l.term, l.commit, now);
    }
}

/// Every [`PERIOD`] until the node is dropped or `stop` is set: announces, and wakes the quiet
/// followers whose leader went silent.
pub fn run(node: Weak<Node>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(PERIOD);
        let Some(node) = node.upgrade() else { return };
        announce(&node);
        let Some(before) = Instant::now().checked_sub(WAKE_AFTER) else {
            continue;
        };
        for ch in node.channels() {
            ch.wake_if_unheard(before);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_round_trips_and_a_damaged_one_is_refused() {
        let listed = vec![
            Listed {
                channel: "trade".into(),
                leader: 42,
                term: 7,
                commit: 1234,
            },
            Listed {
                channel: "notary".into(),
                leader: u64::MAX,
                term: 2,
                commit: 0,
            },
        ];
        let body = encode(&listed);
        assert_eq!(decode(&body), Some(listed));
        assert_eq!(decode(&encode(&[])), Some(vec![]));
        for cut in 0..body.len() {
            assert_eq!(decode(&body[..cut]), None, "cut at {cut}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None, "trailing bytes");
        let mut huge = body;
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&huge), None, "a count the body cannot hold");
    }
}
