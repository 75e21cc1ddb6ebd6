//! Following a channel's committed blocks as a server-sent-event stream: the request, and
//! the task that feeds the blocks in order to a channel, checking that none is skipped.

use super::sse::SseParser;
use super::transport::api_error;
use super::Client;
use crate::error::ClientError;
use http_body_util::BodyExt;
use hyper::Method;
use tally_protocol::Block;

impl Client {
    /// Streams committed blocks from height `from` (server-sent events), in order.
    ///
    /// The receiver gets `Ok(block)` for each block; when the stream breaks (the node went
    /// away, a malformed event) it gets one `Err` and then the channel closes. Dropping the
    /// receiver ends the stream.
    pub async fn follow(
        &self,
        channel: &str,
        from: u64,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Block, ClientError>>, ClientError> {
        let path = Self::channel_path(channel, &format!("/blocks/stream?from={from}"));
        let resp = tokio::time::timeout(self.timeout, self.send(Method::GET, &path, None))
            .await
            .map_err(|_| ClientError::Timeout(format!("{}{}", self.inner.url, path)))??;
        let status = resp.status();
        if !status.is_success() {
            let body = tokio::time::timeout(self.timeout, resp.into_body().collect())
                .await
                .ok()
                .and_then(|r| r.ok())
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(api_error(status, &body));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let url = self.inner.url.clone();
        tokio::spawn(async move {
            // The stream ends with at most one error, sent after the blocks before it.
            if let Err(e) = pump_blocks(resp.into_body(), from, &url, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(rx)
    }
}

/// Feeds the blocks of a server-sent-event stream into `tx`, in order, from height `next`.
/// Returns when the receiver is gone (Ok) or the stream breaks, skips or lies (Err).
async fn pump_blocks(
    mut body: super::relay::RelayBody,
    mut next: u64,
    url: &str,
    tx: &tokio::sync::mpsc::Sender<Result<Block, ClientError>>,
) -> Result<(), ClientError> {
    let transport = |message: String| ClientError::Transport {
        url: url.to_string(),
        message,
    };
    let bad = |message: String| ClientError::BadResponse {
        url: url.to_string(),
        message,
    };
    let mut parser = SseParser::default();
    loop {
        let frame = tokio::select! {
            _ = tx.closed() => return Ok(()),
            f = body.frame() => f,
        };
        let chunk = match frame {
            None => return Err(transport("the node closed the block stream".into())),
            Some(Err(e)) => return Err(transport(format!("block stream broke: {}", e))),
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue, // trailers
            },
        };
        for ev in parser.push(&chunk).map_err(bad)? {
            if ev.event != "block" && ev.event != "message" {
                continue; // keep-alives and future event kinds
            }
            let block: Block = serde_json::from_str(&ev.data)
                .map_err(|e| bad(format!("block event is not a block: {e}")))?;
            let n = block.header.number;
            if n < next {
                continue; // already delivered
            }
            if n > next {
                return Err(bad(format!(
                    "block stream skipped from block {next} to {n}"
                )));
            }
            next = n + 1;
            if tx.send(Ok(block)).await.is_err() {
                return Ok(());
            }
        }
    }
}
