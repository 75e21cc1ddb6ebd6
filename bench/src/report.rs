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
            members,
            fsync,
            error_samples: r.error_samples.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    pub clients: usize,
    pub value_size: usize,
    pub nodes: usize,
    pub seconds: u64,
    pub warmup_seconds: u64,
    pub batch_max_txs: Option<u32>,
    pub batch_timeout_ms: Option<u32>,
    pub cores: usize,
}

/// A table row: name, the figure, decimals.
type Row = (&'static str, fn(&SystemReport) -> f64, usize);

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Null only when the Tally run was skipped (`--etcd-only`, for exploring the baseline).
    pub tally: Option<SystemReport>,
    /// Receivables transfers through the chaincode on the same Tally cluster (`--chaincode`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tally_chaincode: Option<SystemReport>,
    pub etcd: Option<SystemReport>,
    /// Tally ops/s divided by etcd ops/s; null without both runs (or if etcd did nothing).
    pub ratio: Option<f64>,
    pub config: RunConfig,
}

impl Report {
    pub fn new(
        tally: Option<SystemReport>,
        tally_chaincode: Option<SystemReport>,
        etcd: Option<SystemReport>,
        config: RunConfig,
    ) -> Report {
        let ratio = match (&tally, &etcd) {
            (Some(t), Some(e)) if e.ops_per_sec > 0.0 => Some(t.ops_per_sec / e.ops_per_sec),
            _ => None,
        };
        Report {
            tally,
            tally_chaincode,
            etcd,
            ratio,
            config,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("report serializes")
    }

    pub fn to_table(&self) -> String {
        let c = &self.config;
        let mut cols: Vec<(String, &SystemReport)> = Vec::new();
        if let Some(t) = &self.tally {
            let label = if t.fsync { "tally" } else { "tally NO-FSYNC" };
            cols.push((format!("{label} ({})", t.members), t));
        }
        if let Some(e) = &self.etcd {
            cols.push((format!("etcd ({})", e.members), e));
        }
        // Last, so that the ratio column still compares the first two (key/value and etcd).
        if let Some(t) = &self.tally_chaincode {
            cols.push((format!("tally cc ({})", t.members), t));
        }
        let both = self.tally.is_some() && self.etcd.is_some();
        let mut out = format!(
            "{} clients, {}-byte values, {} s measured after {} s warm-up, {} cores shared by servers and bench\n",
            c.clients, c.value_size, c.seconds, c.warmup_seconds, c.cores
        );
        out += &format!("{:<30}", "");
        for (label, _) in &cols {
            out += &format!("{label:>18}");
        }
        if both {
            out += &format!("{:>12}", "tally/etcd");
        }
        out += "\n";
        let rows: [Row; 9] = [
            ("committed ops/s", |s| s.ops_per_sec, 0),
            ("latency p50 (ms)", |s| s.p50_ms, 1),
            ("latency p99 (ms)", |s| s.p99_ms, 1),
            ("latency p99.9 (ms)", |s| s.p999_ms, 1),
            ("latency max (ms)", |s| s.max_ms, 1),
            ("server CPU s / 1k ops", |s| s.cpu_s_per_1k, 3),
            ("bench CPU s / 1k ops (info)", |s| s.bench_cpu_s_per_1k, 3),
            ("acked ops in window", |s| s.ops as f64, 0),
            ("errors in window", |s| s.errors as f64, 0),
        ];
        for (name, f, prec) in rows {
            out += &format!("{name:<30}");
            for (_, s) in &cols {
                out += &format!("{:>18.prec$}", f(s));
            }
            if both {
                let (tv, ev) = (f(cols[0].1), f(cols[1].1));
                let r = if ev > 0.0 {
                    format!("{:.2}", tv / ev)
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
mod tests {
    use super::*;
    use crate::hist::Histogram;

    fn load(ops: u64, lat_ms: u64, cpu: f64) -> LoadResult {
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
            error_samples: vec![],
            gone_pids: vec![],
        }
    }

    #[test]
    fn json_has_the_agreed_shape() {
        let t = SystemReport::from_load(&load(60_000, 40, 12.0), 3, true);
        let e = SystemReport::from_load(&load(30_000, 80, 9.0), 3, true);
        let cfg = RunConfig {
            clients: 256,
            value_size: 256,
            nodes: 3,
            seconds: 10,
            warmup_seconds: 5,
            batch_max_txs: None,
            batch_timeout_ms: None,
            cores: 2,
        };
        let r = Report::new(Some(t.clone()), None, Some(e.clone()), cfg.clone());
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
        assert!(r.to_table().contains("committed ops/s"));

        // The chaincode column comes last and leaves the tally/etcd ratio alone.
        let with_cc = Report::new(Some(t), Some(e.clone()), Some(e), cfg.clone());
        let v: serde_json::Value = serde_json::from_str(&with_cc.to_json()).unwrap();
        assert_eq!(v["tally_chaincode"]["ops_per_sec"], 3000.0);
        assert_eq!(v["ratio"], 2.0);
        assert!(with_cc.to_table().contains("tally cc (3)"));
        assert!(
            serde_json::from_str::<serde_json::Value>(&r.to_json()).unwrap()["tally_chaincode"]
                .is_null()
        );

        let alone = Report::new(
            Some(SystemReport::from_load(&load(5, 1, 0.1), 3, false)),
            None,
            None,
            cfg,
        );
        let v: serde_json::Value = serde_json::from_str(&alone.to_json()).unwrap();
        assert!(v["etcd"].is_null() && v["ratio"].is_null());
        assert!(alone.to_table().contains("NO-FSYNC"));
    }

    #[test]
    fn zero_ops_gives_zero_not_nan() {
        let s = SystemReport::from_load(&load(0, 1, 1.0), 3, true);
        assert_eq!(s.cpu_s_per_1k, 0.0);
        assert_eq!(s.ops_per_sec, 0.0);
        let e = s.clone();
        let r = Report::new(
            Some(s),
            None,
            Some(e),
            RunConfig {
                clients: 1,
                value_size: 1,
                nodes: 3,
                seconds: 1,
                warmup_seconds: 0,
                batch_max_txs: None,
                batch_timeout_ms: None,
                cores: 2,
            },
        );
        assert!(r.ratio.is_none());
        assert!(serde_json::from_str::<serde_json::Value>(&r.to_json()).is_ok());
    }
}
