//! The Grafana dashboards: Consortium overview, Node and Operator, as data. [`Dashboard::json`]
//! writes Grafana's dashboard JSON (importable as is; the data source is a variable).

use crate::names::*;
use crate::queries::{self, m, CHANNEL_KEY};
use serde_json::{json, Value};

/// What kind of Grafana panel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A line per series over time.
    TimeSeries,
    /// The latest value of each series, large.
    Stat,
}

/// One query of a panel.
#[derive(Clone, Debug)]
pub struct Query {
    pub expr: String,
    /// Grafana legend template (`{{channel}}`).
    pub legend: String,
    /// Why this query may return nothing on a healthy consortium with traffic; `None` for
    /// every query that must return data (tests/tests/monitoring.rs checks that).
    pub may_be_empty: Option<&'static str>,
}

/// One panel: what it shows and how a newcomer should read it.
#[derive(Clone, Debug)]
pub struct Panel {
    pub title: &'static str,
    pub description: &'static str,
    pub kind: Kind,
    /// Grafana unit id (`s`, `bytes`, `ops`, `percentunit`, `none`, ...).
    pub unit: &'static str,
    pub queries: Vec<Query>,
    /// Threshold steps above the green base: (value, colour).
    pub thresholds: Vec<(f64, &'static str)>,
    /// Value-to-text mappings (a Raft role number to its name).
    pub mappings: Vec<(i64, &'static str)>,
    /// Grid width out of 24.
    pub width: u32,
}

/// A dashboard variable that lists the values of a label.
#[derive(Clone, Debug)]
pub struct Variable {
    pub name: &'static str,
    pub label: &'static str,
    /// `label_values(...)` query.
    pub query: String,
}

#[derive(Clone, Debug)]
pub struct Dashboard {
    pub uid: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// File name under `dashboards/`.
    pub file: &'static str,
    pub variables: Vec<Variable>,
    pub panels: Vec<Panel>,
}

fn q(expr: impl Into<String>, legend: &str) -> Query {
    Query {
        expr: expr.into(),
        legend: legend.to_string(),
        may_be_empty: None,
    }
}

fn panel(title: &'static str, unit: &'static str, description: &'static str) -> Panel {
    Panel {
        title,
        description,
        kind: Kind::TimeSeries,
        unit,
        queries: Vec::new(),
        thresholds: Vec::new(),
        mappings: Vec::new(),
        width: 12,
    }
}

impl Panel {
    fn query(mut self, expr: impl Into<String>, legend: &str) -> Panel {
        self.queries.push(q(expr, legend));
        self
    }
    /// Marks the last query as one that may return nothing, and why.
    fn may_be_empty(mut self, why: &'static str) -> Panel {
        if let Some(q) = self.queries.last_mut() {
            q.may_be_empty = Some(why);
        }
        self
    }
    fn stat(mut self) -> Panel {
        self.kind = Kind::Stat;
        self
    }
    fn thresholds(mut self, t: &[(f64, &'static str)]) -> Panel {
        self.thresholds = t.to_vec();
        self
    }
    fn width(mut self, w: u32) -> Panel {
        self.width = w;
        self
    }
}

const RATE: &str = "$__rate_interval";
const CHAINCODE_PENDING: &str =
    "a chaincode's series start with its first call, and the quickstart example the monitoring suite runs has no chaincode";

/// Selector of the channel-scoped variables.
const SEL_CHANNEL: &str =
    r#"namespace=~"$namespace",consortium=~"$consortium",channel=~"$channel""#;
/// Selector of the node dashboard's per-channel series.
const SEL_NODE_CHANNEL: &str =
    r#"namespace=~"$namespace",consortium=~"$consortium",channel=~"$channel",node=~"$node""#;
/// Selector of the node dashboard's per-process series (no channel label).
const SEL_NODE: &str = r#"namespace=~"$namespace",consortium=~"$consortium",node=~"$node""#;
const SEL_OPERATOR: &str = r#"namespace=~"$namespace",kind=~"$kind""#;
const SEL_OPERATOR_NS: &str = r#"namespace=~"$namespace""#;

fn ledger_variables(with_node: bool) -> Vec<Variable> {
    let mut v = vec![
        Variable {
            name: "namespace",
            label: "Namespace",
            query: format!("label_values({CHANNEL_HEIGHT}, namespace)"),
        },
        Variable {
            name: "consortium",
            label: "Consortium",
            query: format!(
                r#"label_values({CHANNEL_HEIGHT}{{namespace=~"$namespace"}}, consortium)"#
            ),
        },
        Variable {
            name: "channel",
            label: "Channel",
            query: format!(
                r#"label_values({CHANNEL_HEIGHT}{{namespace=~"$namespace",consortium=~"$consortium"}}, channel)"#
            ),
        },
    ];
    if with_node {
        v.push(Variable {
            name: "node",
            label: "Node",
            query: format!(
                r#"label_values({CHANNEL_HEIGHT}{{namespace=~"$namespace",consortium=~"$consortium",channel=~"$channel"}}, node)"#
            ),
        });
    }
    v
}

/// Consortium overview: is every channel ordering, committing and agreeing?
pub fn overview() -> Dashboard {
    let s = SEL_CHANNEL;
    let by = CHANNEL_KEY;
    let mut leader = panel("Leader", "none", "The node that is the channel's Raft leader now: it orders transactions into blocks. No value means the channel has no leader and cannot commit (alert TallyChannelNoLeader).")
        .query(format!("max by ({by}, node) ({} == {ROLE_LEADER})", m(RAFT_ROLE, s)), "{{channel}}: {{node}}")
        .stat()
        .width(8);
    leader.mappings = vec![(ROLE_LEADER as i64, "leader")];
    let panels = vec![
        panel("Nodes up / ready", "none", "Per channel: how many nodes Prometheus scrapes (up) and how many of them report the channel ready (they know a leader and have caught up with it). Ready below up means a node is catching up or cut off; up below the nodes you run means a node is down.")
            .query(format!("count by ({by}) ({})", m(CHANNEL_READY, s)), "{{channel}} up")
            .query(format!("sum by ({by}) ({})", m(CHANNEL_READY, s)), "{{channel}} ready")
            .stat()
            .width(8),
        leader,
        panel("Distinct state roots at the tip", "none", "Per channel: how many different state roots the nodes at the channel's highest block report. 1 means they agree on the ledger's state; more than 1 for minutes means nodes computed different states from the same blocks (alert TallyStateRootDisagreement).")
            .query(queries::distinct_tip_roots(s), "{{channel}}")
            .stat()
            .thresholds(&[(2.0, "red")])
            .width(8),
        panel("Height", "none", "Blocks in each channel (genesis included), the highest any node reports. It grows with every block; a flat line under traffic means the channel stopped committing.")
            .query(format!("max by ({by}) ({})", m(CHANNEL_HEIGHT, s)), "{{channel}}"),
        panel("Committed transactions per second", "ops", "Valid transactions committed per second, per channel (the average over its nodes, which all commit the same blocks).")
            .query(format!("avg by ({by}) (rate({}[{RATE}]))", m(COMMITTED_TXS, s)), "{{channel}}"),
        panel("Proposal to commit latency (p50, p99)", "s", "Time from a transaction's arrival at a node to its commit in a block on that node: ordering by the leader, replication to a quorum and execution. The p99 line is what the slowest 1 in 100 clients waits; above 2 s for 10 minutes is alert TallyCommitLatencyHigh.")
            .query(queries::commit_latency(0.5, s, RATE), "{{channel}} p50")
            .query(queries::commit_latency(0.99, s, RATE), "{{channel}} p99")
            .thresholds(&[(0.5, "yellow"), (2.0, "red")]),
        panel("Leader changes", "none", "How often the nodes saw the channel's leader change in the last 10 minutes (the most any node saw). An occasional change is normal (a node restarted, a rollout); a steady rate means flapping elections: overloaded nodes or a flaky network.")
            .query(format!("max by ({by}) (increase({}[10m]))", m(RAFT_LEADER_CHANGES, s)), "{{channel}}")
            .thresholds(&[(3.0, "yellow"), (10.0, "red")]),
        panel("Rejected transactions by reason", "ops", "Transactions refused per second, by channel and reason: at submission (not_member, forbidden, bad_signature, too_large, ...) or in a block (duplicate, ...). Clients with wrong identities or old data show here; a high share of all traffic is alert TallyRejectedTxRateHigh.")
            .query(format!("sum by ({by}, reason) (rate({}[{RATE}]))", m(REJECTED_TXS, s)), "{{channel}} {{reason}}"),
        panel("Blocks behind the channel's tip", "none", "Per node: how many blocks it is behind the highest node of the channel. Nodes close this gap within seconds; a node that stays behind is alert TallyNodeBehind.")
            .query(queries::blocks_behind(s), "{{channel}} {{node}}")
            .thresholds(&[(10.0, "yellow"), (100.0, "red")]),
        panel("Voting nodes up versus quorum", "none", "Per channel: consenters that are up, and the quorum Raft needs (a majority of the configured consenters). When up equals quorum, one more failure stops the channel (alert TallyQuorumAtRisk).")
            .query(queries::voters_up(s), "{{channel}} voters up")
            .query(queries::quorum(s), "{{channel}} quorum"),
        panel("Since the last backup", "s", "Per channel: time since the newest successful backup any of its nodes made (Backup objects, BackupSchedules, tallyctl backup create). A restore loses what was committed after it; a schedule that has not succeeded within its period is alert TallyBackupOverdue.")
            .query(format!("time() - max by ({by}) ({})", m(BACKUP_LAST_SUCCESS, s)), "{{channel}}")
            .may_be_empty("a node exports backup series only once it has made a backup of the channel")
            .stat(),
    ];
    Dashboard {
        uid: "tally-overview",
        title: "Tally / Consortium overview",
        description:
            "Every channel of the selected consortia: ordering, commits, latency, agreement.",
        file: "overview.json",
        variables: ledger_variables(false),
        panels,
    }
}

/// One node in depth: Raft, storage, process and chaincode.
pub fn node() -> Dashboard {
    let s = SEL_NODE_CHANNEL;
    let p = SEL_NODE;
    let mut role = panel("Raft role", "none", "What this node is in each channel's Raft group: leader (orders blocks), follower (replicates), candidate (an election is running) or learner (replicates without a vote). A node that keeps switching to candidate cannot hear its leader.")
        .query(m(RAFT_ROLE, s), "{{node}} {{channel}}");
    role.mappings = vec![
        (0, "follower"),
        (1, "candidate"),
        (2, "leader"),
        (3, "learner"),
    ];
    let chaincode_time = panel("Chaincode execution time (p99)", "s", "How long one chaincode invocation takes (p99), per node. Execution is metered by fuel and bounded in memory, so a slow contract shows here before it shows in commit latency.")
        .query(format!("histogram_quantile(0.99, sum by (node, le) (rate({}[{RATE}])))", m(&format!("{CHAINCODE_EXEC_SECONDS}_bucket"), p)), "{{node}}")
        .may_be_empty(CHAINCODE_PENDING)
        .thresholds(&[(0.1, "yellow"), (1.0, "red")]);
    let chaincode_fuel = panel("Chaincode fuel used", "none", "WebAssembly fuel (instructions, roughly) chaincode consumed per second, per node. Every node executes every transaction, so this is the ledger's compute load.")
        .query(format!("sum by (node) (rate({}[{RATE}]))", m(CHAINCODE_FUEL, p)), "{{node}}")
        .may_be_empty(CHAINCODE_PENDING);
    let panels = vec![
        panel("Raft term", "none", "The Raft term per channel: it increases by one with every election. Terms that climb steadily mean elections keep happening.")
            .query(format!("max by (node, channel) ({})", m(RAFT_TERM, s)), "{{node}} {{channel}}"),
        role,
        panel("Raft log: committed and applied index", "none", "The last log index known committed (replicated to a quorum) and the last applied to the ledger. Applied follows committed closely; a growing gap means the node cannot execute blocks as fast as they come.")
            .query(m(RAFT_COMMIT_INDEX, s), "{{node}} {{channel}} committed")
            .query(m(RAFT_APPLIED_INDEX, s), "{{node}} {{channel}} applied"),
        panel("Snapshots and log compactions", "ops", "Raft snapshots sent to (and installed from) lagging nodes, and log compactions, per second. Snapshots are rare: a node that needs them often is falling too far behind to catch up from the log. A refused snapshot failed verification (its reason says which check): a peer sent a forged or broken one.")
            .query(format!("sum by (node, channel) (rate({}[{RATE}]))", m(SNAPSHOTS_SENT, s)), "{{node}} {{channel}} sent")
            .query(format!("sum by (node, channel) (rate({}[{RATE}]))", m(SNAPSHOTS_APPLIED, s)), "{{node}} {{channel}} installed")
            .query(format!("sum by (node, channel, reason) (rate({}[{RATE}]))", m(SNAPSHOTS_REFUSED, s)), "{{node}} {{channel}} refused: {{reason}}")
            .may_be_empty("a node exports tally_snapshots_refused_total only once it has refused a peer's snapshot")
            .query(format!("sum by (node, channel) (rate({}[{RATE}]))", m(LOG_COMPACTIONS, s)), "{{node}} {{channel}} compactions"),
        panel("Transactions per block (p50, p99)", "none", "How many transactions each block carries. Under load the leader fills blocks up to the channel's batch size; small blocks under load mean the batch timeout cuts them.")
            .query(format!("histogram_quantile(0.5, sum by (node, channel, le) (rate({}[{RATE}])))", m(&format!("{BATCH_SIZE}_bucket"), s)), "{{node}} {{channel}} p50")
            .query(format!("histogram_quantile(0.99, sum by (node, channel, le) (rate({}[{RATE}])))", m(&format!("{BATCH_SIZE}_bucket"), s)), "{{node}} {{channel}} p99"),
        panel("Raft persist latency (p99)", "s", "Time to durably write one batch of Raft log entries and state (an fsync). Slow disks show here first; every commit waits for it.")
            .query(format!("histogram_quantile(0.99, sum by (node, le) (rate({}[{RATE}])))", m(&format!("{RAFT_PERSIST_SECONDS}_bucket"), p)), "{{node}}")
            .thresholds(&[(0.01, "yellow"), (0.1, "red")]),
        panel("RocksDB size", "bytes", "On-disk SST files plus memtables of the node's RocksDB: all its channels' blocks, state and Raft logs.")
            .query(m(ROCKSDB_SIZE, p), "{{node}}"),
        panel("RocksDB write stalls", "none", "1 while RocksDB stops writes, and the rate it slows writes to while compaction catches up (0 when it does not). Stalls stop commits: give the node faster disks or more CPU.")
            .query(m(ROCKSDB_WRITE_STOPPED, p), "{{node}} stopped")
            .query(m(ROCKSDB_DELAYED_WRITE_RATE, p), "{{node}} delayed write rate (bytes/s)")
            .thresholds(&[(1.0, "red")]),
        panel("Data volume free", "percentunit", "Free share of the file system that holds the node's data directory. Below 15 % and falling, or below 5 %, is alert TallyDiskFilling.")
            .query(format!("{} / {}", m(DATA_DIR_FREE, p), m(DATA_DIR_CAPACITY, p)), "{{node}}")
            .thresholds(&[(0.0, "red"), (0.05, "yellow"), (0.15, "green")]),
        panel("Process CPU", "percentunit", "CPU the node process uses, in cores (1 = one core busy). Signature checks, execution and RocksDB compaction take it; a node pinned at its CPU limit falls behind and answers late.")
            .query(format!("rate({}[{RATE}])", m(PROCESS_CPU, p)), "{{node}}"),
        panel("Process memory (resident)", "bytes", "Resident memory of the node process: RocksDB's caches and memtables, Raft logs in flight, and pending transactions.")
            .query(m(PROCESS_RSS, p), "{{node}}"),
        panel("Open files", "percentunit", "File descriptors the node holds (RocksDB files, connections) as a share of its limit. Near 1 the node cannot open files or accept clients.")
            .query(format!("{} / {}", m(PROCESS_OPEN_FDS, p), m(PROCESS_MAX_FDS, p)), "{{node}}")
            .thresholds(&[(0.7, "yellow"), (0.9, "red")]),
        panel("Certificate expires in", "s", "Time left until the node's TLS certificate expires. Peers and admins refuse an expired certificate; under 14 days is alert TallyCertificateExpiring.")
            .query(format!("{} - time()", m(CERT_EXPIRY, p)), "{{node}}")
            .thresholds(&[(0.0, "red"), (7.0 * 86400.0, "yellow"), (14.0 * 86400.0, "green")])
            .stat(),
        panel("Raft messages dropped", "ops", "Raft messages this node could not deliver per second, by peer: the peer is down, unreachable or too slow to read them.")
            .query(format!("sum by (node, peer) (rate({}[{RATE}]))", m(PEER_DROPPED, p)), "{{node}} to {{peer}}"),
        chaincode_time,
        chaincode_fuel,
    ];
    Dashboard {
        uid: "tally-node",
        title: "Tally / Node",
        description: "One ledger node in depth: Raft, storage, process, chaincode.",
        file: "node.json",
        variables: ledger_variables(true),
        panels,
    }
}

/// The operator: is it reconciling, and is what it manages Ready?
pub fn operator() -> Dashboard {
    let s = SEL_OPERATOR;
    let panels = vec![
        panel("Leader replica", "none", "1 where an operator replica holds the leader Lease: only the leader reconciles. 0 or no value for minutes means nothing reconciles (alert TallyOperatorDown).")
            .query(format!("sum({})", m(OP_LEADER, SEL_OPERATOR_NS)), "replicas leading")
            .thresholds(&[(0.0, "red"), (1.0, "green"), (2.0, "red")])
            .stat()
            .width(8),
        panel("Resources by Ready condition", "none", "The Consortium, Peer, Channel and Chaincode resources the operator manages, by kind and the status of their Ready condition. False or Unknown for long means a resource is stuck: see its conditions with kubectl describe.")
            .query(format!("sum by (kind, ready) ({})", m(OP_RESOURCES, s)), "{{kind}} {{ready}}")
            .width(16),
        panel("Reconciles per second", "ops", "Reconciles per second by kind and result. A reconcile runs when a resource or an object it owns changes, and on a periodic resync.")
            .query(format!("sum by (kind, result) (rate({}[{RATE}]))", m(OP_RECONCILES, s)), "{{kind}} {{result}}"),
        panel("Reconcile errors by reason", "ops", "Failed reconciles per second by kind, and by kind and reason. Errors are retried with back-off; a steady rate for most reconciles of a kind is alert TallyOperatorReconcileErrors.")
            .query(format!("sum by (kind) (rate({}[{RATE}]))", m(OP_RECONCILES, &format!(r#"{s},result="error""#))), "{{kind}} all errors")
            .query(format!("sum by (kind, reason) (rate({}[{RATE}]))", m(OP_ERRORS, s)), "{{kind}} {{reason}}")
            .may_be_empty("a reason's series exists only once a reconcile failed for it; the query above is 0 until then"),
        panel("Reconcile duration (p50, p99)", "s", "How long one reconcile takes, by kind. Reconciles that call node admin APIs take longest; seconds at p99 mean slow nodes or API server.")
            .query(format!("histogram_quantile(0.5, sum by (kind, le) (rate({}[{RATE}])))", m(&format!("{OP_DURATION}_bucket"), s)), "{{kind}} p50")
            .query(format!("histogram_quantile(0.99, sum by (kind, le) (rate({}[{RATE}])))", m(&format!("{OP_DURATION}_bucket"), s)), "{{kind}} p99")
            .thresholds(&[(1.0, "yellow"), (10.0, "red")]),
        panel("Work queue: in flight and waiting for retry", "none", "Reconciles running now, and objects whose last reconcile failed and that wait in the queue for their retry (back-off from 1 s to 5 min), by kind. A retry queue that only grows means the operator cannot make progress.")
            .query(format!("sum by (kind) ({})", m(OP_IN_FLIGHT, s)), "{{kind}} in flight")
            .query(format!("sum by (kind) ({})", m(OP_RETRY_QUEUE, s)), "{{kind}} waiting for retry"),
    ];
    Dashboard {
        uid: "tally-operator",
        title: "Tally / Operator",
        description: "The tally-operator: reconciles, errors, durations, the resources it manages.",
        file: "operator.json",
        variables: vec![
            Variable {
                name: "namespace",
                label: "Operator namespace",
                query: format!("label_values({OP_LEADER}, namespace)"),
            },
            Variable {
                name: "kind",
                label: "Kind",
                query: format!(r#"label_values({OP_RECONCILES}{{namespace=~"$namespace"}}, kind)"#),
            },
        ],
        panels,
    }
}

/// Every dashboard, in the order they are written.
pub fn all() -> Vec<Dashboard> {
    vec![overview(), node(), operator()]
}

impl Dashboard {
    /// Grafana's dashboard JSON.
    pub fn json(&self) -> Value {
        let datasource = json!({"type": "prometheus", "uid": "${datasource}"});
        let mut templating = vec![json!({
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        })];
        for v in &self.variables {
            templating.push(json!({
                "name": v.name,
                "label": v.label,
                "type": "query",
                "datasource": datasource,
                "query": {"query": v.query, "refId": format!("{}-values", v.name)},
                "definition": v.query,
                "refresh": 2,
                "includeAll": true,
                "multi": true,
                // Every value, including series without the label (a local consortium has no
                // namespace).
                "allValue": ".*",
                "current": {"selected": true, "text": ["All"], "value": ["$__all"]},
                "sort": 1,
                "hide": 0,
            }));
        }
        let (mut x, mut y, mut row_h) = (0u32, 0u32, 0u32);
        let mut panels = Vec::new();
        for (i, p) in self.panels.iter().enumerate() {
            let h = if p.kind == Kind::Stat { 5 } else { 8 };
            if x + p.width > 24 {
                x = 0;
                y += row_h;
                row_h = 0;
            }
            panels.push(p.json(i as u32 + 1, x, y, h, &datasource));
            x += p.width;
            row_h = row_h.max(h);
        }
        json!({
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["tally"],
            "editable": true,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "timezone": "",
            "templating": {"list": templating},
            "annotations": {"list": []},
            "links": [],
            "panels": panels,
        })
    }
}

impl Panel {
    fn json(&self, id: u32, x: u32, y: u32, h: u32, datasource: &Value) -> Value {
        let mut steps = vec![json!({"color": "green", "value": null})];
        for (v, c) in &self.thresholds {
            steps.push(json!({"color": c, "value": v}));
        }
        let mappings: Vec<Value> = if self.mappings.is_empty() {
            Vec::new()
        } else {
            let options: serde_json::Map<String, Value> = self
                .mappings
                .iter()
                .enumerate()
                .map(|(i, (v, text))| (v.to_string(), json!({"text": text, "index": i})))
                .collect();
            vec![json!({"type": "value", "options": options})]
        };
        let targets: Vec<Value> = self
            .queries
            .iter()
            .enumerate()
            .map(|(i, q)| {
                json!({
                    "refId": ((b'A' + i as u8) as char).to_string(),
                    "datasource": datasource,
                    "expr": q.expr,
                    "legendFormat": q.legend,
                    "range": true,
                })
            })
            .collect();
        let (type_, options) = match self.kind {
            Kind::TimeSeries => (
                "timeseries",
                json!({
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": true},
                    "tooltip": {"mode": "multi", "sort": "desc"},
                }),
            ),
            Kind::Stat => (
                "stat",
                json!({
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false},
                    "colorMode": "value",
                    "graphMode": "none",
                    "textMode": "value_and_name",
                    "orientation": "auto",
                }),
            ),
        };
        let mut custom = json!({});
        if self.kind == Kind::TimeSeries {
            custom = json!({
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 10,
                "showPoints": "never",
                "spanNulls": false,
                "thresholdsStyle": {"mode": if self.thresholds.is_empty() { "off" } else { "line" }},
            });
        }
        json!({
            "id": id,
            "type": type_,
            "title": self.title,
            "description": self.description,
            "datasource": datasource,
            "gridPos": {"h": h, "w": self.width, "x": x, "y": y},
            "fieldConfig": {
                "defaults": {
                    "unit": self.unit,
                    "thresholds": {"mode": "absolute", "steps": steps},
                    "mappings": mappings,
                    "custom": custom,
                },
                "overrides": [],
            },
            "options": options,
            "targets": targets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the issue asks of every panel: a description a newcomer understands, a unit, and
    /// queries scoped by the dashboard's variables.
    #[test]
    fn every_panel_is_described_scoped_and_has_a_unit() {
        let mut uids = std::collections::BTreeSet::new();
        for d in all() {
            assert!(uids.insert(d.uid), "uid {} twice", d.uid);
            let vars: Vec<&str> = d.variables.iter().map(|v| v.name).collect();
            assert!(
                vars.contains(&"namespace"),
                "{}: no namespace variable",
                d.title
            );
            if d.uid != "tally-operator" {
                for v in ["consortium", "channel"] {
                    assert!(vars.contains(&v), "{}: no {v} variable", d.title);
                }
            }
            for p in &d.panels {
                assert!(
                    p.description.len() > 60,
                    "{} / {}: describe it for a newcomer",
                    d.title,
                    p.title
                );
                assert!(!p.unit.is_empty(), "{} / {}: no unit", d.title, p.title);
                assert!(!p.queries.is_empty(), "{} / {}: no query", d.title, p.title);
                for q in &p.queries {
                    assert!(
                        q.expr.contains("$namespace"),
                        "{} / {}: {} ignores the namespace variable",
                        d.title,
                        p.title,
                        q.expr
                    );
                    assert!(
                        !crate::names::metrics_in(&q.expr).is_empty(),
                        "{} / {}: {} names no Tally metric",
                        d.title,
                        p.title,
                        q.expr
                    );
                }
            }
        }
    }
}
