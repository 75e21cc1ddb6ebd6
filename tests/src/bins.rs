//! Finding the executables the suites run (`tally-node`, `tallyctl`, `tally-console`) and the
//! suites' scale settings from the environment.

use std::path::{Path, PathBuf};

/// The tally-node executable: `TALLY_NODE_BIN`, else the one cargo built next to this test
/// binary, else under `$CARGO_TARGET_DIR` or the workspace's `target/`.
///
/// # Panics
/// With a hint to build it when none is found.
pub fn node_bin() -> PathBuf {
    static ONCE: std::sync::Once = std::sync::Once::new();
    workspace_bin(
        "tally-node",
        "TALLY_NODE_BIN",
        "tally-node",
        &["node/src", "node/src/ledger", "protocol/src", "runtime/src"],
        &ONCE,
    )
}

/// The tallyctl executable: `TALLY_CTL_BIN`, else found as [`node_bin`] finds tally-node.
///
/// # Panics
/// With a hint to build it when none is found.
pub fn tallyctl_bin() -> PathBuf {
    static ONCE: std::sync::Once = std::sync::Once::new();
    workspace_bin(
        "tallyctl",
        "TALLY_CTL_BIN",
        "tallyctl",
        &[
            "tallyctl/src",
            "tallyctl/src/cli",
            "client/src",
            "planner/src",
            "api/src",
            "protocol/src",
        ],
        &ONCE,
    )
}

/// The tally-console executable: `TALLY_CONSOLE_BIN`, else found as [`node_bin`] finds
/// tally-node.
///
/// # Panics
/// With a hint to build it when none is found.
pub fn console_bin() -> PathBuf {
    static ONCE: std::sync::Once = std::sync::Once::new();
    workspace_bin(
        "tally-console",
        "TALLY_CONSOLE_BIN",
        "tally-console",
        &[
            "console/src",
            "console/src/pages",
            "console/assets",
            "client/src",
            "protocol/src",
        ],
        &ONCE,
    )
}

/// An executable of the workspace: `$env`, else the one cargo built next to this test binary,
/// else under `$CARGO_TARGET_DIR` or the workspace's `target/`. Warns once (through `once`)
/// when a file in `sources` changed after it was built: the suites would test old code.
pub(crate) fn workspace_bin(
    name: &str,
    env: &str,
    package: &str,
    sources: &[&str],
    once: &'static std::sync::Once,
) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env}={} is not a file", p.display());
        return p;
    }
    let mut candidates = Vec::new();
    // target/debug/deps/<test binary> -> target/debug/<name>
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(|deps| deps.parent()) {
            candidates.push(profile_dir.join(name));
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("debug").join(name));
    }
    candidates.push(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/debug")
            .join(name),
    );
    for c in &candidates {
        if c.is_file() {
            once.call_once(|| warn_if_stale(c, package, sources));
            return c.clone();
        }
    }
    panic!(
        "the {name} executable was not found (looked at {}).\n\
         Build it first: `cargo build -p tally-node -p tallyctl -p tally-console`, or set {env}.",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

pub(crate) fn warn_if_stale(bin: &Path, package: &str, sources: &[&str]) {
    let Ok(built) = bin.metadata().and_then(|m| m.modified()) else {
        return;
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for dir in sources {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                    newest = Some((t, e.path()));
                }
            }
        }
    }
    if let Some((t, p)) = newest {
        if t > built {
            eprintln!(
                "warning: {} is older than {}; run `cargo build -p {package}` to test the current code",
                bin.display(),
                p.display()
            );
        }
    }
}

/// A number from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}
