//! One consortium, two sides, one machine: the supply-chain-finance example split so that
//! side A (`tallyctl up` in one data directory) hosts the core enterprise and both suppliers
//! and side B (another data directory, another loopback block) hosts the bank. Everything goes
//! through the `tallyctl` command line, as two teams would: bundles exported with `org
//! export` and handed over as files, each side's `up` stopping at "needs approval" and naming
//! what, approvals made with `channel approve-genesis` on the owning side and exchanged as
//! files, both `up`s completing, writes on either side read back on the other, the chains
//! agreeing. Both sides compute the very same genesis bytes. Attacks: an approval of another
//! genesis, and approvals signed by side A's keys posing as the bank, are refused with the
//! reason and nothing is created.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tally_tests::tallyctl_up::Up;
use tally_tests::{node_bin, tallyctl_bin};

const POLL_DEADLINE: Duration = Duration::from_secs(90);
const EXIT_AWAITING: i32 = 4;

const SIDE_A: &[&str] = &["core-enterprise", "supplier-tier1", "supplier-tier2"];

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

fn ctl(args: &[&str]) -> Out {
    let o = Command::new(tallyctl_bin())
        .args(args)
        .env("TALLY_NODE_BIN", node_bin())
        .stdin(Stdio::null())
        .output()
        .expect("run tallyctl");
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn ok(args: &[&str]) -> String {
    let o = ctl(args);
    assert_eq!(o.code, Some(0), "tallyctl {args:?} failed:\n{}", o.all());
    o.stdout
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn pending_of(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("cluster.json")).expect("cluster.json");
    let v: Value = serde_json::from_str(&text).expect("cluster.json is JSON");
    v["pending"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `tx get` until it answers `want`.
fn read_back(dir: &Path, org: &str, channel: &str, key: &str, want: &str) {
    let deadline = Instant::now() + POLL_DEADLINE;
    loop {
        let o = ctl(&[
            "--data-dir",
            &s(dir),
            "--org",
            org,
            "tx",
            "get",
            "--channel",
            channel,
            key,
        ]);
        if o.code == Some(0) && o.stdout.contains(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} never read back as {want} on {} as {org}:\n{}",
            dir.display(),
            o.all()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn two_sides_of_the_supply_chain_finance_consortium() {
    let root = tempfile::tempdir().expect("tempdir");
    let root_path = root.path().to_path_buf();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples/supply-chain-finance.yaml");
    let m = s(&manifest);
    let a = root_path.join("side-a");
    let b = root_path.join("side-b");
    let (da, db) = (s(&a), s(&b));
    let file = |name: &str| root_path.join(name);

    // B starts first: the bank's node, and no channel yet (every channel has a member of A,
    // whose bundle has not arrived).
    let o = ctl(&[
        "up",
        "-f",
        &m,
        "--data-dir",
        &db,
        "--no-console",
        "--external",
        "core-enterprise,supplier-tier1,supplier-tier2",
    ]);
    assert_eq!(o.code, Some(EXIT_AWAITING), "{}", o.all());
    assert!(o.stderr.contains("channel receivables waits for the bundle of core-enterprise, supplier-tier1, supplier-tier2"), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("channel financing waits for the bundle of core-enterprise"),
        "{}",
        o.stderr
    );

    // B exports the bank's bundle: certificates and nodes, never a key.
    let bank = file("bank.bundle.yaml");
    ok(&[
        "--data-dir",
        &db,
        "org",
        "export",
        "bank",
        "--out",
        &s(&bank),
    ]);
    let text = std::fs::read_to_string(&bank).expect("bundle");
    assert!(text.contains("kind: OrganizationBundle"), "{text}");
    assert!(
        text.contains("bank-peer-0") && text.contains("raftId"),
        "{text}"
    );
    assert!(
        !text.contains("PRIVATE KEY"),
        "a key in the bundle:\n{text}"
    );
    // A side does not export what it does not host.
    let o = ctl(&["--data-dir", &db, "org", "export", "core-enterprise"]);
    assert_ne!(o.code, Some(0));
    assert!(
        o.stderr.contains("has no organization core-enterprise"),
        "{}",
        o.stderr
    );

    // A, with the bank's bundle: its nodes come up, the channels wait for the bank.
    let o = ctl(&[
        "up",
        "-f",
        &m,
        "-f",
        &s(&bank),
        "--data-dir",
        &da,
        "--no-console",
    ]);
    assert_eq!(o.code, Some(EXIT_AWAITING), "{}", o.all());
    for ch in ["receivables", "financing"] {
        assert!(
            o.stderr
                .contains(&format!("channel {ch} needs the approval of its genesis"))
                && o.stderr.contains(&format!(
                    "by bank; the genesis is {}",
                    s(&a.join("genesis").join(format!("{ch}.json")))
                )),
            "{}",
            o.stderr
        );
    }
    assert!(
        o.stderr
            .contains("--org bank --as admin channel approve-genesis"),
        "{}",
        o.stderr
    );
    let mut bundles_of_a = Vec::new();
    for org in SIDE_A {
        let f = file(&format!("{org}.bundle.yaml"));
        ok(&["--data-dir", &da, "org", "export", org, "--out", &s(&f)]);
        assert!(!std::fs::read_to_string(&f).unwrap().contains("PRIVATE KEY"));
        bundles_of_a.push(s(&f));
    }
    let ext = ctl(&["--data-dir", &da, "org", "export", "bank"]);
    assert!(ext.stderr.contains("runs elsewhere"), "{}", ext.all());

    // B again, with A's bundles: now the channels need A's organizations' approvals.
    let mut b_up: Vec<String> = ["up", "-f", &m].iter().map(|x| x.to_string()).collect();
    for f in &bundles_of_a {
        b_up.extend(["-f".to_string(), f.clone()]);
    }
    b_up.extend(["--data-dir", &db, "--no-console"].map(String::from));
    let b_args: Vec<&str> = b_up.iter().map(String::as_str).collect();
    let o = ctl(&b_args);
    assert_eq!(o.code, Some(EXIT_AWAITING), "{}", o.all());
    assert!(
        o.stderr
            .contains("by core-enterprise, supplier-tier1, supplier-tier2; the genesis is"),
        "{}",
        o.stderr
    );

    // Both sides planned the same genesis, byte for byte.
    for ch in ["receivables", "financing"] {
        let ga = std::fs::read(a.join("genesis").join(format!("{ch}.json"))).expect("A's genesis");
        let gb = std::fs::read(b.join("genesis").join(format!("{ch}.json"))).expect("B's genesis");
        assert!(ga == gb, "the two sides' genesis of {ch} differ");
    }

    // Each side approves with its own admins; the approvals travel as files.
    let for_a = file("for-a");
    let for_b = file("for-b");
    std::fs::create_dir_all(&for_a).unwrap();
    std::fs::create_dir_all(&for_b).unwrap();
    for ch in ["receivables", "financing"] {
        let g = s(&b.join("genesis").join(format!("{ch}.json")));
        let out = s(&for_a.join(format!("bank-{ch}.json")));
        ok(&[
            "--data-dir",
            &db,
            "--org",
            "bank",
            "--as",
            "admin",
            "channel",
            "approve-genesis",
            "--genesis",
            &g,
            "--out",
            &out,
        ]);
        let g = s(&a.join("genesis").join(format!("{ch}.json")));
        let members: &[&str] = if ch == "receivables" {
            SIDE_A
        } else {
            &["core-enterprise"]
        };
        for org in members {
            let out = s(&for_b.join(format!("{org}-{ch}.json")));
            ok(&[
                "--data-dir",
                &da,
                "--org",
                org,
                "--as",
                "admin",
                "channel",
                "approve-genesis",
                "--genesis",
                &g,
                "--out",
                &out,
            ]);
        }
    }

    // Attack 1: the bank approves a different genesis (bigger blocks); A refuses it.
    let genesis_a = a.join("genesis").join("receivables.json");
    let mut other: Value =
        serde_json::from_str(&std::fs::read_to_string(&genesis_a).unwrap()).unwrap();
    let max = other["batch"]["max_txs"].as_u64().expect("batch.max_txs");
    other["batch"]["max_txs"] = Value::from(max + 1);
    let other_path = file("other-genesis.json");
    std::fs::write(&other_path, serde_json::to_vec_pretty(&other).unwrap()).unwrap();
    let wrong = file("bank-other.json");
    ok(&[
        "--data-dir",
        &db,
        "--org",
        "bank",
        "--as",
        "admin",
        "channel",
        "approve-genesis",
        "--genesis",
        &s(&other_path),
        "--out",
        &s(&wrong),
    ]);
    let o = ctl(&[
        "up",
        "-f",
        &m,
        "-f",
        &s(&bank),
        "--data-dir",
        &da,
        "--no-console",
        "--approval",
        &s(&wrong),
    ]);
    assert_eq!(o.code, Some(1), "{}", o.all());
    assert!(
        o.stderr.contains("refused") && o.stderr.contains("bank-other.json"),
        "{}",
        o.stderr
    );
    assert_eq!(
        pending_of(&a),
        ["financing", "receivables"],
        "a channel was created"
    );

    // Attack 2: side A's own admin signs and the file says it is the bank's.
    let posing = file("posing.json");
    ok(&[
        "--data-dir",
        &da,
        "--org",
        "core-enterprise",
        "--as",
        "admin",
        "channel",
        "approve-genesis",
        "--genesis",
        &s(&genesis_a),
        "--out",
        &s(&posing),
    ]);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&posing).unwrap()).unwrap();
    v["organization"] = Value::from("bank");
    std::fs::write(&posing, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let o = ctl(&[
        "up",
        "-f",
        &m,
        "-f",
        &s(&bank),
        "--data-dir",
        &da,
        "--no-console",
        "--approval",
        &s(&posing),
    ]);
    assert_eq!(o.code, Some(1), "{}", o.all());
    assert!(
        o.stderr.contains("says it is bank's approval")
            && o.stderr.contains("certificate is core-enterprise's"),
        "{}",
        o.stderr
    );

    // Attack 3: a CA that side A made, naming itself bank, signs as the bank's admin.
    let fake = file("fake-bank");
    ok(&["org", "create", "--name", "bank", "--out", &s(&fake)]);
    let admin =
        tally_protocol::Identity::load(&fake.join("admins").join("admin")).expect("fake admin");
    let cfg: tally_protocol::ChannelConfig =
        serde_json::from_str(&std::fs::read_to_string(&genesis_a).unwrap()).unwrap();
    let forged = tally_protocol::genesis::approve(&cfg, &admin);
    let forged_path = file("forged.json");
    let forged_json = serde_json::json!({
        "organization": "bank",
        "channel": "receivables",
        "genesis": cfg.hash().to_string(),
        "certificate": hex::encode(&forged.certificate),
        "signature": hex::encode(&forged.signature),
    });
    std::fs::write(&forged_path, forged_json.to_string()).unwrap();
    let o = ctl(&[
        "up",
        "-f",
        &m,
        "-f",
        &s(&bank),
        "--data-dir",
        &da,
        "--no-console",
        "--approval",
        &s(&forged_path),
    ]);
    assert_eq!(o.code, Some(1), "{}", o.all());
    assert!(
        o.stderr.contains("refused") && o.stderr.contains("forged.json"),
        "{}",
        o.stderr
    );
    assert_eq!(
        pending_of(&a),
        ["financing", "receivables"],
        "a channel was created"
    );

    // With the real approvals both sides complete.
    let a_args: Vec<String> = [
        "up",
        "-f",
        &m,
        "-f",
        &s(&bank),
        "--data-dir",
        &da,
        "--no-console",
        "--approval",
        &s(&for_a),
    ]
    .map(String::from)
    .to_vec();
    // A new channel elects its first leader once every consenter holds the genesis, so the
    // two `up`s wait for each other.
    let a_starting = Up::spawn(&a_args, file("a-up.stderr"));
    let mut b_args = b_up.clone();
    b_args.extend(["--approval".to_string(), s(&for_b)]);
    let b_starting = Up::spawn(&b_args, file("b-up.stderr"));
    let side_a = a_starting.ready();
    let side_b = b_starting.ready();
    assert!(pending_of(&a).is_empty());
    assert!(pending_of(&b).is_empty());

    // A write on A reads back on B's node, and the other way round.
    ok(&[
        "--data-dir",
        &da,
        "--org",
        "supplier-tier2",
        "tx",
        "put",
        "--channel",
        "receivables",
        "voucher/V-1",
        "from-a",
    ]);
    read_back(&b, "bank", "receivables", "voucher/V-1", "from-a");
    ok(&[
        "--data-dir",
        &db,
        "--org",
        "bank",
        "tx",
        "put",
        "--channel",
        "financing",
        "credit-line",
        "from-b",
    ]);
    read_back(&a, "core-enterprise", "financing", "credit-line", "from-b");

    // The chains agree, seen from either side; each side's status shows the other's nodes.
    for (dir, org, other_node) in [
        (&da, "core-enterprise", "bank-peer-0"),
        (&db, "bank", "core-enterprise-peer-0"),
    ] {
        for ch in ["receivables", "financing"] {
            let deadline = Instant::now() + POLL_DEADLINE;
            loop {
                let o = ctl(&[
                    "--data-dir",
                    dir,
                    "--org",
                    org,
                    "status",
                    "--channel",
                    ch,
                    "--output",
                    "json",
                ]);
                let v: Value = serde_json::from_str(&o.stdout).unwrap_or(Value::Null);
                let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
                let other = nodes.iter().find(|n| n["name"] == other_node);
                let good = v["agree"] == Value::Bool(true)
                    && nodes.iter().all(|n| n["reachable"] == Value::Bool(true))
                    && other.is_some_and(|n| n["height"].as_u64().is_some());
                if good {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{dir} {ch}: the chains do not agree:\n{}",
                    o.all()
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }

    assert_eq!(side_b.stop(), Some(0));
    // A's status still lists the bank's node, now unreachable, beside its own.
    let deadline = Instant::now() + POLL_DEADLINE;
    loop {
        let o = ctl(&[
            "--data-dir",
            &da,
            "--org",
            "core-enterprise",
            "status",
            "--channel",
            "receivables",
            "--output",
            "json",
        ]);
        let v: Value = serde_json::from_str(&o.stdout).unwrap_or(Value::Null);
        let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
        let bank_down = nodes
            .iter()
            .any(|n| n["name"] == "bank-peer-0" && n["reachable"] == Value::Bool(false));
        let ours_up = nodes
            .iter()
            .filter(|n| n["name"] != "bank-peer-0")
            .all(|n| n["reachable"] == Value::Bool(true));
        if bank_down && ours_up && nodes.len() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A's status after B stopped:\n{}",
            o.all()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // B's directory goes while A still runs: A's nodes answering is no reason to keep it.
    ok(&["down", "--data-dir", &db]);
    assert!(!b.exists());
    assert_eq!(side_a.stop(), Some(0));
    // Resuming a completed side needs no approval any more (and runs without B: the
    // channels' majorities are A's).
    let again = Up::start(&a_args[..8], file("a-up-2.stderr"));
    assert_eq!(again.stop(), Some(0));
    ok(&["down", "--data-dir", &da]);
    drop(root);
}
