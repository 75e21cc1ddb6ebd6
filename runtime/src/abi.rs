//! The host ABI: the only functions a chaincode may import, with their exact signatures, and
//! the exports the runtime requires. `docs/chaincode-abi.md` is the human-readable form of the
//! same contract; change both together, and never change an existing entry's meaning (a
//! deployed module relies on it forever).

/// The import module of every host function.
pub const HOST_MODULE: &str = "tally";

/// The export that places call arguments: `tally_alloc(len: i32) -> i32` returns a pointer to
/// `len` writable bytes in the module's memory.
pub const ALLOC_EXPORT: &str = "tally_alloc";

/// The memory every module must export.
pub const MEMORY_EXPORT: &str = "memory";

/// Export names starting with this are reserved for the runtime.
pub const RESERVED_EXPORT_PREFIX: &str = "tally_";

/// Called by the lifecycle (definition commit and upgrades) with the definition's init
/// arguments; never through a normal invoke.
pub const INIT_FUNCTION: &str = "init";

/// The value types of the ABI: integers only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiType {
    I32,
    I64,
}

use AbiType::{I32, I64};

/// One host function: name, parameters, results.
pub struct HostFunction {
    pub name: &'static str,
    pub params: &'static [AbiType],
    pub results: &'static [AbiType],
}

const fn f(
    name: &'static str,
    params: &'static [AbiType],
    results: &'static [AbiType],
) -> HostFunction {
    HostFunction {
        name,
        params,
        results,
    }
}

/// Every host function; `docs/chaincode-abi.md` describes each.
pub const HOST_FUNCTIONS: &[HostFunction] = &[
    f("state_get", &[I32, I32], &[I32]),
    f("state_put", &[I32, I32, I32, I32], &[]),
    f("state_delete", &[I32, I32], &[]),
    f("state_range", &[I32, I32, I32, I32, I32], &[I32]),
    f("state_prefix", &[I32, I32, I32], &[I32]),
    f("buffer_copy", &[I32, I32], &[I32]),
    f("caller_org", &[], &[I32]),
    f("caller_subject", &[], &[I32]),
    f("caller_role", &[], &[I32]),
    f("chaincode_name", &[], &[I32]),
    f("tx_id", &[I32], &[]),
    f("tx_timestamp", &[], &[I64]),
    f("emit_event", &[I32, I32, I32, I32], &[]),
    f("set_result", &[I32, I32], &[]),
    f("fail", &[I32, I32], &[]),
];

/// The signature of every callable export: `(args_ptr: i32, args_len: i32) -> i32 status`.
pub const CALLABLE_PARAMS: &[AbiType] = &[I32, I32];
pub const CALLABLE_RESULTS: &[AbiType] = &[I32];

/// Fuel charged by host calls, on top of the instructions the module runs. Part of the ABI:
/// every node must charge the same, so changing these changes consensus.
pub mod fuel {
    /// Every host call.
    pub const HOST_CALL: u64 = 100;
    /// Each state read (`state_get`, and each entry a scan returns).
    pub const STATE_READ: u64 = 1_000;
    /// Each state write or delete.
    pub const STATE_WRITE: u64 = 2_000;
    /// Each event.
    pub const EVENT: u64 = 1_000;
    /// Each byte moved between the module and the host (keys, values, results, events).
    pub const PER_BYTE: u64 = 1;
}
