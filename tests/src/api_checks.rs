//! API error bodies and Prometheus text, as the suites check them.

use crate::*;

use tally_client::ClientError;
use tally_protocol::api::ApiError;

/// Asserts that an answer is the documented API error: this status, a JSON `ApiError` body
/// with this code and a non-empty message. Returns the error.
pub fn assert_api_error(case: &str, got: (u16, &[u8]), status: u16, code: &str) -> ApiError {
    let (st, body) = got;
    let text = String::from_utf8_lossy(body);
    assert_eq!(
        st, status,
        "{case}: expected status {status} ({code}), got {st} with body {text}"
    );
    let err: ApiError = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!("{case}: the error body is not {{\"error\", \"code\"}} JSON ({e}): {text}")
    });
    assert_eq!(
        err.code, code,
        "{case}: expected code {code:?}, got {:?} ({})",
        err.code, err.error
    );
    assert!(
        !err.error.trim().is_empty(),
        "{case}: the error message is empty"
    );
    err
}

/// Same check for an error the client library returned.
pub fn assert_client_api_error(case: &str, e: &ClientError, status: u16, code: &str) {
    match e {
        ClientError::Api {
            status: s,
            code: c,
            message,
            ..
        } => {
            assert_eq!(
                (*s, c.as_str()),
                (status, code),
                "{case}: expected {status} {code}, got {s} {c}: {message}"
            );
            assert!(
                !message.trim().is_empty(),
                "{case}: the error message is empty"
            );
        }
        other => panic!("{case}: expected API error {status} {code}, got {other}"),
    }
}

/// The node's `/metrics` text.
pub async fn metrics(api_url: &str) -> String {
    let (status, body) = http::get(&format!("{api_url}/metrics"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "GET {api_url}/metrics answered {status}");
    String::from_utf8(body).expect("metrics are UTF-8")
}

/// The value of the sample `name{labels}` in Prometheus text (labels given must all match;
/// others are ignored). `None` when absent.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(r) = rest.strip_prefix('{') {
            match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            }
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue; // another metric whose name starts with `name`
        };
        let all = labels.iter().all(|(k, v)| {
            label_text
                .split(',')
                .any(|kv| kv.trim() == format!("{k}=\"{v}\""))
        });
        if all {
            return value.split_whitespace().next().and_then(|v| v.parse().ok());
        }
    }
    None
}
