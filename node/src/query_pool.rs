//! Chaincode queries run on blocking threads behind a semaphore: a query may burn a call's
//! whole fuel, and running it on the async workers would stall the peer transport and the
//! admin API with it. A bounded number run at once, a bounded number wait; beyond that the
//! caller is told to come back later.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Fuel a query may burn: a fifth of what one transaction's call may, since a query commits
/// nothing and whoever may read may send as many as they like.
pub const QUERY_FUEL: u64 = 20_000_000;

pub struct QueryPool {
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// The pool is full: the query was not run.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

impl QueryPool {
    /// `concurrency` queries at once (at least one), `max_waiting` more queued.
    pub fn new(concurrency: usize, max_waiting: usize) -> QueryPool {
        QueryPool {
            running: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// Half the cores (at least one), and eight waiting per running query.
    pub fn for_this_machine() -> QueryPool {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let n = (cores / 2).max(1);
        QueryPool::new(n, 8 * n)
    }

    /// Runs `f` on a blocking thread once a slot is free.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy);
        }
        let permit = self.running.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let permit = permit.map_err(|_| Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|_| Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn refuses_beyond_the_queue() {
        let pool = Arc::new(QueryPool::new(1, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let p = pool.clone();
        let first = tokio::spawn(async move { p.run(move || rx.recv().is_ok()).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let p = pool.clone();
        let second = tokio::spawn(async move { p.run(|| 2).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.run(|| 3).await, Err(Busy));
        tx.send(()).expect("release the first");
        assert_eq!(first.await.expect("join"), Ok(true));
        assert_eq!(second.await.expect("join"), Ok(2));
    }
}
