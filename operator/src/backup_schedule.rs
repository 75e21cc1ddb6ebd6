//! `BackupSchedule` → a `Backup` at each scheduled time (never two of one schedule at once;
//! times missed while one ran, or while the operator was down, make one Backup, not a burst),
//! and retention: Backups beyond `retention.count` or older than `retention.maxAge` are
//! deleted, which removes what they stored (they are made with `deletionPolicy: Delete`). The
//! newest successful Backup is always kept, whatever its age.

use crate::context::{owner_of, Context, Error, Result, Verdict};
use crate::cron::Schedule;
use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use std::sync::Arc;
use std::time::Duration;
use tally_api::backup::{
    Backup, BackupPhase, BackupSchedule, BackupSpec, DeletionPolicy, Retention,
};

/// The label tying a Backup to the schedule that made it.
pub const LABEL_SCHEDULE: &str = "tally.dev/backup-schedule";

/// Failed Backups kept for inspection.
const FAILED_KEPT: usize = 3;

/// What retention needs of a Backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub name: String,
    pub phase: BackupPhase,
    pub created: Timestamp,
    pub completed: Option<Timestamp>,
}

/// The Backups retention removes, oldest first.
pub fn prune(backups: &[Seen], retention: &Retention, now: Timestamp) -> Vec<String> {
    let max_age = retention.max_age.as_deref().and_then(parse_age);
    let newest_first = |phase: BackupPhase| {
        let mut v: Vec<&Seen> = backups.iter().filter(|b| b.phase == phase).collect();
        v.sort_by_key(|b| std::cmp::Reverse((b.completed.unwrap_or(b.created), b.name.clone())));
        v
    };
    let mut out = Vec::new();
    for (i, b) in newest_first(BackupPhase::Succeeded).into_iter().enumerate() {
        let at = b.completed.unwrap_or(b.created);
        let too_old = max_age.is_some_and(|age| now.duration_since(at) > age);
        if i > 0 && (i >= retention.count as usize || too_old) {
            out.push(b.name.clone());
        }
    }
    for b in newest_first(BackupPhase::Failed)
        .into_iter()
        .skip(FAILED_KEPT)
    {
        out.push(b.name.clone());
    }
    out.reverse();
    out
}

/// `30d`, `12h`, `90m`, `45s`.
pub fn parse_age(s: &str) -> Option<SignedDuration> {
    let (num, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: i64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(SignedDuration::from_secs(secs))
}

/// When the schedule is due: the first scheduled time after `since`, if it has come.
pub fn due(schedule: &Schedule, since: Timestamp, now: Timestamp) -> Option<Timestamp> {
    schedule.next_after(since).filter(|t| *t <= now)
}

fn ts(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

fn seen(b: &Backup) -> Seen {
    let status = b.status.clone().unwrap_or_default();
    Seen {
        name: b.name_any(),
        phase: status.phase,
        created: b
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
        completed: ts(&status.completed_at),
    }
}

pub async fn reconcile(s: Arc<BackupSchedule>, ctx: Arc<Context>) -> Result<Action> {
    if s.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = s.namespace().unwrap_or_default();
    let name = s.name_any();
    let mut status = crate::context::Reported::current_status(s.as_ref());
    let label_values = [ns.as_str(), name.as_str(), s.spec.channel.as_str()];
    let schedule = match Schedule::parse(&s.spec.schedule) {
        Ok(x) => x,
        Err(e) => {
            let v = Verdict::degraded("InvalidSpec", format!("spec.schedule: {e}"));
            ctx.report(s.as_ref(), &v, status).await?;
            return Ok(ctx.parked.after(s.as_ref(), &v));
        }
    };
    let now = Timestamp::now();
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &ns);
    let mine = api
        .list(&ListParams::default().labels(&format!("{LABEL_SCHEDULE}={name}")))
        .await?
        .items;
    let all: Vec<Seen> = mine.iter().map(seen).collect();

    // Retention first: it frees space before a new backup needs it.
    let pruned = prune(&all, &s.spec.retention, now);
    for gone in &pruned {
        ctx.fence.check()?;
        match api.delete(gone, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(schedule = %name, backup = %gone, "retention: deleting Backup"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    let running = all
        .iter()
        .any(|b| matches!(b.phase, BackupPhase::Pending | BackupPhase::Running));
    let since = ts(&status.last_schedule_time)
        .or_else(|| s.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now);
    if !s.spec.suspend && !running {
        if let Some(at) = due(&schedule, since, now) {
            let backup_name = format!("{name}-{}", at.strftime("%Y%m%d%H%M"));
            let b = Backup {
                metadata: kube::api::ObjectMeta {
                    name: Some(backup_name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some([(LABEL_SCHEDULE.to_string(), name.clone())].into()),
                    owner_references: Some(vec![owner_of(s.as_ref())]),
                    ..Default::default()
                },
                spec: BackupSpec {
                    channel: s.spec.channel.clone(),
                    node: s.spec.node.clone(),
                    destination: s.spec.destination.clone(),
                    deletion_policy: DeletionPolicy::Delete,
                },
                status: None,
            };
            ctx.fence.check()?;
            match api.create(&PostParams::default(), &b).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(Error::Kube(e)),
            }
            // Times missed while the operator was away make this one Backup.
            status.last_schedule_time = now.round(jiff::Unit::Second).unwrap_or(now).to_string();
            status.last_backup = backup_name;
        }
    }
    let since = ts(&status.last_schedule_time).unwrap_or(since);
    let next = schedule.next_after(since.max(now));
    status.next_schedule_time = next.map(|t| t.to_string()).unwrap_or_default();
    let kept: Vec<&Seen> = all
        .iter()
        .filter(|b| b.phase == BackupPhase::Succeeded)
        .filter(|b| !pruned.contains(&b.name))
        .collect();
    status.kept = kept.len() as u32;
    let newest = kept.iter().filter_map(|b| b.completed).max();
    status.last_success_time = newest.map(|t| t.to_string()).unwrap_or_default();
    ctx.metrics
        .schedule_last_success
        .with_label_values(&label_values)
        .set(
            newest
                .or_else(|| s.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .map_or(0, |t| t.as_second()),
        );
    if let Some(n) = next {
        if let Some(after) = schedule.next_after(n) {
            ctx.metrics
                .schedule_interval
                .with_label_values(&label_values)
                .set(after.as_second() - n.as_second());
        }
    }
    let last_failed = all
        .iter()
        .filter(|b| b.completed.is_some())
        .max_by_key(|b| b.completed)
        .filter(|b| b.phase == BackupPhase::Failed);
    let verdict = if let Some(f) = last_failed {
        Verdict::degraded(
            "BackupFailed",
            format!("the newest Backup, {}, failed; see its status", f.name),
        )
    } else if s.spec.suspend {
        Verdict::ready("Suspended", "no new backups while spec.suspend is true")
    } else {
        Verdict::ready(
            "Scheduled",
            format!("next backup at {}", status.next_schedule_time),
        )
    };
    ctx.report(s.as_ref(), &verdict, status).await?;
    // Back at the next scheduled time, or soon while a Backup runs (its end frees retention).
    let until_next = next
        .map(|t| t.duration_since(now).unsigned_abs())
        .unwrap_or(Duration::from_secs(3600));
    let wait = if running {
        Duration::from_secs(5)
    } else {
        until_next.max(Duration::from_secs(1))
    };
    Ok(Action::requeue(wait.min(Duration::from_secs(3600))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    fn ok(name: &str, done: &str) -> Seen {
        Seen {
            name: name.into(),
            phase: BackupPhase::Succeeded,
            created: at(done),
            completed: Some(at(done)),
        }
    }

    #[test]
    fn retention_by_count_keeps_the_newest() {
        let all = vec![
            ok("b1", "2026-12-01T00:00:00Z"),
            ok("b2", "2026-12-02T00:00:00Z"),
            ok("b3", "2026-12-03T00:00:00Z"),
        ];
        let r = Retention {
            count: 2,
            max_age: None,
        };
        assert_eq!(prune(&all, &r, at("2026-12-03T01:00:00Z")), vec!["b1"]);
        let r = Retention {
            count: 1,
            max_age: None,
        };
        assert_eq!(
            prune(&all, &r, at("2026-12-03T01:00:00Z")),
            vec!["b1", "b2"]
        );
    }

    #[test]
    fn retention_by_age_never_removes_the_newest_success() {
        let all = vec![
            ok("b1", "2026-11-01T00:00:00Z"),
            ok("b2", "2026-11-20T00:00:00Z"),
            Seen {
                name: "f1".into(),
                phase: BackupPhase::Failed,
                created: at("2026-12-02T00:00:00Z"),
                completed: Some(at("2026-12-02T00:00:00Z")),
            },
            Seen {
                name: "running".into(),
                phase: BackupPhase::Running,
                created: at("2026-12-03T00:00:00Z"),
                completed: None,
            },
        ];
        let r = Retention {
            count: 10,
            max_age: Some("7d".into()),
        };
        // b2 is older than 7 days too, but it is the newest success.
        assert_eq!(prune(&all, &r, at("2026-12-03T00:00:00Z")), vec!["b1"]);
    }

    #[test]
    fn failed_backups_beyond_a_few_go() {
        let all: Vec<Seen> = (1..=5)
            .map(|i| Seen {
                name: format!("f{i}"),
                phase: BackupPhase::Failed,
                created: at(&format!("2026-12-0{i}T00:00:00Z")),
                completed: Some(at(&format!("2026-12-0{i}T00:00:00Z"))),
            })
            .collect();
        assert_eq!(
            prune(&all, &Retention::default(), at("2026-12-06T00:00:00Z")),
            vec!["f1", "f2"]
        );
    }

    #[test]
    fn missed_times_make_one_backup() {
        let s = Schedule::parse("*/10 * * * *").expect("cron");
        let since = at("2026-12-03T10:00:00Z");
        assert_eq!(due(&s, since, at("2026-12-03T10:05:00Z")), None);
        assert_eq!(
            due(&s, since, at("2026-12-03T13:07:00Z")),
            Some(at("2026-12-03T10:10:00Z"))
        );
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("30d"), Some(SignedDuration::from_hours(720)));
        assert_eq!(parse_age("90m"), Some(SignedDuration::from_mins(90)));
        assert_eq!(parse_age("x"), None);
        assert_eq!(parse_age("5w"), None);
    }
}
