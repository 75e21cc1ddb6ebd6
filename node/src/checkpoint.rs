//! Signed checkpoints: nodes of a channel tell one another where their ledgers stand, and a
//! node that finds itself in the minority stops serving the channel.
//!
//! A checkpoint is `(channel, node, height, block hash, state root)` signed by the node's
//! identity key. Every second each node sends, to every other node of each of its channels,
//! its checkpoint at the latest height that is a multiple of [`EVERY`] (so that nodes moving
//! at different speeds still produce comparable heights) and at its tip (so that an idle
//! channel is compared too); a quiet channel's (`channel/quiet.rs`), which cannot change
//! until it wakes, only every [`QUIET_REFRESH`] once every peer was seen to agree at the tip. Checkpoints travel over the peer transport beside Raft messages,
//! under the route `checkpoint:<channel>` (no channel name contains `:`), and are accepted only
//! from a connection whose certificate is that of the channel node the checkpoint names.
//!
//! A node that receives a checkpoint at a height it has passed and would not sign itself (a
//! peer behind it: lagging, or restored from a backup) answers with its own checkpoint there,
//! so the peer can compare its chain at its tip; so does a node whose own checkpoint at that
//! height differs, so that a peer in the minority learns it without waiting for the next
//! periodic checkpoints of a quiet channel. Answers travel under their own route,
//! `checkpoint-answer:<channel>`, and are never answered: under load both nodes' tips move on
//! while a checkpoint is in flight, so each would otherwise find the other's answer behind its
//! tip and answer it, back and forth for as long as the channel stays busy, one more such
//! exchange started every second.
//!
//! A node compares a peer's checkpoint at height h with its own at h: its tip when h is its
//! height, else the header of block h-1. When a strict majority of the channel's consenters
//! agree on a value that is not the node's own, the node is in the minority: its ledger
//! differs from what the channel agreed on (an edited database, a bug, a broken disk). It then
//! refuses the channel's reads and writes, reports itself Degraded (readiness, metrics,
//! status) with the first height at which it was found to differ, and hands over leadership.
//! This is sticky for the life of the process: a ledger that diverged does not heal itself.

use crate::channel::Channel;
use crate::ledger::Ledger;
use crate::node::Node;
use crate::peer_trust::PeerCert;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tally_protocol::codec::{Decode, DecodeError, Encode, Reader, Writer};
use tally_protocol::{sig, Hash, Identity};
use tracing::{debug, error, warn};

/// Checkpoints are taken at heights that are multiples of this, besides the tip.
pub const EVERY: u64 = 64;
/// How often checkpoints are sent and compared.
pub const PERIOD: Duration = Duration::from_secs(1);
/// How often a quiet channel's unchanged checkpoints are sent again.
pub const QUIET_REFRESH: Duration = Duration::from_secs(30);
/// Route prefix of checkpoint frames on the peer transport.
pub const ROUTE: &str = "checkpoint:";
/// Route prefix of the checkpoints a node sends in answer to a peer behind it.
pub const ANSWER_ROUTE: &str = "checkpoint-answer:";
/// `kind` label values of the checkpoints-sent counter.
pub const PERIODIC: &str = "periodic";
pub const ANSWER: &str = "answer";
/// Heights of peers' checkpoints kept for comparison (the lowest are dropped first).
const KEEP_HEIGHTS: usize = 256;
const FORMAT: u8 = 1;

/// What a node says about its ledger at one height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub channel: String,
    pub node: String,
    pub height: u64,
    pub block_hash: Hash,
    pub state_root: Hash,
}

impl Checkpoint {
    fn body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(96 + self.channel.len() + self.node.len());
        w.u8(FORMAT);
        w.str(&self.channel);
        w.str(&self.node);
        w.u64(self.height);
        self.block_hash.encode(&mut w);
        self.state_root.encode(&mut w);
        w.into_inner()
    }

    fn signed_message(body: &[u8]) -> Hash {
        Hash::tagged(b"tally-checkpoint", &[body])
    }

    /// The checkpoint's bytes followed by the node's signature over them.
    pub fn sign(&self, identity: &Identity) -> Vec<u8> {
        let body = self.body();
        let sig = identity.sign(&Self::signed_message(&body).0);
        let mut w = Writer::with_capacity(body.len() + 68);
        w.bytes(&body);
        w.bytes(&sig);
        w.into_inner()
    }

    /// Reads a signed checkpoint and checks its signature against `public_key`.
    pub fn open(bytes: &[u8], public_key: &[u8; 32]) -> Result<Checkpoint, CheckpointError> {
        let mut r = Reader::new(bytes);
        let body = r.bytes("checkpoint")?;
        let signature = r.bytes("checkpoint signature")?;
        r.finish()?;
        let key = sig::public_key(public_key).ok_or(CheckpointError::BadSignature)?;
        if !sig::verify(&key, &signature, &Self::signed_message(&body).0) {
            return Err(CheckpointError::BadSignature);
        }
        let mut r = Reader::new(&body);
        let version = r.u8("checkpoint format")?;
        if version != FORMAT {
            return Err(DecodeError::UnsupportedVersion {
                what: "checkpoint",
                version,
                supported: FORMAT,
            }
            .into());
        }
        let c = Checkpoint {
            channel: r.str("channel")?,
            node: r.str("node")?,
            height: r.u64("height")?,
            block_hash: Hash::decode(&mut r)?,
            state_root: Hash::decode(&mut r)?,
        };
        r.finish()?;
        Ok(c)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed checkpoint: {0}")]
    Malformed(#[from] DecodeError),
    #[error("checkpoint signature does not verify against the sender's certificate")]
    BadSignature,
}

pub use tally_protocol::api::Degraded;

type Value = (Hash, Hash);

/// A channel's checkpoint bookkeeping on one node.
#[derive(Default)]
pub struct Tracker {
    /// Peers' checkpoints: height → node → (block hash, state root).
    peers: Mutex<BTreeMap<u64, HashMap<String, Value>>>,
    degraded: Mutex<Option<Degraded>>,
    is_degraded: AtomicBool,
}

impl Tracker {
    pub fn degraded(&self) -> Option<Degraded> {
        if !self.is_degraded.load(Ordering::Acquire) {
            return None;
        }
        self.degraded.lock().clone()
    }

    /// Marks the channel degraded; the first cause found is kept. Returns true the first time.
    pub fn degrade(&self, d: Degraded) -> bool {
        let mut cur = self.degraded.lock();
        let first = cur.is_none();
        match cur.as_mut() {
            None => *cur = Some(d),
            // A lower height found later (a peer's older checkpoint) is the better answer.
            Some(c) if d.first_differing_height < c.first_differing_height => {
                c.first_differing_height = d.first_differing_height
            }
            Some(_) => {}
        }
        self.is_degraded.store(true, Ordering::Release);
        first
    }

    /// The highest height each peer has reported with its block hash there, by node name.
    pub fn peer_tip_values(&self) -> HashMap<String, (u64, Hash)> {
        let peers = self.peers.lock();
        let mut tips = HashMap::new();
        for (h, nodes) in peers.iter() {
            for (n, (hash, _)) in nodes {
                tips.insert(n.clone(), (*h, *hash));
            }
        }
        tips
    }

    fn prune_below(&self, height: u64) {
        let mut peers = self.peers.lock();
        *peers = peers.split_off(&height);
    }

    fn record(&self, c: &Checkpoint) {
        let mut peers = self.peers.lock();
        peers
            .entry(c.height)
            .or_default()
            .insert(c.node.clone(), (c.block_hash, c.state_root));
        while peers.len() > KEEP_HEIGHTS {
            peers.pop_first();
        }
    }
}

/// This node's (block hash, state root) at `height`: the tip at its height, else the header
/// of the block that ends there.
fn own_at(ledger: &Ledger, height: u64) -> Option<Value> {
    let tip = ledger.tip();
    if height == tip.height {
        return Some((tip.last_hash, tip.state_root()));
    }
    if height == 0 || height > tip.height {
        return None;
    }
    match ledger.header(height - 1) {
        Ok(Some(h)) => Some((h.hash(), h.state_root)),
        Ok(None) => None,
        Err(e) => {
            warn!(channel = %ledger.name, height, error = %e, "cannot read a block header for a checkpoint");
            None
        }
    }
}

/// The height, among those recorded in `heights` and reached by this node, at which a strict
/// majority of the consenters agree on a value other than this node's: the lowest one.
fn minority_height(
    chan: &Channel,
    heights: std::ops::RangeInclusive<u64>,
) -> Option<(u64, usize, usize)> {
    let cfg = chan.ledger.config();
    let consenters: Vec<&str> = cfg.consenters.iter().map(|n| n.name.as_str()).collect();
    let majority = consenters.len() / 2 + 1;
    let me = chan.node_name.as_str();
    let tip = chan.ledger.tip().height;
    let (lo, hi) = heights.into_inner();
    if lo > tip {
        return None;
    }
    let peers: Vec<(u64, HashMap<String, Value>)> = chan
        .checkpoints
        .peers
        .lock()
        .range(lo..=hi.min(tip))
        .map(|(h, v)| (*h, v.clone()))
        .collect();
    for (height, by_node) in &peers {
        let Some(mine) = own_at(&chan.ledger, *height) else {
            continue;
        };
        let mut counts: HashMap<Value, usize> = HashMap::new();
        for (node, v) in by_node {
            if node != me && consenters.contains(&node.as_str()) {
                *counts.entry(*v).or_default() += 1;
            }
        }
        if consenters.contains(&me) {
            *counts.entry(mine).or_default() += 1;
        }
        let agree = counts.get(&mine).copied().unwrap_or(0);
        if let Some((_, other)) = counts.iter().find(|(v, n)| **v != mine && **n >= majority) {
            return Some((*height, *other, agree));
        }
    }
    None
}

/// What the consenters' signed checkpoints say of this node's chain from some height on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainCheck {
    /// At this height (at or above the one asked about) other consenters signed this node's
    /// block hash and state root, enough of them to make a majority with this node. Block
    /// hashes chain, so the chain is the channel's at every height below as well.
    Confirmed(u64),
    /// At this height a majority of the consenters signed another block than this node's.
    Differs { height: u64, others: usize },
    /// Not known yet: no comparable checkpoint at or above the height.
    Unknown,
}

/// Compares this node's chain with the consenters' checkpoints at heights `from` and above
/// that this node has reached (a restored ledger checked to be the channel's chain,
/// `channel/rejoin.rs`).
pub fn check_chain_from(chan: &Channel, from: u64) -> ChainCheck {
    let cfg = chan.ledger.config();
    let consenters: Vec<&str> = cfg.consenters.iter().map(|n| n.name.as_str()).collect();
    let majority = consenters.len() / 2 + 1;
    let me = chan.node_name.as_str();
    let mine_counts = usize::from(consenters.contains(&me));
    let tip = chan.ledger.tip().height;
    if from > tip {
        return ChainCheck::Unknown;
    }
    let peers: Vec<(u64, HashMap<String, Value>)> = chan
        .checkpoints
        .peers
        .lock()
        .range(from..=tip)
        .map(|(h, v)| (*h, v.clone()))
        .collect();
    for (height, by_node) in &peers {
        let Some(mine) = own_at(&chan.ledger, *height) else {
            continue;
        };
        let mut agree = 0usize;
        let mut other: HashMap<Value, usize> = HashMap::new();
        for (node, v) in by_node {
            if node == me || !consenters.contains(&node.as_str()) {
                continue;
            }
            if *v == mine {
                agree += 1;
            } else {
                *other.entry(*v).or_default() += 1;
            }
        }
        if let Some(n) = other.values().copied().max().filter(|n| *n >= majority) {
            return ChainCheck::Differs {
                height: *height,
                others: n,
            };
        }
        if agree > 0 && agree + mine_counts >= majority {
            return ChainCheck::Confirmed(*height);
        }
    }
    ChainCheck::Unknown
}

/// The (block hash, state root) a strict majority of the channel's consenters signed, by
/// height, from the checkpoints peers sent: what a snapshot from any one peer must agree
/// with. This node's own ledger does not vote (it is the one catching up).
pub fn majority_anchors(chan: &Channel) -> BTreeMap<u64, (Hash, Hash)> {
    let cfg = chan.ledger.config();
    let consenters: Vec<&str> = cfg.consenters.iter().map(|n| n.name.as_str()).collect();
    let majority = consenters.len() / 2 + 1;
    let me = chan.node_name.as_str();
    let peers = chan.checkpoints.peers.lock();
    let mut out = BTreeMap::new();
    for (height, by_node) in peers.iter() {
        let mut counts: HashMap<Value, usize> = HashMap::new();
        for (node, v) in by_node {
            if node != me && consenters.contains(&node.as_str()) {
                *counts.entry(*v).or_default() += 1;
            }
        }
        if let Some((v, _)) = counts.into_iter().find(|(_, n)| *n >= majority) {
            out.insert(*height, v);
        }
    }
    out
}

/// Compares what peers sent for `heights` with this node's ledger and degrades the channel if
/// this node is in the minority.
pub fn evaluate(chan: &Channel, heights: std::ops::RangeInclusive<u64>) {
    let Some((height, other, agree)) = minority_height(chan, heights) else {
        return;
    };
    let mut reason = format!(
        "this node's ledger differs from the channel's at height {height}: {other} consenters agree on another block hash or state root, {agree} on this node's"
    );
    if let Ok(Some(m)) = chan
        .ledger
        .db()
        .get(crate::keys::restored(&chan.ledger.name))
    {
        if let Some((h, _)) = crate::backup::restore::parse_restored_marker(&m) {
            reason += &format!(
                " (this node was restored from a backup at height {h} that is not the channel's chain)"
            );
        }
    }
    if chan.checkpoints.degrade(Degraded {
        first_differing_height: height,
        reason: reason.clone(),
    }) {
        error!(channel = %chan.ledger.name, first_differing_height = height, "channel degraded, no longer serving it: {reason}");
        chan.release_leadership();
    }
}

/// The channel a checkpoint route names, and whether the frame is an answer; `None` for a
/// route that is not a checkpoint's.
pub fn parse_route(route: &str) -> Option<(&str, bool)> {
    if let Some(ch) = route.strip_prefix(ROUTE) {
        Some((ch, false))
    } else {
        route.strip_prefix(ANSWER_ROUTE).map(|ch| (ch, true))
    }
}

/// Handles a checkpoint frame from a peer (`answer`: one sent in answer to this node's):
/// checked, recorded, compared.
pub fn receive(node: &Node, chan: &Channel, bytes: &[u8], sender: &PeerCert, answer: bool) {
    let c = match Checkpoint::open(bytes, &sender.info.public_key) {
        Ok(c) => c,
        Err(e) => {
            debug!(channel = %chan.ledger.name, sender = %sender.info.common_name, error = %e, "checkpoint refused");
            return;
        }
    };
    if c.channel != chan.ledger.name {
        return;
    }
    // Only the node the certificate is, and only a node of this channel.
    let Some(peer) = chan.peer_named(&c.node) else {
        debug!(channel = %c.channel, node = %c.node, "checkpoint from a node not in the channel");
        return;
    };
    if let Err(why) = node.admit(&c.channel, &peer, sender) {
        debug!(channel = %c.channel, "checkpoint refused: {why}");
        return;
    }
    chan.checkpoints.record(&c);
    // Only the new height here, on the network thread; the periodic pass covers the rest.
    evaluate(chan, c.height..=c.height);
    publish(node, chan);
    if !answer {
        self::answer(node, chan, &c, &peer.peer_addr);
    }
}

/// Answers a peer's checkpoint with this node's own at its height, when the peer needs it:
///
/// - the peer is behind (a restored or lagging one) and reports a height this node passed and
///   would not otherwise sign (not its tip, not a multiple of [`EVERY`]), so that it can compare
///   its chain at its own tip — how a ledger restored from a backup learns, before it votes,
///   whether it is the channel's chain;
/// - the peer's checkpoint differs from this node's at that height, or is at this node's tip
///   while the channel is quiet here: a quiet channel's periodic checkpoints pause once its
///   peers agree, and a peer that restarted (or whose ledger was edited while it was down)
///   must still get this node's to compare with.
///
/// Answers go under [`ANSWER_ROUTE`], which is never answered (see the module's comment).
fn answer(node: &Node, chan: &Channel, c: &Checkpoint, addr: &str) {
    let tip = chan.ledger.tip().height;
    if c.height == 0 || c.height > tip {
        return;
    }
    let behind = c.height < tip && !c.height.is_multiple_of(EVERY);
    // This node's own periodic checkpoints pause while the channel is quiet.
    let unsent = c.height == tip && chan.quiet().is_quiet();
    let Some(mine) = own_checkpoint(chan, c.height) else {
        return;
    };
    let differs = (mine.block_hash, mine.state_root) != (c.block_hash, c.state_root);
    if !behind && !differs && !unsent {
        return;
    }
    let route = format!("{ANSWER_ROUTE}{}", chan.ledger.name);
    node.transport.send(
        addr,
        crate::transport::frame(&route, &mine.sign(&node.identity)),
    );
    node.metrics
        .checkpoints_sent
        .with_label_values(&[&chan.ledger.name, ANSWER])
        .inc();
}

/// This node's checkpoints for a channel: at the last multiple of [`EVERY`] and at the tip.
fn own_checkpoints(chan: &Channel) -> Vec<Checkpoint> {
    let tip = chan.ledger.tip().height;
    let mut heights = vec![tip];
    let aligned = tip - tip % EVERY;
    if aligned > 0 && aligned != tip {
        heights.push(aligned);
    }
    heights
        .into_iter()
        .filter_map(|h| own_checkpoint(chan, h))
        .collect()
}

/// This node's checkpoint of the channel at `height`, if it has that block.
fn own_checkpoint(chan: &Channel, height: u64) -> Option<Checkpoint> {
    own_at(&chan.ledger, height).map(|(block_hash, state_root)| Checkpoint {
        channel: chan.ledger.name.clone(),
        node: chan.node_name.clone(),
        height,
        block_hash,
        state_root,
    })
}

/// Whether every other node of the channel reported the value of `own` at its height.
fn agreed(chan: &Channel, own: &Checkpoint) -> bool {
    let peers = chan.checkpoints.peers.lock();
    let Some(at) = peers.get(&own.height) else {
        return false;
    };
    let value = (own.block_hash, own.state_root);
    chan.ledger
        .config()
        .nodes()
        .filter(|n| n.name != chan.node_name)
        .all(|n| at.get(&n.name) == Some(&value))
}

/// Sends and compares checkpoints every [`PERIOD`] until the node is dropped or `stop` is set.
pub fn run(node: Weak<Node>, stop: Arc<AtomicBool>) {
    let mut sent: HashMap<String, Instant> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(PERIOD);
        let Some(node) = node.upgrade() else { return };
        let now = Instant::now();
        let channels = node.channels();
        sent.retain(|name, _| channels.iter().any(|c| &c.ledger.name == name));
        for chan in channels {
            if node.is_frozen(&chan.ledger.name) {
                continue;
            }
            let own = own_checkpoints(&chan);
            // A quiet channel's checkpoints do not change (any block wakes it): once every
            // peer has been seen to agree at this node's tip, they go out again only now and
            // then. Until then (this node restarted, or disagrees) they go out every second,
            // and quiet peers answer them.
            let last = sent.get(&chan.ledger.name);
            if chan.quiet().is_quiet()
                && last.is_some_and(|t| now.duration_since(*t) < QUIET_REFRESH)
                && own.first().is_some_and(|tip| agreed(&chan, tip))
            {
                continue;
            }
            sent.insert(chan.ledger.name.clone(), now);
            let route = format!("{ROUTE}{}", chan.ledger.name);
            let frames: Vec<_> = own
                .iter()
                .map(|c| crate::transport::frame(&route, &c.sign(&node.identity)))
                .collect();
            for peer in chan.ledger.config().nodes() {
                if peer.name == chan.node_name {
                    continue;
                }
                for f in &frames {
                    node.transport.send(&peer.peer_addr, f.clone());
                }
                node.metrics
                    .checkpoints_sent
                    .with_label_values(&[&chan.ledger.name, PERIODIC])
                    .inc_by(frames.len() as u64);
            }
            evaluate(&chan, 0..=u64::MAX);
            // Heights well behind the tip were compared in earlier passes (and a late one is
            // compared when it arrives): not worth a header read every second.
            let keep_from = chan.ledger.tip().height.saturating_sub(4 * EVERY);
            chan.checkpoints.prune_below(keep_from);
            publish(&node, &chan);
        }
    }
}

/// The channel's degraded state as metrics.
fn publish(node: &Node, chan: &Channel) {
    let d = chan.degraded();
    let ch = [chan.ledger.name.as_str()];
    node.metrics
        .degraded
        .with_label_values(&ch)
        .set(d.is_some() as i64);
    node.metrics
        .first_differing_height
        .with_label_values(&ch)
        .set(d.map_or(0, |d| d.first_differing_height) as i64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::{OrgCa, Role};

    #[test]
    fn signed_checkpoints_round_trip_and_forgeries_fail() {
        let ca = OrgCa::generate("org1").expect("ca");
        let a = ca.issue(Role::Node, "a", &[]).expect("issue");
        let b = ca.issue(Role::Node, "b", &[]).expect("issue");
        let c = Checkpoint {
            channel: "ch".into(),
            node: "a".into(),
            height: 64,
            block_hash: Hash([1; 32]),
            state_root: Hash([2; 32]),
        };
        let bytes = c.sign(&a);
        assert_eq!(
            Checkpoint::open(&bytes, &a.info.public_key).expect("open"),
            c
        );
        // Another node's key.
        assert!(matches!(
            Checkpoint::open(&bytes, &b.info.public_key),
            Err(CheckpointError::BadSignature)
        ));
        // Any byte changed.
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 1;
            assert!(
                Checkpoint::open(&t, &a.info.public_key).is_err(),
                "byte {i}"
            );
        }
        assert!(Checkpoint::open(&bytes[..bytes.len() - 1], &a.info.public_key).is_err());
    }

    #[test]
    fn the_first_cause_stays_and_the_lowest_height_wins() {
        let t = Tracker::default();
        assert!(t.degraded().is_none());
        assert!(t.degrade(Degraded {
            first_differing_height: 10,
            reason: "x".into()
        }));
        assert!(!t.degrade(Degraded {
            first_differing_height: 4,
            reason: "y".into()
        }));
        let d = t.degraded().expect("degraded");
        assert_eq!((d.first_differing_height, d.reason.as_str()), (4, "x"));
    }
}
