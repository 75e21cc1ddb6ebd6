use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("invalid URL {0:?}")]
    BadUrl(String),
    #[error("cannot reach {url}: {message}")]
    Transport { url: String, message: String },
    /// The node answered with an error status and an `ApiError` body.
    #[error("{status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        /// How long the node asked the client to wait before retrying (`Retry-After`).
        retry_after: Option<std::time::Duration>,
    },
    #[error("unexpected response from {url}: {message}")]
    BadResponse { url: String, message: String },
    #[error("timed out waiting for {0}")]
    Timeout(String),
    #[error(transparent)]
    Identity(#[from] tally_protocol::identity::IdentityError),
    /// An inclusion proof or a receipt did not check out.
    #[error("proof check failed: {0}")]
    Proof(String),
    /// TLS set-up of the admin client failed (bad CA or key material).
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    /// The machine code of an API error (`unknown_channel`, `no_leader`, ...), if this is one.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The wait a node asked for before a retry (its `Retry-After` header), if it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ClientError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the node could not be reached (connection refused, reset, DNS...): another
    /// node may be tried, and a resubmission of the same transaction is safe.
    pub fn is_transport(&self) -> bool {
        matches!(self, ClientError::Transport { .. })
    }

    /// True for errors that may go away on their own: no node reachable, no leader yet,
    /// a commit wait that ran out, a node that is overloaded.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } | ClientError::Timeout(_) => true,
            ClientError::Api { status, code, .. } => {
                matches!(*status, 429 | 502..=504) || code == "no_leader" || code == "timeout"
            }
            _ => false,
        }
    }
}
