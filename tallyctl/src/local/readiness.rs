//! Leaders, statuses and waiting until nodes and channels are ready and converged.

use super::*;

impl LocalCluster {
    /// Name of the channel's leader: the node that reports itself leader in the highest term.
    /// `None` while no running node claims leadership.
    pub async fn leader(&self, channel: &str) -> Option<String> {
        let statuses = self.statuses(channel).await;
        statuses
            .into_iter()
            .filter_map(|(name, s)| s.ok().map(|s| (name, s)))
            .filter(|(_, s)| s.role == RaftRole::Leader)
            .max_by_key(|(_, s)| s.term)
            .map(|(name, _)| name)
    }

    /// Status of the channel on each of its running nodes (in Raft id order).
    pub async fn statuses(
        &self,
        channel: &str,
    ) -> Vec<(String, Result<ChannelStatus, ClientError>)> {
        let names: Vec<String> = self
            .channel_nodes(channel)
            .into_iter()
            .filter(|n| self.is_running(n))
            .collect();
        let futs = names.iter().map(|n| {
            let c = self.client(n);
            async move { c.status(channel).await }
        });
        let results = futures_util::future::join_all(futs).await;
        names.into_iter().zip(results).collect()
    }

    /// Why the node is not ready yet, or `None` when it is: every channel it serves has a
    /// leader and reports itself ready, and `/readyz` answers 200.
    pub(super) async fn not_ready(&self, name: &str) -> Option<String> {
        if !self.is_running(name) {
            return Some("the process is not running".into());
        }
        let c = self.client(name);
        for ch in self.node_channels(name) {
            match c.status(&ch).await {
                // Channels are created on their nodes before this is asked; one a node does not
                // serve was left by it (`tallyctl channel leave`) or taken from it by a
                // configuration change, and is not resumed.
                Err(e) if e.api_code() == Some("unknown_channel") => {}
                Err(e) => return Some(format!("channel {ch}: {e}")),
                Ok(s) if s.leader_id == 0 => return Some(format!("channel {ch}: no leader yet")),
                Ok(s) if !s.ready => {
                    return Some(format!(
                        "channel {ch}: not ready (applied {} of {} committed)",
                        s.applied_index, s.commit_index
                    ))
                }
                Ok(_) => {}
            }
        }
        match c.ready().await {
            Ok(true) => None,
            Ok(false) => Some("/readyz does not answer 200".into()),
            Err(e) => Some(format!("/readyz: {e}")),
        }
    }

    /// Waits until the node is ready (see [`LocalCluster::wait_ready`]).
    pub async fn wait_node_ready(&self, name: &str, timeout: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let why = match self.not_ready(name).await {
                None => return Ok(()),
                Some(why) => why,
            };
            if !self.is_running(name) {
                let how = match self.exited_on_its_own(name) {
                    Some(s) => format!("exited on its own ({s})"),
                    None => "is not running".to_string(),
                };
                return Err(other(format!(
                    "node {name} {how} while waiting for it to become ready; last log lines:\n{}",
                    self.log_tail(name, 30)
                )));
            }
            if Instant::now() >= deadline {
                return Err(other(format!(
                    "node {name} not ready after {timeout:?}: {why}; last log lines:\n{}",
                    self.log_tail(name, 20)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every running node is ready: each channel it serves has a leader and the
    /// node says it is ready (`ready` in the channel status, `/readyz` 200). Nodes that were
    /// killed or stopped through this launcher are skipped.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        for n in self.node_names() {
            let expected_down = self.procs.lock().unwrap()[&n].expected_down;
            if expected_down {
                continue;
            }
            self.wait_node_ready(&n, deadline.saturating_duration_since(Instant::now()))
                .await?;
        }
        Ok(())
    }

    /// Waits until every running node of the channel has the same height, last block hash and
    /// state root, and returns that status (of the first node).
    pub async fn wait_converged(
        &self,
        channel: &str,
        timeout: Duration,
    ) -> Result<ChannelStatus, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let statuses = self.statuses(channel).await;
            let mut why = None;
            let mut first: Option<&ChannelStatus> = None;
            for (name, s) in &statuses {
                match (s, first) {
                    (Err(e), _) => why = Some(format!("{name}: {e}")),
                    (Ok(s), None) => first = Some(s),
                    (Ok(s), Some(f)) => {
                        if (s.height, s.last_block_hash, s.state_root)
                            != (f.height, f.last_block_hash, f.state_root)
                        {
                            why = Some("nodes differ".into());
                        }
                    }
                }
            }
            if statuses.is_empty() {
                why = Some("no node of the channel is running".into());
            }
            match (why, first) {
                (None, Some(f)) => return Ok(f.clone()),
                (why, _) if Instant::now() >= deadline => {
                    let table: Vec<String> = statuses
                        .iter()
                        .map(|(n, s)| match s {
                            Ok(s) => format!(
                                "  {n}: height {} last block {} state root {} role {:?} leader {}",
                                s.height, s.last_block_hash, s.state_root, s.role, s.leader_id
                            ),
                            Err(e) => format!("  {n}: {e}"),
                        })
                        .collect();
                    return Err(other(format!(
                        "channel {channel} did not converge within {timeout:?} ({}):\n{}",
                        why.unwrap_or_default(),
                        table.join("\n")
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    // ----- processes -------------------------------------------------------------------------
}
