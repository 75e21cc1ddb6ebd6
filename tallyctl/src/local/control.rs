//! Stopping, killing, restarting and wiping nodes, and shutting the cluster down.

use super::*;

impl LocalCluster {
    /// Takes the child out of the table, marked as going down on purpose.
    pub(super) fn take_child(&self, name: &str) -> Option<Child> {
        let mut procs = self.procs.lock().unwrap();
        let p = procs
            .get_mut(name)
            .unwrap_or_else(|| panic!("the local cluster has no node {name:?}"));
        p.poll();
        p.expected_down = true;
        p.pid = None;
        p.child.take()
    }

    /// Kills the node with SIGKILL and waits until the process is gone. No-op when it is not
    /// running.
    pub async fn kill(&self, name: &str) -> Result<(), ClientError> {
        if let Some(mut child) = self.take_child(name) {
            child
                .kill()
                .await
                .map_err(|e| other(format!("cannot kill node {name}: {e}")))?;
        }
        Ok(())
    }

    /// Stops the node with SIGTERM and waits for it to exit (at most [`STOP_TIMEOUT`]; then it
    /// is killed and an error says so). An exit status other than success is an error too.
    pub async fn stop(&self, name: &str) -> Result<(), ClientError> {
        let Some(mut child) = self.take_child(name) else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            #[cfg(unix)]
            send_signal(pid, SIGTERM)
                .map_err(|e| other(format!("cannot signal node {name}: {e}")))?;
            #[cfg(not(unix))]
            let _ = pid;
        }
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(other(format!(
                "node {name} exited with {status} after SIGTERM; last log lines:\n{}",
                self.log_tail(name, 20)
            ))),
            Ok(Err(e)) => Err(other(format!("cannot wait for node {name}: {e}"))),
            Err(_) => {
                let _ = child.kill().await;
                Err(other(format!(
                    "node {name} did not stop within {STOP_TIMEOUT:?} of SIGTERM and was killed; last log lines:\n{}",
                    self.log_tail(name, 20)
                )))
            }
        }
    }

    /// Starts a node that was killed or stopped, with the same flags and data, and waits until
    /// it listens. It rejoins its channels by itself; use [`LocalCluster::wait_node_ready`] to
    /// wait until it caught up.
    pub async fn start_node(&self, name: &str) -> Result<(), ClientError> {
        self.spawn(name)?;
        self.wait_listening(name, Instant::now() + START_TIMEOUT)
            .await
    }

    /// Sets an environment variable for `name`'s next starts (its running process keeps
    /// its environment: restart it). For tests, such as a node with a skewed clock.
    pub fn set_node_env(&self, name: &str, key: &str, value: &str) {
        let mut env = self.node_env.lock().unwrap();
        let vars = env.entry(name.to_string()).or_default();
        vars.retain(|(k, _)| k != key);
        vars.push((key.to_string(), value.to_string()));
    }

    /// Stops the node if it runs (SIGTERM), then starts it again (see
    /// [`LocalCluster::start_node`]).
    pub async fn restart(&self, name: &str) -> Result<(), ClientError> {
        self.stop(name).await?;
        self.start_node(name).await
    }

    /// Kills the node, deletes its data, starts it again and creates its channels on it through
    /// the admin API, so that it rejoins them from scratch and catches up from its peers (by
    /// Raft log or snapshot). Waits until the channels are created, not until it caught up.
    pub async fn wipe(&self, name: &str) -> Result<(), ClientError> {
        self.kill(name).await?;
        let data = self.data_dir(name);
        if data.exists() {
            std::fs::remove_dir_all(&data).map_err(|e| io_err("cannot delete", &data, e))?;
        }
        self.start_node(name).await?;
        let deadline = Instant::now() + START_TIMEOUT;
        for cfg in self.file.channels.iter().filter(|c| c.node(name).is_some()) {
            let approvals = self.genesis_approvals(cfg, Some(name)).await?;
            self.create_channel_on(name, cfg, &approvals, deadline)
                .await?;
        }
        Ok(())
    }

    /// Stops every node gracefully (SIGTERM, in parallel) and reports the first failure.
    pub async fn shutdown(self) -> Result<(), ClientError> {
        let names = self.node_names();
        let results = futures_util::future::join_all(names.iter().map(|n| self.stop(n))).await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let procs = self.procs.get_mut().unwrap_or_else(|e| e.into_inner());
        for p in procs.values_mut() {
            if let Some(child) = p.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}
