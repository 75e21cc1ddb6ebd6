//! The admin API, served over mutual TLS to administrators of the node's own organization.

use crate::http::{error, json, Body};
use crate::leave::LeaveError;
use crate::node::{JoinError, Joined, Node};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use tally_protocol::api::ChannelInfo;
use tally_protocol::genesis::ChannelCreation;
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
                .map(|c| serde_json::json!({"channel": c.ledger.name, "config_hash": c.ledger.in_force().hash, "status": c.status()}))
                .collect();
            json(StatusCode::OK, &serde_json::json!({ "channels": list }))
        }
        (Method::POST, "v1/admin/leadership/release") => {
            let n = node.clone();
            match tokio::task::spawn_blocking(move || {
                n.release_leadership(std::time::Duration::from_secs(5))
            })
            .await
            {
                Ok(released) => {
                    let status = if released.iter().any(|r| r.leading) {
                        StatusCode::CONFLICT
                    } else {
                        StatusCode::OK
                    };
                    json(status, &serde_json::json!({ "channels": released }))
                }
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
            }
        }
        (m @ (Method::GET | Method::POST), p)
            if p.starts_with("v1/admin/channels/") && p.contains("/backups") =>
        {
            crate::backup_routes::handle(&node, &caller, m, p, req.into_body()).await
        }
        (Method::GET, p) if p.starts_with("v1/admin/channels/") => {
            let name = &p["v1/admin/channels/".len()..];
            match node.channel(name) {
                Some(ch) => json(
                    StatusCode::OK,
                    &ChannelInfo {
                        genesis: (*ch.ledger.genesis).clone(),
                        config: (*ch.ledger.config()).clone(),
                        status: ch.status(),
                        retired: ch.ledger.retired(),
                        approvals: node.genesis_approvals(name),
                    },
                ),
                None => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("this node does not serve channel {name}"),
                ),
            }
        }
        (Method::DELETE, p) if p.starts_with("v1/admin/channels/") => {
            let name = p["v1/admin/channels/".len()..].to_string();
            let n = node.clone();
            let left = tokio::task::spawn_blocking(move || n.leave(&name)).await;
            match left {
                Ok(Ok(left)) => {
                    tracing::info!(channel = %left.channel, admin = %caller.subject, "channel left by admin");
                    json(StatusCode::OK, &left)
                }
                Ok(Err(e @ LeaveError::NotFound(_))) => {
                    error(StatusCode::NOT_FOUND, "not_found", e.to_string())
                }
                Ok(Err(e @ LeaveError::StillListed { .. })) => {
                    error(StatusCode::CONFLICT, "still_member", e.to_string())
                }
                Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
            }
        }
        (Method::POST, "v1/admin/channels") => {
            let body = match crate::http::read_body(req.into_body(), MAX_CONFIG).await {
                Ok(b) => b,
                Err(e) => return e.into_response(),
            };
            // A genesis with its approvals and, to join a changed channel, the configuration
            // in force. A bare configuration is answered with what is missing.
            let creation = match serde_json::from_slice::<ChannelCreation>(&body) {
                Ok(c) => c,
                Err(e) => {
                    let why = if serde_json::from_slice::<ChannelConfig>(&body).is_ok() {
                        "a channel configuration alone is not enough: send {\"genesis\": ..., \"approvals\": [...]} with every member organization's approval of the genesis (`tallyctl channel approve-genesis`)".to_string()
                    } else {
                        format!("body is not a channel creation request ({{genesis, approvals, config?}}): {e}")
                    };
                    return error(StatusCode::BAD_REQUEST, "malformed", why);
                }
            };
            let name = creation.genesis.name.clone();
            let n = node.clone();
            let joined = tokio::task::spawn_blocking(move || n.join(creation)).await;
            match joined {
                Ok(Ok(Joined::Created(ch))) => {
                    tracing::info!(channel = %name, admin = %caller.subject, "channel created by admin");
                    json(StatusCode::CREATED, &ch.status())
                }
                Ok(Ok(Joined::Existing(ch))) => json(StatusCode::OK, &ch.status()),
                Ok(Err(e @ JoinError::Conflict(_))) => {
                    error(StatusCode::CONFLICT, "conflict", e.to_string())
                }
                Ok(Err(e @ JoinError::NotApproved(_))) => {
                    error(StatusCode::FORBIDDEN, "not_approved", e.to_string())
                }
                Ok(Err(
                    e @ (JoinError::Invalid(_)
                    | JoinError::NotListed(_)
                    | JoinError::Mismatch { .. }),
                )) => error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
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
