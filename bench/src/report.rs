//! Figures per system, the JSON object and the text table.

use crate::load::LoadResult;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct SystemReport {
    /// Acknowledged (committed) operations in the measured window per second.
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU seconds (user + system) of all server processes per 1000 acknowledged operations.
    pub cpu_s_per_1k: f64,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub mean_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub server_cpu_s: f64,
    /// CPU of the benchmark process itself in the window (it shares the machine).
    pub bench_cpu_s: f64,
    pub bench_cpu_s_per_1k: f64,
    /// Cores' worth of CPU that everything else on the machine used during the window.
    pub other_cores: f64,
    pub members: usize,
    pub fsync: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub error_samples: Vec<String>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn per_1k(cpu_s: f64, ops: u64) -> f64 {
    if ops == 0 {
        0.0
    } else {
        cpu_s / (ops as f64 / 1000.0)
    }
}

impl SystemReport {
    pub fn from_load(r: &LoadResult, members: usize, fsync: bool) -> SystemReport {
        let h = &r.latency_us;
        SystemReport {
            ops_per_sec: if r.seconds > 0.0 {
                r.ops as f64 / r.seconds
            } else {
                0.0
            },
            p50_ms: ms(h.quantile(0.50)),
            p99_ms: ms(h.quantile(0.99)),
            cpu_s_per_1k: per_1k(r.server_cpu_s, r.ops),
            ops: r.ops,
            errors: r.errors,
            seconds: r.seconds,
            mean_ms: h.mean() / 1000.0,
            p999_ms: ms(h.quantile(0.999)),
            max_ms: ms(h.max()),
            server_cpu_s: r.server_cpu_s,
            bench_cpu_s: r.bench_cpu_s,
            bench_cpu_s_per_1k: per_1k(r.bench_cpu_s, r.ops),
            other_cores: if r.seconds > 0.0 {
                r.other_cpu_s / r.seconds
            } else {
                0.0
            },
            members,
            fsync,
            error_samples: r.error_samples.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    /// `write` (signed puts, committed) or `read` (key reads and proofs against range reads).
    pub workload: &'static str,
    pub clients: usize,
    pub value_size: usize,
    pub nodes: usize,
    pub channels: usize,
    pub seconds: u64,
    pub warmup_seconds: u64,
    pub batch_max_txs: Option<u32>,
    pub batch_timeout_ms: Option<u32>,
    /// CometBFT's `timeout_commit` when set by `--cometbft-timeout-commit-ms` (else its default).
    pub cometbft_timeout_commit_ms: Option<u64>,
    /// etcd ran with TLS on its client and peer ports (false: `--etcd-plain`).
    pub etcd_tls: bool,
    pub cores: usize,
}

/// A table row: name, the figure, decimals.
type Row = (&'static str, fn(&SystemReport) -> f64, usize);

/// The rows of every table, per system.
const ROWS: [Row; 10] = [
    ("committed ops/s", |s| s.ops_per_sec, 0),
    ("latency p50 (ms)", |s| s.p50_ms, 1),
    ("latency p99 (ms)", |s| s.p99_ms, 1),
    ("latency p99.9 (ms)", |s| s.p999_ms, 1),
    ("latency max (ms)", |s| s.max_ms, 1),
    ("server CPU s / 1k ops", |s| s.cpu_s_per_1k, 3),
    ("bench CPU s / 1k ops (info)", |s| s.bench_cpu_s_per_1k, 3),
    ("other processes, cores (info)", |s| s.other_cores, 2),
    ("acked ops in window", |s| s.ops as f64, 0),
    ("errors in window", |s| s.errors as f64, 0),
];

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Null only when the Tally run was skipped (`--baselines-only`, for exploring the baselines).
    /// With `--workload read`: signed key reads.
    pub tally: Option<SystemReport>,
    /// Receivables transfers through the chaincode on the same Tally cluster (`--chaincode`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tally_chaincode: Option<SystemReport>,
    /// `--workload read`: proof fetches (receipt and inclusion proof) on the same cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tally_proof: Option<SystemReport>,
    /// Puts, or with `--workload read` linearizable range reads.
    pub etcd: Option<SystemReport>,
    /// `--compare cometbft`: kvstore transactions committed in a block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cometbft: Option<SystemReport>,
    /// Tally ops/s divided by etcd ops/s; null without both runs (or if etcd did nothing).
    pub ratio: Option<f64>,
    /// Tally ops/s divided by CometBFT's committed tx/s, when CometBFT ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_cometbft: Option<f64>,
    pub config: RunConfig,
}

fn ratio(a: &Option<SystemReport>, b: &Option<SystemReport>) -> Option<f64> {
    match (a, b) {
        (Some(t), Some(e)) if e.ops_per_sec > 0.0 => Some(t.ops_per_sec / e.ops_per_sec),
        _ => None,
    }
}

/// What a run measured, per system.
#[derive(Default)]
pub struct Measured {
    pub tally: Option<SystemReport>,
    pub tally_chaincode: Option<SystemReport>,
    pub tally_proof: Option<SystemReport>,
    pub etcd: Option<SystemReport>,
    pub cometbft: Option<SystemReport>,
}

impl Report {
    pub fn new(m: Measured, config: RunConfig) -> Report {
        Report {
            ratio: ratio(&m.tally, &m.etcd),
            ratio_cometbft: ratio(&m.tally, &m.cometbft),
            tally: m.tally,
            tally_chaincode: m.tally_chaincode,
            tally_proof: m.tally_proof,
            etcd: m.etcd,
            cometbft: m.cometbft,
            config,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("report serializes")
    }

    /// The columns of the table, in order: Tally first, then the baselines, then Tally's
    /// other loads.
    fn columns(&self) -> Vec<(String, &SystemReport)> {
        self.systems()
            .into_iter()
            .map(|(label, s)| (format!("{label} ({})", s.members), s))
            .collect()
    }

    /// Each measured system with the label its column (or a sweep's row) carries: what ran
    /// and how it was set up, so that a figure is never read as another configuration's.
    pub fn systems(&self) -> Vec<(&'static str, &SystemReport)> {
        let read = self.config.workload == "read";
        let mut out: Vec<(&'static str, &SystemReport)> = Vec::new();
        if let Some(t) = &self.tally {
            let label = match (read, t.fsync) {
                (true, _) => "tally key read",
                (false, true) => "tally",
                (false, false) => "tally NO-FSYNC",
            };
            out.push((label, t));
        }
        if let Some(t) = &self.tally_proof {
            out.push(("tally proof", t));
        }
        if let Some(e) = &self.etcd {
            let label = match (read, self.config.etcd_tls) {
                (true, true) => "etcd range tls",
                (true, false) => "etcd range",
                (false, true) => "etcd tls",
                (false, false) => "etcd",
            };
            out.push((label, e));
        }
        if let Some(c) = &self.cometbft {
            let label = if self.config.cometbft_timeout_commit_ms.is_some() {
                "cometbft tc"
            } else {
                "cometbft"
            };
            out.push((label, c));
        }
        if let Some(t) = &self.tally_chaincode {
            out.push(("tally cc", t));
        }
        out
    }

    /// One line for each baseline setting that differs between runs, to print above a table.
    pub fn setting_lines(&self) -> String {
        let mut out = String::new();
        if let Some(ms) = self.config.cometbft_timeout_commit_ms {
            out += &format!(
                "cometbft tc: timeout_commit set to {ms} ms (CometBFT's default is 1000 ms)\n"
            );
        }
        if self.etcd.is_some() {
            out += if self.config.etcd_tls {
                "etcd tls: TLS on etcd's client and peer ports (mutual between members), as on Tally's\n"
            } else {
                "etcd: plain HTTP on its client and peer ports (--etcd-plain); Tally's use TLS\n"
            };
        }
        out
    }

    pub fn to_table(&self) -> String {
        let c = &self.config;
        let cols = self.columns();
        // Ratios of Tally's figures to each baseline's.
        let mut ratios: Vec<(&str, &SystemReport, &SystemReport)> = Vec::new();
        if let Some(t) = &self.tally {
            if let Some(e) = &self.etcd {
                ratios.push(("tally/etcd", t, e));
            }
            if let Some(cm) = &self.cometbft {
                ratios.push(("tally/cmt", t, cm));
            }
        }
        if let (Some(p), Some(e)) = (&self.tally_proof, &self.etcd) {
            ratios.push(("proof/etcd", p, e));
        }
        let mut out = format!(
            "{} workload, {} clients, {}-byte values, {} channel(s), {} s measured after {} s warm-up, {} cores shared by servers and bench\n",
            c.workload, c.clients, c.value_size, c.channels, c.seconds, c.warmup_seconds, c.cores
        );
        out += &self.setting_lines();
        out += &format!("{:<30}", "");
        for (label, _) in &cols {
            out += &format!("{label:>20}");
        }
        for (label, _, _) in &ratios {
            out += &format!("{label:>12}");
        }
        out += "\n";
        for (i, (name, f, prec)) in ROWS.into_iter().enumerate() {
            let name = match (i, c.workload) {
                (0, "read") => "completed reads/s",
                _ => name,
            };
            out += &format!("{name:<30}");
            for (_, s) in &cols {
                out += &format!("{:>20.prec$}", f(s));
            }
            for (_, num, base) in &ratios {
                let (tv, bv) = (f(num), f(base));
                let r = if bv > 0.0 {
                    format!("{:.2}", tv / bv)
                } else {
                    "-".into()
                };
                out += &format!("{r:>12}");
            }
            out += "\n";
        }
        for (label, s) in &cols {
            for m in &s.error_samples {
                out += &format!("  {label} error sample: {m}\n");
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hist::Histogram;

    /// A load of `ops` operations in 10 s, each taking `lat_ms`, with one error.
    pub(crate) fn load(ops: u64, lat_ms: u64, cpu: f64) -> LoadResult {
        let mut h = Histogram::new();
        for _ in 0..ops {
            h.record(lat_ms * 1000);
        }
        LoadResult {
            ops,
            errors: 1,
            seconds: 10.0,
            latency_us: h,
            server_cpu_s: cpu,
            bench_cpu_s: cpu / 2.0,
            other_cpu_s: 5.0,
            error_samples: vec![],
            gone_pids: vec![],
        }
    }

    /// The default write run's configuration, etcd with TLS.
    pub(crate) fn config() -> RunConfig {
        RunConfig {
            workload: "write",
            clients: 256,
            value_size: 256,
            nodes: 3,
            channels: 1,
            seconds: 10,
            warmup_seconds: 5,
            batch_max_txs: None,
            batch_timeout_ms: None,
            cometbft_timeout_commit_ms: None,
            etcd_tls: true,
            cores: 2,
        }
    }

    #[test]
    fn json_has_the_agreed_shape() {
        let t = SystemReport::from_load(&load(60_000, 40, 12.0), 3, true);
        let e = SystemReport::from_load(&load(30_000, 80, 9.0), 3, true);
        let m = Measured {
            tally: Some(t.clone()),
            etcd: Some(e.clone()),
            ..Measured::default()
        };
        let r = Report::new(m, config());
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for sys in ["tally", "etcd"] {
            for f in ["ops_per_sec", "p50_ms", "p99_ms", "cpu_s_per_1k"] {
                assert!(v[sys][f].is_f64(), "{sys}.{f} in {v}");
            }
        }
        assert_eq!(v["tally"]["ops_per_sec"], 6000.0);
        assert_eq!(v["etcd"]["ops_per_sec"], 3000.0);
        assert_eq!(v["ratio"], 2.0);
        assert_eq!(v["tally"]["p99_ms"], 40.0);
        assert_eq!(v["tally"]["cpu_s_per_1k"], 0.2);
        assert_eq!(v["etcd"]["cpu_s_per_1k"], 0.3);
        assert_eq!(v["etcd"]["other_cores"], 0.5);
        assert!(v["cometbft"].is_null() && v["ratio_cometbft"].is_null());
        assert!(r.to_table().contains("committed ops/s"));

        // The chaincode column comes last and leaves the tally/etcd ratio alone.
        let with_cc = Report::new(
            Measured {
                tally: Some(t.clone()),
                tally_chaincode: Some(e.clone()),
                etcd: Some(e.clone()),
                ..Measured::default()
            },
            config(),
        );
        let v: serde_json::Value = serde_json::from_str(&with_cc.to_json()).unwrap();
        assert_eq!(v["tally_chaincode"]["ops_per_sec"], 3000.0);
        assert_eq!(v["ratio"], 2.0);
        assert!(with_cc.to_table().contains("tally cc (3)"));
        assert!(
            serde_json::from_str::<serde_json::Value>(&r.to_json()).unwrap()["tally_chaincode"]
                .is_null()
        );

        // CometBFT gets a column and a ratio of its own.
        let c = SystemReport::from_load(&load(1_000, 900, 2.0), 3, true);
        let with_cmt = Report::new(
            Measured {
                tally: Some(t),
                etcd: Some(e),
                cometbft: Some(c),
                ..Measured::default()
            },
            config(),
        );
        let v: serde_json::Value = serde_json::from_str(&with_cmt.to_json()).unwrap();
        assert_eq!(v["cometbft"]["ops_per_sec"], 100.0);
        assert_eq!(v["ratio_cometbft"], 60.0);
        let table = with_cmt.to_table();
        assert!(table.contains("cometbft (3)") && table.contains("tally/cmt"));
        assert!(table
            .lines()
            .any(|l| l.starts_with("committed ops/s") && l.ends_with("60.00")));

        let alone = Report::new(
            Measured {
                tally: Some(SystemReport::from_load(&load(5, 1, 0.1), 3, false)),
                ..Measured::default()
            },
            config(),
        );
        let v: serde_json::Value = serde_json::from_str(&alone.to_json()).unwrap();
        assert!(v["etcd"].is_null() && v["ratio"].is_null());
        assert!(alone.to_table().contains("NO-FSYNC"));
    }

    #[test]
    fn read_reports_name_their_columns() {
        let t = SystemReport::from_load(&load(90_000, 3, 9.0), 3, true);
        let p = SystemReport::from_load(&load(60_000, 4, 9.0), 3, true);
        let e = SystemReport::from_load(&load(30_000, 8, 9.0), 3, true);
        let r = Report::new(
            Measured {
                tally: Some(t),
                tally_proof: Some(p),
                etcd: Some(e),
                ..Measured::default()
            },
            RunConfig {
                workload: "read",
                ..config()
            },
        );
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["tally_proof"]["ops_per_sec"], 6000.0);
        assert_eq!(v["ratio"], 3.0);
        assert_eq!(v["config"]["workload"], "read");
        let table = r.to_table();
        for col in [
            "tally key read (3)",
            "tally proof (3)",
            "etcd range tls (3)",
            "etcd tls: TLS on etcd's client and peer ports",
            "proof/etcd",
            "completed reads/s",
        ] {
            assert!(table.contains(col), "{col} in\n{table}");
        }
        // The plain configuration says so, in the column and above the table.
        let plain = Report {
            config: RunConfig {
                etcd_tls: false,
                ..r.config.clone()
            },
            ..r
        };
        let table = plain.to_table();
        assert!(table.contains("etcd range (3)") && !table.contains("etcd range tls"));
        assert!(table.contains("(--etcd-plain)"), "{table}");
    }

    #[test]
    fn zero_ops_gives_zero_not_nan() {
        let s = SystemReport::from_load(&load(0, 1, 1.0), 3, true);
        assert_eq!(s.cpu_s_per_1k, 0.0);
        assert_eq!(s.ops_per_sec, 0.0);
        let e = s.clone();
        let r = Report::new(
            Measured {
                tally: Some(s),
                etcd: Some(e),
                ..Measured::default()
            },
            config(),
        );
        assert!(r.ratio.is_none());
        assert!(serde_json::from_str::<serde_json::Value>(&r.to_json()).is_ok());
    }
}
