//! Errors of validation and of calls.

use thiserror::Error;

/// Why a module was refused. Every variant names what to change in the contract.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    #[error("module is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("not a valid WebAssembly module: {0}")]
    Malformed(String),
    #[error("floating point is not allowed (results could differ between nodes): {0}")]
    FloatingPoint(String),
    #[error("import {module}.{name} is not allowed: {reason}")]
    Import {
        module: String,
        name: String,
        reason: String,
    },
    #[error("missing export {name:?}: {reason}")]
    MissingExport { name: String, reason: String },
    #[error("export {name:?} is not allowed: {reason}")]
    Export { name: String, reason: String },
    #[error("start functions are not allowed: a chaincode runs only when it is called")]
    StartFunction,
    #[error("memory: {0}")]
    Memory(String),
    #[error("module uses a feature the runtime does not allow: {0}")]
    Feature(String),
}

/// Why a call failed. A failed call leaves no writes and no events behind.
///
/// Every variant except [`ExecError::Host`] is a deterministic property of (module, function,
/// arguments, context, state, fuel): every node reaches the same one, so the node may record it
/// as the transaction's rejection reason. `Host` means the node's own storage failed and must
/// not be turned into a rejection (see [`ExecError::is_deterministic`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExecError {
    #[error("chaincode has no callable function {0:?}")]
    NoSuchFunction(String),
    #[error("arguments are {size} bytes; the limit is {limit}")]
    ArgsTooLarge { size: usize, limit: usize },
    #[error("out of fuel: the call used all {limit} units it was given")]
    OutOfFuel { limit: u64 },
    #[error("memory limit: the call tried to grow memory beyond {max_pages} pages of 64 KiB")]
    MemoryLimit { max_pages: u32 },
    #[error("trap: {0}")]
    Trap(String),
    #[error("chaincode error: {0}")]
    ContractError(String),
    #[error("bad host call {call}: {reason}")]
    HostCall { call: &'static str, reason: String },
    #[error("bad output: {0}")]
    BadOutput(String),
    #[error("could not instantiate the module: {0}")]
    Instantiate(String),
    #[error("state host failed: {0}")]
    Host(String),
}

impl ExecError {
    /// True when every honest node reaches the same error for the same call, so it can be the
    /// recorded outcome of a transaction. False only for a failure of the node's own storage.
    pub fn is_deterministic(&self) -> bool {
        !matches!(self, ExecError::Host(_))
    }

    /// A short stable name for metrics and receipts.
    pub fn code(&self) -> &'static str {
        match self {
            ExecError::NoSuchFunction(_) => "no_such_function",
            ExecError::ArgsTooLarge { .. } => "args_too_large",
            ExecError::OutOfFuel { .. } => "out_of_fuel",
            ExecError::MemoryLimit { .. } => "memory_limit",
            ExecError::Trap(_) => "trap",
            ExecError::ContractError(_) => "contract_error",
            ExecError::HostCall { .. } => "bad_host_call",
            ExecError::BadOutput(_) => "bad_output",
            ExecError::Instantiate(_) => "instantiate",
            ExecError::Host(_) => "host",
        }
    }
}

/// An error of the node's state store, passed through [`ExecError::Host`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct HostError(pub String);
