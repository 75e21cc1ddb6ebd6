//! Node processes: spawning them so they never outlive their owner, signals, loopback blocks,
//! the data folder and log tails.

use super::*;

/// The process of one node, as far as the launcher knows.
#[derive(Default)]
pub(super) struct NodeProc {
    pub(super) child: Option<Child>,
    pub(super) pid: Option<u32>,
    /// Set by kill/stop/wipe before the process goes away, cleared by the next spawn.
    pub(super) expected_down: bool,
    /// Exits the launcher did not cause, oldest first.
    pub(super) unexpected_exits: Vec<ExitStatus>,
}

impl NodeProc {
    /// Reaps the child if it has exited; records the exit when nobody asked for it.
    pub(super) fn poll(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                if !self.expected_down {
                    self.unexpected_exits.push(status);
                }
                self.child = None;
                self.pid = None;
            }
        }
    }

    pub(super) fn running(&mut self) -> bool {
        self.poll();
        self.child.is_some()
    }
}

/// Chooses a loopback block of its own for a cluster of `n` nodes and returns its prefix
/// `127.A.B`: node `i` (from 1) gets `127.A.B.i`, with the standard ports. Clusters started side
/// by side (tests in parallel) then never race for ports, and ports below the ephemeral range
/// are never taken by outgoing connections meanwhile.
pub fn pick_loopback_prefix(n: usize) -> Result<String, ClientError> {
    if n == 0 || n > 254 {
        return Err(other(format!(
            "a local cluster has 1 to 254 nodes, not {n}"
        )));
    }
    for _ in 0..64 {
        let a: u8 = rand::random::<u8>().max(1);
        let b: u8 = rand::random();
        let prefix = format!("127.{a}.{b}");
        let free = (1..=n).all(|i| {
            let h = format!("{prefix}.{i}");
            [API_PORT, PEER_PORT, ADMIN_PORT]
                .iter()
                .all(|p| std::net::TcpListener::bind((h.as_str(), *p)).is_ok())
        });
        if free {
            return Ok(prefix);
        }
    }
    Err(other("no free loopback address block for a local cluster"))
}

/// Sends a signal to a process. Declared here rather than through the libc crate: std links
/// the C library on every Unix already, and this is the only call the launcher needs.
#[cfg(unix)]
pub(super) fn send_signal(pid: u32, signal: i32) -> std::io::Result<()> {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { kill(pid as i32, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(unix)]
pub(super) const SIGTERM: i32 = 15;

/// Asks the kernel to SIGKILL the child when the thread that spawned it dies, so that nodes
/// (and `tallyctl up`'s console) do not outlive a test binary or tallyctl that was itself
/// killed.
#[cfg(target_os = "linux")]
pub fn die_with_parent(cmd: &mut Command) {
    extern "C" {
        fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    }
    const PR_SET_PDEATHSIG: i32 = 1;
    const SIGKILL: u64 = 9;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_cmd: &mut Command) {}

/// Checks the node executable and makes `dir` ready for a new cluster: created if missing,
/// refused if it holds one already.
pub(super) fn claim_dir(dir: &Path, node_bin: &Path) -> Result<PathBuf, ClientError> {
    check_bin(node_bin)?;
    std::fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
    if dir.join(CLUSTER_FILE).exists() {
        return Err(other(format!(
            "{} already holds a cluster; use LocalCluster::open to run it again",
            dir.display()
        )));
    }
    Ok(dir.to_path_buf())
}

/// The last `lines` lines of a text file, or a note why there are none.
pub(super) fn tail_of(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}

pub(super) fn check_bin(bin: &Path) -> Result<(), ClientError> {
    if bin.is_file() {
        Ok(())
    } else {
        Err(other(format!(
            "tally-node executable not found at {} (build it with `cargo build -p tally-node`)",
            bin.display()
        )))
    }
}
