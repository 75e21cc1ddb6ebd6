//! The Tally side: a local cluster of tally-node processes (one channel, every node a
//! consenter), driven with signed key/value transactions submitted with `wait=true`.

use crate::http::Conn;
use crate::load::{self, LoadParams, Worker};
use crate::report::SystemReport;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tally_client::txs;
use tally_protocol::{Encode, Identity};

pub struct TallyParams {
    pub node_bin: PathBuf,
    pub nodes: usize,
    pub fsync: bool,
    pub batch_max_txs: Option<u32>,
    pub batch_timeout_ms: Option<u32>,
    pub clients: usize,
    pub value_size: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub run_id: String,
    /// The receivables contract's module: after the key/value load, the same cluster runs a
    /// chaincode load of receivables transfers.
    pub chaincode: Option<Vec<u8>>,
}

/// What the node answers with `wait=true` (a `Receipt`; only the fields checked here).
#[derive(Deserialize)]
struct ReceiptStatus {
    status: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

pub fn api_addr(url: &str) -> Result<SocketAddr> {
    let hostport = url
        .strip_prefix("http://")
        .with_context(|| format!("API URL {url:?} is not http://"))?
        .trim_end_matches('/');
    let addr: SocketAddr = hostport
        .parse()
        .with_context(|| format!("API URL {url:?} is not http://IP:PORT"))?;
    if !addr.ip().is_loopback() {
        bail!("refusing to send load to {addr}: the benchmark only talks to loopback");
    }
    Ok(addr)
}

pub struct TallyWorker {
    conn: Conn,
    path: String,
    channel: String,
    id: Arc<Identity>,
    use_cert_hash: bool,
    prefix: String,
    seq: u64,
    value: Vec<u8>,
}

impl TallyWorker {
    pub fn new(
        addr: SocketAddr,
        channel: &str,
        id: Arc<Identity>,
        use_cert_hash: bool,
        prefix: String,
        value_size: usize,
    ) -> TallyWorker {
        TallyWorker {
            conn: Conn::new(addr),
            path: format!("/v1/channels/{channel}/transactions?wait=true"),
            channel: channel.to_string(),
            id,
            use_cert_hash,
            value: crate::value_bytes(value_size, &prefix),
            prefix,
            seq: 0,
        }
    }
}

impl Worker for TallyWorker {
    async fn op(&mut self) -> Result<()> {
        self.seq += 1;
        let key = format!("{}{}", self.prefix, self.seq);
        let tx = txs::sign_writes(
            &self.id,
            &self.channel,
            vec![txs::put(&key, &self.value)],
            self.use_cert_hash,
        );
        let body = Bytes::from(tx.to_bytes());
        let r = self
            .conn
            .post(&self.path, "application/octet-stream", body)
            .await?;
        committed(&r)?;
        Ok(())
    }
}

/// Checks a receipt answered with `wait=true`.
fn committed(r: &crate::http::Response) -> Result<()> {
    if r.status != 200 {
        bail!(
            "submit: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    let rs: ReceiptStatus = serde_json::from_slice(&r.body)
        .with_context(|| format!("receipt: {}", String::from_utf8_lossy(&r.body)))?;
    if rs.status != "committed" {
        bail!(
            "transaction {}: {} {}",
            rs.status,
            rs.code.unwrap_or_default(),
            rs.reason.unwrap_or_default()
        );
    }
    Ok(())
}

/// The chaincode's name on the benchmark channel.
const CHAINCODE: &str = "receivables";

/// One receivable passed back and forth between two organizations: each operation is a
/// `transfer` invoke signed by the current holder, executed by the contract on every node.
pub struct TransferWorker {
    conn: Conn,
    path: String,
    channel: String,
    id: String,
    /// (organization, client identity) of both parties; `holder` indexes the one holding it.
    parties: [(String, Arc<Identity>); 2],
    holder: usize,
}

impl Worker for TransferWorker {
    async fn op(&mut self) -> Result<()> {
        let to = 1 - self.holder;
        let tx = txs::sign_invoke(
            &self.parties[self.holder].1,
            &self.channel,
            CHAINCODE,
            "transfer",
            txs::fields(&[self.id.as_str(), self.parties[to].0.as_str()]),
            0,
            true,
        );
        let body = Bytes::from(tx.to_bytes());
        let r = self
            .conn
            .post(&self.path, "application/octet-stream", body)
            .await?;
        committed(&r)?;
        self.holder = to;
        Ok(())
    }
}

/// Installs the receivables contract (organization 1 is the core enterprise), issues one
/// receivable per client and returns the workers that transfer them.
async fn chaincode_setup(
    p: &TallyParams,
    cluster: &crate::cluster::Cluster,
    addrs: &[SocketAddr],
    module: &[u8],
) -> Result<Vec<TransferWorker>> {
    let orgs: Vec<String> = cluster.admins.iter().map(|(o, _)| o.clone()).collect();
    let api = tally_client::Client::new(&cluster.api_urls[0])?;
    let wanted = tally_client::lifecycle::Wanted {
        channel: &cluster.channel,
        name: CHAINCODE,
        version: "bench",
        module,
        init: Some(tally_protocol::InitCall {
            function: "init".into(),
            args: txs::fields(&["core", orgs[0].as_str()]),
        }),
        at_least: 0,
    };
    tally_client::lifecycle::ensure(&api, &wanted, &cluster.admins)
        .await
        .context("installing the receivables chaincode")?;
    let ids: Vec<Arc<Identity>> = cluster.identities.iter().cloned().map(Arc::new).collect();
    let maturity = (tally_protocol::now_ms() + 365 * 86_400_000).to_string();
    let path = format!("/v1/channels/{}/transactions?wait=true", cluster.channel);
    let mut workers = Vec::with_capacity(p.clients);
    // Issued concurrently, a few hundred at a time, by the core enterprise.
    let issues = (0..p.clients).map(|i| {
        let (a, b) = (i % orgs.len(), (i + 1) % orgs.len());
        let id = format!("B{}-{i}", p.run_id);
        let tx = txs::sign_invoke(
            &ids[0],
            &cluster.channel,
            CHAINCODE,
            "issue",
            txs::fields(&[id.as_str(), orgs[a].as_str(), "1000000", maturity.as_str()]),
            0,
            true,
        );
        let mut conn = Conn::new(addrs[i % addrs.len()]);
        workers.push(TransferWorker {
            conn: Conn::new(addrs[i % addrs.len()]),
            path: path.clone(),
            channel: cluster.channel.clone(),
            id,
            parties: [
                (orgs[a].clone(), ids[a].clone()),
                (orgs[b].clone(), ids[b].clone()),
            ],
            holder: 0,
        });
        let path = path.clone();
        async move {
            let r = conn
                .post(
                    &path,
                    "application/octet-stream",
                    Bytes::from(tx.to_bytes()),
                )
                .await?;
            committed(&r)
        }
    });
    for r in futures_util::future::join_all(issues).await {
        r.context("issuing the receivables")?;
    }
    Ok(workers)
}

pub async fn run(p: &TallyParams) -> Result<(SystemReport, Option<SystemReport>)> {
    let label = if p.fsync { "tally" } else { "tally no-fsync" };
    eprintln!(
        "[{label}] starting {} nodes from {}",
        p.nodes,
        p.node_bin.display()
    );
    let cluster = crate::cluster::start(p).await?;
    eprintln!(
        "[{label}] ready: channel {} on {}; {} clients",
        cluster.channel,
        cluster.api_urls.join(" "),
        p.clients
    );
    let addrs = cluster
        .api_urls
        .iter()
        .map(|u| api_addr(u))
        .collect::<Result<Vec<_>>>()?;

    // Record each signing certificate on the channel with one full-certificate transaction,
    // then sign with its hash to keep the transactions small.
    let ids: Vec<Arc<Identity>> = cluster.identities.iter().cloned().map(Arc::new).collect();
    for (i, id) in ids.iter().enumerate() {
        let mut w = TallyWorker::new(
            addrs[i % addrs.len()],
            &cluster.channel,
            id.clone(),
            false,
            format!("bench/{}/cert/{i}/", p.run_id),
            p.value_size,
        );
        if let Err(e) = w.op().await {
            let logs = cluster.log_tails(20);
            cluster.stop().await;
            bail!("first transaction (records the client certificate): {e:#}\n{logs}");
        }
    }

    let workers = (0..p.clients)
        .map(|i| {
            TallyWorker::new(
                addrs[i % addrs.len()],
                &cluster.channel,
                ids[i % ids.len()].clone(),
                true,
                format!("bench/{}/{i}/", p.run_id),
                p.value_size,
            )
        })
        .collect();
    let params = LoadParams {
        label: label.into(),
        warmup: p.warmup,
        measure: p.measure,
        server_pids: cluster.pids.clone(),
    };
    let r = load::run(params, workers).await;
    if !r.gone_pids.is_empty() {
        let logs = cluster.log_tails(30);
        cluster.stop().await;
        bail!(
            "tally nodes exited during the run: {:?}\n{logs}",
            r.gone_pids
        );
    }
    let kv = SystemReport::from_load(&r, p.nodes, p.fsync);
    let Some(module) = &p.chaincode else {
        cluster.stop().await;
        return Ok((kv, None));
    };
    eprintln!(
        "[{label}] chaincode: installing receivables, issuing {} receivables",
        p.clients
    );
    let workers = match chaincode_setup(p, &cluster, &addrs, module).await {
        Ok(w) => w,
        Err(e) => {
            let logs = cluster.log_tails(20);
            cluster.stop().await;
            bail!("{e:#}\n{logs}");
        }
    };
    let params = LoadParams {
        label: format!("{label} chaincode"),
        warmup: p.warmup,
        measure: p.measure,
        server_pids: cluster.pids.clone(),
    };
    let r = load::run(params, workers).await;
    cluster.stop().await;
    if !r.gone_pids.is_empty() {
        bail!(
            "tally nodes exited during the chaincode run: {:?}",
            r.gone_pids
        );
    }
    Ok((kv, Some(SystemReport::from_load(&r, p.nodes, p.fsync))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_api_urls_are_accepted() {
        assert_eq!(api_addr("http://127.0.0.1:7051").unwrap().port(), 7051);
        assert_eq!(api_addr("http://127.0.0.1:7051/").unwrap().port(), 7051);
        assert!(api_addr("http://10.0.0.1:7051").is_err());
        assert!(api_addr("https://127.0.0.1:7051").is_err());
    }
}
