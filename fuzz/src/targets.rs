//! One target per decoder, each with the property it must keep, and the real values its
//! corpus is made from.

use serde_json::json;
use tally_protocol::codec::{Decode, Encode};
use tally_protocol::proposal::{Change, Outcome, Record, Vote};
use tally_protocol::snapshot::{Chunk, ChunkRequest, Descriptor};
use tally_protocol::{
    read_auth, Approval, Batch, Block, BlockHeader, ChaincodeDefinition, ChaincodeEvent,
    ChannelConfig, ConfigUpdate, Hash, InitCall, NodeRef, OrgCa, OrgMember, Payload, Proposal,
    ProvenReceipt, RawBatch, RawTx, ReadCheck, Receipt, Role, Signer, Transaction, TxBody,
    TxEffects, TxStatus, Version, Write,
};

/// A decoder under test: `check` returns whether the input decoded, or what property broke.
pub struct Target {
    pub name: &'static str,
    pub check: fn(&[u8]) -> Result<bool, String>,
}

/// The canonical codec's promise: a value has exactly one encoding, so whatever decodes must
/// encode back to the very bytes it came from (else a signature over one encoding would pass
/// for another).
fn canonical<T: Decode + Encode>(b: &[u8]) -> Result<bool, String> {
    match T::from_bytes(b) {
        Err(_) => Ok(false),
        Ok(v) if v.to_bytes() == b => Ok(true),
        Ok(_) => Err("decoded, but encodes to other bytes".into()),
    }
}

/// The raw transaction reader must agree with the codec on what it accepts, the id and the
/// bytes it keeps.
fn raw_tx(b: &[u8]) -> Result<bool, String> {
    let raw = RawTx::parse(b);
    let full = Transaction::from_bytes(b);
    match (raw, full) {
        (Err(_), Err(_)) => Ok(false),
        (Ok(r), Ok(t)) if r.id == t.id() && r.raw == b && r.tx == t => Ok(true),
        (Ok(_), Ok(_)) => Err("raw reader and codec disagree on the transaction".into()),
        (Ok(_), Err(e)) => Err(format!("raw reader accepted what the codec refuses: {e}")),
        (Err(e), Ok(_)) => Err(format!("raw reader refused what the codec accepts: {e}")),
    }
}

fn raw_batch(b: &[u8]) -> Result<bool, String> {
    let raw = RawBatch::parse(b);
    let full = Batch::from_bytes(b);
    match (raw, full) {
        (Err(_), Err(_)) => Ok(false),
        (Ok(r), Ok(f))
            if r.timestamp_ms == f.timestamp_ms
                && r.txs.len() == f.txs.len()
                && r.txs
                    .iter()
                    .zip(&f.txs)
                    .all(|(a, b)| a.tx == *b && a.id == b.id()) =>
        {
            Ok(true)
        }
        (Ok(_), Ok(_)) => Err("raw reader and codec disagree on the batch".into()),
        (Ok(_), Err(e)) => Err(format!("raw reader accepted what the codec refuses: {e}")),
        (Err(e), Ok(_)) => Err(format!("raw reader refused what the codec accepts: {e}")),
    }
}

/// Receipts travel as JSON: whatever parses must survive a round trip unchanged.
fn json<T>(b: &[u8]) -> Result<bool, String>
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq,
{
    let Ok(v) = serde_json::from_slice::<T>(b) else {
        return Ok(false);
    };
    let again = serde_json::to_vec(&v).map_err(|e| format!("cannot encode what parsed: {e}"))?;
    match serde_json::from_slice::<T>(&again) {
        Ok(w) if w == v => Ok(true),
        _ => Err("a parsed value does not survive a JSON round trip".into()),
    }
}

fn read_auth_header(b: &[u8]) -> Result<bool, String> {
    let s = String::from_utf8_lossy(b);
    Ok(read_auth::parse_auth(&s).is_ok())
}

pub fn targets() -> &'static [Target] {
    macro_rules! t {
        ($name:literal, $f:expr) => {
            Target {
                name: $name,
                check: $f,
            }
        };
    }
    static TARGETS: &[Target] = &[
        t!("hash", canonical::<Hash>),
        t!("version", canonical::<Version>),
        t!("signer", canonical::<Signer>),
        t!("read_check", canonical::<ReadCheck>),
        t!("write", canonical::<Write>),
        t!("payload", canonical::<Payload>),
        t!("tx_body", canonical::<TxBody>),
        t!("transaction", canonical::<Transaction>),
        t!("raw_tx", raw_tx),
        t!("batch", canonical::<Batch>),
        t!("raw_batch", raw_batch),
        t!("tx_status", canonical::<TxStatus>),
        t!("block_header", canonical::<BlockHeader>),
        t!("block", canonical::<Block>),
        t!("org_member", canonical::<OrgMember>),
        t!("node_ref", canonical::<NodeRef>),
        t!("channel_config", canonical::<ChannelConfig>),
        t!("approval", canonical::<Approval>),
        t!("config_update", canonical::<ConfigUpdate>),
        t!("init_call", canonical::<InitCall>),
        t!("chaincode_definition", canonical::<ChaincodeDefinition>),
        t!("chaincode_event", canonical::<ChaincodeEvent>),
        t!("tx_effects", canonical::<TxEffects>),
        t!("proposal", canonical::<Proposal>),
        t!("proposal_record", canonical::<Record>),
        t!("receipt_json", json::<Receipt>),
        t!("proven_receipt_json", json::<ProvenReceipt>),
        t!("read_auth", read_auth_header),
        t!("snapshot_descriptor", canonical::<Descriptor>),
        t!("snapshot_chunk_request", canonical::<ChunkRequest>),
        t!("snapshot_chunk", canonical::<Chunk>),
    ];
    TARGETS
}

pub fn target(name: &str) -> Option<&'static Target> {
    targets().iter().find(|t| t.name == name)
}

/// Real values of every kind, encoded: the corpus `tally-fuzz corpus` writes. Built from JSON
/// where the types allow it, so that a field added later with a default keeps this compiling.
/// Each target's name with its seed inputs.
pub type Seeds = Vec<(&'static str, Vec<Vec<u8>>)>;

pub fn seeds() -> Result<Seeds, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let ca = OrgCa::generate("org1").map_err(|e| err(&e))?;
    let client = ca.issue(Role::Client, "client", &[]).map_err(|e| err(&e))?;
    let admin = ca.issue(Role::Admin, "admin", &[]).map_err(|e| err(&e))?;
    let h = |b: u8| Hash([b; 32]);
    let version = Version { block: 7, tx: 2 };
    let reads = vec![
        ReadCheck {
            key: "k1".into(),
            version: Some(version),
        },
        ReadCheck {
            key: "k2".into(),
            version: None,
        },
    ];
    let writes = vec![
        Write {
            key: "k1".into(),
            value: Some(b"v1".to_vec()),
        },
        Write {
            key: "gone".into(),
            value: None,
        },
    ];
    let init = InitCall {
        function: "init".into(),
        args: vec![1, 2, 3],
    };
    let definition = ChaincodeDefinition {
        name: "asset".into(),
        version: "1.0".into(),
        sequence: 1,
        module_hash: h(9),
        init: Some(init.clone()),
    };
    let payloads = vec![
        Payload::KvWrite {
            reads: reads.clone(),
            writes: writes.clone(),
        },
        Payload::ChaincodeInstall {
            definition: definition.clone(),
            module: b"\0asm\x01\0\0\0".to_vec(),
        },
        Payload::ChaincodeApprove {
            name: "asset".into(),
            sequence: 1,
            module_hash: h(9),
        },
        Payload::ChaincodeCommit {
            name: "asset".into(),
            sequence: 1,
        },
        Payload::Invoke {
            chaincode: "asset".into(),
            function: "transfer".into(),
            args: b"a\0b\x05".to_vec(),
            fuel: 1_000_000,
        },
    ];
    let signers = vec![
        Signer::Certificate(client.cert_der.clone()),
        Signer::CertHash(h(3)),
    ];
    let node = |id: u64| -> Result<NodeRef, String> {
        serde_json::from_value(json!({
            "id": id, "name": format!("n{id}"), "org": "org1",
            "peer_addr": format!("10.0.0.{id}:7051"), "api_url": format!("https://10.0.0.{id}:8443"),
        }))
        .map_err(|e| err(&e))
    };
    let nodes = vec![node(1)?, node(2)?, node(3)?];
    let member: OrgMember =
        serde_json::from_value(json!({"name": "org1", "ca_pem": ca.cert_pem()}))
            .map_err(|e| err(&e))?;
    let config: ChannelConfig = serde_json::from_value(json!({
        "name": "trade", "members": [member], "consenters": nodes[..2], "observers": nodes[2..],
        "policies": {"writers": ["org1"], "readers": ["org1"], "admins": ["org1"]},
        "snapshot_interval": 100,
    }))
    .map_err(|e| err(&e))?;
    // Mid-rotation with a revocation: the format-2 configuration encoding.
    let next_ca = OrgCa::generate("org1").map_err(|e| err(&e))?;
    let mut rotating = config.clone();
    rotating.members[0].extra_cas.push(next_ca.cert_pem());
    rotating.members[0].revoked.push(h(0x5e));
    // A membership rule: the format-3 encoding.
    let mut strict = rotating.clone();
    strict.policies.membership = tally_protocol::config::MembershipRule::AtLeast(2);
    // A chaincode rule: the format-4 encoding.
    let mut chaincode_rule = config.clone();
    chaincode_rule.policies.chaincode = tally_protocol::config::MembershipRule::All;
    let bodies: Vec<TxBody> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| TxBody {
            channel: "trade".into(),
            nonce: i as u64,
            timestamp_ms: 1_760_000_000_000 + i as u64,
            signer: signers[i % 2].clone(),
            payload: p.clone(),
        })
        .collect();
    let mut txs: Vec<Transaction> = bodies
        .iter()
        .map(|b| Transaction::sign(b.clone(), &client))
        .collect();
    let update_body = TxBody {
        channel: "trade".into(),
        nonce: 99,
        timestamp_ms: 1_760_000_000_000,
        signer: Signer::Certificate(admin.cert_der.clone()),
        payload: Payload::Config(Box::new(ConfigUpdate {
            sequence: 1,
            base: h(4),
            config: config.clone(),
            approvals: vec![],
        })),
    };
    let update = ConfigUpdate {
        sequence: 1,
        base: h(4),
        config: config.clone(),
        approvals: vec![Approval {
            certificate: admin.cert_der.clone(),
            signature: admin.sign(&h(5).0).to_vec(),
        }],
    };
    txs.push(Transaction::sign(update_body.clone(), &admin));
    let statuses = vec![
        TxStatus::Committed,
        TxStatus::Rejected {
            code: tally_protocol::RejectCode::ALL[3],
            reason: "stale read of k1".into(),
        },
    ];
    let event = ChaincodeEvent {
        name: "moved".into(),
        payload: b"a->b".to_vec(),
    };
    let effects = TxEffects {
        chaincode: "asset".into(),
        reads: reads.clone(),
        writes: writes.clone(),
        events: vec![event.clone()],
        result: b"ok".to_vec(),
        fuel_used: 4242,
    };
    let header: BlockHeader = serde_json::from_value(json!({
        "version": tally_protocol::block::HEADER_VERSION, "channel": "trade", "number": 12,
        "prev_hash": h(1), "tx_root": h(2), "results_root": h(4), "state_root": h(3), "timestamp_ms": 1_760_000_000_000u64, "raft_term": 3, "raft_index": 40,
    }))
    .map_err(|e| err(&e))?;
    let batches = vec![
        Batch {
            timestamp_ms: 1_760_000_000_000,
            txs: vec![],
        },
        Batch {
            timestamp_ms: 1_760_000_000_001,
            txs: txs[..2].to_vec(),
        },
        Batch {
            timestamp_ms: 1_760_000_000_002,
            txs: txs.clone(),
        },
    ];
    let block = Block {
        header: header.clone(),
        txs: txs[..2].to_vec(),
        results: statuses.clone(),
        effects: vec![None, Some(effects.clone())],
    };
    // A snapshot chunk carries blocks as the node stores them.
    let block_bytes = block.to_bytes();
    let empty_block = Block {
        header: header.clone(),
        txs: vec![],
        results: vec![],
        effects: vec![],
    };
    let receipt = json!({
        "tx_id": txs[0].id(), "channel": "trade", "block": 12, "index": 0, "status": "committed",
        "block_hash": header.hash(), "effects": effects,
    });
    let rejected = json!({
        "tx_id": txs[1].id(), "channel": "trade", "block": 12, "index": 1, "status": "rejected",
        "code": tally_protocol::RejectCode::ALL[3], "reason": "stale", "block_hash": header.hash(),
    });
    let ids: Vec<Hash> = txs[..2].iter().map(|t| t.id()).collect();
    let proof = tally_protocol::merkle::prove(&ids, 1).ok_or("no merkle proof")?;
    let proven = json!({
        "receipt": rejected, "proof": {
            "tx_id": ids[1], "header": header, "status": statuses[1], "effects_hash": h(5),
            "merkle": proof,
        },
    });
    let proposal = Proposal::config(&config, 1, config.clone(), 1_760_000_600_000, "add org2");
    let vote = |org: &str, b: u8| Vote {
        org: org.into(),
        cert_hash: h(b),
        subject: "admin".into(),
        block: b as u64,
        tx_id: h(b + 1),
    };
    let record = Record {
        hash: proposal.hash(),
        proposal: proposal.clone(),
        proposer: vote("org1", 10),
        proposed_at_ms: 1_760_000_000_000,
        eligible: vec!["org1".into(), "org2".into()],
        needed: 2,
        required: Vec::new(),
        approvals: vec![vote("org1", 10)],
        rejections: vec![vote("org2", 12)],
        outcome: Outcome::Rejected { block: 12 },
    };
    let others: Vec<Proposal> = [
        Change::DefineChaincode(definition.clone()),
        Change::RetireChaincode {
            name: "notary".into(),
            sequence: 2,
        },
        Change::RetireChannel,
    ]
    .into_iter()
    .map(|c| Proposal::other(&config, 1, c, 1_760_000_600_000, "retire"))
    .collect();
    let mut status_seeds = all(&statuses);
    status_seeds.extend(all(&[TxStatus::Rejected {
        code: tally_protocol::RejectCode::Retired,
        reason: "channel trade was retired at block 9".into(),
    }]));
    let mut payload_seeds = all(&payloads);
    payload_seeds.extend(all(&[
        Payload::Propose(Box::new(proposal.clone())),
        Payload::ProposalApprove { hash: h(6) },
        Payload::ProposalReject { hash: h(7) },
        Payload::Propose(Box::new(others[1].clone())),
        Payload::Propose(Box::new(others[0].clone())),
    ]));
    let enc = |v: Vec<Vec<u8>>| v;
    fn all<T: Encode>(v: &[T]) -> Vec<Vec<u8>> {
        v.iter().map(|x| x.to_bytes()).collect()
    }
    let js = |v: &[serde_json::Value]| -> Vec<Vec<u8>> {
        v.iter()
            .map(|x| serde_json::to_vec(x).unwrap_or_default())
            .collect()
    };
    let (_cert, auth) = read_auth::sign(
        &client,
        "GET",
        "/v1/channels/trade/keys/k1",
        1_760_000_000_000,
    );
    Ok(vec![
        ("hash", all(&[h(0), h(0xab)])),
        ("version", all(&[version])),
        ("signer", all(&signers)),
        ("read_check", all(&reads)),
        ("write", all(&writes)),
        ("payload", payload_seeds),
        ("tx_body", all(&bodies)),
        ("transaction", all(&txs)),
        ("raw_tx", all(&txs)),
        ("batch", all(&batches)),
        ("raw_batch", all(&batches)),
        ("tx_status", status_seeds),
        ("block_header", all(&[header])),
        ("block", all(&[block, empty_block])),
        ("org_member", all(&config.members)),
        ("node_ref", all(&nodes)),
        (
            "channel_config",
            all(&[config, rotating, strict, chaincode_rule]),
        ),
        ("approval", all(&update.approvals)),
        ("config_update", all(&[update])),
        ("init_call", all(&[init])),
        ("chaincode_definition", all(&[definition])),
        ("chaincode_event", all(&[event])),
        ("tx_effects", all(&[effects])),
        ("proposal", {
            let mut v = all(&[proposal]);
            v.extend(all(&others));
            v
        }),
        ("proposal_record", all(&[record])),
        ("receipt_json", js(&[receipt, rejected])),
        ("proven_receipt_json", js(&[proven])),
        (
            "snapshot_descriptor",
            all(&[Descriptor {
                build: 0x1234_5678_9abc_def0,
                index: 4646,
                term: 3,
                height: 4646,
                last_hash: h(7),
                state_root: h(8),
            }]),
        ),
        (
            "snapshot_chunk_request",
            all(&[
                ChunkRequest {
                    build: 9,
                    after: vec![],
                },
                ChunkRequest {
                    build: 9,
                    after: b"Sk1".to_vec(),
                },
            ]),
        ),
        (
            "snapshot_chunk",
            all(&[
                Chunk::Records {
                    records: vec![
                        (b"B\0\0\0\0\0\0\0\x01".to_vec(), block_bytes.clone()),
                        (b"Sk1".to_vec(), b"v1".to_vec()),
                    ],
                    end: None,
                },
                Chunk::Records {
                    records: vec![(b"t".to_vec(), vec![0; 40])],
                    end: Some(3),
                },
                Chunk::Gone,
            ]),
        ),
        (
            "read_auth",
            enc(vec![
                auth.into_bytes(),
                format!("0.{}.{}", "cd".repeat(16), "ab".repeat(64)).into_bytes(),
            ]),
        ),
    ])
}
