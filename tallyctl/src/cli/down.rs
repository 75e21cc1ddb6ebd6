//! `tallyctl down`: removes the data directory of a local consortium, after making sure it is
//! one and that nothing runs from it.

use super::up::{default_dir, the_consortium};
use super::Ctx;
use anyhow::{bail, Result};
use clap::Args;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;
use tally_api::manifest::Resources;
use tally_client::Profile;

#[derive(Args, Debug)]
pub struct DownArgs {
    /// The manifests given to `up`; they name the default data directory `.tally/CONSORTIUM`.
    #[arg(short = 'f', long = "file", value_delimiter = ',')]
    pub files: Vec<PathBuf>,
}

pub fn run(ctx: &Ctx, args: DownArgs) -> Result<()> {
    let dir = match (&ctx.data_dir, args.files.is_empty()) {
        (Some(d), _) => d.clone(),
        (None, false) => {
            let res = Resources::read_files(&args.files)?;
            default_dir(&the_consortium(&res, &args.files)?.1)
        }
        (None, true) => {
            bail!("say which consortium to remove: --data-dir DIR, or -f FILE as given to `up`")
        }
    };
    if !dir.exists() {
        eprintln!("{} does not exist; nothing to remove", dir.display());
        return Ok(());
    }
    let ours = ["up.json", "cluster.json", "profile.json"]
        .iter()
        .any(|f| dir.join(f).is_file());
    if !ours {
        bail!(
            "{} does not look like a data directory of `tallyctl up` (no up.json, cluster.json or profile.json); not removing it",
            dir.display()
        );
    }
    if let Ok(profile) = Profile::load(&dir) {
        // Nodes without an admin address run elsewhere (the other side of a consortium) and
        // answer whatever this side does.
        for n in profile.nodes.iter().filter(|n| !n.admin_addr.is_empty()) {
            if answers(&n.api_url) {
                bail!(
                    "the consortium in {} is still running ({} answers at {}); stop `tallyctl up` with Ctrl-C first",
                    dir.display(),
                    n.name,
                    n.api_url
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir)?;
    eprintln!("removed {}", dir.display());
    Ok(())
}

/// Whether something accepts connections at the host:port of a URL.
pub(super) fn answers(url: &str) -> bool {
    let hostport = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or_default();
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}
