//! `tallyctl channel`: a channel's genesis configuration (`genesis.rs`), creating the channel
//! on its nodes through their admin API, and the configuration in force.

use super::genesis::{self, GenesisArgs};
use super::output::raft_role_name;
use super::progress::Spinner;
use super::{non_empty, Ctx, Exit};
use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;
use tally_client::AdminClient;
use tally_protocol::Role;

#[derive(Subcommand, Debug)]
pub enum ChannelCmd {
    /// Create a channel on nodes through their admin API (mutual TLS, --identity is the admin).
    Create {
        /// host:port of a node's admin listener; repeat or separate by commas.
        #[arg(long, value_delimiter = ',', required = true)]
        admin_addr: Vec<String>,
        /// The nodes' organization CA certificate (default: ca.pem in the --identity folder).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Genesis configuration (JSON, as `channel genesis` writes it).
        #[arg(long)]
        genesis: PathBuf,
        /// Another member organization's approval of the genesis (`channel approve-genesis`
        /// writes one); repeat for each. --identity's own organization approves by this
        /// command. The nodes refuse a genesis that any member has not approved.
        #[arg(long)]
        approval: Vec<PathBuf>,
    },
    /// Review a channel's genesis and approve it as --identity's organization (an admin):
    /// prints what it agrees to and the approval (JSON) to give the channel's creator, or to
    /// put in the Channel's `spec.genesisApprovals` on a cluster.
    ApproveGenesis {
        /// The genesis (JSON: as `channel genesis` writes it, or the `genesis.json` of the
        /// operator's `CHANNEL-genesis` ConfigMap).
        #[arg(long)]
        genesis: PathBuf,
        /// Write the approval to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a channel's genesis configuration.
    Genesis(GenesisArgs),
    /// Print the configuration in force (JSON): the starting point of a proposal's
    /// `--config`.
    Config {
        #[arg(long, short)]
        channel: String,
    },
    /// Retire the channel: a proposal that its admin organizations approve (all at once with
    /// the admins at hand, or later with `proposal approve` when --propose). Once applied,
    /// every node refuses new transactions on it and keeps serving reads; then its nodes
    /// may leave it (`channel leave`).
    Retire {
        #[arg(long, short)]
        channel: String,
        #[command(flatten)]
        args: super::retire::RetireArgs,
    },
    /// Have nodes leave the channel: stop serving it and delete its data. A node refuses
    /// while the configuration in force lists it, unless the channel was retired.
    Leave(super::retire::LeaveArgs),
}

impl ChannelCmd {
    pub fn channel(&self) -> Option<&str> {
        match self {
            ChannelCmd::Config { channel } | ChannelCmd::Retire { channel, .. } => Some(channel),
            ChannelCmd::Leave(a) => Some(&a.channel),
            _ => None,
        }
    }
}

pub async fn run(ctx: &Ctx, cmd: ChannelCmd) -> Result<()> {
    match cmd {
        ChannelCmd::Genesis(a) => genesis::write(ctx, &a),
        ChannelCmd::ApproveGenesis { genesis, out } => {
            super::genesis_approval::approve(ctx, &genesis, out.as_deref())
        }
        ChannelCmd::Retire { channel, args } => {
            super::retire::retire(ctx, &channel, tally_protocol::Change::RetireChannel, &args).await
        }
        ChannelCmd::Leave(a) => super::retire::leave(ctx, &a).await,
        ChannelCmd::Config { channel } => {
            let (_, config) = ctx
                .on_any(|c| {
                    let channel = channel.clone();
                    async move { c.config(&channel).await }
                })
                .await?;
            super::output::print_json(&config)
        }
        ChannelCmd::Create {
            admin_addr,
            ca,
            genesis,
            approval,
        } => {
            let config = super::genesis_approval::read_genesis(&genesis)?;
            let mut approvals = super::genesis_approval::read_approvals(&config, &approval)?;
            let id = ctx.identity()?;
            if id.info.role != Role::Admin {
                bail!("the identity is a {} certificate; the admin API needs an admin identity (ORG/admins/NAME)", id.info.role);
            }
            let own = super::genesis_approval::sign(ctx, &config)?;
            approvals.push(tally_protocol::Approval {
                certificate: own.certificate,
                signature: own.signature,
            });
            let cas = config.validate()?;
            approvals = tally_protocol::genesis::merge(&config, &cas, approvals);
            if let Err(e) = tally_protocol::genesis::check(&config, &cas, &approvals) {
                bail!("{e}; pass each missing organization's approval with --approval FILE");
            }
            let ca_path = match ca {
                Some(p) => p,
                None => ctx
                    .identity_dir()
                    .map(|d| d.join("ca.pem"))
                    .ok_or_else(|| anyhow!("pass --ca"))?,
            };
            let ca_pem = std::fs::read_to_string(&ca_path)
                .with_context(|| format!("reading the CA certificate {}", ca_path.display()))?;
            let spinner = Spinner::start(format!("creating channel {}", config.name));
            let mut results = Vec::new();
            let mut failed = 0;
            for addr in non_empty(&admin_addr) {
                spinner.set(format!("creating channel {} on {addr}", config.name));
                let r = match AdminClient::new(addr, &ca_pem, &id) {
                    Ok(admin) => admin.create_channel(&config, &approvals).await,
                    Err(e) => Err(e),
                };
                if r.is_err() {
                    failed += 1;
                }
                results.push((addr.to_string(), r));
            }
            drop(spinner);
            let v: Vec<_> = results
                .iter()
                .map(|(addr, r)| match r {
                    Ok(s) => json!({"admin_addr": addr, "ok": true, "status": s}),
                    Err(e) => json!({"admin_addr": addr, "ok": false, "error": e.to_string()}),
                })
                .collect();
            let json = json!({"channel": config.name, "config_hash": config.hash(), "results": v});
            ctx.show(&json, || {
                for (addr, r) in &results {
                    match r {
                        Ok(s) => println!(
                            "channel {} on {addr}: node {} ({}), height {}, {}",
                            config.name,
                            s.node,
                            raft_role_name(s.role).unwrap_or_default(),
                            s.height,
                            if s.ready { "ready" } else { "starting" }
                        ),
                        Err(e) => println!("channel {} on {addr}: FAILED: {e}", config.name),
                    }
                }
            })?;
            if failed > 0 {
                return Err(Exit(
                    1,
                    format!(
                        "error: channel creation failed on {failed} of {} nodes",
                        results.len()
                    ),
                )
                .into());
            }
            Ok(())
        }
    }
}
