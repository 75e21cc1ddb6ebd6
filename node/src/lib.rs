//! tally-node: the ledger node. One process serves many channels; each channel is a Raft
//! group with its own log, blocks, transaction index and world state in one RocksDB.

pub mod admin;
pub mod api;
pub mod backup;
pub mod backup_routes;
pub mod channel;
pub mod checkpoint;
pub mod db_options;
pub use tally_protocol::hosts;
pub mod http;
pub mod keys;
pub mod leave;
pub mod ledger;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod node;
pub mod peer_trust;
pub mod query_pool;
pub mod quiescence;
pub mod raft_log;
pub mod raft_store;
pub mod read_access;
pub mod read_replay;
pub mod server;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod snapshot_builder;
pub mod snapshot_stream;
pub mod tls;
pub mod tls_revoked;
pub mod transport;
pub mod verifier;
pub mod wall_clock;
