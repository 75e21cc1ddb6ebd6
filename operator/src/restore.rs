//! `Peer.spec.restore`: which ledgers a Peer's nodes restore before they start, and from
//! where. The restore itself is `tally-node restore` in an init container of each pod
//! ([`crate::builders`]), which verifies the backup and writes only a missing ledger.

use crate::builders;
use crate::context::{Context, Error, Result};
use kube::api::Api;
use kube::ResourceExt;
use tally_api::peer::Peer;

/// `spec.restore` made concrete: a named Backup's repository, manifest, credentials and
/// channel; or the URL with the channels listed (every channel of the Peer's nodes when none).
pub async fn source(
    ctx: &Context,
    ns: &str,
    peer: &Peer,
    nodes: &[&tally_planner::NodePlan],
) -> Result<Option<builders::RestoreSource>> {
    let Some(r) = &peer.spec.restore else {
        return Ok(None);
    };
    let served: Vec<String> = nodes
        .first()
        .map(|n| n.channels.clone())
        .unwrap_or_default();
    // A read-only restore is for a Peer made to investigate: restoring a channel that its
    // nodes serve would freeze a live member's ledger at an old height for good.
    let not_served = |c: &str| -> Result<()> {
        if served.iter().any(|s| s == c) {
            return Err(Error::Invalid(format!(
                "spec.restore.readOnly: the nodes of Peer {ns}/{} serve channel {c}; restore it read-only into a Peer made for the investigation, which serves none of its channels",
                peer.name_any()
            )));
        }
        Ok(())
    };
    let pick = |from: Vec<String>| -> Result<Vec<String>> {
        if r.channels.is_empty() {
            return Ok(from);
        }
        match r.channels.iter().find(|c| !served.contains(c)) {
            Some(c) => Err(Error::Invalid(format!(
                "spec.restore.channels: the nodes of Peer {ns}/{} do not serve channel {c}",
                peer.name_any()
            ))),
            None => Ok(from
                .into_iter()
                .filter(|c| r.channels.contains(c))
                .collect()),
        }
    };
    if let Some(name) = &r.backup {
        let b: Option<tally_api::backup::Backup> = Api::namespaced(ctx.client.clone(), ns)
            .get_opt(name)
            .await?;
        let Some(b) = b else {
            return Err(Error::Invalid(format!(
                "spec.restore.backup: Backup {ns}/{name} does not exist"
            )));
        };
        let st = b.status.clone().unwrap_or_default();
        if st.phase != tally_api::backup::BackupPhase::Succeeded || st.manifest.is_empty() {
            return Err(Error::Invalid(format!(
                "spec.restore.backup: Backup {ns}/{name} has not succeeded (phase {:?})",
                st.phase
            )));
        }
        if r.read_only {
            not_served(&b.spec.channel)?;
        } else if !served.contains(&b.spec.channel) {
            return Err(Error::Invalid(format!(
                "spec.restore.backup: Backup {ns}/{name} is of channel {}, which the nodes of Peer {} do not serve",
                b.spec.channel,
                peer.name_any()
            )));
        }
        return Ok(Some(builders::RestoreSource {
            url: st.url.clone(),
            manifest: Some(st.manifest.clone()),
            height: None,
            credentials_secret: b.spec.destination.credentials_secret.clone(),
            channels: if r.read_only {
                vec![b.spec.channel.clone()]
            } else {
                pick(vec![b.spec.channel.clone()])?
            },
            read_only: r.read_only,
        }));
    }
    r.url
        .as_ref()
        .map(|url| -> Result<builders::RestoreSource> {
            Ok(builders::RestoreSource {
                url: url.clone(),
                manifest: None,
                height: r.height,
                credentials_secret: r.credentials_secret.clone(),
                channels: if r.read_only {
                    for c in &r.channels {
                        not_served(c)?;
                    }
                    r.channels.clone()
                } else {
                    pick(served.clone())?
                },
                read_only: r.read_only,
            })
        })
        .transpose()
}
