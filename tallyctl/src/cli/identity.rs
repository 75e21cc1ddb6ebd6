//! The identity that signs: a folder with cert.pem and key.pem, as `tallyctl org create`
//! writes it.

use anyhow::{bail, Context, Result};
use std::path::Path;
use tally_protocol::Identity;

/// Loads the identity in `dir`, saying which file is missing rather than failing on a bare
/// "no such file".
pub fn load(dir: &Path) -> Result<Identity> {
    if !dir.is_dir() {
        bail!(
            "identity folder {} does not exist (expected a folder with cert.pem and key.pem)",
            dir.display()
        );
    }
    for f in ["cert.pem", "key.pem"] {
        if !dir.join(f).is_file() {
            bail!(
                "identity folder {} has no {f} (expected cert.pem and key.pem, as `tallyctl org create` \
                 writes them into ORG/clients/NAME or ORG/admins/NAME)",
                dir.display()
            );
        }
    }
    Identity::load(dir).with_context(|| format!("identity folder {}", dir.display()))
}
