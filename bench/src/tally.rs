//! The Tally side: a local cluster of tally-node processes (one channel, every node a
//! consenter), driven with signed key/value transactions submitted with `wait=true`.

use crate::http::{Conn, Target};
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
use tally_protocol::{Encode, Hash, Identity};

#[derive(Clone)]
pub struct TallyParams {
    pub node_bin: PathBuf,
    pub nodes: usize,
    /// Channels on the same nodes (each its own Raft group, every node a consenter); the
    /// clients are spread over them.
    pub channels: usize,
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
        .strip_prefix("https://")
        .with_context(|| format!("API URL {url:?} is not https://"))?
        .trim_end_matches('/');
    let addr: SocketAddr = hostport
        .parse()
        .with_context(|| format!("API URL {url:?} is not https://IP:PORT"))?;
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
    /// When set, every committed (key, transaction id) is kept (the read workload's preload).
    pub committed: Option<Vec<(String, Hash)>>,
}

impl TallyWorker {
    pub fn new(
        addr: Target,
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
            committed: None,
        }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub fn value(&self) -> &[u8] {
        &self.value
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
        if let Some(c) = &mut self.committed {
            c.push((key, tx.id()));
        }
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
    addrs: &[Target],
    module: &[u8],
) -> Result<Vec<TransferWorker>> {
    let orgs: Vec<String> = cluster.admins.iter().map(|(o, _)| o.clone()).collect();
    let api = tally_client::Client::new(&cluster.api_urls[0], &cluster.trust)?;
    let wanted = tally_client::lifecycle::Wanted {
        channel: &cluster.channels[0],
        name: CHAINCODE,
        version: "bench",
        module,
        init: Some(tally_protocol::InitCall {
            function: "init".into(),
            args: txs::fields(&["core", orgs[0].as_str()]),
        }),
    };
    tally_client::lifecycle::ensure(&api, &wanted, &cluster.admins)
        .await
        .context("installing the receivables chaincode")?;
    let ids: Vec<Arc<Identity>> = cluster.identities.iter().cloned().map(Arc::new).collect();
    let maturity = (tally_protocol::now_ms() + 365 * 86_400_000).to_string();
    let path = format!(
        "/v1/channels/{}/transactions?wait=true",
        cluster.channels[0]
    );
    let mut workers = Vec::with_capacity(p.clients);
    // Issued concurrently, a few hundred at a time, by the core enterprise.
    let issues = (0..p.clients).map(|i| {
        let (a, b) = (i % orgs.len(), (i + 1) % orgs.len());
        let id = format!("B{}-{i}", p.run_id);
        let tx = txs::sign_invoke(
            &ids[0],
            &cluster.channels[0],
            CHAINCODE,
            "issue",
            txs::fields(&[id.as_str(), orgs[a].as_str(), "1000000", maturity.as_str()]),
            0,
            true,
        );
        let mut conn = Conn::new(addrs[i % addrs.len()].clone());
        workers.push(TransferWorker {
            conn: Conn::new(addrs[i % addrs.len()].clone()),
            path: path.clone(),
            channel: cluster.channels[0].clone(),
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

/// A started cluster with each client identity recorded on every channel.
pub struct Running {
    pub cluster: crate::cluster::Cluster,
    /// Client API address of each node, in node order (TLS, verified by IP address).
    pub addrs: Vec<Target>,
    /// One client identity per organization (organization *i* runs node *i*).
    pub ids: Vec<Arc<Identity>>,
}

/// Where client `i` goes: node `i mod n`, and channels in turn over every node, so that each
/// channel gets clients on every node.
pub fn placement(i: usize, nodes: usize, channels: usize) -> (usize, usize) {
    (i % nodes, (i / nodes) % channels.max(1))
}

impl Running {
    /// Stops the cluster and returns `msg` with the end of every node's log.
    pub async fn fail(self, msg: String) -> anyhow::Error {
        let logs = self.cluster.log_tails(30);
        self.cluster.stop().await;
        anyhow::anyhow!("{msg}\n{logs}")
    }

    /// One key/value writer per client, each on its node and channel, keys under `tag`.
    pub fn writers(&self, p: &TallyParams, tag: &str) -> Vec<TallyWorker> {
        let channels = &self.cluster.channels;
        (0..p.clients)
            .map(|i| {
                let (node, ch) = placement(i, self.addrs.len(), channels.len());
                TallyWorker::new(
                    self.addrs[node].clone(),
                    &channels[ch],
                    self.ids[node % self.ids.len()].clone(),
                    true,
                    format!("bench/{}/{tag}{i}/", p.run_id),
                    p.value_size,
                )
            })
            .collect()
    }
}

/// Starts the nodes, then records each signing certificate on every channel with one
/// full-certificate transaction, so that the load signs with the certificate's hash and keeps
/// transactions small.
pub async fn start(p: &TallyParams, label: &str) -> Result<Running> {
    eprintln!(
        "[{label}] starting {} nodes with {} channel(s) from {}",
        p.nodes,
        p.channels.max(1),
        p.node_bin.display()
    );
    let cluster = crate::cluster::start(p).await?;
    eprintln!(
        "[{label}] ready: {} channel(s) on {}; {} clients",
        cluster.channels.len(),
        cluster.api_urls.join(" "),
        p.clients
    );
    let tls = Arc::new(cluster.trust.client_config()?);
    let addrs = cluster
        .api_urls
        .iter()
        .map(|u| Ok(Target::tls(api_addr(u)?, tls.clone())))
        .collect::<Result<Vec<_>>>()?;
    let ids: Vec<Arc<Identity>> = cluster.identities.iter().cloned().map(Arc::new).collect();
    let running = Running {
        cluster,
        addrs,
        ids,
    };
    let addrs = &running.addrs;
    let firsts = running.cluster.channels.iter().flat_map(|ch| {
        running.ids.iter().enumerate().map(move |(i, id)| {
            let mut w = TallyWorker::new(
                addrs[i % addrs.len()].clone(),
                ch,
                id.clone(),
                false,
                format!("bench/{}/cert/{ch}/{i}/", p.run_id),
                p.value_size,
            );
            async move { w.op().await }
        })
    });
    let results = futures_util::future::join_all(firsts).await;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        return Err(running
            .fail(format!(
                "first transaction (records the client certificate): {e:#}"
            ))
            .await);
    }
    Ok(running)
}

pub async fn run(p: &TallyParams) -> Result<(SystemReport, Option<SystemReport>)> {
    let label = if p.fsync { "tally" } else { "tally no-fsync" };
    let running = start(p, label).await?;
    let params = LoadParams {
        label: label.into(),
        warmup: p.warmup,
        measure: p.measure,
        server_pids: running.cluster.pids.clone(),
    };
    let r = load::run(params, running.writers(p, "")).await;
    if !r.gone_pids.is_empty() {
        let msg = format!("tally nodes exited during the run: {:?}", r.gone_pids);
        return Err(running.fail(msg).await);
    }
    let kv = SystemReport::from_load(&r, p.nodes, p.fsync);
    let Some(module) = &p.chaincode else {
        running.cluster.stop().await;
        return Ok((kv, None));
    };
    eprintln!(
        "[{label}] chaincode: installing receivables, issuing {} receivables",
        p.clients
    );
    let workers = match chaincode_setup(p, &running.cluster, &running.addrs, module).await {
        Ok(w) => w,
        Err(e) => return Err(running.fail(format!("{e:#}")).await),
    };
    let params = LoadParams {
        label: format!("{label} chaincode"),
        warmup: p.warmup,
        measure: p.measure,
        server_pids: running.cluster.pids.clone(),
    };
    let r = load::run(params, workers).await;
    running.cluster.stop().await;
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
    fn every_channel_gets_clients_on_every_node() {
        for (nodes, channels) in [(3, 1), (3, 10), (3, 50), (5, 10), (7, 1), (3, 3)] {
            let mut seen = std::collections::BTreeSet::new();
            for i in 0..256 {
                let (n, c) = placement(i, nodes, channels);
                assert!(n < nodes && c < channels);
                seen.insert((n, c));
            }
            assert_eq!(
                seen.len(),
                nodes * channels,
                "{nodes} nodes, {channels} channels"
            );
        }
    }

    #[test]
    fn only_loopback_api_urls_are_accepted() {
        assert_eq!(api_addr("https://127.0.0.1:7051").unwrap().port(), 7051);
        assert_eq!(api_addr("https://127.0.0.1:7051/").unwrap().port(), 7051);
        assert!(api_addr("https://10.0.0.1:7051").is_err());
        assert!(api_addr("http://127.0.0.1:7051").is_err());
    }
}
