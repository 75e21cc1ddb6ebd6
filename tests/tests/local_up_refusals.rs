//! `tallyctl up` and `down` refusing what they cannot do: manifests the planner rejects, more
//! than one consortium, dangling references, manifests changed under a resumed ledger, and
//! folders that `up` did not write. Each refusal must say what is wrong and lose nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn tallyctl() -> PathBuf {
    tally_tests::tallyctl_bin()
}

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(tallyctl())
        .args(args)
        .current_dir(cwd)
        .env("TALLY_NODE_BIN", tally_tests::node_bin())
        .stdin(Stdio::null())
        .output()
        .expect("tallyctl runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn example(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn planner_errors_name_the_resource_and_field_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = example("quickstart.yaml").replace("organization: org2", "organization: org9");
    let f = write(tmp.path(), "bad.yaml", &bad);
    let o = run(&["up", "-f", &f], tmp.path());
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("spec.organization")
            && e.contains("\"org9\" is not a member of Consortium \"quickstart\""),
        "{e}"
    );
    assert!(!tmp.path().join(".tally/quickstart/cluster.json").exists());
}

#[test]
fn one_consortium_at_a_time_and_no_dangling_references() {
    let tmp = tempfile::tempdir().unwrap();
    let two = format!(
        "{}\n---\n{}",
        example("quickstart.yaml"),
        example("notarization.yaml")
    );
    let f = write(tmp.path(), "two.yaml", &two);
    let e = stderr(&run(&["up", "-f", &f], tmp.path()));
    assert!(e.contains("one consortium at a time"), "{e}");

    let dangling = example("quickstart.yaml").replace(
        "consortium: quickstart\n  members",
        "consortium: elsewhere\n  members",
    );
    assert_ne!(dangling, example("quickstart.yaml"), "the fixture changed");
    let f = write(tmp.path(), "dangling.yaml", &dangling);
    let e = stderr(&run(&["up", "-f", &f], tmp.path()));
    assert!(
        e.contains("spec.consortium") && e.contains("no Consortium \"elsewhere\""),
        "{e}"
    );

    let f = write(tmp.path(), "empty.yaml", "# nothing\n");
    let e = stderr(&run(&["up", "-f", &f], tmp.path()));
    assert!(e.contains("no Consortium"), "{e}");
}

#[test]
fn down_removes_only_what_up_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let precious = tmp.path().join("precious");
    std::fs::create_dir_all(&precious).unwrap();
    std::fs::write(precious.join("thesis.txt"), "do not delete").unwrap();
    let o = run(&["--data-dir", "precious", "down"], tmp.path());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("does not look like a data directory"),
        "{}",
        stderr(&o)
    );
    assert!(precious.join("thesis.txt").exists());

    // `up` into a folder that holds something else refuses too.
    let f = write(tmp.path(), "q.yaml", &example("quickstart.yaml"));
    let o = run(&["--data-dir", "precious", "up", "-f", &f], tmp.path());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("choose another --data-dir"),
        "{}",
        stderr(&o)
    );
    assert!(precious.join("thesis.txt").exists());

    let o = run(&["--data-dir", "absent", "down"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Runs `up` until its endpoint table is printed, then stops it with SIGINT.
fn up_once(args: &[&str], cwd: &Path) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(tallyctl())
        .args(args)
        .current_dir(cwd)
        .env("TALLY_NODE_BIN", tally_tests::node_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tallyctl up starts");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("Ready.") {
                let _ = tx.send(());
            }
        }
    });
    let ready = rx.recv_timeout(Duration::from_secs(120));
    // SIGINT, as Ctrl-C would send.
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ready.is_ok(), "tallyctl up did not get ready");
    assert!(
        status.is_some_and(|s| s.success()),
        "tallyctl up did not stop cleanly: {status:?}"
    );
}

#[test]
fn a_resumed_ledger_refuses_changed_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let original = example("notarization.yaml");
    let f = write(tmp.path(), "n.yaml", &original);
    up_once(&["--data-dir", "d", "up", "-f", &f], tmp.path());

    // Another batch size on the channel is another genesis configuration.
    let changed = format!(
        "{original}\n---\napiVersion: tally.dev/v1alpha1\nkind: Channel\nmetadata: {{name: extra}}\nspec:\n  consortium: notarization\n  members: [court]\n  consenters: [court-peer]\n"
    );
    let g = write(tmp.path(), "changed.yaml", &changed);
    let o = run(&["--data-dir", "d", "up", "-f", &g], tmp.path());
    let e = stderr(&o);
    if e.contains("neither a Peer") {
        panic!("the fixture's Peer names changed: {e}");
    }
    assert!(!o.status.success());
    assert!(
        e.contains("the manifests changed") && e.contains("channel extra was added"),
        "{e}"
    );
    assert!(
        tmp.path().join("d/cluster.json").exists(),
        "nothing is lost"
    );

    let o = run(&["--data-dir", "d", "down"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!tmp.path().join("d").exists());
}
