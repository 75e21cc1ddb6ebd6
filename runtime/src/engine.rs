//! The engine: validation, the compiled-module cache and calls.

use crate::calls::{self, Abort, CallState, Limiter};
use crate::error::{ExecError, ValidationError};
use crate::host::{namespace, valid_chaincode_name, CallContext, Outcome, StateHost};
use crate::validate::{self, module_hash, ModuleInfo};
use crate::{abi, Limits};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use wasmi::{CompilationMode, Config, Store, TrapCode};

/// A validated, compiled module, shared by every call of it.
pub struct Module {
    info: ModuleInfo,
    inner: wasmi::Module,
    /// The host function of each import, in the module's import order.
    imports: Vec<&'static str>,
}

impl Module {
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    pub fn hash(&self) -> [u8; 32] {
        self.info.hash
    }
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module").field("info", &self.info).finish()
    }
}

/// Counters of the module cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Modules compiled (a miss compiles, unless another thread compiled the same meanwhile).
    pub compiles: u64,
    pub evictions: u64,
    pub entries: usize,
}

#[derive(Default)]
struct Cache {
    modules: HashMap<[u8; 32], (Arc<Module>, u64)>,
    tick: u64,
    stats: CacheStats,
}

impl Cache {
    fn touch(&mut self, hash: &[u8; 32]) -> Option<Arc<Module>> {
        self.tick += 1;
        let tick = self.tick;
        let (m, used) = self.modules.get_mut(hash)?;
        *used = tick;
        Some(m.clone())
    }
}

/// One per node: holds the interpreter's configuration and the compiled modules. Shareable
/// between channel threads (`Send + Sync`); calls do not block each other.
pub struct Engine {
    wasm: wasmi::Engine,
    limits: Limits,
    cache: Mutex<Cache>,
}

impl Engine {
    /// Every node of a channel must use the same `limits` (they decide where a call runs out of
    /// fuel, memory or stack), so the node should take them from channel configuration or keep
    /// the defaults.
    pub fn new(limits: Limits) -> Engine {
        let mut config = Config::default();
        config
            .consume_fuel(true)
            // Floats are refused by our own checks with a clearer message; refusing them in
            // the interpreter too means nothing float-shaped can ever run.
            .floats(false)
            .wasm_multi_memory(false)
            .wasm_reference_types(false)
            .allow_start_fn(false)
            .ignore_custom_sections(true)
            // Lazy translation would charge the compile of a function to the first call that
            // reaches it; with a cache that differs between nodes, fuel (and so the outcome of
            // a call near its limit) would differ too. Compile everything up front instead.
            .compilation_mode(CompilationMode::Eager)
            .set_max_recursion_depth(limits.max_call_depth);
        Engine {
            wasm: wasmi::Engine::new(&config),
            limits,
            cache: Mutex::new(Cache::default()),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // The cache holds no invariant a panicking thread could break halfway.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks a module without keeping it: what the node runs when a definition is installed.
    pub fn validate(&self, bytes: &[u8]) -> Result<ModuleInfo, ValidationError> {
        let info = validate::check(bytes, &self.limits)?;
        wasmi::Module::validate(&self.wasm, bytes)
            .map_err(|e| ValidationError::Malformed(e.to_string()))?;
        Ok(info)
    }

    /// The compiled module for `bytes`: from the cache when the same bytes were loaded before,
    /// otherwise validated, compiled and cached (least recently used out first).
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Module>, ValidationError> {
        let hash = module_hash(bytes);
        {
            let mut cache = self.cache();
            if let Some(m) = cache.touch(&hash) {
                cache.stats.hits += 1;
                return Ok(m);
            }
            cache.stats.misses += 1;
        }
        // Compile outside the lock: one channel installing a big module must not stall calls
        // of modules that are already cached.
        let info = validate::check(bytes, &self.limits)?;
        let inner = wasmi::Module::new(&self.wasm, bytes)
            .map_err(|e| ValidationError::Malformed(e.to_string()))?;
        // Validation admitted only ABI functions; map each import to its static name once.
        let imports = inner
            .imports()
            .map(|i| {
                abi::HOST_FUNCTIONS
                    .iter()
                    .find(|h| h.name == i.name())
                    .map(|h| h.name)
                    .ok_or_else(|| ValidationError::Import {
                        module: i.module().to_string(),
                        name: i.name().to_string(),
                        reason: "no such host function".into(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let module = Arc::new(Module {
            info,
            inner,
            imports,
        });
        let mut cache = self.cache();
        cache.stats.compiles += 1;
        if let Some(existing) = cache.touch(&hash) {
            return Ok(existing);
        }
        while cache.modules.len() >= self.limits.cached_modules.max(1) {
            let Some(oldest) = cache
                .modules
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(h, _)| *h)
            else {
                break;
            };
            cache.modules.remove(&oldest);
            cache.stats.evictions += 1;
        }
        let tick = cache.tick;
        cache.modules.insert(hash, (module.clone(), tick));
        Ok(module)
    }

    /// A cached module by its hash, without the bytes (the per-transaction path: the node
    /// knows the active definition's hash and loads the bytes from the ledger only on a miss).
    pub fn cached(&self, hash: &[u8; 32]) -> Option<Arc<Module>> {
        let mut cache = self.cache();
        let m = cache.touch(hash);
        if m.is_some() {
            cache.stats.hits += 1;
        } else {
            cache.stats.misses += 1;
        }
        m
    }

    pub fn cache_stats(&self) -> CacheStats {
        let cache = self.cache();
        CacheStats {
            entries: cache.modules.len(),
            ..cache.stats
        }
    }

    /// Calls `function` with `args` in a fresh instance of `module`, with at most `fuel` units
    /// (capped at `Limits::max_fuel_per_call`). State reads go to `host`; writes are buffered
    /// and returned in the outcome, never given to `host`: apply them only if the transaction
    /// commits (see [`Outcome::apply`]). On any error nothing of the call remains.
    pub fn invoke(
        &self,
        module: &Module,
        function: &str,
        args: &[u8],
        ctx: &CallContext,
        host: &mut dyn StateHost,
        fuel: u64,
    ) -> Result<Outcome, ExecError> {
        if !module.info.has_function(function) {
            return Err(ExecError::NoSuchFunction(function.to_string()));
        }
        if !valid_chaincode_name(&ctx.chaincode) {
            return Err(ExecError::Instantiate(format!(
                "invalid chaincode name {:?}",
                ctx.chaincode
            )));
        }
        if args.len() > self.limits.max_args_bytes {
            return Err(ExecError::ArgsTooLarge {
                size: args.len(),
                limit: self.limits.max_args_bytes,
            });
        }
        let fuel = fuel.min(self.limits.max_fuel_per_call);
        let state = CallState::new(host, ctx, &self.limits, namespace(&ctx.chaincode));
        let mut store = Store::new(&self.wasm, state);
        store.limiter(|s| &mut s.limiter as &mut dyn wasmi::ResourceLimiter);
        store
            .set_fuel(fuel)
            .map_err(|e| ExecError::Instantiate(e.to_string()))?;
        let run = run_call(&mut store, module, function, args);
        let fuel_used = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        match run {
            Ok(0) => Ok(store.into_data().into_outcome(fuel_used)),
            Ok(status) => Err(ExecError::ContractError(format!(
                "{function} returned status {status}"
            ))),
            Err(e) => Err(classify(e, &store.data().limiter, fuel)),
        }
    }
}

/// Instantiates, places the arguments and calls; returns the function's status.
fn run_call(
    store: &mut Store<CallState<'_>>,
    module: &Module,
    function: &str,
    args: &[u8],
) -> Result<i32, wasmi::Error> {
    let imports = calls::imports(store, &module.imports)?;
    let instance = wasmi::Instance::new(&mut *store, &module.inner, &imports)?;
    let memory = instance
        .get_memory(&*store, abi::MEMORY_EXPORT)
        .ok_or_else(|| bad_output("the module has no memory export"))?;
    store.data_mut().memory = Some(memory);
    let alloc = instance.get_typed_func::<i32, i32>(&*store, abi::ALLOC_EXPORT)?;
    let len = i32::try_from(args.len()).map_err(|_| bad_output("arguments too large"))?;
    let ptr = alloc.call(&mut *store, len)?;
    // A pointer is an unsigned offset; a negative i32 is just a large one (and out of range).
    let start = ptr as u32 as usize;
    let data = memory.data_mut(&mut *store);
    let dst = start
        .checked_add(args.len())
        .and_then(|end| data.get_mut(start..end))
        .ok_or_else(|| {
            bad_output(format!(
                "{} returned {start}, outside memory for {} bytes",
                abi::ALLOC_EXPORT,
                args.len()
            ))
        })?;
    dst.copy_from_slice(args);
    let f = instance.get_typed_func::<(i32, i32), i32>(&*store, function)?;
    f.call(&mut *store, (ptr, len))
}

fn bad_output(msg: impl Into<String>) -> wasmi::Error {
    wasmi::Error::host(Abort::BadOutput(msg.into()))
}

/// Turns an interpreter error into the reason the node records.
fn classify(e: wasmi::Error, limiter: &Limiter, fuel: u64) -> ExecError {
    // The limiter's refusal surfaces as some trap; the flag says what it really was.
    if limiter.memory_denied {
        return ExecError::MemoryLimit {
            max_pages: limiter.max_pages,
        };
    }
    if let Some(abort) = e.downcast_ref::<Abort>() {
        return match abort {
            Abort::OutOfFuel => ExecError::OutOfFuel { limit: fuel },
            Abort::Fail(msg) => ExecError::ContractError(msg.clone()),
            Abort::HostCall { call, reason } => ExecError::HostCall {
                call,
                reason: reason.clone(),
            },
            Abort::BadOutput(msg) => ExecError::BadOutput(msg.clone()),
            Abort::Host(msg) => ExecError::Host(msg.clone()),
        };
    }
    match e.as_trap_code() {
        Some(TrapCode::OutOfFuel) => ExecError::OutOfFuel { limit: fuel },
        Some(TrapCode::StackOverflow) => {
            ExecError::Trap("call stack exhausted (recursion too deep)".into())
        }
        Some(TrapCode::UnreachableCodeReached) => {
            ExecError::Trap("unreachable executed: the contract aborted or panicked".into())
        }
        Some(code) => ExecError::Trap(code.to_string()),
        None => ExecError::Trap(e.to_string()),
    }
}
