//! The node's Prometheus metrics. Every series carries the node and organization as constant
//! labels; per-channel series add `channel`.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use std::collections::HashMap;

pub struct Metrics {
    pub registry: Registry,
    pub height: IntGaugeVec,
    pub term: IntGaugeVec,
    pub role: IntGaugeVec,
    pub leader_id: IntGaugeVec,
    pub leader_changes: IntCounterVec,
    pub applied_index: IntGaugeVec,
    pub commit_index: IntGaugeVec,
    pub committed_txs: IntCounterVec,
    pub committed_blocks: IntCounterVec,
    pub rejected_txs: IntCounterVec,
    pub commit_latency: HistogramVec,
    pub batch_size: HistogramVec,
    pub state_root: GaugeVec,
    pub snapshots_sent: IntCounterVec,
    pub snapshots_applied: IntCounterVec,
    pub compactions: IntCounterVec,
    pub ready: IntGaugeVec,
    pub fsync_seconds: Histogram,
    pub rocksdb_size: Gauge,
    pub peer_dropped: IntCounterVec,
    pub chaincode_exec_seconds: HistogramVec,
    pub chaincode_fuel_used: IntCounterVec,
}

impl Metrics {
    pub fn new(node: &str, org: &str) -> Metrics {
        let mut labels = HashMap::new();
        labels.insert("node".to_string(), node.to_string());
        labels.insert("org".to_string(), org.to_string());
        let registry = Registry::new_custom(None, Some(labels)).expect("valid registry labels");
        let ch = &["channel"];
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
            height: reg!(IntGaugeVec::new(Opts::new("tally_channel_height", "Number of blocks in the channel, genesis included"), ch)),
            term: reg!(IntGaugeVec::new(Opts::new("tally_raft_term", "Current Raft term of the channel"), ch)),
            role: reg!(IntGaugeVec::new(Opts::new("tally_raft_role", "Raft role: 0 follower, 1 candidate, 2 leader, 3 learner"), ch)),
            leader_id: reg!(IntGaugeVec::new(Opts::new("tally_raft_leader_id", "Raft id of the channel leader this node knows; 0 for none"), ch)),
            leader_changes: reg!(IntCounterVec::new(Opts::new("tally_raft_leader_changes_total", "Times this node saw the channel's leader change"), ch)),
            applied_index: reg!(IntGaugeVec::new(Opts::new("tally_raft_applied_index", "Last Raft index applied to the ledger"), ch)),
            commit_index: reg!(IntGaugeVec::new(Opts::new("tally_raft_commit_index", "Last Raft index known committed"), ch)),
            committed_txs: reg!(IntCounterVec::new(Opts::new("tally_committed_transactions_total", "Transactions committed (valid) in blocks"), ch)),
            committed_blocks: reg!(IntCounterVec::new(Opts::new("tally_committed_blocks_total", "Blocks committed"), ch)),
            rejected_txs: reg!(IntCounterVec::new(Opts::new("tally_rejected_transactions_total", "Transactions rejected, at submission or in a block, by reason"), &["channel", "reason"])),
            commit_latency: reg!(HistogramVec::new(HistogramOpts::new("tally_proposal_commit_seconds", "Time from a transaction's arrival at this node to its commit in a block here").buckets(latency_buckets), ch)),
            batch_size: reg!(HistogramVec::new(HistogramOpts::new("tally_batch_size", "Transactions per block").buckets(vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0]), ch)),
            state_root: reg!(GaugeVec::new(Opts::new("tally_state_root_fingerprint", "First 52 bits of the state root after the last block; equal on nodes that agree"), ch)),
            snapshots_sent: reg!(IntCounterVec::new(Opts::new("tally_snapshots_sent_total", "Raft snapshots built and sent to lagging nodes"), ch)),
            snapshots_applied: reg!(IntCounterVec::new(Opts::new("tally_snapshots_applied_total", "Raft snapshots received and installed"), ch)),
            compactions: reg!(IntCounterVec::new(Opts::new("tally_log_compactions_total", "Raft log compactions"), ch)),
            ready: reg!(IntGaugeVec::new(Opts::new("tally_channel_ready", "1 when the channel has a leader and this node has caught up"), ch)),
            fsync_seconds: reg!(Histogram::with_opts(HistogramOpts::new("tally_raft_persist_seconds", "Time to durably write one Raft ready (log entries, hard state)").buckets(vec![0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5]))),
            rocksdb_size: reg!(Gauge::with_opts(Opts::new("tally_rocksdb_size_bytes", "On-disk SST size plus memtables of the node's RocksDB"))),
            peer_dropped: reg!(IntCounterVec::new(Opts::new("tally_peer_messages_dropped_total", "Raft messages dropped because a peer was unreachable or slow"), &["peer"])),
            chaincode_exec_seconds: reg!(HistogramVec::new(HistogramOpts::new("tally_chaincode_exec_seconds", "Time to execute one chaincode call at apply time, failed calls included").buckets(vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]), &["channel", "chaincode"])),
            chaincode_fuel_used: reg!(IntCounterVec::new(Opts::new("tally_chaincode_fuel_used_total", "Fuel used by chaincode calls at apply time (a call that ran out counts its whole allowance)"), &["channel", "chaincode"])),
            registry,
        };
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = m.registry.register(Box::new(pc));
        }
        m
    }

    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}
