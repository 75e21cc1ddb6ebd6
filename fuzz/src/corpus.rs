//! The corpus: real encodings of every decoder's input, one file per input under
//! `fuzz/corpus/<target>/`, written by `tally-fuzz corpus` from values built with the
//! protocol's own types and keys.

use std::path::Path;

/// The corpus of one target, sorted by file name so that runs are reproducible.
pub fn load(root: &Path, target: &str) -> std::io::Result<Vec<Vec<u8>>> {
    let mut files: Vec<_> = std::fs::read_dir(root.join(target))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.iter().map(std::fs::read).collect()
}

/// Writes `inputs` as the corpus of `target`, replacing what was there.
pub fn save(root: &Path, target: &str, inputs: &[Vec<u8>]) -> std::io::Result<()> {
    let dir = root.join(target);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    for (i, b) in inputs.iter().enumerate() {
        std::fs::write(dir.join(format!("{i:03}.bin")), b)?;
    }
    Ok(())
}
