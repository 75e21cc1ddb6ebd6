//! What the planner says when the resources do not fit together: the resource, the field and
//! what is wrong, all problems at once.

use std::fmt;
use thiserror::Error;

/// One problem, located in one field of one resource.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{kind} {namespace}/{name}: {field}: {message}")]
pub struct PlanError {
    /// `Consortium`, `Peer`, `Channel` or `Chaincode`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// Path of the field, as in `kubectl explain` (`spec.organization`).
    pub field: String,
    pub message: String,
}

/// Every problem the planner found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanErrors(pub Vec<PlanError>);

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} problems in the resources:", all.len())?;
                for e in all {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for PlanErrors {}

impl PlanErrors {
    /// Whether any problem is in this field of this resource.
    pub fn has(&self, kind: &str, name: &str, field: &str) -> bool {
        self.0
            .iter()
            .any(|e| e.kind == kind && e.name == name && e.field == field)
    }
}

/// Collects problems about the resources of one namespace.
pub(crate) struct Problems {
    namespace: String,
    pub(crate) list: Vec<PlanError>,
}

impl Problems {
    pub(crate) fn new(namespace: &str) -> Problems {
        Problems {
            namespace: namespace.to_string(),
            list: Vec::new(),
        }
    }

    pub(crate) fn add(
        &mut self,
        kind: &'static str,
        name: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.list.push(PlanError {
            kind,
            namespace: self.namespace.clone(),
            name: name.to_string(),
            field: field.into(),
            message: message.into(),
        });
    }

    pub(crate) fn into_result<T>(self, ok: T) -> Result<T, PlanErrors> {
        if self.list.is_empty() {
            Ok(ok)
        } else {
            Err(PlanErrors(self.list))
        }
    }
}
