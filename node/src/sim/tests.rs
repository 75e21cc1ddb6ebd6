use super::*;

/// Seeds to run: `TALLY_SIM_SEED=N` replays one, `TALLY_SIM_SEEDS=N` runs N from the first.
fn seeds(default: u64, first: u64) -> Vec<u64> {
    if let Some(s) = std::env::var("TALLY_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    let n = std::env::var("TALLY_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (first..first + n).collect()
}

fn run_all(name: &str, seeds: &[u64], opts: &SimOptions) -> Report {
    let start = Instant::now();
    let mut total = Report::default();
    for &seed in seeds {
        match run_seed(seed, opts) {
            Ok(r) => {
                total.height += r.height;
                total.submitted += r.submitted;
                total.committed += r.committed;
                total.duplicates += r.duplicates;
                total.crashes += r.crashes;
                total.partitions += r.partitions;
                total.delivered += r.delivered;
                total.dropped += r.dropped;
            }
            Err(f) => panic!("{name}: {f}"),
        }
    }
    eprintln!(
        "{name}: {} seeds in {:.1} s: {} blocks, {} of {} submissions committed, {} ordered twice, {} crashes, {} partitions, {} messages delivered, {} dropped",
        seeds.len(),
        start.elapsed().as_secs_f64(),
        total.height,
        total.committed,
        total.submitted,
        total.duplicates,
        total.crashes,
        total.partitions,
        total.delivered,
        total.dropped
    );
    total
}

#[test]
fn nodes_never_disagree_nor_lose_a_block_under_faults() {
    let total = run_all("hostile", &seeds(500, 1), &SimOptions::default());
    assert!(total.committed > 0, "the runs committed nothing");
}

/// Every fault but lost or duplicated messages.
fn no_loss() -> SimOptions {
    SimOptions {
        faults: Faults {
            drop: 0.0,
            duplicate: 0.0,
            partition: 0.0,
            ..Faults::hostile()
        },
        ..SimOptions::default()
    }
}

/// Without lost or duplicated messages, a submission is ordered once even across leader
/// changes, crashes and restarts: the node proposes again only what is certainly lost.
#[test]
fn a_submission_is_ordered_once_across_leader_changes() {
    let total = run_all("no loss", &seeds(200, 1_000_000), &no_loss());
    assert!(total.crashes > 0, "the runs changed no leader");
    assert_eq!(total.duplicates, 0, "submissions ordered twice");
}

#[test]
fn a_seed_replays_exactly() {
    let opts = SimOptions::default();
    let a = run_seed(7, &opts).unwrap_or_else(|f| panic!("{f}"));
    let b = run_seed(7, &opts).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(
        (
            a.height,
            a.submitted,
            a.committed,
            a.delivered,
            a.dropped,
            a.crashes
        ),
        (
            b.height,
            b.submitted,
            b.committed,
            b.delivered,
            b.dropped,
            b.crashes
        )
    );
}

/// The checker itself: a node whose block differs from the one the others committed at that
/// height is reported, and so is a node that lost a block.
#[test]
fn the_checker_notices_a_forked_or_lost_block() {
    let mut sim = Sim::new(3, SimOptions::default()).unwrap_or_else(|f| panic!("{f}"));
    let faults = Faults::none();
    for _ in 0..2000 {
        if sim.canon.len() >= 3 {
            break;
        }
        if sim.rng.below(20) == 0 {
            sim.submit(0).unwrap_or_else(|f| panic!("{f}"));
        }
        if sim.net.is_empty() {
            sim.tick(&faults).unwrap_or_else(|f| panic!("{f}"));
        } else {
            sim.deliver(&faults).unwrap_or_else(|f| panic!("{f}"));
        }
    }
    assert!(sim.canon.len() >= 3, "the run made no blocks");
    let ledger = sim.nodes[1].run.as_ref().unwrap().chan.ledger.clone();
    let mut block = ledger.block(1).unwrap().unwrap();
    block.header.timestamp_ms += 1;
    let key = ledger.keys.block(1);
    ledger.db().put(&key, block.to_bytes()).unwrap();
    sim.nodes[1].checked = 0;
    let err = sim.check(1).expect_err("a forked block went unnoticed");
    assert!(err.what.contains("another node committed"), "{err}");

    ledger.db().delete(&key).unwrap();
    sim.nodes[1].checked = 0;
    let err = sim.check(1).expect_err("a lost block went unnoticed");
    assert!(err.what.contains("lacks block 1"), "{err}");
}

/// Seeds in which the earlier rule (everything of the node's in flight proposed again after
/// any leader change, and anything older than 3 s) ordered a submission twice.
#[test]
fn seeds_that_ordered_a_submission_twice_before_the_fix() {
    for seed in [1_000_000, 1_000_131] {
        let r = run_seed(seed, &no_loss()).unwrap_or_else(|f| panic!("{f}"));
        assert!(r.committed > 0, "seed {seed} committed nothing");
        assert_eq!(r.duplicates, 0, "seed {seed} ordered a submission twice");
    }
}
