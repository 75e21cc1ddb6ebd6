//! Governance by proposals on real nodes, driven through `tallyctl` as each organization's
//! admin would from its own identity folder: a membership change proposed by org1 waits for
//! org2 while writes go on, then lands on every node when org2 approves; approvals signed by a
//! client certificate or aimed at another channel are refused; a proposal rejected by enough
//! organizations, or past its expiry, never applies; with a membership rule of "all", an
//! admission waits for every admin organization, while other changes still need a majority.
//!
//! Needs both executables: `cargo build -p tallyctl -p tally-node` (see `tallyctl_bin` and
//! `node_bin`).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tally_client::txs::{put, sign_vote, sign_writes};
use tally_protocol::{ChannelConfig, Hash, OrgCa, OrgMember, RejectCode, Role, TxStatus};
use tally_tests::{submit_retry, TestCluster};

const CH: &str = "gov";
const OTHER: &str = "other";
const WAIT: Duration = Duration::from_secs(60);

/// Runs tallyctl against node1-0 with an identity folder; returns (exit code, stdout, stderr).
fn tallyctl(tc: &TestCluster, identity: &Path, args: &[&str]) -> (i32, String, String) {
    tc.tallyctl_as(identity, args)
}

#[track_caller]
fn ctl_ok(tc: &TestCluster, identity: &Path, args: &[&str]) -> String {
    let (code, out, err) = tallyctl(tc, identity, args);
    assert_eq!(code, 0, "tallyctl {args:?}: {out}\n{err}");
    out
}

#[track_caller]
fn ctl_json(tc: &TestCluster, identity: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = ctl_ok(tc, identity, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("tallyctl {args:?}: {e}: {out}"))
}

/// Identity folders (certificate, key and CA) of the cluster's organizations.
struct Folders {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Folders {
    fn new(tc: &TestCluster) -> Folders {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        for org in tc.org_names() {
            let org = org.as_str();
            for role in [Role::Admin, Role::Client] {
                tc.identity(org, role)
                    .save(&root.join(format!("{org}-{role}")), &tc.ca_pem(org))
                    .expect("save identity");
            }
        }
        Folders { _dir: dir, root }
    }

    fn of(&self, org: &str, role: Role) -> PathBuf {
        self.root.join(format!("{org}-{role}"))
    }
}

/// The configuration in force as `tallyctl channel config` prints it, changed by `edit`,
/// written to a file for `proposal create --config`.
fn next_config(
    tc: &TestCluster,
    f: &Folders,
    name: &str,
    edit: impl FnOnce(&mut ChannelConfig),
) -> (ChannelConfig, PathBuf) {
    let out = ctl_ok(
        tc,
        &f.of("org1", Role::Client),
        &["channel", "config", "--channel", CH],
    );
    let mut next: ChannelConfig = serde_json::from_str(&out).expect("a configuration");
    edit(&mut next);
    let path = f.root.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&next).expect("json")).expect("write");
    (next, path)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every node of the channel serves a configuration for which `cond` holds.
async fn on_every_node(tc: &TestCluster, what: &str, cond: impl Fn(&ChannelConfig) -> bool) {
    for n in tc.channel_nodes(CH) {
        let c = tc.client(&n);
        let deadline = Instant::now() + WAIT;
        loop {
            match c.config(CH).await {
                Ok(cfg) if cond(&cfg) => break,
                other => assert!(
                    Instant::now() < deadline,
                    "{n}: {what} not seen within {WAIT:?}: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Sends a vote signed by `id` and returns how the channel answered: its receipt status, or
/// the API error code when the node refused it at submission.
async fn vote_outcome(
    tc: &TestCluster,
    id: &tally_protocol::Identity,
    channel: &str,
    hash: Hash,
) -> Result<TxStatus, String> {
    let tx = sign_vote(id, channel, hash, true);
    submit_retry(&[tc.client("node1-0")], 0, &tx, WAIT)
        .await
        .map(|r| r.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_change_waits_for_the_second_organization_then_lands_everywhere() {
    let tc = TestCluster::start("governance", 2, &[CH, OTHER], |_| {}).await;
    tc.wait_ready(WAIT).await.expect("cluster ready");
    let f = Folders::new(&tc);
    let (admin1, admin2) = (f.of("org1", Role::Admin), f.of("org2", Role::Admin));
    let org3 = OrgCa::generate("org3").expect("org3 CA");
    let (_, path) = next_config(&tc, &f, "admit-org3", |c| {
        c.members.push(OrgMember::new("org3", &org3.cert_pem()))
    });
    let path = path.to_str().expect("utf-8 path");

    // A client of org1 may not propose: tallyctl says so before signing anything.
    let (code, _, err) = tallyctl(
        &tc,
        &f.of("org1", Role::Client),
        &["proposal", "create", "-c", CH, "--config", path],
    );
    assert_ne!(code, 0);
    assert!(err.contains("signed by an admin"), "{err}");

    let made = ctl_json(
        &tc,
        &admin1,
        &[
            "proposal",
            "create",
            "-c",
            CH,
            "--config",
            path,
            "--description",
            "admit org3",
        ],
    );
    let hash = made["hash"].as_str().expect("hash").to_string();
    let h = Hash::from_hex(&hash).expect("hex hash");
    assert_eq!(made["proposal"]["status"], "open", "{made:#}");
    assert_eq!(strings(&made["proposal"]["tally"]["approved"]), ["org1"]);
    assert_eq!(strings(&made["proposal"]["tally"]["missing"]), ["org2"]);
    assert_eq!(made["proposal"]["tally"]["needed"], 2);

    // org2 reviews the exact change from its own identity (naming it as `list` shows it).
    let shown = ctl_ok(&tc, &admin2, &["proposal", "show", "-c", CH, &hash[..12]]);
    for needle in [
        hash.as_str(),
        "status      open",
        "+ member org3 (CA of org3 ",
        "missing   org2",
        "1 of 2 needed",
    ] {
        assert!(shown.contains(needle), "{needle:?} not in:\n{shown}");
    }
    let listed = ctl_json(&tc, &admin2, &["proposal", "list", "-c", CH]);
    assert_eq!(listed["proposals"].as_array().map(Vec::len), Some(1));
    // Proposals are the channel's data: an unsigned read is refused, a member's is served.
    let anonymous =
        tally_client::Client::new(&tc.api_url("node1-0"), &tc.api_trust()).expect("client");
    let unsigned = anonymous.proposals(CH).await;
    assert_eq!(
        unsigned.as_ref().err().and_then(|e| e.api_code()),
        Some("read_unauthenticated"),
        "{unsigned:?}"
    );
    let signed = anonymous
        .with_reader(tc.identity("org2", Role::Client))
        .proposal(CH, &h)
        .await
        .expect("a member's signed read")
        .expect("the proposal");
    assert_eq!(signed.tally.missing, ["org2"]);

    // Writes commit while the proposal waits, and nothing changed yet.
    let client1 = tc.identity("org1", Role::Client);
    let w = sign_writes(&client1, CH, vec![put("during", b"vote")], false);
    let r = submit_retry(&[tc.client("node2-0")], 0, &w, WAIT)
        .await
        .expect("write acknowledged");
    assert_eq!(r.status, TxStatus::Committed);
    on_every_node(&tc, "two members", |c| c.members.len() == 2).await;

    // An approval signed by org2's client certificate is refused at submission.
    let refused = vote_outcome(&tc, &tc.identity("org2", Role::Client), CH, h).await;
    assert!(
        matches!(&refused, Err(e) if e.contains("403 forbidden")),
        "{refused:?}"
    );
    // The same hash on another channel names nothing there.
    let elsewhere = vote_outcome(&tc, &tc.identity("org2", Role::Admin), OTHER, h).await;
    assert!(
        matches!(&elsewhere, Ok(TxStatus::Rejected { code: RejectCode::Malformed, reason }) if reason.contains("no proposal")),
        "{elsewhere:?}"
    );
    let still = ctl_json(&tc, &admin1, &["proposal", "show", "-c", CH, &hash]);
    assert_eq!(still["proposal"]["status"], "open");
    assert_eq!(strings(&still["proposal"]["tally"]["approved"]), ["org1"]);

    // org2's admin approves: the change applies in that block, on every node.
    let approved = ctl_json(&tc, &admin2, &["proposal", "approve", "-c", CH, &hash]);
    assert_eq!(approved["receipt"]["status"], "committed", "{approved:#}");
    assert_eq!(approved["proposal"]["status"], "applied", "{approved:#}");
    assert_eq!(
        strings(&approved["proposal"]["tally"]["approved"]),
        ["org1", "org2"]
    );
    on_every_node(&tc, "org3 as a member", |c| {
        c.members.iter().any(|m| m.name == "org3")
    })
    .await;
    let status = tc.client("node2-0").status(CH).await.expect("status");
    assert_eq!(status.config_sequence, 1);
    // Voting again on an applied proposal changes nothing.
    let (code, _, err) = tallyctl(&tc, &admin1, &["proposal", "approve", "-c", CH, &hash]);
    assert_eq!(code, 3, "{err}");
    // The channel keeps working after the change.
    let w = sign_writes(&client1, CH, vec![put("after", b"change")], false);
    let r = submit_retry(&[tc.client("node1-0")], 0, &w, WAIT)
        .await
        .expect("write acknowledged");
    assert_eq!(r.status, TxStatus::Committed);
    tc.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_without_enough_approvals_never_apply() {
    let tc = TestCluster::start("governance-never", 2, &[CH], |_| {}).await;
    tc.wait_ready(WAIT).await.expect("cluster ready");
    let f = Folders::new(&tc);
    let (admin1, admin2) = (f.of("org1", Role::Admin), f.of("org2", Role::Admin));
    let (_, path) = next_config(&tc, &f, "smaller-blocks", |c| c.batch.max_txs = 7);
    let path = path.to_str().expect("utf-8 path");

    // Rejected by org2: with two admin organizations the majority can no longer be met.
    let made = ctl_json(
        &tc,
        &admin1,
        &["proposal", "create", "-c", CH, "--config", path],
    );
    let hash = made["hash"].as_str().expect("hash").to_string();
    // org2 signs its rejection without a node (--sign-only), and the vote is carried over.
    let (code, signed, err) = Command::new(tally_tests::tallyctl_bin())
        .args(["--identity"])
        .arg(&admin2)
        .args(["proposal", "reject", "-c", CH, &hash, "--sign-only"])
        .output()
        .map(|o| {
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .expect("run tallyctl");
    assert_eq!(code, 0, "{signed}\n{err}");
    let vote = f.root.join("org2-reject.json");
    std::fs::write(&vote, &signed).expect("write the signed vote");
    let open = ctl_json(&tc, &admin1, &["proposal", "show", "-c", CH, &hash]);
    assert_eq!(
        open["proposal"]["status"], "open",
        "signing alone sent nothing"
    );
    let rejected = ctl_json(
        &tc,
        &admin1,
        &[
            "proposal",
            "submit",
            "-c",
            CH,
            vote.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(rejected["proposal"]["status"], "rejected", "{rejected:#}");
    assert_eq!(
        strings(&rejected["proposal"]["tally"]["rejected"]),
        ["org2"]
    );
    let (code, _, err) = tallyctl(&tc, &admin2, &["proposal", "approve", "-c", CH, &hash]);
    assert_eq!(code, 3, "a closed proposal takes no approval: {err}");

    // Past its expiry (block time), an approval cannot make it apply.
    let made = ctl_json(
        &tc,
        &admin1,
        &[
            "proposal",
            "create",
            "-c",
            CH,
            "--config",
            path,
            "--expires-in",
            "2s",
            "--description",
            "too slow",
        ],
    );
    let late = made["hash"].as_str().expect("hash").to_string();
    assert_ne!(
        late, hash,
        "another proposal (other expiry and description)"
    );
    std::thread::sleep(Duration::from_secs(3));
    let (code, out, err) = tallyctl(&tc, &admin2, &["proposal", "approve", "-c", CH, &late]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(out.contains("expired"), "{out}");
    let shown = ctl_json(&tc, &admin2, &["proposal", "show", "-c", CH, &late]);
    assert_eq!(shown["proposal"]["status"], "expired", "{shown:#}");
    assert_eq!(strings(&shown["proposal"]["tally"]["approved"]), ["org1"]);

    // Neither applied anywhere.
    on_every_node(&tc, "the original batch size", |c| c.batch.max_txs != 7).await;
    for n in tc.channel_nodes(CH) {
        let s = tc.client(&n).status(CH).await.expect("status");
        assert_eq!(s.config_sequence, 0, "{n}");
    }
    let listed = ctl_json(&tc, &admin1, &["proposal", "list", "-c", CH]);
    let statuses: Vec<String> = listed["proposals"]
        .as_array()
        .expect("proposals")
        .iter()
        .filter_map(|p| p["status"].as_str().map(str::to_string))
        .collect();
    assert_eq!(statuses, ["rejected", "expired"]);
    tc.assert_healthy();
}

/// A consenter added by proposal: the node joins, the approval that completes the majority
/// becomes a Raft membership change, the new node catches up by replaying the chain (the
/// approving block installs the configuration on it too) and writes through it commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consenter_added_by_proposal_joins_raft() {
    let tc = TestCluster::start("governance-join", 3, &[CH], |spec| {
        spec.channels[0].consenters = ["node1", "node2"].map(String::from).to_vec();
    })
    .await;
    let first: Vec<tally_client::Client> = ["node1-0", "node2-0"]
        .iter()
        .map(|n| tc.client(n))
        .collect();
    let admin = |node: &str| {
        let org = tc.node_org(node);
        tally_client::AdminClient::new(
            &tc.admin_addr(node),
            &tc.ca_pem(&org),
            &tc.identity(&org, Role::Admin),
        )
        .expect("admin client")
    };
    let before = admin("node1-0")
        .channel(CH)
        .await
        .expect("admin API answers")
        .expect("node1 serves the channel");
    let mut next = before.config.clone();
    next.consenters.push(tc.node_ref("node3-0"));
    let org1 = tc.identity("org1", Role::Admin);
    let proposal = first[0]
        .config_proposal(CH, next.clone(), Duration::from_secs(600), "node3 orders")
        .await
        .expect("a proposal on the configuration in force");
    let hash = proposal.hash();
    let r = first[0].propose(&org1, proposal).await.expect("proposed");
    assert_eq!(r.status, TxStatus::Committed);
    // Read where it was submitted: that node has applied it.
    let view = first[0]
        .with_reader(org1.clone())
        .proposal(CH, &hash)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(view.tally.approved, ["org1"]);
    assert_eq!(view.tally.needed, 2);

    // The node listens before the change commits, as with a one-transaction update.
    admin("node3-0")
        .join_channel(&before.genesis, &next, &before.approvals)
        .await
        .expect("node3 joins");
    let r = first[1]
        .approve(&tc.identity("org3", Role::Admin), CH, hash)
        .await
        .expect("approved");
    assert_eq!(r.status, TxStatus::Committed, "{r:?}");
    let id3 = tc.node_id("node3-0");
    let deadline = Instant::now() + WAIT;
    loop {
        let i = admin("node3-0").channel(CH).await.ok().flatten();
        if let Some(i) = &i {
            if i.status.voters.contains(&id3) && i.status.config_sequence == 1 && i.status.ready {
                assert_eq!(i.config.hash(), next.hash(), "node3 replayed the change");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node3 did not become a caught-up voter within {WAIT:?}: {:?}",
            i.map(|i| i.status)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client1 = tc.identity("org1", Role::Client);
    for i in 0..5 {
        let w = sign_writes(&client1, CH, vec![put(&format!("j{i}"), b"v")], false);
        let r = submit_retry(&[tc.client("node3-0")], 0, &w, WAIT)
            .await
            .expect("write through node3");
        assert_eq!(r.status, TxStatus::Committed);
    }
    tc.wait_converged(CH, WAIT)
        .await
        .expect("the three nodes converge");
    tally_tests::assert_identical_chains(&tc, CH).await;
    tc.assert_healthy();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_rule_of_all_holds_an_admission_until_every_organization_approves() {
    use tally_protocol::config::MembershipRule;
    let tc = TestCluster::start("governance-membership", 3, &[CH], |_| {}).await;
    tc.wait_ready(WAIT).await.expect("cluster ready");
    let f = Folders::new(&tc);
    let admin = |o: &str| f.of(o, Role::Admin);

    // Setting the rule is a membership change judged by the rule in force: a majority.
    let (_, path) = next_config(&tc, &f, "rule-all", |c| {
        c.policies.membership = MembershipRule::All
    });
    let path = path.to_str().expect("utf-8 path");
    let made = ctl_json(
        &tc,
        &admin("org1"),
        &["proposal", "create", "-c", CH, "--config", path],
    );
    assert_eq!(made["proposal"]["tally"]["needed"], 2, "{made:#}");
    let shown = ctl_ok(
        &tc,
        &admin("org2"),
        &[
            "proposal",
            "show",
            "-c",
            CH,
            made["hash"].as_str().expect("hash"),
        ],
    );
    assert!(
        shown.contains("~ policies.membership: a majority -> all of the admin organizations"),
        "{shown}"
    );
    let hash = made["hash"].as_str().expect("hash").to_string();
    let done = ctl_json(
        &tc,
        &admin("org2"),
        &["proposal", "approve", "-c", CH, &hash],
    );
    assert_eq!(done["proposal"]["status"], "applied", "{done:#}");
    on_every_node(&tc, "the rule", |c| {
        c.policies.membership == MembershipRule::All
    })
    .await;

    // Admitting org4 now needs all three.
    let org4 = OrgCa::generate("org4").expect("org4 CA");
    let (_, path) = next_config(&tc, &f, "admit-org4", |c| {
        c.members.push(OrgMember::new("org4", &org4.cert_pem()))
    });
    let path = path.to_str().expect("utf-8 path");
    let made = ctl_json(
        &tc,
        &admin("org1"),
        &["proposal", "create", "-c", CH, "--config", path],
    );
    assert_eq!(made["proposal"]["tally"]["needed"], 3, "{made:#}");
    let hash = made["hash"].as_str().expect("hash").to_string();
    let two = ctl_json(
        &tc,
        &admin("org2"),
        &["proposal", "approve", "-c", CH, &hash],
    );
    assert_eq!(
        two["proposal"]["status"], "open",
        "a majority does not admit: {two:#}"
    );
    assert_eq!(strings(&two["proposal"]["tally"]["missing"]), ["org3"]);
    on_every_node(&tc, "still three members", |c| c.members.len() == 3).await;

    // A change that leaves the members alone still needs only a majority.
    let (_, path) = next_config(&tc, &f, "batch", |c| c.batch.max_txs = 100);
    let path = path.to_str().expect("utf-8 path");
    let batch = ctl_json(
        &tc,
        &admin("org1"),
        &["proposal", "create", "-c", CH, "--config", path],
    );
    assert_eq!(batch["proposal"]["tally"]["needed"], 2, "{batch:#}");

    let three = ctl_json(
        &tc,
        &admin("org3"),
        &["proposal", "approve", "-c", CH, &hash],
    );
    assert_eq!(three["proposal"]["status"], "applied", "{three:#}");
    on_every_node(&tc, "org4 as a member", |c| {
        c.members.iter().any(|m| m.name == "org4")
    })
    .await;
    tc.assert_healthy();
}
