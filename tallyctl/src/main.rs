//! `tallyctl`: the command line for people. Organizations and identities, transactions,
//! queries, blocks, channel status and channel creation; the commands live in `cli/`.

mod cli;

use clap::Parser;
use cli::{Cli, Exit};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing(cli.verbose);
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
    let result = rt.block_on(cli::run(cli));
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
