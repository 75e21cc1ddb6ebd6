//! Governance through the node: proposing a change, approving or rejecting a proposal as an
//! organization's admin, and reading proposals with their status and votes (see
//! `tally_protocol::proposal`). Votes are ordinary signed transactions, so an organization
//! signs them with its own admin key wherever it keeps it.

use super::Client;
use crate::error::ClientError;
use crate::txs;
use std::time::Duration;
use tally_protocol::proposal::{Change, ProposalList, ProposalView};
use tally_protocol::{ChannelConfig, Hash, Identity, Proposal, Receipt};

impl Client {
    /// The channel's proposals, oldest first, with their status as of the node's last block.
    pub async fn proposals(&self, channel: &str) -> Result<Vec<ProposalView>, ClientError> {
        let list: ProposalList = self
            .get_json(&Self::channel_path(channel, "/proposals"))
            .await?;
        Ok(list.proposals)
    }

    /// One proposal, `None` when the channel has none with this hash.
    pub async fn proposal(
        &self,
        channel: &str,
        hash: &Hash,
    ) -> Result<Option<ProposalView>, ClientError> {
        self.get_json_opt(&Self::channel_path(
            channel,
            &format!("/proposals/{}", hash.to_hex()),
        ))
        .await
    }

    /// A proposal to replace the channel's configuration in force with `next`, open for
    /// `ttl` from now. The base (sequence and hash) is read from the node, and read again if
    /// the configuration changed in between.
    pub async fn config_proposal(
        &self,
        channel: &str,
        next: ChannelConfig,
        ttl: Duration,
        description: &str,
    ) -> Result<Proposal, ClientError> {
        self.change_proposal(channel, Change::Config(Box::new(next)), ttl, description)
            .await
    }

    /// A proposal of any change (a configuration, a retirement), decided by the admins of
    /// the configuration in force, open for `ttl` from now. The base is read as for
    /// [`Client::config_proposal`].
    pub async fn change_proposal(
        &self,
        channel: &str,
        change: Change,
        ttl: Duration,
        description: &str,
    ) -> Result<Proposal, ClientError> {
        for _ in 0..3 {
            let status = self.status(channel).await?;
            let current = self.config(channel).await?;
            if current.hash() == status.config_hash {
                let expires = tally_protocol::now_ms().saturating_add(ttl.as_millis() as u64);
                return Ok(Proposal::other(
                    &current,
                    status.config_sequence,
                    change,
                    expires,
                    description,
                ));
            }
        }
        Err(ClientError::Other(format!(
            "the configuration of channel {channel} kept changing while it was read; try again"
        )))
    }

    /// Records `proposal`, approved by `admin`'s organization, and waits for its receipt.
    pub async fn propose(
        &self,
        admin: &Identity,
        proposal: Proposal,
    ) -> Result<Receipt, ClientError> {
        self.submit_wait(&txs::sign_propose(admin, proposal)).await
    }

    /// `admin`'s organization approves the proposal `hash`; waits for the receipt. The change
    /// applies in the block of the approval that meets the channel's policy.
    pub async fn approve(
        &self,
        admin: &Identity,
        channel: &str,
        hash: Hash,
    ) -> Result<Receipt, ClientError> {
        self.submit_wait(&txs::sign_vote(admin, channel, hash, true))
            .await
    }

    /// `admin`'s organization rejects the proposal `hash`; waits for the receipt.
    pub async fn reject(
        &self,
        admin: &Identity,
        channel: &str,
        hash: Hash,
    ) -> Result<Receipt, ClientError> {
        self.submit_wait(&txs::sign_vote(admin, channel, hash, false))
            .await
    }
}
