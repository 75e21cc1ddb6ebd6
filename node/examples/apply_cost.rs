//! What applying blocks of key/value writes costs one node, without Raft, network or clients:
//! the deterministic step (`Ledger::apply_batch`) and the RocksDB write of its records, on the
//! node's own database settings, timed on this thread with the process's CPU beside it
//! (RocksDB flushes and compacts on threads of its own).
//!
//! The end-to-end benchmark (tally-bench) shares two cores between three nodes and its clients
//! and moves by 10-20 % between runs; a change to the apply path worth a few percent shows here.
//!
//! cargo run --release -p tally-node --example apply_cost -- [--blocks N] [--txs N]
//!     [--value-size N] [--signatures batch|checked]
//!
//! `--signatures batch` (default) checks each block's signatures as one batch, as a follower
//! does; `checked` counts them as checked at submission, as on the node that received them.

use anyhow::{bail, Context};
use rocksdb::{WriteBatch, WriteOptions, DB};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_node::ledger::Ledger;
use tally_protocol::codec::Encode;
use tally_protocol::identity::{cert_hash, Role};
use tally_protocol::{
    ChannelConfig, Hash, NodeRef, OrgCa, OrgMember, Payload, Signer, Transaction, TxBody, Write,
};

struct Args {
    blocks: usize,
    txs: usize,
    value_size: usize,
    batch_verify: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        blocks: 400,
        txs: 500,
        value_size: 256,
        batch_verify: true,
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

fn channel(ca: &OrgCa) -> ChannelConfig {
    ChannelConfig {
        name: "bench".into(),
        members: vec![OrgMember::new("org1", &ca.cert_pem())],
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

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let db = Arc::new(DB::open(&tally_node::db_options::db_options(), dir.path())?);
    let ca = OrgCa::generate("org1")?;
    let client = ca.issue(Role::Client, "c1", &[])?;
    let engine = Arc::new(tally_runtime::Engine::new(tally_runtime::Limits::default()));
    let ledger = Ledger::open(db.clone(), channel(&ca), engine)?;

    eprintln!(
        "signing {} blocks of {} transactions ({}-byte values)...",
        a.blocks, a.txs, a.value_size
    );
    let start_ms = tally_protocol::now_ms();
    let value = vec![0x5a; a.value_size];
    let mut blocks = Vec::with_capacity(a.blocks);
    for b in 0..a.blocks {
        let txs: Vec<Vec<u8>> = (0..a.txs)
            .map(|i| {
                let n = (b * a.txs + i) as u64;
                // The first block registers the certificate; later ones name it by hash, as
                // clients do once the channel knows it.
                let signer = if b == 0 {
                    Signer::Certificate(client.cert_der.clone())
                } else {
                    Signer::CertHash(cert_hash(&client.cert_der))
                };
                // Keys spread over the key space as the bench's random keys are.
                let key = Hash::tagged(b"apply-cost", &[&n.to_be_bytes()]).to_hex();
                let body = TxBody {
                    channel: "bench".into(),
                    nonce: n,
                    timestamp_ms: start_ms,
                    signer,
                    payload: Payload::KvWrite {
                        reads: vec![],
                        writes: vec![Write {
                            key: key[..24].to_string(),
                            value: Some(value.clone()),
                        }],
                    },
                };
                Transaction::sign(body, &client).to_bytes()
            })
            .collect();
        blocks.push(tally_protocol::write_batch(
            start_ms + b as u64,
            txs.iter().map(Vec::as_slice),
        ));
        if (b + 1) % 100 == 0 {
            eprintln!("  {} blocks signed", b + 1);
        }
    }

    let preverified = |_: &Hash, _: &[u8]| !a.batch_verify;
    let mut wopts = WriteOptions::default();
    // What is measured is CPU; the node's fsync is the disk's latency, not work.
    wopts.set_sync(false);
    let (mut apply, mut write) = (Duration::ZERO, Duration::ZERO);
    let cpu0 = process_cpu();
    let wall0 = Instant::now();
    for (b, data) in blocks.iter().enumerate() {
        let t0 = Instant::now();
        let mut wb = WriteBatch::default();
        let Some((applied, tip)) =
            ledger.apply_batch(data, 1, b as u64 + 1, &preverified, &mut wb)?
        else {
            bail!("block {b} was not a batch");
        };
        let t1 = Instant::now();
        db.write_opt(wb, &wopts)?;
        let t2 = Instant::now();
        ledger.commit_tip(tip);
        if let Some(r) = applied.receipts.iter().find(|r| !r.status.is_committed()) {
            bail!("block {b}: a transaction did not commit: {:?}", r.status);
        }
        apply += t1 - t0;
        write += t2 - t1;
        if (b + 1) % 100 == 0 {
            eprintln!("  {} blocks applied", b + 1);
        }
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = process_cpu() - cpu0;
    let n = (a.blocks * a.txs) as f64;
    let us = |d: Duration| d.as_secs_f64() * 1e6 / n;
    println!(
        "{} transactions in {} blocks, {}-byte values, signatures {}",
        a.blocks * a.txs,
        a.blocks,
        a.value_size,
        if a.batch_verify {
            "checked per block as a batch"
        } else {
            "counted as checked at submission"
        }
    );
    println!(
        "apply (this thread)           {:8.2} µs per transaction",
        us(apply)
    );
    println!(
        "RocksDB write (this thread)   {:8.2} µs per transaction",
        us(write)
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
