//! Chaincode on the ledger: the lifecycle (install, approve, commit) kept in world state under
//! `_lifecycle/`, and invocations executed at apply time by the node's wasm engine, reading
//! through the block's earlier writes and writing through the same path as key/value
//! transactions.
//!
//! Lifecycle policy: a commit needs the approvals the channel configuration's chaincode rule
//! asks of the member organizations (`policies.chaincode`): a majority unless it says more,
//! checked here on every node, whoever sends the commit.

use super::{corrupt, Ledger, LedgerError, Scratch, StateEntry};
use rocksdb::{Direction, IteratorMode, WriteBatch};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;
use tally_protocol::chaincode::{
    self as cc, keys, ChaincodeDefinition, ChaincodeEvent, ChaincodeInfo, PendingDefinition,
    QueryResult, TxEffects,
};
use tally_protocol::codec::{Decode, Encode};
use tally_protocol::identity::CertInfo;
use tally_protocol::state::StateDigest;
use tally_protocol::{Hash, Payload, ReadCheck, RejectCode, TxStatus, Version, Write};
use tally_runtime::{
    valid_chaincode_name, CallContext, Entry, ExecError, HostError, Module, Outcome, StateHost,
};

/// Keys that plain key/value transactions may not write.
pub(super) fn reserved_key(key: &str) -> bool {
    key.starts_with(cc::LIFECYCLE_PREFIX)
        || key.starts_with(tally_runtime::RESERVED_PREFIX)
        || key.starts_with(tally_protocol::proposal::GOVERNANCE_PREFIX)
}

/// One chaincode call, for the node's metrics.
#[derive(Clone, Debug)]
pub struct ExecStat {
    pub chaincode: String,
    pub fuel_used: u64,
    pub seconds: f64,
}

/// Where in the block a transaction applies, and who signed it.
pub(super) struct At<'a> {
    pub tx_id: Hash,
    pub version: Version,
    pub block_ts: u64,
    pub info: &'a CertInfo,
}

type Reject = (RejectCode, String);

/// Fuel all chaincode invokes of one block may burn together: two and a half calls at the
/// default per-call maximum (about half a second of apply time on a small core). Without it a
/// block of invokes that each spin to their own limit costs its size times that on every
/// node. The same constant on every node keeps apply deterministic.
pub const BLOCK_FUEL: u64 = 250_000_000;

fn budget_spent() -> String {
    format!(
        "out_of_fuel: the block's fuel budget ({BLOCK_FUEL}) was spent by the invokes before this one in the block; sign and submit it again for a later block"
    )
}

fn init_text(d: &ChaincodeDefinition) -> String {
    match &d.init {
        Some(i) => format!(" init {}", i.function),
        None => String::new(),
    }
}

fn reject(code: RejectCode, reason: impl Into<String>) -> TxStatus {
    TxStatus::Rejected {
        code,
        reason: reason.into(),
    }
}

/// The rejection a deterministic call failure becomes; `None` for a storage failure.
fn exec_reject(e: &ExecError) -> Option<Reject> {
    if !e.is_deterministic() {
        return None;
    }
    let code = match e {
        ExecError::OutOfFuel { .. } => RejectCode::OutOfFuel,
        ExecError::MemoryLimit { .. } => RejectCode::MemoryLimit,
        _ => RejectCode::ChaincodeError,
    };
    Some((code, format!("{}: {e}", e.code())))
}

fn to_rt(v: Version) -> tally_runtime::Version {
    tally_runtime::Version {
        block: v.block,
        tx: v.tx,
    }
}

fn from_rt(v: tally_runtime::Version) -> Version {
    Version {
        block: v.block,
        tx: v.tx,
    }
}

/// The world state as a call sees it: the block's earlier writes over the database.
struct LedgerHost<'a> {
    ledger: &'a Ledger,
    overlay: &'a HashMap<String, StateEntry>,
}

impl StateHost for LedgerHost<'_> {
    fn get(&mut self, key: &str) -> Result<Option<(tally_runtime::Version, Vec<u8>)>, HostError> {
        self.ledger
            .read_state(key, self.overlay)
            .map(|e| e.map(|(v, b)| (to_rt(v), b)))
            .map_err(|e| HostError(e.to_string()))
    }

    fn scan(
        &mut self,
        prefix: &str,
        start: &str,
        end: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>, HostError> {
        let in_range = |k: &str| k.starts_with(prefix) && k >= start && end.is_none_or(|e| k < e);
        // The overlay's keys in range override the database's, whether put or deleted.
        let pending: BTreeMap<&String, &StateEntry> =
            self.overlay.iter().filter(|(k, _)| in_range(k)).collect();
        // Enough database entries that, after the overlay removes or replaces some, the first
        // `limit` of the merge are certain: any key not read sorts after all of these.
        let want = limit.saturating_add(pending.len());
        let db_prefix = self.ledger.keys.state(prefix);
        let skip = self.ledger.keys.state_prefix_len();
        let mut merged: BTreeMap<String, (Version, Vec<u8>)> = BTreeMap::new();
        let iter = self.ledger.db.iterator(IteratorMode::From(
            &self.ledger.keys.state(start),
            Direction::Forward,
        ));
        for (taken, item) in iter.enumerate() {
            if taken >= want {
                break;
            }
            let (k, v) = item.map_err(|e| HostError(e.to_string()))?;
            if !k.starts_with(&db_prefix) {
                break;
            }
            let key = String::from_utf8_lossy(&k[skip..]).into_owned();
            if end.is_some_and(|e| key.as_str() >= e) {
                break;
            }
            let (ver, val) = super::decode_state(&v).map_err(|e| HostError(e.to_string()))?;
            merged.insert(key, (ver, val));
        }
        for (k, e) in pending {
            match e {
                Some((ver, val)) => {
                    merged.insert(k.clone(), (*ver, val.clone()));
                }
                None => {
                    merged.remove(k.as_str());
                }
            }
        }
        Ok(merged
            .into_iter()
            .take(limit)
            .map(|(k, (ver, val))| (k, to_rt(ver), val))
            .collect())
    }

    fn put(&mut self, _key: &str, _value: Vec<u8>) -> Result<(), HostError> {
        // The ledger applies an outcome's write set itself (versions, history, digest).
        Err(HostError(
            "writes are applied by the ledger, not the host".into(),
        ))
    }

    fn delete(&mut self, _key: &str) -> Result<(), HostError> {
        Err(HostError(
            "writes are applied by the ledger, not the host".into(),
        ))
    }
}

impl Ledger {
    /// Checks of chaincode payloads that need no state (also run at submission).
    pub(super) fn chaincode_static_checks(&self, p: &Payload) -> Result<(), Reject> {
        let name_ok = |name: &str| {
            if valid_chaincode_name(name) {
                Ok(())
            } else {
                Err((
                    RejectCode::Malformed,
                    format!("chaincode name {name:?} is invalid: 1 to 64 of a-z, 0-9, '-', '_', starting with a letter"),
                ))
            }
        };
        let seq_ok = |seq: u64| {
            if seq == 0 {
                Err((
                    RejectCode::Malformed,
                    "chaincode sequences start at 1".to_string(),
                ))
            } else {
                Ok(())
            }
        };
        match p {
            Payload::ChaincodeInstall { definition, module } => {
                name_ok(&definition.name)?;
                seq_ok(definition.sequence)?;
                let hash = cc::module_hash(module);
                if hash != definition.module_hash {
                    return Err((
                        RejectCode::Malformed,
                        format!(
                            "the module's sha256 is {hash}, the definition pins {}",
                            definition.module_hash
                        ),
                    ));
                }
                self.engine.validate(module).map_err(|e| {
                    (
                        RejectCode::Malformed,
                        format!("the module is not a valid chaincode: {e}"),
                    )
                })?;
                if let Some(init) = &definition.init {
                    if init.function.is_empty() {
                        return Err((RejectCode::Malformed, "empty init function name".into()));
                    }
                }
                Ok(())
            }
            Payload::ChaincodeApprove { name, sequence, .. }
            | Payload::ChaincodeCommit { name, sequence } => {
                name_ok(name)?;
                seq_ok(*sequence)
            }
            Payload::Invoke {
                chaincode,
                function,
                ..
            } => {
                name_ok(chaincode)?;
                if function == "init" {
                    return Err((
                        RejectCode::Forbidden,
                        "init runs only when a definition is committed".into(),
                    ));
                }
                Ok(())
            }
            Payload::KvWrite { .. }
            | Payload::Config(_)
            | Payload::Propose(_)
            | Payload::ProposalApprove { .. }
            | Payload::ProposalReject { .. } => Ok(()),
        }
    }

    fn state_value(
        &self,
        key: &str,
        overlay: &HashMap<String, StateEntry>,
    ) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.read_state(key, overlay)?.map(|(_, v)| v))
    }

    fn definition_at(
        &self,
        key: &str,
        overlay: &HashMap<String, StateEntry>,
    ) -> Result<Option<ChaincodeDefinition>, LedgerError> {
        match self.state_value(key, overlay)? {
            Some(b) => ChaincodeDefinition::from_bytes(&b)
                .map(Some)
                .map_err(|e| corrupt("chaincode definition", e)),
            None => Ok(None),
        }
    }

    /// The definition installed for `sequence` of `name`, or the rejection that there is none.
    fn installed_or_reject(
        &self,
        name: &str,
        sequence: u64,
        scratch: &Scratch,
    ) -> Result<Result<ChaincodeDefinition, TxStatus>, LedgerError> {
        Ok(
            match self.definition_at(&keys::installed(name, sequence), &scratch.overlay)? {
                Some(def) => Ok(def),
                None => Err(reject(
                    RejectCode::UnknownChaincode,
                    format!(
                        "no definition of chaincode {name} is installed for sequence {sequence}"
                    ),
                )),
            },
        )
    }

    /// Writes (or with `None` deletes) a state key as the transaction at `at`.
    fn write_at(
        &self,
        key: &str,
        value: Option<&[u8]>,
        at: &At<'_>,
        scratch: &mut Scratch,
        digest: &mut StateDigest,
        wb: &mut WriteBatch,
    ) -> Result<(), LedgerError> {
        self.write_key(
            key,
            value,
            at.version,
            &at.tx_id,
            at.block_ts,
            &mut scratch.overlay,
            digest,
            wb,
        )
    }

    /// The committed definition of `name`, as of the block's earlier transactions.
    fn active(
        &self,
        name: &str,
        overlay: &HashMap<String, StateEntry>,
    ) -> Result<Option<ChaincodeDefinition>, LedgerError> {
        self.definition_at(&keys::definition(name), overlay)
    }

    /// The committed definition of `name`, as of the block's earlier transactions.
    pub(super) fn active_definition(
        &self,
        name: &str,
        scratch: &Scratch,
    ) -> Result<Option<ChaincodeDefinition>, LedgerError> {
        self.active(name, &scratch.overlay)
    }

    /// Organizations that approved `def` (its exactly module hash) and are still members.
    fn approvals(
        &self,
        def: &ChaincodeDefinition,
        overlay: &HashMap<String, StateEntry>,
    ) -> Result<Vec<String>, LedgerError> {
        let config = self.config();
        let mut orgs = Vec::new();
        for m in &config.members {
            let key = keys::approval(&def.name, def.sequence, &m.name);
            if self.state_value(&key, overlay)?.as_deref() == Some(&def.module_hash.0[..]) {
                orgs.push(m.name.clone());
            }
        }
        Ok(orgs)
    }

    /// What the channel's chaincode rule asks of its members: a majority unless the
    /// configuration says more (the same count a definition proposal is decided by).
    fn approvals_needed(&self) -> usize {
        self.config().chaincode_approvals_needed()
    }

    /// The compiled module of a definition: from the engine's cache, or from the bytes the
    /// install transaction stored.
    fn module_of(
        &self,
        def: &ChaincodeDefinition,
        overlay: &HashMap<String, StateEntry>,
    ) -> Result<Result<Arc<Module>, Reject>, LedgerError> {
        if let Some(m) = self.engine.cached(&def.module_hash.0) {
            return Ok(Ok(m));
        }
        let key = keys::module(&def.name, &def.module_hash.to_hex());
        let Some(bytes) = self.state_value(&key, overlay)? else {
            return Err(corrupt("chaincode module", format!("{key} missing")));
        };
        // Validated at install with the same limits, so a refusal here is deterministic.
        Ok(self.engine.load(&bytes).map_err(|e| {
            (
                RejectCode::ChaincodeError,
                format!("instantiate: the module no longer loads: {e}"),
            )
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        def: &ChaincodeDefinition,
        module: &Module,
        function: &str,
        args: &[u8],
        ctx: &CallContext,
        fuel: u64,
        overlay: &HashMap<String, StateEntry>,
        exec: &mut Vec<ExecStat>,
    ) -> Result<Result<Outcome, Reject>, LedgerError> {
        let started = Instant::now();
        let mut host = LedgerHost {
            ledger: self,
            overlay,
        };
        // 0 asks for the engine's maximum.
        let fuel = if fuel == 0 { u64::MAX } else { fuel };
        let out = self
            .engine
            .invoke(module, function, args, ctx, &mut host, fuel);
        exec.push(ExecStat {
            chaincode: def.name.clone(),
            fuel_used: out.as_ref().map_or_else(
                |e| match e {
                    ExecError::OutOfFuel { limit } => *limit,
                    _ => 0,
                },
                |o| o.fuel_used,
            ),
            seconds: started.elapsed().as_secs_f64(),
        });
        match out {
            Ok(o) => Ok(Ok(o)),
            Err(e) => match exec_reject(&e) {
                Some(r) => Ok(Err(r)),
                None => Err(LedgerError::ChaincodeHost(e.to_string())),
            },
        }
    }

    fn context(&self, name: &str, at: &At<'_>) -> CallContext {
        CallContext {
            chaincode: name.to_string(),
            org: at.info.org.clone(),
            subject: if at.info.common_name.is_empty() {
                at.info.subject.clone()
            } else {
                at.info.common_name.clone()
            },
            role: at.info.role.to_string(),
            tx_id: at.tx_id.0,
            timestamp_ms: at.block_ts,
        }
    }

    /// Applies a successful call's writes and keeps what it did for the block.
    fn commit_outcome(
        &self,
        name: &str,
        out: Outcome,
        at: &At<'_>,
        scratch: &mut Scratch,
        digest: &mut StateDigest,
        wb: &mut WriteBatch,
    ) -> Result<(), LedgerError> {
        let mut writes = Vec::with_capacity(out.write_set.len());
        for w in out.write_set {
            self.write_at(&w.key, w.value.as_deref(), at, scratch, digest, wb)?;
            writes.push(Write {
                key: w.key,
                value: w.value,
            });
        }
        scratch.effects = Some(TxEffects {
            chaincode: name.to_string(),
            reads: out
                .read_set
                .into_iter()
                .map(|r| ReadCheck {
                    key: r.key,
                    version: r.version.map(from_rt),
                })
                .collect(),
            writes,
            events: out
                .events
                .into_iter()
                .map(|e| ChaincodeEvent {
                    name: e.name,
                    payload: e.payload,
                })
                .collect(),
            result: out.result,
            fuel_used: out.fuel_used,
        });
        Ok(())
    }

    pub(super) fn apply_chaincode(
        &self,
        payload: &Payload,
        at: &At<'_>,
        scratch: &mut Scratch,
        digest: &mut StateDigest,
        wb: &mut WriteBatch,
    ) -> Result<TxStatus, LedgerError> {
        match payload {
            Payload::ChaincodeInstall { definition, module } => {
                self.install(definition, module, at, scratch, digest, wb)
            }
            Payload::ChaincodeApprove {
                name,
                sequence,
                module_hash,
            } => self.approve(name, *sequence, module_hash, at, scratch, digest, wb),
            Payload::ChaincodeCommit { name, sequence } => {
                self.commit(name, *sequence, at, scratch, digest, wb)
            }
            Payload::Invoke {
                chaincode,
                function,
                args,
                fuel,
            } => self.invoke(chaincode, function, args, *fuel, at, scratch, digest, wb),
            Payload::KvWrite { .. }
            | Payload::Config(_)
            | Payload::Propose(_)
            | Payload::ProposalApprove { .. }
            | Payload::ProposalReject { .. } => {
                Ok(reject(RejectCode::Malformed, "not a chaincode transaction"))
            }
        }
    }

    fn next_sequence(&self, name: &str, scratch: &Scratch) -> Result<u64, LedgerError> {
        Ok(self
            .active(name, &scratch.overlay)?
            .map_or(1, |d| d.sequence + 1))
    }

    fn install(
        &self,
        def: &ChaincodeDefinition,
        module: &[u8],
        at: &At<'_>,
        scratch: &mut Scratch,
        digest: &mut StateDigest,
        wb: &mut WriteBatch,
    ) -> Result<TxStatus, LedgerError> {
        let next = self.next_sequence(&def.name, scratch)?;
        if def.sequence != next {
            return Ok(reject(
                RejectCode::ReadConflict,
                format!(
                    "chaincode {} is installed for sequence {}; the next definition is sequence {next}",
                    def.name, def.sequence
                ),
            ));
        }
        let key = keys::installed(&def.name, def.sequence);
        if let Some(existing) = self.definition_at(&key, &scratch.overlay)? {
            // Replacing a pending definition is allowed (approvals are of a module hash, so
            // they do not carry over); installing the same one twice is a mistake.
            if existing == *def {
                return Ok(reject(
                    RejectCode::ReadConflict,
                    format!(
                        "chaincode {} sequence {} is already installed with this definition",
                        def.name, def.sequence
                    ),
                ));
            }
        }
        self.write_at(&key, Some(&def.to_bytes()), at, scratch, digest, wb)?;
        let mkey = keys::module(&def.name, &def.module_hash.to_hex());
        if self.state_value(&mkey, &scratch.overlay)?.is_none() {
            self.write_at(&mkey, Some(module), at, scratch, digest, wb)?;
        }
        Ok(TxStatus::Committed)
    }

    #[allow(clippy::too_many_arguments)]
    fn approve(
        &self,
        name: &str,
        sequence: u64,
        hash: &Hash,
        at: &At<'_>,
        scratch: &mut Scratch,
        digest: &mut StateDigest,
        wb: &mut WriteBatch,
    ) -> Result<TxStatus, LedgerError> {
        let next = self.next_sequence(name, scratch)?;
        if sequence < next {
            return Ok(reject(
                RejectCode::ReadConflict,
                format!("chaincode {name} sequence {sequence} is already committed"),
            ));
        }
        let def = match self.installed_or_reject(name, sequence, scratch)? {
            Ok(def) => def,
            Err(rejected) => return Ok(rejected),
        };
        if def.module_hash != *hash {
            return Ok(reject(
                RejectCode::ReadConflict,
                format!(
                    "chaincode {name} sequence {sequence} is installed with module {}, not {hash}",
                    def.module_hash
                ),
            ));
        }
        self.write_at(
            &keys::approval(name, sequence, &at.info.org),
            Some(&hash.0),
            at,
            scratch,
            digest,
            wb,
        )?;
        Ok(TxStatus::Committed)
    }

    fn commit(
        &self,
        name: &str,
        sequence: u64,
        at: &At<'_>,
        scratch: &mut Scratch,
        digest: &mut StateDigest,
        wb: &mut WriteBatch,
    ) -> Result<TxStatus, LedgerError> {
        let next = self.next_sequence(name, scratch)?;
        if sequence != next {
            return Ok(reject(
                RejectCode::ReadConflict,
                format!("chaincode {name}: the next sequence to commit is {next}, not {sequence}"),
            ));
        }
        let def = match self.installed_or_reject(name, sequence, scratch)? {
            Ok(def) => def,
            Err(rejected) => return Ok(rejected),
        };
        let approved = self.approvals(&def, &scratch.overlay)?;
        let needed = self.approvals_needed();
        if approved.len() < needed {
            let members: Vec<_> = self
                .config()
                .members
                .iter()
                .map(|m| m.name.clone())
                .collect();
            return Ok(reject(
                RejectCode::NotApproved,
                format!(
                    "chaincode {name} sequence {sequence} is approved by {approved:?}; a commit needs {needed} of {members:?}"
                ),
            ));
        }
        self.activate(&def, at, scratch, digest, wb)
    }

    /// Why `def` cannot become the active definition now, if it cannot: its sequence must be
    /// the next one and exactly this definition must be installed (so its module is on every
    /// node). Checked when a definition is proposed and again when it applies.
    pub(super) fn why_not_definable(
        &self,
        def: &ChaincodeDefinition,
        scratch: &Scratch,
    ) -> Result<Option<Reject>, LedgerError> {
        let next = self.next_sequence(&def.name, scratch)?;
        if def.sequence != next {
            return Ok(Some((
                RejectCode::ReadConflict,
                format!(
                    "chaincode {}: the next definition is sequence {next}, not {}",
                    def.name, def.sequence
                ),
            )));
        }
        let installed =
            self.definition_at(&keys::installed(&def.name, def.sequence), &scratch.overlay)?;
        Ok(match installed {
            None => Some((
                RejectCode::UnknownChaincode,
                format!(
                    "no definition of chaincode {} is installed for sequence {}: install its module first (tallyctl chaincode install)",
                    def.name, def.sequence
                ),
            )),
            Some(i) if i != *def => Some((
                RejectCode::ReadConflict,
                format!(
                    "chaincode {} sequence {} is installed as version {} module {}{}, not as proposed (version {} module {}{})",
                    def.name,
                    def.sequence,
                    i.version,
                    i.module_hash,
                    init_text(&i),
                    def.version,
                    def.module_hash,
                    init_text(def),
                ),
            )),
            Some(_) => None,
        })
    }

    /// Makes `def` the active definition of its chaincode: its init call runs first (if it
    /// fails, nothing is written), then the definition. What a commit and an approved
    /// definition proposal both do once their approvals are counted.
    pub(super) fn activate(
        &self,
        def: &ChaincodeDefinition,
        at: &At<'_>,
        scratch: &mut Scratch,
        digest: &mut StateDigest,
        wb: &mut WriteBatch,
    ) -> Result<TxStatus, LedgerError> {
        let name = &def.name;
        // init runs first: if it fails, the definition is not committed either.
        let mut init_out = None;
        if let Some(init) = &def.init {
            let module = match self.module_of(def, &scratch.overlay)? {
                Ok(m) => m,
                Err((code, reason)) => return Ok(reject(code, reason)),
            };
            let ctx = self.context(name, at);
            match self.run(
                def,
                &module,
                &init.function,
                &init.args,
                &ctx,
                0,
                &scratch.overlay,
                &mut scratch.exec,
            )? {
                Ok(o) => init_out = Some(o),
                Err((code, reason)) => {
                    return Ok(reject(code, format!("init of {name} failed: {reason}")))
                }
            }
        }
        self.write_at(
            &keys::definition(name),
            Some(&def.to_bytes()),
            at,
            scratch,
            digest,
            wb,
        )?;
        if let Some(out) = init_out {
            self.commit_outcome(name, out, at, scratch, digest, wb)?;
        }
        Ok(TxStatus::Committed)
    }

    #[allow(clippy::too_many_arguments)]
    fn invoke(
        &self,
        name: &str,
        function: &str,
        args: &[u8],
        fuel: u64,
        at: &At<'_>,
        scratch: &mut Scratch,
        digest: &mut StateDigest,
        wb: &mut WriteBatch,
    ) -> Result<TxStatus, LedgerError> {
        let Some(def) = self.active(name, &scratch.overlay)? else {
            return Ok(reject(
                RejectCode::UnknownChaincode,
                format!("chaincode {name} is not committed on channel {}", self.name),
            ));
        };
        if let Err((code, reason)) = self.refuse_retired_call(&def, Some(scratch))? {
            return Ok(reject(code, reason));
        }
        let module = match self.module_of(&def, &scratch.overlay)? {
            Ok(m) => m,
            Err((code, reason)) => return Ok(reject(code, reason)),
        };
        let ctx = self.context(name, at);
        // The call gets what it asks for (0: the most a call may have), but never more than
        // the block has left; a call stopped by that is told so rather than "out of fuel".
        let wanted = match fuel {
            0 => u64::MAX,
            f => f,
        }
        .min(self.engine.limits().max_fuel_per_call);
        let left = BLOCK_FUEL.saturating_sub(scratch.fuel_used);
        if left == 0 {
            return Ok(reject(RejectCode::OutOfFuel, budget_spent()));
        }
        let cap = wanted.min(left);
        let started = scratch.exec.len();
        let out = self.run(
            &def,
            &module,
            function,
            args,
            &ctx,
            cap,
            &scratch.overlay,
            &mut scratch.exec,
        )?;
        let burnt: u64 = scratch.exec[started..].iter().map(|e| e.fuel_used).sum();
        scratch.fuel_used = scratch.fuel_used.saturating_add(burnt);
        match out {
            Ok(out) => {
                self.commit_outcome(name, out, at, scratch, digest, wb)?;
                Ok(TxStatus::Committed)
            }
            Err((RejectCode::OutOfFuel, _)) if cap < wanted => {
                Ok(reject(RejectCode::OutOfFuel, budget_spent()))
            }
            Err((code, reason)) => Ok(reject(code, reason)),
        }
    }

    // ---- reads ----------------------------------------------------------------------------

    /// Runs `function` read-only against committed state: nothing it writes is kept. The
    /// context is the reader's identity, no transaction id (zeros) and the last block's time.
    /// `fuel` caps the call (0: a transaction's maximum).
    pub fn query(
        &self,
        name: &str,
        function: &str,
        args: &[u8],
        reader: &CertInfo,
        fuel: u64,
    ) -> Result<Result<QueryResult, (RejectCode, String)>, LedgerError> {
        let none = HashMap::new();
        if function == "init" {
            return Ok(Err((
                RejectCode::Forbidden,
                "init runs only when a definition is committed".into(),
            )));
        }
        let Some(def) = self.active(name, &none)? else {
            return Ok(Err((
                RejectCode::UnknownChaincode,
                format!("chaincode {name} is not committed on channel {}", self.name),
            )));
        };
        let module = match self.module_of(&def, &none)? {
            Ok(m) => m,
            Err(r) => return Ok(Err(r)),
        };
        let tip = self.tip();
        let at = At {
            tx_id: Hash::ZERO,
            version: Version { block: 0, tx: 0 },
            block_ts: tip.timestamp_ms,
            info: reader,
        };
        let ctx = self.context(name, &at);
        let mut exec = Vec::new();
        Ok(self
            .run(&def, &module, function, args, &ctx, fuel, &none, &mut exec)?
            .map(|o| QueryResult {
                result_utf8: String::from_utf8(o.result.clone()).ok(),
                result: o.result,
                fuel_used: o.fuel_used,
                height: tip.height,
            }))
    }

    /// Every chaincode of the channel: its committed definition and the definitions waiting
    /// for approval, with the organizations that approved them.
    pub fn chaincodes(&self) -> Result<Vec<ChaincodeInfo>, LedgerError> {
        let none = HashMap::new();
        let mut out: BTreeMap<String, ChaincodeInfo> = BTreeMap::new();
        let mut installed = Vec::new();
        self.scan_state(cc::LIFECYCLE_PREFIX, |key, _, value| {
            let mut parts = key[cc::LIFECYCLE_PREFIX.len()..].splitn(3, '/');
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                return Ok(true);
            };
            let entry = out
                .entry(name.to_string())
                .or_insert_with(|| ChaincodeInfo {
                    name: name.to_string(),
                    active: None,
                    approvals: Vec::new(),
                    pending: Vec::new(),
                    retired: None,
                });
            let decode = |b: &[u8]| {
                ChaincodeDefinition::from_bytes(b).map_err(|e| corrupt("chaincode definition", e))
            };
            match kind {
                "definition" => entry.active = Some(decode(&value)?),
                "installed" => installed.push(decode(&value)?),
                "retired" => {
                    entry.retired = Some(
                        tally_protocol::retirement::Retirement::from_bytes(&value)
                            .map_err(|e| corrupt("chaincode retirement", e))?,
                    )
                }
                _ => {}
            }
            Ok(true)
        })?;
        for entry in out.values_mut() {
            if let Some(active) = &entry.active {
                entry.approvals = self.approvals(active, &none)?;
            }
            // A retirement of an earlier definition no longer holds once a later one is active.
            let current = entry.active.as_ref().map(|a| a.sequence);
            entry.retired = entry.retired.filter(|r| Some(r.sequence) == current);
        }
        let needed = self.approvals_needed();
        for def in installed {
            let Some(entry) = out.get_mut(&def.name) else {
                continue;
            };
            if entry
                .active
                .as_ref()
                .is_some_and(|a| a.sequence >= def.sequence)
            {
                continue;
            }
            let approvals = self.approvals(&def, &none)?;
            entry.pending.push(PendingDefinition {
                definition: def,
                approvals,
                needed,
            });
        }
        Ok(out.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call's scans see the block's earlier writes laid over the database: puts added,
    /// deletes removed, in key order, within bounds and limit.
    #[test]
    fn scans_merge_the_overlay_over_the_database() {
        let (_dir, ledger, client) = crate::ledger::tests::ledger_with_member();
        let now = tally_protocol::now_ms();
        let body = tally_protocol::TxBody {
            channel: "ch".into(),
            nonce: 1,
            timestamp_ms: now,
            signer: tally_protocol::Signer::Certificate(client.cert_der.clone()),
            payload: Payload::KvWrite {
                reads: vec![],
                writes: ["a/1", "a/2", "a/3", "a/5", "b/1"]
                    .iter()
                    .map(|k| Write {
                        key: k.to_string(),
                        value: Some(k.as_bytes().to_vec()),
                    })
                    .collect(),
            },
        };
        let tx = tally_protocol::Transaction::sign(body, &client);
        let data = tally_protocol::write_batch(now, std::iter::once(tx.to_bytes().as_slice()));
        let mut wb = WriteBatch::default();
        let (applied, tip) = ledger
            .apply_batch(&data, 1, 1, &|_: &Hash, _: &[u8]| false, &mut wb)
            .unwrap()
            .unwrap();
        assert!(applied.receipts[0].status.is_committed());
        ledger.db().write(wb).unwrap();
        ledger.commit_tip(tip);
        let v = Version { block: 2, tx: 0 };
        let overlay: HashMap<String, StateEntry> = [
            ("a/0", Some((v, b"new0".to_vec()))),
            ("a/2", None),
            ("a/4", Some((v, b"new4".to_vec()))),
            ("a/3", Some((v, b"new3".to_vec()))),
        ]
        .into_iter()
        .map(|(k, e)| (k.to_string(), e))
        .collect();
        let mut host = LedgerHost {
            ledger: &ledger,
            overlay: &overlay,
        };
        let keys = |v: Vec<Entry>| v.into_iter().map(|e| e.0).collect::<Vec<_>>();
        assert_eq!(
            keys(host.scan("a/", "a/", None, 100).unwrap()),
            ["a/0", "a/1", "a/3", "a/4", "a/5"]
        );
        assert_eq!(
            keys(host.scan("a/", "a/", None, 3).unwrap()),
            ["a/0", "a/1", "a/3"]
        );
        assert_eq!(
            keys(host.scan("a/", "a/1", Some("a/4"), 10).unwrap()),
            ["a/1", "a/3"]
        );
        let three = host.scan("a/", "a/3", None, 1).unwrap();
        assert_eq!(
            (three[0].0.as_str(), three[0].2.as_slice()),
            ("a/3", &b"new3"[..])
        );
        assert!(host.get("a/2").unwrap().is_none(), "deleted in the overlay");
        assert_eq!(host.get("b/1").unwrap().unwrap().1, b"b/1");
    }

    #[test]
    fn reserved_keys() {
        assert!(reserved_key("_lifecycle/x/definition"));
        assert!(reserved_key("cc~notary~h/ab"));
        assert!(reserved_key("_governance/proposals/00"));
        assert!(!reserved_key("lifecycle/x"));
        assert!(!reserved_key("cc-x"));
    }

    #[test]
    fn failures_map_to_codes() {
        let r = exec_reject(&ExecError::OutOfFuel { limit: 5 }).unwrap();
        assert_eq!(r.0, RejectCode::OutOfFuel);
        assert!(r.1.starts_with("out_of_fuel: "));
        let r = exec_reject(&ExecError::ContractError("no".into())).unwrap();
        assert_eq!(r.0, RejectCode::ChaincodeError);
        assert!(r.1.starts_with("contract_error: "));
        assert!(exec_reject(&ExecError::Host("disk".into())).is_none());
    }
}
