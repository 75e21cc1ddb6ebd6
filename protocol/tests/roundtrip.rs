//! Canonical encoding round trips and signature checks of the protocol types.

use tally_protocol::block::{effects_hash, result_leaves, results_root};
use tally_protocol::codec::{Decode, DecodeError, Encode};
use tally_protocol::merkle;
use tally_protocol::receipt::{InclusionProof, ProofError, ProvenReceipt};
use tally_protocol::{
    Batch, BatchConfig, Block, BlockHeader, ChannelConfig, Hash, NodeRef, OrgCa, OrgMember,
    Payload, Policies, ReadCheck, RejectCode, Role, Signer, Transaction, TxBody, TxStatus, Version,
    Write,
};

fn body(signer: Signer) -> TxBody {
    TxBody {
        channel: "trade".into(),
        nonce: 42,
        timestamp_ms: 1_700_000_000_000,
        signer,
        payload: Payload::KvWrite {
            reads: vec![
                ReadCheck {
                    key: "a".into(),
                    version: Some(Version { block: 3, tx: 1 }),
                },
                ReadCheck {
                    key: "b".into(),
                    version: None,
                },
            ],
            writes: vec![
                Write {
                    key: "a".into(),
                    value: Some(b"v\x00\xff".to_vec()),
                },
                Write {
                    key: "c".into(),
                    value: None,
                },
            ],
        },
    }
}

fn round_trip<T: Encode + Decode + PartialEq + std::fmt::Debug>(v: &T) {
    let b = v.to_bytes();
    assert_eq!(&T::from_bytes(&b).unwrap(), v);
    // Canonical: decoding and re-encoding gives the same bytes.
    assert_eq!(T::from_bytes(&b).unwrap().to_bytes(), b);
    // Every strict prefix fails to decode.
    for cut in [0, 1, b.len() / 2, b.len() - 1] {
        assert!(
            T::from_bytes(&b[..cut]).is_err(),
            "prefix of {cut} bytes decoded"
        );
    }
}

#[test]
fn transactions_blocks_and_configs_round_trip() {
    let ca = OrgCa::generate("org1").unwrap();
    let id = ca.issue(Role::Client, "c1", &[]).unwrap();
    let tx = Transaction::sign(body(Signer::Certificate(id.cert_der.clone())), &id);
    round_trip(&tx);
    let tx2 = Transaction::sign(body(Signer::CertHash(id.cert_hash)), &id);
    round_trip(&tx2);
    round_trip(&Batch {
        timestamp_ms: 9,
        txs: vec![tx.clone(), tx2.clone()],
    });
    let header = BlockHeader {
        version: tally_protocol::block::HEADER_VERSION,
        channel: "trade".into(),
        number: 7,
        prev_hash: Hash([1; 32]),
        tx_root: merkle::root(&[tx.id(), tx2.id()]),
        results_root: Hash([4; 32]),
        state_root: Hash([2; 32]),
        timestamp_ms: 10,
        raft_term: 3,
        raft_index: 99,
    };
    round_trip(&header);
    round_trip(&Block {
        header,
        txs: vec![tx, tx2],
        results: vec![
            TxStatus::Committed,
            TxStatus::Rejected {
                code: RejectCode::ReadConflict,
                reason: "stale read".into(),
            },
        ],
        effects: vec![
            Some(tally_protocol::TxEffects {
                chaincode: "notary".into(),
                reads: vec![tally_protocol::ReadCheck {
                    key: "cc~notary~h/ab".into(),
                    version: None,
                }],
                writes: vec![tally_protocol::Write {
                    key: "cc~notary~h/ab".into(),
                    value: Some(b"rec".to_vec()),
                }],
                events: vec![tally_protocol::ChaincodeEvent {
                    name: "anchored".into(),
                    payload: vec![1, 2],
                }],
                result: b"{}".to_vec(),
                fuel_used: 1234,
            }),
            None,
        ],
    });
    let cfg = ChannelConfig {
        name: "trade".into(),
        members: vec![OrgMember::new("org1", &ca.cert_pem())],
        consenters: vec![NodeRef {
            id: 1,
            name: "n1".into(),
            org: "org1".into(),
            peer_addr: "127.0.0.1:1".into(),
            api_url: "http://127.0.0.1:2".into(),
        }],
        observers: vec![],
        batch: BatchConfig::default(),
        policies: Policies {
            writers: vec!["org1".into()],
            ..Policies::default()
        },
        snapshot_interval: 100,
        max_tx_bytes: 1000,
        tx_window_s: 60,
    };
    round_trip(&cfg);
    assert!(cfg.validate().is_ok());
    // JSON at the edge carries the same value.
    let back: ChannelConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back.hash(), cfg.hash());
}

#[test]
fn unknown_tags_and_trailing_bytes_are_rejected() {
    let ca = OrgCa::generate("org1").unwrap();
    let id = ca.issue(Role::Client, "c1", &[]).unwrap();
    let mut b = Transaction::sign(body(Signer::CertHash(id.cert_hash)), &id).to_bytes();
    b.push(0);
    assert_eq!(Transaction::from_bytes(&b), Err(DecodeError::Trailing(1)));
    b.pop();
    b[0] = 9; // format version
    assert!(matches!(
        Transaction::from_bytes(&b),
        Err(DecodeError::BadTag { .. })
    ));
}

#[test]
fn signatures_cover_every_field() {
    let ca = OrgCa::generate("org1").unwrap();
    let id = ca.issue(Role::Client, "c1", &[]).unwrap();
    let key = id.info.public_key;
    let tx = Transaction::sign(body(Signer::CertHash(id.cert_hash)), &id);
    assert!(tx.verify_signature(&tx.id(), &key));
    type Tamper = Box<dyn Fn(&mut TxBody)>;
    let tamper: Vec<Tamper> = vec![
        Box::new(|b| b.channel.push('x')),
        Box::new(|b| b.nonce += 1),
        Box::new(|b| b.timestamp_ms += 1),
        Box::new(|b| b.signer = Signer::CertHash(Hash([9; 32]))),
        Box::new(|b| {
            if let Payload::KvWrite { writes, .. } = &mut b.payload {
                writes[0].value = Some(b"other".to_vec());
            }
        }),
    ];
    for t in tamper {
        let mut changed = tx.clone();
        t(&mut changed.body);
        assert!(!changed.verify_signature(&changed.id(), &key));
    }
    let mut bad_sig = tx.clone();
    bad_sig.signature[5] ^= 1;
    assert!(!bad_sig.verify_signature(&bad_sig.id(), &key));
    let other = ca.issue(Role::Client, "c2", &[]).unwrap();
    assert!(!tx.verify_signature(&tx.id(), &other.info.public_key));
    let mut short = tx.clone();
    short.signature.truncate(10);
    assert!(!short.verify_signature(&short.id(), &key));
}

#[test]
fn inclusion_proofs_check_header_path_and_status() {
    let ids: Vec<Hash> = (0..5u8).map(|i| Hash([i; 32])).collect();
    let rejected = TxStatus::Rejected {
        code: RejectCode::BadSignature,
        reason: "signature does not verify".into(),
    };
    let results: Vec<TxStatus> = (0..5)
        .map(|i| {
            if i == 3 {
                rejected.clone()
            } else {
                TxStatus::Committed
            }
        })
        .collect();
    let effects = vec![None; 5];
    let header = BlockHeader {
        version: tally_protocol::block::HEADER_VERSION,
        channel: "c".into(),
        number: 1,
        prev_hash: Hash::ZERO,
        tx_root: merkle::root(&ids),
        results_root: results_root(&ids, &results, &effects),
        state_root: Hash::ZERO,
        timestamp_ms: 0,
        raft_term: 1,
        raft_index: 2,
    };
    let leaves = result_leaves(&ids, &results, &effects);
    let proof_of = |i: usize| InclusionProof {
        tx_id: ids[i],
        header: header.clone(),
        status: results[i].clone(),
        effects_hash: effects_hash(&None),
        merkle: merkle::prove(&leaves, i).unwrap(),
    };
    assert_eq!(
        proof_of(2).verify(&ids[2], &header.hash()),
        Ok(&TxStatus::Committed)
    );
    // The rejected transaction's proof proves "rejected"...
    let proof = proof_of(3);
    assert_eq!(proof.verify(&ids[3], &header.hash()), Ok(&rejected));
    // ...and cannot be made to say "committed", nor another reason or code.
    for other in [
        TxStatus::Committed,
        TxStatus::Rejected {
            code: RejectCode::BadSignature,
            reason: "other".into(),
        },
        TxStatus::Rejected {
            code: RejectCode::Expired,
            reason: "signature does not verify".into(),
        },
    ] {
        let mut forged = proof.clone();
        forged.status = other;
        assert_eq!(
            forged.verify(&ids[3], &header.hash()),
            Err(ProofError::BadPath)
        );
    }
    // Effects are part of the leaf too.
    let mut forged = proof.clone();
    forged.effects_hash = Hash([9; 32]);
    assert_eq!(
        forged.verify(&ids[3], &header.hash()),
        Err(ProofError::BadPath)
    );
    // A receipt that claims "committed" for it is refused even with an honest proof.
    let receipt = |status: TxStatus| ProvenReceipt {
        receipt: tally_protocol::Receipt {
            tx_id: ids[3],
            channel: "c".into(),
            block: 1,
            index: 3,
            status,
            block_hash: header.hash(),
            effects: None,
        },
        proof: proof.clone(),
    };
    assert_eq!(
        receipt(rejected.clone()).verify(&header.hash()),
        Ok(&rejected)
    );
    assert_eq!(
        receipt(TxStatus::Committed).verify(&header.hash()),
        Err(ProofError::WrongOutcome)
    );
    assert_eq!(
        proof.verify(&ids[2], &header.hash()),
        Err(ProofError::WrongTx)
    );
    assert_eq!(
        proof.verify(&ids[3], &Hash([7; 32])),
        Err(ProofError::WrongHeader)
    );
    let mut forged = proof.clone();
    forged.header.results_root = Hash([1; 32]);
    let forged_hash = forged.header.hash();
    assert_eq!(
        forged.verify(&ids[3], &forged_hash),
        Err(ProofError::BadPath)
    );
}

#[test]
fn headers_of_another_version_are_refused_with_a_clear_error() {
    let header = BlockHeader {
        version: tally_protocol::block::HEADER_VERSION,
        channel: "c".into(),
        number: 1,
        prev_hash: Hash::ZERO,
        tx_root: Hash::ZERO,
        results_root: Hash::ZERO,
        state_root: Hash::ZERO,
        timestamp_ms: 0,
        raft_term: 1,
        raft_index: 2,
    };
    for v in [0u8, 1, 3, 255] {
        let mut bytes = header.to_bytes();
        bytes[0] = v;
        let e = BlockHeader::from_bytes(&bytes).unwrap_err();
        assert!(
            matches!(e, DecodeError::UnsupportedVersion { version, .. } if version == v),
            "{e:?}"
        );
        assert!(e.to_string().contains("version"), "{e}");
    }
}

#[test]
fn configs_are_validated() {
    let ca = OrgCa::generate("org1").unwrap();
    let other = OrgCa::generate("org2").unwrap();
    let node = |id, org: &str| NodeRef {
        id,
        name: format!("n{id}"),
        org: org.into(),
        peer_addr: "a:1".into(),
        api_url: "http://a:2".into(),
    };
    let base = ChannelConfig {
        name: "ok".into(),
        members: vec![OrgMember::new("org1", &ca.cert_pem())],
        consenters: vec![node(1, "org1")],
        observers: vec![],
        batch: BatchConfig::default(),
        policies: Policies::default(),
        snapshot_interval: 10,
        max_tx_bytes: 100,
        tx_window_s: 60,
    };
    let mut c = base.clone();
    c.name = "Bad_Name".into();
    assert!(c.validate().unwrap_err().to_string().contains("invalid"));
    let mut c = base.clone();
    c.consenters.clear();
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("no consenters"));
    let mut c = base.clone();
    c.consenters.push(node(2, "org2"));
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("not a member"));
    let mut c = base.clone();
    c.observers.push(node(1, "org1"));
    assert!(c.validate().unwrap_err().to_string().contains("used twice"));
    let mut c = base.clone();
    // A CA certificate that names another organization than the member entry.
    c.members[0].ca_pem = other.cert_pem();
    assert!(c.validate().is_err());
    let mut c = base;
    c.policies.writers = vec!["org9".into()];
    assert!(c.validate().unwrap_err().to_string().contains("org9"));
}

#[test]
fn chaincode_payloads_round_trip_with_stable_tags() {
    use tally_protocol::chaincode::{module_hash, ChaincodeDefinition, InitCall};
    let def = ChaincodeDefinition {
        name: "receivables".into(),
        version: "1.0".into(),
        sequence: 1,
        module_hash: module_hash(b"\0asm"),
        init: Some(InitCall {
            function: "init".into(),
            args: vec![0, 0, 0, 0],
        }),
    };
    let payloads = [
        Payload::ChaincodeInstall {
            definition: def.clone(),
            module: b"\0asm".to_vec(),
        },
        Payload::ChaincodeApprove {
            name: "receivables".into(),
            sequence: 1,
            module_hash: def.module_hash,
        },
        Payload::ChaincodeCommit {
            name: "receivables".into(),
            sequence: 1,
        },
        Payload::Invoke {
            chaincode: "receivables".into(),
            function: "issue".into(),
            args: vec![1, 2, 3],
            fuel: 1000,
        },
    ];
    for (p, tag) in payloads.into_iter().zip(2u8..) {
        let mut b = body(Signer::CertHash(Hash([7; 32])));
        b.payload = p;
        round_trip(&b);
        // The payload tag follows the fixed header fields; KvWrite is 0 and Config 1.
        let bytes = b.payload.to_bytes();
        assert_eq!(bytes[0], tag);
    }
    // Governance payloads follow the chaincode ones.
    let proposal = tally_protocol::Proposal {
        channel: "c".into(),
        base_sequence: 0,
        base: Hash([1; 32]),
        expires_at_ms: 5,
        description: String::new(),
        change: tally_protocol::Change::Config(Box::new(tally_protocol::ChannelConfig::new(
            "c",
            vec![],
            vec![],
            vec![],
        ))),
    };
    let governance = [
        Payload::Propose(Box::new(proposal)),
        Payload::ProposalApprove {
            hash: Hash([2; 32]),
        },
        Payload::ProposalReject {
            hash: Hash([2; 32]),
        },
    ];
    for (p, tag) in governance.into_iter().zip(6u8..) {
        let mut b = body(Signer::CertHash(Hash([7; 32])));
        b.payload = p;
        round_trip(&b);
        assert_eq!(b.payload.to_bytes()[0], tag);
    }
    // sha256 as `sha256sum` shows it.
    assert_eq!(
        module_hash(b"").to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // New reject codes are appended: the old tags keep their meaning.
    assert_eq!(RejectCode::ALL[9], RejectCode::Malformed);
    assert_eq!(RejectCode::ALL[14].as_str(), "unknown_chaincode");
}
