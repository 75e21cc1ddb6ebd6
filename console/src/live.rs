//! Blocks as they are committed, for the channel page: the console follows the node's block
//! stream with the organization's signed read and passes each block on to the browser as a
//! server-sent event carrying the row the page adds. When the node's stream breaks the console
//! follows again from the next block, on the next node if need be; when the browser goes
//! away, hyper drops the body and with it the node's stream.

use crate::app::App;
use crate::error::ConsoleError;
use crate::pages::blocks::BlockRow;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tally_client::ClientError;
use tally_protocol::Block;
use tokio::sync::mpsc::Receiver;

/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Pause before following again after the node's stream broke.
const RETRY: Duration = Duration::from_secs(1);

type Blocks = Receiver<Result<Block, ClientError>>;

async fn follow(app: &App, ch: &str, from: u64) -> Result<Blocks, ConsoleError> {
    app.ledger
        .read(ch, |c| async move { c.follow(ch, from).await })
        .await
}

/// The event stream from block `from` on. The first follow happens here, so that a refusal
/// (not a reader) is an error answer rather than an empty stream.
pub async fn events(
    app: Arc<App>,
    ch: String,
    from: u64,
) -> Result<impl futures_util::Stream<Item = Bytes> + Send, ConsoleError> {
    let rx = follow(&app, &ch, from).await?;
    struct State {
        app: Arc<App>,
        ch: String,
        next: u64,
        rx: Option<Blocks>,
    }
    let state = State {
        app,
        ch,
        next: from,
        rx: Some(rx),
    };
    // A first comment makes the browser's EventSource report the stream open at once.
    let hello = futures_util::stream::once(async { Bytes::from_static(b": following\n\n") });
    let blocks = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            let Some(rx) = s.rx.as_mut() else {
                tokio::time::sleep(RETRY).await;
                match follow(&s.app, &s.ch, s.next).await {
                    Ok(rx) => s.rx = Some(rx),
                    Err(e) => {
                        tracing::debug!(channel = %s.ch, error = %e, "following again failed");
                        // Access can change (a configuration removed the organization):
                        // a refusal ends the stream, anything else is retried.
                        if matches!(
                            e,
                            ConsoleError::NotMember { .. } | ConsoleError::NotReader { .. }
                        ) {
                            return None;
                        }
                    }
                }
                return Some((Bytes::from_static(b": reconnecting\n\n"), s));
            };
            match tokio::time::timeout(KEEP_ALIVE, rx.recv()).await {
                Err(_) => return Some((Bytes::from_static(b": keep-alive\n\n"), s)),
                Ok(Some(Ok(block))) => {
                    s.next = block.header.number + 1;
                    return Some((event(&block), s));
                }
                Ok(Some(Err(e))) => {
                    tracing::debug!(channel = %s.ch, error = %e, "block stream broke");
                    s.rx = None;
                }
                Ok(None) => s.rx = None,
            }
        }
    });
    Ok(futures_util::StreamExt::chain(hello, blocks))
}

fn event(b: &Block) -> Bytes {
    let row = BlockRow::of(b);
    let data = serde_json::to_string(&row).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!(
        "event: block\nid: {}\ndata: {data}\n\n",
        row.number
    ))
}
