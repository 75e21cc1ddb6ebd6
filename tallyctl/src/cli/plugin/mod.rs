//! `kubectl-tally`, the kubectl plugin: a consortium's story from the API server in one
//! command (`status`), a node's logs by its name (`logs`), and every `tallyctl` command
//! (`profile export`, `tx`, `blocks`, ...) under the same name, so one binary serves both the
//! cluster view and the ledger.

mod render;
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
    /// A node's logs, by the node's name (the pod of a Peer's StatefulSet).
    Logs(LogsArgs),
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
        PluginCmd::Tallyctl(args) => {
            let argv = std::iter::once(OsString::from("kubectl tally")).chain(args);
            let inner = super::Cli::try_parse_from(argv).unwrap_or_else(|e| e.exit());
            Box::pin(super::run(inner)).await
        }
    }
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
    let views: Vec<ConsortiumView> = chosen
        .into_iter()
        .map(|c| consortium_view(c, &peers, &channels, &chaincodes))
        .collect();
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
