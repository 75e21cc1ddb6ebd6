//! `tally-fuzz`: longer fuzz runs than the suite's, and the corpus generator.
//!
//! ```text
//! tally-fuzz run [--target NAME] [--iterations N] [--seed S]   mutate the corpus, report findings
//! tally-fuzz corpus                                            rewrite fuzz/corpus from real values
//! tally-fuzz replay NAME FILE                                  check one input
//! tally-fuzz list                                              the targets
//! ```

use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use tally_fuzz::{corpus, targets};

#[global_allocator]
static ALLOC: tally_fuzz::alloc::Counting = tally_fuzz::alloc::Counting;

fn corpus_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    match args.first().map(String::as_str) {
        Some("run") => {
            let iterations: u64 = flag("--iterations")
                .map(|s| s.parse())
                .transpose()
                .context("--iterations")?
                .unwrap_or(1_000_000);
            let seed: u64 = flag("--seed")
                .map(|s| s.parse())
                .transpose()
                .context("--seed")?
                .unwrap_or(1);
            let only = flag("--target");
            for t in targets::targets() {
                if only.as_deref().is_some_and(|o| o != t.name) {
                    continue;
                }
                let seeds = corpus::load(&corpus_root(), t.name).unwrap_or_default();
                let start = std::time::Instant::now();
                match tally_fuzz::run(t, &seeds, iterations, seed) {
                    Ok(s) => println!(
                        "{:<22} {:>10} executions ({:.0}/s), {} accepted",
                        t.name,
                        s.executions,
                        s.executions as f64 / start.elapsed().as_secs_f64(),
                        s.accepted
                    ),
                    Err(f) => bail!("finding: {f}"),
                }
            }
            Ok(())
        }
        Some("corpus") => {
            let seeds = targets::seeds().map_err(|e| anyhow!("building the corpus: {e}"))?;
            for (name, inputs) in seeds {
                corpus::save(&corpus_root(), name, &inputs)?;
                println!("{name}: {} inputs", inputs.len());
            }
            Ok(())
        }
        Some("replay") => {
            let (Some(name), Some(file)) = (args.get(1), args.get(2)) else {
                bail!("usage: tally-fuzz replay NAME FILE");
            };
            let t = targets::target(name).ok_or_else(|| anyhow!("no target {name}"))?;
            let input = std::fs::read(file).with_context(|| format!("reading {file}"))?;
            match tally_fuzz::check(t, &input) {
                Ok(accepted) => println!("ok (decoded: {accepted})"),
                Err(what) => bail!("{what}"),
            }
            Ok(())
        }
        Some("list") => {
            for t in targets::targets() {
                println!("{}", t.name);
            }
            Ok(())
        }
        _ => bail!("usage: tally-fuzz run|corpus|replay|list (see the source's header)"),
    }
}
