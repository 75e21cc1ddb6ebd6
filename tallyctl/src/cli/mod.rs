//! The `tallyctl` command line: flags, subcommands, and what every subcommand shares (the
//! node list with its fallbacks, the signing identity, text or JSON output, exit statuses).

mod backup;
mod blocks;
mod chaincode;
mod channel;
mod config_diff;
mod console;
mod demo;
mod down;
pub mod entry;
mod follow;
mod genesis;
mod genesis_approval;
mod identity;
mod keys;
mod logging;
mod observe;
mod org;
mod org_config;
mod org_export;
mod output;
pub mod plugin;
mod profile_export;
mod progress;
mod proposal;
mod receipt;
mod renew;
mod retire;
mod status;
mod tx;
mod up;
mod up_approvals;
mod up_sides;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use std::future::Future;
use std::path::PathBuf;
use tally_client::{ApiTrust, Client, ClientError, Profile};
use tally_protocol::Identity;

pub use logging::init_tracing;

/// Exit status of a transaction that the channel rejected, so that scripts can tell a
/// rejection from a failure to reach the channel (1).
pub const EXIT_REJECTED: u8 = 3;

#[derive(Parser, Debug)]
#[command(name = "tallyctl", version, about = "Command line of Tally ledgers", long_about = None)]
pub struct Cli {
    /// Client API URL of a node; repeat or separate by commas to give fallbacks (tried in order).
    /// Default: the nodes of the --data-dir profile, else https://127.0.0.1:7051.
    #[arg(
        long = "node",
        global = true,
        value_delimiter = ',',
        env = "TALLY_NODE"
    )]
    nodes: Vec<String>,
    /// Folder with cert.pem and key.pem of the identity to sign with (e.g. ORG/clients/client).
    #[arg(long, global = true, env = "TALLY_IDENTITY")]
    identity: Option<PathBuf>,
    /// Data directory of a consortium started by `tallyctl up`: its profile.json gives the nodes
    /// and, with --org, the identity to sign with.
    #[arg(long, global = true, env = "TALLY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Organization to act as, from the --data-dir profile.
    #[arg(long, global = true, env = "TALLY_ORG")]
    org: Option<String>,
    /// Which identity of the --org to use: `client` or `admin`.
    #[arg(
        long = "as",
        global = true,
        default_value = "client",
        value_name = "IDENTITY"
    )]
    as_identity: String,
    /// CA certificate (PEM) to verify nodes' TLS certificates with; repeat or separate by
    /// commas. Added to the CAs of the --data-dir profile and the ca.pem of --identity.
    #[arg(
        long = "node-ca",
        global = true,
        value_delimiter = ',',
        env = "TALLY_NODE_CA"
    )]
    cas: Vec<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// More logs on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Organizations: certificate authorities and the identities they issue.
    #[command(subcommand)]
    Org(org::OrgCmd),
    /// Write, read and trace keys.
    #[command(subcommand)]
    Tx(tx::TxCmd),
    /// Chaincode: install, approve, commit, list, invoke, query.
    #[command(subcommand)]
    Chaincode(chaincode::ChaincodeCmd),
    /// List keys in key order.
    Keys(keys::KeysArgs),
    /// Read or follow blocks.
    #[command(subcommand)]
    Blocks(blocks::BlocksCmd),
    /// Status of every node of a channel, and whether they agree.
    Status(status::StatusArgs),
    /// Create channels, write genesis configurations, print the configuration in force.
    #[command(subcommand)]
    Channel(channel::ChannelCmd),
    /// Governance: propose configuration changes, review, approve or reject them.
    #[command(subcommand)]
    Proposal(proposal::ProposalCmd),
    /// Start a local 3-node consortium on loopback, run a short demo load, follow blocks.
    Demo(demo::DemoArgs),
    /// Run the consortium described by YAML manifests as local processes, until Ctrl-C.
    Up(up::UpArgs),
    /// Remove the data directory of a local consortium.
    Down(down::DownArgs),
    /// Backups of a channel's ledger to object storage: create, list, verify.
    #[command(subcommand)]
    Backup(backup::BackupCmd),
    /// Put channels back on the stopped nodes of a local consortium from a backup.
    Restore(backup::RestoreArgs),
    /// Client profiles: export one from a cluster.
    #[command(subcommand)]
    Profile(profile_export::ProfileCmd),
}

impl Cmd {
    /// The channel the command works on, so that a profile's nodes can be narrowed to those
    /// that serve it.
    fn channel(&self) -> Option<&str> {
        match self {
            Cmd::Tx(c) => Some(c.channel()),
            Cmd::Chaincode(c) => Some(c.channel()),
            Cmd::Keys(a) => Some(a.channel()),
            Cmd::Blocks(c) => Some(c.channel()),
            Cmd::Status(a) => Some(a.channel()),
            Cmd::Org(c) => c.channel(),
            Cmd::Proposal(c) => Some(c.channel()),
            Cmd::Channel(c) => c.channel(),
            _ => None,
        }
    }
}

/// An error that carries its own exit status.
#[derive(Debug)]
pub struct Exit(pub u8, pub String);
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}
impl std::error::Error for Exit {}

/// Where the signing identity comes from.
enum IdentitySource {
    None,
    Dir(PathBuf),
    Profile {
        dir: PathBuf,
        profile: Box<Profile>,
        org: String,
        name: String,
    },
}

/// What every subcommand gets from the global flags.
pub struct Ctx {
    nodes: Vec<Client>,
    /// What nodes' TLS certificates are verified against; `None` when no CA was given.
    trust: Option<ApiTrust>,
    identity: IdentitySource,
    output: Output,
    data_dir: Option<PathBuf>,
}

pub async fn run(cli: Cli) -> Result<()> {
    let local = matches!(
        cli.cmd,
        Cmd::Up(_)
            | Cmd::Down(_)
            | Cmd::Demo(_)
            | Cmd::Profile(_)
            | Cmd::Restore(_)
            | Cmd::Backup(_)
    );
    let profile = match (&cli.data_dir, local) {
        (Some(dir), false) => Some(Profile::load(dir)?),
        _ => None,
    };
    if cli.org.is_some() && profile.is_none() && !local {
        bail!("--org needs --data-dir DIR, the data directory of a consortium started by `tallyctl up`");
    }
    if let (Some(p), Some(org)) = (&profile, &cli.org) {
        p.org(org)?;
    }
    let explicit: Vec<&str> = non_empty(&cli.nodes).collect();
    let urls = match (&profile, explicit.is_empty()) {
        (Some(p), true) => p.api_urls(cli.cmd.channel(), cli.org.as_deref()),
        (_, true) => vec!["https://127.0.0.1:7051".to_string()],
        (_, false) => explicit.iter().map(|s| s.to_string()).collect(),
    };
    let trust = api_trust(&cli, profile.as_ref())?;
    let mut nodes = Vec::new();
    if let Some(trust) = &trust {
        for n in &urls {
            // A node the profile lists is verified against its own organization's CA only.
            let own = match (&profile, &cli.data_dir, cli.cas.is_empty()) {
                (Some(p), Some(dir), true) if p.nodes.iter().any(|x| &x.api_url == n) => {
                    Some(p.trust_for(dir, n)?)
                }
                _ => None,
            };
            let t = own.as_ref().unwrap_or(trust);
            let name = profile.as_ref().and_then(|p| p.server_name_for(n));
            nodes.push(Client::reaching(n, name, t).with_context(|| format!("--node {n}"))?);
        }
    }
    if nodes.is_empty() && trust.is_some() {
        match (&profile, cli.cmd.channel()) {
            (Some(p), Some(ch)) => bail!(
                "channel {ch:?} is not in the profile of consortium {:?} (channels: {})",
                p.consortium,
                p.channels
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => bail!("no node to talk to: the profile lists none"),
        }
    }
    let identity = match (cli.identity, profile, cli.org, &cli.data_dir) {
        (Some(dir), _, _, _) => IdentitySource::Dir(dir),
        (None, Some(profile), Some(org), Some(dir)) => IdentitySource::Profile {
            dir: dir.clone(),
            profile: Box::new(profile),
            org,
            name: cli.as_identity,
        },
        _ => IdentitySource::None,
    };
    // Reads are signed with the same identity as writes, when there is one.
    let reader = match &identity {
        IdentitySource::None => None,
        _ if local => None,
        _ => Some(load_identity(&identity)?),
    };
    if let Some(id) = reader {
        nodes = nodes
            .into_iter()
            .map(|c| c.with_reader(id.clone()))
            .collect();
    }
    let ctx = Ctx {
        nodes,
        trust,
        identity,
        output: cli.output,
        data_dir: cli.data_dir,
    };
    match cli.cmd {
        Cmd::Org(c) => org::run(&ctx, c).await,
        Cmd::Tx(c) => tx::run(&ctx, c).await,
        Cmd::Chaincode(c) => chaincode::run(&ctx, c).await,
        Cmd::Keys(a) => keys::run(&ctx, a).await,
        Cmd::Blocks(c) => blocks::run(&ctx, c).await,
        Cmd::Status(a) => status::run(&ctx, a).await,
        Cmd::Channel(c) => channel::run(&ctx, c).await,
        Cmd::Proposal(c) => proposal::run(&ctx, c).await,
        Cmd::Demo(a) => demo::run(&ctx, a).await,
        Cmd::Up(a) => up::run(&ctx, a).await,
        Cmd::Down(a) => down::run(&ctx, a),
        Cmd::Profile(c) => profile_export::run(&ctx, c).await,
        Cmd::Backup(c) => backup::run(&ctx, c).await,
        Cmd::Restore(a) => backup::restore(&ctx, a).await,
    }
}

impl Ctx {
    fn json(&self) -> bool {
        self.output == Output::Json
    }

    /// The folder of the signing identity (it also holds the CA certificate as ca.pem).
    fn identity_dir(&self) -> Option<PathBuf> {
        match &self.identity {
            IdentitySource::Dir(dir) => Some(dir.clone()),
            IdentitySource::Profile {
                dir,
                profile,
                org,
                name,
            } => profile
                .org(org)
                .ok()?
                .identities
                .iter()
                .find(|i| &i.name == name)
                .map(|i| dir.join(&i.dir)),
            IdentitySource::None => None,
        }
    }

    fn identity(&self) -> Result<Identity> {
        load_identity(&self.identity)
    }

    /// Runs `f` against each node in turn until one answers; a node that cannot be reached
    /// is skipped, any other error is final.
    async fn on_any<T, F, Fut>(&self, f: F) -> Result<(Client, T)>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        if self.trust.is_none() {
            bail!("{NO_TRUST}");
        }
        let mut failures = Vec::new();
        for (i, c) in self.nodes.iter().enumerate() {
            match f(c.clone()).await {
                Ok(v) => return Ok((c.clone(), v)),
                Err(e) if e.is_transport() => {
                    if i + 1 < self.nodes.len() {
                        tracing::warn!("{e}; trying the next node");
                    }
                    failures.push(e.to_string());
                }
                Err(e) => return Err(explain(e, c.url())),
            }
        }
        if failures.len() == 1 {
            bail!("{}", failures.remove(0))
        }
        bail!("no node reachable: {}", failures.join("; "))
    }

    /// Prints `json` with `--output json`, else runs `text`; every command answers in both
    /// forms, and this keeps the choice in one place.
    /// The client API URL of a node as the profile in use lists it.
    fn profile_url(&self, node: &str) -> Option<String> {
        match &self.identity {
            IdentitySource::Profile { profile, .. } => profile
                .nodes
                .iter()
                .find(|n| n.name == node)
                .map(|n| n.api_url.clone()),
            _ => None,
        }
    }

    fn show<T: Serialize + ?Sized>(&self, json: &T, text: impl FnOnce()) -> Result<()> {
        if self.json() {
            output::print_json(json)
        } else {
            text();
            Ok(())
        }
    }
}

const NO_TRUST: &str = "no CA certificate to verify the nodes' TLS certificates with: give \
    --data-dir DIR (its profile lists the organizations' CAs), --node-ca FILE, or --identity DIR \
    with a ca.pem";

/// The CAs nodes are verified against: the profile's organizations, `--ca` files and the
/// `ca.pem` beside an `--identity`; `None` when there are none.
fn api_trust(cli: &Cli, profile: Option<&Profile>) -> Result<Option<ApiTrust>> {
    let mut pems = Vec::new();
    for p in &cli.cas {
        pems.push(
            std::fs::read_to_string(p).with_context(|| format!("--node-ca {}", p.display()))?,
        );
    }
    if let Some(dir) = &cli.identity {
        if let Ok(pem) = std::fs::read_to_string(dir.join("ca.pem")) {
            pems.push(pem);
        }
    }
    let mut trust = if pems.is_empty() {
        None
    } else {
        Some(ApiTrust::from_ca_pems(&pems)?)
    };
    if let (Some(p), Some(dir)) = (profile, &cli.data_dir) {
        let from_profile = p.trust(dir)?;
        trust = Some(match trust {
            Some(t) => t.and(&from_profile),
            None => from_profile,
        });
    }
    Ok(trust)
}

impl Ctx {
    /// A client of `url`, verified like the others.
    fn client(&self, url: &str) -> Result<Client> {
        let trust = self.trust.as_ref().ok_or_else(|| anyhow!("{NO_TRUST}"))?;
        // A profile may say which name the node's certificate carries (the URL is a pod IP).
        let name = match &self.identity {
            IdentitySource::Profile { profile, .. } => profile.server_name_for(url),
            _ => None,
        };
        Ok(Client::reaching(url, name, trust)?)
    }
}

fn load_identity(source: &IdentitySource) -> Result<Identity> {
    match source {
        IdentitySource::Dir(dir) => identity::load(dir),
        IdentitySource::Profile {
            dir,
            profile,
            org,
            name,
        } => Ok(profile.identity(dir, org, name)?),
        IdentitySource::None => Err(anyhow!(
            "this command needs an identity: pass --data-dir DIR --org ORG (a consortium started by \
             `tallyctl up`), or --identity DIR (a folder with cert.pem and key.pem, e.g. \
             ORG/clients/client), or set TALLY_IDENTITY"
        )),
    }
}

/// Adds the node's URL and a hint to an API error.
fn explain(e: ClientError, url: &str) -> anyhow::Error {
    let hint = match e.api_code() {
        Some("unknown_channel") => " (check the channel name; `GET /v1/channels` lists what the node serves)",
        Some("no_leader") => " (the channel has no leader yet; try again in a moment)",
        Some("not_member") => " (the identity's organization is not a member of the channel)",
        Some("read_unauthenticated") => " (reads of a channel's data are signed: pass --data-dir DIR --org ORG, or --identity DIR)",
        Some("unknown_certificate") => " (the channel has not recorded this certificate: sign without --cert-hash once)",
        Some("forbidden") => " (the identity's role or organization may not do this)",
        Some("revoked") => " (its organization revoked this certificate in the channel configuration: use another identity)",
        Some("retired") => " (an approved proposal retired it: reads still work, `tallyctl proposal list` shows which)",
        Some("bad_signature") => " (the key does not match the certificate, or the transaction was altered)",
        Some("expired") => " (the transaction's timestamp is outside the channel's window: check this machine's clock)",
        _ => "",
    };
    match e {
        ClientError::Api { .. } => anyhow!("{url}: {e}{hint}"),
        other => anyhow::Error::new(other),
    }
}

/// The items of a comma-separated list flag, trimmed, without the empty ones that a stray
/// comma leaves.
fn non_empty(items: &[String]) -> impl Iterator<Item = &str> {
    items.iter().map(|s| s.trim()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "tallyctl",
            "--node",
            "https://a:1,https://b:2",
            "--output",
            "json",
            "tx",
            "put",
            "--channel",
            "ch",
            "k",
            "v",
            "--no-wait",
        ])
        .unwrap();
        assert_eq!(c.nodes, ["https://a:1", "https://b:2"]);
        assert!(matches!(
            c.cmd,
            Cmd::Tx(tx::TxCmd::Put {
                opts: tx::WriteOpts { no_wait: true, .. },
                ..
            })
        ));
    }
}
