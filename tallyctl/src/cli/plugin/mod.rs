//! `kubectl-tally`, the kubectl plugin: a consortium's story from the API server in one
//! command (`status`), a node's logs by its name (`logs`), the ledger through the API server
//! (`tx put|get`, `proposals`, `approve`, `reject`), an organization's bundle for members in
//! other clusters (`org export|import`), and every other `tallyctl` command
//! (`profile export`, `blocks`, ...) under the same name, so one binary serves both the
//! cluster view and the ledger.

mod backups;
mod ledger;
mod org_bundle;
mod reach;
mod render;
mod signer;
#[cfg(test)]
mod tests;
mod view;

pub use render::{render, Paint};
pub use view::{consortium_view, ConsortiumView};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use tally_api::chaincode::Chaincode;
use tally_api::channel::Channel;
use tally_api::cluster;
use tally_api::consortium::Consortium;
use tally_api::peer::Peer;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-tally",
    bin_name = "kubectl tally",
    version,
    about = "Tally consortia on a Kubernetes cluster: status, node logs, and every tallyctl command",
    long_about = None
)]
pub struct PluginCli {
    /// Kubeconfig of the cluster; the usual lookup (KUBECONFIG, ~/.kube/config, in-cluster)
    /// when absent.
    #[arg(long, global = true, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace; the kubeconfig context's when absent.
    #[arg(long, short = 'n', global = true)]
    namespace: Option<String>,
    /// More logs on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    cmd: PluginCmd,
}

#[derive(Subcommand, Debug)]
enum PluginCmd {
    /// A consortium as a tree: organizations with their CA, Peers and nodes (ready, height per
    /// channel), channels (height, leader, agreement, configuration), chaincodes and who has
    /// approved them. All consortia of the namespace when none is named.
    Status(StatusArgs),
    /// A node's logs, by the node's name (its pod's name).
    Logs(LogsArgs),
    /// Signed writes and reads of a channel's keys, through the API server.
    #[command(subcommand)]
    Tx(TxCmd),
    /// A channel's proposals (all channels of the namespace when none is named): status,
    /// approvals n/m and who has not voted.
    Proposals(ProposalsArgs),
    /// Approve a proposal as an organization's admin.
    Approve(VoteArgs),
    /// Reject a proposal as an organization's admin.
    Reject(VoteArgs),
    /// Backups of a channel: `create` one now, `list` the Backups; `verify URL` and the rest
    /// are tallyctl's.
    #[command(subcommand)]
    Backup(backups::BackupCmd),
    /// Members in other clusters: `export ORG` writes an organization's public bundle (CA
    /// certificates, nodes' Raft ids and addresses), `import FILE` adds it to a Consortium
    /// here as an external member; `create`, `issue` and the rest are tallyctl's.
    #[command(subcommand)]
    Org(org_bundle::OrgCmd),
    /// Any tallyctl command, e.g. `kubectl tally profile export --consortium C --data-dir D`.
    #[command(external_subcommand)]
    Tallyctl(Vec<OsString>),
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// The Consortium to show.
    consortium: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    output: Format,
    /// When to colour the text: `auto` on a terminal unless NO_COLOR is set.
    #[arg(long, value_enum, default_value_t = When::Auto)]
    color: When,
}

#[derive(Args, Debug)]
struct LogsArgs {
    /// The node, e.g. `bank-0` (a Peer's name and the replica's ordinal).
    node: String,
    /// Keep printing new lines.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<i64>,
    /// The previous (crashed) container's logs.
    #[arg(long, short = 'p')]
    previous: bool,
}

#[derive(Subcommand, Debug)]
enum TxCmd {
    /// Put KEY = VALUE (text) in CHANNEL, signed by the organization's client identity, and
    /// wait for the commit.
    Put {
        channel: String,
        key: String,
        value: String,
        #[command(flatten)]
        who: ledger::SignerArgs,
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
        output: Format,
    },
    /// Read KEY's current value in CHANNEL (the read is signed: --org or --identity, else the
    /// first member organization whose client identity the cluster keeps).
    Get {
        channel: String,
        key: String,
        #[command(flatten)]
        who: ledger::SignerArgs,
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
        output: Format,
    },
    /// tallyctl's other `tx` commands (delete, history, receipt), with a profile.
    #[command(external_subcommand)]
    Tallyctl(Vec<OsString>),
}

#[derive(Args, Debug)]
struct ProposalsArgs {
    /// The channel; every channel of the namespace when absent.
    channel: Option<String>,
    #[command(flatten)]
    who: ledger::SignerArgs,
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    output: Format,
}

#[derive(Args, Debug)]
struct VoteArgs {
    channel: String,
    /// The proposal's hash, or a unique prefix of it (at least 4 hex digits).
    hash: String,
    #[command(flatten)]
    who: ledger::SignerArgs,
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    output: Format,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum When {
    Auto,
    Always,
    Never,
}

/// Runs the plugin. Unknown subcommands are tallyctl's.
pub async fn run(cli: PluginCli) -> Result<()> {
    match cli.cmd {
        PluginCmd::Status(a) => status(cli.kubeconfig, cli.namespace, a).await,
        PluginCmd::Logs(a) => logs(cli.kubeconfig, cli.namespace, a).await,
        PluginCmd::Tx(c) => tx(cli.kubeconfig, cli.namespace, c).await,
        PluginCmd::Proposals(a) => proposals(cli.kubeconfig, cli.namespace, a).await,
        PluginCmd::Approve(a) => vote(cli.kubeconfig, cli.namespace, a, true).await,
        PluginCmd::Reject(a) => vote(cli.kubeconfig, cli.namespace, a, false).await,
        PluginCmd::Backup(c) => backup(cli.kubeconfig, cli.namespace, c).await,
        PluginCmd::Org(org_bundle::OrgCmd::Tallyctl(rest)) => {
            tallyctl(std::iter::once(OsString::from("org")).chain(rest)).await
        }
        PluginCmd::Org(c) => {
            let (kube, ns) = client(cli.kubeconfig, cli.namespace).await?;
            org_bundle::run(kube, ns, c).await
        }
        PluginCmd::Tallyctl(args) => tallyctl(args).await,
    }
}

/// Runs a tallyctl command line (without the program name).
async fn tallyctl(args: impl IntoIterator<Item = OsString>) -> Result<()> {
    let argv = std::iter::once(OsString::from("kubectl tally")).chain(args);
    let inner = super::Cli::try_parse_from(argv).unwrap_or_else(|e| e.exit());
    Box::pin(super::run(inner)).await
}

async fn client(
    kubeconfig: Option<PathBuf>,
    namespace: Option<String>,
) -> Result<(kube::Client, String)> {
    let kube = cluster::client(kubeconfig.as_deref()).await?;
    let ns = namespace.unwrap_or_else(|| kube.default_namespace().to_string());
    Ok((kube, ns))
}

async fn status(
    kubeconfig: Option<PathBuf>,
    namespace: Option<String>,
    a: StatusArgs,
) -> Result<()> {
    let (kube, ns) = client(kubeconfig, namespace).await?;
    let lp = ListParams::default();
    let consortia = Api::<Consortium>::namespaced(kube.clone(), &ns)
        .list(&lp)
        .await
        .with_context(|| {
            format!("listing Consortia in namespace {ns} (are Tally's CRDs installed?)")
        })?
        .items;
    let chosen: Vec<&Consortium> = match &a.consortium {
        Some(name) => {
            let Some(c) = consortia
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(name.as_str()))
            else {
                let names: Vec<String> = consortia
                    .iter()
                    .filter_map(|c| c.metadata.name.clone())
                    .collect();
                bail!(
                    "no Consortium {name:?} in namespace {ns} (there: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                );
            };
            vec![c]
        }
        None if consortia.is_empty() => bail!("no Consortium in namespace {ns}"),
        None => consortia.iter().collect(),
    };
    let peers = Api::<Peer>::namespaced(kube.clone(), &ns)
        .list(&lp)
        .await?
        .items;
    let channels = Api::<Channel>::namespaced(kube.clone(), &ns)
        .list(&lp)
        .await?
        .items;
    let chaincodes = Api::<Chaincode>::namespaced(kube.clone(), &ns)
        .list(&lp)
        .await?
        .items;
    let mut views: Vec<ConsortiumView> = chosen
        .into_iter()
        .map(|c| consortium_view(c, &peers, &channels, &chaincodes))
        .collect();
    // Older installs may lack the Backup kind: status goes on without it.
    let backups = backups::list(&kube, &ns, None).await.unwrap_or_default();
    for v in &mut views {
        for c in &mut v.channels {
            c.pending = Some(pending(&kube, &ns, &c.name).await);
            c.last_backup = view::last_backup(&backups, &c.name);
        }
    }
    match a.output {
        Format::Json if a.consortium.is_some() && views.len() == 1 => {
            println!("{}", serde_json::to_string_pretty(&views[0])?)
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&views)?),
        Format::Text => {
            let paint = match a.color {
                When::Always => Paint::Colour,
                When::Never => Paint::Plain,
                When::Auto
                    if std::io::stdout().is_terminal()
                        && std::env::var_os("NO_COLOR").is_none() =>
                {
                    Paint::Colour
                }
                When::Auto => Paint::Plain,
            };
            let text: Vec<String> = views.iter().map(|v| render(v, paint)).collect();
            print!("{}", text.join("\n"));
        }
    }
    Ok(())
}

/// A channel's open proposals, read from its nodes as any member whose identity the cluster
/// keeps; what went wrong otherwise, so that status still shows the rest.
async fn pending(kube: &kube::Client, ns: &str, channel: &str) -> view::Pending {
    let who = ledger::SignerArgs::default();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        ledger::proposals(kube, ns, channel, &who),
    )
    .await;
    match read {
        Ok(Ok(list)) => view::Pending::Read(
            list.iter()
                .filter(|p| p.status == tally_protocol::proposal::Status::Open)
                .map(|p| view::PendingProposal {
                    hash: p.hash.to_hex(),
                    approvals: p.tally.approved.len(),
                    needed: p.tally.needed,
                    missing: p.tally.missing.clone(),
                    description: p.proposal.description.clone(),
                })
                .collect(),
        ),
        Ok(Err(e)) => view::Pending::Unknown(format!("{e:#}")),
        Err(_) => view::Pending::Unknown("no node answered within 15 s".into()),
    }
}

async fn backup(
    kubeconfig: Option<PathBuf>,
    namespace: Option<String>,
    cmd: backups::BackupCmd,
) -> Result<()> {
    use backups::BackupCmd as B;
    let to_tallyctl =
        |rest: Vec<OsString>| tallyctl(std::iter::once(OsString::from("backup")).chain(rest));
    match cmd {
        B::Tallyctl(rest) => to_tallyctl(rest).await,
        // A repository rather than a channel: what the repository holds.
        B::List {
            channel: Some(url),
            output,
        } if url.contains("://") => {
            let mut rest = vec![OsString::from("list"), OsString::from(url)];
            if output == Format::Json {
                rest.extend([OsString::from("-o"), OsString::from("json")]);
            }
            to_tallyctl(rest).await
        }
        cmd => {
            let (kube, ns) = client(kubeconfig, namespace).await?;
            backups::run(kube, ns, cmd).await
        }
    }
}

async fn logs(kubeconfig: Option<PathBuf>, namespace: Option<String>, a: LogsArgs) -> Result<()> {
    let (kube, ns) = client(kubeconfig, namespace).await?;
    let pods: Api<Pod> = Api::namespaced(kube.clone(), &ns);
    if pods.get_opt(&a.node).await?.is_none() {
        let peers = Api::<Peer>::namespaced(kube, &ns)
            .list(&ListParams::default())
            .await?
            .items;
        let nodes: Vec<String> = peers
            .iter()
            .flat_map(|p| {
                let name = p.metadata.name.clone().unwrap_or_default();
                (0..p.spec.replicas.max(0)).map(move |i| tally_planner::node_name(&name, i))
            })
            .collect();
        bail!(
            "no node {:?} in namespace {ns} (nodes there: {})",
            a.node,
            if nodes.is_empty() {
                "none".to_string()
            } else {
                nodes.join(", ")
            }
        );
    }
    let lp = LogParams {
        follow: a.follow,
        tail_lines: a.tail,
        previous: a.previous,
        ..LogParams::default()
    };
    let mut lines = pods
        .log_stream(&a.node, &lp)
        .await
        .with_context(|| format!("logs of {ns}/{}", a.node))?
        .lines();
    while let Some(line) = lines.try_next().await? {
        println!("{line}");
    }
    Ok(())
}

async fn tx(kubeconfig: Option<PathBuf>, namespace: Option<String>, cmd: TxCmd) -> Result<()> {
    if let TxCmd::Tallyctl(args) = cmd {
        return tallyctl(std::iter::once(OsString::from("tx")).chain(args)).await;
    }
    let (kube, ns) = client(kubeconfig, namespace).await?;
    match cmd {
        TxCmd::Put {
            channel,
            key,
            value,
            who,
            output,
        } => {
            let r = ledger::put(&kube, &ns, &channel, &key, &value, &who).await?;
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                Format::Text => println!("{}", crate::cli::receipt::receipt_line(&r)),
            }
        }
        TxCmd::Get {
            channel,
            key,
            who,
            output,
        } => {
            let kv = ledger::get(&kube, &ns, &channel, &key, &who).await?;
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&kv)?),
                Format::Text => println!("{}", ledger::value_text(&kv)),
            }
        }
        TxCmd::Tallyctl(_) => {}
    }
    Ok(())
}

async fn proposals(
    kubeconfig: Option<PathBuf>,
    namespace: Option<String>,
    a: ProposalsArgs,
) -> Result<()> {
    let (kube, ns) = client(kubeconfig, namespace).await?;
    let channels = match a.channel {
        Some(c) => vec![c],
        None => {
            let all: Vec<String> = Api::<Channel>::namespaced(kube.clone(), &ns)
                .list(&ListParams::default())
                .await
                .with_context(|| format!("listing Channels in namespace {ns}"))?
                .items
                .into_iter()
                .filter_map(|c| c.metadata.name)
                .collect();
            if all.is_empty() {
                bail!("no Channel in namespace {ns}");
            }
            all
        }
    };
    let mut json = serde_json::Map::new();
    for ch in &channels {
        let list = ledger::proposals(&kube, &ns, ch, &a.who).await?;
        let lines: Vec<ledger::ProposalLine> = list.iter().map(ledger::ProposalLine::new).collect();
        match a.output {
            Format::Json => {
                json.insert(ch.clone(), serde_json::to_value(&lines)?);
            }
            Format::Text => {
                let n = lines.len();
                println!(
                    "Channel {ns}/{ch}: {n} proposal{}",
                    if n == 1 { "" } else { "s" }
                );
                for l in &lines {
                    println!("  {}", l.text());
                }
            }
        }
    }
    if a.output == Format::Json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    Ok(())
}

async fn vote(
    kubeconfig: Option<PathBuf>,
    namespace: Option<String>,
    a: VoteArgs,
    approve: bool,
) -> Result<()> {
    let (kube, ns) = client(kubeconfig, namespace).await?;
    let (r, after) = ledger::vote(&kube, &ns, &a.channel, &a.hash, approve, &a.who).await?;
    let line = after.as_ref().map(ledger::ProposalLine::new);
    match a.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"receipt": r, "proposal": line}))?
        ),
        Format::Text => {
            println!(
                "{} in block {} ({})",
                if approve { "approved" } else { "rejected" },
                r.block,
                short_tx(&r)
            );
            if let Some(l) = line {
                println!("{}", l.text());
            }
        }
    }
    Ok(())
}

fn short_tx(r: &tally_protocol::Receipt) -> String {
    format!("tx {}", crate::cli::output::short(&r.tx_id))
}
