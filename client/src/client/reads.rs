//! Reads of a channel through the node: receipts, blocks and headers, keys, key history,
//! chaincode definitions and read-only chaincode queries, channel status and configuration,
//! known certificates, and the node's readiness and health. Each is one GET (signed when the
//! client has a reader identity); a 404 that is not about the channel means "absent" (the
//! rule is held once, by `get_opt` in `transport`).

use super::url::{percent_encode, query_string};
use super::Client;
use crate::error::ClientError;
use tally_protocol::api::{ChannelList, ChannelStatus, History, KeyEntry, KeyList, KeyValue};
use tally_protocol::{Block, BlockHeader, ChannelConfig, Hash, ProvenReceipt};

impl Client {
    pub async fn receipt(
        &self,
        channel: &str,
        tx_id: &Hash,
    ) -> Result<Option<ProvenReceipt>, ClientError> {
        self.get_json_opt(&Self::channel_path(
            channel,
            &format!("/transactions/{}", tx_id.to_hex()),
        ))
        .await
    }

    /// `None` = latest block.
    pub async fn block(&self, channel: &str, number: Option<u64>) -> Result<Block, ClientError> {
        let n = number.map_or_else(|| "latest".to_string(), |n| n.to_string());
        self.get_json(&Self::channel_path(channel, &format!("/blocks/{n}")))
            .await
    }

    /// The header of block `number` (fetched with its block).
    /// A block's header alone (open to anyone, unlike the block).
    pub async fn header(&self, channel: &str, number: u64) -> Result<BlockHeader, ClientError> {
        self.get_json(&Self::channel_path(
            channel,
            &format!("/blocks/{number}/header"),
        ))
        .await
    }

    pub async fn get(&self, channel: &str, key: &str) -> Result<Option<KeyValue>, ClientError> {
        let q = query_string(&[("key", key.to_string())]);
        self.get_json_opt(&Self::channel_path(channel, &format!("/state{q}")))
            .await
    }

    pub async fn history(
        &self,
        channel: &str,
        key: &str,
        limit: Option<u32>,
    ) -> Result<History, ClientError> {
        let mut q = vec![("key", key.to_string())];
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        let path = Self::channel_path(channel, &format!("/history{}", query_string(&q)));
        match self.get_json_opt(&path).await? {
            Some(h) => Ok(h),
            None => Ok(History {
                key: key.to_string(),
                entries: Vec::new(),
            }),
        }
    }

    pub async fn keys(
        &self,
        channel: &str,
        prefix: &str,
        limit: Option<u32>,
    ) -> Result<Vec<KeyEntry>, ClientError> {
        let mut q = vec![("prefix", prefix.to_string())];
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        let path = Self::channel_path(channel, &format!("/keys{}", query_string(&q)));
        let list: KeyList = self.get_json(&path).await?;
        Ok(list.keys)
    }

    /// Chaincode definitions of the channel: committed, pending and their approvals.
    pub async fn chaincodes(
        &self,
        channel: &str,
    ) -> Result<Vec<tally_protocol::chaincode::ChaincodeInfo>, ClientError> {
        let list: tally_protocol::chaincode::ChaincodeList = self
            .get_json(&Self::channel_path(channel, "/chaincodes"))
            .await?;
        Ok(list.chaincodes)
    }

    /// Runs `function` of chaincode `name` read-only against the node's committed state, as
    /// this client's identity (a signed read).
    pub async fn query_chaincode(
        &self,
        channel: &str,
        name: &str,
        function: &str,
        args: &[u8],
    ) -> Result<tally_protocol::chaincode::QueryResult, ClientError> {
        let q = query_string(&[
            ("function", function.to_string()),
            ("args", hex::encode(args)),
        ]);
        let path = Self::channel_path(
            channel,
            &format!("/chaincodes/{}/query{q}", percent_encode(name)),
        );
        self.get_json(&path).await
    }

    pub async fn status(&self, channel: &str) -> Result<ChannelStatus, ClientError> {
        self.get_json(&Self::channel_path(channel, "/status")).await
    }

    pub async fn channels(&self) -> Result<ChannelList, ClientError> {
        self.get_json("/v1/channels").await
    }

    pub async fn config(&self, channel: &str) -> Result<ChannelConfig, ClientError> {
        self.get_json(&Self::channel_path(channel, "/config")).await
    }

    /// True when the channel has recorded this certificate, so that transactions may be
    /// signed with [`tally_protocol::Signer::CertHash`].
    pub async fn knows_cert(&self, channel: &str, cert_hash: &Hash) -> Result<bool, ClientError> {
        let path = Self::channel_path(channel, &format!("/certs/{}", cert_hash.to_hex()));
        Ok(self.get_opt(&path).await?.is_some())
    }

    /// GET /readyz: Ok(true) on 200.
    pub async fn ready(&self) -> Result<bool, ClientError> {
        self.probe("/readyz").await
    }

    /// GET /healthz: Ok(true) on 200.
    pub async fn healthy(&self) -> Result<bool, ClientError> {
        self.probe("/healthz").await
    }
}
