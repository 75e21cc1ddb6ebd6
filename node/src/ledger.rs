//! The ledger of one channel: blocks, transaction index, world state, key history and the
//! certificate registry, and the deterministic step that turns an ordered batch into a block.

use crate::keys::{self, Keys, LEDGER_KINDS};
use parking_lot::RwLock;
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tally_protocol::api::{utf8, HistoryEntry, KeyEntry};
use tally_protocol::codec::{Decode, DecodeError, Encode, Reader, Writer};
use tally_protocol::identity::{self, CertInfo, IdentityError, Role, TrustedCa};
use tally_protocol::merkle;
use tally_protocol::receipt::{InclusionProof, ProvenReceipt, Receipt};
use tally_protocol::sig;
use tally_protocol::state::StateDigest;
use tally_protocol::TxEffects;
use tally_protocol::{
    write_block, Block, BlockHeader, ChannelConfig, ConfigUpdate, Hash, Payload, RawBatch, RawTx,
    RejectCode, Signer, Transaction, TxStatus, Version,
};
use tally_runtime::Engine;
use thiserror::Error;

mod chaincode;
pub use chaincode::ExecStat;

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

/// Where the ledger stands: the last block and the Raft entry it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tip {
    pub height: u64,
    pub last_hash: Hash,
    pub digest: StateDigest,
    pub timestamp_ms: u64,
    pub applied_index: u64,
    pub applied_term: u64,
}

impl Tip {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(96);
        w.u64(self.height);
        self.last_hash.encode(&mut w);
        w.fixed(&self.digest.to_bytes());
        w.u64(self.timestamp_ms);
        w.u64(self.applied_index);
        w.u64(self.applied_term);
        w.into_inner()
    }
    fn decode(b: &[u8]) -> Result<Tip, DecodeError> {
        let mut r = Reader::new(b);
        let t = Tip {
            height: r.u64("height")?,
            last_hash: Hash::decode(&mut r)?,
            digest: StateDigest::from_bytes(&r.fixed::<32>("digest")?),
            timestamp_ms: r.u64("timestamp")?,
            applied_index: r.u64("applied")?,
            applied_term: r.u64("applied term")?,
        };
        r.finish()?;
        Ok(t)
    }
    pub fn state_root(&self) -> Hash {
        self.digest.root()
    }
}

/// The outcome of applying one ordered batch.
pub struct Applied {
    pub header: BlockHeader,
    pub block_hash: Hash,
    pub receipts: Vec<Receipt>,
    /// A configuration this block installed, for [`Ledger::install_config`] once written.
    pub config: Option<InForce>,
    /// One entry per chaincode call executed (committed or not), for metrics.
    pub exec: Vec<ExecStat>,
}

/// The channel configuration in force and how many changes led to it (0: the genesis one).
#[derive(Clone, Debug)]
pub struct InForce {
    pub sequence: u64,
    pub config: Arc<ChannelConfig>,
    pub hash: Hash,
    cas: Arc<Vec<TrustedCa>>,
}

impl InForce {
    fn new(sequence: u64, config: ChannelConfig) -> Result<InForce, LedgerError> {
        let cas = config.validate().map_err(|e| corrupt("config", e))?;
        Ok(InForce {
            sequence,
            hash: config.hash(),
            config: Arc::new(config),
            cas: Arc::new(cas),
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.sequence);
        self.config.encode(&mut w);
        w.into_inner()
    }

    fn decode(b: &[u8]) -> Result<InForce, LedgerError> {
        let mut r = Reader::new(b);
        let sequence = r.u64("config sequence").map_err(|e| corrupt("config", e))?;
        let config = ChannelConfig::decode(&mut r).map_err(|e| corrupt("config", e))?;
        InForce::new(sequence, config)
    }
}

/// What one batch's transactions have done so far, for the ones after them.
#[derive(Default)]
struct Scratch {
    overlay: HashMap<String, StateEntry>,
    seen: HashSet<Hash>,
    new_certs: HashMap<Hash, Vec<u8>>,
    config: Option<InForce>,
    /// What the transaction being applied did, if it ran chaincode and committed.
    effects: Option<TxEffects>,
    exec: Vec<ExecStat>,
}

/// A signer whose certificate chains to a member CA.
pub struct KnownSigner {
    pub info: CertInfo,
    pub key: sig::PublicKey,
}

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
}

type StateEntry = Option<(Version, Vec<u8>)>;

impl Ledger {
    /// Opens the ledger of a channel, writing its genesis block if it has none.
    pub fn open(
        db: Arc<DB>,
        config: ChannelConfig,
        engine: Arc<Engine>,
    ) -> Result<Ledger, LedgerError> {
        config.validate().map_err(|e| corrupt("config", e))?;
        let keys = Keys::new(&config.name);
        let config_hash = config.hash();
        let tip = match db.get(keys.kind(keys::TIP))? {
            Some(b) => Tip::decode(&b).map_err(|e| corrupt("tip", e))?,
            None => {
                let header = BlockHeader {
                    channel: config.name.clone(),
                    number: 0,
                    // Block 0 has no predecessor; it commits to the channel's genesis
                    // configuration in that place instead.
                    prev_hash: config_hash,
                    tx_root: merkle::root(&[]),
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
        Ok(Ledger {
            name: config.name.clone(),
            keys,
            genesis: Arc::new(config),
            genesis_hash: config_hash,
            in_force: RwLock::new(in_force),
            db,
            tip: RwLock::new(tip),
            verified_certs: RwLock::new(HashMap::new()),
            engine,
        })
    }

    pub fn tip(&self) -> Tip {
        self.tip.read().clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<ChannelConfig> {
        self.in_force.read().config.clone()
    }

    pub fn in_force(&self) -> InForce {
        self.in_force.read().clone()
    }

    /// Makes a configuration that a written block installed the one in force. Signers are
    /// checked again from here on: an organization may have left or changed its CA.
    pub fn install_config(&self, next: InForce) {
        *self.in_force.write() = next;
        self.verified_certs.write().clear();
    }

    fn reload_config(&self) -> Result<(), LedgerError> {
        let next = match self.db.get(self.keys.kind(keys::CONFIG_IN_FORCE))? {
            Some(b) => InForce::decode(&b)?,
            None => InForce::new(0, (*self.genesis).clone())?,
        };
        self.install_config(next);
        Ok(())
    }

    fn reload_tip(&self) -> Result<(), LedgerError> {
        let b = self
            .db
            .get(self.keys.kind(keys::TIP))?
            .ok_or_else(|| corrupt("tip", "missing after snapshot"))?;
        *self.tip.write() = Tip::decode(&b).map_err(|e| corrupt("tip", e))?;
        Ok(())
    }

    // ---- identity -------------------------------------------------------------------------

    /// Resolves and checks the signer of a transaction. Deterministic given the ledger and
    /// `now_s` (block time at apply, wall time at submission).
    pub fn signer_info(
        &self,
        signer: &Signer,
        now_s: i64,
        pending_certs: &HashMap<Hash, Vec<u8>>,
    ) -> Result<(Arc<KnownSigner>, Option<Hash>), (RejectCode, String)> {
        let (hash, der) = match signer {
            Signer::Certificate(der) => (identity::cert_hash(der), Some(der.as_slice())),
            Signer::CertHash(h) => (*h, None),
        };
        let full = der.map(|_| hash);
        if let Some(known) = self.verified_certs.read().get(&hash).cloned() {
            check_time(&known.info, now_s)?;
            return Ok((known, full));
        }
        let owned;
        let der = match der {
            Some(d) => d,
            None => {
                if let Some(d) = pending_certs.get(&hash) {
                    d.as_slice()
                } else {
                    owned = self.db.get(self.keys.cert(&hash.0)).ok().flatten().ok_or((
                        RejectCode::UnknownCertificate,
                        format!("certificate {} is not recorded on channel {}; send the full certificate", hash, self.name),
                    ))?;
                    owned.as_slice()
                }
            }
        };
        // Chain checks are cached without time; time is checked against `now_s` below.
        let cas = self.in_force.read().cas.clone();
        let info = identity::verify_against(&cas, der, None).map_err(|e| match e {
            IdentityError::UnknownIssuer(_) | IdentityError::BadChain(_) => (
                RejectCode::NotMember,
                format!("signer is not a member of channel {}: {e}", self.name),
            ),
            e => (
                RejectCode::NotMember,
                format!("signer certificate rejected: {e}"),
            ),
        })?;
        let key = sig::public_key(&info.public_key).ok_or_else(|| {
            (
                RejectCode::NotMember,
                "signer key is not a valid Ed25519 key".to_string(),
            )
        })?;
        let known = Arc::new(KnownSigner { info, key });
        self.verified_certs.write().insert(hash, known.clone());
        check_time(&known.info, now_s)?;
        Ok((known, full))
    }

    /// Checks everything about a transaction that does not depend on ordering, as a
    /// submitting node does before accepting it, except the signature itself: the caller
    /// checks that against the returned signer's key (in batches, see `verifier`).
    pub fn precheck(
        &self,
        tx: &Transaction,
        raw_len: usize,
        now_ms: u64,
    ) -> Result<Arc<KnownSigner>, (RejectCode, String)> {
        self.static_checks(tx, raw_len)?;
        let (signer, _) =
            self.signer_info(&tx.body.signer, (now_ms / 1000) as i64, &HashMap::new())?;
        self.policy_checks(tx, &signer.info, now_ms)?;
        Ok(signer)
    }

    fn static_checks(&self, tx: &Transaction, raw_len: usize) -> Result<(), (RejectCode, String)> {
        if tx.body.channel != self.name {
            return Err((
                RejectCode::WrongChannel,
                format!(
                    "transaction is for channel {:?}, not {:?}",
                    tx.body.channel, self.name
                ),
            ));
        }
        let max_tx_bytes = self.in_force.read().config.max_tx_bytes;
        if raw_len > max_tx_bytes as usize {
            return Err((
                RejectCode::TooLarge,
                format!(
                    "transaction is {raw_len} bytes; channel limit is {}",
                    max_tx_bytes
                ),
            ));
        }
        match &tx.body.payload {
            Payload::KvWrite { reads, writes } => {
                if writes.is_empty() {
                    return Err((RejectCode::Malformed, "transaction writes nothing".into()));
                }
                for k in reads
                    .iter()
                    .map(|r| &r.key)
                    .chain(writes.iter().map(|w| &w.key))
                {
                    if k.is_empty() || k.len() > MAX_KEY_LEN {
                        return Err((
                            RejectCode::Malformed,
                            format!("key length must be 1..={MAX_KEY_LEN} bytes"),
                        ));
                    }
                }
                if let Some(w) = writes.iter().find(|w| chaincode::reserved_key(&w.key)) {
                    return Err((
                        RejectCode::Forbidden,
                        format!(
                            "key {:?} is reserved: keys under {:?} change only through the chaincode lifecycle and keys under {:?} only through chaincode",
                            w.key,
                            tally_protocol::chaincode::LIFECYCLE_PREFIX,
                            tally_protocol::chaincode::STATE_PREFIX
                        ),
                    ));
                }
            }
            Payload::Config(u) => {
                if u.config.name != self.name {
                    return Err((
                        RejectCode::Malformed,
                        format!(
                            "configuration is for channel {:?}, not {:?}",
                            u.config.name, self.name
                        ),
                    ));
                }
            }
            p => self.chaincode_static_checks(p)?,
        }
        Ok(())
    }

    fn policy_checks(
        &self,
        tx: &Transaction,
        info: &CertInfo,
        now_ms: u64,
    ) -> Result<(), (RejectCode, String)> {
        let config = self.config();
        let window = config.tx_window_s as u64 * 1000;
        if tx.body.timestamp_ms.abs_diff(now_ms) > window {
            return Err((
                RejectCode::Expired,
                format!(
                    "transaction time is more than {} s from the ledger's time",
                    config.tx_window_s
                ),
            ));
        }
        if info.role == Role::Node {
            return Err((
                RejectCode::Forbidden,
                "node certificates may not submit transactions".into(),
            ));
        }
        if let Payload::Config(_)
        | Payload::ChaincodeInstall { .. }
        | Payload::ChaincodeApprove { .. }
        | Payload::ChaincodeCommit { .. } = &tx.body.payload
        {
            // Approvals decide; the submitter must still be an admin of a member.
            if info.role != Role::Admin {
                return Err((
                    RejectCode::Forbidden,
                    format!(
                        "configuration and chaincode lifecycle changes are submitted by admins; {} is a {}",
                        info.subject, info.role
                    ),
                ));
            }
            return Ok(());
        }
        if !config.may_write(&info.org) {
            return Err((
                RejectCode::Forbidden,
                format!(
                    "organization {} may not write to channel {}",
                    info.org, self.name
                ),
            ));
        }
        Ok(())
    }

    // ---- apply ----------------------------------------------------------------------------

    fn read_state(
        &self,
        key: &str,
        overlay: &HashMap<String, StateEntry>,
    ) -> Result<StateEntry, LedgerError> {
        if let Some(v) = overlay.get(key) {
            return Ok(v.clone());
        }
        Ok(match self.db.get(self.keys.state(key))? {
            Some(b) => Some(decode_state(&b)?),
            None => None,
        })
    }

    fn tx_seen(&self, id: &Hash) -> Result<bool, LedgerError> {
        Ok(self.db.get_pinned(self.keys.tx(&id.0))?.is_some())
    }

    /// Turns one ordered batch into the next block, adding its writes to `wb`. Nothing is
    /// visible until the caller writes `wb` and calls [`Ledger::commit_tip`].
    /// `preverified(id, signature)` tells which signatures this node has already checked.
    pub fn apply_batch(
        &self,
        data: &[u8],
        raft_term: u64,
        raft_index: u64,
        preverified: &dyn Fn(&Hash, &[u8]) -> bool,
        wb: &mut WriteBatch,
    ) -> Result<Option<(Applied, Tip)>, LedgerError> {
        let mut tip = self.tip();
        let Ok(batch) = RawBatch::parse(data) else {
            // A node proposed bytes that are not a batch: every node skips it alike.
            return Ok(None);
        };
        let number = tip.height;
        let ts = tip.timestamp_ms.max(batch.timestamp_ms);
        let txs = &batch.txs;
        let now_s = (ts / 1000) as i64;
        let mut scratch = Scratch::default();
        let checked = self.verify_batch(txs, now_s, preverified);
        let mut results = Vec::with_capacity(txs.len());
        let mut effects = Vec::with_capacity(txs.len());
        let mut ids = Vec::with_capacity(txs.len());
        for (i, otx) in txs.iter().enumerate() {
            let version = Version {
                block: number,
                tx: i as u32,
            };
            ids.push(otx.id);
            let status = self.apply_tx(
                otx,
                version,
                ts,
                now_s,
                checked[i],
                &mut scratch,
                &mut tip.digest,
                wb,
            )?;
            // Effects belong to committed transactions only; a rejected one leaves none.
            let fx = scratch.effects.take().filter(|_| status.is_committed());
            results.push(status);
            effects.push(fx);
        }
        for (h, der) in &scratch.new_certs {
            wb.put(self.keys.cert(&h.0), der);
        }
        if let Some(next) = &scratch.config {
            wb.put(self.keys.kind(keys::CONFIG_IN_FORCE), next.encode());
        }
        let header = BlockHeader {
            channel: self.name.clone(),
            number,
            prev_hash: tip.last_hash,
            tx_root: merkle::root(&ids),
            state_root: tip.digest.root(),
            timestamp_ms: ts,
            raft_term,
            raft_index,
        };
        let block_hash = header.hash();
        wb.put(
            self.keys.block(number),
            write_block(&header, &batch, &results, &effects),
        );
        tip.height = number + 1;
        tip.last_hash = block_hash;
        tip.timestamp_ms = ts;
        tip.applied_index = raft_index;
        tip.applied_term = raft_term;
        wb.put(self.keys.kind(keys::TIP), tip.encode());
        let receipts = ids
            .iter()
            .zip(results)
            .zip(effects)
            .enumerate()
            .map(|(i, ((id, status), effects))| Receipt {
                tx_id: *id,
                channel: self.name.clone(),
                block: number,
                index: i as u32,
                status,
                block_hash,
                effects: effects.map(Box::new),
            })
            .collect();
        Ok(Some((
            Applied {
                header,
                block_hash,
                receipts,
                config: scratch.config,
                exec: scratch.exec,
            },
            tip,
        )))
    }

    /// Tells per transaction whether its signature is already proven valid: checked by this
    /// node at submission, or checked here with the block's other unchecked signatures whose
    /// signer is known, as one batch. When the batch fails its members count as unchecked and
    /// are checked alone later, so the outcome is the same as checking them one by one (see
    /// `tally_protocol::sig`).
    fn verify_batch(
        &self,
        txs: &[RawTx<'_>],
        now_s: i64,
        preverified: &dyn Fn(&Hash, &[u8]) -> bool,
    ) -> Vec<bool> {
        let mut batch = sig::Batch::new();
        let mut checked = vec![false; txs.len()];
        let mut queued = vec![false; txs.len()];
        for (i, otx) in txs.iter().enumerate() {
            if preverified(&otx.id, &otx.tx.signature) {
                checked[i] = true;
            } else if let Ok((signer, _)) =
                self.signer_info(&otx.tx.body.signer, now_s, &HashMap::new())
            {
                queued[i] = batch.push(&signer.key, &otx.tx.signature, &otx.id.0);
            }
        }
        if batch.len() >= 2 && batch.verify() {
            for (c, q) in checked.iter_mut().zip(queued) {
                *c |= q;
            }
        }
        checked
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_tx(
        &self,
        otx: &RawTx<'_>,
        version: Version,
        block_ts: u64,
        now_s: i64,
        signature_checked: bool,
        scratch: &mut Scratch,
        digest: &mut StateDigest,
        wb: &mut WriteBatch,
    ) -> Result<TxStatus, LedgerError> {
        let tx = &otx.tx;
        let reject = |(code, reason): (RejectCode, String)| TxStatus::Rejected { code, reason };
        if let Err(e) = self.static_checks(tx, otx.raw.len()) {
            return Ok(reject(e));
        }
        let (signer, full_cert) = match self.signer_info(&tx.body.signer, now_s, &scratch.new_certs)
        {
            Ok(x) => x,
            Err(e) => return Ok(reject(e)),
        };
        let info = &signer.info;
        if !signature_checked && !tx.verify_with(&otx.id, &signer.key) {
            return Ok(reject((
                RejectCode::BadSignature,
                "signature does not verify against the signer's certificate".into(),
            )));
        }
        // The transaction is authentic from here on; a second copy of it is a replay.
        if scratch.seen.contains(&otx.id) || self.tx_seen(&otx.id)? {
            return Ok(reject((
                RejectCode::Duplicate,
                "transaction was already ordered".into(),
            )));
        }
        scratch.seen.insert(otx.id);
        let mut idx = Writer::with_capacity(12);
        version.encode(&mut idx);
        wb.put(self.keys.tx(&otx.id.0), idx.into_inner());
        if let (Some(h), Signer::Certificate(der)) = (full_cert, &tx.body.signer) {
            if !scratch.new_certs.contains_key(&h)
                && self.db.get_pinned(self.keys.cert(&h.0))?.is_none()
            {
                scratch.new_certs.insert(h, der.clone());
            }
        }
        if let Err(e) = self.policy_checks(tx, info, block_ts) {
            return Ok(reject(e));
        }
        let (reads, writes) = match &tx.body.payload {
            Payload::KvWrite { reads, writes } => (reads, writes),
            Payload::Config(update) => return Ok(self.apply_config(update, now_s, scratch)),
            p => {
                let at = chaincode::At {
                    tx_id: otx.id,
                    version,
                    block_ts,
                    info,
                };
                return self.apply_chaincode(p, &at, scratch, digest, wb);
            }
        };
        let overlay = &mut scratch.overlay;
        for r in reads {
            let current = self.read_state(&r.key, overlay)?.map(|(v, _)| v);
            if current != r.version {
                return Ok(reject((
                    RejectCode::ReadConflict,
                    format!(
                        "key {:?} is at version {:?}, the transaction read {:?}",
                        r.key, current, r.version
                    ),
                )));
            }
        }
        for w in writes {
            self.write_key(
                &w.key,
                w.value.as_deref(),
                version,
                &otx.id,
                block_ts,
                overlay,
                digest,
                wb,
            )?;
        }
        Ok(TxStatus::Committed)
    }

    /// The one path by which any transaction changes world state: the state record, the
    /// key's history, the state digest and the overlay that later transactions of the block
    /// read through.
    #[allow(clippy::too_many_arguments)]
    fn write_key(
        &self,
        key: &str,
        value: Option<&[u8]>,
        version: Version,
        tx_id: &Hash,
        block_ts: u64,
        overlay: &mut HashMap<String, StateEntry>,
        digest: &mut StateDigest,
        wb: &mut WriteBatch,
    ) -> Result<(), LedgerError> {
        if let Some((old_v, old)) = self.read_state(key, overlay)? {
            digest.remove(key, &old_v, &old);
        }
        let mut h = Writer::with_capacity(48 + value.map_or(0, <[u8]>::len));
        tx_id.encode(&mut h);
        h.u64(block_ts);
        match value {
            Some(v) => {
                digest.add(key, &version, v);
                let mut s = Writer::with_capacity(12 + v.len());
                version.encode(&mut s);
                s.fixed(v);
                wb.put(self.keys.state(key), s.into_inner());
                h.u8(1);
                h.fixed(v);
                overlay.insert(key.to_string(), Some((version, v.to_vec())));
            }
            None => {
                wb.delete(self.keys.state(key));
                h.u8(0);
                overlay.insert(key.to_string(), None);
            }
        }
        wb.put(
            self.keys.history(key, version.block, version.tx),
            h.into_inner(),
        );
        Ok(())
    }

    /// Checks a configuration update against the configuration in force (or the one an
    /// earlier transaction of the same block installs) and, when it holds, makes it the
    /// block's new configuration.
    fn apply_config(&self, update: &ConfigUpdate, now_s: i64, scratch: &mut Scratch) -> TxStatus {
        let current = scratch.config.clone().unwrap_or_else(|| self.in_force());
        if let Err(e) = update.check(&current.config, current.sequence, &current.cas, now_s) {
            let code = match e {
                tally_protocol::UpdateError::StaleSequence { .. }
                | tally_protocol::UpdateError::StaleBase { .. } => RejectCode::ReadConflict,
                tally_protocol::UpdateError::BadApproval { .. }
                | tally_protocol::UpdateError::NotEnoughApprovals { .. } => RejectCode::Forbidden,
                _ => RejectCode::Malformed,
            };
            return TxStatus::Rejected {
                code,
                reason: e.to_string(),
            };
        }
        match InForce::new(update.sequence, update.config.clone()) {
            Ok(next) => {
                scratch.config = Some(next);
                TxStatus::Committed
            }
            Err(e) => TxStatus::Rejected {
                code: RejectCode::Malformed,
                reason: e.to_string(),
            },
        }
    }

    pub fn write_tip(&self, tip: &Tip, wb: &mut WriteBatch) {
        wb.put(self.keys.kind(keys::TIP), tip.encode());
    }

    /// Makes an applied block visible to readers once its write batch is in the database.
    pub fn commit_tip(&self, tip: Tip) {
        *self.tip.write() = tip;
    }

    // ---- reads ----------------------------------------------------------------------------

    pub fn block_bytes(&self, number: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.db.get(self.keys.block(number))?)
    }

    pub fn block(&self, number: u64) -> Result<Option<Block>, LedgerError> {
        match self.block_bytes(number)? {
            Some(b) => Block::from_bytes(&b)
                .map(Some)
                .map_err(|e| corrupt("block", e)),
            None => Ok(None),
        }
    }

    pub fn tx_location(&self, id: &Hash) -> Result<Option<Version>, LedgerError> {
        match self.db.get_pinned(self.keys.tx(&id.0))? {
            Some(b) => Version::from_bytes(&b)
                .map(Some)
                .map_err(|e| corrupt("tx index", e)),
            None => Ok(None),
        }
    }

    pub fn receipt(&self, id: &Hash) -> Result<Option<ProvenReceipt>, LedgerError> {
        let Some(loc) = self.tx_location(id)? else {
            return Ok(None);
        };
        let block = self
            .block(loc.block)?
            .ok_or_else(|| corrupt("block", "indexed block missing"))?;
        let ids = block.tx_ids();
        let i = loc.tx as usize;
        let status = block
            .results
            .get(i)
            .cloned()
            .ok_or_else(|| corrupt("block", "result missing"))?;
        let effects = block.effects.get(i).cloned().flatten().map(Box::new);
        let proof = merkle::prove(&ids, i).ok_or_else(|| corrupt("block", "index out of range"))?;
        let block_hash = block.header.hash();
        Ok(Some(ProvenReceipt {
            receipt: Receipt {
                tx_id: *id,
                channel: self.name.clone(),
                block: loc.block,
                index: loc.tx,
                status,
                block_hash,
                effects,
            },
            proof: InclusionProof {
                tx_id: *id,
                header: block.header,
                merkle: proof,
            },
        }))
    }

    pub fn get(&self, key: &str) -> Result<StateEntry, LedgerError> {
        self.read_state(key, &HashMap::new())
    }

    pub fn history(&self, key: &str, limit: usize) -> Result<Vec<HistoryEntry>, LedgerError> {
        let prefix = self.keys.history_prefix(key);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&prefix, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let ver =
                Version::from_bytes(&k[prefix.len()..]).map_err(|e| corrupt("history key", e))?;
            let mut r = Reader::new(&v);
            let tx_id = Hash::decode(&mut r).map_err(|e| corrupt("history", e))?;
            let timestamp_ms = r.u64("ts").map_err(|e| corrupt("history", e))?;
            let value = match r.u8("tag").map_err(|e| corrupt("history", e))? {
                1 => Some(v[v.len() - r.remaining()..].to_vec()),
                _ => None,
            };
            let value_utf8 = value.as_deref().and_then(utf8);
            out.push(HistoryEntry {
                version: ver,
                tx_id,
                value,
                value_utf8,
                timestamp_ms,
            });
        }
        Ok(out)
    }

    pub fn keys_with_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<KeyEntry>, LedgerError> {
        let start = self.keys.state(prefix);
        let skip = self.keys.state_prefix_len();
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(&start) || out.len() >= limit {
                break;
            }
            let key = String::from_utf8_lossy(&k[skip..]).into_owned();
            let (version, _) = decode_state(&v)?;
            out.push(KeyEntry { key, version });
        }
        Ok(out)
    }

    pub fn cert_known(&self, hash: &Hash) -> Result<bool, LedgerError> {
        Ok(self.db.get_pinned(self.keys.cert(&hash.0))?.is_some())
    }

    // ---- snapshots ------------------------------------------------------------------------

    /// Every ledger record of the channel, for a Raft snapshot. Called on the channel's own
    /// thread, the only writer, so the records are consistent with the tip.
    pub fn dump(&self) -> Result<Vec<u8>, LedgerError> {
        let skip = self.keys.state_prefix_len() - 1;
        let mut w = Writer::default();
        for kind in LEDGER_KINDS {
            let (lo, hi) = self.keys.range(kind);
            for item in self
                .db
                .iterator(IteratorMode::From(&lo, Direction::Forward))
            {
                let (k, v) = item?;
                if k.as_ref() >= hi.as_slice() {
                    break;
                }
                w.bytes(&k[skip..]);
                w.bytes(&v);
            }
        }
        Ok(w.into_inner())
    }

    /// Replaces the channel's ledger with a snapshot's records, in `wb`.
    pub fn restore(&self, data: &[u8], wb: &mut WriteBatch) -> Result<(), LedgerError> {
        for kind in LEDGER_KINDS {
            let (lo, hi) = self.keys.range(kind);
            wb.delete_range(lo, hi);
        }
        let base = self.keys.kind(0);
        let base = &base[..base.len() - 1];
        let mut r = Reader::new(data);
        while r.remaining() > 0 {
            let k = r
                .bytes("snapshot key")
                .map_err(|e| corrupt("snapshot", e))?;
            let v = r
                .bytes("snapshot value")
                .map_err(|e| corrupt("snapshot", e))?;
            let mut key = base.to_vec();
            key.extend_from_slice(&k);
            wb.put(key, v);
        }
        Ok(())
    }

    pub fn after_restore(&self) -> Result<(), LedgerError> {
        self.reload_config()?;
        self.reload_tip()
    }

    pub fn db(&self) -> &DB {
        &self.db
    }
}

fn check_time(info: &CertInfo, now_s: i64) -> Result<(), (RejectCode, String)> {
    if now_s < info.not_before || now_s > info.not_after {
        return Err((
            RejectCode::Expired,
            "signer certificate is outside its validity period".into(),
        ));
    }
    Ok(())
}

fn decode_state(b: &[u8]) -> Result<(Version, Vec<u8>), LedgerError> {
    if b.len() < 12 {
        return Err(corrupt("state", "short value"));
    }
    let v = Version::from_bytes(&b[..12]).map_err(|e| corrupt("state", e))?;
    Ok((v, b[12..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::codec::Encode;

    #[test]
    fn tip_round_trips() {
        let t = Tip {
            height: 7,
            last_hash: Hash([3; 32]),
            digest: StateDigest([1, 2, 3, 4]),
            timestamp_ms: 9,
            applied_index: 11,
            applied_term: 2,
        };
        assert_eq!(Tip::decode(&t.encode()).unwrap(), t);
    }

    pub(super) fn ledger_with_member() -> (tempfile::TempDir, Ledger, tally_protocol::Identity) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(DB::open_default(dir.path()).unwrap());
        let ca = tally_protocol::OrgCa::generate("org1").unwrap();
        let client = ca.issue(Role::Client, "c1", &[]).unwrap();
        let cfg = ChannelConfig {
            name: "ch".into(),
            members: vec![tally_protocol::OrgMember {
                name: "org1".into(),
                ca_pem: ca.cert_pem(),
            }],
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
        (dir, ledger, client)
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
