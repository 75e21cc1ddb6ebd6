//! A backup made from a ledger with blocks, verified, restored into an empty data directory
//! (the same ledger, new Raft state, the markers), and refused whole when a chunk is corrupted
//! or the manifest lies.

use super::chunking::Cuts;
use super::{make, manifest, restore, BackupError, Repo};
use crate::keys::{self, Keys};
use crate::ledger::Ledger;
use protobuf::Message as _;
use raft::prelude::{ConfState, HardState};
use rocksdb::{WriteBatch, DB};
use std::sync::Arc;
use tally_protocol::codec::Encode;
use tally_protocol::identity::Role;
use tally_protocol::{ChannelConfig, Hash, Payload, Signer, Transaction, TxBody, Write};

fn config(ca: &tally_protocol::OrgCa) -> ChannelConfig {
    ChannelConfig {
        name: "ch".into(),
        members: vec![tally_protocol::OrgMember::new("org1", &ca.cert_pem())],
        consenters: vec![tally_protocol::NodeRef {
            id: 1,
            name: "n1".into(),
            org: "org1".into(),
            peer_addr: "127.0.0.1:1".into(),
            api_url: "http://127.0.0.1:2".into(),
        }],
        observers: vec![],
        batch: Default::default(),
        policies: Default::default(),
        snapshot_interval: 100,
        max_tx_bytes: 100_000,
        tx_window_s: 600,
    }
}

/// A ledger with the Raft conf state a channel keeps, and a client of its organization.
fn ledger() -> (tempfile::TempDir, Arc<Ledger>, tally_protocol::Identity) {
    let dir = tempfile::tempdir().expect("dir");
    let db = Arc::new(DB::open_default(dir.path()).expect("db"));
    let ca = tally_protocol::OrgCa::generate("org1").expect("ca");
    let client = ca.issue(Role::Client, "c1", &[]).expect("client");
    let engine = Arc::new(tally_runtime::Engine::new(tally_runtime::Limits::default()));
    let ledger = Arc::new(Ledger::open(db.clone(), config(&ca), engine).expect("open"));
    let cs = ConfState {
        voters: vec![1],
        ..ConfState::default()
    };
    db.put(
        Keys::new("ch").kind(keys::CONF_STATE),
        cs.write_to_bytes().expect("conf state"),
    )
    .expect("put");
    (dir, ledger, client)
}

/// Appends `n` blocks of 20 writes each (keys from a set of 300, so later blocks overwrite).
fn add_blocks(ledger: &Ledger, client: &tally_protocol::Identity, n: u64) {
    let now = tally_protocol::now_ms();
    for _ in 0..n {
        let b = ledger.tip().height;
        let raws: Vec<Vec<u8>> = (0..20u64)
            .map(|i| {
                let body = TxBody {
                    channel: "ch".into(),
                    nonce: b * 100 + i,
                    timestamp_ms: now,
                    signer: Signer::Certificate(client.cert_der.clone()),
                    payload: Payload::KvWrite {
                        reads: vec![],
                        writes: vec![Write {
                            key: format!("key-{:04}", (b * 7 + i) % 300),
                            // Hex of hashes: values that compress about as real ones do.
                            value: Some(
                                format!(
                                    "value {b} {i} {}",
                                    Hash::tagged(b"v", &[&b.to_be_bytes(), &i.to_be_bytes()])
                                        .to_string()
                                        .repeat(3)
                                )
                                .into_bytes(),
                            ),
                        }],
                    },
                };
                Transaction::sign(body, client).to_bytes()
            })
            .collect();
        let data = tally_protocol::write_batch(now, raws.iter().map(Vec::as_slice));
        let mut wb = WriteBatch::default();
        let index = ledger.tip().applied_index + 1;
        let (_, tip) = ledger
            .apply_batch(&data, 2, index, &|_: &Hash, _: &[u8]| false, &mut wb)
            .expect("apply")
            .expect("a block");
        ledger.db().write(wb).expect("write");
        ledger.commit_tip(tip);
    }
}

fn file_repo(dir: &std::path::Path) -> Repo {
    Repo::open(&format!("file://{}", dir.display()), &Default::default()).expect("repo")
}

#[test]
fn a_backup_verifies_restores_whole_and_the_next_one_reuses_chunks() {
    let (_d, ledger, client) = ledger();
    add_blocks(&ledger, &client, 30);
    let store = tempfile::tempdir().expect("store");
    let repo = file_repo(store.path());
    let cuts = Cuts::around(4096);
    let m = make::make(&ledger, "n1", &repo, cuts, &mut |_| {}).expect("backup");
    let tip = ledger.tip();
    assert_eq!(
        (m.height, m.raft.index, m.raft.term),
        (tip.height, tip.applied_index, tip.applied_term)
    );
    assert!(m.chunks.len() > 10, "{} chunks", m.chunks.len());
    let checked = restore::verify(&repo, &m, &mut |_, _| {}).expect("verifies");
    assert_eq!(checked.height, tip.height);

    // Restored into an empty data directory: the same ledger, new Raft state, the markers.
    let target = tempfile::tempdir().expect("target");
    assert!(!restore::has_ledger(target.path(), "ch").expect("nothing there"));
    let r = restore::restore(
        target.path(),
        &repo,
        &m,
        Some(&ledger.genesis),
        false,
        &mut |_, _| {},
    )
    .expect("restore");
    assert_eq!(r.height, tip.height);
    // What `restore --if-missing` looks at: this channel is there now, another is not.
    assert!(restore::has_ledger(target.path(), "ch").expect("read"));
    assert!(!restore::has_ledger(target.path(), "other").expect("read"));
    let db = Arc::new(DB::open_default(target.path().join("ledger")).expect("open"));
    let engine = Arc::new(tally_runtime::Engine::new(tally_runtime::Limits::default()));
    let back = Ledger::open(db.clone(), (*ledger.genesis).clone(), engine).expect("open");
    assert_eq!(back.tip(), tip);
    assert_eq!(back.dump().expect("dump"), ledger.dump().expect("dump"));
    assert_eq!(back.verify_state().expect("check"), None);
    let k = Keys::new("ch");
    let hs = HardState::parse_from_bytes(
        &db.get(k.kind(keys::HARD_STATE))
            .expect("get")
            .expect("hard state"),
    )
    .expect("decode");
    assert_eq!(
        (hs.term, hs.vote, hs.commit),
        (tip.applied_term, 0, tip.applied_index)
    );
    assert!(db.get(keys::rejoining("ch")).expect("get").is_some());
    let marker = db
        .get(keys::restored("ch"))
        .expect("get")
        .expect("restored marker");
    assert_eq!(
        restore::parse_restored_marker(&marker),
        Some((tip.height, tip.last_hash))
    );
    assert!(db.get(keys::joined("ch")).expect("get").is_some());

    // Three more blocks: the next backup stores only what changed.
    drop(back);
    add_blocks(&ledger, &client, 3);
    let more = make::make(&ledger, "n1", &repo, cuts, &mut |_| {}).expect("second backup");
    let new: Vec<_> = more
        .chunks
        .iter()
        .filter(|c| !m.chunks.iter().any(|o| o.hash == c.hash))
        .collect();
    assert!(
        new.len() * 3 < more.chunks.len(),
        "{} of {} chunks are new",
        new.len(),
        more.chunks.len()
    );
}

#[test]
fn a_corrupted_chunk_or_a_lying_manifest_is_refused_and_nothing_is_installed() {
    let (_d, ledger, client) = ledger();
    add_blocks(&ledger, &client, 10);
    let store = tempfile::tempdir().expect("store");
    let repo = file_repo(store.path());
    let m = make::make(&ledger, "n1", &repo, Cuts::around(4096), &mut |_| {}).expect("backup");

    // A manifest that claims another height.
    let mut lying = m.clone();
    lying.height += 1;
    let target = tempfile::tempdir().expect("target");
    let e = restore::restore(target.path(), &repo, &lying, None, false, &mut |_, _| {})
        .expect_err("a lying manifest");
    assert!(matches!(e, BackupError::Refused(_)), "{e}");
    assert_nothing(target.path());

    // One flipped byte in one chunk.
    let victim = &m.chunks[m.chunks.len() / 2];
    let path = store.path().join(manifest::chunk_path(&victim.hash));
    let mut b = std::fs::read(&path).expect("chunk");
    b[0] ^= 1;
    std::fs::write(&path, b).expect("corrupt");
    let e = restore::verify(&repo, &m, &mut |_, _| {}).expect_err("corrupted");
    assert!(
        e.to_string().contains("corrupted") && e.to_string().contains(&victim.hash),
        "{e}"
    );
    let e = restore::restore(target.path(), &repo, &m, None, false, &mut |_, _| {})
        .expect_err("corrupted");
    assert!(e.to_string().contains("corrupted"), "{e}");
    assert_nothing(target.path());
}

fn assert_nothing(dir: &std::path::Path) {
    let db = DB::open_default(dir.join("ledger")).expect("open");
    for prefix in [&b"n/"[..], b"cch\0"] {
        let left = db
            .prefix_iterator(prefix)
            .flatten()
            .any(|(k, _)| k.starts_with(prefix));
        assert!(
            !left,
            "records under {:?} left",
            String::from_utf8_lossy(prefix)
        );
    }
}

/// Backup, verify and restore throughput on a ledger of a few tens of MB, to a file repository
/// on the local disk. Run by hand (`--ignored --nocapture`); docs/benchmarks.md has a figure.
#[test]
#[ignore]
fn throughput() {
    let blocks: u64 = std::env::var("TALLY_BACKUP_BENCH_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let (_d, ledger, client) = ledger();
    let t = std::time::Instant::now();
    add_blocks(&ledger, &client, blocks);
    eprintln!(
        "ledger of {blocks} blocks built in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let store = tempfile::tempdir().expect("store");
    let repo = file_repo(store.path());
    let t = std::time::Instant::now();
    let m = make::make(&ledger, "n1", &repo, Cuts::default(), &mut |_| {}).expect("backup");
    let backup_s = t.elapsed().as_secs_f64();
    let mb = m.totals.raw as f64 / 1e6;
    let t = std::time::Instant::now();
    let again = make::make(&ledger, "n1", &repo, Cuts::default(), &mut |_| {}).expect("again");
    let again_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    restore::verify(&repo, &m, &mut |_, _| {}).expect("verify");
    let verify_s = t.elapsed().as_secs_f64();
    let target = tempfile::tempdir().expect("target");
    let t = std::time::Instant::now();
    restore::restore(target.path(), &repo, &again, None, false, &mut |_, _| {}).expect("restore");
    let restore_s = t.elapsed().as_secs_f64();
    eprintln!(
        "ledger {mb:.1} MB raw, {:.1} MB stored in {} chunks; backup {backup_s:.2}s ({:.0} MB/s), unchanged again {again_s:.2}s ({:.0} MB/s, all reused), verify {verify_s:.2}s ({:.0} MB/s), restore {restore_s:.2}s ({:.0} MB/s)",
        m.totals.stored as f64 / 1e6,
        m.chunks.len(),
        mb / backup_s,
        mb / again_s,
        mb / verify_s,
        mb / restore_s
    );
}
