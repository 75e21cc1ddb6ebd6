//! Server processes the bench starts itself (etcd members, CometBFT validators): each logs to
//! a file of its own, dies with the bench (parent-death signal) and is killed on drop, so that
//! no baseline outlives its phase or competes with the next system for the CPU.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// A loopback block of its own, `127.A.B.1` to `127.A.B.n`, where every one of `ports` is free
/// on every address: servers that must share fixed ports (CometBFT's testnet gives every
/// validator the same P2P port) then each get an address, and never race a cluster started
/// next to them.
pub fn loopback_hosts(n: usize, ports: &[u16]) -> Result<Vec<String>> {
    if n == 0 || n > 254 {
        bail!("1 to 254 servers on one loopback block, not {n}");
    }
    for _ in 0..64 {
        let (a, b) = (rand::random::<u8>().max(1), rand::random::<u8>());
        let hosts: Vec<String> = (1..=n).map(|i| format!("127.{a}.{b}.{i}")).collect();
        let free = hosts.iter().all(|h| {
            ports
                .iter()
                .all(|p| std::net::TcpListener::bind((h.as_str(), *p)).is_ok())
        });
        if free {
            return Ok(hosts);
        }
    }
    bail!("no free loopback address block for {n} servers")
}

/// Kills the child if this process dies (spawned from the main thread, which lives as long as
/// the process).
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

struct Server {
    name: String,
    child: Child,
    log: PathBuf,
}

/// A set of running servers of one system.
#[derive(Default)]
pub struct Servers {
    running: Vec<Server>,
}

impl Servers {
    /// Starts `cmd` with its output in `log` (created or truncated).
    pub fn spawn(&mut self, name: &str, mut cmd: Command, log: PathBuf) -> Result<()> {
        let file = std::fs::File::create(&log)
            .with_context(|| format!("creating the log {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        self.running.push(Server {
            name: name.to_string(),
            child,
            log,
        });
        Ok(())
    }

    pub fn pids(&self) -> Vec<u32> {
        self.running.iter().map(|s| s.child.id()).collect()
    }

    /// An error naming the first server that exited, with the end of its log.
    pub fn check_alive(&mut self) -> Result<()> {
        for s in &mut self.running {
            if let Some(st) = s.child.try_wait()? {
                bail!(
                    "{} exited ({st}); log tail ({}):\n{}",
                    s.name,
                    s.log.display(),
                    log_tail(&s.log, 15)
                );
            }
        }
        Ok(())
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for s in &mut self.running {
            let _ = s.child.kill();
        }
        for s in &mut self.running {
            let _ = s.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_one_block() {
        let hosts = loopback_hosts(3, &[free_port().unwrap()]).unwrap();
        assert_eq!(hosts.len(), 3);
        let prefix = hosts[0].rsplit_once('.').unwrap().0;
        for (i, h) in hosts.iter().enumerate() {
            assert_eq!(*h, format!("{prefix}.{}", i + 1));
        }
        assert!(loopback_hosts(0, &[]).is_err());
    }

    #[test]
    fn a_server_that_exits_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut servers = Servers::default();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo about to fail; exit 3"]);
        servers
            .spawn("probe", cmd, dir.path().join("probe.log"))
            .unwrap();
        let pids = servers.pids();
        assert_eq!(pids.len(), 1);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match servers.check_alive() {
                Err(e) => {
                    let msg = format!("{e:#}");
                    assert!(msg.contains("probe exited") && msg.contains("about to fail"));
                    break;
                }
                Ok(()) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Ok(()) => panic!("the probe did not exit"),
            }
        }
    }
}
