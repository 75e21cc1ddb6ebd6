//! Fencing: a replica writes only while it surely holds the leader lease. Checking the lease
//! in a loop is not enough: a replica paused (a stopped process, a frozen VM, a long GC-like
//! stall) wakes with writes in flight while another replica already leads. So every write of
//! the operator's Kubernetes client, and every call to a node's admin API, first asks the
//! fence, which opens only until the lease's duration (less a margin) after the start of the
//! last successful renewal, on the monotonic clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Taken off the lease's duration: the other replica reads the renewal time on its own wall
/// clock, in whole seconds.
pub const MARGIN: Duration = Duration::from_secs(2);

/// Until when this replica may write.
pub struct Fence {
    base: Instant,
    /// Milliseconds after `base`; 0 while the lease was never held.
    until_ms: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("not acting: this replica's leader lease ran out {0:?} ago without a renewal (another replica may lead)")]
pub struct FencedOut(pub Duration);

impl Default for Fence {
    fn default() -> Self {
        Fence::new()
    }
}

impl Fence {
    pub fn new() -> Fence {
        Fence {
            base: Instant::now(),
            until_ms: AtomicU64::new(0),
        }
    }

    /// A renewal that was sent at `started` succeeded: the lease holds for `lease` from then.
    pub fn renewed(&self, started: Instant, lease: Duration) {
        let until = started.saturating_duration_since(self.base) + lease.saturating_sub(MARGIN);
        self.until_ms
            .fetch_max(until.as_millis() as u64, Ordering::SeqCst);
    }

    /// How long writes stay allowed; zero once the fence has closed.
    pub fn remaining(&self) -> Duration {
        let until = Duration::from_millis(self.until_ms.load(Ordering::SeqCst));
        until.saturating_sub(self.base.elapsed())
    }

    /// `Ok` while this replica may write.
    pub fn check(&self) -> Result<(), FencedOut> {
        let until = Duration::from_millis(self.until_ms.load(Ordering::SeqCst));
        let now = self.base.elapsed();
        if now < until {
            Ok(())
        } else {
            Err(FencedOut(now - until))
        }
    }
}

/// Wraps the Kubernetes client's HTTP service so that every request but a read passes the
/// fence.
#[derive(Clone)]
pub struct FenceLayer(pub Arc<Fence>);

impl<S> tower::Layer<S> for FenceLayer {
    type Service = Fenced<S>;
    fn layer(&self, inner: S) -> Fenced<S> {
        Fenced {
            inner,
            fence: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Fenced<S> {
    inner: S,
    fence: Arc<Fence>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower::Service<hyper::Request<B>> for Fenced<S>
where
    S: tower::Service<hyper::Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: hyper::Request<B>) -> Self::Future {
        if req.method() != hyper::Method::GET {
            if let Err(e) = self.fence.check() {
                tracing::warn!(method = %req.method(), uri = %req.uri(), "{e}");
                return Box::pin(async move { Err(e.into()) });
            }
        }
        let call = self.inner.call(req);
        Box::pin(async move { call.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_opens_for_a_lease_less_the_margin_from_the_renewal_start() {
        let f = Fence::new();
        assert!(f.check().is_err(), "closed before the lease was ever held");
        let lease = Duration::from_secs(15);
        f.renewed(Instant::now(), lease);
        assert!(f.check().is_ok());
        let left = f.remaining();
        assert!(left <= lease - MARGIN && left > lease - MARGIN - Duration::from_secs(1));
        // A renewal sent long ago (the replica was paused while it was in flight) gives
        // no time.
        let g = Fence::new();
        let long_ago = Instant::now();
        std::thread::sleep(Duration::from_millis(30));
        g.renewed(long_ago, Duration::from_millis(20) + MARGIN);
        assert!(g.check().is_err());
        assert_eq!(g.remaining(), Duration::ZERO);
        // An older renewal finishing late never shortens a newer one.
        f.renewed(long_ago, Duration::ZERO);
        assert!(f.check().is_ok());
    }
}
