//! Every metric and label name that `tally-node` and `tally-operator` export, written once.
//!
//! The node (`node/src/metrics.rs`) and the operator (`operator/src/metrics.rs`) register
//! their metrics under these names, and the dashboards and alert rules of this crate build
//! their queries from them, so a rename is one edit and a test (`tests/tests/monitoring.rs`)
//! catches a query that names something no process exports.

// ----- labels ------------------------------------------------------------------------------

/// Constant label of every node series: the consortium the node belongs to.
pub const L_CONSORTIUM: &str = "consortium";
/// Constant label of every node series: the node's organization.
pub const L_ORG: &str = "org";
/// Constant label of every node series: the node's name (its certificate's common name).
pub const L_NODE: &str = "node";
/// Label of every per-channel node series.
pub const L_CHANNEL: &str = "channel";
/// Why a transaction was rejected (`RejectCode::as_str`).
pub const L_REASON: &str = "reason";
/// The peer address a dropped Raft message was for.
pub const L_PEER: &str = "peer";
/// The chaincode a call ran (its name on the channel).
pub const L_CHAINCODE: &str = "chaincode";
/// Kubernetes namespace: added by the scrape configuration (pod or service namespace), not by
/// the processes themselves.
pub const L_NAMESPACE: &str = "namespace";
/// Operator series: the resource kind (Consortium, Peer, Channel, Chaincode).
pub const L_KIND: &str = "kind";
/// Operator series: ok or error.
pub const L_RESULT: &str = "result";
/// Operator series: the Ready condition's status (True, False, Unknown).
pub const L_READY: &str = "ready";

// ----- node: channels and Raft -------------------------------------------------------------

pub const CHANNEL_HEIGHT: &str = "tally_channel_height";
pub const CHANNEL_READY: &str = "tally_channel_ready";
/// Raft voters (consenters) the channel's configuration lists; quorum is a majority of them.
pub const CHANNEL_CONSENTERS: &str = "tally_channel_consenters";
pub const RAFT_TERM: &str = "tally_raft_term";
/// 0 follower, 1 candidate, 2 leader, 3 learner (see [`ROLE_LEADER`], [`ROLE_LEARNER`]).
pub const RAFT_ROLE: &str = "tally_raft_role";
pub const ROLE_LEADER: u8 = 2;
pub const ROLE_LEARNER: u8 = 3;
pub const RAFT_LEADER_ID: &str = "tally_raft_leader_id";
pub const RAFT_LEADER_CHANGES: &str = "tally_raft_leader_changes_total";
pub const RAFT_APPLIED_INDEX: &str = "tally_raft_applied_index";
pub const RAFT_COMMIT_INDEX: &str = "tally_raft_commit_index";
pub const RAFT_PERSIST_SECONDS: &str = "tally_raft_persist_seconds";
/// 1 while the channel's Raft clock is stopped on this node because nothing is happening
/// (a quiet channel: no ticks, no heartbeats), else 0.
pub const RAFT_QUIET: &str = "tally_raft_quiet";
pub const SNAPSHOTS_SENT: &str = "tally_snapshots_sent_total";
pub const SNAPSHOTS_APPLIED: &str = "tally_snapshots_applied_total";
/// Signed checkpoints sent to peers, by `kind`: `periodic` (every second) or `answer` (to a
/// peer that reported a height this node had passed).
pub const CHECKPOINTS_SENT: &str = "tally_checkpoints_sent_total";
/// Snapshots from a peer that failed verification, by `reason` (the check that failed).
pub const SNAPSHOTS_REFUSED: &str = "tally_snapshots_refused_total";
pub const VOTES_WITHHELD: &str = "tally_votes_withheld_total";
/// Histogram: seconds a backup of a channel took, by channel.
pub const BACKUP_DURATION_SECONDS: &str = "tally_backup_duration_seconds";
/// Stored size in bytes of the channel's last successful backup.
pub const BACKUP_BYTES: &str = "tally_backup_bytes";
/// Unix time of the channel's last successful backup on this node.
pub const BACKUP_LAST_SUCCESS: &str = "tally_backup_last_success_timestamp_seconds";
/// Backups made on this node, by channel and `result` (succeeded, failed).
pub const BACKUPS: &str = "tally_backups_total";
pub const LOG_COMPACTIONS: &str = "tally_log_compactions_total";
pub const PEER_DROPPED: &str = "tally_peer_messages_dropped_total";

// ----- node: transactions and blocks -------------------------------------------------------

pub const COMMITTED_TXS: &str = "tally_committed_transactions_total";
pub const COMMITTED_BLOCKS: &str = "tally_committed_blocks_total";
pub const REJECTED_TXS: &str = "tally_rejected_transactions_total";
/// Histogram: a transaction's arrival at a node to its commit there.
pub const PROPOSAL_COMMIT_SECONDS: &str = "tally_proposal_commit_seconds";
/// Histogram: transactions per block.
pub const BATCH_SIZE: &str = "tally_batch_size";
pub const STATE_ROOT: &str = "tally_state_root_fingerprint";
/// 1 when this node found its ledger in the minority of the channel's signed checkpoints (or
/// its channel thread died) and stopped serving the channel.
pub const CHANNEL_DEGRADED: &str = "tally_channel_degraded";
/// The first height at which a degraded node's ledger was found to differ; 0 when not degraded.
pub const FIRST_DIFFERING_HEIGHT: &str = "tally_channel_first_differing_height";

// ----- node: chaincode (series per channel and chaincode, from a chaincode's first call) ----

/// Histogram: wall time of one chaincode call at apply time.
pub const CHAINCODE_EXEC_SECONDS: &str = "tally_chaincode_exec_seconds";
/// Counter: WebAssembly fuel consumed by chaincode calls.
pub const CHAINCODE_FUEL: &str = "tally_chaincode_fuel_used_total";

// ----- node: storage, identity, process ----------------------------------------------------

pub const ROCKSDB_SIZE: &str = "tally_rocksdb_size_bytes";
/// 1 while RocksDB stops writes (too many memtables or level-0 files).
pub const ROCKSDB_WRITE_STOPPED: &str = "tally_rocksdb_write_stopped";
/// The rate RocksDB delays writes to while it catches up with compaction; 0 when not delayed.
pub const ROCKSDB_DELAYED_WRITE_RATE: &str = "tally_rocksdb_delayed_write_rate_bytes";
/// Free bytes of the file system holding the data directory (for unprivileged users).
pub const DATA_DIR_FREE: &str = "tally_data_dir_free_bytes";
/// Size of the file system holding the data directory.
pub const DATA_DIR_CAPACITY: &str = "tally_data_dir_capacity_bytes";
/// Unix time the node's TLS certificate expires.
pub const CERT_EXPIRY: &str = "tally_certificate_expiry_timestamp_seconds";
// The `prometheus` crate's process collector (Linux).
pub const PROCESS_CPU: &str = "process_cpu_seconds_total";
pub const PROCESS_RSS: &str = "process_resident_memory_bytes";
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
pub const PROCESS_MAX_FDS: &str = "process_max_fds";

// ----- operator ----------------------------------------------------------------------------

pub const OP_RECONCILES: &str = "tally_operator_reconciles_total";
pub const OP_ERRORS: &str = "tally_operator_reconcile_errors_total";
pub const OP_DURATION: &str = "tally_operator_reconcile_duration_seconds";
pub const OP_IN_FLIGHT: &str = "tally_operator_reconciles_in_flight";
/// Objects whose last reconcile failed and that wait in the controller's queue for their retry
/// (exponential back-off), by kind.
pub const OP_RETRY_QUEUE: &str = "tally_operator_retry_queue_depth";
pub const OP_RESOURCES: &str = "tally_operator_resources";
pub const OP_LEADER: &str = "tally_operator_leader";
/// Completion time of a BackupSchedule's newest successful Backup (labels object_namespace,
/// schedule, channel); the schedule's creation time before its first, so that "no success
/// for longer than a period" holds for a schedule that never succeeded too.
pub const OP_SCHEDULE_LAST_SUCCESS: &str =
    "tally_operator_backup_schedule_last_success_timestamp_seconds";
/// Seconds between two of a BackupSchedule's scheduled times, for "no success within the
/// period" alerts.
pub const OP_SCHEDULE_INTERVAL: &str = "tally_operator_backup_schedule_interval_seconds";
pub const L_SCHEDULE: &str = "schedule";
/// The namespace of the object a series is about (`namespace` is the scraped pod's).
pub const L_OBJECT_NAMESPACE: &str = "object_namespace";

/// Every name the node exports (histograms by their base name).
pub const NODE_METRICS: &[&str] = &[
    CHANNEL_HEIGHT,
    CHANNEL_READY,
    CHANNEL_CONSENTERS,
    RAFT_TERM,
    RAFT_ROLE,
    RAFT_LEADER_ID,
    RAFT_LEADER_CHANGES,
    RAFT_APPLIED_INDEX,
    RAFT_COMMIT_INDEX,
    RAFT_PERSIST_SECONDS,
    RAFT_QUIET,
    SNAPSHOTS_SENT,
    SNAPSHOTS_APPLIED,
    CHECKPOINTS_SENT,
    SNAPSHOTS_REFUSED,
    VOTES_WITHHELD,
    BACKUP_DURATION_SECONDS,
    BACKUP_BYTES,
    BACKUP_LAST_SUCCESS,
    BACKUPS,
    LOG_COMPACTIONS,
    PEER_DROPPED,
    COMMITTED_TXS,
    COMMITTED_BLOCKS,
    REJECTED_TXS,
    PROPOSAL_COMMIT_SECONDS,
    BATCH_SIZE,
    STATE_ROOT,
    CHANNEL_DEGRADED,
    FIRST_DIFFERING_HEIGHT,
    CHAINCODE_EXEC_SECONDS,
    CHAINCODE_FUEL,
    ROCKSDB_SIZE,
    ROCKSDB_WRITE_STOPPED,
    ROCKSDB_DELAYED_WRITE_RATE,
    DATA_DIR_FREE,
    DATA_DIR_CAPACITY,
    CERT_EXPIRY,
    PROCESS_CPU,
    PROCESS_RSS,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
];

/// Every name the operator exports.
pub const OPERATOR_METRICS: &[&str] = &[
    OP_RECONCILES,
    OP_ERRORS,
    OP_DURATION,
    OP_IN_FLIGHT,
    OP_RETRY_QUEUE,
    OP_RESOURCES,
    OP_LEADER,
    OP_SCHEDULE_LAST_SUCCESS,
    OP_SCHEDULE_INTERVAL,
];

/// The metric names a PromQL expression uses: identifiers that begin with `tally_` or
/// `process_`, outside quoted strings. Good enough for the expressions of this crate, which
/// name every metric that way; label names never begin so.
pub fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = expr.char_indices().peekable();
    let bytes = expr.as_bytes();
    while let Some((i, c)) = chars.next() {
        if c == '"' || c == '\'' || c == '`' {
            // Skip the quoted string, escapes included.
            while let Some((_, d)) = chars.next() {
                if d == '\\' {
                    chars.next();
                } else if d == c {
                    break;
                }
            }
            continue;
        }
        let starts_ident = c.is_ascii_alphabetic() || c == '_' || c == ':';
        let after_ident = i > 0 && {
            let p = bytes[i - 1];
            p.is_ascii_alphanumeric() || p == b'_' || p == b':'
        };
        if starts_ident && !after_ident {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let ident = &expr[i..end];
            if (ident.starts_with("tally_") || ident.starts_with("process_"))
                && !out.iter().any(|o| o == ident)
            {
                out.push(ident.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_metric_names_outside_strings() {
        let e = r#"sum by (channel) (rate(tally_committed_transactions_total{job="tally_x",channel=~"$channel"}[5m])) / on() process_open_fds"#;
        assert_eq!(
            metrics_in(e),
            vec!["tally_committed_transactions_total", "process_open_fds"]
        );
        assert!(metrics_in("max(x_tally_y)").is_empty());
    }
}
