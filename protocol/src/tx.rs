//! Signed transactions.

use crate::chaincode::ChaincodeDefinition;
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::config_update::ConfigUpdate;
use crate::hash::{hex_bytes, hex_opt, Hash};
use crate::identity::Identity;
use crate::proposal::Proposal;
use serde::{Deserialize, Serialize};

/// Where the last write of a key happened: its version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub block: u64,
    pub tx: u32,
}

impl Encode for Version {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.block);
        w.u32(self.tx);
    }
}
impl Decode for Version {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Version {
            block: r.u64("version.block")?,
            tx: r.u32("version.tx")?,
        })
    }
}

/// Who signed: the whole certificate, or its hash once the channel has recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signer {
    Certificate(#[serde(with = "hex_bytes")] Vec<u8>),
    CertHash(Hash),
}

impl Encode for Signer {
    fn encode(&self, w: &mut Writer) {
        match self {
            Signer::Certificate(der) => {
                w.u8(0);
                w.bytes(der);
            }
            Signer::CertHash(h) => {
                w.u8(1);
                h.encode(w);
            }
        }
    }
}
impl Decode for Signer {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("signer")? {
            0 => Ok(Signer::Certificate(r.bytes("signer.certificate")?)),
            1 => Ok(Signer::CertHash(Hash::decode(r)?)),
            tag => Err(DecodeError::BadTag {
                what: "signer",
                tag,
            }),
        }
    }
}

/// A read the transaction depends on: it fails if the key's version changed.
/// `version: None` asserts that the key does not exist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadCheck {
    pub key: String,
    pub version: Option<Version>,
}

impl Encode for ReadCheck {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.key);
        w.opt(&self.version);
    }
}
impl Decode for ReadCheck {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ReadCheck {
            key: r.str("read.key")?,
            version: r.opt("read.version")?,
        })
    }
}

/// A put (`value: Some`) or a delete (`value: None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    pub key: String,
    #[serde(with = "hex_opt", default)]
    pub value: Option<Vec<u8>>,
}

impl Encode for Write {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.key);
        w.opt(&self.value);
    }
}
impl Decode for Write {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Write {
            key: r.str("write.key")?,
            value: r.opt("write.value")?,
        })
    }
}

/// What a transaction asks the ledger to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    KvWrite {
        reads: Vec<ReadCheck>,
        writes: Vec<Write>,
    },
    /// Replaces the channel's configuration; see [`crate::config_update`].
    Config(Box<ConfigUpdate>),
    /// Installs a chaincode definition with its module bytes, waiting for approvals. Submitted
    /// by an admin of a member organization; see [`crate::chaincode`].
    ChaincodeInstall {
        definition: ChaincodeDefinition,
        #[serde(with = "hex_bytes")]
        module: Vec<u8>,
    },
    /// The signer's organization (the signer must be its admin) approves a definition.
    ChaincodeApprove {
        name: String,
        sequence: u64,
        module_hash: Hash,
    },
    /// Makes an installed definition active once the lifecycle policy is met.
    ChaincodeCommit { name: String, sequence: u64 },
    /// Calls a function of an active chaincode; executed on every node when the block applies.
    Invoke {
        chaincode: String,
        function: String,
        #[serde(with = "hex_bytes", default)]
        args: Vec<u8>,
        /// Most fuel the call may use; the node caps it at its engine's limit.
        fuel: u64,
    },
    /// Records a proposal, approved by the signer's organization (the signer must be an admin
    /// of an admin organization); see [`crate::proposal`].
    Propose(Box<Proposal>),
    /// The signer's organization (the signer must be its admin) approves the proposal with
    /// this hash.
    ProposalApprove { hash: Hash },
    /// The signer's organization rejects the proposal with this hash.
    ProposalReject { hash: Hash },
}

impl Encode for Payload {
    fn encode(&self, w: &mut Writer) {
        match self {
            Payload::KvWrite { reads, writes } => {
                w.u8(0);
                w.seq(reads);
                w.seq(writes);
            }
            Payload::Config(u) => {
                w.u8(1);
                u.encode(w);
            }
            Payload::ChaincodeInstall { definition, module } => {
                w.u8(2);
                definition.encode(w);
                w.bytes(module);
            }
            Payload::ChaincodeApprove {
                name,
                sequence,
                module_hash,
            } => {
                w.u8(3);
                w.str(name);
                w.u64(*sequence);
                module_hash.encode(w);
            }
            Payload::ChaincodeCommit { name, sequence } => {
                w.u8(4);
                w.str(name);
                w.u64(*sequence);
            }
            Payload::Invoke {
                chaincode,
                function,
                args,
                fuel,
            } => {
                w.u8(5);
                w.str(chaincode);
                w.str(function);
                w.bytes(args);
                w.u64(*fuel);
            }
            Payload::Propose(p) => {
                w.u8(6);
                p.encode(w);
            }
            Payload::ProposalApprove { hash } => {
                w.u8(7);
                hash.encode(w);
            }
            Payload::ProposalReject { hash } => {
                w.u8(8);
                hash.encode(w);
            }
        }
    }
}
impl Decode for Payload {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("payload")? {
            0 => Ok(Payload::KvWrite {
                reads: r.seq("reads")?,
                writes: r.seq("writes")?,
            }),
            1 => Ok(Payload::Config(Box::new(ConfigUpdate::decode(r)?))),
            2 => Ok(Payload::ChaincodeInstall {
                definition: ChaincodeDefinition::decode(r)?,
                module: r.bytes("module")?,
            }),
            3 => Ok(Payload::ChaincodeApprove {
                name: r.str("chaincode")?,
                sequence: r.u64("sequence")?,
                module_hash: Hash::decode(r)?,
            }),
            4 => Ok(Payload::ChaincodeCommit {
                name: r.str("chaincode")?,
                sequence: r.u64("sequence")?,
            }),
            5 => Ok(Payload::Invoke {
                chaincode: r.str("chaincode")?,
                function: r.str("function")?,
                args: r.bytes("args")?,
                fuel: r.u64("fuel")?,
            }),
            6 => Ok(Payload::Propose(Box::new(Proposal::decode(r)?))),
            7 => Ok(Payload::ProposalApprove {
                hash: Hash::decode(r)?,
            }),
            8 => Ok(Payload::ProposalReject {
                hash: Hash::decode(r)?,
            }),
            tag => Err(DecodeError::BadTag {
                what: "payload",
                tag,
            }),
        }
    }
}

/// Everything the signature covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxBody {
    pub channel: String,
    /// Random per transaction; with the timestamp it makes the id unique.
    pub nonce: u64,
    /// Client time in Unix milliseconds; a node refuses transactions outside the channel's
    /// time window, which bounds how long a replay must be remembered.
    pub timestamp_ms: u64,
    pub signer: Signer,
    pub payload: Payload,
}

impl Encode for TxBody {
    fn encode(&self, w: &mut Writer) {
        w.u8(1); // format version
        w.str(&self.channel);
        w.u64(self.nonce);
        w.u64(self.timestamp_ms);
        self.signer.encode(w);
        self.payload.encode(w);
    }
}
impl Decode for TxBody {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.format("tx format", 1)?;
        Ok(TxBody {
            channel: r.str("channel")?,
            nonce: r.u64("nonce")?,
            timestamp_ms: r.u64("timestamp")?,
            signer: Signer::decode(r)?,
            payload: Payload::decode(r)?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub body: TxBody,
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

impl Encode for Transaction {
    fn encode(&self, w: &mut Writer) {
        self.body.encode(w);
        w.bytes(&self.signature);
    }
}
impl Decode for Transaction {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Transaction {
            body: TxBody::decode(r)?,
            signature: r.bytes("signature")?,
        })
    }
}

/// The transaction id: a digest of the signed body. The signature signs this id.
pub fn tx_id(body_bytes: &[u8]) -> Hash {
    Hash::tagged(b"tally-tx", &[body_bytes])
}

/// A transaction decoded from its canonical bytes, with those bytes and its id. The id is
/// hashed from the body's bytes as they arrived, so nothing is encoded again (the write path
/// reads every transaction this way, at submission and at apply).
#[derive(Debug)]
pub struct RawTx<'a> {
    pub tx: Transaction,
    /// The whole transaction's canonical bytes (body and signature).
    pub raw: &'a [u8],
    pub id: Hash,
}

impl<'a> RawTx<'a> {
    /// Decodes the transaction at the front of `r`.
    pub fn read(r: &mut Reader<'a>) -> Result<RawTx<'a>, DecodeError> {
        let start = r.rest();
        let body = TxBody::decode(r)?;
        let body_len = start.len() - r.remaining();
        let signature = r.bytes("signature")?;
        let raw = &start[..start.len() - r.remaining()];
        Ok(RawTx {
            tx: Transaction { body, signature },
            id: tx_id(&raw[..body_len]),
            raw,
        })
    }

    /// Decodes `raw`, which must be exactly one canonical transaction.
    pub fn parse(raw: &'a [u8]) -> Result<RawTx<'a>, DecodeError> {
        let mut r = Reader::new(raw);
        let t = RawTx::read(&mut r)?;
        r.finish()?;
        Ok(t)
    }
}

/// The id of a transaction given as its canonical bytes.
pub fn id_of_raw(raw: &[u8]) -> Result<Hash, DecodeError> {
    RawTx::parse(raw).map(|t| t.id)
}

impl TxBody {
    pub fn id(&self) -> Hash {
        tx_id(&self.to_bytes())
    }
}

impl Transaction {
    pub fn sign(body: TxBody, id: &Identity) -> Transaction {
        let tid = body.id();
        Transaction {
            body,
            signature: id.sign(&tid.0).to_vec(),
        }
    }

    pub fn id(&self) -> Hash {
        self.body.id()
    }

    /// Checks the signature against a public key (the signer's certificate is checked apart).
    pub fn verify_signature(&self, id: &Hash, public_key: &[u8; 32]) -> bool {
        crate::sig::public_key(public_key).is_some_and(|k| self.verify_with(id, &k))
    }

    /// Like [`Transaction::verify_signature`] with a key already decoded, which saves a good
    /// share of the cost when the same signer signs many transactions.
    pub fn verify_with(&self, id: &Hash, key: &crate::sig::PublicKey) -> bool {
        crate::sig::verify(key, &self.signature, &id.0)
    }
}
