//! The client API: JSON over HTTP/1.1 (see docs/api.md).

use crate::channel::{Channel, SubmitFailure, MAX_QUEUED, MAX_QUEUED_BYTES};
use crate::http::{
    error, full, json, query_param, read_body, retry_later, text, Body, BodyError, Refusal,
};
use crate::node::Node;
use crate::query_pool::QUERY_FUEL;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tally_protocol::api::{utf8, ChannelList, History, KeyList, KeyValue, Pending, SubmitJson};
use tally_protocol::{Hash, RejectCode};

const DEFAULT_WAIT: Duration = Duration::from_secs(10);
const MAX_WAIT: Duration = Duration::from_secs(120);

pub async fn handle(node: Arc<Node>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    match (&method, segs.as_slice()) {
        (&Method::GET, ["healthz"]) => text(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, ["readyz"]) => match node.ready() {
            Ok(()) => text(StatusCode::OK, "text/plain", "ready\n"),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{why}\n"),
            ),
        },
        (&Method::GET, ["metrics"]) => {
            node.update_size_metric();
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                node.metrics.render(),
            )
        }
        (&Method::GET, ["v1", "channels"]) => json(
            StatusCode::OK,
            &ChannelList {
                channels: node.channels().iter().map(|c| c.status()).collect(),
            },
        ),
        (_, ["v1", "channels", ch, rest @ ..]) => {
            let Some(chan) = node.channel(ch) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "unknown_channel",
                    format!("this node serves no channel named {ch:?}"),
                );
            };
            channel_route(&node, chan, method, rest, req).await
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {method} {path}"),
        ),
    }
}

async fn channel_route(
    node: &Node,
    chan: Arc<Channel>,
    method: Method,
    rest: &[&str],
    req: Request<Incoming>,
) -> Response<Body> {
    let q = req.uri().query().map(str::to_string);
    let q = q.as_deref();
    let ledger = &chan.ledger;
    // A node whose ledger differs from the channel's (or whose channel thread died) serves
    // neither reads nor writes of it; its status still says why.
    if let (Some(d), false) = (chan.degraded(), rest == ["status"]) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "degraded",
            format!(
                "this node does not serve channel {}: {} (first differing height {})",
                ledger.name, d.reason, d.first_differing_height
            ),
        );
    }
    let limit = |default: usize, max: usize| {
        query_param(q, "limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(default)
            .min(max)
    };
    let mut reader = None;
    if crate::read_access::is_data_read(&method, rest) {
        match crate::read_access::check(ledger, &node.seen_reads, &req, tally_protocol::now_ms()) {
            Ok(info) => reader = Some(info),
            Err(refused) => return refused.into_response(),
        }
    }
    if method == Method::POST && node.is_frozen(&ledger.name) {
        return error(
            StatusCode::FORBIDDEN,
            "read_only",
            format!(
                "channel {} is restored read-only on this node at height {} (point in time): it takes no writes",
                ledger.name,
                ledger.tip().height
            ),
        );
    }
    match (method, rest) {
        (Method::POST, ["transactions"]) => submit(node, chan, req).await,
        (Method::GET, ["transactions", id]) => {
            let Ok(id) = Hash::from_hex(id) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    "transaction id must be 64 hex characters",
                );
            };
            match ledger.receipt(&id) {
                Ok(Some(r)) => json(StatusCode::OK, &r),
                Ok(None) => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("transaction {id} is not on channel {}", ledger.name),
                ),
                Err(e) => internal(e),
            }
        }
        (Method::GET, ["blocks", "stream"]) => {
            let from = query_param(q, "from")
                .and_then(|f| f.parse().ok())
                .unwrap_or(0);
            stream_blocks(chan, from)
        }
        (Method::GET, ["blocks", n, "header"]) => match parse_block_number(ledger, n) {
            Ok(number) => match ledger.block(number) {
                Ok(Some(b)) => json(StatusCode::OK, &b.header),
                Ok(None) => no_block(ledger, number),
                Err(e) => internal(e),
            },
            Err(refused) => refused.into_response(),
        },
        (Method::GET, ["blocks", n]) => match parse_block_number(ledger, n) {
            Ok(number) => match ledger.block(number) {
                Ok(Some(b)) => json(StatusCode::OK, &b),
                Ok(None) => no_block(ledger, number),
                Err(e) => internal(e),
            },
            Err(refused) => refused.into_response(),
        },
        (Method::GET, ["state"]) => {
            let Some(key) = query_param(q, "key") else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    "query parameter 'key' is required",
                );
            };
            match ledger.get(&key) {
                Ok(Some((version, value))) => json(
                    StatusCode::OK,
                    &KeyValue {
                        key,
                        value_utf8: utf8(&value),
                        value,
                        version,
                    },
                ),
                Ok(None) => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("key {key:?} is not set"),
                ),
                Err(e) => internal(e),
            }
        }
        (Method::GET, ["history"]) => {
            let Some(key) = query_param(q, "key") else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    "query parameter 'key' is required",
                );
            };
            match ledger.history(&key, limit(1000, 100_000)) {
                Ok(entries) => json(StatusCode::OK, &History { key, entries }),
                Err(e) => internal(e),
            }
        }
        (Method::GET, ["keys"]) => {
            let prefix = query_param(q, "prefix").unwrap_or_default();
            match ledger.keys_with_prefix(&prefix, limit(100, 10_000)) {
                Ok(keys) => json(StatusCode::OK, &KeyList { keys }),
                Err(e) => internal(e),
            }
        }
        // Definitions and approvals are governance, like the configuration: open to read.
        (Method::GET, ["chaincodes"]) => match ledger.chaincodes() {
            Ok(chaincodes) => json(
                StatusCode::OK,
                &tally_protocol::chaincode::ChaincodeList { chaincodes },
            ),
            Err(e) => internal(e),
        },
        // A GET with the call in the query string, so that the read signature (over method,
        // path and query) covers the function and arguments.
        (Method::GET, ["chaincodes", name, "query"]) => {
            let Some(reader) = reader else {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "read_unauthenticated",
                    "a chaincode query needs a signed read",
                );
            };
            let Some(function) = query_param(q, "function") else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    "query parameter 'function' is required",
                );
            };
            let Ok(args) = hex::decode(query_param(q, "args").unwrap_or_default()) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    "query parameter 'args' must be hex (the argument bytes)",
                );
            };
            let (l, name) = (ledger.clone(), name.to_string());
            let ran = node
                .queries
                .run(move || l.query(&name, &function, &args, &reader, QUERY_FUEL))
                .await;
            let Ok(result) = ran else {
                return retry_later(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "too many chaincode queries running on this node; retry later",
                );
            };
            match result {
                Ok(Ok(r)) => json(StatusCode::OK, &r),
                Ok(Err((code, reason))) => {
                    let status = match code {
                        RejectCode::UnknownChaincode => StatusCode::NOT_FOUND,
                        RejectCode::Forbidden => StatusCode::FORBIDDEN,
                        _ => StatusCode::UNPROCESSABLE_ENTITY,
                    };
                    error(status, code.as_str(), reason)
                }
                Err(e) => internal(e),
            }
        }
        (Method::GET, ["proposals"]) => match ledger.proposals(limit(1000, 10_000)) {
            Ok(proposals) => json(
                StatusCode::OK,
                &tally_protocol::proposal::ProposalList { proposals },
            ),
            Err(e) => internal(e),
        },
        (Method::GET, ["proposals", h]) => {
            let Ok(hash) = Hash::from_hex(h) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    "proposal hash must be 64 hex characters",
                );
            };
            match ledger.proposal(&hash) {
                Ok(Some(p)) => json(StatusCode::OK, &p),
                Ok(None) => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no proposal {hash} on channel {}", ledger.name),
                ),
                Err(e) => internal(e),
            }
        }
        (Method::GET, ["status"]) => json(StatusCode::OK, &chan.status()),
        (Method::GET, ["config"]) => json(StatusCode::OK, &*ledger.config()),
        (Method::GET, ["certs", h]) => match Hash::from_hex(h).map(|h| ledger.cert_known(&h)) {
            Ok(Ok(true)) => json(StatusCode::OK, &serde_json::json!({"known": true})),
            Ok(Ok(false)) => error(
                StatusCode::NOT_FOUND,
                "not_found",
                "certificate not recorded on this channel",
            ),
            Ok(Err(e)) => internal(e),
            Err(_) => error(
                StatusCode::BAD_REQUEST,
                "malformed",
                "certificate hash must be 64 hex characters",
            ),
        },
        (m, r) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {m} /{}", r.join("/")),
        ),
    }
}

fn parse_block_number(ledger: &crate::ledger::Ledger, n: &str) -> Result<u64, Refusal> {
    if n == "latest" {
        return Ok(ledger.tip().height.saturating_sub(1));
    }
    n.parse::<u64>().map_err(|_| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "block number must be an integer or 'latest'",
        )
    })
}

fn no_block(ledger: &crate::ledger::Ledger, number: u64) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "block {number} does not exist yet (height {})",
            ledger.tip().height
        ),
    )
}

fn internal(e: impl std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %e, "request failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

fn reject_status(code: RejectCode) -> StatusCode {
    match code {
        RejectCode::BadSignature => StatusCode::UNAUTHORIZED,
        RejectCode::NotMember
        | RejectCode::UnknownCertificate
        | RejectCode::Forbidden
        | RejectCode::Revoked => StatusCode::FORBIDDEN,
        RejectCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        RejectCode::Duplicate => StatusCode::CONFLICT,
        RejectCode::Retired => StatusCode::GONE,
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn submit(node: &Node, chan: Arc<Channel>, req: Request<Incoming>) -> Response<Body> {
    let ledger = chan.ledger.clone();
    let q = req.uri().query().map(str::to_string);
    let wait = query_param(q.as_deref(), "wait").is_some_and(|w| w == "true" || w == "1");
    let timeout = query_param(q.as_deref(), "timeout_ms")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_WAIT)
        .min(MAX_WAIT);
    let is_json = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let max = ledger.config().max_tx_bytes as usize;
    // JSON carries hex, twice the bytes, plus a little framing.
    let limit = if is_json { max * 2 + 64 } else { max };
    let reject = |code: RejectCode, msg: String| {
        node.metrics
            .rejected_txs
            .with_label_values(&[&ledger.name, code.as_str()])
            .inc();
        error(reject_status(code), code.as_str(), msg)
    };
    let body = match read_body(req.into_body(), limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return reject(
                RejectCode::TooLarge,
                format!("transaction exceeds the channel's limit of {max} bytes"),
            );
        }
        Err(e) => return e.into_response(),
    };
    let raw: Vec<u8> = if is_json {
        let parsed: Result<SubmitJson, _> = serde_json::from_slice(&body);
        match parsed
            .map_err(|e| e.to_string())
            .and_then(|j| hex::decode(j.tx).map_err(|e| e.to_string()))
        {
            Ok(b) => b,
            Err(e) => {
                return reject(
                    RejectCode::Malformed,
                    format!("body must be {{\"tx\": \"<hex of the canonical transaction>\"}}: {e}"),
                )
            }
        }
    } else {
        body.to_vec()
    };
    if raw.len() > max {
        return reject(
            RejectCode::TooLarge,
            format!(
                "transaction is {} bytes; the channel's limit is {max}",
                raw.len()
            ),
        );
    }
    let (tx, id) = match tally_protocol::RawTx::parse(&raw) {
        Ok(t) => (t.tx, t.id),
        Err(e) => {
            return reject(
                RejectCode::Malformed,
                format!("not a canonical transaction: {e}"),
            )
        }
    };
    if tx.body.channel != ledger.name {
        return reject(
            RejectCode::WrongChannel,
            format!(
                "transaction names channel {:?} but was sent to {:?}",
                tx.body.channel, ledger.name
            ),
        );
    }
    // A transaction already ordered is answered with its receipt: resubmission is safe.
    match ledger.receipt(&id) {
        Ok(Some(r)) => return json(StatusCode::OK, &r.receipt),
        Ok(None) => {}
        Err(e) => return internal(e),
    }
    let signer = match ledger.precheck(&tx, raw.len(), crate::wall_clock::now_ms()) {
        Ok(s) => s,
        Err((code, msg)) => return reject(code, msg),
    };
    if !node.verifier.verify(signer.key, &tx.signature, id.0).await {
        return reject(
            RejectCode::BadSignature,
            "signature does not verify against the signer's certificate".into(),
        );
    }
    if chan.leader_id() == 0 {
        return retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_leader",
            format!("channel {} has no leader yet; retry", ledger.name),
        );
    }
    if chan.queued.load(Ordering::Relaxed) > MAX_QUEUED
        || chan.queued_bytes.load(Ordering::Relaxed) + raw.len() > MAX_QUEUED_BYTES
    {
        return retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            "too many transactions queued on this node; retry later",
        );
    }
    let rx = match chan.submit(raw, id, &tx.signature, wait) {
        Ok(rx) => rx,
        Err(f) => return failure(f, &ledger.name),
    };
    let Some(rx) = rx else {
        return json(
            StatusCode::ACCEPTED,
            &Pending {
                tx_id: id,
                status: "pending".into(),
            },
        );
    };
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(Ok(receipt))) => json(StatusCode::OK, &receipt),
        Ok(Ok(Err(f))) => failure(f, &ledger.name),
        Ok(Err(_)) => failure(SubmitFailure::ShuttingDown, &ledger.name),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("transaction {id} was not committed within {} ms; resubmitting the same transaction is safe", timeout.as_millis()),
        ),
    }
}

fn failure(f: SubmitFailure, ch: &str) -> Response<Body> {
    match f {
        SubmitFailure::NoLeader => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_leader",
            format!("channel {ch} lost its leader before ordering the transaction; resubmit it"),
        ),
        SubmitFailure::ShuttingDown => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "node is shutting down; resubmit to another node",
        ),
    }
}

/// Server-sent events: every block from `from` on, then each new one as it commits.
fn stream_blocks(chan: Arc<Channel>, from: u64) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut sub = chan.blocks.subscribe();
        let mut next = from;
        loop {
            let height = chan.ledger.tip().height;
            while next < height {
                let block = match chan.ledger.block(next) {
                    Ok(Some(b)) => b,
                    _ => return,
                };
                let data = serde_json::to_string(&block).unwrap_or_default();
                let event = format!("event: block\nid: {next}\ndata: {data}\n\n");
                if tx.send(Bytes::from(event)).await.is_err() {
                    return;
                }
                next += 1;
            }
            tokio::select! {
                r = sub.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                        return;
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(15)) => {
                    if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(BodyExt::boxed_unsync(StreamBody::new(stream.boxed())))
        .unwrap_or_else(|_| Response::new(full("")))
}
