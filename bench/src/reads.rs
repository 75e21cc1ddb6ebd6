//! The read workload on Tally: signed key reads (`GET .../state?key=`) and proof fetches
//! (`GET .../transactions/{id}`, a receipt with its Merkle inclusion proof, checked by the
//! client) of keys written just before, each read signed by the client as the API requires.

use crate::http::{Conn, Target};
use crate::load::{self, LoadParams, Worker};
use crate::report::SystemReport;
use crate::tally::{Running, TallyParams};
use anyhow::{bail, Context, Result};
use rand::Rng;
use std::sync::Arc;
use tally_client::client::{percent_encode, verify_receipt};
use tally_protocol::api::KeyValue;
use tally_protocol::{read_auth, Hash, Identity, ProvenReceipt};

/// A key written by the preload, with what a read must find.
pub struct Written {
    pub channel: String,
    pub key: String,
    pub tx_id: Hash,
    /// Index into [`Preloaded::values`] (one value per writing client).
    pub value: usize,
}

pub struct Preloaded {
    pub keys: Vec<Written>,
    pub values: Vec<Vec<u8>>,
}

/// Writes `per_client` keys from every client (the same placement as the write load) and
/// keeps each key's transaction id.
pub async fn preload(p: &TallyParams, running: &Running, per_client: usize) -> Result<Preloaded> {
    let mut writers = running.writers(p, "r");
    for w in &mut writers {
        w.committed = Some(Vec::with_capacity(per_client));
    }
    let writers = load::run_each(writers, per_client)
        .await
        .context("preloading keys")?;
    let mut out = Preloaded {
        keys: Vec::new(),
        values: Vec::new(),
    };
    for w in writers {
        let value = out.values.len();
        out.values.push(w.value().to_vec());
        for (key, tx_id) in w.committed.iter().flatten() {
            out.keys.push(Written {
                channel: w.channel().to_string(),
                key: key.clone(),
                tx_id: *tx_id,
                value,
            });
        }
    }
    Ok(out)
}

/// What a read fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadKind {
    /// The key's current value.
    Key,
    /// The receipt of the transaction that wrote it, with its inclusion proof (verified).
    Proof,
}

/// One client: reads a random preloaded key (of any channel) at a time from one node, signed
/// as its identity.
pub struct ReadWorker {
    conn: Conn,
    kind: ReadKind,
    id: Arc<Identity>,
    /// The certificate in hex, as the read header carries it (encoded once, not per read).
    cert_hex: String,
    data: Arc<Preloaded>,
    rng: rand::rngs::StdRng,
}

impl ReadWorker {
    pub fn new(addr: Target, kind: ReadKind, id: Arc<Identity>, data: Arc<Preloaded>) -> Self {
        use rand::SeedableRng;
        ReadWorker {
            conn: Conn::new(addr),
            kind,
            cert_hex: hex::encode(&id.cert_der),
            id,
            data,
            rng: rand::rngs::StdRng::from_entropy(),
        }
    }

    pub fn path(kind: ReadKind, w: &Written) -> String {
        match kind {
            ReadKind::Key => format!(
                "/v1/channels/{}/state?key={}",
                w.channel,
                percent_encode(&w.key)
            ),
            ReadKind::Proof => format!(
                "/v1/channels/{}/transactions/{}",
                w.channel,
                w.tx_id.to_hex()
            ),
        }
    }
}

impl Worker for ReadWorker {
    async fn op(&mut self) -> Result<()> {
        let data = self.data.clone();
        let w = &data.keys[self.rng.gen_range(0..data.keys.len())];
        let path = Self::path(self.kind, w);
        // The signature covers the method, the path with its query, the time and a fresh
        // nonce (the node serves each signed read once).
        let (_, auth) = read_auth::sign(&self.id, "GET", &path, tally_protocol::now_ms());
        let r = self
            .conn
            .get_with(
                &path,
                &[
                    (read_auth::CERT_HEADER, &self.cert_hex),
                    (read_auth::AUTH_HEADER, &auth),
                ],
            )
            .await?;
        if r.status != 200 {
            bail!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body));
        }
        match self.kind {
            ReadKind::Key => {
                let kv: KeyValue = serde_json::from_slice(&r.body).context("key read answer")?;
                if kv.key != w.key || kv.value != data.values[w.value] {
                    bail!("key {} read back another value", w.key);
                }
            }
            ReadKind::Proof => {
                let p: ProvenReceipt = serde_json::from_slice(&r.body).context("proof answer")?;
                if p.receipt.tx_id != w.tx_id || !p.receipt.status.is_committed() {
                    bail!("transaction {} has no committed receipt", w.tx_id);
                }
                verify_receipt(&p).context("inclusion proof")?;
            }
        }
        Ok(())
    }
}

/// Reads of `kind` by every client from its node (client `i` on node `i mod n`, with the
/// identity of that node's organization), over the preloaded keys of every channel.
pub async fn run(
    p: &TallyParams,
    running: &Running,
    data: &Arc<Preloaded>,
    kind: ReadKind,
) -> Result<SystemReport> {
    let workers = (0..p.clients)
        .map(|i| {
            let node = i % running.addrs.len();
            ReadWorker::new(
                running.addrs[node].clone(),
                kind,
                running.ids[node % running.ids.len()].clone(),
                data.clone(),
            )
        })
        .collect();
    let label = match kind {
        ReadKind::Key => "tally key reads",
        ReadKind::Proof => "tally proof fetches",
    };
    let params = LoadParams {
        label: label.into(),
        warmup: p.warmup,
        measure: p.measure,
        server_pids: running.cluster.pids.clone(),
    };
    let r = load::run(params, workers).await;
    if !r.gone_pids.is_empty() {
        bail!("tally nodes exited during the reads: {:?}", r.gone_pids);
    }
    Ok(SystemReport::from_load(&r, p.nodes, p.fsync))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_paths_encode_the_key_and_name_the_transaction() {
        let w = Written {
            channel: "bench".into(),
            key: "bench/ab/r0/1".into(),
            tx_id: Hash([7; 32]),
            value: 0,
        };
        assert_eq!(
            ReadWorker::path(ReadKind::Key, &w),
            "/v1/channels/bench/state?key=bench%2Fab%2Fr0%2F1"
        );
        assert_eq!(
            ReadWorker::path(ReadKind::Proof, &w),
            format!("/v1/channels/bench/transactions/{}", "07".repeat(32))
        );
    }
}
