//! `tallyctl tx`: signed writes and the reads that follow a key.

use super::output::{fmt_time_ms, short, show_value};
use super::progress::Spinner;
use super::receipt::{self, receipt_line};
use super::{explain, Ctx, Exit, EXIT_REJECTED};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use std::time::{Duration, Instant};
use tally_client::{txs, ClientError, SubmitOutcome};
use tally_protocol::{TxStatus, Write};

#[derive(Args, Debug, Clone)]
pub struct WriteOpts {
    /// Return once the node accepted the transaction, without waiting for the commit.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the commit, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Sign with the certificate's hash instead of the certificate (the channel must know it).
    #[arg(long)]
    pub cert_hash: bool,
}

#[derive(Subcommand, Debug)]
pub enum TxCmd {
    /// Put a value (exit status 3 when the channel rejects the transaction).
    Put {
        #[arg(long, short)]
        channel: String,
        key: String,
        value: String,
        /// VALUE is hex, not text.
        #[arg(long)]
        hex: bool,
        #[command(flatten)]
        opts: WriteOpts,
    },
    /// Delete a key.
    Delete {
        #[arg(long, short)]
        channel: String,
        key: String,
        #[command(flatten)]
        opts: WriteOpts,
    },
    /// Read a key's current value.
    Get {
        #[arg(long, short)]
        channel: String,
        key: String,
    },
    /// Every write of a key, oldest first.
    History {
        #[arg(long, short)]
        channel: String,
        key: String,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// A transaction's receipt and inclusion proof.
    Receipt {
        #[arg(long, short)]
        channel: String,
        /// Transaction id (hex).
        tx_id: String,
        /// Check the inclusion proof offline, and cross-check the block hash with the other --node URLs.
        #[arg(long)]
        verify: bool,
    },
}

/// Submits to the nodes in turn. Unlike a read, a write also moves on from a node that is
/// shutting down, and goes round again while waiting for the commit: a rolling restart
/// should not fail a write.
pub(super) async fn submit(
    ctx: &Ctx,
    tx: &tally_protocol::Transaction,
    opts: &WriteOpts,
) -> Result<SubmitOutcome> {
    let id = tx.id();
    let spinner = Spinner::start(if opts.no_wait {
        format!("submitting {}", short(&id))
    } else {
        format!("waiting for the commit of {}", short(&id))
    });
    let wait = Duration::from_secs(opts.timeout.max(1));
    let deadline = Instant::now() + wait;
    let mut failures = Vec::new();
    let mut round = 0u32;
    loop {
        for c in &ctx.nodes {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = if opts.no_wait {
                c.submit(tx, false).await
            } else {
                c.submit_wait_for(tx, left.max(Duration::from_millis(1)))
                    .await
                    .map(SubmitOutcome::Receipt)
            };
            match r {
                Ok(o) => return Ok(o),
                Err(e) if e.is_transport() || e.api_code() == Some("shutting_down") => {
                    spinner.set(format!("{} unavailable, trying the next node", c.url()));
                    tracing::warn!("{e}");
                    failures.push(e.to_string());
                }
                Err(ClientError::Timeout(_)) => {
                    bail!(
                        "transaction {id} was not committed within {}s (it may still commit: \
                         check with `tallyctl tx receipt --channel {} {id}`)",
                        opts.timeout,
                        tx.body.channel
                    )
                }
                Err(e) => return Err(explain(e, c.url())),
            }
        }
        round += 1;
        // every node unreachable: retry until the deadline when waiting, else give up
        if opts.no_wait || round >= 3 || Instant::now() + Duration::from_millis(500) >= deadline {
            bail!("no node reachable: {}", failures.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(super) fn print_outcome(ctx: &Ctx, o: &SubmitOutcome) -> Result<()> {
    match o {
        SubmitOutcome::Pending(id) => ctx.show(&json!({"tx_id": id, "status": "pending"}), || {
            println!("submitted tx {id} (pending)")
        }),
        SubmitOutcome::Receipt(r) => {
            ctx.show(r, || println!("{}", receipt_line(r)))?;
            match &r.status {
                TxStatus::Committed => Ok(()),
                TxStatus::Rejected { .. } => Err(Exit(EXIT_REJECTED, String::new()).into()),
            }
        }
    }
}

/// Signs one write to `key` with the --identity, submits it and prints the outcome.
async fn write(ctx: &Ctx, channel: &str, key: &str, w: Write, opts: &WriteOpts) -> Result<()> {
    check_key(key)?;
    let id = ctx.identity()?;
    let t = txs::sign_writes(&id, channel, vec![w], opts.cert_hash);
    let o = submit(ctx, &t, opts).await?;
    print_outcome(ctx, &o)
}

impl TxCmd {
    pub fn channel(&self) -> &str {
        match self {
            TxCmd::Put { channel, .. }
            | TxCmd::Delete { channel, .. }
            | TxCmd::Get { channel, .. }
            | TxCmd::History { channel, .. }
            | TxCmd::Receipt { channel, .. } => channel,
        }
    }
}

pub async fn run(ctx: &Ctx, cmd: TxCmd) -> Result<()> {
    match cmd {
        TxCmd::Put {
            channel,
            key,
            value,
            hex: is_hex,
            opts,
        } => {
            let value = if is_hex {
                hex::decode(value.trim().trim_start_matches("0x")).context("VALUE is not hex")?
            } else {
                value.into_bytes()
            };
            write(ctx, &channel, &key, txs::put(&key, &value), &opts).await
        }
        TxCmd::Delete { channel, key, opts } => {
            write(ctx, &channel, &key, txs::delete(&key), &opts).await
        }
        TxCmd::Get { channel, key } => {
            let (_, kv) = ctx
                .on_any(|c| {
                    let (channel, key) = (&channel, &key);
                    async move { c.get(channel, key).await }
                })
                .await?;
            let Some(kv) = kv else {
                bail!("key {key:?} does not exist in channel {channel}");
            };
            ctx.show(&kv, || {
                println!("{}", show_value(&kv.value, kv.value_utf8.as_deref()))
            })
        }
        TxCmd::History {
            channel,
            key,
            limit,
        } => {
            let (_, h) = ctx
                .on_any(|c| {
                    let (channel, key) = (&channel, &key);
                    async move { c.history(channel, key, limit).await }
                })
                .await?;
            ctx.show(&h, || {
                if h.entries.is_empty() {
                    println!("no history for key {key:?}");
                }
                for e in &h.entries {
                    let v = match &e.value {
                        Some(v) => show_value(v, e.value_utf8.as_deref()),
                        None => "(deleted)".to_string(),
                    };
                    println!(
                        "{:>8}.{:<4} {}  {}  {v}",
                        e.version.block,
                        e.version.tx,
                        fmt_time_ms(e.timestamp_ms),
                        short(&e.tx_id)
                    );
                }
            })
        }
        TxCmd::Receipt {
            channel,
            tx_id,
            verify,
        } => receipt::run(ctx, &channel, &tx_id, verify).await,
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        bail!("the key is empty");
    }
    if key.len() > 1024 {
        bail!(
            "the key is {} bytes long; keys are at most 1024 bytes",
            key.len()
        );
    }
    Ok(())
}
