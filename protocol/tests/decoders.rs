//! Every decoder of the canonical codec on hostile input: arbitrary bytes never panic, what
//! decodes re-encodes to the very same bytes (one encoding per value), and a count or length
//! that claims more than the input holds never makes a decoder reserve what it claims.
//! The mutation-based fuzz harness over real encodings is `fuzz/` (docs/testing.md).

use proptest::collection::vec;
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use tally_protocol::codec::{Decode, Encode, MAX_LEN};
use tally_protocol::proposal::{Change, Installed, Outcome, Proposal, Record, Vote};
use tally_protocol::{
    read_auth, Approval, Batch, Block, BlockHeader, ChaincodeDefinition, ChaincodeEvent,
    ChannelConfig, ConfigUpdate, Hash, InitCall, NodeRef, OrgMember, Payload, RawBatch, RawTx,
    ReadCheck, Receipt, Signer, Transaction, TxBody, TxEffects, TxStatus, Version, Write,
};

/// Remembers the largest single allocation of the current thread.
struct Peak;

thread_local! {
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator; the bookkeeping is a thread-local
// `Cell` with a const initializer, which never allocates.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = PEAK.try_with(|p| p.set(p.get().max(l.size())));
        System.alloc(l)
    }
    unsafe fn realloc(&self, ptr: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let _ = PEAK.try_with(|p| p.set(p.get().max(new)));
        System.realloc(ptr, l, new)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, l: Layout) {
        System.dealloc(ptr, l)
    }
}

#[global_allocator]
static ALLOC: Peak = Peak;

/// The largest single allocation `f` made.
fn peak_of(f: impl FnOnce()) -> usize {
    PEAK.with(|p| p.set(0));
    f();
    PEAK.with(|p| p.get())
}

/// Decodes `b` as `T`; if it decodes, it must re-encode to `b`.
fn canonical<T: Decode + Encode + std::fmt::Debug>(b: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(v) = T::from_bytes(b) {
        prop_assert_eq!(
            v.to_bytes(),
            b,
            "{:?} decoded from other bytes than its own",
            v
        );
    }
    Ok(())
}

fn every_decoder(b: &[u8]) -> Result<(), TestCaseError> {
    canonical::<Hash>(b)?;
    canonical::<Version>(b)?;
    canonical::<Signer>(b)?;
    canonical::<ReadCheck>(b)?;
    canonical::<Write>(b)?;
    canonical::<Payload>(b)?;
    canonical::<TxBody>(b)?;
    canonical::<Transaction>(b)?;
    canonical::<Batch>(b)?;
    canonical::<TxStatus>(b)?;
    canonical::<BlockHeader>(b)?;
    canonical::<Block>(b)?;
    canonical::<OrgMember>(b)?;
    canonical::<NodeRef>(b)?;
    canonical::<ChannelConfig>(b)?;
    canonical::<Approval>(b)?;
    canonical::<ConfigUpdate>(b)?;
    canonical::<InitCall>(b)?;
    canonical::<ChaincodeDefinition>(b)?;
    canonical::<ChaincodeEvent>(b)?;
    canonical::<TxEffects>(b)?;
    canonical::<Proposal>(b)?;
    canonical::<Change>(b)?;
    canonical::<Vote>(b)?;
    canonical::<Outcome>(b)?;
    canonical::<Record>(b)?;
    canonical::<Installed>(b)?;
    let _ = RawTx::parse(b);
    let _ = RawBatch::parse(b);
    let _ = serde_json::from_slice::<Receipt>(b);
    let _ = read_auth::parse_auth(&String::from_utf8_lossy(b));
    Ok(())
}

/// Bytes that look like the codec's: small tags and lengths more often than noise would give.
fn codec_like() -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![
            4 => any::<u8>(),
            2 => 0u8..4,
            1 => Just(0xffu8),
        ],
        0..400,
    )
}

fn text() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..6).prop_map(|c| c.into_iter().collect())
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..24)
}

fn read_check() -> impl Strategy<Value = ReadCheck> {
    (text(), proptest::option::of((any::<u64>(), any::<u32>()))).prop_map(|(key, v)| ReadCheck {
        key,
        version: v.map(|(block, tx)| Version { block, tx }),
    })
}

fn write() -> impl Strategy<Value = Write> {
    (text(), proptest::option::of(bytes())).prop_map(|(key, value)| Write { key, value })
}

fn effects() -> impl Strategy<Value = TxEffects> {
    (
        text(),
        vec(read_check(), 0..3),
        vec(write(), 0..3),
        vec((text(), bytes()), 0..3),
        bytes(),
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
        )
}

fn status() -> impl Strategy<Value = TxStatus> {
    prop_oneof![
        Just(TxStatus::Committed),
        (0..tally_protocol::RejectCode::ALL.len(), text()).prop_map(|(i, reason)| {
            TxStatus::Rejected {
                code: tally_protocol::RejectCode::ALL[i],
                reason,
            }
        }),
    ]
}

fn node() -> impl Strategy<Value = NodeRef> {
    (any::<u64>(), text(), text(), text(), text()).prop_map(
        |(id, name, org, peer_addr, api_url)| NodeRef {
            id,
            name,
            org,
            peer_addr,
            api_url,
        },
    )
}

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn vote() -> impl Strategy<Value = Vote> {
    (text(), hash(), text(), any::<u64>(), hash()).prop_map(
        |(org, cert_hash, subject, block, tx_id)| Vote {
            org,
            cert_hash,
            subject,
            block,
            tx_id,
        },
    )
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (
        text(),
        any::<u64>(),
        hash(),
        any::<u64>(),
        text(),
        vec(node(), 0..3),
        any::<u32>(),
    )
        .prop_map(
            |(channel, base_sequence, base, expires_at_ms, description, nodes, max_txs)| {
                let mut config = ChannelConfig::new(&channel, vec![], nodes, vec![]);
                config.batch.max_txs = max_txs;
                Proposal {
                    channel,
                    base_sequence,
                    base,
                    expires_at_ms,
                    description,
                    change: Change::Config(Box::new(config)),
                }
            },
        )
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Open),
        (any::<u64>(), any::<u64>())
            .prop_map(|(block, sequence)| Outcome::Applied { block, sequence }),
        any::<u64>().prop_map(|block| Outcome::Rejected { block }),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (
        proposal(),
        vote(),
        any::<u64>(),
        (vec(text(), 0..4), vec(text(), 0..2)),
        any::<u32>(),
        vec(vote(), 0..3),
        vec(vote(), 0..3),
        outcome(),
    )
        .prop_map(
            |(
                proposal,
                proposer,
                proposed_at_ms,
                (eligible, required),
                needed,
                approvals,
                rejections,
                outcome,
            )| {
                Record {
                    hash: proposal.hash(),
                    proposal,
                    proposer,
                    proposed_at_ms,
                    eligible,
                    needed,
                    required,
                    approvals,
                    rejections,
                    outcome,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Proposals, votes and the records the ledger keeps decode to themselves, as do the
    /// governance payloads that carry them; an edited encoding never panics.
    #[test]
    fn proposals_and_records_round_trip(
        r in record(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        prop_assert_eq!(Record::from_bytes(&r.to_bytes()).ok(), Some(r.clone()));
        prop_assert_eq!(Proposal::from_bytes(&r.proposal.to_bytes()).ok(), Some(r.proposal.clone()));
        for p in [
            Payload::Propose(Box::new(r.proposal.clone())),
            Payload::ProposalApprove { hash: r.hash },
            Payload::ProposalReject { hash: r.hash },
        ] {
            prop_assert_eq!(Payload::from_bytes(&p.to_bytes()).ok(), Some(p.clone()));
        }
        let mut b = r.to_bytes();
        let i = at.index(b.len());
        b[i] = byte;
        every_decoder(&b)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_what_decodes_is_canonical(b in codec_like()) {
        every_decoder(&b)?;
    }

    #[test]
    fn effects_statuses_events_and_approvals_round_trip(
        e in effects(),
        s in status(),
        n in node(),
        certificate in bytes(),
        signature in bytes(),
    ) {
        prop_assert_eq!(TxEffects::from_bytes(&e.to_bytes()).ok(), Some(e.clone()));
        prop_assert_eq!(TxStatus::from_bytes(&s.to_bytes()).ok(), Some(s.clone()));
        prop_assert_eq!(NodeRef::from_bytes(&n.to_bytes()).ok(), Some(n.clone()));
        let a = Approval { certificate, signature };
        prop_assert_eq!(Approval::from_bytes(&a.to_bytes()).ok(), Some(a.clone()));
        for ev in &e.events {
            prop_assert_eq!(ChaincodeEvent::from_bytes(&ev.to_bytes()).ok(), Some(ev.clone()));
        }
    }

    /// A real encoding with one byte changed, a piece cut out or the tail cut off: never a
    /// panic, and what still decodes is canonical.
    #[test]
    fn edited_encodings_never_panic_and_stay_canonical(
        e in effects(),
        s in status(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        for mut b in [e.to_bytes(), s.to_bytes()] {
            let i = at.index(b.len());
            b[i] = byte;
            every_decoder(&b)?;
            b.truncate(cut.index(b.len() + 1));
            every_decoder(&b)?;
        }
    }
}

fn header() -> BlockHeader {
    serde_json::from_value(serde_json::json!({
        "version": tally_protocol::block::HEADER_VERSION, "channel": "c", "number": 1,
        "prev_hash": Hash([1; 32]), "tx_root": Hash([2; 32]), "results_root": Hash([4; 32]),
        "state_root": Hash([3; 32]), "timestamp_ms": 5, "raft_term": 1, "raft_index": 2,
    }))
    .expect("a header from JSON")
}

/// A sequence claiming as many elements as there are bytes left passes the cheap check (each
/// element takes at least a byte), but a transaction in memory is far larger than a byte:
/// reserving the claimed count ahead would turn 100 KB of input into tens of megabytes.
#[test]
fn a_count_as_large_as_the_input_reserves_no_more_than_a_bounded_amount() {
    const N: usize = 100_000;
    let mut block = header().to_bytes();
    block.extend_from_slice(&(N as u32).to_be_bytes());
    block.extend_from_slice(&[0xff; N]);
    let mut batch = vec![1u8];
    batch.extend_from_slice(&7u64.to_be_bytes());
    batch.extend_from_slice(&(N as u32).to_be_bytes());
    batch.extend_from_slice(&[0xff; N]);
    let block_fails = || assert!(Block::from_bytes(&block).is_err());
    let batch_fails = || assert!(Batch::from_bytes(&batch).is_err());
    let raw_batch_fails = || assert!(RawBatch::parse(&batch).is_err());
    let cases: [(&str, &dyn Fn()); 3] = [
        ("block", &block_fails),
        ("batch", &batch_fails),
        ("raw batch", &raw_batch_fails),
    ];
    for (what, f) in cases {
        let peak = peak_of(f);
        assert!(
            peak <= 2 * N,
            "decoding a {what} of {N} bytes reserved {peak} bytes at once"
        );
    }
}

/// A length prefix larger than the input (or than the codec's limit) fails fast, before any
/// allocation of that size, at every length field of a real encoding.
#[test]
fn a_length_beyond_the_input_fails_without_allocating_it() {
    let e = TxEffects {
        chaincode: "asset".into(),
        reads: vec![ReadCheck {
            key: "k".into(),
            version: None,
        }],
        writes: vec![Write {
            key: "k".into(),
            value: Some(b"v".to_vec()),
        }],
        events: vec![ChaincodeEvent {
            name: "e".into(),
            payload: b"p".to_vec(),
        }],
        result: b"r".to_vec(),
        fuel_used: 9,
    };
    let block = Block {
        header: header(),
        txs: vec![],
        results: vec![TxStatus::Committed],
        effects: vec![Some(e.clone())],
    }
    .to_bytes();
    for base in [e.to_bytes(), block] {
        for at in 0..base.len() - 3 {
            for len in [u32::MAX, MAX_LEN as u32, MAX_LEN as u32 + 1, 1 << 24] {
                let mut b = base.clone();
                b[at..at + 4].copy_from_slice(&len.to_be_bytes());
                let peak = peak_of(|| {
                    let _ = TxEffects::from_bytes(&b);
                    let _ = Block::from_bytes(&b);
                });
                assert!(
                    peak < 64 * 1024,
                    "a length of {len} at offset {at} made a decoder reserve {peak} bytes"
                );
            }
        }
    }
}
