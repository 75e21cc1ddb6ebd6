//! Scale benchmark (not part of the suite): one operator against many consortia on a real
//! control plane. Prints reconcile p50/p99 per kind (from the operator's own histogram), the
//! time until every resource is Ready, and the operator's peak memory.
//!
//! `cargo build -p tally-operator && cargo test -p tally-tests --test operator_scale -- --ignored --nocapture`
//! (`TALLY_SCALE_CONSORTIA`, default 200). Each consortium has two organizations (two CAs,
//! four identities) and one Peer per organization with `replicas: 0`: the operator plans and
//! applies everything a Peer gets (Services, ConfigMap, node Secrets) without creating ledger
//! pods, which this 2-core machine could not run two hundred of.

use std::time::{Duration, Instant};
use tally_tests::env_usize;
use tally_tests::operator::{control_plane_with_crds, get_json, http_get, wait_for, Operator};

/// The `q` quantile of a Prometheus histogram's cumulative buckets, by linear interpolation.
fn quantile(text: &str, name: &str, kind: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| {
            l.starts_with(&format!("{name}_bucket{{")) && l.contains(&format!("kind=\"{kind}\""))
        })
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let v: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    let want = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, c) in &buckets {
        if c >= want {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let span = (c - prev.1).max(1.0);
            return Some(prev.0 + (le - prev.0) * (want - prev.1) / span);
        }
        prev = (le, c);
    }
    None
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[test]
#[ignore = "benchmark: run with --ignored"]
fn many_consortia() {
    let n = env_usize("TALLY_SCALE_CONSORTIA", 200);
    let Some(cp) = control_plane_with_crds("operator-scale") else {
        return;
    };
    cp.kubectl_ok(&["create", "namespace", "scale"]);
    let mut yaml = String::new();
    for i in 0..n {
        yaml.push_str(&format!(
            "---\napiVersion: tally.dev/v1alpha1\nkind: Consortium\nmetadata: {{name: c{i}}}\nspec:\n  organizations: [{{name: a}}, {{name: b}}]\n"
        ));
        for org in ["a", "b"] {
            yaml.push_str(&format!(
                "---\napiVersion: tally.dev/v1alpha1\nkind: Peer\nmetadata: {{name: c{i}-{org}}}\nspec: {{consortium: c{i}, organization: {org}, replicas: 0}}\n"
            ));
        }
    }
    let op = Operator::start(&cp, "op-scale");
    let t = Instant::now();
    let r = cp.kubectl_stdin(
        &["-n", "scale", "apply", "--server-side", "-f", "-"],
        Some(&yaml),
    );
    assert!(r.ok, "apply: {}", r.stderr);
    let applied = t.elapsed();
    let want = 3 * n;
    wait_for("every resource Ready", Duration::from_secs(1800), || {
        let list = get_json(&cp, &["-n", "scale", "get", "consortia,peers"]);
        let ready = list["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|o| tally_tests::operator::ready(o).is_some_and(|(s, _)| s == "True"))
                    .count()
            })
            .unwrap_or(0);
        if ready == want {
            Ok(())
        } else {
            Err(format!("{ready} of {want} Ready"))
        }
    });
    let all_ready = t.elapsed();
    let metrics = http_get(&op.metrics).unwrap_or_default();
    let name = "tally_operator_reconcile_duration_seconds";
    println!(
        "\noperator scale: {n} consortia, {} peers ({want} resources), one operator",
        2 * n
    );
    println!(
        "  applied in {:.1} s; all Ready {:.1} s after the apply began",
        applied.as_secs_f64(),
        all_ready.as_secs_f64()
    );
    for kind in ["Consortium", "Peer"] {
        let count =
            tally_tests::metric_value(&metrics, &format!("{name}_count"), &[("kind", kind)])
                .unwrap_or(0.0);
        println!(
            "  {kind:<10} reconciles {count:>6}  p50 {:>7.1} ms  p99 {:>7.1} ms",
            1000.0 * quantile(&metrics, name, kind, 0.5).unwrap_or(f64::NAN),
            1000.0 * quantile(&metrics, name, kind, 0.99).unwrap_or(f64::NAN),
        );
    }
    println!("  operator peak RSS {:.1} MiB", peak_rss_mib(op.pid()));
    drop(op);
}
