//! The plumbing every request goes through: building it (signed with the reader identity
//! when it is a GET), sending it within the client's time limit, reading a bounded body and
//! the `Retry-After` the node asked for, decoding JSON, and mapping error answers to
//! [`ClientError`]. The API rooms (`submit`, `reads`, `follow`) only name paths and types.

use super::relay::{RelayBody, RelayError};
use super::url::percent_encode;
use super::{Client, Http};
use crate::error::ClientError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use std::time::Duration;
use tally_protocol::api::ApiError;

/// Largest response body read into memory.
const MAX_BODY: usize = 256 * 1024 * 1024;

impl Client {
    fn bad_response(&self, message: impl Into<String>) -> ClientError {
        ClientError::BadResponse {
            url: self.inner.url.clone(),
            message: message.into(),
        }
    }

    pub(super) fn channel_path(channel: &str, rest: &str) -> String {
        format!("/v1/channels/{}{}", percent_encode(channel), rest)
    }

    /// Sends a request and returns the response head with its body stream.
    pub(super) async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<Response<RelayBody>, ClientError> {
        // A relay is given the node-relative path: it knows how to reach the node.
        let uri = match &self.inner.http {
            Http::Direct(_) => format!("{}{}", self.inner.url, path_and_query),
            Http::Relayed(_) => path_and_query.to_string(),
        };
        let mut req = Request::builder().method(method.clone()).uri(&uri);
        req = req.header(ACCEPT, HeaderValue::from_static("application/json"));
        if let (true, Some(id)) = (method == Method::GET, &self.reader) {
            let (cert, auth) = tally_protocol::read_auth::sign(
                id,
                method.as_str(),
                path_and_query,
                tally_protocol::now_ms(),
            );
            req = req
                .header(tally_protocol::read_auth::CERT_HEADER, cert)
                .header(tally_protocol::read_auth::AUTH_HEADER, auth);
        }
        let body = match body {
            Some((ct, b)) => {
                req = req.header(CONTENT_TYPE, HeaderValue::from_static(ct));
                Full::new(b)
            }
            None => Full::new(Bytes::new()),
        };
        let req = req
            .body(body)
            .map_err(|e| ClientError::BadUrl(format!("{uri}: {e}")))?;
        tracing::debug!(%uri, method = %req.method(), "request");
        let answer = match &self.inner.http {
            Http::Direct(http) => match http.request(req).await {
                Ok(r) => Ok(r.map(boxed)),
                Err(e) => Err(error_chain(&e)),
            },
            Http::Relayed(relay) => relay.round_trip(req).await.map_err(|e| e.0),
        };
        answer.map_err(|message| ClientError::Transport {
            url: self.inner.url.clone(),
            message,
        })
    }

    /// Sends a request and reads the whole answer, within the client's time limit.
    pub(super) async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Bytes)>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        self.call_full(method, path_and_query, body, timeout)
            .await
            .map(|(s, _, b)| (s, b))
    }

    /// [`Client::call`], with the wait the node asked for before a retry (`Retry-After`, in
    /// seconds).
    pub(super) async fn call_full(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Bytes)>,
        timeout: Duration,
    ) -> Result<(StatusCode, Option<Duration>, Bytes), ClientError> {
        let fut = async {
            let resp = self.send(method, path_and_query, body).await?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(60)));
            let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| ClientError::Transport {
                    url: self.inner.url.clone(),
                    message: format!("reading the response: {e}"),
                })?
                .to_bytes();
            Ok((status, retry_after, body))
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(format!(
                "an answer from {}{} ({} ms)",
                self.inner.url,
                path_and_query,
                timeout.as_millis()
            ))),
        }
    }

    pub(super) fn parse<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(body).map_err(|e| {
            self.bad_response(format!(
                "{e} in {}",
                String::from_utf8_lossy(truncate(body, 200))
            ))
        })
    }

    pub(super) async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (status, body) = self.call(Method::GET, path, None, self.timeout).await?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        self.parse(&body)
    }

    /// Like [`get_json`], but a 404 that is not about the channel itself is `None`.
    pub(super) async fn get_json_opt<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, ClientError> {
        match self.get_opt(path).await? {
            Some(body) => self.parse(&body).map(Some),
            None => Ok(None),
        }
    }

    /// The body of a GET of something that may be absent: `None` on a 404 that is not about
    /// the channel itself (`unknown_channel` stays an error, as does any other failure).
    pub(super) async fn get_opt(&self, path: &str) -> Result<Option<Bytes>, ClientError> {
        let (status, body) = self.call(Method::GET, path, None, self.timeout).await?;
        if status == StatusCode::NOT_FOUND {
            let e = api_error(status, &body);
            return match e.api_code() {
                Some("unknown_channel") => Err(e),
                _ => Ok(None),
            };
        }
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        Ok(Some(body))
    }

    /// A GET whose answer is only its status: Ok(true) on success.
    pub(super) async fn probe(&self, path: &str) -> Result<bool, ClientError> {
        let (status, _) = self.call(Method::GET, path, None, self.timeout).await?;
        Ok(status.is_success())
    }
}

/// A direct connection's body, typed as a relay's.
fn boxed(b: hyper::body::Incoming) -> RelayBody {
    b.map_err(|e| RelayError(error_chain(&e))).boxed_unsync()
}

/// Maps an error answer to [`ClientError::Api`], from its `ApiError` body when it has one.
pub(crate) fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => ClientError::Api {
            status: status.as_u16(),
            code: e.code,
            message: e.error,
            retry_after: None,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(truncate(body, 300))
                .trim()
                .to_string();
            let code = status
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase()
                .replace(' ', "_");
            let message = if text.is_empty() {
                status.to_string()
            } else {
                text
            };
            ClientError::Api {
                status: status.as_u16(),
                code,
                message,
                retry_after: None,
            }
        }
    }
}

fn truncate(b: &[u8], n: usize) -> &[u8] {
    &b[..b.len().min(n)]
}

/// An error with its sources, `a: b: c`, without repeats.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_are_mapped() {
        let e = api_error(
            StatusCode::NOT_FOUND,
            br#"{"error":"no such channel","code":"unknown_channel"}"#,
        );
        match e {
            ClientError::Api {
                status,
                code,
                message,
                ..
            } => {
                assert_eq!(
                    (status, code.as_str(), message.as_str()),
                    (404, "unknown_channel", "no such channel")
                );
            }
            other => panic!("{other:?}"),
        }
        let e = api_error(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(e.api_code(), Some("bad_gateway"));
        assert!(e.to_string().contains("upstream down"));
        assert!(e.is_retryable());
    }
}
