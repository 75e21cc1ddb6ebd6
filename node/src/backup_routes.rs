//! The admin API's backup routes: `POST v1/admin/channels/{ch}/backups` starts a backup of the
//! channel to a repository URL, `GET v1/admin/channels/{ch}/backups/{id}` reports on it.

use crate::backup::{jobs, StartError};
use crate::http::{error, json, Body};
use crate::node::Node;
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use std::sync::Arc;
use tally_protocol::identity::CertInfo;

const MAX_REQUEST: usize = 64 * 1024;

pub async fn handle(
    node: &Arc<Node>,
    caller: &CertInfo,
    method: Method,
    path: &str,
    body: Incoming,
) -> Response<Body> {
    let rest = &path["v1/admin/channels/".len()..];
    let parts: Vec<&str> = rest.split('/').collect();
    let not_found = |m: String| error(StatusCode::NOT_FOUND, "not_found", m);
    let (channel, id) = match (method.clone(), parts.as_slice()) {
        (Method::POST, [ch, "backups"]) => (*ch, None),
        (Method::GET, [ch, "backups", id]) => (*ch, Some(*id)),
        _ => return not_found(format!("no admin route for {method} /{path}")),
    };
    let Some(ch) = node.channel(channel) else {
        return not_found(format!("this node does not serve channel {channel}"));
    };
    if let Some(id) = id {
        return match node.backups.get(channel, id) {
            Some(s) => json(StatusCode::OK, &s),
            None => not_found(format!(
                "no backup {id} of channel {channel} on this node (results are kept in memory: a restart forgets them)"
            )),
        };
    }
    if let Some(d) = ch.degraded() {
        return error(
            StatusCode::CONFLICT,
            "degraded",
            format!(
                "this node's copy of channel {channel} is degraded ({}): back it up from another node",
                d.reason
            ),
        );
    }
    let body = match crate::http::read_body(body, MAX_REQUEST).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let bad = |m: String| error(StatusCode::BAD_REQUEST, "invalid", m);
    let req: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(format!("body is not JSON: {e}")),
    };
    let Some(to) = req.get("to").and_then(|v| v.as_str()) else {
        return bad("the body names no repository: {\"to\": \"s3://bucket/prefix\"}".into());
    };
    let options = match jobs::options_of(req.get("options")) {
        Ok(o) => o,
        Err(e) => return bad(e.to_string()),
    };
    match node.backups.start(
        ch.ledger.clone(),
        &node.name,
        to,
        options,
        node.metrics.clone(),
    ) {
        Ok(s) => {
            tracing::info!(channel, admin = %caller.subject, id = %s.id, "backup requested by admin");
            json(StatusCode::ACCEPTED, &s)
        }
        Err(e @ StartError::Running { .. }) => {
            error(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        Err(StartError::Invalid(e)) => bad(e.to_string()),
    }
}
