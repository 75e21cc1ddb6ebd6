//! Local clusters: organizations, identities and tally-node processes on loopback.
//!
//! A cluster is always a planned consortium. [`LocalCluster::start`] compiles a
//! [`LocalClusterSpec`] into the resources a tenant would write, generates one CA per
//! organization and runs the planner (the one the operator and `tallyctl up` run) on a free
//! loopback block; [`LocalCluster::launch`] takes a plan made elsewhere (`tallyctl up` plans
//! YAML manifests). Either way the launcher writes the identities, spawns the nodes, creates
//! each channel on each of its nodes through the mutual-TLS admin API and waits until every
//! channel has a leader and every node is ready. The end-to-end suites, the benchmark,
//! `tallyctl demo` and `tallyctl up` all start clusters this way.
//!
//! Everything lives under the spec's `dir`:
//!
//! ```text
//! dir/cluster.json                  ports, Raft ids and channel configurations (for `open`)
//! dir/orgs/ORG/ca.pem, ca-key.pem   the organization's CA
//! dir/orgs/ORG/admins/admin/        cert.pem, key.pem, ca.pem of the org's admin identity
//! dir/orgs/ORG/clients/client/      ... of the org's client identity
//! dir/orgs/ORG/nodes/NODE/          ... of each node of the org (SANs: its loopback address, localhost)
//! dir/nodes/NODE/data/              the node's --data-dir
//! dir/nodes/NODE/node.log           the node's stdout and stderr, appended across restarts
//! ```
//!
//! A layout may name organizations that run elsewhere (the other side of a consortium): the
//! cluster keeps only their CA certificate, and creates the channels they are members of only
//! when their approvals arrive ([`LocalCluster::ensure_channels`]).
//!
//! A cluster written by `start` is brought back on the same data by [`LocalCluster::open`]:
//! the nodes remember their channels, so they only need to be spawned again.
//!
//! Processes are started with `kill_on_drop`, and on Linux with a parent-death signal, so
//! dropping a `LocalCluster` (or its owner dying) never leaves nodes behind. Use
//! [`LocalCluster::shutdown`] for a graceful stop.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tally_client::{AdminClient, Client, ClientError};
use tally_planner::spec::{self, PeerRole};
use tally_planner::{Addressing, CaInput, Plan, PlanInput};
use tally_protocol::api::{ChannelStatus, RaftRole};
use tally_protocol::genesis;
use tally_protocol::identity::now_unix;
use tally_protocol::{
    Approval, BatchConfig, ChannelConfig, Identity, NodeRef, OrgCa, Policies, Role,
};
use tokio::process::{Child, Command};

/// How long `start` and `open` wait for the nodes to listen, take their channels and elect
/// leaders.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`LocalCluster::stop`] waits after SIGTERM before it kills the process.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub use tally_planner::{ADMIN_NAME, CLIENT_NAME};

const CLUSTER_FILE: &str = "cluster.json";
const CLUSTER_FILE_VERSION: u32 = 1;

mod cluster_spec;
mod control;
mod external;
mod launch;
mod layout;
mod lookup;
mod process;
mod readiness;

pub use cluster_spec::*;
pub use external::PendingChannel;
pub use layout::*;
use layout::{read_cluster_file, write_cluster_file, ClusterFile, NodeEntry, OrgKeys};
pub use process::*;
use process::{check_bin, claim_dir, tail_of, NodeProc};
#[cfg(unix)]
use process::{send_signal, SIGTERM};

/// Running tally-node processes on loopback and the keys to talk to them.
pub struct LocalCluster {
    dir: PathBuf,
    node_bin: PathBuf,
    file: ClusterFile,
    orgs: BTreeMap<String, OrgKeys>,
    clients: BTreeMap<String, Client>,
    /// Every organization's CA: what the clients verify nodes against.
    trust: tally_client::ApiTrust,
    procs: Mutex<BTreeMap<String, NodeProc>>,
    /// Extra environment for a node's next starts (tests: a node with a skewed clock).
    node_env: Mutex<BTreeMap<String, Vec<(String, String)>>>,
}

fn other(msg: impl Into<String>) -> ClientError {
    ClientError::Other(msg.into())
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> ClientError {
    other(format!("{what} {}: {e}", path.display()))
}

/// Ports every local node listens on, each node at an address of its own.
pub use tally_planner::{ADMIN_PORT, API_PORT, PEER_PORT};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simple_spec_plans_one_org_per_node_and_everyone_everywhere() {
        let s = LocalClusterSpec::simple("/tmp/x", "/bin/true", 3, &["a", "b"]);
        assert_eq!(s.orgs, ["org1", "org2", "org3"]);
        let (plan, cas) = s.plan("127.9.9").unwrap();
        assert_eq!(cas.len(), 3);
        let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["node1-0", "node2-0", "node3-0"]);
        let n3 = plan.node("node3-0").unwrap();
        assert_eq!(n3.org, "org3");
        assert_eq!(n3.address.host, "127.9.9.3");
        assert_eq!(n3.channels, ["a", "b"]);
        assert_eq!(plan.channels.len(), 2);
        let b = &plan.channel("b").unwrap().genesis;
        let consenters: Vec<&str> = b.consenters.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(consenters, ["node1-0", "node2-0", "node3-0"]);
        let members: Vec<&str> = b.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(members, s.orgs);
    }

    #[test]
    fn a_spec_that_does_not_plan_names_the_problem() {
        let mut s = LocalClusterSpec::simple("/tmp/x", "/bin/true", 2, &["a"]);
        s.channels[0].consenters.push("node9".into());
        let e = s.plan("127.9.9").err().expect("no plan").to_string();
        assert!(e.contains("node9"), "{e}");
        let mut s = LocalClusterSpec::simple("/tmp/x", "/bin/true", 2, &["a"]);
        s.peers[1].org = "nope".into();
        let e = s.plan("127.9.9").err().expect("no plan").to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn a_cluster_can_be_shared_between_tasks() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<LocalCluster>();
    }

    #[test]
    fn clusters_get_distinct_address_blocks() {
        let a = pick_loopback_prefix(5).unwrap();
        assert!(a.starts_with("127."));
        // Keep the first block busy: a second pick must avoid it.
        let _held = std::net::TcpListener::bind((format!("{a}.1").as_str(), API_PORT)).unwrap();
        let b = pick_loopback_prefix(5).unwrap();
        assert_ne!(a, b);
        assert!(pick_loopback_prefix(0).is_err());
    }
}
