//! Drives a chaincode definition to committed on a channel: installs it once, approves it for
//! every organization whose admin identity the caller holds, and commits it once enough
//! organizations approved. Idempotent: each step looks at the ledger first, so running it again
//! (after a crash, on every reconcile) does only what is missing. The operator's Chaincode
//! controller and `tallyctl up` share it.

use crate::client::Client;
use crate::error::ClientError;
use crate::txs;
use tally_protocol::chaincode::{ChaincodeDefinition, ChaincodeInfo, PendingDefinition};
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

/// Brings the channel's chaincode `w.name` to the wanted definition, acting as the admins in
/// `admins` (organization, identity). The first admin submits the install and the commit.
pub async fn ensure(
    api: &Client,
    w: &Wanted<'_>,
    admins: &[(String, Identity)],
) -> Result<Report, LifecycleError> {
    let Some((_, submitter)) = admins.first() else {
        return Err(LifecycleError::NoAdmin);
    };
    let current = info(api, w).await?;
    let active = current.as_ref().and_then(|i| i.active.clone());
    let sequence = active.as_ref().map_or(1, |d| d.sequence + 1);
    let want = txs::chaincode_definition(w.name, w.version, sequence, w.module, w.init.clone());
    if let Some(a) = active.as_ref().filter(|a| same(a, &want)) {
        return Ok(Report {
            progress: Progress::Committed {
                sequence: a.sequence,
            },
            approved: current.map(|i| i.approvals).unwrap_or_default(),
            actions: Vec::new(),
        });
    }
    let find = |i: &Option<ChaincodeInfo>| -> Option<PendingDefinition> {
        i.as_ref()?
            .pending
            .iter()
            .find(|p| p.definition == want)
            .cloned()
    };
    let mut actions = Vec::new();
    let mut pending = find(&current);
    if pending.is_none() {
        let tx = txs::sign_install(submitter, w.channel, want.clone(), w.module.to_vec());
        submit(api, w, "install".into(), &tx).await?;
        actions.push(format!(
            "installed {} version {} as sequence {sequence} ({} bytes)",
            w.name,
            w.version,
            w.module.len()
        ));
    }
    let mut approved_now = false;
    for (org, admin) in admins {
        if pending.as_ref().is_some_and(|p| p.approvals.contains(org)) {
            continue;
        }
        let tx = txs::sign_approve(admin, w.channel, w.name, sequence, want.module_hash);
        submit(api, w, format!("approval of {org}"), &tx).await?;
        approved_now = true;
        actions.push(format!(
            "organization {org} approved {} version {} (sequence {sequence})",
            w.name, w.version
        ));
    }
    if approved_now || pending.is_none() {
        pending = find(&info(api, w).await?);
    }
    // Just installed and approved through this node: it shows them once applied, which
    // submit_wait already waited for.
    let Some(pending) = pending else {
        return Ok(Report {
            progress: Progress::WaitingForApprovals {
                sequence,
                have: 0,
                needed: w.at_least,
            },
            approved: Vec::new(),
            actions,
        });
    };
    let have = pending.approvals.len();
    let needed = w.at_least.max(pending.needed);
    if have < needed {
        return Ok(Report {
            progress: Progress::WaitingForApprovals {
                sequence,
                have,
                needed,
            },
            approved: pending.approvals,
            actions,
        });
    }
    let tx = txs::sign_commit(submitter, w.channel, w.name, sequence);
    submit(api, w, "commit".into(), &tx).await?;
    actions.push(format!(
        "committed {} version {} as sequence {sequence}",
        w.name, w.version
    ));
    Ok(Report {
        progress: Progress::Committed { sequence },
        approved: pending.approvals,
        actions,
    })
}
