//! The operator's own metrics: reconciles, errors and durations per kind, the resources it
//! manages by their Ready condition, reconciles in flight and waiting for a retry, and whether
//! this replica leads. Names from `tally_monitoring::names`, which the operator dashboard and
//! alerts are generated from.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use std::time::Instant;
use tally_monitoring::names as n;

/// The kinds the operator reconciles, as its metrics' `kind` label spells them.
pub const KINDS: [&str; 6] = [
    "Consortium",
    "Peer",
    "Channel",
    "Chaincode",
    "Backup",
    "BackupSchedule",
];

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub errors: IntCounterVec,
    pub duration: HistogramVec,
    pub in_flight: IntGaugeVec,
    pub retry_queue: IntGaugeVec,
    pub resources: IntGaugeVec,
    pub leader: IntGauge,
    pub schedule_last_success: IntGaugeVec,
    pub schedule_interval: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                n::OP_RECONCILES,
                "Reconciles by kind and result (ok, error).",
            ),
            &[n::L_KIND, n::L_RESULT],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(n::OP_ERRORS, "Failed reconciles by kind and reason."),
            &[n::L_KIND, n::L_REASON],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(n::OP_DURATION, "Time one reconcile takes, by kind.").buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &[n::L_KIND],
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new(n::OP_IN_FLIGHT, "Reconciles running now, by kind."),
            &[n::L_KIND],
        )?;
        let retry_queue = IntGaugeVec::new(
            Opts::new(
                n::OP_RETRY_QUEUE,
                "Objects whose last reconcile failed, waiting for their retry, by kind.",
            ),
            &[n::L_KIND],
        )?;
        let resources = IntGaugeVec::new(
            Opts::new(n::OP_RESOURCES, "Resources this operator manages, by kind and Ready condition (True, False, Unknown)."),
            &[n::L_KIND, n::L_READY],
        )?;
        let leader = IntGauge::new(n::OP_LEADER, "1 while this replica holds the leader Lease.")?;
        let schedule_labels = [n::L_OBJECT_NAMESPACE, n::L_SCHEDULE, n::L_CHANNEL];
        let schedule_last_success = IntGaugeVec::new(
            Opts::new(n::OP_SCHEDULE_LAST_SUCCESS, "Unix time a BackupSchedule's newest successful Backup completed (its creation before the first)."),
            &schedule_labels,
        )?;
        let schedule_interval = IntGaugeVec::new(
            Opts::new(
                n::OP_SCHEDULE_INTERVAL,
                "Seconds between two scheduled times of a BackupSchedule.",
            ),
            &schedule_labels,
        )?;
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(retry_queue.clone()),
            Box::new(resources.clone()),
            Box::new(leader.clone()),
            Box::new(schedule_last_success.clone()),
            Box::new(schedule_interval.clone()),
        ] {
            registry.register(c)?;
        }
        // Every kind's series at zero from the start: a dashboard shows 0 reconciles, errors or
        // retries rather than no data, and rates over them begin at the first scrape.
        for kind in KINDS {
            for result in ["ok", "error"] {
                reconciles.with_label_values(&[kind, result]);
            }
            in_flight.with_label_values(&[kind]);
            retry_queue.with_label_values(&[kind]);
        }
        Ok(Metrics {
            registry,
            reconciles,
            errors,
            duration,
            in_flight,
            retry_queue,
            resources,
            leader,
            schedule_last_success,
            schedule_interval,
        })
    }

    /// Sets the retry queue depth of every kind from the keys (`Kind/namespace/name`) of the
    /// objects whose last reconcile failed.
    pub fn set_retry_queue<'a>(&self, failed: impl Iterator<Item = &'a String>) {
        let mut by_kind: std::collections::BTreeMap<&str, i64> =
            KINDS.iter().map(|k| (*k, 0)).collect();
        for key in failed {
            let kind = key.split('/').next().unwrap_or_default();
            if let Some(n) = by_kind.get_mut(kind) {
                *n += 1;
            }
        }
        for (kind, n) in by_kind {
            self.retry_queue.with_label_values(&[kind]).set(n);
        }
    }

    /// Counts one reconcile of `kind` from now until the guard is finished or dropped.
    pub fn start(&self, kind: &'static str) -> Timer<'_> {
        self.in_flight.with_label_values(&[kind]).inc();
        Timer {
            m: self,
            kind,
            t: Instant::now(),
        }
    }
}

pub struct Timer<'a> {
    m: &'a Metrics,
    kind: &'static str,
    t: Instant,
}

impl Timer<'_> {
    pub fn finish(self, error: Option<&str>) {
        let m = self.m;
        m.duration
            .with_label_values(&[self.kind])
            .observe(self.t.elapsed().as_secs_f64());
        match error {
            None => m.reconciles.with_label_values(&[self.kind, "ok"]).inc(),
            Some(reason) => {
                m.reconciles.with_label_values(&[self.kind, "error"]).inc();
                m.errors.with_label_values(&[self.kind, reason]).inc();
            }
        }
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.m.in_flight.with_label_values(&[self.kind]).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operator metric name of `tally_monitoring::names` (which the operator dashboard
    /// and alerts use) is exported once each kind has reconciled.
    #[test]
    fn exports_every_shared_name() {
        let m = Metrics::new().expect("metrics");
        for kind in KINDS {
            m.start(kind).finish(Some("test"));
            m.resources.with_label_values(&[kind, "True"]).set(1);
        }
        m.set_retry_queue(["Peer/ns/p".to_string()].iter());
        m.schedule_last_success
            .with_label_values(&["ns", "s", "ch"])
            .set(1);
        m.schedule_interval
            .with_label_values(&["ns", "s", "ch"])
            .set(3600);
        assert_eq!(m.retry_queue.with_label_values(&["Peer"]).get(), 1);
        assert_eq!(m.retry_queue.with_label_values(&["Channel"]).get(), 0);
        let mut text = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &m.registry.gather(),
            &mut text,
        )
        .expect("encode");
        let text = String::from_utf8(text).expect("utf-8");
        for name in n::OPERATOR_METRICS {
            let found = text.lines().any(|l| {
                let sample = l.split(['{', ' ']).next().unwrap_or_default();
                sample == *name || sample.strip_suffix("_count") == Some(name)
            });
            assert!(found, "{name} is not exported:\n{text}");
        }
    }
}
