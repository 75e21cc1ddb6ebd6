//! Channels with members whose nodes run elsewhere: this side creates them on its nodes once
//! every member approved the genesis, its own organizations by the keys it holds and the
//! external ones by the approvals they sent.

use super::*;

/// How long the nodes of channels created here may wait for their leader. A new channel
/// elects its first leader only when every consenter holds the genesis (see the node's
/// `channel::rejoin`), so the other side's `up` must run too; this leaves its team time.
const JOIN_TIMEOUT: Duration = Duration::from_secs(600);

/// A channel that cannot be created yet: the external members that have not approved its
/// genesis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingChannel {
    pub channel: String,
    /// The genesis to approve (what `tallyctl channel approve-genesis --genesis` reads).
    pub genesis: ChannelConfig,
    pub missing: Vec<String>,
}

impl LocalCluster {
    /// Creates every channel that waits for external members' approvals on this cluster's
    /// nodes, with the approvals of the organizations held here and those in `given` (each
    /// checked against the channel's genesis; approvals of other channels are ignored). Returns
    /// the channels that still miss approvals; they are left uncreated.
    ///
    /// An approval in `given` that names this channel but does not verify (another genesis, a
    /// certificate of another organization) is an error: it is reported, not skipped.
    pub async fn ensure_channels(
        &mut self,
        given: &[Approval],
    ) -> Result<Vec<PendingChannel>, ClientError> {
        let mut still = Vec::new();
        let mut created = false;
        let deadline = Instant::now() + START_TIMEOUT;
        for name in self.file.pending.clone() {
            let cfg = self.config(&name);
            let cas = cfg
                .validate()
                .map_err(|e| other(format!("channel {name}: {e}")))?;
            let mut approvals = self.genesis_approvals(&cfg, None).await?;
            for a in given {
                if let Ok(org) = genesis::approver(&cfg, &cas, a) {
                    if !approvals
                        .iter()
                        .any(|h| genesis::approver(&cfg, &cas, h).is_ok_and(|o| o == org))
                    {
                        approvals.push(a.clone());
                    }
                }
            }
            let missing = genesis::missing(&cfg, &cas, &approvals)
                .map_err(|e| other(format!("channel {name}: {e}")))?;
            if !missing.is_empty() {
                still.push(PendingChannel {
                    channel: name,
                    genesis: cfg,
                    missing,
                });
                continue;
            }
            let nodes: Vec<String> = self.channel_nodes(&name);
            for n in &nodes {
                self.create_channel_on(n, &cfg, &approvals, deadline)
                    .await?;
            }
            self.file.pending.retain(|p| *p != name);
            write_cluster_file(&self.dir, &self.file)?;
            tracing::info!(channel = %name, nodes = ?nodes, "created with every member's approval");
            created = true;
        }
        if created {
            let others: Vec<String> = self
                .file
                .channels
                .iter()
                .flat_map(|c| c.consenters.iter())
                .filter(|n| !self.file.nodes.iter().any(|e| e.name == n.name))
                .map(|n| format!("{} ({})", n.name, n.peer_addr))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if !others.is_empty() {
                eprintln!(
                    "==> waiting for the channels' leaders: a new channel elects its first one when every consenter holds the genesis, \
                     so the other side's consenters ({}) must be up too (their `tallyctl up` with the approvals)",
                    others.join(", ")
                );
            }
            // A leader may be on the other side, and this side's nodes may have a chain to
            // catch up with: ready means every channel has a leader here too.
            self.wait_ready(JOIN_TIMEOUT).await?;
        }
        Ok(still)
    }
}
