//! Tally's Kubernetes API and the planner that turns it into ledger nodes.
//!
//! The library part is what `tallyctl up` shares with the operator: the CRD types
//! ([`crd`]), reading manifests ([`manifest`]) and the pure planning step ([`planner`]).

pub mod cluster;
pub mod crd;
pub mod manifest;
pub mod planner;
