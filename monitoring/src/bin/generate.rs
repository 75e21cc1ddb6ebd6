//! Writes the dashboards, the alert rules, their promtool tests and the chart's PrometheusRule
//! from `monitoring/src`. `--check` compares instead of writing and fails when a file is stale.

use anyhow::Context;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut check = false;
    let mut root: Option<PathBuf> = None;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("usage: tally-monitoring [--check] [REPO_ROOT]   (default: this crate's repository)");
                return Ok(());
            }
            other => root = Some(PathBuf::from(other)),
        }
    }
    // The repository root is the parent of this crate's folder, wherever cargo runs from.
    let root = root.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    if check {
        tally_monitoring::files::check(&root)?;
        println!("dashboards, rules, rule tests and the chart's PrometheusRule are up to date");
    } else {
        for f in tally_monitoring::files::write(&root)
            .with_context(|| format!("writing under {}", root.display()))?
        {
            println!("wrote {f}");
        }
    }
    Ok(())
}
