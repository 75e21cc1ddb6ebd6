//! Writes the CRDs of every Tally kind into a folder (default `crds/`), one file per kind.
//! `--check` compares instead of writing and fails when a file is stale.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut dir = PathBuf::from("crds");
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("usage: tally-crdgen [--check] [DIR]   (default DIR: crds)");
                return ExitCode::SUCCESS;
            }
            other => dir = PathBuf::from(other),
        }
    }
    let mut stale = Vec::new();
    for (file, crd) in tally_api::all() {
        let yaml = match tally_api::to_yaml(&crd) {
            Ok(y) => y,
            Err(e) => {
                eprintln!("error: cannot render {file}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let path = dir.join(file);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                stale.push(path.display().to_string());
            }
            continue;
        }
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, yaml)) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    if !stale.is_empty() {
        eprintln!(
            "stale CRDs: {}; run `cargo run -p tally-api --bin tally-crdgen`",
            stale.join(", ")
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
