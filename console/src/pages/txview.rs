//! One transaction in words: what it asked for, who signed it, how it ended and what its
//! chaincode call read, wrote, emitted and returned. The block page and the transaction page
//! both show transactions this way.

use crate::format::{self, SignedBy};
use crate::html::{self, esc, w};
use tally_protocol::{Payload, Transaction, TxEffects, TxStatus};

/// The status as a coloured label, with the reason of a rejection.
pub fn status(s: &TxStatus) -> String {
    match s {
        TxStatus::Committed => html::pill("ok", "committed"),
        TxStatus::Rejected { code, reason } => format!(
            "{} <span class=\"reason\">{}</span>",
            html::pill("bad", &format!("rejected: {}", code.as_str())),
            esc(reason)
        ),
    }
}

pub fn signer(tx: &Transaction) -> String {
    let s = SignedBy::of(tx);
    match &s {
        SignedBy::Cert { role, .. } => format!(
            "{} <span class=\"muted\">{}</span>",
            esc(&s.label()),
            esc(role)
        ),
        _ => esc(&s.label()).to_string(),
    }
}

/// A short name of the kind of transaction.
pub fn kind(p: &Payload) -> &'static str {
    match p {
        Payload::KvWrite { .. } => "key/value",
        Payload::Config(_) => "configuration",
        Payload::ChaincodeInstall { .. } => "chaincode install",
        Payload::ChaincodeApprove { .. } => "chaincode approve",
        Payload::ChaincodeCommit { .. } => "chaincode commit",
        Payload::Invoke { .. } => "chaincode call",
        Payload::Propose(_) => "proposal",
        Payload::ProposalApprove { .. } => "proposal approval",
        Payload::ProposalReject { .. } => "proposal rejection",
    }
}

/// What the transaction asked for, one line.
pub fn call(ch: &str, p: &Payload) -> String {
    match p {
        Payload::KvWrite { reads, writes } => {
            let mut h = String::new();
            for (i, wr) in writes.iter().take(5).enumerate() {
                if i > 0 {
                    h.push_str(", ");
                }
                let verb = if wr.value.is_some() { "put" } else { "delete" };
                w!(
                    h,
                    "{verb} <a href=\"{}\">{}</a>",
                    esc(&html::key_href(ch, &wr.key)),
                    esc(&format::cut(&wr.key, 60))
                );
            }
            if writes.len() > 5 {
                w!(h, " and {} more", writes.len() - 5);
            }
            if !reads.is_empty() {
                w!(
                    h,
                    " <span class=\"muted\">({} read checks)</span>",
                    reads.len()
                );
            }
            h
        }
        Payload::Config(u) => format!(
            "configuration change to sequence {} ({} approvals)",
            u.sequence,
            u.approvals.len()
        ),
        Payload::ChaincodeInstall { definition: d, .. } => format!(
            "install <strong>{}</strong> {} sequence {} (module {})",
            esc(&d.name),
            esc(&d.version),
            d.sequence,
            html::hash(&d.module_hash.to_hex(), None)
        ),
        Payload::ChaincodeApprove {
            name,
            sequence,
            module_hash,
        } => format!(
            "approve <strong>{}</strong> sequence {sequence} (module {})",
            esc(name),
            html::hash(&module_hash.to_hex(), None)
        ),
        Payload::ChaincodeCommit { name, sequence } => {
            format!("commit <strong>{}</strong> sequence {sequence}", esc(name))
        }
        Payload::Invoke {
            chaincode,
            function,
            args,
            ..
        } => format!(
            "<strong>{}</strong>.{}({})",
            esc(chaincode),
            esc(function),
            esc(&format::args(args))
        ),
        Payload::Propose(p) => format!(
            "propose {} on configuration {}",
            html::hash(&p.hash().to_hex(), None),
            p.base_sequence
        ),
        Payload::ProposalApprove { hash } => {
            format!("approve proposal {}", html::hash(&hash.to_hex(), None))
        }
        Payload::ProposalReject { hash } => {
            format!("reject proposal {}", html::hash(&hash.to_hex(), None))
        }
    }
}

/// Reads, writes, events and result of a chaincode call, or the writes of a key/value
/// transaction.
pub fn effects(ch: &str, tx: &Transaction, fx: Option<&TxEffects>) -> String {
    let mut h = String::new();
    match (fx, &tx.body.payload) {
        (Some(fx), _) => {
            w!(
                h,
                "<div class=\"effects\"><div><h4>Result</h4><pre>{}</pre><p class=\"muted\">{} fuel</p></div>",
                esc(&format::value(&fx.result, 4000)),
                fx.fuel_used
            );
            h.push_str("<div><h4>Reads</h4>");
            h.push_str(&list(
                fx.reads.iter().map(|r| {
                    let at = r
                        .version
                        .map_or("absent".to_string(), |v| format!("at {}.{}", v.block, v.tx));
                    (r.key.as_str(), at)
                }),
                ch,
            ));
            h.push_str("</div><div><h4>Writes</h4>");
            h.push_str(&list(
                fx.writes
                    .iter()
                    .map(|wr| (wr.key.as_str(), written(&wr.value))),
                ch,
            ));
            h.push_str("</div><div><h4>Events</h4><ul class=\"plain\">");
            for e in &fx.events {
                w!(
                    h,
                    "<li><strong>{}</strong> {}</li>",
                    esc(&e.name),
                    esc(&format::bytes(&e.payload, 200))
                );
            }
            if fx.events.is_empty() {
                h.push_str("<li class=\"muted\">none</li>");
            }
            h.push_str("</ul></div></div>");
        }
        (None, Payload::KvWrite { reads, writes }) => {
            h.push_str("<div class=\"effects\"><div><h4>Writes</h4>");
            h.push_str(&list(
                writes
                    .iter()
                    .map(|wr| (wr.key.as_str(), written(&wr.value))),
                ch,
            ));
            h.push_str("</div><div><h4>Read checks</h4>");
            h.push_str(&list(
                reads.iter().map(|r| {
                    let at = r.version.map_or("must be absent".to_string(), |v| {
                        format!("must be at {}.{}", v.block, v.tx)
                    });
                    (r.key.as_str(), at)
                }),
                ch,
            ));
            h.push_str("</div></div>");
        }
        _ => {}
    }
    h
}

fn written(v: &Option<Vec<u8>>) -> String {
    match v {
        Some(v) => format!("= {}", format::value(v, 160)),
        None => "deleted".into(),
    }
}

fn list<'a>(items: impl Iterator<Item = (&'a str, String)>, ch: &str) -> String {
    let mut h = String::from("<ul class=\"plain kv\">");
    let mut any = false;
    for (key, what) in items {
        any = true;
        w!(
            h,
            "<li><a href=\"{}\">{}</a> <span class=\"muted\">{}</span></li>",
            esc(&html::key_href(ch, key)),
            esc(&format::cut(key, 80)),
            esc(&what)
        );
    }
    if !any {
        h.push_str("<li class=\"muted\">none</li>");
    }
    h.push_str("</ul>");
    h
}
