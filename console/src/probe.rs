//! What a node tells anyone about itself outside the client API: its TLS certificate's expiry,
//! read from the gauge on its open `/metrics` page (the same one the alert rules watch).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// The node's gauge of its TLS certificate's expiry (monitoring/src/names.rs).
const CERT_EXPIRY: &str = "tally_certificate_expiry_timestamp_seconds";
/// A node's metrics page is tens of kilobytes; more is not a metrics page.
const MAX_METRICS: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct Probe {
    http: hyper_util::client::legacy::Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl Probe {
    pub fn new(timeout: Duration) -> Probe {
        let mut c = HttpConnector::new();
        c.set_connect_timeout(Some(timeout));
        Probe {
            http: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(c),
            timeout,
        }
    }

    /// Unix seconds at which the node's certificate expires; `None` when the node does not say.
    pub async fn cert_expiry(&self, api_url: &str) -> Option<i64> {
        let uri: hyper::Uri = format!("{}/metrics", api_url.trim_end_matches('/'))
            .parse()
            .ok()?;
        let fetch = async {
            let resp = self.http.get(uri).await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body = Limited::new(resp.into_body(), MAX_METRICS)
                .collect()
                .await
                .ok()?
                .to_bytes();
            gauge(std::str::from_utf8(&body).ok()?, CERT_EXPIRY)
        };
        let v = tokio::time::timeout(self.timeout, fetch).await.ok()??;
        (v.is_finite() && v > 0.0).then_some(v as i64)
    }
}

/// The value of the first sample of `name` in Prometheus text format, labels or not.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let value = match rest.chars().next()? {
            '{' => rest.split_once('}')?.1,
            ' ' => rest,
            _ => return None, // a longer metric name with this prefix
        };
        value.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_is_found_with_or_without_labels() {
        let text = "# HELP x\ntally_certificate_expiry_timestamp_seconds_total 1\n\
                    tally_certificate_expiry_timestamp_seconds{node=\"n1\"} 1.8e9\n";
        assert_eq!(gauge(text, CERT_EXPIRY), Some(1.8e9));
        assert_eq!(
            gauge(
                "tally_certificate_expiry_timestamp_seconds 42\n",
                CERT_EXPIRY
            ),
            Some(42.0)
        );
        assert_eq!(gauge("other 1\n", CERT_EXPIRY), None);
    }
}
