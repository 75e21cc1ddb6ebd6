//! The blockchain-engine baseline: CometBFT validators (v1.0.x, from `scripts/cometbft-bin.sh`)
//! on loopback with the built-in `kvstore` application, driven through their JSON-RPC with
//! `broadcast_tx_commit`.
//!
//! The validators come from `cometbft testnet` (keys, one genesis with every validator at equal
//! power, persistent peers); each gets an address of its own in one loopback block, since the
//! testnet gives every validator the same P2P port. Consensus timeouts, storage and the
//! indexer keep CometBFT's defaults; the only setting raised is the number of RPC event
//! subscribers (a capacity, not a timeout), because each `broadcast_tx_commit` in flight is
//! one. A timeout_commit other than the default is only used when asked for, and labelled.

use crate::base64::base64;
use crate::http::Conn;
use crate::load::{self, LoadParams, Worker};
use crate::report::SystemReport;
use crate::servers::{loopback_hosts, Servers};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const P2P_PORT: u16 = 26656;
const RPC_PORT: u16 = 26657;

pub struct CometParams {
    pub bin: PathBuf,
    pub validators: usize,
    pub clients: usize,
    pub value_size: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub run_id: String,
    /// `consensus.timeout_commit`; `None` keeps CometBFT's default (1 s).
    pub timeout_commit: Option<Duration>,
}

pub struct CometCluster {
    pub rpc_addrs: Vec<SocketAddr>,
    // Field order matters: the validators are killed before their folder is removed.
    servers: Servers,
    _dir: tempfile::TempDir,
}

/// Replaces the value of `key = ...` in the `[section]` of a config.toml written by
/// `cometbft testnet`, and fails if the key is not there: a renamed setting must not be
/// silently left at its default.
pub fn set_toml(text: &str, section: &str, key: &str, value: &str) -> Result<String> {
    let mut current = String::new();
    let mut done = false;
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            current = t[1..t.len() - 1].to_string();
        }
        let is_key = t
            .split_once('=')
            .is_some_and(|(k, _)| k.trim() == key && current == section);
        if is_key && !done {
            out.push_str(&format!("{key} = {value}"));
            done = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !done {
        bail!("config.toml has no `{key}` in [{section}]");
    }
    Ok(out)
}

/// A TOML duration as CometBFT writes them (`"1s"`, `"250ms"`).
fn toml_duration(d: Duration) -> String {
    format!("\"{}ms\"", d.as_millis())
}

impl CometCluster {
    pub fn start(p: &CometParams) -> Result<CometCluster> {
        let dir = tempfile::Builder::new()
            .prefix("tally-bench-cometbft-")
            .tempdir()?;
        let hosts = loopback_hosts(p.validators, &[P2P_PORT, RPC_PORT])?;
        let out = Command::new(&p.bin)
            .arg("testnet")
            .arg("--v")
            .arg(p.validators.to_string())
            .arg("--n")
            .arg("0")
            .arg("--o")
            .arg(dir.path())
            .arg("--starting-ip-address")
            .arg(&hosts[0])
            .arg("--p2p-port")
            .arg(P2P_PORT.to_string())
            .output()
            .with_context(|| format!("running {} testnet", p.bin.display()))?;
        if !out.status.success() {
            bail!(
                "cometbft testnet failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut servers = Servers::default();
        for (i, host) in hosts.iter().enumerate() {
            let home = dir.path().join(format!("node{i}"));
            let cfg_path = home.join("config").join("config.toml");
            let mut cfg = std::fs::read_to_string(&cfg_path)
                .with_context(|| format!("reading {}", cfg_path.display()))?;
            // One subscriber per broadcast_tx_commit in flight on this validator.
            let subscribers = p.clients.div_ceil(p.validators).max(100);
            cfg = set_toml(
                &cfg,
                "rpc",
                "max_subscription_clients",
                &subscribers.to_string(),
            )?;
            if let Some(t) = p.timeout_commit {
                cfg = set_toml(&cfg, "consensus", "timeout_commit", &toml_duration(t))?;
            }
            std::fs::write(&cfg_path, cfg)?;
            let mut cmd = Command::new(&p.bin);
            cmd.arg("start")
                .arg("--home")
                .arg(&home)
                .arg("--proxy_app")
                .arg("kvstore")
                .arg("--p2p.laddr")
                .arg(format!("tcp://{host}:{P2P_PORT}"))
                .arg("--rpc.laddr")
                .arg(format!("tcp://{host}:{RPC_PORT}"))
                // Its default (info) logs every block and vote; etcd runs at warn likewise.
                .arg("--log_level")
                .arg("error");
            servers.spawn(
                &format!("cometbft validator {i}"),
                cmd,
                dir.path().join(format!("node{i}.log")),
            )?;
        }
        let rpc_addrs = hosts
            .iter()
            .map(|h| {
                format!("{h}:{RPC_PORT}")
                    .parse()
                    .context("validator address")
            })
            .collect::<Result<Vec<SocketAddr>>>()?;
        Ok(CometCluster {
            rpc_addrs,
            servers,
            _dir: dir,
        })
    }

    pub fn pids(&self) -> Vec<u32> {
        self.servers.pids()
    }

    /// Waits until every validator has committed a block and is not catching up, then commits
    /// one probe transaction.
    pub async fn wait_ready(&mut self, timeout: Duration, value_size: usize) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for addr in self.rpc_addrs.clone() {
            let mut conn = Conn::new(addr);
            loop {
                self.servers.check_alive()?;
                if let Ok(r) = conn.get("/status").await {
                    if r.status == 200 && synced(&r.body) {
                        break;
                    }
                }
                if Instant::now() > deadline {
                    bail!("cometbft validator {addr} has no block after {timeout:?}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let mut w = CometWorker::new(self.rpc_addrs[0], "bench-probe/".into(), value_size);
        w.op().await.context("probe transaction")
    }
}

/// `/status` says the node has a block and is not catching up.
fn synced(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Status {
        result: StatusResult,
    }
    #[derive(Deserialize)]
    struct StatusResult {
        sync_info: SyncInfo,
    }
    #[derive(Deserialize)]
    struct SyncInfo {
        latest_block_height: String,
        catching_up: bool,
    }
    serde_json::from_slice::<Status>(body).is_ok_and(|s| {
        !s.result.sync_info.catching_up
            && s.result
                .sync_info
                .latest_block_height
                .parse::<u64>()
                .is_ok_and(|h| h >= 1)
    })
}

/// Value bytes for the kvstore: it takes `key=value` with exactly one `=` and no `:`, and puts
/// the value into an indexed event, so the value is random printable text (6 bits of entropy
/// per byte) from an alphabet without either character.
pub fn kv_value(size: usize, seed: &str) -> Vec<u8> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    crate::value_bytes(size, seed)
        .into_iter()
        .map(|b| A[(b & 63) as usize])
        .collect()
}

/// One client: a unique `key=value` transaction at a time, over one keep-alive connection to
/// one validator, acknowledged when it is committed in a block on that validator.
pub struct CometWorker {
    conn: Conn,
    prefix: String,
    seq: u64,
    value: Vec<u8>,
}

impl CometWorker {
    pub fn new(addr: SocketAddr, prefix: String, value_size: usize) -> CometWorker {
        CometWorker {
            conn: Conn::new(addr),
            value: kv_value(value_size, &prefix),
            prefix,
            seq: 0,
        }
    }

    /// The JSON-RPC request for transaction `seq` (its key is unique per run, client and seq,
    /// so the mempool's duplicate cache never refuses it).
    pub fn request(&self, seq: u64) -> String {
        let mut tx = format!("{}{}=", self.prefix, seq).into_bytes();
        tx.extend_from_slice(&self.value);
        format!(
            r#"{{"jsonrpc":"2.0","id":{seq},"method":"broadcast_tx_commit","params":{{"tx":"{}"}}}}"#,
            base64(&tx)
        )
    }
}

/// Checks a `broadcast_tx_commit` answer: CheckTx and the block's execution both succeeded and
/// the transaction is in a block.
pub fn check_commit(body: &[u8]) -> Result<u64> {
    #[derive(Deserialize)]
    struct Answer {
        result: Option<Commit>,
        error: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Commit {
        check_tx: Code,
        tx_result: Code,
        height: String,
    }
    #[derive(Deserialize)]
    struct Code {
        // proto3 JSON leaves zero values out
        #[serde(default)]
        code: u32,
        #[serde(default)]
        log: String,
    }
    let a: Answer = serde_json::from_slice(body)
        .with_context(|| format!("answer: {}", String::from_utf8_lossy(body)))?;
    if let Some(e) = a.error {
        bail!("broadcast_tx_commit: {e}");
    }
    let Some(c) = a.result else {
        bail!("broadcast_tx_commit: no result");
    };
    if c.check_tx.code != 0 {
        bail!("CheckTx code {}: {}", c.check_tx.code, c.check_tx.log);
    }
    if c.tx_result.code != 0 {
        bail!("execution code {}: {}", c.tx_result.code, c.tx_result.log);
    }
    match c.height.parse::<u64>() {
        Ok(h) if h > 0 => Ok(h),
        _ => bail!("not in a block (height {:?})", c.height),
    }
}

impl Worker for CometWorker {
    async fn op(&mut self) -> Result<()> {
        self.seq += 1;
        let body = Bytes::from(self.request(self.seq));
        let r = self.conn.post("/", "application/json", body).await?;
        // JSON-RPC errors may come with a 500; the body says what happened either way.
        check_commit(&r.body).with_context(|| format!("HTTP {}", r.status))?;
        Ok(())
    }
}

/// Starts the validators, runs the closed loop, and stops them.
pub async fn run(p: &CometParams) -> Result<SystemReport> {
    eprintln!(
        "[cometbft] starting {} validators from {}",
        p.validators,
        p.bin.display()
    );
    let mut cluster = CometCluster::start(p)?;
    cluster
        .wait_ready(Duration::from_secs(60), p.value_size)
        .await?;
    eprintln!(
        "[cometbft] committing; {} clients over {} validators",
        p.clients, p.validators
    );
    let workers = (0..p.clients)
        .map(|i| {
            let addr = cluster.rpc_addrs[i % cluster.rpc_addrs.len()];
            CometWorker::new(addr, format!("bench/{}/{i}/", p.run_id), p.value_size)
        })
        .collect();
    let label = match p.timeout_commit {
        None => "cometbft".to_string(),
        Some(t) => format!("cometbft timeout_commit={}ms", t.as_millis()),
    };
    let params = LoadParams {
        label,
        warmup: p.warmup,
        measure: p.measure,
        server_pids: cluster.pids(),
    };
    let r = load::run(params, workers).await;
    let pids = cluster.pids();
    drop(cluster);
    crate::procstat::wait_gone(&pids, Duration::from_secs(10)).await;
    if !r.gone_pids.is_empty() {
        bail!(
            "cometbft validators exited during the run: {:?}",
            r.gone_pids
        );
    }
    Ok(SystemReport::from_load(&r, p.validators, true))
}

/// The folder `scripts/cometbft-bin.sh` prints on its last line, as a path to the binary.
pub fn bin_from_script(script: &Path) -> Result<PathBuf> {
    let out = Command::new(script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let folder = stdout
        .lines()
        .last()
        .context("the script printed no folder")?;
    Ok(Path::new(folder.trim()).join("cometbft"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "# comment\nproxy_app = \"tcp://127.0.0.1:26658\"\n\n[rpc]\nladdr = \"tcp://127.0.0.1:26657\"\nmax_subscription_clients = 100\n\n[consensus]\ntimeout_commit = \"1s\"\n";

    #[test]
    fn toml_settings_are_replaced_in_their_section_only() {
        let c = set_toml(CONFIG, "rpc", "max_subscription_clients", "300").unwrap();
        assert!(c.contains("max_subscription_clients = 300\n"));
        let c = set_toml(
            &c,
            "consensus",
            "timeout_commit",
            &toml_duration(Duration::ZERO),
        )
        .unwrap();
        assert!(c.contains("timeout_commit = \"0ms\"\n"));
        assert!(c.contains("laddr = \"tcp://127.0.0.1:26657\""));
        assert!(set_toml(CONFIG, "consensus", "laddr", "x").is_err());
        assert!(set_toml(CONFIG, "rpc", "no_such_key", "x").is_err());
    }

    #[test]
    fn transactions_are_unique_kvstore_pairs() {
        let w = CometWorker::new("127.0.0.1:1".parse().unwrap(), "bench/r/7/".into(), 256);
        let tx_of = |seq| {
            let v: serde_json::Value = serde_json::from_str(&w.request(seq)).unwrap();
            assert_eq!(v["method"], "broadcast_tx_commit");
            v["params"]["tx"].as_str().unwrap().to_string()
        };
        assert_ne!(tx_of(1), tx_of(2));
        let value = kv_value(256, "bench/r/7/");
        assert_eq!(value.len(), 256);
        assert!(!value.contains(&b'=') && !value.contains(&b':'));
        assert!(value.iter().all(u8::is_ascii_graphic));
    }

    #[test]
    fn commit_answers_are_checked() {
        let ok = br#"{"jsonrpc":"2.0","id":1,"result":{"check_tx":{"code":0,"gas_wanted":"1"},"tx_result":{"events":[]},"hash":"AB","height":"12"}}"#;
        assert_eq!(check_commit(ok).unwrap(), 12);
        let bad = br#"{"jsonrpc":"2.0","id":1,"result":{"check_tx":{"code":1,"log":"invalid"},"tx_result":{},"hash":"AB","height":"0"}}"#;
        assert!(format!("{:#}", check_commit(bad).unwrap_err()).contains("CheckTx code 1"));
        let err = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"Internal error","data":"timed out waiting for tx to be included in a block"}}"#;
        assert!(format!("{:#}", check_commit(err).unwrap_err()).contains("timed out"));
        assert!(check_commit(b"not json").is_err());
    }

    #[test]
    fn status_needs_a_block_and_no_catch_up() {
        let s = |h: &str, c: bool| {
            format!(
                r#"{{"result":{{"sync_info":{{"latest_block_height":"{h}","catching_up":{c}}}}}}}"#
            )
        };
        assert!(synced(s("3", false).as_bytes()));
        assert!(!synced(s("0", false).as_bytes()));
        assert!(!synced(s("3", true).as_bytes()));
        assert!(!synced(b"{}"));
    }
}
