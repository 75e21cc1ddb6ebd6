//! Drives a chaincode definition to committed on a channel: installs it once, approves it for
//! every organization whose admin identity the caller holds, and commits it once enough
//! organizations approved. Idempotent: each step is [`decide`]d (a pure function) from what the
//! ledger shows, so running it again (after a crash, on every reconcile) does only what is
//! missing. The operator's Chaincode controller and `tallyctl up` share it; the operator's
//! decision fixtures test [`decide`].

use crate::client::Client;
use crate::error::ClientError;
use crate::txs;
use serde::{Deserialize, Serialize};
use tally_protocol::chaincode::{ChaincodeDefinition, ChaincodeInfo};
use tally_protocol::{Identity, InitCall, Receipt, TxStatus};
use thiserror::Error;

/// What the chaincode should be.
#[derive(Clone, Debug)]
pub struct Wanted<'a> {
    pub channel: &'a str,
    pub name: &'a str,
    pub version: &'a str,
    pub module: &'a [u8],
    pub init: Option<InitCall>,
    /// Approvals to wait for before committing, besides the ledger's own rule (a majority of
    /// member organizations): the larger of the two counts.
    pub at_least: usize,
}

#[derive(Debug, Error)]
pub enum LifecycleError {
    #[error("channel {channel}: {source}")]
    Node {
        channel: String,
        #[source]
        source: ClientError,
    },
    #[error("channel {channel} rejected the {what}: {code}: {reason}")]
    Rejected {
        channel: String,
        what: String,
        code: String,
        reason: String,
    },
    #[error("no admin identity of an approving organization is held, so nothing can be submitted")]
    NoAdmin,
}

/// Where the chaincode stands after [`ensure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The wanted definition is the committed one.
    Committed { sequence: u64 },
    /// Installed at `sequence`, waiting for approvals the caller cannot give.
    WaitingForApprovals {
        sequence: u64,
        have: usize,
        needed: usize,
    },
}

#[derive(Clone, Debug)]
pub struct Report {
    pub progress: Progress,
    /// Organizations that approved the wanted definition (all approvers once committed).
    pub approved: Vec<String>,
    /// What this run did, for events and logs, in order.
    pub actions: Vec<String>,
}

fn same(a: &ChaincodeDefinition, b: &ChaincodeDefinition) -> bool {
    (&a.name, &a.version, a.module_hash, &a.init) == (&b.name, &b.version, b.module_hash, &b.init)
}

async fn info(api: &Client, w: &Wanted<'_>) -> Result<Option<ChaincodeInfo>, LifecycleError> {
    let list = api
        .chaincodes(w.channel)
        .await
        .map_err(|source| LifecycleError::Node {
            channel: w.channel.to_string(),
            source,
        })?;
    Ok(list.into_iter().find(|c| c.name == w.name))
}

async fn submit(
    api: &Client,
    w: &Wanted<'_>,
    what: String,
    tx: &tally_protocol::Transaction,
) -> Result<Receipt, LifecycleError> {
    let r = api
        .submit_wait(tx)
        .await
        .map_err(|source| LifecycleError::Node {
            channel: w.channel.to_string(),
            source,
        })?;
    match &r.status {
        TxStatus::Committed => Ok(r),
        TxStatus::Rejected { code, reason } => Err(LifecycleError::Rejected {
            channel: w.channel.to_string(),
            what,
            code: code.as_str().to_string(),
            reason: reason.clone(),
        }),
    }
}

/// The next step towards the wanted definition, decided from what the ledger holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "camelCase", deny_unknown_fields)]
pub enum Step {
    /// The wanted definition is the committed one.
    Done {
        sequence: u64,
        approved: Vec<String>,
    },
    /// Install the wanted definition (with its module) as `sequence`.
    Install { sequence: u64 },
    /// Approve it as organization `org`.
    Approve { org: String, sequence: u64 },
    /// Enough organizations approved: commit it.
    Commit {
        sequence: u64,
        approved: Vec<String>,
    },
    /// Waiting for approvals of organizations whose admin key is not held.
    Wait {
        sequence: u64,
        have: usize,
        needed: usize,
        approved: Vec<String>,
    },
}

/// The definition wanted, whatever its sequence (the next free one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub version: String,
    pub module_hash: tally_protocol::Hash,
    #[serde(default)]
    pub init: Option<InitCall>,
    /// Approvals to wait for besides the ledger's own rule.
    #[serde(default)]
    pub at_least: usize,
}

/// Decides the next step from the ledger's view of the chaincode (`current`), acting for the
/// organizations in `held` (whose admin keys are held), in their order. Pure: one step at a
/// time, so that each is decided from what the ledger shows after the previous one.
pub fn decide(current: Option<&ChaincodeInfo>, t: &Target, held: &[String]) -> Step {
    let active = current.and_then(|i| i.active.as_ref());
    let sequence = active.map_or(1, |d| d.sequence + 1);
    let want = ChaincodeDefinition {
        name: t.name.clone(),
        version: t.version.clone(),
        sequence,
        module_hash: t.module_hash,
        init: t.init.clone(),
    };
    if let Some(a) = active.filter(|a| same(a, &want)) {
        return Step::Done {
            sequence: a.sequence,
            approved: current.map(|i| i.approvals.clone()).unwrap_or_default(),
        };
    }
    let Some(pending) = current.and_then(|i| i.pending.iter().find(|p| p.definition == want))
    else {
        return Step::Install { sequence };
    };
    if let Some(org) = held.iter().find(|o| !pending.approvals.contains(o)) {
        return Step::Approve {
            org: org.clone(),
            sequence,
        };
    }
    let have = pending.approvals.len();
    let needed = t.at_least.max(pending.needed);
    if have < needed {
        return Step::Wait {
            sequence,
            have,
            needed,
            approved: pending.approvals.clone(),
        };
    }
    Step::Commit {
        sequence,
        approved: pending.approvals.clone(),
    }
}

/// Brings the channel's chaincode `w.name` to the wanted definition, acting as the admins in
/// `admins` (organization, identity). The first admin submits the install and the commit.
/// Observes the ledger, [`decide`]s one step, takes it, and again, until the definition is
/// committed or waits for approvals the caller cannot give.
pub async fn ensure(
    api: &Client,
    w: &Wanted<'_>,
    admins: &[(String, Identity)],
) -> Result<Report, LifecycleError> {
    let Some((_, submitter)) = admins.first() else {
        return Err(LifecycleError::NoAdmin);
    };
    let held: Vec<String> = admins.iter().map(|(o, _)| o.clone()).collect();
    let target = Target {
        name: w.name.to_string(),
        version: w.version.to_string(),
        module_hash: tally_protocol::chaincode::module_hash(w.module),
        init: w.init.clone(),
        at_least: w.at_least,
    };
    let mut actions = Vec::new();
    let mut taken: Vec<Step> = Vec::new();
    loop {
        let current = info(api, w).await?;
        let step = decide(current.as_ref(), &target, &held);
        // A step the ledger does not show after it was taken (its node lags): wait for the
        // next run rather than repeat it.
        if taken.contains(&step) {
            let sequence = match step {
                Step::Install { sequence } | Step::Approve { sequence, .. } => sequence,
                _ => 0,
            };
            return Ok(Report {
                progress: Progress::WaitingForApprovals {
                    sequence,
                    have: 0,
                    needed: w.at_least,
                },
                approved: Vec::new(),
                actions,
            });
        }
        match &step {
            Step::Done { sequence, approved } => {
                return Ok(Report {
                    progress: Progress::Committed {
                        sequence: *sequence,
                    },
                    approved: approved.clone(),
                    actions,
                })
            }
            Step::Wait {
                sequence,
                have,
                needed,
                approved,
            } => {
                return Ok(Report {
                    progress: Progress::WaitingForApprovals {
                        sequence: *sequence,
                        have: *have,
                        needed: *needed,
                    },
                    approved: approved.clone(),
                    actions,
                })
            }
            Step::Install { sequence } => {
                let want = txs::chaincode_definition(
                    w.name,
                    w.version,
                    *sequence,
                    w.module,
                    w.init.clone(),
                );
                let tx = txs::sign_install(submitter, w.channel, want, w.module.to_vec());
                submit(api, w, "install".into(), &tx).await?;
                actions.push(format!(
                    "installed {} version {} as sequence {sequence} ({} bytes)",
                    w.name,
                    w.version,
                    w.module.len()
                ));
            }
            Step::Approve { org, sequence } => {
                let Some((_, admin)) = admins.iter().find(|(o, _)| o == org) else {
                    return Err(LifecycleError::NoAdmin);
                };
                let tx = txs::sign_approve(admin, w.channel, w.name, *sequence, target.module_hash);
                submit(api, w, format!("approval of {org}"), &tx).await?;
                actions.push(format!(
                    "organization {org} approved {} version {} (sequence {sequence})",
                    w.name, w.version
                ));
            }
            Step::Commit { sequence, approved } => {
                let tx = txs::sign_commit(submitter, w.channel, w.name, *sequence);
                submit(api, w, "commit".into(), &tx).await?;
                actions.push(format!(
                    "committed {} version {} as sequence {sequence}",
                    w.name, w.version
                ));
                return Ok(Report {
                    progress: Progress::Committed {
                        sequence: *sequence,
                    },
                    approved: approved.clone(),
                    actions,
                });
            }
        }
        taken.push(step);
    }
}
