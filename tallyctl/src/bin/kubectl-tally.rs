//! `kubectl-tally`: the kubectl plugin (`kubectl tally status`, `logs`, and every tallyctl
//! command). Put it on the PATH and kubectl finds it.

use clap::Parser;
use std::process::ExitCode;
use tallyctl::cli::{self, plugin};

fn main() -> ExitCode {
    let cli = plugin::PluginCli::parse();
    cli::init_tracing(cli.verbose);
    cli::entry::run_to_exit(plugin::run(cli))
}
