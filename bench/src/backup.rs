//! Backup and restore: how fast a running node backs a channel up (MiB of ledger per second),
//! what a backup costs the writers (their p99 while backups run, next to the same load
//! without), how little an incremental backup stores, and how fast `tally-node restore`
//! verifies and installs one. The channel is filled with `--backup-mb` MiB of 16 KiB values
//! first; the writers then put `--value-size` values as in the write workload. Backups go to a
//! `file://` repository (the local disk: the node's reading, chunking, compressing and
//! hashing, not a network, is what is measured).

use crate::load::{self, LoadParams};
use crate::report::SystemReport;
use crate::tally::{self, TallyParams};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tally_client::admin::BackupStatus;
use tally_client::AdminClient;

const FILL_VALUE: usize = 16 * 1024;
const FILL_CLIENTS: usize = 32;
const MIB: f64 = 1024.0 * 1024.0;

pub struct BackupParams {
    pub tally: TallyParams,
    pub mb: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct OneBackup {
    pub seconds: f64,
    pub raw_mib: f64,
    pub stored_mib: f64,
    pub chunks: u64,
    pub chunks_reused: u64,
    pub height: u64,
    /// `raw_mib / seconds`.
    pub mib_per_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    pub nodes: usize,
    pub clients: usize,
    pub fsync: bool,
    pub fill_mib: f64,
    /// The first, full backup (with the writers running).
    pub full: OneBackup,
    /// Backups made back to back during the measured window, each into a new repository.
    pub during_window: Vec<OneBackup>,
    /// A second backup into the first one's repository.
    pub incremental: OneBackup,
    /// `tally-node restore` of the full backup into an empty data folder.
    pub restore_seconds: f64,
    pub restore_mib_per_s: f64,
    /// The writers without a backup, and while backups ran.
    pub writers_alone: SystemReport,
    pub writers_during_backups: SystemReport,
}

impl BackupReport {
    pub fn to_table(&self) -> String {
        let row = |label: &str, s: &SystemReport| {
            format!(
                "  {label:<20} {:>9.0} tx/s   p50 {:>7.1} ms   p99 {:>7.1} ms   server CPU {:.2} s/1k tx\n",
                s.ops_per_sec, s.p50_ms, s.p99_ms, s.cpu_s_per_1k
            )
        };
        let during: f64 = if self.during_window.is_empty() {
            0.0
        } else {
            self.during_window.iter().map(|b| b.mib_per_s).sum::<f64>()
                / self.during_window.len() as f64
        };
        format!(
            "backup: {} nodes{}, {:.0} MiB of values filled\n\
             full backup: {:.1} MiB of ledger in {:.2} s = {:.1} MiB/s, {:.1} MiB stored, {} chunks, height {}\n\
             incremental backup: {:.2} s, {} of {} chunks already stored, {:.2} MiB written\n\
             during the window: {} backups, {:.1} MiB/s on average\n\
             restore (verify and install): {:.2} s = {:.1} MiB/s of ledger\n\
             writers ({} clients):\n{}{}",
            self.nodes,
            if self.fsync { "" } else { " (no fsync)" },
            self.fill_mib,
            self.full.raw_mib,
            self.full.seconds,
            self.full.mib_per_s,
            self.full.stored_mib,
            self.full.chunks,
            self.full.height,
            self.incremental.seconds,
            self.incremental.chunks_reused,
            self.incremental.chunks,
            self.incremental.stored_mib,
            self.during_window.len(),
            during,
            self.restore_seconds,
            self.restore_mib_per_s,
            self.clients,
            row("alone", &self.writers_alone),
            row("while backups run", &self.writers_during_backups),
        )
    }
}

/// One backup of `channel` by the node behind `admin`, into `url`, followed to its end.
async fn backup(admin: &AdminClient, channel: &str, url: &str) -> Result<OneBackup> {
    let started = Instant::now();
    let run = admin
        .start_backup(channel, url, &BTreeMap::new())
        .await
        .context("starting a backup")?;
    let done: BackupStatus = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match admin.backup(channel, &run.id).await? {
            Some(r) if r.phase == "Succeeded" => break r,
            Some(r) if r.phase == "Failed" => {
                bail!("backup failed: {}", r.error.unwrap_or_default())
            }
            Some(_) => {}
            None => bail!("the node forgot backup {}", run.id),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let raw_mib = done.bytes_raw as f64 / MIB;
    Ok(OneBackup {
        seconds,
        raw_mib,
        stored_mib: done.bytes_stored as f64 / MIB,
        chunks: done.chunks,
        chunks_reused: done.chunks_reused,
        height: done.height,
        mib_per_s: raw_mib / seconds.max(1e-9),
    })
}

fn repo(dir: &Path, name: &str) -> Result<String> {
    let p = dir.join(name);
    std::fs::create_dir_all(&p)?;
    Ok(format!("file://{}", p.display()))
}

async fn restore(node_bin: &Path, url: &str, channel: &str, into: &Path) -> Result<f64> {
    let started = Instant::now();
    let out = tokio::process::Command::new(node_bin)
        .args(["restore", "--from", url, "--channel", channel, "--data-dir"])
        .arg(into)
        .output()
        .await
        .context("running tally-node restore")?;
    if !out.status.success() {
        bail!(
            "tally-node restore failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(started.elapsed().as_secs_f64())
}

pub async fn run(p: &BackupParams) -> Result<BackupReport> {
    let tp = &p.tally;
    if p.mb == 0 {
        bail!("--backup-mb must be positive");
    }
    let running = tally::start(tp, "backup").await?;
    match measure(p, &running).await {
        Ok(r) => {
            running.cluster.stop().await;
            Ok(r)
        }
        Err(e) => Err(running.fail(format!("{e:#}")).await),
    }
}

async fn measure(p: &BackupParams, running: &tally::Running) -> Result<BackupReport> {
    let tp = &p.tally;
    let channel = running.cluster.channels[0].clone();
    let work = tempfile::Builder::new()
        .prefix("tally-bench-backup-")
        .tempdir()?;

    let keys = (p.mb * 1024 * 1024).div_ceil(FILL_VALUE);
    let fill_tp = TallyParams {
        clients: FILL_CLIENTS,
        value_size: FILL_VALUE,
        ..tp.clone()
    };
    eprintln!("[backup] filling {channel} with {keys} values of {FILL_VALUE} bytes");
    load::run_each(
        running.writers(&fill_tp, "fill"),
        keys.div_ceil(FILL_CLIENTS),
    )
    .await
    .context("filling the channel")?;

    // The last node backs up (node 0 takes the first client of every round).
    let node = running.addrs.len() - 1;
    let admin = running.cluster.admin(node)?;

    let params = |label: &str| LoadParams {
        label: label.into(),
        warmup: tp.warmup,
        measure: tp.measure,
        server_pids: running.cluster.pids.clone(),
    };
    eprintln!("[backup] writers alone");
    let alone = load::run(params("writers alone"), running.writers(tp, "alone")).await;

    eprintln!("[backup] writers while backups run back to back");
    let window = tp.warmup + tp.measure;
    let backups = async {
        let mut done = Vec::new();
        let t = Instant::now();
        let mut i = 0;
        while t.elapsed() < window {
            let url = repo(work.path(), &format!("window{i}"))?;
            done.push(backup(&admin, &channel, &url).await?);
            i += 1;
        }
        Ok::<_, anyhow::Error>(done)
    };
    let (during, made) = tokio::join!(
        load::run(
            params("writers during backups"),
            running.writers(tp, "during")
        ),
        backups
    );
    let made = made?;
    let Some(full) = made.first().cloned() else {
        bail!("no backup finished during the window");
    };
    let window_backups: Vec<OneBackup> = made
        .into_iter()
        .filter(|b| b.seconds <= window.as_secs_f64())
        .collect();

    eprintln!("[backup] incremental backup into the first repository");
    let first = repo(work.path(), "window0")?;
    let incremental = backup(&admin, &channel, &first).await?;

    eprintln!("[backup] restoring the first backup");
    let into: PathBuf = work.path().join("restored");
    let restore_seconds = restore(&tp.node_bin, &first, &channel, &into).await?;

    Ok(BackupReport {
        nodes: tp.nodes,
        clients: tp.clients,
        fsync: tp.fsync,
        fill_mib: (keys * FILL_VALUE) as f64 / MIB,
        restore_mib_per_s: incremental.raw_mib / restore_seconds.max(1e-9),
        full,
        during_window: window_backups,
        incremental,
        restore_seconds,
        writers_alone: SystemReport::from_load(&alone, tp.nodes, tp.fsync),
        writers_during_backups: SystemReport::from_load(&during, tp.nodes, tp.fsync),
    })
}
