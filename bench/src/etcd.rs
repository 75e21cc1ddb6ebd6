//! The etcd baseline: a 3-member etcd cluster (Debian's etcd-server 3.4) on loopback with its
//! default fsync, driven through its v3 JSON gateway (`POST /v3/kv/put`).

use crate::http::Conn;
use crate::load::Worker;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct EtcdCluster {
    pub client_addrs: Vec<SocketAddr>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Kills the child if this process dies (spawned from the main thread, which lives as long as
/// the process).
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

impl EtcdCluster {
    pub fn start(bin: &Path, members: usize) -> Result<EtcdCluster> {
        let dir = tempfile::Builder::new()
            .prefix("tally-bench-etcd-")
            .tempdir()?;
        let mut ports = Vec::new();
        for _ in 0..members {
            ports.push((free_port()?, free_port()?));
        }
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            client_addrs: ports
                .iter()
                .map(|(c, _)| SocketAddr::from(([127, 0, 0, 1], *c)))
                .collect(),
            children: Vec::new(),
            dir,
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let data = cluster.dir.path().join(format!("m{i}"));
            let log = std::fs::File::create(cluster.dir.path().join(format!("m{i}.log")))?;
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let mut cmd = Command::new(bin);
            cmd.arg("--name")
                .arg(format!("m{i}"))
                .arg("--data-dir")
                .arg(&data)
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
                .arg("zap")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            die_with_parent(&mut cmd);
            let child = cmd
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            cluster.children.push(child);
        }
        Ok(cluster)
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|c| c.id()).collect()
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("m{i}.log"))
    }

    fn check_alive(&mut self) -> Result<()> {
        for i in 0..self.children.len() {
            if let Some(st) = self.children[i].try_wait()? {
                let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                bail!("etcd member m{i} exited ({st}); log tail:\n{tail}");
            }
        }
        Ok(())
    }

    /// Waits until every member answers `/health` with `"health":"true"` and a test put succeeds.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let addrs = self.client_addrs.clone();
        for addr in addrs {
            let mut conn = Conn::new(addr);
            loop {
                self.check_alive()?;
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
        let mut w = EtcdWorker::new(self.client_addrs[0], "bench-probe/".into(), 8);
        w.op().await.context("probe put")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}

pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(T[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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
    pub fn new(addr: SocketAddr, prefix: String, value_size: usize) -> EtcdWorker {
        let value = crate::value_bytes(value_size, &prefix);
        EtcdWorker {
            conn: Conn::new(addr),
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
        let body = Bytes::from(self.put_body(&key));
        let r = self
            .conn
            .post("/v3/kv/put", "application/json", body)
            .await?;
        if r.status != 200 {
            bail!(
                "etcd put: HTTP {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        // A successful put answers {"header":{...}}; errors carry "error"/"code".
        let v: serde_json::Value = serde_json::from_slice(&r.body).context("etcd put response")?;
        if v.get("header").is_none() || v.get("error").is_some() {
            bail!("etcd put: {}", String::from_utf8_lossy(&r.body));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn put_body_is_gateway_json() {
        let w = EtcdWorker::new("127.0.0.1:1".parse().unwrap(), "k/".into(), 3);
        let v: serde_json::Value = serde_json::from_str(&w.put_body("k/1")).unwrap();
        assert_eq!(v["key"], "ay8x");
        assert_eq!(v["value"].as_str().unwrap().len(), 4);
    }
}
