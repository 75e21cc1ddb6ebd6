//! Bounds shared by the listeners: back-off when accepting fails; and the check that a
//! channel's largest block fits a peer frame.

use std::time::{Duration, Instant};
use tracing::warn;

/// Accept errors (out of file descriptors, above all) repeat at once if retried at once: each
/// failure waits longer, up to a second, and is logged at most every ten seconds with the
/// number of failures in between.
pub struct AcceptBackoff {
    listener: &'static str,
    delay: Duration,
    failures: u64,
    logged: Option<Instant>,
}

const FIRST: Duration = Duration::from_millis(10);
const MOST: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(10);

impl AcceptBackoff {
    pub fn new(listener: &'static str) -> AcceptBackoff {
        AcceptBackoff {
            listener,
            delay: Duration::ZERO,
            failures: 0,
            logged: None,
        }
    }

    /// Logs (sometimes) and waits before the next accept.
    pub async fn failed(&mut self, e: &std::io::Error) {
        self.failures += 1;
        if self.logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            warn!(
                listener = self.listener,
                error = %e,
                failures = self.failures,
                "accept failed; backing off"
            );
            self.logged = Some(Instant::now());
            self.failures = 0;
        }
        self.delay = (self.delay * 2).clamp(FIRST, MOST);
        tokio::time::sleep(self.delay).await;
    }

    pub fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// Accepts the next connection, backing off while accepting fails.
    pub async fn accept(
        &mut self,
        listener: &tokio::net::TcpListener,
    ) -> (tokio::net::TcpStream, std::net::SocketAddr) {
        loop {
            match listener.accept().await {
                Ok(x) => {
                    self.succeeded();
                    return x;
                }
                Err(e) => self.failed(&e).await,
            }
        }
    }
}

/// Raft sends at most this many bytes of entries per message (and one entry more).
pub const RAFT_MSG_BYTES: u64 = 4 * 1024 * 1024;

// A Raft append carries up to RAFT_MSG_BYTES of entries plus one entry, and an entry is one
// batch, which channel configurations bound by MAX_BATCH_BYTES. If the frame limit ever
// shrinks below that, the build fails here instead of a channel failing to replicate.
const _: () = assert!(
    crate::transport::MAX_FRAME as u64
        >= RAFT_MSG_BYTES + tally_protocol::config::MAX_BATCH_BYTES as u64 + 64 * 1024
);
