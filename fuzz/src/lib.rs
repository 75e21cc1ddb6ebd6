//! A fuzz harness for Tally's decoders that runs on stable Rust: no cargo-fuzz, no nightly,
//! no coverage instrumentation. Each [`targets::Target`] is one decoder with the property it
//! must keep on any input (no panic; what decodes re-encodes to the same bytes; no allocation
//! out of proportion to the input). [`run`] mutates a corpus of real encodings (committed
//! under `fuzz/corpus/<target>/`) with bit flips, byte edits, truncations, splices and edits
//! of length fields, and checks every mutant under `catch_unwind`.
//!
//! The suite runs a short deterministic pass (`cargo test -p tally-fuzz`); longer runs are
//! `cargo run -p tally-fuzz --release -- run --iterations 10000000` (see docs/testing.md).

pub mod alloc;
pub mod corpus;
pub mod mutate;
pub mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

pub use mutate::{Mutator, Rng};
pub use targets::{targets, Target};

/// An input that broke a target's property, with what replays it.
#[derive(Debug)]
pub struct Finding {
    pub target: &'static str,
    pub seed: u64,
    pub iteration: u64,
    pub input: Vec<u8>,
    pub what: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at seed {} iteration {}: {} (input {} bytes: {})",
            self.target,
            self.seed,
            self.iteration,
            self.what,
            self.input.len(),
            hex(&self.input)
        )
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub executions: u64,
    /// Mutants the decoder accepted (each kept as a seed for later mutations).
    pub accepted: u64,
}

/// Checks one input against a target, turning a panic into a finding's message.
pub fn check(target: &Target, input: &[u8]) -> Result<bool, String> {
    alloc::reset_peak();
    let outcome = catch_unwind(AssertUnwindSafe(|| (target.check)(input)));
    let peak = alloc::peak();
    let accepted = match outcome {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(what)) => return Err(what),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            return Err(format!("panicked: {msg}"));
        }
    };
    let limit = alloc::limit_for(input.len());
    if peak > limit {
        return Err(format!(
            "allocated {peak} bytes at once for a {}-byte input (limit {limit})",
            input.len()
        ));
    }
    Ok(accepted)
}

/// Mutates `corpus` for `iterations` executions from `seed`; stops at the first finding.
pub fn run(
    target: &Target,
    corpus: &[Vec<u8>],
    iterations: u64,
    seed: u64,
) -> Result<Stats, Box<Finding>> {
    let mut pool: Vec<Vec<u8>> = corpus.to_vec();
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let keep = pool.len() + 256;
    let mut m = Mutator::new(seed);
    let mut stats = Stats::default();
    let finding = |iteration, input: Vec<u8>, what| {
        Box::new(Finding {
            target: target.name,
            seed,
            iteration,
            input,
            what,
        })
    };
    // The corpus itself first: every seed must hold the property unmutated.
    for (i, input) in corpus.iter().enumerate() {
        check(target, input).map_err(|w| finding(i as u64, input.clone(), w))?;
    }
    for iteration in 0..iterations {
        let input = m.mutate(&pool);
        stats.executions += 1;
        match check(target, &input) {
            Ok(true) => {
                stats.accepted += 1;
                // Inputs that decode are kept: mutating them reaches deeper than the seeds.
                if pool.len() < keep {
                    pool.push(input);
                } else {
                    let at = corpus.len() + m.rng.below((keep - corpus.len()) as u64) as usize;
                    pool[at] = input;
                }
            }
            Ok(false) => {}
            Err(what) => return Err(finding(iteration, input, what)),
        }
    }
    Ok(stats)
}

/// Runs every target over its committed corpus.
pub fn run_all(
    corpus_root: &Path,
    iterations: u64,
    seed: u64,
) -> Result<Vec<(&'static str, Stats)>, Box<Finding>> {
    let mut out = Vec::new();
    for t in targets() {
        let corpus = corpus::load(corpus_root, t.name).unwrap_or_default();
        out.push((t.name, run(t, &corpus, iterations, seed)?));
    }
    Ok(out)
}
