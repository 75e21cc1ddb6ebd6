//! The operator's own reach into a backup repository: removing a backup (its manifest, then
//! the chunks that no remaining manifest names). Making and reading backups is the nodes'
//! and `tally-node backup`'s; the layout is theirs (docs/backup.md): `manifests/<channel>/…`
//! and `chunks/<sha256>`.

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Url(String),
    #[error(transparent)]
    Store(#[from] object_store::Error),
    #[error("manifest {path} is not readable: {message}")]
    Manifest { path: String, message: String },
}

pub struct Removed {
    pub chunks: usize,
}

fn open(
    url: &str,
    options: &BTreeMap<String, String>,
) -> Result<(Box<dyn ObjectStore>, Path), StoreError> {
    let u = url::Url::parse(url).map_err(|e| StoreError::Url(format!("{url}: {e}")))?;
    let (store, prefix) = object_store::parse_url_opts(&u, options.iter())?;
    Ok((store, prefix))
}

fn under(prefix: &Path, rel: &str) -> Path {
    let mut p = prefix.clone();
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        p = p.join(part);
    }
    p
}

/// The chunk hashes a manifest names.
fn chunks_of(path: &str, bytes: &[u8]) -> Result<Vec<String>, StoreError> {
    let bad = |message: String| StoreError::Manifest {
        path: path.to_string(),
        message,
    };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let list = v
        .get("chunks")
        .and_then(|c| c.as_array())
        .ok_or_else(|| bad("no chunk list".into()))?;
    list.iter()
        .map(|c| {
            c.get("hash")
                .and_then(|h| h.as_str())
                .map(str::to_string)
                .ok_or_else(|| bad("a chunk without a hash".into()))
        })
        .collect()
}

/// Removes the manifest `manifest` (a path inside the repository) and then every chunk no
/// other manifest of the repository names. A manifest already gone is not an error.
pub async fn remove_backup(
    url: &str,
    options: &BTreeMap<String, String>,
    manifest: &str,
) -> Result<Removed, StoreError> {
    let (store, prefix) = open(url, options)?;
    match store.delete(&under(&prefix, manifest)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let mut named = HashSet::new();
    let manifests: Vec<_> = store
        .list(Some(&under(&prefix, "manifests")))
        .try_collect()
        .await?;
    for m in manifests {
        let bytes = store.get(&m.location).await?.bytes().await?;
        named.extend(chunks_of(m.location.as_ref(), &bytes)?);
    }
    let chunks: Vec<_> = store
        .list(Some(&under(&prefix, "chunks")))
        .try_collect()
        .await?;
    let mut removed = 0;
    for c in chunks {
        let Some(name) = c.location.filename() else {
            continue;
        };
        if !named.contains(name) {
            match store.delete(&c.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Removed { chunks: removed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn removing_a_backup_keeps_the_chunks_others_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("manifests/ch")).expect("mkdir");
        std::fs::create_dir_all(root.join("chunks")).expect("mkdir");
        for c in ["aa", "bb", "cc"] {
            std::fs::write(root.join("chunks").join(c), c).expect("chunk");
        }
        let m = |chunks: &[&str]| {
            serde_json::json!({"chunks": chunks.iter().map(|h| serde_json::json!({"hash": h})).collect::<Vec<_>>()})
                .to_string()
        };
        std::fs::write(root.join("manifests/ch/1.json"), m(&["aa", "bb"])).expect("m1");
        std::fs::write(root.join("manifests/ch/2.json"), m(&["bb", "cc"])).expect("m2");
        let url = format!("file://{}", root.display());
        let r = remove_backup(&url, &BTreeMap::new(), "manifests/ch/1.json")
            .await
            .expect("removed");
        assert_eq!(r.chunks, 1);
        assert!(!root.join("manifests/ch/1.json").exists());
        assert!(!root.join("chunks/aa").exists());
        assert!(root.join("chunks/bb").exists() && root.join("chunks/cc").exists());
        // Again: nothing more goes.
        let r = remove_backup(&url, &BTreeMap::new(), "manifests/ch/1.json")
            .await
            .expect("removed");
        assert_eq!(r.chunks, 0);
        assert!(root.join("chunks/bb").exists());
    }

    #[tokio::test]
    async fn an_unreadable_manifest_stops_removal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("manifests/ch")).expect("mkdir");
        std::fs::create_dir_all(root.join("chunks")).expect("mkdir");
        std::fs::write(root.join("chunks/aa"), "x").expect("chunk");
        std::fs::write(root.join("manifests/ch/2.json"), "not json").expect("m2");
        let url = format!("file://{}", root.display());
        let e = remove_backup(&url, &BTreeMap::new(), "manifests/ch/1.json")
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("2.json"), "{e}");
        assert!(
            root.join("chunks/aa").exists(),
            "no chunk may go when a manifest cannot be read"
        );
    }
}
