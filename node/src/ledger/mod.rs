//! The ledger of one channel: blocks, transaction index, world state, key history and the
//! certificate registry, and the deterministic step that turns an ordered batch into a block.
//!
//! Split by what each part does: `checks` (what a transaction must satisfy before and at
//! ordering: static shape, signer, policy, time), `apply` (an ordered batch becoming a
//! block), `reads` (state, history, keys, receipts, blocks), `snapshots` (dump and
//! verification for Raft snapshots), `snapshot_intake` and `snapshot_install` (a streamed
//! snapshot checked and staged as it arrives, then swapped in), `tip` (where the ledger stands
//! and the configuration in force) and `chaincode` (the lifecycle and calls).

use crate::keys::{self, Keys};
use parking_lot::RwLock;
use rocksdb::{WriteBatch, DB};
use std::collections::HashMap;
use std::sync::Arc;
use tally_protocol::codec::Encode;
use tally_protocol::merkle;
use tally_protocol::retirement::Retirement;
use tally_protocol::state::StateDigest;
use tally_protocol::{Block, BlockHeader, ChannelConfig, Hash};
use tally_runtime::Engine;
use thiserror::Error;

mod apply;
mod block_time;
mod chaincode;
mod checks;
#[cfg(test)]
mod define_tests;
mod governance;
mod proof_cache;
mod reads;
mod retire;
pub(crate) mod snapshot_forge;
pub(crate) mod snapshot_install;
mod snapshot_intake;
mod snapshots;
mod tip;
pub use apply::Applied;
use apply::Scratch;
pub use chaincode::ExecStat;
pub use checks::KnownSigner;
use reads::{decode_state, StateEntry};
pub use snapshot_forge::{CRASH_IN_INSTALL_VAR, FORGE_SNAPSHOT_VAR};
pub use snapshot_install::InstallWrite;
pub use snapshot_intake::{Intake, IntakeError, StageWrite};
pub(crate) use snapshots::records;
pub use snapshots::{SnapshotRefused, VerifiedSnapshot};
pub use tip::{InForce, Tip};

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error("storage: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("corrupt record {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// The chaincode runtime's access to state failed (`ExecError::Host`): a storage failure
    /// of this node, never a property of the transaction.
    #[error("chaincode state access: {0}")]
    ChaincodeHost(String),
}

fn corrupt(what: &'static str, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

pub const MAX_KEY_LEN: usize = 1024;

pub struct Ledger {
    pub name: String,
    pub keys: Keys,
    /// The configuration the channel was created with; block 0 commits to its hash.
    pub genesis: Arc<ChannelConfig>,
    pub genesis_hash: Hash,
    /// The configuration in force: the genesis one changed by every configuration
    /// transaction applied so far. Replaced only by the channel's thread, between blocks.
    in_force: RwLock<InForce>,
    db: Arc<DB>,
    tip: RwLock<Tip>,
    /// Certificates whose chain has been checked, by certificate hash, with their decoded
    /// keys. Validity in time is checked on every use, against block time.
    verified_certs: RwLock<HashMap<Hash, Arc<KnownSigner>>>,
    /// The node's chaincode engine, shared by its channels (one compiled-module cache).
    engine: Arc<Engine>,
    /// Opening the ledger finished a snapshot install that a stop had interrupted.
    pub resumed_install: bool,
    /// Set once an approved proposal retired the channel (see `retire.rs`).
    retired: RwLock<Option<Retirement>>,
    /// Proof material of recently read blocks, for receipts.
    proofs: proof_cache::ProofCache,
}

impl Ledger {
    /// Opens the ledger of a channel, writing its genesis block if it has none.
    pub fn open(
        db: Arc<DB>,
        config: ChannelConfig,
        engine: Arc<Engine>,
    ) -> Result<Ledger, LedgerError> {
        config.validate().map_err(|e| corrupt("config", e))?;
        let keys = Keys::new(&config.name);
        // Before anything reads the ledger: an interrupted snapshot install is finished.
        let resumed_install = snapshot_install::recover_install(&db, &keys)?;
        let config_hash = config.hash();
        let tip = match db.get(keys.kind(keys::TIP))? {
            Some(b) => Tip::decode(&b).map_err(|e| corrupt("tip", e))?,
            None => {
                let header = BlockHeader {
                    version: tally_protocol::block::HEADER_VERSION,
                    channel: config.name.clone(),
                    number: 0,
                    // Block 0 has no predecessor; it commits to the channel's genesis
                    // configuration in that place instead.
                    prev_hash: config_hash,
                    tx_root: merkle::root(&[]),
                    results_root: merkle::root(&[]),
                    state_root: StateDigest::default().root(),
                    timestamp_ms: 0,
                    raft_term: 0,
                    raft_index: 0,
                };
                let block = Block {
                    header: header.clone(),
                    txs: vec![],
                    results: vec![],
                    effects: vec![],
                };
                let tip = Tip {
                    height: 1,
                    last_hash: header.hash(),
                    ..Tip::default()
                };
                let mut wb = WriteBatch::default();
                wb.put(keys.block(0), block.to_bytes());
                wb.put(keys.kind(keys::CONFIG), config.to_bytes());
                wb.put(keys.kind(keys::TIP), tip.encode());
                db.write(wb)?;
                tip
            }
        };
        let in_force = match db.get(keys.kind(keys::CONFIG_IN_FORCE))? {
            Some(b) => InForce::decode(&b)?,
            None => InForce::new(0, config.clone())?,
        };
        let ledger = Ledger {
            name: config.name.clone(),
            keys,
            genesis: Arc::new(config),
            genesis_hash: config_hash,
            in_force: RwLock::new(in_force),
            db,
            tip: RwLock::new(tip),
            verified_certs: RwLock::new(HashMap::new()),
            engine,
            resumed_install,
            retired: RwLock::new(None),
            proofs: Default::default(),
        };
        ledger.reload_retirement()?;
        Ok(ledger)
    }

    pub fn db(&self) -> &DB {
        &self.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::codec::Encode;
    use tally_protocol::identity::Role;
    use tally_protocol::{Payload, RejectCode, Signer, Transaction, TxStatus};

    #[test]
    fn tip_round_trips() {
        let t = Tip {
            height: 7,
            last_hash: Hash([3; 32]),
            digest: {
                let mut d = StateDigest::default();
                d.add("k", &tally_protocol::Version { block: 1, tx: 2 }, b"v");
                d
            },
            timestamp_ms: 9,
            applied_index: 11,
            applied_term: 2,
        };
        assert_eq!(Tip::decode(&t.encode()).unwrap(), t);
    }

    pub(super) fn ledger_with_member() -> (tempfile::TempDir, Ledger, tally_protocol::Identity) {
        let (dir, ledger, ca) = ledger_with_ca();
        let client = ca.issue(Role::Client, "c1", &[]).unwrap();
        (dir, ledger, client)
    }

    /// A one-organization channel, with that organization's CA to issue identities from.
    fn ledger_with_ca() -> (tempfile::TempDir, Ledger, tally_protocol::OrgCa) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(DB::open_default(dir.path()).unwrap());
        let ca = tally_protocol::OrgCa::generate("org1").unwrap();
        let cfg = ChannelConfig {
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
        };
        let engine = Arc::new(Engine::new(tally_runtime::Limits::default()));
        let ledger = Ledger::open(db, cfg, engine).unwrap();
        (dir, ledger, ca)
    }

    /// A state record edited behind the node's back no longer matches the commitment the tip
    /// keeps: the startup self-check says so; an untouched ledger passes it.
    #[test]
    fn an_edited_state_record_fails_the_self_check() {
        let (_dir, ledger, client) = ledger_with_member();
        let now = tally_protocol::now_ms();
        let body = tally_protocol::TxBody {
            channel: "ch".into(),
            nonce: 1,
            timestamp_ms: now,
            signer: Signer::Certificate(client.cert_der.clone()),
            payload: Payload::KvWrite {
                reads: vec![],
                writes: vec![tally_protocol::Write {
                    key: "balance".into(),
                    value: Some(b"100".to_vec()),
                }],
            },
        };
        let raw = Transaction::sign(body, &client).to_bytes();
        let data = tally_protocol::write_batch(now, std::iter::once(raw.as_slice()));
        let mut wb = WriteBatch::default();
        let (_, tip) = ledger
            .apply_batch(&data, 1, 1, &|_: &Hash, _: &[u8]| false, &mut wb)
            .unwrap()
            .unwrap();
        ledger.db().write(wb).unwrap();
        ledger.commit_tip(tip);
        assert_eq!(ledger.verify_state().unwrap(), None);
        let key = ledger.keys.state("balance");
        let mut rec = ledger.db().get(&key).unwrap().unwrap();
        *rec.last_mut().unwrap() = b'9';
        ledger.db().put(&key, &rec).unwrap();
        let why = ledger.verify_state().unwrap().expect("the edit is seen");
        assert!(why.contains("commits to"), "{why}");
    }

    /// Every node decides alike: a revocation applies from the block after the one that
    /// commits it (that block is applied under the configuration it replaces), and from then
    /// on a transaction of the revoked certificate is rejected at apply, signed with the
    /// certificate or by its hash, even one this node never saw at submission.
    #[test]
    fn a_revocation_applies_from_the_next_block_at_apply() {
        let (_dir, ledger, ca) = ledger_with_ca();
        let client = ca.issue(Role::Client, "c1", &[]).unwrap();
        let admin = ca.issue(Role::Admin, "a1", &[]).unwrap();
        let now = tally_protocol::now_ms();
        let put = |nonce: u64, signer: Signer| {
            let body = tally_protocol::TxBody {
                channel: "ch".into(),
                nonce,
                timestamp_ms: now,
                signer,
                payload: Payload::KvWrite {
                    reads: vec![],
                    writes: vec![tally_protocol::Write {
                        key: format!("k{nonce}"),
                        value: Some(b"v".to_vec()),
                    }],
                },
            };
            Transaction::sign(body, &client).to_bytes()
        };
        let apply = |raws: &[Vec<u8>]| {
            let data = tally_protocol::write_batch(now, raws.iter().map(Vec::as_slice));
            let mut wb = WriteBatch::default();
            let (applied, tip) = ledger
                .apply_batch(&data, 1, 1, &|_: &Hash, _: &[u8]| false, &mut wb)
                .unwrap()
                .unwrap();
            ledger.db().write(wb).unwrap();
            ledger.commit_tip(tip);
            // As the channel thread does once the block is written.
            if let Some(next) = applied.config.clone() {
                ledger.install_config(next);
            }
            applied
        };
        let first = apply(&[put(1, Signer::Certificate(client.cert_der.clone()))]);
        assert!(first.receipts[0].status.is_committed());

        let current = ledger.config();
        let next = tally_protocol::org_trust::revoke_cert(&current, "org1", &client.cert_der)
            .expect("revocation");
        let update = tally_protocol::TxBody {
            channel: "ch".into(),
            nonce: 100,
            timestamp_ms: now,
            signer: Signer::Certificate(admin.cert_der.clone()),
            payload: Payload::Config(Box::new({
                let mut u = tally_protocol::ConfigUpdate::new(&current, 0, next);
                u.approve(&admin);
                u
            })),
        };
        let same_block = apply(&[
            Transaction::sign(update, &admin).to_bytes(),
            put(2, Signer::Certificate(client.cert_der.clone())),
        ]);
        for r in &same_block.receipts {
            assert!(r.status.is_committed(), "{:?}", r.status);
        }
        assert_eq!(ledger.in_force().sequence, 1);

        let later = apply(&[
            put(3, Signer::Certificate(client.cert_der.clone())),
            put(4, Signer::CertHash(client.cert_hash)),
        ]);
        for r in &later.receipts {
            match &r.status {
                TxStatus::Rejected { code, reason } => {
                    assert_eq!(*code, RejectCode::Revoked, "{reason}");
                    assert!(reason.contains("revoked"), "{reason}");
                }
                s => panic!("a revoked signer's transaction: {s:?}"),
            }
        }
        assert!(ledger.get("k2").unwrap().is_some());
        assert!(ledger.get("k3").unwrap().is_none());
    }

    #[test]
    fn a_block_with_forged_signatures_rejects_exactly_those() {
        let (_dir, ledger, client) = ledger_with_member();
        let now = tally_protocol::now_ms();
        let mut raws = Vec::new();
        let mut forged = Vec::new();
        for i in 0..40u64 {
            let body = tally_protocol::TxBody {
                channel: "ch".into(),
                nonce: i,
                timestamp_ms: now,
                signer: Signer::Certificate(client.cert_der.clone()),
                payload: Payload::KvWrite {
                    reads: vec![],
                    writes: vec![tally_protocol::Write {
                        key: format!("k{i}"),
                        value: Some(vec![1]),
                    }],
                },
            };
            let mut tx = Transaction::sign(body, &client);
            if i % 7 == 3 {
                tx.signature[10] ^= 1;
                forged.push(i as usize);
            }
            raws.push(tx.to_bytes());
        }
        let data = tally_protocol::write_batch(now, raws.iter().map(Vec::as_slice));
        let mut wb = WriteBatch::default();
        let (applied, tip) = ledger
            .apply_batch(&data, 1, 1, &|_: &Hash, _: &[u8]| false, &mut wb)
            .unwrap()
            .unwrap();
        for (i, r) in applied.receipts.iter().enumerate() {
            if forged.contains(&i) {
                assert!(
                    matches!(
                        &r.status,
                        TxStatus::Rejected {
                            code: RejectCode::BadSignature,
                            ..
                        }
                    ),
                    "tx {i}: {:?}",
                    r.status
                );
            } else {
                assert!(r.status.is_committed(), "tx {i}: {:?}", r.status);
            }
        }
        ledger.db().write(wb).unwrap();
        ledger.commit_tip(tip);
        // Forged copies were not recorded as seen: the genuine transaction can still commit.
        assert!(ledger.get("k3").unwrap().is_none());
        assert!(ledger.get("k4").unwrap().is_some());
    }
}

#[cfg(test)]
mod bounded_blocks {
    use super::tests::ledger_with_member;
    use super::*;
    use tally_protocol::{Payload, RejectCode, Signer, Transaction, TxStatus};

    fn raw_puts(client: &tally_protocol::Identity, n: u64, at_ms: u64) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let body = tally_protocol::TxBody {
                    channel: "ch".into(),
                    nonce: i,
                    timestamp_ms: at_ms,
                    signer: Signer::Certificate(client.cert_der.clone()),
                    payload: Payload::KvWrite {
                        reads: vec![],
                        writes: vec![tally_protocol::Write {
                            key: format!("k{i}"),
                            value: Some(vec![1]),
                        }],
                    },
                };
                Transaction::sign(body, client).to_bytes()
            })
            .collect()
    }

    fn apply(ledger: &Ledger, stamp_ms: u64, raws: &[Vec<u8>]) -> (Applied, Tip) {
        let data = tally_protocol::write_batch(stamp_ms, raws.iter().map(Vec::as_slice));
        let mut wb = WriteBatch::default();
        let out = ledger
            .apply_batch(&data, 1, 1, &|_: &Hash, _: &[u8]| false, &mut wb)
            .unwrap()
            .unwrap();
        ledger.db().write(wb).unwrap();
        ledger.commit_tip(out.1.clone());
        out
    }

    fn all_rejected(a: &Applied, code: RejectCode, says: &str) {
        for r in &a.receipts {
            match &r.status {
                TxStatus::Rejected { code: c, reason } => {
                    assert_eq!(*c, code, "{reason}");
                    assert!(reason.contains(says), "{reason}");
                }
                s => panic!("expected a rejection, got {s:?}"),
            }
        }
    }

    #[test]
    fn a_block_stamped_an_hour_ahead_of_its_transactions_applies_nothing() {
        let (_dir, ledger, client) = ledger_with_member();
        let now = tally_protocol::now_ms();
        let (first, tip) = apply(&ledger, now, &raw_puts(&client, 2, now));
        assert!(first.receipts.iter().all(|r| r.status.is_committed()));
        let raws = raw_puts(&client, 3, now + 1);
        let (skewed, after) = apply(&ledger, now + 3_600_000, &raws);
        all_rejected(&skewed, RejectCode::Expired, "block time refused");
        assert_eq!(after.timestamp_ms, tip.timestamp_ms, "time did not move");
        // Not recorded as seen: the same transactions commit under an honest stamp.
        let (honest, _) = apply(&ledger, now + 2, &raws);
        assert!(honest.receipts.iter().all(|r| r.status.is_committed()));
    }

    #[test]
    fn receipts_prove_the_same_from_the_kept_blocks_and_after_a_snapshot_clears_them() {
        let (_dir, ledger, client) = ledger_with_member();
        let now = tally_protocol::now_ms();
        let (first, _) = apply(&ledger, now, &raw_puts(&client, 5, now));
        let (second, _) = apply(&ledger, now + 1, &raw_puts(&client, 3, now + 1));
        let all: Vec<_> = first.receipts.iter().chain(&second.receipts).collect();
        let fresh: Vec<_> = all
            .iter()
            .map(|r| ledger.receipt(&r.tx_id).unwrap().expect("a receipt"))
            .collect();
        for (r, p) in all.iter().zip(&fresh) {
            let block_hash = ledger.header(r.block).unwrap().unwrap().hash();
            assert_eq!(p.verify(&block_hash), Ok(&r.status));
            assert_eq!((p.receipt.block, p.receipt.index), (r.block, r.index));
            // Asked again, from the kept block: the same receipt and proof.
            assert_eq!(ledger.receipt(&r.tx_id).unwrap().as_ref(), Some(p));
        }
        ledger.reload_tip().unwrap();
        for (r, p) in all.iter().zip(&fresh) {
            assert_eq!(ledger.receipt(&r.tx_id).unwrap().as_ref(), Some(p));
        }
        assert!(ledger.receipt(&Hash::ZERO).unwrap().is_none());
    }

    #[test]
    fn a_batch_beyond_the_block_limits_applies_nothing() {
        let (_dir, ledger, client) = ledger_with_member();
        let now = tally_protocol::now_ms();
        let max = ledger.config().batch.max_txs as u64;
        let (big, _) = apply(&ledger, now, &raw_puts(&client, max + 1, now));
        all_rejected(&big, RejectCode::TooLarge, "block refused");
        assert!(ledger.get("k0").unwrap().is_none());
    }
}
