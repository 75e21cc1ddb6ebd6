//! The approvals a channel's genesis needs before any node creates it: every member
//! organization's (`tally_protocol::genesis`). The operator signs for the organizations whose
//! admin key it holds (`approvals: Operator`); the others approve with `tallyctl channel
//! approve-genesis` and their approval comes through the Channel's `spec.genesisApprovals`.
//! Nodes that already serve the channel keep the approvals they were created with, which is
//! where a node joining later gets them, even once the spec no longer carries them.

use crate::world::World;
use tally_api::channel::{Channel, GenesisApproval};
use tally_protocol::api::ChannelInfo;
use tally_protocol::{genesis, Approval, ChannelConfig};

/// Where a genesis stands.
#[derive(Debug, Default)]
pub struct Gathered {
    /// One valid approval per organization that gave one.
    pub approvals: Vec<Approval>,
    pub approved: Vec<String>,
    /// Members that have not approved it.
    pub missing: Vec<String>,
    /// Approvals in the spec that do not count, with why.
    pub refused: Vec<String>,
}

impl Gathered {
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// The wait, as the Channel's status reports a change waiting for approvals.
    pub fn awaiting(&self, genesis: &ChannelConfig) -> crate::decide::channel::Awaiting {
        crate::decide::channel::Awaiting {
            proposal: genesis.hash().to_hex(),
            needed: genesis.members.len(),
            approved: self.approved.clone(),
            missing: self.missing.clone(),
        }
    }
}

/// The operator's own approvals of `genesis`: one per member organization it signs for.
pub fn own(w: &World, genesis: &ChannelConfig) -> Vec<(String, Approval)> {
    genesis
        .members
        .iter()
        .filter(|m| w.signs_for(&m.name))
        .filter_map(|m| {
            let admin = w.plan.org(&m.name).and_then(|o| o.admin.as_ref())?;
            Some((m.name.clone(), genesis::approve(genesis, admin)))
        })
        .collect()
}

/// [`own`] as `spec.genesisApprovals` entries: what the operator publishes beside the
/// genesis, for the Channel of the same consortium in another cluster.
pub fn own_as_spec(w: &World, genesis: &ChannelConfig, channel: &str) -> Vec<GenesisApproval> {
    let hash = genesis.hash().to_hex();
    own(w, genesis)
        .into_iter()
        .map(|(org, a)| GenesisApproval {
            organization: org,
            channel: Some(channel.to_string()),
            genesis: Some(hash.clone()),
            certificate: hex::encode(&a.certificate),
            signature: hex::encode(&a.signature),
        })
        .collect()
}

/// Every approval of `genesis` the operator can find: its own signatures, the spec's and
/// those the nodes in `infos` recorded for the same genesis.
pub fn gather<'a>(
    ch: &Channel,
    w: &World,
    genesis: &ChannelConfig,
    infos: impl Iterator<Item = &'a ChannelInfo>,
) -> Gathered {
    let cas = match genesis.validate() {
        Ok(cas) => cas,
        Err(e) => {
            return Gathered {
                missing: genesis.members.iter().map(|m| m.name.clone()).collect(),
                refused: vec![format!("the genesis is invalid: {e}")],
                ..Gathered::default()
            }
        }
    };
    let hash = genesis.hash();
    let mut all: Vec<Approval> = infos
        .filter(|i| i.genesis.hash() == hash)
        .flat_map(|i| i.approvals.iter().cloned())
        .collect();
    all.extend(own(w, genesis).into_iter().map(|(_, a)| a));
    let mut refused = Vec::new();
    for (i, a) in ch.spec.genesis_approvals.iter().enumerate() {
        let at = format!("spec.genesisApprovals[{i}] ({})", a.organization);
        let (Ok(certificate), Ok(signature)) =
            (hex::decode(&a.certificate), hex::decode(&a.signature))
        else {
            refused.push(format!("{at}: certificate and signature must be hex"));
            continue;
        };
        let approval = Approval {
            certificate,
            signature,
        };
        match genesis::approver(genesis, &cas, &approval) {
            Ok(org) if org == a.organization => all.push(approval),
            Ok(org) => refused.push(format!(
                "{at}: the certificate is an admin of {org}, not of {}",
                a.organization
            )),
            Err(why) => refused.push(format!("{at}: {why}")),
        }
    }
    let approvals = genesis::merge(genesis, &cas, all);
    let missing = genesis::missing(genesis, &cas, &approvals).unwrap_or_default();
    let approved = genesis
        .members
        .iter()
        .map(|m| m.name.clone())
        .filter(|m| !missing.contains(m))
        .collect();
    Gathered {
        approvals,
        approved,
        missing,
        refused,
    }
}
