//! The closed-loop load generator shared by both systems: N clients, each doing one operation
//! at a time (send, wait for the acknowledgement, record the latency, repeat) until the
//! deadline. Only operations acknowledged inside the measured window count; CPU time of the
//! server processes and of this process is sampled at the window's start and end.

use crate::hist::Histogram;
use crate::procstat;
use anyhow::Result;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One benchmark client: owns its connection and key sequence.
pub trait Worker: Send + 'static {
    /// Performs one acknowledged write; an error is counted and the client goes on.
    fn op(&mut self) -> impl Future<Output = Result<()>> + Send;
}

#[derive(Clone, Debug)]
pub struct LoadParams {
    pub label: String,
    pub warmup: Duration,
    pub measure: Duration,
    /// Server processes whose CPU time is measured.
    pub server_pids: Vec<u32>,
}

#[derive(Debug)]
pub struct LoadResult {
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub latency_us: Histogram,
    pub server_cpu_s: f64,
    pub bench_cpu_s: f64,
    /// CPU the rest of the machine used in the window (other processes, the kernel's own
    /// work): what the servers and the bench competed with.
    pub other_cpu_s: f64,
    /// A few distinct error messages, for the report.
    pub error_samples: Vec<String>,
    /// Server processes that disappeared during the window.
    pub gone_pids: Vec<u32>,
}

#[derive(Default)]
struct Shared {
    done: AtomicU64,
    errors: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Shared {
    fn sample(&self, e: &anyhow::Error) {
        let msg = format!("{e:#}");
        let mut s = self.samples.lock().unwrap();
        if s.len() < 5 && !s.contains(&msg) {
            s.push(msg);
        }
    }
}

pub async fn run<W: Worker>(params: LoadParams, workers: Vec<W>) -> LoadResult {
    let start = Instant::now();
    let measure_start = start + params.warmup;
    let end = measure_start + params.measure;
    let shared = Arc::new(Shared::default());

    let mut tasks = Vec::with_capacity(workers.len());
    for mut w in workers {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::new();
            let (mut ops, mut errors) = (0u64, 0u64);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let Ok(r) = tokio::time::timeout_at(end, w.op()).await else {
                    break;
                };
                let t1 = Instant::now();
                let in_window = t1 >= measure_start && t1 <= end;
                match r {
                    Ok(()) => {
                        shared.done.fetch_add(1, Ordering::Relaxed);
                        if in_window {
                            ops += 1;
                            hist.record((t1 - t0).as_micros() as u64);
                        }
                    }
                    Err(e) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        shared.sample(&e);
                        if in_window {
                            errors += 1;
                        }
                        // Do not spin on a refused connection.
                        let _ = tokio::time::timeout_at(
                            end,
                            tokio::time::sleep(Duration::from_millis(20)),
                        )
                        .await;
                    }
                }
            }
            (hist, ops, errors)
        }));
    }

    let progress = {
        let shared = shared.clone();
        let label = params.label.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
            let mut last = 0;
            loop {
                tick.tick().await;
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let done = shared.done.load(Ordering::Relaxed);
                let phase = if now < measure_start {
                    "warmup "
                } else {
                    "measure"
                };
                let t = if now < measure_start {
                    (now - start).as_secs_f64()
                } else {
                    (now - measure_start).as_secs_f64()
                };
                eprintln!(
                    "[{label}] {phase} {t:5.0}s  acked {done:>9}  ({:>6}/s)  errors {}",
                    done - last,
                    shared.errors.load(Ordering::Relaxed)
                );
                last = done;
            }
        })
    };

    tokio::time::sleep_until(measure_start).await;
    let (cpu0, _) = procstat::cpu_seconds(&params.server_pids);
    let bench0 = procstat::self_cpu_seconds();
    let machine0 = procstat::machine_busy_seconds();
    tokio::time::sleep_until(end).await;
    let (cpu1, gone_pids) = procstat::cpu_seconds(&params.server_pids);
    let bench1 = procstat::self_cpu_seconds();
    let machine1 = procstat::machine_busy_seconds();
    let seconds = (Instant::now() - measure_start)
        .as_secs_f64()
        .max(params.measure.as_secs_f64());

    let mut latency_us = Histogram::new();
    let (mut ops, mut errors) = (0, 0);
    for t in tasks {
        if let Ok((h, o, e)) = t.await {
            latency_us.merge(&h);
            ops += o;
            errors += e;
        }
    }
    progress.abort();
    let error_samples = shared.samples.lock().unwrap().clone();
    LoadResult {
        ops,
        errors,
        // the window is exactly `measure` long; ops after `end` are not counted
        seconds: params.measure.as_secs_f64().min(seconds),
        latency_us,
        server_cpu_s: (cpu1 - cpu0).max(0.0),
        bench_cpu_s: (bench1 - bench0).max(0.0),
        other_cpu_s: ((machine1 - machine0) - (cpu1 - cpu0) - (bench1 - bench0)).max(0.0),
        error_samples,
        gone_pids,
    }
}

/// Runs `ops` operations on every worker, all workers at once, outside any measurement (the
/// read workload's preload); the first error ends it. Returns the workers, which remember what
/// they did.
pub async fn run_each<W: Worker>(workers: Vec<W>, ops: usize) -> Result<Vec<W>> {
    let tasks = workers.into_iter().map(|mut w| async move {
        for _ in 0..ops {
            w.op().await?;
        }
        Ok::<_, anyhow::Error>(w)
    });
    futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleepy(u64);
    impl Worker for Sleepy {
        async fn op(&mut self) -> Result<()> {
            self.0 += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            if self.0 % 10 == 9 {
                anyhow::bail!("every tenth fails");
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn counts_only_the_window_and_stops_at_the_deadline() {
        let params = LoadParams {
            label: "test".into(),
            warmup: Duration::from_millis(200),
            measure: Duration::from_millis(500),
            server_pids: vec![std::process::id()],
        };
        let t = std::time::Instant::now();
        let r = run(params, (0..4).map(|_| Sleepy(0)).collect()).await;
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );
        // 4 clients * ~50 ops per 500 ms, 9 in 10 succeed
        assert!(r.ops > 80 && r.ops <= 200, "ops {}", r.ops);
        assert!(r.errors > 0);
        assert_eq!(r.latency_us.count(), r.ops);
        assert!(r.latency_us.quantile(0.5) >= 10_000);
        assert_eq!(r.error_samples, vec!["every tenth fails".to_string()]);
    }
}
