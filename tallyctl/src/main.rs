//! `tallyctl`: the command line for people. Organizations and identities, transactions,
//! queries, blocks, channel status and channel creation; the commands live in `cli/` of the
//! library, which `kubectl-tally` shares.

use clap::Parser;
use std::process::ExitCode;
use tallyctl::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing(cli.verbose);
    cli::entry::run_to_exit(cli::run(cli))
}
