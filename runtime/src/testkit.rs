//! An off-chain harness for contract tests: one chaincode on an in-memory world state, called
//! the way a node would call it (fresh instance, fuel, context), with successful calls applied
//! and failed ones discarded. Use it from any Rust test:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tally_runtime::testkit::Contract;
//! let wasm = std::fs::read("notary.wasm")?;
//! let mut c = Contract::new("notary", &wasm)?;
//! let record = c.call_str("court", "anchor", &["ab".repeat(32).as_str(), "deed"])?;
//! assert!(record.contains("\"new\":true"));
//! # Ok(()) }
//! ```

use crate::{
    fields, module_hash, CallContext, Engine, Event, ExecError, Limits, MemoryHost, Module,
    Outcome, ValidationError,
};
use std::sync::Arc;

/// One deployed chaincode and its state.
pub struct Contract {
    engine: Arc<Engine>,
    module: Arc<Module>,
    name: String,
    /// The world state; only successful calls change it.
    pub state: MemoryHost,
    /// The block time the next call sees, in ms. Starts at 2026-01-01T00:00:00Z.
    pub time_ms: u64,
    /// Fuel given to each call.
    pub fuel: u64,
    /// Events of successful calls, in order.
    pub events: Vec<Event>,
    calls: u64,
}

impl Contract {
    /// Validates and loads `wasm` into a fresh engine with default limits.
    pub fn new(name: &str, wasm: &[u8]) -> Result<Contract, ValidationError> {
        Contract::with_engine(Arc::new(Engine::new(Limits::default())), name, wasm)
    }

    /// Shares `engine` (and its module cache) with other contracts.
    pub fn with_engine(
        engine: Arc<Engine>,
        name: &str,
        wasm: &[u8],
    ) -> Result<Contract, ValidationError> {
        let module = engine.load(wasm)?;
        let fuel = engine.limits().max_fuel_per_call;
        Ok(Contract {
            engine,
            module,
            name: name.to_string(),
            state: MemoryHost::new(),
            time_ms: 1_767_225_600_000,
            fuel,
            events: Vec::new(),
            calls: 0,
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The context of the next call by `org`: subject `user@<org>`, role `client`, a
    /// transaction id derived from the call count, the current `time_ms`.
    pub fn context(&self, org: &str) -> CallContext {
        CallContext {
            chaincode: self.name.clone(),
            org: org.to_string(),
            subject: format!("user@{org}"),
            role: "client".to_string(),
            tx_id: module_hash(format!("tx-{}", self.calls).as_bytes()),
            timestamp_ms: self.time_ms,
        }
    }

    /// Calls `function` as `org` with string arguments in the field encoding; applies the
    /// writes if the call succeeds. Each call advances the clock by one millisecond.
    pub fn call(&mut self, org: &str, function: &str, args: &[&str]) -> Result<Outcome, ExecError> {
        let ctx = self.context(org);
        self.call_with(&ctx, function, &fields::encode(args))
    }

    /// Like [`Contract::call`] with an explicit context and raw argument bytes.
    pub fn call_with(
        &mut self,
        ctx: &CallContext,
        function: &str,
        args: &[u8],
    ) -> Result<Outcome, ExecError> {
        self.calls += 1;
        self.time_ms += 1;
        let out = self.engine.invoke(
            &self.module,
            function,
            args,
            ctx,
            &mut self.state,
            self.fuel,
        )?;
        out.apply(&mut self.state)
            .map_err(|e| ExecError::Host(e.0))?;
        self.events.extend(out.events.iter().cloned());
        Ok(out)
    }

    /// [`Contract::call`], returning the result as text.
    pub fn call_str(
        &mut self,
        org: &str,
        function: &str,
        args: &[&str],
    ) -> Result<String, ExecError> {
        let out = self.call(org, function, args)?;
        String::from_utf8(out.result)
            .map_err(|_| ExecError::BadOutput("result is not UTF-8".into()))
    }
}
