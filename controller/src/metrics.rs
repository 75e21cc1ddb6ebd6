//! The operator's own metrics: reconciles, errors and durations per kind, the resources it
//! manages by their Ready condition, reconciles in flight, and whether this replica leads.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use std::time::Instant;

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub errors: IntCounterVec,
    pub duration: HistogramVec,
    pub in_flight: IntGaugeVec,
    pub resources: IntGaugeVec,
    pub leader: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "tally_operator_reconciles_total",
                "Reconciles by kind and result (ok, error).",
            ),
            &["kind", "result"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "tally_operator_reconcile_errors_total",
                "Failed reconciles by kind and reason.",
            ),
            &["kind", "reason"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tally_operator_reconcile_duration_seconds",
                "Time one reconcile takes, by kind.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["kind"],
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "tally_operator_reconciles_in_flight",
                "Reconciles running now, by kind.",
            ),
            &["kind"],
        )?;
        let resources = IntGaugeVec::new(
            Opts::new("tally_operator_resources", "Resources this operator manages, by kind and Ready condition (True, False, Unknown)."),
            &["kind", "ready"],
        )?;
        let leader = IntGauge::new(
            "tally_operator_leader",
            "1 while this replica holds the leader Lease.",
        )?;
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(resources.clone()),
            Box::new(leader.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Metrics {
            registry,
            reconciles,
            errors,
            duration,
            in_flight,
            resources,
            leader,
        })
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
