//! `tallyctl org`: an organization's CA and the identities it issues, in the folder layout
//! that nodes, `--identity` and `channel genesis --org` read.

use super::{non_empty, org_config, Ctx};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use tally_protocol::{Hash, OrgCa, Role};

#[derive(Subcommand, Debug)]
pub enum OrgCmd {
    /// Create an organization's CA and issue its first identities.
    Create {
        /// Organization name (letters, digits, '.', '_' and '-').
        #[arg(long)]
        name: String,
        /// Folder to write into (ca.pem, ca-key.pem, nodes/, admins/, clients/).
        #[arg(long)]
        out: PathBuf,
        /// Node identities to issue.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        /// Host names and IP addresses that node certificates are valid for.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
        node_hosts: Vec<String>,
        /// Admin identities to issue.
        #[arg(long, value_delimiter = ',', default_value = "admin")]
        admins: Vec<String>,
        /// Client identities to issue.
        #[arg(long, value_delimiter = ',', default_value = "client")]
        clients: Vec<String>,
    },
    /// Issue another identity from an existing CA.
    Issue {
        /// Organization folder holding ca.pem and ca-key.pem.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        role: Role,
        #[arg(long)]
        name: String,
        /// Host names and IP addresses (default for nodes: 127.0.0.1,localhost).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// Replace an existing identity of that name.
        #[arg(long)]
        force: bool,
    },
    /// Revoke one of the organization's certificates in a channel's configuration (a
    /// configuration transaction, approved by the admins at hand). The organization is the
    /// global --org (or the --identity's own); every node refuses the certificate from the
    /// next block on.
    Revoke(org_config::RevokeArgs),
    /// Rotation, step 1: list a new CA of the organization beside its current one.
    AddCa(org_config::AddCaArgs),
    /// Rotation, step 3 (after re-issuing identities from the new CA): remove the old CA.
    RemoveCa(org_config::RemoveCaArgs),
    /// Write the public bundle (OrganizationBundle YAML: CA certificates, nodes with Raft ids
    /// and addresses; no key) of an organization of the --data-dir consortium, for the other
    /// side of a consortium to give to its `tallyctl up -f` (or `kubectl tally org import`).
    Export {
        /// The organization (one this side hosts).
        #[arg(value_name = "ORG")]
        organization: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

impl OrgCmd {
    /// The channel a configuration change is for.
    pub fn channel(&self) -> Option<&str> {
        match self {
            OrgCmd::Revoke(a) => Some(&a.target.channel),
            OrgCmd::AddCa(a) => Some(&a.target.channel),
            OrgCmd::RemoveCa(a) => Some(&a.target.channel),
            OrgCmd::Create { .. } | OrgCmd::Issue { .. } | OrgCmd::Export { .. } => None,
        }
    }
}

/// Identity names become folder names: nothing that could climb out of the organization
/// folder or need quoting in a shell.
fn valid_ident_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n != "."
        && n != ".."
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_name(what: &str, n: &str) -> Result<()> {
    if !valid_ident_name(n) {
        bail!("{what} name {n:?} is invalid: use 1-64 letters, digits, '.', '_' or '-'");
    }
    Ok(())
}

#[derive(Serialize)]
struct Issued {
    role: Role,
    name: String,
    dir: PathBuf,
    cert_hash: Hash,
    hosts: Vec<String>,
}

fn issue(
    ca: &OrgCa,
    dir: &Path,
    role: Role,
    name: &str,
    hosts: &[String],
    force: bool,
) -> Result<Issued> {
    check_name(role.as_str(), name)?;
    let target = dir.join(role.folder()).join(name);
    if !force && target.join("cert.pem").exists() {
        bail!(
            "{} already holds an identity; pass --force to replace it",
            target.display()
        );
    }
    let hosts: Vec<String> = non_empty(hosts).map(str::to_string).collect();
    let id = ca
        .issue_into(dir, role, name, &hosts)
        .with_context(|| format!("issuing {role} {name}"))?;
    Ok(Issued {
        role,
        name: name.to_string(),
        dir: target,
        cert_hash: id.cert_hash,
        hosts,
    })
}

fn print_issued(
    ctx: &Ctx,
    org: &str,
    dir: &Path,
    created_ca: bool,
    issued: &[Issued],
) -> Result<()> {
    let json = json!({
        "org": org,
        "dir": dir,
        "ca": dir.join("ca.pem"),
        "created_ca": created_ca,
        "identities": issued,
    });
    ctx.show(&json, || {
        if created_ca {
            println!(
                "created CA of organization {org} in {}",
                dir.join("ca.pem").display()
            );
        }
        for i in issued {
            let hosts = if i.hosts.is_empty() {
                String::new()
            } else {
                format!(" (hosts {})", i.hosts.join(", "))
            };
            println!(
                "issued {} {} into {}{hosts}",
                i.role,
                i.name,
                i.dir.display()
            );
        }
    })
}

pub async fn run(ctx: &Ctx, cmd: OrgCmd) -> Result<()> {
    match cmd {
        OrgCmd::Revoke(a) => org_config::revoke(ctx, a).await,
        OrgCmd::AddCa(a) => org_config::add_ca(ctx, a).await,
        OrgCmd::RemoveCa(a) => org_config::remove_ca(ctx, a).await,
        OrgCmd::Export { organization, out } => {
            super::org_export::export(ctx, &organization, out.as_deref())
        }
        OrgCmd::Create {
            name,
            out,
            nodes,
            node_hosts,
            admins,
            clients,
        } => {
            check_name("organization", &name)?;
            for f in ["ca.pem", "ca-key.pem"] {
                if out.join(f).exists() {
                    bail!(
                        "{} already holds a CA ({f}); refusing to overwrite it. Use `tallyctl org issue --dir {}` \
                         to issue more identities from it",
                        out.display(),
                        out.display()
                    );
                }
            }
            let ca = OrgCa::generate(&name).context("generating the CA")?;
            ca.save(&out)
                .with_context(|| format!("writing the CA into {}", out.display()))?;
            let mut issued = Vec::new();
            for (role, names, hosts) in [
                (Role::Node, &nodes, &node_hosts[..]),
                (Role::Admin, &admins, &[][..]),
                (Role::Client, &clients, &[][..]),
            ] {
                for n in non_empty(names) {
                    issued.push(issue(&ca, &out, role, n, hosts, false)?);
                }
            }
            print_issued(ctx, &name, &out, true, &issued)
        }
        OrgCmd::Issue {
            dir,
            role,
            name,
            hosts,
            force,
        } => {
            if !dir.join("ca.pem").exists() || !dir.join("ca-key.pem").exists() {
                bail!("{} is not an organization folder (no ca.pem and ca-key.pem); create one with `tallyctl org create`", dir.display());
            }
            let ca = OrgCa::load(&dir)
                .with_context(|| format!("loading the CA from {}", dir.display()))?;
            let hosts = if hosts.is_empty() && role == Role::Node {
                vec!["127.0.0.1".to_string(), "localhost".to_string()]
            } else {
                hosts
            };
            let i = issue(&ca, &dir, role, &name, &hosts, force)?;
            let org = ca.org.clone();
            print_issued(ctx, &org, &dir, false, &[i])
        }
    }
}
