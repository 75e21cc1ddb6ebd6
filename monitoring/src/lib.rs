//! What SREs watch, from one source: the metric names `tally-node` and `tally-operator` export
//! ([`names`]), the Grafana dashboards ([`dashboards`]) and the Prometheus alert rules with
//! their promtool unit tests ([`alerts`]) built from them, and the files written from those
//! ([`files`]: `dashboards/*.json`, `deploy/monitoring/`, the chart's PrometheusRule).
//!
//! `cargo run -p tally-monitoring` rewrites the files; `--check` fails when they are stale.
//!
//! With the `logging` feature, [`logging`] sets up the `tracing` output every Tally program
//! shares: one helper, so that the node, the operator and tallyctl log alike.

pub mod alerts;
pub mod dashboards;
pub mod files;
#[cfg(feature = "logging")]
pub mod logging;
pub mod names;
pub mod queries;
