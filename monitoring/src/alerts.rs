//! The alert rules, each with the promtool unit tests that show it firing and silent.
//!
//! From these, [`crate::files`] writes the plain Prometheus rule file, its promtool test file
//! and the Helm chart's PrometheusRule. Every alert has a runbook in
//! `docs/runbooks/<alert>.md`.

use crate::names::*;
use crate::queries::{self, m, CHANNEL_KEY};
use std::collections::BTreeMap;

/// Which rule group an alert belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Ledger,
    Operator,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Ledger => "tally-ledger",
            Group::Operator => "tally-operator",
        }
    }
}

/// One input series of a promtool test: `metric{labels}` and its values in promtool's
/// expanding notation (`0+10x20`).
#[derive(Clone, Debug)]
pub struct Series {
    pub metric: String,
    pub labels: Vec<(&'static str, String)>,
    pub values: String,
}

impl Series {
    /// The series in PromQL notation.
    pub fn selector(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{}{{{}}}", self.metric, labels.join(","))
    }
}

/// One promtool test case: input series, when to evaluate, and the label sets of the alerts
/// expected firing then (empty: silent).
#[derive(Clone, Debug)]
pub struct Case {
    pub series: Vec<Series>,
    pub eval_time: &'static str,
    pub expect: Vec<BTreeMap<String, String>>,
}

#[derive(Clone, Debug)]
pub struct Alert {
    pub name: &'static str,
    pub group: Group,
    pub expr: String,
    /// How long the condition must hold before the alert fires.
    pub for_: &'static str,
    pub severity: &'static str,
    /// One line; may use `{{ $labels.NAME }}`.
    pub summary: &'static str,
    /// What it means, without templates.
    pub description: &'static str,
    pub fires: Case,
    pub silent: Case,
}

impl Alert {
    /// `docs/runbooks/<alert>.md`, relative to the repository root.
    pub fn runbook(&self) -> String {
        format!("docs/runbooks/{}.md", self.name)
    }

    /// The annotations as Prometheus renders them for an alert with `labels`: the summary's
    /// `{{ $labels.NAME }}` replaced by the label's value (only that form is used).
    pub fn annotations(&self, labels: Option<&BTreeMap<String, String>>) -> Vec<(String, String)> {
        let mut summary = self.summary.to_string();
        if let Some(labels) = labels {
            while let Some(start) = summary.find("{{ $labels.") {
                let rest = &summary[start + "{{ $labels.".len()..];
                let Some(end) = rest.find(" }}") else { break };
                let name = &rest[..end];
                let value = labels.get(name).cloned().unwrap_or_default();
                summary = format!(
                    "{}{}{}",
                    &summary[..start],
                    value,
                    &rest[end + " }}".len()..]
                );
            }
        }
        vec![
            ("summary".into(), summary),
            ("description".into(), self.description.to_string()),
            ("runbook".into(), self.runbook()),
        ]
    }
}

fn s(metric: &str, labels: &[(&'static str, &str)], values: &str) -> Series {
    Series {
        metric: metric.to_string(),
        labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        values: values.to_string(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// Test series labels: one consortium `c`, channel `main`, nodes n1..n3 of org1/org2.
const N1: &[(&str, &str)] = &[
    ("consortium", "c"),
    ("org", "org1"),
    ("node", "n1"),
    ("channel", "main"),
];
const N2: &[(&str, &str)] = &[
    ("consortium", "c"),
    ("org", "org1"),
    ("node", "n2"),
    ("channel", "main"),
];
const N3: &[(&str, &str)] = &[
    ("consortium", "c"),
    ("org", "org2"),
    ("node", "n3"),
    ("channel", "main"),
];

fn with(
    base: &[(&'static str, &'static str)],
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, &'static str)> {
    base.iter().chain(extra.iter()).copied().collect()
}

fn channel_labels(severity: &str) -> BTreeMap<String, String> {
    labels(&[
        ("consortium", "c"),
        ("channel", "main"),
        ("severity", severity),
    ])
}

/// Every alert.
pub fn all() -> Vec<Alert> {
    let role = RAFT_ROLE;
    let height = CHANNEL_HEIGHT;
    let root = STATE_ROOT;
    let k = CHANNEL_KEY;
    let bucket = format!("{PROPOSAL_COMMIT_SECONDS}_bucket");
    let latency_buckets = |fast: &str, slow: &str| -> Vec<Series> {
        vec![
            s(&bucket, &with(N1, &[("le", "0.5")]), fast),
            s(&bucket, &with(N1, &[("le", "2")]), fast),
            s(&bucket, &with(N1, &[("le", "5")]), slow),
            s(&bucket, &with(N1, &[("le", "+Inf")]), slow),
        ]
    };
    let ratio = format!("{} / {}", m(DATA_DIR_FREE, ""), m(DATA_DIR_CAPACITY, ""));
    let rejected = format!("sum by ({k}) (rate({REJECTED_TXS}[5m]))");
    let op_errors = format!(
        "sum by (namespace, kind) (rate({OP_RECONCILES}{{result=\"error\"}}[10m])) / sum by (namespace, kind) (rate({OP_RECONCILES}[10m]))"
    );
    vec![
        Alert {
            name: "TallyChannelNoLeader",
            group: Group::Ledger,
            expr: format!("{} == 0", queries::has_leader("")),
            for_: "1m",
            severity: "critical",
            summary: "Channel {{ $labels.channel }} of consortium {{ $labels.consortium }} has no Raft leader",
            description: "No node of the channel that Prometheus scrapes is its Raft leader, so the channel orders and commits nothing. Elections normally end within seconds.",
            fires: Case {
                series: vec![s(role, N1, "0x10"), s(role, N2, "1x10")],
                eval_time: "5m",
                expect: vec![channel_labels("critical")],
            },
            // A leader lost for less than `for:` (one evaluation) stays silent.
            silent: Case {
                series: vec![s(role, N1, "0 2x10"), s(role, N2, "1 0x10")],
                eval_time: "5m",
                expect: vec![],
            },
        },
        Alert {
            name: "TallyStateRootDisagreement",
            group: Group::Ledger,
            expr: format!("{} > 1", queries::distinct_tip_roots("")),
            for_: "2m",
            severity: "critical",
            summary: "Nodes of channel {{ $labels.channel }} ({{ $labels.consortium }}) report different state roots at the same height",
            description: "Nodes at the channel's highest block computed different world states from the same blocks. Transactions are executed on every node, so this is non-determinism or corruption on some node; their answers to reads differ.",
            fires: Case {
                series: vec![
                    s(height, N1, "5x10"),
                    s(height, N2, "5x10"),
                    s(root, N1, "111x10"),
                    s(root, N2, "222x10"),
                ],
                eval_time: "5m",
                expect: vec![channel_labels("critical")],
            },
            // n3 is behind the tip, so its older root does not count.
            silent: Case {
                series: vec![
                    s(height, N1, "5x10"),
                    s(height, N2, "5x10"),
                    s(height, N3, "4x10"),
                    s(root, N1, "111x10"),
                    s(root, N2, "111x10"),
                    s(root, N3, "999x10"),
                ],
                eval_time: "5m",
                expect: vec![],
            },
        },
        Alert {
            name: "TallyChannelDegraded",
            group: Group::Ledger,
            // One gauge covers both causes the node reports: a ledger that differs from the
            // majority's signed checkpoints, and a channel thread that died.
            expr: format!("{CHANNEL_DEGRADED} == 1"),
            // The node sets it once, on a verdict, and keeps it until its data is replaced:
            // there is no flapping to wait out.
            for_: "0m",
            severity: "critical",
            summary: "Node {{ $labels.node }} stopped serving channel {{ $labels.channel }} ({{ $labels.consortium }}): its ledger differs from the majority's or its channel thread died",
            description: "The node refuses the channel's reads and writes and reports not ready: either its ledger differs from the one the channel's other nodes signed in checkpoints (tally_channel_first_differing_height says from which block), or the thread that runs the channel on it stopped on an error. The channel goes on with its other nodes, with one failure less to spare.",
            fires: Case {
                series: vec![s(CHANNEL_DEGRADED, N1, "0x10"), s(CHANNEL_DEGRADED, N2, "0 1x10")],
                eval_time: "5m",
                expect: vec![labels(&[
                    ("consortium", "c"),
                    ("channel", "main"),
                    ("org", "org1"),
                    ("node", "n2"),
                    ("severity", "critical"),
                ])],
            },
            silent: Case {
                series: vec![s(CHANNEL_DEGRADED, N1, "0x10"), s(CHANNEL_DEGRADED, N2, "0x10")],
                eval_time: "5m",
                expect: vec![],
            },
        },
        Alert {
            name: "TallyNodeBehind",
            group: Group::Ledger,
            expr: format!("{} > 50", queries::blocks_behind("")),
            for_: "5m",
            severity: "warning",
            summary: "Node {{ $labels.node }} is more than 50 blocks behind channel {{ $labels.channel }} ({{ $labels.consortium }})",
            description: "The node keeps falling behind the highest node of its channel instead of catching up: it serves stale reads and does not count toward a healthy quorum.",
            fires: Case {
                series: vec![s(height, N1, "0+10x20"), s(height, N2, "0x20")],
                eval_time: "15m",
                expect: vec![labels(&[
                    ("consortium", "c"),
                    ("channel", "main"),
                    ("org", "org1"),
                    ("node", "n2"),
                    ("severity", "warning"),
                ])],
            },
            silent: Case {
                series: vec![s(height, N1, "0+10x20"), s(height, N2, "0+10x20")],
                eval_time: "15m",
                expect: vec![],
            },
        },
        Alert {
            name: "TallyCommitLatencyHigh",
            group: Group::Ledger,
            expr: format!("{} > 2", queries::commit_latency(0.99, "", "5m")),
            for_: "10m",
            severity: "warning",
            summary: "p99 proposal-to-commit latency of channel {{ $labels.channel }} ({{ $labels.consortium }}) is above 2 s",
            description: "For 10 minutes the slowest 1 in 100 transactions took more than 2 seconds from arrival at a node to commit there.",
            fires: Case {
                series: latency_buckets("0x30", "0+10x30"),
                eval_time: "20m",
                expect: vec![channel_labels("warning")],
            },
            silent: Case {
                series: latency_buckets("0+10x30", "0+10x30"),
                eval_time: "20m",
                expect: vec![],
            },
        },
        Alert {
            name: "TallyRejectedTxRateHigh",
            group: Group::Ledger,
            expr: format!(
                "{rejected} > 0.5 and {rejected} > 0.1 * max by ({k}) (rate({COMMITTED_TXS}[5m]))"
            ),
            for_: "10m",
            severity: "warning",
            summary: "Channel {{ $labels.channel }} ({{ $labels.consortium }}) rejects more than 10 % of its transactions",
            description: "For 10 minutes more than one transaction in ten sent to the channel (and more than one every two seconds) was rejected, at submission or in a block.",
            fires: Case {
                series: vec![
                    s(REJECTED_TXS, &with(N1, &[("reason", "not_member")]), "0+600x30"),
                    s(COMMITTED_TXS, N1, "0+600x30"),
                ],
                eval_time: "20m",
                expect: vec![channel_labels("warning")],
            },
            // One rejection a second among a hundred commits is noise.
            silent: Case {
                series: vec![
                    s(REJECTED_TXS, &with(N1, &[("reason", "not_member")]), "0+60x30"),
                    s(COMMITTED_TXS, N1, "0+6000x30"),
                ],
                eval_time: "20m",
                expect: vec![],
            },
        },
        Alert {
            name: "TallyQuorumAtRisk",
            group: Group::Ledger,
            expr: format!(
                "{up} <= on ({k}) {quorum} and on ({k}) {up} < on ({k}) max by ({k}) ({CHANNEL_CONSENTERS})",
                up = queries::voters_up(""),
                quorum = queries::quorum(""),
            ),
            for_: "1m",
            severity: "critical",
            summary: "Channel {{ $labels.channel }} ({{ $labels.consortium }}) is one node away from losing its Raft quorum",
            description: "Some of the channel's consenters are down, and only a bare majority (or fewer) are up: one more failure or restart stops the channel.",
            fires: Case {
                series: vec![
                    s(role, N1, "0x10"),
                    s(role, N2, "2x10"),
                    s(CHANNEL_CONSENTERS, N1, "3x10"),
                    s(CHANNEL_CONSENTERS, N2, "3x10"),
                ],
                eval_time: "5m",
                expect: vec![channel_labels("critical")],
            },
            silent: Case {
                series: vec![
                    s(role, N1, "0x10"),
                    s(role, N2, "2x10"),
                    s(role, N3, "0x10"),
                    s(CHANNEL_CONSENTERS, N1, "3x10"),
                    s(CHANNEL_CONSENTERS, N2, "3x10"),
                    s(CHANNEL_CONSENTERS, N3, "3x10"),
                ],
                eval_time: "5m",
                expect: vec![],
            },
        },
        Alert {
            name: "TallyCertificateExpiring",
            group: Group::Ledger,
            expr: format!("{CERT_EXPIRY} - time() < 14 * 86400"),
            for_: "1h",
            severity: "warning",
            summary: "The TLS certificate of node {{ $labels.node }} ({{ $labels.org }}) expires in less than 14 days",
            description: "Peers and admin clients refuse an expired certificate: the node drops out of its channels when it expires.",
            fires: Case {
                series: vec![s(CERT_EXPIRY, &N1[..3], "864000x200")],
                eval_time: "2h",
                expect: vec![labels(&[
                    ("consortium", "c"),
                    ("org", "org1"),
                    ("node", "n1"),
                    ("severity", "warning"),
                ])],
            },
            silent: Case {
                series: vec![s(CERT_EXPIRY, &N1[..3], "86400000x200")],
                eval_time: "2h",
                expect: vec![],
            },
        },
        Alert {
            name: "TallyDiskFilling",
            group: Group::Ledger,
            expr: format!(
                "{ratio} < 0.05 or ({ratio} < 0.15 and predict_linear({DATA_DIR_FREE}[6h], 24 * 3600) < 0)"
            ),
            for_: "15m",
            severity: "warning",
            summary: "The data volume of node {{ $labels.node }} ({{ $labels.org }}) is filling up",
            description: "Less than 5 % of the node's data volume is free, or less than 15 % and it will be full within a day at the current rate. A full volume stops the node's commits.",
            fires: Case {
                series: vec![
                    s(DATA_DIR_CAPACITY, &N1[..3], "1000x100"),
                    s(DATA_DIR_FREE, &N1[..3], "40x100"),
                ],
                eval_time: "1h",
                expect: vec![labels(&[
                    ("consortium", "c"),
                    ("org", "org1"),
                    ("node", "n1"),
                    ("severity", "warning"),
                ])],
            },
            // 12 % free but steady: no alert.
            silent: Case {
                series: vec![
                    s(DATA_DIR_CAPACITY, &N1[..3], "1000x100"),
                    s(DATA_DIR_FREE, &N1[..3], "120x100"),
                ],
                eval_time: "1h",
                expect: vec![],
            },
        },
        Alert {
            name: "TallyOperatorReconcileErrors",
            group: Group::Operator,
            expr: format!("{op_errors} > 0.5"),
            for_: "15m",
            severity: "warning",
            summary: "Most {{ $labels.kind }} reconciles of the Tally operator fail",
            description: "For 15 minutes more than half of the operator's reconciles of this kind failed: the resources it manages are not converging to their specs.",
            fires: Case {
                series: vec![
                    s(OP_RECONCILES, &[("namespace", "tally-system"), ("kind", "Peer"), ("result", "error")], "0+10x60"),
                    s(OP_RECONCILES, &[("namespace", "tally-system"), ("kind", "Peer"), ("result", "ok")], "0+1x60"),
                ],
                eval_time: "40m",
                expect: vec![labels(&[
                    ("namespace", "tally-system"),
                    ("kind", "Peer"),
                    ("severity", "warning"),
                ])],
            },
            silent: Case {
                series: vec![
                    s(OP_RECONCILES, &[("namespace", "tally-system"), ("kind", "Peer"), ("result", "error")], "0+1x60"),
                    s(OP_RECONCILES, &[("namespace", "tally-system"), ("kind", "Peer"), ("result", "ok")], "0+10x60"),
                ],
                eval_time: "40m",
                expect: vec![],
            },
        },
        Alert {
            name: "TallyBackupOverdue",
            group: Group::Operator,
            // One period, plus 15 minutes for the backup itself to run.
            expr: format!("time() - {OP_SCHEDULE_LAST_SUCCESS} > {OP_SCHEDULE_INTERVAL} + 900"),
            for_: "5m",
            severity: "warning",
            summary: "BackupSchedule {{ $labels.object_namespace }}/{{ $labels.schedule }} has made no successful backup of channel {{ $labels.channel }} for longer than its period",
            description: "The newest successful Backup of this schedule is older than the time between two of its scheduled times (plus 15 minutes): backups fail, cannot start, or the schedule is suspended. A restore would lose what was committed since.",
            fires: Case {
                series: vec![
                    s(OP_SCHEDULE_LAST_SUCCESS, &[("namespace", "tally-system"), ("object_namespace", "bank"), ("schedule", "nightly"), ("channel", "ch")], "0x60"),
                    s(OP_SCHEDULE_INTERVAL, &[("namespace", "tally-system"), ("object_namespace", "bank"), ("schedule", "nightly"), ("channel", "ch")], "60x60"),
                ],
                eval_time: "30m",
                expect: vec![labels(&[
                    ("namespace", "tally-system"),
                    ("object_namespace", "bank"),
                    ("schedule", "nightly"),
                    ("channel", "ch"),
                    ("severity", "warning"),
                ])],
            },
            silent: Case {
                series: vec![
                    s(OP_SCHEDULE_LAST_SUCCESS, &[("namespace", "tally-system"), ("object_namespace", "bank"), ("schedule", "nightly"), ("channel", "ch")], "0+60x60"),
                    s(OP_SCHEDULE_INTERVAL, &[("namespace", "tally-system"), ("object_namespace", "bank"), ("schedule", "nightly"), ("channel", "ch")], "60x60"),
                ],
                eval_time: "30m",
                expect: vec![],
            },
        },
        Alert {
            name: "TallyOperatorDown",
            group: Group::Operator,
            // `or vector(0)`: no operator scraped at all counts as none leading.
            expr: format!("(sum({OP_LEADER}) or vector(0)) < 1"),
            for_: "5m",
            severity: "critical",
            summary: "No Tally operator replica is leading",
            description: "No operator replica holds the leader Lease (or none is scraped): nothing reconciles Consortium, Peer, Channel and Chaincode resources. Running ledgers keep working, changes to them wait.",
            fires: Case {
                series: vec![
                    s(OP_LEADER, &[("namespace", "tally-system"), ("pod", "op-a")], "0x20"),
                    s(OP_LEADER, &[("namespace", "tally-system"), ("pod", "op-b")], "0x20"),
                ],
                eval_time: "10m",
                expect: vec![labels(&[("severity", "critical")])],
            },
            silent: Case {
                series: vec![
                    s(OP_LEADER, &[("namespace", "tally-system"), ("pod", "op-a")], "1x20"),
                    s(OP_LEADER, &[("namespace", "tally-system"), ("pod", "op-b")], "0x20"),
                ],
                eval_time: "10m",
                expect: vec![],
            },
        },
    ]
}
