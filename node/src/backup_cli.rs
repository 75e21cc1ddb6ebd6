//! `tally-node backup list|verify` and `tally-node restore`: offline work on a backup
//! repository, for operators and for `tallyctl` (which has no RocksDB and runs these). Storage
//! options come from the standard `AWS_*` environment variables. Exit status 1 on any failure,
//! with a message naming the problem.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use tally_node::backup::{self, repo, Repo};
use tally_protocol::ChannelConfig;

#[derive(Parser, Debug)]
#[command(
    name = "tally-node",
    about = "Backups of channel ledgers: list, verify, restore"
)]
pub struct Tool {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Backups in a repository.
    #[command(subcommand)]
    Backup(BackupCmd),
    /// Restores a channel from a backup into a stopped node's data directory, verified
    /// completely before anything is installed.
    Restore {
        /// The repository: file:///abs/dir or s3://bucket/prefix.
        #[arg(long)]
        from: String,
        /// The node's data directory (the node must not be running).
        #[arg(long)]
        data_dir: PathBuf,
        /// The channel to restore (the manifest must be of it).
        #[arg(long)]
        channel: String,
        /// The newest backup at or below this height (default: the newest).
        #[arg(long, conflicts_with = "manifest")]
        height: Option<u64>,
        /// Exactly this backup: its manifest's path in the repository
        /// (`manifests/<channel>/...json`, as `backup list` and a Backup's status show it).
        #[arg(long)]
        manifest: Option<String>,
        /// Do nothing when the data directory already holds a ledger of the channel (an init
        /// container restores a node only once, and never over its own ledger).
        #[arg(long)]
        if_missing: bool,
        /// The channel's genesis configuration (JSON) as the caller knows it: the backup must
        /// start from the same one.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Restore for investigation at the backup's point in time: the node serves the
        /// channel's reads as restored, takes no writes and never joins the channel's Raft.
        #[arg(long)]
        read_only: bool,
        #[arg(short = 'o', long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
}

#[derive(Subcommand, Debug)]
enum BackupCmd {
    /// Lists the backups of a repository.
    List {
        url: String,
        #[arg(long)]
        channel: Option<String>,
        #[arg(short = 'o', long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
    /// Verifies a backup completely: chunk hashes, the block hash chain from genesis, the
    /// recomputed state commitment, and the manifest's claims.
    Verify {
        url: String,
        #[arg(long)]
        channel: Option<String>,
        /// The newest backup at or below this height (default: the newest).
        #[arg(long)]
        height: Option<u64>,
        #[arg(short = 'o', long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
}

/// Whether the command line asks for one of these subcommands.
pub fn wanted() -> bool {
    matches!(
        std::env::args().nth(1).as_deref(),
        Some("backup") | Some("restore")
    )
}

fn open(url: &str) -> Result<Repo> {
    Ok(Repo::open(url, &repo::options_from_env())?)
}

fn chunk_progress(what: &'static str) -> impl FnMut(u64, u64) {
    move |i, n| {
        eprint!("\r{what}: chunk {i}/{n}");
        if i == n {
            eprintln!();
        }
        let _ = std::io::stderr().flush();
    }
}

pub fn run() -> Result<()> {
    let tool = Tool::parse();
    match tool.cmd {
        Cmd::Backup(BackupCmd::List {
            url,
            channel,
            output,
        }) => {
            let repo = open(&url)?;
            let all = backup::list(&repo, channel.as_deref())?;
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                println!("no backups in {url}");
            } else {
                println!(
                    "{:<20} {:>10} {:>12}  MANIFEST",
                    "CHANNEL", "HEIGHT", "CREATED"
                );
                for b in &all {
                    println!(
                        "{:<20} {:>10} {:>12}  {}",
                        b.channel, b.height, b.created_unix, b.manifest
                    );
                }
            }
        }
        Cmd::Backup(BackupCmd::Verify {
            url,
            channel,
            height,
            output,
        }) => {
            let repo = open(&url)?;
            let m = backup::pick(&repo, channel.as_deref(), height)?;
            let checked = backup::verify(&repo, &m, &mut chunk_progress("verifying"))
                .with_context(|| format!("backup {} does not verify", m.path()))?;
            let out = serde_json::json!({
                "ok": true,
                "channel": m.channel,
                "height": checked.height,
                "last_block_hash": m.last_block_hash,
                "state_root": m.state_root,
                "manifest": m.path(),
                "records": checked.records,
                "bytes_raw": checked.bytes_raw,
                "bytes_stored": checked.bytes_stored,
                "chunks": m.chunks.len(),
            });
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "OK: backup {} of channel {} at height {} verifies ({} chunks, {} records, {} bytes raw, {} stored): every chunk hash, the block hash chain from genesis, the state commitment {}",
                    m.path(), m.channel, checked.height, m.chunks.len(), checked.records, checked.bytes_raw, checked.bytes_stored, m.state_root
                );
            }
        }
        Cmd::Restore {
            from,
            data_dir,
            channel,
            height,
            manifest,
            if_missing,
            genesis,
            read_only,
            output,
        } => {
            if if_missing && backup::has_ledger(&data_dir, &channel)? {
                if output == "json" {
                    println!(
                        "{}",
                        serde_json::json!({"channel": channel, "restored": false})
                    );
                } else {
                    println!(
                        "channel {channel} already has a ledger in {}: nothing restored",
                        data_dir.display()
                    );
                }
                return Ok(());
            }
            let expected: Option<ChannelConfig> = match &genesis {
                Some(p) => Some(
                    serde_json::from_str(
                        &std::fs::read_to_string(p)
                            .with_context(|| format!("cannot read {}", p.display()))?,
                    )
                    .with_context(|| format!("{} is not a channel configuration", p.display()))?,
                ),
                None => None,
            };
            let repo = open(&from)?;
            let m = match &manifest {
                Some(path) => backup::read_manifest(&repo, path, &channel)?,
                None => backup::pick(&repo, Some(&channel), height)?,
            };
            let r = backup::restore(
                &data_dir,
                &repo,
                &m,
                expected.as_ref(),
                read_only,
                &mut chunk_progress("verifying"),
            )
            .with_context(|| {
                format!(
                    "restore of channel {channel} into {} refused; nothing was installed",
                    data_dir.display()
                )
            })?;
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let then = if read_only {
                    "read-only at this point in time: the node serves its reads and never joins the channel's Raft"
                } else {
                    "the node withholds its vote until it has caught up"
                };
                println!(
                    "restored channel {} at height {} (last block {}) into {} from {}; {then}",
                    r.channel,
                    r.height,
                    r.last_block_hash,
                    data_dir.display(),
                    r.manifest
                );
            }
        }
    }
    Ok(())
}
