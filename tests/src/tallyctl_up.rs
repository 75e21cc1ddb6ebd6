//! `tallyctl up` run in the foreground by a test, as a developer runs it: started, waited for
//! until it prints `Ready.`, stopped with Ctrl-C (SIGINT).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{node_bin, tallyctl_bin};

/// How long `up` may take to print `Ready.`.
pub const READY_DEADLINE: Duration = Duration::from_secs(180);

/// A running `tallyctl up` in the foreground.
pub struct Up {
    child: Child,
    stderr: PathBuf,
}

impl Up {
    /// Starts `up` and waits until it prints `Ready.`.
    pub fn start(args: &[String], stderr: PathBuf) -> Up {
        Up::spawn(args, stderr).ready()
    }

    /// Starts `up`; [`Starting::ready`] waits for it.
    pub fn spawn(args: &[String], stderr: PathBuf) -> Starting {
        Up::spawn_with_env(args, stderr, &[])
    }

    /// [`Up::spawn`] with more environment for `up` and the nodes it starts (e.g.
    /// `TALLY_HOSTS_FILE`, for nodes that dial another side's nodes by name).
    pub fn spawn_with_env(args: &[String], stderr: PathBuf, env: &[(&str, &str)]) -> Starting {
        let err = std::fs::File::create(&stderr).expect("stderr file");
        let mut child = Command::new(tallyctl_bin())
            .args(args)
            .env("TALLY_NODE_BIN", node_bin())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("start tallyctl up");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        Starting {
            up: Up { child, stderr },
            rx,
            args: args.join(" "),
        }
    }
}

/// An `up` started and not yet ready.
pub struct Starting {
    up: Up,
    rx: mpsc::Receiver<String>,
    args: String,
}

impl Starting {
    pub fn ready(self) -> Up {
        let Starting { mut up, rx, args } = self;
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l.starts_with("Ready.") => break,
                Ok(_) => {}
                Err(e) => {
                    let _ = up.child.kill();
                    let _ = up.child.wait();
                    panic!(
                        "`tallyctl {args}` did not become ready ({e}):\n{}",
                        std::fs::read_to_string(&up.stderr).unwrap_or_default()
                    );
                }
            }
        }
        // Keep draining stdout so that `up` never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        up
    }
}

impl Up {
    /// SIGINT, then the exit status (0 for a clean stop).
    pub fn stop(mut self) -> Option<i32> {
        // SAFETY: a plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "up did not stop:\n{}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
