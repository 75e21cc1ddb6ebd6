//! The web console (`tally-console`) on a real consortium, seen through a real headless
//! Chromium (tests/src/browser.rs):
//!
//! - the page's own SHA-256, Merkle path and block-hash code give what Rust gives, on test
//!   vectors and on headers and proofs taken from the running nodes;
//! - a committed transaction's page shows its status and an inclusion proof that the page
//!   verified itself (the HTML as served says "not verified"; the script turns it), and a
//!   tampered proof fails there;
//! - the channel page's block list grows when a block commits, without a reload;
//! - a channel the organization is not a member of shows a "not a member" page and nothing of
//!   the channel;
//! - a receivable's trace renders as a tree, and a dropped document is found anchored with a
//!   verified proof;
//! - the search box finds a transaction, a block and a key;
//! - without the token (or with a wrong one) nothing is served, and a console without one
//!   refuses to listen off loopback.
//!
//! Three organizations; the console reads as org3, which is not a member of channel
//! `private`. Needs chromium and chromedriver (scripts/setup.sh installs them); without them
//! the suite fails and says so.
//!
//! `cargo test -p tally-tests --test console -- --ignored screenshots` rewrites the screenshots
//! in docs/images/ from the same scenario.

use serde_json::json;
use sha2::Digest;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tally_client::lifecycle::{self, Wanted};
use tally_client::txs::{fields, put, sign_config, sign_invoke, sign_writes};
use tally_client::Client;
use tally_protocol::merkle;
use tally_protocol::{Hash, InitCall, Receipt, Role};
use tally_tests::browser::Browser;
use tally_tests::{console_bin, die_with_parent, http, submit_retry, TestCluster};
use tallyctl::local::LocalChannelSpec;

const MAIN: &str = "main";
const PRIVATE: &str = "private";
const WAIT: Duration = Duration::from_secs(60);
const SEEN: Duration = Duration::from_secs(30);
const DAY_MS: u64 = 86_400_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An example contract's module, as the example manifests embed it.
fn example_module(file: &str, config_map: &str, key: &str) -> Vec<u8> {
    let res =
        tally_api::manifest::Resources::read_files(&[repo().join("deploy/examples").join(file)])
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    res.config_map_key(config_map, key)
        .unwrap_or_else(|| panic!("{file}: no ConfigMap {config_map} key {key}"))
}

/// A `tally-console` process; killed when dropped.
struct Console {
    child: Child,
    url: String,
}

impl Console {
    fn start(args: &[&str]) -> Console {
        let mut child = die_with_parent(
            Command::new(console_bin())
                .args(args)
                .env("TALLY_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .spawn()
        .expect("tally-console starts");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .expect("tally-console prints its URL");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http"))
            .unwrap_or_else(|| panic!("tally-console said {line:?}, not its URL"))
            .trim_end_matches('/')
            .to_string();
        Console { child, url }
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The consortium the suite looks at: main (every organization, receivables and notary
/// committed, a receivable issued, split and financed, a document anchored) and private
/// (org1 and org2 only).
struct Scenario {
    tc: TestCluster,
    clients: Vec<Client>,
    /// org3's finance of part R1-a: a committed chaincode call.
    finance: Receipt,
    /// The anchored document's bytes.
    document: Vec<u8>,
}

impl Scenario {
    async fn start(name: &str) -> Scenario {
        let tc = TestCluster::start(name, 3, &[MAIN], |spec| {
            let orgs = ["org1".to_string(), "org2".to_string()];
            let nodes = ["node1".to_string(), "node2".to_string()];
            spec.channels
                .push(LocalChannelSpec::new(PRIVATE, &orgs, &nodes));
        })
        .await;
        let clients = tc.clients();
        let admins: Vec<(String, tally_protocol::Identity)> = ["org1", "org2", "org3"]
            .iter()
            .map(|o| (o.to_string(), tc.identity(o, Role::Admin)))
            .collect();
        let receivables = example_module(
            "supply-chain-finance.yaml",
            "receivables-wasm",
            "receivables.wasm",
        );
        let notary = example_module("notarization.yaml", "notary-wasm", "notary.wasm");
        for (name, module, init) in [
            (
                "receivables",
                &receivables,
                Some(InitCall {
                    function: "init".into(),
                    args: fields(&["core", "org1", "bank", "org2"]),
                }),
            ),
            ("notary", &notary, None),
        ] {
            let w = Wanted {
                channel: MAIN,
                name,
                version: "1.0",
                module,
                init,
            };
            lifecycle::ensure(&clients[0], &w, &admins)
                .await
                .unwrap_or_else(|e| panic!("deploying {name}: {e}"));
        }
        let s = Scenario {
            tc,
            clients,
            finance: dummy_receipt(),
            document: b"Deed of sale, parcel 42, signed 2026-03-01".to_vec(),
        };
        let maturity = (tally_protocol::now_ms() + 90 * DAY_MS).to_string();
        s.invoke(
            "org1",
            "receivables",
            "issue",
            &["R1", "org3", "1000000", &maturity],
        )
        .await;
        s.invoke("org3", "receivables", "split", &["R1", "R1-a", "400000"])
            .await;
        s.invoke("org3", "receivables", "offer", &["R1-a", "org2", "250"])
            .await;
        let finance = s.invoke("org2", "receivables", "finance", &["R1-a"]).await;
        let digest = hex::encode(sha2::Sha256::digest(&s.document));
        s.invoke(
            "org1",
            "notary",
            "anchor",
            &[&digest, "deed of sale, parcel 42"],
        )
        .await;
        // A configuration change: admins narrowed to org1 and org2, smaller blocks.
        let genesis = s.tc.config(MAIN);
        let mut next = genesis.clone();
        next.policies.admins = vec!["org1".into(), "org2".into()];
        next.batch.max_txs = 250;
        let (a1, a2) = (
            s.tc.identity("org1", Role::Admin),
            s.tc.identity("org2", Role::Admin),
        );
        let tx = sign_config(&a1, &genesis, 0, next, &[&a1, &a2]);
        let r = submit_retry(&s.clients, 0, &tx, WAIT)
            .await
            .expect("the configuration change is ordered");
        assert!(r.status.is_committed(), "{r:?}");
        let r = s.put("org3", MAIN, "greeting", "hello from org3").await;
        assert!(r.status.is_committed(), "{r:?}");
        let r = s.put("org1", PRIVATE, "credit-line/org1", "5000000").await;
        assert!(r.status.is_committed(), "{r:?}");
        Scenario { finance, ..s }
    }

    async fn invoke(&self, org: &str, cc: &str, function: &str, args: &[&str]) -> Receipt {
        let id = self.tc.identity(org, Role::Client);
        let tx = sign_invoke(&id, MAIN, cc, function, fields(args), 0, false);
        let r = submit_retry(&self.clients, 0, &tx, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{cc}.{function}: {e}"));
        assert!(
            r.status.is_committed(),
            "{org}: {cc}.{function}{args:?}: {r:?}"
        );
        r
    }

    async fn put(&self, org: &str, ch: &str, key: &str, value: &str) -> Receipt {
        let id = self.tc.identity(org, Role::Client);
        let tx = sign_writes(&id, ch, vec![put(key, value.as_bytes())], false);
        submit_retry(&self.clients, 0, &tx, WAIT)
            .await
            .unwrap_or_else(|e| panic!("put {key} on {ch}: {e}"))
    }

    /// The console for org3, reading from its own node first, on a free loopback port.
    fn console(&self, title: &str) -> Console {
        let identity = self.tc.dir().join("orgs/org3/clients/client");
        // The console verifies every node it discovers: the other organizations' CAs too.
        let cas = ["org1", "org2"]
            .map(|o| {
                self.tc
                    .dir()
                    .join(format!("orgs/{o}/ca.pem"))
                    .display()
                    .to_string()
            })
            .join(",");
        Console::start(&[
            "--node-ca",
            &cas,
            "--node",
            &self.tc.api_url("node3-0"),
            "--identity",
            &identity.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--title",
            title,
        ])
    }
}

fn dummy_receipt() -> Receipt {
    Receipt {
        tx_id: Hash::ZERO,
        channel: String::new(),
        block: 0,
        index: 0,
        status: tally_protocol::TxStatus::Committed,
        block_hash: Hash::ZERO,
        effects: None,
    }
}

/// The bytes `0, 31, 62, ...` of length n: inputs around every SHA-256 padding boundary.
fn vector(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + 7) as u8).collect()
}

/// The page's own hashing agrees with tally-protocol's on test vectors, real block headers and
/// Merkle proofs, and refuses what Rust refuses.
async fn same_hashes_as_rust(b: &Browser, s: &Scenario) {
    for n in [
        0usize, 1, 3, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 100_000,
    ] {
        let input = vector(n);
        let js = b
            .exec(
                "return TallyVerify.sha256Hex(new Uint8Array(arguments[0]));",
                vec![json!(input)],
            )
            .await;
        assert_eq!(
            js.as_str(),
            Some(hex::encode(sha2::Sha256::digest(&input)).as_str()),
            "sha256 of {n} bytes"
        );
    }
    let tagged = b
        .exec(
            "return TallyVerify.tagged('tally-merkle-leaf', [new Uint8Array(arguments[0])]);",
            vec![json!(vec![7u8; 32])],
        )
        .await;
    assert_eq!(
        tagged.as_str(),
        Some(
            Hash::tagged(b"tally-merkle-leaf", &[&[7u8; 32]])
                .to_hex()
                .as_str()
        )
    );
    // Every block header of the channel, as the node serves it, hashes the same in the page.
    let reader = s.clients[2].with_reader(s.tc.identity("org3", Role::Client));
    let height = reader.status(MAIN).await.expect("status").height;
    for n in 0..height {
        let hd = reader.header(MAIN, n).await.expect("a header");
        let js = b
            .exec(
                "return TallyVerify.blockHash(arguments[0]);",
                vec![serde_json::to_value(&hd).expect("json")],
            )
            .await;
        assert_eq!(
            js.as_str(),
            Some(hd.hash().to_hex().as_str()),
            "hash of block {n}"
        );
    }
    // Merkle proofs of every leaf for sizes 1..=9 verify; moved or tampered ones do not.
    for size in 1..=9u64 {
        let items: Vec<Hash> = (0..size)
            .map(|i| Hash::tagged(b"t", &[&i.to_be_bytes()]))
            .collect();
        let root = merkle::root(&items).to_hex();
        for i in 0..size as usize {
            let p = merkle::prove(&items, i).expect("a proof");
            let ok = b
                .exec(
                    "return TallyVerify.merkleVerify(arguments[0], arguments[1], arguments[2]);",
                    vec![
                        json!(items[i].to_hex()),
                        serde_json::to_value(&p).expect("json"),
                        json!(root),
                    ],
                )
                .await;
            assert_eq!(ok, json!(true), "leaf {i} of {size}");
            if size > 1 {
                let mut moved = p.clone();
                moved.index = ((i + 1) % size as usize) as u32;
                let bad = b
                    .exec(
                        "return TallyVerify.merkleVerify(arguments[0], arguments[1], arguments[2]);",
                        vec![json!(items[i].to_hex()), serde_json::to_value(&moved).expect("json"), json!(root)],
                    )
                    .await;
                assert_eq!(bad, json!(false), "leaf {i} of {size} moved");
            }
        }
    }
    // Outcome leaves: the page encodes a status as tally-protocol does, so it proves
    // "rejected" for a rejected transaction exactly as the SDK does.
    let id = Hash::tagged(b"t", &[b"tx"]);
    let fx = tally_protocol::block::effects_hash(&None);
    for st in [
        tally_protocol::TxStatus::Committed,
        tally_protocol::TxStatus::Rejected {
            code: tally_protocol::RejectCode::OutOfFuel,
            reason: "fuel ran out: ünïcode".into(),
        },
    ] {
        let js = b
            .exec(
                "return TallyVerify.resultLeaf(arguments[0], arguments[1], arguments[2]);",
                vec![
                    json!(id.to_hex()),
                    serde_json::to_value(&st).expect("json"),
                    json!(fx.to_hex()),
                ],
            )
            .await;
        assert_eq!(
            js.as_str(),
            Some(
                tally_protocol::block::result_leaf(&id, &st, &fx)
                    .to_hex()
                    .as_str()
            ),
            "outcome leaf of {st:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    let s = Scenario::start("console").await;
    let console = s.console("console suite");
    let b = Browser::start().await;

    // ---- the page's hashing is tally-protocol's ----------------------------------------------
    b.goto(&console.at("/")).await;
    same_hashes_as_rust(&b, &s).await;

    // ---- consortium: readable channels only, nodes agree -------------------------------------
    let text = b.text("main").await.unwrap_or_default();
    assert!(text.contains("nodes agree"), "{text}");
    assert!(text.contains("node3") && text.contains("node1"), "{text}");
    assert!(
        !text.contains(PRIVATE),
        "the private channel is not listed for org3: {text}"
    );

    // ---- a committed transaction: status and a proof the page verified -----------------------
    let id = s.finance.tx_id.to_hex();
    let (status, html) = http::get(&console.at(&format!("/channels/main/tx/{id}")))
        .await
        .expect("GET tx page");
    assert_eq!(status, 200);
    let html = String::from_utf8_lossy(&html);
    assert!(
        html.contains("not verified") && !html.contains("verified in this browser"),
        "as served, before any script ran, the page claims nothing"
    );
    b.goto(&console.at(&format!("/channels/main/tx/{id}")))
        .await;
    let verified = b
        .wait("the proof verdict", SEEN, || async {
            b.attr("#proof-status", "data-verified").await
        })
        .await;
    let verdict = b.text("#proof-status").await.unwrap_or_default();
    assert_eq!(verified, "true", "{verdict}");
    assert!(verdict.contains("verified in this browser"), "{verdict}");
    assert_eq!(
        b.attr("#proof-status", "data-computed-hash")
            .await
            .as_deref(),
        Some(s.finance.block_hash.to_hex().as_str()),
        "the page computed the receipt's block hash itself"
    );
    assert!(b
        .text("#tx-status")
        .await
        .unwrap_or_default()
        .contains("committed"));
    let checks = b.text("#proof-checks").await.unwrap_or_default();
    assert!(
        checks.contains("node1-0 (org1) serves the same header"),
        "{checks}"
    );
    assert!(
        b.text("main")
            .await
            .unwrap_or_default()
            .contains("financed"),
        "the call's result is shown"
    );
    // The same check fails on a proof with another results root, another transaction, or a
    // status other than the proven one (in the proof or in the receipt).
    let tampered = b
        .exec(
            "var d = JSON.parse(document.getElementById('proof-data').textContent);\
             var a = JSON.parse(JSON.stringify(d)); a.proof.header.results_root = '00'.repeat(32);\
             var c = JSON.parse(JSON.stringify(d)); c.tx_id = 'ab'.repeat(32); c.proof.tx_id = c.tx_id;\
             var r = {status: 'rejected', code: 'out_of_fuel', reason: 'x'};\
             var e = JSON.parse(JSON.stringify(d)); e.proof.status = r;\
             var f = JSON.parse(JSON.stringify(d)); f.status = r;\
             return [TallyVerify.verifyInclusion(d).ok, TallyVerify.verifyInclusion(a).ok, TallyVerify.verifyInclusion(c).ok,\
                     TallyVerify.verifyInclusion(e).ok, TallyVerify.verifyInclusion(f).ok];",
            vec![],
        )
        .await;
    assert_eq!(tampered, json!([true, false, false, false, false]));

    // ---- the block list grows live --------------------------------------------------------------
    b.goto(&console.at("/channels/main")).await;
    b.wait("the live stream to open", SEEN, || async {
        b.attr("#live", "class").await.filter(|c| c.contains("on"))
    })
    .await;
    b.exec("window.__sameDocument = true; return null;", vec![])
        .await;
    let r = s.put("org3", MAIN, "greeting", "hello again").await;
    let row = format!("#blocks tr[data-n=\"{}\"]", r.block);
    b.wait("the new block's row", SEEN, || async {
        (b.count(&row).await == 1).then_some(())
    })
    .await;
    assert_eq!(
        b.exec("return window.__sameDocument === true;", vec![])
            .await,
        json!(true),
        "the row arrived without a reload"
    );
    let order: Vec<u64> = serde_json::from_value(
        b.exec(
            "return Array.from(document.querySelectorAll('#blocks tbody tr')).map(r => Number(r.dataset.n));",
            vec![],
        )
        .await,
    )
    .expect("block numbers");
    assert!(
        order.windows(2).all(|w| w[0] > w[1]),
        "newest first, each block once: {order:?}"
    );
    let height = b.text("#height").await.unwrap_or_default();
    assert!(
        height.parse::<u64>().is_ok_and(|h| h > r.block),
        "the height follows the new blocks: {height}"
    );

    // ---- the configuration history, read from the chain ----------------------------------------
    let history = config_history(&b, &console).await;
    for needle in [
        "sequence 1:",
        "approved by org1/admin, org2/admin",
        "admins: org1, org2",
        "blocks cut at 250 transactions",
    ] {
        assert!(history.contains(needle), "{needle:?} in {history}");
    }
    let members = b.text("main").await.unwrap_or_default();
    assert!(
        members.contains("250 transactions"),
        "the configuration in force is shown: {members}"
    );

    // ---- a channel org3 is not a member of ------------------------------------------------------
    b.goto(&console.at("/channels/private")).await;
    let refused = b.text("#refused").await.unwrap_or_default();
    assert!(
        refused.contains("Not a member") && refused.contains("org3"),
        "{refused}"
    );
    assert_eq!(
        b.count("#blocks").await,
        0,
        "nothing of the channel is shown"
    );
    let (status, body) = http::get(&console.at("/channels/private"))
        .await
        .expect("GET private");
    assert_eq!(status, 403);
    assert!(!String::from_utf8_lossy(&body).contains("credit-line"));
    for path in [
        "/channels/private/blocks/1",
        "/channels/private/key?k=credit-line%2Forg1",
        "/channels/private/chaincodes",
    ] {
        let (status, _) = http::get(&console.at(path)).await.expect("GET");
        assert_eq!(status, 403, "{path}");
    }
    let (status, _) = http::get(&console.at("/channels/private/live?from=0"))
        .await
        .expect("GET live");
    assert_eq!(status, 403, "no live stream of a refused channel");
    let (status, head) = http::raw(&console.at("/search?q=1&channel=private"), "GET", "", "").await;
    assert_eq!(status, 303, "{head}");
    assert!(
        head.contains("location: /channels/main/blocks/1"),
        "a search scoped to a refused channel looks in the readable ones: {head}"
    );

    // ---- a receivable's trace --------------------------------------------------------------------
    b.goto(&console.at("/channels/main/chaincodes/receivables/trace?id=R1-a"))
        .await;
    assert_eq!(
        b.count("#trace [data-part]").await,
        2,
        "R1 and its split R1-a"
    );
    assert_eq!(
        b.count("#trace [data-part=\"R1\"] + ul [data-part=\"R1-a\"]")
            .await,
        1,
        "R1-a drawn under R1"
    );
    assert!(b
        .attr("[data-part=\"R1-a\"]", "class")
        .await
        .unwrap_or_default()
        .contains("focus"));
    let tree = b.text("#trace").await.unwrap_or_default();
    for needle in [
        "600,000",
        "400,000",
        "ISSUE",
        "FINANCE",
        "financed by org2 for 390,000",
    ] {
        assert!(tree.contains(needle), "{needle:?} in {tree}");
    }

    // ---- a dropped document is found anchored, with a verified proof ----------------------------
    b.goto(&console.at("/channels/main/chaincodes/notary/notary"))
        .await;
    let verified = drop_file(&b, "deed.txt", &s.document).await;
    assert_eq!(verified, "true");
    assert_eq!(
        b.attr("#file-hash", "data-hash").await.as_deref(),
        Some(hex::encode(sha2::Sha256::digest(&s.document)).as_str())
    );
    assert!(b
        .text("#notary-result")
        .await
        .unwrap_or_default()
        .contains("deed of sale, parcel 42"));

    // ---- search ----------------------------------------------------------------------------------
    b.goto(&console.at(&format!("/search?q={id}"))).await;
    assert!(
        b.url().await.ends_with(&format!("/channels/main/tx/{id}")),
        "{}",
        b.url().await
    );
    b.goto(&console.at("/")).await;
    b.type_into("#q", "greeting\n").await;
    b.wait("the key page", SEEN, || async { b.text("#key-name").await })
        .await;
    assert!(b
        .text("main")
        .await
        .unwrap_or_default()
        .contains("hello again"));
    b.goto(&console.at("/search?q=2&channel=main")).await;
    assert!(
        b.url().await.ends_with("/channels/main/blocks/2"),
        "{}",
        b.url().await
    );

    s.tc.assert_healthy();
}

/// The channel page's configuration history, once the console has read it all (reloading
/// until it says so).
async fn config_history(b: &Browser, console: &Console) -> String {
    b.wait("the configuration history", SEEN, || async {
        b.goto(&console.at("/channels/main")).await;
        let scan = b.text("#config-scan").await.unwrap_or_default();
        if scan.starts_with("Complete") {
            b.text("#config-history").await
        } else {
            None
        }
    })
    .await
}

/// Drops a file with `bytes` on the notary page's drop zone, as a user's drag would; waits for
/// the proof's verdict and returns it.
async fn drop_file(b: &Browser, name: &str, bytes: &[u8]) -> String {
    b.exec(
        "var dt = new DataTransfer(); dt.items.add(new File([new Uint8Array(arguments[0])], arguments[1]));\
         document.getElementById('dropzone').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));\
         return null;",
        vec![json!(bytes), json!(name)],
    )
    .await;
    b.wait("the notary proof verdict", SEEN, || async {
        b.attr("#notary-proof #proof-status", "data-verified").await
    })
    .await
}

/// Screenshots of the main pages for the README and docs/console.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "rewrites docs/images; run with --ignored screenshots"]
async fn screenshots() {
    let s = Scenario::start("console-shots").await;
    // A few more blocks so the list looks like a channel in use.
    for i in 0..6 {
        s.put(
            "org3",
            MAIN,
            &format!("sensor/{i}"),
            &format!("{{\"celsius\": {}}}", 4 + i),
        )
        .await;
    }
    let console = s.console("Example consortium");
    let b = Browser::start().await;
    let out = repo().join("docs/images");
    let shot = |name: &'static str, png: Vec<u8>| {
        let p = out.join(name);
        std::fs::write(&p, png).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        eprintln!("wrote {}", p.display());
    };
    b.goto(&console.at("/")).await;
    shot("console-consortium.png", b.screenshot(true).await);
    config_history(&b, &console).await;
    b.wait("live", SEEN, || async {
        b.attr("#live", "class").await.filter(|c| c.contains("on"))
    })
    .await;
    let r = s
        .put("org1", MAIN, "greeting", "a block that arrives live")
        .await;
    let row = format!("#blocks tr[data-n=\"{}\"]", r.block);
    b.wait("the live row", SEEN, || async {
        (b.count(&row).await == 1).then_some(())
    })
    .await;
    shot("console-channel.png", b.screenshot(true).await);
    let id = s.finance.tx_id.to_hex();
    b.goto(&console.at(&format!("/channels/main/tx/{id}")))
        .await;
    b.wait("verdict", SEEN, || async {
        b.attr("#proof-status", "data-verified").await
    })
    .await;
    shot("console-transaction.png", b.screenshot(true).await);
    b.goto(&console.at(&format!("/channels/main/blocks/{}", s.finance.block)))
        .await;
    shot("console-block.png", b.screenshot(true).await);
    b.goto(&console.at("/channels/main/chaincodes/receivables/trace?id=R1-a"))
        .await;
    shot("console-trace.png", b.screenshot(true).await);
    b.goto(&console.at("/channels/main/chaincodes/notary/notary"))
        .await;
    drop_file(&b, "deed-parcel-42.txt", &s.document).await;
    shot("console-notary.png", b.screenshot(true).await);
    b.goto(&console.at("/channels/main/chaincodes")).await;
    shot("console-chaincodes.png", b.screenshot(true).await);
    b.goto(&console.at("/channels/private")).await;
    shot("console-not-member.png", b.screenshot(false).await);
}

/// Nobody reads through the console without its token; a console without one will not listen
/// off loopback, and a loopback console answers only under loopback names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_auth_refuses_strangers() {
    // No consortium is needed to check who may ask: the node below is never reached.
    let dir = tempfile::tempdir().expect("temporary folder");
    let ca = tally_protocol::OrgCa::generate("org1").expect("a CA");
    let id = ca.issue(Role::Client, "client", &[]).expect("an identity");
    let id_dir = dir.path().join("client");
    id.save(&id_dir, &ca.cert_pem()).expect("save the identity");
    let token = "s3cret-token-for-the-console-suite";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).expect("write the token");
    let id_arg = id_dir.display().to_string();
    let on_loopback = [
        "--node",
        "https://127.0.0.1:1",
        "--identity",
        &id_arg,
        "--listen",
        "127.0.0.1:0",
    ];
    let token_arg = token_file.display().to_string();
    let console = Console::start(&[&on_loopback[..], &["--token-file", &token_arg]].concat());
    let get = |path: &str, headers: Vec<(&'static str, String)>| {
        let url = console.at(path);
        async move {
            http::request_with("GET", &url, None, &headers, Vec::new())
                .await
                .expect("the console answers")
        }
    };
    for path in [
        "/",
        "/channels/main",
        "/channels/main/tx/00",
        "/search?q=1",
        "/channels/main/live",
    ] {
        assert_eq!(get(path, vec![]).await.0, 401, "{path} without a token");
        let wrong = vec![(
            "authorization",
            "Bearer s3cret-token-for-the-console-suitE".to_string(),
        )];
        assert_eq!(get(path, wrong).await.0, 401, "{path} with a wrong token");
        let cookie = vec![("cookie", "tally_console=00ff".to_string())];
        assert_eq!(
            get(path, cookie).await.0,
            401,
            "{path} with a forged cookie"
        );
    }
    // A browser gets the login form, which holds nothing of the ledger.
    let (status, body) = get("/", vec![("accept", "text/html".into())]).await;
    assert_eq!(status, 401);
    assert!(String::from_utf8_lossy(&body).contains("name=\"token\""));
    let right = vec![("authorization", format!("Bearer {token}"))];
    assert_eq!(get("/", right.clone()).await.0, 200);
    assert_eq!(get("/healthz", vec![]).await.0, 200, "probes need no token");
    // The login form: a wrong token is refused, the right one sets a session cookie.
    let form = |t: &str| format!("token={t}&next=%2Fsearch%3Fq%3Dx");
    let login = |body: String| {
        let url = console.at("/login");
        async move {
            http::request(
                "POST",
                &url,
                Some("application/x-www-form-urlencoded"),
                body,
            )
            .await
            .expect("login answers")
        }
    };
    assert_eq!(login(form("guess-guess-guess-guess")).await.0, 401);
    // The raw response, for its headers.
    let (status, head) = raw_post(&console.at("/login"), &form(token)).await;
    assert_eq!(status, 303, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("location: /search?q=x"),
        "{head}"
    );
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("a session cookie: {head}"));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(token),
        "the cookie does not carry the token"
    );
    let session = cookie.split(';').next().unwrap_or("").to_string();
    assert_eq!(get("/", vec![("cookie", session)]).await.0, 200);
    // Read-only: nothing but GET (and the login form).
    let (status, _) = http::request_with(
        "POST",
        &console.at("/channels/main"),
        None,
        &[("authorization", format!("Bearer {token}"))],
        Vec::new(),
    )
    .await
    .expect("answers");
    assert_eq!(status, 405);
    drop(console);

    // Without a token: loopback only, and only under loopback names.
    let open = Console::start(&on_loopback);
    assert_eq!(get_host(&open.at("/healthz"), "127.0.0.1").await, 200);
    assert_eq!(
        get_host(&open.at("/"), "evil.example").await,
        421,
        "DNS rebinding"
    );
    // Off loopback, tally-console refuses to start without a token, or with a guessable one.
    let off_loopback = |extra: &[String]| {
        Command::new(console_bin())
            .args(["--node", "https://127.0.0.1:1", "--identity", &id_arg])
            .args(["--listen", "0.0.0.0:0"])
            .args(extra)
            .output()
            .expect("tally-console runs")
    };
    let out = off_loopback(&[]);
    assert!(
        !out.status.success(),
        "an open port with an identity behind it"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to serve"), "{err}");
    let short = dir.path().join("short");
    std::fs::write(&short, "1234").expect("write");
    let out = off_loopback(&["--token-file".into(), short.display().to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16"), "{err}");
    assert!(!out.status.success(), "a guessable token is refused");
}

/// GET with a chosen Host header; the status.
async fn get_host(url: &str, host: &str) -> u16 {
    http::raw(url, "GET", host, "").await.0
}

/// A form POST; the status and the response head (the harness's client returns bodies only).
async fn raw_post(url: &str, body: &str) -> (u16, String) {
    http::raw(url, "POST", "", body).await
}
