//! What both binaries (`tallyctl` and `kubectl-tally`) do around a command: start the async
//! runtime, run it, and turn its error into a message on stderr and an exit status.

use super::Exit;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

/// Runs `command` on a small runtime and exits as it says.
pub fn run_to_exit<F>(command: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(command);
    // do not wait for lingering connection tasks
    rt.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(Exit(code, msg)) => {
                if !msg.is_empty() {
                    eprintln!("{msg}");
                }
                ExitCode::from(*code)
            }
            None => {
                eprintln!("error: {}", error_text(&e));
                ExitCode::FAILURE
            }
        },
    }
}

/// The error and its causes, `a: b: c`, leaving out causes that an outer message already
/// quotes.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let m = cause.to_string();
        if out.contains(&m) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn causes_already_quoted_are_left_out() {
        let inner: anyhow::Result<()> = Err(anyhow::anyhow!("connection refused"));
        let e = inner
            .context("GET /status: connection refused")
            .context("status of channel main")
            .unwrap_err();
        assert_eq!(
            error_text(&e),
            "status of channel main: GET /status: connection refused"
        );
    }
}
