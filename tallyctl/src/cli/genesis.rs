//! `tallyctl channel genesis`: a channel's first configuration from flags, checked as the
//! nodes will check it, so that a mistake shows here rather than at channel creation.

use super::Ctx;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::json;
use std::path::{Path, PathBuf};
use tally_protocol::identity::ca_org;
use tally_protocol::{BatchConfig, ChannelConfig, NodeRef, OrgMember, Policies};

#[derive(Args, Debug, Clone, Default)]
pub struct GenesisArgs {
    /// Channel name (1-63 of a-z, 0-9, '-').
    #[arg(long)]
    name: String,
    /// Member organization: NAME=ORG_DIR, or just ORG_DIR (the name comes from its CA);
    /// ORG_DIR holds ca.pem, or is the CA's PEM file itself. Repeat for each member.
    #[arg(long = "member", required = true)]
    orgs: Vec<String>,
    /// Raft voter: ID:NAME:ORG:PEER_HOST:PEER_PORT:API_URL, e.g. 1:n1:acme:127.0.0.1:7052:https://127.0.0.1:7051.
    #[arg(long = "consenter", required = true)]
    consenters: Vec<String>,
    /// Non-voting node (Raft learner), same form as --consenter.
    #[arg(long = "observer")]
    observers: Vec<String>,
    #[arg(long)]
    batch_max_txs: Option<u32>,
    #[arg(long)]
    batch_max_bytes: Option<u32>,
    #[arg(long)]
    batch_timeout_ms: Option<u32>,
    #[arg(long)]
    snapshot_interval: Option<u64>,
    #[arg(long)]
    max_tx_bytes: Option<u32>,
    /// Accepted distance between a transaction's timestamp and the block time, in seconds.
    #[arg(long)]
    tx_window_s: Option<u32>,
    /// Organizations allowed to write (default: every member).
    #[arg(long, value_delimiter = ',')]
    writers: Vec<String>,
    /// Organizations allowed to read (default: every member).
    #[arg(long, value_delimiter = ',')]
    readers: Vec<String>,
    /// Organizations that administer the channel (default: every member).
    #[arg(long = "admin-orgs", value_delimiter = ',')]
    admin_orgs: Vec<String>,
    /// Output file, `-` for stdout.
    #[arg(long)]
    out: PathBuf,
}

/// Writes the configuration to --out (`-`: stdout, where it is the only output).
pub fn write(ctx: &Ctx, a: &GenesisArgs) -> Result<()> {
    let config = build_genesis(a, read_ca_pem)?;
    let text = serde_json::to_string_pretty(&config)? + "\n";
    if a.out.as_os_str() == "-" {
        print!("{text}");
        return Ok(());
    }
    std::fs::write(&a.out, text).with_context(|| format!("writing {}", a.out.display()))?;
    let json = json!({"channel": config.name, "file": a.out, "config_hash": config.hash()});
    ctx.show(&json, || {
        println!(
            "wrote the genesis configuration of channel {} to {} (config hash {})",
            config.name,
            a.out.display(),
            config.hash()
        )
    })
}

/// The CA certificate of an organization folder, or the PEM file itself.
fn read_ca_pem(p: &Path) -> Result<String> {
    let file = if p.is_dir() {
        p.join("ca.pem")
    } else {
        p.to_path_buf()
    };
    std::fs::read_to_string(&file)
        .with_context(|| format!("reading the CA certificate {}", file.display()))
}

/// `NAME=DIR` or `DIR`.
fn parse_org_spec(s: &str) -> (Option<&str>, &str) {
    match s.split_once('=') {
        Some((name, dir)) if !name.is_empty() => (Some(name), dir),
        _ => (None, s),
    }
}

/// `ID:NAME:ORG:PEER_HOST:PEER_PORT:API_URL`; the peer host may be `[v6]`; API_URL gets
/// `https://` when it has no scheme.
pub fn parse_node_spec(s: &str) -> Result<NodeRef> {
    let bad =
        |why: &str| anyhow!("node {s:?}: {why} (expected ID:NAME:ORG:PEER_HOST:PEER_PORT:API_URL)");
    let mut parts = s.splitn(4, ':');
    let id = parts.next().unwrap_or_default();
    let name = parts.next().ok_or_else(|| bad("missing NAME"))?;
    let org = parts.next().ok_or_else(|| bad("missing ORG"))?;
    let rest = parts
        .next()
        .ok_or_else(|| bad("missing the peer address"))?;
    let id: u64 = id.trim().parse().map_err(|_| bad("ID is not a number"))?;
    if id == 0 {
        return Err(bad("ID 0 is reserved"));
    }
    if name.is_empty() || org.is_empty() {
        return Err(bad("empty NAME or ORG"));
    }
    let host_end = if rest.starts_with('[') {
        rest.find(']')
            .map(|i| i + 1)
            .ok_or_else(|| bad("unclosed '['"))?
    } else {
        rest.find(':').ok_or_else(|| bad("missing the peer port"))?
    };
    let host = &rest[..host_end];
    let after = rest[host_end..]
        .strip_prefix(':')
        .ok_or_else(|| bad("missing the peer port"))?;
    let (port, api) = after
        .split_once(':')
        .ok_or_else(|| bad("missing API_URL"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad("bad peer HOST:PORT"));
    }
    if api.is_empty() {
        return Err(bad("missing API_URL"));
    }
    let api_url = if api.contains("://") {
        api.to_string()
    } else {
        format!("https://{api}")
    };
    tally_client::client::normalize_url(&api_url).map_err(|e| bad(&e.to_string()))?;
    Ok(NodeRef {
        id,
        name: name.to_string(),
        org: org.to_string(),
        peer_addr: format!("{host}:{port}"),
        api_url: api_url.trim_end_matches('/').to_string(),
    })
}

fn parse_node_specs(specs: &[String]) -> Result<Vec<NodeRef>> {
    specs.iter().map(|s| parse_node_spec(s)).collect()
}

fn build_genesis(
    a: &GenesisArgs,
    read_ca: impl Fn(&Path) -> Result<String>,
) -> Result<ChannelConfig> {
    if !tally_protocol::config::valid_name(&a.name) {
        bail!(
            "channel name {:?} is invalid: use 1-63 characters of a-z, 0-9 and '-'",
            a.name
        );
    }
    let mut members = Vec::new();
    for spec in &a.orgs {
        let (name, dir) = parse_org_spec(spec);
        let ca_pem = read_ca(Path::new(dir))?;
        let named =
            ca_org(&ca_pem).with_context(|| format!("--member {spec}: the CA certificate"))?;
        if let Some(n) = name {
            if n != named {
                bail!(
                    "--member {spec}: the CA in {dir} belongs to organization {named:?}, not {n:?}"
                );
            }
        }
        members.push(OrgMember::new(&named, &ca_pem));
    }
    let consenters = parse_node_specs(&a.consenters)?;
    let observers = parse_node_specs(&a.observers)?;
    let d = BatchConfig::default();
    let mut config = ChannelConfig {
        name: a.name.clone(),
        members,
        consenters,
        observers,
        batch: BatchConfig {
            max_txs: a.batch_max_txs.unwrap_or(d.max_txs),
            max_bytes: a.batch_max_bytes.unwrap_or(d.max_bytes),
            timeout_ms: a.batch_timeout_ms.unwrap_or(d.timeout_ms),
        },
        policies: Policies {
            writers: a.writers.clone(),
            readers: a.readers.clone(),
            admins: a.admin_orgs.clone(),
            ..Policies::default()
        },
        // the serde defaults of the optional fields
        ..serde_json::from_value(json!({"name": "", "members": [], "consenters": []}))?
    };
    if let Some(n) = a.snapshot_interval {
        config.snapshot_interval = n;
    }
    if let Some(n) = a.max_tx_bytes {
        config.max_tx_bytes = n;
    }
    if let Some(n) = a.tx_window_s {
        config.tx_window_s = n;
    }
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::OrgCa;

    #[test]
    fn node_specs_parse() {
        let n = parse_node_spec("1:n1:acme:127.0.0.1:7052:https://127.0.0.1:7051").unwrap();
        assert_eq!(
            n,
            NodeRef {
                id: 1,
                name: "n1".into(),
                org: "acme".into(),
                peer_addr: "127.0.0.1:7052".into(),
                api_url: "https://127.0.0.1:7051".into()
            }
        );
        let n = parse_node_spec("2:n2:acme:node-2.ns.svc:7052:node-2.ns.svc:7051/").unwrap();
        assert_eq!(n.peer_addr, "node-2.ns.svc:7052");
        assert_eq!(n.api_url, "https://node-2.ns.svc:7051");
        let n = parse_node_spec("3:n3:acme:[::1]:7052:https://[::1]:7051").unwrap();
        assert_eq!(n.peer_addr, "[::1]:7052");
        assert_eq!(n.api_url, "https://[::1]:7051");
        for bad in [
            "",
            "x:n1:acme:h:1:https://h:2",
            "0:n1:acme:h:1:https://h:2",
            "1:n1:acme",
            "1:n1:acme:h",
            "1:n1:acme:h:port:https://h:2",
            "1:n1:acme:h:1",
            "1:n1:acme:h:1:",
            "1::acme:h:1:https://h:2",
            "1:n1:acme:[::1:1:https://h:2",
        ] {
            assert!(parse_node_spec(bad).is_err(), "{bad:?} should fail");
        }
        assert_eq!(
            parse_org_spec("acme=/tmp/acme"),
            (Some("acme"), "/tmp/acme")
        );
        assert_eq!(parse_org_spec("/tmp/acme"), (None, "/tmp/acme"));
    }

    #[test]
    fn genesis_from_flags() {
        let acme = OrgCa::generate("acme").unwrap();
        let bank = OrgCa::generate("bank").unwrap();
        let (acme_pem, bank_pem) = (acme.cert_pem(), bank.cert_pem());
        let read = |p: &Path| -> Result<String> {
            match p.to_str() {
                Some("orgs/acme") => Ok(acme_pem.clone()),
                Some("orgs/bank") => Ok(bank_pem.clone()),
                _ => bail!("no such folder {}", p.display()),
            }
        };
        let mut a = GenesisArgs {
            name: "trade".into(),
            orgs: vec!["acme=orgs/acme".into(), "orgs/bank".into()],
            consenters: vec![
                "1:n1:acme:127.0.0.1:7052:https://127.0.0.1:7051".into(),
                "2:n2:bank:127.0.0.1:7152:https://127.0.0.1:7151".into(),
            ],
            observers: vec!["3:n3:bank:127.0.0.1:7252:127.0.0.1:7251".into()],
            batch_max_txs: Some(10),
            batch_timeout_ms: Some(5),
            snapshot_interval: Some(50),
            writers: vec!["acme".into()],
            out: "-".into(),
            ..Default::default()
        };
        let c = build_genesis(&a, read).unwrap();
        assert_eq!(c.name, "trade");
        assert_eq!(
            c.members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            ["acme", "bank"]
        );
        assert_eq!(c.consenters.len(), 2);
        assert_eq!(c.observers[0].api_url, "https://127.0.0.1:7251");
        assert_eq!((c.batch.max_txs, c.batch.timeout_ms), (10, 5));
        assert_eq!(c.batch.max_bytes, BatchConfig::default().max_bytes);
        assert_eq!(c.snapshot_interval, 50);
        assert_eq!(c.max_tx_bytes, 1024 * 1024);
        assert_eq!(c.tx_window_s, 600);
        assert_eq!(c.policies.writers, ["acme"]);

        // a name that does not match the CA
        a.orgs[1] = "acme=orgs/bank".into();
        assert!(build_genesis(&a, read)
            .unwrap_err()
            .to_string()
            .contains("belongs to organization \"bank\""));
        // a consenter of a non-member organization
        a.orgs = vec!["orgs/acme".into()];
        assert!(build_genesis(&a, read).is_err());
        a.orgs = vec!["orgs/acme".into(), "orgs/bank".into()];
        a.name = "Bad_Name".into();
        assert!(build_genesis(&a, read).is_err());
    }
}
