//! Tally's chaincode runtime: WebAssembly contracts, validated once, compiled once, and called
//! with fuel and a memory cap, deterministically, at apply time on every node.
//!
//! The node's side:
//!
//! ```text
//! let engine = Engine::new(Limits::default());             // one per node
//! let info = engine.validate(&bytes)?;                     // when a definition is installed
//! let module = engine.cached(&hash).map_or_else(|| engine.load(&bytes), Ok)?;
//! match engine.invoke(&module, "transfer", &args, &ctx, &mut state, fuel) {
//!     Ok(outcome) => { /* commit outcome.write_set, keep read set and events in the block */ }
//!     Err(e) if e.is_deterministic() => { /* reject the transaction with e.to_string() */ }
//!     Err(e) => { /* the node's storage failed: stop applying, as for any storage error */ }
//! }
//! ```
//!
//! The module side of the contract (imports, exports, memory conventions, errors, limits) is
//! `docs/chaincode-abi.md`; [`abi`] is the same in code.

pub mod abi;
mod calls;
mod engine;
mod error;
pub mod fields;
mod host;
pub mod testkit;
mod validate;

pub use engine::{CacheStats, Engine, Module};
pub use error::{ExecError, HostError, ValidationError};
pub use host::{
    namespace, namespaced_key, valid_chaincode_name, CallContext, Entry, Event, MemoryHost,
    Outcome, ReadEntry, StateHost, Version, WriteEntry, RESERVED_PREFIX,
};
pub use validate::{module_hash, ModuleInfo};

/// Bounds of modules and calls. Every node of a channel must use the same values: they decide
/// where a call stops, so they are part of consensus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest module accepted, in bytes.
    pub max_module_bytes: usize,
    /// Largest memory a call may have, in 64 KiB pages (declared maximum and growth).
    pub max_memory_pages: u32,
    /// Most fuel one call may be given, whatever the transaction asks for.
    pub max_fuel_per_call: u64,
    /// Deepest call stack (wasm frames) before the call traps.
    pub max_call_depth: usize,
    pub max_table_elements: usize,
    pub max_args_bytes: usize,
    pub max_result_bytes: usize,
    /// Longest contract key (before namespacing), in bytes.
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Most distinct keys one call may write.
    pub max_writes: usize,
    pub max_events: usize,
    pub max_event_bytes: usize,
    /// Most entries one range or prefix scan returns.
    pub max_scan_entries: usize,
    /// Compiled modules kept in memory.
    pub cached_modules: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_module_bytes: 2 << 20,
            max_memory_pages: 256, // 16 MiB
            max_fuel_per_call: 100_000_000,
            max_call_depth: 1024,
            max_table_elements: 10_000,
            max_args_bytes: 256 << 10,
            max_result_bytes: 256 << 10,
            // The ledger allows 1024-byte keys; this leaves room for `cc~<name>~`.
            max_key_bytes: 900,
            max_value_bytes: 1 << 20,
            max_writes: 1_000,
            max_events: 100,
            max_event_bytes: 64 << 10,
            max_scan_entries: 1_000,
            cached_modules: 64,
        }
    }
}
