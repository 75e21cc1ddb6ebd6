//! Submitting transactions and waiting for their commit: one offer, an offer the node waits
//! on, and the retrying wait that offers the same transaction again after a node-side
//! timeout, an election or a busy node (after the `Retry-After` the node asked for), then
//! polling for the receipt. Resubmission is safe: a transaction commits at most once.

use super::transport::api_error;
use super::url::query_string;
use super::Client;
use crate::error::ClientError;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use std::time::Duration;
use tally_protocol::api::Pending;
use tally_protocol::{Encode, Hash, ProvenReceipt, Receipt, Transaction};

/// Result of a submission: a receipt when the caller waited, else the pending id.
#[derive(Debug, Clone)]
pub enum SubmitOutcome {
    Pending(Hash),
    Receipt(Receipt),
}

impl SubmitOutcome {
    pub fn tx_id(&self) -> Hash {
        match self {
            SubmitOutcome::Pending(h) => *h,
            SubmitOutcome::Receipt(r) => r.tx_id,
        }
    }
}

impl Client {
    /// Submits the canonical bytes; with `wait`, returns the receipt once committed.
    pub async fn submit(&self, tx: &Transaction, wait: bool) -> Result<SubmitOutcome, ClientError> {
        self.submit_inner(tx, wait, None).await
    }

    /// Submits and waits for the receipt (committed or rejected).
    pub async fn submit_wait(&self, tx: &Transaction) -> Result<Receipt, ClientError> {
        match self.submit(tx, true).await? {
            SubmitOutcome::Receipt(r) => Ok(r),
            SubmitOutcome::Pending(id) => self
                .wait_receipt(&tx.body.channel, &id, self.timeout)
                .await
                .map(|p| p.receipt),
        }
    }

    /// Submits and waits up to `wait` for the commit: the node is asked to wait that long
    /// (`timeout_ms`), and a node-side timeout is answered by submitting the same transaction
    /// again (safe: a transaction commits at most once) until `wait` has passed.
    pub async fn submit_wait_for(
        &self,
        tx: &Transaction,
        wait: Duration,
    ) -> Result<Receipt, ClientError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(commit_timeout(&tx.id()));
            }
            match self.submit_inner(tx, true, Some(left)).await {
                Ok(SubmitOutcome::Receipt(r)) => return Ok(r),
                Ok(SubmitOutcome::Pending(id)) => {
                    return self
                        .wait_receipt(&tx.body.channel, &id, left)
                        .await
                        .map(|p| p.receipt)
                }
                Err(ClientError::Timeout(_)) => continue,
                Err(e) if matches!(e.api_code(), Some("no_leader" | "busy")) => {
                    // an election is under way, or the node is saturated: the same
                    // transaction may be offered again, after the wait the node asked for
                    let pause = e.retry_after().unwrap_or(Duration::from_millis(200));
                    tokio::time::sleep(pause.min(left)).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn submit_inner(
        &self,
        tx: &Transaction,
        wait: bool,
        wait_for: Option<Duration>,
    ) -> Result<SubmitOutcome, ClientError> {
        let mut q: Vec<(&str, String)> = Vec::new();
        let mut limit = self.timeout;
        if wait {
            q.push(("wait", "true".into()));
            if let Some(w) = wait_for {
                let ms = w.as_millis().max(1) as u64;
                q.push(("timeout_ms", ms.to_string()));
                // leave the node time to answer 504 itself
                limit = w + Duration::from_secs(5);
            }
        }
        let path = Self::channel_path(
            &tx.body.channel,
            &format!("/transactions{}", query_string(&q)),
        );
        let body = Bytes::from(tx.to_bytes());
        let (status, retry_after, body) = self
            .call_full(
                Method::POST,
                &path,
                Some(("application/octet-stream", body)),
                limit,
            )
            .await?;
        match status {
            StatusCode::OK => Ok(SubmitOutcome::Receipt(self.parse(&body)?)),
            StatusCode::ACCEPTED => {
                // a node may answer 202 with the receipt of an already committed transaction
                if let Ok(r) = serde_json::from_slice::<Receipt>(&body) {
                    return Ok(SubmitOutcome::Receipt(r));
                }
                let p: Pending = self.parse(&body)?;
                Ok(SubmitOutcome::Pending(p.tx_id))
            }
            StatusCode::GATEWAY_TIMEOUT => Err(commit_timeout(&tx.id())),
            s if s.is_success() => Ok(SubmitOutcome::Receipt(self.parse(&body)?)),
            s => Err(match api_error(s, &body) {
                ClientError::Api {
                    status,
                    code,
                    message,
                    ..
                } => ClientError::Api {
                    status,
                    code,
                    message,
                    retry_after,
                },
                e => e,
            }),
        }
    }

    /// Polls for a transaction's receipt until it appears or `wait` has passed.
    pub async fn wait_receipt(
        &self,
        channel: &str,
        tx_id: &Hash,
        wait: Duration,
    ) -> Result<ProvenReceipt, ClientError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(20);
        loop {
            if let Some(r) = self.receipt(channel, tx_id).await? {
                return Ok(r);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(commit_timeout(tx_id));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

/// The wait for a transaction's commit ran out (the node's or ours: the same to the caller).
fn commit_timeout(tx_id: &Hash) -> ClientError {
    ClientError::Timeout(format!("the commit of transaction {tx_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::Response;
    use std::sync::Arc;

    /// A node that answers every submission 429 `busy` with `Retry-After: 2`, over TLS with
    /// a certificate of `ca` for 127.0.0.1. Returns its URL and the count of requests it
    /// answered.
    async fn busy_node(
        ca: &tally_protocol::OrgCa,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let id = ca
            .issue(tally_protocol::Role::Node, "n", &["127.0.0.1".into()])
            .expect("node identity");
        let key = tally_protocol::identity::pem_to_der(&id.key_pem()).expect("key");
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(id.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(stream) = acceptor.accept(stream).await else {
                    continue;
                };
                let count = count.clone();
                let svc = hyper::service::service_fn(move |_req| {
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    async {
                        Response::builder()
                            .status(StatusCode::TOO_MANY_REQUESTS)
                            .header("retry-after", "2")
                            .body(Full::new(Bytes::from_static(
                                br#"{"error":"queue full","code":"busy"}"#,
                            )))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
                );
            }
        });
        (format!("https://{addr}"), seen)
    }

    #[tokio::test]
    async fn honours_retry_after() {
        let ca = tally_protocol::OrgCa::generate("o").expect("ca");
        let id = ca
            .issue(tally_protocol::Role::Client, "c", &[])
            .expect("client identity");
        let tx = crate::txs::sign_writes(&id, "ch", vec![crate::txs::put("k", b"v")], false);
        let (url, seen) = busy_node(&ca).await;
        let trust = crate::ApiTrust::from_ca_pems(&[ca.cert_pem()]).expect("trust");
        let client = Client::new(&url, &trust).expect("client");
        let e = client.submit(&tx, false).await.expect_err("busy");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert!(e.is_retryable(), "{e}");
        // Within 3 s, waiting 2 s between offers makes two more; the SDK's own 200 ms pause
        // would have made about fifteen.
        let r = client.submit_wait_for(&tx, Duration::from_secs(3)).await;
        assert!(matches!(r, Err(ClientError::Timeout(_))), "{r:?}");
        let offers = seen.load(std::sync::atomic::Ordering::Relaxed) - 1;
        assert!(offers <= 2, "{offers} offers in 3 s despite Retry-After: 2");
    }
}
