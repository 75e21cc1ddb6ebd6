//! What this operator last applied to each of its children, so that an apply of the very same
//! body to an object nobody has changed since is skipped: most reconciles want what is
//! already there, and each apply is a write the API server (and etcd) must answer.

use kube::core::ObjectMeta;
use std::collections::HashMap;

/// A child by kind, namespace and name.
pub type Key = (String, String, String);

/// The smallest size of the log that is swept (a sweep reads every entry).
pub const SWEEP_MIN: usize = 1024;

/// A body this operator applied and the object the API server answered with.
#[derive(Debug, PartialEq, Eq)]
struct Applied {
    /// Digest of the applied body.
    digest: u64,
    uid: Option<String>,
    /// The object's resource version: any change to it by anyone (or its deletion and
    /// re-creation, with the uid) means the next apply goes to the API server again.
    version: Option<String>,
}

impl Applied {
    fn of(digest: u64, m: &ObjectMeta) -> Self {
        Applied {
            digest,
            uid: m.uid.clone(),
            version: m.resource_version.clone(),
        }
    }
}

/// The last apply per child.
#[derive(Debug)]
pub struct AppliedLog {
    last: HashMap<Key, Applied>,
    /// The size at which the log is next swept of objects that are gone.
    sweep_at: usize,
}

impl Default for AppliedLog {
    fn default() -> Self {
        AppliedLog {
            last: HashMap::new(),
            sweep_at: SWEEP_MIN,
        }
    }
}

impl AppliedLog {
    /// Whether applying a body with `digest` to `key`, whose object the store shows as
    /// `stored`, would change nothing: this operator applied that very body last, and the
    /// object is the one the API server answered with then (same uid, same version).
    pub fn is_current(&self, key: &Key, digest: u64, stored: &ObjectMeta) -> bool {
        self.last.get(key) == Some(&Applied::of(digest, stored))
    }

    /// Records an apply and the object it produced. Objects deleted with their owners leave
    /// entries behind: when the log has doubled since the last sweep, only the entries whose
    /// object `still_there` holds are kept.
    pub fn record(
        &mut self,
        key: Key,
        digest: u64,
        answered: &ObjectMeta,
        still_there: impl Fn(&Key) -> bool,
    ) {
        self.last.insert(key, Applied::of(digest, answered));
        if self.last.len() >= self.sweep_at {
            self.last.retain(|k, _| still_there(k));
            self.sweep_at = (self.last.len() * 2).max(SWEEP_MIN);
        }
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// A stable digest of the JSON body an apply would send.
pub fn digest<T: serde::Serialize>(body: &T) -> Result<u64, serde_json::Error> {
    use std::hash::{Hash, Hasher};
    let bytes = serde_json::to_vec(body)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        ("Secret".into(), "ns".into(), name.into())
    }

    fn meta(uid: &str, version: &str) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            resource_version: Some(version.into()),
            ..Default::default()
        }
    }

    fn body(v: &str) -> u64 {
        digest(&serde_json::json!({"data": {"k": v}})).expect("digest")
    }

    #[test]
    fn nothing_recorded_is_never_current() {
        let log = AppliedLog::default();
        assert!(!log.is_current(&key("a"), body("1"), &meta("u", "7")));
    }

    #[test]
    fn the_same_body_on_an_unchanged_object_is_skipped() {
        let mut log = AppliedLog::default();
        log.record(key("a"), body("1"), &meta("u", "7"), |_| true);
        assert!(log.is_current(&key("a"), body("1"), &meta("u", "7")));
        // Another object of the same name in another namespace or kind is not.
        assert!(!log.is_current(
            &("ConfigMap".into(), "ns".into(), "a".into()),
            body("1"),
            &meta("u", "7")
        ));
    }

    #[test]
    fn a_new_body_goes_to_the_api_server() {
        let mut log = AppliedLog::default();
        log.record(key("a"), body("1"), &meta("u", "7"), |_| true);
        assert!(!log.is_current(&key("a"), body("2"), &meta("u", "7")));
    }

    #[test]
    fn a_change_by_someone_else_is_undone() {
        // A tenant edited the Secret (new resource version): the operator's body must be
        // applied again even though it has not changed.
        let mut log = AppliedLog::default();
        log.record(key("a"), body("1"), &meta("u", "7"), |_| true);
        assert!(!log.is_current(&key("a"), body("1"), &meta("u", "8")));
    }

    #[test]
    fn a_deleted_and_recreated_object_is_applied_again() {
        let mut log = AppliedLog::default();
        log.record(key("a"), body("1"), &meta("u1", "7"), |_| true);
        // etcd versions are global, but even an equal version string under a new uid is
        // another object.
        assert!(!log.is_current(&key("a"), body("1"), &meta("u2", "7")));
    }

    #[test]
    fn an_object_without_uid_or_version_is_only_current_as_answered() {
        let mut log = AppliedLog::default();
        log.record(key("a"), body("1"), &ObjectMeta::default(), |_| true);
        assert!(log.is_current(&key("a"), body("1"), &ObjectMeta::default()));
        assert!(!log.is_current(&key("a"), body("1"), &meta("u", "1")));
    }

    #[test]
    fn gone_objects_are_swept_when_the_log_doubles() {
        let mut log = AppliedLog::default();
        let gone = |k: &Key| !k.2.starts_with("gone-");
        for i in 0..SWEEP_MIN - 1 {
            log.record(key(&format!("gone-{i}")), body("1"), &meta("u", "1"), gone);
        }
        assert_eq!(log.len(), SWEEP_MIN - 1, "no sweep below the threshold");
        log.record(key("kept"), body("1"), &meta("u", "1"), gone);
        assert_eq!(log.len(), 1, "the sweep keeps what the stores still hold");
        assert!(log.is_current(&key("kept"), body("1"), &meta("u", "1")));
        // The next sweep waits for the log to reach the minimum again, not for every apply.
        for i in 0..10 {
            log.record(key(&format!("gone-{i}")), body("1"), &meta("u", "1"), gone);
        }
        assert_eq!(log.len(), 11);
    }

    #[test]
    fn the_sweep_threshold_follows_what_is_kept() {
        let mut log = AppliedLog::default();
        for i in 0..SWEEP_MIN {
            log.record(key(&format!("k{i}")), body("1"), &meta("u", "1"), |_| true);
        }
        // Everything still exists: kept, and the next sweep is at twice the size.
        assert_eq!(log.len(), SWEEP_MIN);
        assert_eq!(log.sweep_at, 2 * SWEEP_MIN);
    }

    #[test]
    fn the_digest_is_stable_and_tells_bodies_apart() {
        assert_eq!(body("1"), body("1"));
        assert_ne!(body("1"), body("2"));
    }
}
