//! Revocation and CA rotation in a channel's configuration, on real nodes, driven through
//! `tallyctl org revoke | add-ca | remove-ca` as an administrator would.
//!
//! A revoked client is refused by every node on every path (writes, writes signed by
//! certificate hash, signed reads, a TLS client certificate) while another client of the same
//! organization keeps committing; a revoked node certificate can no longer speak on the peer
//! port, neither on a connection it opened before the revocation nor on a new one. An
//! organization rotates to a new CA (add it, issue from it, remove the old one): clients of the
//! new CA commit, clients of the old one are refused afterwards, and the channel keeps
//! committing throughout; with a node, the node is re-issued from the new CA and restarted on
//! it before the old CA goes, and keeps ordering after.
//!
//! Needs `cargo build -p tally-node -p tallyctl --bins` (see `node_bin` and `tallyctl_bin`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tally_client::txs::{put, sign_writes};
use tally_client::{AdminClient, ApiTrust, Client, ClientError};
use tally_protocol::identity::fingerprint;
use tally_protocol::{Identity, OrgCa, Role, Signer, TxStatus};
use tally_tests::adversary::{heartbeat, log_count, RoguePeer};
use tally_tests::{assert_identical_chains, submit_retry, tallyctl_bin, TestCluster};

const CH: &str = "ledger";
const WAIT: Duration = Duration::from_secs(60);

fn org_dir(tc: &TestCluster, org: &str) -> PathBuf {
    tc.dir().join("orgs").join(org)
}

fn admin_dir(tc: &TestCluster, org: &str) -> PathBuf {
    let name = tc.identity(org, Role::Admin).info.common_name;
    org_dir(tc, org).join(Role::Admin.folder()).join(name)
}

/// Issues `name` in `role` from the CA in `ca_dir` and writes it under that folder.
fn issue(ca_dir: &Path, role: Role, name: &str) -> Identity {
    let ca = OrgCa::load(ca_dir).unwrap_or_else(|e| panic!("{}: {e}", ca_dir.display()));
    let id = ca
        .issue(role, name, &["127.0.0.1".to_string()])
        .unwrap_or_else(|e| panic!("issue {name}: {e}"));
    ca.save_identity(ca_dir, &id)
        .unwrap_or_else(|e| panic!("save {name}: {e}"));
    id
}

fn identity_dir(ca_dir: &Path, role: Role, name: &str) -> PathBuf {
    ca_dir.join(role.folder()).join(name)
}

/// Runs `tallyctl` against every node of the cluster as the admin in `identity` and returns
/// its JSON output; panics unless it succeeds.
fn tallyctl(tc: &TestCluster, identity: &Path, args: &[&str]) -> serde_json::Value {
    let nodes: Vec<String> = tc.node_names().iter().map(|n| tc.api_url(n)).collect();
    let cas: Vec<String> = tc
        .org_names()
        .iter()
        .map(|o| org_dir(tc, o).join("ca.pem").display().to_string())
        .collect();
    let out = Command::new(tallyctl_bin())
        .arg("--node")
        .arg(nodes.join(","))
        .arg("--node-ca")
        .arg(cas.join(","))
        .arg("--identity")
        .arg(identity)
        .args(["--output", "json"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running tallyctl: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tallyctl {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("tallyctl output {stdout:?}: {e}"))
}

fn assert_committed(out: &serde_json::Value, what: &str) {
    assert_eq!(out["status"], "committed", "{what}: {out}");
}

/// Writes `key` as `id` and waits for its receipt.
async fn write(tc: &TestCluster, id: &Identity, key: &str) -> TxStatus {
    let tx = sign_writes(id, CH, vec![put(key, b"v")], false);
    submit_retry(&tc.clients(), 0, &tx, WAIT)
        .await
        .unwrap_or_else(|e| panic!("write {key}: {e}"))
        .status
}

/// Waits until every node has applied `sequence` configuration changes.
async fn wait_config(tc: &TestCluster, sequence: u64) {
    let deadline = Instant::now() + WAIT;
    for c in tc.clients() {
        loop {
            match c.status(CH).await {
                Ok(s) if s.config_sequence >= sequence => break,
                _ if Instant::now() > deadline => {
                    panic!("{} did not apply configuration {sequence}", c.url())
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// The answer of one node to a write that must be refused at submission.
async fn refused_write(c: &Client, tx: &tally_protocol::Transaction) -> ClientError {
    match c.submit(tx, true).await {
        Err(e) => e,
        Ok(o) => panic!("{}: a refused signer's write was accepted: {o:?}", c.url()),
    }
}

fn assert_api_error(e: &ClientError, status: u16, code: &str, who: &str) {
    assert_eq!(
        (e.status(), e.api_code()),
        (Some(status), Some(code)),
        "{who}: {e}"
    );
}

/// A client of org1 loses its certificate: org1 revokes it (approved with org2), and every
/// node refuses it on every path, while org1's other client still commits. A follower's
/// organization revokes a spare certificate issued for that follower's name: a connection
/// opened with it before the revocation can no longer carry the follower's Raft messages, and
/// a new one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_by_every_node() {
    let tc = TestCluster::start("revoke", 3, &[CH], |_| {}).await;
    let org1 = org_dir(&tc, "org1");
    let lost = issue(&org1, Role::Client, "lost-laptop");
    let kept = tc.identity("org1", Role::Client);
    let lost_admin = issue(&org1, Role::Admin, "lost-admin");
    let org1_node = tc
        .node_names()
        .into_iter()
        .find(|n| tc.node_org(n) == "org1")
        .expect("org1 has a node");
    let admin_api = |id: &Identity| {
        AdminClient::new(&tc.admin_addr(&org1_node), &tc.ca_pem("org1"), id).expect("admin")
    };
    admin_api(&lost_admin)
        .channel(CH)
        .await
        .expect("the second admin uses the admin API");
    assert_eq!(write(&tc, &lost, "before/lost").await, TxStatus::Committed);
    assert_eq!(write(&tc, &kept, "before/kept").await, TxStatus::Committed);

    // A spare certificate for a follower's name, issued by its organization with its own
    // key, opened to the leader now.
    let leader = tc.leader(CH).await.expect("a leader");
    let victim = tc
        .channel_nodes(CH)
        .into_iter()
        .find(|n| *n != leader && tc.node_org(n) != "org1")
        .expect("a follower outside org1");
    let victim_org = tc.node_org(&victim);
    let spare = OrgCa::load(&org_dir(&tc, &victim_org))
        .expect("CA")
        .issue(Role::Node, &victim, &["127.0.0.1".to_string()])
        .expect("spare node certificate");
    let mut early = RoguePeer::connect(&tc, &leader, &spare)
        .await
        .unwrap_or_else(|e| panic!("connection before the revocation: {e}"));

    // ---- org1 revokes the lost certificate; org3 revokes its spare, by fingerprint --------
    let cert = identity_dir(&org1, Role::Client, "lost-laptop").join("cert.pem");
    let out = tallyctl(
        &tc,
        &admin_dir(&tc, "org1"),
        &[
            "org",
            "revoke",
            "--channel",
            CH,
            "--approver",
            &admin_dir(&tc, "org2").display().to_string(),
            "--cert",
            &cert.display().to_string(),
        ],
    );
    assert_committed(&out, "org1 revokes a client");
    let out = tallyctl(
        &tc,
        &admin_dir(&tc, &victim_org),
        &[
            "org",
            "revoke",
            "--channel",
            CH,
            "--approver",
            &admin_dir(&tc, "org1").display().to_string(),
            "--fingerprint",
            &fingerprint(&spare.cert_der).to_hex(),
        ],
    );
    assert_committed(
        &out,
        "the follower's organization revokes a node certificate",
    );
    let admin_cert = identity_dir(&org1, Role::Admin, "lost-admin").join("cert.pem");
    let out = tallyctl(
        &tc,
        &admin_dir(&tc, "org1"),
        &[
            "org",
            "revoke",
            "--channel",
            CH,
            "--approver",
            &admin_dir(&tc, "org2").display().to_string(),
            "--cert",
            &admin_cert.display().to_string(),
        ],
    );
    assert_committed(&out, "org1 revokes an admin");
    wait_config(&tc, 3).await;
    let config = tc.client(&leader).config(CH).await.expect("config");
    assert_eq!(
        config.member("org1").expect("org1").revoked,
        vec![
            fingerprint(&lost.cert_der),
            fingerprint(&lost_admin.cert_der)
        ]
    );

    // ---- every node refuses the revoked client on every path ------------------------------
    for name in tc.node_names() {
        let c = tc.client(&name);
        let tx = sign_writes(&lost, CH, vec![put(&format!("after/{name}"), b"x")], false);
        let e = refused_write(&c, &tx).await;
        assert_api_error(&e, 403, "revoked", &name);
        assert!(e.to_string().contains("revoked"), "{name}: {e}");
        // Signed by certificate hash: the channel knows the certificate, and still refuses it.
        let by_hash = sign_writes(&lost, CH, vec![put(&format!("hash/{name}"), b"x")], true);
        assert_api_error(&refused_write(&c, &by_hash).await, 403, "revoked", &name);
        // A signed read.
        let e = c
            .with_reader(lost.clone())
            .get(CH, "before/kept")
            .await
            .expect_err("a revoked reader is refused");
        assert_api_error(&e, 403, "revoked", &name);
        // The certificate as a TLS client certificate: the handshake fails.
        let tls = Client::new(&tc.api_url(&name), &tc.api_trust().with_client_cert(&lost))
            .expect("client");
        let e = tls.status(CH).await.expect_err("handshake refused");
        assert!(e.is_transport(), "{name}: {e}");
        // The organization's other client, by every node, on every path.
        let ok = Client::new(&tc.api_url(&name), &tc.api_trust().with_client_cert(&kept))
            .expect("client")
            .with_reader(kept.clone());
        ok.status(CH)
            .await
            .expect("another certificate of org1 connects");
        assert!(ok.get(CH, "before/kept").await.expect("read").is_some());
        let tx = sign_writes(&kept, CH, vec![put(&format!("kept/{name}"), b"v")], false);
        let r = ok
            .submit_wait(&tx)
            .await
            .expect("org1's other client writes");
        assert_eq!(r.status, TxStatus::Committed, "{name}");
    }

    // ---- the revoked admin on the admin API; the organization's other admin still works ----
    admin_api(&lost_admin)
        .channel(CH)
        .await
        .expect_err("a revoked admin is turned away");
    admin_api(&tc.identity("org1", Role::Admin))
        .channel(CH)
        .await
        .expect("org1's other admin");

    // ---- the revoked node certificate on the peer port -----------------------------------
    let before = tc.client(&leader).status(CH).await.expect("status");
    let hb = heartbeat(tc.node_id(&victim), before.node_id, before.term + 1000, 0);
    early
        .send(CH, &hb)
        .await
        .unwrap_or_else(|e| panic!("send on the early connection: {e}"));
    let deadline = Instant::now() + WAIT;
    let refusal = format!("is revoked by organization {victim_org}");
    while log_count(&tc, &leader, &refusal) == 0 {
        assert!(
            Instant::now() < deadline,
            "{leader} did not refuse the revoked node certificate's message:\n{}",
            tc.log_tail(&leader, 20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = tc.client(&leader).status(CH).await.expect("status");
    assert_eq!(
        (after.leader_id, after.term),
        (before.leader_id, before.term),
        "a heartbeat on a revoked certificate moved the leader's term"
    );
    let mut late = RoguePeer::connect(&tc, &leader, &spare)
        .await
        .unwrap_or_else(|e| panic!("TLS itself does not know the configuration: {e}"));
    assert!(
        late.closed_within(WAIT).await,
        "{leader} kept a new connection with a revoked certificate open"
    );
    // The node logs the refusal as it closes the connection, so the line may trail the close.
    let deadline = Instant::now() + WAIT;
    while log_count(&tc, &leader, "peer connection refused") == 0 {
        assert!(Instant::now() < deadline, "{}", tc.log_tail(&leader, 20));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = std::fs::read_to_string(tc.log_path(&leader))
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains("peer connection refused"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(line.contains("revoked"), "{line}");

    // ---- the channel keeps committing and every node holds the same chain -----------------
    assert_eq!(write(&tc, &kept, "after/kept").await, TxStatus::Committed);
    tc.wait_converged(CH, WAIT)
        .await
        .expect("the nodes converge");
    let blocks = assert_identical_chains(&tc, CH).await;
    // The revoked certificate committed once, before its revocation, and never after.
    let by_lost = blocks
        .iter()
        .flat_map(|b| b.txs.iter().zip(b.results.iter()))
        .filter(|(t, r)| {
            r.is_committed()
                && match &t.body.signer {
                    Signer::Certificate(d) => *d == lost.cert_der,
                    Signer::CertHash(h) => *h == lost.cert_hash,
                }
        })
        .count();
    assert_eq!(by_lost, 1);
    tc.assert_healthy();
}

/// An organization without nodes moves to a new CA on a running channel: the new CA is added
/// beside the old one, identities issued by it commit, the old CA is removed (approved by the
/// new CA's admin), and then the old CA's client is refused while the channel keeps
/// committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_rotates_its_ca() {
    let tc = TestCluster::start("rotate-ca", 3, &[CH], |spec| {
        spec.orgs.push("org4".into());
        spec.channels[0].members.push("org4".into());
    })
    .await;
    let old_dir = org_dir(&tc, "org4");
    let old_client = tc.identity("org4", Role::Client);
    assert_eq!(write(&tc, &old_client, "old/1").await, TxStatus::Committed);

    // The new CA, of the same organization name, in its own folder.
    let new_dir = tc.dir().join("orgs-next").join("org4");
    OrgCa::generate("org4")
        .expect("new CA")
        .save(&new_dir)
        .expect("save the new CA");
    let new_client = issue(&new_dir, Role::Client, "client");
    let new_admin = issue(&new_dir, Role::Admin, "admin");
    let tx = sign_writes(&new_client, CH, vec![put("new/early", b"v")], false);
    let e = refused_write(&tc.client(&tc.node_names()[0]), &tx).await;
    assert_api_error(&e, 403, "not_member", "before add-ca");

    // ---- step 1: add the new CA (three of four organizations approve) --------------------
    let approve = |orgs: &[&str]| -> Vec<String> {
        orgs.iter()
            .flat_map(|o| {
                [
                    "--approver".to_string(),
                    admin_dir(&tc, o).display().to_string(),
                ]
            })
            .collect()
    };
    let mut args: Vec<String> = ["org", "add-ca", "--channel", CH, "--ca"]
        .map(String::from)
        .to_vec();
    args.push(new_dir.join("ca.pem").display().to_string());
    args.extend(approve(&["org1", "org2"]));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_committed(
        &tallyctl(&tc, &admin_dir(&tc, "org4"), &refs),
        "add the new CA",
    );
    wait_config(&tc, 1).await;

    // ---- step 2: identities of both CAs commit through every node ------------------------
    for (i, name) in tc.node_names().iter().enumerate() {
        for (who, id) in [("new", &new_client), ("old", &old_client)] {
            let tx = sign_writes(id, CH, vec![put(&format!("{who}/{i}"), b"v")], false);
            let r = tc
                .client(name)
                .submit_wait(&tx)
                .await
                .unwrap_or_else(|e| panic!("{who} client through {name}: {e}"));
            assert_eq!(r.status, TxStatus::Committed, "{who} client through {name}");
        }
    }

    // ---- step 3: the new CA's admin approves removing the old CA --------------------------
    let mut args: Vec<String> = ["org", "remove-ca", "--channel", CH, "--ca"]
        .map(String::from)
        .to_vec();
    args.push(old_dir.join("ca.pem").display().to_string());
    args.extend(approve(&["org1", "org2"]));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let new_admin_dir = identity_dir(&new_dir, Role::Admin, &new_admin.info.common_name);
    assert_committed(&tallyctl(&tc, &new_admin_dir, &refs), "remove the old CA");
    wait_config(&tc, 2).await;
    let config = tc
        .client(&tc.node_names()[0])
        .config(CH)
        .await
        .expect("config");
    let m = config.member("org4").expect("org4");
    assert!(m.extra_cas.is_empty(), "{m:?}");
    assert_eq!(
        m.ca_pem.trim(),
        std::fs::read_to_string(new_dir.join("ca.pem"))
            .expect("new CA")
            .trim()
    );

    // ---- the old CA's client is refused everywhere; the new one and the channel go on -----
    for (i, name) in tc.node_names().iter().enumerate() {
        let c = tc.client(name);
        let tx = sign_writes(
            &old_client,
            CH,
            vec![put(&format!("old/after/{i}"), b"x")],
            false,
        );
        assert_api_error(&refused_write(&c, &tx).await, 403, "not_member", name);
        let r = c
            .submit_wait(&sign_writes(
                &new_client,
                CH,
                vec![put(&format!("new/after/{i}"), b"v")],
                false,
            ))
            .await
            .unwrap_or_else(|e| panic!("new client through {name}: {e}"));
        assert_eq!(r.status, TxStatus::Committed, "{name}");
    }
    tc.wait_converged(CH, WAIT)
        .await
        .expect("the nodes converge");
    assert_identical_chains(&tc, CH).await;
    tc.assert_healthy();
}

/// A client of the cluster's nodes that also trusts `extra` CAs (a node moved to a new CA
/// presents a certificate the cluster's own clients do not know).
fn client_trusting(tc: &TestCluster, node: &str, extra: &[String]) -> Client {
    let trust = tc
        .api_trust()
        .and(&ApiTrust::from_ca_pems(extra).expect("CA certificates"));
    Client::new(&tc.api_url(node), &trust).expect("client")
}

/// Waits until every node reports the same height, last block hash and state root.
async fn converged(clients: &[Client]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut tips = Vec::new();
        for c in clients {
            if let Ok(s) = c.status(CH).await {
                tips.push((s.height, s.last_block_hash, s.state_root));
            }
        }
        if tips.len() == clients.len() && tips.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not converge: {tips:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An organization with a node rotates its CA all the way: the new CA (same name, another key)
/// is added, the node is re-issued from it and restarted on its new certificate, and once the
/// old CA is removed the node still orders with the others while the old CA's client is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_moves_to_its_organizations_new_ca() {
    let tc = TestCluster::start("rotate-node", 3, &[CH], |_| {}).await;
    let org1 = org_dir(&tc, "org1");
    let old_ca_pem = std::fs::read_to_string(org1.join("ca.pem")).expect("old CA");
    let old_client = tc.identity("org1", Role::Client);
    let next = tc.dir().join("orgs-next").join("org1");
    let new_ca = OrgCa::generate("org1").expect("new CA");
    new_ca.save(&next).expect("save the new CA");
    let new_pem = new_ca.cert_pem();
    let new_admin = issue(&next, Role::Admin, "admin");
    let new_client = issue(&next, Role::Client, "client");
    let node = tc
        .node_names()
        .into_iter()
        .find(|n| tc.node_org(n) == "org1")
        .expect("org1 has a node");

    // org2 and org3, a majority, try to replace org1's CA by one of their own making: they
    // could then sign as org1. Only org1's own admin may approve a change of its CAs.
    let rogue = OrgCa::generate("org1").expect("a rogue CA");
    let entry = tc.client(&node);
    let current = entry.config(CH).await.expect("config");
    let applied = entry.status(CH).await.expect("status").config_sequence;
    let mut hijacked = current.clone();
    for m in &mut hijacked.members {
        if m.name == "org1" {
            m.ca_pem = rogue.cert_pem();
        }
    }
    let (org2, org3) = (
        tc.identity("org2", Role::Admin),
        tc.identity("org3", Role::Admin),
    );
    let tx = tally_client::txs::sign_config(&org2, &current, applied, hijacked, &[&org2, &org3]);
    match entry.submit_wait(&tx).await.expect("submitted").status {
        TxStatus::Rejected { reason, .. } => assert!(
            reason.contains("only org1's own admin may approve"),
            "{reason}"
        ),
        s => panic!("a majority replaced org1's CA: {s:?}"),
    }

    // An admin of the CA org1 is about to add does not reach org1's node yet.
    let admin_api = |id: &Identity| {
        AdminClient::new(&tc.admin_addr(&node), &tc.ca_pem("org1"), id).expect("admin client")
    };
    assert!(
        admin_api(&new_admin).channel(CH).await.is_err(),
        "an admin of a CA no channel lists reached {node}'s admin API"
    );

    let mut args: Vec<String> = ["org", "add-ca", "--channel", CH, "--ca"]
        .map(String::from)
        .to_vec();
    args.push(next.join("ca.pem").display().to_string());
    args.extend([
        "--approver".to_string(),
        admin_dir(&tc, "org2").display().to_string(),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_committed(
        &tallyctl(&tc, &admin_dir(&tc, "org1"), &refs),
        "add the new CA",
    );
    wait_config(&tc, 1).await;
    // Once the channel lists it, the new CA's admin reaches org1's node without a restart
    // (what an operator rotating the CA needs to hand leadership over before restarting it);
    // the rogue CA's admin still does not.
    assert!(
        admin_api(&new_admin)
            .channel(CH)
            .await
            .expect("the new CA's admin on the admin API")
            .is_some(),
        "{node} serves {CH}"
    );
    let rogue_admin = rogue.issue(Role::Admin, "admin", &[]).expect("rogue admin");
    assert!(
        admin_api(&rogue_admin).channel(CH).await.is_err(),
        "the rogue CA's admin reached {node}'s admin API"
    );

    // The node's certificate from the new CA, for the same name and addresses; the org
    // folder now holds the new CA, which is what the node's --org-ca reads.
    let api = tc.api_url(&node);
    let ip = api
        .trim_start_matches("https://")
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .expect("host:port");
    let reissued = new_ca
        .issue(Role::Node, &node, &[ip, "localhost".to_string()])
        .expect("node certificate");
    new_ca.save(&org1).expect("org1 folder at the new CA");
    new_ca
        .save_identity(&org1, &reissued)
        .expect("node certificate written");
    tc.restart(&node)
        .await
        .expect("restart on the new certificate");
    let all: Vec<Client> = tc
        .node_names()
        .iter()
        .map(|n| client_trusting(&tc, n, std::slice::from_ref(&new_pem)))
        .collect();
    let moved = client_trusting(&tc, &node, std::slice::from_ref(&new_pem));
    let deadline = Instant::now() + WAIT;
    while !moved.status(CH).await.is_ok_and(|s| s.ready) {
        assert!(
            Instant::now() < deadline,
            "{node} not ready on its new certificate:\n{}",
            tc.log_tail(&node, 20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        tc.client(&node).status(CH).await.is_err(),
        "{node} still presents a certificate of the old CA"
    );

    // ---- the old CA goes; the node on the new one keeps ordering ---------------------------
    let mut args: Vec<String> = ["org", "remove-ca", "--channel", CH, "--fingerprint"]
        .map(String::from)
        .to_vec();
    args.push(
        fingerprint(&tally_protocol::identity::pem_to_der(&old_ca_pem).expect("pem")).to_hex(),
    );
    args.extend([
        "--approver".to_string(),
        admin_dir(&tc, "org2").display().to_string(),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let new_admin_dir = identity_dir(&next, Role::Admin, &new_admin.info.common_name);
    assert_committed(&tallyctl(&tc, &new_admin_dir, &refs), "remove the old CA");
    for c in &all {
        let deadline = Instant::now() + WAIT;
        while !c.status(CH).await.is_ok_and(|s| s.config_sequence >= 2) {
            assert!(
                Instant::now() < deadline,
                "{} did not apply the removal",
                c.url()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for (i, c) in all.iter().enumerate() {
        let tx = sign_writes(&old_client, CH, vec![put(&format!("old/{i}"), b"x")], false);
        assert_api_error(&refused_write(c, &tx).await, 403, "not_member", c.url());
        let tx = sign_writes(&new_client, CH, vec![put(&format!("new/{i}"), b"v")], false);
        let r = c
            .submit_wait(&tx)
            .await
            .unwrap_or_else(|e| panic!("new client through {}: {e}", c.url()));
        assert_eq!(r.status, TxStatus::Committed, "{}", c.url());
    }
    // The moved node has every write and agrees with the others: it is still in the channel.
    converged(&all).await;
    let reader = moved.with_reader(new_client.clone());
    for i in 0..all.len() {
        assert!(
            reader
                .get(CH, &format!("new/{i}"))
                .await
                .expect("read")
                .is_some(),
            "new/{i} missing on {node}"
        );
    }
    tc.assert_healthy();
}

/// `org revoke --propose`: org1 proposes the revocation on the ledger instead of collecting
/// approvals itself; nothing changes at 1 of 2 approvals (the client still commits), and the
/// revocation applies when org2's admin approves it from its own identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposed_revocation_applies_only_once_approved() {
    let tc = TestCluster::start("revoke-propose", 3, &[CH], |_| {}).await;
    let org1 = org_dir(&tc, "org1");
    let lost = issue(&org1, Role::Client, "lost-phone");
    let cert = identity_dir(&org1, Role::Client, "lost-phone").join("cert.pem");
    let out = tallyctl(
        &tc,
        &admin_dir(&tc, "org1"),
        &[
            "org",
            "revoke",
            "--channel",
            CH,
            "--propose",
            "--cert",
            &cert.display().to_string(),
        ],
    );
    assert_eq!(out["proposal"]["status"], "open", "{out}");
    assert_eq!(
        out["proposal"]["tally"]["approved"],
        serde_json::json!(["org1"]),
        "{out}"
    );
    let hash = out["hash"].as_str().expect("hash").to_string();
    // Proposed, not applied: the certificate still works.
    assert_eq!(
        write(&tc, &lost, "while-proposed").await,
        TxStatus::Committed
    );

    let out = tallyctl(
        &tc,
        &admin_dir(&tc, "org2"),
        &["proposal", "approve", "--channel", CH, &hash],
    );
    assert_eq!(out["proposal"]["status"], "applied", "{out}");
    wait_config(&tc, 1).await;
    for c in tc.clients() {
        let tx = sign_writes(&lost, CH, vec![put("after-approval", b"v")], false);
        let e = refused_write(&c, &tx).await;
        assert_api_error(&e, 403, "revoked", c.url());
    }
    assert_identical_chains(&tc, CH).await;
}
