//! Reaching a node through something other than a direct TLS connection: a [`Relay`] carries
//! each request (path and query relative to the node's API root, headers, body) and brings back
//! the answer. The Kubernetes API server's pod proxy is one (kubectl-tally uses it); the
//! requests keep their signatures (signed transactions, signed reads), so the node still
//! decides who asked, whoever relayed them.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::Full;
use hyper::{Request, Response};

/// What went wrong on the way, in words (a concrete type: boxed trait objects as body errors
/// make the client's futures lose `Send` under the body adapters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RelayError(pub String);

/// An answer's body, as any relay returns it.
pub type RelayBody = UnsyncBoxBody<Bytes, RelayError>;

/// Carries requests to one node. The request's URI is the node-relative path and query
/// (`/v1/channels/...`), exactly as the node will see it (reads are signed over it).
pub trait Relay: Send + Sync + 'static {
    fn round_trip(
        &self,
        req: Request<Full<Bytes>>,
    ) -> BoxFuture<'static, Result<Response<RelayBody>, RelayError>>;
}
