//! `Backup` and `BackupSchedule`: copies of a channel's ledger in object storage, made by a
//! running node, and the schedule that makes and prunes them. Restoring is a field of the
//! `Peer` (`spec.restore`), since it is about the nodes that receive the ledger.

use crate::common::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where backups go: a repository URL and the Secret with its credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// `s3://bucket/prefix` (any S3-compatible store) or `file:///absolute/path` (a volume
    /// of the node). Backups of several channels may share one repository: chunks that are
    /// the same are stored once.
    #[schemars(length(min = 6, max = 1024), regex(pattern = r"^(s3|file)://[^\s]+$"))]
    pub url: String,
    /// A Secret in this namespace whose keys are the store's settings in the environment
    /// variable convention: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, and optionally
    /// `AWS_REGION`, `AWS_ENDPOINT` (an S3-compatible server) and `AWS_ALLOW_HTTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: Option<String>,
}

/// A one-off backup of a channel.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tally.dev",
    version = "v1alpha1",
    kind = "Backup",
    namespaced,
    status = "BackupStatus",
    shortname = "tbk",
    category = "tally",
    derive = "PartialEq",
    doc = "A backup of one channel's ledger to object storage, made by one of its running nodes without pausing writes; verified and content-addressed.",
    printcolumn(name = "Channel", type_ = "string", json_path = ".spec.channel"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Height", type_ = "integer", json_path = ".status.height"),
    printcolumn(name = "Stored", type_ = "string", json_path = ".status.storedSize"),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.node"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::cel::Rule::new("self.spec == oldSelf.spec").message("a Backup's spec cannot change; create another Backup"),
)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// The `Channel` in this namespace.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub channel: String,
    /// A node of the channel to make the backup (for example `bank-peer-0`); any ready node
    /// whose organization's admin the operator holds when empty. A leader is avoided when a
    /// follower can do it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 63))]
    pub node: String,
    pub destination: Destination,
    /// `Retain` (default) keeps the stored backup when this object is deleted; `Delete`
    /// removes its manifest, and the chunks no other backup uses. Backups made by a
    /// `BackupSchedule` are `Delete`, so that its retention frees the space.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum BackupPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub phase: BackupPhase,
    /// The node making (or that made) the backup, and its id for it there.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The repository, and the manifest's path in it: what `tallyctl backup verify` and
    /// `Peer.spec.restore` take.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest: String,
    /// Ledger height the backup holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// Bytes of ledger records, and bytes newly written to the store (chunks already stored
    /// are reused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_raw: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_stored: Option<u64>,
    /// `bytesStored` for people, for the printer column.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stored_size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks_reused: Option<u64>,
    /// RFC 3339 times.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub started_at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub completed_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
    /// Why it failed, as the node reported it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Backups of a channel on a schedule, pruned by retention.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tally.dev",
    version = "v1alpha1",
    kind = "BackupSchedule",
    namespaced,
    status = "BackupScheduleStatus",
    shortname = "tbks",
    category = "tally",
    derive = "PartialEq",
    doc = "Backups of a channel on a cron schedule, each a Backup object, pruned by count and age.",
    printcolumn(name = "Channel", type_ = "string", json_path = ".spec.channel"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(
        name = "Last success",
        type_ = "date",
        json_path = ".status.lastSuccessTime"
    ),
    printcolumn(name = "Kept", type_ = "integer", json_path = ".status.kept"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BackupScheduleSpec {
    /// The `Channel` in this namespace. Cannot change.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = kube::core::cel::Rule::new("self == oldSelf").message("channel cannot change; create another BackupSchedule"))]
    pub channel: String,
    /// Five cron fields in UTC (minute hour day-of-month month day-of-week), e.g.
    /// `0 */6 * * *`.
    #[schemars(length(min = 9, max = 128))]
    pub schedule: String,
    /// As in `Backup.spec.node`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 63))]
    pub node: String,
    pub destination: Destination,
    #[serde(default)]
    pub retention: Retention,
    /// No new backups while true; retention still prunes.
    #[serde(default)]
    pub suspend: bool,
}

/// Which successful backups a schedule keeps: at most `count`, none older than `maxAge`.
/// The newest successful backup is always kept.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    #[serde(default = "default_keep")]
    #[schemars(range(min = 1, max = 1000))]
    pub count: u32,
    /// A duration such as `30d` or `12h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32), regex(pattern = r"^[0-9]+(s|m|h|d)$"))]
    pub max_age: Option<String>,
}

fn default_keep() -> u32 {
    7
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            count: default_keep(),
            max_age: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupScheduleStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The scheduled time of the newest Backup made, RFC 3339.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_schedule_time: String,
    /// Completion time of the newest successful Backup, RFC 3339.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_success_time: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_backup: String,
    /// The next scheduled time, RFC 3339.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_schedule_time: String,
    /// Successful Backups kept.
    #[serde(default)]
    pub kept: u32,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
