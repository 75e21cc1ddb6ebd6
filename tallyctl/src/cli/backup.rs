//! `tallyctl backup create|list|verify` and `tallyctl restore`: backups of a channel's ledger
//! to object storage, and their restore into a local consortium.
//!
//! tallyctl has no RocksDB: `backup create` asks a running node of the channel to make the
//! backup (its admin API, with the local admin identity of the node's organization), and
//! `list`, `verify` and `restore` run the `tally-node` executable's offline subcommands. Storage
//! options come from the standard `AWS_*` environment variables, as for tally-node.

use super::progress::Spinner;
use super::Ctx;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tally_client::{AdminClient, BackupStatus, Profile};

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Back a channel up from one of its running nodes (of --data-dir), without pausing it.
    Create {
        #[arg(long)]
        channel: String,
        /// The repository: file:///abs/dir or s3://bucket/prefix.
        #[arg(long)]
        to: String,
        /// The node to back up from (default: the first of the channel that answers).
        #[arg(long = "from-node")]
        from_node: Option<String>,
    },
    /// List the backups in a repository.
    List {
        url: String,
        #[arg(long)]
        channel: Option<String>,
        /// The tally-node executable (default: next to tallyctl).
        #[arg(long, env = "TALLY_NODE_BIN")]
        node_bin: Option<PathBuf>,
    },
    /// Verify a backup completely (the newest, or the newest at or below --height).
    Verify {
        url: String,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        height: Option<u64>,
        #[arg(long, env = "TALLY_NODE_BIN")]
        node_bin: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The repository to restore from.
    #[arg(long)]
    from: String,
    /// The channel (default: every channel of the consortium that has a backup there).
    #[arg(long)]
    channel: Option<String>,
    /// The newest backup at or below this height (default: the newest).
    #[arg(long)]
    height: Option<u64>,
    /// Restore read-only, at the backup's point in time, into a new node of this name made
    /// for investigation, and run it until Ctrl-C (the consortium may run meanwhile).
    #[arg(long, value_name = "NAME", requires = "channel")]
    observer: Option<String>,
    /// The member organization whose CA issues the observer (default: the channel's first).
    #[arg(long, value_name = "ORG", requires = "observer")]
    observer_org: Option<String>,
    #[arg(long, env = "TALLY_NODE_BIN")]
    node_bin: Option<PathBuf>,
}

fn node_bin(given: &Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().context("locating tallyctl")?;
    Ok(me.with_file_name("tally-node"))
}

/// The `AWS_*` variables forwarded to the node as S3 options (object_store's keys, lower
/// case). Others (e.g. `AWS_CA_BUNDLE`, `AWS_PROFILE`) are the AWS CLI's, not options, and the
/// node would refuse them.
const S3_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ALLOW_HTTP",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "AWS_SKIP_SIGNATURE",
    "AWS_UNSIGNED_PAYLOAD",
    "AWS_IMDSV1_FALLBACK",
    "AWS_S3_EXPRESS",
    "AWS_REQUEST_PAYER",
    "AWS_CHECKSUM_ALGORITHM",
];

/// Storage options for `url` from the `AWS_*` environment (none for a file URL).
fn env_options(url: &str) -> BTreeMap<String, String> {
    if !url.starts_with("s3://") {
        return BTreeMap::new();
    }
    S3_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_ascii_lowercase(), v)))
        .collect()
}

/// Runs `tally-node ARGS`, its output passed through; fails with its exit status.
fn tally_node(bin: &Path, args: &[String]) -> Result<()> {
    let status = std::process::Command::new(bin)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !status.success() {
        return Err(anyhow::Error::new(super::Exit(
            status.code().unwrap_or(1).clamp(1, 255) as u8,
            String::new(),
        )));
    }
    Ok(())
}

pub async fn run(ctx: &Ctx, cmd: BackupCmd) -> Result<()> {
    let json = if ctx.json() { "json" } else { "text" };
    match cmd {
        BackupCmd::Create {
            channel,
            to,
            from_node,
        } => create(ctx, &channel, &to, from_node.as_deref()).await,
        BackupCmd::List {
            url,
            channel,
            node_bin: bin,
        } => {
            let mut args = vec![
                "backup".into(),
                "list".into(),
                url,
                "-o".into(),
                json.into(),
            ];
            if let Some(c) = channel {
                args.extend(["--channel".into(), c]);
            }
            tally_node(&node_bin(&bin)?, &args)
        }
        BackupCmd::Verify {
            url,
            channel,
            height,
            node_bin: bin,
        } => {
            let mut args = vec![
                "backup".into(),
                "verify".into(),
                url,
                "-o".into(),
                json.into(),
            ];
            if let Some(c) = channel {
                args.extend(["--channel".into(), c]);
            }
            if let Some(h) = height {
                args.extend(["--height".into(), h.to_string()]);
            }
            tally_node(&node_bin(&bin)?, &args)
        }
    }
}

/// The admin client of a profile node, as its organization's local admin.
fn admin_of(dir: &Path, profile: &Profile, node: &str) -> Result<AdminClient> {
    let n = profile
        .nodes
        .iter()
        .find(|n| n.name == node)
        .ok_or_else(|| anyhow!("node {node} is not in the profile"))?;
    if n.admin_addr.is_empty() {
        bail!("the profile gives no admin address for node {node}");
    }
    let org = profile.org(&n.org)?;
    let ca_pem = std::fs::read_to_string(dir.join(&org.ca))
        .with_context(|| format!("reading the CA of organization {}", n.org))?;
    let admin = profile.identity(dir, &n.org, tally_planner::ADMIN_NAME)?;
    Ok(AdminClient::new(&n.admin_addr, &ca_pem, &admin)?.with_timeout(Duration::from_secs(30)))
}

async fn create(ctx: &Ctx, channel: &str, to: &str, from_node: Option<&str>) -> Result<()> {
    let dir = ctx.data_dir.clone().ok_or_else(|| {
        anyhow!("backup create needs --data-dir DIR, a consortium started by `tallyctl up`")
    })?;
    let profile = Profile::load(&dir)?;
    let candidates: Vec<String> = match from_node {
        Some(n) => vec![n.to_string()],
        None => profile
            .nodes
            .iter()
            .filter(|n| n.channels.iter().any(|c| c == channel))
            .map(|n| n.name.clone())
            .collect(),
    };
    if candidates.is_empty() {
        bail!("no node of the profile serves channel {channel}");
    }
    let options = env_options(to);
    let mut failures = Vec::new();
    let mut started: Option<(AdminClient, String, BackupStatus)> = None;
    for name in &candidates {
        let admin = admin_of(&dir, &profile, name)?;
        match admin.start_backup(channel, to, &options).await {
            Ok(s) => {
                started = Some((admin, name.clone(), s));
                break;
            }
            Err(e) if e.is_transport() => failures.push(format!("{name}: {e}")),
            Err(e) => bail!("{name}: {e}"),
        }
    }
    let Some((admin, node, mut status)) = started else {
        bail!(
            "no node of channel {channel} answered: {}",
            failures.join("; ")
        );
    };
    let spinner = Spinner::start(format!("backing up channel {channel} from {node}"));
    while status.phase == "Running" {
        tokio::time::sleep(Duration::from_millis(300)).await;
        status = admin.backup(channel, &status.id).await?.ok_or_else(|| {
            anyhow!(
                "node {node} no longer knows backup {} (it restarted?); run backup create again",
                status.id
            )
        })?;
        spinner.set(format!(
            "backing up channel {channel} from {node}: height {}, {} chunks ({} already stored), {} bytes",
            status.height, status.chunks, status.chunks_reused, status.bytes_stored
        ));
    }
    drop(spinner);
    let failed = status.phase != "Succeeded";
    ctx.show(&status, || {
        if failed {
            return;
        }
        println!(
            "backup of channel {channel} at height {} from node {node}: {} chunks ({} new, {} already stored), {} bytes raw, {} stored; manifest {} in {to}",
            status.height,
            status.chunks,
            status.chunks - status.chunks_reused,
            status.chunks_reused,
            status.bytes_raw,
            status.bytes_stored,
            status.manifest.as_deref().unwrap_or("?")
        );
    })?;
    if failed {
        bail!(
            "backup of channel {channel} failed on {node}: {}",
            status.error.as_deref().unwrap_or("no reason given")
        );
    }
    Ok(())
}

/// `tallyctl restore`: puts channels back on every node of a stopped local consortium that
/// holds them, from one backup each, verified on every node before anything is installed.
pub async fn restore(ctx: &Ctx, args: RestoreArgs) -> Result<()> {
    let dir = ctx.data_dir.clone().ok_or_else(|| {
        anyhow!("restore needs --data-dir DIR, a consortium started by `tallyctl up`")
    })?;
    if let Some(name) = &args.observer {
        let bin = node_bin(&args.node_bin)?;
        let wanted = super::observe::Wanted {
            name,
            org: args.observer_org.as_deref(),
            from: &args.from,
            channel: args.channel.as_deref(),
            height: args.height,
            node_bin: &bin,
        };
        return super::observe::run(ctx, &dir, wanted).await;
    }
    let (nodes, channels) = crate::local::stored_layout(&dir)?;
    if let Ok(profile) = Profile::load(&dir) {
        // Nodes without an admin address run elsewhere (the other side of a consortium).
        for n in profile.nodes.iter().filter(|n| !n.admin_addr.is_empty()) {
            if super::down::answers(&n.api_url) {
                bail!(
                    "the consortium in {} is running ({} answers at {}); stop `tallyctl up` first: a node's ledger is restored while it is stopped",
                    dir.display(),
                    n.name,
                    n.api_url
                );
            }
        }
    }
    let bin = node_bin(&args.node_bin)?;
    // Which channels have backups there.
    let out = std::process::Command::new(&bin)
        .args(["backup", "list", &args.from, "-o", "json"])
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    let backed_up = |ch: &str| {
        listed
            .iter()
            .filter(|b| b["channel"] == ch)
            .filter_map(|b| b["height"].as_u64())
            .filter(|h| args.height.is_none_or(|max| *h <= max))
            .max()
    };
    let wanted: Vec<_> = channels
        .iter()
        .filter(|c| args.channel.as_ref().is_none_or(|w| &c.name == w))
        .collect();
    if let Some(w) = &args.channel {
        if wanted.is_empty() {
            bail!(
                "channel {w} is not a channel of the consortium in {}",
                dir.display()
            );
        }
    }
    let mut restored = Vec::new();
    for genesis in wanted {
        let Some(height) = backed_up(&genesis.name) else {
            if args.channel.is_some() {
                bail!("no backup of channel {} in {}", genesis.name, args.from);
            }
            continue;
        };
        let gfile = dir.join(format!(".restore-genesis-{}.json", genesis.name));
        std::fs::write(&gfile, serde_json::to_vec(genesis)?)?;
        for n in nodes.iter().filter(|n| genesis.node(&n.name).is_some()) {
            // The node's --data-dir as the local cluster lays it out (`LocalCluster::data_dir`).
            let data = dir.join("nodes").join(&n.name).join("data");
            eprintln!(
                "==> restoring channel {} at height {height} on node {}",
                genesis.name, n.name
            );
            let args = vec![
                "restore".to_string(),
                "--from".into(),
                args.from.clone(),
                "--data-dir".into(),
                data.display().to_string(),
                "--channel".into(),
                genesis.name.clone(),
                "--height".into(),
                height.to_string(),
                "--genesis".into(),
                gfile.display().to_string(),
            ];
            let r = tally_node(&bin, &args);
            if let Err(e) = r {
                let _ = std::fs::remove_file(&gfile);
                return Err(e.context(format!(
                    "restore of channel {} on node {} failed",
                    genesis.name, n.name
                )));
            }
            restored.push(
                serde_json::json!({"channel": genesis.name, "node": n.name, "height": height}),
            );
        }
        let _ = std::fs::remove_file(&gfile);
    }
    if restored.is_empty() {
        bail!(
            "no backup in {} is of a channel of this consortium",
            args.from
        );
    }
    ctx.show(&restored, || {
        eprintln!(
            "restored; `tallyctl up` with the same files and --data-dir {} resumes the consortium",
            dir.display()
        );
    })
}
