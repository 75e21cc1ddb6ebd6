//! `kubectl tally backup create|list`: Backup objects, which the operator has a node make;
//! `backup verify URL`, `backup list URL` and the rest are tallyctl's, on the repository
//! itself.

use super::Format;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use kube::api::{Api, ListParams, PostParams};
use serde::Serialize;
use std::ffi::OsString;
use std::time::{Duration, Instant};
use tally_api::backup::{Backup, BackupPhase, BackupSpec, DeletionPolicy, Destination};

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Back CHANNEL up now: creates a Backup, which the operator has one of the channel's
    /// nodes make while the channel keeps committing.
    Create {
        channel: String,
        /// The repository: `s3://bucket/prefix` or `file:///path` (on the node).
        #[arg(long)]
        to: String,
        /// Secret with the store's settings (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...).
        #[arg(long)]
        credentials_secret: Option<String>,
        /// The node to make it; the operator picks a follower otherwise.
        #[arg(long)]
        node: Option<String>,
        /// The Backup's name (default: CHANNEL-<UTC time>).
        #[arg(long)]
        name: Option<String>,
        /// Wait until it succeeds or fails, showing its progress.
        #[arg(long)]
        wait: bool,
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
        output: Format,
    },
    /// The Backups of the namespace (of CHANNEL only when given), newest first. With a
    /// repository URL instead, tallyctl lists what the repository holds.
    List {
        channel: Option<String>,
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
        output: Format,
    },
    /// tallyctl's other `backup` commands (`verify URL`, ...).
    #[command(external_subcommand)]
    Tallyctl(Vec<OsString>),
}

/// One Backup as `list` shows it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct BackupLine {
    pub name: String,
    pub channel: String,
    pub phase: String,
    pub height: Option<u64>,
    pub stored: String,
    pub node: String,
    pub created: String,
    pub manifest: String,
    pub error: String,
}

impl BackupLine {
    pub fn new(b: &Backup) -> BackupLine {
        let st = b.status.clone().unwrap_or_default();
        BackupLine {
            name: b.metadata.name.clone().unwrap_or_default(),
            channel: b.spec.channel.clone(),
            phase: format!("{:?}", st.phase),
            height: st.height,
            stored: st.stored_size,
            node: st.node,
            created: b
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            manifest: st.manifest,
            error: st.error,
        }
    }

    pub fn text(&self) -> String {
        let height = self
            .height
            .map(|h| h.to_string())
            .unwrap_or_else(|| "-".into());
        let mut s = format!(
            "{:<32} {:<16} {:<10} {:>8} {:>10} {:<16} {}",
            self.name,
            self.channel,
            self.phase,
            height,
            if self.stored.is_empty() {
                "-"
            } else {
                &self.stored
            },
            if self.node.is_empty() {
                "-"
            } else {
                &self.node
            },
            self.created
        );
        if !self.error.is_empty() {
            s.push_str(&format!("\n  error: {}", self.error));
        }
        s
    }
}

/// The Backups of `ns` (of `channel`), newest first.
pub async fn list(kube: &kube::Client, ns: &str, channel: Option<&str>) -> Result<Vec<Backup>> {
    let mut items = Api::<Backup>::namespaced(kube.clone(), ns)
        .list(&ListParams::default())
        .await
        .with_context(|| {
            format!("listing Backups in namespace {ns} (are Tally's CRDs installed?)")
        })?
        .items;
    items.retain(|b| channel.is_none_or(|c| b.spec.channel == c));
    items.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    Ok(items)
}

pub async fn run(kube: kube::Client, ns: String, cmd: BackupCmd) -> Result<()> {
    match cmd {
        BackupCmd::Create {
            channel,
            to,
            credentials_secret,
            node,
            name,
            wait,
            output,
        } => {
            let name = name.unwrap_or_else(|| {
                format!(
                    "{channel}-{}",
                    jiff::Timestamp::now().strftime("%Y%m%d%H%M%S")
                )
            });
            let b = Backup {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    ..Default::default()
                },
                spec: BackupSpec {
                    channel: channel.clone(),
                    node: node.unwrap_or_default(),
                    destination: Destination {
                        url: to,
                        credentials_secret,
                    },
                    deletion_policy: DeletionPolicy::Retain,
                },
                status: None,
            };
            let api = Api::<Backup>::namespaced(kube.clone(), &ns);
            api.create(&PostParams::default(), &b)
                .await
                .with_context(|| format!("creating Backup {ns}/{name}"))?;
            if output == Format::Text {
                println!("backup {ns}/{name} of channel {channel} created");
            }
            let mut last = None;
            if wait {
                let started = Instant::now();
                loop {
                    let b = api
                        .get(&name)
                        .await
                        .with_context(|| format!("reading Backup {ns}/{name}"))?;
                    let line = BackupLine::new(&b);
                    let phase = b.status.as_ref().map(|s| s.phase).unwrap_or_default();
                    if output == Format::Text {
                        eprintln!("  {:>4}s  {}", started.elapsed().as_secs(), line.phase);
                    }
                    match phase {
                        BackupPhase::Succeeded => {
                            last = Some(line);
                            break;
                        }
                        BackupPhase::Failed => bail!("backup {ns}/{name} failed: {}", line.error),
                        _ => {}
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
            match (output, last) {
                (Format::Json, Some(l)) => println!("{}", serde_json::to_string_pretty(&l)?),
                (Format::Json, None) => {
                    println!("{}", serde_json::json!({"name": name, "namespace": ns}))
                }
                (Format::Text, Some(l)) => println!(
                    "succeeded: height {}, {} stored, manifest {}",
                    l.height.unwrap_or(0),
                    l.stored,
                    l.manifest
                ),
                (Format::Text, None) => {}
            }
        }
        BackupCmd::List { channel, output } => {
            let items = list(&kube, &ns, channel.as_deref()).await?;
            let lines: Vec<BackupLine> = items.iter().map(BackupLine::new).collect();
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&lines)?),
                Format::Text if lines.is_empty() => println!("no Backups in namespace {ns}"),
                Format::Text => {
                    println!(
                        "{:<32} {:<16} {:<10} {:>8} {:>10} {:<16} CREATED",
                        "NAME", "CHANNEL", "PHASE", "HEIGHT", "STORED", "NODE"
                    );
                    for l in &lines {
                        println!("{}", l.text());
                    }
                }
            }
        }
        BackupCmd::Tallyctl(_) => {}
    }
    Ok(())
}
