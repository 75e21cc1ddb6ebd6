//! Backups a node runs for its admin API: at most one per channel at a time, each on a thread
//! of its own (the channel's thread and the async workers go on), with recent results kept in
//! memory for the caller to poll. A restart forgets them: the caller sees 404 and asks again.

use super::chunking::Cuts;
use super::make::{make, Progress};
use super::repo::{self, Options, Repo};
use super::BackupError;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tracing::{info, warn};

/// Finished backups remembered, over all channels.
const KEPT: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Phase {
    Running,
    Succeeded,
    Failed,
}

/// A backup as the admin API reports it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub id: String,
    pub channel: String,
    pub phase: Phase,
    pub url: String,
    /// The manifest's object path below the repository root, once written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    pub height: u64,
    pub bytes_raw: u64,
    pub bytes_stored: u64,
    pub chunks: u64,
    pub chunks_reused: u64,
    pub started_unix: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_unix: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("a backup of channel {channel} is already running on this node ({id})")]
    Running { channel: String, id: String },
    #[error(transparent)]
    Invalid(#[from] BackupError),
}

/// The node's backups, running and recent.
#[derive(Default)]
pub struct Jobs {
    all: Mutex<VecDeque<Arc<Mutex<Status>>>>,
}

fn now_unix() -> u64 {
    tally_protocol::identity::now_unix().max(0) as u64
}

impl Jobs {
    pub fn get(&self, channel: &str, id: &str) -> Option<Status> {
        self.all
            .lock()
            .iter()
            .map(|s| s.lock().clone())
            .find(|s| s.id == id && s.channel == channel)
    }

    /// Starts a backup of `ledger` to `url`; refused while one of the channel runs, or when
    /// the URL or options are not usable.
    pub fn start(
        &self,
        ledger: Arc<Ledger>,
        node: &str,
        url: &str,
        options: Options,
        metrics: Arc<Metrics>,
    ) -> Result<Status, StartError> {
        repo::check(url, &options)?;
        let mut all = self.all.lock();
        if let Some(r) = all
            .iter()
            .map(|s| s.lock().clone())
            .find(|s| s.channel == ledger.name && s.phase == Phase::Running)
        {
            return Err(StartError::Running {
                channel: r.channel,
                id: r.id,
            });
        }
        let started = now_unix();
        let id = format!(
            "{}-{started}-{:08x}",
            ledger.name,
            rand_suffix(&ledger.name, started)
        );
        let status = Arc::new(Mutex::new(Status {
            id: id.clone(),
            channel: ledger.name.clone(),
            phase: Phase::Running,
            url: url.to_string(),
            manifest: None,
            height: ledger.tip().height,
            bytes_raw: 0,
            bytes_stored: 0,
            chunks: 0,
            chunks_reused: 0,
            started_unix: started,
            finished_unix: None,
            error: None,
        }));
        all.push_back(status.clone());
        // Forget the oldest finished ones; running ones stay whatever their number.
        while all.len() > KEPT {
            match all.iter().position(|s| s.lock().phase != Phase::Running) {
                Some(i) => {
                    all.remove(i);
                }
                None => break,
            }
        }
        let first = status.lock().clone();
        drop(all);
        let node = node.to_string();
        let url = url.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("backup-{}", ledger.name))
            .spawn(move || run(ledger, node, url, options, status, metrics));
        if let Err(e) = spawned {
            return Err(BackupError::Store(format!("cannot start a backup thread: {e}")).into());
        }
        Ok(first)
    }
}

fn rand_suffix(channel: &str, t: u64) -> u32 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(channel.as_bytes());
    h.update(t.to_be_bytes());
    h.update(tally_protocol::now_ms().to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn run(
    ledger: Arc<Ledger>,
    node: String,
    url: String,
    options: Options,
    status: Arc<Mutex<Status>>,
    metrics: Arc<Metrics>,
) {
    let began = Instant::now();
    let ch = ledger.name.clone();
    info!(channel = %ch, url = %url, "backup started");
    // A panic must still end the backup, or the channel could never be backed up again here.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Repo::open(&url, &options).and_then(|repo| {
            let mut publish = |p: &Progress| {
                let mut s = status.lock();
                s.height = p.height;
                s.bytes_raw = p.bytes_raw;
                s.bytes_stored = p.bytes_stored;
                s.chunks = p.chunks;
                s.chunks_reused = p.chunks_reused;
            };
            make(&ledger, &node, &repo, Cuts::from_env(), &mut publish)
        })
    }))
    .unwrap_or_else(|_| Err(BackupError::Ledger("the backup panicked".into())));
    let took = began.elapsed().as_secs_f64();
    let mut s = status.lock();
    s.finished_unix = Some(now_unix());
    let labels = |result: &str| [ch.clone(), result.to_string()];
    metrics
        .backup_duration
        .with_label_values(&[ch.as_str()])
        .observe(took);
    match result {
        Ok(m) => {
            s.phase = Phase::Succeeded;
            s.manifest = Some(m.path());
            s.height = m.height;
            info!(channel = %ch, height = m.height, chunks = s.chunks, reused = s.chunks_reused, stored = s.bytes_stored, seconds = took, manifest = %m.path(), "backup succeeded");
            metrics
                .backup_bytes
                .with_label_values(&[ch.as_str()])
                .set(m.totals.stored as f64);
            metrics
                .backup_last_success
                .with_label_values(&[ch.as_str()])
                .set(now_unix() as f64);
            let l = labels("succeeded");
            metrics.backups.with_label_values(&[&l[0], &l[1]]).inc();
        }
        Err(e) => {
            warn!(channel = %ch, error = %e, "backup failed");
            s.phase = Phase::Failed;
            s.error = Some(e.to_string());
            let l = labels("failed");
            metrics.backups.with_label_values(&[&l[0], &l[1]]).inc();
        }
    }
}

/// Options from a request body's `options` object (string values only).
pub fn options_of(v: Option<&serde_json::Value>) -> Result<Options, BackupError> {
    let mut out = BTreeMap::new();
    let Some(v) = v else { return Ok(out) };
    if v.is_null() {
        return Ok(out);
    }
    let obj = v
        .as_object()
        .ok_or_else(|| BackupError::Url("options must be an object of strings".into()))?;
    for (k, v) in obj {
        let s = v
            .as_str()
            .ok_or_else(|| BackupError::Url(format!("option {k} is not a string")))?;
        out.insert(k.to_ascii_lowercase(), s.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(channel: &str) -> Arc<Mutex<Status>> {
        Arc::new(Mutex::new(Status {
            id: format!("{channel}-1"),
            channel: channel.into(),
            phase: Phase::Running,
            url: "file:///x".into(),
            manifest: None,
            height: 1,
            bytes_raw: 0,
            bytes_stored: 0,
            chunks: 0,
            chunks_reused: 0,
            started_unix: 1,
            finished_unix: None,
            error: None,
        }))
    }

    #[test]
    fn urls_and_options_are_checked_before_anything_runs() {
        let none = Options::new();
        assert!(repo::check("file:///tmp/backups", &none).is_ok());
        let s3 = Options::from([
            ("aws_endpoint".to_string(), "http://127.0.0.1:1".to_string()),
            ("aws_allow_http".to_string(), "true".to_string()),
            ("aws_region".to_string(), "us-east-1".to_string()),
        ]);
        assert!(repo::check("s3://bucket/prefix", &s3).is_ok());
        for (url, opts, says) in [
            ("ftp://host/x", none.clone(), "not supported"),
            ("not a url", none.clone(), "not a URL"),
            ("file://host/x", none.clone(), "absolute folder"),
            ("s3:///prefix", none.clone(), "names a bucket"),
            (
                "s3://bucket/prefix",
                Options::from([("aws_ca_bundle".to_string(), "x".to_string())]),
                "not an S3 storage option",
            ),
        ] {
            let e = repo::check(url, &opts).expect_err(url);
            assert!(e.to_string().contains(says), "{url}: {e}");
        }
        assert!(options_of(Some(&serde_json::json!({"aws_region": 1}))).is_err());
        assert!(options_of(Some(&serde_json::json!(["x"]))).is_err());
        assert_eq!(
            options_of(Some(&serde_json::json!({"AWS_REGION": "eu"}))).expect("options")
                ["aws_region"],
            "eu"
        );
    }

    /// One backup per channel at a time; another channel's may run beside it.
    #[test]
    fn a_second_backup_of_a_running_channel_is_refused() {
        let jobs = Jobs::default();
        jobs.all.lock().push_back(running("ch"));
        let dir = tempfile::tempdir().expect("dir");
        let db = Arc::new(rocksdb::DB::open_default(dir.path()).expect("db"));
        let ca = tally_protocol::OrgCa::generate("org1").expect("ca");
        let cfg = tally_protocol::ChannelConfig {
            name: "ch".into(),
            members: vec![tally_protocol::OrgMember::new("org1", &ca.cert_pem())],
            consenters: vec![tally_protocol::NodeRef {
                id: 1,
                name: "n1".into(),
                org: "org1".into(),
                peer_addr: "127.0.0.1:1".into(),
                api_url: "http://127.0.0.1:2".into(),
            }],
            observers: vec![],
            batch: Default::default(),
            policies: Default::default(),
            snapshot_interval: 100,
            max_tx_bytes: 100_000,
            tx_window_s: 600,
        };
        let engine = Arc::new(tally_runtime::Engine::new(tally_runtime::Limits::default()));
        let ledger = Arc::new(Ledger::open(db, cfg, engine).expect("ledger"));
        let metrics = Arc::new(Metrics::new("n1", "org1"));
        let url = format!("file://{}", dir.path().join("repo").display());
        let e = jobs
            .start(ledger, "n1", &url, Options::new(), metrics)
            .expect_err("one is running");
        assert!(matches!(e, StartError::Running { .. }), "{e}");
        assert!(jobs.get("ch", "ch-1").is_some());
        assert!(jobs.get("other", "ch-1").is_none());
    }
}
