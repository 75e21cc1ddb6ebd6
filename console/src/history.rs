//! Each channel's configuration history. The client API serves the configuration in force;
//! each earlier one is a committed configuration transaction in some block, and the node counts
//! them (`config_sequence` in its status). So when a channel page finds that the node counts
//! more changes than the console knows, the console reads the channel's blocks from where it
//! stopped (the node's block stream, signed as the organization) in the background until it has
//! them all, then lets the stream go. A channel never reconfigured is never read. Pages read a
//! snapshot: the changes found so far and how far the reading got.

use crate::app::App;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tally_protocol::{Block, ChannelConfig, Hash, Payload, TxStatus};

/// Pause before following again after the stream broke.
const RETRY: Duration = Duration::from_secs(2);

/// One committed change of a channel's configuration.
#[derive(Clone, Debug)]
pub struct Change {
    pub sequence: u64,
    pub block: u64,
    pub tx_id: Hash,
    pub time_ms: u64,
    /// `org/name` of each approving admin, from the approvals' certificates.
    pub approvers: Vec<String>,
    pub config: ChannelConfig,
}

/// What is known of a channel's history at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub changes: Vec<Change>,
    /// Blocks below this one have been read.
    pub scanned: u64,
    /// Why the last follow failed, while it keeps trying.
    pub trouble: Option<String>,
    /// A reading is under way.
    pub reading: bool,
}

#[derive(Default)]
pub struct Histories {
    channels: Mutex<HashMap<String, Arc<Mutex<Snapshot>>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Histories {
    /// The channel's history so far. When the node counts more changes (`applied`) than are
    /// known and no reading is under way, one starts.
    pub fn snapshot(&self, app: &Arc<App>, channel: &str, applied: u64) -> Snapshot {
        let state = self
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(channel.to_string())
            .or_default()
            .clone();
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        if (s.changes.len() as u64) < applied && !s.reading {
            s.reading = true;
            let task = tokio::spawn(read(
                app.clone(),
                channel.to_string(),
                applied,
                state.clone(),
            ));
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
        s.clone()
    }

    /// Ends every reading (when the console stops).
    pub fn stop(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

/// Reads blocks from where the last reading stopped until `applied` changes are known.
async fn read(app: Arc<App>, ch: String, applied: u64, state: Arc<Mutex<Snapshot>>) {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let done = |s: &Snapshot| s.changes.len() as u64 >= applied;
    'follow: loop {
        let from = lock().scanned;
        let ch_ref = ch.as_str();
        let mut rx = match app
            .ledger
            .read(ch_ref, |c| async move { c.follow(ch_ref, from).await })
            .await
        {
            Ok(rx) => rx,
            Err(e) => {
                lock().trouble = Some(e.to_string());
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        while let Some(next) = rx.recv().await {
            match next {
                Ok(block) => {
                    let mut s = lock();
                    s.changes.extend(changes_in(&block));
                    s.scanned = block.header.number + 1;
                    s.trouble = None;
                    if done(&s) {
                        break 'follow;
                    }
                }
                Err(e) => {
                    lock().trouble = Some(e.to_string());
                    break;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
    lock().reading = false;
}

/// The committed configuration changes of a block.
pub fn changes_in(b: &Block) -> Vec<Change> {
    b.txs
        .iter()
        .zip(&b.results)
        .zip(&b.effects)
        .filter(|((_, r), _)| matches!(r, TxStatus::Committed))
        .filter_map(|((tx, _), fx)| match &tx.body.payload {
            Payload::Config(u) => Some(Change {
                sequence: u.sequence,
                block: b.header.number,
                tx_id: tx.id(),
                time_ms: b.header.timestamp_ms,
                approvers: u
                    .approvals
                    .iter()
                    .map(
                        |a| match tally_protocol::identity::inspect(&a.certificate) {
                            Ok(i) => format!("{}/{}", i.org, i.common_name),
                            Err(_) => "an unreadable certificate".into(),
                        },
                    )
                    .collect(),
                config: u.config.clone(),
            }),
            // A proposal that met its policy here: its votes are on the proposal's record.
            _ => match tally_protocol::proposal::installed_config(
                tx,
                &TxStatus::Committed,
                fx.as_ref(),
            ) {
                Ok(Some(i)) => Some(Change {
                    sequence: i.sequence,
                    block: b.header.number,
                    tx_id: tx.id(),
                    time_ms: b.header.timestamp_ms,
                    approvers: vec!["the votes on a proposal (tallyctl proposal show)".into()],
                    config: i.config,
                }),
                _ => None,
            },
        })
        .collect()
}

/// What a configuration sets, in words, for the first change (the genesis configuration it
/// replaced is not served by the client API, only committed to by block 0).
pub fn summary(c: &ChannelConfig) -> Vec<String> {
    let names = |ns: &[tally_protocol::NodeRef]| {
        ns.iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let policy = |l: &[String]| {
        if l.is_empty() {
            "every member".to_string()
        } else {
            l.join(", ")
        }
    };
    vec![
        format!(
            "members: {}",
            c.members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!("consenters: {}", names(&c.consenters)),
        format!(
            "observers: {}",
            if c.observers.is_empty() {
                "none".into()
            } else {
                names(&c.observers)
            }
        ),
        format!(
            "readers: {}; writers: {}; admins: {}",
            policy(&c.policies.readers),
            policy(&c.policies.writers),
            policy(&c.policies.admins)
        ),
        format!(
            "blocks cut at {} transactions, {} bytes or {} ms",
            c.batch.max_txs, c.batch.max_bytes, c.batch.timeout_ms
        ),
    ]
}

/// What changed from `old` to `new`, in words, one item each.
pub fn differences(old: &ChannelConfig, new: &ChannelConfig) -> Vec<String> {
    let mut out = Vec::new();
    let names = |v: &mut dyn Iterator<Item = &String>| v.cloned().collect::<Vec<String>>();
    let mut diff = |what: &str, a: Vec<String>, b: Vec<String>| {
        let added: Vec<&String> = b.iter().filter(|x| !a.contains(x)).collect();
        let removed: Vec<&String> = a.iter().filter(|x| !b.contains(x)).collect();
        for x in added {
            out.push(format!("{what} {x} added"));
        }
        for x in removed {
            out.push(format!("{what} {x} removed"));
        }
    };
    diff(
        "member",
        names(&mut old.members.iter().map(|m| &m.name)),
        names(&mut new.members.iter().map(|m| &m.name)),
    );
    diff(
        "consenter",
        names(&mut old.consenters.iter().map(|n| &n.name)),
        names(&mut new.consenters.iter().map(|n| &n.name)),
    );
    diff(
        "observer",
        names(&mut old.observers.iter().map(|n| &n.name)),
        names(&mut new.observers.iter().map(|n| &n.name)),
    );
    let policy = |l: &[String]| {
        if l.is_empty() {
            "every member".to_string()
        } else {
            l.join(", ")
        }
    };
    for (what, a, b) in [
        ("readers", &old.policies.readers, &new.policies.readers),
        ("writers", &old.policies.writers, &new.policies.writers),
        ("admins", &old.policies.admins, &new.policies.admins),
    ] {
        if a != b {
            out.push(format!("{what}: {} → {}", policy(a), policy(b)));
        }
    }
    if old.batch != new.batch {
        out.push(format!(
            "blocks cut at {} transactions, {} bytes or {} ms",
            new.batch.max_txs, new.batch.max_bytes, new.batch.timeout_ms
        ));
    }
    for (what, a, b) in [
        (
            "largest transaction (bytes)",
            old.max_tx_bytes as u64,
            new.max_tx_bytes as u64,
        ),
        (
            "time window (s)",
            old.tx_window_s as u64,
            new.tx_window_s as u64,
        ),
        (
            "snapshot interval (blocks)",
            old.snapshot_interval,
            new.snapshot_interval,
        ),
    ] {
        if a != b {
            out.push(format!("{what}: {a} → {b}"));
        }
    }
    let same_cas = old.members.iter().all(|m| {
        new.members
            .iter()
            .find(|n| n.name == m.name)
            .is_none_or(|n| n.ca_pem == m.ca_pem)
    });
    if !same_cas {
        out.push("a member's CA certificate replaced".into());
    }
    if out.is_empty() {
        out.push("no visible difference".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::{NodeRef, OrgCa, OrgMember};

    fn config() -> ChannelConfig {
        let member = |o: &str| OrgMember::new(o, &OrgCa::generate(o).unwrap().cert_pem());
        let node = |id: u64| NodeRef {
            id,
            name: format!("n{id}"),
            org: "org1".into(),
            peer_addr: "127.0.0.1:1".into(),
            api_url: "https://127.0.0.1:7051".into(),
        };
        ChannelConfig::new(
            "main",
            vec![member("org1"), member("org2")],
            vec![node(1), node(2)],
            vec![],
        )
    }

    #[test]
    fn differences_name_what_changed() {
        let old = config();
        let mut new = old.clone();
        new.members.pop();
        new.consenters.push(NodeRef {
            id: 3,
            name: "n3".into(),
            ..old.consenters[0].clone()
        });
        new.policies.admins = vec!["org1".into()];
        new.batch.max_txs = 100;
        new.tx_window_s = 60;
        let d = differences(&old, &new);
        assert_eq!(
            d,
            [
                "member org2 removed",
                "consenter n3 added",
                "admins: every member → org1",
                "blocks cut at 100 transactions, 2097152 bytes or 20 ms",
                "time window (s): 600 → 60",
            ]
        );
        assert_eq!(differences(&old, &old), ["no visible difference"]);
    }
}
