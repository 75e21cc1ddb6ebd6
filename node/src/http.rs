//! Small HTTP helpers shared by the client and admin APIs.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use serde::Serialize;
use std::convert::Infallible;
use std::time::Duration;
use tally_protocol::api::ApiError;

/// Time for a request's body to arrive once its header has: a client that sends part of a
/// body and falls silent must not hold a handler forever.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// What a refusal for load or an election asks the client to wait, in seconds.
pub const RETRY_AFTER_S: u64 = 1;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

pub fn json<T: Serialize>(status: StatusCode, v: &T) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full("")))
}

pub fn error(status: StatusCode, code: &str, msg: impl Into<String>) -> Response<Body> {
    json(
        status,
        &ApiError {
            error: msg.into(),
            code: code.to_string(),
        },
    )
}

/// An error the client should retry after a pause: the answer carries `Retry-After`.
pub fn retry_later(status: StatusCode, code: &str, msg: impl Into<String>) -> Response<Body> {
    let mut r = error(status, code, msg);
    r.headers_mut()
        .insert(hyper::header::RETRY_AFTER, RETRY_AFTER_S.into());
    r
}

/// Why a request body was not read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Timeout,
    Broken(String),
}

impl BodyError {
    /// 413, 408 or 400 with a message (callers with their own 413 handle `TooLarge` first).
    pub fn into_response(self) -> Response<Body> {
        match self {
            BodyError::TooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "request body exceeds the limit",
            ),
            BodyError::Timeout => error(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            ),
            BodyError::Broken(e) => error(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("cannot read body: {e}"),
            ),
        }
    }
}

/// Reads a request body of at most `limit` bytes within [`BODY_TIMEOUT`].
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge)
        }
        Ok(Err(e)) => Err(BodyError::Broken(e.to_string())),
    }
}

/// An API error not yet turned into a response: small enough to return in a `Result`.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    /// A 503 (the node is busy, not the request wrong) asks the client to retry later.
    pub fn into_response(self) -> Response<Body> {
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            return retry_later(self.status, self.code, self.message);
        }
        error(self.status, self.code, self.message)
    }
}

pub fn text(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full("")))
}

/// Decodes `%XX` escapes and `+` in a query component.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The value of `name` in a query string, decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| percent_decode(v)).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        assert_eq!(
            query_param(Some("a=1&key=x%2Fy+z"), "key").as_deref(),
            Some("x/y z")
        );
        assert_eq!(query_param(Some("a=1"), "key"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%e2%82%ac").as_deref(), Some("€"));
    }
}
