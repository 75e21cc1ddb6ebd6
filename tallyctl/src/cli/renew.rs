//! Certificate renewal in the local mode, by the planner's rule (`spec.certificates`): what
//! each identity holds is read from its files, the planner decides which are due and issues
//! them afresh, and the new certificates are written where the nodes and profiles read them.
//! At start that is all (the nodes start on the new files); while `up` runs, each renewed
//! node is restarted, one at a time, and waited for before the next.

use crate::LocalCluster;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;
use tally_planner::{identity_key, Held, Plan, Window};
use tally_protocol::identity::{inspect, pem_to_der};
use tally_protocol::{Identity, Role};

/// How long a restarted node may take to be ready again.
const READY_AGAIN: Duration = Duration::from_secs(60);

fn folder(dir: &Path, org: &str, role: Role, name: &str) -> std::path::PathBuf {
    dir.join("orgs").join(org).join(role.folder()).join(name)
}

/// The windows of the identities whose certificates are in `dir`
/// (`orgs/ORG/{nodes,admins,clients}/NAME/cert.pem`). An identity without a readable
/// certificate is left out: the planner issues it afresh.
pub fn held_in(dir: &Path) -> Held {
    let mut held = Held::new();
    let names = |p: &Path| -> Vec<String> {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    for org in names(&dir.join("orgs")) {
        for role in [Role::Node, Role::Admin, Role::Client] {
            for name in names(&dir.join("orgs").join(&org).join(role.folder())) {
                let path = folder(dir, &org, role, &name).join("cert.pem");
                let info = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|pem| pem_to_der(&pem).ok())
                    .and_then(|der| inspect(&der).ok());
                if let Some(info) = info {
                    held.insert(
                        identity_key(&org, role.as_str(), &name),
                        Window {
                            not_before: info.not_before,
                            not_after: info.not_after,
                        },
                    );
                }
            }
        }
    }
    held
}

/// What a renewal wrote.
#[derive(Debug, Default)]
pub struct Renewed {
    /// `org/role/name` of every identity written, with its new end of validity.
    pub identities: Vec<(String, i64)>,
    /// Nodes whose own certificate was renewed (they must restart to use it).
    pub nodes: Vec<String>,
}

/// Writes the identities the plan renewed into their folders in `dir`.
pub fn write_renewed(dir: &Path, plan: &Plan) -> Result<Renewed> {
    let mut out = Renewed::default();
    // Whether it was renewed (and so written).
    let mut save =
        |org: &str, role: Role, name: &str, id: &Identity, ca_pem: &str| -> Result<bool> {
            let key = identity_key(org, role.as_str(), name);
            if !plan.renewed.contains(&key) {
                return Ok(false);
            }
            let to = folder(dir, org, role, name);
            id.save(&to, ca_pem)
                .with_context(|| format!("writing the renewed {key} into {}", to.display()))?;
            out.identities.push((key, id.info.not_after));
            Ok(true)
        };
    let mut nodes = Vec::new();
    for o in &plan.organizations {
        if let Some(a) = &o.admin {
            save(
                &o.name,
                Role::Admin,
                tally_planner::ADMIN_NAME,
                a,
                &o.ca_pem,
            )?;
        }
        if let Some(c) = &o.client {
            save(
                &o.name,
                Role::Client,
                tally_planner::CLIENT_NAME,
                c,
                &o.ca_pem,
            )?;
        }
    }
    for n in plan.hosted_nodes() {
        let (Some(id), Some(org)) = (
            &n.identity,
            plan.organizations.iter().find(|o| o.name == n.org),
        ) else {
            continue;
        };
        if save(&n.org, Role::Node, &n.name, id, &org.ca_pem)? {
            nodes.push(n.name.clone());
        }
    }
    out.nodes = nodes;
    Ok(out)
}

/// Restarts each renewed node in turn, waiting until it is ready before the next, so that a
/// channel never loses more than one node at a time to a renewal.
pub async fn restart_renewed(cluster: &LocalCluster, nodes: &[String]) -> Result<()> {
    for n in nodes {
        cluster
            .restart(n)
            .await
            .with_context(|| format!("restarting {n} on its renewed certificate"))?;
        cluster
            .wait_node_ready(n, READY_AGAIN)
            .await
            .with_context(|| format!("{n} after its certificate was renewed"))?;
    }
    Ok(())
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil date from days since 1970-01-01, by 400-year eras of 146,097 days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn unix_times_read_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_222_780), "2026-12-02 14:46:20 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
    }
}
