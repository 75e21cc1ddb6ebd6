//! The suite's fuzz pass: every decoder, its committed corpus, a fixed seed and a few
//! thousand mutants each (a few seconds in all). Longer runs: docs/testing.md.

use std::path::PathBuf;
use tally_fuzz::{alloc, corpus, targets, Target};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn iterations() -> u64 {
    std::env::var("TALLY_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000)
}

#[test]
fn every_decoder_survives_its_mutated_corpus() {
    let start = std::time::Instant::now();
    let mut executions = 0;
    for t in targets() {
        let seeds = corpus::load(&root(), t.name).unwrap_or_else(|e| {
            panic!("corpus of {} missing ({e}): run tally-fuzz corpus", t.name)
        });
        assert!(!seeds.is_empty(), "corpus of {} is empty", t.name);
        let stats = tally_fuzz::run(t, &seeds, iterations(), 1).unwrap_or_else(|f| panic!("{f}"));
        executions += stats.executions;
    }
    eprintln!(
        "{} targets, {executions} executions in {:.1} s",
        targets().len(),
        start.elapsed().as_secs_f64()
    );
}

/// Each seed input of the corpus decodes (the corpus is made of real encodings, not noise).
#[test]
fn the_corpus_holds_real_encodings() {
    for t in targets() {
        for input in corpus::load(&root(), t.name).unwrap_or_default() {
            assert_eq!(
                tally_fuzz::check(t, &input),
                Ok(true),
                "a corpus input of {} does not decode",
                t.name
            );
        }
    }
}

/// The harness itself finds what it is meant to find: a decoder that panics on some inputs,
/// and one that trusts a declared length.
#[test]
fn the_harness_catches_a_panic_and_an_allocation_trusting_a_length() {
    fn panics(b: &[u8]) -> Result<bool, String> {
        if b.len() > 3 && b[2] == 0x7f {
            panic!("boom");
        }
        Ok(false)
    }
    fn trusts_length(b: &[u8]) -> Result<bool, String> {
        if b.len() >= 4 {
            let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let v: Vec<u8> = Vec::with_capacity(n.min(1 << 30));
            std::hint::black_box(v);
        }
        Ok(false)
    }
    let seeds = vec![vec![0u8; 16]];
    let t = Target {
        name: "panics",
        check: panics,
    };
    let f = tally_fuzz::run(&t, &seeds, 100_000, 1).expect_err("the panic was not found");
    assert!(f.what.contains("panicked"), "{f}");
    let t = Target {
        name: "trusts_length",
        check: trusts_length,
    };
    let f = tally_fuzz::run(&t, &seeds, 100_000, 1).expect_err("the allocation was not found");
    assert!(f.what.contains("allocated"), "{f}");
}

/// A declared length far beyond the input, at every offset of every corpus input: each
/// decoder fails fast, without reserving what the length claims.
#[test]
fn huge_declared_lengths_are_refused_without_allocating_them() {
    for t in targets() {
        for input in corpus::load(&root(), t.name).unwrap_or_default() {
            for at in 0..input.len().saturating_sub(3) {
                for len in [u32::MAX, 64 * 1024 * 1024, 1 << 20] {
                    let mut b = input.clone();
                    b[at..at + 4].copy_from_slice(&len.to_be_bytes());
                    if let Err(what) = tally_fuzz::check(t, &b) {
                        panic!("{} with length {len} at {at}: {what}", t.name);
                    }
                }
            }
        }
    }
}
