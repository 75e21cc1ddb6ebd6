//! The controllers' decisions from YAML fixtures: each file under `tests/fixtures/<controller>/`
//! holds an observed state and a plan, and the actions and verdict the decision must give.
//! The file's leading comment says what it checks.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::PathBuf;
use tally_client::lifecycle::{self, DefinitionProposal, Step, Target};
use tally_operator::decide::channel::{
    self, ChannelAction, ChannelObserved, ChannelTarget, Outcome,
};
use tally_operator::decide::peer::{self, PeerAction, PeerObserved};
use tally_operator::decide::{State, Verdict};
use tally_protocol::chaincode::ChaincodeInfo;

/// Every fixture of `controller`, parsed, with its file name.
fn fixtures<T: DeserializeOwned>(controller: &str) -> Vec<(String, T)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(controller);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let parsed = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, parsed)
        })
        .collect()
}

/// A verdict as a fixture states it: the message only needs to contain `message`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectVerdict {
    state: State,
    reason: String,
    #[serde(default)]
    message: String,
}

fn check_verdict(name: &str, got: &Verdict, want: &ExpectVerdict) {
    assert_eq!(
        (got.state, got.reason.as_str()),
        (want.state, want.reason.as_str()),
        "{name}: verdict {got:?}"
    );
    assert!(
        got.message.contains(&want.message),
        "{name}: message {:?} lacks {:?}",
        got.message,
        want.message
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerCase {
    observed: PeerObserved,
    expect: PeerExpect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerExpect {
    replicas: i32,
    #[serde(default)]
    actions: Vec<PeerAction>,
    verdict: ExpectVerdict,
}

#[test]
fn peer_decisions() {
    for (name, case) in fixtures::<PeerCase>("peer") {
        let d = peer::decide(&case.observed);
        assert_eq!(d.replicas, case.expect.replicas, "{name}: replicas");
        assert_eq!(d.actions, case.expect.actions, "{name}: actions");
        check_verdict(&name, &d.verdict, &case.expect.verdict);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelCase {
    #[serde(default = "default_channel")]
    channel: String,
    observed: ChannelObserved,
    target: ChannelTarget,
    expect: ChannelExpect,
    /// What acting came to, for the verdict; none acted on when absent.
    #[serde(default)]
    outcome: Outcome,
}

fn default_channel() -> String {
    "orders".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelExpect {
    #[serde(default)]
    actions: Vec<ChannelAction>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    waiting: Vec<String>,
    #[serde(default)]
    moving: Option<String>,
    verdict: ExpectVerdict,
}

#[test]
fn channel_decisions() {
    for (name, case) in fixtures::<ChannelCase>("channel") {
        let d = channel::decide(&case.observed, &case.target);
        assert_eq!(d.actions, case.expect.actions, "{name}: actions");
        assert_eq!(d.source, case.expect.source, "{name}: source");
        assert_eq!(d.waiting, case.expect.waiting, "{name}: waiting");
        match (&d.moving, &case.expect.moving) {
            (None, None) => {}
            (Some(got), Some(want)) => assert!(got.contains(want), "{name}: moving {got:?}"),
            (got, want) => panic!("{name}: moving {got:?}, expected {want:?}"),
        }
        let v = channel::verdict(&case.channel, &d, &case.outcome);
        check_verdict(&name, &v, &case.expect.verdict);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChaincodeCase {
    /// The ledger's view of the chaincode; none before its first install.
    #[serde(default)]
    current: Option<ChaincodeInfo>,
    /// The channel's proposals of definitions of the chaincode, oldest first.
    #[serde(default)]
    proposals: Vec<DefinitionProposal>,
    target: Target,
    /// The organizations whose admin keys the operator holds, in order.
    held: Vec<String>,
    expect: Step,
}

#[test]
fn chaincode_decisions() {
    for (name, case) in fixtures::<ChaincodeCase>("chaincode") {
        let step = lifecycle::decide(
            case.current.as_ref(),
            &case.proposals,
            &case.target,
            &case.held,
        );
        assert_eq!(step, case.expect, "{name}");
    }
}
