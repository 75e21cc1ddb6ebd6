//! Reads of a channel's data are signed and checked on the node: unsigned reads, readers from
//! outside the channel or outside its `readers` policy, tampered and stale signatures are all
//! refused, while status, configuration and block headers stay open.

use tally_client::txs::{put, sign_writes};
use tally_client::Client;
use tally_protocol::read_auth;
use tally_protocol::{now_ms, Role};
use tally_tests::{assert_api_error, http, TestCluster};
use tallyctl::local::LocalChannelSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_served_to_readers_only() {
    let tc = TestCluster::start("read_access", 3, &["main"], |spec| {
        let orgs = ["org1".to_string(), "org2".to_string()];
        let peers = ["node1".to_string(), "node2".to_string()];
        let mut private = LocalChannelSpec::new("private", &orgs, &peers);
        private.policies.readers = vec!["org1".into()];
        spec.channels.push(private);
    })
    .await;
    let url = tc.api_url("node1-0");
    let org1 = tc.identity("org1", Role::Client);
    let org2 = tc.identity("org2", Role::Client);
    let org3 = tc.identity("org3", Role::Client);
    for ch in ["main", "private"] {
        let tx = sign_writes(&org1, ch, vec![put("k", b"v")], false);
        let r = tc.client("node1-0").submit_wait(&tx).await.unwrap();
        assert!(r.status.is_committed(), "{ch}: {r:?}");
    }

    // Signed by a member: served.
    let as_org1 = Client::new(&url, &tc.api_trust())
        .unwrap()
        .with_reader(org1.clone());
    for ch in ["main", "private"] {
        let kv = as_org1.get(ch, "k").await.unwrap().expect("the key exists");
        assert_eq!(kv.value, b"v");
        assert!(as_org1.block(ch, Some(1)).await.is_ok());
        assert!(!as_org1.keys(ch, "", Some(10)).await.unwrap().is_empty());
    }
    // org3 reads main (it is a member) but not private.
    let as_org3 = Client::new(&url, &tc.api_trust())
        .unwrap()
        .with_reader(org3);
    assert!(as_org3.get("main", "k").await.unwrap().is_some());
    let e = as_org3.get("private", "k").await.unwrap_err();
    assert_eq!(e.api_code(), Some("not_member"), "{e}");
    // org2 is a member of private but not among its readers.
    let as_org2 = Client::new(&url, &tc.api_trust())
        .unwrap()
        .with_reader(org2);
    let e = as_org2.get("private", "k").await.unwrap_err();
    assert_eq!(e.api_code(), Some("forbidden"), "{e}");
    assert!(as_org2.history("private", "k", Some(10)).await.is_err());
    assert!(as_org2.follow("private", 0).await.is_err());

    // Unsigned: data refused, status, configuration and headers open.
    let anon = Client::new(&url, &tc.api_trust()).unwrap();
    let e = anon.get("main", "k").await.unwrap_err();
    assert_eq!(e.api_code(), Some("read_unauthenticated"), "{e}");
    assert!(anon.follow("main", 0).await.is_err());
    assert!(anon.status("private").await.is_ok());
    assert!(anon.config("private").await.is_ok());
    let header = anon.header("private", 1).await.unwrap();
    assert_eq!(
        header,
        as_org1.block("private", Some(1)).await.unwrap().header
    );

    // A signature for another request, or an old one, does not pass.
    let path = "/v1/channels/main/state?key=k";
    let send = |cert: String, auth: String| {
        let url = format!("{url}{path}");
        async move {
            http::request_with(
                "GET",
                &url,
                None,
                &[
                    (read_auth::CERT_HEADER, cert),
                    (read_auth::AUTH_HEADER, auth),
                ],
                Vec::new(),
            )
            .await
            .unwrap()
        }
    };
    let (cert, auth) = read_auth::sign(&org1, "GET", "/v1/channels/main/state?key=other", now_ms());
    let got = send(cert, auth).await;
    assert_api_error("tampered read", (got.0, &got.1), 401, "bad_signature");
    let (cert, auth) = read_auth::sign(&org1, "GET", path, now_ms() - 3_600_000);
    let got = send(cert, auth).await;
    assert_api_error("stale read", (got.0, &got.1), 401, "expired");
    let got = send("zz".into(), "1.00".into()).await;
    assert_api_error("garbled read", (got.0, &got.1), 400, "malformed");
    // The same request, signed now, passes: the refusals above were for what they say.
    let (cert, auth) = read_auth::sign(&org1, "GET", path, now_ms());
    let got = send(cert, auth).await;
    assert_eq!(got.0, 200, "{}", String::from_utf8_lossy(&got.1));
}
