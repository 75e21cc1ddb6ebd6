//! Logs on stderr, so that they never mix with the output that scripts parse; verbosity from
//! `-v`, or the filter in `TALLY_LOG`.

use tally_monitoring::logging::{init, Style};

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,tally_client=info,tallyctl=info",
        2 => "info,tally_client=debug,tallyctl=debug",
        _ => "trace",
    };
    init(Style::Cli, "TALLY_LOG", default);
}
