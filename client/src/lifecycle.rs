//! Drives a chaincode definition to active on a channel: installs it once (the transaction
//! that carries the module to every node), proposes the definition on the ledger once
//! (`Change::DefineChaincode`; an open proposal of the same definition is reused, an expired
//! or stale one is proposed again), and approves that proposal for every organization whose
//! admin identity the caller holds. The definition applies on the ledger in the block of the
//! approval that meets the channel's chaincode rule, whoever sends it, so organizations whose
//! keys the caller does not hold approve it themselves (`tallyctl proposal approve`).
//!
//! Idempotent: each step is [`decide`]d (a pure function) from what the ledger shows, so
//! running it again (after a crash, on every reconcile) does only what is missing. The
//! operator's Chaincode controller and `tallyctl up` share it; the operator's decision
//! fixtures test [`decide`].

use crate::client::Client;
use crate::error::ClientError;
use crate::txs;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tally_protocol::chaincode::{ChaincodeDefinition, ChaincodeInfo};
use tally_protocol::proposal::{Change, ProposalView, Status, Tally};
use tally_protocol::{Hash, Identity, InitCall, Receipt, TxStatus};
use thiserror::Error;

/// How long a definition proposal made here stays open.
pub const PROPOSAL_TTL: Duration = Duration::from_secs(24 * 3600);

/// What the chaincode should be.
#[derive(Clone, Debug)]
pub struct Wanted<'a> {
    pub channel: &'a str,
    pub name: &'a str,
    pub version: &'a str,
    pub module: &'a [u8],
    pub init: Option<InitCall>,
}

#[derive(Debug, Error)]
pub enum LifecycleError {
    #[error("channel {channel}: the proposal {proposal} of definition {sequence} was rejected by {rejected:?}; propose it again by hand (tallyctl chaincode propose) or change the version")]
    DefinitionRejected {
        channel: String,
        sequence: u64,
        proposal: Hash,
        rejected: Vec<String>,
    },
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
    /// The wanted definition is the active one.
    Committed { sequence: u64 },
    /// Installed at `sequence` and proposed as `proposal`, waiting for approvals the caller
    /// cannot give; `None` when the node does not show the last step taken yet (it lags).
    WaitingForApprovals {
        sequence: u64,
        proposal: Option<Hash>,
        have: usize,
        needed: usize,
        missing: Vec<String>,
    },
}

#[derive(Clone, Debug)]
pub struct Report {
    pub progress: Progress,
    /// Organizations that approved the wanted definition (all approvers once active).
    pub approved: Vec<String>,
    /// What this run did, for events and logs, in order.
    pub actions: Vec<String>,
}

fn same(a: &ChaincodeDefinition, b: &ChaincodeDefinition) -> bool {
    (&a.name, &a.version, a.module_hash, &a.init) == (&b.name, &b.version, b.module_hash, &b.init)
}

fn node_error(w: &Wanted<'_>, source: ClientError) -> LifecycleError {
    LifecycleError::Node {
        channel: w.channel.to_string(),
        source,
    }
}

async fn info(api: &Client, w: &Wanted<'_>) -> Result<Option<ChaincodeInfo>, LifecycleError> {
    let list = api
        .chaincodes(w.channel)
        .await
        .map_err(|e| node_error(w, e))?;
    Ok(list.into_iter().find(|c| c.name == w.name))
}

/// The channel's proposals of definitions of chaincode `name`, oldest first.
pub fn definition_proposals(list: &[ProposalView], name: &str) -> Vec<DefinitionProposal> {
    list.iter()
        .filter_map(|v| match &v.proposal.change {
            Change::DefineChaincode(d) if d.name == name => Some(DefinitionProposal {
                hash: v.hash,
                status: v.status,
                definition: d.clone(),
                tally: v.tally.clone(),
            }),
            _ => None,
        })
        .collect()
}

async fn submit(
    api: &Client,
    w: &Wanted<'_>,
    what: String,
    tx: &tally_protocol::Transaction,
) -> Result<Receipt, LifecycleError> {
    let r = api.submit_wait(tx).await.map_err(|e| node_error(w, e))?;
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

/// A proposal of a definition of the chaincode, as [`decide`] reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefinitionProposal {
    pub hash: Hash,
    pub status: Status,
    pub definition: ChaincodeDefinition,
    pub tally: Tally,
}

/// The next step towards the wanted definition, decided from what the ledger holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "camelCase", deny_unknown_fields)]
pub enum Step {
    /// The wanted definition is the active one.
    Done {
        sequence: u64,
        approved: Vec<String>,
    },
    /// Install the wanted definition (with its module) as `sequence`.
    Install { sequence: u64 },
    /// Propose the installed definition `sequence` (no open proposal of it).
    Propose { sequence: u64 },
    /// Approve the open proposal as organization `org`.
    Approve {
        org: String,
        sequence: u64,
        proposal: Hash,
    },
    /// The organizations rejected the proposal of this definition: a new version (or a new
    /// proposal made by hand) is needed.
    Rejected {
        sequence: u64,
        proposal: Hash,
        rejected: Vec<String>,
    },
    /// Waiting for approvals of organizations whose admin key is not held.
    Wait {
        sequence: u64,
        proposal: Hash,
        have: usize,
        needed: usize,
        approved: Vec<String>,
        missing: Vec<String>,
    },
}

/// The definition wanted, whatever its sequence (the next free one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub version: String,
    pub module_hash: Hash,
    #[serde(default)]
    pub init: Option<InitCall>,
}

/// Decides the next step from the ledger's view of the chaincode (`current`) and of the
/// proposals of its definitions (`proposals`, oldest first), acting for the organizations in
/// `held` (whose admin keys are held), in their order. Pure: one step at a time, so that
/// each is decided from what the ledger shows after the previous one.
pub fn decide(
    current: Option<&ChaincodeInfo>,
    proposals: &[DefinitionProposal],
    t: &Target,
    held: &[String],
) -> Step {
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
        // Who approved it: its applied proposal, or the two-step path's approvals.
        let approved = proposals
            .iter()
            .rev()
            .find(|p| p.status == Status::Applied && p.definition == *a)
            .map(|p| p.tally.approved.clone())
            .or_else(|| current.map(|i| i.approvals.clone()))
            .unwrap_or_default();
        return Step::Done {
            sequence: a.sequence,
            approved,
        };
    }
    if !current.is_some_and(|i| i.pending.iter().any(|p| p.definition == want)) {
        return Step::Install { sequence };
    }
    // The latest proposal of this definition decides: none, or one expired or made stale by
    // a configuration change, is proposed (again); a rejected one is the organizations' answer
    // and is not proposed again behind their backs.
    let latest = proposals.iter().rev().find(|p| p.definition == want);
    let open = match latest {
        Some(p) if p.status == Status::Open => p,
        Some(p) if p.status == Status::Rejected => {
            return Step::Rejected {
                sequence,
                proposal: p.hash,
                rejected: p.tally.rejected.clone(),
            }
        }
        _ => return Step::Propose { sequence },
    };
    let voted = |o: &String| open.tally.approved.contains(o) || open.tally.rejected.contains(o);
    if let Some(org) = held
        .iter()
        .find(|o| open.tally.eligible.contains(o) && !voted(o))
    {
        return Step::Approve {
            org: org.clone(),
            sequence,
            proposal: open.hash,
        };
    }
    Step::Wait {
        sequence,
        proposal: open.hash,
        have: open.tally.approved.len(),
        needed: open.tally.needed,
        approved: open.tally.approved.clone(),
        missing: open.tally.missing.clone(),
    }
}

/// Brings the channel's chaincode `w.name` to the wanted definition, acting as the admins in
/// `admins` (organization, identity). The first admin submits the install and the proposal.
/// Observes the ledger, [`decide`]s one step, takes it, and again, until the definition is
/// active or waits for approvals the caller cannot give.
pub async fn ensure(
    api: &Client,
    w: &Wanted<'_>,
    admins: &[(String, Identity)],
) -> Result<Report, LifecycleError> {
    let Some((_, submitter)) = admins.first() else {
        return Err(LifecycleError::NoAdmin);
    };
    // Proposals are read with a signed request, as the submitting admin (a member).
    let signed = api.with_reader(submitter.clone());
    let api = &signed;
    let held: Vec<String> = admins.iter().map(|(o, _)| o.clone()).collect();
    let target = Target {
        name: w.name.to_string(),
        version: w.version.to_string(),
        module_hash: tally_protocol::chaincode::module_hash(w.module),
        init: w.init.clone(),
    };
    let mut actions = Vec::new();
    let mut taken: Vec<Step> = Vec::new();
    loop {
        let current = info(api, w).await?;
        let list = api
            .proposals(w.channel)
            .await
            .map_err(|e| node_error(w, e))?;
        let proposals = definition_proposals(&list, w.name);
        let step = decide(current.as_ref(), &proposals, &target, &held);
        // A step the ledger does not show after it was taken (its node lags): wait for the
        // next run rather than repeat it.
        if taken.contains(&step) {
            let sequence = match &step {
                Step::Approve { sequence, .. }
                | Step::Install { sequence }
                | Step::Propose { sequence } => *sequence,
                _ => 0,
            };
            return Ok(Report {
                progress: Progress::WaitingForApprovals {
                    sequence,
                    proposal: None,
                    have: 0,
                    needed: 0,
                    missing: Vec::new(),
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
            Step::Rejected {
                sequence,
                proposal,
                rejected,
            } => {
                return Err(LifecycleError::DefinitionRejected {
                    channel: w.channel.to_string(),
                    sequence: *sequence,
                    proposal: *proposal,
                    rejected: rejected.clone(),
                })
            }
            Step::Wait {
                sequence,
                proposal,
                have,
                needed,
                approved,
                missing,
            } => {
                return Ok(Report {
                    progress: Progress::WaitingForApprovals {
                        sequence: *sequence,
                        proposal: Some(*proposal),
                        have: *have,
                        needed: *needed,
                        missing: missing.clone(),
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
            Step::Propose { sequence } => {
                let def = txs::chaincode_definition(
                    w.name,
                    w.version,
                    *sequence,
                    w.module,
                    w.init.clone(),
                );
                let proposal = api
                    .change_proposal(
                        w.channel,
                        Change::DefineChaincode(def),
                        PROPOSAL_TTL,
                        &format!("define chaincode {} version {}", w.name, w.version),
                    )
                    .await
                    .map_err(|e| node_error(w, e))?;
                let hash = proposal.hash();
                let tx = txs::sign_propose(submitter, proposal);
                submit(api, w, "definition proposal".into(), &tx).await?;
                actions.push(format!(
                    "proposed {} version {} as sequence {sequence} (proposal {hash})",
                    w.name, w.version
                ));
            }
            Step::Approve {
                org,
                sequence,
                proposal,
            } => {
                let Some((_, admin)) = admins.iter().find(|(o, _)| o == org) else {
                    return Err(LifecycleError::NoAdmin);
                };
                let tx = txs::sign_vote(admin, w.channel, *proposal, true);
                submit(api, w, format!("approval of {org}"), &tx).await?;
                actions.push(format!(
                    "organization {org} approved {} version {} (sequence {sequence}, proposal {proposal})",
                    w.name, w.version
                ));
            }
        }
        taken.push(step);
    }
}
