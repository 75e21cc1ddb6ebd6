//! `tallyctl`: the command line for people. Organizations and identities, transactions,
//! queries, blocks, channel status and channel creation.

mod demo;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::json;
use std::future::Future;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally_client::client::verify_receipt;
use tally_client::{txs, AdminClient, Client, ClientError, SubmitOutcome};
use tally_protocol::api::ChannelStatus;
use tally_protocol::identity::{ca_org, inspect};
use tally_protocol::{
    BatchConfig, Block, ChannelConfig, Hash, Identity, NodeRef, OrgCa, OrgMember, Policies,
    Receipt, Role, Signer, TxStatus,
};

/// Exit status of a transaction that the channel rejected.
const EXIT_REJECTED: u8 = 3;

#[derive(Parser, Debug)]
#[command(name = "tallyctl", version, about = "Command line of Tally ledgers", long_about = None)]
struct Cli {
    /// Client API URL of a node; repeat or separate by commas to give fallbacks (tried in order).
    #[arg(
        long = "node",
        global = true,
        value_delimiter = ',',
        env = "TALLY_NODE",
        default_value = "http://127.0.0.1:7051"
    )]
    nodes: Vec<String>,
    /// Folder with cert.pem and key.pem of the identity to sign with (e.g. ORG/clients/client).
    #[arg(long, global = true, env = "TALLY_IDENTITY")]
    identity: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// More logs on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
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
    Org(OrgCmd),
    /// Write, read and trace keys.
    #[command(subcommand)]
    Tx(TxCmd),
    /// List keys in key order.
    Keys(KeysArgs),
    /// Read or follow blocks.
    #[command(subcommand)]
    Blocks(BlocksCmd),
    /// Status of every node of a channel, and whether they agree.
    Status(StatusArgs),
    /// Create channels and write genesis configurations.
    #[command(subcommand)]
    Channel(ChannelCmd),
    /// Start a local 3-node consortium on loopback, run a short demo load, follow blocks.
    Demo(demo::DemoArgs),
}

#[derive(Subcommand, Debug)]
enum OrgCmd {
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
}

#[derive(Args, Debug, Clone)]
struct WriteOpts {
    /// Return once the node accepted the transaction, without waiting for the commit.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the commit, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Sign with the certificate's hash instead of the certificate (the channel must know it).
    #[arg(long)]
    cert_hash: bool,
}

#[derive(Subcommand, Debug)]
enum TxCmd {
    /// Put a value (exit status 3 when the channel rejects the transaction).
    Put {
        #[arg(long, short)]
        channel: String,
        key: String,
        value: String,
        /// VALUE is hex, not text.
        #[arg(long)]
        hex: bool,
        #[command(flatten)]
        opts: WriteOpts,
    },
    /// Delete a key.
    Delete {
        #[arg(long, short)]
        channel: String,
        key: String,
        #[command(flatten)]
        opts: WriteOpts,
    },
    /// Read a key's current value.
    Get {
        #[arg(long, short)]
        channel: String,
        key: String,
    },
    /// Every write of a key, oldest first.
    History {
        #[arg(long, short)]
        channel: String,
        key: String,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// A transaction's receipt and inclusion proof.
    Receipt {
        #[arg(long, short)]
        channel: String,
        /// Transaction id (hex).
        tx_id: String,
        /// Check the inclusion proof offline, and cross-check the block hash with the other --node URLs.
        #[arg(long)]
        verify: bool,
    },
}

#[derive(Args, Debug)]
struct KeysArgs {
    #[arg(long, short)]
    channel: String,
    #[arg(long, default_value = "")]
    prefix: String,
    /// At most this many keys (the node's default is 100).
    #[arg(long)]
    limit: Option<u32>,
}

#[derive(Subcommand, Debug)]
enum BlocksCmd {
    /// Show one block.
    Get {
        #[arg(long, short)]
        channel: String,
        /// Block number, or `latest`.
        #[arg(default_value = "latest")]
        which: String,
    },
    /// Print blocks as they are committed, one line each, until Ctrl-C.
    Follow {
        #[arg(long, short)]
        channel: String,
        /// First block to print (default: the next block to be committed).
        #[arg(long)]
        from: Option<u64>,
        /// Stop after this many blocks.
        #[arg(long)]
        count: Option<u64>,
        /// With --output json, print whole blocks instead of summaries.
        #[arg(long)]
        full: bool,
    },
}

#[derive(Args, Debug)]
struct StatusArgs {
    #[arg(long, short)]
    channel: String,
    /// Per-node time limit in seconds.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

#[derive(Subcommand, Debug)]
enum ChannelCmd {
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
    },
    /// Write a channel's genesis configuration.
    Genesis(GenesisArgs),
}

#[derive(Args, Debug, Clone, Default)]
struct GenesisArgs {
    /// Channel name (1-63 of a-z, 0-9, '-').
    #[arg(long)]
    name: String,
    /// Member organization: NAME=ORG_DIR, or just ORG_DIR (the name comes from its CA);
    /// ORG_DIR holds ca.pem, or is the CA's PEM file itself. Repeat for each member.
    #[arg(long = "org", required = true)]
    orgs: Vec<String>,
    /// Raft voter: ID:NAME:ORG:PEER_HOST:PEER_PORT:API_URL, e.g. 1:n1:acme:127.0.0.1:7052:http://127.0.0.1:7051.
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

/// An error that carries its own exit status.
#[derive(Debug)]
struct Exit(u8, String);
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}
impl std::error::Error for Exit {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(cli));
    // do not wait for lingering connection tasks
    rt.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(Exit(code, msg)) => {
                if !msg.is_empty() {
                    eprintln!("{msg}");
                }
                ExitCode::from(*code)
            }
            None => {
                eprintln!("error: {}", error_text(&e));
                ExitCode::FAILURE
            }
        },
    }
}

/// The error and its causes, `a: b: c`, leaving out causes that an outer message already
/// quotes.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let m = cause.to_string();
        if out.contains(&m) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&m);
    }
    out
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info,tally_client=info,tallyctl=info",
        2 => "info,tally_client=debug,tallyctl=debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("TALLY_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

struct Ctx {
    nodes: Vec<Client>,
    identity: Option<PathBuf>,
    output: Output,
}

async fn run(cli: Cli) -> Result<()> {
    let mut nodes = Vec::new();
    for n in cli.nodes.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        nodes.push(Client::new(n).with_context(|| format!("--node {n}"))?);
    }
    if nodes.is_empty() {
        bail!("no --node given");
    }
    let ctx = Ctx {
        nodes,
        identity: cli.identity,
        output: cli.output,
    };
    match cli.cmd {
        Cmd::Org(c) => org(&ctx, c),
        Cmd::Tx(c) => tx(&ctx, c).await,
        Cmd::Keys(a) => keys(&ctx, a).await,
        Cmd::Blocks(c) => blocks(&ctx, c).await,
        Cmd::Status(a) => status(&ctx, a).await,
        Cmd::Channel(c) => channel(&ctx, c).await,
        Cmd::Demo(a) => demo::run(a, ctx.json()).await,
    }
}

impl Ctx {
    fn json(&self) -> bool {
        self.output == Output::Json
    }

    fn identity(&self) -> Result<Identity> {
        let dir = self.identity.as_ref().ok_or_else(|| {
            anyhow!(
                "this command needs an identity: pass --identity DIR (a folder with cert.pem and key.pem, \
                 e.g. ORG/clients/client) or set TALLY_IDENTITY"
            )
        })?;
        load_identity(dir)
    }

    /// Runs `f` against each node in turn until one answers; a node that cannot be reached
    /// is skipped, any other error is final.
    async fn on_any<T, F, Fut>(&self, f: F) -> Result<(Client, T)>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
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

    fn print<T: Serialize>(&self, v: &T) -> Result<()> {
        println!("{}", serde_json::to_string_pretty(v)?);
        Ok(())
    }
}

fn load_identity(dir: &Path) -> Result<Identity> {
    if !dir.is_dir() {
        bail!(
            "identity folder {} does not exist (expected a folder with cert.pem and key.pem)",
            dir.display()
        );
    }
    for f in ["cert.pem", "key.pem"] {
        if !dir.join(f).is_file() {
            bail!(
                "identity folder {} has no {f} (expected cert.pem and key.pem, as `tallyctl org create` \
                 writes them into ORG/clients/NAME or ORG/admins/NAME)",
                dir.display()
            );
        }
    }
    Identity::load(dir).with_context(|| format!("identity folder {}", dir.display()))
}

/// Adds the node's URL and a hint to an API error.
fn explain(e: ClientError, url: &str) -> anyhow::Error {
    let hint = match e.api_code() {
        Some("unknown_channel") => " (check the channel name; `GET /v1/channels` lists what the node serves)",
        Some("no_leader") => " (the channel has no leader yet; try again in a moment)",
        Some("not_member") => " (the identity's organization is not a member of the channel)",
        Some("unknown_certificate") => " (the channel has not recorded this certificate: sign without --cert-hash once)",
        Some("forbidden") => " (the identity's role or organization may not do this)",
        Some("bad_signature") => " (the key does not match the certificate, or the transaction was altered)",
        Some("expired") => " (the transaction's timestamp is outside the channel's window: check this machine's clock)",
        _ => "",
    };
    match e {
        ClientError::Api { .. } => anyhow!("{url}: {e}{hint}"),
        other => anyhow::Error::new(other),
    }
}

// ---------------------------------------------------------------------------------------------
// progress on stderr

/// A status line on stderr while something long runs, only when stderr is a terminal.
struct Spinner {
    state: Option<Arc<Mutex<String>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Spinner {
    fn start(message: impl Into<String>) -> Spinner {
        if !std::io::stderr().is_terminal() {
            return Spinner {
                state: None,
                task: None,
            };
        }
        let state = Arc::new(Mutex::new(message.into()));
        let s = state.clone();
        let task = tokio::spawn(async move {
            const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
            let t0 = Instant::now();
            let mut i = 0usize;
            loop {
                tokio::time::sleep(Duration::from_millis(120)).await;
                if let Ok(msg) = s.lock() {
                    let mut err = std::io::stderr().lock();
                    let _ = write!(
                        err,
                        "\r{} {} ({:.1}s)\x1b[K",
                        FRAMES[i % 4],
                        msg,
                        t0.elapsed().as_secs_f64()
                    );
                    let _ = err.flush();
                }
                i += 1;
            }
        });
        Spinner {
            state: Some(state),
            task: Some(task),
        }
    }

    fn set(&self, message: impl Into<String>) {
        if let Some(s) = &self.state {
            if let Ok(mut m) = s.lock() {
                *m = message.into();
            }
        }
    }

    /// Prints a line on stdout without tearing the status line.
    fn println(&self, line: &str) {
        match &self.state {
            Some(s) => {
                let _g = s.lock();
                eprint!("\r\x1b[K");
                println!("{line}");
            }
            None => println!("{line}"),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _g = self.state.as_ref().map(|s| s.lock());
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// org

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
    let hosts: Vec<String> = hosts
        .iter()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect();
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
    if ctx.json() {
        return ctx.print(&json!({
            "org": org,
            "dir": dir,
            "ca": dir.join("ca.pem"),
            "created_ca": created_ca,
            "identities": issued,
        }));
    }
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
    Ok(())
}

fn org(ctx: &Ctx, cmd: OrgCmd) -> Result<()> {
    match cmd {
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
                for n in names.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
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

// ---------------------------------------------------------------------------------------------
// transactions

async fn submit(
    ctx: &Ctx,
    tx: &tally_protocol::Transaction,
    opts: &WriteOpts,
) -> Result<SubmitOutcome> {
    let id = tx.id();
    let short = &id.to_hex()[..12];
    let spinner = Spinner::start(if opts.no_wait {
        format!("submitting {short}")
    } else {
        format!("waiting for the commit of {short}")
    });
    let wait = Duration::from_secs(opts.timeout.max(1));
    let deadline = Instant::now() + wait;
    let mut failures = Vec::new();
    let mut round = 0u32;
    loop {
        for c in &ctx.nodes {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = if opts.no_wait {
                c.submit(tx, false).await
            } else {
                c.submit_wait_for(tx, left.max(Duration::from_millis(1)))
                    .await
                    .map(SubmitOutcome::Receipt)
            };
            match r {
                Ok(o) => return Ok(o),
                Err(e) if e.is_transport() || e.api_code() == Some("shutting_down") => {
                    spinner.set(format!("{} unavailable, trying the next node", c.url()));
                    tracing::warn!("{e}");
                    failures.push(e.to_string());
                }
                Err(ClientError::Timeout(_)) => {
                    bail!(
                        "transaction {id} was not committed within {}s (it may still commit: \
                         check with `tallyctl tx receipt --channel {} {id}`)",
                        opts.timeout,
                        tx.body.channel
                    )
                }
                Err(e) => return Err(explain(e, c.url())),
            }
        }
        round += 1;
        // every node unreachable: retry until the deadline when waiting, else give up
        if opts.no_wait || round >= 3 || Instant::now() + Duration::from_millis(500) >= deadline {
            bail!("no node reachable: {}", failures.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_outcome(ctx: &Ctx, o: &SubmitOutcome) -> Result<()> {
    match o {
        SubmitOutcome::Pending(id) => {
            if ctx.json() {
                ctx.print(&json!({"tx_id": id, "status": "pending"}))?;
            } else {
                println!("submitted tx {id} (pending)");
            }
            Ok(())
        }
        SubmitOutcome::Receipt(r) => {
            if ctx.json() {
                ctx.print(r)?;
            } else {
                println!("{}", receipt_line(r));
            }
            match &r.status {
                TxStatus::Committed => Ok(()),
                TxStatus::Rejected { .. } => Err(Exit(EXIT_REJECTED, String::new()).into()),
            }
        }
    }
}

fn receipt_line(r: &Receipt) -> String {
    match &r.status {
        TxStatus::Committed => format!(
            "committed tx {} in block {} (index {}, block hash {})",
            r.tx_id,
            r.block,
            r.index,
            short(&r.block_hash)
        ),
        TxStatus::Rejected { code, reason } => format!(
            "rejected tx {} in block {} (index {}): {}: {reason}",
            r.tx_id,
            r.block,
            r.index,
            code.as_str()
        ),
    }
}

fn short(h: &Hash) -> String {
    h.to_hex()[..12].to_string()
}

/// A value for people: the text when it is printable UTF-8, else `0x` and hex.
fn show_value(v: &[u8], utf8: Option<&str>) -> String {
    match utf8 {
        Some(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => s.to_string(),
        _ => format!("0x{}", hex::encode(v)),
    }
}

fn parse_tx_id(s: &str) -> Result<Hash> {
    let s = s.trim().trim_start_matches("0x");
    Hash::from_hex(s).map_err(|_| anyhow!("{s:?} is not a transaction id (64 hex digits)"))
}

async fn tx(ctx: &Ctx, cmd: TxCmd) -> Result<()> {
    match cmd {
        TxCmd::Put {
            channel,
            key,
            value,
            hex: is_hex,
            opts,
        } => {
            let value = if is_hex {
                hex::decode(value.trim().trim_start_matches("0x")).context("VALUE is not hex")?
            } else {
                value.into_bytes()
            };
            check_key(&key)?;
            let id = ctx.identity()?;
            let t = txs::sign_writes(&id, &channel, vec![txs::put(&key, &value)], opts.cert_hash);
            let o = submit(ctx, &t, &opts).await?;
            print_outcome(ctx, &o)
        }
        TxCmd::Delete { channel, key, opts } => {
            check_key(&key)?;
            let id = ctx.identity()?;
            let t = txs::sign_writes(&id, &channel, vec![txs::delete(&key)], opts.cert_hash);
            let o = submit(ctx, &t, &opts).await?;
            print_outcome(ctx, &o)
        }
        TxCmd::Get { channel, key } => {
            let (_, kv) = ctx
                .on_any(|c| {
                    let (channel, key) = (&channel, &key);
                    async move { c.get(channel, key).await }
                })
                .await?;
            let Some(kv) = kv else {
                bail!("key {key:?} does not exist in channel {channel}");
            };
            if ctx.json() {
                ctx.print(&kv)
            } else {
                println!("{}", show_value(&kv.value, kv.value_utf8.as_deref()));
                Ok(())
            }
        }
        TxCmd::History {
            channel,
            key,
            limit,
        } => {
            let (_, h) = ctx
                .on_any(|c| {
                    let (channel, key) = (&channel, &key);
                    async move { c.history(channel, key, limit).await }
                })
                .await?;
            if ctx.json() {
                return ctx.print(&h);
            }
            if h.entries.is_empty() {
                println!("no history for key {key:?}");
            }
            for e in &h.entries {
                let v = match &e.value {
                    Some(v) => show_value(v, e.value_utf8.as_deref()),
                    None => "(deleted)".to_string(),
                };
                println!(
                    "{:>8}.{:<4} {}  {}  {v}",
                    e.version.block,
                    e.version.tx,
                    fmt_time_ms(e.timestamp_ms),
                    short(&e.tx_id)
                );
            }
            Ok(())
        }
        TxCmd::Receipt {
            channel,
            tx_id,
            verify,
        } => {
            let id = parse_tx_id(&tx_id)?;
            let (served_by, r) = ctx
                .on_any(|c| {
                    let channel = &channel;
                    async move { c.receipt(channel, &id).await }
                })
                .await?;
            let Some(p) = r else {
                bail!(
                    "transaction {id} is not in channel {channel} (not committed yet, or unknown)"
                );
            };
            let mut checks = Vec::new();
            let mut verified = None;
            if verify {
                let ok = verify_receipt(&p);
                verified = Some(ok.is_ok());
                if let Err(e) = &ok {
                    checks.push(
                        json!({"node": served_by.url(), "ok": false, "error": e.to_string()}),
                    );
                }
                if ok.is_ok() {
                    for c in ctx.nodes.iter().filter(|c| c.url() != served_by.url()) {
                        let r = c.cross_check_receipt(&p).await;
                        checks.push(json!({
                            "node": c.url(),
                            "ok": r.is_ok(),
                            "error": r.as_ref().err().map(|e| e.to_string()),
                        }));
                    }
                }
            }
            let all_ok = verified != Some(false) && checks.iter().all(|c| c["ok"] == json!(true));
            if ctx.json() {
                let mut v = serde_json::to_value(&p)?;
                if verify {
                    v["verified"] = json!(all_ok);
                    v["proof_valid"] = json!(verified);
                    v["cross_checks"] = json!(checks);
                }
                ctx.print(&v)?;
            } else {
                println!("{}", receipt_line(&p.receipt));
                println!(
                    "channel {}  served by {}",
                    p.receipt.channel,
                    served_by.url()
                );
                if verify {
                    match verified {
                        Some(true) => println!(
                            "proof: verified offline: the transaction is leaf {} of {} under the transaction root \
                             of block {}, whose header hashes to {}",
                            p.proof.merkle.index,
                            p.proof.merkle.leaves,
                            p.receipt.block,
                            p.receipt.block_hash
                        ),
                        _ => println!("proof: INVALID: {}", checks.first().map_or("", |c| c["error"].as_str().unwrap_or(""))),
                    }
                    for c in checks
                        .iter()
                        .filter(|c| verified == Some(true) || c["node"] != json!(served_by.url()))
                    {
                        if c["ok"] == json!(true) {
                            println!(
                                "cross-check: {} has the same block {} header",
                                c["node"].as_str().unwrap_or(""),
                                p.receipt.block
                            );
                        } else {
                            println!(
                                "cross-check: {} FAILED: {}",
                                c["node"].as_str().unwrap_or(""),
                                c["error"].as_str().unwrap_or("")
                            );
                        }
                    }
                    if verified == Some(true) && checks.is_empty() {
                        println!("(give more --node URLs, ideally of other organizations, to cross-check the block hash)");
                    }
                }
            }
            if verify && !all_ok {
                return Err(Exit(1, "error: the receipt did not verify".into()).into());
            }
            Ok(())
        }
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        bail!("the key is empty");
    }
    if key.len() > 1024 {
        bail!(
            "the key is {} bytes long; keys are at most 1024 bytes",
            key.len()
        );
    }
    Ok(())
}

async fn keys(ctx: &Ctx, a: KeysArgs) -> Result<()> {
    let (_, keys) = ctx
        .on_any(|c| {
            let a = &a;
            async move { c.keys(&a.channel, &a.prefix, a.limit).await }
        })
        .await?;
    if ctx.json() {
        return ctx.print(&json!({ "keys": keys }));
    }
    for k in &keys {
        println!("{}\t{}.{}", k.key, k.version.block, k.version.tx);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// blocks

fn signer_label(s: &Signer) -> String {
    match s {
        Signer::Certificate(der) => match inspect(der) {
            Ok(i) => format!("{}/{}", i.org, subject_cn(&i.subject)),
            Err(_) => "(bad certificate)".into(),
        },
        Signer::CertHash(h) => format!("cert {}", short(h)),
    }
}

fn subject_cn(subject: &str) -> String {
    subject
        .split(',')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("CN="))
        .unwrap_or(subject)
        .to_string()
}

fn block_json(b: &Block) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(b)?;
    v["hash"] = json!(b.header.hash());
    Ok(v)
}

fn block_summary(b: &Block) -> serde_json::Value {
    let rejected = b.results.iter().filter(|r| !r.is_committed()).count();
    json!({
        "channel": b.header.channel,
        "number": b.header.number,
        "hash": b.header.hash(),
        "prev_hash": b.header.prev_hash,
        "state_root": b.header.state_root,
        "timestamp_ms": b.header.timestamp_ms,
        "txs": b.txs.len(),
        "committed": b.txs.len() - rejected,
        "rejected": rejected,
    })
}

fn block_line(b: &Block) -> String {
    let rejected = b.results.iter().filter(|r| !r.is_committed()).count();
    let rej = if rejected > 0 {
        format!(" ({rejected} rejected)")
    } else {
        String::new()
    };
    format!(
        "block {:<8} txs {:<5}{rej} hash {}  {}",
        b.header.number,
        b.txs.len(),
        short(&b.header.hash()),
        fmt_time_ms(b.header.timestamp_ms)
    )
}

async fn blocks(ctx: &Ctx, cmd: BlocksCmd) -> Result<()> {
    match cmd {
        BlocksCmd::Get { channel, which } => {
            let number = match which.trim() {
                "latest" | "" => None,
                n => Some(
                    n.parse::<u64>()
                        .map_err(|_| anyhow!("{n:?} is not a block number or `latest`"))?,
                ),
            };
            let (_, b) = ctx
                .on_any(|c| {
                    let channel = &channel;
                    async move { c.block(channel, number).await }
                })
                .await?;
            if ctx.json() {
                return ctx.print(&block_json(&b)?);
            }
            let h = &b.header;
            println!("block {} of channel {}", h.number, h.channel);
            println!("  hash        {}", h.hash());
            println!("  prev_hash   {}", h.prev_hash);
            println!("  tx_root     {}", h.tx_root);
            println!("  state_root  {}", h.state_root);
            println!(
                "  time        {} ({} ms)",
                fmt_time_ms(h.timestamp_ms),
                h.timestamp_ms
            );
            println!("  raft        term {} index {}", h.raft_term, h.raft_index);
            println!("  txs         {}", b.txs.len());
            for (i, t) in b.txs.iter().enumerate() {
                let status = match b.results.get(i) {
                    Some(TxStatus::Committed) => "committed".to_string(),
                    Some(TxStatus::Rejected { code, reason }) => {
                        format!("rejected {}: {reason}", code.as_str())
                    }
                    None => "?".to_string(),
                };
                let tally_protocol::Payload::KvWrite { reads, writes } = &t.body.payload;
                println!(
                    "    {i:>4} {}  {}  {} writes, {} reads  {status}",
                    t.id(),
                    signer_label(&t.body.signer),
                    writes.len(),
                    reads.len()
                );
            }
            Ok(())
        }
        BlocksCmd::Follow {
            channel,
            from,
            count,
            full,
        } => follow(ctx, &channel, from, count, full).await,
    }
}

async fn follow(
    ctx: &Ctx,
    channel: &str,
    from: Option<u64>,
    count: Option<u64>,
    full: bool,
) -> Result<()> {
    let mut next = match from {
        Some(n) => n,
        None => {
            ctx.on_any(|c| async move { c.status(channel).await })
                .await?
                .1
                .height
        }
    };
    if count == Some(0) {
        return Ok(());
    }
    let spinner = Spinner::start(format!("following channel {channel} from block {next}"));
    let mut printed = 0u64;
    let mut node = 0usize;
    let mut failures_in_row = 0usize;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let c = &ctx.nodes[node % ctx.nodes.len()];
        let mut rx = match c.follow(channel, next).await {
            Ok(rx) => rx,
            Err(e) if e.is_transport() || e.is_retryable() => {
                failures_in_row += 1;
                if failures_in_row >= 3 * ctx.nodes.len() {
                    bail!("{e}");
                }
                spinner.set(format!("{e}; retrying"));
                tracing::warn!("{e}");
                node += 1;
                tokio::select! {
                    _ = &mut ctrl_c => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
            Err(e) => return Err(explain(e, c.url())),
        };
        spinner.set(format!(
            "following channel {channel} on {}: waiting for block {next}",
            c.url()
        ));
        loop {
            let item = tokio::select! {
                _ = &mut ctrl_c => return Ok(()),
                item = rx.recv() => item,
            };
            match item {
                Some(Ok(b)) => {
                    failures_in_row = 0;
                    next = b.header.number + 1;
                    let line = if ctx.json() {
                        let v = if full {
                            block_json(&b)?
                        } else {
                            block_summary(&b)
                        };
                        serde_json::to_string(&v)?
                    } else {
                        block_line(&b)
                    };
                    spinner.println(&line);
                    let _ = std::io::stdout().flush();
                    spinner.set(format!(
                        "following channel {channel} on {}: waiting for block {next}",
                        c.url()
                    ));
                    printed += 1;
                    if count.is_some_and(|n| printed >= n) {
                        return Ok(());
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("{e}; reconnecting");
                    spinner.set(format!("{e}; reconnecting"));
                    break;
                }
                None => break,
            }
        }
        node += 1;
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// status

/// What the statuses alone say about agreement.
#[derive(Debug, PartialEq, Eq)]
enum Assessment {
    Agree,
    Disagree(String),
    /// Heights differ and nodes at the same height agree: compare the block headers at this
    /// number (the highest block every node has).
    CompareAt(u64),
}

fn assess(statuses: &[&ChannelStatus]) -> Assessment {
    if statuses.is_empty() {
        return Assessment::Disagree("no node reachable".into());
    }
    // nodes at the same height must have the same last block and state root
    let mut by_height: std::collections::BTreeMap<u64, &ChannelStatus> = Default::default();
    for s in statuses {
        match by_height.get(&s.height) {
            None => {
                by_height.insert(s.height, s);
            }
            Some(first) => {
                if first.state_root != s.state_root || first.last_block_hash != s.last_block_hash {
                    return Assessment::Disagree(format!(
                        "{} and {} are both at height {} but have different {}",
                        first.node,
                        s.node,
                        s.height,
                        if first.last_block_hash != s.last_block_hash {
                            "last blocks"
                        } else {
                            "state roots"
                        }
                    ));
                }
            }
        }
    }
    if by_height.len() == 1 {
        return Assessment::Agree;
    }
    let min = by_height.keys().next().copied().unwrap_or(0);
    if min == 0 {
        // a node without even the genesis block has nothing to disagree about
        return Assessment::Agree;
    }
    Assessment::CompareAt(min - 1)
}

/// Given every node's hash of the same block (None where it could not be fetched), whether
/// they agree: all fetched hashes equal, at least one fetched.
fn hashes_agree(hashes: &[Option<Hash>]) -> bool {
    let mut it = hashes.iter().flatten();
    match it.next() {
        None => false,
        Some(first) => it.all(|h| h == first),
    }
}

fn leader_name(config: &ChannelConfig, leader_id: u64) -> Option<String> {
    if leader_id == 0 {
        return None;
    }
    Some(
        config
            .nodes()
            .find(|n| n.id == leader_id)
            .map_or_else(|| format!("id {leader_id}"), |n| n.name.clone()),
    )
}

#[derive(Serialize)]
struct NodeRow {
    name: String,
    org: String,
    /// consenter or observer, from the configuration.
    kind: &'static str,
    api_url: String,
    reachable: bool,
    role: Option<String>,
    height: Option<u64>,
    leader: Option<String>,
    term: Option<u64>,
    state_root: Option<Hash>,
    last_block_hash: Option<Hash>,
    ready: Option<bool>,
    error: Option<String>,
}

async fn status(ctx: &Ctx, a: StatusArgs) -> Result<()> {
    let channel = a.channel.as_str();
    let timeout = Duration::from_secs(a.timeout.max(1));
    let spinner = Spinner::start(format!("fetching the configuration of channel {channel}"));
    let (_, config) = ctx
        .on_any(|c| async move { c.with_timeout(timeout).config(channel).await })
        .await
        .with_context(|| format!("fetching the configuration of channel {channel}"))?;
    spinner.set(format!("asking {} nodes", config.nodes().count()));
    let nodes: Vec<(NodeRef, &'static str)> = config
        .consenters
        .iter()
        .map(|n| (n.clone(), "consenter"))
        .chain(config.observers.iter().map(|n| (n.clone(), "observer")))
        .collect();
    let clients: Vec<Option<Client>> = nodes
        .iter()
        .map(|(n, _)| {
            Client::new(&n.api_url)
                .ok()
                .map(|c| c.with_timeout(timeout))
        })
        .collect();
    let results = futures_util::future::join_all(clients.iter().map(|c| async move {
        match c {
            Some(c) => c.status(channel).await,
            None => Err(ClientError::Other("invalid api_url".into())),
        }
    }))
    .await;
    let mut rows = Vec::new();
    for ((n, kind), r) in nodes.iter().zip(&results) {
        let mut row = NodeRow {
            name: n.name.clone(),
            org: n.org.clone(),
            kind,
            api_url: n.api_url.clone(),
            reachable: false,
            role: None,
            height: None,
            leader: None,
            term: None,
            state_root: None,
            last_block_hash: None,
            ready: None,
            error: None,
        };
        match r {
            Ok(s) => {
                row.reachable = true;
                row.role = serde_json::to_value(s.role)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string));
                row.height = Some(s.height);
                row.leader = leader_name(&config, s.leader_id);
                row.term = Some(s.term);
                row.state_root = Some(s.state_root);
                row.last_block_hash = Some(s.last_block_hash);
                row.ready = Some(s.ready);
            }
            Err(e) => row.error = Some(e.to_string()),
        }
        rows.push(row);
    }
    let ok: Vec<&ChannelStatus> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let (agree, detail) = match assess(&ok) {
        Assessment::Agree => (true, None),
        Assessment::Disagree(why) => (false, Some(why)),
        Assessment::CompareAt(n) => {
            spinner.set(format!("comparing block {n} across nodes"));
            let hashes =
                futures_util::future::join_all(
                    clients.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(
                        |(c, _)| async move {
                            match c {
                                Some(c) => c.header(channel, n).await.ok().map(|h| h.hash()),
                                None => None,
                            }
                        },
                    ),
                )
                .await;
            if hashes_agree(&hashes) && hashes.iter().all(Option::is_some) {
                (
                    true,
                    Some(format!(
                        "heights differ; block {n} is the same on every reachable node"
                    )),
                )
            } else if hashes.iter().any(Option::is_none) {
                (
                    false,
                    Some(format!(
                        "heights differ and block {n} could not be fetched from every node"
                    )),
                )
            } else {
                (false, Some(format!("block {n} differs between nodes")))
            }
        }
    };
    drop(spinner);
    if ctx.json() {
        return ctx.print(&json!({
            "channel": channel,
            "config_hash": config.hash(),
            "nodes": rows,
            "agree": agree,
            "detail": detail,
        }));
    }
    let mut table = vec![vec![
        "NAME".to_string(),
        "ORG".into(),
        "ROLE".into(),
        "HEIGHT".into(),
        "LEADER".into(),
        "STATE_ROOT".into(),
        "READY".into(),
    ]];
    for r in &rows {
        let dash = || "-".to_string();
        table.push(vec![
            r.name.clone(),
            r.org.clone(),
            if r.reachable {
                r.role.clone().unwrap_or_else(dash)
            } else {
                format!("{} (unreachable)", r.kind)
            },
            r.height.map_or_else(dash, |h| h.to_string()),
            r.leader.clone().unwrap_or_else(dash),
            r.state_root.as_ref().map_or_else(dash, short),
            r.ready
                .map_or_else(dash, |b| if b { "yes".into() } else { "no".into() }),
        ]);
    }
    print_table(&table);
    let reachable = rows.iter().filter(|r| r.reachable).count();
    println!(
        "{reachable}/{} nodes reachable; {}{}",
        rows.len(),
        if agree {
            "they agree"
        } else {
            "they DO NOT agree"
        },
        detail.map(|d| format!(" ({d})")).unwrap_or_default()
    );
    for r in rows.iter().filter(|r| !r.reachable) {
        println!(
            "  {}: {}",
            r.name,
            r.error.as_deref().unwrap_or("unreachable")
        );
    }
    Ok(())
}

fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

// ---------------------------------------------------------------------------------------------
// channels

async fn channel(ctx: &Ctx, cmd: ChannelCmd) -> Result<()> {
    match cmd {
        ChannelCmd::Genesis(a) => {
            let config = build_genesis(&a, read_ca_pem)?;
            let text = serde_json::to_string_pretty(&config)? + "\n";
            if a.out.as_os_str() == "-" {
                print!("{text}");
                return Ok(());
            }
            std::fs::write(&a.out, text).with_context(|| format!("writing {}", a.out.display()))?;
            if ctx.json() {
                ctx.print(
                    &json!({"channel": config.name, "file": a.out, "config_hash": config.hash()}),
                )
            } else {
                println!(
                    "wrote the genesis configuration of channel {} to {} (config hash {})",
                    config.name,
                    a.out.display(),
                    config.hash()
                );
                Ok(())
            }
        }
        ChannelCmd::Create {
            admin_addr,
            ca,
            genesis,
        } => {
            let text = std::fs::read_to_string(&genesis)
                .with_context(|| format!("reading {}", genesis.display()))?;
            let config: ChannelConfig = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a channel configuration", genesis.display()))?;
            config
                .validate()
                .with_context(|| format!("{}", genesis.display()))?;
            let id = ctx.identity()?;
            if id.info.role != Role::Admin {
                bail!("the identity is a {} certificate; the admin API needs an admin identity (ORG/admins/NAME)", id.info.role);
            }
            let ca_path = match ca {
                Some(p) => p,
                None => ctx
                    .identity
                    .as_ref()
                    .map(|d| d.join("ca.pem"))
                    .ok_or_else(|| anyhow!("pass --ca"))?,
            };
            let ca_pem = std::fs::read_to_string(&ca_path)
                .with_context(|| format!("reading the CA certificate {}", ca_path.display()))?;
            let spinner = Spinner::start(format!("creating channel {}", config.name));
            let mut results = Vec::new();
            let mut failed = 0;
            for addr in admin_addr
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
            {
                spinner.set(format!("creating channel {} on {addr}", config.name));
                let r = match AdminClient::new(addr, &ca_pem, &id) {
                    Ok(admin) => admin.create_channel(&config).await,
                    Err(e) => Err(e),
                };
                if r.is_err() {
                    failed += 1;
                }
                results.push((addr.to_string(), r));
            }
            drop(spinner);
            if ctx.json() {
                let v: Vec<_> = results
                    .iter()
                    .map(|(addr, r)| match r {
                        Ok(s) => json!({"admin_addr": addr, "ok": true, "status": s}),
                        Err(e) => json!({"admin_addr": addr, "ok": false, "error": e.to_string()}),
                    })
                    .collect();
                ctx.print(
                    &json!({"channel": config.name, "config_hash": config.hash(), "results": v}),
                )?;
            } else {
                for (addr, r) in &results {
                    match r {
                        Ok(s) => println!(
                            "channel {} on {addr}: node {} ({}), height {}, {}",
                            config.name,
                            s.node,
                            serde_json::to_value(s.role)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default(),
                            s.height,
                            if s.ready { "ready" } else { "starting" }
                        ),
                        Err(e) => println!("channel {} on {addr}: FAILED: {e}", config.name),
                    }
                }
            }
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
/// `http://` when it has no scheme.
fn parse_node_spec(s: &str) -> Result<NodeRef> {
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
    // peer host
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
        format!("http://{api}")
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
        let named = ca_org(&ca_pem).with_context(|| format!("--org {spec}: the CA certificate"))?;
        if let Some(n) = name {
            if n != named {
                bail!("--org {spec}: the CA in {dir} belongs to organization {named:?}, not {n:?}");
            }
        }
        members.push(OrgMember {
            name: named,
            ca_pem,
        });
    }
    let consenters = a
        .consenters
        .iter()
        .map(|s| parse_node_spec(s))
        .collect::<Result<Vec<_>>>()?;
    let observers = a
        .observers
        .iter()
        .map(|s| parse_node_spec(s))
        .collect::<Result<Vec<_>>>()?;
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

// ---------------------------------------------------------------------------------------------
// time

/// `2024-05-01T12:00:00.123Z` from Unix milliseconds (UTC).
fn fmt_time_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil from days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::api::RaftRole;

    fn st(node: &str, height: u64, root: u8, last: u8) -> ChannelStatus {
        ChannelStatus {
            channel: "ch".into(),
            node: node.into(),
            node_id: 1,
            org: "o".into(),
            role: RaftRole::Follower,
            leader_id: 1,
            term: 1,
            height,
            last_block_hash: Hash([last; 32]),
            state_root: Hash([root; 32]),
            applied_index: 1,
            commit_index: 1,
            ready: true,
            config_hash: Hash::ZERO,
        }
    }

    #[test]
    fn agreement_from_statuses() {
        let (a, b, c) = (st("a", 5, 1, 9), st("b", 5, 1, 9), st("c", 5, 2, 9));
        assert_eq!(assess(&[&a, &b]), Assessment::Agree);
        assert_eq!(assess(&[&a]), Assessment::Agree);
        assert!(matches!(assess(&[]), Assessment::Disagree(_)));
        assert!(
            matches!(assess(&[&a, &b, &c]), Assessment::Disagree(m) if m.contains("state roots"))
        );
        let d = st("d", 5, 1, 8);
        assert!(matches!(assess(&[&a, &d]), Assessment::Disagree(m) if m.contains("last blocks")));
        // behind: compare at the highest block everyone has
        let (e, f) = (st("e", 3, 7, 7), st("f", 7, 8, 8));
        assert_eq!(assess(&[&a, &e, &f, &b]), Assessment::CompareAt(2));
        // behind, and two at the top disagree
        let g = st("g", 7, 9, 8);
        assert!(matches!(assess(&[&e, &f, &g]), Assessment::Disagree(_)));
        assert_eq!(assess(&[&st("x", 0, 0, 0), &a]), Assessment::Agree);

        assert!(hashes_agree(&[Some(Hash([1; 32])), Some(Hash([1; 32]))]));
        assert!(hashes_agree(&[Some(Hash([1; 32])), None]));
        assert!(!hashes_agree(&[Some(Hash([1; 32])), Some(Hash([2; 32]))]));
        assert!(!hashes_agree(&[None, None]));
        assert!(!hashes_agree(&[]));
    }

    #[test]
    fn node_specs_parse() {
        let n = parse_node_spec("1:n1:acme:127.0.0.1:7052:http://127.0.0.1:7051").unwrap();
        assert_eq!(
            n,
            NodeRef {
                id: 1,
                name: "n1".into(),
                org: "acme".into(),
                peer_addr: "127.0.0.1:7052".into(),
                api_url: "http://127.0.0.1:7051".into()
            }
        );
        let n = parse_node_spec("2:n2:acme:node-2.ns.svc:7052:node-2.ns.svc:7051/").unwrap();
        assert_eq!(n.peer_addr, "node-2.ns.svc:7052");
        assert_eq!(n.api_url, "http://node-2.ns.svc:7051");
        let n = parse_node_spec("3:n3:acme:[::1]:7052:http://[::1]:7051").unwrap();
        assert_eq!(n.peer_addr, "[::1]:7052");
        assert_eq!(n.api_url, "http://[::1]:7051");
        for bad in [
            "",
            "x:n1:acme:h:1:http://h:2",
            "0:n1:acme:h:1:http://h:2",
            "1:n1:acme",
            "1:n1:acme:h",
            "1:n1:acme:h:port:http://h:2",
            "1:n1:acme:h:1",
            "1:n1:acme:h:1:",
            "1::acme:h:1:http://h:2",
            "1:n1:acme:[::1:1:http://h:2",
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
                "1:n1:acme:127.0.0.1:7052:http://127.0.0.1:7051".into(),
                "2:n2:bank:127.0.0.1:7152:http://127.0.0.1:7151".into(),
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
        assert_eq!(c.observers[0].api_url, "http://127.0.0.1:7251");
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

    #[test]
    fn times_format_as_utc() {
        assert_eq!(fmt_time_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt_time_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(fmt_time_ms(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn leaders_resolve_to_names() {
        let c = ChannelConfig {
            name: "ch".into(),
            members: vec![],
            consenters: vec![parse_node_spec("4:n4:o:h:1:http://h:2").unwrap()],
            observers: vec![],
            batch: Default::default(),
            policies: Default::default(),
            snapshot_interval: 1,
            max_tx_bytes: 1,
            tx_window_s: 1,
        };
        assert_eq!(leader_name(&c, 4).as_deref(), Some("n4"));
        assert_eq!(leader_name(&c, 0), None);
        assert_eq!(leader_name(&c, 9).as_deref(), Some("id 9"));
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "tallyctl",
            "--node",
            "http://a:1,http://b:2",
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
        assert_eq!(c.nodes, ["http://a:1", "http://b:2"]);
        assert!(matches!(
            c.cmd,
            Cmd::Tx(TxCmd::Put {
                opts: WriteOpts { no_wait: true, .. },
                ..
            })
        ));
    }
}
