//! The web console that `tallyctl up` serves next to the nodes: `tally-console` (found next to
//! tallyctl, like `tally-node`) reading as one organization of the data directory, on a
//! loopback address (it has no login there, and refuses any other address without one).

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tally_client::Profile;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where the console listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7080";
/// How long the console may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// What `up` was asked about the console.
pub struct ConsoleWish<'a> {
    pub org: Option<&'a str>,
    pub addr: Option<SocketAddr>,
    pub bin: Option<&'a Path>,
}

/// A running `tally-console`, killed when dropped (it is read-only: nothing to flush).
pub struct RunningConsole {
    _child: Child,
    pub org: String,
    pub url: String,
}

fn console_bin(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let me = std::env::current_exe().context("locating tallyctl")?;
    Ok(me.with_file_name("tally-console"))
}

/// Starts the console for `wish.org` (default: the consortium's first organization whose
/// identities this side holds; an external one has none here).
pub async fn start(
    dir: &Path,
    profile: &Profile,
    wish: &ConsoleWish<'_>,
) -> Result<RunningConsole> {
    let org = match wish.org {
        Some(o) => profile.org(o)?.name.clone(),
        None => match profile
            .organizations
            .iter()
            .find(|o| !o.identities.is_empty())
        {
            Some(o) => o.name.clone(),
            None => bail!("the profile lists no organization whose identities it holds"),
        },
    };
    let bin = console_bin(wish.bin)?;
    if !bin.is_file() {
        bail!(
            "{} was not found (build it with `cargo build -p tally-console`, or give --console-bin)",
            bin.display()
        );
    }
    match wish.addr {
        Some(a) => spawn(dir, profile, &bin, &org, &a.to_string())
            .await
            .context("--console-addr must be a free loopback address"),
        // The default port may be taken (another consortium's console): then any free one.
        None => match spawn(dir, profile, &bin, &org, DEFAULT_ADDR).await {
            Ok(c) => Ok(c),
            Err(_) => spawn(dir, profile, &bin, &org, "127.0.0.1:0").await,
        },
    }
}

async fn spawn(
    dir: &Path,
    profile: &Profile,
    bin: &Path,
    org: &str,
    addr: &str,
) -> Result<RunningConsole> {
    let log_path = dir.join("console.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = Command::new(bin);
    cmd.arg("--data-dir")
        .arg(dir)
        .args([
            "--org",
            org,
            "--listen",
            addr,
            "--title",
            &profile.consortium,
        ])
        .env_remove("TALLY_NODE")
        .env_remove("TALLY_IDENTITY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        // Like the nodes: its own process group, so that Ctrl-C reaches tallyctl alone.
        .process_group(0);
    crate::local::die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let out = child.stdout.take().context("the console's stdout")?;
    let mut line = String::new();
    let said = tokio::time::timeout(START_TIMEOUT, BufReader::new(out).read_line(&mut line)).await;
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http"))
        .map(str::to_string);
    match (said, url) {
        (Ok(Ok(_)), Some(url)) => Ok(RunningConsole {
            _child: child,
            org: org.to_string(),
            url,
        }),
        _ => bail!(
            "the console did not start on {addr} (its log: {})",
            log_path.display()
        ),
    }
}
