//! `tallyctl --data-dir DIR restore --from URL --channel CH [--height H] --observer NAME`:
//! a channel as it was at an earlier height, for investigation, on a new node made for it.
//!
//! The node gets an identity issued by a member organization's local CA under a name the
//! channel does not list, restores the backup read-only (verified, as every restore is) into a
//! data directory of its own under `DIR/observers/NAME`, and runs in the foreground until
//! Ctrl-C. It takes no writes and nothing of it reaches the live channel, so it may run while
//! the consortium does. Running the command again starts the same node on what it restored.

use super::Ctx;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tally_client::{ApiTrust, Client};
use tally_protocol::{ChannelConfig, OrgCa, Role};

/// How long the node may take to open its ledger and listen.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// What the observer is: where it came from and where it answers.
#[derive(serde::Serialize)]
struct Observing<'a> {
    observer: &'a str,
    organization: &'a str,
    channel: &'a str,
    height: u64,
    api_url: &'a str,
    data_dir: String,
}

pub struct Wanted<'a> {
    pub name: &'a str,
    pub org: Option<&'a str>,
    pub from: &'a str,
    pub channel: Option<&'a str>,
    pub height: Option<u64>,
    pub node_bin: &'a Path,
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The organization whose CA issues the observer: the one asked for, else the first member
/// of the channel whose CA key the data directory holds.
fn issuer(dir: &Path, genesis: &ChannelConfig, asked: Option<&str>) -> Result<(String, OrgCa)> {
    let org_dir = |o: &str| dir.join("orgs").join(o);
    if let Some(o) = asked {
        if genesis.member(o).is_none() {
            bail!(
                "organization {o} is not a member of channel {}; its members: {}",
                genesis.name,
                genesis
                    .members
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let ca = OrgCa::load(&org_dir(o))
            .with_context(|| format!("the CA of organization {o} in {}", dir.display()))?;
        return Ok((o.to_string(), ca));
    }
    genesis
        .members
        .iter()
        .find_map(|m| {
            OrgCa::load(&org_dir(&m.name))
                .ok()
                .map(|ca| (m.name.clone(), ca))
        })
        .ok_or_else(|| {
            anyhow!(
                "no CA of a member of channel {} in {}",
                genesis.name,
                dir.display()
            )
        })
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Restores, starts and serves the observer until Ctrl-C or SIGTERM.
pub async fn run(ctx: &Ctx, dir: &Path, w: Wanted<'_>) -> Result<()> {
    if !dns_label(w.name) {
        bail!(
            "--observer {:?}: a node name is a DNS label (lower-case letters, digits and '-')",
            w.name
        );
    }
    let channel = w
        .channel
        .ok_or_else(|| anyhow!("--observer needs --channel: the channel to look at"))?;
    let (nodes, channels) = crate::local::stored_layout(dir)?;
    if nodes.iter().any(|n| n.name == w.name) {
        bail!(
            "--observer {}: the consortium has a node of that name; an observer for investigation is a new node",
            w.name
        );
    }
    let genesis = channels.iter().find(|c| c.name == channel).ok_or_else(|| {
        anyhow!(
            "channel {channel} is not a channel of the consortium in {}",
            dir.display()
        )
    })?;
    let (org, ca) = issuer(dir, genesis, w.org)?;
    let home = dir.join("observers").join(w.name);
    let id_dir = home.join("id");
    if !id_dir.join("cert.pem").exists() {
        let id = ca.issue(
            Role::Node,
            w.name,
            &["127.0.0.1".to_string(), "localhost".to_string()],
        )?;
        id.save(&id_dir, &ca.cert_pem())?;
    }
    let data = home.join("data");
    let gfile = home.join("genesis.json");
    std::fs::write(&gfile, serde_json::to_vec(genesis)?)?;
    let mut args: Vec<String> = vec![
        "restore".into(),
        "--from".into(),
        w.from.into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--channel".into(),
        channel.into(),
        "--genesis".into(),
        gfile.display().to_string(),
        "--read-only".into(),
        "--if-missing".into(),
    ];
    if let Some(h) = w.height {
        args.extend(["--height".into(), h.to_string()]);
    }
    eprintln!(
        "==> restoring channel {channel} read-only into observer {} of {org}",
        w.name
    );
    // Its report goes to stderr: stdout is for what the observer is (JSON with --output json).
    let restored = std::process::Command::new(w.node_bin)
        .args(&args)
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("cannot run {}", w.node_bin.display()))?;
    if !restored.success() {
        bail!(
            "restoring channel {channel} into observer {} failed ({restored})",
            w.name
        );
    }

    let api = format!("127.0.0.1:{}", free_port()?);
    let log_path = home.join("node.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut cmd = tokio::process::Command::new(w.node_bin);
    cmd.args(["--name", w.name, "--data-dir"])
        .arg(&data)
        .args(["--listen-api", &api])
        .args(["--listen-peer", &format!("127.0.0.1:{}", free_port()?)])
        .args(["--listen-admin", &format!("127.0.0.1:{}", free_port()?)])
        .arg("--cert")
        .arg(id_dir.join("cert.pem"))
        .arg("--key")
        .arg(id_dir.join("key.pem"))
        .arg("--org-ca")
        .arg(dir.join("orgs").join(&org).join("ca.pem"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    crate::local::die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", w.node_bin.display()))?;
    let url = format!("https://{api}");
    let trust = ApiTrust::from_ca_pems(&[ca.cert_pem().as_str()])?;
    let client = Client::new(&url, &trust)?;
    let height = wait_ready(&client, &mut child, channel, &log_path).await?;
    let shown = Observing {
        observer: w.name,
        organization: &org,
        channel,
        height,
        api_url: &url,
        data_dir: home.display().to_string(),
    };
    ctx.show(&shown, || {
        eprintln!(
            "observer {} ({org}) serves channel {channel} as it was at height {height}, read-only, at {url}\n\
             read from it:  tallyctl --data-dir {} --org {org} --node {url} tx get --channel {channel} KEY\n\
             Ctrl-C stops it; its data stays in {} (delete it when done)",
            w.name,
            dir.display(),
            home.display()
        );
    })?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        r = child.wait() => {
            let status = r?;
            bail!("observer {} stopped ({status}); its log: {}", w.name, log_path.display());
        }
    }
    // Read-only: nothing to flush, so it need not be asked twice.
    child.kill().await?;
    eprintln!("observer {} stopped", w.name);
    Ok(())
}

/// Waits until the observer answers ready; its restored height.
async fn wait_ready(
    client: &Client,
    child: &mut tokio::process::Child,
    channel: &str,
    log: &PathBuf,
) -> Result<u64> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Ok(true) = client.ready().await {
            return Ok(client.status(channel).await?.height);
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(20).collect();
            bail!(
                "the observer node exited ({status}) while starting; last log lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the observer node did not become ready within {READY_WITHIN:?}; its log: {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::dns_label;

    #[test]
    fn observer_names_are_dns_labels() {
        assert!(dns_label("audit-1"));
        for bad in ["", "Audit", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!dns_label(bad), "{bad:?}");
        }
    }
}
