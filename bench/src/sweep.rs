//! How cost grows: the same run repeated over the points of one dimension (consenters,
//! channels on the same nodes, value size), one table row per point and system.

use crate::idle::IdleReport;
use crate::report::Report;
use anyhow::Result;
use clap::ValueEnum;
use serde::Serialize;
use std::future::Future;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dimension {
    /// Tally consenters (one organization each); etcd members and CometBFT validators alike.
    Nodes,
    /// Channels on the same nodes (Tally only: the baselines have no channels).
    Channels,
    /// Bytes of each value.
    ValueSize,
}

impl Dimension {
    pub fn default_points(self) -> Vec<usize> {
        match self {
            Dimension::Nodes => vec![3, 5, 7],
            Dimension::Channels => vec![1, 10, 50],
            Dimension::ValueSize => vec![256, 4096, 65536],
        }
    }

    fn column(self) -> &'static str {
        match self {
            Dimension::Nodes => "nodes",
            Dimension::Channels => "channels",
            Dimension::ValueSize => "value B",
        }
    }
}

/// What one point measured: a load run, or the idle cost.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum PointResult {
    Load(Box<Report>),
    Idle(IdleReport),
}

#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub value: usize,
    pub result: PointResult,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    pub sweep: Dimension,
    pub points: Vec<Point>,
}

/// Runs `point` for each value in turn; a failed point ends the sweep with its error.
pub async fn run<F, Fut>(dim: Dimension, values: &[usize], mut point: F) -> Result<SweepReport>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<PointResult>>,
{
    let mut points = Vec::with_capacity(values.len());
    for &value in values {
        eprintln!("[sweep] {} = {value}", dim.column());
        points.push(Point {
            value,
            result: point(value).await?,
        });
    }
    Ok(SweepReport { sweep: dim, points })
}

impl SweepReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("sweep report serializes")
    }

    pub fn to_table(&self) -> String {
        let dim = self.sweep.column();
        let mut out = String::new();
        if let Some(first) = self.points.first() {
            out += match &first.result {
                PointResult::Load(r) => {
                    let c = &r.config;
                    format!(
                        "sweep over {dim}: {} workload, {} clients, {} s measured after {} s warm-up per system and point, {} cores\n{}",
                        c.workload, c.clients, c.seconds, c.warmup_seconds, c.cores,
                        r.setting_lines()
                    )
                }
                PointResult::Idle(i) => format!(
                    "sweep over {dim}: idle, {} s measured after {} s settling per point, {} cores\n",
                    i.seconds, i.settle_seconds, i.cores
                ),
            }
            .as_str();
        }
        let load_head = format!(
            "{dim:>10}  {:<16}{:>10}{:>9}{:>9}{:>14}{:>8}{:>14}\n",
            "system", "ops/s", "p50 ms", "p99 ms", "CPU s / 1k", "errors", "other cores"
        );
        let idle_head = format!(
            "{dim:>10}  {:>22}{:>16}{:>10}{:>14}\n",
            "highest CPU % of core", "highest RSS MiB", "threads", "other cores"
        );
        let mut head_done = false;
        for p in &self.points {
            match &p.result {
                PointResult::Load(r) => {
                    if !head_done {
                        out += &load_head;
                        head_done = true;
                    }
                    for (name, s) in r.systems() {
                        out += &format!(
                            "{:>10}  {name:<16}{:>10.0}{:>9.1}{:>9.1}{:>14.3}{:>8}{:>14.2}\n",
                            p.value,
                            s.ops_per_sec,
                            s.p50_ms,
                            s.p99_ms,
                            s.cpu_s_per_1k,
                            s.errors,
                            s.other_cores
                        );
                    }
                }
                PointResult::Idle(i) => {
                    if !head_done {
                        out += &idle_head;
                        head_done = true;
                    }
                    let threads = i.per_node.iter().map(|n| n.threads).max().unwrap_or(0);
                    out += &format!(
                        "{:>10}  {:>22.2}{:>16.1}{:>10}{:>14.2}\n",
                        p.value, i.max_cpu_pct, i.max_rss_mib, threads, i.other_cores
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_points_are_the_issue_s() {
        assert_eq!(Dimension::Nodes.default_points(), [3, 5, 7]);
        assert_eq!(Dimension::Channels.default_points(), [1, 10, 50]);
        assert_eq!(Dimension::ValueSize.default_points(), [256, 4096, 65536]);
    }

    /// A sweep's rows carry the labels of the run's table, and its head says how etcd ran, so
    /// that a sweep against etcd on TLS is not read as one against plain etcd.
    #[tokio::test]
    async fn load_rows_name_each_system_s_setting() {
        use crate::report::tests::{config, load};
        use crate::report::{Measured, RunConfig, SystemReport};
        for tls in [true, false] {
            let report = run(Dimension::ValueSize, &[256, 4096], |v| async move {
                let m = Measured {
                    tally: Some(SystemReport::from_load(&load(9_000, 30, 2.0), 3, true)),
                    etcd: Some(SystemReport::from_load(&load(5_000, 60, 2.0), 3, true)),
                    ..Measured::default()
                };
                let config = RunConfig {
                    value_size: v,
                    etcd_tls: tls,
                    ..config()
                };
                Ok(PointResult::Load(Box::new(Report::new(m, config))))
            })
            .await
            .unwrap();
            let table = report.to_table();
            let etcd_rows: Vec<&str> = table
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some("etcd"))
                .collect();
            assert_eq!(etcd_rows.len(), 2, "{table}");
            let tls_rows = etcd_rows.iter().filter(|l| l.contains("etcd tls")).count();
            if tls {
                assert_eq!(tls_rows, 2, "{table}");
                assert!(table.contains("etcd tls: TLS on etcd's client"), "{table}");
            } else {
                assert_eq!(tls_rows, 0, "{table}");
                assert!(table.contains("(--etcd-plain)"), "{table}");
            }
            assert!(table.contains("   4096  tally "), "{table}");
        }
    }

    #[tokio::test]
    async fn every_point_runs_in_order_and_is_tabled() {
        let report = run(Dimension::Channels, &[1, 10], |v| async move {
            Ok(PointResult::Idle(IdleReport {
                nodes: 3,
                channels: v,
                settle_seconds: 1,
                seconds: 2,
                per_node: vec![],
                max_cpu_pct: v as f64 / 10.0,
                max_rss_mib: 40.0 + v as f64,
                other_cores: 0.5,
                cores: 2,
            }))
        })
        .await
        .unwrap();
        assert_eq!(report.points.len(), 2);
        let table = report.to_table();
        assert!(table.contains("sweep over channels: idle"), "{table}");
        assert!(table.contains("50.0"), "{table}");
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(v["sweep"], "channels");
        assert_eq!(v["points"][1]["value"], 10);
        assert_eq!(v["points"][1]["result"]["max_rss_mib"], 50.0);
    }
}
