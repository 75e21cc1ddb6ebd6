//! The admin API's backups of a channel: started on a node, which streams them to object
//! storage itself, and then polled.

use super::AdminClient;
use crate::error::ClientError;
use hyper::Method;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A backup a node is making or made, as it reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupRun {
    pub id: String,
    #[serde(default)]
    pub channel: String,
    /// `Running`, `Succeeded` or `Failed`.
    pub phase: String,
    #[serde(default)]
    pub url: String,
    /// The manifest's path in the repository, once done.
    #[serde(default)]
    pub manifest: Option<String>,
    #[serde(default)]
    pub height: Option<u64>,
    #[serde(default)]
    pub bytes_raw: Option<u64>,
    #[serde(default)]
    pub bytes_stored: Option<u64>,
    #[serde(default)]
    pub chunks: Option<u64>,
    #[serde(default)]
    pub chunks_reused: Option<u64>,
    #[serde(default)]
    pub started_unix: Option<u64>,
    #[serde(default)]
    pub finished_unix: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Serialize)]
struct StartBackup<'a> {
    to: &'a str,
    options: &'a BTreeMap<String, String>,
}

impl AdminClient {
    /// Asks the node to back `channel` up to the repository `to` (with the store's
    /// `options`, such as `aws_access_key_id`); the node answers at once with the run's id.
    pub async fn start_backup(
        &self,
        channel: &str,
        to: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<BackupRun, ClientError> {
        let path = format!(
            "/v1/admin/channels/{}/backups",
            crate::client::percent_encode(channel)
        );
        self.call_json(Method::POST, &path, Some(&StartBackup { to, options }))
            .await
    }

    /// A backup run the node knows; `None` when it does not (it restarted since, which ends
    /// every run it had).
    pub async fn backup_run(
        &self,
        channel: &str,
        id: &str,
    ) -> Result<Option<BackupRun>, ClientError> {
        let path = format!(
            "/v1/admin/channels/{}/backups/{}",
            crate::client::percent_encode(channel),
            crate::client::percent_encode(id)
        );
        match self.call_json(Method::GET, &path, None::<&()>).await {
            Ok(run) => Ok(Some(run)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
