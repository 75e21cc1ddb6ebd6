//! `tallyctl up -f FILE...`: the consortium a tenant would apply to a cluster, run as local
//! processes on loopback by the same planner the operator uses, until Ctrl-C.
//!
//! The data directory holds everything: `up.json` (what was planned, so that a second `up`
//! plans the same again), `profile.json` (for every other command), `cluster.json`, the
//! organizations' keys and each node's data and log.
//!
//! It may run one side of a consortium: organizations given as bundles (or `--external`) run
//! elsewhere (`up_sides`); channels with such members are created once they approved the
//! genesis that `up` writes to `genesis/CHANNEL.json`, and until then `up` says who must
//! approve what and exits with [`EXIT_AWAITING`].

use super::genesis_approval::ApprovalFile;
use super::progress::Spinner;
use super::renew;
use super::up_approvals::{
    awaiting_text, check_approvals, read_approval_files, write_genesis_files,
};
use super::up_sides::{self, Externals, Waiting};
use super::{Ctx, Exit};
use crate::local::{pick_loopback_prefix, stored_layout};
use crate::{LocalCluster, LocalLayout};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tally_api::consortium::CaMode;
use tally_api::manifest::{namespace_of, Resources};
use tally_api::Consortium;
use tally_client::profile::{
    ProfileChannel, ProfileIdentity, ProfileNode, ProfileOrg, PROFILE_VERSION,
};
use tally_client::Profile;
use tally_planner::{spec, Addressing, CaInput, Held, Plan, PlanInput};
use tally_protocol::identity::now_unix;
use tally_protocol::{Approval, ChannelConfig, OrgCa, Role};

/// Exit status of an `up` that stops because channels wait for external organizations'
/// approvals (or bundles): nothing failed, and running it again with them completes it.
pub const EXIT_AWAITING: u8 = 4;

const STATE_FILE: &str = "up.json";
const STATE_VERSION: u32 = 1;

#[derive(Args, Debug)]
pub struct UpArgs {
    /// YAML manifests with one Consortium and its Peers and Channels; repeat or separate by commas.
    #[arg(short = 'f', long = "file", required = true, value_delimiter = ',')]
    pub files: Vec<PathBuf>,
    /// The tally-node executable (default: next to tallyctl).
    #[arg(long, env = "TALLY_NODE_BIN")]
    pub node_bin: Option<PathBuf>,
    /// Write without fsync: faster, but the last writes may be lost on power loss.
    #[arg(long)]
    pub no_fsync: bool,
    /// Serve the web console reading as this organization (default: the first one).
    #[arg(long)]
    pub console_org: Option<String>,
    /// Address of the web console: a loopback address, since it has no login here
    /// (default 127.0.0.1:7080, or a free port when that one is taken).
    #[arg(long)]
    pub console_addr: Option<std::net::SocketAddr>,
    /// Do not serve the web console.
    #[arg(long, conflicts_with_all = ["console_org", "console_addr"])]
    pub no_console: bool,
    /// The tally-console executable (default: next to tallyctl).
    #[arg(long, env = "TALLY_CONSOLE_BIN")]
    pub console_bin: Option<PathBuf>,
    /// An organization of the consortium that runs elsewhere (the other side) and whose
    /// bundle has not arrived yet; repeat or separate by commas. An organization whose
    /// OrganizationBundle is in the files is external without this.
    #[arg(long = "external", value_delimiter = ',')]
    pub external: Vec<String>,
    /// An external organization's approval of a channel's genesis, as `tallyctl channel
    /// approve-genesis` writes it, or a list of them (an operator's approvals.yaml); repeat,
    /// or name a folder whose *.json and *.yaml files are approvals.
    #[arg(long = "approval")]
    pub approvals: Vec<PathBuf>,
}

/// What `up.json` records: the inputs of the plan besides the manifests.
#[derive(Debug, Serialize, Deserialize)]
struct UpState {
    version: u32,
    consortium: String,
    namespace: String,
    /// Loopback block of the nodes, `127.A.B`.
    loopback_prefix: String,
    /// Start of the validity of issued certificates.
    issued_at: i64,
    /// Organizations whose nodes run elsewhere: no key of theirs is here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    external: Vec<String>,
}

/// What this side of the consortium is: the resources as it plans them (external
/// organizations' Peers replaced by their bundles' nodes), the external organizations, the
/// channels that wait for a bundle and the approvals brought with `--approval`.
pub(super) struct Side {
    pub(super) res: spec::Resources,
    pub(super) externals: Externals,
    pub(super) waiting: Vec<Waiting>,
    pub(super) approvals: Vec<(PathBuf, ApprovalFile)>,
}

impl Side {
    fn external_cas(&self) -> BTreeMap<String, CaInput> {
        up_sides::external_cas(&self.externals)
    }

    fn is_external(&self, org: &str) -> bool {
        self.externals.contains_key(org)
    }
}

fn step(msg: impl AsRef<str>) {
    eprintln!("==> {}", msg.as_ref());
}

/// The data directory for a consortium when none is given.
pub fn default_dir(consortium: &str) -> PathBuf {
    Path::new(".tally").join(consortium)
}

/// The one consortium the manifests describe, with its namespace.
pub fn the_consortium(res: &Resources, files: &[PathBuf]) -> Result<(String, String)> {
    let list = |v: &[Consortium]| {
        v.iter()
            .map(|c| format!("{}/{}", namespace_of(c), c.name_any()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let shown = files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match res.consortia.as_slice() {
        [c] => Ok((namespace_of(c), c.name_any())),
        [] => bail!("{shown}: no Consortium (apiVersion tally.dev/v1alpha1, kind Consortium) in the manifests"),
        more => bail!(
            "{shown}: `tallyctl up` runs one consortium at a time, and the manifests have {}: {}",
            more.len(),
            list(more)
        ),
    }
}

fn node_bin(given: &Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().context("locating tallyctl")?;
    Ok(me.with_file_name("tally-node"))
}

pub async fn run(ctx: &Ctx, args: UpArgs) -> Result<()> {
    let res = Resources::read_files(&args.files)?;
    let dangling = tally_planner::dangling(&res.to_plan());
    if !dangling.is_empty() {
        let lines: Vec<String> = dangling.iter().map(|e| format!("  - {e}")).collect();
        bail!(
            "references to resources that are not in the manifests:\n{}",
            lines.join("\n")
        );
    }
    let (namespace, consortium) = the_consortium(&res, &args.files)?;
    let others: Vec<&String> = res
        .other
        .iter()
        .filter(|o| !o.starts_with("OrganizationBundle/"))
        .collect();
    if !others.is_empty() {
        step(format!(
            "leaving aside {} document(s) that only a cluster uses (ConfigMaps serve the Chaincodes' modules): {}",
            others.len(),
            others.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    let dir = ctx
        .data_dir
        .clone()
        .unwrap_or_else(|| default_dir(&consortium));
    let bin = node_bin(&args.node_bin)?;
    let fresh = !dir.join("cluster.json").exists();
    let side = this_side(&res, &namespace, &consortium, &args, &dir, fresh)?;

    // Listening from here on: a Ctrl-C at any later point stops the nodes cleanly, and none is
    // lost between two waits.
    let mut signals = Signals::new()?;
    let starting = async {
        let (mut cluster, plan) = if fresh {
            create(
                &res,
                &side,
                &namespace,
                &consortium,
                &dir,
                &bin,
                !args.no_fsync,
            )
            .await?
        } else {
            resume(&res, &side, &namespace, &consortium, &dir, &bin).await?
        };
        let given: Vec<Approval> = side
            .approvals
            .iter()
            .map(|(_, f)| Approval {
                certificate: f.certificate.clone(),
                signature: f.signature.clone(),
            })
            .collect();
        let pending = cluster
            .ensure_channels(&given)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        anyhow::Ok((cluster, plan, pending))
    };
    let started = tokio::select! {
        r = starting => Some(r),
        _ = signals.recv() => None,
    };
    // Past the select the start is dropped, which kills the nodes it spawned.
    let (cluster, plan, pending) = match started {
        Some(r) => r?,
        None => {
            if fresh {
                remove_when_released(&dir).await;
            }
            bail!("interrupted while starting");
        }
    };
    let profile = Profile::load(&dir)?;
    if !pending.is_empty() || !side.waiting.is_empty() {
        step(format!("stopping {} nodes", cluster.node_names().len()));
        cluster.shutdown().await?;
        return Err(Exit(EXIT_AWAITING, awaiting_text(&dir, &args, &side, &pending)).into());
    }

    let converged = tokio::select! {
        r = wait_converged(&cluster, &profile) => r.map(Some),
        _ = signals.recv() => Ok(None),
    };
    let leaders = match converged {
        Ok(Some(leaders)) => leaders,
        other => {
            step(format!("stopping {} nodes", cluster.node_names().len()));
            let _ = cluster.shutdown().await;
            return Err(match other {
                Err(e) => e,
                _ => anyhow!("interrupted while starting"),
            });
        }
    };
    let installed = tokio::select! {
        r = install_chaincodes(&res, &side, &plan, &profile, &leaders) => Some(r),
        _ = signals.recv() => None,
    };
    if !matches!(installed, Some(Ok(()))) {
        step(format!("stopping {} nodes", cluster.node_names().len()));
        let _ = cluster.shutdown().await;
        return Err(match installed {
            Some(Err(e)) => e,
            _ => anyhow!("interrupted while installing chaincode"),
        });
    }
    let console = if args.no_console {
        None
    } else {
        let wish = super::console::ConsoleWish {
            org: args.console_org.as_deref(),
            addr: args.console_addr,
            bin: args.console_bin.as_deref(),
        };
        match super::console::start(&dir, &profile, &wish).await {
            Ok(c) => Some(c),
            // The ledger is what `up` is for: without a console it still runs, and says so.
            Err(e) => {
                step(format!("no web console: {e:#} (--no-console skips it)"));
                None
            }
        }
    };
    print_ready(ctx, &dir, &args.files, &profile, &leaders, console.as_ref())?;

    let mut renewer = Renewer {
        side: &side,
        dir: &dir,
        next: plan.next_renewal,
    };
    let outcome = stream_until_signal(&cluster, &profile, &mut signals, &mut renewer).await;
    drop(console);
    step(format!("stopping {} nodes", cluster.node_names().len()));
    cluster.shutdown().await?;
    step(format!(
        "stopped; `tallyctl up` with the same files and data directory resumes this ledger, \
         `tallyctl down --data-dir {}` removes it",
        dir.display()
    ));
    outcome
}

/// SIGINT (Ctrl-C) and SIGTERM, listened to for the whole run.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// Removes a fresh data directory once the killed nodes have let go of it.
async fn remove_when_released(dir: &Path) {
    for _ in 0..50 {
        if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "could not remove {}; `tallyctl down` removes it",
        dir.display()
    );
}

/// Waits until every channel has a leader and all its nodes agree; returns each channel's
/// leader and height. A channel that no node serves any more (every node left it after its
/// retirement, `tallyctl channel leave`) is left out.
async fn wait_converged(
    cluster: &LocalCluster,
    profile: &Profile,
) -> Result<BTreeMap<String, (String, u64)>> {
    let spinner = Spinner::start("waiting until every channel has a leader and all nodes agree");
    let mut leaders = BTreeMap::new();
    for ch in &profile.channels {
        spinner.set(format!(
            "channel {}: waiting for a leader and agreement",
            ch.name
        ));
        let statuses = cluster.statuses(&ch.name).await;
        let left = |s: &std::result::Result<_, tally_client::ClientError>| matches!(s, Err(e) if e.api_code() == Some("unknown_channel"));
        if !statuses.is_empty() && statuses.iter().all(|(_, s)| left(s)) {
            tracing::info!(channel = %ch.name, "no node serves the channel any more (left): not waited for");
            continue;
        }
        let st = cluster
            .wait_converged(&ch.name, Duration::from_secs(60))
            .await
            .map_err(|e| anyhow!("channel {}: {e}", ch.name))?;
        let leader = cluster.leader(&ch.name).await.unwrap_or_default();
        leaders.insert(ch.name.clone(), (leader, st.height));
    }
    Ok(leaders)
}

async fn create(
    res: &Resources,
    side: &Side,
    namespace: &str,
    consortium: &str,
    dir: &Path,
    bin: &Path,
    fsync: bool,
) -> Result<(LocalCluster, Plan)> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} exists and holds no consortium started by `tallyctl up`; choose another --data-dir",
            dir.display()
        );
    }
    let cons = consortium_named(res, consortium)?;
    let hosted: i32 = side
        .res
        .peers
        .iter()
        .filter(|p| p.meta.namespace == namespace && p.consortium == consortium)
        .map(|p| p.replicas.clamp(0, 9))
        .sum();
    if hosted == 0 {
        bail!("consortium {consortium:?} has no Peer with replicas > 0: there is nothing to run");
    }
    step(format!(
        "planning consortium {consortium}: {}, {}, {}",
        plural(cons.spec.organizations.len(), "organization"),
        plural(hosted as usize, "node"),
        plural(res.channels.len(), "channel")
    ));
    let mut cas = side.external_cas();
    for o in &cons.spec.organizations {
        if side.is_external(&o.name) {
            step(format!(
                "organization {} runs elsewhere: this side holds its CA certificate only, runs none of its nodes and signs nothing for it",
                o.name
            ));
            continue;
        }
        if o.ca.mode == CaMode::Secret {
            step(format!(
                "organization {} brings its CA by Secret in a cluster; the local mode generates one",
                o.name
            ));
        }
        cas.insert(
            o.name.clone(),
            CaInput::Full(Box::new(OrgCa::generate(&o.name)?)),
        );
    }
    let state = UpState {
        version: STATE_VERSION,
        consortium: consortium.to_string(),
        namespace: namespace.to_string(),
        loopback_prefix: pick_loopback_prefix(hosted as usize)?,
        // A little in the past, so that a clock a few minutes off still accepts the certificates.
        issued_at: now_unix() - 300,
        external: side.externals.keys().cloned().collect(),
    };
    // With `now`, a lifetime shorter than the back-dating of `issued_at` starts from now.
    let plan = run_planner(
        &side.res,
        &state,
        &cas,
        &tally_planner::NOTHING_HELD,
        Some(now_unix()),
    )?;
    refuse_external(&plan, side)?;
    check_approvals(&plan, side)?;

    let profile = profile_of(&plan);
    let layout = LocalLayout::from_plan(&plan, cas, dir, bin, fsync, true)?;
    step(format!(
        "starting {} tally-node processes on {}.* and creating channels {}",
        layout.nodes.len(),
        state.loopback_prefix,
        plan.channels
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let spinner = Spinner::start("starting nodes");
    let cluster = match LocalCluster::launch(layout).await {
        Ok(c) => c,
        Err(e) => {
            drop(spinner);
            // Nothing of value is lost: the directory was empty before.
            let _ = std::fs::remove_dir_all(dir);
            return Err(anyhow!("{e}"));
        }
    };
    drop(spinner);
    profile.save(dir)?;
    let json = serde_json::to_vec_pretty(&state)?;
    std::fs::write(dir.join(STATE_FILE), json)?;
    write_genesis_files(&plan, dir)?;
    Ok((cluster, plan))
}

async fn resume(
    res: &Resources,
    side: &Side,
    namespace: &str,
    consortium: &str,
    dir: &Path,
    bin: &Path,
) -> Result<(LocalCluster, Plan)> {
    let state = read_state(dir)?;
    if state.consortium != consortium || state.namespace != namespace {
        bail!(
            "{} holds consortium {}/{}, the manifests describe {namespace}/{consortium}; \
             use --data-dir {} or remove the old one with `tallyctl down --data-dir {}`",
            dir.display(),
            state.namespace,
            state.consortium,
            default_dir(consortium).display(),
            dir.display()
        );
    }
    step(format!(
        "resuming consortium {consortium} from {}",
        dir.display()
    ));
    let cons = consortium_named(res, consortium)?;
    let (cas, missing) = stored_cas(dir, cons, side);
    let mut changes: Vec<String> = missing
        .iter()
        .map(|o| format!("organization {o} was added"))
        .collect();
    for o in side.externals.keys() {
        if !state.external.contains(o) {
            changes.push(format!(
                "organization {o} is external now (a bundle or --external), but this side hosts it"
            ));
        }
    }
    let mut planned = None;
    if changes.is_empty() {
        // Certificates due for renewal are renewed before the nodes start on them.
        let plan = run_planner(
            &side.res,
            &state,
            &cas,
            &renew::held_in(dir),
            Some(now_unix()),
        )?;
        refuse_external(&plan, side)?;
        let (diff, not_created) = compare_with_stored(&plan, dir)?;
        changes = diff;
        if changes.is_empty() {
            check_approvals(&plan, side)?;
            // Channels that wait for an external member take the genesis planned now, with
            // the bundles that arrived since.
            let external: Vec<crate::local::ExternalOrg> = plan
                .organizations
                .iter()
                .filter(|o| o.admin.is_none())
                .map(|o| crate::local::ExternalOrg {
                    name: o.name.clone(),
                    ca_pem: o.ca_pem.clone(),
                })
                .collect();
            crate::local::store_pending(dir, &not_created, &external)
                .map_err(|e| anyhow!("{e}"))?;
            write_genesis_files(&plan, dir)?;
            profile_of(&plan).save(dir)?;
            report_renewed(&renew::write_renewed(dir, &plan)?);
        }
        planned = Some(plan);
    }
    if !changes.is_empty() {
        bail!(
            "the manifests changed since this consortium was created in {}:\n  - {}\n\
             The local mode runs a consortium as it was first planned; changing members, nodes or \
             channel settings of a running ledger takes configuration transactions (the operator). \
             Run the manifests it was created with, or start over with `tallyctl down --data-dir {}`.",
            dir.display(),
            changes.join("\n  - "),
            dir.display()
        );
    }
    let spinner = Spinner::start("starting nodes");
    let cluster = LocalCluster::open(dir.to_path_buf(), bin.to_path_buf()).await?;
    drop(spinner);
    let plan = planned.ok_or_else(|| anyhow!("no plan for {}", dir.display()))?;
    Ok((cluster, plan))
}

/// Installs, approves and commits every planned Chaincode with the module from its ConfigMap
/// in the manifests (as the operator does in a cluster). Idempotent: a resumed consortium's
/// committed chaincode is left as it is.
async fn install_chaincodes(
    res: &Resources,
    side: &Side,
    plan: &Plan,
    profile: &Profile,
    served: &BTreeMap<String, (String, u64)>,
) -> Result<()> {
    // Channels every node left are not served: nothing to install there.
    for cc in plan
        .chaincodes
        .iter()
        .filter(|cc| served.contains_key(&cc.channel))
    {
        let src = &cc.module;
        let module = res
            .config_map_key(&src.config_map, &src.key)
            .ok_or_else(|| {
                anyhow!(
                    "Chaincode {}: ConfigMap {} with key {} is not in the manifests",
                    cc.resource,
                    src.config_map,
                    src.key
                )
            })?;
        let got = tally_protocol::chaincode::module_hash(&module).to_hex();
        if got != src.sha256 {
            bail!(
                "Chaincode {}: the module in ConfigMap {} key {} hashes to {got}, not the pinned {}",
                cc.resource,
                src.config_map,
                src.key,
                src.sha256
            );
        }
        let url = profile
            .api_urls(Some(&cc.channel), None)
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no node serves channel {}", cc.channel))?;
        let pems: Vec<&str> = plan
            .organizations
            .iter()
            .map(|o| o.ca_pem.as_str())
            .collect();
        let api = tally_client::Client::new(&url, &tally_client::ApiTrust::from_ca_pems(&pems)?)?;
        let admins: Vec<(String, tally_protocol::Identity)> = cc
            .approvers
            .iter()
            .filter_map(|o| Some((o.clone(), plan.org(o)?.admin.clone()?)))
            .collect();
        let wanted = tally_client::lifecycle::Wanted {
            channel: &cc.channel,
            name: &cc.name,
            version: &cc.version,
            module: &module,
            init: cc.init.as_ref().map(|i| tally_protocol::InitCall {
                function: i.function.clone(),
                args: tally_client::txs::fields(&i.args),
            }),
        };
        let spinner = Spinner::start(format!(
            "installing chaincode {} on {}",
            cc.name, cc.channel
        ));
        let mut report = tally_client::lifecycle::ensure(&api, &wanted, &admins).await;
        // Both sides of a consortium install at once when they come up together; the one that
        // lost the race reads the ledger again and finds the other's step done.
        for _ in 0..5 {
            match &report {
                Err(e) if !side.externals.is_empty() && e.to_string().contains("read_conflict") => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    report = tally_client::lifecycle::ensure(&api, &wanted, &admins).await;
                }
                _ => break,
            }
        }
        drop(spinner);
        let report = report.with_context(|| format!("Chaincode {}", cc.resource))?;
        for a in &report.actions {
            step(format!("chaincode on {}: {a}", cc.channel));
        }
        if let tally_client::lifecycle::Progress::WaitingForApprovals { have, needed, .. } =
            report.progress
        {
            if !side.externals.is_empty() {
                // The other side's admins approve with their own keys; the definition applies
                // when they do, while this side runs.
                step(format!(
                    "chaincode {} on {}: {have} of {needed} needed approvals; the other organizations approve it from their side",
                    cc.name, cc.channel
                ));
                continue;
            }
            bail!(
                "Chaincode {}: {have} of {needed} needed approvals; the local mode holds every organization's admin, so this should not happen",
                cc.resource
            );
        }
    }
    Ok(())
}

fn consortium_named<'a>(res: &'a Resources, name: &str) -> Result<&'a Consortium> {
    res.consortia
        .iter()
        .find(|c| c.name_any() == name)
        .ok_or_else(|| anyhow!("no Consortium {name:?} in the manifests"))
}

fn run_planner(
    res: &spec::Resources,
    state: &UpState,
    cas: &BTreeMap<String, CaInput>,
    held: &Held,
    now: Option<i64>,
) -> Result<Plan> {
    let addressing = Addressing::Loopback {
        prefix: state.loopback_prefix.clone(),
    };
    tally_planner::plan(&PlanInput {
        resources: res,
        namespace: &state.namespace,
        consortium: &state.consortium,
        cas,
        addressing: &addressing,
        issued_at: state.issued_at,
        held,
        now,
    })
    .map_err(|e| anyhow!("{e}"))
}

fn read_state(dir: &Path) -> Result<UpState> {
    let path = dir.join(STATE_FILE);
    let bytes = std::fs::read(&path).map_err(|_| {
        anyhow!(
            "{} holds a local cluster that `tallyctl up` did not start (no {STATE_FILE}); choose another --data-dir",
            dir.display()
        )
    })?;
    let state: UpState =
        serde_json::from_slice(&bytes).with_context(|| format!("{}", path.display()))?;
    if state.version != STATE_VERSION {
        bail!(
            "{}: version {} is not supported",
            path.display(),
            state.version
        );
    }
    Ok(state)
}

fn report_renewed(r: &renew::Renewed) {
    for (key, until) in &r.identities {
        step(format!(
            "renewed the certificate of {key}, valid until {}",
            renew::utc(*until)
        ));
    }
}

/// What the running `up` needs to renew certificates when they fall due.
struct Renewer<'a> {
    side: &'a Side,
    dir: &'a Path,
    next: Option<i64>,
}

impl Renewer<'_> {
    /// Renews what is due, if anything is: plans again with the CAs and certificates on disk,
    /// writes the renewed identities and restarts the renewed nodes one at a time.
    async fn renew_due(&mut self, cluster: &LocalCluster) -> Result<()> {
        let now = now_unix();
        if self.next.is_none_or(|t| now < t) {
            return Ok(());
        }
        let state = read_state(self.dir)?;
        let mut cas = self.side.external_cas();
        for o in self
            .side
            .res
            .consortia
            .iter()
            .flat_map(|c| &c.organizations)
        {
            if self.side.is_external(&o.name) {
                continue;
            }
            let ca = OrgCa::load(&self.dir.join("orgs").join(&o.name))
                .map_err(|e| anyhow!("no CA in the data directory for {}: {e}", o.name))?;
            cas.insert(o.name.clone(), CaInput::Full(Box::new(ca)));
        }
        let plan = run_planner(
            &self.side.res,
            &state,
            &cas,
            &renew::held_in(self.dir),
            Some(now),
        )?;
        let renewed = renew::write_renewed(self.dir, &plan)?;
        report_renewed(&renewed);
        renew::restart_renewed(cluster, &renewed.nodes).await?;
        for n in &renewed.nodes {
            println!("{} {n} restarted on its renewed certificate", clock());
        }
        self.next = plan.next_renewal;
        Ok(())
    }
}

/// The CAs of the consortium's organizations as the data directory keeps them, and the
/// organizations that have none there.
fn stored_cas(
    dir: &Path,
    cons: &Consortium,
    side: &Side,
) -> (BTreeMap<String, CaInput>, Vec<String>) {
    let mut cas = side.external_cas();
    let mut missing = Vec::new();
    for o in &cons.spec.organizations {
        if side.is_external(&o.name) {
            continue;
        }
        match OrgCa::load(&dir.join("orgs").join(&o.name)) {
            Ok(ca) => {
                cas.insert(o.name.clone(), CaInput::Full(Box::new(ca)));
            }
            Err(_) => missing.push(o.name.clone()),
        }
    }
    (cas, missing)
}

/// External peers of an organization this side hosts: the local mode would hold the
/// organization's keys and still count on nodes it does not run; such an organization is
/// brought as a bundle instead (or its external peers left out of the channels).
fn refuse_external(plan: &Plan, side: &Side) -> Result<()> {
    if let Some(n) = plan
        .nodes
        .iter()
        .find(|n| !n.hosted() && !n.channels.is_empty() && !side.is_external(&n.org))
    {
        bail!(
            "node {} of organization {} runs outside (externalPeers) and channel(s) {} list it, but this side holds {}'s keys; \
             give {} as an OrganizationBundle in the files (`tallyctl org export` on its side writes one) to run one side of the consortium, \
             or leave the node out of the channels to try the consortium locally",
            n.name,
            n.org,
            n.channels.join(", "),
            n.org,
            n.org
        );
    }
    Ok(())
}

/// What differs between the plan and the cluster stored in `dir`, one line per change, and
/// the planned genesis of channels not created yet (they wait for an external member, and
/// may change until they are created).
fn compare_with_stored(plan: &Plan, dir: &Path) -> Result<(Vec<String>, Vec<ChannelConfig>)> {
    let (nodes, channels) = stored_layout(dir)?;
    let pending = crate::local::stored_pending(dir)?;
    let stored_external: Vec<&str> = plan
        .organizations
        .iter()
        .filter(|o| o.admin.is_none())
        .map(|o| o.name.as_str())
        .collect();
    let waits = |c: &ChannelConfig| {
        pending.contains(&c.name)
            || c.members
                .iter()
                .any(|m| stored_external.contains(&m.name.as_str()))
    };
    let mut not_created = Vec::new();
    let mut out = Vec::new();
    for n in plan.hosted_nodes() {
        match nodes.iter().find(|s| s.name == n.name) {
            None => out.push(format!("node {} was added", n.name)),
            Some(s) if s.org != n.org || s.id != n.raft_id || s.host != n.address.host => {
                out.push(format!("node {} changed", n.name))
            }
            Some(_) => {}
        }
    }
    for s in &nodes {
        if plan.node(&s.name).is_none() {
            out.push(format!("node {} was removed", s.name));
        }
    }
    for c in &plan.channels {
        let stored = channels.iter().find(|s| s.name == c.name);
        if stored.is_none_or(|s| pending.contains(&s.name)) && waits(&c.genesis) {
            not_created.push(c.genesis.clone());
            continue;
        }
        match stored {
            None => out.push(format!("channel {} was added", c.name)),
            Some(s) if *s != c.genesis => out.push(format!("channel {} changed", c.name)),
            Some(_) => {}
        }
    }
    for s in &channels {
        if plan.channel(&s.name).is_none() && !pending.contains(&s.name) {
            out.push(format!("channel {} was removed", s.name));
        }
    }
    Ok((out, not_created))
}

fn profile_of(plan: &Plan) -> Profile {
    let org_dir = |o: &str| PathBuf::from("orgs").join(o);
    Profile {
        version: PROFILE_VERSION,
        consortium: plan.consortium.clone(),
        namespace: plan.namespace.clone(),
        organizations: plan
            .organizations
            .iter()
            .map(|o| ProfileOrg {
                name: o.name.clone(),
                ca: org_dir(&o.name).join("ca.pem"),
                // An external organization's identities are on its own side.
                identities: if o.admin.is_none() {
                    Vec::new()
                } else {
                    [
                        (tally_planner::ADMIN_NAME, Role::Admin),
                        (tally_planner::CLIENT_NAME, Role::Client),
                    ]
                    .into_iter()
                    .map(|(name, role)| ProfileIdentity {
                        name: name.to_string(),
                        role,
                        dir: org_dir(&o.name).join(role.folder()).join(name),
                    })
                    .collect()
                },
            })
            .collect(),
        // Hosted nodes first: commands ask them before the other side's.
        nodes: plan
            .hosted_nodes()
            .chain(
                plan.nodes
                    .iter()
                    .filter(|n| !n.hosted() && !n.channels.is_empty()),
            )
            .map(|n| ProfileNode {
                name: n.name.clone(),
                org: n.org.clone(),
                role: n.role.as_str().to_string(),
                api_url: n.address.api_url.clone(),
                server_name: None,
                admin_addr: n.address.admin_addr.clone(),
                channels: n.channels.clone(),
            })
            .collect(),
        channels: plan
            .channels
            .iter()
            .map(|c| ProfileChannel {
                name: c.name.clone(),
                members: c.genesis.members.iter().map(|m| m.name.clone()).collect(),
                nodes: c.genesis.nodes().map(|n| n.name.clone()).collect(),
            })
            .collect(),
    }
}

fn print_ready(
    ctx: &Ctx,
    dir: &Path,
    files: &[PathBuf],
    profile: &Profile,
    leaders: &BTreeMap<String, (String, u64)>,
    console: Option<&super::console::RunningConsole>,
) -> Result<()> {
    let report = serde_json::json!({
        "consortium": profile.consortium,
        "data_dir": dir,
        "console": console.map(|c| serde_json::json!({"org": c.org, "url": c.url})),
        "nodes": profile.nodes,
        "channels": profile.channels.iter().map(|c| {
            let (leader, height) = leaders.get(&c.name).cloned().unwrap_or_default();
            serde_json::json!({"name": c.name, "members": c.members, "leader": leader, "height": height})
        }).collect::<Vec<_>>(),
    });
    ctx.show(&report, || {
        println!();
        let mut table = vec![vec![
            "NODE".to_string(),
            "ORG".into(),
            "ROLE".into(),
            "CHANNELS".into(),
            "CLIENT API".into(),
        ]];
        for n in &profile.nodes {
            table.push(vec![
                n.name.clone(),
                n.org.clone(),
                n.role.clone(),
                n.channels.join(","),
                n.api_url.clone(),
            ]);
        }
        super::output::print_table(&table);
        if let Some(c) = console {
            println!();
            println!(
                "web console  {}  (reads as {}; read-only, this machine only)",
                c.url, c.org
            );
        }
        println!();
        for c in &profile.channels {
            let (leader, height) = leaders.get(&c.name).cloned().unwrap_or_default();
            println!(
                "channel {:<16} members {:<40} leader {leader}, height {height}",
                c.name,
                c.members.join(",")
            );
        }
        let d = dir.display();
        // A member whose identities this side holds (not one of the other side's).
        let held = |o: &&String| profile.org(o).is_ok_and(|p| !p.identities.is_empty());
        let (org, ch) = (
            profile
                .channels
                .first()
                .and_then(|c| c.members.iter().find(held))
                .cloned()
                .unwrap_or_default(),
            profile
                .channels
                .first()
                .map(|c| c.name.clone())
                .unwrap_or_default(),
        );
        println!();
        println!("Ready. Try, in another terminal:");
        println!("  tallyctl --data-dir {d} --org {org} tx put --channel {ch} greeting hello");
        println!("  tallyctl --data-dir {d} --org {org} tx get --channel {ch} greeting");
        println!("  tallyctl --data-dir {d} status --channel {ch}");
        println!("  tallyctl --data-dir {d} --org {org} blocks follow --channel {ch}");
        println!(
            "Ctrl-C stops the consortium; `tallyctl up -f {} --data-dir {d}` resumes it.",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        println!();
    })?;
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    Ok(())
}

/// Prints committed blocks of every channel, leader changes and node exits, one short line
/// each, until SIGINT or SIGTERM.
async fn stream_until_signal(
    cluster: &LocalCluster,
    profile: &Profile,
    signals: &mut Signals,
    renewer: &mut Renewer<'_>,
) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
    let mut tasks = Vec::new();
    for ch in &profile.channels {
        // The cluster's clients sign reads as their node's organization, a channel member.
        let ours = cluster.node_names();
        let clients: Vec<tally_client::Client> = ch
            .nodes
            .iter()
            .filter(|n| ours.contains(n))
            .map(|n| cluster.client(n))
            .collect();
        tasks.push(tokio::spawn(follow_channel(
            ch.name.clone(),
            clients,
            tx.clone(),
        )));
    }
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut leaders: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut problems_seen = 0usize;
    loop {
        tokio::select! {
            _ = signals.recv() => break,
            Some(line) = rx.recv() => println!("{} {line}", clock()),
            _ = tick.tick() => {
                for ch in &profile.channels {
                    let now = cluster.leader(&ch.name).await;
                    let before = leaders.insert(ch.name.clone(), now.clone());
                    if before.is_some_and(|b| b != now) {
                        let who = now.unwrap_or_else(|| "none (election under way)".into());
                        println!("{} {:<14} leader is now {who}", clock(), ch.name);
                    }
                }
                let problems = cluster.problems();
                for p in problems.iter().skip(problems_seen) {
                    println!("{} problem: {p}", clock());
                }
                problems_seen = problems_seen.max(problems.len());
                // A renewal that fails is said and tried again at the next tick; the
                // certificates in use stay valid for renewBefore after they fell due.
                if let Err(e) = renewer.renew_due(cluster).await {
                    println!("{} problem: renewing certificates: {e:#}", clock());
                }
            }
        }
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

async fn follow_channel(
    channel: String,
    clients: Vec<tally_client::Client>,
    out: tokio::sync::mpsc::Sender<String>,
) {
    if clients.is_empty() {
        return;
    }
    let mut next = None;
    let mut i = 0usize;
    loop {
        let c = &clients[i % clients.len()];
        i += 1;
        let from = match next {
            Some(n) => n,
            None => match c.status(&channel).await {
                Ok(s) => s.height,
                Err(_) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let Ok(mut rx) = c.follow(&channel, from).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        while let Some(Ok(b)) = rx.recv().await {
            next = Some(b.header.number + 1);
            let line = format!(
                "{channel:<14} block {:>6}  {:>4} txs  {}",
                b.header.number,
                b.txs.len(),
                &b.header.hash().to_hex()[..12]
            );
            if out.send(line).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn clock() -> String {
    let s = now_unix().rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// This side of the consortium: the external organizations (bundles in the files,
/// `--external`, and those recorded by an earlier `up`), the resources as this side plans
/// them, and the approvals given with `--approval`.
fn this_side(
    res: &Resources,
    namespace: &str,
    consortium: &str,
    args: &UpArgs,
    dir: &Path,
    fresh: bool,
) -> Result<Side> {
    let mut externals: Externals = BTreeMap::new();
    for b in up_sides::read_bundles(&args.files)? {
        externals.insert(b.organization.clone(), Some(b));
    }
    let recorded = if fresh {
        Vec::new()
    } else {
        read_state(dir).map(|s| s.external).unwrap_or_default()
    };
    for o in args.external.iter().chain(&recorded) {
        externals.entry(o.clone()).or_insert(None);
    }
    let mut plan_res = res.to_plan();
    let waiting = up_sides::apply(&mut plan_res, namespace, consortium, &externals)?;
    let approvals = read_approval_files(&args.approvals)?;
    Ok(Side {
        res: plan_res,
        externals,
        waiting,
        approvals,
    })
}
