//! How Tally's programs log: `tracing` events on stderr (so that they never mix with output
//! that scripts parse), filtered by an environment variable or a default. The node and the
//! operator log one line per event, as text or JSON (`--log-format`); the CLI logs without
//! targets and with colours only on a terminal.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// A server's text lines, with targets.
    Text,
    /// A server's JSON lines, for log collectors.
    Json,
    /// The CLI's: no targets, colour only on a terminal.
    Cli,
}

impl Style {
    /// `--log-format`: `json`, anything else is text.
    pub fn from_format(format: &str) -> Style {
        if format == "json" {
            Style::Json
        } else {
            Style::Text
        }
    }
}

/// Installs the global subscriber: the filter from environment variable `env` when it is set
/// and valid, else `default_filter`. A second call leaves the first subscriber in place.
pub fn init(style: Style, env: &str, default_filter: &str) {
    let filter = EnvFilter::try_from_env(env).unwrap_or_else(|_| EnvFilter::new(default_filter));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match style {
        Style::Json => b.json().try_init(),
        Style::Text => b.try_init(),
        Style::Cli => b
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
    };
}
