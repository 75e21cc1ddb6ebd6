//! A small checker of the tally.dev CRD schemas, shared by the CRD tests: the CRDs as the code
//! generates them ([`crds`], [`schema_of`]), the structural rules kube-apiserver insists on
//! ([`structure`]), and a minimal OpenAPI v3 validator run before kube-cel's CEL rules in the
//! apiserver's order ([`validate`]).
//!
//! It lives beside the tests rather than in tally-api: it imitates the apiserver only as far
//! as the Tally schemas need, which is a test's business, and keeps kube-cel a dev-dependency.

pub mod structure;
pub mod validate;

use serde_json::Value;
use std::path::{Path, PathBuf};

pub const API_VERSION: &str = "tally.dev/v1alpha1";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every CRD as JSON, with the file it is kept under.
pub fn crds() -> Vec<(&'static str, Value)> {
    tally_api::all()
        .into_iter()
        .map(|(file, crd)| (file, serde_json::to_value(&crd).expect("a CRD serializes")))
        .collect()
}

pub fn crd_of(kind: &str) -> Option<Value> {
    crds()
        .into_iter()
        .map(|(_, crd)| crd)
        .find(|crd| crd["spec"]["names"]["kind"] == kind)
}

/// The openAPIV3Schema of `kind` in `version`.
pub fn schema_of(kind: &str, version: &str) -> Option<Value> {
    let crd = crd_of(kind)?;
    crd["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == version)
        .map(|v| v["schema"]["openAPIV3Schema"].clone())
}
