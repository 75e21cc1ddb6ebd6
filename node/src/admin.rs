//! The admin API, served over mutual TLS to administrators of the node's own organization.

use crate::http::{error, json, Body};
use crate::node::{JoinError, Joined, Node};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use tally_protocol::identity::{CertInfo, Role};
use tally_protocol::ChannelConfig;

const MAX_CONFIG: usize = 4 * 1024 * 1024;

pub async fn handle(node: Arc<Node>, caller: CertInfo, req: Request<Incoming>) -> Response<Body> {
    if caller.role != Role::Admin || caller.org != node.org {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "admin API needs an admin certificate of organization {}; got {} of {}",
                node.org, caller.role, caller.org
            ),
        );
    }
    let path = req.uri().path().trim_matches('/').to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "v1/admin/channels") => {
            let list: Vec<_> = node
                .channels()
                .iter()
                .map(|c| serde_json::json!({"channel": c.ledger.name, "config_hash": c.ledger.config_hash, "status": c.status()}))
                .collect();
            json(StatusCode::OK, &serde_json::json!({ "channels": list }))
        }
        (Method::POST, "v1/admin/channels") => {
            let body = match Limited::new(req.into_body(), MAX_CONFIG).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "malformed",
                        format!("cannot read body: {e}"),
                    )
                }
            };
            let cfg: ChannelConfig = match serde_json::from_slice(&body) {
                Ok(c) => c,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "malformed",
                        format!("body is not a channel configuration: {e}"),
                    )
                }
            };
            let name = cfg.name.clone();
            let n = node.clone();
            let joined = tokio::task::spawn_blocking(move || n.join(cfg)).await;
            match joined {
                Ok(Ok(Joined::Created(ch))) => {
                    tracing::info!(channel = %name, admin = %caller.subject, "channel created by admin");
                    json(StatusCode::CREATED, &ch.status())
                }
                Ok(Ok(Joined::Existing(ch))) => json(StatusCode::OK, &ch.status()),
                Ok(Err(e @ JoinError::Conflict(_))) => {
                    error(StatusCode::CONFLICT, "conflict", e.to_string())
                }
                Ok(Err(e @ (JoinError::Invalid(_) | JoinError::NotListed(_)))) => {
                    error(StatusCode::BAD_REQUEST, "invalid", e.to_string())
                }
                Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
            }
        }
        (m, p) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no admin route for {m} /{p}"),
        ),
    }
}
