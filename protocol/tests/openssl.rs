//! Keys and certificates open in Debian's OpenSSL 3, the tool an operator reaches for first:
//! `openssl pkey` reads every private key Tally writes (CA and identities, generated or derived)
//! and gives the same public key as the certificate, and `openssl verify` accepts every issued
//! certificate against its organization's CA. Needs `openssl` (scripts/setup.sh installs it).

use std::path::Path;
use std::process::Command;
use tally_protocol::{OrgCa, Role};

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn every_key_and_certificate_opens_in_openssl() {
    let dir = tempfile::tempdir().expect("a folder");
    let ca = OrgCa::generate("acme").expect("a CA");
    ca.save(dir.path()).expect("save the CA");
    let ca_pem = dir.path().join("ca.pem");
    let ca_key = dir.path().join("ca-key.pem");
    let ca_pub = openssl(&["pkey", "-in", path(&ca_key), "-pubout"]);
    let ca_cert_pub = openssl(&["x509", "-in", path(&ca_pem), "-noout", "-pubkey"]);
    assert_eq!(ca_pub, ca_cert_pub, "the CA key is the certificate's");

    // Reloaded from what it wrote, the CA still issues (the key written is the key read).
    let reloaded = OrgCa::load(dir.path()).expect("the CA loads from its files");
    let issued = [
        ca.issue(Role::Client, "app", &[]).expect("issue"),
        reloaded
            .issue_derived(
                Role::Node,
                "n1-0",
                &["127.0.0.1".into(), "n1".into()],
                1_790_000_000,
            )
            .expect("issue derived"),
        reloaded
            .issue_derived(Role::Admin, "admin", &[], 1_790_000_000)
            .expect("issue derived"),
    ];
    for id in &issued {
        let name = id.info.subject.clone();
        let folder = dir.path().join(&name);
        id.save(&folder, &ca.cert_pem()).expect("save");
        let key = folder.join("key.pem");
        let cert = folder.join("cert.pem");
        assert_eq!(
            openssl(&["pkey", "-in", path(&key), "-pubout"]),
            openssl(&["x509", "-in", path(&cert), "-noout", "-pubkey"]),
            "{name}: the key is the certificate's"
        );
        let verified = openssl(&["verify", "-CAfile", path(&ca_pem), path(&cert)]);
        assert!(verified.contains(": OK"), "{name}: {verified}");
        let subject = openssl(&["x509", "-in", path(&cert), "-noout", "-subject"]);
        assert!(subject.contains("O = acme"), "{subject}");
        // And Tally reads back what it wrote.
        tally_protocol::Identity::load(&folder).expect("the identity loads");
    }
}
