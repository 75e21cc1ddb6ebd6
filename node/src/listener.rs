//! Bounds on the HTTP listeners (client API and admin API): how many connections at once,
//! overall and from one address, how long a request's header may take to arrive, and how long
//! a connection may sit idle. Without them, idle or slow connections pile up until the node
//! runs out of file descriptors.

use crate::http::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bounds of one listener.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_per_address: usize,
    /// Time for a request's header to arrive (and for a TLS handshake). On a kept-alive
    /// connection the wait starts when the previous answer was sent, so this is also how long
    /// such a connection may sit between requests.
    pub header_timeout: Duration,
    /// A connection with no request in progress and no bytes either way for this long is
    /// closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_per_address: 1024,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Admits connections within the global and per-address limits.
pub struct Gate {
    global: Arc<Semaphore>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    limits: Limits,
}

/// A connection's place; released when dropped.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut m = self.gate.per_address.lock();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    Node,
    Address,
}

impl Gate {
    pub fn new(limits: Limits) -> Arc<Gate> {
        Arc::new(Gate {
            global: Arc::new(Semaphore::new(limits.max_connections)),
            per_address: Mutex::new(HashMap::new()),
            limits,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Full> {
        let permit = self
            .global
            .clone()
            .try_acquire_owned()
            .map_err(|_| Full::Node)?;
        let mut m = self.per_address.lock();
        let n = m.entry(ip).or_insert(0);
        if *n >= self.limits.max_per_address {
            return Err(Full::Address);
        }
        *n += 1;
        Ok(Admitted {
            _permit: permit,
            gate: self.clone(),
            ip,
        })
    }
}

/// When a connection last moved bytes, and how many of its requests are being handled.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(a: &Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A stream that records when bytes last moved.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a connection ended.
#[derive(Debug)]
pub enum Ended {
    /// Closed by the client, or after an error it caused.
    Closed(Option<hyper::Error>),
    /// Closed by the node: idle too long.
    Idle,
}

/// Serves HTTP/1.1 on one connection within `limits`: a header must arrive within the header
/// timeout, and a connection that sits idle is closed.
pub async fn serve_http<I, F, Fut>(io: I, limits: &Limits, handler: F) -> Ended
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let io = Watched {
        inner: io,
        activity: activity.clone(),
    };
    let a = activity.clone();
    let svc = service_fn(move |req| {
        let guard = InFlight::begin(&a);
        let fut = handler(req);
        async move {
            let resp = fut.await;
            drop(guard);
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let check = (limits.idle_timeout / 4).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(check);
    loop {
        tokio::select! {
            r = &mut conn => return Ended::Closed(r.err()),
            _ = tick.tick() => {
                if activity.idle_for() >= limits.idle_timeout {
                    return Ended::Idle;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_within_both_limits() {
        let gate = Gate::new(Limits {
            max_connections: 3,
            max_per_address: 2,
            ..Limits::default()
        });
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let b: IpAddr = "127.0.0.2".parse().expect("ip");
        let a1 = gate.admit(a).expect("first");
        let _a2 = gate.admit(a).expect("second");
        assert_eq!(gate.admit(a).err(), Some(Full::Address));
        let _b1 = gate.admit(b).expect("another address");
        assert_eq!(gate.admit(b).err(), Some(Full::Node));
        drop(a1);
        assert_eq!(gate.per_address.lock().get(&a), Some(&1));
        let _b2 = gate.admit(b).expect("a place was freed");
        assert_eq!(gate.admit(b).err(), Some(Full::Node));
    }
}
