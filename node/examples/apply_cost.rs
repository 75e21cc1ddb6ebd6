//! What applying blocks of key/value writes or chaincode calls costs one node, without Raft,
//! network or clients: the deterministic step (`Ledger::apply_batch`) and the RocksDB write of
//! its records, on the node's own database settings, timed on this thread with the process's
//! CPU beside it (RocksDB flushes and compacts on threads of its own).
//!
//! The end-to-end benchmark (tally-bench) shares two cores between three nodes and its clients
//! and moves by 10-20 % between runs; a change to the apply path worth a few percent shows here.
//!
//! cargo run --release -p tally-node --example apply_cost -- [--blocks N] [--txs N]
//!     [--value-size N] [--signatures batch|checked] [--chaincode receivables.wasm]
//!
//! `--signatures batch` (default) checks each block's signatures as one batch, as a follower
//! does; `checked` counts them as checked at submission, as on the node that received them.
//! `--chaincode` applies receivables `transfer` invokes instead of key/value writes, as
//! tally-bench's chaincode phase sends them (`--value-size` then does not apply): the module
//! is installed, approved and committed and one part per transaction issued first, untimed,
//! and each timed block then passes every part once between two organizations.

use anyhow::{bail, Context};
use rocksdb::{WriteBatch, WriteOptions, DB};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_node::ledger::Ledger;
use tally_protocol::codec::Encode;
use tally_protocol::identity::{cert_hash, Role};
use tally_protocol::{
    ChaincodeDefinition, ChannelConfig, Hash, Identity, InitCall, NodeRef, OrgCa, OrgMember,
    Payload, Signer, Transaction, TxBody, Write,
};

struct Args {
    blocks: usize,
    txs: usize,
    value_size: usize,
    batch_verify: bool,
    chaincode: Option<std::path::PathBuf>,
}

/// The chaincode's name on the channel, as in tally-bench.
const CHAINCODE: &str = "receivables";

/// Blocks as the signed transactions of each, before they are framed as batches.
type Blocks = Vec<Vec<Vec<u8>>>;

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        blocks: 400,
        txs: 500,
        value_size: 256,
        batch_verify: true,
        chaincode: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--blocks" => a.blocks = value()?.parse().context("--blocks")?,
            "--txs" => a.txs = value()?.parse().context("--txs")?,
            "--value-size" => a.value_size = value()?.parse().context("--value-size")?,
            "--signatures" => {
                a.batch_verify = match value()?.as_str() {
                    "batch" => true,
                    "checked" => false,
                    other => bail!("--signatures is batch or checked, not {other:?}"),
                }
            }
            "--chaincode" => a.chaincode = Some(value()?.into()),
            other => {
                bail!("unknown option {other:?} (see the comment at the top of apply_cost.rs)")
            }
        }
    }
    if a.blocks == 0 || a.txs == 0 {
        bail!("--blocks and --txs must be at least 1");
    }
    Ok(a)
}

fn channel(cas: &[OrgCa]) -> ChannelConfig {
    ChannelConfig {
        name: "bench".into(),
        members: cas
            .iter()
            .enumerate()
            .map(|(i, ca)| OrgMember::new(&format!("org{}", i + 1), &ca.cert_pem()))
            .collect(),
        consenters: vec![NodeRef {
            id: 1,
            name: "n1".into(),
            org: "org1".into(),
            peer_addr: "127.0.0.1:1".into(),
            api_url: "https://127.0.0.1:2".into(),
        }],
        observers: vec![],
        batch: Default::default(),
        policies: Default::default(),
        snapshot_interval: 100_000,
        max_tx_bytes: 1 << 20,
        tx_window_s: 3600,
    }
}

/// Signs a transaction; the first one of each signer carries its certificate, later ones name
/// it by hash, as clients do once the channel knows it.
struct Signing {
    start_ms: u64,
    nonce: u64,
    known: std::collections::HashSet<Hash>,
}

impl Signing {
    fn sign(&mut self, id: &Identity, payload: Payload) -> Vec<u8> {
        let hash = cert_hash(&id.cert_der);
        let signer = if self.known.insert(hash) {
            Signer::Certificate(id.cert_der.clone())
        } else {
            Signer::CertHash(hash)
        };
        self.nonce += 1;
        let body = TxBody {
            channel: "bench".into(),
            nonce: self.nonce,
            timestamp_ms: self.start_ms,
            signer,
            payload,
        };
        Transaction::sign(body, id).to_bytes()
    }
}

fn invoke(function: &str, args: &[&str]) -> Payload {
    Payload::Invoke {
        chaincode: CHAINCODE.into(),
        function: function.into(),
        args: tally_runtime::fields::encode(args),
        fuel: 0,
    }
}

/// The untimed blocks that make the receivables contract active and issue one part per
/// transaction of a block, held by org1, then the timed blocks of transfers.
fn chaincode_blocks(
    a: &Args,
    module: &[u8],
    admins: &[Identity],
    clients: &[Identity],
    s: &mut Signing,
) -> (Blocks, Blocks) {
    let definition = ChaincodeDefinition {
        name: CHAINCODE.into(),
        version: "bench".into(),
        sequence: 1,
        module_hash: tally_protocol::chaincode::module_hash(module),
        init: Some(InitCall {
            function: "init".into(),
            args: tally_runtime::fields::encode(&["core", "org1"]),
        }),
    };
    let approve = |s: &mut Signing, admin: &Identity| {
        s.sign(
            admin,
            Payload::ChaincodeApprove {
                name: CHAINCODE.into(),
                sequence: 1,
                module_hash: definition.module_hash,
            },
        )
    };
    let maturity = (s.start_ms + 365 * 86_400_000).to_string();
    let ids: Vec<String> = (0..a.txs).map(|i| format!("P{i}")).collect();
    let setup = vec![
        vec![s.sign(
            &admins[0],
            Payload::ChaincodeInstall {
                definition: definition.clone(),
                module: module.to_vec(),
            },
        )],
        admins.iter().map(|ad| approve(s, ad)).collect(),
        vec![s.sign(
            &admins[0],
            Payload::ChaincodeCommit {
                name: CHAINCODE.into(),
                sequence: 1,
            },
        )],
        ids.iter()
            .map(|id| {
                s.sign(
                    &clients[0],
                    invoke("issue", &[id, "org1", "1000000", &maturity]),
                )
            })
            .collect(),
    ];
    let timed = (0..a.blocks)
        .map(|b| {
            // Even blocks pass every part from org1 to org2, odd ones back.
            let (from, to) = if b % 2 == 0 { (0, "org2") } else { (1, "org1") };
            signed(b);
            ids.iter()
                .map(|id| s.sign(&clients[from], invoke("transfer", &[id, to])))
                .collect()
        })
        .collect();
    (setup, timed)
}

/// Progress while signing, which takes a while for large runs.
fn signed(block: usize) {
    if block > 0 && block.is_multiple_of(100) {
        eprintln!("  {block} blocks signed");
    }
}

/// Seconds of CPU the whole process has used (all threads).
fn process_cpu() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// Key/value blocks: one write of `value_size` bytes per transaction, to a fresh key.
fn kv_blocks(a: &Args, client: &Identity, s: &mut Signing) -> Blocks {
    let value = vec![0x5a; a.value_size];
    (0..a.blocks)
        .map(|b| {
            signed(b);
            (0..a.txs)
                .map(|i| {
                    let n = (b * a.txs + i) as u64;
                    // Keys spread over the key space as the bench's random keys are.
                    let key = Hash::tagged(b"apply-cost", &[&n.to_be_bytes()]).to_hex();
                    let payload = Payload::KvWrite {
                        reads: vec![],
                        writes: vec![Write {
                            key: key[..24].to_string(),
                            value: Some(value.clone()),
                        }],
                    };
                    s.sign(client, payload)
                })
                .collect()
        })
        .collect()
}

/// Where one block's time went.
#[derive(Default)]
struct Spent {
    apply: Duration,
    write: Duration,
    /// The chaincode calls inside `apply`.
    calls: Duration,
}

/// Applies and writes the blocks in order, as the channel's thread does, and says where the
/// time went. Every transaction must commit: one that does not would measure a rejection.
fn apply_all(
    ledger: &Ledger,
    db: &DB,
    blocks: &[Vec<u8>],
    first_index: u64,
    batch_verify: bool,
) -> anyhow::Result<Spent> {
    let preverified = |_: &Hash, _: &[u8]| !batch_verify;
    let mut wopts = WriteOptions::default();
    // What is measured is CPU; the node's fsync is the disk's latency, not work.
    wopts.set_sync(false);
    let mut spent = Spent::default();
    for (b, data) in blocks.iter().enumerate() {
        let index = first_index + b as u64;
        let t0 = Instant::now();
        let mut wb = WriteBatch::default();
        let Some((applied, tip)) = ledger.apply_batch(data, 1, index, &preverified, &mut wb)?
        else {
            bail!("block {index} was not a batch");
        };
        let t1 = Instant::now();
        db.write_opt(wb, &wopts)?;
        let t2 = Instant::now();
        ledger.commit_tip(tip);
        if let Some(r) = applied.receipts.iter().find(|r| !r.status.is_committed()) {
            bail!(
                "block {index}: a transaction did not commit: {:?}",
                r.status
            );
        }
        spent.apply += t1 - t0;
        spent.write += t2 - t1;
        spent.calls += applied
            .exec
            .iter()
            .map(|e| Duration::from_secs_f64(e.seconds))
            .sum::<Duration>();
        if (b + 1) % 100 == 0 {
            eprintln!("  {} blocks applied", b + 1);
        }
    }
    Ok(spent)
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let module = match &a.chaincode {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("reading the chaincode module {}", path.display()))?,
        ),
        None => None,
    };
    let dir = tempfile::tempdir()?;
    let db = Arc::new(DB::open(&tally_node::db_options::db_options(), dir.path())?);
    // Transfers pass parts between two organizations; key/value writes need one.
    let orgs = if module.is_some() { 2 } else { 1 };
    let cas = (1..=orgs)
        .map(|i| OrgCa::generate(&format!("org{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let clients = cas
        .iter()
        .map(|ca| ca.issue(Role::Client, "client", &[]))
        .collect::<Result<Vec<_>, _>>()?;
    let admins = cas
        .iter()
        .map(|ca| ca.issue(Role::Admin, "admin", &[]))
        .collect::<Result<Vec<_>, _>>()?;
    let engine = Arc::new(tally_runtime::Engine::new(tally_runtime::Limits::default()));
    let ledger = Ledger::open(db.clone(), channel(&cas), engine)?;

    let what = match &module {
        Some(_) => "receivables transfers".to_string(),
        None => format!("{}-byte values", a.value_size),
    };
    eprintln!(
        "signing {} blocks of {} transactions ({what})...",
        a.blocks, a.txs
    );
    let start_ms = tally_protocol::now_ms();
    let mut signing = Signing {
        start_ms,
        nonce: 0,
        known: Default::default(),
    };
    let (setup, timed) = match &module {
        Some(m) => chaincode_blocks(&a, m, &admins, &clients, &mut signing),
        None => (vec![], kv_blocks(&a, &clients[0], &mut signing)),
    };
    let batch = |(i, txs): (usize, &Vec<Vec<u8>>)| {
        tally_protocol::write_batch(start_ms + i as u64, txs.iter().map(Vec::as_slice))
    };
    let setup: Vec<Vec<u8>> = setup.iter().enumerate().map(batch).collect();
    let timed: Vec<Vec<u8>> = timed
        .iter()
        .enumerate()
        .map(|(i, b)| batch((setup.len() + i, b)))
        .collect();
    // Signatures of the setup are checked as a follower would; only the timed blocks follow
    // `--signatures`.
    apply_all(&ledger, &db, &setup, 1, true).context("setting up the chaincode")?;

    let cpu0 = process_cpu();
    let wall0 = Instant::now();
    let spent = apply_all(&ledger, &db, &timed, 1 + setup.len() as u64, a.batch_verify)?;
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = process_cpu() - cpu0;
    let n = (a.blocks * a.txs) as f64;
    let us = |d: Duration| d.as_secs_f64() * 1e6 / n;
    println!(
        "{} transactions in {} blocks, {what}, signatures {}",
        a.blocks * a.txs,
        a.blocks,
        if a.batch_verify {
            "checked per block as a batch"
        } else {
            "counted as checked at submission"
        }
    );
    println!(
        "apply (this thread)           {:8.2} µs per transaction",
        us(spent.apply)
    );
    if module.is_some() {
        println!(
            "  of which chaincode calls    {:8.2} µs per transaction",
            us(spent.calls)
        );
    }
    println!(
        "RocksDB write (this thread)   {:8.2} µs per transaction",
        us(spent.write)
    );
    println!(
        "process CPU (all threads)     {:8.2} µs per transaction",
        cpu * 1e6 / n
    );
    println!(
        "wall                          {:8.2} µs per transaction",
        wall * 1e6 / n
    );
    Ok(())
}
