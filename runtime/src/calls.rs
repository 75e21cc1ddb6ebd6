//! The state of one call and the host functions a module imports.

use crate::abi::fuel;
use crate::host::{CallContext, Event, Outcome, ReadEntry, StateHost, Version, WriteEntry};
use crate::Limits;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use wasmi::errors::HostError;
use wasmi::{Caller, Extern, Func, Memory, Store};

/// Why a host function stopped the call. Carried through wasmi as a host error and turned into
/// an [`crate::ExecError`] by the engine.
#[derive(Debug)]
pub(crate) enum Abort {
    OutOfFuel,
    Fail(String),
    HostCall { call: &'static str, reason: String },
    BadOutput(String),
    Host(String),
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Abort::OutOfFuel => write!(f, "out of fuel"),
            Abort::Fail(m) => write!(f, "contract failed: {m}"),
            Abort::HostCall { call, reason } => write!(f, "{call}: {reason}"),
            Abort::BadOutput(m) => write!(f, "bad output: {m}"),
            Abort::Host(m) => write!(f, "host: {m}"),
        }
    }
}

impl HostError for Abort {}

/// Caps memory (and table) growth of the one instance a call has. It refuses by error rather
/// than by a failed `memory.grow` (-1), so that the call stops at once with a clear reason
/// instead of leaving it to the contract to notice.
pub(crate) struct Limiter {
    pub max_pages: u32,
    pub max_table_elements: usize,
    pub memory_denied: bool,
}

impl wasmi::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, wasmi_core::LimiterError> {
        if desired > self.max_pages as usize * 65536 {
            self.memory_denied = true;
            return Err(wasmi_core::LimiterError::ResourceLimiterDeniedAllocation);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, wasmi_core::LimiterError> {
        Ok(desired <= self.max_table_elements)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

/// Everything one call owns: the borrowed host and context, and its buffered effects.
pub(crate) struct CallState<'h> {
    host: &'h mut dyn StateHost,
    ctx: &'h CallContext,
    limits: &'h Limits,
    /// `cc~<name>~`: prefixed to every key the contract names.
    ns: String,
    pub memory: Option<Memory>,
    pub limiter: Limiter,
    /// The host's answer to the last call that returns bytes; read with `buffer_copy`.
    buffer: Vec<u8>,
    writes: BTreeMap<String, Option<Vec<u8>>>,
    reads: Vec<ReadEntry>,
    read_keys: HashSet<String>,
    events: Vec<Event>,
    result: Vec<u8>,
}

impl<'h> CallState<'h> {
    pub fn new(
        host: &'h mut dyn StateHost,
        ctx: &'h CallContext,
        limits: &'h Limits,
        ns: String,
    ) -> CallState<'h> {
        CallState {
            host,
            ctx,
            limits,
            ns,
            memory: None,
            limiter: Limiter {
                max_pages: limits.max_memory_pages,
                max_table_elements: limits.max_table_elements,
                memory_denied: false,
            },
            buffer: Vec::new(),
            writes: BTreeMap::new(),
            reads: Vec::new(),
            read_keys: HashSet::new(),
            events: Vec::new(),
            result: Vec::new(),
        }
    }

    pub fn into_outcome(self, fuel_used: u64) -> Outcome {
        Outcome {
            result: self.result,
            events: self.events,
            fuel_used,
            read_set: self.reads,
            write_set: self
                .writes
                .into_iter()
                .map(|(key, value)| WriteEntry { key, value })
                .collect(),
        }
    }

    fn record_read(&mut self, key: &str, version: Option<Version>) {
        if self.read_keys.insert(key.to_string()) {
            self.reads.push(ReadEntry {
                key: key.to_string(),
                version,
            });
        }
    }

    /// A key's value as this call sees it: its own writes first, then committed state.
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, Abort> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        let found = self.host.get(key).map_err(|e| Abort::Host(e.0))?;
        self.record_read(key, found.as_ref().map(|(v, _)| *v));
        Ok(found.map(|(_, v)| v))
    }

    /// Up to `limit` entries under `prefix` in [start, end), merging the call's own writes
    /// over committed state.
    fn scan(
        &mut self,
        prefix: &str,
        start: &str,
        end: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, Abort> {
        let in_range = |k: &String| k.starts_with(prefix) && end.is_none_or(|e| k.as_str() < e);
        let buffered: Vec<(String, Option<Vec<u8>>)> = self
            .writes
            .range(start.to_string()..)
            .take_while(|(k, _)| in_range(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Each buffered delete may hide one committed entry; asking for that many more keeps
        // the first `limit` of the merged view exact.
        let deletes = buffered.iter().filter(|(_, v)| v.is_none()).count();
        let committed = self
            .host
            .scan(prefix, start, end, limit.saturating_add(deletes))
            .map_err(|e| Abort::Host(e.0))?;
        let mut merged: BTreeMap<String, (Option<Version>, Vec<u8>)> = committed
            .into_iter()
            .map(|(k, ver, v)| (k, (Some(ver), v)))
            .collect();
        for (k, w) in buffered {
            match w {
                Some(v) => {
                    merged.insert(k, (None, v));
                }
                None => {
                    merged.remove(&k);
                }
            }
        }
        let mut out = Vec::with_capacity(limit.min(merged.len()));
        for (k, (ver, v)) in merged.into_iter().take(limit) {
            if ver.is_some() {
                self.record_read(&k, ver);
            }
            out.push((k, v));
        }
        Ok(out)
    }
}

type Cx<'a, 'h> = Caller<'a, CallState<'h>>;
type HostResult<T> = Result<T, wasmi::Error>;

fn abort(a: Abort) -> wasmi::Error {
    wasmi::Error::host(a)
}

fn bad_call(call: &'static str, reason: impl Into<String>) -> wasmi::Error {
    abort(Abort::HostCall {
        call,
        reason: reason.into(),
    })
}

/// Takes `amount` fuel for work done by the host, failing the call when there is not enough.
fn charge(c: &mut Cx<'_, '_>, amount: u64) -> HostResult<()> {
    let left = c.get_fuel()?;
    if left < amount {
        c.set_fuel(0)?;
        return Err(abort(Abort::OutOfFuel));
    }
    c.set_fuel(left - amount)
}

fn memory(c: &Cx<'_, '_>, call: &'static str) -> HostResult<Memory> {
    c.data()
        .memory
        .ok_or_else(|| bad_call(call, "called before the call's arguments were placed"))
}

/// Copies `len` bytes at `ptr` out of the module's memory. `ptr` and `len` are unsigned.
fn read_mem(c: &Cx<'_, '_>, call: &'static str, ptr: i32, len: i32) -> HostResult<Vec<u8>> {
    let mem = memory(c, call)?;
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    start
        .checked_add(len)
        .and_then(|end| mem.data(c).get(start..end))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| bad_call(call, format!("{len} bytes at {start} are outside memory")))
}

fn write_mem(c: &mut Cx<'_, '_>, call: &'static str, ptr: i32, bytes: &[u8]) -> HostResult<()> {
    let mem = memory(c, call)?;
    let start = ptr as u32 as usize;
    let len = bytes.len();
    start
        .checked_add(len)
        .and_then(|end| mem.data_mut(&mut *c).get_mut(start..end))
        .ok_or_else(|| bad_call(call, format!("{len} bytes at {start} are outside memory")))?
        .copy_from_slice(bytes);
    Ok(())
}

/// A contract key: UTF-8 (ledger keys are strings), at most `max_key_bytes`, and non-empty
/// unless `allow_empty` (scan bounds and prefixes).
fn read_key(
    c: &Cx<'_, '_>,
    call: &'static str,
    ptr: i32,
    len: i32,
    allow_empty: bool,
) -> HostResult<String> {
    let max = c.data().limits.max_key_bytes;
    if len as u32 as usize > max {
        return Err(bad_call(call, format!("key longer than {max} bytes")));
    }
    if len == 0 && !allow_empty {
        return Err(bad_call(call, "empty key"));
    }
    let bytes = read_mem(c, call, ptr, len)?;
    String::from_utf8(bytes).map_err(|_| bad_call(call, "key is not UTF-8"))
}

fn len_i32(n: usize) -> i32 {
    // Every buffer is bounded by limits far below 2 GiB.
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn set_buffer(c: &mut Cx<'_, '_>, bytes: Vec<u8>) -> HostResult<i32> {
    charge(c, fuel::HOST_CALL + bytes.len() as u64 * fuel::PER_BYTE)?;
    let n = len_i32(bytes.len());
    c.data_mut().buffer = bytes;
    Ok(n)
}

fn state_get(mut c: Cx<'_, '_>, kp: i32, kl: i32) -> HostResult<i32> {
    charge(
        &mut c,
        fuel::HOST_CALL + fuel::STATE_READ + kl as u32 as u64,
    )?;
    let key = read_key(&c, "state_get", kp, kl, false)?;
    let full = format!("{}{key}", c.data().ns);
    match c.data_mut().get(&full).map_err(abort)? {
        None => {
            c.data_mut().buffer.clear();
            Ok(-1)
        }
        Some(v) => {
            charge(&mut c, v.len() as u64 * fuel::PER_BYTE)?;
            let n = len_i32(v.len());
            c.data_mut().buffer = v;
            Ok(n)
        }
    }
}

fn write(
    mut c: Cx<'_, '_>,
    call: &'static str,
    kp: i32,
    kl: i32,
    value: Option<Vec<u8>>,
) -> HostResult<()> {
    let key = read_key(&c, call, kp, kl, false)?;
    let full = format!("{}{key}", c.data().ns);
    let st = c.data_mut();
    if !st.writes.contains_key(&full) && st.writes.len() >= st.limits.max_writes {
        return Err(bad_call(
            call,
            format!(
                "more than {} keys written in one call",
                st.limits.max_writes
            ),
        ));
    }
    st.writes.insert(full, value);
    Ok(())
}

fn state_put(mut c: Cx<'_, '_>, kp: i32, kl: i32, vp: i32, vl: i32) -> HostResult<()> {
    let bytes = kl as u32 as u64 + vl as u32 as u64;
    charge(
        &mut c,
        fuel::HOST_CALL + fuel::STATE_WRITE + bytes * fuel::PER_BYTE,
    )?;
    let max = c.data().limits.max_value_bytes;
    if vl as u32 as usize > max {
        return Err(bad_call(
            "state_put",
            format!("value longer than {max} bytes"),
        ));
    }
    let value = read_mem(&c, "state_put", vp, vl)?;
    write(c, "state_put", kp, kl, Some(value))
}

fn state_delete(mut c: Cx<'_, '_>, kp: i32, kl: i32) -> HostResult<()> {
    charge(
        &mut c,
        fuel::HOST_CALL + fuel::STATE_WRITE + kl as u32 as u64,
    )?;
    write(c, "state_delete", kp, kl, None)
}

/// Encodes scan results for the module: u32 count, then per entry u32 key length, key bytes,
/// u32 value length, value bytes; integers little-endian (wasm's byte order). Keys are the
/// contract's own, without the namespace.
fn encode_entries(ns_len: usize, entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size: usize = entries
        .iter()
        .map(|(k, v)| 8 + k.len() - ns_len + v.len())
        .sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (k, v) in entries {
        let k = &k.as_bytes()[ns_len..];
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}

fn scan_limit(c: &Cx<'_, '_>, call: &'static str, limit: i32) -> HostResult<usize> {
    if limit <= 0 {
        return Err(bad_call(call, "limit must be at least 1"));
    }
    // Larger requests are served in part; the contract pages on with the last key it got.
    Ok((limit as usize).min(c.data().limits.max_scan_entries))
}

fn do_scan(
    mut c: Cx<'_, '_>,
    prefix: String,
    start: String,
    end: Option<String>,
    limit: usize,
) -> HostResult<i32> {
    let ns_len = c.data().ns.len();
    let entries = c
        .data_mut()
        .scan(&prefix, &start, end.as_deref(), limit)
        .map_err(abort)?;
    charge(&mut c, entries.len() as u64 * fuel::STATE_READ)?;
    let bytes = encode_entries(ns_len, &entries);
    set_buffer(&mut c, bytes)
}

fn state_range(
    mut c: Cx<'_, '_>,
    sp: i32,
    sl: i32,
    ep: i32,
    el: i32,
    limit: i32,
) -> HostResult<i32> {
    charge(
        &mut c,
        fuel::HOST_CALL + (sl as u32 as u64 + el as u32 as u64) * fuel::PER_BYTE,
    )?;
    let limit = scan_limit(&c, "state_range", limit)?;
    let start = read_key(&c, "state_range", sp, sl, true)?;
    let end = read_key(&c, "state_range", ep, el, true)?;
    let ns = c.data().ns.clone();
    let end = (!end.is_empty()).then(|| format!("{ns}{end}"));
    do_scan(c, ns.clone(), format!("{ns}{start}"), end, limit)
}

fn state_prefix(mut c: Cx<'_, '_>, pp: i32, pl: i32, limit: i32) -> HostResult<i32> {
    charge(&mut c, fuel::HOST_CALL + pl as u32 as u64 * fuel::PER_BYTE)?;
    let limit = scan_limit(&c, "state_prefix", limit)?;
    let prefix = read_key(&c, "state_prefix", pp, pl, true)?;
    let full = format!("{}{prefix}", c.data().ns);
    do_scan(c, full.clone(), full, None, limit)
}

fn buffer_copy(mut c: Cx<'_, '_>, dst: i32, len: i32) -> HostResult<i32> {
    let n = (len.max(0) as usize).min(c.data().buffer.len());
    charge(&mut c, fuel::HOST_CALL + n as u64 * fuel::PER_BYTE)?;
    let bytes = c.data().buffer[..n].to_vec();
    write_mem(&mut c, "buffer_copy", dst, &bytes)?;
    Ok(len_i32(n))
}

fn caller_org(mut c: Cx<'_, '_>) -> HostResult<i32> {
    let v = c.data().ctx.org.as_bytes().to_vec();
    set_buffer(&mut c, v)
}

fn caller_subject(mut c: Cx<'_, '_>) -> HostResult<i32> {
    let v = c.data().ctx.subject.as_bytes().to_vec();
    set_buffer(&mut c, v)
}

fn caller_role(mut c: Cx<'_, '_>) -> HostResult<i32> {
    let v = c.data().ctx.role.as_bytes().to_vec();
    set_buffer(&mut c, v)
}

fn chaincode_name(mut c: Cx<'_, '_>) -> HostResult<i32> {
    let v = c.data().ctx.chaincode.as_bytes().to_vec();
    set_buffer(&mut c, v)
}

fn tx_id(mut c: Cx<'_, '_>, dst: i32) -> HostResult<()> {
    charge(&mut c, fuel::HOST_CALL + 32 * fuel::PER_BYTE)?;
    let id = c.data().ctx.tx_id;
    write_mem(&mut c, "tx_id", dst, &id)
}

fn tx_timestamp(mut c: Cx<'_, '_>) -> HostResult<i64> {
    charge(&mut c, fuel::HOST_CALL)?;
    // Milliseconds since 1970 fit an i64 for the next 292 million years.
    Ok(c.data().ctx.timestamp_ms as i64)
}

fn emit_event(mut c: Cx<'_, '_>, np: i32, nl: i32, pp: i32, pl: i32) -> HostResult<()> {
    let bytes = nl as u32 as u64 + pl as u32 as u64;
    charge(
        &mut c,
        fuel::HOST_CALL + fuel::EVENT + bytes * fuel::PER_BYTE,
    )?;
    let limits = c.data().limits;
    if nl <= 0 || nl as usize > 64 {
        return Err(bad_call("emit_event", "event name must be 1 to 64 bytes"));
    }
    if pl as u32 as usize > limits.max_event_bytes {
        return Err(bad_call(
            "emit_event",
            format!("payload longer than {} bytes", limits.max_event_bytes),
        ));
    }
    if c.data().events.len() >= limits.max_events {
        return Err(bad_call(
            "emit_event",
            format!("more than {} events in one call", limits.max_events),
        ));
    }
    let name = String::from_utf8(read_mem(&c, "emit_event", np, nl)?)
        .map_err(|_| bad_call("emit_event", "event name is not UTF-8"))?;
    let payload = read_mem(&c, "emit_event", pp, pl)?;
    c.data_mut().events.push(Event { name, payload });
    Ok(())
}

fn set_result(mut c: Cx<'_, '_>, p: i32, l: i32) -> HostResult<()> {
    charge(&mut c, fuel::HOST_CALL + l as u32 as u64 * fuel::PER_BYTE)?;
    let max = c.data().limits.max_result_bytes;
    if l as u32 as usize > max {
        return Err(abort(Abort::BadOutput(format!(
            "result is {} bytes; the limit is {max}",
            l as u32
        ))));
    }
    let r = read_mem(&c, "set_result", p, l)?;
    c.data_mut().result = r;
    Ok(())
}

/// Messages longer than this are cut: an error reason is for people, not for data.
const MAX_ERROR_BYTES: i32 = 1024;

fn fail(mut c: Cx<'_, '_>, p: i32, l: i32) -> HostResult<()> {
    let l = l.clamp(0, MAX_ERROR_BYTES);
    charge(&mut c, fuel::HOST_CALL + l as u64 * fuel::PER_BYTE)?;
    let msg = read_mem(&c, "fail", p, l)?;
    Err(abort(Abort::Fail(
        String::from_utf8_lossy(&msg).into_owned(),
    )))
}

/// The host functions a module imports, in its import order, bound to one call's store.
/// Bound per call because the call state borrows the node's state host for just that call;
/// wrapping only the imported functions directly (rather than building a `Linker` of all of
/// them) keeps this to a fraction of a microsecond (docs/chaincode-runtime.md).
pub(crate) fn imports(
    store: &mut Store<CallState<'_>>,
    names: &[&'static str],
) -> HostResult<Vec<Extern>> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let mut s = &mut *store;
        let f = match *name {
            "state_get" => Func::wrap(&mut s, state_get),
            "state_put" => Func::wrap(&mut s, state_put),
            "state_delete" => Func::wrap(&mut s, state_delete),
            "state_range" => Func::wrap(&mut s, state_range),
            "state_prefix" => Func::wrap(&mut s, state_prefix),
            "buffer_copy" => Func::wrap(&mut s, buffer_copy),
            "caller_org" => Func::wrap(&mut s, caller_org),
            "caller_subject" => Func::wrap(&mut s, caller_subject),
            "caller_role" => Func::wrap(&mut s, caller_role),
            "chaincode_name" => Func::wrap(&mut s, chaincode_name),
            "tx_id" => Func::wrap(&mut s, tx_id),
            "tx_timestamp" => Func::wrap(&mut s, tx_timestamp),
            "emit_event" => Func::wrap(&mut s, emit_event),
            "set_result" => Func::wrap(&mut s, set_result),
            "fail" => Func::wrap(&mut s, fail),
            // Validation admits only the names above; a new ABI function must be added here
            // and to abi::HOST_FUNCTIONS together (a test checks that every one binds).
            other => {
                return Err(abort(Abort::BadOutput(format!(
                    "host function {other} is not bound"
                ))))
            }
        };
        out.push(Extern::Func(f));
    }
    Ok(out)
}
