//! A readable difference between two channel configurations, line by line, for people who
//! must decide whether to approve a change: members (and their CAs), consenters, observers,
//! policies, block cutting and limits.

use std::collections::BTreeMap;
use tally_protocol::identity::ca_org;
use tally_protocol::{ChannelConfig, Hash, NodeRef};

/// One line of a difference: `+` added, `-` removed, `~` changed.
pub fn diff(base: &ChannelConfig, next: &ChannelConfig) -> Vec<String> {
    let mut out = Vec::new();
    if base.name != next.name {
        out.push(format!("~ name: {} -> {}", base.name, next.name));
    }
    members(base, next, &mut out);
    nodes("consenter", &base.consenters, &next.consenters, &mut out);
    nodes("observer", &base.observers, &next.observers, &mut out);
    for (policy, a, b) in [
        ("writers", &base.policies.writers, &next.policies.writers),
        ("readers", &base.policies.readers, &next.policies.readers),
        ("admins", &base.policies.admins, &next.policies.admins),
    ] {
        if a != b {
            out.push(format!("~ policies.{policy}: {} -> {}", orgs(a), orgs(b)));
        }
    }
    if base.policies.membership != next.policies.membership {
        out.push(format!(
            "~ policies.membership: {} -> {} of the admin organizations",
            base.policies.membership, next.policies.membership
        ));
    }
    if base.policies.chaincode != next.policies.chaincode {
        out.push(format!(
            "~ policies.chaincode: {} -> {} of the members approve a chaincode definition",
            base.policies.chaincode, next.policies.chaincode
        ));
    }
    let numbers = [
        (
            "batch.max_txs",
            base.batch.max_txs as u64,
            next.batch.max_txs as u64,
        ),
        (
            "batch.max_bytes",
            base.batch.max_bytes as u64,
            next.batch.max_bytes as u64,
        ),
        (
            "batch.timeout_ms",
            base.batch.timeout_ms as u64,
            next.batch.timeout_ms as u64,
        ),
        (
            "snapshot_interval",
            base.snapshot_interval,
            next.snapshot_interval,
        ),
        (
            "max_tx_bytes",
            base.max_tx_bytes as u64,
            next.max_tx_bytes as u64,
        ),
        (
            "tx_window_s",
            base.tx_window_s as u64,
            next.tx_window_s as u64,
        ),
    ];
    for (what, a, b) in numbers {
        if a != b {
            out.push(format!("~ {what}: {a} -> {b}"));
        }
    }
    out
}

/// A policy list as people read it: empty means every member.
fn orgs(list: &[String]) -> String {
    if list.is_empty() {
        "every member".into()
    } else {
        format!("[{}]", list.join(", "))
    }
}

/// A CA as a short fingerprint of its PEM, so that a replaced CA shows.
fn ca_mark(pem: &str) -> String {
    let h = Hash::tagged(b"tally-ca-pem", &[pem.trim().as_bytes()]);
    let subject = ca_org(pem).unwrap_or_else(|_| "?".into());
    format!("CA of {subject} {}", &h.to_hex()[..12])
}

fn members(base: &ChannelConfig, next: &ChannelConfig, out: &mut Vec<String>) {
    let a: BTreeMap<&str, &str> = base
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.ca_pem.as_str()))
        .collect();
    let b: BTreeMap<&str, &str> = next
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.ca_pem.as_str()))
        .collect();
    for (name, pem) in &b {
        match a.get(name) {
            None => out.push(format!("+ member {name} ({})", ca_mark(pem))),
            Some(old) if old.trim() != pem.trim() => out.push(format!(
                "~ member {name}: {} -> {}",
                ca_mark(old),
                ca_mark(pem)
            )),
            Some(_) => {}
        }
    }
    for (name, pem) in &a {
        if !b.contains_key(name) {
            out.push(format!("- member {name} ({})", ca_mark(pem)));
        }
    }
    // Extra CAs (a rotation in progress) and revocations of members on both sides.
    for m in &next.members {
        let Some(old) = base.members.iter().find(|o| o.name == m.name) else {
            continue;
        };
        let name = &m.name;
        let marks = |cas: &[String]| -> Vec<String> { cas.iter().map(|p| ca_mark(p)).collect() };
        let (was, now) = (marks(&old.extra_cas), marks(&m.extra_cas));
        for c in now.iter().filter(|c| !was.contains(c)) {
            out.push(format!("+ member {name}: extra {c}"));
        }
        for c in was.iter().filter(|c| !now.contains(c)) {
            out.push(format!("- member {name}: extra {c}"));
        }
        for r in m.revoked.iter().filter(|r| !old.revoked.contains(r)) {
            out.push(format!(
                "+ member {name}: revoked certificate {}",
                r.to_hex()
            ));
        }
        for r in old.revoked.iter().filter(|r| !m.revoked.contains(r)) {
            out.push(format!(
                "- member {name}: revocation of {} lifted",
                r.to_hex()
            ));
        }
    }
}

fn node_line(n: &NodeRef) -> String {
    format!(
        "{} (id {}, org {}, peer {}, api {})",
        n.name, n.id, n.org, n.peer_addr, n.api_url
    )
}

fn nodes(role: &str, base: &[NodeRef], next: &[NodeRef], out: &mut Vec<String>) {
    let a: BTreeMap<&str, &NodeRef> = base.iter().map(|n| (n.name.as_str(), n)).collect();
    let b: BTreeMap<&str, &NodeRef> = next.iter().map(|n| (n.name.as_str(), n)).collect();
    for (name, n) in &b {
        match a.get(name) {
            None => out.push(format!("+ {role} {}", node_line(n))),
            Some(old) if old != n => out.push(format!(
                "~ {role} {name}: {} -> {}",
                node_line(old),
                node_line(n)
            )),
            Some(_) => {}
        }
    }
    for (name, n) in &a {
        if !b.contains_key(name) {
            out.push(format!("- {role} {}", node_line(n)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_protocol::{OrgCa, OrgMember};

    fn node(id: u64, org: &str) -> NodeRef {
        NodeRef {
            id,
            name: format!("n{id}"),
            org: org.into(),
            peer_addr: format!("127.0.0.1:{}", 7000 + id),
            api_url: format!("https://127.0.0.1:{}", 8000 + id),
        }
    }

    #[test]
    fn every_kind_of_change_is_named() {
        let (a, b, c) = (
            OrgCa::generate("a").unwrap(),
            OrgCa::generate("b").unwrap(),
            OrgCa::generate("c").unwrap(),
        );
        let member = |ca: &OrgCa| OrgMember::new(&ca.org, &ca.cert_pem());
        let base = ChannelConfig::new(
            "ch",
            vec![member(&a), member(&b)],
            vec![node(1, "a"), node(2, "b")],
            vec![],
        );
        assert!(diff(&base, &base).is_empty());
        let mut next = base.clone();
        next.members.push(member(&c));
        next.members.retain(|m| m.name != "b");
        next.consenters[0].api_url = "https://10.0.0.1:1".into();
        next.consenters.retain(|n| n.id != 2);
        next.observers.push(node(3, "c"));
        next.policies.writers = vec!["a".into()];
        next.policies.membership = tally_protocol::config::MembershipRule::All;
        next.batch.max_txs = 10;
        next.tx_window_s = 60;
        let lines = diff(&base, &next);
        let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
        assert!(has("+ member c (CA of c "), "{lines:#?}");
        assert!(has("- member b"), "{lines:#?}");
        assert!(has("~ consenter n1: "), "{lines:#?}");
        assert!(has("- consenter n2 (id 2, org b"), "{lines:#?}");
        assert!(has("+ observer n3 (id 3, org c"), "{lines:#?}");
        assert!(
            lines.contains(&"~ policies.writers: every member -> [a]".to_string()),
            "{lines:#?}"
        );
        assert!(
            lines.contains(
                &"~ policies.membership: a majority -> all of the admin organizations".to_string()
            ),
            "{lines:#?}"
        );
        assert!(lines.contains(&"~ batch.max_txs: 500 -> 10".to_string()));
        assert!(lines.contains(&"~ tx_window_s: 600 -> 60".to_string()));
        // A member whose CA is replaced.
        let mut rotated = base.clone();
        rotated.members[0].ca_pem = OrgCa::generate("a").unwrap().cert_pem();
        let lines = diff(&base, &rotated);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].starts_with("~ member a: CA of a "), "{lines:#?}");
        // A rotation under way and a revocation.
        let mut trust = base.clone();
        trust.members[1]
            .extra_cas
            .push(OrgCa::generate("b").unwrap().cert_pem());
        trust.members[1]
            .revoked
            .push(Hash::tagged(b"t", &[b"lost"]));
        let lines = diff(&base, &trust);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with("+ member b: extra CA of b "),
            "{lines:#?}"
        );
        assert!(
            lines[1].starts_with("+ member b: revoked certificate "),
            "{lines:#?}"
        );
        assert_eq!(diff(&trust, &base).len(), 2);
    }
}
