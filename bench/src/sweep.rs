//! How cost grows: the same run repeated over the points of one dimension (consenters,
//! channels on the same nodes, value size), one table row per point and system.

use crate::idle::IdleReport;
use crate::report::{Report, SystemReport};
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
                        "sweep over {dim}: {} workload, {} clients, {} s measured after {} s warm-up per system and point, {} cores\n",
                        c.workload, c.clients, c.seconds, c.warmup_seconds, c.cores
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
                    let systems: [(&str, &Option<SystemReport>); 5] = [
                        ("tally", &r.tally),
                        ("tally proof", &r.tally_proof),
                        ("etcd", &r.etcd),
                        ("cometbft", &r.cometbft),
                        ("tally cc", &r.tally_chaincode),
                    ];
                    for (name, s) in systems {
                        if let Some(s) = s {
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
