//! A backup repository: an object store location (`file:///abs/dir`, `s3://bucket/prefix`)
//! reached through the `object_store` crate, with the few calls backups need, made blocking on
//! a runtime of the repository's own (backups run on threads of their own, off the node's
//! async workers).

use super::BackupError;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::collections::BTreeMap;

/// Storage options (object_store's configuration keys, e.g. `aws_endpoint`) by name.
pub type Options = BTreeMap<String, String>;

pub struct Repo {
    store: Box<dyn ObjectStore>,
    root: Path,
    url: String,
    rt: tokio::runtime::Runtime,
}

/// The object store and root a URL names, with its options checked.
fn parse(url: &str, options: &Options) -> Result<(Box<dyn ObjectStore>, Path), BackupError> {
    let bad = |m: String| BackupError::Url(m);
    let u = url::Url::parse(url).map_err(|e| bad(format!("{url:?} is not a URL: {e}")))?;
    match u.scheme() {
        "file" => {
            if u.host_str().is_some_and(|h| !h.is_empty()) {
                return Err(bad(format!(
                    "{url}: a file URL names an absolute folder, file:///path"
                )));
            }
        }
        "s3" => {
            if u.host_str().unwrap_or_default().is_empty() {
                return Err(bad(format!(
                    "{url}: an s3 URL names a bucket, s3://bucket/prefix"
                )));
            }
            for k in options.keys() {
                if k.parse::<object_store::aws::AmazonS3ConfigKey>().is_err() {
                    return Err(bad(format!("{k:?} is not an S3 storage option (e.g. aws_access_key_id, aws_secret_access_key, aws_endpoint, aws_region, aws_allow_http)")));
                }
            }
        }
        other => {
            return Err(bad(format!(
                "{url}: scheme {other:?} is not supported (file:///abs/dir or s3://bucket/prefix)"
            )))
        }
    }
    let opts: Vec<(String, String)> = if u.scheme() == "s3" {
        options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    } else {
        Vec::new()
    };
    // The S3 client's TLS (reqwest without a built-in provider) takes the process's default
    // provider, and panics without one: ring, as the rest of Tally, unless one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    object_store::parse_url_opts(&u, opts).map_err(|e| bad(format!("{url}: {e}")))
}

/// Checks a URL and its options without reaching the store.
pub fn check(url: &str, options: &Options) -> Result<(), BackupError> {
    parse(url, options).map(|_| ())
}

/// Storage options from the standard `AWS_*` environment variables (`AWS_ENDPOINT` becomes
/// `aws_endpoint`, and so on), for the command-line tools.
pub fn options_from_env() -> Options {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, _)| k.parse::<object_store::aws::AmazonS3ConfigKey>().is_ok())
        .collect()
}

fn store_err(e: object_store::Error) -> BackupError {
    BackupError::Store(e.to_string())
}

impl Repo {
    /// Opens the repository a URL names. Must not be called (or dropped) on an async worker:
    /// it owns a runtime.
    pub fn open(url: &str, options: &Options) -> Result<Repo, BackupError> {
        let (store, root) = parse(url, options)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BackupError::Store(format!("cannot start a runtime: {e}")))?;
        Ok(Repo {
            store,
            root,
            url: url.to_string(),
            rt,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn at(&self, rel: &str) -> Path {
        rel.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.root.clone(), |p, part| p.clone().join(part))
    }

    /// The stored size of an object, or None when there is none.
    pub fn size(&self, rel: &str) -> Result<Option<u64>, BackupError> {
        let p = self.at(rel);
        match self.rt.block_on(self.store.head(&p)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(e)),
        }
    }

    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<(), BackupError> {
        let p = self.at(rel);
        self.rt
            .block_on(self.store.put(&p, PutPayload::from(Bytes::from(bytes))))
            .map(|_| ())
            .map_err(store_err)
    }

    /// An object's bytes, refused beyond `limit` bytes before they are read.
    pub fn get(&self, rel: &str, limit: u64) -> Result<Vec<u8>, BackupError> {
        let p = self.at(rel);
        self.rt.block_on(async {
            let got = self.store.get(&p).await.map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    BackupError::Refused(format!("{rel} is missing from the repository"))
                }
                e => store_err(e),
            })?;
            if got.meta.size > limit {
                return Err(BackupError::Refused(format!(
                    "{rel} holds {} bytes, more than the {limit} expected",
                    got.meta.size
                )));
            }
            let b = got.bytes().await.map_err(store_err)?;
            Ok(b.to_vec())
        })
    }

    /// Names of the objects directly below `rel` (one level).
    pub fn list(&self, rel: &str) -> Result<Vec<String>, BackupError> {
        let p = self.at(rel);
        self.rt.block_on(async {
            let listed = self
                .store
                .list_with_delimiter(Some(&p))
                .await
                .map_err(store_err)?;
            Ok(listed
                .objects
                .into_iter()
                .filter_map(|o| o.location.filename().map(str::to_string))
                .collect())
        })
    }

    /// Names of the folders directly below `rel`.
    pub fn folders(&self, rel: &str) -> Result<Vec<String>, BackupError> {
        let p = self.at(rel);
        self.rt.block_on(async {
            let listed = self
                .store
                .list_with_delimiter(Some(&p))
                .await
                .map_err(store_err)?;
            Ok(listed
                .common_prefixes
                .into_iter()
                .filter_map(|o| o.filename().map(str::to_string))
                .collect())
        })
    }
}
