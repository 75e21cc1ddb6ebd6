//! Pieces every kind shares: conditions, approval rules, and the name formats that the
//! ledger and Kubernetes both accept.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every Tally kind.
pub const GROUP: &str = "tally.dev";
/// The one version served so far.
pub const VERSION: &str = "v1alpha1";

/// A DNS label: what Kubernetes accepts as a Service or pod name and what the ledger
/// accepts as an organization, node or channel name.
pub const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Lowercase hex of a SHA-256 digest.
pub const SHA256_HEX: &str = "^[0-9a-f]{64}$";

/// A condition in the Kubernetes convention (`type`, `status`, `reason`, `message`,
/// `lastTransitionTime`, `observedGeneration`). Defined here rather than taken from
/// k8s-openapi so that the schema stays structural and the status stays plain data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// One CamelCase word a program can switch on.
    pub reason: String,
    /// What a person needs to know, naming the resource and field at fault.
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

pub use tally_planner::spec::ApprovalRule;

/// An approval rule with its count where the rule needs one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[x_kube(validation = kube::core::cel::Rule::new("self.rule != 'AtLeast' || has(self.count)").message("count is required when rule is AtLeast").reason(kube::core::cel::Reason::FieldValueRequired))]
#[x_kube(validation = kube::core::cel::Rule::new("self.rule == 'AtLeast' || !has(self.count)").message("count is only used with rule AtLeast"))]
pub struct Approval {
    #[serde(default)]
    pub rule: ApprovalRule,
    /// Number of organizations, with `rule: AtLeast`.
    // Not nullable in the schema: the apiserver then drops `count: null` (as serde reads it, as
    // None) instead of keeping it, where `has(self.count)` would let it pass the rule above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "u32", range(min = 1, max = 64))]
    pub count: Option<u32>,
}

impl Approval {
    /// Approvals needed out of `members` organizations.
    pub fn needed(&self, members: usize) -> usize {
        tally_planner::spec::Approval::from(self).needed(members)
    }
}

/// A key of a Secret or ConfigMap in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct KeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Sets a condition, keeping its transition time when the status did not change.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) if old.status == new.status => {
            old.reason = new.reason;
            old.message = new.message;
            old.observed_generation = new.observed_generation;
        }
        Some(old) => *old = new,
        None => conditions.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_condition_keeps_transition_time_when_status_holds() {
        let c = |status, reason: &str, t: &str| Condition {
            type_: "Ready".into(),
            status,
            reason: reason.into(),
            message: String::new(),
            last_transition_time: t.into(),
            observed_generation: Some(1),
        };
        let mut cs = vec![c(ConditionStatus::False, "Starting", "t0")];
        set_condition(&mut cs, c(ConditionStatus::False, "Waiting", "t1"));
        assert_eq!(cs[0].last_transition_time, "t0");
        assert_eq!(cs[0].reason, "Waiting");
        set_condition(&mut cs, c(ConditionStatus::True, "Ready", "t2"));
        assert_eq!(cs[0].last_transition_time, "t2");
        assert_eq!(cs.len(), 1);
    }
}
