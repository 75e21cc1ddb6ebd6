//! The node's Prometheus metrics. Every series carries the consortium (when the node is told
//! it, see [`set_consortium`]), organization and node as constant labels; per-channel series
//! add `channel`. The names come from `tally_monitoring::names`, which the dashboards and alert
//! rules are generated from.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use tally_monitoring::names as n;

static CONSORTIUM: OnceLock<String> = OnceLock::new();

/// Names the consortium this process's nodes belong to, for the `consortium` label of every
/// series. Call it before the node opens (`tally-node --consortium`); the first call wins.
/// The node itself has no other way to know: channel configurations do not name a consortium.
pub fn set_consortium(name: &str) {
    let _ = CONSORTIUM.set(name.to_string());
}

pub struct Metrics {
    pub registry: Registry,
    pub height: IntGaugeVec,
    pub term: IntGaugeVec,
    pub role: IntGaugeVec,
    pub leader_id: IntGaugeVec,
    pub leader_changes: IntCounterVec,
    pub applied_index: IntGaugeVec,
    pub commit_index: IntGaugeVec,
    pub quiet: IntGaugeVec,
    pub committed_txs: IntCounterVec,
    pub committed_blocks: IntCounterVec,
    pub rejected_txs: IntCounterVec,
    pub commit_latency: HistogramVec,
    pub batch_size: HistogramVec,
    pub state_root: GaugeVec,
    pub snapshots_sent: IntCounterVec,
    pub checkpoints_sent: IntCounterVec,
    pub snapshots_applied: IntCounterVec,
    pub snapshots_refused: IntCounterVec,
    pub votes_withheld: IntCounterVec,
    pub backup_duration: HistogramVec,
    pub backup_bytes: GaugeVec,
    pub backup_last_success: GaugeVec,
    pub backups: IntCounterVec,
    pub compactions: IntCounterVec,
    pub ready: IntGaugeVec,
    pub degraded: IntGaugeVec,
    pub first_differing_height: IntGaugeVec,
    pub fsync_seconds: Histogram,
    pub rocksdb_size: Gauge,
    pub rocksdb_write_stopped: IntGauge,
    pub rocksdb_delayed_write_rate: Gauge,
    pub peer_dropped: IntCounterVec,
    pub consenters: IntGaugeVec,
    pub cert_expiry: Gauge,
    pub chaincode_exec_seconds: HistogramVec,
    pub chaincode_fuel_used: IntCounterVec,
}

impl Metrics {
    pub fn new(node: &str, org: &str) -> Metrics {
        let mut labels = HashMap::new();
        labels.insert(n::L_NODE.to_string(), node.to_string());
        labels.insert(n::L_ORG.to_string(), org.to_string());
        // Absent rather than empty when not given: Prometheus treats both alike, and an empty
        // constant label is refused by the registry.
        if let Some(c) = CONSORTIUM.get().filter(|c| !c.is_empty()) {
            labels.insert(n::L_CONSORTIUM.to_string(), c.clone());
        }
        let registry = Registry::new_custom(None, Some(labels)).expect("valid registry labels");
        let ch = &[n::L_CHANNEL];
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("valid metric definition");
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric registered once");
                m
            }};
        }
        let latency_buckets = vec![
            0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
        ];
        let m = Metrics {
            height: reg!(IntGaugeVec::new(Opts::new(n::CHANNEL_HEIGHT, "Number of blocks in the channel, genesis included"), ch)),
            term: reg!(IntGaugeVec::new(Opts::new(n::RAFT_TERM, "Current Raft term of the channel"), ch)),
            role: reg!(IntGaugeVec::new(Opts::new(n::RAFT_ROLE, "Raft role: 0 follower, 1 candidate, 2 leader, 3 learner"), ch)),
            leader_id: reg!(IntGaugeVec::new(Opts::new(n::RAFT_LEADER_ID, "Raft id of the channel leader this node knows; 0 for none"), ch)),
            leader_changes: reg!(IntCounterVec::new(Opts::new(n::RAFT_LEADER_CHANGES, "Times this node saw the channel's leader change"), ch)),
            applied_index: reg!(IntGaugeVec::new(Opts::new(n::RAFT_APPLIED_INDEX, "Last Raft index applied to the ledger"), ch)),
            commit_index: reg!(IntGaugeVec::new(Opts::new(n::RAFT_COMMIT_INDEX, "Last Raft index known committed"), ch)),
            quiet: reg!(IntGaugeVec::new(Opts::new(n::RAFT_QUIET, "1 while the channel's Raft clock is stopped here because nothing is happening (no ticks, no heartbeats)"), ch)),
            committed_txs: reg!(IntCounterVec::new(Opts::new(n::COMMITTED_TXS, "Transactions committed (valid) in blocks"), ch)),
            committed_blocks: reg!(IntCounterVec::new(Opts::new(n::COMMITTED_BLOCKS, "Blocks committed"), ch)),
            rejected_txs: reg!(IntCounterVec::new(Opts::new(n::REJECTED_TXS, "Transactions rejected, at submission or in a block, by reason"), &[n::L_CHANNEL, n::L_REASON])),
            commit_latency: reg!(HistogramVec::new(HistogramOpts::new(n::PROPOSAL_COMMIT_SECONDS, "Time from a transaction's arrival at this node to its commit in a block here").buckets(latency_buckets), ch)),
            batch_size: reg!(HistogramVec::new(HistogramOpts::new(n::BATCH_SIZE, "Transactions per block").buckets(vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0]), ch)),
            state_root: reg!(GaugeVec::new(Opts::new(n::STATE_ROOT, "First 52 bits of the state root after the last block; equal on nodes that agree"), ch)),
            snapshots_sent: reg!(IntCounterVec::new(Opts::new(n::SNAPSHOTS_SENT, "Raft snapshots built and sent to lagging nodes"), ch)),
            checkpoints_sent: reg!(IntCounterVec::new(Opts::new(n::CHECKPOINTS_SENT, "Signed checkpoints sent to peers, by kind: periodic, or an answer to a peer behind"), &[n::L_CHANNEL, n::L_KIND])),
            snapshots_applied: reg!(IntCounterVec::new(Opts::new(n::SNAPSHOTS_APPLIED, "Raft snapshots received and installed"), ch)),
            votes_withheld: reg!(IntCounterVec::new(Opts::new(n::VOTES_WITHHELD, "Vote, pre-vote and leadership requests a node ignored while its Raft state was new and not caught up"), &[n::L_CHANNEL])),
            backup_duration: reg!(HistogramVec::new(HistogramOpts::new(n::BACKUP_DURATION_SECONDS, "Seconds a backup of the channel to object storage took, failed ones included").buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0]), ch)),
            backup_bytes: reg!(GaugeVec::new(Opts::new(n::BACKUP_BYTES, "Stored (compressed) bytes of the channel's last successful backup"), ch)),
            backup_last_success: reg!(GaugeVec::new(Opts::new(n::BACKUP_LAST_SUCCESS, "Unix time of the channel's last successful backup made on this node"), ch)),
            backups: reg!(IntCounterVec::new(Opts::new(n::BACKUPS, "Backups of the channel made on this node, by result"), &[n::L_CHANNEL, n::L_RESULT])),
            snapshots_refused: reg!(IntCounterVec::new(Opts::new(n::SNAPSHOTS_REFUSED, "Raft snapshots from peers refused by verification, by the check that failed"), &[n::L_CHANNEL, n::L_REASON])),
            compactions: reg!(IntCounterVec::new(Opts::new(n::LOG_COMPACTIONS, "Raft log compactions"), ch)),
            ready: reg!(IntGaugeVec::new(Opts::new(n::CHANNEL_READY, "1 when the channel has a leader and this node has caught up"), ch)),
            degraded: reg!(IntGaugeVec::new(Opts::new(n::CHANNEL_DEGRADED, "1 when this node stopped serving the channel: its ledger differs from the majority's signed checkpoints, or its channel thread died"), ch)),
            first_differing_height: reg!(IntGaugeVec::new(Opts::new(n::FIRST_DIFFERING_HEIGHT, "First height at which this node's ledger was found to differ from the channel's; 0 when not degraded"), ch)),
            fsync_seconds: reg!(Histogram::with_opts(HistogramOpts::new(n::RAFT_PERSIST_SECONDS, "Time to durably write one Raft ready (log entries, hard state)").buckets(vec![0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5]))),
            rocksdb_size: reg!(Gauge::with_opts(Opts::new(n::ROCKSDB_SIZE, "On-disk SST size plus memtables of the node's RocksDB"))),
            peer_dropped: reg!(IntCounterVec::new(Opts::new(n::PEER_DROPPED, "Raft messages dropped because a peer was unreachable or slow"), &[n::L_PEER])),
            rocksdb_write_stopped: reg!(IntGauge::with_opts(Opts::new(n::ROCKSDB_WRITE_STOPPED, "1 while RocksDB stops writes (too many memtables or level-0 files)"))),
            rocksdb_delayed_write_rate: reg!(Gauge::with_opts(Opts::new(n::ROCKSDB_DELAYED_WRITE_RATE, "Bytes per second RocksDB slows writes to while compaction catches up; 0 when writes are not delayed"))),
            consenters: reg!(IntGaugeVec::new(Opts::new(n::CHANNEL_CONSENTERS, "Raft voters (consenters) in the channel's configuration; a quorum is a majority of them"), ch)),
            cert_expiry: reg!(Gauge::with_opts(Opts::new(n::CERT_EXPIRY, "Unix time the node's TLS certificate expires"))),
            chaincode_exec_seconds: reg!(HistogramVec::new(HistogramOpts::new(n::CHAINCODE_EXEC_SECONDS, "Time to execute one chaincode call at apply time, failed calls included").buckets(vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]), &[n::L_CHANNEL, n::L_CHAINCODE])),
            chaincode_fuel_used: reg!(IntCounterVec::new(Opts::new(n::CHAINCODE_FUEL, "Fuel used by chaincode calls at apply time (a call that ran out counts its whole allowance)"), &[n::L_CHANNEL, n::L_CHAINCODE])),
            registry,
        };
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = m.registry.register(Box::new(pc));
        }
        m
    }

    /// What a channel's Raft loop publishes besides its own gauges (called from `publish()`):
    /// the consenter count, and every per-channel counter and histogram at zero so that rates
    /// over them are 0 rather than absent before the first event.
    pub fn publish_channel(&self, channel: &str, consenters: usize) {
        let ch = [channel];
        self.consenters
            .with_label_values(&ch)
            .set(consenters as i64);
        self.quiet.with_label_values(&ch);
        // Histograms too: a series born with its first observations would show no increase
        // over the scrape that first sees it.
        self.commit_latency.with_label_values(&ch);
        self.batch_size.with_label_values(&ch);
        for c in [
            &self.leader_changes,
            &self.committed_txs,
            &self.committed_blocks,
            &self.snapshots_sent,
            &self.snapshots_applied,
            &self.compactions,
        ] {
            c.with_label_values(&ch);
        }
        for kind in [crate::checkpoint::PERIODIC, crate::checkpoint::ANSWER] {
            self.checkpoints_sent.with_label_values(&[channel, kind]);
        }
    }

    /// Drops every series of `channel`, once the node has left it: a channel this node no
    /// longer serves must not keep exporting its last height, role or readiness.
    pub fn forget_channel(&self, channel: &str) {
        for v in [
            &self.height,
            &self.term,
            &self.role,
            &self.leader_id,
            &self.applied_index,
            &self.commit_index,
            &self.quiet,
            &self.ready,
            &self.degraded,
            &self.first_differing_height,
            &self.consenters,
        ] {
            forget(v, channel);
        }
        for v in [
            &self.leader_changes,
            &self.committed_txs,
            &self.committed_blocks,
            &self.rejected_txs,
            &self.snapshots_sent,
            &self.snapshots_applied,
            &self.snapshots_refused,
            &self.checkpoints_sent,
            &self.votes_withheld,
            &self.compactions,
            &self.chaincode_fuel_used,
        ] {
            forget(v, channel);
        }
        for v in [
            &self.commit_latency,
            &self.batch_size,
            &self.chaincode_exec_seconds,
        ] {
            forget(v, channel);
        }
        forget(&self.state_root, channel);
    }

    /// Exports the free and total bytes of the file system holding `data_dir`, measured at
    /// each scrape.
    pub fn register_data_dir(&self, data_dir: PathBuf) -> Result<(), prometheus::Error> {
        self.registry
            .register(Box::new(DiskCollector::new(data_dir)?))
    }

    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

/// Removes the series of `vec` whose channel label is `channel`, whatever its other labels.
fn forget<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    channel: &str,
) {
    for family in vec.collect() {
        for m in family.get_metric() {
            let labels: HashMap<&str, &str> = m
                .get_label()
                .iter()
                .map(|l| (l.get_name(), l.get_value()))
                .collect();
            if labels.get(n::L_CHANNEL) == Some(&channel) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

/// The data directory's file system, read with statvfs(2) when scraped.
struct DiskCollector {
    path: PathBuf,
    free: Gauge,
    capacity: Gauge,
}

impl DiskCollector {
    fn new(path: PathBuf) -> Result<DiskCollector, prometheus::Error> {
        Ok(DiskCollector {
            path,
            free: Gauge::with_opts(Opts::new(
                n::DATA_DIR_FREE,
                "Bytes free for the node on the file system of its data directory",
            ))?,
            capacity: Gauge::with_opts(Opts::new(
                n::DATA_DIR_CAPACITY,
                "Size in bytes of the file system of the node's data directory",
            ))?,
        })
    }

    /// (bytes available to unprivileged users, total bytes), or None when statvfs fails.
    fn measure(&self) -> Option<(f64, f64)> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(self.path.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs only writes into the zeroed struct we pass, and `c` is a valid
        // NUL-terminated path for the duration of the call.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return None;
        }
        let frsize = st.f_frsize as f64;
        Some((st.f_bavail as f64 * frsize, st.f_blocks as f64 * frsize))
    }
}

impl Collector for DiskCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.free.desc();
        d.extend(self.capacity.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // A failed measurement (the folder gone) exports nothing rather than a false zero.
        let Some((free, total)) = self.measure() else {
            return Vec::new();
        };
        self.free.set(free);
        self.capacity.set(total);
        let mut out = self.free.collect();
        out.extend(self.capacity.collect());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every node metric name of `tally_monitoring::names` is exported by a fresh node's
    /// registry once a channel is published (histograms as `_bucket`/`_sum`/`_count`).
    #[test]
    fn exports_every_shared_name() {
        let m = Metrics::new("n1", "org1");
        m.publish_channel("main", 3);
        m.register_data_dir(std::env::temp_dir()).expect("register");
        // Series that exist only once their channel does something.
        for (vec, labels) in [
            (&m.height, &["main"][..]),
            (&m.term, &["main"]),
            (&m.role, &["main"]),
            (&m.leader_id, &["main"]),
            (&m.applied_index, &["main"]),
            (&m.commit_index, &["main"]),
            (&m.ready, &["main"]),
            (&m.degraded, &["main"]),
            (&m.first_differing_height, &["main"]),
        ] {
            vec.with_label_values(labels).set(1);
        }
        m.state_root.with_label_values(&["main"]).set(1.0);
        m.rejected_txs
            .with_label_values(&["main", "malformed"])
            .inc();
        m.commit_latency.with_label_values(&["main"]).observe(0.1);
        m.batch_size.with_label_values(&["main"]).observe(1.0);
        m.peer_dropped.with_label_values(&["p"]).inc();
        m.snapshots_refused
            .with_label_values(&["main", "state"])
            .inc();
        m.votes_withheld.with_label_values(&["main"]).inc();
        m.backup_duration.with_label_values(&["main"]).observe(1.0);
        m.backup_bytes.with_label_values(&["main"]).set(1.0);
        m.backup_last_success.with_label_values(&["main"]).set(1.0);
        m.backups.with_label_values(&["main", "succeeded"]).inc();
        m.chaincode_exec_seconds
            .with_label_values(&["main", "notary"])
            .observe(0.001);
        m.chaincode_fuel_used
            .with_label_values(&["main", "notary"])
            .inc_by(1000);
        let text = String::from_utf8(m.render()).expect("utf-8");
        for name in n::NODE_METRICS {
            let found = text.lines().any(|l| {
                let sample = l.split(['{', ' ']).next().unwrap_or_default();
                sample == *name
                    || sample.strip_suffix("_bucket") == Some(name)
                    || sample.strip_suffix("_count") == Some(name)
            });
            assert!(found, "{name} is not exported:\n{text}");
        }
    }
}
