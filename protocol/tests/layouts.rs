//! The writers that build batch and block bytes from transactions' canonical bytes (the
//! node's write path) must produce exactly what the codec produces from the decoded values,
//! and the raw readers must agree with the codec on ids and contents.

use proptest::collection::vec;
use proptest::prelude::*;
use tally_protocol::codec::{Decode, Encode};
use tally_protocol::{
    tx, write_batch, write_block, Batch, Block, BlockHeader, ChaincodeDefinition, ChaincodeEvent,
    Hash, InitCall, Payload, RawBatch, RawTx, ReadCheck, RejectCode, Signer, Transaction, TxBody,
    TxEffects, TxStatus, Version, Write,
};

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn text() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..8).prop_map(|c| c.into_iter().collect())
}

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn version() -> impl Strategy<Value = Version> {
    (any::<u64>(), any::<u32>()).prop_map(|(block, tx)| Version { block, tx })
}

fn read_check() -> impl Strategy<Value = ReadCheck> {
    (text(), proptest::option::of(version())).prop_map(|(key, version)| ReadCheck { key, version })
}

fn write() -> impl Strategy<Value = Write> {
    (text(), proptest::option::of(bytes(24))).prop_map(|(key, value)| Write { key, value })
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (vec(read_check(), 0..3), vec(write(), 0..4))
            .prop_map(|(reads, writes)| Payload::KvWrite { reads, writes }),
        (
            text(),
            text(),
            any::<u64>(),
            hash(),
            proptest::option::of((text(), bytes(8))),
            bytes(32)
        )
            .prop_map(|(name, version, sequence, module_hash, init, module)| {
                Payload::ChaincodeInstall {
                    definition: ChaincodeDefinition {
                        name,
                        version,
                        sequence,
                        module_hash,
                        init: init.map(|(function, args)| InitCall { function, args }),
                    },
                    module,
                }
            }),
        (text(), any::<u64>(), hash()).prop_map(|(name, sequence, module_hash)| {
            Payload::ChaincodeApprove {
                name,
                sequence,
                module_hash,
            }
        }),
        (text(), any::<u64>())
            .prop_map(|(name, sequence)| Payload::ChaincodeCommit { name, sequence }),
        (text(), text(), bytes(16), any::<u64>()).prop_map(|(chaincode, function, args, fuel)| {
            Payload::Invoke {
                chaincode,
                function,
                args,
                fuel,
            }
        }),
    ]
}

fn transaction() -> impl Strategy<Value = Transaction> {
    let signer = prop_oneof![
        bytes(64).prop_map(Signer::Certificate),
        hash().prop_map(Signer::CertHash),
    ];
    (
        text(),
        any::<u64>(),
        any::<u64>(),
        signer,
        payload(),
        bytes(80),
    )
        .prop_map(
            |(channel, nonce, timestamp_ms, signer, payload, signature)| Transaction {
                body: TxBody {
                    channel,
                    nonce,
                    timestamp_ms,
                    signer,
                    payload,
                },
                signature,
            },
        )
}

fn status() -> impl Strategy<Value = TxStatus> {
    prop_oneof![
        Just(TxStatus::Committed),
        (0..RejectCode::ALL.len(), text()).prop_map(|(i, reason)| TxStatus::Rejected {
            code: RejectCode::ALL[i],
            reason,
        }),
    ]
}

fn effects() -> impl Strategy<Value = Option<TxEffects>> {
    proptest::option::of(
        (
            text(),
            vec(read_check(), 0..3),
            vec(write(), 0..3),
            vec((text(), bytes(8)), 0..2),
            bytes(16),
            any::<u64>(),
        )
            .prop_map(
                |(chaincode, reads, writes, events, result, fuel_used)| TxEffects {
                    chaincode,
                    reads,
                    writes,
                    events: events
                        .into_iter()
                        .map(|(name, payload)| ChaincodeEvent { name, payload })
                        .collect(),
                    result,
                    fuel_used,
                },
            ),
    )
}

fn header() -> impl Strategy<Value = BlockHeader> {
    (
        text(),
        any::<u64>(),
        hash(),
        hash(),
        hash(),
        hash(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                channel,
                number,
                prev_hash,
                tx_root,
                results_root,
                state_root,
                timestamp_ms,
                raft_term,
                raft_index,
            )| {
                BlockHeader {
                    version: tally_protocol::block::HEADER_VERSION,
                    channel,
                    number,
                    prev_hash,
                    tx_root,
                    results_root,
                    state_root,
                    timestamp_ms,
                    raft_term,
                    raft_index,
                }
            },
        )
}

proptest! {
    #[test]
    fn batch_writer_and_reader_agree_with_the_codec(
        timestamp_ms in any::<u64>(),
        txs in vec(transaction(), 0..12),
    ) {
        let raws: Vec<Vec<u8>> = txs.iter().map(Encode::to_bytes).collect();
        let data = write_batch(timestamp_ms, raws.iter().map(Vec::as_slice));
        let batch = Batch { timestamp_ms, txs: txs.clone() };
        prop_assert_eq!(&data, &batch.to_bytes());
        prop_assert_eq!(Batch::from_bytes(&data).unwrap(), batch);

        let read = RawBatch::parse(&data).unwrap();
        prop_assert_eq!(read.timestamp_ms, timestamp_ms);
        prop_assert_eq!(read.txs.len(), txs.len());
        for ((r, tx), raw) in read.txs.iter().zip(&txs).zip(&raws) {
            prop_assert_eq!(&r.tx, tx);
            prop_assert_eq!(r.raw, raw.as_slice());
            prop_assert_eq!(r.id, tx.id());
            prop_assert_eq!(tx::id_of_raw(raw).unwrap(), tx.id());
        }
    }

    #[test]
    fn block_writer_agrees_with_the_codec(
        header in header(),
        timestamp_ms in any::<u64>(),
        rows in vec((transaction(), status(), effects()), 0..10),
    ) {
        let txs: Vec<Transaction> = rows.iter().map(|r| r.0.clone()).collect();
        let results: Vec<TxStatus> = rows.iter().map(|r| r.1.clone()).collect();
        let effects: Vec<Option<TxEffects>> = rows.iter().map(|r| r.2.clone()).collect();
        let data = write_batch(timestamp_ms, txs.iter().map(Encode::to_bytes).collect::<Vec<_>>().iter().map(Vec::as_slice));
        let batch = RawBatch::parse(&data).unwrap();
        let bytes = write_block(&header, &batch, &results, &effects);
        let block = Block { header, txs, results, effects };
        prop_assert_eq!(&bytes, &block.to_bytes());
        prop_assert_eq!(Block::from_bytes(&bytes).unwrap(), block);
    }

    #[test]
    fn raw_readers_refuse_garbage_without_panicking(data in bytes(512)) {
        // Whatever they accept must be what the codec accepts, read the same way.
        match RawBatch::parse(&data) {
            Ok(read) => {
                let batch = Batch::from_bytes(&data).unwrap();
                prop_assert_eq!(read.txs.len(), batch.txs.len());
            }
            Err(_) => prop_assert!(Batch::from_bytes(&data).is_err()),
        }
        match RawTx::parse(&data) {
            Ok(t) => prop_assert_eq!(Transaction::from_bytes(&data).unwrap(), t.tx),
            Err(_) => prop_assert!(Transaction::from_bytes(&data).is_err()),
        }
    }

    #[test]
    fn a_valid_batch_with_one_byte_changed_reads_like_the_codec_reads_it(
        txs in vec(transaction(), 1..4),
        at in any::<prop::sample::Index>(),
        flip in 1..=255u8,
    ) {
        let mut data = Batch { timestamp_ms: 1, txs }.to_bytes();
        let i = at.index(data.len());
        data[i] ^= flip;
        match (RawBatch::parse(&data), Batch::from_bytes(&data)) {
            (Ok(read), Ok(batch)) => {
                for (r, t) in read.txs.iter().zip(&batch.txs) {
                    prop_assert_eq!(&r.tx, t);
                    prop_assert_eq!(r.id, t.id());
                }
            }
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "raw reader {:?}, codec {:?}", a.is_ok(), b.is_ok()),
        }
    }
}
