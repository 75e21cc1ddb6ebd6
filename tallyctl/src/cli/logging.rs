//! Logs on stderr, so that they never mix with the output that scripts parse.

use std::io::IsTerminal;

pub fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info,tally_client=info,tallyctl=info",
        2 => "info,tally_client=debug,tallyctl=debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("TALLY_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
