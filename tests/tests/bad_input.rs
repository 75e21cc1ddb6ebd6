//! Hostile and broken submissions against a running cluster: each gets the documented 4xx with
//! a machine code and a message, nothing bad reaches the ledger, replays never commit twice,
//! and the node keeps serving.

use std::time::Duration;

use tally_client::txs::{put, sign_writes};
use tally_client::Client;
use tally_protocol::{
    now_ms, Encode, Hash, Identity, OrgCa, Payload, Receipt, RejectCode, Role, Signer, Transaction,
    TxBody, TxStatus, Write,
};
use tally_tests::{assert_api_error, assert_identical_chains, committed_counts, http, TestCluster};

const CH: &str = "alpha";
const OTHER_CH: &str = "beta";

/// Signs a transaction by hand, so that each field can be chosen.
fn signed(
    id: &Identity,
    channel: &str,
    signer: Signer,
    timestamp_ms: u64,
    writes: Vec<Write>,
) -> Transaction {
    let body = TxBody {
        channel: channel.to_string(),
        nonce: rand::random(),
        timestamp_ms,
        signer,
        payload: Payload::KvWrite {
            reads: vec![],
            writes,
        },
    };
    Transaction::sign(body, id)
}

fn cert(id: &Identity) -> Signer {
    Signer::Certificate(id.cert_der.clone())
}

struct Target {
    api_url: String,
    client: Client,
}

impl Target {
    fn submit_url(&self, channel: &str) -> String {
        format!(
            "{}/v1/channels/{channel}/transactions?wait=true&timeout_ms=10000",
            self.api_url
        )
    }

    async fn post(&self, channel: &str, content_type: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        http::request("POST", &self.submit_url(channel), Some(content_type), body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn post_tx(&self, channel: &str, tx: &Transaction) -> (u16, Vec<u8>) {
        self.post(channel, "application/octet-stream", tx.to_bytes())
            .await
    }

    /// The node still answers and still commits.
    async fn still_serves(&self, case: &str, signer: &Identity) {
        let (st, _) = http::get(&format!("{}/healthz", self.api_url))
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(st, 200, "after {case}: /healthz answered {st}");
        let tx = sign_writes(
            signer,
            CH,
            vec![put(&format!("after-{case}"), b"ok")],
            false,
        );
        let r = self
            .client
            .submit_wait(&tx)
            .await
            .unwrap_or_else(|e| panic!("after {case}: a good transaction failed: {e}"));
        assert!(
            r.status.is_committed(),
            "after {case}: a good transaction was not committed: {r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_get_documented_errors_and_never_reach_the_ledger() {
    let tc = TestCluster::start("bad-input", 3, &[CH, OTHER_CH], |_| {}).await;
    let t = Target {
        api_url: tc.api_url("node1-0"),
        client: tc.client("node1-0"),
    };
    let signer = tc.identity("org1", Role::Client);
    let good = |key: &str| sign_writes(&signer, CH, vec![put(key, b"v")], false);
    // Ids of transactions that must never be committed.
    let mut refused: Vec<(String, Hash)> = Vec::new();

    // ---- malformed bodies ------------------------------------------------------------------
    let case = "garbage bytes";
    let got = t
        .post(
            CH,
            "application/octet-stream",
            b"\xde\xad\xbe\xef not a transaction".to_vec(),
        )
        .await;
    assert_api_error(case, (got.0, &got.1), 400, "malformed");
    t.still_serves(case, &signer).await;

    let case = "empty body";
    let got = t.post(CH, "application/octet-stream", Vec::new()).await;
    assert_api_error(case, (got.0, &got.1), 400, "malformed");

    let case = "truncated transaction";
    let mut bytes = good("truncated").to_bytes();
    bytes.truncate(bytes.len() - 1);
    let got = t.post(CH, "application/octet-stream", bytes).await;
    assert_api_error(case, (got.0, &got.1), 400, "malformed");

    let case = "trailing byte after the transaction";
    let tx = good("trailing");
    refused.push((case.into(), tx.id()));
    let mut bytes = tx.to_bytes();
    bytes.push(0);
    let got = t.post(CH, "application/octet-stream", bytes).await;
    assert_api_error(case, (got.0, &got.1), 400, "malformed");

    let case = "bad JSON";
    let got = t.post(CH, "application/json", br#"{"tx": "#.to_vec()).await;
    assert_api_error(case, (got.0, &got.1), 400, "malformed");

    let case = "JSON without hex";
    let got = t
        .post(CH, "application/json", br#"{"tx": "zz-not-hex"}"#.to_vec())
        .await;
    assert_api_error(case, (got.0, &got.1), 400, "malformed");

    let case = "JSON with hex of garbage";
    let got = t
        .post(CH, "application/json", br#"{"tx": "00ff00ff"}"#.to_vec())
        .await;
    assert_api_error(case, (got.0, &got.1), 400, "malformed");
    t.still_serves("malformed bodies", &signer).await;

    // ---- signatures --------------------------------------------------------------------------
    let case = "flipped signature byte";
    let mut tx = good("bad-signature");
    tx.signature[10] ^= 0x01;
    refused.push((case.into(), tx.id()));
    let got = t.post_tx(CH, &tx).await;
    assert_api_error(case, (got.0, &got.1), 401, "bad_signature");

    let case = "body changed after signing";
    let mut tx = good("changed-body");
    tx.body.nonce ^= 1;
    refused.push((case.into(), tx.id()));
    let got = t.post_tx(CH, &tx).await;
    assert_api_error(case, (got.0, &got.1), 401, "bad_signature");

    let case = "signed by another key than the certificate's";
    let org2_client = tc.identity("org2", Role::Client);
    let tx = Transaction::sign(
        TxBody {
            channel: CH.into(),
            nonce: rand::random(),
            timestamp_ms: now_ms(),
            signer: cert(&signer), // claims org1's client...
            payload: Payload::KvWrite {
                reads: vec![],
                writes: vec![put("impostor", b"x")],
            },
        },
        &org2_client, // ...but org2's client signs
    );
    refused.push((case.into(), tx.id()));
    let got = t.post_tx(CH, &tx).await;
    assert_api_error(case, (got.0, &got.1), 401, "bad_signature");
    t.still_serves("bad signatures", &signer).await;

    // ---- channel ----------------------------------------------------------------------------
    let case = "unknown channel";
    let tx = sign_writes(&signer, "no-such-channel", vec![put("k", b"v")], false);
    let got = t.post_tx("no-such-channel", &tx).await;
    assert_api_error(case, (got.0, &got.1), 404, "unknown_channel");

    let case = "channel in the body differs from the path";
    let tx = sign_writes(&signer, OTHER_CH, vec![put("wrong-channel", b"v")], false);
    refused.push((case.into(), tx.id()));
    let got = t.post_tx(CH, &tx).await;
    assert_api_error(case, (got.0, &got.1), 400, "wrong_channel");
    t.still_serves("channel errors", &signer).await;

    // ---- size -------------------------------------------------------------------------------
    let case = "oversized transaction";
    let max = tc.config(CH).max_tx_bytes as usize;
    let tx = sign_writes(&signer, CH, vec![put("huge", &vec![b'x'; max + 1])], false);
    refused.push((case.into(), tx.id()));
    assert!(tx.to_bytes().len() > max);
    let got = t.post_tx(CH, &tx).await;
    assert_api_error(case, (got.0, &got.1), 413, "too_large");
    t.still_serves(case, &signer).await;

    // ---- who signs --------------------------------------------------------------------------
    let case = "signed by an organization that is not a member";
    let outsider_ca = OrgCa::generate("outsider").unwrap();
    let outsider = outsider_ca.issue(Role::Client, "mallory", &[]).unwrap();
    let tx = sign_writes(&outsider, CH, vec![put("outsider", b"v")], false);
    refused.push((case.into(), tx.id()));
    let got = t.post_tx(CH, &tx).await;
    let err = assert_api_error(case, (got.0, &got.1), 403, "not_member");
    eprintln!("{case}: {}", err.error);

    let case = "member name but another CA";
    let impostor_ca = OrgCa::generate("org1").unwrap();
    let impostor = impostor_ca.issue(Role::Client, "client", &[]).unwrap();
    let tx = sign_writes(&impostor, CH, vec![put("impostor-ca", b"v")], false);
    refused.push((case.into(), tx.id()));
    let got = t.post_tx(CH, &tx).await;
    assert!(
        got.0 == 403 || got.0 == 401,
        "{case}: expected 403 not_member (or 401), got {} {}",
        got.0,
        String::from_utf8_lossy(&got.1)
    );
    let code = if got.0 == 403 {
        "not_member"
    } else {
        "bad_signature"
    };
    assert_api_error(case, (got.0, &got.1), got.0, code);

    let case = "signed by a node certificate";
    let node_id = tc.node_identity("node1-0").unwrap();
    let tx = sign_writes(&node_id, CH, vec![put("by-a-node", b"v")], false);
    refused.push((case.into(), tx.id()));
    let got = t.post_tx(CH, &tx).await;
    assert_api_error(case, (got.0, &got.1), 403, "forbidden");

    let case = "a transaction that writes nothing";
    let tx = sign_writes(&signer, CH, vec![], false);
    refused.push((case.into(), tx.id()));
    let got = t.post_tx(CH, &tx).await;
    assert_api_error(case, (got.0, &got.1), 400, "malformed");

    let case = "unknown certificate hash";
    let stranger = tc.identity("org2", Role::Client); // never used on this channel yet
    let tx = signed(
        &stranger,
        CH,
        Signer::CertHash(Hash::tagged(b"nobody", &[b"x"])),
        now_ms(),
        vec![put("unknown-cert", b"v")],
    );
    refused.push((case.into(), tx.id()));
    let got = t.post_tx(CH, &tx).await;
    assert_api_error(case, (got.0, &got.1), 403, "unknown_certificate");

    let case = "timestamp outside the window";
    let window_ms = tc.config(CH).tx_window_s as u64 * 1000;
    let tx = signed(
        &signer,
        CH,
        cert(&signer),
        now_ms() - 2 * window_ms,
        vec![put("expired", b"v")],
    );
    refused.push((case.into(), tx.id()));
    let got = t.post_tx(CH, &tx).await;
    assert_api_error(case, (got.0, &got.1), 400, "expired");
    let tx = signed(
        &signer,
        CH,
        cert(&signer),
        now_ms() + 2 * window_ms,
        vec![put("future", b"v")],
    );
    refused.push(("timestamp in the future".into(), tx.id()));
    let got = t.post_tx(CH, &tx).await;
    assert_api_error("timestamp in the future", (got.0, &got.1), 400, "expired");
    t.still_serves("signer errors", &signer).await;

    // ---- JSON submission of a good transaction -------------------------------------------
    let tx = good("json-body");
    let body =
        serde_json::to_vec(&serde_json::json!({ "tx": hex::encode(tx.to_bytes()) })).unwrap();
    let (st, body) = t.post(CH, "application/json", body).await;
    assert_eq!(
        st,
        200,
        "JSON submission: {}",
        String::from_utf8_lossy(&body)
    );
    let r: Receipt =
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("JSON submission: receipt {e}"));
    assert!(r.status.is_committed() && r.tx_id == tx.id(), "{r:?}");

    // ---- replays ----------------------------------------------------------------------------
    let tx = good("replayed");
    let first = t.client.submit_wait(&tx).await.expect("first submission");
    assert!(first.status.is_committed(), "{first:?}");
    let again = t
        .client
        .submit_wait(&tx)
        .await
        .expect("replay on the same node");
    assert_eq!(
        again, first,
        "a replay on the same node must return the existing receipt"
    );
    for other in ["node2-0", "node3-0"] {
        let r = tc
            .client(other)
            .submit_wait(&tx)
            .await
            .unwrap_or_else(|e| panic!("replay on {other}: {e}"));
        assert_eq!(
            r, first,
            "a replay on {other} must return the existing receipt"
        );
    }
    // The same raw bytes again, without waiting: whatever the answer, it must not commit again.
    let (st, body) = http::request(
        "POST",
        &format!("{}/v1/channels/{CH}/transactions", t.api_url),
        Some("application/octet-stream"),
        tx.to_bytes(),
    )
    .await
    .unwrap();
    assert!(
        st == 200 || st == 202,
        "replay without wait: {st} {}",
        String::from_utf8_lossy(&body)
    );

    // The same new transaction to all three nodes at once.
    let raced = good("raced");
    let clients: Vec<Client> = tc.clients();
    let answers =
        futures_util::future::join_all(clients.iter().map(|c| c.submit_wait(&raced))).await;
    let receipts: Vec<Receipt> = answers
        .into_iter()
        .enumerate()
        .map(|(i, a)| a.unwrap_or_else(|e| panic!("raced submission to node{}-0: {e}", i + 1)))
        .collect();
    for r in &receipts {
        assert!(r.status.is_committed(), "raced submission: {r:?}");
        assert_eq!(
            (r.block, r.index, r.block_hash),
            (receipts[0].block, receipts[0].index, receipts[0].block_hash),
            "raced submissions got different receipts: {receipts:?}"
        );
    }
    t.still_serves("replays", &signer).await;

    // ---- the ledger ---------------------------------------------------------------------------
    tokio::time::sleep(Duration::from_millis(200)).await;
    tc.wait_converged(CH, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let blocks = assert_identical_chains(&tc, CH).await;
    let counts = committed_counts(&blocks);
    for (id, what) in [(tx.id(), "replayed"), (raced.id(), "raced")] {
        let n = counts.get(&id).copied().unwrap_or(0);
        assert_eq!(n, 1, "the {what} transaction is committed {n} times");
        let results: Vec<&TxStatus> = blocks
            .iter()
            .flat_map(|b| b.txs.iter().zip(&b.results))
            .filter(|(t, _)| t.id() == id)
            .map(|(_, r)| r)
            .collect();
        for r in &results {
            assert!(
                r.is_committed() || matches!(r, TxStatus::Rejected { code: RejectCode::Duplicate, .. }),
                "a repeated occurrence of the {what} transaction must be rejected as a duplicate, got {r:?}"
            );
        }
        eprintln!(
            "{what} transaction: committed once, present {} time(s) in the chain",
            results.len()
        );
    }
    for (case, id) in &refused {
        assert!(
            !counts.contains_key(id),
            "{case}: the refused transaction {id} was committed"
        );
    }
    tc.assert_healthy();
}
