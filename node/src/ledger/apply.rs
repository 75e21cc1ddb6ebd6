//! The deterministic step: one ordered batch becomes the next block, its receipts and the
//! writes to state, history, transaction index and certificate registry.

use super::reads::StateEntry;
use super::{block_time, chaincode, ExecStat, InForce, Ledger, LedgerError, Tip};
use crate::keys;
use rocksdb::WriteBatch;
use std::collections::{HashMap, HashSet};
use tally_protocol::block::results_root;
use tally_protocol::codec::{Encode, Writer};
use tally_protocol::merkle;
use tally_protocol::receipt::Receipt;
use tally_protocol::sig;
use tally_protocol::state::StateDigest;
use tally_protocol::TxEffects;
use tally_protocol::{
    write_block, BatchConfig, BlockHeader, ConfigUpdate, Hash, Payload, RawBatch, RawTx,
    RejectCode, Signer, TxStatus, Version,
};

/// The outcome of applying one ordered batch.
pub struct Applied {
    pub header: BlockHeader,
    pub block_hash: Hash,
    pub receipts: Vec<Receipt>,
    /// A configuration this block installed, for [`Ledger::install_config`] once written.
    pub config: Option<InForce>,
    /// One entry per chaincode call executed (committed or not), for metrics.
    pub exec: Vec<ExecStat>,
    /// The channel's retirement, if this block applied it, for
    /// [`Ledger::install_retirement`] once written.
    pub retired: Option<tally_protocol::retirement::Retirement>,
}

/// What one batch's transactions have done so far, for the ones after them.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) overlay: HashMap<String, StateEntry>,
    pub(super) seen: HashSet<Hash>,
    pub(super) new_certs: HashMap<Hash, Vec<u8>>,
    pub(super) config: Option<InForce>,
    /// What the transaction being applied did, if it ran chaincode and committed.
    pub(super) effects: Option<TxEffects>,
    pub(super) exec: Vec<ExecStat>,
    /// Fuel the block's chaincode invokes have burnt so far (see `chaincode::BLOCK_FUEL`).
    pub(super) fuel_used: u64,
    /// The channel's retirement, if an earlier transaction of the block applied it.
    pub(super) retired: Option<tally_protocol::retirement::Retirement>,
}

impl Ledger {
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
        let txs = &batch.txs;
        // A refused block time leaves the time where it was and the block applies nothing:
        // each transaction is rejected (not recorded as seen, so it may be ordered again).
        let config = self.config();
        let (ts, mut refused) = match block_time::decide(
            tip.timestamp_ms,
            batch.timestamp_ms,
            txs.iter().map(|t| t.tx.body.timestamp_ms),
            config.tx_window_s as u64 * 1000,
        ) {
            Ok(ts) => (ts, None),
            Err(r) => (tip.timestamp_ms, Some((RejectCode::Expired, r.0))),
        };
        if refused.is_none() {
            refused = oversized(txs, &config.batch).map(|r| (RejectCode::TooLarge, r));
        }
        let now_s = (ts / 1000) as i64;
        let mut scratch = Scratch::default();
        let checked = match refused {
            None => self.verify_batch(txs, now_s, preverified),
            Some(_) => vec![false; txs.len()],
        };
        let mut results = Vec::with_capacity(txs.len());
        let mut effects = Vec::with_capacity(txs.len());
        let mut ids = Vec::with_capacity(txs.len());
        for (i, otx) in txs.iter().enumerate() {
            let version = Version {
                block: number,
                tx: i as u32,
            };
            ids.push(otx.id);
            if let Some((code, reason)) = &refused {
                results.push(TxStatus::Rejected {
                    code: *code,
                    reason: reason.clone(),
                });
                effects.push(None);
                continue;
            }
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
            version: tally_protocol::block::HEADER_VERSION,
            channel: self.name.clone(),
            number,
            prev_hash: tip.last_hash,
            tx_root: merkle::root(&ids),
            results_root: results_root(&ids, &results, &effects),
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
                retired: scratch.retired,
            },
            tip,
        )))
    }

    /// Tells per transaction whether its signature is already proven valid: checked by this
    /// node at submission, or checked here with the block's other unchecked signatures whose
    /// signer is known, as one batch. When the batch fails its members count as unchecked and
    /// are checked alone later, so the outcome is the same as checking them one by one (see
    /// `tally_protocol::sig`).
    pub(super) fn verify_batch(
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
    pub(super) fn apply_tx(
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
        // Whatever a leader orders after the retirement applies nothing, on every node.
        if let Err(e) = self.refuse_if_retired(scratch.retired.as_ref()) {
            return Ok(reject(e));
        }
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
            Payload::Propose(_)
            | Payload::ProposalApprove { .. }
            | Payload::ProposalReject { .. } => {
                let at = chaincode::At {
                    tx_id: otx.id,
                    version,
                    block_ts,
                    info,
                };
                return self.apply_governance(tx, &at, scratch, digest, wb);
            }
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
    pub(super) fn write_key(
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
    pub(super) fn apply_config(
        &self,
        update: &ConfigUpdate,
        now_s: i64,
        scratch: &mut Scratch,
    ) -> TxStatus {
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
}

/// Why a batch is beyond the channel's block bounds, if it is. Proposers cut batches within
/// them; a batch beyond them was made by a node that did not, and applies nothing.
fn oversized(txs: &[RawTx<'_>], limits: &BatchConfig) -> Option<String> {
    let bytes: usize = txs.iter().map(|t| t.raw.len()).sum();
    // A single transaction is bounded by max_tx_bytes (at most max_bytes, see config checks).
    if txs.len() > limits.max_txs as usize || (txs.len() > 1 && bytes > limits.max_bytes as usize) {
        return Some(format!(
            "block refused: {} transactions of {bytes} bytes, beyond the channel's block limit of {} transactions and {} bytes",
            txs.len(),
            limits.max_txs,
            limits.max_bytes
        ));
    }
    None
}
