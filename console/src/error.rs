//! Why a page could not be shown, and the HTTP status that says so.

use hyper::StatusCode;
use tally_client::ClientError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConsoleError {
    #[error("no node that this console reaches serves channel {0:?}")]
    UnknownChannel(String),
    /// The node refused the organization's signed read: its certificate is from no member CA.
    #[error("organization {org} is not a member of channel {channel}")]
    NotMember { channel: String, org: String },
    /// A member outside the channel's `readers` policy.
    #[error("organization {org} is a member of channel {channel} but not one of its readers")]
    NotReader { channel: String, org: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("no node of channel {channel} could be reached: {errors}")]
    Unreachable { channel: String, errors: String },
    #[error("{0}")]
    Node(#[from] ClientError),
    #[error("{0}")]
    Config(String),
}

impl ConsoleError {
    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::UnknownChannel(_) | ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::NotMember { .. } | ConsoleError::NotReader { .. } => {
                StatusCode::FORBIDDEN
            }
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Unreachable { .. } | ConsoleError::Node(_) => StatusCode::BAD_GATEWAY,
            ConsoleError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Maps a node's refusal of a read of `channel` by `org` to what it means here.
    pub fn from_node(channel: &str, org: &str, e: ClientError) -> ConsoleError {
        match e.api_code() {
            Some("not_member") => ConsoleError::NotMember {
                channel: channel.to_string(),
                org: org.to_string(),
            },
            Some("forbidden") => ConsoleError::NotReader {
                channel: channel.to_string(),
                org: org.to_string(),
            },
            Some("unknown_channel") => ConsoleError::UnknownChannel(channel.to_string()),
            Some("not_found") => ConsoleError::NotFound(e.to_string()),
            _ => ConsoleError::Node(e),
        }
    }
}
