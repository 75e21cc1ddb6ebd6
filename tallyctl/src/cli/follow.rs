//! `tallyctl blocks follow`: blocks as they are committed, moving on to the next --node when
//! the stream breaks, so that one node restarting does not end the stream.

use super::blocks::{block_json, block_line, block_summary};
use super::progress::Spinner;
use super::{explain, Ctx};
use anyhow::{bail, Result};
use std::io::Write as _;
use std::time::Duration;

pub async fn follow(
    ctx: &Ctx,
    channel: &str,
    from: Option<u64>,
    count: Option<u64>,
    full: bool,
) -> Result<()> {
    let mut next = match from {
        Some(n) => n,
        None => {
            ctx.on_any(|c| async move { c.status(channel).await })
                .await?
                .1
                .height
        }
    };
    if count == Some(0) {
        return Ok(());
    }
    let spinner = Spinner::start(format!("following channel {channel} from block {next}"));
    let mut printed = 0u64;
    let mut node = 0usize;
    let mut failures_in_row = 0usize;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let c = &ctx.nodes[node % ctx.nodes.len()];
        let mut rx = match c.follow(channel, next).await {
            Ok(rx) => rx,
            Err(e) if e.is_transport() || e.is_retryable() => {
                failures_in_row += 1;
                if failures_in_row >= 3 * ctx.nodes.len() {
                    bail!("{e}");
                }
                spinner.set(format!("{e}; retrying"));
                tracing::warn!("{e}");
                node += 1;
                tokio::select! {
                    _ = &mut ctrl_c => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
            Err(e) => return Err(explain(e, c.url())),
        };
        spinner.set(format!(
            "following channel {channel} on {}: waiting for block {next}",
            c.url()
        ));
        loop {
            let item = tokio::select! {
                _ = &mut ctrl_c => return Ok(()),
                item = rx.recv() => item,
            };
            match item {
                Some(Ok(b)) => {
                    failures_in_row = 0;
                    next = b.header.number + 1;
                    let line = if ctx.json() {
                        let v = if full {
                            block_json(&b)?
                        } else {
                            block_summary(&b)
                        };
                        serde_json::to_string(&v)?
                    } else {
                        block_line(&b)
                    };
                    spinner.println(&line);
                    let _ = std::io::stdout().flush();
                    spinner.set(format!(
                        "following channel {channel} on {}: waiting for block {next}",
                        c.url()
                    ));
                    printed += 1;
                    if count.is_some_and(|n| printed >= n) {
                        return Ok(());
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("{e}; reconnecting");
                    spinner.set(format!("{e}; reconnecting"));
                    break;
                }
                None => break,
            }
        }
        node += 1;
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
