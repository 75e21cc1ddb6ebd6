//! Chaincode on the ledger: the definition a channel installs, approves and commits, the
//! lifecycle records nodes keep in world state, and what an invocation changed.
//!
//! The lifecycle: an admin installs a definition together with the module's bytes (so every
//! node receives them through the ledger), admins of member organizations approve it by
//! (name, sequence, module hash), and once enough have, a commit makes it the active
//! definition. An upgrade is the same with the next sequence; state stays, because it is
//! namespaced by chaincode name, not by version.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{hex_bytes, Hash};
use crate::tx::{ReadCheck, Write};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// World-state keys of the lifecycle start with this; plain key/value transactions may not
/// write under it (nor under the chaincode state prefix `cc~`).
pub const LIFECYCLE_PREFIX: &str = "_lifecycle/";

/// The ledger key prefix of chaincode state (`cc~<name>~key`); the same as the runtime's.
pub const STATE_PREFIX: &str = "cc~";

/// The sha256 of a module's bytes, as definitions pin it (plain, not domain-tagged, so that
/// `sha256sum module.wasm` shows the same).
pub fn module_hash(module: &[u8]) -> Hash {
    Hash(Sha256::digest(module).into())
}

/// A call made when a definition is committed (first and every upgrade).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitCall {
    pub function: String,
    /// Argument bytes (the field encoding by convention), hex in JSON.
    #[serde(with = "hex_bytes", default)]
    pub args: Vec<u8>,
}

impl Encode for InitCall {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.function);
        w.bytes(&self.args);
    }
}
impl Decode for InitCall {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(InitCall {
            function: r.str("init.function")?,
            args: r.bytes("init.args")?,
        })
    }
}

/// What a channel agrees to run under a chaincode name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChaincodeDefinition {
    pub name: String,
    /// Free text for people (`1.2.0`); the sequence is what orders definitions.
    pub version: String,
    /// 1 for the first definition of a name, +1 for each upgrade.
    pub sequence: u64,
    /// sha256 of the module bytes.
    pub module_hash: Hash,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitCall>,
}

impl Encode for ChaincodeDefinition {
    fn encode(&self, w: &mut Writer) {
        w.u8(1); // format version
        w.str(&self.name);
        w.str(&self.version);
        w.u64(self.sequence);
        self.module_hash.encode(w);
        w.opt(&self.init);
    }
}
impl Decode for ChaincodeDefinition {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.format("definition format", 1)?;
        Ok(ChaincodeDefinition {
            name: r.str("definition.name")?,
            version: r.str("definition.version")?,
            sequence: r.u64("definition.sequence")?,
            module_hash: Hash::decode(r)?,
            init: r.opt("definition.init")?,
        })
    }
}

/// World-state keys of the lifecycle of chaincode `name`.
pub mod keys {
    use super::LIFECYCLE_PREFIX;

    /// The active (committed) definition.
    pub fn definition(name: &str) -> String {
        format!("{LIFECYCLE_PREFIX}{name}/definition")
    }
    /// A definition installed and waiting for approvals, by sequence (zero-padded so that the
    /// keys sort by sequence).
    pub fn installed(name: &str, sequence: u64) -> String {
        format!("{LIFECYCLE_PREFIX}{name}/installed/{sequence:020}")
    }
    /// The module bytes, by their hash.
    pub fn module(name: &str, hash_hex: &str) -> String {
        format!("{LIFECYCLE_PREFIX}{name}/module/{hash_hex}")
    }
    /// An organization's approval of a sequence; the value is the approved module hash.
    pub fn approval(name: &str, sequence: u64, org: &str) -> String {
        format!("{LIFECYCLE_PREFIX}{name}/approvals/{sequence:020}/{org}")
    }
    pub fn approvals_prefix(name: &str, sequence: u64) -> String {
        format!("{LIFECYCLE_PREFIX}{name}/approvals/{sequence:020}/")
    }
}

/// An event a chaincode emitted in a committed invocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChaincodeEvent {
    pub name: String,
    #[serde(with = "hex_bytes")]
    pub payload: Vec<u8>,
}

impl Encode for ChaincodeEvent {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.name);
        w.bytes(&self.payload);
    }
}
impl Decode for ChaincodeEvent {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ChaincodeEvent {
            name: r.str("event.name")?,
            payload: r.bytes("event.payload")?,
        })
    }
}

/// What a committed chaincode call did, kept in the block next to the transaction's status so
/// that history and audits show exactly which keys were read at which version and what was
/// written. Every node computes the same from the same block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxEffects {
    pub chaincode: String,
    /// Keys read from committed state and the version seen (`None`: absent).
    pub reads: Vec<ReadCheck>,
    /// The writes applied, in ascending key order.
    pub writes: Vec<Write>,
    pub events: Vec<ChaincodeEvent>,
    #[serde(with = "hex_bytes")]
    pub result: Vec<u8>,
    pub fuel_used: u64,
}

impl Encode for TxEffects {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.chaincode);
        w.seq(&self.reads);
        w.seq(&self.writes);
        w.seq(&self.events);
        w.bytes(&self.result);
        w.u64(self.fuel_used);
    }
}
impl Decode for TxEffects {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TxEffects {
            chaincode: r.str("effects.chaincode")?,
            reads: r.seq("effects.reads")?,
            writes: r.seq("effects.writes")?,
            events: r.seq("effects.events")?,
            result: r.bytes("effects.result")?,
            fuel_used: r.u64("effects.fuel")?,
        })
    }
}

/// One chaincode's lifecycle as a node reports it (`GET /v1/channels/{ch}/chaincodes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChaincodeInfo {
    pub name: String,
    /// The committed definition, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ChaincodeDefinition>,
    /// Organizations that approved the committed definition (its sequence and module hash).
    #[serde(default)]
    pub approvals: Vec<String>,
    /// Installed definitions not yet committed (sequence above the active one), with the
    /// organizations that approved each.
    #[serde(default)]
    pub pending: Vec<PendingDefinition>,
    /// Set when the active definition was retired: calls are refused, state stays readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<crate::retirement::Retirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDefinition {
    pub definition: ChaincodeDefinition,
    /// Organizations that approved exactly this definition's module hash.
    pub approvals: Vec<String>,
    /// How many organizations' approvals a commit needs.
    pub needed: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChaincodeList {
    pub chaincodes: Vec<ChaincodeInfo>,
}

/// The answer of a read-only chaincode query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResult {
    #[serde(with = "hex_bytes")]
    pub result: Vec<u8>,
    /// The result as text when it is UTF-8 (the example contracts answer JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_utf8: Option<String>,
    pub fuel_used: u64,
    /// The block height whose state the query saw.
    pub height: u64,
}
