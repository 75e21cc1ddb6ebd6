//! The etcd baseline: a 3-member etcd cluster (Debian's etcd-server 3.4) on loopback with its
//! default fsync, driven through its v3 JSON gateway (`POST /v3/kv/put`). TLS on the client
//! and peer ports by default, as Tally's nodes always run (`etcd_tls.rs`).

use crate::base64::base64;
use crate::etcd_tls::EtcdTls;
use crate::http::{Conn, Target};
use crate::load;
use crate::load::Worker;
use crate::report::SystemReport;
use crate::servers::{free_port, Servers};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct EtcdCluster {
    /// The members' client ports, with TLS unless the cluster runs plain.
    pub clients: Vec<Target>,
    // Field order matters: the members are killed before their folder is removed.
    servers: Servers,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    pub fn start(bin: &Path, members: usize, tls: bool) -> Result<EtcdCluster> {
        let dir = tempfile::Builder::new()
            .prefix("tally-bench-etcd-")
            .tempdir()?;
        let tls = tls.then(|| EtcdTls::create(dir.path())).transpose()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut ports = Vec::new();
        for _ in 0..members {
            ports.push((free_port()?, free_port()?));
        }
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}={scheme}://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = Servers::default();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let client_url = format!("{scheme}://127.0.0.1:{client}");
            let peer_url = format!("{scheme}://127.0.0.1:{peer}");
            let mut cmd = Command::new(bin);
            cmd.arg("--name")
                .arg(format!("m{i}"))
                .arg("--data-dir")
                .arg(dir.path().join(format!("m{i}")))
                .arg("--listen-client-urls")
                .arg(&client_url)
                .arg("--advertise-client-urls")
                .arg(&client_url)
                .arg("--listen-peer-urls")
                .arg(&peer_url)
                .arg("--initial-advertise-peer-urls")
                .arg(&peer_url)
                .arg("--initial-cluster")
                .arg(&initial_cluster)
                .arg("--initial-cluster-state")
                .arg("new")
                .arg("--initial-cluster-token")
                .arg("tally-bench")
                // no metrics listener on other ports, quiet logs
                .arg("--log-level")
                .arg("warn")
                .arg("--logger")
                .arg("zap");
            if let Some(t) = &tls {
                cmd.arg("--cert-file")
                    .arg(&t.cert)
                    .arg("--key-file")
                    .arg(&t.key)
                    .arg("--peer-cert-file")
                    .arg(&t.cert)
                    .arg("--peer-key-file")
                    .arg(&t.key)
                    .arg("--peer-trusted-ca-file")
                    .arg(&t.ca)
                    .arg("--peer-client-cert-auth");
            }
            servers.spawn(
                &format!("etcd member m{i}"),
                cmd,
                dir.path().join(format!("m{i}.log")),
            )?;
        }
        Ok(EtcdCluster {
            clients: ports
                .iter()
                .map(|(c, _)| {
                    let addr = SocketAddr::from(([127, 0, 0, 1], *c));
                    match &tls {
                        Some(t) => Target::tls(addr, t.client.clone()),
                        None => Target::from(addr),
                    }
                })
                .collect(),
            servers,
            _dir: dir,
        })
    }

    pub fn pids(&self) -> Vec<u32> {
        self.servers.pids()
    }

    /// Waits until every member answers `/health` with `"health":"true"` and a test put succeeds.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for target in self.clients.clone() {
            let addr = target.addr;
            let mut conn = Conn::new(target);
            loop {
                self.servers.check_alive()?;
                if let Ok(r) = conn.get("/health").await {
                    let body = String::from_utf8_lossy(&r.body).replace(' ', "");
                    if r.status == 200 && body.contains("\"health\":\"true\"") {
                        break;
                    }
                }
                if Instant::now() > deadline {
                    bail!("etcd member {addr} not healthy after {timeout:?}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let mut w = EtcdWorker::new(self.clients[0].clone(), "bench-probe/".into(), 8);
        w.op().await.context("probe put")
    }
}

/// POSTs a JSON body to the gateway and returns the body of a 200 answer.
async fn post_json(conn: &mut Conn, path: &str, body: String) -> Result<Bytes> {
    let r = conn
        .post(path, "application/json", Bytes::from(body))
        .await?;
    if r.status != 200 {
        bail!(
            "etcd {path}: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    Ok(r.body)
}

/// One client: puts of unique keys `prefix + seq` with a fixed value, over one keep-alive
/// connection to one member (followers forward to the leader, as Tally's do).
pub struct EtcdWorker {
    conn: Conn,
    prefix: String,
    seq: u64,
    value_b64: String,
}

impl EtcdWorker {
    pub fn new(target: Target, prefix: String, value_size: usize) -> EtcdWorker {
        let value = crate::value_bytes(value_size, &prefix);
        EtcdWorker {
            conn: Conn::new(target),
            prefix,
            seq: 0,
            value_b64: base64(&value),
        }
    }

    pub fn put_body(&self, key: &str) -> String {
        format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            base64(key.as_bytes()),
            self.value_b64
        )
    }
}

impl Worker for EtcdWorker {
    async fn op(&mut self) -> Result<()> {
        self.seq += 1;
        let key = format!("{}{}", self.prefix, self.seq);
        let put = self.put_body(&key);
        let body = post_json(&mut self.conn, "/v3/kv/put", put).await?;
        // A successful put answers {"header":{...}}; errors carry "error"/"code".
        let v: serde_json::Value = serde_json::from_slice(&body).context("etcd put response")?;
        if v.get("header").is_none() || v.get("error").is_some() {
            bail!("etcd put: {}", String::from_utf8_lossy(&body));
        }
        Ok(())
    }
}

/// Keys written by the read workload's preload, with what a read must find.
pub struct EtcdKeys {
    /// (key in base64, index into `values_b64`).
    keys: Vec<(String, usize)>,
    values_b64: Vec<String>,
}

/// One client: linearizable range reads (`POST /v3/kv/range`, etcd's default
/// `serializable: false`, so every read confirms leadership through a ReadIndex round) of a
/// random preloaded key at a time.
pub struct EtcdRangeWorker {
    conn: Conn,
    data: Arc<EtcdKeys>,
    rng: rand::rngs::StdRng,
}

impl EtcdRangeWorker {
    pub fn new(target: Target, data: Arc<EtcdKeys>) -> EtcdRangeWorker {
        use rand::SeedableRng;
        EtcdRangeWorker {
            conn: Conn::new(target),
            data,
            rng: rand::rngs::StdRng::from_entropy(),
        }
    }
}

/// Checks a range answer: exactly the one key, with the expected value.
pub fn check_range(body: &[u8], value_b64: &str) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Range {
        #[serde(default)]
        kvs: Vec<Kv>,
    }
    #[derive(serde::Deserialize)]
    struct Kv {
        #[serde(default)]
        value: String,
    }
    let r: Range = serde_json::from_slice(body)
        .with_context(|| format!("etcd range: {}", String::from_utf8_lossy(body)))?;
    match r.kvs.as_slice() {
        [kv] if kv.value == value_b64 => Ok(()),
        [_] => bail!("etcd range: another value"),
        kvs => bail!("etcd range: {} keys instead of 1", kvs.len()),
    }
}

impl Worker for EtcdRangeWorker {
    async fn op(&mut self) -> Result<()> {
        use rand::Rng;
        let data = self.data.clone();
        let (key, value) = &data.keys[self.rng.gen_range(0..data.keys.len())];
        let body = post_json(
            &mut self.conn,
            "/v3/kv/range",
            format!(r#"{{"key":"{key}"}}"#),
        )
        .await?;
        check_range(&body, &data.values_b64[*value])
    }
}

pub struct EtcdParams {
    pub bin: PathBuf,
    pub members: usize,
    /// TLS on the client and peer ports (the default); false for etcd's plain HTTP.
    pub tls: bool,
    pub clients: usize,
    pub value_size: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub run_id: String,
    /// `Some(n)`: the read workload, after every client put `n` keys; `None`: the write load.
    pub reads_after: Option<usize>,
}

/// Writes `per_client` keys from every client and returns them for the readers.
async fn preload(cluster: &EtcdCluster, p: &EtcdParams, per_client: usize) -> Result<EtcdKeys> {
    let writers = (0..p.clients)
        .map(|i| {
            let target = cluster.clients[i % cluster.clients.len()].clone();
            EtcdWorker::new(target, format!("bench/{}/r{i}/", p.run_id), p.value_size)
        })
        .collect();
    let writers = load::run_each(writers, per_client)
        .await
        .context("preloading keys")?;
    let mut data = EtcdKeys {
        keys: Vec::new(),
        values_b64: Vec::new(),
    };
    for w in writers {
        let value = data.values_b64.len();
        data.values_b64.push(w.value_b64.clone());
        for seq in 1..=w.seq {
            data.keys
                .push((base64(format!("{}{seq}", w.prefix).as_bytes()), value));
        }
    }
    Ok(data)
}

/// Starts the members, runs the closed loop of puts (or, for the read workload, preloads keys
/// and runs range reads), and stops them.
pub async fn run(p: &EtcdParams) -> Result<SystemReport> {
    eprintln!(
        "[etcd] starting {} members from {}, {}",
        p.members,
        p.bin.display(),
        if p.tls {
            "TLS on client and peer ports"
        } else {
            "plain HTTP (--etcd-plain)"
        }
    );
    let mut cluster = EtcdCluster::start(&p.bin, p.members, p.tls)?;
    cluster.wait_healthy(Duration::from_secs(30)).await?;
    eprintln!(
        "[etcd] healthy; {} clients over {} members",
        p.clients, p.members
    );
    let target = |i: usize| cluster.clients[i % cluster.clients.len()].clone();
    let params = |label: &str| load::LoadParams {
        label: label.into(),
        warmup: p.warmup,
        measure: p.measure,
        server_pids: cluster.pids(),
    };
    let r = match p.reads_after {
        None => {
            let workers = (0..p.clients)
                .map(|i| {
                    EtcdWorker::new(target(i), format!("bench/{}/{i}/", p.run_id), p.value_size)
                })
                .collect();
            load::run(params("etcd"), workers).await
        }
        Some(per_client) => {
            let data = Arc::new(preload(&cluster, p, per_client).await?);
            eprintln!("[etcd] preloaded {} keys", data.keys.len());
            let workers = (0..p.clients)
                .map(|i| EtcdRangeWorker::new(target(i), data.clone()))
                .collect();
            load::run(params("etcd range reads"), workers).await
        }
    };
    let pids = cluster.pids();
    drop(cluster);
    crate::procstat::wait_gone(&pids, Duration::from_secs(10)).await;
    if !r.gone_pids.is_empty() {
        bail!("etcd members exited during the run: {:?}", r.gone_pids);
    }
    Ok(SystemReport::from_load(&r, p.members, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_answers_are_checked() {
        let one =
            br#"{"header":{},"kvs":[{"key":"YQ==","value":"dg==","version":"1"}],"count":"1"}"#;
        assert!(check_range(one, "dg==").is_ok());
        assert!(check_range(one, "eA==").is_err());
        assert!(check_range(br#"{"header":{}}"#, "dg==").is_err());
        assert!(check_range(b"oops", "dg==").is_err());
    }

    /// A real three-member etcd with TLS on both ports: it comes up (its members reach each
    /// other over mutual TLS), takes a put through the gateway over TLS, and its client port
    /// speaks nothing else.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_with_tls_takes_puts_over_tls_only() {
        let bin = Path::new("/usr/bin/etcd");
        assert!(
            bin.exists(),
            "needs Debian's etcd-server (scripts/setup.sh installs it)"
        );
        let mut cluster = EtcdCluster::start(bin, 3, true).unwrap();
        cluster.wait_healthy(Duration::from_secs(60)).await.unwrap();
        let mut w = EtcdWorker::new(cluster.clients[1].clone(), "tls-test/".into(), 16);
        w.op().await.unwrap();
        // Refused outright, or answered with an error page in plain text: never served.
        let mut plain = Conn::new(cluster.clients[0].addr);
        let answer = plain.get("/health").await;
        assert!(
            !matches!(&answer, Ok(r) if r.status == 200),
            "plain HTTP was served: {:?}",
            answer.map(|r| r.status)
        );
    }

    #[test]
    fn put_body_is_gateway_json() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let w = EtcdWorker::new(addr.into(), "k/".into(), 3);
        let v: serde_json::Value = serde_json::from_str(&w.put_body("k/1")).unwrap();
        assert_eq!(v["key"], "ay8x");
        assert_eq!(v["value"].as_str().unwrap().len(), 4);
    }
}
